"""The information_estimators experiment: closed forms, samplers, known trends, DSE, resume."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from entropylab import info
from entropylab.runner import config as config_lib
from entropylab.runner.rundir import RunDir, to_jsonable
from experiments import information_estimators as ie

EULER_GAMMA = 0.5772156649015329

TINY = ie.Config(
    families=("gaussian_mi", "uniform_entropy"), sample_sizes=(100, 1000), dims=(3,),
    replicates=12, dse_families=("uniform",), dse_noise=(0.01,), dse_points=64, dse_ambient=96,
    dse_intrinsic=(4, 16, 48, 96), dse_sigma=3.0, dse_times=(1.0, 2.0), dse_replicates=2,
    progress=False)


def test_true_values_match_independent_formulas():
  cfg = ie.Config()
  for d in (1, 3):
    assert ie.true_value("gaussian_mi", d, cfg) == pytest.approx(
        -0.5 * d * math.log(1 - cfg.mi_rho ** 2), rel=1e-10)
    assert ie.true_value("gaussian_cmi", d, cfg) == pytest.approx(
        0.5 * d * math.log(1 + cfg.cmi_coupling ** 2), rel=1e-10)
    assert ie.true_value("uniform_entropy", d, cfg) == pytest.approx(d * math.log(2.0))
  assert ie.true_value("gaussian_entropy", 1, cfg) == pytest.approx(
      0.5 * math.log(2 * math.pi * math.e))
  cov = ie.entropy_cov(4, cfg)
  assert ie.true_value("gaussian_entropy", 4, cfg) == pytest.approx(
      0.5 * (4 * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1]))
  # psi(2) - ln 1 = 1 - Euler's gamma
  assert ie.true_value("gamma_exp_mi", 2, cfg) == pytest.approx(2 * (1 - EULER_GAMMA), rel=1e-10)
  # KL between Gaussians, general formula with Sigma_P = I, Sigma_Q = s^2 I, mu_Q = m 1
  d, m, s = 3, cfg.kl_shift, cfg.kl_scale
  sq_inv = np.eye(d) / s ** 2
  mu = np.full(d, m)
  kl = 0.5 * (np.trace(sq_inv) + mu @ sq_inv @ mu - d + np.linalg.slogdet(s ** 2 * np.eye(d))[1])
  assert ie.true_value("gaussian_kl", d, cfg) == pytest.approx(kl, rel=1e-10)
  with pytest.raises(ValueError, match="unknown family"):
    ie.true_value("cauchy", 1, cfg)


def test_transfer_entropy_truth_matches_the_simulated_series():
  cfg = ie.Config(te_coupling=0.8)
  # Stationary covariance by iterating Sigma <- A Sigma A^T + I, then the conditional
  # variance of T' given T; Var(T' | T, S) is the unit noise variance.
  a = np.array([[ie.TE_SELF_COUPLING, 0.0], [0.8, ie.TE_SELF_COUPLING]])
  sig = np.eye(2)
  for _ in range(500):
    sig = a @ sig @ a.T + np.eye(2)
  cov_tt = a[1] @ sig[:, 1]  # Cov(T', T)
  te = 0.5 * math.log(sig[1, 1] - cov_tt ** 2 / sig[1, 1])
  assert ie.true_value("ar1_te", 1, cfg) == pytest.approx(te, rel=1e-9)
  assert ie.true_value("ar1_te", 2, cfg) == pytest.approx(2 * te, rel=1e-9)
  # The sampler produces that process: residual variances of least-squares fits.
  with jax.enable_x64(True):
    trans, stat = ie._ar1_matrices(cfg)
    chol = jnp.asarray(np.linalg.cholesky(stat))
    s, t = (np.asarray(v)[:, 0]
            for v in ie.ar1_series(jax.random.PRNGKey(3), 200_001, 1, jnp.asarray(trans), chol))
  np.testing.assert_allclose(np.cov(s, t), stat, rtol=0.05, atol=0.05)
  nxt = t[1:]

  def resid_var(*cols):
    design = np.stack(cols, axis=1)
    coef = np.linalg.lstsq(design, nxt, rcond=None)[0]
    return np.var(nxt - design @ coef)

  te_hat = 0.5 * math.log(resid_var(t[:-1]) / resid_var(t[:-1], s[:-1]))
  assert te_hat == pytest.approx(te, abs=0.01)


def test_samplers_and_nested_cells():
  cfg = ie.Config()
  key = jax.random.PRNGKey(0)
  with jax.enable_x64(True):
    x, y = ie._sample_replicates("gaussian_mi", key, 20000, 2, 2, ie._params("gaussian_mi", 2, cfg))
    assert x.shape == (2, 20000, 2) and x.dtype == jnp.float64
    r = np.corrcoef(np.asarray(x[0, :, 1]), np.asarray(y[0, :, 1]))[0, 1]
    assert r == pytest.approx(cfg.mi_rho, abs=0.02)
    (u,) = ie._sample_replicates("uniform_entropy", key, 5000, 3, 2,
                                 ie._params("uniform_entropy", 3, cfg))
    assert float(u.min()) >= -1.0 and float(u.max()) <= 1.0 and float(u.max()) > 0.99
    (g,) = ie._sample_replicates("gaussian_entropy", key, 40000, 4, 1,
                                 ie._params("gaussian_entropy", 4, cfg))
    np.testing.assert_allclose(np.cov(np.asarray(g[0]).T), ie.entropy_cov(4, cfg), atol=0.03)
    lx, ly = ie._sample_replicates("gamma_exp_mi", key, 40000, 1, 1,
                                   ie._params("gamma_exp_mi", 1, cfg))
    # Y | X ~ Exp(rate X): E[X Y] = E[X E[Y|X]] = 1
    assert float(jnp.mean(jnp.exp(lx + ly))) == pytest.approx(1.0, abs=0.03)
    full = ie._sample_replicates("ar1_te", key, 50, 4, 3, ie._params("ar1_te", 4, cfg))
  s, t = ie.cell_samples(full, "ar1_te", 20, 2)
  assert s.shape == t.shape == (3, 21, 2)  # N + 1 steps give N transitions
  np.testing.assert_array_equal(np.asarray(t), np.asarray(full[1][:, :21, :2]))
  (xs,) = ie.cell_samples((x,), "gaussian_mi", 100, 1)
  assert xs.shape == (2, 100, 1)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  run_dir = RunDir(tmp_path_factory.mktemp("ie"))
  summary = ie.run(TINY, run_dir)
  cells = {}
  for f in (run_dir.path / "cells").glob("*.json"):
    c = json.loads(f.read_text())
    key = (c["family"], c["N"]) if c["kind"] == "estimators" else ("dse", c["intrinsic_dim"])
    cells[key] = c
  return run_dir, summary, cells


def test_outputs_and_summary(small_run):
  run_dir, summary, cells = small_run
  for name in ("bias_rmse_gaussian_mi", "bias_rmse_uniform_entropy", "dse_intrinsic_dimension"):
    assert (run_dir.path / f"{name}.png").stat().st_size > 5000
  n_est = len(TINY.families) * len(TINY.dims) * len(TINY.sample_sizes)
  assert len(cells) == n_est + len(TINY.dse_intrinsic)
  table = (run_dir.path / "table.md").read_text()
  assert table.count("| gaussian_mi |") == 2 * len(TINY.sample_sizes)  # ksg1 and ksg2
  assert table.count("| uniform | 0.01 |") == len(TINY.dse_intrinsic)
  records = [json.loads(line) for line in (run_dir.path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == list(range(len(cells)))
  mi = summary["gaussian_mi"]
  assert mi["true_nats"] == pytest.approx(-1.5 * math.log(1 - TINY.mi_rho ** 2), abs=1e-4)
  lo, hi = cells[("gaussian_mi", 100)], cells[("gaussian_mi", 1000)]
  assert mi["bias_nats"]["ksg1"]["N100"] == pytest.approx(lo["bias"]["ksg1"], abs=1e-4)
  assert mi["rmse_nats"]["ksg2"]["N1000"] == pytest.approx(hi["rmse"]["ksg2"], abs=1e-4)
  assert mi["bias_low_d_nats"]["ksg2"] == pytest.approx(hi["bias"]["ksg2"], abs=1e-4)
  assert summary["dse_bits"]["intrinsic_dims"] == list(TINY.dse_intrinsic)
  assert "reference_uniform_t1" not in summary["dse_bits"]  # not the reference's setting


def test_ksg_bias_and_rmse_shrink_with_n(small_run):
  _, _, cells = small_run
  lo, hi = cells[("gaussian_mi", 100)], cells[("gaussian_mi", 1000)]
  for name in ("ksg1", "ksg2"):
    # KSG underestimates a large MI (1.5 nats in 6 joint dimensions) at small N ...
    assert lo["bias"][name] < -0.2, name
    # ... and both its bias and its RMSE shrink as N grows
    assert abs(hi["bias"][name]) < 0.8 * abs(lo["bias"][name]), name
    assert hi["rmse"][name] < 0.8 * lo["rmse"][name], name
    assert hi["std"][name] < lo["std"][name], name
  # Kozachenko-Leonenko on a cube overestimates (the boundary inflates the k-NN radii),
  # less so with more samples
  lo, hi = cells[("uniform_entropy", 100)], cells[("uniform_entropy", 1000)]
  assert hi["bias"]["entropy_knn"] > 0
  assert lo["rmse"]["entropy_knn"] > hi["rmse"]["entropy_knn"]


def test_dse_increases_with_intrinsic_dimension(small_run):
  _, summary, cells = small_run
  t1 = summary["dse_bits"]["uniform"]["t1"]
  t2 = summary["dse_bits"]["uniform"]["t2"]
  assert all(b > a + 0.1 for a, b in zip(t1, t1[1:])), t1
  assert all(b >= a for a, b in zip(t2, t2[1:])), t2
  for d in TINY.dse_intrinsic:
    c = cells[("dse", d)]
    # a larger diffusion time never raises DSE; DSE never exceeds log2 N
    for h1, h2 in zip(c["replicate_bits"]["t1"], c["replicate_bits"]["t2"]):
      assert h2 <= h1 + 1e-9
      assert h1 <= math.log2(TINY.dse_points) + 1e-9


def test_dse_reproduces_the_reference_figure_at_t1():
  cfg = ie.PRESETS["smoke"]
  with jax.enable_x64(True):
    got = [float(ie._dse_cell(jax.random.PRNGKey(0), "uniform", 500, 2048, 1, jnp.int32(d),
                              jnp.float64(0.01), jnp.float64(cfg.dse_sigma),
                              jnp.asarray([1.0]))[0, 0])
           for d in ie.REFERENCE_DSE_BITS_T1]
  np.testing.assert_allclose(got, list(ie.REFERENCE_DSE_BITS_T1.values()), atol=0.1)


def test_dse_points_follow_the_reference_construction_and_dse_ignores_rotation():
  with jax.enable_x64(True):
    x = np.asarray(ie.intrinsic_points(jax.random.PRNGKey(1), "uniform", 40, 24, 10, 0.0))
    assert np.all(np.abs(x[:, :10]) <= 1.0) and x[:, :10].std() > 0.4
    assert np.all(x[:, 10:] == x[0, 10])  # the other coordinates share one constant
    xn = np.asarray(ie.intrinsic_points(jax.random.PRNGKey(1), "uniform", 40, 24, 10, 0.1))
    assert 0 < np.abs(xn - x).max() <= 0.1
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((24, 24)))
    h = info.diffusion_spectral_entropy(x, 2.0, 1.0)
    h_rot = info.diffusion_spectral_entropy(x @ q, 2.0, 1.0)
  assert 0.5 < float(h) < math.log2(40)
  assert float(h_rot) == pytest.approx(float(h), abs=1e-9)


def test_resume_skips_finished_cells_and_recomputes_identically(small_run):
  run_dir, summary, _ = small_run
  cells_dir = run_dir.path / "cells"
  kept = cells_dir / "gaussian_mi_d3_N100.json"
  lost = cells_dir / "gaussian_mi_d3_N1000.json"
  torn = cells_dir / "dse_uniform_noise0.01_d16.json"
  kept_mtime = kept.stat().st_mtime_ns
  lost_content = json.loads(lost.read_text())
  torn_content = json.loads(torn.read_text())
  lost.unlink()
  torn.write_text(torn.read_text()[:30])  # a file cut by a kill
  summary2 = ie.run(TINY, run_dir, resume=True)
  assert kept.stat().st_mtime_ns == kept_mtime
  assert json.loads(lost.read_text()) == lost_content  # same keys: bit-identical
  assert json.loads(torn.read_text()) == torn_content
  assert summary2 == summary


def test_presets_registered_and_round_trip_through_config_json():
  exp = experiments.load_all()["information_estimators"]
  assert set(exp.presets) == {"smoke", "paper"}
  for cfg in exp.presets.values():
    cfg.validate()
    # what --resume compares against: the config as saved to config.json
    saved = json.loads(json.dumps(to_jsonable(cfg)))
    assert config_lib.config_from_dict(ie.Config, saved) == cfg
  cfg = config_lib.apply_overrides(exp.presets["smoke"], ["dse_times=1,2", "dims=2"])
  assert cfg.dse_times == (1.0, 2.0) and cfg.dims == (2,)


def test_invalid_config_rejected():
  bad = [
      (dict(families=("gaussian_mi", "cauchy")), "families"),
      (dict(dse_families=("laplace",)), "dse_families"),
      (dict(replicates=1), "replicates"),
      (dict(sample_sizes=(4, 100)), "sample_sizes"),
      (dict(dims=(0, 2)), "dims"),
      (dict(mi_rho=1.0), "mi_rho"),
      (dict(gamma_theta=0.0), "gamma_theta"),
      (dict(dse_intrinsic=(102, 4096)), "dse_intrinsic"),
      (dict(dse_times=(1.0, 0.0)), "dse_times"),
      (dict(dse_noise=(-0.1,)), "dse_noise"),
      (dict(dse_sigma=0.0), "dse_sigma"),
      (dict(families=(), dse_intrinsic=()), "nothing to run"),
  ]
  for change, match in bad:
    with pytest.raises(ValueError, match=match):
      dataclasses.replace(ie.Config(), **change).validate()
  with pytest.raises(config_lib.ConfigError, match="replicates"):
    config_lib.apply_overrides(ie.PRESETS["smoke"], ["replicates=1"])
