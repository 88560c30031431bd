"""Markov coding games under a rate limit: MEC-B's gridworld study (Figs. 4 and 5).

Ebrahimi, Chen & Khisti ("Minimum Entropy Coupling with Bottleneck", NeurIPS 2024,
Section 5) send a uniform message through the actions of a maximum-entropy policy on
their 8 x 8 noisy gridworld (:class:`entropylab.rl.GridWorld`), coupling the receiver's
belief with the policy at every step (MEME, Sokota et al., ICML 2022) after compressing
the belief to at most ``R`` bits: EBIM (their Algorithm 1) against the uniform
quantiser. For every temperature ``beta`` of the soft-Q policy and every compression
ratio ``H(M)/R`` (the paper's axis; the authors' code calls ``R/H(M)``
``compression_rate``), ``episodes`` messages drawn from the uniform prior are each sent
in one episode of at most ``horizon`` steps; ratio 1 means no limit (plain greedy MEC).
Every grid point is one vmapped, jitted batch (:func:`entropylab.rl.play_coding_game`,
its episodes split over all devices when there are several), written to ``cells/``
when done; ``--resume`` skips finished points.

Outputs: ``reward_accuracy.png`` (mean discounted reward against receiver accuracy per
rate, Fig. 4), ``belief_entropy.png`` (mean belief entropy over the steps, Fig. 5),
``table.md``, ``summary.json`` (accuracy and reward per beta, ratio and method).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import rl
from entropylab.runner import devices
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir
import experiments

METHODS = ("ebim", "uniform")


@dataclasses.dataclass(frozen=True)
class Config:
  messages: int = 512
  log_betas: tuple[float, ...] = (-6.0, -5.0, -4.0, -3.0)  # beta = e^x
  ratios: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # H(M) / R
  methods: tuple[str, ...] = METHODS
  episodes: int = 200
  horizon: int = 1000
  discount: float = 0.95
  slip: float = 0.1
  soft_q_iterations: int = 300
  entropy_steps: int = 60  # steps of the belief-entropy curves kept
  seed: int = 0
  progress: bool = True

  def validate(self) -> None:
    for name in ("messages", "episodes", "horizon", "soft_q_iterations", "entropy_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if self.messages < 2:
      raise ValueError(f"messages must be >= 2, got {self.messages}")
    if not self.ratios or any(not (math.isfinite(r) and r >= 1) for r in self.ratios):
      raise ValueError(f"ratios (H(M)/R) must be finite numbers >= 1, got {self.ratios}")
    if not self.methods or any(m not in METHODS for m in self.methods):
      raise ValueError(f"methods must be names from {METHODS}, got {self.methods}")
    if not self.log_betas or any(not math.isfinite(b) for b in self.log_betas):
      raise ValueError(f"log_betas must be finite, got {self.log_betas}")
    if not (0.0 <= self.discount < 1.0):
      raise ValueError(f"discount must be in [0, 1), got {self.discount}")


PRESETS = {
    "smoke": Config(messages=64, log_betas=(-6.0, -4.0), ratios=(1.0, 2.0, 4.0),
                    episodes=64, horizon=300),
    "paper": Config(),
}


def grid(cfg: Config) -> list[tuple[float, float, str]]:
  """Grid points ``(log_beta, ratio, method)``; ratio 1 (no limit) has the one method
  ``"none"``."""
  out = []
  for b in cfg.log_betas:
    for r in cfg.ratios:
      for m in (("none",) if r == 1 else cfg.methods):
        out.append((b, r, m))
  return out


def episode_summary(ep: rl.Episode, entropy_steps: int, where: str) -> dict:
  """JSON statistics of a batch of episodes: accuracy and mean discounted reward with
  their standard errors, mean episode length, and the mean belief-entropy curve (bits)
  over the first ``entropy_steps`` steps. Raises on a non-finite result."""
  ent = np.asarray(ep.belief_entropy, np.float64)
  reward = np.asarray(ep.reward, np.float64)
  if not (np.all(np.isfinite(ent)) and np.all(np.isfinite(reward))):
    raise FloatingPointError(f"non-finite result at {where}")
  acc = np.asarray(ep.correct, np.float64)
  stderr = lambda x: float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0
  return {"episodes": int(acc.size), "accuracy": float(acc.mean()),
          "accuracy_stderr": stderr(acc), "reward": float(reward.mean()),
          "reward_stderr": stderr(reward), "mean_steps": float(np.mean(np.asarray(ep.steps))),
          "belief_entropy": ent.mean(axis=0)[:entropy_steps + 1].tolist()}


def write_table(rows, name: str, label, run_dir: RunDir, preface: tuple[str, ...] = ()) -> dict:
  """Writes ``table.md`` (one line per grid point, the policy's parameter in a column
  headed ``name`` and written ``label(row)``) and returns the summary's nested
  ``{label: {ratio: {method: {"accuracy", "reward"}}}}``."""
  lines = list(preface) + [
      f"| {name} | H(M)/R | R (bits) | method | accuracy | reward | mean steps |",
      "|---|---:|---:|---|---:|---:|---:|"]
  table = {}
  for x in rows:
    lines.append(f"| {label(x)} | {x['ratio']:g} | {x['rate_bits']:.2f} | "
                 f"{x['method']} | {x['accuracy']:.3f} ± {x['accuracy_stderr']:.3f} | "
                 f"{x['reward']:.4f} | {x['mean_steps']:.1f} |")
    table.setdefault(label(x), {}).setdefault(f"{x['ratio']:g}", {})[x["method"]] = {
        "accuracy": x["accuracy"], "reward": x["reward"]}
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")
  return table


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  cfg.validate()
  world = rl.GridWorld(slip=cfg.slip)
  p, r, term = world.tables()
  prior = jnp.full(cfg.messages, 1.0 / cfg.messages)
  h_m = math.log2(cfg.messages)
  policies = {}

  def policy(log_beta):
    if log_beta not in policies:
      _, pi = rl.soft_q_iteration(p, r, cfg.discount, math.exp(log_beta), term,
                                  iterations=cfg.soft_q_iterations)
      policies[log_beta] = pi
    return policies[log_beta]

  programs = {}
  mesh = devices.make_mesh("episodes") if jax.device_count() > 1 else None

  def play(method):
    if method not in programs:
      def fn(key, messages, rate, pi):
        return rl.play_coding_game(key, world, lambda s: pi[s.cell], messages, prior,
                                   rate, method, horizon=cfg.horizon,
                                   discount=cfg.discount, mesh=mesh)
      programs[method] = jax.jit(fn)
    return programs[method]

  points = grid(cfg)

  def compute(point):
    log_beta, ratio, method = point
    index = points.index(point)
    key = jax.random.fold_in(jax.random.key(cfg.seed), index)
    k_msg, k_play = jax.random.split(key)
    messages = jax.random.randint(k_msg, (cfg.episodes,), 0, cfg.messages)
    rate = h_m / ratio
    ep = play(method)(k_play, messages, jnp.asarray(rate, jnp.float32), policy(log_beta))
    return {"log_beta": log_beta, "ratio": ratio, "method": method, "rate_bits": rate,
            **episode_summary(ep, cfg.entropy_steps, f"beta=e^{log_beta}, ratio {ratio}")}

  cells = [(f"b{b:+.2f}_r{r:g}_{m}".replace("+", "p").replace("-", "m").replace(".", "_"),
            (b, r, m)) for b, r, m in points]
  results = run_cells(run_dir, cells, compute, resume=resume, desc="coding_game",
                      progress=cfg.progress,
                      metrics=lambda x: {"accuracy": x["accuracy"], "reward": x["reward"]})
  rows = [results[pt] for pt in points]
  _plot(rows, cfg, run_dir)
  table = write_table(rows, "beta", lambda x: f"e^{x['log_beta']:g}", run_dir)
  return {"messages": cfg.messages, "episodes_per_point": cfg.episodes,
          "ratio_convention": "H(M)/R (the authors' code names R/H(M) compression_rate)",
          "results": table}


def _plot(rows, cfg: Config, run_dir: RunDir) -> None:
  plot_reward_accuracy(rows, "log_beta", cfg.ratios, cfg.methods,
                       run_dir.figure_path("reward_accuracy"),
                       f"{cfg.messages} messages; points along a line: beta = "
                       f"e^{cfg.log_betas}")
  plot_belief_entropy(rows, "log_beta", cfg.log_betas, lambda b: f"beta = e^{b:g}",
                      run_dir.figure_path("belief_entropy"))


def plot_reward_accuracy(rows, series: str, ratios, methods, path, title: str) -> None:
  """Mean discounted reward against receiver accuracy (MEC-B's Fig. 4): one line per
  (ratio, method) through the values of ``series`` (a row key, e.g. the temperature)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  colors = plt.cm.viridis(np.linspace(0, 0.9, len(ratios)))
  markers = {"none": "o", "ebim": "s", "uniform": "^"}
  for color, ratio in zip(colors, ratios):
    for method in ("none",) + tuple(methods):
      pts = [(x["accuracy"], x["reward"]) for x in sorted(rows, key=lambda x: x[series])
             if x["ratio"] == ratio and x["method"] == method]
      if pts:
        ax.plot(*zip(*pts), marker=markers[method], color=color,
                ls="-" if method != "uniform" else ":",
                label=f"H(M)/R={ratio:g} {method}")
  ax.set_xlabel("receiver accuracy")
  ax.set_ylabel("mean discounted reward")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_belief_entropy(rows, series: str, values, label, path) -> None:
  """Mean belief entropy over the steps (MEC-B's Fig. 5), one panel per value of
  ``series``, one line per (ratio, method) without the uniform quantiser."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(values), figsize=(4 * len(values), 3.4), squeeze=False)
  for ax, value in zip(axes[0], values):
    for x in rows:
      if x[series] == value and x["method"] != "uniform":
        ax.plot(x["belief_entropy"], label=f"H(M)/R={x['ratio']:g} {x['method']}")
    ax.set_title(label(value), fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("belief entropy [bits]")
  axes[0][0].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


experiments.register(
    "coding_game",
    "Markov coding game on MEC-B's gridworld: reward vs accuracy under rate limits",
    PRESETS,
    run,
)
