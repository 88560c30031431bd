"""Speed and agreement of entropylab.info's sample estimators against their peer packages.

Same samples, same machine, one process. Cases:

(a) ``mutual_information_ksg(x, y, k=3)`` (KSG variant 1, max norm; on CPUs an exact
    k-d tree neighbour search) on ``y = x + 0.5 * noise`` with ``x`` standard Gaussian, in
    ``d_x + d_y`` = 1+1 and 4+4 dimensions, at ``N`` in {10^3, 10^4, 10^5} (the true MI
    is ``(d / 2) ln 5`` nats). Two peers:

    * infomeasure (``infomeasure.mutual_information(x, y, approach="ksg", ...)``,
      scipy KD-trees), set to our definition: ``k=3``, ``ksg_id=1`` (strict marginal
      counts), ``minkowski_p=inf`` (max norm), ``noise_level=0`` (its default adds
      Gaussian noise of standard deviation 1e-10 to every entry), ``normalize=False``
      and ``base="e"`` (nats);
    * ennemi's ``_entropy_estimators._estimate_single_mi(x, y, 3)``, a KD-tree KSG-1
      without ennemi's preprocessing (no rescaling, no noise).

(b) ``diffusion_spectral_entropy(x, sigma=10, t=1)`` on ``N`` in {500, 2000} Gaussian
    points in 10 dimensions with standard deviation 5 (about 7-8 bits, well inside
    ``(0, log2 N)``) against ``dse_dsmi.diffusion_spectral_entropy`` (dse-dsmi 1.1) with
    ``gaussian_kernel_sigma=10, t=1, max_N=None`` (no subsampling).

Every sample is drawn in float64 and rounded to float32 once, so all estimators see the
same values: ours as float32 JAX arrays (JAX's default; the timed rows) and, untimed,
as float64 ones; the peers as NumPy float64. ``--quick`` leaves out ``N = 10^5``.

Timing: ours is ``jax.jit`` of the public function, compiled ahead (``lower().compile()``)
so compilation is excluded; the peers are plain calls, each warmed up once on a small
problem (imports, caches). A call that takes more than 2 s is run twice and the faster
time is reported (on a busy machine the first of several calls can be many times
slower); faster ones are timed with ``benchmarks.bench_info.time_call`` (two untimed
calls, then the median of samples that each run back to back for at least ~10 ms).

Goal: ours at most the peer's time at every size on a CPU (peer / ours >= 1) and at
least 20x faster than the CPU peer on a GPU (the peers always run on the host CPU).

Correctness, in the same run: every row compares our estimate with the peer's on the
same samples and the run fails (exit status 1) if they differ by more than 1e-4 (nats
or bits) in float32, or by more than 1e-6 in float64 (ennemi's digamma is an
asymptotic expansion accurate to about 1e-6; the float64 check is skipped where our
float32 call takes more than 2 s). A peer that is not installed is reported as such and
its rows keep only our time.

The Markdown table is printed and written to
``benchmarks/results/bench_info_samples_<platform>[_<device kind>].md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import importlib
import importlib.metadata
import math
import os
import platform as _platform
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import _block, _host_cpu, command_line, finish, time_call
from entropylab.info import diffusion_spectral_entropy, mutual_information_ksg

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KSG_SIZES = (1_000, 10_000, 100_000)
QUICK_KSG_SIZES = (1_000, 10_000)
KSG_DIMS = (1, 4)
K = 3
NOISE = 0.5
DSE_SIZES = (500, 2000)
DSE_DIM = 10
DSE_SCALE = 5.0
SIGMA = 10.0
T = 1
SLOW_S = 2.0
TOL = {"float32": 1e-4, "float64": 1e-6}
CPU_GOAL, GPU_GOAL = 1.0, 20.0


# --------------------------------------------------------------------------- peers


def _import_quietly(name: str):
  """The module ``name``, or ``None`` if it is not installed. Warning filters are restored
  afterwards: importing dse_dsmi calls ``warnings.filterwarnings("ignore")``."""
  saved = warnings.filters[:]
  try:
    return importlib.import_module(name)
  except ImportError:
    return None
  finally:
    warnings.filters[:] = saved


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def infomeasure_ksg(im, x: np.ndarray, y: np.ndarray) -> float:
  return im.mutual_information(x, y, approach="ksg", k=K, ksg_id=1, minkowski_p=np.inf,
                               noise_level=0, normalize=False, base="e")


def ennemi_ksg(estimators, x: np.ndarray, y: np.ndarray) -> float:
  return estimators._estimate_single_mi(x, y, K)


def dse_dsmi_entropy(dse, x: np.ndarray) -> float:
  return dse.diffusion_spectral_entropy(x, gaussian_kernel_sigma=SIGMA, t=T, max_N=None)


class Peer:
  """A peer package's function, or the note saying why it is missing."""

  def __init__(self, label: str, dist: str, module: str, fn):
    self.label = label
    self.dist = dist
    mod = _import_quietly(module)
    self.fn = None if mod is None else functools.partial(fn, mod)
    self.note = None if mod is not None else f"{dist} not installed (`pip install {dist}`)"

  def warm_up(self, *args):
    if self.fn is not None:
      self.fn(*args)


