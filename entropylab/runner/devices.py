"""Device meshes, batch sharding and multi-process start-up.

Everything is expressed with ``jax.sharding``: a 1-D :class:`jax.sharding.Mesh` whose
single axis (``"batch"`` by default) splits the leading axis of a batch, while
parameters and optimizer state are replicated. ``jax.jit`` then partitions the
computation and inserts the cross-device reductions.

In a multi-process run (after :func:`initialize_distributed`) a mesh built from
``jax.devices()`` spans the devices of every process; :func:`shard_batch` then treats
its input as this process's slice of the global batch.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def make_mesh(axis_name: str = "batch", devices: Optional[Sequence[Any]] = None) -> Mesh:
  """Builds a 1-D device mesh.

  Args:
    axis_name: name of the single mesh axis (a non-empty ``str``).
    devices: sequence of ``jax.Device`` of length ``n >= 1``; defaults to
      ``jax.devices()`` (every device of every process).

  Returns:
    A ``jax.sharding.Mesh`` with ``mesh.shape == {axis_name: n}``.

  Raises:
    TypeError: if ``axis_name`` is not a string or ``devices`` holds a non-device.
    ValueError: if ``axis_name`` is empty, ``devices`` is empty or has duplicates.
  """
  if not isinstance(axis_name, str):
    raise TypeError(f"axis_name must be a str, got {type(axis_name).__name__}")
  if not axis_name:
    raise ValueError("axis_name must be a non-empty string")
  if devices is None:
    devices = jax.devices()
  devices = list(devices)
  if not devices:
    raise ValueError("devices must hold at least one device")
  for i, d in enumerate(devices):
    if not isinstance(d, jax.Device):
      raise TypeError(f"devices[{i}] is a {type(d).__name__}, not a jax.Device")
  if len(set(devices)) != len(devices):
    raise ValueError("devices must not repeat a device")
  return Mesh(np.asarray(devices, dtype=object), (axis_name,))


def check_mesh_axis(mesh: Any, axis_name: Any, argname: str = "axis_name") -> int:
  """Validates a mesh and one of its axis names; returns the size of that axis.

  Args:
    mesh: should be a ``jax.sharding.Mesh``.
    axis_name: should be a ``str`` naming an axis of ``mesh``.
    argname: how error messages call ``axis_name``.

  Returns:
    ``mesh.shape[axis_name]`` as an ``int``.

  Raises:
    TypeError: if ``mesh`` is not a Mesh or ``axis_name`` not a str.
    ValueError: if ``axis_name`` is not an axis of ``mesh``.
  """
  if not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  if not isinstance(axis_name, str):
    raise TypeError(f"{argname} must be a str, got {type(axis_name).__name__}")
  if axis_name not in mesh.axis_names:
    raise ValueError(f"{argname} {axis_name!r} is not an axis of the mesh "
                     f"(axes: {mesh.axis_names})")
  return int(mesh.shape[axis_name])


def _local_axis_size(mesh: Mesh, axis_name: str) -> int:
  """Number of distinct positions along ``axis_name`` held by this process."""
  axis = mesh.axis_names.index(axis_name)
  local = {d.id for d in mesh.local_devices}
  positions = set()
  for index, device in np.ndenumerate(mesh.devices):
    if device.id in local:
      positions.add(index[axis])
  return len(positions)


def check_divisible(tree: Any, n: int, argname: str = "x") -> None:
  """Raises ValueError unless every leaf of ``tree`` has a leading axis divisible by n.

  Args:
    tree: pytree of arrays (anything with ``.shape``) or ``jax.ShapeDtypeStruct``.
    n: positive ``int``, the number of shards.
    argname: name of the argument, used in error messages.

  Raises:
    ValueError: naming the first offending leaf (by its pytree path), its shape and
      ``n``, if a leaf is a scalar or its leading size is not a multiple of ``n``.
  """
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in leaves:
    shape = np.shape(leaf)
    where = f"{argname}{jax.tree_util.keystr(path)}"
    if len(shape) == 0:
      raise ValueError(f"{where} is a scalar; a batch leaf needs a leading axis to "
                       f"split over {n} devices")
    if shape[0] % n:
      raise ValueError(f"{where} has leading size {shape[0]} (shape {tuple(shape)}), "
                       f"which is not divisible by the {n} devices of the mesh axis")


def shard_batch(x: Any, mesh: Mesh, axis_name: str = "batch") -> Any:
  """Places a pytree on ``mesh`` with every leaf's leading axis split over ``axis_name``.

  In a single process ``x`` is the whole batch. When the mesh spans devices of other
  processes, ``x`` is this process's part, and the global arrays are assembled with
  ``jax.make_array_from_process_local_data`` (global leading size = local size times
  the number of processes along the axis).

  Args:
    x: pytree of arrays, each of shape ``[B, ...]`` with ``B`` divisible by the number
      of (local) devices along ``axis_name``.
    mesh: a ``jax.sharding.Mesh``.
    axis_name: the mesh axis to split the leading axis over.

  Returns:
    The same pytree of ``jax.Array`` with sharding
    ``NamedSharding(mesh, PartitionSpec(axis_name))``.

  Raises:
    TypeError: if ``mesh`` is not a Mesh or ``axis_name`` not a str.
    ValueError: if ``axis_name`` is not a mesh axis, or a leaf is scalar or its
      leading size is not divisible (the message names the leaf and its size).
  """
  n = check_mesh_axis(mesh, axis_name)
  sharding = NamedSharding(mesh, PartitionSpec(axis_name))
  if mesh.is_multi_process:
    check_divisible(x, _local_axis_size(mesh, axis_name), "x")
    return jax.tree.map(
        lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), x)
  check_divisible(x, n, "x")
  return jax.device_put(x, sharding)


def constrain_batch(x: Any, mesh: Mesh, axis_name: str = "batch") -> Any:
  """Inside ``jax.jit``: asks that ``x``'s leading axes be split over ``axis_name``.

  The traced counterpart of :func:`shard_batch`, for batches generated inside a
  jitted function.

  Args:
    x: pytree of (traced) arrays of shape ``[B, ...]``, ``B`` divisible by the size of
      the mesh axis.
    mesh: a ``jax.sharding.Mesh``.
    axis_name: the mesh axis to split over.

  Returns:
    ``x`` with a sharding constraint ``NamedSharding(mesh, PartitionSpec(axis_name))``.

  Raises:
    ValueError: as :func:`shard_batch`, at trace time.
  """
  n = check_mesh_axis(mesh, axis_name)
  check_divisible(x, n, "batch")
  sharding = NamedSharding(mesh, PartitionSpec(axis_name))
  return jax.lax.with_sharding_constraint(x, jax.tree.map(lambda _: sharding, x))


def commit(x: Any) -> Any:
  """Commits every single-device leaf of ``x`` to the device it is on.

  ``jax.jit`` compiles separately for committed and uncommitted arguments. An array
  that ``checkpoint.restore`` returns is committed to its device, while the output of
  a jitted function of uncommitted inputs is not; committing a fresh training state
  the same way lets a resumed run reuse the programs compiled for an uninterrupted one
  (in the process, and in JAX's persistent compilation cache). Values are unchanged.

  Args:
    x: pytree of arrays.

  Returns:
    ``x`` with each ``jax.Array`` on one device committed there; leaves sharded over
    several devices (already committed) and non-array leaves are returned as they are.
  """
  def put(leaf):
    if isinstance(leaf, jax.Array) and isinstance(leaf.sharding,
                                                  jax.sharding.SingleDeviceSharding):
      return jax.device_put(leaf, leaf.sharding)
    return leaf

  return jax.tree.map(put, x)


def replicate(x: Any, mesh: Mesh) -> Any:
  """Places a full copy of every leaf of ``x`` on every device of ``mesh``.

  Args:
    x: pytree of arrays (any shapes). In a multi-process run every process must pass
      the same values.
    mesh: a ``jax.sharding.Mesh``.

  Returns:
    The pytree of ``jax.Array`` with sharding ``NamedSharding(mesh, PartitionSpec())``.

  Raises:
    TypeError: if ``mesh`` is not a Mesh.
  """
  if not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  sharding = NamedSharding(mesh, PartitionSpec())
  if not mesh.is_multi_process:
    return jax.device_put(x, sharding)

  # Across processes, device_put only accepts host values (it checks that they agree
  # on every process), so local device arrays go through numpy first.
  def put(leaf):
    if not isinstance(leaf, jax.Array) or not leaf.is_fully_addressable:
      return jax.device_put(leaf, sharding)
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return jax.device_put(np.asarray(leaf), sharding)

  return jax.tree.map(put, x)


def _is_loopback_host(host: str) -> bool:
  host = host.strip("[]")
  if host.lower() in _LOOPBACK_NAMES:
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def _split_address(address: str, argname: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"{argname} must look like 'host:port', got {address!r}")
  return host, int(port)


def initialize_distributed(coordinator_address: Optional[str] = None,
                           num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           *,
                           coordinator_bind_address: Optional[str] = None,
                           initialization_timeout: int = 300) -> None:
  """Joins this process to a multi-process JAX cluster.

  Must be called before any JAX computation in the process. On CPU the cross-process
  collectives need an implementation; unless one was already configured, this selects
  ``gloo`` (over TCP) through ``jax_cpu_collectives_implementation``.

  With all three of ``coordinator_address``, ``num_processes`` and ``process_id`` left
  as ``None`` JAX detects the cluster from the environment (SLURM, Open MPI, ...).
  When the coordinator is a loopback address, the coordinator service also binds to
  that address only, instead of every interface.

  Args:
    coordinator_address: ``"host:port"`` of process 0's coordinator service, or None.
    num_processes: total number of processes, an ``int >= 1``, or None.
    process_id: this process's index in ``[0, num_processes)``, or None.
    coordinator_bind_address: ``"host:port"`` the coordinator (process 0) listens on;
      defaults as described above.
    initialization_timeout: seconds (``int > 0``) to wait for all processes to join.

  Raises:
    TypeError: if an argument has the wrong type.
    ValueError: if an argument is out of range or malformed.
    RuntimeError: from JAX, if a JAX computation has already run in this process.
  """
  if coordinator_address is not None:
    if not isinstance(coordinator_address, str):
      raise TypeError("coordinator_address must be a str 'host:port' or None")
    host, port = _split_address(coordinator_address, "coordinator_address")
    if coordinator_bind_address is None and _is_loopback_host(host):
      coordinator_bind_address = f"{host}:{port}"
  if coordinator_bind_address is not None:
    if not isinstance(coordinator_bind_address, str):
      raise TypeError("coordinator_bind_address must be a str 'host:port' or None")
    _split_address(coordinator_bind_address, "coordinator_bind_address")
  if num_processes is not None:
    if isinstance(num_processes, bool) or not isinstance(num_processes, int):
      raise TypeError(f"num_processes must be an int, got {type(num_processes).__name__}")
    if num_processes < 1:
      raise ValueError(f"num_processes must be >= 1, got {num_processes}")
  if process_id is not None:
    if isinstance(process_id, bool) or not isinstance(process_id, int):
      raise TypeError(f"process_id must be an int, got {type(process_id).__name__}")
    if process_id < 0 or (num_processes is not None and process_id >= num_processes):
      raise ValueError(f"process_id must be in [0, num_processes={num_processes}), "
                       f"got {process_id}")
  if isinstance(initialization_timeout, bool) or not isinstance(initialization_timeout, int):
    raise TypeError("initialization_timeout must be an int number of seconds")
  if initialization_timeout <= 0:
    raise ValueError(f"initialization_timeout must be > 0, got {initialization_timeout}")

  if jax.config.jax_cpu_collectives_implementation is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      coordinator_bind_address=coordinator_bind_address,
      initialization_timeout=initialization_timeout)
