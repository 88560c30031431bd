"""Runs the benchmark modules: ``python -m benchmarks [--quick] [--only NAME] [--list]``.

Every ``benchmarks/bench_*.py`` module with a ``main(argv)`` function is a benchmark.
Arguments this runner does not know (``--quick``, ``--rows 1024``, ``--out DIR``, ...)
are passed on to each module's ``main``. ``--only`` takes a module name with or
without its ``bench_`` prefix (``--only info``) and may be repeated. The exit status
is non-zero when any benchmark fails: raises, or returns a non-zero status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
  """Names (``bench_info``, ...) of the benchmark modules beside this file, sorted."""
  return sorted(p.stem for p in HERE.glob("bench_*.py"))


def _select(names: list[str], only: list[str]) -> list[str]:
  if not only:
    return names
  wanted = []
  for item in only:
    name = item if item.startswith("bench_") else f"bench_{item}"
    if name not in names:
      raise SystemExit(f"unknown benchmark {item!r}; available: {', '.join(names)}")
    if name not in wanted:
      wanted.append(name)
  return wanted


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks",
      description="Run benchmarks/bench_*.py; unknown options go to every module.")
  parser.add_argument("--only", action="append", default=[], metavar="NAME",
                      help="run only this benchmark (e.g. 'info'); repeatable")
  parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
  args, rest = parser.parse_known_args(argv)
  names = discover()
  if args.list:
    print("\n".join(names))
    return 0
  selected = _select(names, args.only)
  if not selected:
    print("no benchmarks found", file=sys.stderr)
    return 1

  failed = []
  for name in selected:
    print(f"== {name} {' '.join(rest)}".rstrip(), flush=True)
    start = time.perf_counter()
    try:
      module = importlib.import_module(f"benchmarks.{name}")
      status = module.main(list(rest))
    except SystemExit as e:  # argparse errors inside a module
      status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # noqa: BLE001 - report and go on with the next module
      traceback.print_exc()
      status = 1
    status = 0 if status is None else int(status)
    elapsed = time.perf_counter() - start
    print(f"== {name}: {'ok' if status == 0 else f'FAILED ({status})'} in {elapsed:.1f} s",
          flush=True)
    if status != 0:
      failed.append(name)

  if failed:
    print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
