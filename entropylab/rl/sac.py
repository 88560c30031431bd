r"""Soft actor-critic pieces, pure and jit-able: networks, losses, replay, one update.

Haarnoja et al., "Soft actor-critic algorithms and applications" (arXiv:1812.05905,
2018): a tanh-squashed Gaussian policy, twin critics with target copies, and an
entropy temperature :math:`\alpha` tuned towards a target entropy (Algorithm 1). The
soft Bellman target of a transition ``(s, a, r, s', d)`` is

.. math:: y = r + \gamma (1 - d)\big(\min_i Q_{\bar\theta_i}(s', a') - \alpha \log\pi(a'|s')\big),
   \quad a' \sim \pi(\cdot|s'),

the critics minimise :math:`\tfrac12\sum_i E[(Q_{\theta_i}(s,a) - y)^2]`, the actor
:math:`E[\alpha\log\pi(a|s) - \min_i Q_{\theta_i}(s,a)]` and the temperature
:math:`-E[\log\alpha\,(\log\pi(a|s) + \bar H)]` with target entropy :math:`\bar H`
(:math:`-|A|` by default). For Quantal Adversarial RL (Reddi et al., ICLR 2024) the
adversary's :math:`\alpha` is not learned: it is given per sample (``alpha`` of shape
``[B]``), the temperature its episode was played at.

Log-probabilities are in nats; actions lie in ``(-1, 1)`` per dimension (rescale them
to the environment's box outside).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from entropylab.models import MLP

Array = jax.Array
Params = Any

LOG_STD_BOUNDS = (-20.0, 2.0)


class TanhGaussianActor(nn.Module):
  """``obs [*B, O] -> (mean [*B, A], log_std [*B, A])`` of the Gaussian before the tanh:
  two separate MLPs (QARL's layout), ReLU, ``log_std`` clipped to
  :data:`LOG_STD_BOUNDS`."""

  action_size: int
  hidden: Sequence[int] = (256, 256, 256)

  @nn.compact
  def __call__(self, obs: Array) -> tuple[Array, Array]:
    mean = MLP(features=self.hidden, activation=nn.relu, out_features=self.action_size)(obs)
    log_std = MLP(features=self.hidden, activation=nn.relu,
                  out_features=self.action_size)(obs)
    return mean, jnp.clip(log_std, *LOG_STD_BOUNDS)


class TwinCritic(nn.Module):
  """``(obs [*B, O], action [*B, A]) -> [*B, 2]``: two independent Q networks on the
  concatenated input."""

  hidden: Sequence[int] = (256, 256, 256)

  @nn.compact
  def __call__(self, obs: Array, action: Array) -> Array:
    x = jnp.concatenate([obs, action], axis=-1)
    qs = [MLP(features=self.hidden, activation=nn.relu, out_features=1, squeeze=True)(x)
          for _ in range(2)]
    return jnp.stack(qs, axis=-1)


def squashed_gaussian(noise: Array, mean: Array, log_std: Array) -> tuple[Array, Array]:
  r"""``a = tanh(mean + exp(log_std) * noise)`` and its log-density (nats), summed over
  the last axis:

  .. math:: \log\pi(a) = \sum_j \big[\log N(u_j; \mu_j, \sigma_j^2) - \log(1 - \tanh^2 u_j)\big],

  with :math:`\log(1 - \tanh^2 u) = 2(\log 2 - u - \mathrm{softplus}(-2u))`, finite for
  any ``u``. ``noise``: standard normal draws, the shape of ``mean``."""
  u = mean + jnp.exp(log_std) * noise
  gauss = -0.5 * noise * noise - log_std - 0.5 * math.log(2 * math.pi)
  jacobian = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
  return jnp.tanh(u), jnp.sum(gauss - jacobian, axis=-1)


ActorFn = Callable[[Params, Array], tuple[Array, Array]]
CriticFn = Callable[[Params, Array, Array], Array]


def policy_sample(actor_fn: ActorFn, params, obs: Array, key: Array) -> tuple[Array, Array]:
  """An action ``[*B, A]`` drawn from the actor's squashed Gaussian at ``obs [*B, O]``,
  and its log-density ``[*B]`` (nats)."""
  mean, log_std = actor_fn(params, obs)
  return squashed_gaussian(jax.random.normal(key, mean.shape, mean.dtype), mean, log_std)


def critic_loss(critic_params, target_params, actor_params, critic_fn: CriticFn,
                actor_fn: ActorFn, batch: dict, key: Array, alpha, gamma: float) -> Array:
  """:math:`\\tfrac12 \\sum_i E[(Q_i(s,a) - y)^2]` with the soft Bellman target ``y``
  (module docstring; ``y`` is held fixed).

  Args:
    critic_params, target_params, actor_params: parameters of the online critics,
      their target copies and the actor.
    critic_fn: ``(params, obs [B, O], action [B, A]) -> [B, 2]``.
    actor_fn: ``(params, obs) -> (mean, log_std)`` before the tanh.
    batch: ``obs [B, O]``, ``action [B, A]``, ``reward [B]``, ``next_obs [B, O]``,
      ``done [B]`` (1 where the episode ended by termination, not by a time limit).
    key: draws ``a'``.
    alpha: ``[]`` or per-sample ``[B]`` temperature.
    gamma: discount in ``[0, 1]``.
  """
  next_a, next_logp = policy_sample(actor_fn, actor_params, batch["next_obs"], key)
  q_next = jnp.min(critic_fn(target_params, batch["next_obs"], next_a), axis=-1)
  y = batch["reward"] + gamma * (1.0 - batch["done"]) * (q_next - alpha * next_logp)
  q = critic_fn(critic_params, batch["obs"], batch["action"])
  err = q - jax.lax.stop_gradient(y)[..., None]
  return 0.5 * jnp.mean(jnp.sum(err * err, axis=-1))


def actor_loss(actor_params, critic_params, actor_fn: ActorFn, critic_fn: CriticFn,
               obs: Array, key: Array, alpha) -> tuple[Array, Array]:
  """:math:`E[\\alpha \\log\\pi(a|s) - \\min_i Q_i(s, a)]`, ``a`` reparametrised; also
  returns ``log_prob [B]`` for the temperature loss."""
  a, logp = policy_sample(actor_fn, actor_params, obs, key)
  q = jnp.min(critic_fn(critic_params, obs, a), axis=-1)
  return jnp.mean(alpha * logp - q), logp


def temperature_loss(log_alpha: Array, log_prob: Array, target_entropy: float) -> Array:
  """:math:`-E[\\log\\alpha\\,(\\log\\pi + \\bar H)]` with ``log_prob`` held fixed."""
  return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))


def soft_update(target, online, tau: float):
  """Polyak averaging ``target <- (1 - tau) target + tau online``."""
  return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


# --------------------------------------------------------------------------- replay


class Replay(NamedTuple):
  """A circular replay buffer: ``data`` maps names to ``[capacity, ...]`` arrays,
  ``position []`` is the next slot to write and ``size []`` how many are filled."""

  data: dict
  position: Array
  size: Array


def replay_init(example: dict, capacity: int) -> Replay:
  """An empty buffer for transitions shaped like ``example`` (one transition)."""
  if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
    raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
  data = {k: jnp.zeros((capacity,) + jnp.shape(v), jnp.asarray(v).dtype)
          for k, v in example.items()}
  return Replay(data, jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32))


def replay_add(replay: Replay, batch: dict) -> Replay:
  """Writes ``batch`` (each ``[n, ...]``, ``n <= capacity``) at the next ``n`` slots,
  overwriting the oldest once full."""
  capacity = next(iter(replay.data.values())).shape[0]
  n = next(iter(batch.values())).shape[0]
  if n > capacity:
    raise ValueError(f"a batch of {n} transitions does not fit a buffer of {capacity}")
  slots = (replay.position + jnp.arange(n, dtype=jnp.int32)) % capacity
  data = {k: replay.data[k].at[slots].set(jnp.asarray(batch[k], replay.data[k].dtype))
          for k in replay.data}
  return Replay(data, (replay.position + n) % capacity,
                jnp.minimum(replay.size + n, capacity))


def replay_sample(replay: Replay, key: Array, batch_size: int) -> dict:
  """``batch_size`` transitions drawn uniformly, with replacement, from the filled
  slots (the buffer must hold at least one)."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
  return {k: v[idx] for k, v in replay.data.items()}


# --------------------------------------------------------------------------- update


class SACState(NamedTuple):
  actor: Params
  critic: Params
  target: Params
  log_alpha: Array
  actor_opt: Any
  critic_opt: Any
  alpha_opt: Any


class SACConfig(NamedTuple):
  """Hyperparameters (QARL's defaults: Adam, actor 1e-4, critic and temperature 3e-4,
  tau 0.005, gamma 0.99, initial temperature 0.005, target entropy ``-|A|``)."""

  actor_lr: float = 1e-4
  critic_lr: float = 3e-4
  alpha_lr: float = 3e-4
  tau: float = 0.005
  gamma: float = 0.99
  initial_alpha: float = 0.005
  target_entropy: float | None = None
  learn_alpha: bool = True

  def validate(self) -> None:
    for name in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    if not 0 < self.tau <= 1:
      raise ValueError(f"tau must be in (0, 1], got {self.tau}")
    if not 0 <= self.gamma <= 1:
      raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


def sac_init(key: Array, actor: nn.Module, critic: nn.Module, obs_size: int,
             action_size: int, config: SACConfig = SACConfig()) -> SACState:
  """Fresh parameters (target critic = online critic) and optimiser states."""
  config.validate()
  k1, k2 = jax.random.split(key)
  obs, act = jnp.zeros((1, obs_size)), jnp.zeros((1, action_size))
  actor_p = actor.init(k1, obs)
  critic_p = critic.init(k2, obs, act)
  log_alpha = jnp.asarray(math.log(config.initial_alpha), jnp.float32)
  return SACState(actor_p, critic_p, critic_p, log_alpha,
                  optax.adam(config.actor_lr).init(actor_p),
                  optax.adam(config.critic_lr).init(critic_p),
                  optax.adam(config.alpha_lr).init(log_alpha))


def sac_update(state: SACState, batch: dict, key: Array, actor: nn.Module,
               critic: nn.Module, config: SACConfig = SACConfig(),
               alpha=None) -> tuple[SACState, dict]:
  """One gradient step of the critics, the actor and (if learned) the temperature,
  then the target update. ``alpha``: ``None`` for the learned temperature, or a fixed
  ``[]``/``[B]`` temperature (the QARL adversary's, per sample). Returns the new state
  and the losses."""
  k_critic, k_actor = jax.random.split(key)
  actor_fn, critic_fn = actor.apply, critic.apply
  a = jnp.exp(state.log_alpha) if alpha is None else jnp.asarray(alpha)
  c_loss, c_grad = jax.value_and_grad(critic_loss)(
      state.critic, state.target, state.actor, critic_fn, actor_fn, batch, k_critic, a,
      config.gamma)
  updates, critic_opt = optax.adam(config.critic_lr).update(c_grad, state.critic_opt)
  critic_p = optax.apply_updates(state.critic, updates)
  (a_loss, logp), a_grad = jax.value_and_grad(actor_loss, has_aux=True)(
      state.actor, critic_p, actor_fn, critic_fn, batch["obs"], k_actor, a)
  updates, actor_opt = optax.adam(config.actor_lr).update(a_grad, state.actor_opt)
  actor_p = optax.apply_updates(state.actor, updates)
  log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
  t_loss = jnp.zeros(())
  if alpha is None and config.learn_alpha:
    target_entropy = (-float(batch["action"].shape[-1]) if config.target_entropy is None
                      else config.target_entropy)
    t_loss, t_grad = jax.value_and_grad(temperature_loss)(log_alpha, logp, target_entropy)
    updates, alpha_opt = optax.adam(config.alpha_lr).update(t_grad, alpha_opt)
    log_alpha = optax.apply_updates(log_alpha, updates)
  target = soft_update(state.target, critic_p, config.tau)
  new = SACState(actor_p, critic_p, target, log_alpha, actor_opt, critic_opt, alpha_opt)
  return new, {"critic_loss": c_loss, "actor_loss": a_loss, "temperature_loss": t_loss,
               "entropy": -jnp.mean(logp)}


__all__ = [
    "LOG_STD_BOUNDS",
    "Replay",
    "SACConfig",
    "SACState",
    "TanhGaussianActor",
    "TwinCritic",
    "actor_loss",
    "critic_loss",
    "policy_sample",
    "replay_add",
    "replay_init",
    "replay_sample",
    "sac_init",
    "sac_update",
    "soft_update",
    "squashed_gaussian",
    "temperature_loss",
]
