"""Environment steps per second of QARL's two-player training loop on halfcheetah.

Cases, all ``entropylab.rl.make_train(...).iteration`` jitted (with updates: one SAC
step per 3 environment transitions, batch 256, 3x256 networks, halfcheetah on the mjx
backend, 5 parallel episodes per phase):

(a) ``mode="sac"``, one seed: the protagonist alone (no adversary), the in-run peer;
(b) ``mode="qarl"``, one seed: both players, the adversary learning in its phase;
(c) ``mode="qarl"``, ``--seeds`` seeds under ``jax.vmap``: the aggregate throughput.

Goals (issue 6): (b) at least 0.8x the throughput of (a); (c) at least 10x the reference
PyTorch QARL's throughput on this CPU, which the issue gives as about 70 env steps/s
(cheetah-run with updates, one seed). That reference is not run here (it needs
PyTorch, mushroom-rl and dm_control); its figure is quoted, not measured. A goal not
met is reported in the table; the run fails (exit status 1) only if a training metric
is not finite.

Each case compiles and runs one warm-up iteration (which also fills the replay past
``learning_starts``), then times ``--iterations`` more. One iteration is
``2 * 5 * episode_length`` environment steps per seed (500 steps per episode; 100 with
``--quick``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform as _platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import _host_cpu, command_line, finish
from entropylab import rl

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REFERENCE_STEPS_PER_S = 70.0  # the figure for the PyTorch reference
EPISODES = 5


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_qarl",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="episodes of 100 steps")
  parser.add_argument("--iterations", type=int, default=2, help="timed iterations")
  parser.add_argument("--seeds", type=int, default=4, help="vmapped seeds of case (c)")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  return parser.parse_args(argv)


def measure(mode: str, seeds: int, length: int, iterations: int) -> dict:
  cfg = rl.QARLConfig(env="halfcheetah", mode=mode, iterations=200, episodes=EPISODES,
                      episode_length=length, replay_size=100_000, learning_starts=256)
  run = rl.make_train(cfg)
  keys = jax.random.split(jax.random.key(0), seeds)
  init = jax.jit(jax.vmap(run.init))
  step = jax.jit(jax.vmap(run.iteration))
  t0 = time.perf_counter()
  state, _ = step(init(keys))
  jax.block_until_ready(state)
  warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(iterations):
    state, metrics = step(state)
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - t0
  env_steps = iterations * 2 * EPISODES * length * seeds
  finite = all(bool(np.all(np.isfinite(np.asarray(v)))) for v in metrics.values())
  return {"mode": mode, "seeds": seeds, "seconds": elapsed, "warm": warm,
          "env_steps": env_steps, "rate": env_steps / elapsed, "finite": finite}


def to_markdown(rows, quick: bool, length: int) -> tuple[str, list[str]]:
  device = jax.devices()[0]
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  sac, qarl1, qarln = rows
  overhead = qarl1["rate"] / sac["rate"]
  aggregate = qarln["rate"] / REFERENCE_STEPS_PER_S
  failures = []  # a goal not met is reported in the table; only broken runs fail
  if not all(r["finite"] for r in rows):
    failures.append("non-finite training metrics")
  lines = [
      f"# bench_qarl on {device.device_kind}{' (quick)' if quick else ''}", "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`); host: "
      f"{_host_cpu()}, {os.cpu_count()} logical CPUs",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, Python "
      f"{_platform.python_version()}",
      f"- date: {now}", f"- command: `{command_line()}`",
      f"- halfcheetah (mjx), {EPISODES} parallel episodes of {length} steps per phase, "
      "one SAC update per 3 env steps (batch 256, 3x256 networks)", "",
      "| case | seeds | timed env steps | seconds | env steps / s | compile + warm-up s |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  names = {"sac": "single-player SAC (peer)", "qarl": "QARL, two players"}
  for r in rows:
    lines.append(f"| {names[r['mode']]} | {r['seeds']} | {r['env_steps']} | "
                 f"{r['seconds']:.1f} | {r['rate']:.0f} | {r['warm']:.0f} |")
  lines += [
      "",
      f"- adversary overhead: QARL / SAC throughput = {overhead:.2f}x (goal >= 0.8x): "
      f"{'met' if overhead >= 0.8 else 'NOT met'}",
      f"- aggregate over {qarln['seeds']} seeds: {qarln['rate']:.0f} env steps/s = "
      f"{aggregate:.1f}x the reference PyTorch QARL's ~70 env steps/s on this CPU (the "
      f"issue's figure, not measured here; goal >= 10x): "
      f"{'met' if aggregate >= 10 else 'NOT met'}",
  ]
  return "\n".join(lines) + "\n", failures


def main(argv=None) -> int:
  args = parse_args(argv)
  length = 100 if args.quick else 500
  rows = []
  for mode, seeds in (("sac", 1), ("qarl", 1), ("qarl", args.seeds)):
    rows.append(measure(mode, seeds, length, args.iterations))
    r = rows[-1]
    print(f"  {mode} x{seeds}: {r['rate']:.0f} env steps/s (warm-up {r['warm']:.0f} s)",
          flush=True)
  table, failures = to_markdown(rows, args.quick, length)
  print(table)
  return finish(args.out, "bench_qarl", jax.devices()[0], table, failures,
                "bench_qarl goals")


if __name__ == "__main__":
  sys.exit(main())
