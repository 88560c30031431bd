"""The active_matter experiment: the EPR it reports, resume from saved chunks, NaN stop."""

import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from entropylab import production as prod
from entropylab.production import active
from entropylab.runner import checkpoint
from entropylab.runner import train as train_lib
from entropylab.runner.rundir import RunDir
from experiments import active_matter as am

TINY = am.Config(n_particles=40, chains=1, relax_steps=40, sample_every=10, samples_per_chain=8,
                 chunk_steps=40, held_out=0.25, num_neighbors=6, width=16, depth=1,
                 train_steps=20, batch_size=2, query_size=16, map_bins=4, transfer_factor=4,
                 transfer_packing=(), slaved_mode_degree=1, validation=0.0, progress=False)


def test_tiny_run_reports_the_hypoelliptic_rate_and_resumes(tmp_path):
  # The default loss ("ism_g"); a "dsm" main run goes through the same pipeline in
  # test_dsm_baseline_is_the_dsm_training_run_again.
  cfg = TINY
  run_dir = RunDir(tmp_path / "run")
  summary = am.run(cfg, run_dir)
  assert summary["train_samples"] == 6 and summary["held_out_samples"] == 2
  # (A transfer to another packing fraction goes through the same loop with its own
  # system; left out here to keep the test short.)
  assert set(summary["transfer"]) == {"N=160"}
  assert (run_dir.path / "local_epr.png").stat().st_size > 0
  # The reported rate is gamma E|g + s_g|^2 (eps = 0) with the trained network, on the
  # held-out samples: recompute it directly from the saved simulation and checkpoint.
  params = am.system(TINY, 40, 0.5)
  chains, relaxation = am.simulate_chains(cfg, params, 40, 1, "main", run_dir.path / "sim",
                                          resume=True)
  chain = chains[0]
  # The relaxation record: the start and the end of each of the 3 chunks (120 steps),
  # the last one the shares of the last saved state.
  assert summary["relaxation"] == relaxation
  assert [r["step"] for r in relaxation] == [0, 40, 80, 120]
  dense, dilute = active.phase_fractions(chain[-1, 0], params)
  assert relaxation[-1]["dense"] == round(float(dense), 4)
  assert relaxation[-1]["dilute"] == round(float(dilute), 4)
  # The slaved-mode score is fitted first (its coefficients, saved, are a fresh fit on
  # chain[:-2]); its field f = sum_k c_k phi_k and divergences, from the basis here.
  saved = json.loads((run_dir.path / "slaved_modes.json").read_text())
  assert saved["basis"] == "local" and saved["degree"] == cfg.slaved_mode_degree == 1
  assert saved["order"] == am.SLAVED_MODE_ORDER == 3
  with jax.enable_x64(True):
    basis = active.local_slaved_mode_basis(params, degree=1)
    c = np.asarray(jax.jit(lambda y: prod.fit_linear_self_propulsion_score(basis, y))(
        jnp.asarray(chain[:-2], jnp.float64)))
    np.testing.assert_allclose(saved["coefficients"], c, rtol=1e-6, atol=1e-9)
    assert np.any(c != 0)
    phis = [tuple(map(np.asarray, jax.jit(basis)(z)))
            for z in jnp.asarray(chain, jnp.float64)]
  f_all = np.stack([np.einsum("k,knd->nd", c, phi) for phi, _ in phis])    # [8, N, 2]
  div_all = np.stack([c @ div for _, div in phis])                         # [8, N]
  net, net_params = am.train_score(cfg, params, chain[:-2], run_dir, resume=True,
                                   fields=(f_all[:-2], div_all[:-2]))
  x = jnp.asarray(chain[-2:])
  f, div_f = f_all[-2:], div_all[-2:]
  # With the g-shift, velocity features and the slaved-mode shift (the defaults)
  # s_g = NN_g / sqrt(gamma) - g + f, NN seeing the state and active.velocity_features:
  # gamma |g + s_g|^2 = |NN_g + sqrt(gamma) f|^2.
  assert TINY.shift_g and TINY.score_features == "velocity" and TINY.shift_slaved
  assert summary["network_on_slaved_modes"]
  cut = active.interaction_cutoff(params)

  def network(z):
    nb = active.neighbor_list(z[0], params, cut, TINY.max_neighbors, TINY.max_per_cell)
    f = active.velocity_features(z, params, nb)
    return net.apply(net_params, z, params.half_width, None, None, f.velocity,
                     jnp.concatenate([f.velocity, f.acceleration], -1))

  nn_g = np.asarray(jax.jit(jax.vmap(network))(x)[:, 1], np.float64)
  direct = float(np.mean(np.sum((nn_g + np.sqrt(TINY.gamma) * f) ** 2, axis=(1, 2))))
  assert summary["epr_total"] == pytest.approx(direct, rel=1e-4)
  # The lower bound 2 gamma [1/2 |g|^2 - d - 1/2 |s_g|^2 - div_g s_g] per particle, with
  # the divergence of the network's part from its full Jacobian (one derivative per
  # coordinate, through the features too) and that of f from the basis: the
  # per-particle shifts of the training loss and bound are exact.
  score = am.score_function(net, net_params, params, dataclasses.replace(TINY,
                                                                         shift_slaved=False))
  diag = jax.jit(jax.vmap(lambda z: prod.jacobian_diagonal(score, z)))(x)[:, 1]
  s_g = np.asarray(jax.jit(jax.vmap(score))(x)[:, 1], np.float64) + f
  terms = (0.5 * np.sum(chain[-2:, 1] ** 2, -1) - 2 - 0.5 * np.sum(s_g ** 2, -1)
           - np.sum(diag, -1) - div_f)
  bound = 2 * TINY.gamma * float(np.mean(np.sum(terms, axis=1)))
  assert summary["bound_per_particle"] * 40 == pytest.approx(bound, rel=1e-4, abs=1e-9)
  # The score-free rate: the generic form with the full Jacobian diagonal of the
  # all-pairs drift, on the same states.
  free = jax.jit(lambda x: prod.score_free_entropy_production(
      lambda z: active.aoup_drift(z, params),
      jnp.broadcast_to(active.aoup_diffusion(params), x.shape[1:]), x))(x)
  assert summary["score_free_per_particle"] * 40 == pytest.approx(float(free), rel=1e-4)
  # The packing groups partition the particles: shares sum to 1 and the share-weighted
  # group means give back the per-particle totals.
  groups = [g for g in summary["by_packing"].values() if g["share"] > 0]
  assert sum(g["share"] for g in groups) == pytest.approx(1.0)
  for key, total in (("epr", summary["epr_per_particle"]),
                     ("bound", summary["bound_per_particle"]),
                     ("score_free", summary["score_free_per_particle"])):
    assert sum(g["share"] * g[key] for g in groups) == pytest.approx(total, rel=1e-4, abs=1e-12)
  # The profile by number of centres refines the groups (dilute: <= 2 centres, 0.222;
  # dense: >= 7, 0.778) and its share-weighted means give back the same totals.
  profile = summary["packing_profile"]
  assert sum(b["share"] for b in profile) == pytest.approx(1.0)
  for name, test in (("dilute", lambda b: b["packing"] <= 0.3),
                     ("dense", lambda b: b["packing"] >= 0.7)):
    assert sum(b["share"] for b in profile if test(b)) == pytest.approx(
        summary["by_packing"][name]["share"])
  for key, total in (("epr", summary["epr_per_particle"]),
                     ("bound", summary["bound_per_particle"]),
                     ("slaved_bound", summary["slaved_mode_bound_per_particle"]),
                     ("score_free", summary["score_free_per_particle"])):
    assert sum(b["share"] * b[key] for b in profile if b["share"] > 0) == pytest.approx(
        total, rel=1e-4, abs=1e-12), key
  assert "profile" in summary["transfer"]["N=160"]
  # The slaved-mode score alone: its bound 2 gamma sum_i (g_i . f_i - div_i f_i) - gamma
  # |f_i|^2 on the held-out states; the packing groups' means give back the total, and
  # the N = 160 transfer has its own row.
  slaved = np.mean(np.sum(2 * TINY.gamma * (np.sum(f * chain[-2:, 1], -1) - div_f)
                          - TINY.gamma * np.sum(f * f, -1), axis=1))
  assert summary["slaved_mode_bound_per_particle"] * 40 == pytest.approx(slaved, rel=1e-6)
  shares = {k: g["share"] for k, g in summary["by_packing"].items()}
  assert sum(shares[k] * v for k, v in summary["slaved_mode_by_packing"].items()
             if v is not None) == pytest.approx(summary["slaved_mode_bound_per_particle"],
                                                rel=1e-6, abs=1e-12)
  assert summary["transfer"]["N=160"]["slaved"]["bound_per_particle"] is not None
  # The learning curve of the bound: one value per training chunk (20 steps in chunks of
  # 5), the last one the final network's bound on the same 2 held-out states.
  curve = summary["bound_curves"]["main"]
  assert [step for step, _ in curve] == [5, 10, 15, 20]
  assert curve[-1][1] == pytest.approx(summary["bound_per_particle"], rel=1e-4, abs=1e-9)
  # Resume after an interrupted training run (its last two checkpoints lost): every
  # simulation chunk is reused, training goes on from step 10 with the curve logged once
  # per step and equal to the uninterrupted one, and the summary is the same.
  chunks = sorted(p.name for p in (run_dir.path / "sim").iterdir())
  stamps = {p.name: p.stat().st_mtime_ns for p in (run_dir.path / "sim").iterdir()}
  slaved_stamps = {p.name: p.stat().st_mtime_ns for p in run_dir.path.glob("slaved_*")}
  assert set(slaved_stamps) == {"slaved_modes.json", "slaved_moments.npz",
                                "slaved_fields_train.npz", "slaved_fields_test.npz",
                                "slaved_fields_N160.npz"}
  ckpts = run_dir.path / "train" / "checkpoints"
  for stale in ckpts.glob("*"):
    if stale.name.split(".")[0] in ("15", "20"):
      stale.unlink() if stale.is_file() else shutil.rmtree(stale)
  assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["10"]
  resumed = am.run(cfg, run_dir, resume=True)
  assert sorted(p.name for p in (run_dir.path / "sim").iterdir()) == chunks
  assert {p.name: p.stat().st_mtime_ns for p in (run_dir.path / "sim").iterdir()} == stamps
  assert sorted(p.name for p in ckpts.iterdir() if p.is_dir())[-1] == "20"
  assert {p.name: p.stat().st_mtime_ns                                            # reused
          for p in run_dir.path.glob("slaved_*")} == slaved_stamps
  assert resumed["bound_curves"] == summary["bound_curves"]
  assert resumed["relaxation"] == summary["relaxation"]
  for key in ("epr_per_particle", "bound_per_particle", "score_free_per_particle",
              "slaved_mode_bound_per_particle"):
    assert resumed[key] == pytest.approx(summary[key], rel=1e-6), key
  assert set(resumed["transfer"]) == set(summary["transfer"])
  for label, row in summary["transfer"].items():
    assert resumed["transfer"][label]["epr_per_particle"] == pytest.approx(
        row["epr_per_particle"], rel=1e-6)


