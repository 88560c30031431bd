"""Tests of the generic training loop: learning, logging, kill/resume, corrupt checkpoints."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.runner import checkpoint
from entropylab.runner import devices
from entropylab.runner import train
from entropylab.runner.rundir import RunDir
from tests.runner import _train_script

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(_train_script.__file__).resolve()


def _steps(run_dir):
  return [r["step"] for r in RunDir(run_dir).metrics.records()]


def _assert_same_params(a, b):
  assert sorted(a) == sorted(b)
  for name in a:
    assert np.array_equal(a[name], b[name]), f"parameter {name} differs"


def _complete_steps(ckpt_dir):
  return [s for s in checkpoint.all_steps(ckpt_dir)
          if checkpoint.manifest_path(ckpt_dir, s).is_file()]


# (a) -------------------------------------------------------------------------------


def test_fit_learns_sine_and_logs_one_record_per_chunk(tmp_path):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=0)
  params_before = _train_script.flat_params(params)
  eval_batch = batch_fn(jax.random.key(123), jnp.int32(0))

  def eval_loss(p):
    return float(loss_fn(p, eval_batch)[0])

  state, history = train.fit(loss_fn, params, optimizer, key, num_steps=600,
                             batch_fn=batch_fn, run_dir=tmp_path, chunk_size=100,
                             progress=False)

  assert eval_loss(state.params) < eval_loss(params) / 50
  assert int(state.step) == 600
  # The caller's params are neither donated nor changed.
  _assert_same_params(_train_script.flat_params(params), params_before)

  records = list(RunDir(tmp_path).metrics.records())
  assert [r["step"] for r in records] == [100, 200, 300, 400, 500, 600]
  assert set(records[0]) == {"step", "loss", "grad_norm", "max_abs_err"}
  np.testing.assert_array_equal(history["step"], [100, 200, 300, 400, 500, 600])
  np.testing.assert_allclose(history["loss"], [r["loss"] for r in records])
  assert history["loss"][-1] < history["loss"][0] / 10
  # Default keep=3: only the newest three checkpoints remain, all complete.
  assert checkpoint.all_steps(tmp_path / "checkpoints") == [400, 500, 600]
  assert _complete_steps(tmp_path / "checkpoints") == [400, 500, 600]


def test_fit_partial_last_chunk_and_checkpoint_every(tmp_path):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=1)
  _, history = train.fit(loss_fn, params, optimizer, key, num_steps=110,
                         batch_fn=batch_fn, run_dir=tmp_path, chunk_size=25,
                         checkpoint_every=50, keep=5, progress=False)
  np.testing.assert_array_equal(history["step"], [25, 50, 75, 100, 110])
  assert _steps(tmp_path) == [25, 50, 75, 100, 110]
  assert checkpoint.all_steps(tmp_path / "checkpoints") == [50, 100, 110]


def test_callback_runs_before_the_checkpoint_of_its_chunk(tmp_path):
  """A callback sees each chunk before its checkpoint is written: when it raises at step
  60 the newest checkpoint is step 40's, and a resumed run redoes step 60 (calling the
  callback there again) and ends with the parameters of an uninterrupted run."""
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=1)
  kwargs = dict(num_steps=100, batch_fn=batch_fn, chunk_size=20, progress=False)
  ref, _ = train.fit(loss_fn, params, optimizer, key, **kwargs)
  seen = []

  def stop_at_60(state, record):
    seen.append(record["step"])
    if record["step"] == 60:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    train.fit(loss_fn, params, optimizer, key, run_dir=tmp_path, callback=stop_at_60,
              **kwargs)
  assert seen == [20, 40, 60]
  assert _complete_steps(RunDir(tmp_path).checkpoint_dir)[-1] == 40
  seen.clear()
  state, _ = train.fit(loss_fn, params, optimizer, key, run_dir=tmp_path, resume=True,
                       callback=lambda st, rec: seen.append(rec["step"]), **kwargs)
  assert seen == [60, 80, 100]
  _assert_same_params(_train_script.flat_params(state.params),
                      _train_script.flat_params(ref.params))


def test_fit_accepts_plain_scalar_loss_and_raw_key():
  params, optimizer, loss_fn, batch_fn, _ = _train_script.make_problem(seed=2)
  state, history = train.fit(lambda p, b: loss_fn(p, b)[0], params, optimizer,
                             jax.random.PRNGKey(5), num_steps=40, batch_fn=batch_fn,
                             chunk_size=20, progress=False)
  assert set(history) == {"step", "loss", "grad_norm"}
  assert history["loss"][-1] < history["loss"][0]
  assert state.key.dtype == jnp.uint32


def test_progress_bar_shows_steps_only_when_enabled(capsys):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=2)
  train.fit(loss_fn, params, optimizer, key, num_steps=30, batch_fn=batch_fn,
            chunk_size=10, progress=True)
  err = capsys.readouterr().err
  assert "30/30" in err and "step/s" in err and "loss=" in err
  train.fit(loss_fn, params, optimizer, key, num_steps=30, batch_fn=batch_fn,
            chunk_size=10, progress=False)
  captured = capsys.readouterr()
  assert "30/30" not in captured.err + captured.out


class _UnhashableLoss:
  """A loss object that cannot be a static jit argument."""
  __hash__ = None

  def __call__(self, params, batch):
    return _train_script.loss_fn(params, batch)


def test_fit_with_unhashable_loss_matches_hashable_one():
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=7)
  a, _ = train.fit(loss_fn, params, optimizer, key, num_steps=20, batch_fn=batch_fn,
                   chunk_size=10, progress=False)
  b, _ = train.fit(_UnhashableLoss(), params, optimizer, key, num_steps=20,
                   batch_fn=batch_fn, chunk_size=10, progress=False)
  _assert_same_params(_train_script.flat_params(a.params),
                      _train_script.flat_params(b.params))


# (b) -------------------------------------------------------------------------------


def _script_cmd(mode, run_dir, out, *extra):
  return [sys.executable, str(SCRIPT), mode, str(run_dir), str(out), *extra]


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  return env


def _run(cmd, timeout=60):
  proc = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, check=False)
  assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
  return proc


def _load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def test_sigkill_then_resume_is_bit_identical_to_uninterrupted_run(tmp_path):
  num_steps, chunk = 300, 20
  args = ["--seed", "3", "--num-steps", str(num_steps), "--chunk-size", str(chunk)]
  ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
  ckpt_dir = run_dir / "checkpoints"

  # The uninterrupted reference runs alongside the run that gets killed; only the
  # latter pauses after each chunk (the pause does not touch the numbers).
  ref = subprocess.Popen(_script_cmd("train", ref_dir, tmp_path / "ref.npz", *args),
                         env=_env(), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
  victim = subprocess.Popen(
      _script_cmd("train", run_dir, tmp_path / "run.npz", *args, "--sleep", "0.15"),
      env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 60
    while True:
      assert victim.poll() is None, "training finished before it could be killed:\n" + (
          victim.stdout.read())
      done = _complete_steps(ckpt_dir)
      if done and done[-1] >= 5 * chunk:
        break
      assert time.monotonic() < deadline, "no checkpoint appeared in time"
      time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    ref_out, _ = ref.communicate(timeout=60)
    assert ref.returncode == 0, ref_out
  finally:
    for p in (ref, victim):
      if p.poll() is None:
        p.kill()
        p.wait()

  with warnings.catch_warnings():
    warnings.simplefilter("ignore", checkpoint.CheckpointWarning)
    killed_at = checkpoint.latest_valid(ckpt_dir)
  assert killed_at is not None and 5 * chunk <= killed_at < num_steps
  assert not (tmp_path / "run.npz").exists()

  _run(_script_cmd("train", run_dir, tmp_path / "run.npz", *args, "--resume"))

  resumed, reference = _load(tmp_path / "run.npz"), _load(tmp_path / "ref.npz")
  assert int(resumed["__step__"]) == num_steps
  _assert_same_params(resumed, reference)

  steps = _steps(run_dir)
  assert steps == list(range(chunk, num_steps + 1, chunk))  # no duplicates, no gaps
  ref_losses = [r["loss"] for r in RunDir(ref_dir).metrics.records()]
  assert [r["loss"] for r in RunDir(run_dir).metrics.records()] == ref_losses


# (c) -------------------------------------------------------------------------------

NUM_STEPS, CHUNK = 150, 25


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A completed run (checkpoints 100, 125, 150 kept) and its final parameters."""
  run_dir = tmp_path_factory.mktemp("finished")
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=4)
  state, _ = train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS,
                       batch_fn=batch_fn, run_dir=run_dir, chunk_size=CHUNK,
                       progress=False)
  return run_dir, _train_script.flat_params(state.params)


