"""Training throughput of the ``active_matter`` score: the local transformer and its losses.

One optimizer step (loss, gradient, Adam update, all in one ``jax.jit``) of the score
network that ``experiments.active_matter`` trains on motility-induced phase separation
(Boffi & Vanden-Eijnden, PNAS 2024: v0 = 0.025, gamma = 1e-4, packing fraction 0.5,
eps = 0), at N = 256 and 1024 particles, with that experiment's own loss function
(``active_matter.training_loss``) and the settings of its CPU runs (``CPU_RUN``: local
transformer of width 32, depth 2, 12 neighbours, velocity features, the slaved-mode
shift; batches of 8 states, ``query_size`` = 256 particles per state in every implicit
term). Losses:

* ``ism_g`` (the experiment's default): implicit score matching on the
  self-propulsions with the exact per-particle divergence (2 forward-mode derivatives
  per queried particle, ``prod.local_implicit_score_matching_loss``) plus denoising
  score matching of the positions;
* ``ism_g_only``: the implicit term alone;
* ``dsm``, the peer: denoising score matching of the whole state (one network pass per
  noisy state and no derivatives of the network's output), the loss the authors train
  with.

Reported: milliseconds per step and steps per second, the ratio of each loss's step
to the ``dsm`` step at the same N (the price of the exact divergence), and the ratio
of the step at N = 1024 to that at N = 256 for each loss: the implicit terms touch only
the ``query_size`` queried particles and their neighbours, so that ratio shows what
grows with N (the neighbour lists and the velocity features of every particle). The
states are uniform random configurations (the cost does not depend on where the
particles are: neighbour lists have fixed capacities) and the slaved-mode fields are
random inputs of the right shapes.

The Markdown table is printed and written to
``benchmarks/results/bench_score_training_<platform>[_<device kind>].md`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import platform as _platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from benchmarks.bench_info import _host_cpu, command_line, finish, time_call
from entropylab.models import LocalTransformer
from entropylab.production import active
from experiments import active_matter as am

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = (256, 1024)
LOSSES = ("ism_g", "ism_g_only", "dsm")
PEER = "dsm"
# The settings of the experiment's CPU runs at N = 4096 (benchmarks/results/
# active_matter_cpu_n4096_slaved.md).
CPU_RUN = dict(num_neighbors=12, width=32, depth=2, batch_size=8, query_size=256,
               learning_rate=2e-3)


def step_time(n: int, loss_name: str, timing: dict) -> float:
  """Median seconds of one jitted optimizer step of the experiment's loss at ``n``."""
  cfg = dataclasses.replace(am.PRESETS["paper"], n_particles=n, score_loss=loss_name,
                            **CPU_RUN)
  params = am.system(cfg, n, cfg.packing_fraction)
  on_slaved = loss_name != "dsm"
  keys = jax.random.split(jax.random.key(n), cfg.batch_size + 2)
  x = jnp.stack([active.random_configuration(k, n, params) for k in keys[:cfg.batch_size]])
  fields = ((0.1 * jax.random.normal(keys[-2], (cfg.batch_size, n, 2)),
             0.1 * jax.random.normal(keys[-1], (cfg.batch_size, n))) if on_slaved else None)
  net = LocalTransformer(num_neighbors=cfg.num_neighbors, width=cfg.width, depth=cfg.depth,
                         zero_readout=on_slaved)
  net_params = am.init_network(net, params, cfg, x[0], jax.random.key(0))
  loss = am.training_loss(net, params, cfg)
  opt = optax.adam(cfg.learning_rate)

  @jax.jit
  def train_step(p, opt_state, key):
    value, grads = jax.value_and_grad(loss)(p, x, fields, key)
    updates, opt_state = opt.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, value

  t, out = time_call(train_step, net_params, opt.init(net_params), jax.random.key(1), **timing)
  if not bool(jnp.isfinite(out[2])):
    raise FloatingPointError(f"{loss_name} at N = {n}: loss {float(out[2])}")
  print(f"  {loss_name} N={n}: {t * 1e3:.1f} ms per step", flush=True)
  return t


def to_markdown(times: dict, device, quick: bool) -> str:
  kind = getattr(device, "device_kind", str(device))
  lines = [f"# bench_score_training on {device.platform}", "",
           f"- device: `{kind}` (platform `{device.platform}`); host: {_host_cpu()}, "
           f"{jax.local_device_count()} local devices",
           f"- versions: jax {jax.__version__}, Python {_platform.python_version()}",
           f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
           f"- command: `{command_line()}`" + (" (quick timing)" if quick else ""),
           "- one jitted step (loss, gradient, Adam) of `active_matter.training_loss` on a "
           f"batch of {CPU_RUN['batch_size']} MIPS states: local transformer width "
           f"{CPU_RUN['width']}, depth {CPU_RUN['depth']}, {CPU_RUN['num_neighbors']} "
           f"neighbours, velocity features; {CPU_RUN['query_size']} queried particles per "
           "state in each implicit term; `dsm` (the peer) is the whole-state denoising loss",
           "", "| loss | N | ms per step | steps / s | step / dsm step | step / step at "
           f"N = {SIZES[0]} |", "|---|---:|---:|---:|---:|---:|"]
  for name in LOSSES:
    for n in SIZES:
      t = times[name, n]
      lines.append(f"| `{name}` | {n} | {t * 1e3:.1f} | {1 / t:.2f} | "
                   f"{t / times[PEER, n]:.2f} | {t / times[name, SIZES[0]]:.2f} |")
  return "\n".join(lines) + "\n"


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_score_training",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="shorter timing")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args, _ = parser.parse_known_args(argv)
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  device = jax.devices()[0]
  timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=5,
                                                                     budget_s=3.0)
  times = {(name, n): step_time(n, name, timing) for name in LOSSES for n in SIZES}
  return finish(args.out, "bench_score_training", device,
                to_markdown(times, device, args.quick), [], "bench_score_training")


if __name__ == "__main__":
  sys.exit(main())
