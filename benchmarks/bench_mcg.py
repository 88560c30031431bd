"""Episodes per second of the rate-limited Markov coding game (MEC-B's gridworld study).

Ours: :func:`entropylab.rl.play_coding_game`, every episode of one rate in one jitted,
vmapped call (512 uniform messages, each sent once; with several devices, e.g.
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` as ``make bench`` sets, the
episodes are split over a mesh of all of them), for 8 compression ratios
H(M)/R in {1, 1.5, 2, 3, 4, 5, 6, 8} (1: no limit, plain greedy MEC; else EBIM), on the
8 x 8 noisy gridworld with the soft-Q policy at beta = e^-4 and episodes of at most
1000 steps.

Peer, measured in the same run: the shape of the MEC-B authors' code, a Python loop over
episodes that at every step compresses the belief with a NumPy EBIM loop, couples it
with the policy by the NumPy greedy coupling (repeatedly pairing the two largest
residual masses), composes the two, draws the action and the slip with NumPy and
updates the belief. It is written here (nothing is imported from the authors' code);
the peer's couplings are checked against ours to 1e-12 on the benchmark's beliefs
before timing. The peer runs ``--peer-episodes`` episodes per rate (its rate is
per episode, and episodes are independent, so a subset measures it).

Goal (issue 7): ours >= 50x the peer's episodes per second. A goal not met is
reported; the run fails (exit status 1) only if the two couplings disagree.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
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
RATIOS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
MESSAGES = 512
HORIZON = 1000
BETA = math.exp(-4)


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_mcg",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="64 messages, 3 ratios, 4 peer episodes per ratio")
  parser.add_argument("--peer-episodes", type=int, default=32,
                      help="peer episodes timed per ratio")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  return parser.parse_args(argv)


# --------------------------------------------------------------------------- the peer


def _bits(masses) -> float:
  m = masses[masses > 0]
  return float(-np.sum(m * np.log2(m)))


def np_ebim(p, rate):
  """EBIM's Algorithm 1 as a NumPy loop over merges; returns the cluster of each symbol."""
  n = p.size
  cluster = np.arange(n)
  mass = p.copy()
  if _bits(mass) <= rate:
    return cluster
  while np.count_nonzero(mass) > 1:
    alive = np.flatnonzero(mass > 0)
    small = alive[np.lexsort((alive, mass[alive]))[:2]]
    trial = mass.copy()
    keep, drop = min(small), max(small)
    trial[keep] += trial[drop]
    trial[drop] = 0.0
    if _bits(trial) <= rate:
      cluster[cluster == drop] = keep
      return cluster
    large = alive[np.lexsort((alive, -mass[alive]))[:2]]
    keep, drop = min(large), max(large)
    mass[keep] += mass[drop]
    mass[drop] = 0.0
    cluster[cluster == drop] = keep
    if _bits(mass) <= rate:
      return cluster
  return cluster


def np_greedy(p, q):
  """Greedy minimum-entropy coupling (Kocaoglu et al. 2017): pair the largest residuals."""
  p, q = p.copy(), q.copy()
  joint = np.zeros((p.size, q.size))
  while True:
    i, j = int(np.argmax(p)), int(np.argmax(q))
    m = min(p[i], q[j])
    if m <= 0:
      return joint
    joint[i, j] += m
    p[i] -= m
    q[j] -= m


def np_coupling(belief, policy, rate):
  if not math.isfinite(rate):
    return np_greedy(belief, policy)
  cluster = np_ebim(belief, rate)
  p_t = np.bincount(cluster, weights=belief, minlength=belief.size)
  p_ta = np_greedy(p_t, policy)
  cond = np.divide(p_ta, p_t[:, None], out=np.zeros_like(p_ta), where=p_t[:, None] > 0)
  return belief[:, None] * cond[cluster]