# --------------------------------------------------------------------------- data


def _round_f32(a: np.ndarray) -> np.ndarray:
  return a.astype(np.float32).astype(np.float64)


def ksg_samples(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng([seed, n, d])
  x = rng.standard_normal((n, d))
  y = x + NOISE * rng.standard_normal((n, d))
  return _round_f32(x), _round_f32(y)


def dse_points(seed: int, n: int) -> np.ndarray:
  rng = np.random.default_rng([seed, n, DSE_DIM, 1])
  return _round_f32(DSE_SCALE * rng.standard_normal((n, DSE_DIM)))


# --------------------------------------------------------------------------- timing


def measure(fn, *args, timing: dict, compile_first: bool):
  """``(seconds per call, output, slow)``; ``slow``: the call took over ``SLOW_S``, so
  the time is the faster of two timed calls instead of ``time_call``'s median.

  ``compile_first``: ``fn`` is jitted; it is compiled ahead (which fills its cache), so
  that a slow call need not be run once untimed just to compile it.
  """
  if compile_first:
    fn.lower(*args).compile()
  t0 = time.perf_counter()
  out = _block(fn(*args))
  first = time.perf_counter() - t0
  if first > SLOW_S:
    t0 = time.perf_counter()
    out = _block(fn(*args))
    return min(first, time.perf_counter() - t0), out, True
  t, out = time_call(fn, *args, **timing)
  return t, out, False


# --------------------------------------------------------------------------- benchmark


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_info_samples",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"KSG at N in {QUICK_KSG_SIZES} only, short timing")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  parser.add_argument("--seed", type=int, default=0)
  # ``python -m benchmarks`` hands every module all options it does not know itself:
  # ignore the ones meant for other modules.
  args, _ = parser.parse_known_args(argv)
  return args


def _float64_value(fn, *arrays):
  with jax.enable_x64(True):
    return float(fn(*(jnp.asarray(a, jnp.float64) for a in arrays)))


def _rows_for(case, short, n, dims, ours_t, ours_v, ours_slow, v64, peers_out, goal):
  rows = []
  for peer, peer_t, peer_v, peer_slow in peers_out:
    row = dict(case=case, short=short, n=n, dims=dims, dtype="float32", ours=ours_t,
               value=ours_v, slow=ours_slow, peer=peer.label, note=peer.note, goal=goal)
    if peer.fn is not None:
      row.update(peer_t=peer_t, peer_slow=peer_slow, diff=abs(ours_v - peer_v),
                 diff64=None if v64 is None else abs(v64 - peer_v))
    rows.append(row)
  return rows


def _load() -> str:
  try:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())
  except OSError:
    return "unknown"


