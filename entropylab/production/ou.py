r"""Linear (Ornstein-Uhlenbeck) systems: stationary covariance and exact entropy production.

The linear SDE :math:`dz = M z\,dt + \sqrt{2D}\,dW` with a stable drift matrix ``M``
(every eigenvalue has negative real part) and a symmetric positive semidefinite
diffusion ``D`` has the Gaussian stationary density :math:`\rho = N(0, \Sigma)`, where
:math:`\Sigma` solves the Lyapunov equation

.. math:: M\Sigma + \Sigma M^\top + 2D = 0.

Its probability-flow velocity is :math:`v(z) = Mz - D\nabla\log\rho(z) = (M + D\Sigma^{-1})z`
and its entropy production rate (Boffi & Vanden-Eijnden, "Deep learning probability
flows and entropy production rates in active matter", PNAS 2024: the rate as the
probability-flow velocity's weighted norm; Seifert, Rep. Prog. Phys. 75, 126001 (2012),
for the elliptic case) is

.. math:: \dot S = E_\rho[v^\top D^{+} v] = \mathrm{Tr}(D^{+} V \Sigma V^\top),\qquad V = M + D\Sigma^{-1},

in nats per unit time (divide by ``log 2`` for bits). ``D^+`` is the pseudo-inverse: with
noise on only some coordinates (a hypoelliptic system, such as active particles whose
positions carry no noise) only those coordinates produce entropy. For invertible ``D``
this is :math:`\mathrm{Tr}(M^\top D^{-1} M \Sigma) + \mathrm{Tr}\,M`.

These closed forms are the references that the learned-score and trajectory estimators
of :mod:`entropylab.production` are validated against. :func:`ou_restricted_score_bound`
gives the most that a score seeing only part of the state can certify, and
:func:`active_spring_ring` is a linear stand-in for a cluster of active particles.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks

Array = jax.Array

# Relative size below which an eigenvalue of D counts as zero (no noise in that
# direction), in units of D's largest eigenvalue.
_RANK_RTOL = 1e-10
# Newton iterations of the matrix sign function: convergence is quadratic, so 60 is
# far more than a well-posed problem needs; the loop stops at the first fixed point.
_MAX_SIGN_ITERATIONS = 60


def _square(a, name: str) -> Array:
  arr = _checks.as_float_array(a, name)
  if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
    raise ValueError(f"{name} must be a square [n, n] matrix, got shape {arr.shape}")
  if _checks.is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
    raise ValueError(f"{name} has non-finite entries")
  return arr


def check_drift_matrix(m, name: str = "M") -> Array:
  """``m`` as a float ``[n, n]`` array; concrete input must be stable (every eigenvalue
  with negative real part), else :class:`ValueError` naming ``name``."""
  arr = _square(m, name)
  if _checks.is_concrete(arr):
    eig = np.linalg.eigvals(np.asarray(arr, np.float64))
    worst = float(np.max(eig.real))
    if not worst < 0:
      raise ValueError(f"{name} is not stable: an eigenvalue has real part {worst:.6g} >= 0, "
                       "so the process has no stationary density")
  return arr


def check_diffusion_matrix(d, n: int, name: str = "D") -> Array:
  """``d`` as a float ``[n, n]`` array (a ``[n]`` vector means ``diag(d)``); concrete
  input must be symmetric positive semidefinite and nonzero."""
  arr = _checks.as_float_array(d, name)
  if arr.ndim == 1:
    arr = jnp.diag(arr)
  arr = _square(arr, name)
  if arr.shape[0] != n:
    raise ValueError(f"{name} must be [{n}, {n}] (or [{n}]) to match M, got {arr.shape}")
  if _checks.is_concrete(arr):
    v = np.asarray(arr, np.float64)
    scale = max(float(np.max(np.abs(v))), np.finfo(np.float64).tiny)
    if not np.allclose(v, v.T, rtol=0, atol=1e-6 * scale):
      raise ValueError(f"{name} must be symmetric")
    lam = np.linalg.eigvalsh(0.5 * (v + v.T))
    if float(lam[-1]) <= 0:
      raise ValueError(f"{name} must be positive semidefinite and nonzero, got largest "
                       f"eigenvalue {float(lam[-1]):.6g}")
    if float(lam[0]) < -1e-6 * float(lam[-1]):
      raise ValueError(f"{name} must be positive semidefinite, got eigenvalue "
                       f"{float(lam[0]):.6g}")
  return arr


def _lyapunov(m: Array, d: Array) -> Array:
  """Solves ``m s + s m^T + 2 d = 0`` for stable ``m`` by the Newton iteration of the
  matrix sign function (Roberts 1980; Benner, Quintana-Orti & Quintana-Orti 2004):
  ``A_{k+1} = (A_k + A_k^{-1}) / 2``, ``C_{k+1} = (C_k + A_k^{-1} C_k A_k^{-T}) / 2``
  from ``A_0 = m``, ``C_0 = 2 d``; ``A_k -> -I`` and ``C_k -> 2 s``. Each step is scaled
  by ``|det A_k|^{-1/n}`` (Byers 1987), which leaves the limits unchanged."""
  n = m.shape[0]

  def step(state):
    a, c, _, i = state
    a_inv = jnp.linalg.inv(a)
    _, logdet = jnp.linalg.slogdet(a)
    mu = jnp.exp(-logdet / n)
    a_new = 0.5 * (mu * a + a_inv / mu)
    c_new = 0.5 * (mu * c + (a_inv @ c @ a_inv.T) / mu)
    change = jnp.max(jnp.abs(a_new - a))
    return a_new, c_new, change, i + 1

  def keep_going(state):
    _, _, change, i = state
    tol = 10 * n * jnp.finfo(m.dtype).eps
    return (change > tol) & (i < _MAX_SIGN_ITERATIONS)

  init = (m, 2.0 * d, jnp.array(jnp.inf, m.dtype), jnp.int32(0))
  _, c, _, _ = lax.while_loop(keep_going, step, init)
  s = 0.5 * c
  return 0.5 * (s + s.T)


def lyapunov_covariance(M, D) -> Array:
  r"""Stationary covariance :math:`\Sigma` of :math:`dz = Mz\,dt + \sqrt{2D}\,dW`.

  Solves :math:`M\Sigma + \Sigma M^\top + 2D = 0`. Jit- and vmap-able; float64 input
  gives float64 accuracy (float32 loses digits when ``M`` is ill-conditioned).

  Args:
    M: ``[n, n]`` stable drift matrix.
    D: ``[n, n]`` symmetric positive semidefinite diffusion matrix, or ``[n]`` for a
      diagonal one.

  Returns:
    ``[n, n]`` symmetric :math:`\Sigma` (in the units of ``z`` squared).
  """
  m = check_drift_matrix(M)
  d = check_diffusion_matrix(D, m.shape[0])
  dtype = jnp.result_type(m.dtype, d.dtype)
  return _lyapunov(m.astype(dtype), d.astype(dtype))


def _pinv_psd(d: Array) -> Array:
  lam, u = jnp.linalg.eigh(0.5 * (d + d.T))
  keep = lam > _RANK_RTOL * jnp.max(lam)
  inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
  return (u * inv) @ u.T


def ou_entropy_production(M, D, per_coordinate: bool = False,
                          base: Optional[float] = None) -> Array:
  r"""Exact stationary entropy production rate of :math:`dz = Mz\,dt + \sqrt{2D}\,dW`.

  :math:`\dot S = \mathrm{Tr}(D^{+} V\Sigma V^\top)` with :math:`V = M + D\Sigma^{-1}`
  (Boffi & Vanden-Eijnden, PNAS 2024), which for invertible ``D`` equals
  :math:`\mathrm{Tr}(M^\top D^{-1} M\Sigma) + \mathrm{Tr}\,M`. Coordinates without noise
  (zero rows of ``D``) contribute nothing: for active particles with noise only in
  their self-propulsion this is the hypoelliptic rate
  :math:`\gamma^{-1}E|v_g|^2`.

  Examples of the closed forms (tested): two beads at temperatures 1 and 10 joined by
  unit springs (:func:`bead_spring_chain`) give 2.025; a trapped active
  Ornstein-Uhlenbeck particle gives :math:`\gamma v_0^2 / (\epsilon (A + \gamma))` per
  dimension.

  Args:
    M: ``[n, n]`` stable drift matrix.
    D: ``[n, n]`` symmetric positive semidefinite diffusion matrix, or ``[n]`` diagonal.
    per_coordinate: if true, return the ``[n]`` terms
      :math:`(D^{+} V \Sigma V^\top)_{ii}`, which sum to the rate; for diagonal ``D``
      the term ``i`` is :math:`E[v_i^2] / D_{ii}`, the production of coordinate ``i``.
    base: log base; ``None`` for nats per unit time, 2 for bits.

  Returns:
    ``[]`` (or ``[n]``) entropy production per unit time, in nats (or ``base`` units).
  """
  m = check_drift_matrix(M)
  d = check_diffusion_matrix(D, m.shape[0])
  _checks.check_base(base)
  dtype = jnp.result_type(m.dtype, d.dtype)
  m, d = m.astype(dtype), d.astype(dtype)
  sigma = _lyapunov(m, d)
  v = m + d @ jnp.linalg.inv(sigma)
  terms = jnp.diagonal(_pinv_psd(d) @ v @ sigma @ v.T)
  out = terms if per_coordinate else jnp.sum(terms)
  return _checks.to_base(out, base)


def ou_restricted_score_bound(M, D, support, per_coordinate: bool = False,
                              base: Optional[float] = None) -> Array:
  r"""The most entropy production that a score seeing only part of the state can
  certify, for :math:`dz = Mz\,dt + \sqrt{2D}\,dW` with diagonal ``D``.

  A score fitted by score matching approaches, in :math:`L^2(\rho)`, the best function
  its inputs allow; the lower bound of
  :func:`entropylab.production.hypoelliptic_entropy_production_bound` is then
  :math:`B(s) = \dot S - E[(s - s^*)^\top D (s - s^*)]` (Boffi & Vanden-Eijnden, PNAS
  2024; for noise in ``g`` only the weight is :math:`\gamma` on the ``g`` rows). If
  component ``i`` of the score may depend only on the coordinates :math:`S_i =
  \{j: \mathrm{support}_{ij}\}`, the best is :math:`E[s^*_i \mid z_{S_i}]`, linear for
  the Gaussian stationary density, with error :math:`E(s_i - s^*_i)^2 =
  (\Sigma^{-1})_{ii} - [(\Sigma_{S_iS_i})^{-1}]_{ii}` (the second term only if
  :math:`i \in S_i`), since :math:`E[z\,s^{*\top}] = -I`. So this returns
  :math:`\dot S - \sum_i D_{ii}((\Sigma^{-1})_{ii} - [(\Sigma_{S_iS_i})^{-1}]_{ii})`,
  the bound reached by the best score of any form (network or not) with that
  locality. With full support it is :func:`ou_entropy_production` (tested).

  Args:
    M: ``[n, n]`` stable drift matrix.
    D: ``[n]`` diagonal of the diffusion (or a diagonal ``[n, n]`` matrix), ``>= 0``.
    support: ``[n, n]`` booleans, ``support[i, j]`` when score component ``i`` may
      depend on coordinate ``j``.
    per_coordinate: return the ``[n]`` deficits
      :math:`D_{ii}E(s_i - s^*_i)^2` instead of the bound.
    base: log base; ``None`` for nats per unit time, 2 for bits.

  Returns:
    ``[]`` the bound (nats per unit time, or ``base`` units), or ``[n]`` deficits.
  """
  m = check_drift_matrix(M)
  d = check_diffusion_matrix(D, m.shape[0])
  n = m.shape[0]
  if _checks.is_concrete(d) and not np.allclose(np.asarray(d), np.diag(np.diagonal(d))):
    raise ValueError("D must be diagonal")
  mask = jnp.asarray(support)
  if mask.shape != (n, n):
    raise ValueError(f"support must be [{n}, {n}] to match M, got shape {mask.shape}")
  if mask.dtype != jnp.bool_:
    raise TypeError(f"support must hold booleans, got dtype {mask.dtype}")
  _checks.check_base(base)
  dtype = jnp.result_type(m.dtype, d.dtype)
  m, d = m.astype(dtype), d.astype(dtype)
  sigma = _lyapunov(m, d)
  precision = jnp.linalg.inv(sigma)
  eye = jnp.eye(n, dtype=dtype)

  def best(i, keep):
    # Sigma on the kept coordinates, the identity elsewhere: its inverse is the kept
    # block's inverse on the kept coordinates.
    k = keep.astype(dtype)
    block = sigma * k[:, None] * k[None, :] + jnp.diag(1.0 - k)
    return jnp.where(keep[i], jnp.linalg.solve(block, eye[i])[i], 0.0)

  diag = jnp.diagonal(d)
  if _checks.is_concrete(diag):
    # Rows without noise carry no weight: solve only for the others.
    rows = jnp.asarray(np.flatnonzero(np.asarray(diag) > 0))
    explained = jnp.zeros(n, dtype).at[rows].set(jax.vmap(best)(rows, mask[rows]))
  else:
    explained = jax.vmap(best)(jnp.arange(n), mask)
  deficit = diag * (jnp.diagonal(precision) - explained)
  out = deficit if per_coordinate else ou_entropy_production(m, d) - jnp.sum(deficit)
  return _checks.to_base(out, base)


def _pair_covariances(m: Array, d: Array, tau) -> tuple[Array, Array, Array]:
  """Stationary covariance, propagator ``e^{M tau}`` and the transition noise covariance
  ``Sigma - E Sigma E^T``."""
  sigma = _lyapunov(m, d)
  e = jax.scipy.linalg.expm(m * tau)
  q = sigma - e @ sigma @ e.T
  return sigma, e, 0.5 * (q + q.T)


def ou_pair_entropy_production(M, D, tau, base: Optional[float] = None) -> Array:
  r"""Entropy produced per transition of the sampled chain :math:`(z_0, z_	au)`:
  :math:`\Sigma_	au = D_{KL}(p(z_0, z_	au) \,\|\, p(z_	au, z_0))` in stationarity.

  The optimum of NEEP's objective at sampling interval ``tau`` (Kim et al., PRL 2020):
  :math:`\Sigma_	au / 	au` tends to :func:`ou_entropy_production` as
  :math:`	au 	o 0` (invertible ``D``) and lies below it for every ``tau``. Both pair
  densities are Gaussian with covariances :math:`C = [[\Sigma, \Sigma E^	op], [E\Sigma,
  \Sigma]]` and its block transpose, :math:`E = e^{M	au}`, so
  :math:`\Sigma_	au = 	frac12(\mathrm{Tr}(C_r^{-1} C) - 2n)`.

  Args:
    M: ``[n, n]`` stable drift; D: ``[n, n]`` (or ``[n]``) positive definite diffusion.
    tau: sampling interval ``> 0``.
    base: log base; ``None`` for nats.

  Returns:
    ``[]`` nats (or ``base`` units) per transition.
  """
  m = check_drift_matrix(M)
  d = check_diffusion_matrix(D, m.shape[0])
  if _checks.is_concrete(jnp.asarray(tau)) and not float(tau) > 0:
    raise ValueError(f"tau must be positive, got {tau}")
  _checks.check_base(base)
  dtype = jnp.result_type(m.dtype, d.dtype)
  sigma, e, _ = _pair_covariances(m.astype(dtype), d.astype(dtype), tau)
  c = jnp.block([[sigma, sigma @ e.T], [e @ sigma, sigma]])
  c_rev = jnp.block([[sigma, e @ sigma], [sigma @ e.T, sigma]])
  kl = 0.5 * (jnp.trace(jnp.linalg.solve(c_rev, c)) - c.shape[0])
  return _checks.to_base(kl, base)


def sample_ou_pairs(key: Array, M, D, tau, num: int) -> tuple[Array, Array]:
  r"""``num`` exact stationary transitions :math:`(z_0, z_	au)` of the linear SDE:
  :math:`z_0 \sim N(0, \Sigma)`, :math:`z_	au = e^{M	au} z_0 + \eta`,
  :math:`\eta \sim N(0, \Sigma - e^{M	au}\Sigma e^{M^	op	au})`; ``([num, n], [num, n])``.
  No time-step error: the references for trajectory estimators."""
  m = check_drift_matrix(M)
  d = check_diffusion_matrix(D, m.shape[0])
  _checks.check_positive_int(num, "num")
  dtype = jnp.result_type(m.dtype, d.dtype)
  sigma, e, q = _pair_covariances(m.astype(dtype), d.astype(dtype), tau)
  k0, k1 = jax.random.split(key)
  n = m.shape[0]
  z0 = jax.random.normal(k0, (num, n), dtype) @ _sqrt_psd(sigma).T
  eta = jax.random.normal(k1, (num, n), dtype) @ _sqrt_psd(q).T
  return z0, z0 @ e.T + eta


def _sqrt_psd(a: Array) -> Array:
  lam, u = jnp.linalg.eigh(0.5 * (a + a.T))
  return (u * jnp.sqrt(jnp.maximum(lam, 0.0))) @ u.T


def bead_spring_chain(temperatures, stiffness: float = 1.0,
                      friction: float = 1.0) -> tuple[Array, Array]:
  r"""Drift and diffusion matrices of the overdamped bead-spring chain.

  ``n`` beads on a line, neighbours and the two end walls joined by springs of constant
  ``k``, bead ``i`` in a bath at temperature :math:`T_i` (Boltzmann constant 1):
  :math:`\gamma\,dx_i = -k(2x_i - x_{i-1} - x_{i+1})\,dt + \sqrt{2\gamma T_i}\,dW_i` with
  :math:`x_0 = x_{n+1} = 0`. The benchmark of Kim et al., "Learning entropy production
  via neural networks", PRL 125, 140604 (2020), with :math:`k = \gamma = 1`: two beads
  at (1, 10) produce 2.025 nats per unit time, five beads at temperatures evenly spaced
  from 1 to 10 produce 0.629817 (both from :func:`ou_entropy_production`, tested).

  Args:
    temperatures: ``[n]`` positive bath temperatures.
    stiffness: spring constant ``k > 0``.
    friction: friction coefficient :math:`\gamma > 0`.

  Returns:
    ``(M [n, n], D [n, n])`` with :math:`M = -(k/\gamma) L` (``L`` the tridiagonal
    ``2, -1`` matrix) and :math:`D = \mathrm{diag}(T)/\gamma`.
  """
  t = _checks.as_float_array(temperatures, "temperatures")
  if t.ndim != 1 or t.shape[0] < 1:
    raise ValueError(f"temperatures must be a non-empty [n] vector, got shape {t.shape}")
  if _checks.is_concrete(t) and not np.all(np.asarray(t) > 0):
    raise ValueError("temperatures must be positive and finite")
  for name, value in (("stiffness", stiffness), ("friction", friction)):
    if _checks.is_concrete(jnp.asarray(value)) and not float(value) > 0:
      raise ValueError(f"{name} must be positive, got {value}")
  n = t.shape[0]
  lap = 2.0 * jnp.eye(n, dtype=t.dtype) - jnp.eye(n, k=1, dtype=t.dtype) \
      - jnp.eye(n, k=-1, dtype=t.dtype)
  return -(stiffness / friction) * lap, jnp.diag(t / friction)


def trapped_aoup(trap: float, gamma: float, epsilon: float, v0: float,
                 dim: int = 1) -> tuple[Array, Array]:
  r"""Drift and diffusion matrices of one active Ornstein-Uhlenbeck particle in a trap.

  :math:`dx = (v_0 g - A x)\,dt + \sqrt{2\epsilon}\,dW`,
  :math:`dg = -\gamma g\,dt + \sqrt{2\gamma}\,dW'` in ``dim`` dimensions (Boffi &
  Vanden-Eijnden, PNAS 2024, their active model without interactions), state ordered
  :math:`z = (x_1..x_{dim}, g_1..g_{dim})`. Its entropy production per dimension is
  :math:`\gamma v_0^2 / (\epsilon (A + \gamma))` for :math:`\epsilon > 0` and ``A``
  for :math:`\epsilon = 0` (noise in ``g`` only), both from
  :func:`ou_entropy_production` (tested).

  Args:
    trap: trap stiffness ``A > 0``.
    gamma: active-noise relaxation rate :math:`\gamma > 0`.
    epsilon: translational diffusion :math:`\epsilon \ge 0`.
    v0: self-propulsion speed.
    dim: spatial dimension ``>= 1``.

  Returns:
    ``(M [2 dim, 2 dim], D [2 dim, 2 dim])``.
  """
  _checks.check_positive_int(dim, "dim")
  for name, value, ok in (("trap", trap, lambda v: v > 0), ("gamma", gamma, lambda v: v > 0),
                          ("epsilon", epsilon, lambda v: v >= 0),
                          ("v0", v0, lambda v: np.isfinite(v))):
    if _checks.is_concrete(jnp.asarray(value)) and not ok(float(value)):
      raise ValueError(f"{name} has an invalid value {value}")
  eye = jnp.eye(dim)
  zero = jnp.zeros((dim, dim))
  m = jnp.block([[-trap * eye, v0 * eye], [zero, -gamma * eye]])
  d = jnp.block([[epsilon * eye, zero], [zero, gamma * eye]])
  return m, d


def active_spring_ring(n: int, stiffness: float, trap: float, gamma: float,
                       v0: float) -> tuple[Array, Array]:
  r"""Drift and diffusion matrices of ``n`` active particles on a line, each joined to
  its two neighbours on a ring by springs: :math:`dx_i = (v_0 g_i - k(2x_i - x_{i-1} -
  x_{i+1}) - A x_i)\,dt`, :math:`dg_i = -\gamma g_i\,dt + \sqrt{2\gamma}\,dW_i`,
  noise in ``g`` only; state :math:`z = (x_1..x_n, g_1..g_n)`.

  A linear stand-in for a cluster of the MIPS model (:mod:`entropylab.production.active`,
  Boffi & Vanden-Eijnden, PNAS 2024): the positions respond to a push through the
  whole elastic body, over about :math:`\sqrt{k / A}` sites. Its hypoelliptic rate is
  the phase-space contraction :math:`-\mathrm{Tr}\,M_{xx} = n(2k + A)` for every
  :math:`\gamma` and :math:`v_0 \ne 0` (tested against :func:`ou_entropy_production`).

  Args:
    n: particles, ``>= 3``.
    stiffness: spring constant ``k >= 0``.
    trap: trap stiffness ``A > 0`` (it makes the ring stable).
    gamma: relaxation rate of ``g``, ``> 0``.
    v0: self-propulsion speed.

  Returns:
    ``(M [2n, 2n], D [2n, 2n])``.
  """
  _checks.check_positive_int(n, "n")
  if n < 3:
    raise ValueError(f"n must be at least 3 for a ring, got {n}")
  for name, value, ok in (("stiffness", stiffness, lambda v: v >= 0),
                          ("trap", trap, lambda v: v > 0), ("gamma", gamma, lambda v: v > 0),
                          ("v0", v0, lambda v: np.isfinite(v))):
    if _checks.is_concrete(jnp.asarray(value)) and not ok(float(value)):
      raise ValueError(f"{name} has an invalid value {value}")
  eye = jnp.eye(n)
  laplacian = 2 * eye - jnp.roll(eye, 1, axis=1) - jnp.roll(eye, -1, axis=1)
  zero = jnp.zeros((n, n))
  m = jnp.block([[-stiffness * laplacian - trap * eye, v0 * eye], [zero, -gamma * eye]])
  d = jnp.block([[zero, zero], [zero, gamma * eye]])
  return m, d


__all__ = [
    "active_spring_ring",
    "bead_spring_chain",
    "lyapunov_covariance",
    "ou_entropy_production",
    "ou_pair_entropy_production",
    "ou_restricted_score_bound",
    "sample_ou_pairs",
    "trapped_aoup",
]
