"""The generic jitted training loop: optax updates in ``lax.scan`` chunks, with resume.

:func:`fit` runs ``num_steps`` optimizer steps of a loss. Steps are grouped in chunks
of ``chunk_size``; one jitted function runs a whole chunk with ``jax.lax.scan`` and
returns the per-step metrics, and between chunks Python logs the chunk means to the run
directory's ``metrics.jsonl``, advances a progress bar and saves orbax checkpoints.

Data come from ``batch_fn(key, step)``, a pure function of a key derived from the
state's base key and the global step (``jax.random.fold_in(state.key, step)``), so a
run killed and resumed from a checkpoint computes exactly the same steps, and ends with
bit-identical parameters, as one that was never interrupted.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np
import optax
import tqdm.auto as tqdm_auto

from entropylab.runner import checkpoint
from entropylab.runner import devices
from entropylab.runner.rundir import RunDir

_RESERVED_METRICS = ("step", "loss", "grad_norm")


class TrainState(NamedTuple):
  """Everything a training run needs to continue.

  Attributes:
    step: int32 scalar, number of optimizer updates applied so far.
    params: pytree of parameters.
    opt_state: the optax optimizer state for ``params``.
    key: base PRNG key of the run (never advanced; step ``t`` uses
      ``jax.random.fold_in(key, t)``). Raw ``uint32`` or typed key.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  key: jax.Array


def _check_key(key: Any) -> None:
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if np.ndim(key) != 0:
      raise ValueError(f"key must be a single PRNG key, got a key array of shape "
                       f"{np.shape(key)}")
    return
  if dtype is None or dtype != np.uint32 or np.ndim(key) != 1:
    raise TypeError("key must be a PRNG key (jax.random.key(...) or "
                    f"jax.random.PRNGKey(...)), got {type(key).__name__} "
                    f"{getattr(key, 'dtype', '')}{list(np.shape(key))}")


def _check_optimizer(optimizer: Any) -> None:
  if not (callable(getattr(optimizer, "init", None))
          and callable(getattr(optimizer, "update", None))):
    raise TypeError("optimizer must be an optax.GradientTransformation "
                    f"(with init and update), got {type(optimizer).__name__}")


def init_state(params: Any, optimizer: optax.GradientTransformation,
               key: jax.Array) -> TrainState:
  """Builds the step-0 state; every leaf is a fresh buffer (safe to donate).

  Args:
    params: pytree of arrays.
    optimizer: an ``optax.GradientTransformation``.
    key: PRNG key, ``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``.

  Returns:
    ``TrainState(step=0, params, optimizer.init(params), key)``; the caller's
    ``params`` are copied, never aliased.
  """
  _check_optimizer(optimizer)
  _check_key(key)

  def build(p, k):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p,
                      opt_state=optimizer.init(p), key=k)

  # One compilation instead of many eager ops; the copy keeps jit's forwarding of
  # unchanged inputs from aliasing the caller's arrays (the state gets donated).
  return jax.device_put(jax.jit(build)(params, key), may_alias=False)


def _split_loss_output(out: Any) -> tuple[jax.Array, dict]:
  """Normalizes ``loss`` or ``(loss, aux)`` and checks shapes (at trace time)."""
  if isinstance(out, tuple):
    if len(out) != 2:
      raise TypeError("loss_fn must return a scalar loss or a (loss, aux) pair, got a "
                      f"tuple of length {len(out)}")
    loss, aux = out
  else:
    loss, aux = out, None
  aux = {} if aux is None else aux
  if not isinstance(aux, Mapping):
    raise TypeError(f"loss_fn's aux must be a dict of scalars, got {type(aux).__name__}")
  loss = jnp.asarray(loss)
  if loss.shape != ():
    raise TypeError(f"loss_fn must return a scalar loss, got shape {loss.shape}")
  aux = dict(aux)
  for name, value in aux.items():
    if not isinstance(name, str):
      raise TypeError(f"loss_fn's aux keys must be str, got {name!r}")
    if name in _RESERVED_METRICS:
      raise ValueError(f"loss_fn's aux uses the reserved metric name {name!r}")
    if np.shape(value) != ():
      raise TypeError(f"loss_fn's aux[{name!r}] must be a scalar, got shape "
                      f"{np.shape(value)}")
  return loss, aux


