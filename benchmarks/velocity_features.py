"""How much of the MIPS rate a trained score certifies, with and without velocity features.

``python -m benchmarks.velocity_features [--n 256] [--chains 4] [--sim-steps 8000]
[--steps 300] [--features none velocity [residual harmonic]] [--gamma 1e-4]
[--start clump|uniform] [--width 64] [--depth 2]
[--tag TAG] [--out DIR]``

``--chains`` chains (four by default) of the MIPS model (v0 = 0.025, gamma = 1e-4,
packing 0.5, eps = 0, dt = 0.1) run ``--sim-steps`` steps from the authors' clump (or,
with ``--start uniform``, from uniform positions); the
states saved in the second half (every ``sim_steps / 40`` steps) are split per chain
into 15 training and 5 held-out states. On the same data,
``experiments.active_matter.train_score`` (the LocalTransformer, implicit score matching
on g with the exact per-particle divergence, ``score_loss = "ism_g_only"``) is trained
once per ``score_features`` setting: "none", the state alone (the network of earlier
runs), and "velocity", which adds ``active.velocity_features`` (each particle's scaled
velocity, and for its own output the velocity's derivative along the position flow;
exact inputs of the score for harmonic forces). "harmonic" trains nothing: it is
``active.harmonic_self_propulsion_score``, the formula in those inputs that is exact for
harmonic forces, a baseline for what the network adds; "residual" trains the
"velocity" network on top of that formula (``shift_harmonic``). The table gives the
lower bound ``prod.hypoelliptic_entropy_production_bound`` on the held-out states
against the rate
from the same states without any score (``active.aoup_score_free_entropy_production``),
which is the rate only where the states are stationary: at gamma = 1e-4, 1/gamma is
10^5 steps, longer than the run. ``--gamma`` changes the self-propulsion's relaxation
rate (the persistence, and with it the clustering) and nothing else, so that a run of
several ``1/gamma`` tests the network on stationary interacting states. Writes
``results/velocity_features_<platform>[_TAG].md``. Not part of ``python -m benchmarks``.
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
from entropylab import production as prod
from entropylab.production import active
from entropylab.runner.rundir import RunDir
from experiments import active_matter as am

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.velocity_features",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=256, help="particles")
  parser.add_argument("--chains", type=int, default=4)
  parser.add_argument("--sim-steps", type=int, default=8000)
  parser.add_argument("--steps", type=int, default=300, help="training steps")
  parser.add_argument("--features", nargs="+", choices=["none", "velocity", "residual", "harmonic"],
                      default=["none", "velocity"])
  parser.add_argument("--gamma", type=float, default=1e-4,
                      help="relaxation rate of the self-propulsion")
  parser.add_argument("--start", choices=["clump", "uniform"], default="clump")
  parser.add_argument("--width", type=int, default=am.Config.width, help="network width")
  parser.add_argument("--depth", type=int, default=am.Config.depth, help="network layers")
  parser.add_argument("--tag", default="", help="suffix of the results file name")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if args.sim_steps < 40 or args.sim_steps % 40:
    parser.error("--sim-steps must be a positive multiple of 40")
  if min(args.n, args.steps, args.chains, args.width, args.depth) < 1:
    parser.error("--n, --steps, --chains, --width and --depth must be positive")
  if not args.gamma > 0:
    parser.error("--gamma must be positive")
  return args


def mips_states(args):
  """``(train [15 C, 2, N, 2], test [5 C, 2, N, 2], params)`` from ``C = args.chains``
  chains started from the clump or uniformly (``args.start``)."""
  params = active.AOUPParams(v0=0.025, gamma=args.gamma, epsilon=0.0,
                             half_width=active.box_half_width(args.n, 0.5))
  keys = jax.random.split(jax.random.key(0), args.chains)
  spread = 0.5 if args.start == "clump" else None
  state = jnp.stack([active.random_configuration(k, args.n, params, spread=spread)
                     for k in keys])
  res = active.simulate_aoup(keys, state, params, 0.1, args.sim_steps,
                             save_every=args.sim_steps // 40, max_neighbors=64, max_per_cell=24)
  xs = np.asarray(res.states[:, 20:])                             # [C, 20, 2, N, 2]
  return (xs[:, :15].reshape(-1, 2, args.n, 2), xs[:, 15:].reshape(-1, 2, args.n, 2), params)


def plug_in_rate(score, x, params) -> float:
  """``gamma E sum_i |g_i + s_{g,i}|^2`` over states ``x [B, 2, N, d]``: the rate a score
  reports (the bound's equal only at the exact score), in nats per unit time."""
  def one(state):
    s_g = score(state, None, jnp.zeros_like(state))[1]
    return params.gamma * jnp.sum((state[1] + s_g) ** 2)
  return float(jnp.mean(jax.lax.map(one, jnp.asarray(x))))


def measure(args):
  train, test, params = mips_states(args)
  free, free_train = (float(active.aoup_score_free_entropy_production(
      jnp.asarray(x), params, max_neighbors=64, max_per_cell=24)) / args.n
      for x in (test, train))
  dense = float(jnp.mean(active.phase_fractions(jnp.asarray(test[:, 0]), params)[0]))
  print(f"score-free rate per particle {free:.4f}; dense share {dense:.3f}", flush=True)
  groups = {k: np.asarray(v) for k, v in active.packing_groups(jnp.asarray(test[:, 0]),
                                                                params).items()}
  free_local = np.asarray(active.aoup_score_free_entropy_production(
      jnp.asarray(test), params, local=True, max_neighbors=64, max_per_cell=24))
  free_groups = {k: float(free_local[m].mean()) for k, m in groups.items()}
  rows = []
  for features in args.features:
    start = time.perf_counter()
    if features == "harmonic":
      score = active.harmonic_self_propulsion_score(params, max_neighbors=64, max_per_cell=24)
    else:
      cfg = dataclasses.replace(am.Config(), n_particles=args.n, train_steps=args.steps,
                                width=args.width, depth=args.depth,
                                batch_size=8, query_size=args.n, progress=False,
                                score_features="none" if features == "none" else "velocity",
                                shift_harmonic=features == "residual",
                                score_loss="ism_g_only")
      with tempfile.TemporaryDirectory() as tmp:
        net, net_params = am.train_score(cfg, params, train, RunDir(Path(tmp) / "run"),
                                         resume=False)
      score = am.local_score(net, net_params, params, cfg)
    seconds = time.perf_counter() - start
    local = np.asarray(prod.hypoelliptic_entropy_production_bound(
        score, jnp.asarray(test), params.gamma, local=True))       # [states, N]
    terms = local.sum(axis=1) / args.n                              # per state, per particle
    # The same bound on the training states: far above the held-out one, the network
    # has fitted its few configurations rather than the score.
    fitted = float(prod.hypoelliptic_entropy_production_bound(
        score, jnp.asarray(train), params.gamma)) / args.n
    rows.append({"features": features, "bound": float(terms.mean()),
                 "se": float(terms.std() / np.sqrt(len(terms))), "free": free,
                 "train_bound": fitted, "free_train": free_train,
                 "plug_in": plug_in_rate(score, test, params) / args.n,
                 "dense": dense, "seconds": seconds,
                 "groups": {k: (float(local[m].mean()), free_groups[k], float(m.mean()))
                            for k, m in groups.items()}})
    print(f"{features}: bound per particle {terms.mean():.4f} ({terms.mean() / free:.1%} of "
          f"the score-free rate), {seconds:.0f} s", flush=True)
  return rows


def to_markdown(args, rows) -> str:
  cfg = am.Config()
  lines = result_header("Velocity features for the MIPS score network") + [
      f"- system: N = {args.n}, v0 = 0.025, gamma = {args.gamma:g}, packing 0.5, eps = 0, "
      f"dt = 0.1; {args.chains} chains of {args.sim_steps:,} steps "
      f"({args.sim_steps * 0.1 * args.gamma:g} / gamma) from the {args.start} start; "
      f"{15 * args.chains} training and {5 * args.chains} held-out states from the second "
      f"half (dense share {rows[0]['dense']:.3f})",
      f"- network and loss: `active_matter.train_score` (LocalTransformer, "
      f"{cfg.num_neighbors} neighbours, width {args.width}, depth {args.depth}, g-shift, "
      f"implicit score matching on g), {args.steps:,} Adam steps (cosine from "
      f"{cfg.learning_rate:g}), batch 8 states, all particles queried"
      + ("; residual: the same on top of the harmonic score (`shift_harmonic`, in place "
         "of the g-shift)" if "residual" in args.features else "")
      + ("; harmonic: `active.harmonic_self_propulsion_score`, no parameters and no "
         "training" if "harmonic" in args.features else ""),
      "- columns (nats per unit time per particle): the lower bound "
      "(`hypoelliptic_entropy_production_bound`, held-out states, with its standard error "
      "over states) and the rate of the same states without a score "
      "(`aoup_score_free_entropy_production`)",
      "- also: the bound on the training states against their own score-free rate, and "
      "the plug-in rate `gamma E|g + s_g|^2` of the held-out states (the rate the score "
      "reports; equal to the bound only at the exact score)",
      "",
      "| score_features | lower bound | standard error | score-free rate | bound / rate | "
      "bound, training states | score-free rate, training states | plug-in rate | "
      "training seconds |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['features']} | {r['bound']:.4f} | {r['se']:.4f} | {r['free']:.4f} | "
                 f"{r['bound'] / r['free']:.1%} | {r['train_bound']:.4f} | "
                 f"{r['free_train']:.4f} | "
                 f"{r['plug_in']:.4f} | {r['seconds']:.0f} |")
  lines += ["", "By local packing (`active.packing_groups`): share of particles, and per "
            "particle the lower bound / the score-free rate:", "",
            "| score_features | dilute | intermediate | dense |", "|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['features']} | " + " | ".join(
        f"{share:.2f}: {b:.4f} / {f:.4f}" for b, f, share in
        (r["groups"][k] for k in ("dilute", "intermediate", "dense"))) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  write_result(to_markdown(args, measure(args)), args.out,
               result_name("velocity_features", args.tag))
  return 0


if __name__ == "__main__":
  sys.exit(main())
