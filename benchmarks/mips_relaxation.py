"""How fast active particles at the MIPS parameters separate into two phases, and
whether a dense phase, once made, survives: runs from a uniform start, a clump and a
dense slab.

``python -m benchmarks.mips_relaxation [--n 1024] [--steps 200000] [--chunk 20000]
[--chains 2] [--starts uniform clump slab] [--out DIR] [--tag NAME]``

Active Ornstein-Uhlenbeck particles (``entropylab.production.active``) at Boffi &
Vanden-Eijnden's MIPS parameters (v0 = 0.025, gamma = 1e-4, packing fraction 0.5,
eps = 0, dt = 0.1, k = 1, beta = 7.5: the values in the file names of the authors'
MIPS data sets, ``notebooks/mips.ipynb`` of nmboffi/active_pflows) from three starts:
positions uniform in the box; a clump (``random_configuration(..., spread=0.5)``,
normal positions with standard deviation L / 2, as in the authors' data generation);
and a slab (``slab_configuration``: 70 % of the particles on a triangular lattice at
spacing 2.1 across the periodic box, the rest a gas beside it), the usual test of
whether a dense phase coexists with a gas. After every ``chunk`` steps the script
reports, averaged over the chains, two pairs of order parameters: the shares of
particles in dense (local packing >= 0.7) and dilute (<= 0.3) surroundings from
``local_packing_fraction`` with centres within 3 radii, with the standard deviation of
the local packing; and the authors' own labels (their notebook calls a particle solid
with >= 5 centres, itself included, within 2.4, and gas with <= 2). A homogeneous fluid
has few of either, a phase-separated system many of both. The table goes to
``results/mips_relaxation_<platform>[_<starts>]_n<N>.md``, with a figure of chain 0's
last configuration per start beside it (``.png``), and the entropy production rate per
particle from the states alone (``active.aoup_score_free_entropy_production``), overall
and by local packing. Default starts: uniform and clump.
Not part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import _host_cpu, command_line
from entropylab.production import active

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DENSE, DILUTE = 0.7, 0.3
# The authors' labels as local packings at probe 2.4: >= 5 centres is >= 4.5 / 2.4^2,
# <= 2 centres is <= 2.5 / 2.4^2 (half-integers keep float rounding off the boundary).
PROBE_AUTHORS = 2.4
SOLID, GAS = 4.5 / PROBE_AUTHORS ** 2, 2.5 / PROBE_AUTHORS ** 2
STARTS = {
    "uniform": lambda key, n, p: active.random_configuration(key, n, p),
    "clump (spread 0.5)": lambda key, n, p: active.random_configuration(key, n, p, spread=0.5),
    "slab (70 %)": lambda key, n, p: active.slab_configuration(key, n, p, dense_share=0.7),
}
STARTS_BY_FLAG = {"uniform": "uniform", "clump": "clump (spread 0.5)", "slab": "slab (70 %)"}
DEFAULT_STARTS = ["clump", "uniform"]


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.mips_relaxation",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=1024, help="particles")
  parser.add_argument("--steps", type=int, default=200_000)
  parser.add_argument("--chunk", type=int, default=20_000, help="steps between measurements")
  parser.add_argument("--chains", type=int, default=2)
  parser.add_argument("--packing", type=float, default=0.5)
  parser.add_argument("--starts", nargs="+", choices=sorted(STARTS_BY_FLAG),
                      default=DEFAULT_STARTS, help="which starts to run")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  parser.add_argument("--tag", default="", help="appended to the results file name")
  return parser.parse_args(argv)


def order_parameters(positions: np.ndarray, params: active.AOUPParams) -> dict:
  """Chain-averaged dense and dilute shares (``active.phase_fractions``), the dense
  share of each chain, the spread of the local packing, and the chain-averaged shares
  under the authors' solid / gas labels, of ``positions [C, N, d]``."""
  dense, dilute = active.phase_fractions(positions, params, dense=DENSE, dilute=DILUTE)
  solid, gas = active.phase_fractions(positions, params, dense=SOLID, dilute=GAS,
                                      probe=PROBE_AUTHORS)
  spread = [float(np.std(active.local_packing_fraction(jnp.asarray(x), params)))
            for x in positions]
  return dict(dense=float(jnp.mean(dense)), dilute=float(jnp.mean(dilute)),
              std=float(np.mean(spread)), per_chain=np.asarray(dense).tolist(),
              solid=float(jnp.mean(solid)), gas=float(jnp.mean(gas)))


