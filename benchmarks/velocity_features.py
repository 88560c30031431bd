"""How much of the MIPS rate a trained score certifies, with and without velocity features.

``python -m benchmarks.velocity_features [--n 256] [--chains 4] [--sim-steps 8000]
[--steps 300] [--features none velocity [residual harmonic]] [--gamma 1e-4]
[--start clump|uniform] [--width 64] [--depth 2] [--learning-rate 1e-3] [--validation 0]
[--selection-margin 2] [--correction-penalty 0 [1 ...]] [--tag TAG] [--out DIR]``

``--chains`` chains (four by default) of the MIPS model (v0 = 0.025, gamma = 1e-4,
packing 0.5, eps = 0, dt = 0.1) run ``--sim-steps`` steps from the authors' clump (or,
with ``--start uniform``, from uniform positions); the
states saved in the second half (every ``sim_steps / 40`` steps) are split per chain
into 15 training and 5 held-out states; with ``--validation V`` the last V of the 15
are not trained on (nor used by the slaved-mode fit) but choose each network: the
training step with the highest bound on them (``train_score``'s ``select_x``, the
experiment's ``Config.validation``) among the start and the steps whose gain over it
passes a one-sided t test at the level of ``--selection-margin`` normal standard errors
over the chains' mean gains (``Config.selection_margin``,
``active_matter.selection_threshold``; a chain's states are correlated, the chains are
not).
On the same data, ``experiments.active_matter.train_score`` (the LocalTransformer,
implicit score matching on g with the exact per-particle divergence, ``score_loss =
"ism_g_only"``) is trained
once per ``score_features`` setting: "none", the state alone (the network of earlier
runs), and "velocity", which adds ``active.velocity_features`` (each particle's scaled
velocity, and for its own output the velocity's derivative along the position flow;
exact inputs of the score for harmonic forces). "harmonic" trains nothing: it is
``active.harmonic_self_propulsion_score``, the formula in those inputs that is exact for
harmonic forces, a baseline for what the network adds; "residual" trains the
"velocity" network on top of that formula (``shift_harmonic``). "slaved" trains
nothing either: the experiment's slaved-mode score (``active.local_slaved_mode_basis``,
degree ``Config.slaved_mode_degree``, fitted in closed form on the training states,
``active_matter.fit_slaved_modes``); "on_slaved" trains the "velocity" network as a
correction to it (``shift_slaved``, the experiment's default), once per
``--correction-penalty`` lambda (``Config.correction_penalty``: a ridge term that pulls
the network toward the slaved-mode score; a row "on_slaved, lambda=L" each). The table gives the
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
SLAVED_DEGREE = am.Config.slaved_mode_degree


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.velocity_features",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=256, help="particles")
  parser.add_argument("--chains", type=int, default=4)
  parser.add_argument("--sim-steps", type=int, default=8000)
  parser.add_argument("--steps", type=int, default=300, help="training steps")
  parser.add_argument("--features", nargs="+",
                      choices=["none", "velocity", "residual", "harmonic", "slaved",
                               "on_slaved"],
                      default=["none", "velocity"])
  parser.add_argument("--gamma", type=float, default=1e-4,
                      help="relaxation rate of the self-propulsion")
  parser.add_argument("--start", choices=["clump", "uniform"], default="clump")
  parser.add_argument("--width", type=int, default=am.Config.width, help="network width")
  parser.add_argument("--depth", type=int, default=am.Config.depth, help="network layers")
  parser.add_argument("--learning-rate", type=float, default=am.Config.learning_rate,
                      help="Adam's initial rate (cosine decay)")
  parser.add_argument("--validation", type=int, default=0,
                      help="training states per chain that choose the network instead")
  parser.add_argument("--selection-margin", type=float, default=am.Config.selection_margin,
                      help="the level, in normal standard errors, of the t test a step's "
                      "validation gain must pass")
  parser.add_argument("--correction-penalty", type=float, nargs="+", default=[0.0],
                      help="lambdas of the on_slaved network's ridge penalty, one row each")
  parser.add_argument("--tag", default="", help="suffix of the results file name")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args = parser.parse_args(argv)
  if args.sim_steps < 40 or args.sim_steps % 40:
    parser.error("--sim-steps must be a positive multiple of 40")
  if min(args.n, args.steps, args.chains, args.width, args.depth) < 1:
    parser.error("--n, --steps, --chains, --width and --depth must be positive")
  if not 0 <= args.validation < 15:
    parser.error("--validation must lie in [0, 15)")
  if min(args.correction_penalty) < 0 or args.selection_margin < 0:
    parser.error("--correction-penalty and --selection-margin must be >= 0")
  if args.validation and args.selection_margin and args.chains < 2:
    parser.error("--selection-margin > 0 compares the chains' gains: it needs --chains >= 2")
  if not (args.gamma > 0 and args.learning_rate > 0):
    parser.error("--gamma and --learning-rate must be positive")
  return args


def mips_states(args):
  """``(train [T C, 2, N, 2], validation [V C, 2, N, 2] or None, test [5 C, 2, N, 2],
  params)`` from ``C = args.chains`` chains started from the clump or uniformly
  (``args.start``), ``V = args.validation`` and ``T = 15 - V``."""
  params = active.AOUPParams(v0=0.025, gamma=args.gamma, epsilon=0.0,
                             half_width=active.box_half_width(args.n, 0.5))
  keys = jax.random.split(jax.random.key(0), args.chains)
  spread = 0.5 if args.start == "clump" else None
  state = jnp.stack([active.random_configuration(k, args.n, params, spread=spread)
                     for k in keys])
  res = active.simulate_aoup(keys, state, params, 0.1, args.sim_steps,
                             save_every=args.sim_steps // 40, max_neighbors=64, max_per_cell=24)
  xs = np.asarray(res.states[:, 20:])                             # [C, 20, 2, N, 2]
  t = 15 - args.validation
  val = xs[:, t:15].reshape(-1, 2, args.n, 2) if args.validation else None
  return (xs[:, :t].reshape(-1, 2, args.n, 2), val, xs[:, 15:].reshape(-1, 2, args.n, 2),
          params)


def plug_in_rate(score, x, params, fields=None) -> float:
  """``gamma E sum_i |g_i + s_{g,i}|^2`` over states ``x [B, 2, N, d]``: the rate a score
  ``score(state [2, N, d])`` reports (the bound's equal only at the exact score), in nats
  per unit time; with ``fields = (f [B, N, d], div [B, N])`` each state's slaved-mode
  field ``f`` is added to its ``s_g``."""
  def one(args):
    state = args[0]
    s_g = score(state)[1] + (0.0 if fields is None else args[1])
    return params.gamma * jnp.sum((state[1] + s_g) ** 2)
  xs = (jnp.asarray(x),) if fields is None else (jnp.asarray(x), fields[0])
  return float(jnp.mean(jax.lax.map(one, xs)))


def measure(args):
  train, val, test, params = mips_states(args)
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
  fields = {}
  if {"slaved", "on_slaved"} & set(args.features):
    # The experiment's slaved-mode score, fitted in closed form on the training states.
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
      run_dir = RunDir(Path(tmp))
      c = am.fit_slaved_modes(params, SLAVED_DEGREE, train, run_dir, False)
      fields = {name: am.slaved_mode_fields(params, SLAVED_DEGREE, c, x, run_dir, name, False)
                for name, x in (("train", train), ("test", test), ("validation", val))
                if x is not None}
    fields_seconds = time.perf_counter() - start
  rows = []
  runs = [(f, lam) for f in args.features
          for lam in (args.correction_penalty if f == "on_slaved" else [0.0])]
  for features, lam in runs:
    label = f"{features}, lambda={lam:g}" if lam else features
    start, chosen = time.perf_counter(), None
    if features == "slaved":
      # (the fit and the fields of every state)
      bound_terms = lambda x, name: am.evaluate_slaved_modes(params, x, fields[name])["local"]
      plug_in = params.gamma * float(np.mean(np.sum(fields["test"][0] ** 2, axis=(1, 2))))
      seconds = fields_seconds
    else:
      if features == "harmonic":
        score = active.harmonic_self_propulsion_score(params, max_neighbors=64,
                                                      max_per_cell=24)
        bound_terms = lambda x, name: np.asarray(prod.hypoelliptic_entropy_production_bound(
            score, jnp.asarray(x), params.gamma, local=True))
        plug_in = plug_in_rate(score, test, params)
      else:
        on_slaved = features == "on_slaved"
        cfg = dataclasses.replace(am.Config(), n_particles=args.n, train_steps=args.steps,
                                  learning_rate=args.learning_rate,
                                  width=args.width, depth=args.depth,
                                  batch_size=8, query_size=args.n, progress=False,
                                  score_features="none" if features == "none" else "velocity",
                                  shift_harmonic=features == "residual",
                                  shift_slaved=on_slaved, score_loss="ism_g_only",
                                  correction_penalty=lam,
                                  selection_margin=args.selection_margin)
        with tempfile.TemporaryDirectory() as tmp:
          net, net_params = am.train_score(
              cfg, params, train, RunDir(Path(tmp) / "run"), resume=False,
              fields=fields["train"] if on_slaved else None, select_x=val,
              select_fields=fields["validation"] if on_slaved and val is not None else None,
              select_chains=args.chains)
          if val is not None:
            curve, states = am.selection_log(RunDir(Path(tmp) / "run" / "train" / "select"))
            chosen = (am.selected_step(curve, states, cfg.selection_margin), curve,
                      am.selection_gains(states) if states.shape[1] > 1 else None)
        per = lambda name: (tuple(jnp.asarray(a, jnp.float32) for a in fields[name])
                            if on_slaved else None)
        bound_terms = lambda x, name: np.asarray(jax.jit(
            lambda y, f: am.network_bound(net, net_params, params, cfg, y, f))(
                jnp.asarray(x), per(name)))
        plug_in = plug_in_rate(am.score_function(net, net_params, params, cfg), test,
                               params, per("test"))
      seconds = time.perf_counter() - start
    local = bound_terms(test, "test")                               # [states, N]
    terms = local.sum(axis=1) / args.n                              # per state, per particle
    # The same bound on the training states: far above the held-out one, the network
    # has fitted its few configurations rather than the score.
    fitted = float(bound_terms(train, "train").sum(axis=1).mean()) / args.n
    rows.append({"features": label, "bound": float(terms.mean()),
                 "se": float(terms.std() / np.sqrt(len(terms))), "free": free,
                 "train_bound": fitted, "free_train": free_train,
                 "plug_in": plug_in / args.n,
                 "dense": dense, "seconds": seconds, "chosen": chosen,
                 "groups": {k: (float(local[m].mean()), free_groups[k], float(m.mean()))
                            for k, m in groups.items()}})
    print(f"{label}: bound per particle {terms.mean():.4f} ({terms.mean() / free:.1%} of "
          f"the score-free rate), {seconds:.0f} s", flush=True)
  return rows


def to_markdown(args, rows) -> str:
  cfg = am.Config()
  lines = result_header("Velocity features for the MIPS score network") + [
      f"- system: N = {args.n}, v0 = 0.025, gamma = {args.gamma:g}, packing 0.5, eps = 0, "
      f"dt = 0.1; {args.chains} chains of {args.sim_steps:,} steps "
      f"({args.sim_steps * 0.1 * args.gamma:g} / gamma) from the {args.start} start; "
      f"{(15 - args.validation) * args.chains} training, "
      + (f"{args.validation * args.chains} validation " if args.validation else "")
      + f"and {5 * args.chains} held-out states from the second "
      f"half (dense share {rows[0]['dense']:.3f})"
      + ("; each network is the one of its training steps (the start and every quarter) "
         "chosen by its bound on the validation states (step chosen in the last column): "
         + am.selection_rule(args.selection_margin, args.chains) if args.validation else ""),
      f"- network and loss: `active_matter.train_score` (LocalTransformer, "
      f"{cfg.num_neighbors} neighbours, width {args.width}, depth {args.depth}, g-shift, "
      f"implicit score matching on g), {args.steps:,} Adam steps (cosine from "
      f"{args.learning_rate:g}), batch 8 states, all particles queried"
      + ("; residual: the same on top of the harmonic score (`shift_harmonic`, in place "
         "of the g-shift)" if "residual" in args.features else "")
      + ("; harmonic: `active.harmonic_self_propulsion_score`, no parameters and no "
         "training" if "harmonic" in args.features else "")
      + (f"; slaved: the slaved-mode score (`active.local_slaved_mode_basis`, degree "
         f"{SLAVED_DEGREE}, {am.SLAVED_MODE_ORDER} orders, fitted in closed form on the "
         "training states; its seconds are the fit's and the fields')"
         if "slaved" in args.features else "")
      + ("; on_slaved: the velocity network trained as a correction to that score "
         "(`shift_slaved`, zero readout)" if "on_slaved" in args.features else "")
      + ("; on_slaved, lambda=L: the same with the ridge penalty (L / 2) E sum_i |NN_g,i / "
         "sqrt(gamma)|^2 on its correction (`correction_penalty`)"
         if "on_slaved" in args.features and max(args.correction_penalty) > 0 else ""),
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
      "training seconds |" + (" step chosen |" if args.validation else ""),
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.validation else ""),
  ]
  for r in rows:
    chosen = "-" if r["chosen"] is None else f"{r['chosen'][0]:,}"
    lines.append(f"| {r['features']} | {r['bound']:.4f} | {r['se']:.4f} | {r['free']:.4f} | "
                 f"{r['bound'] / r['free']:.1%} | {r['train_bound']:.4f} | "
                 f"{r['free_train']:.4f} | "
                 f"{r['plug_in']:.4f} | {r['seconds']:.0f} |"
                 + (f" {chosen} |" if args.validation else ""))
  curves = [(r["features"], *r["chosen"][1:]) for r in rows if r["chosen"] is not None]
  if curves:
    lines += ["", "Lower bound per particle on the validation states, step: bound (the start, "
              "then after each quarter of the training), and each step's gain over the "
              "start / its paired standard error over the chains "
              "(`active_matter.selection_gains`):", "",
              "| score_features | validation curve | gain / paired standard error |",
              "|---|---|---|"]
    lines += [f"| {name} | " + ", ".join(f"{st:,}: {b:.4f}" for st, b in curve) + " | "
              + (", ".join(f"{st:,}: {g:+.5f} / {e:.5f}"
                           for (st, _), g, e in zip(curve[1:], *(a[1:] for a in gains)))
                 if gains is not None else "- (one chain)")
              + " |" for name, curve, gains in curves]
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
