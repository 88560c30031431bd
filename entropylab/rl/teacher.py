r"""Curricula for the adversary's temperature in Quantal Adversarial RL.

Reddi, Toelle, Peters, Chalvatzaki & D'Eramo, "Robust adversarial reinforcement learning
via bounded rationality curricula" (ICLR 2024) train a protagonist against an
adversary whose entropy bonus has temperature :math:`\alpha`; a high temperature makes
the adversary nearly random, :math:`\alpha \to 0` rational. Its self-paced teacher
(after Klink et al.'s self-paced deep RL) draws one temperature per episode from

.. math:: \alpha \sim \mathrm{Gamma}(c, \beta)\ \ (\text{shape } c,\ \text{rate } \beta,
   \ \text{mean } c / \beta),

with the rate fixed (QARL: :math:`\beta = 1000`, :math:`c` from 50, mean 0.05, towards
the target :math:`c^* = 1`, mean 0.001), and after every batch of episodes solves

.. math:: \min_c\ \mathrm{KL}(\Gamma(c,\beta)\,\|\,\Gamma(c^*,\beta)) \quad\text{s.t.}\quad
   \mathrm{KL}(\Gamma(c,\beta)\,\|\,\Gamma(c_{old},\beta)) \le \epsilon,\quad
   \frac1n\sum_i \frac{p_c(\alpha_i)}{p_{c_{old}}(\alpha_i)} R_i \ge \xi,

where :math:`(\alpha_i, R_i)` are the episodes' temperatures and discounted protagonist
returns and :math:`\xi` the return floor. The update only runs once the current
distribution meets the floor (:math:`\frac1n\sum_i R_i \ge \xi`); until then the
teacher is frozen.

The reference solves this one-dimensional problem with scipy's trust-constr. Here it is
a dense search, jit-able and vmap-able over teachers: the feasible point with the
smallest KL to the target among ``grid_size`` log-spaced concentrations between the
current and the target one (both included). The current concentration is always
feasible once the floor is met, so an update never breaks either constraint.

:func:`linear_temperature` is the paper's linear-curriculum baseline. Temperatures are
in reward units per nat (the bonus is the temperature times the policy's entropy).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma, gammaln

from entropylab.info import _checks

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GammaTeacherConfig:
  """The self-paced Gamma teacher's settings (QARL's defaults).

  Attributes:
    initial_concentration: shape ``c`` at the start (mean temperature ``c / rate``).
    target_concentration: shape of the target distribution ``c*``.
    rate: the fixed rate ``beta`` (1 / temperature units).
    max_kl: trust region ``epsilon`` on KL(new || old), nats.
    return_floor: ``xi``, the importance-weighted discounted return the new
      distribution must keep (units of the return).
    grid_size: concentrations searched per update (log-spaced, endpoints included).
  """

  initial_concentration: float = 50.0
  target_concentration: float = 1.0
  rate: float = 1000.0
  max_kl: float = 0.5
  return_floor: float = 10.0
  grid_size: int = 512

  def validate(self) -> None:
    for name in ("initial_concentration", "target_concentration", "rate", "max_kl"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
      if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    if isinstance(self.return_floor, bool) or not isinstance(self.return_floor, (int, float)):
      raise TypeError(f"return_floor must be a number, got {type(self.return_floor).__name__}")
    if not math.isfinite(self.return_floor):
      raise ValueError(f"return_floor must be finite, got {self.return_floor}")
    _checks.check_positive_int(self.grid_size, "grid_size")
    if self.grid_size < 2:
      raise ValueError(f"grid_size must be >= 2, got {self.grid_size}")


class TeacherState(NamedTuple):
  """``concentration []``: the current shape ``c``; ``updates []``: how many updates
  have moved it (frozen updates do not count)."""

  concentration: Array
  updates: Array


class TeacherUpdate(NamedTuple):
  """Diagnostics of one update (all ``[]``): ``met_floor``, whether the current
  distribution met the return floor (else the teacher stayed frozen); ``kl_to_old``
  and ``kl_to_target`` of the new distribution (nats); ``expected_return``, the
  importance-weighted return estimate of the new distribution."""

  met_floor: Array
  kl_to_old: Array
  kl_to_target: Array
  expected_return: Array


def gamma_kl(concentration_p, concentration_q) -> Array:
  r"""KL(Gamma(a_p, beta) || Gamma(a_q, beta)) in nats for a common rate ``beta``:
  :math:`(a_p - a_q)\psi(a_p) - \ln\Gamma(a_p) + \ln\Gamma(a_q)` (the rate cancels).
  Broadcasts over its arguments (shapes ``[*B]``)."""
  a_p = jnp.asarray(concentration_p)
  a_q = jnp.asarray(concentration_q)
  return (a_p - a_q) * digamma(a_p) - gammaln(a_p) + gammaln(a_q)


def gamma_log_density(temperature, concentration, rate) -> Array:
  r"""``log Gamma(temperature; concentration, rate)``:
  :math:`c\ln\beta + (c - 1)\ln\alpha - \beta\alpha - \ln\Gamma(c)`. Broadcasts."""
  t = jnp.asarray(temperature)
  c = jnp.asarray(concentration)
  return c * jnp.log(rate) + (c - 1.0) * jnp.log(t) - rate * t - gammaln(c)


def teacher_init(config: GammaTeacherConfig) -> TeacherState:
  """The teacher at ``config.initial_concentration``."""
  config.validate()
  return TeacherState(jnp.asarray(config.initial_concentration, jnp.float32),
                      jnp.asarray(0, jnp.int32))


def sample_temperatures(key: Array, state: TeacherState, config: GammaTeacherConfig,
                        shape: tuple[int, ...] = ()) -> Array:
  """Temperatures ``[*shape]`` drawn from Gamma(``state.concentration``, ``config.rate``)."""
  c = jnp.asarray(state.concentration)
  return jax.random.gamma(key, c, shape, dtype=c.dtype) / config.rate


def _check_episodes(temperatures, returns):
  t = _checks.as_float_array(temperatures, "temperatures")
  r = _checks.as_float_array(returns, "returns")
  if t.ndim != 1 or t.shape[0] < 1:
    raise ValueError(f"temperatures must be a non-empty [n] array, got shape {t.shape}")
  if r.shape != t.shape:
    raise ValueError(f"returns must have the temperatures' shape {t.shape}, got {r.shape}")
  if _checks.is_concrete(t):
    tv = np.asarray(t, np.float64)
    if not np.all(np.isfinite(tv)) or np.any(tv <= 0):
      raise ValueError("temperatures must be finite and positive (Gamma samples)")
  if _checks.is_concrete(r) and not np.all(np.isfinite(np.asarray(r, np.float64))):
    raise ValueError("returns contains NaN or infinite entries")
  return t, r


def teacher_update(state: TeacherState, temperatures, returns,
                   config: GammaTeacherConfig) -> tuple[TeacherState, TeacherUpdate]:
  """One constrained update of the self-paced Gamma teacher (module docstring).

  Args:
    state: the current teacher.
    temperatures: ``[n]`` temperatures of the episodes, drawn from the current
      distribution.
    returns: ``[n]`` the protagonist's discounted returns of those episodes.
    config: the teacher's settings.

  Returns:
    ``(new_state, diagnostics)``. The new concentration is the feasible grid point
    closest to the target in KL; with the floor unmet it is the current one.
  """
  config.validate()
  t, r = _check_episodes(temperatures, returns)
  dtype = jnp.result_type(t.dtype, r.dtype, jnp.float32)
  t, r = t.astype(dtype), r.astype(dtype)
  c_old = jnp.asarray(state.concentration, dtype)
  target = jnp.asarray(config.target_concentration, dtype)
  u = jnp.linspace(0.0, 1.0, config.grid_size, dtype=dtype)
  grid = jnp.exp(jnp.log(c_old) + u * (jnp.log(target) - jnp.log(c_old)))
  grid = grid.at[0].set(c_old).at[-1].set(target)

  log_old = gamma_log_density(t, c_old, config.rate)

  def expected_return(c):
    est = jnp.mean(jnp.exp(gamma_log_density(t, c, config.rate) - log_old) * r)
    return jnp.where(jnp.isfinite(est), est, -jnp.inf)

  returns_at = jax.vmap(expected_return)(grid)
  kl_old = gamma_kl(grid, c_old)
  kl_target = gamma_kl(grid, target)
  feasible = (kl_old <= config.max_kl) & (returns_at >= config.return_floor)
  feasible = feasible.at[0].set(True)  # the current point (weights 1)
  best = jnp.argmin(jnp.where(feasible, kl_target, jnp.inf))
  met = jnp.mean(r) >= config.return_floor
  pick = jnp.where(met, best, 0)
  new_c = grid[pick]
  new_state = TeacherState(new_c.astype(jnp.asarray(state.concentration).dtype),
                           state.updates + (met & (pick != 0)).astype(jnp.int32))
  return new_state, TeacherUpdate(met, kl_old[pick], kl_target[pick], returns_at[pick])


def linear_temperature(iteration, num_iterations: int, start: float = 0.05,
                       end: float = 0.001, fraction: float = 2.0 / 3.0) -> Array:
  """The linear curriculum baseline: the temperature falls linearly from ``start`` to
  ``end`` over the first ``fraction`` of ``num_iterations``, then stays at ``end``.
  ``iteration`` may be traced (``[]`` or ``[*B]``)."""
  _checks.check_positive_int(num_iterations, "num_iterations")
  for name, value in (("start", start), ("end", end)):
    if not (math.isfinite(value) and value >= 0):
      raise ValueError(f"{name} must be a finite non-negative temperature, got {value}")
  if not (0 < fraction <= 1):
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  span = max(fraction * num_iterations, 1e-12)
  progress = jnp.clip(jnp.asarray(iteration, jnp.float32) / span, 0.0, 1.0)
  return start + (end - start) * progress


__all__ = [
    "GammaTeacherConfig",
    "TeacherState",
    "TeacherUpdate",
    "gamma_kl",
    "gamma_log_density",
    "linear_temperature",
    "sample_temperatures",
    "teacher_init",
    "teacher_update",
]