def score_free_rates(states: np.ndarray, params: active.AOUPParams) -> dict:
  """The entropy production rate per particle without a score
  (``active.aoup_score_free_entropy_production``, the mean phase-space contraction of
  the positions at eps = 0), averaged over the chains' states ``[C, 2, N, d]``, and the
  mean per-particle term over particles in dilute, intermediate and dense surroundings."""
  terms = np.asarray(active.aoup_score_free_entropy_production(jnp.asarray(states), params,
                                                               local=True, max_neighbors=64,
                                                               max_per_cell=48))
  groups = active.packing_groups(jnp.asarray(states[:, 0]), params, dense=DENSE, dilute=DILUTE)
  groups = {name: np.asarray(mask) for name, mask in groups.items()}
  out = {"rate": float(terms.sum(axis=1).mean() / terms.shape[1])}
  out.update({name: float(terms[mask].mean()) if mask.any() else float("nan")
              for name, mask in groups.items()})
  return out


def relax(args, make_start, params) -> tuple[list[dict], np.ndarray]:
  """Order parameters after every chunk, and the last positions of chain 0 ``[N, d]``."""
  key = jax.random.key(args.seed)
  init = [make_start(jax.random.fold_in(key, c), args.n, params)
          for c in range(args.chains)]
  state = jnp.stack(init)
  keys = jax.random.split(jax.random.fold_in(key, 10_000), args.chains)
  rows = [dict(step=0, seconds=0.0, **order_parameters(np.asarray(state[:, 0]), params),
               epr=score_free_rates(np.asarray(state), params))]
  start = time.perf_counter()
  for first in range(0, args.steps, args.chunk):
    res = active.simulate_aoup(keys, state, params, 0.1, args.chunk, save_every=args.chunk,
                               start_step=first, max_neighbors=64, max_per_cell=24)
    state = res.states[:, -1]
    row = dict(step=first + args.chunk, seconds=time.perf_counter() - start,
               **order_parameters(np.asarray(state[:, 0]), params),
               epr=score_free_rates(np.asarray(state), params))
    rows.append(row)
    print(f"  step {row['step']:>8}: dense {row['dense']:.3f} (chains "
          + ", ".join(f"{v:.3f}" for v in row["per_chain"])
          + f"), dilute {row['dilute']:.3f}, std {row['std']:.3f}; authors' solid "
          f"{row['solid']:.3f}, gas {row['gas']:.3f}; score-free EPR per particle "
          f"{row['epr']['rate']:.4g} ({row['seconds']:.0f} s)",
          flush=True)
  return rows, np.asarray(state[0, 0])


