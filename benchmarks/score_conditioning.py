"""How well a learned score recovers the hypoelliptic entropy production as the
self-propulsion slows down: one trapped active particle, gamma from 0.1 to 1e-4.

``python -m benchmarks.score_conditioning [--gammas 0.1 0.01 0.001 0.0001] [--steps 4000]
[--samples 40000] [--seeds 2] [--raw] [--out DIR]``

With noise in ``g`` only (eps = 0), the rate of Boffi & Vanden-Eijnden (PNAS 2024),
``gamma E|g + s_g|^2``, is ``A d`` for a particle in a trap of stiffness ``A``
(``prod.trapped_aoup``), whatever gamma and v0. It is carried by the conditional law
of ``x`` given ``g``: its standard deviation relative to that of ``x`` is
``sqrt(gamma / (A + gamma))``, so a small gamma pins ``x`` close to ``v0 g / (A +
gamma)`` and the score becomes large and sharply tuned. MIPS at the paper's
parameters (gamma = 1e-4, contraction about 0.65 per dense particle and dimension in
``results/mips_timestep_cpu_n4096*.md``) is in this regime, and the networks trained
there recover about 0.2% of the score-free rate.

Here the particle has ``A = 0.65``, ``v0 = 0.025``, ``d = 2``, so ``A d = 1.3``, the
score-free rate per dense MIPS particle. For each gamma the script draws exact
stationary samples from the Lyapunov covariance (no time-step error), fits the
epr_validation MLP score (standardised coordinates, implicit score matching with the
exact divergence, Adam on a cosine schedule) with the same budget, and reports on
held-out samples the plug-in rate, the lower bound
``prod.hypoelliptic_entropy_production_bound`` and the exact score's plug-in rate,
each relative to ``A d``, over ``--seeds`` seeds. With ``--raw`` the network sees the
raw coordinates (``x`` spreads over about 0.04, ``g`` over 1), as the MIPS network
sees positions in units of the particle radius. Writes
``results/score_conditioning_<platform>[_raw].md``. Not part of ``python -m benchmarks``.
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
from entropylab import production as prod
from entropylab.models import MLP
from experiments._training import fit_adam_cosine

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRAP, V0, DIM = 0.65, 0.025, 2


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.score_conditioning",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--gammas", type=float, nargs="+", default=[0.1, 0.01, 0.001, 0.0001])
  parser.add_argument("--steps", type=int, default=4000, help="training steps per fit")
  parser.add_argument("--samples", type=int, default=40_000, help="training samples")
  parser.add_argument("--held-out", type=int, default=20_000)
  parser.add_argument("--batch", type=int, default=512)
  parser.add_argument("--learning-rate", type=float, default=3e-3)
  parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--raw", action="store_true",
                      help="feed the network raw coordinates (no standardisation)")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if any(g <= 0 for g in args.gammas):
    parser.error("--gammas must be positive")
  if min(args.steps, args.samples, args.held_out, args.batch, args.seeds) < 1:
    parser.error("--steps, --samples, --held-out, --batch and --seeds must be positive")
  return args


def exact_samples(key, m: np.ndarray, d: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
  """``n`` stationary samples ``[n, 2 dim]`` (float32, drawn in float64 by
  ``prod.sample_ou_pairs``) and the stationary covariance."""
  with jax.enable_x64(True):
    cov = np.asarray(prod.lyapunov_covariance(jnp.asarray(m), jnp.asarray(d)))
    z = np.asarray(prod.sample_ou_pairs(key, jnp.asarray(m), jnp.asarray(d), 1.0, n)[0])
  return z.astype(np.float32), cov


def fit_score(x: np.ndarray, args, seed: int):
  """The epr_validation MLP score ``s(z) = NN(z / c) / c`` (``c``: per-coordinate sample
  standard deviation; 1 with ``args.raw``) fitted by implicit score matching."""
  model = MLP(features=tuple(args.hidden))
  xj = jnp.asarray(x)
  c = jnp.ones(xj.shape[1]) if args.raw else jnp.std(xj, axis=0)
  params = model.init(jax.random.key(seed), xj[0])
  score_of = lambda p: (lambda z: model.apply(p, z / c) / c)

  def batch_fn(k, step):
    return xj[jax.random.randint(k, (args.batch,), 0, xj.shape[0])]

  def loss_fn(p, batch):
    return prod.implicit_score_matching_loss(score_of(p), batch)

  fitted = fit_adam_cosine(loss_fn, params, jax.random.key(seed + 1), num_steps=args.steps,
                           learning_rate=args.learning_rate, batch_fn=batch_fn,
                           run_dir=None, resume=False)
  return score_of(fitted)


def rates(score, m: np.ndarray, d: np.ndarray, gamma: float, x: np.ndarray) -> tuple[float,
                                                                                      float]:
  """Plug-in rate and lower bound of ``score`` on samples ``x [B, 2 dim]``."""
  mj = jnp.asarray(m, jnp.float32)
  xj = jnp.asarray(x)
  plug_in = float(prod.entropy_production_rate(lambda z: mj @ z, score,
                                               jnp.asarray(np.diag(d), jnp.float32), xj))
  # The bound's layout: [B, 2, N = 1, dim] (positions, self-propulsions); with one
  # particle, a shift of its own coordinates is a shift of the state.
  def as_particles(z, query=None, self_shift=None):
    z = z if self_shift is None else z + self_shift
    return score(z.reshape(-1)).reshape(2, 1, DIM)
  bound = float(prod.hypoelliptic_entropy_production_bound(
      as_particles, xj.reshape(-1, 2, 1, DIM), gamma))
  return plug_in, bound


def measure(args) -> list[dict]:
  rows = []
  exact_rate = TRAP * DIM
  for i, gamma in enumerate(args.gammas):
    with jax.enable_x64(True):
      m, d = prod.trapped_aoup(TRAP, gamma, 0.0, V0, dim=DIM)
    m, d = np.asarray(m, np.float64), np.asarray(d, np.float64)
    per_seed = []
    start = time.perf_counter()
    for seed in range(args.seeds):
      key = jax.random.fold_in(jax.random.key(seed), i)
      x, cov = exact_samples(key, m, d, args.samples + args.held_out)
      train, test = x[:args.samples], x[args.samples:]
      learned = rates(fit_score(train, args, seed), m, d, gamma, test)
      inv = jnp.asarray(np.linalg.inv(cov), jnp.float32)
      exact = rates(lambda z: -(inv @ z), m, d, gamma, test)
      per_seed.append((learned, exact))
    learned = np.array([s[0] for s in per_seed]) / exact_rate       # [seeds, 2]
    exact = np.array([s[1] for s in per_seed]) / exact_rate
    width = float(np.sqrt(gamma / (TRAP + gamma)))
    rows.append({"gamma": gamma, "width": width, "plug_in": learned[:, 0].tolist(),
                 "bound": learned[:, 1].tolist(), "exact": exact[:, 0].tolist(),
                 "exact_bound": exact[:, 1].tolist(),
                 "seconds": time.perf_counter() - start})
    print(f"gamma {gamma:g}: learned plug-in / bound / exact score, relative to A d: "
          + "; ".join(f"{a:.4f} / {b:.4f} / {e:.4f}"
                      for a, b, e in zip(learned[:, 0], learned[:, 1], exact[:, 0]))
          + f" ({rows[-1]['seconds']:.0f} s)", flush=True)
  return rows


def to_markdown(args, rows) -> str:
  fmt = lambda v: ", ".join(f"{x:.4f}" for x in v)
  lines = result_header("A learned score's entropy production against gamma") + [
      f"- one trapped active particle, eps = 0, A = {TRAP}, v0 = {V0}, d = {DIM}: rate A d "
      f"= {TRAP * DIM:g} nats per unit time for every gamma (`trapped_aoup`)",
      f"- exact stationary samples: {args.samples:,} to train, {args.held_out:,} held out; "
      f"MLP {tuple(args.hidden)} on {'raw' if args.raw else 'standardised'} coordinates, "
      "implicit score matching, "
      f"{args.steps:,} Adam steps (cosine from {args.learning_rate:g}), batch {args.batch}; "
      f"one value per seed ({args.seeds} seeds)",
      "- width: standard deviation of x given g over that of x, sqrt(gamma / (A + gamma))",
      "- all rates relative to A d, on the held-out samples: plug-in gamma E|g + s_g|^2 "
      "(`entropy_production_rate`) and lower bound (`hypoelliptic_entropy_production_bound`)"
      " of the learned score; plug-in and bound of the exact score on the same samples",
      "",
      "| gamma | width | learned plug-in | learned bound | exact score plug-in | "
      "exact score bound | seconds |",
      "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['gamma']:g} | {r['width']:.2g} | {fmt(r['plug_in'])} | "
                 f"{fmt(r['bound'])} | {fmt(r['exact'])} | {fmt(r['exact_bound'])} | "
                 f"{r['seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  rows = measure(args)
  raw = "_raw" if args.raw else ""
  write_result(to_markdown(args, rows), args.out,
               f"score_conditioning_{jax.devices()[0].platform}{raw}.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