def np_episode(rng, world_p, world_term, world_reward, start, pi, message, prior, rate):
  belief, state, ret = prior.copy(), start, 0.0
  for t in range(HORIZON):
    joint = np_coupling(belief, pi[state], rate)
    row = joint[message] / joint[message].sum()
    action = rng.choice(row.size, p=row)
    belief = joint[:, action] / joint[:, action].sum()
    state = rng.choice(world_p.shape[-1], p=world_p[state, action])
    ret += 0.95 ** t * world_reward[state]
    if world_term[state]:
      break
  return int(np.argmax(belief)) == message, ret


# --------------------------------------------------------------------------- runs


def _sort_timings(width: int, rows: int = 128, reps: int = 20) -> str:
  """The stable argsort of the games' widest step (``rows`` beliefs of ``width``,
  float32, many ties): ours (:func:`entropylab.coupling._sorting.stable_argsort`, a
  bitonic network on CPU from 128 entries) against ``jnp.argsort(stable=True)``, both
  jitted, best of ``reps`` calls after a warm-up; fails the run if they disagree."""
  from entropylab.coupling import _sorting
  rng = np.random.default_rng(1)
  x = jnp.asarray(np.round(rng.dirichlet(np.ones(width), size=rows) * 4 * width)
                  / (4 * width), jnp.float32)
  ours = jax.jit(jax.vmap(_sorting.stable_argsort))
  xla = jax.jit(lambda v: jnp.argsort(v, axis=-1, stable=True).astype(jnp.int32))
  if not np.array_equal(ours(x), xla(x)):
    raise AssertionError("stable_argsort disagrees with jnp.argsort(stable=True)")
  best = {}
  for name, fn in (("ours", ours), ("xla", xla)):
    times = []
    for _ in range(reps):
      t0 = time.perf_counter()
      jax.block_until_ready(fn(x))
      times.append(time.perf_counter() - t0)
    best[name] = min(times)
  return (f"- stable argsort of {rows} rows of {width} (float32, ties): ours "
          f"{best['ours'] * 1e3:.2f} ms, jnp.argsort(stable=True) {best['xla'] * 1e3:.2f} ms "
          f"({best['xla'] / best['ours']:.1f}x)")


