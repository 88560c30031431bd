r"""Nearest-neighbour estimators of entropy, mutual information and divergence from samples.

Continuous counterparts of :mod:`entropylab.info.discrete`, estimated from ``N`` samples
by the distances to their ``k``-th nearest neighbours:

* differential entropy, Kozachenko & Leonenko, "Sample estimate of the entropy of a
  random vector", Probl. Inf. Transm. 23 (1987), in the form of Kraskov, Stoegbauer &
  Grassberger, "Estimating mutual information", Phys. Rev. E 69, 066138 (2004), eq. 20;
* mutual information, Kraskov, Stoegbauer & Grassberger (2004), eqs. 8 and 9 (their
  algorithms 1 and 2);
* conditional mutual information, Frenzel & Pompe, "Partial mutual information for
  coupling analysis of multivariate time series", Phys. Rev. Lett. 99, 204101 (2007),
  eq. 4, and transfer entropy (Schreiber, "Measuring information transfer", PRL 85,
  2000) as that conditional mutual information of delay embeddings;
* KL divergence, Wang, Kulkarni & Verdu, "Divergence estimation for multidimensional
  densities via k-nearest-neighbor distances", IEEE Trans. IT 55 (2009), eq. 17.

All results are in nats (``base=2`` for bits). Samples are rows: ``x: [N, d]`` (a 1-D
``[N]`` array is one dimension). The neighbour search is exact brute force, blocked
over the query points so that memory stays ``O(N * block_size)``; given a
``jax.sharding.Mesh`` (:func:`entropylab.runner.devices.make_mesh`) the query blocks are
split over its devices. Every estimator is jit-able and vmap-able.

Ties and duplicates. The estimators assume continuous distributions. Kraskov et al.
(2004, section II.C) break the ties of discretised data by adding noise of very low
amplitude; do that yourself with an explicit key, e.g.
``x + 1e-10 * x.std(0) * jax.random.normal(key, x.shape)``. Where a duplicate makes an
estimate undefined (a ``k``-th neighbour at distance 0 in :func:`entropy_knn` and
:func:`kl_divergence_knn`), concrete input raises ``ValueError`` before any work; under
``jit`` those estimates are ``nan``. The KSG-type estimators stay finite with ties (each
count includes the point itself) but are biased by them.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma
from jax.sharding import Mesh, PartitionSpec

from entropylab.info import _checks

Array = jax.Array

NORMS = ("euclidean", "max")
# Distances held per query block: block_size * N <= this (16 MB in float32).
_BLOCK_ELEMENTS = 1 << 22
# Up to this k the k nearest neighbours are found by k passes of min; above, lax.top_k.
_SELECT_MAX_K = 16


# --------------------------------------------------------------------------- checks


def _prepare_samples(x, name: str) -> Array:
  """``[N]`` or ``[N, d]`` real samples -> ``[N, d]`` float array, checked when concrete."""
  arr = _checks.as_float_array(x, name)
  if arr.ndim == 1:
    arr = arr[:, None]
  if arr.ndim != 2:
    raise ValueError(f"{name} must be [N] or [N, d] samples, got shape {arr.shape}")
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise ValueError(f"{name} is empty (shape {arr.shape})")
  if _checks.is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
    raise ValueError(f"{name} contains NaN or infinite entries")
  if jnp.finfo(arr.dtype).bits < 32:
    arr = arr.astype(jnp.float32)
  return arr


def _check_k(k, n: int, name: str = "k") -> int:
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(k).__name__}")
  if k < 1:
    raise ValueError(f"{name} must be >= 1, got {k}")
  if n <= k:
    raise ValueError(f"{name} = {k} needs more than {k} samples, got N = {n}")
  return int(k)


def _check_norm(norm) -> str:
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
  return norm


def _check_same_length(arrays, names) -> None:
  lengths = {a.shape[0] for a in arrays}
  if len(lengths) > 1:
    shapes = ", ".join(f"{n} {a.shape}" for a, n in zip(arrays, names))
    raise ValueError(f"the samples must have the same number of rows: {shapes}")


def _check_block_size(block_size, n: int) -> int:
  if block_size is None:
    return int(max(1, min(n, _BLOCK_ELEMENTS // max(n, 1))))
  if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
    raise TypeError(f"block_size must be an int or None, got {type(block_size).__name__}")
  if block_size < 1:
    raise ValueError(f"block_size must be >= 1, got {block_size}")
  return int(min(block_size, n))


def _check_mesh(mesh) -> None:
  if mesh is not None and not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")


def _max_multiplicity(x: Array, within: Optional[Array] = None) -> int:
  """Largest number of rows of ``within`` (default ``x``) equal to a row of ``x``."""
  a = np.ascontiguousarray(np.asarray(x))
  b = a if within is None else np.ascontiguousarray(np.asarray(within))
  keys, counts = np.unique(b, axis=0, return_counts=True)
  if within is None:
    return int(counts.max())
  table = {row.tobytes(): c for row, c in zip(keys, counts)}
  return max((table.get(row.tobytes(), 0) for row in a), default=0)


def _check_no_degenerate_neighbours(x: Array, k: int, name: str) -> None:
  if _checks.is_concrete(x) and _max_multiplicity(x) > k:
    raise ValueError(
        f"{name} has a point repeated more than k = {k} times, so its k-th neighbour is at "
        "distance 0 and the estimate is undefined; add noise of very low amplitude with an "
        "explicit key (Kraskov et al. 2004), e.g. x + 1e-10 * x.std(0) * normal(key, x.shape)")


# --------------------------------------------------------------------------- search


def _distances(a: Array, b: Array, norm: str) -> Array:
  """``[q, d]`` x ``[N, d]`` -> ``[q, N]`` exact pairwise distances."""
  diff = a[:, None, :] - b[None, :, :]
  if norm == "max":
    return jnp.max(jnp.abs(diff), axis=-1)
  return jnp.sqrt(jnp.sum(diff * diff, axis=-1))


def _smallest_k(d: Array, k: int) -> tuple[Array, Array]:
  """The ``k`` smallest entries of each row of ``d: [q, N]``, ascending, and their columns."""
  if k > _SELECT_MAX_K:
    neg, idx = lax.top_k(-d, k)
    return -neg, idx
  cols = lax.broadcasted_iota(jnp.int32, d.shape, 1)
  vals, idxs = [], []
  for _ in range(k):
    m = jnp.min(d, axis=1)
    i = jnp.min(jnp.where(d == m[:, None], cols, d.shape[1]), axis=1)
    vals.append(m)
    idxs.append(i)
    d = jnp.where(cols == i[:, None], jnp.inf, d)
  return jnp.stack(vals, axis=1), jnp.stack(idxs, axis=1)


def _map_queries(fn, n: int, block: int, data: tuple, mesh: Optional[Mesh]):
  """Applies ``fn(rows [q], *data)`` to blocks of query rows ``0..n-1``; concatenates.

  Padding rows repeat the last query and are dropped. With a mesh the blocks are split
  over its first axis (``shard_map``), ``data`` replicated on every device.
  """
  blocks = -(-n // block)
  devices = 1 if mesh is None else mesh.devices.size
  blocks = -(-blocks // devices) * devices
  rows = jnp.minimum(jnp.arange(blocks * block, dtype=jnp.int32), n - 1).reshape(blocks, block)

  def run(rows, *data):
    return lax.map(lambda r: fn(r, *data), rows)

  if mesh is not None:
    axis = mesh.axis_names[0]
    spec = PartitionSpec(axis)
    run = jax.shard_map(run, mesh=mesh, in_specs=(spec,) + (PartitionSpec(),) * len(data),
                        out_specs=spec, check_vma=False)
  out = run(rows, *data)
  return jax.tree.map(lambda o: o.reshape((blocks * block,) + o.shape[2:])[:n], out)


def _knn(x: Array, k: int, norm: str, block: int, mesh) -> tuple[Array, Array]:
  """Distances ``[N, k]`` (ascending) and indices of each point's k nearest others."""
  def fn(rows, x):
    d = _distances(x[rows], x, norm)
    d = jnp.where(lax.broadcasted_iota(jnp.int32, d.shape, 1) == rows[:, None], jnp.inf, d)
    return _smallest_k(d, k)

  return _map_queries(fn, x.shape[0], block, (x,), mesh)


