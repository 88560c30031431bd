"""The entropy_estimators experiment: sampling, known bias behaviour, resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import entropy_estimators as ee
from entropylab.runner.rundir import RunDir


def test_sample_counts_are_multinomial():
  with jax.enable_x64(True):
    p = jnp.asarray(ee.make_distribution("zipf", 6, ee.Config()))
    counts = np.asarray(ee.sample_counts(jax.random.PRNGKey(0), p, 20000, 64))
  assert counts.shape == (64, 6)
  assert np.all(counts.sum(-1) == 20000)
  # per-bin mean count within 5 standard errors of n p_i
  n, pv = 20000, np.asarray(p)
  se = np.sqrt(n * pv * (1 - pv) / 64)
  assert np.all(np.abs(counts.mean(0) - n * pv) < 5 * se)
  # per-bin variance close to n p (1 - p)
  np.testing.assert_allclose(counts.var(0, ddof=1), n * pv * (1 - pv), rtol=0.5)


def test_distributions_and_true_entropy():
  cfg = ee.Config()
  p = ee.make_distribution("zipf", 4, cfg)
  w = 1.0 / np.arange(1, 5)
  np.testing.assert_allclose(p, w / w.sum())
  np.testing.assert_allclose(ee.true_entropy(p), -(p * np.log(p)).sum())
  d1 = ee.make_distribution("dirichlet", 50, cfg)
  d2 = ee.make_distribution("dirichlet", 50, cfg)
  np.testing.assert_array_equal(d1, d2)  # deterministic in the seed
  with pytest.raises(ValueError, match="unknown distribution"):
    ee.make_distribution("cauchy", 5, cfg)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  cfg = ee.Config(distributions=("zipf", "dirichlet"), supports=(30,), sample_sizes=(10, 100, 10000),
                  replicates=64, progress=False)
  run_dir = RunDir(tmp_path_factory.mktemp("ee"))
  summary = ee.run(cfg, run_dir)
  cells = {}
  for f in (run_dir.path / "cells").glob("*.json"):
    c = json.loads(f.read_text())
    cells[(c["distribution"], c["N"])] = c
  return cfg, run_dir, summary, cells


def test_known_bias_behaviour(small_run):
  _, _, _, cells = small_run
  for dist in ("zipf", "dirichlet"):
    plug = [cells[(dist, n)]["bias"]["plugin"] for n in (10, 100, 10000)]
    # plug-in is biased low (concavity of H), and the bias shrinks with N
    assert all(b < 0 for b in plug[:2])
    assert abs(plug[0]) > abs(plug[1]) > abs(plug[2])
    for n in (10, 100):
      c = cells[(dist, n)]["bias"]
      # every correction removes part of the plug-in's downward bias
      for name in ("miller_madow", "grassberger", "chao_shen", "nsb"):
        assert abs(c[name]) < abs(c["plugin"]), (dist, n, name)
    for name, r in cells[(dist, 10000)]["rmse"].items():
      assert r < 0.03, (dist, name, r)


def test_outputs_and_summary(small_run):
  cfg, run_dir, summary, cells = small_run
  assert (run_dir.path / "bias_rmse_zipf.png").exists()
  assert (run_dir.path / "bias_rmse_dirichlet.png").exists()
  table = (run_dir.path / "table.md").read_text().splitlines()
  assert len(table) == 2 + len(cells)
  assert summary["undersampled_cell"] == "K=30, N=10"
  for dist in ("zipf", "dirichlet"):
    rm = summary[dist]["rmse_nats"]
    assert summary[dist]["best_estimator"] == min(rm, key=rm.get)


def test_resume_skips_finished_cells_and_recomputes_identically(small_run):
  cfg, run_dir, summary, _ = small_run
  cells_dir = run_dir.path / "cells"
  kept = cells_dir / "zipf_K30_N100.json"
  lost = cells_dir / "dirichlet_K30_N10000.json"
  kept_mtime = kept.stat().st_mtime_ns
  lost_content = json.loads(lost.read_text())
  lost.unlink()
  torn = cells_dir / "dirichlet_K30_N10.json"
  torn_content = json.loads(torn.read_text())
  torn.write_text(torn.read_text()[:20])  # a file cut by a kill
  summary2 = ee.run(cfg, run_dir, resume=True)
  assert kept.stat().st_mtime_ns == kept_mtime
  assert json.loads(lost.read_text()) == lost_content  # same keys: bit-identical
  assert json.loads(torn.read_text()) == torn_content
  assert summary2 == summary


def test_invalid_config_rejected():
  with pytest.raises(ValueError, match="replicates"):
    ee.Config(replicates=1).validate()
  with pytest.raises(ValueError, match="estimators"):
    ee.Config(estimators=("magic",)).validate()
