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
``[N]`` array is one dimension). The neighbour search is exact and blocked, in forms
picked by platform (``lax.platform_dependent``). On CPUs, points in two or more
dimensions go into a balanced k-d tree of small leaves; each leaf of queries visits the
leaves in the order of their box distance and stops where no box can hold a closer
point (``_knn_tree``), so memory stays ``O(N)``. In one dimension a sweep along the
sorted points scans only the strip that can hold a closer point (``_knn_sweep``). On
accelerators each block of queries is compared with every point (``_knn_dense``):
``O(N^2 d)`` work in large regular tiles, memory ``O(N + block_size * N)``, the block
by default as large as keeps ``block_size * N`` within ``2**24`` distances. Counts in
one-dimensional spaces are two binary searches on every platform. Given a
``jax.sharding.Mesh`` (:func:`entropylab.runner.devices.make_mesh`) the query blocks (or
leaves) are split over its devices. Every estimator is jit-able and vmap-able.

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

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma
from jax.sharding import Mesh, PartitionSpec

from entropylab.info import _checks

Array = jax.Array

NORMS = ("euclidean", "max")
# Queries per block and candidate points per chunk of the sweep: a block holds
# block * chunk distances at a time (16 kB in float32). Both tile shapes here were
# picked by timing a few candidates on a 2-core CPU (1+1 and 4+4 samples, N = 10^4);
# benchmarks/bench_info_samples.py measures the result against the peers.
_BLOCK = 32
_CHUNK = 128
# The counting sweep has no top-k selection, so it takes larger tiles: blocks of
# _COUNT_BLOCK_FACTOR * block queries and chunks of _COUNT_CHUNK points.
_COUNT_BLOCK_FACTOR = 4
_COUNT_CHUNK = 1024
# Up to this k the k nearest neighbours are found by k passes of min; above, lax.top_k.
_SELECT_MAX_K = 16
# Distances in up to this many dimensions are built coordinate by coordinate.
_UNROLL_DIMS = 16
# Accelerators compare each block of queries with every point (``_knn_dense``,
# ``_count_dense``): by default a block holds at most this many distances (64 MiB in
# float32), so that a few large tiles keep the device busy instead of many small loops.
_DENSE_ELEMENTS = 1 << 24
# On CPUs, points in at least this many dimensions are searched with the k-d tree
# (``_knn_tree``, ``_count_tree``), one-dimensional ones with the sweep; leaves hold
# _TREE_LEAF to 2 * _TREE_LEAF points and each step of a query leaf's loop takes
# _TREE_GROUP leaves. Picked by timing both searches and a few tile shapes on Gaussian
# samples (1 to 8 dimensions) on a 2-core CPU: the sweep wins in one dimension, the
# tree from two on; benchmarks/bench_info_samples.py measures the result.
_TREE_MIN_DIMS = 2
_TREE_LEAF = 32
_TREE_GROUP = 8
# A query leaf first ranks only its _TREE_CANDIDATES nearest leaves (a partial sort).
_TREE_CANDIDATES = 64
METHODS = ("sweep", "tree", "dense")


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


def _check_block_size(block_size, n: int) -> Optional[int]:
  """``None`` (each search picks its default) or a validated block of at most ``n``."""
  if block_size is None:
    return None
  if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
    raise TypeError(f"block_size must be an int or None, got {type(block_size).__name__}")
  if block_size < 1:
    raise ValueError(f"block_size must be >= 1, got {block_size}")
  return int(min(block_size, n))


def _prepare_paired(samples: dict, k, base, block_size, mesh):
  """Checks paired samples (same ``N``) and the shared options; casts to one dtype.

  Returns ``(arrays, k, block)``; ``block`` is ``None`` for the searches' defaults.
  """
  arrays = [_prepare_samples(v, name) for name, v in samples.items()]
  _check_same_length(arrays, list(samples))
  n = arrays[0].shape[0]
  k = _check_k(k, n)
  _checks.check_base(base)
  _checks.check_mesh(mesh)
  block = _check_block_size(block_size, n)
  dtype = jnp.result_type(*(a.dtype for a in arrays))
  return [a.astype(dtype) for a in arrays], k, block


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
  """``[q, d]`` x ``[N, d]`` -> ``[q, N]`` exact pairwise distances.

  Up to ``_UNROLL_DIMS`` dimensions the coordinates are combined one by one, so the result
  is elementwise in ``a`` and ``b``: XLA fuses it into the reduction that consumes it and
  never writes the ``[q, N]`` distances (the dense search recomputes them per pass)."""
  d = a.shape[1]
  if d > _UNROLL_DIMS:
    diff = a[:, None, :] - b[None, :, :]
    if norm == "max":
      return jnp.max(jnp.abs(diff), axis=-1)
    return jnp.sqrt(jnp.sum(diff * diff, axis=-1))
  out = None
  for j in range(d):
    diff = a[:, j, None] - b[None, :, j]
    term = jnp.abs(diff) if norm == "max" else diff * diff
    out = term if out is None else (jnp.maximum(out, term) if norm == "max" else out + term)
  return out if norm == "max" else jnp.sqrt(out)


