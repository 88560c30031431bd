r"""Quantal Adversarial RL on Brax: two-player soft actor-critic with a temperature curriculum.

Reddi, Toelle, Peters, Chalvatzaki & D'Eramo, "Robust adversarial reinforcement learning
via bounded rationality curricula" (ICLR 2024). A protagonist and an adversary that
pushes the robot (:class:`entropylab.rl.envs.AdversarialEnv`) play a zero-sum game in
which each is regularised by its own policy entropy; the adversary's temperature
:math:`\alpha` sets how rational it is, and a curriculum lowers it from nearly random
to rational (the quantal response equilibrium approaches the Nash equilibrium of robust
adversarial RL, Pinto et al. 2017, as :math:`\alpha \to 0`).

One training iteration (QARL's schedule) draws one temperature per episode for
``episodes`` parallel episodes of ``episode_length`` steps, then runs

1. an adversary phase: the adversary learns (soft actor-critic whose temperature is
   each sample's episode temperature, not learned), the protagonist acts without
   learning;
2. a protagonist phase with the same temperatures: the protagonist learns (its own
   temperature auto-tuned), the adversary acts.

Both players observe the environment's observation with the temperature appended. Each
learns from its own phases' transitions, one gradient step per
``env_steps_per_update`` transitions once its replay holds ``learning_starts``. The
episodes' discounted protagonist returns and temperatures feed the self-paced teacher
(:mod:`entropylab.rl.teacher`) every ``teacher_every`` episodes.

``mode`` selects the method from the same code: ``"qarl"`` (self-paced Gamma
temperatures), ``"rarl"`` (a rational adversary, :math:`\alpha = 0`), ``"linear"``
(:func:`entropylab.rl.teacher.linear_temperature`), ``"force"`` (rational adversary
whose force bound grows linearly over the first two thirds of training) and ``"sac"``
(no adversary: the protagonist learns in both phases, with no force).

:func:`make_train` returns pure functions: ``init(key)``, ``iteration(state)`` (one
iteration, jit-able, vmap-able over seeds) and ``train(key)`` (every iteration in one
``lax.scan``). Episodes end at termination (hopper, walker2d, inverted_pendulum) or at
``episode_length``; a terminated environment restarts from its episode's first state,
and the critics bootstrap through the time limit. Returns are in the environment's
reward units.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from entropylab.info import _checks
from entropylab.rl import sac as sac_lib
from entropylab.rl import teacher as tch
from entropylab.rl.envs import ENV_NAMES, AdversarialEnv

Array = jax.Array
MODES = ("qarl", "rarl", "linear", "force", "sac")


@dataclasses.dataclass(frozen=True)
class QARLConfig:
  """Settings of a two-player run (QARL's defaults where it has them).

  Attributes:
    env: one of :data:`entropylab.rl.envs.ENV_NAMES`.
    mode: one of :data:`MODES`.
    max_force: bound of each force component of the adversary (newtons).
    iterations: training iterations.
    episodes: parallel episodes per phase (QARL: 5).
    episode_length: steps per episode (QARL: 500).
    env_steps_per_update: transitions per gradient step (QARL: 3).
    batch_size: SAC minibatch.
    replay_size: capacity of each player's replay buffer.
    learning_starts: transitions in a replay before its player's updates begin.
    hidden: hidden widths of every actor and critic network.
    sac: SAC hyperparameters (both players).
    teacher: the self-paced teacher's settings (``mode="qarl"``).
    teacher_every: episodes per teacher update; a multiple of ``2 * episodes``.
    linear_start, linear_end: the linear curriculum's temperatures.
  """

  env: str = "halfcheetah"
  mode: str = "qarl"
  max_force: float = 1.0
  iterations: int = 200
  episodes: int = 5
  episode_length: int = 500
  env_steps_per_update: int = 3
  batch_size: int = 256
  replay_size: int = 1_000_000
  learning_starts: int = 3000
  hidden: tuple[int, ...] = (256, 256, 256)
  sac: sac_lib.SACConfig = sac_lib.SACConfig()
  teacher: tch.GammaTeacherConfig = tch.GammaTeacherConfig()
  teacher_every: int = 30
  linear_start: float = 0.05
  linear_end: float = 0.001

  def validate(self) -> None:
    if self.env not in ENV_NAMES:
      raise ValueError(f"env must be one of {ENV_NAMES}, got {self.env!r}")
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
    for name in ("iterations", "episodes", "episode_length", "env_steps_per_update",
                 "batch_size", "replay_size", "teacher_every"):
      _checks.check_positive_int(getattr(self, name), name)
    if isinstance(self.learning_starts, bool) or not isinstance(self.learning_starts, int) \
        or self.learning_starts < 0:
      raise ValueError(f"learning_starts must be an int >= 0, got {self.learning_starts!r}")
    if not (math.isfinite(self.max_force) and self.max_force >= 0):
      raise ValueError(f"max_force must be a finite number >= 0, got {self.max_force}")
    for name in ("linear_start", "linear_end"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite temperature >= 0, got {value}")
    if self.teacher_every % (2 * self.episodes):
      raise ValueError(f"teacher_every ({self.teacher_every}) must be a multiple of the "
                       f"episodes per iteration (2 * episodes = {2 * self.episodes})")
    if not self.hidden or min(self.hidden) < 1:
      raise ValueError(f"hidden must be positive layer widths, got {self.hidden}")
    self.teacher.validate()
    self.sac.validate()


class Player(NamedTuple):
  sac: sac_lib.SACState
  replay: sac_lib.Replay


class TrainState(NamedTuple):
  """Everything one run carries between iterations (a pytree; vmap it over seeds)."""

  protagonist: Player
  adversary: Player
  teacher: tch.TeacherState
  teacher_temperatures: Array  # [teacher_every] episodes since the last update
  teacher_returns: Array       # [teacher_every]
  iteration: Array             # []
  key: Array


class Train(NamedTuple):
  """What :func:`make_train` returns."""

  env: AdversarialEnv
  init: Any
  iteration: Any
  train: Any
  act: Any
  evaluate: Any
  rollout: Any


def make_train(config: QARLConfig) -> Train:
  """Builds the run's pure functions (module docstring)."""
  config.validate()
  env = AdversarialEnv(config.env, max_force=config.max_force)
  obs_size = env.observation_size + 1  # the temperature is appended
  actor_p = sac_lib.TanhGaussianActor(env.action_size, config.hidden)
  actor_a = sac_lib.TanhGaussianActor(env.adversary_action_size, config.hidden)
  critic = sac_lib.TwinCritic(config.hidden)
  n_env, length = config.episodes, config.episode_length
  gamma = config.sac.gamma
  teacher_slots = config.teacher_every // (2 * n_env)
  no_adversary = config.mode == "sac"

  # A player's replay never needs more slots than the transitions it will receive (then
  # it never wraps, and a smaller buffer samples exactly as the configured one would).
  per_run = config.iterations * n_env * length
  capacity = {
      "protagonist": min(config.replay_size, max(n_env, per_run * (2 if no_adversary else 1))),
      "adversary": min(config.replay_size, max(n_env, 0 if no_adversary else per_run)),
  }

  def empty_replay(player, action_size):
    example = {"obs": jnp.zeros(obs_size), "action": jnp.zeros(action_size),
               "reward": jnp.zeros(()), "next_obs": jnp.zeros(obs_size),
               "done": jnp.zeros(()), "temperature": jnp.zeros(())}
    return sac_lib.replay_init(example, capacity[player])

  def init(key: Array) -> TrainState:
    kp, ka, kt = jax.random.split(key, 3)
    prot = sac_lib.sac_init(kp, actor_p, critic, obs_size, env.action_size, config.sac)
    adv = sac_lib.sac_init(ka, actor_a, critic, obs_size, env.adversary_action_size,
                           config.sac)
    return TrainState(Player(prot, empty_replay("protagonist", env.action_size)),
                      Player(adv, empty_replay("adversary", env.adversary_action_size)),
                      tch.teacher_init(config.teacher),
                      jnp.zeros(config.teacher_every), jnp.zeros(config.teacher_every),
                      jnp.asarray(0, jnp.int32), kt)

  def act(actor, params, obs, key, deterministic=False):
    if deterministic:
      return jnp.tanh(actor.apply(params, obs)[0])
    return sac_lib.policy_sample(actor.apply, params, obs, key)[0]

  def temperatures(state: TrainState, key: Array) -> Array:
    it = state.iteration
    if config.mode == "qarl":
      return tch.sample_temperatures(key, state.teacher, config.teacher, (n_env,))
    if config.mode == "linear":
      t = tch.linear_temperature(it, config.iterations, config.linear_start,
                                 config.linear_end)
      return jnp.full((n_env,), t)
    return jnp.zeros((n_env,))

  def force_scale(state: TrainState) -> Array:
    if config.mode == "force":
      return jnp.clip(state.iteration / (2.0 / 3.0 * config.iterations), 0.0, 1.0)
    return jnp.asarray(0.0 if no_adversary else 1.0)

  def learn(player: Player, batch_key, actor, fixed_alpha: bool) -> Player:
    def update(p):
      k1, k2 = jax.random.split(batch_key)
      batch = sac_lib.replay_sample(p.replay, k1, config.batch_size)
      alpha = batch["temperature"] if fixed_alpha else None
      new, _ = sac_lib.sac_update(p.sac, batch, k2, actor, critic, config.sac, alpha)
      return p._replace(sac=new)

    return jax.lax.cond(player.replay.size >= max(config.learning_starts, 1), update,
                        lambda p: p, player)

  def phase(state: TrainState, temps: Array, learner: str, key: Array):
    """``episode_length`` steps of ``episodes`` parallel episodes; ``learner`` is
    ``"protagonist"`` or ``"adversary"``. Returns the state, the episodes' discounted
    and undiscounted protagonist returns ``[episodes]`` (up to the first end)."""
    k_reset, k_run = jax.random.split(key)
    first = jax.vmap(env.reset)(jax.random.split(k_reset, n_env))
    scale = force_scale(state)

    def step(carry, t):
      st, env_state, alive, disc, total, k = carry
      k, k_p, k_a, k_u = jax.random.split(k, 4)
      obs = jnp.concatenate([env_state.obs, temps[:, None]], axis=1)
      a_p = act(actor_p, st.protagonist.sac.actor, obs, k_p)
      a_a = act(actor_a, st.adversary.sac.actor, obs, k_a) * scale
      nxt = jax.vmap(env.step)(env_state, a_p, a_a)
      done = nxt.done
      r = nxt.reward
      next_obs = jnp.concatenate([nxt.obs, temps[:, None]], axis=1)
      disc = disc + alive * (gamma ** t) * r
      total = total + alive * r
      alive = alive * (1.0 - done)
      # Terminated environments restart from their episode's first state.
      restart = lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)) > 0, a, b)
      env_state = jax.tree.map(restart, first, nxt)
      if learner == "protagonist":
        tr = {"obs": obs, "action": a_p, "reward": r, "next_obs": next_obs, "done": done,
              "temperature": temps}
        player = st.protagonist._replace(
            replay=sac_lib.replay_add(st.protagonist.replay, tr))
      else:
        tr = {"obs": obs, "action": a_a, "reward": -r, "next_obs": next_obs, "done": done,
              "temperature": temps}
        player = st.adversary._replace(replay=sac_lib.replay_add(st.adversary.replay, tr))
      # One update per env_steps_per_update transitions, spread evenly over the steps.
      count = ((t + 1) * n_env) // config.env_steps_per_update \
          - (t * n_env) // config.env_steps_per_update
      actor = actor_p if learner == "protagonist" else actor_a
      fixed = learner == "adversary"
      player = jax.lax.fori_loop(
          0, count, lambda i, p: learn(p, jax.random.fold_in(k_u, i), actor, fixed), player)
      st = (st._replace(protagonist=player) if learner == "protagonist"
            else st._replace(adversary=player))
      return (st, env_state, alive, disc, total, k), None

    init = (state, first, jnp.ones(n_env), jnp.zeros(n_env), jnp.zeros(n_env), k_run)
    (state, _, _, disc, total, _), _ = jax.lax.scan(step, init, jnp.arange(length))
    return state, disc, total

  def iteration(state: TrainState) -> tuple[TrainState, dict]:
    key, k_temp, k_adv, k_prot = jax.random.split(state.key, 4)
    temps = temperatures(state, k_temp)
    if no_adversary:
      # Both phases are the protagonist's: one traced phase, scanned twice (half the
      # program to compile; the same arithmetic as two calls).
      def both(st, k):
        st, disc, ret = phase(st, temps, "protagonist", k)
        return st, (disc, ret)

      state, (disc, ret) = jax.lax.scan(both, state, jnp.stack([k_adv, k_prot]))
      (disc_a, disc_p), (ret_a, ret_p) = disc, ret
    else:
      state, disc_a, ret_a = phase(state, temps, "adversary", k_adv)
      state, disc_p, ret_p = phase(state, temps, "protagonist", k_prot)
    # The teacher's buffer: both phases' episodes, updated every teacher_every.
    slot = state.iteration % teacher_slots
    t_buf = jax.lax.dynamic_update_slice(state.teacher_temperatures,
                                         jnp.concatenate([temps, temps]), (slot * 2 * n_env,))
    r_buf = jax.lax.dynamic_update_slice(state.teacher_returns,
                                         jnp.concatenate([disc_a, disc_p]), (slot * 2 * n_env,))
    teacher = state.teacher
    if config.mode == "qarl":
      ready = slot == teacher_slots - 1
      teacher = jax.lax.cond(
          ready, lambda: tch.teacher_update(state.teacher, t_buf, r_buf, config.teacher)[0],
          lambda: state.teacher)
    new = state._replace(teacher=teacher, teacher_temperatures=t_buf, teacher_returns=r_buf,
                         iteration=state.iteration + 1, key=key)
    metrics = {
        "return_adversary_phase": jnp.mean(ret_a),
        "return_protagonist_phase": jnp.mean(ret_p),
        "discounted_return": jnp.mean(jnp.concatenate([disc_a, disc_p])),
        "temperature": jnp.mean(temps),
        "teacher_mean_temperature": teacher.concentration / config.teacher.rate,
        "force_scale": force_scale(state),
        "protagonist_alpha": jnp.exp(new.protagonist.sac.log_alpha),
    }
    return new, metrics

  def train(key: Array):
    state = init(key)
    return jax.lax.scan(lambda s, _: iteration(s), state, None, length=config.iterations)

  def rollout(state: TrainState, key: Array, mass: Array, friction: Optional[Array],
              push: Array, steps: Optional[int] = None) -> Array:
    """The undiscounted protagonist return ``[]`` of one episode (``steps``, default
    ``episode_length``, up to its end) from ``env.reset(key)`` on
    ``env.system(mass, friction)`` (``friction`` a scalar, one value per geom, or
    ``None`` for the model's own), both players acting on their Gaussians' means at
    temperature 0, the adversary's force multiplied by ``push`` (0 = no adversary,
    1 = the full bound). Every argument but ``steps`` may be traced (vmap it over
    cells, keys or seeds)."""
    zero = jnp.zeros((1,))
    system = env.system(mass, friction)
    first = env.reset(key, system=system)
    push = jnp.asarray(push, jnp.float32)

    def step(carry, _):
      s, alive, total = carry
      obs = jnp.concatenate([s.obs, zero])
      a_p = act(actor_p, state.protagonist.sac.actor, obs, None, deterministic=True)
      a_a = act(actor_a, state.adversary.sac.actor, obs, None, deterministic=True)
      nxt = env.step(s, a_p, a_a * push, system=system)
      total = total + alive * nxt.reward
      return (nxt, alive * (1.0 - nxt.done), total), None

    init_carry = (first, jnp.asarray(1.0), jnp.asarray(0.0))
    return jax.lax.scan(step, init_carry, None, length=steps or length)[0][2]

  def evaluate(state: TrainState, key: Array, masses: Array, frictions: Optional[Array],
               adversary: bool = True, steps: Optional[int] = None) -> Array:
    """``[len(masses), len(frictions)]`` returns of :func:`rollout` from one start
    state (``key``) per cell of the robustness grid (:meth:`AdversarialEnv.system`),
    with the trained adversary pushing at the full force bound when ``adversary``.
    All cells run in one vmapped batch. ``frictions=None`` keeps the model's own
    frictions and returns ``[len(masses)]``."""
    push = jnp.asarray(adversary, jnp.float32)  # traced: one compilation for both
    episode = lambda m, f: rollout(state, key, m, f, push, steps)
    if frictions is None:
      return jax.vmap(lambda m: episode(m, None))(jnp.asarray(masses))
    m, f = jnp.meshgrid(jnp.asarray(masses), jnp.asarray(frictions), indexing="ij")
    out = jax.vmap(episode)(m.reshape(-1), f.reshape(-1))
    return out.reshape(m.shape)

  return Train(env, init, iteration, train, act, evaluate, rollout)


__all__ = ["MODES", "Player", "QARLConfig", "Train", "TrainState", "make_train"]
