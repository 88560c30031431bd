"""Bias and RMSE of the count-based entropy estimators against sample size.

For Zipf (p_i proportional to i^-s) and Dirichlet-drawn distributions over K bins, whose
entropies are known exactly, draw ``replicates`` multinomial samples of size N, estimate
the entropy with plug-in, Miller-Madow, Grassberger (2003), Chao-Shen and NSB, and
report bias and root-mean-square error in nats. All replicates of one (distribution, K,
N) cell are sampled and estimated in one jitted, vmapped call, in float64.

Outputs in the run directory: ``bias_rmse_<distribution>.png`` (one figure per
distribution: rows = support size K, columns = bias and RMSE against N),
``table.md`` (every cell), ``cells/*.json`` (finished cells; ``--resume`` skips them),
``metrics.jsonl`` and ``summary.json`` (RMSE at N = K for the largest K, and which
estimator is best there).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import info
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir

import experiments

ESTIMATORS = {
    "plugin": info.entropy_plugin,
    "miller_madow": info.entropy_miller_madow,
    "grassberger": info.entropy_grassberger,
    "chao_shen": info.entropy_chao_shen,
    "nsb": info.entropy_nsb,
}
DISTRIBUTIONS = ("zipf", "dirichlet")


@dataclasses.dataclass(frozen=True)
class Config:
  distributions: tuple[str, ...] = DISTRIBUTIONS
  supports: tuple[int, ...] = (10, 100, 1000, 10000)
  sample_sizes: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
  replicates: int = 200
  estimators: tuple[str, ...] = tuple(ESTIMATORS)
  zipf_exponent: float = 1.0
  dirichlet_alpha: float = 1.0
  seed: int = 0
  progress: bool = True

  def validate(self) -> None:
    bad = [d for d in self.distributions if d not in DISTRIBUTIONS]
    if bad or not self.distributions:
      raise ValueError(f"distributions: unknown {bad}; choices: {', '.join(DISTRIBUTIONS)}")
    bad = [e for e in self.estimators if e not in ESTIMATORS]
    if bad or not self.estimators:
      raise ValueError(f"estimators: unknown {bad}; choices: {', '.join(ESTIMATORS)}")
    if not self.supports or min(self.supports) < 2:
      raise ValueError(f"supports must be integers >= 2, got {self.supports}")
    if not self.sample_sizes or min(self.sample_sizes) < 1:
      raise ValueError(f"sample_sizes must be integers >= 1, got {self.sample_sizes}")
    if self.replicates < 2:
      raise ValueError(f"replicates must be >= 2, got {self.replicates}")
    if not self.zipf_exponent > 0 or not self.dirichlet_alpha > 0:
      raise ValueError("zipf_exponent and dirichlet_alpha must be > 0")


PRESETS = {
    "smoke": Config(supports=(10, 100, 1000), sample_sizes=(10, 100, 1000, 10000), replicates=24),
    "paper": Config(),
}


def make_distribution(kind: str, k: int, cfg: Config) -> np.ndarray:
  """The true distribution ``[k]`` (float64) of one cell; deterministic in ``cfg.seed``."""
  if kind == "zipf":
    w = np.arange(1, k + 1, dtype=np.float64) ** (-cfg.zipf_exponent)
  elif kind == "dirichlet":
    rng = np.random.default_rng([cfg.seed, k, 7])
    w = rng.dirichlet(np.full(k, cfg.dirichlet_alpha))
  else:
    raise ValueError(f"unknown distribution {kind!r}; choices: {', '.join(DISTRIBUTIONS)}")
  return w / w.sum()


def true_entropy(p: np.ndarray) -> float:
  nz = p[p > 0]
  return float(-(nz * np.log(nz)).sum())


def sample_counts(key: jax.Array, p: jnp.ndarray, n: int, replicates: int) -> jnp.ndarray:
  """``[replicates, k]`` multinomial(n, p) counts by inverse-CDF sampling, O(n log k) each."""
  cdf = jnp.cumsum(p)
  cdf = cdf / cdf[-1]
  k = p.shape[0]

  def one(key_r):
    u = jax.random.uniform(key_r, (n,), dtype=p.dtype)
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, k - 1)
    return jnp.zeros((k,), p.dtype).at[idx].add(1.0)

  return jax.vmap(one)(jax.random.split(key, replicates))


def _estimate_cell(key, p, n: int, replicates: int, names: tuple[str, ...]):
  counts = sample_counts(key, p, n, replicates)
  return jnp.stack([ESTIMATORS[name](counts) for name in names])


_estimate_cell_jit = jax.jit(_estimate_cell, static_argnums=(2, 3, 4))


def _cell_id(dist: str, k: int, n: int) -> str:
  return f"{dist}_K{k}_N{n}"


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  """Runs every (distribution, K, N) cell; returns the headline summary."""
  cfg.validate()
  cells = [(_cell_id(d, k, n), (d, k, n))
           for d in cfg.distributions for k in cfg.supports for n in cfg.sample_sizes]
  base_key = jax.random.PRNGKey(cfg.seed)

  def compute(spec):
    dist, k, n = spec
    p_np = make_distribution(dist, k, cfg)
    h = true_entropy(p_np)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        base_key, DISTRIBUTIONS.index(dist)), k), n)
    with jax.enable_x64(True):
      est = np.asarray(_estimate_cell_jit(key, jnp.asarray(p_np), n, cfg.replicates,
                                          cfg.estimators))
    if not np.all(np.isfinite(est)):
      raise FloatingPointError(f"non-finite estimate in cell {_cell_id(dist, k, n)}")
    err = est - h
    return {
        "distribution": dist, "K": k, "N": n, "true_entropy": h,
        "bias": {name: float(err[i].mean()) for i, name in enumerate(cfg.estimators)},
        "rmse": {name: float(np.sqrt((err[i] ** 2).mean())) for i, name in enumerate(cfg.estimators)},
        "std": {name: float(est[i].std(ddof=1)) for i, name in enumerate(cfg.estimators)},
    }

  results = run_cells(run_dir, cells, compute, resume=resume, desc="entropy_estimators",
                      progress=cfg.progress,
                      metrics=lambda c: {f"rmse_{a}": b for a, b in c["rmse"].items()})
  _plot(cfg, results, run_dir)
  _write_table(cfg, results, run_dir)
  return _summary(cfg, results)


def _plot(cfg: Config, results, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  for dist in cfg.distributions:
    fig, axes = plt.subplots(len(cfg.supports), 2, figsize=(10, 2.8 * len(cfg.supports)),
                             squeeze=False, sharex=True)
    for row, k in enumerate(cfg.supports):
      ns = list(cfg.sample_sizes)
      for name in cfg.estimators:
        bias = [results[(dist, k, n)]["bias"][name] for n in ns]
        rmse = [results[(dist, k, n)]["rmse"][name] for n in ns]
        axes[row, 0].plot(ns, bias, marker="o", ms=3, label=name)
        axes[row, 1].plot(ns, rmse, marker="o", ms=3, label=name)
      h = results[(dist, k, ns[0])]["true_entropy"]
      axes[row, 0].axhline(0.0, color="k", lw=0.6)
      axes[row, 0].set_ylabel(f"K={k}\nbias [nats]")
      axes[row, 1].set_ylabel("RMSE [nats]")
      axes[row, 1].set_yscale("log")
      axes[row, 0].set_title(f"{dist}, K={k}, H={h:.3f} nats", fontsize=9)
      for ax in axes[row]:
        ax.set_xscale("log")
        ax.axvline(k, color="grey", lw=0.6, ls=":")
    for ax in axes[-1]:
      ax.set_xlabel("sample size N")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"Entropy estimators on {dist} distributions ({cfg.replicates} replicates per point)")
    fig.tight_layout()
    fig.savefig(run_dir.figure_path(f"bias_rmse_{dist}"), dpi=110)
    plt.close(fig)


def _write_table(cfg: Config, results, run_dir: RunDir) -> None:
  head = "| distribution | K | N | H [nats] | " + " | ".join(
      f"{e} bias / RMSE" for e in cfg.estimators) + " |"
  lines = [head, "|" + " --- |" * (4 + len(cfg.estimators))]
  for (dist, k, n), c in sorted(results.items()):
    cols = " | ".join(f"{c['bias'][e]:+.4f} / {c['rmse'][e]:.4f}" for e in cfg.estimators)
    lines.append(f"| {dist} | {k} | {n} | {c['true_entropy']:.4f} | {cols} |")
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")


def _nearest(values, target):
  return min(values, key=lambda v: (abs(math.log(v) - math.log(target)), v))


def _summary(cfg: Config, results) -> dict:
  k = max(cfg.supports)
  n = _nearest(cfg.sample_sizes, k)
  summary: dict = {"replicates": cfg.replicates, "undersampled_cell": f"K={k}, N={n}"}
  for dist in cfg.distributions:
    c = results[(dist, k, n)]
    best = min(cfg.estimators, key=lambda e: c["rmse"][e])
    summary[dist] = {
        "true_entropy_nats": round(c["true_entropy"], 4),
        "rmse_nats": {e: round(c["rmse"][e], 4) for e in cfg.estimators},
        "bias_nats": {e: round(c["bias"][e], 4) for e in cfg.estimators},
        "best_estimator": best,
    }
  return summary


experiments.register(
    "entropy_estimators",
    "bias/RMSE of plug-in, Miller-Madow, Grassberger, Chao-Shen, NSB vs N on Zipf and Dirichlet",
    PRESETS,
    run,
)