def _lexicographic_min(a, b):
  """Reducer of ``(value, index)`` pairs: the smaller value, the smaller index on ties."""
  (av, ai), (bv, bi) = a, b
  take_b = (bv < av) | ((bv == av) & (bi < ai))
  return jnp.where(take_b, bv, av), jnp.where(take_b, bi, ai)


def _smallest_k_in_passes(distances, k: int, n: int, exclude: Optional[Array]):
  """The ``k`` smallest of ``distances() [q, n]`` per row, ascending, and their columns,
  in ``k`` passes that each recompute the distances inside one variadic reduction: pass
  ``j`` takes the lexicographically smallest ``(distance, column)`` after the one of
  pass ``j - 1``, so ties go to the lower column as in :func:`_smallest_k`. ``exclude
  [q]``: a column per row to leave out (the query itself), or ``None``."""
  vals, idxs = [], []
  prev_v = prev_i = None
  for _ in range(k):
    d = distances()
    cols = lax.broadcasted_iota(jnp.int32, d.shape, 1)
    ok = jnp.ones(d.shape, bool) if exclude is None else cols != exclude[:, None]
    if prev_v is not None:
      ok = ok & ((d > prev_v[:, None]) | ((d == prev_v[:, None]) & (cols > prev_i[:, None])))
    init = (jnp.array(jnp.inf, d.dtype), jnp.array(n, jnp.int32))
    prev_v, prev_i = lax.reduce((jnp.where(ok, d, jnp.inf), jnp.where(ok, cols, n)), init,
                                _lexicographic_min, (1,))
    vals.append(prev_v)
    idxs.append(prev_i)
  return jnp.stack(vals, axis=1), jnp.stack(idxs, axis=1)


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