def _knn_other(x: Array, y: Array, k: int, norm: str, block: int, mesh) -> Array:
  """``[N]`` distance from each row of ``x`` to its k-th nearest row of ``y``."""
  def fn(rows, x, y):
    return _smallest_k(_distances(x[rows], y, norm), k)[0][:, -1]

  return _map_queries(fn, x.shape[0], block, (x, y), mesh)


def _count(spaces, radius: Array, strict: bool, block: int, mesh) -> list[Array]:
  """Per space in ``spaces`` (``[N, d_s]``, max norm): ``[N]`` counts of the other points
  within ``radius`` (``< radius`` if ``strict``, else ``<=``; per point, ``[N]`` or one
  radius per space ``[S, N]``)."""
  radius = jnp.broadcast_to(radius, (len(spaces), spaces[0].shape[0]))

  def fn(rows, radius, *spaces):
    out = []
    for s, sp in enumerate(spaces):
      d = _distances(sp[rows], sp, "max")
      r = radius[s, rows][:, None]
      inside = (d < r) if strict else (d <= r)
      inside = inside & (lax.broadcasted_iota(jnp.int32, d.shape, 1) != rows[:, None])
      out.append(jnp.sum(inside, axis=1, dtype=jnp.int32))
    return out

  return _map_queries(fn, spaces[0].shape[0], block, (radius,) + tuple(spaces), mesh)