def _largest_file(step_dir):
  return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(ckpt_dir):
  f = _largest_file(ckpt_dir / str(NUM_STEPS))
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _flip_byte(ckpt_dir):
  f = _largest_file(ckpt_dir / str(NUM_STEPS))
  data = bytearray(f.read_bytes())
  data[len(data) // 2] ^= 0xFF
  f.write_bytes(bytes(data))


def _delete_manifest(ckpt_dir):
  checkpoint.manifest_path(ckpt_dir, NUM_STEPS).unlink()


def _tear_manifest(ckpt_dir):
  m = checkpoint.manifest_path(ckpt_dir, NUM_STEPS)
  m.write_text(m.read_text()[:40])


def _delete_file(ckpt_dir):
  _largest_file(ckpt_dir / str(NUM_STEPS)).unlink()


def _garble_with_matching_manifest(ckpt_dir):
  # Contents orbax cannot read, but a manifest that matches them: only the restore
  # itself can notice.
  step_dir = ckpt_dir / str(NUM_STEPS)
  for f in step_dir.rglob("*"):
    if f.is_file():
      f.write_bytes(b"\x00garbage\x00" * 3)
  checkpoint._write_manifest(ckpt_dir, NUM_STEPS)  # pylint: disable=protected-access
  checkpoint.verify(ckpt_dir, NUM_STEPS)


CORRUPTIONS = {
    "truncated_file": (_truncate, "truncated"),
    "flipped_byte": (_flip_byte, "sha256 mismatch"),
    "deleted_manifest": (_delete_manifest, "manifest missing"),
    "torn_manifest": (_tear_manifest, "manifest unreadable"),
    "deleted_file": (_delete_file, "missing"),
    "unreadable_by_orbax": (_garble_with_matching_manifest, "metadata unreadable"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_newest_checkpoint_falls_back_and_resume_matches(
    corruption, finished_run, tmp_path):
  src, final_params = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(src, run_dir)
  ckpt_dir = run_dir / "checkpoints"
  corrupt, reason = CORRUPTIONS[corruption]
  corrupt(ckpt_dir)

  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=4)
  template = train.init_state(params, optimizer, key)
  with pytest.warns(checkpoint.CheckpointWarning, match=f"step {NUM_STEPS} .*{reason}"):
    restored = checkpoint.restore(ckpt_dir, template)
  assert restored is not None
  step, state = restored
  assert step == NUM_STEPS - CHUNK
  assert int(state.step) == NUM_STEPS - CHUNK
  if corruption != "unreadable_by_orbax":
    with pytest.warns(checkpoint.CheckpointWarning, match=f"step {NUM_STEPS}"):
      assert checkpoint.latest_valid(ckpt_dir) == NUM_STEPS - CHUNK

  with pytest.warns(checkpoint.CheckpointWarning, match=f"step {NUM_STEPS}"):
    state, history = train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS,
                               batch_fn=batch_fn, run_dir=run_dir, chunk_size=CHUNK,
                               resume=True, progress=False)
  np.testing.assert_array_equal(history["step"], [NUM_STEPS])  # only the lost chunk
  _assert_same_params(_train_script.flat_params(state.params), final_params)
  assert _steps(run_dir) == list(range(CHUNK, NUM_STEPS + 1, CHUNK))
  # The corrupt step was rewritten and verifies again.
  checkpoint.verify(ckpt_dir, NUM_STEPS)


def test_resume_without_valid_checkpoint_starts_over(finished_run, tmp_path):
  src, final_params = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(src, run_dir)
  for s in checkpoint.all_steps(run_dir / "checkpoints"):
    checkpoint.manifest_path(run_dir / "checkpoints", s).unlink()
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=4)
  with pytest.warns(checkpoint.CheckpointWarning):
    state, history = train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS,
                               batch_fn=batch_fn, run_dir=run_dir, chunk_size=CHUNK,
                               resume=True, progress=False)
  assert len(history["step"]) == NUM_STEPS // CHUNK
  _assert_same_params(_train_script.flat_params(state.params), final_params)
  assert _steps(run_dir) == list(range(CHUNK, NUM_STEPS + 1, CHUNK))


