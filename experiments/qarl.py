"""Robustness of QARL against RARL, SAC and a linear temperature curriculum on Brax.

Reddi, Toelle, Peters, Chalvatzaki & D'Eramo, "Robust adversarial reinforcement learning
via bounded rationality curricula" (ICLR 2024): a protagonist trained against an
adversary that pushes the robot, with the adversary's temperature lowered by a
self-paced curriculum (QARL), is compared with the same two-player loop at temperature 0
(RARL), with a linear temperature schedule, and with single-player SAC. Each method
trains ``seeds`` seeds at once under ``jax.vmap`` (sharded over the devices when they
divide ``seeds``) with :func:`entropylab.rl.make_train`, then every protagonist is
evaluated at temperature 0, acting on its Gaussian's mean:

* on the robustness grid, ``grid_size`` x ``grid_size`` values of the environment's
  body mass scale x the friction of every geom (``ROBUSTNESS_GRIDS``, QARL's ranges),
  without adversary, all cells in one vmapped batch;
* on the nominal model, without adversary and against its own trained adversary at the
  full force bound (``eval_episodes`` start states each).

QARL's self-paced teacher needs a discounted-return floor; the presets use QARL's values
(halfcheetah 10, walker2d 10, hopper 1), which were set for dm_control's rewards. Brax's
rewards have other scales (its hopper and walker2d pay 1 per step alive), so the floor
is met sooner than in the paper; ``return_floors`` changes it.

Training checkpoints every ``checkpoint_every`` iterations under
``train/<env>_<mode>/`` (orbax, with the runner's integrity manifests), logging each
iteration's seed-mean metrics there; ``--resume`` restores the newest checkpoint and
continues bit for bit, and finished (env, mode) cells are read back from ``cells/``.
The progress bar shows iterations and environment steps per second.

The paper preset (1M environment steps per run) is an accelerator job: on the 2-core
CPU the two-player loop runs a few hundred environment steps per second in aggregate
(``benchmarks/results/bench_qarl_cpu.md``).

Outputs: ``robustness_<env>.png`` (heatmap of the seed-mean return per method),
``curriculum.png`` (temperature and training return over iterations), ``table.md``,
``cells/``, ``summary.json`` (per env and method: grid mean, interquartile mean and
quartiles of the return, nominal returns, throughput; and whether QARL's grid mean is at
least RARL's and SAC's).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import rl
from entropylab.rl import sac as sac_lib
from entropylab.rl import teacher as tch
from entropylab.runner import checkpoint, devices
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir
import experiments

QARL_RETURN_FLOORS = (("halfcheetah", 10.0), ("walker2d", 10.0), ("hopper", 1.0),
                      ("inverted_pendulum", 10.0))


@dataclasses.dataclass(frozen=True)
class Config:
  envs: tuple[str, ...] = ("halfcheetah", "hopper", "walker2d")
  modes: tuple[str, ...] = ("qarl", "rarl", "sac", "linear")
  seeds: int = 5
  seed: int = 0
  iterations: int = 200
  episodes: int = 5
  episode_length: int = 500
  env_steps_per_update: int = 3
  batch_size: int = 256
  replay_size: int = 1_000_000
  learning_starts: int = 3000
  hidden: tuple[int, ...] = (256, 256, 256)
  max_force: float = 1.0
  teacher_every: int = 30
  return_floors: tuple[tuple[str, float], ...] = QARL_RETURN_FLOORS
  grid_size: int = 11
  eval_episodes: int = 5
  checkpoint_every: int = 10
  progress: bool = True

  def validate(self) -> None:
    if not self.envs or len(set(self.envs)) != len(self.envs):
      raise ValueError(f"envs must be distinct names from {rl.ENV_NAMES}, got {self.envs}")
    if not self.modes or len(set(self.modes)) != len(self.modes):
      raise ValueError(f"modes must be distinct names from {rl.MODES}, got {self.modes}")
    for name in ("seeds", "grid_size", "eval_episodes", "checkpoint_every"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    floors = dict(self.return_floors)
    for env in self.envs:
      if "qarl" in self.modes and env not in floors:
        raise ValueError(f"return_floors has no floor for env {env!r} (mode 'qarl')")
    for env in self.envs:  # the run's own checks (env and mode names, sizes, ...)
      for mode in self.modes:
        self.qarl_config(env, mode).validate()

  def qarl_config(self, env: str, mode: str) -> rl.QARLConfig:
    floor = dict(self.return_floors).get(env, 0.0)
    return rl.QARLConfig(
        env=env, mode=mode, max_force=self.max_force, iterations=self.iterations,
        episodes=self.episodes, episode_length=self.episode_length,
        env_steps_per_update=self.env_steps_per_update, batch_size=self.batch_size,
        replay_size=self.replay_size, learning_starts=self.learning_starts,
        hidden=tuple(self.hidden), sac=sac_lib.SACConfig(),
        teacher=tch.GammaTeacherConfig(return_floor=float(floor)),
        teacher_every=self.teacher_every)


PRESETS = {
    # inverted_pendulum, 2 seeds x 4800 env steps per method, a 5 x 5 grid: minutes on
    # 2 CPU cores, every stage of the paper preset's pipeline.
    "smoke": Config(envs=("inverted_pendulum",), seeds=2, iterations=6, episodes=2,
                    episode_length=200, batch_size=64, learning_starts=400,
                    hidden=(64, 64), max_force=5.0, teacher_every=8, grid_size=5,
                    eval_episodes=2, checkpoint_every=2),
    "paper": Config(),
}


@functools.lru_cache(maxsize=8)
def _programs(qcfg: rl.QARLConfig, grid_size: int, eval_episodes: int):
  """Jitted ``init``, ``iteration`` and ``evaluate`` of one run, vmapped over seeds
  (cached: a resumed or repeated run in the same process does not recompile)."""
  run = rl.make_train(qcfg)
  masses, frictions = run.env.robustness_grid(grid_size)

  # Every evaluation episode of a seed in one flat batch (one compilation): the grid
  # cells without adversary, then the nominal model without and with the adversary.
  g = grid_size * grid_size
  nominal = np.asarray(run.env.env.sys.geom_friction[:, 0])
  m, f = np.meshgrid(np.asarray(masses), np.asarray(frictions), indexing="ij")
  cell_mass = np.concatenate([m.reshape(-1), np.ones(2 * eval_episodes)])
  cell_friction = np.concatenate([np.repeat(f.reshape(-1, 1), nominal.size, axis=1),
                                  np.tile(nominal, (2 * eval_episodes, 1))])
  cell_push = np.concatenate([np.zeros(g + eval_episodes), np.ones(eval_episodes)])

  def evaluate(state, key):
    k_grid, k_nom = jax.random.split(key)
    keys = jnp.concatenate([jnp.broadcast_to(k_grid, (g,)),
                            jnp.tile(jax.random.split(k_nom, eval_episodes), 2)])
    out = jax.vmap(run.rollout, in_axes=(None, 0, 0, 0, 0))(
        state, keys, cell_mass, cell_friction, cell_push)
    return (out[:g].reshape(grid_size, grid_size), out[g:g + eval_episodes],
            out[g + eval_episodes:])

  return (jax.jit(jax.vmap(run.init)), jax.jit(jax.vmap(run.iteration)),
          jax.jit(jax.vmap(evaluate)), np.asarray(masses), np.asarray(frictions))


def _seed_mesh(seeds: int):
  n = jax.device_count()
  return devices.make_mesh("seeds") if n > 1 and seeds % n == 0 else None


def train_resumable(iteration, state, train_dir: RunDir, iterations: int,
                    checkpoint_every: int, resume: bool, desc: str,
                    steps_per_iteration: int, progress: bool = True):
  """Runs ``iteration(state) -> (state, metrics)`` until ``iterations`` are done, with
  orbax checkpoints in ``train_dir`` every ``checkpoint_every`` iterations and at the
  end, per-iteration metrics (means, env steps/s) in its ``metrics.jsonl``, and a
  progress bar. With ``resume`` it continues from the newest valid checkpoint (the
  iterations are deterministic functions of the state, so the result is bit-identical
  to an uninterrupted run); without, a directory that already holds checkpoints is an
  error. Returns ``(state, seconds, timed)``: the final state and the wall time of the
  ``timed`` iterations after the first call (which compiles)."""
  ckpt_dir = train_dir.checkpoint_dir
  if not resume and checkpoint.all_steps(ckpt_dir):
    raise ValueError(f"{train_dir.path} already holds checkpoints; pass resume=True to "
                     "continue, or use a fresh run directory")
  done = 0
  state = devices.commit(state)  # as a restored state is: one compiled program for both
  if resume:
    restored = checkpoint.restore(ckpt_dir, state)
    if restored is not None:
      done, state = restored
    train_dir.metrics.truncate_after(done)
  elif train_dir.metrics.path.exists():
    train_dir.metrics.path.unlink()

  from tqdm.auto import tqdm
  bar = tqdm(total=iterations, initial=done, desc=desc, unit="it", disable=not progress,
             dynamic_ncols=True)
  seconds, timed, first = 0.0, 0, True
  try:
    while done < iterations:
      start = time.perf_counter()
      state, metrics = iteration(state)
      metrics = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
      elapsed = time.perf_counter() - start
      done += 1
      if not all(np.all(np.isfinite(v)) for v in metrics.values()):
        bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
        raise FloatingPointError(f"{desc}: non-finite {bad} at iteration {done}")
      if not first:  # the first call compiles
        seconds += elapsed
        timed += 1
      first = False
      train_dir.metrics.append(done, **{k: float(v.mean()) for k, v in metrics.items()},
                               env_steps_per_s=steps_per_iteration / elapsed)
      if done % checkpoint_every == 0 or done == iterations:
        checkpoint.save(ckpt_dir, done, state, keep=2)
      bar.update(1)
      bar.set_postfix(env_steps_per_s=f"{steps_per_iteration / elapsed:.0f}",
                      ret=f"{metrics['return_protagonist_phase'].mean():.3g}", refresh=False)
  finally:
    bar.close()
  return state, seconds, timed


def train_and_evaluate(cfg: Config, env: str, mode: str, run_dir: RunDir,
                       resume: bool) -> dict:
  """Trains one (env, mode) over all seeds, resuming from its checkpoints, and
  evaluates it; returns the JSON cell."""
  qcfg = cfg.qarl_config(env, mode)
  init, iteration, evaluate, masses, frictions = _programs(qcfg, cfg.grid_size,
                                                           cfg.eval_episodes)
  train_dir = RunDir(run_dir.path / "train" / f"{env}_{mode}")
  # Each (env, mode) gets its own seeds, the same across a resume.
  base = jax.random.fold_in(jax.random.key(cfg.seed), cfg.envs.index(env))
  keys = jax.random.split(jax.random.fold_in(base, rl.MODES.index(mode)), cfg.seeds)
  mesh = _seed_mesh(cfg.seeds)
  if mesh is not None:
    keys = devices.shard_batch(keys, mesh, "seeds")
  steps_per_iteration = cfg.seeds * 2 * cfg.episodes * cfg.episode_length
  state, seconds, timed = train_resumable(
      iteration, init(keys), train_dir, cfg.iterations, cfg.checkpoint_every, resume,
      f"{env} {mode}", steps_per_iteration, cfg.progress)

  eval_keys = jax.random.split(jax.random.fold_in(base, 1000 + rl.MODES.index(mode)),
                               cfg.seeds)
  grid, nominal, pushed = (np.asarray(v, np.float64) for v in evaluate(state, eval_keys))
  if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(nominal))
          and np.all(np.isfinite(pushed))):
    raise FloatingPointError(f"{env}/{mode}: non-finite evaluation return")
  history = list(train_dir.metrics.records())
  names = ("temperature", "teacher_mean_temperature", "return_protagonist_phase",
           "return_adversary_phase", "protagonist_alpha")
  seed_means = grid.mean(axis=(1, 2))
  return {
      "env": env, "mode": mode, "seeds": cfg.seeds,
      "env_steps_per_seed": cfg.iterations * 2 * cfg.episodes * cfg.episode_length,
      "masses": masses.tolist(), "frictions": frictions.tolist(),
      "grid_returns": grid.tolist(),  # [seeds, masses, frictions]
      "grid_mean_return": float(grid.mean()),
      "grid_iqm_return": interquartile_mean(grid.reshape(-1)),
      "seed_grid_mean_returns": seed_means.tolist(),
      "seed_grid_mean_quartiles": np.percentile(seed_means, [25, 75]).tolist(),
      "nominal_return": float(nominal.mean()),
      "nominal_return_vs_adversary": (float(pushed.mean()) if mode != "sac" else None),
      "train_env_steps_per_s": (steps_per_iteration * timed / seconds if timed else None),
      "history": {n: [r[n] for r in history] for n in names},
  }


def interquartile_mean(x) -> float:
  """Interquartile mean: the mean after cutting the lowest and highest quarter of the
  values (``scipy.stats.trim_mean(x, 0.25)``, as in Agarwal et al., NeurIPS 2021)."""
  from scipy import stats
  return float(stats.trim_mean(np.asarray(x, np.float64).reshape(-1), 0.25))


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  cfg.validate()
  cells = [(f"{env}_{mode}", (env, mode)) for env in cfg.envs for mode in cfg.modes]
  results = run_cells(run_dir, cells,
                      lambda spec: train_and_evaluate(cfg, spec[0], spec[1], run_dir, resume),
                      resume=resume, desc="qarl", progress=False,
                      metrics=lambda r: {"grid_mean_return": r["grid_mean_return"]})
  for env in cfg.envs:
    _plot_grid(env, [results[(env, m)] for m in cfg.modes], run_dir)
  _plot_curriculum(cfg, results, run_dir)

  lines = ["| env | method | grid mean | grid IQM | seed quartiles | nominal | vs adversary |"
           " train env steps/s |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  summary_envs = {}
  for env in cfg.envs:
    per_mode = {}
    for mode in cfg.modes:
      r = results[(env, mode)]
      q = r["seed_grid_mean_quartiles"]
      adv = r["nominal_return_vs_adversary"]
      rate = r["train_env_steps_per_s"]
      lines.append(f"| {env} | {mode} | {r['grid_mean_return']:.2f} | "
                   f"{r['grid_iqm_return']:.2f} | {q[0]:.2f}-{q[1]:.2f} | "
                   f"{r['nominal_return']:.2f} | {'-' if adv is None else f'{adv:.2f}'} | "
                   f"{'-' if rate is None else f'{rate:.0f}'} |")
      per_mode[mode] = {k: r[k] for k in (
          "grid_mean_return", "grid_iqm_return", "seed_grid_mean_returns",
          "seed_grid_mean_quartiles", "nominal_return", "nominal_return_vs_adversary",
          "train_env_steps_per_s", "env_steps_per_seed")}
      per_mode[mode]["final_temperature"] = (r["history"]["temperature"][-1]
                                             if r["history"]["temperature"] else None)
    summary_envs[env] = per_mode
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")

  comparison = {}
  for env, per_mode in summary_envs.items():
    if "qarl" in per_mode:
      others = [m for m in ("rarl", "sac") if m in per_mode]
      comparison[env] = all(per_mode["qarl"]["grid_mean_return"]
                            >= per_mode[m]["grid_mean_return"] for m in others)
  return {
      "seeds": cfg.seeds, "grid_size": cfg.grid_size,
      "env_steps_per_seed": cfg.iterations * 2 * cfg.episodes * cfg.episode_length,
      "results": summary_envs,
      "qarl_grid_mean_at_least_rarl_and_sac": comparison,
  }


def _plot_grid(env: str, rows, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  means = [np.mean(np.asarray(r["grid_returns"]), axis=0) for r in rows]
  lo, hi = min(m.min() for m in means), max(m.max() for m in means)
  fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows) + 1, 3.4), squeeze=False)
  masses, frictions = rows[0]["masses"], rows[0]["frictions"]
  for ax, r, m in zip(axes[0], rows, means):
    im = ax.imshow(m, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="viridis",
                   extent=(frictions[0], frictions[-1], masses[0], masses[-1]))
    ax.set_title(f"{r['mode']}: mean {r['grid_mean_return']:.1f}", fontsize=9)
    ax.set_xlabel("friction")
  axes[0][0].set_ylabel("mass scale")
  fig.colorbar(im, ax=axes[0].tolist(), label="return (seed mean)")
  fig.suptitle(f"{env}: return over the robustness grid, temperature 0, no adversary",
               fontsize=10)
  fig.savefig(run_dir.figure_path(f"robustness_{env}"), dpi=110)
  plt.close(fig)


def _plot_curriculum(cfg: Config, results, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, len(cfg.envs), figsize=(4.2 * len(cfg.envs), 6),
                           squeeze=False)
  for j, env in enumerate(cfg.envs):
    for mode in cfg.modes:
      h = results[(env, mode)]["history"]
      it = np.arange(1, len(h["temperature"]) + 1)
      axes[0][j].plot(it, h["temperature"], label=mode)
      axes[1][j].plot(it, h["return_protagonist_phase"], label=mode)
    axes[0][j].set_title(env)
    axes[0][j].set_ylabel("adversary temperature (episode mean)")
    axes[1][j].set_ylabel("return, protagonist phase")
    axes[1][j].set_xlabel("iteration")
    axes[0][j].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(run_dir.figure_path("curriculum"), dpi=110)
  plt.close(fig)


experiments.register(
    "qarl",
    "QARL vs RARL, SAC and a linear curriculum: returns over a mass x friction grid",
    PRESETS,
    run,
)