# --------------------------------------------------------------------------- estimators


def _log_unit_ball(d: int, norm: str) -> float:
  """log volume of the unit-radius ball in ``d`` dimensions."""
  if norm == "max":
    return d * math.log(2.0)
  return 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1.0)


def entropy_knn(x, k: int = 3, norm: str = "euclidean", base: Optional[float] = None,
                block_size: Optional[int] = None, mesh: Optional[Mesh] = None) -> Array:
  r"""Kozachenko-Leonenko differential entropy estimate.

  .. math:: \hat H = \psi(N) - \psi(k) + \log c_d + \frac{d}{N}\sum_i \log r_i

  (Kraskov et al. 2004, eq. 20, with radii instead of diameters), where :math:`r_i` is
  the distance from sample ``i`` to its ``k``-th nearest other sample and :math:`c_d`
  the volume of the unit ball of the norm (:math:`\pi^{d/2}/\Gamma(d/2+1)` Euclidean,
  :math:`2^d` max norm). The estimate does not depend on the norm in expectation.
  Differential entropy can be negative; it is never clamped.

  Args:
    x: ``[N]`` or ``[N, d]`` samples, ``N > k``.
    k: the neighbour order (3 is the usual choice).
    norm: ``"euclidean"`` or ``"max"``.
    base: log base; ``None`` for nats, 2 for bits.
    block_size: query rows per block of the exact search (default: ``2**22 / N``).
    mesh: a ``jax.sharding.Mesh`` to split the query blocks over its devices.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).

  Raises:
    ValueError: NaN/inf samples, ``N <= k``, or (concrete input) a point repeated more
      than ``k`` times.
  """
  x = _prepare_samples(x, "x")
  n, d = x.shape
  k = _check_k(k, n)
  norm = _check_norm(norm)
  _checks.check_base(base)
  _check_mesh(mesh)
  block = _check_block_size(block_size, n)
  _check_no_degenerate_neighbours(x, k, "x")
  return _checks.to_base(_entropy_knn(x, k, norm, block, mesh), base)