def plot_final(path: Path, finals: dict, params: active.AOUPParams, steps: int) -> None:
  """One panel per start: chain 0's particles at the end, drawn to scale (radius ``a``)
  and coloured by their local packing fraction."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.collections import EllipseCollection

  size = 2 * params.radius
  fig, axes = plt.subplots(1, len(finals), figsize=(5 * len(finals), 5.4), squeeze=False)
  for ax, (name, x) in zip(axes[0], finals.items()):
    local = np.asarray(active.local_packing_fraction(jnp.asarray(x), params))
    disks = EllipseCollection(np.full(len(x), size), np.full(len(x), size), 0.0, units="xy",
                              offsets=x, offset_transform=ax.transData, array=local,
                              cmap="viridis", clim=(0.0, 1.0), antialiased=False)
    ax.add_collection(disks)
    ax.set_xlim(-params.half_width, params.half_width)
    ax.set_ylim(-params.half_width, params.half_width)
    ax.set_aspect(1.0)
    ax.set_title(f"{name}, step {steps:,}")
  fig.colorbar(disks, ax=axes[0].tolist(), label="local packing fraction", shrink=0.8)
  fig.savefig(path, dpi=60)
  plt.close(fig)


def to_markdown(args, results, params) -> str:
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  device = jax.devices()[0]
  lines = [
      f"# MIPS relaxation ({device.platform})",
      "",
      f"- device: `{device.device_kind}`; host: {_host_cpu()}; jax {jax.__version__}, "
      f"Python {platform.python_version()}; date: {now}",
      f"- command: `{command_line()}`",
      f"- N = {args.n} particles, {args.chains} chains per start, packing fraction "
      f"{args.packing}, v0 = {params.v0}, gamma = {params.gamma}, eps = {params.epsilon}, "
      f"dt = 0.1 (box half width L = {params.half_width:.2f}; 1/gamma = "
      f"{1 / params.gamma / 0.1:,.0f} steps)",
      f"- local packing: centres within 3 radii times (1/3)^2 (`local_packing_fraction`); "
      f"dense = share of particles with local packing >= {DENSE}, dilute = <= {DILUTE}, "
      "std = standard deviation of the local packing over the particles; chain averages",
      f"- the authors' labels (`notebooks/mips.ipynb` of nmboffi/active_pflows): solid = "
      f"share of particles with >= 5 centres (itself included) within {PROBE_AUTHORS}, "
      "gas = <= 2; chain averages",
      "",
      "| step | " + " | ".join(f"{name}: dense / dilute / std (dense per chain) | "
                              f"{name}: solid / gas" for name in results) + " |",
      "|---:|" + "---:|---:|" * len(results),
  ]
  steps = [r["step"] for r in next(iter(results.values()))]
  for i, step in enumerate(steps):
    cells = [f"{rows[i]['dense']:.3f} / {rows[i]['dilute']:.3f} / {rows[i]['std']:.3f} ("
             + ", ".join(f"{v:.2f}" for v in rows[i]["per_chain"]) + ") | "
             + f"{rows[i]['solid']:.3f} / {rows[i]['gas']:.3f}"
             for rows in results.values()]
    lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
  lines += ["", "Entropy production rate per particle without a score "
            "(`aoup_score_free_entropy_production`: at eps = 0 the mean of "
            "-div_x b_x + gamma (|g|^2 - d) per particle, exact in expectation over the "
            "stationary density; one state per chain at each step), in nats per unit "
            "time: all particles, then the mean term of particles in dilute / "
            "intermediate / dense surroundings (the same local packing thresholds; "
            "nan where a group is empty):", "",
            "| step | " + " | ".join(f"{name}: all | {name}: dilute / intermediate / dense"
                                     for name in results) + " |",
            "|---:|" + "---:|---:|" * len(results)]
  for i, step in enumerate(steps):
    cells = [f"{rows[i]['epr']['rate']:.4g} | {rows[i]['epr']['dilute']:.3g} / "
             f"{rows[i]['epr']['intermediate']:.3g} / {rows[i]['epr']['dense']:.3g}"
             for rows in results.values()]
    lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.steps % args.chunk:
    raise SystemExit(f"--steps ({args.steps}) must be a multiple of --chunk ({args.chunk})")
  params = active.AOUPParams(v0=0.025, gamma=1e-4, epsilon=0.0,
                             half_width=active.box_half_width(args.n, args.packing))
  results, finals = {}, {}
  for name, make_start in STARTS.items():
    if not any(STARTS_BY_FLAG[flag] == name for flag in args.starts):
      continue
    print(f"{name}:", flush=True)
    results[name], finals[name] = relax(args, make_start, params)
  text = to_markdown(args, results, params)
  print(text)
  args.out.mkdir(parents=True, exist_ok=True)
  suffix = "" if sorted(args.starts) == DEFAULT_STARTS else "_" + "_".join(sorted(args.starts))
  tag = f"_{args.tag}" if args.tag else ""
  path = args.out / f"mips_relaxation_{jax.devices()[0].platform}{suffix}_n{args.n}{tag}.md"
  path.write_text(text)
  plot_final(path.with_suffix(".png"), finals, params, args.steps)
  print(f"wrote {path} and {path.with_suffix('.png').name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