def _map_blocks(fn, n: int, block: int, data: tuple, mesh: Optional[Mesh]):
  """Applies ``fn(rows [q], *data)`` to blocks of ``block`` consecutive rows ``0..n-1``.

  Padding rows repeat the last row and are dropped. With a mesh the blocks are split
  over its first axis (``shard_map``), ``data`` replicated on every device.
  """
  blocks = -(-n // block)
  devices = 1 if mesh is None else mesh.devices.size
  blocks = -(-blocks // devices) * devices
  rows = jnp.minimum(jnp.arange(blocks * block, dtype=jnp.int32), n - 1).reshape(blocks, block)

  def run(rows, *data):
    return lax.map(lambda r: fn(r, *data), rows)

  if mesh is not None:
    spec = PartitionSpec(mesh.axis_names[0])
    run = jax.shard_map(run, mesh=mesh, in_specs=(spec,) + (PartitionSpec(),) * len(data),
                        out_specs=spec, check_vma=False)
  out = run(rows, *data)
  return jax.tree.map(lambda o: o.reshape((blocks * block,) + o.shape[2:])[:n], out)


def _first_true(key: Array, pred) -> Array:
  """Per query, the first index ``m`` of ascending ``key [n]`` with ``pred(key[m])`` true
  (``n`` if none); ``pred`` maps ``[Q]`` keys to ``[Q]`` bools, false then true along
  ``key``. A vectorised binary search: ``ceil(log2(n + 1))`` gathers per query."""
  n = key.shape[0]
  probe = pred(key[:1])
  lo = jnp.zeros(probe.shape, jnp.int32)
  hi = jnp.full(probe.shape, n, jnp.int32)

  def step(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) // 2
    active = lo < hi
    ok = pred(key[jnp.minimum(mid, n - 1)])
    return jnp.where(active & ~ok, mid + 1, lo), jnp.where(active & ok, mid, hi)

  # Unrolled: a fixed, short trip count, and no loop for GPUs to synchronise on.
  return lax.fori_loop(0, int(n).bit_length(), step, (lo, hi), unroll=True)[0]


def _key_slack(key: Array, radius: Array) -> Array:
  """A few ulps of ``|key| + radius``: widens sorted ranges found from ``key +- radius``
  so that no point at the boundary is lost to rounding (the exact distance test then
  decides)."""
  return 4 * jnp.finfo(key.dtype).eps * (jnp.abs(key) + radius)


class _Sorted(NamedTuple):
  """Points sorted by their widest coordinate (the sweep key)."""

  points: Array  # [N, d] in key order
  key: Array     # [N] ascending
  order: Array   # [N] original index of each sorted row


def _sort_by_widest(points: Array, coord: Optional[Array] = None) -> tuple[_Sorted, Array]:
  if coord is None:
    coord = jnp.argmax(jnp.max(points, axis=0) - jnp.min(points, axis=0))
  key = jnp.take(points, coord, axis=1)
  order = jnp.argsort(key).astype(jnp.int32)
  return _Sorted(points[order], key[order], order), coord


def _scan_range(lo: Array, hi: Array, chunk: int, n: int, init, body):
  """Folds ``body(carry, start, positions [chunk], valid [chunk])`` over ``[lo, hi)`` in
  chunks of ``chunk`` sorted positions (the last chunk is shifted back inside ``[0, n)``
  and its repeated positions are masked)."""
  trips = (hi - lo + chunk - 1) // chunk

  def step(state):
    i, carry = state
    start = lo + i * chunk
    first = jnp.minimum(start, n - chunk)
    positions = first + jnp.arange(chunk, dtype=jnp.int32)
    valid = (positions >= start) & (positions < hi)
    return i + 1, body(carry, first, positions, valid)

  return lax.while_loop(lambda state: state[0] < trips, step, (jnp.int32(0), init))[1]


def _dispatch(method: Optional[str], searches: dict, cpu: str, *args):
  """``searches[method](*args)`` for a named ``method``; by default ``searches[cpu]`` on
  CPUs and ``searches["dense"]`` elsewhere (``lax.platform_dependent``)."""
  if method is not None:
    if method not in METHODS:
      raise ValueError(f"method must be one of {METHODS} or None, got {method!r}")
    return searches[method](*args)
  return lax.platform_dependent(*args, cpu=searches[cpu], default=searches["dense"])


def _cpu_method(d: int) -> str:
  return "tree" if d >= _TREE_MIN_DIMS else "sweep"


def _sweep_block(block: Optional[int], n: int) -> int:
  return int(min(_BLOCK if block is None else block, n))


def _tree_leaf(block: Optional[int], n: int) -> int:
  return int(min(_TREE_LEAF if block is None else block, n))


def _dense_block(block: Optional[int], n_queries: int, n_points: int) -> int:
  if block is None:
    block = max(1, _DENSE_ELEMENTS // n_points)
  return int(min(block, n_queries))


def _knn_search(queries: Array, points: Array, k: int, norm: str, same: bool,
                block: Optional[int], mesh, method: Optional[str] = None,
                chunk: int = _CHUNK) -> tuple[Array, Array]:
  """Exact k nearest ``points`` of every query: distances ``[Nq, k]`` (ascending) and the
  points' original indices. ``same``: queries are the points, each excluding itself.

  CPUs run :func:`_knn_tree` (leaves of ``block`` to ``2 * block``, default 32, points)
  in ``_TREE_MIN_DIMS`` or more dimensions and :func:`_knn_sweep` (blocks of ``block``,
  default 32, queries) in fewer; accelerators run :func:`_knn_dense` (blocks of
  ``block`` queries, default as many as keep a block's distances within
  ``_DENSE_ELEMENTS``). ``method`` picks one on any platform. All are exact; with ties at
  the k-th distance they may pick different (equally near) points.
  """
  nq, n = queries.shape[0], points.shape[0]
  searches = {
      "sweep": functools.partial(_knn_sweep, k=k, norm=norm, same=same,
                                 block=_sweep_block(block, nq), chunk=chunk, mesh=mesh),
      "tree": functools.partial(_knn_tree, k=k, norm=norm, same=same,
                                leaf=_tree_leaf(block, min(nq, n)), mesh=mesh),
      "dense": functools.partial(_knn_dense, k=k, norm=norm, same=same,
                                 block=_dense_block(block, nq, n), mesh=mesh),
  }
  return _dispatch(method, searches, _cpu_method(points.shape[1]), queries, points)


def _knn_dense(queries: Array, points: Array, k: int, norm: str, same: bool, block: int,
               mesh) -> tuple[Array, Array]:
  """:func:`_knn_search` by brute force: each block of ``block`` queries against all
  ``N`` points (``block * N`` distances at a time), then the ``k`` smallest per row.
  ``O(Nq N d)`` work in a few large, regular tiles: the form that suits GPUs."""

  def top_k_block(rows, q, p):
    distances = lambda: _distances(q[rows], p, norm)
    if k <= _SELECT_MAX_K:
      return _smallest_k_in_passes(distances, k, p.shape[0], rows if same else None)
    d = distances()
    if same:
      d = jnp.where(lax.broadcasted_iota(jnp.int32, d.shape, 1) == rows[:, None], jnp.inf, d)
    return _smallest_k(d, k)

  return _map_blocks(top_k_block, queries.shape[0], block, (queries, points), mesh)


def _knn_sweep(queries: Array, points: Array, k: int, norm: str, same: bool, block: int,
               chunk: int, mesh) -> tuple[Array, Array]:
  """:func:`_knn_search` by a sort-and-sweep search along the points' widest coordinate (the key). Queries go in
  blocks of ``block`` consecutive keys; each block scans the sorted points outwards from
  its own keys, a chunk of ``chunk`` points at a time on the nearer side, keeping every
  query's running top k. A side is finished once its next point is farther *in the key
  alone* than every query's current k-th distance: both norms dominate one coordinate,
  so nothing beyond it can be closer. Chunks with no point closer than a current k-th
  distance skip the selection. Exact for any data; the work is ``O(N log N)`` plus the
  points within each query's k-th distance in the key (a strip of ``O(N^(1 - 1/d))``
  points for smooth densities).
  """
  n = points.shape[0]
  srt, coord = _sort_by_widest(points)
  qsrt = srt if same else _sort_by_widest(queries, coord)[0]
  chunk = min(chunk, n)

  def top_k_block(rows, q_pts, q_key, p_pts, p_key):
    qp, qk = q_pts[rows], q_key[rows]
    centre = rows[0] if same else jnp.searchsorted(p_key, qk[0]).astype(jnp.int32)

    def merge(best, first, positions, valid):
      best_d, best_pos = best
      d = _distances(qp, lax.dynamic_slice_in_dim(p_pts, first, chunk), norm)
      mask = valid[None, :]
      if same:
        mask = mask & (positions[None, :] != rows[:, None])
      d = jnp.where(mask, d, jnp.inf)
      # Always merge: skipping chunks with no closer point behind a lax.cond cost more
      # (its dispatch on CPU) than the selection it saved.
      vals, cols = _smallest_k(jnp.concatenate([best_d, d], axis=1), k)
      alli = jnp.concatenate([best_pos, jnp.broadcast_to(positions, d.shape)], axis=1)
      return vals, jnp.take_along_axis(alli, cols, axis=1)

    def open_sides(left, right, best_d):
      kth = best_d[:, -1]
      slack = _key_slack(qk, jnp.where(jnp.isfinite(kth), kth, 0.0))
      reach_lo = jnp.min(qk - kth - slack)
      reach_hi = jnp.max(qk + kth + slack)
      go_left = (left > 0) & (p_key[jnp.maximum(left - 1, 0)] >= reach_lo)
      go_right = (right < n) & (p_key[jnp.minimum(right, n - 1)] <= reach_hi)
      return go_left, go_right

    # The loop state carries which sides are still open, computed once per step.
    def step(state):
      left, right, best, go_left, go_right = state
      gap_left = qk[0] - p_key[jnp.maximum(left - 1, 0)]
      gap_right = p_key[jnp.minimum(right, n - 1)] - qk[-1]
      take_left = go_left & (~go_right | (gap_left <= gap_right))
      lo = jnp.where(take_left, jnp.maximum(left - chunk, 0), right)
      hi = jnp.where(take_left, left, jnp.minimum(right + chunk, n))
      first = jnp.clip(lo, 0, n - chunk)
      positions = first + jnp.arange(chunk, dtype=jnp.int32)
      best = merge(best, first, positions, (positions >= lo) & (positions < hi))
      left, right = jnp.where(take_left, lo, left), jnp.where(take_left, right, hi)
      return (left, right, best) + open_sides(left, right, best[0])

    best0 = (jnp.full((block, k), jnp.inf, qp.dtype), jnp.zeros((block, k), jnp.int32))
    init = (centre, centre, best0) + open_sides(centre, centre, best0[0])
    _, _, (dist, pos), _, _ = lax.while_loop(lambda st: st[3] | st[4], step, init)
    return dist, pos

  data = (qsrt.points, qsrt.key, srt.points, srt.key)
  dist, pos = _map_blocks(top_k_block, queries.shape[0], block, data, mesh)
  # Back to the queries' original order, and sorted positions to original indices.
  inverse = jnp.zeros_like(qsrt.order).at[qsrt.order].set(
      jnp.arange(queries.shape[0], dtype=jnp.int32))
  return dist[inverse], srt.order[pos[inverse]]


class _Tree(NamedTuple):
  """A balanced k-d tree stored as its leaves, plus one empty leaf (index ``leaves``)."""

  points: Array  # [leaves + 1, L, d] the points of each leaf
  index: Array   # [leaves + 1, L] original row of each point; N marks padding
  lo: Array      # [leaves + 1, d] lower corner of each leaf's bounding box (+inf if empty)
  hi: Array      # [leaves + 1, d] upper corner (-inf if empty)


def _build_tree(points: Array, leaf: int) -> _Tree:
  """Splits ``points [N, d]`` at the median of the widest coordinate, node by node,
  ``floor(log2(N / leaf))`` times: ``2**levels`` leaves of ``L = ceil(N / 2**levels)``
  points (between ``leaf`` and ``2 * leaf``). The ``2**levels * L - N`` padding slots
  hold copies of point 0 marked with index ``N``; they are left out of the boxes and of
  every distance. Fixed shapes: one batched sort per level, ``O(N log N)`` each."""
  n, d = points.shape
  levels = int(math.floor(math.log2(max(n // leaf, 1))))
  leaves = 1 << levels
  size = -(-n // leaves)
  total = leaves * size
  pts = jnp.concatenate([points, jnp.broadcast_to(points[:1], (total - n, d))])
  idx = jnp.concatenate([jnp.arange(n, dtype=jnp.int32), jnp.full(total - n, n, jnp.int32)])
  for level in range(levels):
    nodes = pts.reshape(1 << level, -1, d)
    widest = jnp.argmax(jnp.max(nodes, axis=1) - jnp.min(nodes, axis=1), axis=1)
    key = jnp.take_along_axis(nodes, widest[:, None, None], axis=2)[..., 0]
    order = jnp.argsort(key, axis=1)
    pts = jnp.take_along_axis(nodes, order[..., None], axis=1).reshape(total, d)
    idx = jnp.take_along_axis(idx.reshape(1 << level, -1), order, axis=1).reshape(total)
  pts, idx = pts.reshape(leaves, size, d), idx.reshape(leaves, size)
  real = (idx < n)[..., None]
  lo = jnp.min(jnp.where(real, pts, jnp.inf), axis=1)
  hi = jnp.max(jnp.where(real, pts, -jnp.inf), axis=1)
  return _Tree(jnp.concatenate([pts, jnp.zeros((1, size, d), pts.dtype)]),
               jnp.concatenate([idx, jnp.full((1, size), n, jnp.int32)]),
               jnp.concatenate([lo, jnp.full((1, d), jnp.inf, lo.dtype)]),
               jnp.concatenate([hi, jnp.full((1, d), -jnp.inf, hi.dtype)]))


def _box_distance(qlo: Array, qhi: Array, lo: Array, hi: Array, norm: str) -> Array:
  """``[leaves]`` smallest distance between a point of the box ``[qlo, qhi]`` (``[d]``)
  and a point of each box ``[lo, hi]`` (``[leaves, d]``): a lower bound of every
  distance between their points, up to rounding (callers allow a few ulps)."""
  gap = jnp.maximum(jnp.maximum(lo - qhi, qlo - hi), 0.0)
  if norm == "max":
    return jnp.max(gap, axis=-1)
  return jnp.sqrt(jnp.sum(gap * gap, axis=-1))


def _prune_tolerance(dtype) -> float:
  """Leaves are skipped when their box distance exceeds a bound by more than this factor,
  so that rounding of the box and point distances never drops a point."""
  return 1.0 + 16 * float(jnp.finfo(dtype).eps)


def _knn_tree(queries: Array, points: Array, k: int, norm: str, same: bool, leaf: int,
              mesh) -> tuple[Array, Array]:
  """:func:`_knn_search` with k-d trees (:func:`_build_tree`) on the points and the
  queries. Each query leaf is a block: it visits the point leaves in the order of their
  box distance to its own box, ``_TREE_GROUP`` at a time, keeping every query's running
  top k, and stops at the first leaf farther than all of its queries' current k-th
  distances (nothing after it can be closer). Only the ``_TREE_CANDIDATES`` nearest
  leaves are ranked at first (a partial sort); a query leaf that gets past them ranks
  all. Exact for any data; memory ``O(N)`` plus ``O(leaves)`` per query leaf. The work
  is the leaves near each query leaf: far fewer points than the sweep's strip from 3
  dimensions on."""
  n, nq = points.shape[0], queries.shape[0]
  tree = _build_tree(points, leaf)
  qtree = tree if same else _build_tree(queries, leaf)
  leaves, size = tree.points.shape[0] - 1, tree.points.shape[1]
  group = min(_TREE_GROUP, leaves)
  tol = _prune_tolerance(points.dtype)

  # The nearest ``first`` leaves come from a partial sort (lax.top_k); a query leaf
  # that needs more sorts all of them (lax.cond), then goes on from the same place.
  first = group * max(1, min(_TREE_CANDIDATES, leaves) // group)

  def search_leaf(rows, q_pts, q_idx, q_lo, q_hi, pts, idx, lo, hi):
    b = rows[0]
    qp, qi = q_pts[b], q_idx[b]
    live = qi < nq
    near = _box_distance(q_lo[b], q_hi[b], lo[:leaves], hi[:leaves], norm)
    pad = lambda a, v: jnp.concatenate([a, jnp.full((group,), v, a.dtype)])

    def bound(best_d):
      return jnp.max(jnp.where(live, best_d[:, -1], -jnp.inf)) * tol

    def visit(order, sorted_near, end):
      def more(state):
        i, best_d, _ = state
        return (i < end) & (sorted_near[i] <= bound(best_d))

      def step(state):
        i, best_d, best_i = state
        ids = lax.dynamic_slice_in_dim(order, i, group)
        p, pi = pts[ids].reshape(group * size, -1), idx[ids].reshape(group * size)
        ok = pi[None, :] < n
        if same:
          ok = ok & (pi[None, :] != qi[:, None])
        d = jnp.where(ok, _distances(qp, p, norm), jnp.inf)
        vals, cols = _smallest_k(jnp.concatenate([best_d, d], axis=1), k)
        alli = jnp.concatenate([best_i, jnp.broadcast_to(pi, d.shape)], axis=1)
        return i + group, vals, jnp.take_along_axis(alli, cols, axis=1)

      return lambda state: lax.while_loop(more, step, state)

    # top_k and the stable argsort order equal values by index alike, so the full
    # order starts with the same ``first`` leaves.
    neg, top = lax.top_k(-near, first)
    init = (jnp.int32(0), jnp.full((qp.shape[0], k), jnp.inf, qp.dtype),
            jnp.zeros((qp.shape[0], k), jnp.int32))
    state = visit(pad(top.astype(jnp.int32), leaves), pad(-neg, jnp.inf), first)(init)
    if first < leaves:
      rest = jnp.min(near.at[top].set(jnp.inf))

      def visit_all(state):
        order = jnp.argsort(near).astype(jnp.int32)
        return visit(pad(order, leaves), pad(near[order], jnp.inf), leaves)(state)

      state = lax.cond((state[0] >= first) & (rest <= bound(state[1])), visit_all,
                       lambda st: st, state)
    return state[1][None], state[2][None]

  q_leaves = qtree.points.shape[0] - 1
  dist, ind = _map_blocks(search_leaf, q_leaves, 1, tuple(qtree) + tuple(tree), mesh)
  rows = qtree.index[:q_leaves].reshape(-1)
  dist = jnp.zeros((nq, k), dist.dtype).at[rows].set(dist.reshape(-1, k), mode="drop")
  ind = jnp.zeros((nq, k), jnp.int32).at[rows].set(ind.reshape(-1, k), mode="drop")
  return dist, ind


def _count_within(space: Array, radius: Array, strict: bool, block: Optional[int], mesh,
                  method: Optional[str] = None, chunk: int = _COUNT_CHUNK) -> Array:
  """``[N]`` number of other points of ``space [N, d]`` within max-norm ``radius [N]``
  (``<`` if ``strict`` else ``<=``) of each point. One-dimensional spaces are counted
  with two binary searches on every platform; others as :func:`_knn_search` picks its
  method (:func:`_count_tree` or :func:`_count_sweep` on CPUs by the dimension,
  :func:`_count_dense` elsewhere)."""
  n = space.shape[0]
  if space.shape[1] == 1:
    key = jnp.sort(space[:, 0])
    x = space[:, 0]
    # Bounds of the contiguous sorted range with |key - x| inside the radius, found with
    # the same float differences as the distances elsewhere (not x +- r, which rounds).
    if strict:
      lower = _first_true(key, lambda v: v - x > -radius)
      upper = _first_true(key, lambda v: v - x >= radius)
    else:
      lower = _first_true(key, lambda v: v - x >= -radius)
      upper = _first_true(key, lambda v: v - x > radius)
    # The point itself is inside whenever the radius is positive (or always with <=).
    itself = (radius > 0) if strict else jnp.ones_like(radius, dtype=bool)
    # (With radius 0 and <, the range is empty and lower passes upper.)
    return (jnp.maximum(upper - lower, 0) - itself).astype(jnp.int32)
  searches = {
      "sweep": functools.partial(_count_sweep, strict=strict,
                                 block=min(_sweep_block(block, n) * _COUNT_BLOCK_FACTOR, n),
                                 chunk=chunk, mesh=mesh),
      "tree": functools.partial(_count_tree, strict=strict, leaf=_tree_leaf(block, n),
                                mesh=mesh),
      "dense": functools.partial(_count_dense, strict=strict,
                                 block=_dense_block(block, n, n), mesh=mesh),
  }
  return _dispatch(method, searches, _cpu_method(space.shape[1]), space, radius)


def _count_dense(space: Array, radius: Array, strict: bool, block: int, mesh) -> Array:
  """:func:`_count_within` by brute force, ``block`` points against all at a time."""

  def count_block(rows, pts, r_all):
    d = _distances(pts[rows], pts, "max")
    r = r_all[rows][:, None]
    inside = (d < r) if strict else (d <= r)
    inside = inside & (lax.broadcasted_iota(jnp.int32, d.shape, 1) != rows[:, None])
    return jnp.sum(inside, axis=1, dtype=jnp.int32)

  return _map_blocks(count_block, space.shape[0], block, (space, radius), mesh)


def _count_sweep(space: Array, radius: Array, strict: bool, block: int, chunk: int,
                 mesh) -> Array:
  """:func:`_count_within` by the sweep of :func:`_knn_sweep`: each block of ``block``
  points scans, in chunks of ``chunk``, the sorted strip within its radii in the key."""
  n = space.shape[0]
  srt, _ = _sort_by_widest(space)
  r_sorted = radius[srt.order]
  block = min(block, n)
  chunk = min(chunk, n)

  def count_block(rows, pts, key, r_all):
    qp, qk, r = pts[rows], key[rows], r_all[rows]
    slack = _key_slack(qk, r)
    lo = jnp.searchsorted(key, jnp.min(qk - r - slack), side="left").astype(jnp.int32)
    hi = jnp.searchsorted(key, jnp.max(qk + r + slack), side="right").astype(jnp.int32)

    def body(total, first, positions, valid):
      d = _distances(qp, lax.dynamic_slice_in_dim(pts, first, chunk), "max")
      inside = (d < r[:, None]) if strict else (d <= r[:, None])
      inside = inside & valid[None, :] & (positions[None, :] != rows[:, None])
      return total + jnp.sum(inside, axis=1, dtype=jnp.int32)

    return _scan_range(lo, hi, chunk, n, jnp.zeros(block, jnp.int32), body)

  counts = _map_blocks(count_block, n, block, (srt.points, srt.key, r_sorted), mesh)
  return jnp.zeros(n, jnp.int32).at[srt.order].set(counts)


def _count_tree(space: Array, radius: Array, strict: bool, leaf: int, mesh) -> Array:
  """:func:`_count_within` with a k-d tree (:func:`_build_tree`): each leaf of queries
  visits, ``_TREE_GROUP`` at a time, only the leaves whose box is within its largest
  radius of its own box."""
  n = space.shape[0]
  tree = _build_tree(space, leaf)
  leaves, size = tree.points.shape[0] - 1, tree.points.shape[1]
  group = min(_TREE_GROUP, leaves)
  tol = _prune_tolerance(space.dtype)
  radii = jnp.concatenate([radius, jnp.full((1,), -jnp.inf, radius.dtype)])[tree.index]

  def count_leaf(rows, pts, idx, lo, hi, r_all):
    b = rows[0]
    qp, qi, r = pts[b], idx[b], r_all[b]
    near = _box_distance(lo[b], hi[b], lo[:leaves], hi[:leaves], "max") <= jnp.max(r) * tol
    ids = jnp.nonzero(near, size=leaves + group, fill_value=leaves)[0].astype(jnp.int32)

    def step(j, total):
      chosen = lax.dynamic_slice_in_dim(ids, j * group, group)
      p, pi = pts[chosen].reshape(group * size, -1), idx[chosen].reshape(group * size)
      d = _distances(qp, p, "max")
      inside = (d < r[:, None]) if strict else (d <= r[:, None])
      inside = inside & (pi[None, :] < n) & (pi[None, :] != qi[:, None])
      return total + jnp.sum(inside, axis=1, dtype=jnp.int32)

    trips = (jnp.sum(near, dtype=jnp.int32) + group - 1) // group
    return lax.fori_loop(0, trips, step, jnp.zeros(size, jnp.int32))[None]

  counts = _map_blocks(count_leaf, leaves, 1, tuple(tree) + (radii,), mesh)
  return jnp.zeros(n, jnp.int32).at[tree.index[:leaves].reshape(-1)].set(
      counts.reshape(-1), mode="drop")


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
    block_size: queries per block of the exact search: on CPUs the k-d tree's
      smallest leaf (default 32) or the one-dimensional sweep's block (default 32);
      on accelerators by default as many as keep ``block_size * N`` within ``2**24``
      distances.
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
  _checks.check_mesh(mesh)
  block = _check_block_size(block_size, n)
  _check_no_degenerate_neighbours(x, k, "x")
  return _checks.to_base(_entropy_knn(x, k, norm, block, mesh), base)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _entropy_knn(x, k, norm, block, mesh):
  n, d = x.shape
  dist, _ = _knn_search(x, x, k, norm, True, block, mesh)
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
    block_size: queries per block of the exact search: on CPUs the k-d tree's
      smallest leaf (default 32) or the one-dimensional sweep's block (default 32);
      on accelerators by default as many as keep ``block_size * N`` within ``2**24``
      distances.
    mesh: a ``jax.sharding.Mesh`` to split the query blocks over its devices.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  if variant not in (1, 2) or isinstance(variant, bool):
    raise ValueError(f"variant must be 1 or 2, got {variant!r}")
  (x, y), k, block = _prepare_paired({"x": x, "y": y}, k, base, block_size, mesh)
  return _checks.to_base(_mi_ksg(x, y, k, variant, block, mesh), base)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _mi_ksg(x, y, k, variant, block, mesh):
  n = x.shape[0]
  xy = jnp.concatenate([x, y], axis=1)
  dist, idx = _knn_search(xy, xy, k, "max", True, block, mesh)
  psi = lambda v: digamma(jnp.asarray(v, x.dtype))
  if variant == 1:
    nx, ny = (_count_within(s, dist[:, -1], True, block, mesh) for s in (x, y))
    return psi(k) + psi(n) - jnp.mean(psi(nx + 1) + psi(ny + 1))
  nx, ny = (_count_within(s, jnp.max(jnp.max(jnp.abs(s[idx] - s[:, None, :]), axis=-1), axis=1),
                          False, block, mesh) for s in (x, y))
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
    block_size: queries per block of the exact search: on CPUs the k-d tree's
      smallest leaf (default 32) or the one-dimensional sweep's block (default 32);
      on accelerators by default as many as keep ``block_size * N`` within ``2**24``
      distances.
    mesh: a ``jax.sharding.Mesh`` to split the query blocks over its devices.

  Returns:
    ``[]`` the estimate in nats (or ``base`` units).
  """
  (x, y, z), k, block = _prepare_paired({"x": x, "y": y, "z": z}, k, base, block_size, mesh)
  return _checks.to_base(_cmi_ksg(x, y, z, k, block, mesh), base)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _cmi_ksg(x, y, z, k, block, mesh):
  xyz = jnp.concatenate([x, y, z], axis=1)
  eps = _knn_search(xyz, xyz, k, "max", True, block, mesh)[0][:, -1]
  xz = jnp.concatenate([x, z], axis=1)
  yz = jnp.concatenate([y, z], axis=1)
  nxz, nyz, nz = (_count_within(s, eps, True, block, mesh) for s in (xz, yz, z))
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
  _checks.check_mesh(mesh)
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
  _checks.check_mesh(mesh)
  block = _check_block_size(block_size, max(n, m))
  _check_no_degenerate_neighbours(x, k, "x")
  if _checks.is_concrete(x) and _checks.is_concrete(y) and _max_multiplicity(x, y) >= k:
    raise ValueError(f"a point of x appears at least k = {k} times in y, so its k-th "
                     "neighbour in y is at distance 0 and the estimate is undefined; add noise "
                     "of very low amplitude with an explicit key")
  dtype = jnp.result_type(x.dtype, y.dtype)
  return _checks.to_base(_kl_knn(x.astype(dtype), y.astype(dtype), k, block, mesh), base)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _kl_knn(x, y, k, block, mesh):
  n, d = x.shape
  m = y.shape[0]
  rho = _knn_search(x, x, k, "euclidean", True, block, mesh)[0][:, -1]
  nu = _knn_search(x, y, k, "euclidean", False, block, mesh)[0][:, -1]
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
