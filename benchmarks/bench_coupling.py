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
(4) beside every row, the same greedy compiled from C (``benchmarks/native/greedy_tree.c``:
    tournament trees with branch-free updates, ``gcc -O3 -march=native -fopenmp``, the
    batch split over all cores): what native code reaches on this CPU, the ceiling the
    goals are weighed against. Its cells must equal the float64 peer's in every run.
    Skipped (``n/a``) when no C compiler is found (``$CC``, ``cc`` or ``gcc``).

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
import ctypes
import datetime as _dt
import heapq
import os
import platform as _platform
import shutil
import subprocess
import sys
import tempfile
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


class CompiledGreedy:
  """``benchmarks/native/greedy_tree.c`` compiled into a temporary folder and loaded with
  ctypes: ``(P [B, n], Q [B, m]) -> (rows, cols, mass)``, each ``[B, n + m - 1]``,
  computed in float64. ``CompiledGreedy.load()`` returns ``None`` and says why on stderr
  when there is no C compiler or the build fails."""

  SOURCE = Path(__file__).resolve().parent / "native" / "greedy_tree.c"

  def __init__(self, library: Path, flags: str):
    self._lib = ctypes.CDLL(str(library))
    self._lib.greedy_tree_batch.restype = None
    self._lib.greedy_tree_threads.restype = ctypes.c_int
    self.threads = int(self._lib.greedy_tree_threads())
    self.flags = flags

  @classmethod
  def load(cls):
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc") if c and shutil.which(c)),
                    None)
    if compiler is None:
      print("bench_coupling: no C compiler found; the native column is skipped",
            file=sys.stderr)
      return None
    folder = Path(tempfile.mkdtemp(prefix="entropylab_native_"))
    library = folder / "greedy_tree.so"
    errors = []
    for flags in ("-O3 -march=native -fopenmp", "-O3 -march=native", "-O3"):
      cmd = [compiler, *flags.split(), "-shared", "-fPIC", "-o", str(library), str(cls.SOURCE)]
      done = subprocess.run(cmd, capture_output=True, text=True)
      if done.returncode == 0:
        loaded = cls(library, flags)
        shutil.rmtree(folder, ignore_errors=True)  # the loaded library stays mapped
        return loaded
      errors.append(f"{' '.join(cmd)}: {done.stderr.strip()[:300]}")
    print("bench_coupling: the native greedy did not build; its column is skipped\n"
          + "\n".join(errors), file=sys.stderr)
    return None

  def __call__(self, P: np.ndarray, Q: np.ndarray):
    P = np.ascontiguousarray(np.atleast_2d(P), np.float64)
    Q = np.ascontiguousarray(np.atleast_2d(Q), np.float64)
    batch, n, m = P.shape[0], P.shape[1], Q.shape[1]
    steps = n + m - 1
    mass = np.empty((batch, steps), np.float64)
    rows = np.empty((batch, steps), np.int32)
    cols = np.empty((batch, steps), np.int32)
    ptr = lambda a: ctypes.c_void_p(a.ctypes.data)
    self._lib.greedy_tree_batch(ptr(P), ptr(Q), ctypes.c_int(batch), ctypes.c_int(n),
                                ctypes.c_int(m), ptr(mass), ptr(rows), ptr(cols))
    return rows, cols, mass


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
  compiled = CompiledGreedy.load()
  for name in dtypes:
    with jax.enable_x64(name == "float64"):
      results += _run_dtype(args, np.dtype(name), compiled)
  meta = dict(device=jax.devices()[0], quick=args.quick, dtypes=dtypes,
              batch=QUICK_BATCH if args.quick else BATCH,
              compiled=None if compiled is None else (compiled.flags, compiled.threads))
  return results, meta


def _compiled_columns(compiled, peer_timing, P64, Q64, peer64, m: int) -> dict:
  """Time of the compiled greedy on the float64 marginals and the largest difference of
  its cells from the float64 peer's (``peer64``: one cell list or a list of them)."""
  if compiled is None:
    return dict(c_ms=None, c_diff=0.0)
  t, (rows, cols, mass) = time_call(compiled, P64, Q64, **peer_timing)
  peers = peer64 if isinstance(peer64, list) else [peer64]
  diff = max(_sparse_diff((rows[b], cols[b], mass[b]), peers[b], m) for b in range(len(peers)))
  return dict(c_ms=t, c_diff=diff)


