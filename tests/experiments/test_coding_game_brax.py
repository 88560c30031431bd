"""The coding_game_brax experiment on a tiny config: a briefly trained SAC policy on
Brax's inverted pendulum carries every message through EBIM at half the message
entropy, a nearly deterministic version of it (std scaled by 0.02, the same compiled
program) carries less, and a resumed run reuses its training checkpoint and cells and
plays a lost cell again."""

import json

import pytest

from entropylab.runner.rundir import RunDir
from experiments import coding_game_brax as cgb

TINY = cgb.Config(iterations=2, checkpoint_every=2, train_episodes=2, episode_length=50,
                  learning_starts=50, std_scales=(1.0, 0.02), messages=16, ratios=(2.0,),
                  methods=("ebim",), episodes=8, horizon=40, progress=False)


def test_tiny_run_decodes_and_resumes(tmp_path):
  run_dir = RunDir(tmp_path / "run")
  summary = cgb.run(TINY, run_dir)
  cell = summary["results"]["1"]["2"]["ebim"]
  # 4 bits at 2 bits per step with the SAC policy's own spread: every message arrives.
  assert cell["accuracy"] == 1.0
  assert summary["results"]["0.02"]["2"]["ebim"]["accuracy"] <= 0.5
  # Rewards: 1 per step while the pole is up, so within [0, sum of gamma^t, t < 40].
  g = TINY.discount
  assert 0.0 < cell["reward"] <= (1 - g ** TINY.horizon) / (1 - g) + 1e-4
  record = json.loads((run_dir.path / "cells" / "s1_r2_ebim.json").read_text())
  assert record["belief_entropy"][0] == pytest.approx(4.0, abs=1e-5)
  assert len(record["belief_entropy"]) == min(TINY.entropy_steps, TINY.horizon) + 1
  policy = json.loads((run_dir.path / "policy.json").read_text())
  assert policy["env_steps"] == 2 * 2 * 2 * 50
  assert (run_dir.path / "train" / "checkpoints").exists()
  for name in ("reward_accuracy", "belief_entropy"):
    assert run_dir.figure_path(name).stat().st_size > 0
  # Resume with one cell lost: it is played again with the restored policy (committed
  # to one device, the episodes sharded over four) and comes out the same.
  (run_dir.path / "cells" / "s0_02_r2_ebim.json").unlink()
  again = cgb.run(TINY, run_dir, resume=True)
  assert again == summary
  with pytest.raises(ValueError, match="already holds checkpoints"):
    cgb.run(TINY, run_dir)


def test_bad_config_names_the_field():
  with pytest.raises(ValueError, match="std_scales"):
    cgb.Config(std_scales=(0.0,)).validate()
  with pytest.raises(ValueError, match="env"):
    cgb.Config(env="humanoid").validate()
  with pytest.raises(ValueError, match="bins"):
    cgb.Config(bins=1).validate()