def _entropy_knn(x, k, norm, block, mesh):
  n, d = x.shape
  dist, _ = _knn(x, k, norm, block, mesh)
  r = dist[:, -1]
  log_r = jnp.where(r > 0, jnp.log(jnp.where(r > 0, r, 1.0)), jnp.nan)
  return (digamma(jnp.asarray(n, x.dtype)) - digamma(jnp.asarray(k, x.dtype))
          + _log_unit_ball(d, norm) + d * jnp.mean(log_r))


def mutual_information_ksg(x, y, k: int = 3, variant: int = 1, base: Optional[float] = None,
                           block_size: Optional[int] = None,
                           mesh: Optional[Mesh] = None) -> Array:
  r"""Kraskov-Stoegbauer-Grassberger mutual information estimate :math:`\hat I(X;Y)`.

  Distances are max norms; :math:`\epsilon_i` is the distance from sample ``i`` to its
  ``k``-th nearest neighbour in the joint space ``(x, y)``.

  * ``variant=1`` (their eq. 8): :math:`\psi(k) + \psi(N) - \langle \psi(n_x + 1) +
    \psi(n_y + 1)\rangle` with :math:`n_x(i) = \#\{j \ne i: \|x_j - x_i\| < \epsilon_i\}`.
  * ``variant=2`` (their eq. 9): :math:`\psi(k) - 1/k + \psi(N) - \langle \psi(n_x) +
    \psi(n_y)\rangle` with :math:`\epsilon_x(i)` the largest x-distance among the ``k``
    joint neighbours and :math:`n_x(i) = \#\{j \ne i: \|x_j - x_i\| \le \epsilon_x(i)\}`.

  The estimate is not clamped: near independence it can be slightly negative.

  Args:
    x: ``[N]`` or ``[N, d_x]`` samples.
    y: ``[N]`` or ``[N, d_y]`` samples (same ``N``), ``N > k``.
    k: the neighbour order.
    variant: 1 or 2.
    base: log base; ``None`` for nats, 2 for bits.
    block_size: query rows per block of the exact search.
    mesh: a ``jax.sharding.Mesh`` to split the query blocks over its devices.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  x = _prepare_samples(x, "x")
  y = _prepare_samples(y, "y")
  _check_same_length((x, y), ("x", "y"))
  n = x.shape[0]
  k = _check_k(k, n)
  if variant not in (1, 2) or isinstance(variant, bool):
    raise ValueError(f"variant must be 1 or 2, got {variant!r}")
  _checks.check_base(base)
  _check_mesh(mesh)
  block = _check_block_size(block_size, n)
  dtype = jnp.result_type(x.dtype, y.dtype)
  x, y = x.astype(dtype), y.astype(dtype)
  return _checks.to_base(_mi_ksg(x, y, k, variant, block, mesh), base)


def _mi_ksg(x, y, k, variant, block, mesh):
  n = x.shape[0]
  dist, idx = _knn(jnp.concatenate([x, y], axis=1), k, "max", block, mesh)
  psi = lambda v: digamma(jnp.asarray(v, x.dtype))
  if variant == 1:
    nx, ny = _count((x, y), dist[:, -1], True, block, mesh)
    return psi(k) + psi(n) - jnp.mean(psi(nx + 1) + psi(ny + 1))
  eps = jnp.stack([jnp.max(jnp.max(jnp.abs(s[idx] - s[:, None, :]), axis=-1), axis=1)
                   for s in (x, y)])
  nx, ny = _count((x, y), eps, False, block, mesh)
  return psi(k) - 1.0 / k + psi(n) - jnp.mean(psi(nx) + psi(ny))


def conditional_mutual_information_ksg(x, y, z, k: int = 3, base: Optional[float] = None,
                                       block_size: Optional[int] = None,
                                       mesh: Optional[Mesh] = None) -> Array:
  r"""Frenzel-Pompe conditional mutual information estimate :math:`\hat I(X;Y \mid Z)`.

  .. math:: \psi(k) - \langle \psi(n_{xz} + 1) + \psi(n_{yz} + 1) - \psi(n_z + 1)\rangle

  (Frenzel & Pompe 2007, eq. 4), with max norms, :math:`\epsilon_i` the distance to the
  ``k``-th neighbour in the joint space ``(x, y, z)`` and :math:`n_s(i)` the number of
  other samples strictly within :math:`\epsilon_i` in the subspace ``s``.

  Args:
    x, y, z: ``[N]`` or ``[N, d]`` samples with the same ``N > k``.
    k: the neighbour order.
    base: log base; ``None`` for nats, 2 for bits.
    block_size: query rows per block of the exact search.
    mesh: a ``jax.sharding.Mesh`` to split the query blocks over its devices.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  x = _prepare_samples(x, "x")
  y = _prepare_samples(y, "y")
  z = _prepare_samples(z, "z")
  _check_same_length((x, y, z), ("x", "y", "z"))
  n = x.shape[0]
  k = _check_k(k, n)
  _checks.check_base(base)
  _check_mesh(mesh)
  block = _check_block_size(block_size, n)
  dtype = jnp.result_type(x.dtype, y.dtype, z.dtype)
  x, y, z = x.astype(dtype), y.astype(dtype), z.astype(dtype)
  return _checks.to_base(_cmi_ksg(x, y, z, k, block, mesh), base)


