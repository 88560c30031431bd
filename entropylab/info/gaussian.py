r"""Closed forms for multivariate Gaussians: differential entropy and mutual information.

Cover & Thomas, *Elements of Information Theory* (2nd ed.), Theorem 8.4.1:
:math:`h(\mathcal N(\mu, \Sigma)) = \tfrac12 \log\det(2\pi e\,\Sigma)`, and for a
Gaussian vector split into blocks ``X`` and ``Y``,
:math:`I(X;Y) = \tfrac12 \log \frac{\det\Sigma_{XX}\det\Sigma_{YY}}{\det\Sigma}`.
These are the references the sample estimators (:mod:`entropylab.info.knn`) are tested
against. Nats by default (``base=2`` for bits); ``cov: [..., d, d]`` batched over leading
axes; log-determinants come from Cholesky factors.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.info import _checks

Array = jax.Array


def _prepare_cov(cov, name: str = "cov") -> Array:
  arr = _checks.as_float_array(cov, name)
  if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2] or arr.shape[-1] == 0:
    raise ValueError(f"{name} must be [..., d, d] with d >= 1, got shape {arr.shape}")
  if _checks.is_concrete(arr):
    v = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(v)):
      raise ValueError(f"{name} contains NaN or infinite entries")
    scale = np.maximum(np.abs(v).max(axis=(-2, -1), keepdims=True), 1e-300)
    if np.any(np.abs(v - np.swapaxes(v, -1, -2)) > 1e-6 * scale):
      raise ValueError(f"{name} must be symmetric")
    if np.any(np.linalg.eigvalsh(v) <= 0):
      raise ValueError(f"{name} must be positive definite (a covariance with a zero or "
                       "negative eigenvalue has no density)")
  if jnp.finfo(arr.dtype).bits < 32:
    arr = arr.astype(jnp.float32)
  return arr


def _logdet(cov: Array) -> Array:
  chol = jnp.linalg.cholesky(cov)
  return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def gaussian_entropy(cov, base: Optional[float] = None) -> Array:
  r"""Differential entropy of :math:`\mathcal N(\mu, \Sigma)`: :math:`\tfrac12\log\det(2\pi e\Sigma)`.

  Cover & Thomas, Theorem 8.4.1 (independent of the mean).

  Args:
    cov: ``[..., d, d]`` symmetric positive definite covariance.
    base: log base; ``None`` for nats, 2 for bits.

  Returns:
    ``[...]`` the entropy.
  """
  cov = _prepare_cov(cov)
  _checks.check_base(base)
  d = cov.shape[-1]
  h = 0.5 * (d * math.log(2.0 * math.pi * math.e) + _logdet(cov))
  return _checks.to_base(h, base)


def _check_index(idx, d: int, name: str) -> list[int]:
  if isinstance(idx, (int, np.integer)) and not isinstance(idx, bool):
    idx = [idx]
  try:
    out = [int(i) for i in idx]
  except TypeError:
    raise TypeError(f"{name} must be an int or a sequence of ints, got {idx!r}") from None
  if not out:
    raise ValueError(f"{name} must name at least one coordinate")
  if len(set(out)) != len(out):
    raise ValueError(f"{name} repeats a coordinate: {out}")
  if any(not -d <= i < d for i in out):
    raise ValueError(f"{name} = {out} is out of range for d = {d}")
  return [i % d for i in out]


def gaussian_mutual_information(cov, x_idx: Sequence[int], y_idx: Sequence[int],
                                base: Optional[float] = None) -> Array:
  r"""Mutual information between two blocks of a Gaussian vector.

  .. math:: I(X;Y) = \tfrac12\left(\log\det\Sigma_{XX} + \log\det\Sigma_{YY}
     - \log\det\Sigma_{(X,Y)}\right)

  (Cover & Thomas, from Theorem 8.4.1 and :math:`I = h(X) + h(Y) - h(X,Y)`). For one
  coordinate each with correlation :math:`\rho` this is :math:`-\tfrac12\log(1-\rho^2)`.

  Args:
    cov: ``[..., d, d]`` symmetric positive definite covariance.
    x_idx: coordinates of ``X`` (int or sequence of ints, static).
    y_idx: coordinates of ``Y``, disjoint from ``x_idx``.
    base: log base; ``None`` for nats, 2 for bits.

  Returns:
    ``[...]`` the mutual information.
  """
  cov = _prepare_cov(cov)
  _checks.check_base(base)
  d = cov.shape[-1]
  xs = _check_index(x_idx, d, "x_idx")
  ys = _check_index(y_idx, d, "y_idx")
  if set(xs) & set(ys):
    raise ValueError(f"x_idx {xs} and y_idx {ys} must be disjoint")
  sub = lambda idx: cov[..., idx, :][..., :, idx]
  mi = 0.5 * (_logdet(sub(xs)) + _logdet(sub(ys)) - _logdet(sub(xs + ys)))
  return _checks.to_base(mi, base)


__all__ = ["gaussian_entropy", "gaussian_mutual_information"]
