"""Joint entropy and stochasticity of MEC-B couplings of uniform marginals vs compression.

Ebrahimi, Chen & Khisti (NeurIPS 2024): minimum entropy coupling with a bottleneck
couples p_X and p_Y through a code T with H(T) <= R (EBIM encoder, greedy MEC decoder).
With uniform marginals on n symbols, H(X) = log2 n, and the compression rate
H(X)/R (the paper's axis) runs from 1 (no bottleneck: MEC-B is the greedy MEC, here
the identity coupling, H(Y|X) = 0) upward; the tighter the bottleneck, the more of Y
the decoder must draw at random given X. Reported per (n, H(X)/R), all in bits:
H(T), I(X;T), the joint entropy H(X,Y), I(X;Y), the stochasticity H(Y|X), and the slack
of the paper's Lemma 1 bound I(X;Y) - [I(X;T) + I(Y;T) - R] (never negative).

Outputs: ``mecb_couplings.png`` (H(X,Y), H(Y|X), I(X;Y) against H(X)/R per n),
``table.md``, ``cells/``, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import info
from entropylab.coupling import mec_b
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir

import experiments


@dataclasses.dataclass(frozen=True)
class Config:
  sizes: tuple[int, ...] = (8, 64, 512)
  compression: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
  progress: bool = True

  def validate(self) -> None:
    if not self.sizes or min(self.sizes) < 2:
      raise ValueError(f"sizes must be integers >= 2, got {self.sizes}")
    if not self.compression or min(self.compression) < 1.0:
      raise ValueError(f"compression (H(X)/R) values must be >= 1, got {self.compression}")


PRESETS = {
    "smoke": Config(sizes=(8, 64), compression=(1.0, 1.5, 2.0, 3.0, 4.0, 8.0)),
    "paper": Config(),
}


def _measures(n: int, ratio: float) -> dict:
  with jax.enable_x64(True):
    u = jnp.full((n,), 1.0 / n)
    h_x = math.log2(n)
    rate = h_x / ratio
    parts = mec_b(u, u, rate, return_parts=True)
    p_xy, p_xt, p_ty = parts
    p_t = jnp.sum(p_xt, axis=0)
    out = {
        "n": n, "compression": ratio, "rate_bits": rate,
        "H_T": float(info.entropy(p_t, base=2)),
        "I_XT": float(info.mutual_information(p_xt, base=2)),
        "I_TY": float(info.mutual_information(p_ty, base=2)),
        "H_XY": float(info.joint_entropy(p_xy, base=2)),
        "I_XY": float(info.mutual_information(p_xy, base=2)),
        "H_Y_given_X": float(info.conditional_entropy(p_xy, base=2)),
        "marginal_error": float(jnp.maximum(jnp.abs(p_xy.sum(1) - u).max(),
                                            jnp.abs(p_xy.sum(0) - u).max())),
    }
  out["lemma1_slack_bits"] = out["I_XY"] - (out["I_XT"] + out["I_TY"] - rate)
  return out


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  cfg.validate()
  cells = [(f"n{n}_c{c:g}", (n, c)) for n in cfg.sizes for c in cfg.compression]
  results = run_cells(run_dir, cells, lambda spec: _measures(*spec), resume=resume,
                      desc="mecb_couplings", progress=cfg.progress,
                      metrics=lambda r: {"H_XY": r["H_XY"], "H_Y_given_X": r["H_Y_given_X"]})
  rows = [results[spec] for _, spec in cells]
  for r in rows:
    if r["H_T"] > r["rate_bits"] + 1e-9 or r["lemma1_slack_bits"] < -1e-9 or r["marginal_error"] > 1e-9:
      raise FloatingPointError(f"MEC-B guarantee violated in cell n={r['n']}, H(X)/R={r['compression']}")
  _plot(cfg, rows, run_dir)
  lines = ["| n | H(X)/R | R | H(T) | I(X;T) | H(X,Y) | I(X;Y) | H(Y|X) | Lemma-1 slack |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {r['n']} | {r['compression']:g} | {r['rate_bits']:.3f} | {r['H_T']:.3f} | "
            f"{r['I_XT']:.3f} | {r['H_XY']:.3f} | {r['I_XY']:.3f} | {r['H_Y_given_X']:.3f} | "
            f"{r['lemma1_slack_bits']:.3f} |" for r in rows]
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")
  n_big = max(cfg.sizes)
  summary = {"largest_n": n_big, "max_marginal_error": max(r["marginal_error"] for r in rows)}
  for r in rows:
    if r["n"] == n_big:
      summary[f"H(Y|X) at H(X)/R={r['compression']:g}"] = round(r["H_Y_given_X"], 4)
  return summary


def _plot(cfg: Config, rows, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  for n in cfg.sizes:
    sel = [r for r in rows if r["n"] == n]
    c = [r["compression"] for r in sel]
    axes[0].plot(c, [r["H_XY"] for r in sel], "o-", label=f"n={n}")
    axes[1].plot(c, [r["H_Y_given_X"] for r in sel], "o-", label=f"n={n}")
    axes[2].plot(c, [r["I_XY"] for r in sel], "o-", label=f"n={n}")
  for ax, title in zip(axes, ["joint entropy H(X,Y)", "stochasticity H(Y|X)", "I(X;Y)"]):
    ax.set_xlabel("compression rate H(X)/R")
    ax.set_ylabel(f"{title} [bits]")
    ax.legend(fontsize=8)
  fig.suptitle("MEC-B couplings of uniform marginals (EBIM encoder + greedy MEC decoder)")
  fig.tight_layout()
  fig.savefig(run_dir.figure_path("mecb_couplings"), dpi=110)
  plt.close(fig)


experiments.register(
    "mecb_couplings",
    "joint entropy and stochasticity H(Y|X) of MEC-B couplings of uniform marginals vs H(X)/R",
    PRESETS,
    run,
)
