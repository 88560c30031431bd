r"""Maximum entropy distributions under moment constraints (Jaynes' principle).

Jaynes, "Information theory and statistical mechanics", Phys. Rev. 106, 620 (1957):
of all distributions on a finite set of states whose feature expectations equal given
values, take the one of largest Shannon entropy. With a reference distribution ``q``
the same construction minimises the relative entropy :math:`D(p\|q)` over the linear
family of distributions with those moments, the I-projection of ``q`` (Kullback,
*Information Theory and Statistics*, 1959; Csiszar, "I-divergence geometry of
probability distributions and minimization problems", Ann. Probab. 3, 146 (1975)).
Cover & Thomas, *Elements of Information Theory*, 2nd ed., ch. 12, has the discrete
theory; Boyd & Vandenberghe, *Convex Optimization* (2004), sec. 5.2.4 the dual and
sec. 9.5 the damped Newton method with backtracking line search used here.

Conventions:

* ``features: [n, k]`` holds :math:`f_j(x)` for the ``n`` states (rows) and ``k``
  features (columns); ``targets: [k]`` the required expectations; ``prior: [n]`` the
  reference distribution (``None`` = uniform). A batch of targets is a ``jax.vmap``.
* Natural log (nats).
* Concrete inputs are validated eagerly (ranks, shapes, NaN/inf, ``prior`` a
  probability vector, feasibility of ``targets``) and a ``ValueError`` names the
  argument. Traced arguments (inside ``jit``/``vmap``) get the static shape checks only.
* Pure ``jnp`` + ``lax.while_loop`` with a fixed iteration cap: jit-able and vmap-able.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks

Array = jax.Array

# Default tolerance on max_j |E_p f_j - t_j| / range_j, by dtype (float32 otherwise).
# Moments summed in float32 carry a few 1e-7 of relative rounding.
TOL = {np.dtype(np.float64): 1e-10}
DEFAULT_TOL = 1e-5
# Default ridge, relative to the mean eigenvalue of the feature covariance. It must
# exceed the rounding of the covariance (a few eps) and stay far below its spectrum.
RIDGE = {np.dtype(np.float64): 1e-12}
DEFAULT_RIDGE = 1e-6

_MAX_STEP = 20.0  # cap on the Newton step ||d||_2, in range-scaled multiplier units
_ARMIJO = 1e-4  # sufficient-decrease constant of the line search
_MAX_HALVINGS = 40  # backtracking halves the step at most this often (2^-40 ~ 1e-12)

_RUNNING, _CONVERGED, _STALLED = 0, 1, 2


class MaxEntResult(NamedTuple):
  r"""The maximum entropy (minimum relative entropy) distribution and solver report.

  Attributes:
    p: ``[n]`` the distribution :math:`p(x) \propto q(x)\exp(\lambda\cdot f(x))`;
      exactly zero where ``prior`` is zero.
    multipliers: ``[k]`` the Lagrange multipliers :math:`\lambda` in the units of
      ``1 / features``. Unique when the features are affinely independent on the
      support; otherwise one solution (the dual is flat along the redundancy).
    converged: bool scalar, ``max_j |E_p f_j - t_j| / range_j <= tol``.
    iterations: int32 scalar, Newton iterations performed.
    max_moment_error: scalar, :math:`\max_j |E_p f_j - t_j|` in the units of
      ``features``.
  """

  p: Array
  multipliers: Array
  converged: Array
  iterations: Array
  max_moment_error: Array


# --------------------------------------------------------------------------- solver


def _log_partition(logq: Array, g_feat: Array, lam: Array):
  """Dual objective log sum_x q(x) exp(lam . g(x)) and the logits log q + g lam."""
  z = logq + jnp.matmul(g_feat, lam, precision=lax.Precision.HIGHEST)
  return jax.nn.logsumexp(z), z


def _moments(z: Array, g_feat: Array):
  """Gradient E_p[g] and Hessian Cov_p[g] of the dual at logits ``z``."""
  p = jax.nn.softmax(z)
  mean = jnp.matmul(p, g_feat, precision=lax.Precision.HIGHEST)
  dev = g_feat - mean
  cov = jnp.matmul((dev * p[:, None]).T, dev, precision=lax.Precision.HIGHEST)
  return mean, cov


def _newton_direction(grad: Array, hess: Array, ridge: Array) -> Array:
  """-(H + rho I)^{-1} grad with rho = ridge * mean eigenvalue + eps, norm capped."""
  eps = jnp.finfo(grad.dtype).eps
  w, v = jnp.linalg.eigh(hess)
  w = jnp.maximum(w, 0.0)  # rounding can make a null eigenvalue slightly negative
  rho = ridge * jnp.mean(w) + eps
  coef = jnp.matmul(v.T, grad, precision=lax.Precision.HIGHEST) / (w + rho)
  d = -jnp.matmul(v, coef, precision=lax.Precision.HIGHEST)
  norm = jnp.sqrt(jnp.sum(d * d))
  return d * jnp.minimum(1.0, _MAX_STEP / jnp.maximum(norm, _MAX_STEP * eps))


class _State(NamedTuple):
  lam: Array
  phi: Array
  grad: Array
  hess: Array
  it: Array
  status: Array


def _solve(g_feat: Array, logq: Array, max_iter: Array, tol: Array, ridge: Array):
  """Damped Newton on the dual in range-scaled, target-centred features ``g_feat``.

  Returns (p, scaled multipliers, converged, iterations, scaled moment mismatch).
  """
  dtype = g_feat.dtype
  k = g_feat.shape[1]
  if k == 0:
    return (jax.nn.softmax(logq), jnp.zeros((0,), dtype), jnp.array(True),
            jnp.array(0, jnp.int32), jnp.zeros((0,), dtype))
  eps = jnp.finfo(dtype).eps
  # Rounding of the dual value grows with the logits' magnitude; the line search
  # forgives that much so it does not stall once the decrease is below rounding.
  logq_mag = jnp.max(jnp.where(jnp.isfinite(logq), jnp.abs(logq), 0.0))

  def status_of(grad, moved):
    done = jnp.max(jnp.abs(grad)) <= tol
    return jnp.where(done, _CONVERGED, jnp.where(moved, _RUNNING, _STALLED)).astype(jnp.int32)

  lam0 = jnp.zeros((k,), dtype)
  phi0, z0 = _log_partition(logq, g_feat, lam0)
  grad0, hess0 = _moments(z0, g_feat)
  init = _State(lam0, phi0, grad0, hess0, jnp.array(0, jnp.int32),
                status_of(grad0, jnp.array(True)))

  def cond(s: _State):
    return (s.it < max_iter) & (s.status == _RUNNING)

  def body(s: _State) -> _State:
    d = _newton_direction(s.grad, s.hess, ridge)
    slope = jnp.dot(s.grad, d)  # < 0: (H + rho I) is positive definite
    slack = 8 * eps * (1 + jnp.abs(s.phi) + jnp.sum(jnp.abs(s.lam)) + logq_mag)

    def accept(step, phi_trial):
      # NaN compares False: a step to a non-finite value is never accepted.
      return phi_trial <= s.phi + _ARMIJO * step * slope + slack

    def ls_cond(c):
      step, phi_trial, halvings = c
      return ~accept(step, phi_trial) & (halvings < _MAX_HALVINGS)

    def ls_body(c):
      step, _, halvings = c
      step = step * 0.5
      return step, _log_partition(logq, g_feat, s.lam + step * d)[0], halvings + 1

    one = jnp.array(1.0, dtype)
    step, phi_trial, _ = lax.while_loop(
        ls_cond, ls_body, (one, _log_partition(logq, g_feat, s.lam + d)[0], 0))
    moved = accept(step, phi_trial)
    lam = jnp.where(moved, s.lam + step * d, s.lam)
    phi, z = _log_partition(logq, g_feat, lam)
    grad, hess = _moments(z, g_feat)
    return _State(lam, phi, grad, hess, s.it + 1, status_of(grad, moved))

  s = lax.while_loop(cond, body, init)
  p = jax.nn.softmax(_log_partition(logq, g_feat, s.lam)[1])
  return p, s.lam, s.status == _CONVERGED, s.it, s.grad


@jax.jit
def _maxent_core(f: Array, t: Array, q: Optional[Array], max_iter: Array, tol: Array,
                 ridge: Array):
  """Scales and centres the features on the support of ``q``, solves, maps back.

  Returns the result and the range-scaled multipliers (for the divergence check).
  """
  dtype = tol.dtype
  f, t = f.astype(dtype), t.astype(dtype)
  n = f.shape[0]
  if q is None:
    support = jnp.ones((n,), bool)
    logq = jnp.zeros((n,), f.dtype)
  else:
    q = q.astype(dtype)
    support = q > 0
    logq = jnp.where(support, jnp.log(jnp.where(support, q, 1.0)), -jnp.inf)
  hi = jnp.max(jnp.where(support[:, None], f, -jnp.inf), axis=0, initial=-jnp.inf)
  lo = jnp.min(jnp.where(support[:, None], f, jnp.inf), axis=0, initial=jnp.inf)
  spread = hi - lo
  scale = jnp.where(spread > 0, spread, 1.0)
  p, lam, converged, iterations, grad = _solve((f - t) / scale, logq, max_iter, tol, ridge)
  error = jnp.max(jnp.abs(grad) * scale, initial=0.0)
  return MaxEntResult(p, lam / scale, converged, iterations, error), lam


# --------------------------------------------------------------------------- validation


def _check_finite(x: Array, name: str) -> None:
  if _checks.is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    raise ValueError(f"{name} contains NaN or infinite entries")


def _check_options(max_iter, tol, ridge) -> None:
  if _checks.is_concrete(max_iter):
    if np.ndim(max_iter) != 0 or not float(max_iter).is_integer() or max_iter < 0:
      raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
  if tol is not None and _checks.is_concrete(tol):
    if not (np.ndim(tol) == 0 and math.isfinite(float(tol)) and float(tol) > 0):
      raise ValueError(f"tol must be a positive number (or None for the default), got {tol!r}")
  if ridge is not None and _checks.is_concrete(ridge):
    if not (np.ndim(ridge) == 0 and math.isfinite(float(ridge)) and float(ridge) >= 0):
      raise ValueError(f"ridge must be a number >= 0 (or None for the default), got {ridge!r}")


def _check_feasible(f: np.ndarray, t: np.ndarray, support: np.ndarray, eps: float) -> None:
  """Raises for targets outside (or at the end of) a feature's range on the support,
  or off the affine hull of the support's feature vectors. ``f``, ``t``: float64 copies
  of the working-dtype values; ``eps``: that dtype's machine epsilon."""
  fs = f[support]
  lo, hi = fs.min(axis=0), fs.max(axis=0)
  where = "over the states with prior mass > 0" if not support.all() else "over the states"
  for j in range(t.shape[0]):
    if t[j] < lo[j] or t[j] > hi[j]:
      raise ValueError(
          f"targets[{j}] = {t[j]:.6g} lies outside [{lo[j]:.6g}, {hi[j]:.6g}], the range of "
          f"features[:, {j}] {where}: no distribution has these moments (infeasible targets)")
    if lo[j] < hi[j] and (t[j] == lo[j] or t[j] == hi[j]):
      end = "maximum" if t[j] == hi[j] else "minimum"
      raise ValueError(
          f"targets[{j}] = {t[j]:.6g} equals the {end} of features[:, {j}] {where}: the "
          f"targets are on the boundary of the feasible set, only distributions concentrated "
          f"on the states where feature {j} is at its {end} meet them, and the dual has no "
          f"finite minimiser (multiplier {j} diverges). Set the prior to zero on the other "
          f"states and drop constraint {j}, or move targets[{j}] inside the range")
  if t.shape[0] < 2:
    return
  # The same test along the principal axes of the feature vectors: a convex
  # combination projects inside the projections' range. Axes along which the vectors
  # have (almost) no extent are the linear relations the features obey on the support.
  centre = fs.mean(axis=0)
  dev = fs - centre
  _, axes = np.linalg.eigh(dev.T @ dev)  # orthonormal columns spanning R^k
  proj = dev @ axes
  proj_t = (t - centre) @ axes
  lo_p, hi_p = proj.min(axis=0), proj.max(axis=0)
  # Lenient (sqrt(eps) of the magnitudes): a miss is still caught after the solve.
  slack = math.sqrt(eps) * max(np.abs(fs).max(), np.abs(t).max(), np.finfo(np.float64).tiny)
  outside = np.flatnonzero((proj_t < lo_p - slack) | (proj_t > hi_p + slack))
  if outside.size:
    i = outside[0]
    axis = np.array2string(axes[:, i], precision=4)
    if hi_p[i] - lo_p[i] <= slack:
      raise ValueError(
          f"targets is not in the affine hull of the feature vectors {where}: they obey "
          f"the linear relation {axis} . (f(x) - {np.array2string(centre, precision=6)}) = 0 "
          f"that the targets violate (by {proj_t[i]:.3g}); no distribution has these "
          "moments (infeasible targets)")
    raise ValueError(
        f"targets lies outside the convex hull of the feature vectors {where}: along the "
        f"axis {axis} they project to [{lo_p[i]:.6g}, {hi_p[i]:.6g}] about their mean, "
        f"the targets to {proj_t[i]:.6g}; no distribution has these moments (infeasible "
        "targets)")