def test_resume_of_a_finished_run_does_no_steps(finished_run, tmp_path):
  src, final_params = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(src, run_dir)
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=4)
  state, history = train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS,
                             batch_fn=batch_fn, run_dir=run_dir, chunk_size=CHUNK,
                             resume=True, progress=False)
  assert history["step"].size == 0
  _assert_same_params(_train_script.flat_params(state.params), final_params)
  with pytest.raises(ValueError, match="num_steps"):
    train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS - CHUNK,
              batch_fn=batch_fn, run_dir=run_dir, chunk_size=CHUNK, resume=True,
              progress=False)


# (d) -------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, exc, name", [
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=-3), ValueError, "num_steps"),
    (dict(num_steps=2.5), TypeError, "num_steps"),
    (dict(chunk_size=0), ValueError, "chunk_size"),
    (dict(checkpoint_every=30), ValueError, "checkpoint_every"),
    (dict(checkpoint_every=0), ValueError, "checkpoint_every"),
    (dict(keep=0), ValueError, "keep"),
    (dict(resume=True, run_dir=None), ValueError, "resume"),
    (dict(key=np.zeros(3, np.float32)), TypeError, "key"),
    (dict(optimizer=object()), TypeError, "optimizer"),
    (dict(loss_fn=3), TypeError, "loss_fn"),
    (dict(batch_fn=None), TypeError, "batch_fn"),
    (dict(mesh="cpu"), TypeError, "mesh"),
    (dict(batch_axis="model", mesh="MESH"), ValueError, "batch_axis"),
])
def test_fit_rejects_bad_arguments_before_any_work(overrides, exc, name, tmp_path):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem()
  run_dir = tmp_path / "never_created"
  kwargs = dict(loss_fn=loss_fn, params=params, optimizer=optimizer, key=key,
                num_steps=100, batch_fn=batch_fn, run_dir=run_dir, chunk_size=20,
                progress=False)
  kwargs.update(overrides)
  if kwargs.get("mesh") == "MESH":
    kwargs["mesh"] = devices.make_mesh()
  with pytest.raises(exc, match=name):
    train.fit(**kwargs)
  assert not run_dir.exists()


