"""The cross-experiment report, ``runs/report.md``.

One section per experiment run: its description, the run directory, a table of its
headline numbers (``summary.json``) and every PNG of the run embedded with a path
relative to the report.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Mapping, Sequence


def _fmt(value) -> str:
  """A summary value as one table cell: floats to 4 significant digits, lists joined by
  commas, records (mappings, e.g. one row of a profile) as ``(key value, ...)`` and
  lists of records separated by semicolons."""
  if isinstance(value, float):
    return f"{value:.4g}"
  if isinstance(value, Mapping):
    return "(" + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) + ")"
  if isinstance(value, (list, tuple)):
    records = any(isinstance(v, Mapping) for v in value)
    return ("; " if records else ", ").join(_fmt(v) for v in value)
  return str(value)


def _flatten(summary: Mapping, prefix: str = "") -> list[tuple[str, object]]:
  rows = []
  for key, value in summary.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      rows.extend(_flatten(value, name + "."))
    else:
      rows.append((name, value))
  return rows


def write_report(path: os.PathLike, runs: Sequence[tuple[str, str, pathlib.Path]],
                 title: str = "entropylab report") -> pathlib.Path:
  """Writes a Markdown report.

  Args:
    path: the report file (``runs/report.md``).
    runs: ``(experiment name, one-line description, run directory)`` per experiment.
    title: the report's heading.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [f"# {title}", ""]
  for name, description, run_dir in runs:
    run_dir = pathlib.Path(run_dir)
    lines += [f"## {name}", "", description, "", f"Run directory: `{os.path.relpath(run_dir, path.parent)}`", ""]
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
      summary = json.loads(summary_file.read_text())
      lines += ["| quantity | value |", "| --- | --- |"]
      lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(summary)]
      lines.append("")
    else:
      lines += ["_no summary.json: the run did not finish_", ""]
    for png in sorted(run_dir.glob("*.png")):
      rel = os.path.relpath(png, path.parent)
      lines += [f"![{name}: {png.stem}]({rel})", ""]
  path.write_text("\n".join(lines) + "\n")
  return path
