"""Markov coding games beyond tabular MDPs: MEME and MEC-B on a Brax environment.

The gridworld study (:mod:`experiments.coding_game`) on a continuous-control task. A
maximum-entropy policy is trained with the soft actor-critic of :mod:`entropylab.rl`
(QARL's training loop in its ``"sac"`` mode: no adversary, learned temperature,
:func:`entropylab.rl.make_train`) on Brax's ``inverted_pendulum`` (mjx backend). Its
tanh-Gaussian is then discretised exactly into ``bins`` bins per action dimension
(:func:`entropylab.rl.discretized_tanh_gaussian`; the agent plays the bin centres,
:class:`entropylab.rl.DiscreteActions`) and ``std_scale`` multiplies the Gaussian's
standard deviation, the analogue of the gridworld's soft-Q temperature: a small scale
is greedy, a large one leaves more action entropy to carry the message. For every
``std_scale`` and compression ratio ``H(M)/R`` (EBIM against the uniform quantiser;
ratio 1 = plain greedy MEC), ``episodes`` uniform messages are sent, one episode each
(:func:`entropylab.rl.play_coding_game`, split over all devices when there are
several).

Training checkpoints every ``checkpoint_every`` iterations (``train/``) and every grid
point is written to ``cells/`` when done; ``--resume`` continues both.

Outputs: ``reward_accuracy.png`` (reward against accuracy per rate, one point per
``std_scale``), ``belief_entropy.png``, ``table.md`` and ``summary.json`` (the trained
policy's return when it acts on its means, and accuracy and reward per point).
Rewards are Brax's (1 per step while the pole is up), discounted by ``discount``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import rl
from entropylab.runner import devices
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir, write_json
import experiments
from experiments.coding_game import (METHODS, episode_summary, plot_belief_entropy,
                                     plot_reward_accuracy, write_table)
from experiments.qarl import train_resumable

ENVS = ("inverted_pendulum",)


@dataclasses.dataclass(frozen=True)
class Config:
  env: str = "inverted_pendulum"
  bins: int = 5
  # SAC training (QARL's loop, mode "sac"): iterations of 2 x episodes x episode_length
  # environment steps.
  iterations: int = 100
  train_episodes: int = 4
  episode_length: int = 200
  batch_size: int = 64
  learning_starts: int = 400
  hidden: tuple[int, ...] = (64, 64)
  checkpoint_every: int = 10
  # The coding game.
  std_scales: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0, 3.0)
  messages: int = 256
  ratios: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # H(M) / R
  methods: tuple[str, ...] = METHODS
  episodes: int = 128
  horizon: int = 200
  discount: float = 0.99  # SAC's; at the gridworld's 0.95 step 100 weighs 0.006
  entropy_steps: int = 60
  seed: int = 0
  progress: bool = True

  def validate(self) -> None:
    if self.env not in ENVS:
      raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
    for name in ("bins", "iterations", "train_episodes", "episode_length", "batch_size",
                 "checkpoint_every", "messages", "episodes", "horizon", "entropy_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if self.bins < 2 or self.messages < 2:
      raise ValueError(f"bins and messages must be >= 2, got {self.bins}, {self.messages}")
    if not self.std_scales or any(not (math.isfinite(s) and s > 0) for s in self.std_scales):
      raise ValueError(f"std_scales must be finite numbers > 0, got {self.std_scales}")
    if not self.ratios or any(not (math.isfinite(r) and r >= 1) for r in self.ratios):
      raise ValueError(f"ratios (H(M)/R) must be finite numbers >= 1, got {self.ratios}")
    if not self.methods or any(m not in METHODS for m in self.methods):
      raise ValueError(f"methods must be names from {METHODS}, got {self.methods}")
    if not (0.0 <= self.discount < 1.0):
      raise ValueError(f"discount must be in [0, 1), got {self.discount}")

  def qarl_config(self) -> rl.QARLConfig:
    return rl.QARLConfig(env=self.env, mode="sac", iterations=self.iterations,
                         episodes=self.train_episodes, episode_length=self.episode_length,
                         batch_size=self.batch_size, learning_starts=self.learning_starts,
                         hidden=self.hidden, teacher_every=2 * self.train_episodes)


PRESETS = {
    # About a minute of training and a 2 x 3 grid of 32 episodes on 2 CPU cores.
    "smoke": Config(iterations=8, checkpoint_every=4, std_scales=(0.1, 1.0), messages=64,
                    ratios=(1.0, 2.0, 4.0), episodes=32, horizon=100),
    "paper": Config(),
}


def grid(cfg: Config) -> list[tuple[float, float, str]]:
  """Grid points ``(std_scale, ratio, method)``; ratio 1 has the one method ``"none"``."""
  return [(s, r, m) for s in cfg.std_scales for r in cfg.ratios
          for m in (("none",) if r == 1 else cfg.methods)]


@functools.lru_cache(maxsize=4)
def _programs(cfg: Config):
  """Jitted training iteration, nominal evaluation and coding game of one config."""
  train = rl.make_train(cfg.qarl_config())
  env = rl.DiscreteActions(train.env.env, cfg.bins)
  actor = rl.sac.TanhGaussianActor(train.env.action_size, cfg.hidden)
  prior = jnp.full(cfg.messages, 1.0 / cfg.messages)
  mesh = devices.make_mesh("episodes") if jax.device_count() > 1 else None

  def policy(params, std_scale):
    def fn(state):
      # The "sac" mode's players see the observation with a zero temperature appended.
      mean, log_std = actor.apply(params, jnp.concatenate([state.obs, jnp.zeros(1)]))
      return rl.discretized_tanh_gaussian(mean, log_std, cfg.bins, std_scale)
    return fn

  @functools.partial(jax.jit, static_argnums=0)
  def play_on_mesh(method, params, key, messages, rate, std_scale):
    return rl.play_coding_game(key, env, policy(params, std_scale), messages, prior, rate,
                               method, horizon=cfg.horizon, discount=cfg.discount,
                               mesh=mesh)

  def play(method, params, *args):
    # The episodes are sharded over the mesh, so the policy's parameters go on all of its
    # devices (a restored checkpoint's are committed to one device, which jit refuses).
    if mesh is not None:
      params = devices.replicate(params, mesh)
    return play_on_mesh(method, params, *args)

  nominal = jax.jit(jax.vmap(lambda st, k: train.rollout(st, k, 1.0, None, 0.0,
                                                         cfg.horizon), in_axes=(None, 0)))
  return train, jax.jit(train.init), jax.jit(train.iteration), nominal, play


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  cfg.validate()
  train, init, iteration, nominal, play = _programs(cfg)
  key = jax.random.key(cfg.seed)
  k_train, k_eval, k_game = jax.random.split(key, 3)
  steps_per_iteration = 2 * cfg.train_episodes * cfg.episode_length
  state, seconds, timed = train_resumable(
      iteration, init(k_train), RunDir(run_dir.path / "train"), cfg.iterations,
      cfg.checkpoint_every, resume, f"sac {cfg.env}", steps_per_iteration, cfg.progress)
  params = state.protagonist.sac.actor
  returns = np.asarray(nominal(state, jax.random.split(k_eval, 8)), np.float64)
  if not np.all(np.isfinite(returns)):
    raise FloatingPointError("non-finite return of the trained policy")
  write_json(run_dir.path / "policy.json", {
      "env_steps": cfg.iterations * steps_per_iteration,
      "return_on_means": float(returns.mean()), "horizon": cfg.horizon,
      "train_env_steps_per_s": steps_per_iteration * timed / seconds if timed else None})

  h_m = math.log2(cfg.messages)
  points = grid(cfg)

  def compute(point):
    std_scale, ratio, method = point
    k = jax.random.fold_in(k_game, points.index(point))
    k_msg, k_play = jax.random.split(k)
    messages = jax.random.randint(k_msg, (cfg.episodes,), 0, cfg.messages)
    rate = h_m / ratio
    ep = play(method, params, k_play, messages, jnp.asarray(rate, jnp.float32),
              jnp.asarray(std_scale, jnp.float32))
    return {"std_scale": std_scale, "ratio": ratio, "method": method, "rate_bits": rate,
            **episode_summary(ep, cfg.entropy_steps, f"std_scale {std_scale}, ratio {ratio}")}

  cells = [(f"s{s:g}_r{r:g}_{m}".replace(".", "_"), (s, r, m)) for s, r, m in points]
  results = run_cells(run_dir, cells, compute, resume=resume, desc="coding_game_brax",
                      progress=cfg.progress,
                      metrics=lambda x: {"accuracy": x["accuracy"], "reward": x["reward"]})
  rows = [results[pt] for pt in points]
  plot_reward_accuracy(rows, "std_scale", cfg.ratios, cfg.methods,
                       run_dir.figure_path("reward_accuracy"),
                       f"{cfg.env}, {cfg.bins} bins, {cfg.messages} messages; points along "
                       f"a line: std scale {cfg.std_scales}")
  plot_belief_entropy(rows, "std_scale", cfg.std_scales, lambda s: f"std scale {s:g}",
                      run_dir.figure_path("belief_entropy"))
  preface = (f"SAC policy after {cfg.iterations * steps_per_iteration} env steps: return "
             f"{returns.mean():.1f} over {cfg.horizon} steps acting on its means.", "")
  table = write_table(rows, "std scale", lambda x: f"{x['std_scale']:g}", run_dir, preface)
  ebim_ge_uniform = all(
      results[(s, r, "ebim")]["accuracy"] >= results[(s, r, "uniform")]["accuracy"]
      for s, r, _ in points if r > 1 and "ebim" in cfg.methods and "uniform" in cfg.methods)
  return {"env": cfg.env, "bins": cfg.bins, "messages": cfg.messages,
          "episodes_per_point": cfg.episodes, "policy_return_on_means": float(returns.mean()),
          "ratio_convention": "H(M)/R", "ebim_at_least_uniform_accuracy": ebim_ge_uniform,
          "results": table}


experiments.register(
    "coding_game_brax",
    "Markov coding game on Brax inverted_pendulum with a discretised SAC policy",
    PRESETS,
    run,
)
