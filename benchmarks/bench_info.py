"""Speed and accuracy of entropylab.info's batched entropies against simple peers.

Cases:

(a) ``entropy_from_logits`` on a float32 ``[rows, vocab]`` logits batch (default
    ``4096 x 32768``; ``--quick`` uses 512 rows) against

    * the naive jnp form ``-(softmax(x) * log_softmax(x)).sum(-1)``, and
    * one reduction ``x.sum(-1)`` over the same array, the memory-read floor.

    The two internal forms of the kernel are timed as extra rows:
    ``_logits_entropy_two_pass`` (what ``entropy_from_logits`` runs) and
    ``_logits_entropy_one_pass`` (a variadic ``lax.reduce`` that reads the array once);
    on accelerators also the Pallas kernel ``_pallas.logits_entropy_pallas`` at a few
    tile shapes (a candidate not yet dispatched to; a tile shape that fails to compile
    is reported and skipped).
    Effective bandwidth is the logits array's bytes divided by the time per call. The
    goal is a time within 1.5x of the read floor. That is a memory-bound yardstick and
    meaningful on a GPU; on a CPU ``exp`` is compute-bound, so there the ratio only says
    how far the arithmetic keeps us from the read floor.

(b) ``entropy`` on a float32 ``[10^4, 10^3]`` probability batch against
    ``scipy.stats.entropy(p, axis=-1)`` on the same numpy array. Goal: ours faster.

Timing: every JAX function is jitted and run twice before timing, so compilation and
warm-up are excluded. One sample runs a function ``inner`` times back to back and blocks
on the last result (``inner`` is picked so a sample lasts about 10 ms or more, which
hides dispatch latency on a GPU); the reported time is the median sample divided by
``inner``.

Correctness is checked in the same run. Every row compares its values with its peer's
and the run fails (exit status 1) if ``|ours - ref| > 1e-3 * max(|ref|, 1)`` anywhere
(relative error, with an absolute floor for entropies under one nat).

The same script runs on CPU and GPU. The Markdown table is printed and written to
``benchmarks/results/bench_info_<platform>[_<device kind>].md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import os
import platform as _platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.info import entropy, entropy_from_logits
from entropylab.info import _pallas
from entropylab.info import discrete as _discrete

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_ROWS = 4096
QUICK_ROWS = 512
VOCAB = 32768
PROB_SHAPE = (10_000, 1_000)
REL_TOL = 1e-3
FLOOR_GOAL = 1.5
# (block_rows, block_cols) of the Pallas kernel timed on accelerators.
PALLAS_TILES = ((1, 4096), (4, 2048), (8, 1024), (16, 512))


# --------------------------------------------------------------------------- timing


def _block(x):
  for leaf in jax.tree_util.tree_leaves(x):
    if hasattr(leaf, "block_until_ready"):
      leaf.block_until_ready()
  return x


def time_call(fn, *args, min_samples: int = 5, max_samples: int = 200,
              budget_s: float = 1.0, sample_s: float = 0.01):
  """Median seconds per call of ``fn(*args)`` after two untimed calls, and its output."""
  out = _block(fn(*args))  # compile (jit) and first run
  t0 = time.perf_counter()
  out = _block(fn(*args))
  single = time.perf_counter() - t0
  inner = int(max(1, min(100, sample_s / max(single, 1e-9))))
  samples = []
  start = time.perf_counter()
  while len(samples) < min_samples or (
      len(samples) < max_samples and time.perf_counter() - start < budget_s):
    t0 = time.perf_counter()
    for _ in range(inner):
      out = fn(*args)
    _block(out)
    samples.append((time.perf_counter() - t0) / inner)
  return statistics.median(samples), out


# --------------------------------------------------------------------------- peers


def naive_logits_entropy(x):
  """The textbook form: materialises softmax and log_softmax."""
  return -(jax.nn.softmax(x, axis=-1) * jax.nn.log_softmax(x, axis=-1)).sum(-1)


def read_floor(x):
  """One reduction over the array: what reading it once costs."""
  return x.sum(-1)


def scipy_entropy(p):
  import scipy.stats  # local: scipy is a benchmark/test dependency only
  return scipy.stats.entropy(p, axis=-1)


# --------------------------------------------------------------------------- helpers


def device_tag(device) -> str:
  """``cpu``, or ``gpu_NVIDIA_H100_80GB_HBM3``: the results file's suffix."""
  plat = device.platform.lower()
  kind = re.sub(r"[^A-Za-z0-9]+", "_", str(device.device_kind)).strip("_")
  if not kind or kind.lower() == plat:
    return plat
  return f"{plat}_{kind}"


def _host_cpu() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return _platform.processor() or _platform.machine()


