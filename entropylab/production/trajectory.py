r"""Trajectory-based entropy production estimators: NEEP and the short-time TUR.

Both read the entropy production rate from transitions ``(x_t, x_{t+tau})`` of a
stationary process, with no model of its dynamics; they are the baselines against which
:mod:`entropylab.production.score` is compared.

* NEEP (Kim, Bae, Lee & Jeong, "Learning entropy production via neural networks",
  PRL 125, 140604 (2020)): an antisymmetric function
  :math:`\Delta S(x, x') = h(x, x') - h(x', x)` maximising
  :math:`J = E[\Delta S - e^{-\Delta S}]` over forward transitions. The maximiser is
  the log-ratio :math:`\log p(x, x') / p(x', x)` of forward and reversed transition
  densities, where :math:`J = \Sigma_\tau - 1` with :math:`\Sigma_\tau =
  D_{KL}(p(x, x') \| p(x', x))` (:func:`entropylab.production.ou.ou_pair_entropy_production`
  for linear systems); :math:`E[\Delta S] / \tau` estimates the rate, exactly as
  :math:`\tau \to 0` for fully observed diffusions with even variables.
* Short-time TUR (Manikandan, Gupta & Krishnamurthy, "Inferring entropy production
  from short experiments", PRL 124, 120603 (2020)): for any current
  :math:`J_d = \sum_t d(\bar x_t) \cdot \Delta x_t` (Stratonovich midpoints),
  :math:`\dot S \ge 2 E[J_d]^2 / (\tau \mathrm{Var} J_d)` per step of length
  :math:`\tau`, with equality as :math:`\tau \to 0` for the optimal
  :math:`d = D^{-1} v`. Over a linear basis :math:`d(x) = c + A x` the best bound is
  :math:`2\mu^\top C^{+}\mu / \tau` with :math:`\mu, C` the mean and covariance of the
  basis currents; it is exact for linear (Ornstein-Uhlenbeck) systems, whose optimal
  current is linear.

Rates are in nats per unit time.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.info import _checks

Array = jax.Array


def _check_pairs(x, x_next) -> tuple[Array, Array]:
  x = _checks.as_float_array(x, "x")
  x_next = _checks.as_float_array(x_next, "x_next")
  if x.ndim < 2 or x.shape != x_next.shape:
    raise ValueError(f"x and x_next must be batches of states [B, *S] of the same shape, got "
                     f"{x.shape} and {x_next.shape}")
  for name, a in (("x", x), ("x_next", x_next)):
    if _checks.is_concrete(a) and not np.all(np.isfinite(np.asarray(a))):
      raise ValueError(f"{name} has non-finite entries")
  return x, x_next


def _check_tau(tau) -> None:
  if _checks.is_concrete(jnp.asarray(tau)):
    if np.ndim(tau) != 0 or not (np.isfinite(float(tau)) and float(tau) > 0):
      raise ValueError(f"tau must be a finite positive scalar, got {tau!r}")


def neep_delta_s(h: Callable[[Array, Array], Array], x, x_next) -> Array:
  r""":math:`\Delta S = h(x, x') - h(x', x)` per transition, ``[B]`` (nats), for a
  function ``h(state, state) -> []`` (Kim et al. 2020)."""
  if not callable(h):
    raise TypeError(f"h must be callable, got {type(h).__name__}")
  x, x_next = _check_pairs(x, x_next)
  forward = jax.vmap(h)(x, x_next)
  return forward - jax.vmap(h)(x_next, x)


def neep_objective(h: Callable[[Array, Array], Array], x, x_next) -> Array:
  r"""NEEP's objective :math:`J = E[\Delta S - e^{-\Delta S}]` over forward transitions
  (Kim et al. 2020); maximise it (minimise ``-J``). At the optimum
  :math:`J = \Sigma_\tau - 1`, :math:`\Sigma_\tau` the entropy produced per transition.

  Args:
    h: ``h(state, state) -> []``, e.g. an MLP on the concatenated pair.
    x: ``[B, *S]`` states.
    x_next: ``[B, *S]`` the states ``tau`` later.

  Returns:
    ``[]`` the objective (nats).
  """
  ds = neep_delta_s(h, x, x_next)
  return jnp.mean(ds - jnp.exp(-ds))


def neep_entropy_production(h: Callable[[Array, Array], Array], x, x_next, tau,
                            base: Optional[float] = None) -> Array:
  r"""NEEP's rate estimate :math:`E[\Delta S] / \tau` (nats per unit time).

  Args:
    h, x, x_next: as in :func:`neep_objective`.
    tau: time between ``x`` and ``x_next``, ``> 0``.
    base: log base; ``None`` for nats.

  Returns:
    ``[]`` the rate.
  """
  _check_tau(tau)
  _checks.check_base(base)
  return _checks.to_base(jnp.mean(neep_delta_s(h, x, x_next)) / tau, base)


def linear_currents(x, x_next, coordinates: Optional[Sequence[int]] = None) -> Array:
  r"""Per-transition currents of the linear basis, ``[B, K]``: with midpoint
  :math:`\bar x = (x + x')/2` and increment :math:`\Delta = x' - x` over the chosen
  coordinates ``i`` (all by default), the currents :math:`\Delta_i` and
  :math:`\bar x_j \Delta_i` for every ``j``: ``K = c (n + 1)`` for ``c`` coordinates of
  an ``n``-dimensional state (flattened)."""
  x, x_next = _check_pairs(x, x_next)
  a, b = x.reshape(x.shape[0], -1), x_next.reshape(x.shape[0], -1)
  n = a.shape[1]
  idx = np.arange(n) if coordinates is None else np.asarray(coordinates)
  if idx.ndim != 1 or idx.size == 0 or np.any(idx < 0) or np.any(idx >= n):
    raise ValueError(f"coordinates must be a non-empty list of indices in [0, {n}), got "
                     f"{coordinates!r}")
  inc = (b - a)[:, idx]
  mid = 0.5 * (a + b)
  features = jnp.concatenate([jnp.ones((a.shape[0], 1), a.dtype), mid], axis=1)
  return (inc[:, :, None] * features[:, None, :]).reshape(a.shape[0], -1)


def tur_entropy_production(x, x_next, tau, coordinates: Optional[Sequence[int]] = None,
                           base: Optional[float] = None) -> Array:
  r"""Short-time TUR estimate :math:`2\mu^\top C^{+}\mu / \tau` over linear currents.

  Manikandan, Gupta & Krishnamurthy (PRL 2020), short-time TUR, maximised over the currents
  :func:`linear_currents`: ``mu`` and ``C`` are their mean and covariance over the
  ``B`` transitions. A lower bound on the rate for any system, tight as
  :math:`\tau \to 0` when the optimal current :math:`D^{-1}v` is linear (linear SDEs).
  Restrict ``coordinates`` to the noisy ones: a noiseless coordinate's increments have
  :math:`O(\tau^2)` variance and make the ratio diverge.

  Args:
    x: ``[B, *S]`` states; ``x_next``: the states ``tau`` later.
    tau: sampling interval ``> 0``.
    coordinates: indices (of the flattened state) whose increments form currents.
    base: log base; ``None`` for nats per unit time.

  Returns:
    ``[]`` the rate estimate.
  """
  _check_tau(tau)
  _checks.check_base(base)
  j = linear_currents(x, x_next, coordinates)
  mu = jnp.mean(j, axis=0)
  c = jnp.cov(j, rowvar=False).reshape(mu.shape[0], mu.shape[0])
  return _checks.to_base(2.0 * mu @ jnp.linalg.pinv(c, hermitian=True) @ mu / tau, base)


__all__ = [
    "linear_currents",
    "neep_delta_s",
    "neep_entropy_production",
    "neep_objective",
    "tur_entropy_production",
]
