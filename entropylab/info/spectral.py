r"""Diffusion spectral entropy and mutual information of point clouds.

Diffusion spectral entropy (DSE) and diffusion spectral mutual information (DSMI) of
Liao, Liu et al., "Assessing Neural Network Representations During Training Using Noise-Resilient
Diffusion Spectral Entropy" (ICML 2023 TAG-ML workshop; IEEE CISS 2024;
arXiv:2312.04823). The definitions follow the authors' package ``dse-dsmi`` 1.1
(``dse_dsmi.diffusion_spectral_entropy`` and
``dse_dsmi.diffusion_spectral_mutual_information``), which the tests compare against.

DSE is the Shannon entropy of the normalised spectrum of the diffusion operator built
on the points with a Gaussian kernel (diffusion maps, Coifman & Lafon, "Diffusion
maps", ACHA 21, 2006):

.. math::

  W_{ij} = \exp\bigl(-\|x_i - x_j\|^2 / (2\sigma^2)\bigr), \qquad
  K = D^{-1/2} W D^{-1/2}, \quad D = \mathrm{diag}(W \mathbf 1),

  \alpha_i = |\lambda_i(K)|^t / \textstyle\sum_j |\lambda_j(K)|^t, \qquad
  \mathrm{DSE} = -\textstyle\sum_i \alpha_i \log_2 \alpha_i .

``K`` is symmetric and similar to the random-walk matrix :math:`P = D^{-1} W`, so it
has the same eigenvalues and ``eigvalsh`` applies; they lie in ``[0, 1]`` (``W`` is a
Gaussian kernel matrix, hence positive semi-definite) and the largest is exactly 1.
``W`` keeps its self-loops (:math:`W_{ii} = 1`). The reference multiplies ``W`` by
:math:`1/(\sigma\sqrt{2\pi})`; the symmetric normalisation cancels that factor. Its
``2 \sigma^2`` in the exponent is kept (not ``\sigma^2``).

Conventions (all functions):

* Points lie along the first axis, features along the second (``x: [N, d]``); batches
  of point clouds go through ``jax.vmap``.
* Results are in bits. ``0 log 0 = 0``.
* ``sigma`` has no default: DSE is not scale free, it depends on the distances between
  points relative to ``sigma`` (the reference's default is ``sigma = 10``). Points much
  farther apart than ``sigma`` do not see each other and give ``log2 N`` bits; points
  much closer than ``sigma`` merge into one.
* Concrete inputs are validated eagerly and a ``ValueError`` names the argument.
  Inside ``jit`` only the static checks (ranks, shapes, dtypes) run.
* Pure ``jnp``: jit-able and vmap-able; ``sigma`` and ``t`` may be traced.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks

Array = jax.Array

# The diagonal value given to points left out of a masked subset (see _masked_entropy).
# The spectrum of K lies in [0, 1], so eigenvalues below _EXCLUDED / 2 are the
# left-out points' and are dropped by value; |_EXCLUDED| = 1 keeps the matrix norm 1.
_EXCLUDED = -1.0

# Memory budget, in array entries, for one step of a blocked loop: a [rows, N, d] block
# of differences (squared distances) or a batch of [N, N] matrices (DSMI subsets).
_BLOCK_ENTRIES = 1 << 22


# --------------------------------------------------------------------------- helpers


def _squared_distances(x: Array) -> Array:
  """``[N, N]`` squared Euclidean distances, summed over differences.

  ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` would lose all digits of close pairs far from the
  origin (absolute error ~ eps |x|^2), which moves the small eigenvalues that DSE
  counts. Differences keep the error relative to the distance itself and give an
  exactly zero diagonal; they cost O(N^2 d), no more than the O(N^3) eigendecomposition
  unless d >> N. Rows go in blocks to bound memory.
  """
  n, d = x.shape
  rows = max(1, min(n, _BLOCK_ENTRIES // max(1, n * d)))
  return lax.map(lambda xi: jnp.sum(jnp.square(x - xi), axis=-1), x, batch_size=rows)


def _kernel(x: Array, sigma: Array) -> Array:
  """Gaussian affinities ``exp(-|x_i - x_j|^2 / (2 sigma^2))``, exactly 1 on the diagonal.

  Zero distances give 1 even where ``2 sigma^2`` underflows to 0 (tiny ``sigma``),
  which would otherwise make 0 / 0.
  """
  d2 = _squared_distances(x)
  scaled = jnp.where(d2 > 0, d2 / (2.0 * jnp.square(sigma)), 0.0)
  return jnp.exp(-scaled)


def _spectrum_entropy_bits(lam: Array, t: Array, keep: Optional[Array] = None) -> Array:
  """Shannon entropy (bits) of ``|lam|^t / sum |lam|^t`` over the kept eigenvalues."""
  mag = jnp.abs(lam)
  if keep is not None:
    mag = jnp.where(keep, mag, 0.0)
  pos = mag > 0
  log_mag = jnp.log(jnp.where(pos, mag, 1.0))
  # (|lam| / max |lam|)^t: the same distribution, and no overflow for large t when
  # rounding puts the top eigenvalue a little above 1.
  log_top = jnp.max(jnp.where(pos, log_mag, -jnp.inf), axis=-1, keepdims=True)
  log_top = jnp.where(jnp.isfinite(log_top), log_top, 0.0)
  a = jnp.where(pos, jnp.exp(t * (log_mag - log_top)), 0.0)  # exactly 0 at lam = 0
  total = jnp.sum(a, axis=-1, keepdims=True)
  p = a / jnp.where(total > 0, total, 1.0)
  nz = p > 0
  h = -jnp.sum(jnp.where(nz, p * jnp.log2(jnp.where(nz, p, 1.0)), 0.0), axis=-1)
  return jnp.maximum(h, 0.0)


def _diffusion_operator(w: Array) -> Array:
  """``K = D^-1/2 W D^-1/2`` of affinities ``w: [n, n]`` (row sums are >= 1: self-loops)."""
  r = lax.rsqrt(jnp.sum(w, axis=-1))
  return r[:, None] * w * r[None, :]  # eigvalsh symmetrises rounding asymmetry away


def _entropy_from_kernel(w: Array, t: Array) -> Array:
  """DSE of the graph with affinities ``w: [n, n]``."""
  return _spectrum_entropy_bits(jnp.linalg.eigvalsh(_diffusion_operator(w)), t)


def _points_entropy(x: Array, sigma: Array, t: Array) -> Array:
  return _entropy_from_kernel(_kernel(x, sigma), t)


_entropy_of_points = jax.jit(_points_entropy)


def _masked_entropy(w: Array, member: Array, t: Array) -> Array:
  """DSE of the subset ``member: [N]`` (bool) of the graph ``w: [N, N]``, at fixed shape.

  Rows and columns of left-out points are zeroed and their diagonal set to
  ``_EXCLUDED``: the matrix is then (up to a permutation) ``diag(K_subset, _EXCLUDED I)``,
  whose eigenvalues below ``_EXCLUDED / 2`` are dropped. Setting them to 0 instead
  would leave ~eps-sized spurious eigenvalues that add to the entropy. An empty subset
  gives 0.
  """
  m = member.astype(w.dtype)
  deg = jnp.sum(w * m[None, :], axis=-1)
  r = jnp.where(member, lax.rsqrt(jnp.where(member, deg, 1.0)), 0.0)
  k = r[:, None] * w * r[None, :]
  k = k + jnp.diag(jnp.where(member, 0.0, _EXCLUDED).astype(w.dtype))
  lam = jnp.linalg.eigvalsh(k)
  return _spectrum_entropy_bits(lam, t, keep=lam > 0.5 * _EXCLUDED)


def _prepare_points(x) -> Array:
  arr = _checks.as_float_array(x, "x")
  if arr.ndim != 2:
    raise ValueError(f"x must have shape [N, d] (points by features), got shape {arr.shape}")
  if arr.shape[0] < 2:
    raise ValueError(f"x must hold at least 2 points, got shape {arr.shape}")
  if arr.shape[1] < 1:
    raise ValueError(f"x must have at least 1 feature, got shape {arr.shape}")
  # Test the input itself: inside jit, jnp.asarray of a NumPy constant is a tracer.
  if _checks.is_concrete(x) and not np.all(np.isfinite(np.asarray(arr))):
    raise ValueError("x contains NaN or infinite entries")
  # eigvalsh needs float32 or wider.
  return arr.astype(jnp.promote_types(arr.dtype, jnp.float32))


def _check_positive(value, name: str, dtype) -> Array:
  """A positive finite scalar (``sigma``, ``t``), checked when concrete."""
  if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
    raise TypeError(f"{name} must be a positive number, got {value!r}")
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
  if _checks.is_concrete(value):
    v = np.asarray(value)
    if not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
      raise TypeError(f"{name} must be a positive number, got dtype {v.dtype}")
    f = float(v)
    if not (math.isfinite(f) and f > 0):
      raise ValueError(f"{name} must be a positive finite number, got {value}")
  return jnp.asarray(value, dtype=dtype)


# --------------------------------------------------------------------------- DSE


def diffusion_spectral_entropy(x, sigma, t=1) -> Array:
  r"""Diffusion spectral entropy of a point cloud, in bits.

  The DSE definition of Liao, Liu et al. (arXiv:2312.04823),
  :math:`\mathrm{DSE}(P, t) = -\sum_i \alpha_{t,i} \log_2 \alpha_{t,i}` with
  :math:`\alpha_{t,i} = |\lambda_i|^t / \sum_j |\lambda_j|^t` and :math:`\lambda_i` the
  eigenvalues of the diffusion matrix :math:`P = D^{-1} W`,
  :math:`W_{ij} = \exp(-\|x_i - x_j\|^2 / (2\sigma^2))`, as computed by
  ``dse_dsmi.diffusion_spectral_entropy`` (``dse-dsmi`` 1.1; the eigenvalues are taken
  from the similar symmetric matrix :math:`D^{-1/2} W D^{-1/2}`). Differences from
  that function: no random subsampling to ``max_N = 10000`` points (pass the points to
  use), and no :math:`2.2 \cdot 10^{-16}` added to every :math:`\alpha_i` (it shifts the
  reference by about :math:`10^{-14} N` bits).

  Ranges between 0 (all points merged: one eigenvalue 1, the rest 0) and
  :math:`\log_2 N` (no two points within reach of ``sigma``: :math:`K = I`); ``k``
  tight clusters far apart give about :math:`\log_2 k`. Larger ``t`` suppresses small
  (noise) eigenvalues and lowers the value.

  Args:
    x: ``[N, d]`` points, ``N >= 2``, finite. Integer arrays are converted to floats;
      float16/bfloat16 are computed in float32.
    sigma: Gaussian kernel bandwidth, a positive scalar in the units of ``x``. No
      default on purpose: the value depends on the scale of ``x`` relative to
      ``sigma``. The reference package defaults to ``sigma = 10``.
    t: diffusion time, a positive scalar (the reference uses integers, usually 1 or
      2); the eigenvalue magnitudes are raised to this power.

  Returns:
    A scalar in bits, in ``[0, log2 N]``, of the dtype of ``x`` (at least float32).
    Cost: O(N^2 d) for the distances and one O(N^3) symmetric eigendecomposition;
    memory O(N^2).
  """
  arr = _prepare_points(x)
  s = _check_positive(sigma, "sigma", arr.dtype)
  tt = _check_positive(t, "t", arr.dtype)
  return _entropy_of_points(arr, s, tt)


# --------------------------------------------------------------------------- DSMI


def _prepare_labels(y, n: int, num_classes: Optional[int]):
  """Returns ``(labels, concrete)``: a jnp array, and a NumPy copy when ``y`` has values."""
  if isinstance(y, (str, bytes)) or y is None:
    raise TypeError(f"y must be an array of integer class labels, got {type(y).__name__}")
  arr = jnp.asarray(y)
  if not jnp.issubdtype(arr.dtype, jnp.integer):
    raise TypeError(f"y must hold integer class labels, got dtype {arr.dtype}")
  if arr.shape != (n,):
    raise ValueError(f"y must have shape [N] = ({n},) to match x, got shape {arr.shape}")
  if num_classes is not None:
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
      raise TypeError(f"num_classes must be an int or None, got {type(num_classes).__name__}")
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if _checks.is_concrete(y):
      v = np.asarray(y)
      if np.any(v < 0) or np.any(v >= num_classes):
        raise ValueError(
            f"y must lie in [0, num_classes) = [0, {num_classes}), got labels from "
            f"{v.min()} to {v.max()}")
  elif not _checks.is_concrete(y):
    raise ValueError(
        "num_classes is required when y is traced (inside jit/vmap over y): the classes "
        "must be known at trace time; labels then lie in [0, num_classes)")
  return arr, (np.asarray(y) if _checks.is_concrete(y) else None)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _subset_orders(key, n: int, num_repetitions: int) -> Array:
  """``[R, N]``: one uniformly random order of the points per repetition."""
  keys = jax.random.split(key, num_repetitions)
  return jax.vmap(lambda k: jax.random.permutation(k, n))(keys)


def _combine(h: Array, counts: Array, n: int) -> Array:
  """``sum_c (n_c / N) (mean_r h[c, 1 + r] - h[c, 0])`` for ``h: [C, R + 1]``."""
  weights = counts.astype(h.dtype) / n
  return jnp.sum(weights * (jnp.mean(h[:, 1:], axis=-1) - h[:, 0]))


@jax.jit
def _dsmi_gathered(x, members, counts, orders, sigma, t) -> Array:
  """Concrete labels: each class and its stand-ins gathered into ``M = max n_c`` points.

  ``members: [C, M]`` holds each class's point indices, padded past ``counts[c]``;
  padding is masked out, so one program serves every class (one compile per
  ``(N, C, M, R)``) at ``C (R + 1)`` eigendecompositions of ``M x M``.
  """
  num_classes, m = members.shape
  reps = orders.shape[0]
  first = jnp.arange(m)[None, :] < counts[:, None]  # [C, M]: the first n_c slots
  idx = jnp.concatenate(
      [members[:, None, :], jnp.broadcast_to(orders[None, :, :m], (num_classes, reps, m))], axis=1)
  valid = jnp.broadcast_to(first[:, None, :], idx.shape)
  idx = idx.reshape(-1, m)
  valid = valid.reshape(-1, m)
  d = x.shape[1]
  per_batch = max(1, min(idx.shape[0], _BLOCK_ENTRIES // (m * m * d)))
  h = lax.map(lambda a: _masked_entropy(_kernel(x[a[0]], sigma), a[1], t), (idx, valid),
              batch_size=per_batch)
  return _combine(h.reshape(num_classes, reps + 1), counts, x.shape[0])


def _dsmi_by_gathering(x, labels: np.ndarray, sigma, t, orders) -> Array:
  classes, counts = np.unique(labels, return_counts=True)
  members = np.zeros((classes.size, int(counts.max())), np.int32)
  for i, c in enumerate(classes):
    members[i, :counts[i]] = np.flatnonzero(labels == c)
  return _dsmi_gathered(x, members, counts.astype(np.int32), orders, sigma, t)


def _dsmi_by_masking(x, y, sigma, t, orders, num_classes: int) -> Array:
  """Traced labels: the same quantity with every subset a mask over all ``N`` points."""
  n = x.shape[0]
  reps = orders.shape[0]
  w = _kernel(x, sigma)
  member = y[None, :] == jnp.arange(num_classes)[:, None]  # [C, N]
  counts = jnp.sum(member, axis=-1)  # [C]
  rank = jnp.argsort(orders, axis=-1)  # rank[r, j]: position of point j in order r
  random_member = rank[None, :, :] < counts[:, None, None]  # [C, R, N]
  masks = jnp.concatenate([member[:, None, :], random_member], axis=1).reshape(-1, n)
  per_batch = max(1, min(masks.shape[0], _BLOCK_ENTRIES // (n * n)))
  h = lax.map(lambda m: _masked_entropy(w, m, t), masks, batch_size=per_batch)
  return _combine(h.reshape(num_classes, reps + 1), counts, n)


def diffusion_spectral_mutual_information(x, y, sigma, t=1, *, key, num_repetitions: int = 5,
                                          num_classes: Optional[int] = None) -> Array:
  r"""Diffusion spectral mutual information between points and class labels, in bits.

  The DSMI definition of Liao, Liu et al. (arXiv:2312.04823),
  :math:`\mathrm{DSMI}(X; Y) = \mathrm{DSE}(X) - \mathrm{DSE}(X \mid Y)` with
  :math:`\mathrm{DSE}(X \mid Y) = \sum_c p(Y = c)\, \mathrm{DSE}(X \mid Y = c)`, estimated
  as ``dse_dsmi.diffusion_spectral_mutual_information`` (``dse-dsmi`` 1.1, discrete
  labels) does:

  .. math::

    \mathrm{DSMI} = \sum_c \frac{n_c}{N} \Bigl( \frac{1}{R} \sum_{r=1}^{R}
      \mathrm{DSE}(X^*_{c,r}) - \mathrm{DSE}(\{x_i : y_i = c\}) \Bigr),

  where :math:`n_c` counts class ``c`` and each :math:`X^*_{c,r}` is a uniformly random
  subset of :math:`n_c` of all ``N`` points. DSE grows with the number of points (up to
  :math:`\log_2 n`), so ``DSE(X)`` is taken on subsets of the class's size rather than
  on all ``N`` points; otherwise uninformative (shuffled) labels would score above 0 by
  that growth alone, up to :math:`\log_2 C` for ``C`` balanced classes. There is
  therefore no variant without randomness, and ``key`` is required.

  Choices, against the reference:

  * Subsets: repetition ``r`` draws one random order of the ``N`` points from
    ``jax.random.split(key, num_repetitions)[r]`` and class ``c`` uses its first
    :math:`n_c` points, so the subsets of different classes in one repetition are
    nested. Each is still uniform over subsets of its size, and the estimate has the
    same expectation as the reference's, which reseeds Python's ``random`` with the
    same seed for each class (its equal-sized classes share subsets). Values with a
    given ``key`` therefore differ from the reference's by the sampling noise only.
  * Only discrete labels: the reference also bins continuous scalars and spectrally
    clusters vector-valued references; cluster first and pass the cluster ids here.
  * DSE as in :func:`diffusion_spectral_entropy`, same ``sigma`` and ``t`` throughout.

  Args:
    x: ``[N, d]`` finite points, ``N >= 2``.
    y: ``[N]`` integer class labels. Any integer values when concrete; when traced
      (jit/vmap over ``y``) ``num_classes`` must be given and labels lie in
      ``[0, num_classes)``.
    sigma: Gaussian kernel bandwidth, a positive scalar; no default (the reference's is
      10). See :func:`diffusion_spectral_entropy`.
    t: diffusion time, a positive scalar.
    key: a ``jax.random`` key (e.g. ``jax.random.key(0)``) for the random subsets.
    num_repetitions: ``R``, random subsets per class (the reference's default, 5).
    num_classes: static number of classes, needed only when ``y`` is traced.

  Returns:
    A scalar in bits. Near 0 when the labels say nothing about where points lie, up
    to about :math:`\log_2 k` for ``k`` balanced classes that form tight, separate
    clusters; it can come out slightly negative by sampling noise.

  Cost: ``C (R + 1)`` symmetric eigendecompositions for ``C`` classes. With concrete
  labels each is ``M x M``, ``M`` the largest class (smaller classes are padded and
  masked, so one compiled program serves all classes); with traced labels the sizes
  are unknown at trace time and each is ``N x N``, much slower: close over concrete
  labels inside ``jit`` where possible.
  """
  arr = _prepare_points(x)
  n = arr.shape[0]
  labels, concrete_labels = _prepare_labels(y, n, num_classes)
  s = _check_positive(sigma, "sigma", arr.dtype)
  tt = _check_positive(t, "t", arr.dtype)
  if (isinstance(num_repetitions, (bool, np.bool_))
      or not isinstance(num_repetitions, (int, np.integer)) or num_repetitions < 1):
    raise ValueError(f"num_repetitions must be a positive int, got {num_repetitions!r}")
  if isinstance(key, (int, np.integer)) or key is None:
    raise TypeError("key must be a jax.random key (e.g. jax.random.key(0)), not an int seed")
  orders = _subset_orders(key, n, int(num_repetitions))
  if concrete_labels is not None:
    return _dsmi_by_gathering(arr, concrete_labels, s, tt, orders)
  return _dsmi_by_masking(arr, labels, s, tt, orders, int(num_classes))


__all__ = [
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
]
