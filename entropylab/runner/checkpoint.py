"""Orbax checkpoints of a pytree, with a sha256 manifest written last.

Layout of a checkpoint directory::

    ckpt_dir/
      200/                 orbax checkpoint of step 200 (any files orbax writes)
      200.sha256.json      manifest: sha256 and size of every file under 200/
      300/
      300.sha256.json

A step counts as complete only when its manifest exists, parses, and matches the files
byte for byte. The manifest is written atomically (temporary file, fsync, rename)
after orbax has finished, so a process killed at any point leaves either a complete
checkpoint or one that :func:`latest_valid` and :func:`restore` skip with a
:class:`CheckpointWarning`, falling back to the next older step.

PRNG key arrays (``jax.random.key``) are stored as their raw key data and rebuilt with
the target's key implementation on restore. Restoring needs a *target* pytree (real
arrays or ``jax.ShapeDtypeStruct``) giving structure, shapes, dtypes and, for
``jax.Array`` leaves, the sharding to restore onto; leaves without a sharding go to the
first local device. A checkpoint written on several devices therefore restores in a
fresh single-CPU process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

MANIFEST_SUFFIX = ".sha256.json"
_MANIFEST_FORMAT = "entropylab-checkpoint-manifest/1"
_STEP_RE = re.compile(r"^(\d+)$")
_MANIFEST_RE = re.compile(r"^(\d+)" + re.escape(MANIFEST_SUFFIX) + r"$")


class CheckpointWarning(UserWarning):
  """A checkpoint step was skipped because it is incomplete or corrupt."""


class CheckpointError(Exception):
  """Raised by :func:`verify` when a checkpoint step fails its integrity check."""


class CheckpointMismatchError(ValueError):
  """An intact checkpoint does not match the target's structure, shapes or dtypes.

  :func:`restore` does not fall back past such a step: the checkpoints belong to a
  different model or config, and resuming would silently start over and then prune them.
  """


def _check_ckpt_dir(ckpt_dir: Any) -> pathlib.Path:
  if not isinstance(ckpt_dir, (str, os.PathLike)):
    raise TypeError(f"ckpt_dir must be a path, got {type(ckpt_dir).__name__}")
  return pathlib.Path(ckpt_dir).absolute()  # orbax needs absolute paths


def _check_step(step: Any) -> int:
  is_int = isinstance(step, (int, np.integer)) or (
      np.ndim(step) == 0 and hasattr(step, "dtype")
      and jnp.issubdtype(step.dtype, jnp.integer))
  if isinstance(step, bool) or not is_int:
    raise TypeError(f"step must be an integer scalar, got {step!r}")
  step = int(step)
  if step < 0:
    raise ValueError(f"step must be >= 0, got {step}")
  return step


def step_path(ckpt_dir: os.PathLike, step: int) -> pathlib.Path:
  """Directory holding the orbax files of ``step``."""
  return pathlib.Path(ckpt_dir) / str(int(step))


def manifest_path(ckpt_dir: os.PathLike, step: int) -> pathlib.Path:
  """Path of the manifest of ``step`` (beside, not inside, the step directory)."""
  return pathlib.Path(ckpt_dir) / f"{int(step)}{MANIFEST_SUFFIX}"


def all_steps(ckpt_dir: os.PathLike) -> list[int]:
  """Every step with a step directory or a manifest in ``ckpt_dir``, ascending.

  Args:
    ckpt_dir: path of the checkpoint directory; need not exist.

  Returns:
    Sorted list of ``int`` steps, complete or not.
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  if not ckpt_dir.is_dir():
    return []
  steps = set()
  for entry in ckpt_dir.iterdir():
    m = _STEP_RE.match(entry.name)
    if m and entry.is_dir():
      steps.add(int(m.group(1)))
      continue
    m = _MANIFEST_RE.match(entry.name)
    if m and entry.is_file():
      steps.add(int(m.group(1)))
  return sorted(steps)