def run(args) -> tuple[list[dict], dict]:
  load_start = _load()
  device = jax.devices()[0]
  goal = CPU_GOAL if device.platform == "cpu" else GPU_GOAL
  timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=5,
                                                                     budget_s=2.0)
  ksg_peers = (Peer("infomeasure KSG-1 (KD-tree)", "infomeasure", "infomeasure",
                    infomeasure_ksg),
               Peer("ennemi `_estimate_single_mi` (KD-tree)", "ennemi",
                    "ennemi._entropy_estimators", ennemi_ksg))
  dse_peer = Peer("dse-dsmi `diffusion_spectral_entropy`", "dse-dsmi", "dse_dsmi",
                  dse_dsmi_entropy)
  # First calls pay for imports and caches: pay them here, untimed.
  small = ksg_samples(args.seed, 200, 2)
  for peer in ksg_peers:
    peer.warm_up(*small)
  dse_peer.warm_up(dse_points(args.seed, 50))

  ours_ksg = jax.jit(functools.partial(mutual_information_ksg, k=K))
  ours_dse = jax.jit(functools.partial(diffusion_spectral_entropy, sigma=SIGMA, t=T))
  results = []

  # (a) KSG mutual information ------------------------------------------------------
  sizes = QUICK_KSG_SIZES if args.quick else KSG_SIZES
  for d in KSG_DIMS:
    for n in sizes:
      x, y = ksg_samples(args.seed, n, d)
      xj = jax.device_put(jnp.asarray(x, jnp.float32), device)
      yj = jax.device_put(jnp.asarray(y, jnp.float32), device)
      ours_t, ours_v, slow = measure(ours_ksg, xj, yj, timing=timing, compile_first=True)
      ours_v = float(ours_v)
      v64 = None if ours_t > SLOW_S else _float64_value(ours_ksg, x, y)
      peers_out = []
      for peer in ksg_peers:
        if peer.fn is None:
          peers_out.append((peer, None, None, None))
          continue
        peer_t, peer_v, peer_slow = measure(peer.fn, x, y, timing=timing,
                                            compile_first=False)
        peers_out.append((peer, peer_t, float(peer_v), peer_slow))
      results += _rows_for("`mutual_information_ksg` (k=3, KSG-1)", "KSG", n, f"{d}+{d}",
                           ours_t, ours_v, slow, v64, peers_out, goal)
      print(f"  KSG {d}+{d} N={n}: ours {ours_t * 1e3:.1f} ms", flush=True)

  # (b) diffusion spectral entropy ----------------------------------------------------
  for n in DSE_SIZES:
    x = dse_points(args.seed, n)
    xj = jax.device_put(jnp.asarray(x, jnp.float32), device)
    ours_t, ours_v, slow = measure(ours_dse, xj, timing=timing, compile_first=True)
    ours_v = float(ours_v)
    v64 = None if ours_t > SLOW_S else _float64_value(ours_dse, x)
    if dse_peer.fn is None:
      peers_out = [(dse_peer, None, None, None)]
    else:
      peer_t, peer_v, peer_slow = measure(dse_peer.fn, x, timing=timing,
                                          compile_first=False)
      peers_out = [(dse_peer, peer_t, float(peer_v), peer_slow)]
    results += _rows_for("`diffusion_spectral_entropy` (sigma=10, t=1)", "DSE", n,
                         f"d={DSE_DIM}", ours_t, ours_v, slow, v64, peers_out, goal)
    print(f"  DSE N={n}: ours {ours_t * 1e3:.1f} ms", flush=True)

  meta = dict(device=device, quick=args.quick, goal=goal, load=(load_start, _load()),
              notes=[p.note for p in (*ksg_peers, dse_peer) if p.note])
  return results, meta


def _fmt_ms(s, slow=False):
  text = f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.1f}"
  return text + " (best of 2)" if slow else text


def _failures(results) -> list[str]:
  bad = []
  for r in results:
    for key, dtype in (("diff", "float32"), ("diff64", "float64")):
      v = r.get(key)
      if v is not None and not (v <= TOL[dtype]):  # also catches nan
        bad.append(f"{r['short']} {r['dims']} N={r['n']} vs {r['peer']} ({dtype}: {v:.1e})")
  return bad


