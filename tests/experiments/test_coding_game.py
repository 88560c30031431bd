"""The coding_game experiment: the paper's expected trade-offs on a small grid, and a
resume that recomputes only the missing grid point."""

import json

import pytest

from entropylab.runner.rundir import RunDir
from experiments import coding_game as cg

TINY = cg.Config(messages=16, log_betas=(-6.0, -4.0), ratios=(1.0, 2.0), episodes=32,
                 horizon=200, progress=False)


def test_tiny_grid_tradeoffs_and_resume(tmp_path):
  run_dir = RunDir(tmp_path / "run")
  summary = cg.run(TINY, run_dir)
  res = summary["results"]
  assert sorted(res) == ["e^-4", "e^-6"]
  assert sorted(res["e^-4"]) == ["1", "2"]
  assert sorted(res["e^-4"]["2"]) == ["ebim", "uniform"] and list(res["e^-4"]["1"]) == ["none"]
  # No limit, soft policy, long horizon: every message decoded.
  assert res["e^-4"]["1"]["none"]["accuracy"] == 1.0
  for beta in ("e^-4", "e^-6"):
    # EBIM at least as accurate as the uniform quantiser at the same rate; neither
    # better than no limit.
    assert res[beta]["2"]["ebim"]["accuracy"] >= res[beta]["2"]["uniform"]["accuracy"]
    assert res[beta]["2"]["uniform"]["accuracy"] <= res[beta]["1"]["none"]["accuracy"]
  # A greedier policy earns more and decodes less.
  assert res["e^-6"]["1"]["none"]["reward"] > res["e^-4"]["1"]["none"]["reward"]
  assert res["e^-6"]["1"]["none"]["accuracy"] < 1.0
  for name in ("reward_accuracy", "belief_entropy"):
    assert run_dir.figure_path(name).stat().st_size > 0

  cells = sorted((run_dir.path / "cells").glob("*.json"))
  assert len(cells) == len(cg.grid(TINY)) == 6
  stamps = {c.name: c.stat().st_mtime_ns for c in cells}
  lost = cells[3]
  lost.unlink()
  again = cg.run(TINY, run_dir, resume=True)
  assert again["results"] == summary["results"]
  for c in sorted((run_dir.path / "cells").glob("*.json")):
    if c.name != lost.name:
      assert c.stat().st_mtime_ns == stamps[c.name]
  record = json.loads(lost.read_text())
  assert len(record["belief_entropy"]) == TINY.entropy_steps + 1


def test_bad_config_names_the_field():
  with pytest.raises(ValueError, match="ratios"):
    cg.Config(ratios=(0.5,)).validate()
  with pytest.raises(ValueError, match="methods"):
    cg.Config(methods=("huffman",)).validate()
  with pytest.raises(ValueError, match="messages"):
    cg.Config(messages=1).validate()
