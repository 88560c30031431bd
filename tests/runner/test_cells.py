"""Resumable cell grids: finished cells are reused, torn or missing ones recomputed."""

import json

import pytest

from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir


def test_resume_reuses_complete_cells_only(tmp_path):
  run_dir = RunDir(tmp_path)
  calls = []

  def compute(spec):
    calls.append(spec)
    return {"square": spec * spec, "x": spec / 3}

  cells = [(f"c{i}", i) for i in range(5)]
  first = run_cells(run_dir, cells, compute, progress=False, metrics=lambda r: {"sq": r["square"]})
  assert calls == [0, 1, 2, 3, 4]
  assert [r["step"] for r in run_dir.metrics.records()] == [0, 1, 2, 3, 4]
  (tmp_path / "cells" / "c1.json").unlink()
  (tmp_path / "cells" / "c3.json").write_text('{"square": ')  # torn by a kill
  calls.clear()
  again = run_cells(run_dir, cells, compute, resume=True, progress=False)
  assert calls == [1, 3]
  assert again == first
  assert json.loads((tmp_path / "cells" / "c3.json").read_text()) == first[3]
  # without resume everything is recomputed and the metrics log restarts
  calls.clear()
  run_cells(run_dir, cells, compute, progress=False)
  assert calls == [0, 1, 2, 3, 4]
  assert len(list(run_dir.metrics.records())) == 5


def test_duplicate_ids_rejected(tmp_path):
  with pytest.raises(ValueError, match="unique"):
    run_cells(RunDir(tmp_path), [("a", 1), ("a", 2)], lambda s: {}, progress=False)
