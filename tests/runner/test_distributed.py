"""Two local processes form one JAX cluster on loopback and reduce across processes."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from entropylab.runner import checkpoint
from entropylab.runner import devices
from entropylab.runner import train
from entropylab.runner.rundir import RunDir
from tests.runner import _distributed_worker
from tests.runner import _train_script

REPO = pathlib.Path(__file__).resolve().parents[2]
WORKER = pathlib.Path(__file__).resolve().parent / "_distributed_worker.py"
TIMEOUT_S = 90


def _free_loopback_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _result(out_dir, process_id, output):
  path = out_dir / f"result_{process_id}.json"
  assert path.exists(), output
  return json.loads(path.read_text())


def test_two_process_cluster_reduces_and_trains(tmp_path):
  address = f"127.0.0.1:{_free_loopback_port()}"
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  procs = [subprocess.Popen([sys.executable, str(WORKER), address, "2", str(i),
                             str(tmp_path)],
                            env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [None, None]
  try:
    for i, p in enumerate(procs):
      outputs[i], _ = p.communicate(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    for p in procs:
      if p.poll() is None:
        p.kill()
    for i, p in enumerate(procs):
      rest, _ = p.communicate()
      outputs[i] = (outputs[i] or "") + (rest or "")
    pytest.fail(f"cluster did not finish in {TIMEOUT_S} s:\n" + "\n---\n".join(outputs))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()

  for i, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {i} failed:\n{out}"
  results = [_result(tmp_path, i, out) for i, out in enumerate(outputs)]
  # Each process put (process_id + 1) into a 2x3 block: 6 * 1 + 6 * 2 = 18.
  for i, r in enumerate(results):
    assert r["process_id"] == r["process_index"] == i
    assert r["process_count"] == 2
    assert r["global_devices"] == 4 and r["local_devices"] == 2
    assert r["batch_shape"] == [4, 3] and r["batch_shards"] == 4
    assert r["total"] == 18.0
    assert r["gathered"] == [1.0, 2.0]

  # fit across the two processes: both end with the same parameters, which match a
  # single-process run to float tolerance, and the checkpoint the cluster wrote
  # restores here, on one process with a different device count.
  got = [dict(np.load(tmp_path / f"params_{i}.npz")) for i in range(2)]
  for name in got[0]:
    np.testing.assert_array_equal(got[0][name], got[1][name])
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=0)
  state, _ = train.fit(loss_fn, params, optimizer, key,
                       num_steps=_distributed_worker.FIT_STEPS, batch_fn=batch_fn,
                       chunk_size=_distributed_worker.FIT_CHUNK, progress=False)
  single = _train_script.flat_params(state.params)
  for name, value in single.items():
    np.testing.assert_allclose(got[0][name], value, rtol=1e-5, atol=1e-5)
  step, restored = checkpoint.restore(tmp_path / "run" / "checkpoints",
                                      train.init_state(params, optimizer, key))
  assert step == _distributed_worker.FIT_STEPS
  for name, value in _train_script.flat_params(restored.params).items():
    np.testing.assert_array_equal(value, got[0][name])
  # Only process 0 logs metrics: one record per chunk.
  records = list(RunDir(tmp_path / "run").metrics.records())
  assert [r["step"] for r in records] == [20, 40]


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(coordinator_address="nohostport"), ValueError, "coordinator_address"),
    (dict(coordinator_address="127.0.0.1:99999"), ValueError, "coordinator_address"),
    (dict(num_processes=0), ValueError, "num_processes"),
    (dict(num_processes=2, process_id=2), ValueError, "process_id"),
    (dict(process_id=-1), ValueError, "process_id"),
    (dict(num_processes="2"), TypeError, "num_processes"),
])
def test_initialize_distributed_rejects_bad_arguments(kwargs, exc, name):
  with pytest.raises(exc, match=name):
    devices.initialize_distributed(**kwargs)
