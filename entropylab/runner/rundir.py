"""Run directories: config dump, metrics log, summary.

A run directory (``runs/<experiment>/<timestamp>/``) holds

* ``config.json``   the full experiment config, as run;
* ``metrics.jsonl`` one JSON object per logged step (``{"step": int, ...}``);
* ``summary.json``  the headline numbers of the run;
* ``*.png``         plots; ``checkpoints/`` orbax checkpoints of anything that trains.

Everything here is plain file I/O with no JAX dependence, so the experiments and the
generic training loop share one writer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Iterator, Mapping

import numpy as np


def to_jsonable(value: Any) -> Any:
  """Converts numpy/jax scalars and arrays, dataclasses and paths to JSON types.

  Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` so that the
  files stay strict JSON.
  """
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, pathlib.PurePath):
    return str(value)
  if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
    arr = np.asarray(value)
    if arr.ndim == 0:
      return to_jsonable(arr.item())
    return [to_jsonable(v) for v in arr.tolist()]
  if isinstance(value, float):
    if math.isnan(value):
      return "nan"
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    return value
  if isinstance(value, (bool, int, str)) or value is None:
    return value
  if isinstance(value, np.generic):
    return to_jsonable(value.item())
  return str(value)


def write_json(path: os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as indented JSON atomically (temp file + rename)."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


class MetricsLog:
  """Append-only JSON-lines log of ``{"step": int, **metrics}`` records.

  Each record is flushed and fsynced as it is written, so after a kill the file holds
  every record written before it, plus at most one partial last line, which
  :meth:`records` ignores and :meth:`truncate_after` removes.
  """

  def __init__(self, path: os.PathLike):
    self.path = pathlib.Path(path)

  def append(self, step: int, **metrics: Any) -> None:
    record = {"step": int(step)}
    record.update(to_jsonable(metrics))
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def records(self) -> Iterator[dict]:
    """Yields the complete records in file order; a torn last line is skipped."""
    if not self.path.exists():
      return
    with open(self.path) as f:
      for line in f:
        if not line.endswith("\n"):
          break
        try:
          yield json.loads(line)
        except json.JSONDecodeError:
          break

  def truncate_after(self, step: int) -> None:
    """Keeps only complete records with ``record["step"] <= step``.

    Used on resume so that steps redone after the last checkpoint are not logged twice.
    """
    kept = [r for r in self.records() if r.get("step", -1) <= step]
    tmp = self.path.with_name(self.path.name + ".tmp")
    with open(tmp, "w") as f:
      for r in kept:
        f.write(json.dumps(r) + "\n")
    os.replace(tmp, self.path)


@dataclasses.dataclass
class RunDir:
  """Paths and writers of one run directory."""

  path: pathlib.Path

  def __post_init__(self):
    self.path = pathlib.Path(self.path)
    self.path.mkdir(parents=True, exist_ok=True)

  @property
  def metrics(self) -> MetricsLog:
    return MetricsLog(self.path / "metrics.jsonl")

  @property
  def checkpoint_dir(self) -> pathlib.Path:
    return self.path / "checkpoints"

  def write_config(self, config: Any) -> None:
    write_json(self.path / "config.json", config)

  def write_summary(self, summary: Mapping[str, Any]) -> None:
    write_json(self.path / "summary.json", summary)

  def read_summary(self) -> dict:
    p = self.path / "summary.json"
    return json.loads(p.read_text()) if p.exists() else {}

  def figure_path(self, name: str) -> pathlib.Path:
    return self.path / f"{name}.png"