def _cmi_ksg(x, y, z, k, block, mesh):
  dist, _ = _knn(jnp.concatenate([x, y, z], axis=1), k, "max", block, mesh)
  xz = jnp.concatenate([x, z], axis=1)
  yz = jnp.concatenate([y, z], axis=1)
  nxz, nyz, nz = _count((xz, yz, z), dist[:, -1], True, block, mesh)
  psi = lambda v: digamma(jnp.asarray(v, x.dtype))
  return psi(k) - jnp.mean(psi(nxz + 1) + psi(nyz + 1) - psi(nz + 1))


def _delay_embedding(s: Array, history: int, end_offset: int, count: int) -> Array:
  """Rows ``[s[t - history + 1], ..., s[t]]`` for ``t = end_offset .. end_offset+count-1``."""
  cols = [s[end_offset - h: end_offset - h + count] for h in range(history - 1, -1, -1)]
  return jnp.concatenate(cols, axis=1)


def transfer_entropy_ksg(source, target, k: int = 3, history: int = 1, lag: int = 1,
                         base: Optional[float] = None, block_size: Optional[int] = None,
                         mesh: Optional[Mesh] = None) -> Array:
  r"""Transfer entropy :math:`T_{S \to T}` estimated with the Frenzel-Pompe estimator.

  Schreiber (PRL 2000): :math:`T_{S\to T} = I(T_{t+1}; S^{(h)}_{t+1-\ell} \mid
  T^{(h)}_t)`, the information the source's past adds about the target's next value
  beyond the target's own past, where :math:`T^{(h)}_t = (T_{t-h+1}, \dots, T_t)` and
  :math:`S^{(h)}_{t+1-\ell} = (S_{t+2-\ell-h}, \dots, S_{t+1-\ell})` are delay embeddings
  of length ``history`` and the source leads by ``lag`` steps (``lag=1``: :math:`S_t`
  predicts :math:`T_{t+1}`). Estimated by
  :func:`conditional_mutual_information_ksg` on the ``L - history - lag + 1`` embedded
  samples.

  Args:
    source: ``[L]`` or ``[L, d_s]`` time series.
    target: ``[L]`` or ``[L, d_t]`` time series of the same length.
    k: the neighbour order.
    history: embedding length of both pasts, ``>= 1``.
    lag: source-to-target delay, ``>= 1``.
    base: log base; ``None`` for nats, 2 for bits.
    block_size, mesh: as in :func:`conditional_mutual_information_ksg`.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  s = _prepare_samples(source, "source")
  t = _prepare_samples(target, "target")
  _check_same_length((s, t), ("source", "target"))
  for name, v in (("history", history), ("lag", lag)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
      raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < 1:
      raise ValueError(f"{name} must be >= 1, got {v}")
  count = s.shape[0] - history - lag + 1
  if count <= 0:
    raise ValueError(f"series of length {s.shape[0]} are too short for history={history} "
                     f"and lag={lag}")
  k = _check_k(k, count, "k")
  _checks.check_base(base)
  _check_mesh(mesh)
  block = _check_block_size(block_size, count)
  dtype = jnp.result_type(s.dtype, t.dtype)
  s, t = s.astype(dtype), t.astype(dtype)
  first = history + lag - 2  # first time index t with a full embedding
  future = t[first + 1: first + 1 + count]
  target_past = _delay_embedding(t, history, first, count)
  source_past = _delay_embedding(s, history, first + 1 - lag, count)
  return _checks.to_base(_cmi_ksg(future, source_past, target_past, k, block, mesh), base)


def kl_divergence_knn(x, y, k: int = 1, base: Optional[float] = None,
                      block_size: Optional[int] = None, mesh: Optional[Mesh] = None) -> Array:
  r"""Wang-Kulkarni-Verdu estimate of :math:`D(P \| Q)` from ``x ~ P`` and ``y ~ Q``.

  .. math:: \hat D = \frac{d}{n} \sum_{i=1}^n \log\frac{\nu_k(i)}{\rho_k(i)}
     + \log\frac{m}{n - 1}

  (Wang, Kulkarni & Verdu 2009, eq. 17 with the same ``k`` in both samples), where
  :math:`\rho_k(i)` is the Euclidean distance from :math:`x_i` to its ``k``-th nearest
  other point of ``x`` and :math:`\nu_k(i)` to its ``k``-th nearest point of ``y``.

  Args:
    x: ``[n]`` or ``[n, d]`` samples of P, ``n > k``.
    y: ``[m]`` or ``[m, d]`` samples of Q, ``m >= k``.
    k: the neighbour order.
    base: log base; ``None`` for nats, 2 for bits.
    block_size, mesh: as in :func:`entropy_knn`.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  x = _prepare_samples(x, "x")
  y = _prepare_samples(y, "y")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"x and y must have the same dimension, got shapes {x.shape} and {y.shape}")
  n, m = x.shape[0], y.shape[0]
  k = _check_k(k, n)
  if m < k:
    raise ValueError(f"k = {k} needs at least {k} samples in y, got {m}")
  _checks.check_base(base)
  _check_mesh(mesh)
  block = _check_block_size(block_size, max(n, m))
  _check_no_degenerate_neighbours(x, k, "x")
  if _checks.is_concrete(x) and _checks.is_concrete(y) and _max_multiplicity(x, y) >= k:
    raise ValueError(f"a point of x appears at least k = {k} times in y, so its k-th "
                     "neighbour in y is at distance 0 and the estimate is undefined; add noise "
                     "of very low amplitude with an explicit key")
  dtype = jnp.result_type(x.dtype, y.dtype)
  return _checks.to_base(_kl_knn(x.astype(dtype), y.astype(dtype), k, block, mesh), base)


def _kl_knn(x, y, k, block, mesh):
  n, d = x.shape
  m = y.shape[0]
  rho = _knn(x, k, "euclidean", block, mesh)[0][:, -1]
  nu = _knn_other(x, y, k, "euclidean", block, mesh)
  ok = (rho > 0) & (nu > 0)
  ratio = jnp.where(ok, jnp.log(jnp.where(ok, nu, 1.0)) - jnp.log(jnp.where(ok, rho, 1.0)),
                    jnp.nan)
  return d * jnp.mean(ratio) + math.log(m / (n - 1))


__all__ = [
    "conditional_mutual_information_ksg",
    "entropy_knn",
    "kl_divergence_knn",
    "mutual_information_ksg",
    "transfer_entropy_ksg",
]
