"""Soft actor-critic losses against hand computations, replay, and a learning check."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from entropylab.rl import sac


def test_squashed_gaussian_density_matches_the_change_of_variables(x64):
  rng = np.random.default_rng(0)
  mean, log_std, noise = rng.normal(size=(3, 5, 4))
  a, logp = sac.squashed_gaussian(jnp.asarray(noise), jnp.asarray(mean), jnp.asarray(log_std))
  u = mean + np.exp(log_std) * noise
  ref = np.sum(stats.norm.logpdf(u, mean, np.exp(log_std)) - np.log1p(-np.tanh(u) ** 2), -1)
  np.testing.assert_allclose(a, np.tanh(u), rtol=1e-12)
  np.testing.assert_allclose(logp, ref, rtol=1e-10)


def test_squashed_gaussian_stays_finite_far_in_the_tails():
  """At u = +-15 the float32 1 - tanh(u)^2 is 0; the stable form still gives the
  log-Jacobian log 4 - 2|u| - 2 log1p(exp(-2|u|)) (float64 reference)."""
  u = np.array([[-15.0, 15.0, 0.3]], np.float32)
  _, logp = sac.squashed_gaussian(jnp.zeros_like(u), jnp.asarray(u), jnp.zeros_like(u))
  log_jac = np.log(4.0) - 2 * np.abs(u.astype(np.float64)) - 2 * np.log1p(np.exp(-2 * np.abs(u)))
  ref = np.sum(-0.5 * math.log(2 * math.pi) - log_jac)
  assert np.isfinite(float(logp[0])) and abs(float(logp[0]) - ref) < 1e-4 * abs(ref)


# Linear stand-ins for the networks, so the losses can be computed by hand.
def _actor_fn(p, obs):
  return obs @ p["w"], jnp.broadcast_to(p["log_std"], obs.shape[:-1] + p["log_std"].shape)


def _critic_fn(p, obs, act):
  s, t = jnp.sum(obs, -1), jnp.sum(act, -1)
  return jnp.stack([p["a"] * s + t, p["b"] * s - 2.0 * t], -1)


def _batch(rng, n=4):
  return {"obs": rng.normal(size=(n, 2)), "action": rng.uniform(-1, 1, size=(n, 1)),
          "reward": rng.normal(size=n), "next_obs": rng.normal(size=(n, 2)),
          "done": np.array([0.0, 1.0, 0.0, 0.0][:n])}


def _np_policy(p, obs, noise):
  mean, log_std = obs @ p["w"], np.broadcast_to(p["log_std"], (obs.shape[0], 1))
  u = mean + np.exp(log_std) * noise
  logp = np.sum(stats.norm.logpdf(u, mean, np.exp(log_std)) - np.log1p(-np.tanh(u) ** 2), -1)
  return np.tanh(u), logp


def test_critic_and_actor_losses_by_hand(x64):
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  actor = {"w": np.array([[0.3], [-0.2]]), "log_std": np.array([-0.5])}
  critic, target = {"a": 0.7, "b": -0.4}, {"a": 0.5, "b": 0.1}
  alpha = np.array([0.1, 0.2, 0.05, 0.3])  # per sample, as for the QARL adversary
  key = jax.random.key(3)
  got = sac.critic_loss(critic, target, actor, _critic_fn, _actor_fn,
                        {k: jnp.asarray(v) for k, v in batch.items()}, key, jnp.asarray(alpha),
                        0.9)
  noise = np.asarray(jax.random.normal(key, (4, 1), jnp.float64))
  a2, logp2 = _np_policy(actor, batch["next_obs"], noise)
  s2, t2 = batch["next_obs"].sum(1), a2.sum(1)
  q_next = np.minimum(target["a"] * s2 + t2, target["b"] * s2 - 2 * t2)
  y = batch["reward"] + 0.9 * (1 - batch["done"]) * (q_next - alpha * logp2)
  s, t = batch["obs"].sum(1), batch["action"].sum(1)
  q = np.stack([critic["a"] * s + t, critic["b"] * s - 2 * t], -1)
  assert abs(float(got) - 0.5 * np.mean(np.sum((q - y[:, None]) ** 2, -1))) < 1e-12

  loss, logp = sac.actor_loss(actor, critic, _actor_fn, _critic_fn, jnp.asarray(batch["obs"]),
                              key, 0.2)
  a1, logp1 = _np_policy(actor, batch["obs"], noise)
  q1 = np.minimum(critic["a"] * s + a1.sum(1), critic["b"] * s - 2 * a1.sum(1))
  assert abs(float(loss) - np.mean(0.2 * logp1 - q1)) < 1e-12
  np.testing.assert_allclose(logp, logp1, rtol=1e-12)


def test_temperature_rises_when_entropy_is_below_target():
  logp = jnp.array([0.5, 1.0, 1.5])  # entropy about -1, below a target of 0
  grad = jax.grad(sac.temperature_loss)(jnp.asarray(-2.0), logp, 0.0)
  assert abs(float(grad) + 1.0) < 1e-6  # d/dlog(alpha) = -mean(logp + target)
  np.testing.assert_allclose(sac.soft_update({"w": jnp.ones(2)}, {"w": jnp.zeros(2)}, 0.25)["w"],
                             [0.75, 0.75])


def test_replay_keeps_the_newest_and_samples_only_filled_slots():
  replay = sac.replay_init({"x": jnp.zeros(2), "r": jnp.zeros(())}, 10)
  replay = sac.replay_add(replay, {"x": jnp.ones((3, 2)), "r": jnp.arange(3.0)})
  got = sac.replay_sample(replay, jax.random.key(0), 500)
  assert set(np.asarray(got["r"]).tolist()) == {0.0, 1.0, 2.0}
  for i in range(1, 7):
    replay = sac.replay_add(replay, {"x": jnp.ones((3, 2)), "r": 3.0 * i + jnp.arange(3.0)})
  assert int(replay.size) == 10
  assert sorted(np.asarray(replay.data["r"]).tolist()) == list(np.arange(11.0, 21.0))


def test_bad_settings_raise_naming_them():
  import pytest
  for bad, name in ((dict(tau=0.0), "tau"), (dict(gamma=1.5), "gamma"),
                    (dict(actor_lr=-1.0), "actor_lr"), (dict(initial_alpha=0.0), "initial_alpha")):
    with pytest.raises(ValueError, match=name):
      sac.SACConfig(**bad).validate()
  replay = sac.replay_init({"x": jnp.zeros(())}, 4)
  with pytest.raises(ValueError, match="batch_size"):
    sac.replay_sample(replay, jax.random.key(0), 0)
  with pytest.raises(ValueError, match="capacity"):
    sac.replay_init({"x": jnp.zeros(())}, 0)


def test_sac_learns_a_contextual_bandit():
  """One-step episodes with reward -(a - c)^2 for a context c: from uniformly random
  actions, 1500 updates bring the policy's mean action within 0.1 of c."""
  actor = sac.TanhGaussianActor(1, hidden=(32, 32))
  critic = sac.TwinCritic(hidden=(32, 32))
  cfg = sac.SACConfig(actor_lr=3e-3, critic_lr=3e-3, alpha_lr=3e-3, tau=0.05)
  key = jax.random.key(0)
  state = sac.sac_init(key, actor, critic, 1, 1, cfg)
  rng = np.random.default_rng(0)
  c = rng.uniform(-0.5, 0.5, size=(4096, 1))
  a = rng.uniform(-1, 1, size=(4096, 1))
  data = {"obs": c, "action": a, "reward": -((a - c) ** 2)[:, 0], "next_obs": c,
          "done": np.ones(4096)}
  data = {k: jnp.asarray(v, jnp.float32) for k, v in data.items()}

  def step(state, k):
    k1, k2 = jax.random.split(k)
    idx = jax.random.randint(k1, (256,), 0, 4096)
    return sac.sac_update(state, {n: v[idx] for n, v in data.items()}, k2, actor, critic,
                          cfg)[0], None

  state, _ = jax.jit(lambda s, k: jax.lax.scan(step, s, jax.random.split(k, 1500)))(state, key)
  probe = jnp.linspace(-0.4, 0.4, 9)[:, None]
  mean, _ = actor.apply(state.actor, probe)
  assert float(jnp.max(jnp.abs(jnp.tanh(mean) - probe))) < 0.1