def _train_chunk(state: TrainState, num_steps: int, loss_fn: Callable[..., Any],
                 optimizer: optax.GradientTransformation,
                 batch_fn: Callable[[jax.Array, jax.Array], Any],
                 mesh: Optional[Mesh], batch_axis: str):
  """``num_steps`` optimizer steps in one ``lax.scan``; see :func:`make_train_chunk`."""

  def loss_with_aux(params, batch):
    return _split_loss_output(loss_fn(params, batch))

  grad_fn = jax.value_and_grad(loss_with_aux, has_aux=True)

  def one_step(state: TrainState, _):
    step_key = jax.random.fold_in(state.key, state.step)
    batch = batch_fn(step_key, state.step)
    if mesh is not None:
      batch = devices.constrain_batch(batch, mesh, batch_axis)
    (loss, aux), grads = grad_fn(state.params, batch)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads))
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                           key=state.key)
    return new_state, metrics

  state, metrics = jax.lax.scan(one_step, state, None, length=num_steps)
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    state = jax.lax.with_sharding_constraint(
        state, jax.tree.map(lambda _: replicated, state))
    metrics = jax.lax.with_sharding_constraint(
        metrics, jax.tree.map(lambda _: replicated, metrics))
  return state, metrics


# Everything but the state is static: jit's cache then reuses the compiled chunk
# across fit calls with the same loss_fn, optimizer and batch_fn objects.
_jitted_train_chunk = jax.jit(_train_chunk, static_argnums=(1, 2, 3, 4, 5, 6),
                              donate_argnums=0)


def make_train_chunk(loss_fn: Callable[..., Any],
                     optimizer: optax.GradientTransformation,
                     batch_fn: Callable[[jax.Array, jax.Array], Any],
                     *,
                     mesh: Optional[Mesh] = None,
                     batch_axis: str = "batch") -> Callable[[TrainState, int], Any]:
  """Returns the jitted ``chunk(state, num_steps) -> (state, metrics)``.

  Each step: ``k = fold_in(state.key, state.step)``, ``batch = batch_fn(k, state.step)``,
  gradient of ``loss_fn(params, batch)``, optax update. ``num_steps`` is static (one
  compilation per distinct chunk length); ``state`` is donated. ``loss_fn``,
  ``optimizer``, ``batch_fn`` and ``mesh`` are static too (functions compare by
  identity), so passing the same objects again reuses the compiled code; if one of
  them is unhashable, the function is compiled afresh for each call of this factory.

  Args:
    loss_fn: ``loss_fn(params, batch)`` returning a scalar loss or
      ``(loss, aux)`` with ``aux`` a dict of scalar metrics.
    optimizer: an ``optax.GradientTransformation``.
    batch_fn: ``batch_fn(key, step)`` returning a pytree batch; ``step`` is an int32
      scalar array. With a mesh, every leaf needs a leading axis divisible by the
      number of devices on ``batch_axis``.
    mesh: optional ``jax.sharding.Mesh``; the batch's leading axis is split over
      ``batch_axis`` and the state kept replicated.
    batch_axis: the mesh axis name to split batches over.

  Returns:
    A jitted function; ``metrics`` is a dict of ``[num_steps]`` arrays with keys
    ``"loss"``, ``"grad_norm"`` and the aux names.

  Raises:
    TypeError, ValueError: for a bad ``loss_fn``, ``optimizer``, ``batch_fn``,
      ``mesh`` or ``batch_axis``.
  """
  if not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
  if not callable(batch_fn):
    raise TypeError(f"batch_fn must be callable, got {type(batch_fn).__name__}")
  _check_optimizer(optimizer)
  if mesh is not None:
    devices.check_mesh_axis(mesh, batch_axis, "batch_axis")

  statics = (loss_fn, optimizer, batch_fn, mesh, batch_axis)
  try:
    hash(statics)
  except TypeError:
    # Something unhashable (say, an optimizer holding arrays): compile per call.
    jitted = jax.jit(
        lambda state, num_steps: _train_chunk(state, num_steps, *statics[:3],
                                              mesh, batch_axis),
        static_argnums=1, donate_argnums=0)
    return jitted

  def chunk(state: TrainState, num_steps: int):
    return _jitted_train_chunk(state, num_steps, *statics)

  return chunk


