"""Command line: ``python -m experiments {list,run,all}``. See ``experiments/__init__.py``."""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

from entropylab.runner import config as config_lib
from entropylab.runner import report as report_lib
from entropylab.runner.rundir import RunDir

import experiments

RUNS_ROOT = pathlib.Path("runs")


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m experiments", description=experiments.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("list", help="list experiments, one line each")

  def common(p):
    p.add_argument("--preset", default="smoke", help="smoke (minutes on a CPU) or paper")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host)")

  run = sub.add_parser("run", help="run one experiment")
  run.add_argument("name")
  common(run)
  run.add_argument("--out", type=pathlib.Path, default=None,
                   help="run directory (default runs/NAME/<timestamp>)")
  run.add_argument("--resume", action="store_true",
                   help="continue the run in --out (or the newest under runs/NAME)")
  every = sub.add_parser("all", help="run every experiment and write runs/report.md")
  common(every)
  every.add_argument("--root", type=pathlib.Path, default=RUNS_ROOT,
                     help="where run directories and report.md go (default runs/)")
  return parser


def _resolve(name: str, preset: str, overrides) -> tuple[experiments.Experiment, object]:
  registry = experiments.load_all()
  if name not in registry:
    _fail(f"unknown experiment {name!r}; choices: {', '.join(sorted(registry))}")
  exp = registry[name]
  if preset not in exp.presets:
    _fail(f"unknown preset {preset!r} for {name}; choices: {', '.join(sorted(exp.presets))}")
  try:
    cfg = config_lib.apply_overrides(exp.presets[preset], overrides)
  except config_lib.ConfigError as e:
    _fail(str(e))
  return exp, cfg


def _timestamp() -> str:
  return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _run_one(exp, cfg, run_path: pathlib.Path, resume: bool, preset: str) -> RunDir:
  run_dir = RunDir(run_path)
  cfg_file = run_dir.path / "config.json"
  if resume and cfg_file.exists():
    saved = config_lib.config_from_dict(type(cfg), json.loads(cfg_file.read_text()).get("config", {}))
    if saved != cfg:
      _fail(f"--resume: config differs from the one saved in {cfg_file}; drop --set changes or use a new --out")
  run_dir.write_config({"experiment": exp.name, "preset": preset, "config": cfg})
  print(f"[{exp.name}] preset={preset} run_dir={run_dir.path}", flush=True)
  t0 = time.perf_counter()
  summary = dict(exp.run(cfg, run_dir, resume=resume))
  summary.setdefault("wall_seconds", round(time.perf_counter() - t0, 2))
  run_dir.write_summary(summary)
  print(f"[{exp.name}] done in {summary['wall_seconds']} s -> {run_dir.path / 'summary.json'}", flush=True)
  return run_dir


def main(argv=None) -> int:
  args = _build_parser().parse_args(argv)
  if args.command == "list":
    for name, exp in sorted(experiments.load_all().items()):
      print(f"{name:24s} {exp.description}")
    return 0
  if args.distributed:
    from entropylab.runner import devices
    devices.initialize_distributed()
  if args.command == "run":
    exp, cfg = _resolve(args.name, args.preset, args.overrides)
    out = args.out
    if args.resume and out is None:
      candidates = sorted(p for p in (RUNS_ROOT / exp.name).glob("*") if p.is_dir())
      if not candidates:
        _fail(f"--resume: no earlier run of {exp.name} under {RUNS_ROOT / exp.name}; pass --out DIR")
      out = candidates[-1]
    if args.resume and not out.exists():
      _fail(f"--resume: run directory {out} does not exist")
    out = out or RUNS_ROOT / exp.name / _timestamp()
    _run_one(exp, cfg, out, args.resume, args.preset)
    return 0
  # all
  registry = experiments.load_all()
  if args.overrides:
    _fail("--set is per experiment; use `run NAME --set ...`")
  stamp = _timestamp()
  done = []
  for name in sorted(registry):
    exp, cfg = _resolve(name, args.preset, [])
    run_dir = _run_one(exp, cfg, args.root / name / stamp, False, args.preset)
    done.append((name, exp.description, run_dir.path))
  report = report_lib.write_report(args.root / "report.md", done,
                                   title=f"entropylab report ({args.preset} preset, {stamp})")
  print(f"report: {report}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