def test_fit_refuses_to_overwrite_checkpoints_without_resume(finished_run, tmp_path):
  src, _ = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(src, run_dir)
  before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=4)
  with pytest.raises(ValueError, match="resume"):
    train.fit(loss_fn, params, optimizer, key, num_steps=NUM_STEPS, batch_fn=batch_fn,
              run_dir=run_dir, chunk_size=CHUNK, progress=False)
  assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("bad_loss, match", [
    (lambda p, b: jnp.ones(3), "scalar loss"),
    (lambda p, b: (jnp.float32(0), {"a": jnp.ones(2)}), r"aux\['a'\]"),
    (lambda p, b: (jnp.float32(0), {"loss": jnp.float32(1)}), "reserved"),
    (lambda p, b: (jnp.float32(0), 3), "aux"),
])
def test_fit_rejects_bad_loss_outputs(bad_loss, match):
  params, optimizer, _, batch_fn, key = _train_script.make_problem()
  with pytest.raises((TypeError, ValueError), match=match):
    train.fit(bad_loss, params, optimizer, key, num_steps=10, batch_fn=batch_fn,
              chunk_size=5, progress=False)


def test_history_and_log_agree_json_roundtrip(tmp_path):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=6)
  _, history = train.fit(loss_fn, params, optimizer, key, num_steps=30,
                         batch_fn=batch_fn, run_dir=tmp_path, chunk_size=10,
                         progress=False)
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 3
  parsed = [json.loads(line) for line in lines]
  # Floats survive the JSON round trip exactly.
  assert [r["grad_norm"] for r in parsed] == history["grad_norm"].tolist()