def _to_host(x: jax.Array) -> np.ndarray:
  """Host copy of a (replicated, when multi-process) array."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  return np.asarray(x.addressable_data(0))


def _check_pos_int(value: Any, name: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__}")
  if value < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {value}")
  return int(value)


def fit(loss_fn: Callable[..., Any],
        params: Any,
        optimizer: optax.GradientTransformation,
        key: jax.Array,
        *,
        num_steps: int,
        batch_fn: Callable[[jax.Array, jax.Array], Any],
        run_dir: Union[RunDir, str, os.PathLike, None] = None,
        chunk_size: int = 100,
        checkpoint_every: Optional[int] = None,
        keep: int = 3,
        resume: bool = False,
        progress: bool = True,
        mesh: Optional[Mesh] = None,
        batch_axis: str = "batch",
        callback: Optional[Callable[[TrainState, dict], None]] = None,
        ) -> tuple[TrainState, dict[str, np.ndarray]]:
  """Trains ``params`` for ``num_steps`` optimizer steps; checkpoints and resumes.

  Chunks end at global steps that are multiples of ``chunk_size`` (and at
  ``num_steps``). After each chunk the mean of each metric over the chunk is logged as
  one record ``{"step": <step at chunk end>, "loss": ..., "grad_norm": ..., **aux}`` in
  ``run_dir.metrics``, and ``callback(state, record)`` is called. With a ``run_dir``,
  a checkpoint of the :class:`TrainState` is then saved in ``run_dir.checkpoint_dir``
  whenever the step is a multiple of ``checkpoint_every`` and at ``num_steps`` (after
  the callback, so that a resumed run has run the callback of every checkpoint it
  starts from).

  With ``resume=True`` the newest valid checkpoint is restored (corrupt ones are
  skipped with a warning), metrics records after its step are dropped, and training
  continues from there; with no valid checkpoint it starts from step 0. The result
  equals that of an uninterrupted run with the same arguments bit for bit (on the same
  device setup). With ``resume=False`` the run directory must not hold checkpoints.

  For stochastic losses (dropout, rollouts), have ``batch_fn`` put a key in the batch.

  Args:
    loss_fn: ``loss_fn(params, batch)`` -> scalar loss, or ``(loss, aux)`` with ``aux``
      a dict of scalar metrics (names other than ``step``, ``loss``, ``grad_norm``).
    params: pytree of initial parameters (not modified, not donated).
    optimizer: an ``optax.GradientTransformation``.
    key: PRNG key of the run (``jax.random.key`` or ``jax.random.PRNGKey``).
    num_steps: ``int >= 1``, total optimizer steps (including those before a resume).
    batch_fn: ``batch_fn(key, step)`` -> pytree batch, traced inside ``jax.jit``;
      ``step`` is an int32 scalar array.
    run_dir: a :class:`RunDir`, a path, or None (no logging, no checkpoints).
    chunk_size: ``int >= 1``, steps per jitted ``lax.scan`` call.
    checkpoint_every: steps between checkpoints, a positive multiple of
      ``chunk_size``; None means every chunk. Unused without ``run_dir``.
    keep: ``int >= 1``, number of checkpoints kept.
    resume: whether to continue from the newest valid checkpoint. Needs ``run_dir``.
    progress: whether to show a tqdm progress bar (steps, rate, ETA, loss).
    mesh: optional 1-D ``jax.sharding.Mesh``: batches are split over ``batch_axis``,
      state replicated.
    batch_axis: mesh axis name for the batch.
    callback: optional ``callback(state, record)`` called on the host after each chunk,
      before its checkpoint; a callback that raises stops the run at the previous one.

  Returns:
    ``(state, history)``: the final :class:`TrainState`, and a dict of numpy arrays,
    one entry per chunk run by *this call*: ``"step"`` (int) and each metric's chunk
    mean (the full record, across resumes, is ``run_dir.metrics``).

  Raises:
    TypeError, ValueError: for bad arguments (naming the argument), before any work.
    ValueError: if a restored checkpoint is beyond ``num_steps``.
  """
  # Validate everything before doing any work.
  if not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
  if not callable(batch_fn):
    raise TypeError(f"batch_fn must be callable, got {type(batch_fn).__name__}")
  _check_optimizer(optimizer)
  _check_key(key)
  num_steps = _check_pos_int(num_steps, "num_steps")
  chunk_size = _check_pos_int(chunk_size, "chunk_size")
  keep = _check_pos_int(keep, "keep")
  if checkpoint_every is None:
    checkpoint_every = chunk_size
  checkpoint_every = _check_pos_int(checkpoint_every, "checkpoint_every")
  if checkpoint_every % chunk_size:
    raise ValueError(f"checkpoint_every ({checkpoint_every}) must be a multiple of "
                     f"chunk_size ({chunk_size})")
  if not isinstance(resume, bool):
    raise TypeError(f"resume must be a bool, got {type(resume).__name__}")
  if not isinstance(progress, bool):
    raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
  if callback is not None and not callable(callback):
    raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
  if run_dir is not None and not isinstance(run_dir, (RunDir, str, os.PathLike)):
    raise TypeError(f"run_dir must be a RunDir, a path or None, got "
                    f"{type(run_dir).__name__}")
  if resume and run_dir is None:
    raise ValueError("resume=True needs a run_dir to resume from")
  if mesh is not None:
    devices.check_mesh_axis(mesh, batch_axis, "batch_axis")
  if run_dir is not None and not isinstance(run_dir, RunDir):
    run_dir = RunDir(run_dir)
  ckpt_dir = run_dir.checkpoint_dir if run_dir is not None else None
  if run_dir is not None and not resume and checkpoint.all_steps(ckpt_dir):
    raise ValueError(f"run_dir {run_dir.path} already holds checkpoints; pass "
                     "resume=True to continue, or use a fresh run_dir")

  primary = jax.process_index() == 0
  state = init_state(params, optimizer, key)
  if mesh is not None:
    state = devices.replicate(state, mesh)
  else:
    state = devices.commit(state)  # as a restored state is: one compiled program for both

  if resume:
    restored = checkpoint.restore(ckpt_dir, state)
    if restored is not None:
      start, state = restored
      if start > num_steps:
        raise ValueError(f"the checkpoint restored is at step {start}, beyond "
                         f"num_steps={num_steps}")
    else:
      start = 0
    if primary:
      run_dir.metrics.truncate_after(start)
  step = int(_to_host(state.step))

  chunk_fn = make_train_chunk(loss_fn, optimizer, batch_fn, mesh=mesh,
                              batch_axis=batch_axis)
  records = []
  bar = tqdm_auto.tqdm(total=num_steps, initial=step, unit="step", dynamic_ncols=True,
                       disable=not (progress and primary))
  try:
    while step < num_steps:
      n = min(chunk_size - step % chunk_size, num_steps - step)
      state, metrics = chunk_fn(state, n)
      step += n
      record = {"step": step}
      record.update({k: float(np.mean(_to_host(v))) for k, v in sorted(metrics.items())})
      records.append(record)
      if run_dir is not None and primary:
        run_dir.metrics.append(**record)
      # The callback runs before the chunk's checkpoint: a run killed in between resumes
      # from an earlier checkpoint and redoes the chunk with its callback, and a callback
      # that raises leaves the previous checkpoint the newest.
      if callback is not None:
        callback(state, record)
      if run_dir is not None and (step % checkpoint_every == 0 or step == num_steps):
        checkpoint.save(ckpt_dir, step, state, keep=keep)
      bar.update(n)
      bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
  finally:
    bar.close()

  names = sorted({k for r in records for k in r} - {"step"})
  history = {"step": np.asarray([r["step"] for r in records], dtype=np.int64)}
  for name in names:
    history[name] = np.asarray([r.get(name, np.nan) for r in records], dtype=np.float64)
  return state, history