def test_slaved_mode_fit_resumes_after_a_kill(tmp_path, monkeypatch):
  """The slaved-mode fit sums its moments in chunks and saves the sums after each: a run
  killed in its second chunk resumes from the first, evaluates only the states left, and
  gives the coefficients of one uninterrupted fit (and of
  ``prod.fit_linear_self_propulsion_score``)."""
  params = am.system(TINY, 40, 0.5)
  keys = jax.random.split(jax.random.key(4), 8)
  x = np.stack([np.asarray(active.random_configuration(k, 40, params)) for k in keys])
  whole = am.fit_slaved_modes(params, 1, x, RunDir(tmp_path / "whole"), False, chunk=4)
  with jax.enable_x64(True):
    basis = active.local_slaved_mode_basis(params, degree=1, order=am.SLAVED_MODE_ORDER)
    direct = np.asarray(jax.jit(lambda y: prod.fit_linear_self_propulsion_score(basis, y))(
        jnp.asarray(x, jnp.float64)))
  np.testing.assert_allclose(whole, direct, rtol=1e-6, atol=1e-9 * np.abs(direct).max())
  real, seen = am._slaved_mode_programs(params, 1), []

  def killed_after_one(p, degree):
    def moments(chunk):
      if seen:
        raise KeyboardInterrupt
      seen.append(len(chunk))
      return real[0](chunk)
    return moments, real[1]

  run_dir = RunDir(tmp_path / "run")
  monkeypatch.setattr(am, "_slaved_mode_programs", killed_after_one)
  with pytest.raises(KeyboardInterrupt):
    am.fit_slaved_modes(params, 1, x, run_dir, False, chunk=4)
  assert seen == [4] and not (run_dir.path / "slaved_modes.json").exists()
  seen.clear()

  def counted(p, degree):
    return (lambda chunk: (seen.append(len(chunk)), real[0](chunk))[1]), real[1]

  monkeypatch.setattr(am, "_slaved_mode_programs", counted)
  resumed = am.fit_slaved_modes(params, 1, x, run_dir, True, chunk=4)
  assert seen == [4]
  np.testing.assert_allclose(resumed, whole, rtol=1e-12, atol=1e-12 * np.abs(whole).max())


