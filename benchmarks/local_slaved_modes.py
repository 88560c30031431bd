"""The local slaved-mode score against the dense one, and carried to a larger system.

``python -m benchmarks.local_slaved_modes [--n 256] [--transfer-n 1024] [--chains 4]
[--gammas 1e-2 1e-3 1e-4] [--sim-steps 8000 40000 8000] [--degrees 2 3 4] [--tag TAG]``

On the MIPS states of ``benchmarks.slaved_modes`` (N = ``--n``, per gamma ``--chains``
chains from the uniform start, 15 training and 5 held-out states each), the score
``-g + sum_k c_k phi_k`` is fitted (``prod.fit_linear_self_propulsion_score``, float64)
over two bases: ``active.slaved_mode_basis`` (dense, two slaving orders: the 16
eigenvalue bands of ``benchmarks.slaved_modes.EDGES``, 48 functions) and
``active.local_slaved_mode_basis`` (powers of the position Jacobian up to each of
``--degrees``, with two slaving orders, 3 (degree + 1) functions, and with three, 4
(degree + 1); one evaluation at the highest degree and order gives the others, whose
functions are subsets). The first table gives the lower bound
(``prod.linear_self_propulsion_bound``) on the held-out states as a share of their
score-free rate (``active.aoup_score_free_entropy_production``), and the seconds per
state of each basis after compilation. The second carries the local coefficients
(degree 3, three orders) fitted at N = ``--n`` unchanged to states of N = ``--transfer-n`` (same
gamma, steps and chains), beside a fit on that system's own training states. Writes
``results/local_slaved_modes_<platform>[_TAG].md``. Not part of ``python -m
benchmarks``.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import result_header, result_name, write_result
from benchmarks.slaved_modes import (EDGES, check_state_arguments, mips_states, per_state,
                                      state_arguments)
from entropylab import production as prod
from entropylab.production import active

TRANSFER_DEGREE = 3


def parse_args(argv):
  parser = state_arguments("python -m benchmarks.local_slaved_modes",
                           __doc__.split("\n\n")[0])
  parser.add_argument("--transfer-n", type=int, default=1024,
                      help="particles of the system the fit is carried to (0: none)")
  parser.add_argument("--degrees", type=int, nargs="+", default=[2, 3, 4])
  args = parser.parse_args(argv)
  check_state_arguments(parser, args)
  if args.transfer_n < 0:
    parser.error("--transfer-n must be >= 0")
  if min(args.degrees) < 0 or TRANSFER_DEGREE not in args.degrees:
    parser.error(f"--degrees must be >= 0 and include {TRANSFER_DEGREE}")
  return args


def moments(basis, train, test):
  """Float64 moments of the training and held-out states, and seconds per held-out
  state (the training pass compiles)."""
  run = lambda x: tuple(np.asarray(a) for a in prod.linear_self_propulsion_moments(
      basis, jnp.asarray(x, jnp.float64)))
  tr = run(train)
  start = time.perf_counter()
  te = run(test)
  return tr, te, (time.perf_counter() - start) / len(test)


def columns(degree, top, orders=3):
  """Indices of the functions of degree up to ``degree`` and slaving orders up to
  ``orders`` in a basis evaluated at degree ``top`` (and order 3)."""
  return np.array([t * (top + 1) + p for t in range(orders + 1) for p in range(degree + 1)])


def fit(tr, keep):
  c = np.zeros(tr[0].shape[1])
  c[keep] = np.linalg.lstsq(tr[1].mean(0)[np.ix_(keep, keep)], tr[0].mean(0)[keep],
                            rcond=None)[0]
  return c


def free_rate(x, params, n):
  """``[B]`` score-free rate per particle of each state."""
  return np.asarray(active.aoup_score_free_entropy_production(
      jnp.asarray(x), params, local=True, max_neighbors=64, max_per_cell=24)).sum(1) / n


def measure_gamma(args, gamma, sim_steps):
  train, test, params = mips_states(args.n, args.chains, gamma, sim_steps)
  free = free_rate(test, params, args.n)
  top = max(args.degrees)
  row = {"gamma": gamma, "sim_steps": sim_steps, "free": free}
  with jax.enable_x64(True):
    tr, te, row["dense_s"] = moments(jax.jit(active.slaved_mode_basis(params, EDGES)),
                                     train, test)
    row["dense"] = per_state(fit(tr, np.arange(3 * len(EDGES))), *te, gamma, args.n)
    local = jax.jit(active.local_slaved_mode_basis(params, degree=top))
    tr, te, row["local_s"] = moments(local, train, test)
    row["local"], row["local_train"] = {}, {}
    for orders in (2, 3):
      for degree in args.degrees:
        c = fit(tr, columns(degree, top, orders))
        row["local"][degree, orders] = per_state(c, *te, gamma, args.n)
        row["local_train"][degree, orders] = per_state(c, *tr, gamma, args.n)
    if args.transfer_n:
      c = fit(tr, columns(TRANSFER_DEGREE, top, 3))
      big_train, big_test, big = mips_states(args.transfer_n, args.chains, gamma, sim_steps)
      row["big_free"] = free_rate(big_test, big, args.transfer_n)
      big_basis = jax.jit(active.local_slaved_mode_basis(big, degree=top))
      btr, bte, row["big_s"] = moments(big_basis, big_train, big_test)
      row["carried"] = per_state(c, *bte, gamma, args.transfer_n)
      row["own"] = per_state(fit(btr, columns(TRANSFER_DEGREE, top, 3)), *bte, gamma,
                             args.transfer_n)
      row["c"], row["c_own"] = c, fit(btr, columns(TRANSFER_DEGREE, top, 3))
  f = free.mean()
  print(f"gamma {gamma:g}: dense {row['dense'].mean() / f:.1%}; " + "; ".join(
      f"degree {d} order {o} {v.mean() / f:.1%}" for (d, o), v in row["local"].items()) +
      (f"; carried to N = {args.transfer_n}: {row['carried'].mean() / row['big_free'].mean():.1%}"
       f" (own fit {row['own'].mean() / row['big_free'].mean():.1%})" if args.transfer_n
       else ""), flush=True)
  return row


def to_markdown(args, rows) -> str:
  se = lambda v: v.std() / np.sqrt(len(v))
  share = lambda v, f: f"{v.mean() / f:.1%} +- {se(v) / f:.1%}"
  lines = result_header("Local slaved-mode scores for the MIPS rate") + [
      f"- system: v0 = 0.025, packing 0.5, eps = 0, dt = 0.1; per gamma {args.chains} "
      f"chains from the uniform start, {15 * args.chains} training and {5 * args.chains} "
      "held-out states from the second half of each run (the states of "
      "`benchmarks.velocity_features --start uniform`)",
      "- scores: `-g + sum_k c_k phi_k`, coefficients by "
      "`prod.fit_linear_self_propulsion_score` on the training states, float64; "
      f"dense: `active.slaved_mode_basis`, two slaving orders, {len(EDGES)} bands "
      f"({3 * len(EDGES)} functions); local: `active.local_slaved_mode_basis` of the "
      "given degree, two slaving orders (3 (degree + 1) functions) or three (4 (degree + "
      "1)), neighbour lists of 32, exact divergences by colour probing",
      "- shares: lower bound on the held-out states (`prod.linear_self_propulsion_bound`, "
      "+- standard error over states) over their score-free rate "
      "(`aoup_score_free_entropy_production`); seconds per state after compilation "
      "(functions and divergences)",
      "", f"N = {args.n}:", "",
      "| gamma | steps | score-free rate | dense bands | " + " | ".join(
          f"local, degree {d}, {o} orders" for o in (2, 3) for d in args.degrees) +
      f" | local, degree {TRANSFER_DEGREE}, 3 orders, training states | s/state dense | "
      f"s/state local (degree {max(args.degrees)}, 3 orders) |",
      "|---:|---:|---:|---:|" + "---:|" * (2 * len(args.degrees)) + "---:|---:|---:|"]
  for r in rows:
    f = r["free"].mean()
    lines.append(f"| {r['gamma']:g} | {r['sim_steps']:,} | {f:.4f} | {share(r['dense'], f)} | "
                 + " | ".join(share(r["local"][d, o], f) for o in (2, 3) for d in args.degrees)
                 + f" | {r['local_train'][TRANSFER_DEGREE, 3].mean() / f:.1%} | "
                 f"{r['dense_s']:.2f} | {r['local_s']:.2f} |")
  if args.transfer_n:
    lines += ["", f"Degree {TRANSFER_DEGREE}, three orders, carried from N = {args.n} to N = "
              f"{args.transfer_n} (held-out states of N = {args.transfer_n}; its own fit "
              "uses its own training states); coefficients in the order h, w_1, w_2, w_3, "
              f"powers 0 .. {TRANSFER_DEGREE} within each:", "",
              f"| gamma | score-free rate | fitted at N = {args.n}, carried | fitted at N = "
              f"{args.transfer_n} | s/state local (degree {max(args.degrees)}, 3 orders) | "
              "c carried "
              "| c own |", "|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
      f = r["big_free"].mean()
      fmt = lambda c: " ".join(f"{v:.2f}" for v in c[columns(TRANSFER_DEGREE, max(args.degrees))])
      lines.append(f"| {r['gamma']:g} | {f:.4f} | {share(r['carried'], f)} | "
                   f"{share(r['own'], f)} | {r['big_s']:.2f} | {fmt(r['c'])} | "
                   f"{fmt(r['c_own'])} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  rows = [measure_gamma(args, g, s) for g, s in zip(args.gammas, args.sim_steps)]
  write_result(to_markdown(args, rows), args.out, result_name("local_slaved_modes", args.tag))
  return 0


if __name__ == "__main__":
  sys.exit(main())
