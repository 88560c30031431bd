"""Eager input validation shared by the information measures.

Public functions call these at the top. When an argument is a concrete array (not a
tracer inside ``jit``/``vmap``/``grad``), its values are checked and a ``ValueError``
naming the argument is raised before any work starts; under tracing only the static
checks (rank, dtype, shapes) run, since values are unknown at trace time.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# |sum(p) - 1| allowed for a probability vector, by dtype. float32 sums of 10^5 terms
# carry ~1e-6 relative rounding; 1e-4 leaves room for renormalised model outputs.
NORMALIZATION_ATOL = {np.dtype(np.float64): 1e-8}
DEFAULT_NORMALIZATION_ATOL = 1e-4


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds values (not a JAX tracer)."""
  return not isinstance(x, jax.core.Tracer)


def as_float_array(x: Any, name: str) -> jnp.ndarray:
  """Converts to a floating JAX array; raises ``TypeError`` for non-numeric input."""
  if isinstance(x, (str, bytes)) or x is None:
    raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
  try:
    arr = jnp.asarray(x)
  except TypeError as e:
    raise TypeError(f"{name} must be an array of numbers: {e}") from None
  if arr.dtype == jnp.bool_ or jnp.issubdtype(arr.dtype, jnp.complexfloating):
    raise TypeError(f"{name} must be real-valued, got dtype {arr.dtype}")
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    arr = arr.astype(jnp.result_type(float))
  return arr


def check_rank_at_least(x: jnp.ndarray, rank: int, name: str) -> None:
  if x.ndim < rank:
    raise ValueError(f"{name} must have at least {rank} dimension(s), got shape {x.shape}")


def normalization_atol(dtype) -> float:
  return NORMALIZATION_ATOL.get(np.dtype(dtype), DEFAULT_NORMALIZATION_ATOL)


def _finite_non_negative(x: jnp.ndarray, name: str) -> np.ndarray:
  """float64 copy of concrete ``x``; raises if any entry is NaN, infinite or negative."""
  v = np.asarray(x, dtype=np.float64)
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{name} contains NaN or infinite entries")
  if np.any(v < 0):
    raise ValueError(f"{name} has negative entries (min {v.min():.3g})")
  return v


def check_probabilities(p: jnp.ndarray, name: str, axis=-1) -> None:
  """Checks finite, non-negative entries that sum to one over ``axis``.

  ``axis`` may be an int or a tuple of ints (for joint distributions). Only runs on
  concrete arrays.
  """
  if p.size == 0:
    raise ValueError(f"{name} is empty (shape {p.shape})")
  if not is_concrete(p):
    return
  v = _finite_non_negative(p, name)
  sums = v.sum(axis=axis)
  atol = normalization_atol(p.dtype)
  err = np.max(np.abs(sums - 1.0))
  if err > atol:
    raise ValueError(
        f"{name} must sum to 1 over axis {axis} within {atol:g}; largest deviation {err:.3g}")


def check_counts(c: jnp.ndarray, name: str) -> None:
  """Checks finite, non-negative counts with a positive total along the last axis."""
  if c.ndim < 1 or c.shape[-1] == 0:
    raise ValueError(f"{name} must have a non-empty last axis of bins, got shape {c.shape}")
  if not is_concrete(c):
    return
  v = _finite_non_negative(c, name)
  if np.any(v.sum(axis=-1) <= 0):
    raise ValueError(f"{name} has a row with total count 0; at least one sample is needed")


def check_same_shape(a: jnp.ndarray, b: jnp.ndarray, name_a: str, name_b: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def check_positive_int(value: Any, name: str) -> int:
  """``value`` as an ``int >= 1``; :class:`TypeError` / :class:`ValueError` naming ``name``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(value).__name__}")
  if value < 1:
    raise ValueError(f"{name} must be an int >= 1, got {value}")
  return int(value)


def check_mesh(mesh: Any) -> None:
  """``mesh`` must be ``None`` or a ``jax.sharding.Mesh``."""
  if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got {type(mesh).__name__}")


def check_base(base) -> None:
  if base is None:
    return
  if isinstance(base, (jax.Array, np.ndarray)) and not is_concrete(base):
    return
  b = float(base)
  if not (b > 0 and b != 1 and math.isfinite(b)):
    raise ValueError(f"base must be a positive number other than 1 (or None for nats), got {base}")


def check_order(value, name: str) -> None:
  """Checks an order parameter (Renyi alpha, Tsallis q) is >= 0 and not NaN."""
  if not is_concrete(value):
    return
  v = np.asarray(value, dtype=np.float64)
  if np.any(np.isnan(v)) or np.any(v < 0):
    raise ValueError(f"{name} must be >= 0 (inf allowed), got {value}")


def check_axis(x: jnp.ndarray, axis: int, name: str) -> int:
  if not isinstance(axis, (int, np.integer)):
    raise TypeError(f"axis must be an int, got {type(axis).__name__}")
  if not -x.ndim <= axis < x.ndim:
    raise ValueError(f"axis {axis} is out of range for {name} of shape {x.shape}")
  return int(axis) % x.ndim


def to_base(value: jnp.ndarray, base) -> jnp.ndarray:
  """Converts a value in nats to the requested log base (None = nats)."""
  if base is None:
    return value
  return value / jnp.log(jnp.asarray(base, dtype=value.dtype))
