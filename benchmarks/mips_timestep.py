"""Does the score-free entropy production rate of MIPS depend on the time step?

``python -m benchmarks.mips_timestep [--n 4096] [--relax 10000] [--time 500]
[--dts 0.1 0.05 0.025] [--samples 10] [--chains 2] [--seed 0] [--out DIR] [--tag NAME]``

The rate of Boffi & Vanden-Eijnden (PNAS 2024) at eps = 0, measured without a score
(``active.aoup_score_free_entropy_production``: the mean phase-space contraction of the
positions, ``-E[div_x b_x]``), is a property of the continuous-time SDE; a simulation at
step ``dt`` samples the stationary density of its Euler chain instead (the
self-propulsions ``g`` are updated exactly, so only the positions carry the error).
The rate is a mean of the contact stiffness over the configurations, and contacts are
where the Euler error is largest (per pair the divergence is about -0.45 at contact,
so ``dt = 0.1`` times a handful of contacts is not small).

The script relaxes ``--chains`` chains from the authors' clump start (normal positions,
standard deviation L / 2) at dt = 0.1 for ``--relax`` steps, then continues each chain
from that state for the same physical time ``--time`` at each ``--dts`` step. Contacts
relax in a few time units, so the local structure adapts to the new step; the clusters
(persistence 1 / gamma = 10^4) barely move, so every branch sees the same macroscopic
state, whose dense share the table reports. Over the second half of each branch it
saves ``--samples`` states per chain and reports the rate per particle (mean over
chains and states, with the standard error of the chain means), the mean term of
particles in dilute / intermediate / dense surroundings (``active.packing_groups``),
and a first-order (Richardson) extrapolation to dt -> 0 from the two smallest steps.
Writes ``results/mips_timestep_<platform>_n<N>[_<tag>].md``. Not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import result_header, write_result
from entropylab.production import active

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RELAX_DT = 0.1
# Neighbour-list capacities for packing 0.5 (those of benchmarks/mips_relaxation.py).
MAX_NEIGHBORS, MAX_PER_CELL = 64, 24


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.mips_timestep",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=4096, help="particles")
  parser.add_argument("--relax", type=int, default=10_000,
                      help=f"relaxation steps at dt = {RELAX_DT} before the branches")
  parser.add_argument("--time", type=float, default=500.0,
                      help="physical time of each branch")
  parser.add_argument("--dts", type=float, nargs="+", default=[0.1, 0.05, 0.025])
  parser.add_argument("--samples", type=int, default=10,
                      help="states per chain saved over the second half of a branch")
  parser.add_argument("--chains", type=int, default=2)
  parser.add_argument("--packing", type=float, default=0.5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  parser.add_argument("--tag", default="", help="appended to the results file name")
  args = parser.parse_args(argv)
  for dt in args.dts:
    steps = args.time / dt
    if dt <= 0 or abs(steps - round(steps)) > 1e-6 or round(steps) % (2 * args.samples):
      parser.error(f"--time / dt must be a whole multiple of 2 * --samples for every "
                   f"--dts (dt = {dt} gives {steps:g} steps)")
  if args.chains < 2:
    parser.error("--chains must be at least 2 (the error bar is the spread of the chains)")
  return args


def branch(keys, state, params, dt: float, args) -> dict:
  """Runs every chain for ``args.time`` at step ``dt`` from ``state [C, 2, N, d]`` and
  measures the score-free rate over the saved states of the second half."""
  n_steps = int(round(args.time / dt))
  half = n_steps // 2
  start = time.perf_counter()
  first = active.simulate_aoup(keys, state, params, dt, half, save_every=half,
                               max_neighbors=MAX_NEIGHBORS, max_per_cell=MAX_PER_CELL)
  every = half // args.samples
  second = active.simulate_aoup(keys, first.states[:, -1], params, dt, half,
                                save_every=every, start_step=half,
                                max_neighbors=MAX_NEIGHBORS, max_per_cell=MAX_PER_CELL)
  states = second.states                                          # [C, S, 2, N, d]
  seconds = time.perf_counter() - start
  c, s = states.shape[:2]
  flat = states.reshape((c * s,) + states.shape[2:])
  terms = np.asarray(active.aoup_score_free_entropy_production(
      flat, params, local=True, max_neighbors=MAX_NEIGHBORS, max_per_cell=2 * MAX_PER_CELL))
  per_state = terms.mean(axis=1).reshape(c, s)                   # per particle
  chain_means = per_state.mean(axis=1)
  groups = {k: np.asarray(m) for k, m in active.packing_groups(flat[:, 0], params).items()}
  return {
      "dt": dt, "steps": n_steps, "seconds": seconds,
      "rate": float(chain_means.mean()),
      "se": float(chain_means.std(ddof=1) / np.sqrt(c)),
      "per_chain": chain_means.tolist(),
      "by_packing": {k: float(terms[m].mean()) if m.any() else float("nan")
                     for k, m in groups.items()},
      "dense_share": float(groups["dense"].mean()),
  }


def richardson(rows: list[dict]) -> dict | None:
  """First-order extrapolation to dt -> 0 from the two smallest steps, chain by chain
  (the branches of a chain start from the same state, so the comparison is paired):
  the chain mean of the extrapolated rate, and the bias of each step's rate against
  it, with standard errors over the chains."""
  if len(rows) < 2:
    return None
  a, b = sorted(rows, key=lambda r: r["dt"])[:2]                # a: smallest dt
  w = a["dt"] / (b["dt"] - a["dt"])
  ra, rb = np.asarray(a["per_chain"]), np.asarray(b["per_chain"])
  limit = ra + w * (ra - rb)
  se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))
  bias = {r["dt"]: (float(np.mean(np.asarray(r["per_chain"]) - limit)),
                    se(np.asarray(r["per_chain"]) - limit)) for r in rows}
  return {"from": (a["dt"], b["dt"]), "limit": (float(limit.mean()), se(limit)),
          "bias": bias}


def to_markdown(args, relax_row: dict, rows: list[dict], params) -> str:
  lines = result_header("MIPS: the score-free entropy production rate against the time step") + [
      f"- N = {args.n}, {args.chains} chains, packing fraction {args.packing}, v0 = "
      f"{params.v0}, gamma = {params.gamma}, eps = {params.epsilon}, k = {params.k}, "
      f"beta = {params.beta} (box half width L = {params.half_width:.2f})",
      f"- relaxed from the clump start for {args.relax:,} steps at dt = {RELAX_DT} "
      f"(dense share then {relax_row['dense_share']:.3f}); then each branch runs time "
      f"{args.time:g} from that state and keeps {args.samples} states per chain from "
      "its second half",
      "- rate: per particle, nats per unit time, `aoup_score_free_entropy_production` "
      "(at eps = 0: -div_x b_x + gamma (|g|^2 - d)); +- the standard error of the chain "
      "means; dilute / intermediate / dense: mean term of the particles in each group "
      "(`packing_groups`: local packing <= 0.3, between, >= 0.7)",
      "",
      "| dt | steps | rate per particle | chains | dilute / intermediate / dense | "
      "dense share | seconds |",
      "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    g = r["by_packing"]
    lines.append(
        f"| {r['dt']:g} | {r['steps']:,} | {r['rate']:.4f} +- {r['se']:.4f} | "
        + ", ".join(f"{v:.4f}" for v in r["per_chain"])
        + f" | {g['dilute']:.3g} / {g['intermediate']:.3g} / {g['dense']:.3g} | "
        f"{r['dense_share']:.3f} | {r['seconds']:.0f} |")
  extra = richardson(rows)
  if extra is not None:
    lo, hi = extra["from"]
    value, err = extra["limit"]
    lines += ["", f"First-order extrapolation to dt -> 0 from dt = {lo:g} and {hi:g}, chain "
              f"by chain: {value:.4f} +- {err:.4f} per particle. Each step's rate minus "
              "that limit (paired by chain; relative to the limit):", "",
              "| dt | rate - limit | relative |", "|---:|---:|---:|"]
    for dt, (bias, bias_err) in extra["bias"].items():
      lines.append(f"| {dt:g} | {bias:+.4f} +- {bias_err:.4f} | {bias / value:+.1%} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  params = active.AOUPParams(v0=0.025, gamma=1e-4, epsilon=0.0,
                             half_width=active.box_half_width(args.n, args.packing))
  key = jax.random.key(args.seed)
  state = jnp.stack([active.random_configuration(jax.random.fold_in(key, c), args.n, params,
                                                 spread=0.5)
                     for c in range(args.chains)])
  keys = jax.random.split(jax.random.fold_in(key, 10_000), args.chains)
  start = time.perf_counter()
  relaxed = active.simulate_aoup(keys, state, params, RELAX_DT, args.relax,
                                 save_every=args.relax, max_neighbors=MAX_NEIGHBORS,
                                 max_per_cell=MAX_PER_CELL).states[:, -1]
  relax_row = {"dense_share": float(jnp.mean(active.phase_fractions(relaxed[:, 0],
                                                                    params)[0]))}
  print(f"relaxed {args.relax:,} steps in {time.perf_counter() - start:.0f} s, dense share "
        f"{relax_row['dense_share']:.3f}", flush=True)
  rows = []
  for i, dt in enumerate(args.dts):
    branch_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1 + i))(keys)
    rows.append(branch(branch_keys, relaxed, params, dt, args))
    r = rows[-1]
    print(f"  dt {dt:g}: rate {r['rate']:.4f} +- {r['se']:.4f} per particle, dense share "
          f"{r['dense_share']:.3f} ({r['seconds']:.0f} s)", flush=True)
  tag = f"_{args.tag}" if args.tag else ""
  write_result(to_markdown(args, relax_row, rows, params), args.out,
               f"mips_timestep_{jax.devices()[0].platform}_n{args.n}{tag}.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