def test_validation_states_choose_the_best_network_and_resume(tmp_path):
  """With validation states, ``train_score`` logs the bound on them for the initial
  network (the slaved-mode score: a zero readout) and after each chunk, and returns the
  network of the highest, not the last, without changing the training; a run killed
  after it saved a best network but before logging it resumes to the same choice."""
  params = am.system(TINY, 40, 0.5)
  keys = jax.random.split(jax.random.key(4), 9)
  x = np.stack([np.asarray(active.random_configuration(k, 40, params)) for k in keys])
  c = am.fit_slaved_modes(params, 1, x[:6], RunDir(tmp_path), False)
  f, div = am.slaved_mode_fields(params, 1, c, x, RunDir(tmp_path), "all", False)
  # (a margin that any gain passes: the per-state log and its test run, the choice is
  # the highest bound)
  cfg = dataclasses.replace(TINY, learning_rate=1e-3, train_steps=40, selection_margin=1e-9)
  run_dir = RunDir(tmp_path / "run")

  def train(resume):
    return am.train_score(cfg, params, x[:6], run_dir, resume, fields=(f[:6], div[:6]),
                          select_x=x[6:], select_fields=(f[6:], div[6:]))

  net, chosen = train(False)
  select = RunDir(run_dir.path / "train" / "select")
  curve = am.bound_curve(select)
  assert [st for st, _ in curve] == [0, 10, 20, 30, 40]
  val_fields = tuple(jnp.asarray(a[6:], jnp.float32) for a in (f, div))
  bound = lambda p: float(np.mean(np.sum(np.asarray(am.network_bound(
      net, p, params, cfg, jnp.asarray(x[6:]), val_fields)), axis=1))) / 40
  slaved = am.evaluate_slaved_modes(params, x[6:], (f[6:], div[6:]))["bound_per_particle"]
  assert curve[0][1] == pytest.approx(slaved, rel=1e-4)
  step = am.selected_step(curve)
  # Each state's bound is logged too; their means are the curve.
  logged, per_state = am.selection_log(select)
  assert logged == curve and per_state.shape == (5, 3)
  np.testing.assert_allclose(per_state.mean(axis=1), [b for _, b in curve], rtol=1e-6)
  assert am.selected_step(curve, per_state, cfg.selection_margin) == step
  # (on these states the bound rises, then falls: the choice is neither end)
  assert 0 < step < 40 and curve[step // 10][1] > max(curve[0][1], curve[-1][1])
  assert bound(chosen) == pytest.approx(curve[step // 10][1], rel=1e-6)
  # The last network, from the training checkpoint, is the one the curve ends with.
  init = am.init_network(net, params, cfg, jnp.asarray(x[0]), jax.random.key(cfg.seed))
  template = train_lib.init_state(init, optax.adam(optax.constant_schedule(1.0)),
                                  jax.random.key(0))
  last_step, last = checkpoint.restore(run_dir.path / "train" / "checkpoints",
                                       template)
  assert last_step == 40 and bound(last.params) == pytest.approx(curve[-1][1], rel=1e-6)
  # Killed after saving step 10's network, before logging it or checkpointing the chunk.
  for stale in (run_dir.path / "train" / "checkpoints").iterdir():
    stale.unlink() if stale.is_file() else shutil.rmtree(stale)
  select.metrics.truncate_after(0)
  _, resumed = train(True)
  assert am.bound_curve(select) == curve
  jax.tree.map(np.testing.assert_array_equal, resumed, chosen)
  # A fresh run into the same directory is refused before it touches the logs.
  with pytest.raises(ValueError, match="already holds checkpoints"):
    train(False)
  assert am.bound_curve(select) == curve
  old = RunDir(tmp_path / "old")                         # a log without per-state bounds
  old.metrics.append(0, bound_per_particle=curve[0][1])
  with pytest.raises(ValueError, match="per-state"):
    am.selection_log(old)
  # A margin no gain on three states can pass keeps the start, saved with the rest.
  kept_step, kept = am.selected_network(select, init, margin=1e6)
  assert kept_step == 0
  jax.tree.map(np.testing.assert_array_equal, kept, init)
  shutil.rmtree(select.path / "best")
  with pytest.raises(RuntimeError, match=f"step {step}"):
    am.selected_network(select, init)
  with pytest.raises(ValueError, match="select_fields"):
    am.train_score(cfg, params, x[:6], run_dir, True, select_fields=(f[6:], div[6:]))
  with pytest.raises(ValueError, match="selection_margin"):
    am.train_score(dataclasses.replace(cfg, selection_margin=2.0), params, x[:6],
                   RunDir(tmp_path / "one"), False, fields=(f[:6], div[:6]), select_x=x[6:7],
                   select_fields=(f[6:7], div[6:7]))
  # Three states of one chain are one independent unit: no standard error either; and
  # the chains must split the states evenly.
  for chains, match in ((1, "selection_margin"), (2, "select_chains")):
    with pytest.raises(ValueError, match=match):
      am.train_score(dataclasses.replace(cfg, selection_margin=2.0), params, x[:6],
                     RunDir(tmp_path / "one"), False, fields=(f[:6], div[:6]),
                     select_x=x[6:], select_fields=(f[6:], div[6:]), select_chains=chains)


def test_selected_step_needs_a_significant_gain_over_the_start():
  """A step beats the start only where its mean gain over it exceeds
  ``selection_threshold(margin, C)`` paired standard errors (sample sd of the gains /
  sqrt(C) over C independent units, here four states): the one-sided t quantile with C -
  1 degrees of freedom at the normal level of ``margin``. Among the steps that do (and
  the start) the highest bound wins, the earliest of equal ones."""
  v0 = np.array([1.0, 2.0, 3.0, 4.0])
  steady = v0 + np.array([0.10, 0.11, 0.09, 0.10])     # gain 0.1, se 0.0041: z = 24.5
  noisy = v0 + np.array([1.0, -0.6, 0.9, -0.5])        # gain 0.2, se 0.4340: z = 0.46
  per_state = np.stack([v0, steady, noisy])
  curve = [(0, 2.5), (10, 2.6), (20, 2.7)]
  z = lambda v: (v - v0).mean() / ((v - v0).std(ddof=1) / 2)
  assert z(steady) == pytest.approx(24.49, abs=0.01) and z(noisy) == pytest.approx(0.461,
                                                                                  abs=1e-3)
  gain, se = am.selection_gains(per_state)
  np.testing.assert_allclose(gain, [0.0, 0.1, 0.2], atol=1e-12)
  np.testing.assert_allclose(se, [0.0, np.sqrt(2e-4 / 3) / 2, np.sqrt(2.26 / 3) / 2],
                             rtol=1e-12, atol=1e-15)
  # The thresholds against closed forms of the t quantile: 1 degree of freedom (Cauchy)
  # tan(pi (1/2 - p)), 2: (1 - 2 p) / sqrt(2 p (1 - p)); p = erfc(margin / sqrt 2) / 2.
  p = lambda m: 0.5 * math.erfc(m / math.sqrt(2))
  for m in (0.3, 1.0, 2.0, 3.0):
    assert am.selection_threshold(m, 2) == pytest.approx(math.tan(math.pi * (0.5 - p(m))),
                                                         rel=1e-9)
    assert am.selection_threshold(m, 3) == pytest.approx(
        (1 - 2 * p(m)) / math.sqrt(2 * p(m) * (1 - p(m))), rel=1e-9)
  # (the numbers of its docstring; toward the margin itself for many units)
  assert [round(am.selection_threshold(2.0, c), 2) for c in (2, 4, 16)] == [13.97, 3.31, 2.18]
  assert am.selection_threshold(2.0, 10_000) == pytest.approx(2.0, rel=1e-3)
  assert am.selection_threshold(0.0, 2) == 0.0
  for bad in ((-1.0, 4), (float("nan"), 4), (2.0, 1), (2.0, 2.5)):
    with pytest.raises(ValueError, match="margin|units"):
      am.selection_threshold(*bad)
  # Four units: 0.3 -> 0.33 standard errors, 2 -> 3.31, 30 -> 3e65.
  assert am.selected_step(curve) == 20                  # margin 0: the highest bound
  assert am.selected_step(curve, per_state, 0.3) == 20
  assert am.selected_step(curve, per_state, 2.0) == 10
  assert am.selected_step(curve, per_state, 30.0) == 0
  assert am.selected_step([(0, 2.5), (10, 2.6), (20, 2.6)]) == 10
  with pytest.raises(ValueError, match="per_block"):
    am.selected_step(curve, None, 2.0)
  with pytest.raises(ValueError, match="per_block"):
    am.selected_step(curve, per_state[:, :1], 2.0)      # one unit: no standard error
  with pytest.raises(ValueError, match="margin"):
    am.selected_step(curve, per_state, -1.0)
  with pytest.raises(ValueError, match="per_block"):
    am.selection_gains(per_state[:, :1])
  with pytest.raises(ValueError, match="empty"):
    am.selected_step([])
  for bad in (dict(selection_margin=-1.0), dict(selection_margin=float("inf")),
              dict(validation=0.125), dict(validation=0.5)):    # one chain: one unit
    with pytest.raises(ValueError, match="selection_margin"):
      dataclasses.replace(TINY, selection_margin=bad.get("selection_margin", 2.0),
                          validation=bad.get("validation", 0.0)).validate()
  dataclasses.replace(TINY, selection_margin=2.0, validation=0.125, chains=2).validate()


def test_selection_counts_each_chain_once(tmp_path):
  """Validation states of one chain are correlated, so the gains are averaged per chain
  (equal consecutive blocks) before the paired standard error: a gain that looks
  significant state by state need not be chain by chain. The log keeps every state's
  bound and the number of blocks; ``selection_log`` returns the block means."""
  v0 = np.array([1.0, 1.2, 3.0, 3.1])                   # chains (1.0, 1.2), (3.0, 3.1)
  step = v0 + np.array([0.30, 0.31, -0.10, -0.09])       # chain gains 0.305, -0.095
  per_state = np.stack([v0, step])
  curve = [(0, float(v0.mean())), (10, float(step.mean()))]
  # State by state: gain 0.105, se sd(0.30, 0.31, -0.10, -0.09) / 2 = 0.1179; z = 0.89,
  # above the threshold for margin 0.7 with 3 degrees of freedom, 0.80. Chain by chain:
  # the same gain, se |0.305 + 0.095| / sqrt(2) / sqrt(2) = 0.2; z = 0.525, below 1.05.
  gain, se = am.selection_gains(per_state)
  assert gain[1] == pytest.approx(0.105) and se[1] == pytest.approx(
      np.std([0.30, 0.31, -0.10, -0.09], ddof=1) / 2, rel=1e-12)
  blocks = am.block_means(per_state, 2)
  np.testing.assert_allclose(blocks, [[1.1, 3.05], [1.405, 2.955]], rtol=1e-12)
  gain_c, se_c = am.selection_gains(blocks)
  assert gain_c[1] == pytest.approx(0.105) and se_c[1] == pytest.approx(0.2, rel=1e-12)
  assert am.selected_step(curve, per_state, 0.7) == 10
  assert am.selected_step(curve, blocks, 0.7) == 0
  # The monitor's log format, read back: per-state bounds and the blocks.
  log = RunDir(tmp_path / "log")
  for (st, b), v in zip(curve, per_state):
    log.metrics.append(st, bound_per_particle=b, per_state=v.tolist(), blocks=2)
  logged, units = am.selection_log(log)
  assert logged == curve
  np.testing.assert_allclose(units, blocks, rtol=1e-12)
  np.testing.assert_allclose(units.mean(axis=1), [b for _, b in curve], rtol=1e-12)
  log.metrics.append(20, bound_per_particle=2.0, per_state=v0.tolist(), blocks=4)
  with pytest.raises(ValueError, match="different blocks"):
    am.selection_log(log)
  for bad, err in ((3, ValueError), (0, ValueError), (2.0, TypeError)):
    with pytest.raises(err, match="select_chains"):
      am.state_blocks(4, bad, "select_chains")
  with pytest.raises(ValueError, match="blocks"):
    am.block_means(per_state, 3)
  with pytest.raises(ValueError, match="per_state"):
    am.block_means(v0, 2)
  # The rule as table.md states it: also for one chain without a margin, and with the
  # t threshold otherwise.
  one = dataclasses.replace(TINY, validation=0.125, selection_margin=0.0)
  one.validate()
  assert am.selection_rule(one.selection_margin, one.chains) == (
      "the highest bound, with no margin")
  assert "3.31 paired standard errors of the 4 chains" in am.selection_rule(2.0, 4)
  with pytest.raises(ValueError, match="margin"):
    am.selection_rule(-1.0, 4)


def test_divergent_simulation_names_the_step(tmp_path):
  cfg = dataclasses.replace(TINY, dt=1e10, v0=1e30)  # v0 g dt overflows float32
  with pytest.raises(FloatingPointError, match="step"):
    am.run(cfg, RunDir(tmp_path / "bad"))


def test_config_validation():
  with pytest.raises(ValueError, match="num_neighbors"):
    dataclasses.replace(TINY, n_particles=5).validate()
  with pytest.raises(ValueError, match="packing"):
    dataclasses.replace(TINY, transfer_packing=(1.5,)).validate()
  with pytest.raises(ValueError, match="chunk_steps"):
    dataclasses.replace(TINY, chunk_steps=45).validate()
  with pytest.raises(ValueError, match="initial_spread"):
    dataclasses.replace(TINY, initial_spread=-0.5).validate()
  with pytest.raises(ValueError, match="score_loss"):
    dataclasses.replace(TINY, score_loss="sliced").validate()
  with pytest.raises(ValueError, match="query_size"):
    dataclasses.replace(TINY, query_size=41).validate()
  with pytest.raises(ValueError, match="monitor_states"):
    dataclasses.replace(TINY, monitor_states=-1).validate()
  with pytest.raises(ValueError, match="validation"):
    dataclasses.replace(TINY, validation=1.0).validate()
  with pytest.raises(ValueError, match="validation"):
    dataclasses.replace(TINY, validation=0.05).validate()      # none of 8 samples
  with pytest.raises(ValueError, match="no training sample"):
    dataclasses.replace(TINY, held_out=0.5, validation=0.5).validate()
  with pytest.raises(ValueError, match="epsilon"):
    dataclasses.replace(TINY, validation=0.125, epsilon=0.1).validate()
  assert dataclasses.replace(TINY, validation=0.125).split() == (5, 1, 2)


class ZeroNet:
  """A network whose output is zero, in ``LocalTransformer``'s call form."""

  @staticmethod
  def apply(params, z, half_width, query=None, self_shift=None, features=None,
            self_features=None):
    return jnp.zeros_like(z if query is None else z[:, query])


def test_g_shift_is_exact_for_a_zero_network():
  """With NN = 0 the shifted score is (0, -g), the exact score of g when it is
  independent of x (v0 = 0), so the hypoelliptic rate gamma E|g + s_g|^2 is exactly 0;
  without the shift the same network's score is 0 and the rate is gamma E|g|^2."""
  params = am.system(TINY, 40, 0.5)
  z = active.random_configuration(jax.random.key(0), 40, params)
  for features in ("velocity", "none"):
    cfg = dataclasses.replace(TINY, score_features=features)
    shifted = am.score_function(ZeroNet, None, params, cfg)(z)
    np.testing.assert_array_equal(shifted[0], 0.0)
    np.testing.assert_array_equal(shifted[1], -z[1])
  plain = am.score_function(ZeroNet, None, params, dataclasses.replace(TINY, shift_g=False))(z)
  np.testing.assert_array_equal(plain, 0.0)
  assert float(jnp.sum((z[1] + shifted[1]) ** 2)) == 0.0


def test_harmonic_shift_with_a_zero_network_is_the_harmonic_score():
  """With NN = 0 and ``shift_harmonic`` the score is ``harmonic_self_propulsion_score``
  at every particle subset and own shift of g, so the loss and the bound see that
  formula at initialisation; the shift needs velocity features."""
  params = am.system(TINY, 40, 0.5)
  z = active.random_configuration(jax.random.key(1), 40, params)
  cfg = dataclasses.replace(TINY, shift_harmonic=True)
  got = am.local_score(ZeroNet, None, params, cfg)
  want = active.harmonic_self_propulsion_score(params, cfg.max_neighbors, cfg.max_per_cell)
  query = jnp.array([5, 0, 17])
  shift = jax.random.normal(jax.random.key(2), (2, 3, 2))
  # float32, overlapping random particles: scores up to 1e6 from a - gamma u.
  np.testing.assert_allclose(got(z, query, shift), want(z, query, shift), rtol=1e-4)
  np.testing.assert_allclose(got(z), want(z), rtol=1e-4)
  assert float(jnp.max(jnp.abs(got(z)[1] + z[1]))) > 1e-3     # not the -g shift
  with pytest.raises(ValueError, match="shift_harmonic"):
    dataclasses.replace(cfg, score_features="none").validate()


def test_slaved_shift_with_a_zero_network_is_the_slaved_mode_score(tmp_path):
  """With NN = 0 and a state's slaved-mode fields the score is -g + f at every particle
  subset, its per-particle divergence in the own g is div f - 2, so the network's bound
  equals the slaved-mode bound term by term (the bound the training starts from); the
  fields are the basis' f = sum_k c_k phi_k, and the option's conflicts are refused."""
  params = am.system(TINY, 40, 0.5)
  keys = jax.random.split(jax.random.key(3), 3)
  x = np.stack([np.asarray(active.random_configuration(k, 40, params)) for k in keys])
  c = np.array([0.7, -0.2, 0.05, 0.3, -0.4, 0.1, 0.02, -0.01])
  f, div = am.slaved_mode_fields(params, 1, c, x, RunDir(tmp_path), "t", False)
  with jax.enable_x64(True):
    phi, div_k = jax.jit(active.local_slaved_mode_basis(params, degree=1))(
        jnp.asarray(x[1], jnp.float64))
  np.testing.assert_allclose(f[1], np.einsum("k,knd->nd", c, phi), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(div[1], c @ np.asarray(div_k), rtol=1e-10, atol=1e-12)
  score = am.local_score(ZeroNet, None, params, TINY, slaved=(f[1], div[1]))
  query = jnp.array([5, 0, 17])
  z = jnp.asarray(x[1])
  np.testing.assert_allclose(score(z, query)[1], -x[1, 1, [5, 0, 17]] + f[1, [5, 0, 17]],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(score(z, query)[0], 0.0)
  terms = prod.local_implicit_score_matching_terms(score, z, (1,), query)[0]
  s_g = -x[1, 1, [5, 0, 17]] + f[1, [5, 0, 17]]
  np.testing.assert_allclose(terms, 0.5 * np.sum(s_g ** 2, -1) + div[1, [5, 0, 17]] - 2,
                             rtol=1e-4, atol=1e-4)
  net_bound = am.network_bound(ZeroNet, None, params, TINY, jnp.asarray(x),
                               tuple(jnp.asarray(a, jnp.float32) for a in (f, div)))
  slaved = am.evaluate_slaved_modes(params, x, (f, div))["local"]
  np.testing.assert_allclose(net_bound, slaved, rtol=1e-3, atol=1e-6 * np.abs(slaved).max())
  with pytest.raises(ValueError, match="fields"):
    am.train_score(TINY, params, x, RunDir(tmp_path), False, fields=(f[:2], div[:2]))
  with pytest.raises(ValueError, match="fields"):
    am.train_score(dataclasses.replace(TINY, score_loss="dsm", shift_slaved=False), params,
                   x, RunDir(tmp_path), False, fields=(f, div))
  with pytest.raises(ValueError, match="coefficients"):
    am.slaved_mode_fields(params, 1, c[:-1], x, RunDir(tmp_path), "t", False)
  with pytest.raises(ValueError, match="coefficients"):
    am.slaved_mode_fields(params, 1, c * np.nan, x, RunDir(tmp_path), "t", False)
  for bad in (dict(slaved_mode_degree=-1), dict(shift_harmonic=True), dict(shift_g=False),
              dict(score_loss="dsm")):
    with pytest.raises(ValueError, match="shift_slaved"):
      dataclasses.replace(TINY, **bad).validate()


def test_dsm_baseline_is_the_dsm_training_run_again(tmp_path):
  """The baseline network is trained by the "dsm" recipe: with the main network trained
  by that recipe too, at the same steps and batch, both give the same numbers (no
  slaved-mode score: the tiny run covers it)."""
  cfg = dataclasses.replace(TINY, score_loss="dsm", shift_slaved=False, slaved_mode_degree=-1,
                            dsm_baseline_steps=TINY.train_steps,
                            dsm_baseline_batch_size=TINY.batch_size, chains=2,
                            validation=0.25, selection_margin=2.0)
  summary = am.run(cfg, RunDir(tmp_path / "run"))
  # Two validation states per chain, between the training and the held-out ones; each
  # network is chosen on them with the gains averaged per chain (2 units, not 4 states).
  assert (summary["train_samples"], summary["validation_samples"],
          summary["held_out_samples"]) == (8, 4, 4)
  for name, sub in (("main", "train"), ("dsm_baseline", "train_dsm")):
    sel = summary["selection"][name]
    assert [st for st, _ in sel["curve"]] == [0, 5, 10, 15, 20]
    curve, units = am.selection_log(RunDir(tmp_path / "run" / sub / "select"))
    assert units.shape == (5, 2) and curve == [tuple(c) for c in sel["curve"]]
    assert sel["step"] == am.selected_step(curve, units, 2.0) and sel["margin"] == 2.0
  assert summary["selection"]["main"] == summary["selection"]["dsm_baseline"]
  assert set(summary["dsm_baseline"]) == {"trained", "N=160"}
  base = summary["dsm_baseline"]["trained"]
  assert base["epr_per_particle"] == pytest.approx(summary["epr_per_particle"], rel=1e-6)
  assert base["bound_per_particle"] == pytest.approx(summary["bound_per_particle"], rel=1e-6)
  # (the summary rounds the residual to 4 decimals)
  assert base["stationarity_relative"] == pytest.approx(summary["stationarity_relative"],
                                                        abs=1e-4)
  np.testing.assert_allclose(summary["bound_curves"]["dsm_baseline"],
                             summary["bound_curves"]["main"], rtol=1e-6)


def test_correction_penalty_is_a_ridge_term_on_the_network_output(tmp_path):
  """With ``correction_penalty = lambda`` the loss is the implicit score matching loss
  plus (lambda / 2) E sum_i |NN_g,i / sqrt(gamma)|^2, the network's own g output
  (``net.apply`` directly, velocity features from ``active.velocity_features``): zero for
  a zero output, and the option's conflicts are refused."""
  params = am.system(TINY, 40, 0.5)
  keys = jax.random.split(jax.random.key(4), 3)
  x = jnp.stack([active.random_configuration(k, 40, params) for k in keys])
  f = 3.0 * jax.random.normal(jax.random.key(5), (3, 40, 2))
  div = jax.random.normal(jax.random.key(6), (3, 40))
  cfg = dataclasses.replace(TINY, score_loss="ism_g_only", query_size=40)   # every particle
  lam = 2.5
  net = am.LocalTransformer(num_neighbors=cfg.num_neighbors, width=cfg.width, depth=cfg.depth)
  net_params = am.init_network(net, params, cfg, x[0], jax.random.key(7))
  key = jax.random.key(8)
  plain, penalised = (jax.jit(am.training_loss(
      net, params, dataclasses.replace(cfg, correction_penalty=l))) for l in (0.0, lam))
  cut = active.interaction_cutoff(params)

  def nn_g(z):
    z = z.at[0].set(active.wrap_positions(z[0], params.half_width))
    nb = active.neighbor_list(z[0], params, cut, cfg.max_neighbors, cfg.max_per_cell)
    v = active.velocity_features(z, params, nb)
    return net.apply(net_params, z, params.half_width, None, None, v.velocity,
                     jnp.concatenate([v.velocity, v.acceleration], -1))[1]

  ridge = np.mean(np.sum(np.asarray(jax.jit(jax.vmap(nn_g))(x), np.float64) ** 2, axis=(1, 2))
                  / params.gamma)
  assert ridge > 1.0
  base = float(plain(net_params, x, (f, div), key))
  got = float(penalised(net_params, x, (f, div), key))
  assert got - base == pytest.approx(0.5 * lam * ridge, rel=1e-4)
  # A zero output (all parameters 0, as the zero-readout start's readout) is the
  # slaved-mode score: no penalty.
  zero = jax.tree.map(jnp.zeros_like, net_params)
  assert float(penalised(zero, x, (f, div), key)) == pytest.approx(
      float(plain(zero, x, (f, div), key)), rel=1e-6)
  for bad in (dict(correction_penalty=-1.0), dict(correction_penalty=float("nan")),
              dict(correction_penalty=1.0, shift_slaved=False),
              dict(correction_penalty=1.0, epsilon=0.1)):
    with pytest.raises(ValueError, match="correction_penalty"):
      dataclasses.replace(TINY, **bad).validate()
  with pytest.raises(ValueError, match="correction_penalty"):
    am.train_score(dataclasses.replace(TINY, correction_penalty=1.0), params, np.asarray(x),
                   RunDir(tmp_path), False)
  with pytest.raises(ValueError, match="correction_penalty"):
    penalised(net_params, x, None, key)


def test_packing_profile_groups_particles_by_their_count_of_centres():
  """Means per count of centres against a loop over the particles; empty counts give
  None, ``None`` columns are left out, and bad packing values are refused."""
  rng = np.random.default_rng(0)
  counts = rng.integers(1, 8, size=(3, 50))
  counts[counts == 4] = 5                                            # an empty count
  packing = counts * am.PACKING_PER_CENTRE
  values = rng.normal(size=(3, 50))
  rows = am.packing_profile(packing, {"a": values, "b": None})
  assert [r["centres"] for r in rows] == list(range(1, counts.max() + 1))
  for r in rows:
    assert set(r) == {"centres", "packing", "share", "a"}
    picked = [v for c, v in zip(counts.ravel(), values.ravel()) if c == r["centres"]]
    assert r["share"] == pytest.approx(len(picked) / counts.size)
    assert r["a"] == (pytest.approx(sum(picked) / len(picked)) if picked else None)
  assert rows[3]["a"] is None and rows[3]["share"] == 0
  with pytest.raises(ValueError, match="multiples"):
    am.packing_profile(packing + 0.05, {"a": values})
  with pytest.raises(ValueError, match="multiples"):
    am.packing_profile(np.zeros((3, 50)), {"a": values})
  with pytest.raises(ValueError, match="column 'a'"):
    am.packing_profile(packing, {"a": values[:, :3]})
  with pytest.raises(ValueError, match="finite"):
    am.packing_profile(np.full((3, 50), np.nan), {"a": values})
