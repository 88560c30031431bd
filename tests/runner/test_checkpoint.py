"""Tests of the orbax checkpoint helpers: round trip, pruning, integrity fallbacks."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.runner import checkpoint


class _Inner(NamedTuple):
  count: Any
  table: Any


def _state(offset=0.0):
  return {
      "w": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) + offset,
      "half": jnp.linspace(0, 1, 5).astype(jnp.bfloat16),
      "small": np.arange(4, dtype=np.int8),
      "typed_key": jax.random.key(7),
      "raw_key": jax.random.PRNGKey(8),
      "inner": _Inner(count=jnp.int32(3), table=jnp.ones((2, 2))),
  }


def test_round_trip_preserves_values_dtypes_and_keys(tmp_path):
  state = _state(1.5)
  checkpoint.save(tmp_path, 5, state)
  template = _state()
  step, restored = checkpoint.restore(tmp_path, template)
  assert step == 5
  assert jax.tree.structure(restored) == jax.tree.structure(template)
  for name in ("w", "half", "small", "raw_key"):
    assert restored[name].dtype == jnp.asarray(state[name]).dtype
    np.testing.assert_array_equal(np.asarray(restored[name]), np.asarray(state[name]))
  assert isinstance(restored["inner"], _Inner)
  assert int(restored["inner"].count) == 3
  assert jnp.issubdtype(restored["typed_key"].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(restored["typed_key"]),
                                jax.random.key_data(state["typed_key"]))
  # The restored key draws the same numbers.
  np.testing.assert_array_equal(jax.random.normal(restored["typed_key"], (3,)),
                                jax.random.normal(state["typed_key"], (3,)))


def test_keep_prunes_oldest(tmp_path):
  for step in range(6):
    checkpoint.save(tmp_path, step * 10, _state(step), keep=2)
  assert checkpoint.all_steps(tmp_path) == [40, 50]
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["40", "40.sha256.json", "50", "50.sha256.json"]
  step, restored = checkpoint.restore(tmp_path, _state())
  assert step == 50
  np.testing.assert_array_equal(restored["w"], _state(5)["w"])


def test_saving_an_earlier_step_drops_the_abandoned_later_ones(tmp_path):
  for step in (10, 20, 30):
    checkpoint.save(tmp_path, step, _state(step))
  checkpoint.save(tmp_path, 20, _state(-1.0))
  assert checkpoint.all_steps(tmp_path) == [10, 20]
  step, restored = checkpoint.restore(tmp_path, _state())
  assert step == 20
  np.testing.assert_array_equal(restored["w"], _state(-1.0)["w"])


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
  checkpoint.save(tmp_path, 10, _state())
  (tmp_path / "20.orbax-checkpoint-tmp-1234").mkdir()
  (tmp_path / "15").mkdir()
  (tmp_path / "15" / "partial").write_bytes(b"x")
  (tmp_path / "25.sha256.json.tmp").write_text("{")
  checkpoint.save(tmp_path, 30, _state())
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "10", "10.sha256.json", "30", "30.sha256.json"]


def test_checkpoint_without_manifest_is_incomplete(tmp_path, monkeypatch):
  checkpoint.save(tmp_path, 1, _state(1.0))

  def killed(*args, **kwargs):
    raise KeyboardInterrupt("killed before the manifest")

  monkeypatch.setattr(checkpoint, "_write_manifest", killed)
  with pytest.raises(KeyboardInterrupt):
    checkpoint.save(tmp_path, 2, _state(2.0))
  assert (tmp_path / "2").is_dir()
  with pytest.warns(checkpoint.CheckpointWarning, match="step 2 .*manifest missing"):
    assert checkpoint.latest_valid(tmp_path) == 1
  with pytest.warns(checkpoint.CheckpointWarning, match="step 2"):
    step, restored = checkpoint.restore(tmp_path, _state())
  assert step == 1
  np.testing.assert_array_equal(restored["w"], _state(1.0)["w"])


def test_nothing_to_restore(tmp_path):
  assert checkpoint.latest_valid(tmp_path / "missing") is None
  assert checkpoint.restore(tmp_path / "missing", _state()) is None
  assert checkpoint.all_steps(tmp_path) == []


def test_mismatched_target_raises_instead_of_starting_over(tmp_path):
  # Intact checkpoints of a different model must not be skipped (a resumed run would
  # start at step 0 and its first save would prune them).
  checkpoint.save(tmp_path, 1, _state())
  checkpoint.save(tmp_path, 2, _state())
  target = _state()
  target["w"] = jnp.zeros((4, 4), jnp.float32)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="step 2 .*shape"):
    checkpoint.restore(tmp_path, target)
  assert checkpoint.all_steps(tmp_path) == [1, 2]


def test_restore_into_abstract_target(tmp_path):
  state = _state(3.0)
  checkpoint.save(tmp_path, 4, state)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype), state)
  abstract["typed_key"] = jax.eval_shape(lambda: jax.random.key(0))
  step, restored = checkpoint.restore(tmp_path, abstract)
  assert step == 4
  np.testing.assert_array_equal(restored["w"], state["w"])


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(step=-1), ValueError, "step"),
    (dict(step=1.5), TypeError, "step"),
    (dict(step=True), TypeError, "step"),
    (dict(keep=0), ValueError, "keep"),
    (dict(ckpt_dir=3), TypeError, "ckpt_dir"),
])
def test_save_rejects_bad_arguments(kwargs, exc, name, tmp_path):
  args = dict(ckpt_dir=tmp_path / "ck", step=1, state=_state(), keep=3)
  args.update(kwargs)
  with pytest.raises(exc, match=name):
    checkpoint.save(**args)
  assert not (tmp_path / "ck").exists()