def command_line() -> str:
  """The command that is running, as one would type it (with the XLA/JAX env vars)."""
  exe = Path(sys.executable).name
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  name = getattr(spec, "name", None)
  if name == "benchmarks.__main__":
    cmd = [exe, "-m", "benchmarks"]
  elif name:
    cmd = [exe, "-m", name]
  else:
    cmd = [exe, sys.argv[0]]
  cmd += sys.argv[1:]
  env = [f"{k}={shlex.quote(os.environ[k])}" for k in ("JAX_PLATFORMS", "XLA_FLAGS")
         if os.environ.get(k)]
  return " ".join(env + [shlex.join(cmd)])


def result_header(title: str) -> list[str]:
  """The opening lines of a results table: ``# title (platform)``, then the device, host,
  versions and date, and the command that produced it."""
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  device = jax.devices()[0]
  return [f"# {title} ({device.platform})", "",
          f"- device: `{device.device_kind}`; host: {_host_cpu()}; jax {jax.__version__}, "
          f"Python {_platform.python_version()}; date: {now}",
          f"- command: `{command_line()}`"]


def result_name(stem: str, tag: str = "") -> str:
  """``<stem>_<platform>[_<tag>].md``: a results file name for the default device."""
  return f"{stem}_{jax.devices()[0].platform}{'_' + tag if tag else ''}.md"


def write_result(text: str, out_dir: Path, name: str) -> Path:
  """Prints a results table and writes it to ``out_dir / name`` (made if missing)."""
  print(text)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / name
  path.write_text(text)
  print(f"wrote {path}")
  return path


def _diff(ours, ref):
  a = np.asarray(ours, dtype=np.float64)
  b = np.asarray(ref, dtype=np.float64)
  if a.shape != b.shape:
    raise AssertionError(f"shape mismatch: {a.shape} vs {b.shape}")
  err = np.abs(a - b)
  if not np.all(np.isfinite(a)):
    return float("inf"), float("inf")
  return float(err.max()), float((err / np.maximum(np.abs(b), 1.0)).max())


def _fmt_ms(s):
  return f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}"


# --------------------------------------------------------------------------- benchmark


def write_table(out_dir, stem: str, device, table: str):
  """Prints ``table`` and saves it as ``<out_dir>/<stem>_<device tag>.md``."""
  print(table)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"{stem}_{device_tag(device)}.md"
  path.write_text(table, encoding="utf-8")
  print(f"wrote {path}")
  return path


def finish(out_dir, stem: str, device, table: str, failures, what: str) -> int:
  """Writes the table (:func:`write_table`); with failures, prints ``what: failures`` to
  stderr and returns exit status 1, else 0."""
  write_table(out_dir, stem, device, table)
  if failures:
    print(f"{what}: {'; '.join(failures)}", file=sys.stderr)
    return 1
  return 0


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_info",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"small logits batch ({QUICK_ROWS} rows), short timing")
  parser.add_argument("--rows", type=int, default=None,
                      help=f"logits rows (default {FULL_ROWS}, {QUICK_ROWS} with --quick)")
  parser.add_argument("--vocab", type=int, default=VOCAB, help="logits columns")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args(argv)