def to_markdown(results, meta) -> str:
  device = meta["device"]
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  host = f"{_host_cpu()}, {os.cpu_count()} logical CPUs"
  goal = meta["goal"]
  versions = ", ".join(f"{d} {_version(d)}" for d in
                       ("infomeasure", "ennemi", "dse-dsmi", "scipy", "scikit-learn"))
  mode = (f"quick (KSG at N in {', '.join(map(str, QUICK_KSG_SIZES))})" if meta["quick"]
          else "full")
  lines = [
      f"# bench_info_samples on {device.device_kind}{' (quick)' if meta['quick'] else ''}",
      "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`, "
      f"{jax.device_count()} device(s)); host: {host}",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, Python "
      f"{_platform.python_version()}; peers: {versions}",
      f"- date: {now}",
      f"- command: `{command_line()}`",
      f"- mode: {mode}; ours in float32 (timed) and float64 (untimed agreement); the peers "
      "compute in float64 on the same (float32-rounded) samples",
      f"- load average (1 / 5 / 15 min): {meta['load'][0]} at the start, "
      f"{meta['load'][1]} at the end (this run alone keeps about 1 busy)",
  ]
  lines += [f"- {note}" for note in meta["notes"]]
  lines += [
      "",
      "| case | N | dims | dtype | ours ms | estimate | peer | peer ms | peer / ours "
      "| abs diff | abs diff f64 | goal |",
      "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|",
  ]
  for r in results:
    measured = "peer_t" in r
    ratio = r["peer_t"] / r["ours"] if measured else None
    cells = [
        r["case"], str(r["n"]), r["dims"], r["dtype"], _fmt_ms(r["ours"], r["slow"]),
        f"{r['value']:.6f}",
        r["peer"] if measured else f"{r['peer']}: {r['note']}",
        _fmt_ms(r["peer_t"], r["peer_slow"]) if measured else "-",
        f"{ratio:.2f}" if measured else "-",
        f"{r['diff']:.1e}" if measured else "-",
        (f"{r['diff64']:.1e}" if r["diff64"] is not None else "skipped (slow)")
        if measured else "-",
        ("met" if ratio >= goal else "NOT met") if measured else "-",
    ]
    lines.append("| " + " | ".join(cells) + " |")

  measured = [r for r in results if "peer_t" in r]
  missed = [r for r in measured if r["peer_t"] / r["ours"] < goal]
  bad = _failures(results)
  goal_text = (f"ours <= the peer's time (peer / ours >= {goal:g})" if goal == CPU_GOAL
               else f"ours >= {goal:g}x faster than the CPU peer")
  true_mi = ", ".join(f"{d}+{d} {0.5 * d * math.log(1 + 1 / NOISE ** 2):.4f} nats"
                      for d in KSG_DIMS)
  lines += [
      "",
      "Columns: ours = `jax.jit` of the public function, compiled ahead (compile excluded), "
      "median time per call unless marked (best of 2: a call over "
      f"{SLOW_S:g} s is timed twice); estimate = ours in float32 (nats for KSG, bits for "
      "DSE); peer ms = the peer's plain call, timed the same way; peer / ours > 1 means "
      "ours is faster; abs diff = |ours - peer| with ours in float32 (tolerance "
      f"{TOL['float32']:g}), abs diff f64 = the same with ours in float64 (tolerance "
      f"{TOL['float64']:g}). True KSG values: {true_mi} (KSG is biased low at high MI).",
      "",
      f"- goal on {device.platform}, {goal_text} at every size: "
      + ("no peer was measured" if not measured else "met in every row" if not missed else
         "NOT met in " + "; ".join(
             f"{r['short']} {r['dims']} N={r['n']} vs {r['peer'].split(' ')[0]} "
             f"({r['peer_t'] / r['ours']:.2f}x)" for r in missed)),
      f"- correctness: {'all rows within tolerance' if not bad else 'FAILED: ' + '; '.join(bad)}",
  ]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  results, meta = run(args)
  return finish(args.out, "bench_info_samples", meta["device"], to_markdown(results, meta),
                _failures(results), "estimates differ from the peer beyond tolerance")


if __name__ == "__main__":
  sys.exit(main())
