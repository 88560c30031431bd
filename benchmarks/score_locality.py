"""How much entropy production can a score certify that sees only nearby particles?

``python -m benchmarks.score_locality [--n 64] [--stiffness 0.5] [--trap 0.01]
[--gammas 0.1 0.01 0.001 0.0001] [--ranges 0 1 2 4 8] [--out DIR]``

The MIPS networks (``experiments/active_matter``, a transformer over each particle's
nearest neighbours) certify about 0.2% of the score-free rate. One candidate reason is
locality: in a cluster a push on one particle moves the whole elastic body, so the
score of its self-propulsion might need far particles. A linear stand-in answers it
exactly: ``prod.active_spring_ring`` (n active particles on a ring of springs, noise in
``g`` only, rate ``n (2k + A)`` for every gamma), and ``prod.ou_restricted_score_bound``,
the most that the best score of any form can certify when the score of ``g_i`` sees only
the positions and self-propulsions of the particles within ``r`` sites of ``i``. The
table gives that bound over the rate for each gamma and range. Closed forms in float64,
no sampling or training. Writes ``results/score_locality_<platform>.md``. Not part of
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import jax
import numpy as np

from benchmarks.bench_info import _host_cpu, command_line, write_result
from entropylab import production as prod

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
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if min(args.ranges) < 0:
    parser.error("--ranges must be >= 0")
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


def to_markdown(args, rows) -> str:
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  device = jax.devices()[0]
  lines = [
      f"# The entropy production a local score can certify ({device.platform})", "",
      f"- device: `{device.device_kind}`; host: {_host_cpu()}; jax {jax.__version__}, "
      f"Python {platform.python_version()}; date: {now}",
      f"- command: `{command_line()}`",
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
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  write_result(to_markdown(args, measure(args)), args.out,
               f"score_locality_{jax.devices()[0].platform}.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
