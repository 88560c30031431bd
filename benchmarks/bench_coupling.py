"""Speed and exactness of entropylab's greedy minimum-entropy coupling against NumPy.

Peer: ``numpy_heap_greedy`` below, Kocaoglu et al. (AAAI 2017) Algorithm 1 with two
``heapq`` binary heaps, ``O((n + m) log(n + m))`` per coupling, on NumPy float64 input
(the usual way to run the greedy coupling in Python). Ties pop the lowest index, as ours.

Cases, each run for float64 marginals (with ``jax_enable_x64``) and for float32 ones
(JAX's default); ``--dtype`` picks one:

(1) one coupling at ``n = m`` in {50, 500, 2000, 10^4}: ``jit(greedy_mec_sparse)``
    (cells list) and ``jit(greedy_mec)`` (dense ``[n, m]``, up to n = 2000; at 10^4 the
    dense joint alone is 800 MB) against the heap greedy (returning its cell list, or
    filling a dense array for the dense row). Goal: at ``n = 10^4`` ours >= 10x faster.
(2) a batch of 4096 couplings at ``n = m = 64`` (the Markov-coding-game workload):
    ``jit(vmap(greedy_mec_sparse))`` and ``jit(vmap(greedy_mec))`` against a Python loop
    of the heap greedy over the batch, as throughput (couplings per second). Goal: ours
    >= 100x the peer's throughput. ``--quick`` uses 512 couplings.
(3) beside every row, the time of ``jnp.sort`` of the same marginals (jitted): the
    ``O(n log n)`` floor of any exact greedy that orders the masses.

Timing: ``benchmarks.bench_info.time_call`` (two untimed calls, then the median of
samples that each run the function back to back for at least ~10 ms). The timed peer
always computes in Python floats (float64). Correctness: in the same run every row
compares its coupling with the peer's, run (untimed) in the marginals' own dtype so that
both do the same float operations: the max abs difference over all cells must be 0 up
to ``1e-12`` (the run fails otherwise).

The Markdown table is printed and written to
``benchmarks/results/bench_coupling_<platform>[_<device kind>].md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import heapq
import os
import platform as _platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import _host_cpu, command_line, finish, time_call
from entropylab.coupling import greedy_mec, greedy_mec_sparse
from entropylab.coupling import mec as _mec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = (50, 500, 2000, 10_000)
QUICK_SIZES = (50, 500, 2000)
DENSE_MAX = 2000
BATCH, QUICK_BATCH, BATCH_SUPPORT = 4096, 512, 64
SINGLE_GOAL, BATCH_GOAL = 10.0, 100.0
DTYPES = ("float64", "float32")
TOL = 1e-12


# --------------------------------------------------------------------------- peer


def numpy_heap_greedy(p: np.ndarray, q: np.ndarray, native: bool = False):
  """Greedy coupling with two max-heaps: ``(rows, cols, mass)`` of the used cells.

  Computes in Python floats (float64); ``native=True`` keeps NumPy scalars of the
  inputs' dtype instead (float32 arithmetic for float32 input; slower, used to check).
  """
  values_p = list(p) if native else p.tolist()
  values_q = list(q) if native else q.tolist()
  hp = [(-v, i) for i, v in enumerate(values_p)]
  hq = [(-v, j) for j, v in enumerate(values_q)]
  heapq.heapify(hp)
  heapq.heapify(hq)
  rows, cols, mass = [], [], []
  while hp and hq:
    a, i = heapq.heappop(hp)
    b, j = heapq.heappop(hq)
    a, b = -a, -b
    r = min(a, b)
    if r <= 0:
      break
    rows.append(i)
    cols.append(j)
    mass.append(r)
    if a - r > 0:
      heapq.heappush(hp, (-(a - r), i))
    if b - r > 0:
      heapq.heappush(hq, (-(b - r), j))
  return np.array(rows, np.int64), np.array(cols, np.int64), np.array(mass, np.float64)


def numpy_heap_greedy_dense(p: np.ndarray, q: np.ndarray, native: bool = False) -> np.ndarray:
  rows, cols, mass = numpy_heap_greedy(p, q, native)
  joint = np.zeros((p.size, q.size))
  joint[rows, cols] = mass
  return joint


def peer_batch_sparse(P: np.ndarray, Q: np.ndarray, native: bool = False):
  return [numpy_heap_greedy(p, q, native) for p, q in zip(P, Q)]


def peer_batch_dense(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
  return np.stack([numpy_heap_greedy_dense(p, q) for p, q in zip(P, Q)])


def sort_floor(*xs):
  return tuple(jnp.sort(x, axis=-1) for x in xs)


def numpy_sort_floor(*xs):
  return tuple(np.sort(x, axis=-1) for x in xs)


# --------------------------------------------------------------------------- checks


def _cells(rows, cols, mass, m: int) -> dict:
  rows, cols, mass = (np.asarray(a).ravel() for a in (rows, cols, mass))
  used = mass > 0
  return dict(zip((rows[used].astype(np.int64) * m + cols[used]).tolist(),
                  mass[used].astype(np.float64).tolist()))


def _sparse_diff(ours, peer, m: int) -> float:
  a, b = _cells(*ours, m), _cells(*peer, m)
  return max((abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in a.keys() | b.keys()), default=0.0)


def _dense_diff(ours, peer) -> float:
  return float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(peer, np.float64))))


def _kernel(batch: int, support: int) -> str:
  """Which kernel ``entropylab.coupling.mec`` dispatches to (accelerators: vectorised)."""
  vectorised = (jax.devices()[0].platform != "cpu"
                or (batch >= _mec._DENSE_MIN_BATCH and support <= _mec._DENSE_MAX_SUPPORT))
  return "vectorised kernel" if vectorised else "tree kernel"


# --------------------------------------------------------------------------- benchmark


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_coupling",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"sizes {QUICK_SIZES}, batch {QUICK_BATCH}, short timing")
  parser.add_argument("--dtype", choices=DTYPES, default=None,
                      help="dtype of the marginals (default: both)")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  parser.add_argument("--seed", type=int, default=0)
  # ``python -m benchmarks`` hands every module all options it does not know itself
  # (e.g. bench_info's ``--rows``): ignore the ones meant for other modules.
  args, _ = parser.parse_known_args(argv)
  return args


def _marginals(rng, shape, dtype):
  w = rng.gamma(1.0, size=shape)
  return (w / w.sum(-1, keepdims=True)).astype(dtype)


def run(args) -> tuple[list[dict], dict]:
  dtypes = (args.dtype,) if args.dtype else DTYPES
  results = []
  for name in dtypes:
    with jax.enable_x64(name == "float64"):
      results += _run_dtype(args, np.dtype(name))
  meta = dict(device=jax.devices()[0], quick=args.quick, dtypes=dtypes,
              batch=QUICK_BATCH if args.quick else BATCH)
  return results, meta


def _run_dtype(args, dtype) -> list[dict]:
  sizes = QUICK_SIZES if args.quick else SIZES
  batch = QUICK_BATCH if args.quick else BATCH
  timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=5, budget_s=2.0)
  peer_timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=3,
                                                                           budget_s=3.0)
  native = dtype != np.float64
  device = jax.devices()[0]
  rng = np.random.default_rng(args.seed)
  results = []
  sparse_fn = jax.jit(greedy_mec_sparse)
  dense_fn = jax.jit(greedy_mec)
  floor_fn = jax.jit(sort_floor)
  common = dict(dtype=dtype.name)

  # (1) one coupling ---------------------------------------------------------------
  for n in sizes:
    p, q = _marginals(rng, n, dtype), _marginals(rng, n, dtype)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    pj, qj = jax.device_put(p, device), jax.device_put(q, device)
    t_floor, _ = time_call(floor_fn, pj, qj, **timing)
    t_np_floor, _ = time_call(numpy_sort_floor, p, q, **timing)
    common["np_floor"] = t_np_floor
    t_peer, peer = time_call(numpy_heap_greedy, p64, q64, **peer_timing)
    if native:
      peer = numpy_heap_greedy(p, q, native=True)
    t_ours, ours = time_call(sparse_fn, pj, qj, **timing)
    results.append(dict(case=f"`greedy_mec_sparse` ({_kernel(1, n)})", n=n, batch=1,
                        ours=t_ours, peer=t_peer, peer_name="heapq greedy (cells)",
                        floor=t_floor, diff=_sparse_diff(ours, peer, n), **common))
    if n <= DENSE_MAX:
      t_peer, peer = time_call(numpy_heap_greedy_dense, p64, q64, **peer_timing)
      if native:
        peer = numpy_heap_greedy_dense(p, q, native=True)
      t_ours, ours = time_call(dense_fn, pj, qj, **timing)
      results.append(dict(case=f"`greedy_mec` dense ({_kernel(1, n)})", n=n, batch=1,
                          ours=t_ours, peer=t_peer, peer_name="heapq greedy + dense fill",
                          floor=t_floor, diff=_dense_diff(ours, peer), **common))

  # (2) a batch of small couplings ---------------------------------------------------
  n = BATCH_SUPPORT
  P, Q = _marginals(rng, (batch, n), dtype), _marginals(rng, (batch, n), dtype)
  P64, Q64 = P.astype(np.float64), Q.astype(np.float64)
  Pj, Qj = jax.device_put(P, device), jax.device_put(Q, device)
  t_floor, _ = time_call(floor_fn, Pj, Qj, **timing)
  common["np_floor"], _ = time_call(numpy_sort_floor, P, Q, **timing)
  t_peer, peer = time_call(peer_batch_sparse, P64, Q64, **peer_timing)
  if native:
    peer = peer_batch_sparse(P, Q, native=True)
  t_ours, ours = time_call(jax.jit(jax.vmap(greedy_mec_sparse)), Pj, Qj, **timing)
  diff = max(_sparse_diff([o[b] for o in ours], peer[b], n) for b in range(batch))
  results.append(dict(case=f"`vmap(greedy_mec_sparse)` ({_kernel(batch, n)})", n=n,
                      batch=batch, ours=t_ours, peer=t_peer,
                      peer_name="loop of heapq greedy (cells)", floor=t_floor, diff=diff,
                      **common))
  dense_peer = [numpy_heap_greedy_dense(a, b, native) for a, b in zip(P, Q)] if native else None
  t_peer, peer = time_call(peer_batch_dense, P64, Q64, **peer_timing)
  t_ours, ours = time_call(jax.jit(jax.vmap(greedy_mec)), Pj, Qj, **timing)
  results.append(dict(case=f"`vmap(greedy_mec)` dense ({_kernel(batch, n)})", n=n,
                      batch=batch, ours=t_ours, peer=t_peer,
                      peer_name="loop of heapq greedy + dense fill", floor=t_floor,
                      diff=_dense_diff(ours, np.stack(dense_peer) if native else peer),
                      **common))
  return results


def _fmt_ms(s):
  return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.1f}"


def _goal(results, case_prefix, n, batch, goal):
  rows = [r for r in results if r["case"].startswith(case_prefix) and r["n"] == n
          and r["batch"] == batch]
  if not rows:
    return "not measured in this run"
  return ", ".join(
      f"{r['dtype']} {'met' if r['peer'] / r['ours'] >= goal else 'NOT met'} "
      f"({r['peer'] / r['ours']:.1f}x)" for r in rows)


def to_markdown(results, meta) -> str:
  device = meta["device"]
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  host = f"{_host_cpu()}, {os.cpu_count()} logical CPUs"
  mode = "quick" if meta["quick"] else "full"
  lines = [
      f"# bench_coupling on {device.device_kind}{' (quick)' if meta['quick'] else ''}",
      "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`, "
      f"{jax.device_count()} device(s)); host: {host}",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, Python "
      f"{_platform.python_version()}",
      f"- date: {now}",
      f"- command: `{command_line()}`",
      f"- mode: {mode}; marginals Dirichlet(1) in {' and '.join(meta['dtypes'])}; the timed "
      "peer computes in Python floats (float64)",
      "",
      "| case | dtype | n = m | batch | ours ms | peer | peer ms | peer / ours | ours couplings/s "
      "| peer couplings/s | sort floor ms | ours / floor | NumPy sort ms | max abs diff |",
      "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    cells = [
        r["case"], r["dtype"], str(r["n"]), str(r["batch"]), _fmt_ms(r["ours"]), r["peer_name"],
        _fmt_ms(r["peer"]), f"{r['peer'] / r['ours']:.1f}", f"{r['batch'] / r['ours']:,.0f}",
        f"{r['batch'] / r['peer']:,.0f}", _fmt_ms(r["floor"]), f"{r['ours'] / r['floor']:.1f}",
        _fmt_ms(r["np_floor"]), f"{r['diff']:.1e}",
    ]
    lines.append("| " + " | ".join(cells) + " |")
  ok = all(r["diff"] <= TOL for r in results)
  batch = meta["batch"]
  lines += [
      "",
      "Columns: time per call (median, jitted, compile excluded; the peer is plain Python "
      "+ NumPy); peer / ours > 1 means ours is faster (for batches it is the throughput "
      "ratio); sort floor = `jnp.sort` of the same marginals, jitted; NumPy sort = "
      "`np.sort` of the same marginals on the host; max abs diff = "
      "largest |ours - peer| over all cells, the peer run in the marginals' dtype "
      f"(tolerance {TOL:g}).",
      "",
      f"- goal one coupling at n = 10^4 >= {SINGLE_GOAL:g}x the NumPy greedy (cells): "
      + _goal(results, "`greedy_mec_sparse`", 10_000, 1, SINGLE_GOAL),
      f"- goal batch of {batch} couplings at n = {BATCH_SUPPORT} >= {BATCH_GOAL:g}x the "
      f"NumPy greedy's throughput: cells "
      + _goal(results, "`vmap(greedy_mec_sparse)`", BATCH_SUPPORT, batch, BATCH_GOAL)
      + "; dense " + _goal(results, "`vmap(greedy_mec)`", BATCH_SUPPORT, batch, BATCH_GOAL)
      + ("" if batch == BATCH else f" (goal stated for {BATCH} couplings)"),
      f"- correctness: {'all rows equal the peer within tolerance' if ok else 'FAILED'}",
  ]
  for r in results:
    if r["case"].startswith("`vmap(greedy_mec_sparse)`"):
      lines.append(
          f"- {r['dtype']} batch: {BATCH_GOAL:g}x the peer means ours in at most "
          f"{_fmt_ms(r['peer'] / BATCH_GOAL)} ms; NumPy sorts the same marginals in "
          f"{_fmt_ms(r['np_floor'])} ms, jnp.sort in {_fmt_ms(r['floor'])} ms, ours takes "
          f"{_fmt_ms(r['ours'])} ms")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  results, meta = run(args)
  bad = [f"{r['case']} {r['dtype']}" for r in results if r["diff"] > TOL]
  return finish(args.out, "bench_coupling", meta["device"], to_markdown(results, meta), bad,
                f"couplings differ from the peer beyond {TOL:g}")


if __name__ == "__main__":
  sys.exit(main())