def run(args) -> tuple[list[dict], dict]:
  rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
  timing = dict(min_samples=5, budget_s=1.0) if args.quick else dict(min_samples=10,
                                                                      budget_s=3.0)
  device = jax.devices()[0]
  kind = str(device.device_kind)
  key_logits, key_p = jax.random.split(jax.random.key(args.seed))
  results = []

  # (a) logits ---------------------------------------------------------------------
  x = jax.device_put(2.0 * jax.random.normal(key_logits, (rows, args.vocab), jnp.float32),
                     device)
  nbytes = x.size * x.dtype.itemsize
  shape_a = f"{rows}x{args.vocab} f32"
  t_floor, _ = time_call(jax.jit(read_floor), x, **timing)
  t_naive, h_naive = time_call(jax.jit(naive_logits_entropy), x, **timing)
  results.append(dict(case="read floor `x.sum(-1)`", shape=shape_a, device=kind,
                      ours=t_floor, gbs=nbytes / t_floor / 1e9, floor=1.0))
  candidates = [
      ("`entropy_from_logits`", jax.jit(entropy_from_logits)),
      ("`_logits_entropy_two_pass`", jax.jit(_discrete._logits_entropy_two_pass)),
      ("`_logits_entropy_one_pass` (lax.reduce)",
       jax.jit(_discrete._logits_entropy_one_pass)),
  ]
  if device.platform != "cpu":
    # The Pallas candidate (not dispatched to yet), at a few tile shapes.
    for rows_, cols_ in PALLAS_TILES:
      candidates.append((f"`logits_entropy_pallas` ({rows_}x{cols_} tiles)",
                         functools.partial(_pallas.logits_entropy_pallas, block_rows=rows_,
                                           block_cols=cols_)))
  for name, fn in candidates:
    try:
      t, h = time_call(fn, x, **timing)
    except Exception as e:  # a kernel that does not compile here is reported, not fatal
      print(f"{name}: failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      continue
    abs_err, rel_err = _diff(h, h_naive)
    results.append(dict(case=name, shape=shape_a, device=kind, ours=t,
                        gbs=nbytes / t / 1e9, floor=t / t_floor,
                        peer="naive `softmax * log_softmax`", peer_t=t_naive,
                        abs_err=abs_err, rel_err=rel_err))
  del x, h_naive

  # (b) probabilities vs scipy -------------------------------------------------------
  p = jax.random.uniform(key_p, PROB_SHAPE, jnp.float32, minval=1e-6, maxval=1.0)
  p_np = np.asarray(p / p.sum(-1, keepdims=True), dtype=np.float32)
  p_dev = jax.device_put(p_np, device)
  t_ours, h_ours = time_call(jax.jit(entropy), p_dev, **timing)
  t_scipy, h_scipy = time_call(scipy_entropy, p_np, **timing)
  abs_err, rel_err = _diff(h_ours, h_scipy)
  results.append(dict(case="`entropy`", shape=f"{PROB_SHAPE[0]}x{PROB_SHAPE[1]} f32",
                      device=kind, ours=t_ours, gbs=p_np.nbytes / t_ours / 1e9,
                      peer="`scipy.stats.entropy(p, axis=-1)`", peer_t=t_scipy,
                      abs_err=abs_err, rel_err=rel_err))

  meta = dict(rows=rows, device=device, quick=args.quick)
  return results, meta


def to_markdown(results, meta) -> str:
  device = meta["device"]
  import scipy  # noqa: F401 - version only
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  mode = (f"quick (logits rows {meta['rows']} instead of {FULL_ROWS})" if meta["quick"]
          else f"full (logits rows {meta['rows']})")
  host = f"{_host_cpu()}, {os.cpu_count()} logical CPUs"
  lines = [
      f"# bench_info on {device.device_kind}{' (quick)' if meta['quick'] else ''}",
      "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`, "
      f"{jax.device_count()} device(s)); host: {host}",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, scipy "
      f"{sys.modules['scipy'].__version__}, Python {_platform.python_version()}",
      f"- date: {now}",
      f"- command: `{command_line()}`",
      f"- mode: {mode}",
      "",
      "| case | shape | device | ours ms | GB/s | x read floor | peer | peer ms "
      "| peer / ours | max abs diff | max rel diff |",
      "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
  ]
  for r in results:
    peer_t = r.get("peer_t")
    cells = [
        r["case"], r["shape"], r["device"], _fmt_ms(r["ours"]), f"{r['gbs']:.1f}",
        f"{r['floor']:.2f}" if "floor" in r else "-",
        r.get("peer", "-"),
        _fmt_ms(peer_t) if peer_t is not None else "-",
        f"{peer_t / r['ours']:.2f}" if peer_t is not None else "-",
        f"{r['abs_err']:.2e}" if "abs_err" in r else "-",
        f"{r['rel_err']:.2e}" if "rel_err" in r else "-",
    ]
    lines.append("| " + " | ".join(cells) + " |")

  by_case = {r["case"]: r for r in results}
  ours = by_case["`entropy_from_logits`"]
  one = by_case["`_logits_entropy_one_pass` (lax.reduce)"]
  two = by_case["`_logits_entropy_two_pass`"]
  ent = by_case["`entropy`"]
  ok = all(r.get("rel_err", 0.0) <= REL_TOL for r in results)
  lines += [
      "",
      "Columns: time per call (median, jitted, compile excluded); GB/s = bytes of the input "
      "array / time; x read floor = time / time of `x.sum(-1)` on the same array; "
      "peer / ours > 1 means ours is faster; diffs are against the peer's values, "
      f"rel = |ours - peer| / max(|peer|, 1), tolerance {REL_TOL:g}.",
      "",
      f"- goal `entropy_from_logits` within {FLOOR_GOAL}x of the read floor: "
      f"{'met' if ours['floor'] <= FLOOR_GOAL else 'not met'} ({ours['floor']:.2f}x)"
      + ("; on CPU the computation, not the read of the array, dominates, so this "
         "memory yardstick is meant for GPUs" if device.platform == "cpu" else ""),
      f"- one-pass vs two-pass: one-pass takes {one['ours'] / two['ours']:.2f}x the "
      "two-pass time",
      f"- goal `entropy` faster than scipy: "
      f"{'met' if ent['peer_t'] > ent['ours'] else 'not met'} "
      f"({ent['peer_t'] / ent['ours']:.2f}x)",
      f"- correctness: {'all rows within tolerance' if ok else 'FAILED, see max rel diff'}",
  ]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  results, meta = run(args)
  bad = [r["case"] for r in results if r.get("rel_err", 0.0) > REL_TOL]
  return finish(args.out, "bench_info", meta["device"], to_markdown(results, meta), bad,
                f"values differ from the peer beyond rel {REL_TOL:g}")


if __name__ == "__main__":
  sys.exit(main())
