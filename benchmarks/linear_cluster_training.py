"""Can the MIPS score network learn a cluster whose score is known and local?

``python -m benchmarks.linear_cluster_training [--gammas 0.1] [--losses ism_g g_only]
[--features none] [--samples 512] [--steps 500] [--tag TAG] [--out DIR]``

``benchmarks/score_locality.py`` builds a linear stand-in for a MIPS cluster: the
contacts of a simulated configuration as an elastic network of radial springs (plus a
weak trap) driving the positions, with the model's self-propulsions (noise in ``g``
only). Its rate is known in closed form, and a score of ``g_i`` that sees the 17
nearest particles can certify all of it (``ou_restricted_score_bound``). Here the
``active_matter`` network and loss (``LocalTransformer`` with 16 neighbours, the
g-shift, implicit score matching on ``g`` with the exact per-particle divergence plus
denoising score matching on ``x``: ``experiments.active_matter.train_score``) are
trained on exact stationary samples of that system (positions = the configuration plus
the Gaussian displacement), and the lower bound
``prod.hypoelliptic_entropy_production_bound`` on held-out samples is compared with the
rate. If the network reaches it here but not in MIPS, the gap in MIPS comes from what
the linear system lacks (contacts that open and close, a density that is not
Gaussian, correlated simulation samples); if not, from the network or its training.
``--features velocity`` gives the network this system's ``active.VelocityFeatures``
(the scaled velocity ``u = b_x / (v0 sqrt(gamma))`` from its linear drift, and ``a = J
u`` with ``J`` the contact Jacobian), in which its exact g-score is the particle's own
``(a - gamma u) / sqrt(gamma)``; ``none`` gives the state alone. Writes
``results/linear_cluster_training_<platform>[_TAG].md``. Not part of ``python -m
benchmarks``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import result_header, result_name, write_result
from benchmarks.score_locality import linearised_mips, nearest_support
from entropylab import production as prod
from entropylab.production import active
from entropylab.runner.rundir import RunDir
from experiments import active_matter as am

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.linear_cluster_training",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--gammas", type=float, nargs="+", default=[0.1])
  parser.add_argument("--losses", nargs="+", choices=["ism_g", "g_only"],
                      default=["ism_g", "g_only"],
                      help="ism_g: the active_matter loss (implicit score matching on g "
                      "plus denoising on x); g_only: the implicit score matching on g alone")
  parser.add_argument("--features", nargs="+", choices=["none", "velocity"], default=["none"],
                      help="the network's inputs beside the state (active_matter "
                      "score_features), from this system's linear drift")
  parser.add_argument("--tag", default="", help="suffix of the results file name")
  parser.add_argument("--mips-n", type=int, default=128)
  parser.add_argument("--mips-steps", type=int, default=5000)
  parser.add_argument("--trap", type=float, default=0.01)
  parser.add_argument("--samples", type=int, default=512, help="training states")
  parser.add_argument("--held-out", type=int, default=128)
  parser.add_argument("--steps", type=int, default=500, help="training steps")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if min(args.samples, args.held_out, args.steps, args.batch) < 1:
    parser.error("--samples, --held-out, --steps and --batch must be positive")
  return args


def exact_states(key, m: np.ndarray, d: np.ndarray, x0: np.ndarray, num: int) -> np.ndarray:
  """``[num, 2, N, 2]`` float32 stationary states: positions ``x0`` plus the Gaussian
  displacement, self-propulsions; drawn in float64 from the Lyapunov covariance."""
  n = x0.shape[0]
  with jax.enable_x64(True):
    cov = np.asarray(prod.lyapunov_covariance(jnp.asarray(m), jnp.asarray(d)))
  lam, vec = np.linalg.eigh(0.5 * (cov + cov.T))
  root = vec * np.sqrt(np.clip(lam, 0.0, None))                 # cov = root root^T
  z = np.asarray(jax.random.normal(key, (num, len(cov))), np.float64) @ root.T
  states = z.reshape(num, 2, n, 2)
  states[:, 0] += x0
  return states.astype(np.float32)


def linear_features(m: np.ndarray, x0: np.ndarray, params: active.AOUPParams):
  """``features_fn`` for ``active_matter.local_score``: ``active.VelocityFeatures`` of the
  linear system ``(m, x0)`` of :func:`linearised_mips` (displacements from ``x0`` by
  minimum image; ``b_x = (M z)_x``, ``a = J u`` with ``J = M_xx``, whose diagonal
  blocks are ``blocks``)."""
  n = x0.shape[0]
  drift = jnp.asarray(m[:2 * n], jnp.float32)                       # [2N, 4N]
  jac = drift[:, :2 * n]
  blocks = jac.reshape(n, 2, n, 2)[jnp.arange(n), :, jnp.arange(n), :]   # [N, 2, 2]
  scale = 1.0 / (params.v0 * np.sqrt(params.gamma))
  rest = jnp.asarray(x0, jnp.float32)

  def features_fn(z):
    disp = active.minimum_image(z[0] - rest, params.half_width)
    u = (drift @ jnp.concatenate([disp.reshape(-1), z[1].reshape(-1)])) * scale
    return active.VelocityFeatures(u.reshape(n, 2), (jac @ u).reshape(n, 2), blocks)

  return features_fn


def measure(args) -> list[dict]:
  rows = []
  for i, gamma in enumerate(args.gammas):
    m, d, x0, params = linearised_mips(args, gamma)
    params = params._replace(gamma=gamma)
    with jax.enable_x64(True):
      rate = float(prod.ou_entropy_production(m, d))
      local = float(prod.ou_restricted_score_bound(m, d, nearest_support(x0, params.half_width,
                                                                          17)))
    key = jax.random.fold_in(jax.random.key(1), i)
    states = exact_states(key, m, d, x0, args.samples + args.held_out)
    train, test = states[:args.samples], states[args.samples:]
    cfg = dataclasses.replace(am.Config(), n_particles=args.mips_n, gamma=gamma,
                              train_steps=args.steps, batch_size=args.batch,
                              query_size=args.mips_n, progress=False)
    for features in args.features:
      features_fn = linear_features(m, x0, params) if features == "velocity" else None
      for loss in args.losses:
        start = time.perf_counter()
        # g_only is the same network, optimiser and batches with the loss "ism_g_only".
        loss_cfg = dataclasses.replace(cfg, score_features=features,
                                       score_loss="ism_g" if loss == "ism_g" else "ism_g_only")
        with tempfile.TemporaryDirectory() as tmp:
          net, net_params = am.train_score(loss_cfg, params, train, RunDir(Path(tmp) / "run"),
                                           resume=False, features_fn=features_fn)
        seconds = time.perf_counter() - start
        score = am.local_score(net, net_params, params, loss_cfg, features_fn)
        terms = np.asarray(prod.hypoelliptic_entropy_production_bound(
            score, jnp.asarray(test), gamma, local=True)).sum(axis=1)   # per held-out state
        bound = float(terms.mean())
        rows.append({"gamma": gamma, "loss": loss, "features": features, "rate": rate,
                     "local": local, "bound": bound, "seconds": seconds,
                     "se": float(terms.std() / np.sqrt(len(terms)))})
        print(f"gamma {gamma:g}, {loss}, features {features}: rate {rate:.4f}, best "
              f"17-particle score {local:.4f}, trained network's bound {bound:.4f} "
              f"({bound / rate:.2%}) ({seconds:.0f} s)", flush=True)
  return rows


def to_markdown(args, rows) -> str:
  cfg = am.Config()
  lines = result_header("The MIPS score network on a linear cluster") + [
      f"- system: `score_locality.linearised_mips`, N = {args.mips_n} (contacts after "
      f"{args.mips_steps:,} steps from the clump, radial springs, trap {args.trap}), "
      "v0 = 0.025, noise in g only",
      f"- data: {args.samples} exact stationary states to train, {args.held_out} held out",
      f"- network and loss: `active_matter.train_score` (LocalTransformer, "
      f"{cfg.num_neighbors} neighbours, width {cfg.width}, depth {cfg.depth}, g-shift; "
      "loss ism_g: implicit score matching on g + denoising on x with noise "
      f"{cfg.dsm_sigma_x}; g_only: the first term alone), {args.steps:,} Adam steps "
      f"(cosine from {cfg.learning_rate:g}), batch {args.batch} states, all particles "
      "queried",
      "- features: none, the state alone; velocity, also `active.VelocityFeatures` of this "
      "linear system (`linear_features`: u = b_x / (v0 sqrt(gamma)) for the particle and "
      "its neighbours, a = J u for its own output) with the g output scaled by "
      "1 / sqrt(gamma)",
      "- columns (nats per unit time, whole system): the rate (`ou_entropy_production`); "
      "the best score seeing the 17 nearest particles (`ou_restricted_score_bound`); the "
      "trained network's lower bound (`hypoelliptic_entropy_production_bound`) on the "
      "held-out states, and its standard error over them (0 for a network that outputs "
      "zeros: score (0, -g))",
      "",
      "| gamma | loss | features | rate | best 17-particle score | trained network | "
      "standard error | trained / rate | training seconds |",
      "|---:|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['gamma']:g} | {r['loss']} | {r['features']} | {r['rate']:.4f} | "
                 f"{r['local']:.4f} | {r['bound']:.4f} | {r['se']:.4f} | "
                 f"{r['bound'] / r['rate']:.2%} | {r['seconds']:.0f} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  write_result(to_markdown(args, measure(args)), args.out,
               result_name("linear_cluster_training", args.tag))
  return 0


if __name__ == "__main__":
  sys.exit(main())