def _sha256(path: pathlib.Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _files(root: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for dirpath, _, filenames in os.walk(root):
    for name in filenames:
      p = pathlib.Path(dirpath) / name
      out[p.relative_to(root).as_posix()] = p
  return out


def _fsync_dir(path: pathlib.Path) -> None:
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def _write_manifest(ckpt_dir: pathlib.Path, step: int) -> None:
  root = step_path(ckpt_dir, step)
  files = {rel: {"sha256": _sha256(p), "size": p.stat().st_size}
           for rel, p in sorted(_files(root).items())}
  if not files:
    raise RuntimeError(f"orbax wrote no files for step {step} under {root}")
  body = json.dumps({"format": _MANIFEST_FORMAT, "step": step, "files": files},
                    indent=1, sort_keys=True) + "\n"
  final = manifest_path(ckpt_dir, step)
  tmp = final.with_name(final.name + ".tmp")
  with open(tmp, "w") as f:
    f.write(body)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, final)
  _fsync_dir(ckpt_dir)


def verify(ckpt_dir: os.PathLike, step: int) -> None:
  """Checks that ``step`` has a well-formed manifest matching its files exactly.

  Args:
    ckpt_dir: path of the checkpoint directory.
    step: ``int >= 0``.

  Raises:
    CheckpointError: with the reason (missing or unreadable manifest, missing, extra,
      resized or altered file).
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  step = _check_step(step)
  mpath = manifest_path(ckpt_dir, step)
  root = step_path(ckpt_dir, step)
  if not mpath.is_file():
    raise CheckpointError("manifest missing (checkpoint incomplete)")
  try:
    manifest = json.loads(mpath.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"manifest unreadable ({e})") from e
  if (not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT
      or manifest.get("step") != step or not isinstance(manifest.get("files"), dict)
      or not manifest["files"]):
    raise CheckpointError("manifest malformed")
  if not root.is_dir():
    raise CheckpointError(f"step directory {root} missing")
  expected = manifest["files"]
  present = _files(root)
  missing = sorted(set(expected) - set(present))
  if missing:
    raise CheckpointError(f"file {missing[0]!r} missing")
  extra = sorted(set(present) - set(expected))
  if extra:
    raise CheckpointError(f"file {extra[0]!r} not in manifest")
  for rel, entry in sorted(expected.items()):
    if not isinstance(entry, dict):
      raise CheckpointError("manifest malformed")
    size = present[rel].stat().st_size
    if size != entry.get("size"):
      raise CheckpointError(f"file {rel!r} has {size} bytes, manifest says "
                            f"{entry.get('size')} (truncated or altered)")
    if _sha256(present[rel]) != entry.get("sha256"):
      raise CheckpointError(f"file {rel!r} sha256 mismatch")


def _is_key(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _to_storable(x: Any) -> Any:
  if _is_key(x):
    return jax.random.key_data(x)
  if isinstance(x, jax.Array):
    return x
  return np.asarray(x)


def _abstract_leaf(x: Any) -> jax.ShapeDtypeStruct:
  """Restore target of one leaf: its stored shape/dtype and where to place it."""
  if _is_key(x):
    data = jax.eval_shape(jax.random.key_data, x)
    shape, dtype, sharding = data.shape, data.dtype, getattr(x, "sharding", None)
  elif isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
    shape, dtype, sharding = x.shape, x.dtype, x.sharding
  else:
    arr = np.asarray(x)  # restored as a jax.Array, so with JAX's canonical dtype
    shape, dtype, sharding = arr.shape, jax.dtypes.canonicalize_dtype(arr.dtype), None
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)


def _key_impl(x: Any) -> Any:
  """The PRNG implementation of a key array or of an abstract key."""
  if isinstance(x, jax.Array):
    return jax.random.key_impl(x)
  found = []
  jax.eval_shape(lambda k: found.append(jax.random.key_impl(k)), x)
  return found[0]


def _from_storable(restored: Any, target: Any) -> Any:
  if _is_key(target):
    return jax.random.wrap_key_data(restored, impl=_key_impl(target))
  return restored


def save(ckpt_dir: os.PathLike, step: int, state: Any, keep: int = 3) -> pathlib.Path:
  """Saves ``state`` as checkpoint ``step`` and prunes old checkpoints.

  Any existing files for ``step`` are replaced, and any checkpoint of a *later* step is
  deleted (it belongs to an abandoned run that was resumed from an earlier step).
  After the new manifest is written, only the newest ``keep`` complete steps are kept;
  older steps and incomplete leftovers are deleted.

  In a multi-process run every process must call this (orbax saves collectively);
  process 0 writes the manifest and prunes, so ``ckpt_dir`` must be shared.

  Args:
    ckpt_dir: path of the checkpoint directory (created if missing).
    step: ``int >= 0``, the training step the state belongs to.
    state: pytree of arrays (``jax.Array``, numpy arrays, scalars, PRNG keys).
    keep: ``int >= 1``, number of complete checkpoints to keep.

  Returns:
    The step directory ``ckpt_dir/<step>``.

  Raises:
    TypeError, ValueError: for a bad ``ckpt_dir``, ``step`` or ``keep``.
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  step = _check_step(step)
  if isinstance(keep, bool) or not isinstance(keep, int):
    raise TypeError(f"keep must be an int, got {type(keep).__name__}")
  if keep < 1:
    raise ValueError(f"keep must be >= 1, got {keep}")
  storable = jax.tree.map(_to_storable, state)
  primary = jax.process_index() == 0

  if primary:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for s in all_steps(ckpt_dir):
      if s >= step:
        _delete_step(ckpt_dir, s)
    for entry in ckpt_dir.iterdir():  # leftovers of a save that was killed
      if not _STEP_RE.match(entry.name.split(".")[0]):
        continue
      if ".orbax-checkpoint-tmp" in entry.name:
        shutil.rmtree(entry, ignore_errors=True)
      elif entry.name.endswith(MANIFEST_SUFFIX + ".tmp"):
        entry.unlink()
  _sync(f"entropylab_ckpt_pre_{step}")

  checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
  try:
    checkpointer.save(step_path(ckpt_dir, step), args=ocp.args.StandardSave(storable))
  finally:
    checkpointer.close()

  if primary:
    _write_manifest(ckpt_dir, step)
    complete = [s for s in all_steps(ckpt_dir) if manifest_path(ckpt_dir, s).is_file()]
    kept = set(complete[-keep:])
    for s in all_steps(ckpt_dir):
      if s not in kept:
        _delete_step(ckpt_dir, s)
  _sync(f"entropylab_ckpt_post_{step}")
  return step_path(ckpt_dir, step)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _delete_step(ckpt_dir: pathlib.Path, step: int) -> None:
  """Removes the manifest first, so a half-deleted step is never 'complete'."""
  mpath = manifest_path(ckpt_dir, step)
  if mpath.exists():
    mpath.unlink()
  shutil.rmtree(step_path(ckpt_dir, step), ignore_errors=True)


def _warn_skip(ckpt_dir: pathlib.Path, step: int, reason: str) -> None:
  warnings.warn(f"checkpoint step {step} in {ckpt_dir} is unusable: {reason}; "
                f"falling back to an older step", CheckpointWarning, stacklevel=3)


def latest_valid(ckpt_dir: os.PathLike) -> Optional[int]:
  """Newest step whose manifest verifies (files only; nothing is deserialized).

  Steps that fail :func:`verify` are reported with a :class:`CheckpointWarning`.

  Args:
    ckpt_dir: path of the checkpoint directory; need not exist.

  Returns:
    The step as an ``int``, or None when no step verifies.
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  for step in reversed(all_steps(ckpt_dir)):
    try:
      verify(ckpt_dir, step)
    except CheckpointError as e:
      _warn_skip(ckpt_dir, step, str(e))
      continue
    return step
  return None


def _key_name(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _named_leaves(tree: Any) -> dict[tuple[str, ...], Any]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {tuple(_key_name(e) for e in path): leaf for path, leaf in leaves}


def _check_against_metadata(metadata: Any, abstract: Any) -> None:
  """Compares stored shapes/dtypes with the target's before reading any array.

  Orbax stores named tuples as dicts, so leaves are matched by their key names.
  """
  item = getattr(metadata, "item_metadata", metadata)
  stored = _named_leaves(getattr(item, "tree", item))
  wanted = _named_leaves(abstract)
  if not stored:
    raise CheckpointError("stored tree metadata unreadable or empty")
  missing = sorted(set(wanted) - set(stored))
  if missing:
    raise CheckpointMismatchError(f"target leaf {'/'.join(missing[0])} is not in the checkpoint")
  for name, target in wanted.items():
    meta = stored[name]
    shape, dtype = getattr(meta, "shape", None), getattr(meta, "dtype", None)
    if shape is not None and tuple(shape) != tuple(target.shape):
      raise CheckpointMismatchError(f"leaf {'/'.join(name)}: stored shape {tuple(shape)} but target "
                       f"shape {tuple(target.shape)}")
    if dtype is not None and np.dtype(dtype) != np.dtype(target.dtype):
      raise CheckpointMismatchError(f"leaf {'/'.join(name)}: stored dtype {np.dtype(dtype)} but "
                       f"target dtype {np.dtype(target.dtype)}")


def _check_restored(restored: Any, target: Any) -> None:
  r_leaves, r_def = jax.tree.flatten(restored)
  t_leaves, t_def = jax.tree.flatten(target)
  if r_def != t_def:
    raise CheckpointMismatchError(f"restored tree structure {r_def} differs from target {t_def}")
  for i, (r, t) in enumerate(zip(r_leaves, t_leaves)):
    if r.shape != t.shape or r.dtype != t.dtype:
      raise CheckpointMismatchError(f"leaf {i}: restored {r.dtype}{list(r.shape)} but target is "
                       f"{t.dtype}{list(t.shape)}")


def restore_step(ckpt_dir: os.PathLike, step: int, target_state: Any) -> Any:
  """Verifies and restores one given step, raising on any failure.

  Args:
    ckpt_dir: path of the checkpoint directory.
    step: ``int >= 0``.
    target_state: pytree like the saved state (arrays or ``jax.ShapeDtypeStruct``).

  Returns:
    The restored pytree, with the target's structure, shapes, dtypes and shardings.

  Raises:
    CheckpointError: if the manifest check fails.
    Exception: whatever orbax raises, or ValueError on a shape/dtype mismatch.
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  step = _check_step(step)
  verify(ckpt_dir, step)
  abstract = jax.tree.map(_abstract_leaf, target_state)
  checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
  try:
    _check_against_metadata(checkpointer.metadata(step_path(ckpt_dir, step)), abstract)
    raw = checkpointer.restore(step_path(ckpt_dir, step),
                               args=ocp.args.StandardRestore(abstract))
  finally:
    checkpointer.close()
  _check_restored(raw, abstract)
  return jax.tree.map(_from_storable, raw, target_state)


def restore(ckpt_dir: os.PathLike, target_state: Any) -> Optional[tuple[int, Any]]:
  """Restores the newest checkpoint that verifies and deserializes.

  Walks the steps from newest to oldest; a step with a missing or torn manifest, a
  hash or size mismatch, or one orbax cannot restore into ``target_state`` is skipped
  with a :class:`CheckpointWarning` naming the step and the reason. An intact step
  whose shapes/dtypes/structure differ from ``target_state`` raises
  :class:`CheckpointMismatchError` instead (a different model, not corruption).

  Args:
    ckpt_dir: path of the checkpoint directory; need not exist.
    target_state: pytree like the saved state (arrays or ``jax.ShapeDtypeStruct``),
      giving structure, shapes, dtypes and shardings of the result.

  Returns:
    ``(step, state)`` or None when no step can be restored.
  """
  ckpt_dir = _check_ckpt_dir(ckpt_dir)
  for step in reversed(all_steps(ckpt_dir)):
    try:
      state = restore_step(ckpt_dir, step, target_state)
    except CheckpointError as e:
      _warn_skip(ckpt_dir, step, str(e))
      continue
    except CheckpointMismatchError as e:
      raise CheckpointMismatchError(
          f"checkpoint step {step} in {ckpt_dir} passed its integrity check but does not "
          f"match the target: {e}; refusing to resume a different model") from None
    except Exception as e:  # pylint: disable=broad-except
      _warn_skip(ckpt_dir, step, f"restore failed ({type(e).__name__}: {e})")
      continue
    return step, state
  return None