# --------------------------------------------------------------------------- public


def maxent_distribution(features, targets, prior=None, *, max_iter: int = 100,
                        tol: Optional[float] = None,
                        ridge: Optional[float] = None) -> MaxEntResult:
  r"""Maximum entropy distribution with prescribed feature expectations.

  Primal (Jaynes 1957; Csiszar 1975 with a prior ``q``):

  .. math:: p^\star = \arg\min_p D(p\|q) \quad \text{s.t.}\quad
     \sum_x p(x) f_j(x) = t_j\ (j = 1..k),\ \sum_x p(x) = 1,\ p \ge 0,

  which for uniform ``q`` is :math:`\arg\max_p H(p)` (:math:`D(p\|u) = \log n - H(p)`).
  The solution is the exponential family member

  .. math:: p_\lambda(x) = q(x)\,e^{\lambda\cdot f(x)} / Z(\lambda), \qquad
     Z(\lambda) = \sum_x q(x)\,e^{\lambda\cdot f(x)},

  with :math:`\lambda` the minimiser of the convex dual

  .. math:: \psi(\lambda) = \log Z(\lambda) - \lambda\cdot t, \qquad
     \nabla\psi = E_{p_\lambda}[f] - t, \qquad
     \nabla^2\psi = \mathrm{Cov}_{p_\lambda}[f],

  and :math:`\min\psi = -D(p^\star\|q)` (for uniform ``q``: :math:`H(p^\star) - \log n`
  nats). E.g. ``features = energies[:, None]`` and ``targets = [U]`` give the Boltzmann
  distribution :math:`p \propto e^{-\beta E}` with ``multipliers = [-beta]``.

  Solver: damped Newton from :math:`\lambda = 0` (:math:`p = q`),
  :math:`\lambda \leftarrow \lambda - s\,(\mathrm{Cov}_p[f] + \rho I)^{-1}(E_p[f] - t)`,
  on features scaled by their range over the support and centred at ``targets``; the
  ridge :math:`\rho` (``ridge`` times the mean eigenvalue of the covariance) keeps the
  step defined for redundant features, the step is capped in norm and :math:`s` halves
  until Armijo's sufficient decrease of :math:`\psi` holds. ``log Z`` is a
  ``logsumexp``. Stops when :math:`\max_j |E_p f_j - t_j| / \mathrm{range}_j \le`
  ``tol`` or after ``max_iter`` iterations (``converged`` tells which). Not
  reverse-mode differentiable (``lax.while_loop``); the sensitivity is
  :math:`\partial\lambda/\partial t = \mathrm{Cov}_p[f]^{-1}`.

  Feasibility. :math:`\psi` has a finite minimiser exactly when ``targets`` lies in the
  relative interior of the convex hull of :math:`\{f(x) : q(x) > 0\}`. Outside the
  hull no distribution has these moments. On its relative boundary only distributions
  supported on the face containing ``targets`` have them: :math:`\psi` decreases
  towards its infimum as :math:`|\lambda| \to \infty` and the maximum entropy
  distribution is the one on that face (e.g. a mean energy equal to the ground-state
  energy gives the uniform law on the ground states, :math:`\beta = \infty`). With
  concrete inputs a ``ValueError`` naming ``targets`` is raised when

  1. a target lies outside, or exactly at an end of, its feature's range on the support
     (for ``k = 1`` this is every infeasible or boundary target);
  2. ``targets - mean_x f(x)`` projects outside the range of the projections of the
     ``f(x) - mean_x f(x)`` onto a principal axis of those vectors, beyond a rounding
     slack of ``sqrt(eps)`` of the feature magnitudes (this catches ``targets`` off the
     affine hull of linearly dependent features, and much of the outside of the hull);
  3. after the solve, the iteration did not converge and the multipliers diverged
     (range-scaled :math:`\|\lambda\|_\infty \ge \log(1/\mathrm{eps})`): the rest of
     the outside of the hull.

  A target on a boundary face that is not aligned with a coordinate axis (``k >= 2``)
  is not told apart from an interior target within ``tol`` of it: the iteration
  converges with multipliers of size about :math:`\log(1/\mathrm{tol})` along the face
  normal and ``p`` is the maximum entropy distribution on the face up to mass of order
  ``tol`` off it. Under ``jit``/``vmap`` nothing is raised: infeasible targets give
  ``converged = False`` and a finite ``p`` concentrated on a face of the hull; exact
  boundary targets converge as just described. Iterations that stop without
  converging and without diverging multipliers (``max_iter`` too small, ``tol`` below
  the rounding of the moments) are returned with ``converged = False``, not raised.

  Args:
    features: ``[n, k]`` finite feature values :math:`f_j(x)`, ``n >= 1``; ``k = 0``
      (no constraint) returns the prior.
    targets: ``[k]`` finite required expectations :math:`t_j`.
    prior: ``[n]`` reference distribution ``q`` (non-negative, summing to 1); states
      with ``q = 0`` get ``p = 0``. ``None`` for uniform (maximum entropy).
    max_iter: cap on the Newton iterations (a ``lax.while_loop`` bound).
    tol: tolerance on :math:`\max_j |E_p f_j - t_j| / \mathrm{range}_j`, with
      :math:`\mathrm{range}_j` the spread of feature ``j`` on the support (1 if
      constant); ``None`` for ``1e-10`` in float64 and ``1e-5`` in float32.
    ridge: relative ridge added to the covariance; ``None`` for ``1e-12`` in float64
      and ``1e-6`` in float32.

  Returns:
    :class:`MaxEntResult` ``(p, multipliers, converged, iterations,
    max_moment_error)`` in the common floating dtype of the inputs (at least float32).
    Finite for every valid input.
  """
  f = _checks.as_float_array(features, "features")
  t = _checks.as_float_array(targets, "targets")
  if f.ndim != 2:
    raise ValueError(f"features must have shape [n, k] (states x features), got shape {f.shape}")
  n, k = f.shape
  if n == 0:
    raise ValueError(f"features has no states (shape {f.shape})")
  if t.shape != (k,):
    raise ValueError(f"targets must have shape ({k},) to match features of shape {f.shape}, "
                     f"got shape {t.shape}")
  q = None
  if prior is not None:
    q = _checks.as_float_array(prior, "prior")
    if q.shape != (n,):
      raise ValueError(f"prior must have shape ({n},) to match features of shape {f.shape}, "
                       f"got shape {q.shape}")
    _checks.check_probabilities(q, "prior")
  _check_finite(f, "features")
  _check_finite(t, "targets")
  _check_options(max_iter, tol, ridge)

  dtype = jnp.promote_types(jnp.result_type(f, t, *(() if q is None else (q,))), jnp.float32)
  concrete = all(_checks.is_concrete(a) for a in (f, t) + (() if q is None else (q,)))
  if concrete and k > 0:
    # float64 copies of the values the solver sees (rounded to the working dtype).
    fd = np.asarray(f).astype(dtype).astype(np.float64)
    td = np.asarray(t).astype(dtype).astype(np.float64)
    support = np.ones((n,), bool) if q is None else np.asarray(q) > 0
    _check_feasible(fd, td, support, float(jnp.finfo(dtype).eps))

  key = np.dtype(dtype)
  tol = jnp.asarray(TOL.get(key, DEFAULT_TOL) if tol is None else tol, dtype)
  ridge = jnp.asarray(RIDGE.get(key, DEFAULT_RIDGE) if ridge is None else ridge, dtype)
  result, lam = _maxent_core(f, t, q, jnp.asarray(max_iter, jnp.int32), tol, ridge)

  if concrete and k > 0 and _checks.is_concrete(lam) and not bool(result.converged):
    lam_max = float(np.max(np.abs(np.asarray(lam))))
    if lam_max >= math.log(1.0 / float(jnp.finfo(dtype).eps)):
      reached = np.asarray(result.p, np.float64) @ fd
      raise ValueError(
          "targets are infeasible or on the boundary of the convex hull of the feature "
          "vectors of the states with prior mass > 0: the dual did not converge in "
          f"{int(result.iterations)} iterations and its multipliers diverge (range-scaled "
          f"max |lambda_j| = {lam_max:.3g}); the moments reached are "
          f"{np.array2string(reached, precision=6)}")
  return result


__all__: Sequence[str] = (
    "MaxEntResult",
    "maxent_distribution",
)
