r"""Euler-Maruyama integration of Ito SDEs :math:`dx = b(x)\,dt + \sigma\,dW`.

Pure and jit-able: the whole trajectory is one ``lax.scan``, every step draws its noise
from ``jax.random.fold_in(key, step)``, so a run split into pieces (``start_step``)
reproduces the uninterrupted run exactly, which is what checkpointed simulations
resume from. Independent chains are a ``jax.vmap`` over keys and initial states (see
:func:`simulate_ou`), and shard over devices like any batch axis.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks
from entropylab.production import ou

Array = jax.Array


def check_time_step(dt) -> None:
  """Concrete ``dt`` must be a finite positive number."""
  if _checks.is_concrete(jnp.asarray(dt)):
    if np.ndim(dt) != 0:
      raise ValueError(f"dt must be a scalar, got shape {np.shape(dt)}")
    if not (np.isfinite(float(dt)) and float(dt) > 0):
      raise ValueError(f"dt must be a finite positive number, got {dt}")


def euler_maruyama(key: Array, drift: Callable[[Array], Array], x0, dt, n_steps: int,
                   noise=1.0, noise_matrix=None, save_every: int = 1,
                   start_step: int = 0) -> Array:
  r"""Integrates :math:`x_{t+1} = x_t + b(x_t)\,\Delta t + \sigma\sqrt{\Delta t}\,\xi_t`,
  :math:`\xi_t \sim N(0, I)` (the Euler-Maruyama
  scheme, Kloeden & Platen, *Numerical Solution of Stochastic Differential Equations*,
  ch. 9; weak order 1).

  Args:
    key: PRNG key; step ``t`` uses ``fold_in(key, start_step + t)``.
    drift: ``b(x)`` mapping a state of ``x0``'s shape to the same shape.
    x0: the initial state, any shape ``S`` (e.g. ``[d]``, or ``[particles, d]``).
    dt: time step :math:`\Delta t > 0`.
    n_steps: number of steps ``>= 1``; a multiple of ``save_every``.
    noise: :math:`\sigma` as a scalar or an array broadcastable to ``S`` (independent
      noise per coordinate); e.g. ``sqrt(2 D)`` for diffusion ``D``. Zero entries give
      noiseless coordinates.
    noise_matrix: instead of ``noise``, a ``[d, d]`` matrix applied along ``S``'s last
      axis (correlated noise, :math:`\sigma\sigma^\top = 2D`).
    save_every: keep every ``save_every``-th state.
    start_step: global index of the first step (for resuming a split run).

  Returns:
    ``[n_steps // save_every, *S]``: the states after steps ``save_every``,
    ``2 save_every``, ... (the initial state is not included).
  """
  x0 = _checks.as_float_array(x0, "x0")
  check_time_step(dt)
  n_steps = _checks.check_positive_int(n_steps, "n_steps")
  save_every = _checks.check_positive_int(save_every, "save_every")
  if n_steps % save_every:
    raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
  if not callable(drift):
    raise TypeError(f"drift must be callable, got {type(drift).__name__}")
  if noise_matrix is not None:
    sig = _checks.as_float_array(noise_matrix, "noise_matrix")
    if x0.ndim < 1 or sig.shape != (x0.shape[-1], x0.shape[-1]):
      raise ValueError(f"noise_matrix must be [d, d] with d = x0.shape[-1], got {sig.shape} "
                       f"for x0 of shape {x0.shape}")
    apply_noise = lambda xi: xi @ sig.T.astype(x0.dtype)
  else:
    sig = _checks.as_float_array(noise, "noise")
    try:
      np.broadcast_shapes(sig.shape, x0.shape)
    except ValueError:
      raise ValueError(f"noise of shape {sig.shape} does not broadcast to x0's shape "
                       f"{x0.shape}") from None
    if np.broadcast_shapes(sig.shape, x0.shape) != x0.shape:
      raise ValueError(f"noise of shape {sig.shape} would broadcast x0's shape {x0.shape}")
    apply_noise = lambda xi: sig.astype(x0.dtype) * xi
  if _checks.is_concrete(sig) and not np.all(np.isfinite(np.asarray(sig))):
    raise ValueError("the noise amplitude has non-finite entries")
  sqrt_dt = jnp.sqrt(jnp.asarray(dt, x0.dtype))
  dt = jnp.asarray(dt, x0.dtype)

  def one_step(x, t):
    xi = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
    return x + drift(x) * dt + sqrt_dt * apply_noise(xi)

  def saved_block(x, block):
    first = start_step + block * save_every
    x = lax.fori_loop(0, save_every, lambda i, x: one_step(x, first + i), x)
    return x, x

  _, states = lax.scan(saved_block, x0, jnp.arange(n_steps // save_every))
  return states


def simulate_ou(key: Array, M, D, x0, dt, n_steps: int, save_every: int = 1,
                start_step: int = 0) -> Array:
  r"""Euler-Maruyama trajectories of :math:`dz = Mz\,dt + \sqrt{2D}\,dW`.

  Args:
    key: PRNG key.
    M: ``[n, n]`` stable drift matrix.
    D: ``[n, n]`` symmetric positive semidefinite diffusion, or ``[n]`` diagonal.
    x0: ``[n]`` initial state, or ``[chains, n]`` for independent chains (each chain
      gets its own key, ``fold_in(key, chain)``).
    dt, n_steps, save_every, start_step: as in :func:`euler_maruyama`.

  Returns:
    ``[n_steps // save_every, n]`` or ``[chains, n_steps // save_every, n]``.
  """
  m = ou.check_drift_matrix(M)
  d = ou.check_diffusion_matrix(D, m.shape[0])
  x0 = _checks.as_float_array(x0, "x0")
  if x0.ndim not in (1, 2) or x0.shape[-1] != m.shape[0]:
    raise ValueError(f"x0 must be [{m.shape[0]}] or [chains, {m.shape[0]}], got {x0.shape}")
  dtype = jnp.result_type(m.dtype, d.dtype, x0.dtype)
  m, sig = m.astype(dtype), ou._sqrt_psd(2.0 * d.astype(dtype))
  run = lambda k, z0: euler_maruyama(k, lambda z: m @ z, z0.astype(dtype), dt, n_steps,
                                     noise_matrix=sig, save_every=save_every,
                                     start_step=start_step)
  if x0.ndim == 1:
    return run(key, x0)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(x0.shape[0]))
  return jax.vmap(run)(keys, x0)


__all__ = ["euler_maruyama", "simulate_ou"]