def _run_dtype(args, dtype, compiled=None) -> list[dict]:
  sizes = QUICK_SIZES if args.quick else SIZES
  batch = QUICK_BATCH if args.quick else BATCH
  timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=5, budget_s=2.0)
  peer_timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=3,
                                                                           budget_s=3.0)
  in_dtype = dtype != np.float64
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
    common.update(_compiled_columns(compiled, peer_timing, p64, q64, peer, n))
    if in_dtype:
      peer = numpy_heap_greedy(p, q, native=True)
    t_ours, ours = time_call(sparse_fn, pj, qj, **timing)
    results.append(dict(case=f"`greedy_mec_sparse` ({_kernel(1, n)})", n=n, batch=1,
                        ours=t_ours, peer=t_peer, peer_name="heapq greedy (cells)",
                        floor=t_floor, diff=_sparse_diff(ours, peer, n), **common))
    if n <= DENSE_MAX:
      t_peer, peer = time_call(numpy_heap_greedy_dense, p64, q64, **peer_timing)
      if in_dtype:
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
  common.update(_compiled_columns(compiled, peer_timing, P64, Q64, peer, n))
  if in_dtype:
    peer = peer_batch_sparse(P, Q, native=True)
  t_ours, ours = time_call(jax.jit(jax.vmap(greedy_mec_sparse)), Pj, Qj, **timing)
  diff = max(_sparse_diff([o[b] for o in ours], peer[b], n) for b in range(batch))
  results.append(dict(case=f"`vmap(greedy_mec_sparse)` ({_kernel(batch, n)})", n=n,
                      batch=batch, ours=t_ours, peer=t_peer,
                      peer_name="loop of heapq greedy (cells)", floor=t_floor, diff=diff,
                      **common))
  dense_peer = ([numpy_heap_greedy_dense(a, b, True) for a, b in zip(P, Q)] if in_dtype
                else None)
  t_peer, peer = time_call(peer_batch_dense, P64, Q64, **peer_timing)
  t_ours, ours = time_call(jax.jit(jax.vmap(greedy_mec)), Pj, Qj, **timing)
  results.append(dict(case=f"`vmap(greedy_mec)` dense ({_kernel(batch, n)})", n=n,
                      batch=batch, ours=t_ours, peer=t_peer,
                      peer_name="loop of heapq greedy + dense fill", floor=t_floor,
                      diff=_dense_diff(ours, np.stack(dense_peer) if in_dtype else peer),
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
      "| peer couplings/s | sort floor ms | ours / floor | NumPy sort ms | C ms | peer / C "
      "| max abs diff |",
      "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    cells = [
        r["case"], r["dtype"], str(r["n"]), str(r["batch"]), _fmt_ms(r["ours"]), r["peer_name"],
        _fmt_ms(r["peer"]), f"{r['peer'] / r['ours']:.1f}", f"{r['batch'] / r['ours']:,.0f}",
        f"{r['batch'] / r['peer']:,.0f}", _fmt_ms(r["floor"]), f"{r['ours'] / r['floor']:.1f}",
        _fmt_ms(r["np_floor"]),
        "n/a" if r["c_ms"] is None else _fmt_ms(r["c_ms"]),
        "n/a" if r["c_ms"] is None else f"{r['peer'] / r['c_ms']:.1f}",
        f"{r['diff']:.1e}",
    ]
    lines.append("| " + " | ".join(cells) + " |")
  ok = all(r["diff"] <= TOL and r["c_diff"] <= TOL for r in results)
  if meta["compiled"] is None:
    c_note = "C: not built (no C compiler)"
  else:
    c_note = (f"C = `benchmarks/native/greedy_tree.c` built with `{meta['compiled'][0]}`, "
              f"{meta['compiled'][1]} thread(s), float64 (the same for both dtypes' rows), "
              "its cells checked against the float64 peer's")
  batch = meta["batch"]
  lines += [
      "",
      "Columns: time per call (median, jitted, compile excluded; the peer is plain Python "
      "+ NumPy); peer / ours > 1 means ours is faster (for batches it is the throughput "
      "ratio); sort floor = `jnp.sort` of the same marginals, jitted; NumPy sort = "
      "`np.sort` of the same marginals on the host; C ms = the compiled greedy's cell list "
      "(also beside the dense rows); max abs diff = "
      "largest |ours - peer| over all cells, the peer run in the marginals' dtype "
      f"(tolerance {TOL:g}); {c_note}.",
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
          f"{_fmt_ms(r['ours'])} ms"
          + ("" if r["c_ms"] is None else
             f"; the compiled C greedy takes {_fmt_ms(r['c_ms'])} ms "
             f"({r['peer'] / r['c_ms']:.0f}x the peer)"))
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  results, meta = run(args)
  bad = [f"{r['case']} {r['dtype']}" for r in results
         if r["diff"] > TOL or r["c_diff"] > TOL]
  return finish(args.out, "bench_coupling", meta["device"], to_markdown(results, meta), bad,
                f"couplings differ from the peer beyond {TOL:g}")


if __name__ == "__main__":
  sys.exit(main())
