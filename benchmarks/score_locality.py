"""How much entropy production can a score certify that sees only nearby particles?

``python -m benchmarks.score_locality [--n 64] [--stiffness 0.5] [--trap 0.01]
[--gammas 0.1 0.01 0.001 0.0001] [--ranges 0 1 2 4 8] [--mips-n 128]
[--mips-steps 5000] [--neighbors 1 7 17 33] [--out DIR]``

The MIPS networks (``experiments/active_matter``, a transformer over each particle's
nearest neighbours) certify about 0.2% of the score-free rate. One candidate reason is
locality: in a cluster a push on one particle moves the whole elastic body, so the
score of its self-propulsion might need far particles. A linear stand-in answers it
exactly: ``prod.active_spring_ring`` (n active particles on a ring of springs, noise in
``g`` only, rate ``n (2k + A)`` for every gamma), and ``prod.ou_restricted_score_bound``,
the most that the best score of any form can certify when the score of ``g_i`` sees only
the positions and self-propulsions of the particles within ``r`` sites of ``i``. The
table gives that bound over the rate for each gamma and range.

A second table does the same in two dimensions with the real contact geometry: MIPS
particles (``active``, the paper's parameters) simulated from the clump start for
``--mips-steps`` steps at N = ``--mips-n``, with the position drift replaced by the elastic
network of its contacts there (the radial part of the drift's Jacobian: one spring per
pair, of stiffness ``sigmoid(beta (2a - r))``; the tangential part is unstable under
compression) and a weak trap ``--trap``, so that the linear system is stable. The score of
``g_i`` sees the ``K`` nearest particles (itself included, minimum image), as the
``LocalTransformer`` does with ``num_neighbors = K - 1``. Closed forms in float64, no
sampling or training. Writes ``results/score_locality_<platform>.md``. Not part of
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import result_header, write_result
from entropylab import production as prod
from entropylab.models import nearest_neighbors
from entropylab.production import active

RESULTS_DIR = Path(__file__).resolve().parent / "results"
V0 = 0.025


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.score_locality",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=64)
  parser.add_argument("--stiffness", type=float, default=0.5)
  parser.add_argument("--trap", type=float, default=0.01)
  parser.add_argument("--gammas", type=float, nargs="+", default=[0.1, 0.01, 0.001, 0.0001])
  parser.add_argument("--ranges", type=int, nargs="+", default=[0, 1, 2, 4, 8])
  parser.add_argument("--mips-n", type=int, default=128, help="MIPS particles (0: skip)")
  parser.add_argument("--mips-steps", type=int, default=5000)
  parser.add_argument("--neighbors", type=int, nargs="+", default=[1, 7, 17, 33],
                      help="particles K the score of g_i sees, itself included")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if min(args.ranges) < 0:
    parser.error("--ranges must be >= 0")
  if args.mips_n and not 1 <= min(args.neighbors) <= max(args.neighbors) <= args.mips_n:
    parser.error("--neighbors must lie in [1, --mips-n]")
  return args


def ring_support(n: int, r: int) -> np.ndarray:
  """``[2n, 2n]``: the score of ``g_i`` sees ``x_j, g_j`` for ring distance ``<= r``;
  the rows of ``x`` (no noise, no weight in the bound) see everything."""
  idx = np.arange(n)
  dist = np.abs(idx[:, None] - idx[None, :])
  near = np.minimum(dist, n - dist) <= r
  support = np.ones((2 * n, 2 * n), bool)
  support[n:, :n] = near
  support[n:, n:] = near
  return support


def measure(args) -> list[dict]:
  rows = []
  with jax.enable_x64(True):
    for gamma in args.gammas:
      m, d = prod.active_spring_ring(args.n, args.stiffness, args.trap, gamma, V0)
      rate = float(prod.ou_entropy_production(m, d))
      diag = np.diagonal(np.asarray(d))
      shares = [float(prod.ou_restricted_score_bound(m, diag, ring_support(args.n, r))) / rate
                for r in args.ranges]
      rows.append({"gamma": gamma, "rate": rate, "shares": shares})
      print(f"gamma {gamma:g}: rate {rate:.4f}; bound / rate at ranges {args.ranges}: "
            + ", ".join(f"{s:.4f}" for s in shares), flush=True)
  return rows


def contact_network(x: np.ndarray, params) -> np.ndarray:
  """``[2N, 2N]``: the radial part of the position drift's Jacobian at ``x [N, 2]``, an
  elastic network with one spring along each pair's axis of stiffness ``k
  sigmoid(beta (2a - r))`` (minus the derivative of the repulsion's magnitude). The
  full Jacobian adds a tangential part, ``k softplus_beta(2a - r) / r`` across the axis,
  which is positive (compressed contacts buckle) and leaves the linearisation unstable."""
  n = x.shape[0]
  with jax.enable_x64(True):
    diff = np.asarray(active.minimum_image(jnp.asarray(x[:, None, :] - x[None, :, :]),
                                           params.half_width))
  r = np.sqrt(np.sum(diff * diff, axis=-1))
  np.fill_diagonal(r, np.inf)
  stiff = params.k / (1 + np.exp(-params.beta * (2 * params.radius - r)))
  stiff[r > active.interaction_cutoff(params)] = 0.0
  unit = diff / np.where(np.isfinite(r), r, 1.0)[..., None]
  blocks = stiff[..., None, None] * unit[..., :, None] * unit[..., None, :]   # [N, N, 2, 2]
  jac = blocks.copy()
  jac[np.arange(n), np.arange(n)] = -blocks.sum(axis=1)
  return jac.transpose(0, 2, 1, 3).reshape(2 * n, 2 * n)


def linearised_mips(args, gamma: float):
  """``(M, D, x, params)``: the contact network of a simulated MIPS configuration ``x
  [N, 2]`` (:func:`contact_network`, plus a trap ``args.trap``) as the position drift,
  with the self-propulsions of the model; state ordered (position coordinates particle
  by particle, then self-propulsion coordinates)."""
  params = active.AOUPParams(v0=0.025, gamma=1e-4, epsilon=0.0,
                             half_width=active.box_half_width(args.mips_n, 0.5))
  key = jax.random.key(0)
  with jax.enable_x64(False):          # float32, as the experiments simulate
    state = active.random_configuration(key, args.mips_n, params, spread=0.5)
    x = active.simulate_aoup(key, state, params, 0.1, args.mips_steps,
                             save_every=args.mips_steps, max_neighbors=64,
                             max_per_cell=24).states[-1, 0]
  x = np.asarray(x, np.float64)
  n2 = 2 * args.mips_n
  jac = contact_network(x, params) - args.trap * np.eye(n2)
  m = np.block([[jac, V0 * np.eye(n2)], [np.zeros((n2, n2)), -gamma * np.eye(n2)]])
  d = np.concatenate([np.zeros(n2), np.full(n2, gamma)])
  return m, d, np.asarray(x), params


def nearest_support(x: np.ndarray, half_width: float, k: int) -> np.ndarray:
  """``[4N, 4N]``: the score of ``g_i`` sees ``x_j, g_j`` of the ``k`` particles nearest
  to ``i`` (itself included, minimum image); rows of ``x`` see everything."""
  n = x.shape[0]
  near = np.eye(n, dtype=bool)
  if k > 1:                             # the network's own neighbour search
    idx, _ = nearest_neighbors(jnp.asarray(x, jnp.float32), half_width, k - 1)
    near[np.arange(n)[:, None], np.asarray(idx)] = True
  coords = np.kron(near, np.ones((2, 2), bool))                 # particle -> coordinates
  support = np.ones((4 * n, 4 * n), bool)
  support[2 * n:, :2 * n] = coords
  support[2 * n:, 2 * n:] = coords
  return support


def measure_mips(args) -> list[dict]:
  rows = []
  with jax.enable_x64(True):
    for gamma in args.gammas:
      m, d, x, params = linearised_mips(args, gamma)
      rate = float(prod.ou_entropy_production(m, d))
      shares = [float(prod.ou_restricted_score_bound(
          m, d, nearest_support(x, params.half_width, k))) / rate for k in args.neighbors]
      dense = float(active.phase_fractions(jnp.asarray(x), params)[0])
      rows.append({"gamma": gamma, "rate": rate, "shares": shares, "dense": dense,
                   "contraction": float(-np.trace(m[:2 * args.mips_n, :2 * args.mips_n]))})
      print(f"MIPS linearised, gamma {gamma:g}: rate {rate:.4f}; bound / rate for K = "
            f"{args.neighbors}: " + ", ".join(f"{v:.4f}" for v in shares), flush=True)
  return rows


def to_markdown(args, rows, mips_rows) -> str:
  lines = result_header("The entropy production a local score can certify") + [
      f"- `active_spring_ring`: n = {args.n} active particles, springs k = {args.stiffness}, "
      f"trap A = {args.trap}, v0 = {V0}, noise in g only; rate n (2k + A) = "
      f"{args.n * (2 * args.stiffness + args.trap):g} nats per unit time for every gamma",
      "- columns: `ou_restricted_score_bound` over the rate, when the score of g_i sees "
      "the particles within r sites (r = 0: its own x_i and g_i only); float64 closed "
      "forms",
      "",
      "| gamma | rate | " + " | ".join(f"r = {r}" for r in args.ranges) + " |",
      "|---:|---:|" + "---:|" * len(args.ranges),
  ]
  for row in rows:
    lines.append(f"| {row['gamma']:g} | {row['rate']:.4f} | "
                 + " | ".join(f"{s:.4f}" for s in row["shares"]) + " |")
  if mips_rows:
    lines += ["", f"MIPS linearised: N = {args.mips_n} particles at packing 0.5 (v0 = {V0}, "
              "k = 1, beta = 7.5), the clump start run for "
              f"{args.mips_steps:,} steps at dt = 0.1 (dense share "
              f"{mips_rows[0]['dense']:.3f}); the position drift replaced by the "
              f"network of its contacts there (radial springs), minus {args.trap} on its "
              "diagonal; rate = `ou_entropy_production` of the linear "
              "system (its phase-space contraction -Tr M_xx is "
              f"{mips_rows[0]['contraction']:.4f}); columns: bound over rate when the score "
              "of g_i sees its K nearest particles (itself included)", "",
              "| gamma | rate | " + " | ".join(f"K = {k}" for k in args.neighbors) + " |",
              "|---:|---:|" + "---:|" * len(args.neighbors)]
    for row in mips_rows:
      lines.append(f"| {row['gamma']:g} | {row['rate']:.4f} | "
                   + " | ".join(f"{s:.4f}" for s in row["shares"]) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  rows = measure(args)
  mips_rows = measure_mips(args) if args.mips_n else []
  write_result(to_markdown(args, rows, mips_rows), args.out,
               f"score_locality_{jax.devices()[0].platform}.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