def main(argv=None) -> int:
  args = parse_args(argv)
  messages = 64 if args.quick else MESSAGES
  ratios = (1.0, 2.0, 4.0) if args.quick else RATIOS
  peer_n = 4 if args.quick else args.peer_episodes
  world = rl.GridWorld()
  with jax.enable_x64(True):
    p64, r64, t64 = world.tables(jnp.float64)
    _, pi64 = rl.soft_q_iteration(p64, r64, 0.95, BETA, t64, iterations=300)
  pi_np = np.asarray(pi64)
  pi = jnp.asarray(pi_np, jnp.float32)
  prior = jnp.full(messages, 1.0 / messages)
  h_m = math.log2(messages)
  policy_fn = lambda s: pi[s.cell]
  devices = jax.devices()
  mesh = jax.sharding.Mesh(np.array(devices), ("episodes",)) if len(devices) > 1 else None

  @jax.jit
  def run_none(key):
    return rl.play_coding_game(key, world, policy_fn, jnp.arange(messages), prior, 0.0,
                               "none", horizon=HORIZON, mesh=mesh)

  @jax.jit
  def run_ebim(key, rate):
    return rl.play_coding_game(key, world, policy_fn, jnp.arange(messages), prior, rate,
                               "ebim", horizon=HORIZON, mesh=mesh)

  # Agreement of the two couplings on beliefs of the benchmark's kind.
  failures = []
  rng = np.random.default_rng(0)
  worst = 0.0
  with jax.enable_x64(True):
    for ratio in ratios:
      for _ in range(3):
        b = rng.dirichlet(np.full(messages, 0.5))
        pol = pi_np[rng.integers(world.num_states)]
        rate = h_m / ratio if ratio > 1 else math.inf
        ours = rl.compressed_coupling(jnp.asarray(b), jnp.asarray(pol), rate,
                                      "ebim" if ratio > 1 else "none")
        worst = max(worst, float(np.max(np.abs(np.asarray(ours)
                                                - np_coupling(b, pol, rate)))))
  if worst > 1e-12:
    failures.append(f"couplings disagree by {worst:.2e}")

  rows = []
  for ratio in ratios:
    key = jax.random.key(int(ratio * 10))
    t0 = time.perf_counter()
    ep = run_none(key) if ratio == 1 else run_ebim(key, h_m / ratio)
    jax.block_until_ready(ep)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    ep = run_none(key) if ratio == 1 else run_ebim(key, h_m / ratio)
    jax.block_until_ready(ep)
    ours_s = time.perf_counter() - t0
    prng = np.random.default_rng(int(ratio * 10))
    msgs = prng.integers(0, messages, peer_n)
    t0 = time.perf_counter()
    peer = [np_episode(prng, np.asarray(p64), np.asarray(t64),
                       world._state_reward, world.index(world.start), pi_np, int(m),
                       np.asarray(prior, np.float64), h_m / ratio if ratio > 1 else math.inf)
            for m in msgs]
    peer_s = time.perf_counter() - t0
    rows.append({
        "ratio": ratio, "ours_eps": messages / ours_s, "ours_s": ours_s, "warm": warm,
        "acc": float(ep.correct.mean()), "reward": float(ep.reward.mean()),
        "steps": float(ep.steps.mean()), "peer_eps": peer_n / peer_s,
        "peer_acc": float(np.mean([c for c, _ in peer]))})
    r = rows[-1]
    print(f"  H(M)/R = {ratio:g}: ours {r['ours_eps']:.0f} episodes/s, peer "
          f"{r['peer_eps']:.2f}", flush=True)

  sort_line = _sort_timings(messages)
  total_ours = len(ratios) * messages / sum(r["ours_s"] for r in rows)
  total_peer = len(ratios) / sum(1 / r["peer_eps"] for r in rows)
  speedup = total_ours / total_peer
  device = jax.devices()[0]
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  lines = [
      f"# bench_mcg on {device.device_kind}{' (quick)' if args.quick else ''}", "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`, {len(devices)} "
      f"device(s){', episodes split over all by shard_map' if mesh is not None else ''}); "
      f"host: {_host_cpu()}, {os.cpu_count()} logical CPUs",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, Python "
      f"{_platform.python_version()}",
      f"- date: {now}", f"- command: `{command_line()}`",
      f"- 8x8 noisy gridworld, soft-Q policy beta = e^-4, {messages} uniform messages "
      f"(each sent once per ratio), at most {HORIZON} steps; EBIM for H(M)/R > 1",
      f"- peer: Python loop over episodes with NumPy EBIM + greedy coupling, {peer_n} "
      f"episodes per ratio; couplings agree with ours to {worst:.1e}", "",
      "| H(M)/R | ours episodes/s | ours s (compile+first s) | accuracy | mean reward "
      "| mean steps | peer episodes/s | peer accuracy | speedup |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['ratio']:g} | {r['ours_eps']:.0f} | {r['ours_s']:.2f} "
                 f"({r['warm']:.1f}) | {r['acc']:.3f} | {r['reward']:.3f} | "
                 f"{r['steps']:.1f} | {r['peer_eps']:.2f} | {r['peer_acc']:.2f} | "
                 f"{r['ours_eps'] / r['peer_eps']:.0f}x |")
  lines += ["", f"- all ratios: ours {total_ours:.0f} episodes/s, peer {total_peer:.2f}: "
            f"{speedup:.0f}x (goal >= 50x): {'met' if speedup >= 50 else 'NOT met'}",
            sort_line]
  table = "\n".join(lines) + "\n"
  print(table)
  return finish(args.out, "bench_mcg", device, table, failures, "bench_mcg")


if __name__ == "__main__":
  sys.exit(main())
