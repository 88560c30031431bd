"""Tests of meshes and batch sharding on the four virtual CPU devices of conftest.py."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np
import pytest

from entropylab.runner import devices
from entropylab.runner import train
from tests.runner import _train_script

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 4, "conftest.py should give four CPU devices"
  return devices.make_mesh()


def test_make_mesh_spans_all_devices(mesh):
  assert mesh.axis_names == ("batch",)
  assert dict(mesh.shape) == {"batch": 4}
  assert set(mesh.devices.ravel()) == set(jax.devices())
  sub = devices.make_mesh("data", jax.devices()[:2])
  assert dict(sub.shape) == {"data": 2}


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(devices=[]), ValueError, "devices"),
    (dict(axis_name=""), ValueError, "axis_name"),
    (dict(axis_name=3), TypeError, "axis_name"),
    (dict(devices=["cpu"]), TypeError, "devices"),
])
def test_make_mesh_rejects_bad_arguments(kwargs, exc, name):
  with pytest.raises(exc, match=name):
    devices.make_mesh(**kwargs)


def test_make_mesh_rejects_repeated_devices():
  d = jax.devices()[0]
  with pytest.raises(ValueError, match="devices"):
    devices.make_mesh(devices=[d, d])


def test_sharded_computation_matches_single_device(mesh):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 8)).astype(np.float32)
  w = rng.normal(size=(8, 5)).astype(np.float32)
  xs = devices.shard_batch(x, mesh)

  assert xs.sharding == NamedSharding(mesh, PartitionSpec("batch"))
  shards = xs.addressable_shards
  assert len(shards) == 4 and len({s.device for s in shards}) == 4
  assert all(s.data.shape == (4, 8) for s in shards)
  ordered = sorted(shards, key=lambda s: s.index[0].start)
  np.testing.assert_array_equal(np.concatenate([np.asarray(s.data) for s in ordered]), x)

  wr = devices.replicate(w, mesh)
  assert all(s.data.shape == (8, 5) for s in wr.addressable_shards)
  assert len(wr.sharding.device_set) == 4

  y = jax.jit(lambda a, b: jnp.tanh(a @ b))(xs, wr)
  assert len(y.sharding.device_set) == 4
  assert {s.data.shape for s in y.addressable_shards} == {(4, 5)}
  np.testing.assert_allclose(np.asarray(y), np.tanh(x @ w), rtol=1e-5, atol=1e-6)

  total = jax.jit(lambda a: jnp.sum(a ** 2))(xs)
  single = jax.jit(lambda a: jnp.sum(a ** 2))(jax.device_put(x, jax.devices()[0]))
  np.testing.assert_allclose(float(total), float(single), rtol=1e-6)
  np.testing.assert_allclose(float(total), float(np.sum(x.astype(np.float64) ** 2)),
                             rtol=1e-5)


def test_shard_batch_pytree_and_errors(mesh):
  batch = {"x": np.zeros((8, 2)), "y": np.zeros((8,))}
  out = devices.shard_batch(batch, mesh)
  assert all(len(v.addressable_shards) == 4 for v in out.values())
  with pytest.raises(ValueError, match=r"x\['y'\].*leading size 6"):
    devices.shard_batch({"x": np.zeros((8, 2)), "y": np.zeros((6,))}, mesh)
  with pytest.raises(ValueError, match="scalar"):
    devices.shard_batch(np.float32(1.0), mesh)
  with pytest.raises(ValueError, match="axis_name"):
    devices.shard_batch(batch, mesh, axis_name="model")
  with pytest.raises(TypeError, match="mesh"):
    devices.shard_batch(batch, None)


def test_fit_with_mesh_matches_fit_without(mesh):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=11)
  plain, plain_hist = train.fit(loss_fn, params, optimizer, key, num_steps=60,
                                batch_fn=batch_fn, chunk_size=20, progress=False)
  sharded, sharded_hist = train.fit(loss_fn, params, optimizer, key, num_steps=60,
                                    batch_fn=batch_fn, chunk_size=20, progress=False,
                                    mesh=mesh)
  for leaf in jax.tree.leaves(sharded.params):
    assert leaf.sharding.is_fully_replicated
    assert len(leaf.sharding.device_set) == 4
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), plain.params, params)
  assert max(jax.tree.leaves(moved)) > 1e-2  # training did change the parameters
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(sharded.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(plain_hist["loss"], sharded_hist["loss"], rtol=1e-4)


def test_fit_with_mesh_rejects_indivisible_batch(mesh):
  params, optimizer, loss_fn, _, key = _train_script.make_problem()

  def batch_fn(k, step):
    x = jax.random.uniform(k, (30, 1))
    return x, jnp.sin(x)

  with pytest.raises(ValueError, match="leading size 30"):
    train.fit(loss_fn, params, optimizer, key, num_steps=10, batch_fn=batch_fn,
              chunk_size=5, progress=False, mesh=mesh)


def test_mesh_checkpoint_restores_in_fresh_single_device_process(mesh, tmp_path):
  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=0)
  state, _ = train.fit(loss_fn, params, optimizer, key, num_steps=40,
                       batch_fn=batch_fn, run_dir=tmp_path / "run", chunk_size=20,
                       progress=False, mesh=mesh)
  # Resuming in this process restores onto the same replicated sharding.
  again, history = train.fit(loss_fn, params, optimizer, key, num_steps=40,
                             batch_fn=batch_fn, run_dir=tmp_path / "run", chunk_size=20,
                             progress=False, mesh=mesh, resume=True)
  assert history["step"].size == 0
  for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(state.params)):
    assert a.sharding.is_fully_replicated and len(a.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  out = tmp_path / "restored.npz"
  proc = subprocess.run(
      [sys.executable, _train_script.__file__, "restore", str(tmp_path / "run"), str(out)],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with np.load(out) as f:
    assert int(f["__step__"]) == 40
    assert int(f["__devices__"]) == 1
    for name, value in _train_script.flat_params(state.params).items():
      np.testing.assert_array_equal(f[name], value)


def test_commit_lets_a_restored_state_reuse_the_compiled_program(tmp_path, mesh):
  """A jitted function's output is uncommitted and a restored checkpoint is committed,
  which jit compiles for separately; after ``commit`` the fresh state and the restored
  one share one compiled program. Values, key leaves and sharded leaves are unchanged."""
  from jax import monitoring
  from entropylab.runner import checkpoint
  fresh = jax.jit(lambda k: {"w": jnp.arange(3.0) * 2, "key": k})(jax.random.key(0))
  sharded = devices.replicate(jnp.ones(4), mesh)
  committed = devices.commit({**fresh, "sharded": sharded})
  assert committed["sharded"] is sharded
  np.testing.assert_array_equal(committed["w"], fresh["w"])
  np.testing.assert_array_equal(jax.random.key_data(committed["key"]),
                                jax.random.key_data(fresh["key"]))
  checkpoint.save(tmp_path, 1, fresh)
  _, restored = checkpoint.restore(tmp_path, fresh)
  compiles = []
  listener = lambda name, secs, **kw: compiles.append(name)
  monitoring.register_event_duration_secs_listener(listener)
  try:
    def count(fn, tree):
      before = compiles.count("/jax/core/compile/backend_compile_duration")
      jax.block_until_ready(fn(tree))
      return compiles.count("/jax/core/compile/backend_compile_duration") - before
    total = lambda t: t["w"].sum() + jax.random.key_data(t["key"]).sum()
    # Without commit: the restored state compiles a second program (the cost removed).
    plain = jax.jit(lambda t: total(t))
    assert [count(plain, fresh), count(plain, restored)] == [1, 1]
    same = jax.jit(lambda t: total(t))
    committed.pop("sharded")
    assert [count(same, committed), count(same, restored)] == [1, 0]
  finally:
    monitoring.unregister_event_duration_listener(listener)
