"""A stable argsort for short rows that is faster than XLA's sort on CPU.

XLA's CPU sort calls a comparator per comparison; for the rows of a hundred to a few
hundred entries that the coding games sort at every step, a bitonic sorting network
(Batcher, 1968) of elementwise min/max stages, vectorised over the batch, costs less
(``benchmarks/bench_mcg.py`` times both on the games' widest rows, and whole games
with it). Its unrolled stages cost
compile time at every new shape, so it is used for rows of at least
:data:`_BITONIC_MIN` entries; accelerators keep ``jnp.argsort``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _bitonic_argsort(x: jax.Array) -> jax.Array:
  """Ascending order of the last axis of ``x``, ties to the lower index: the network
  sorts ``(value, index)`` pairs, whose order is total, so the result is the stable
  sort's. Rows are padded to a power of two with ``+inf`` at higher indices."""
  n = x.shape[-1]
  lead = x.shape[:-1]
  size = 1 << max(1, (n - 1).bit_length())
  key = jnp.concatenate([x, jnp.full(lead + (size - n,), jnp.inf, x.dtype)], axis=-1)
  idx = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32), lead + (size,))
  pos = np.arange(size)
  k = 2
  while k <= size:
    j = k // 2
    while j >= 1:
      shape = lead + (size // (2 * j), 2, j)
      kk, ii = key.reshape(shape), idx.reshape(shape)
      a_k, b_k, a_i, b_i = kk[..., 0, :], kk[..., 1, :], ii[..., 0, :], ii[..., 1, :]
      a_first = (a_k < b_k) | ((a_k == b_k) & (a_i < b_i))
      # Blocks of k ascending where bit k of the position is clear, else descending.
      up = jnp.asarray((pos.reshape(size // (2 * j), 2, j)[:, 0] & k) == 0)
      keep = a_first == up
      key = jnp.stack([jnp.where(keep, a_k, b_k), jnp.where(keep, b_k, a_k)],
                      axis=-2).reshape(lead + (size,))
      idx = jnp.stack([jnp.where(keep, a_i, b_i), jnp.where(keep, b_i, a_i)],
                      axis=-2).reshape(lead + (size,))
      j //= 2
    k *= 2
  return idx[..., :n]


# Shorter rows keep XLA's sort: the network's unrolled stages cost compile time at
# every new shape, and below this length the run time saved is small.
_BITONIC_MIN = 128


def stable_argsort(x: jax.Array) -> jax.Array:
  """``jnp.argsort(x, axis=-1, stable=True)`` as int32 (NaN-free ``x``); a bitonic
  network on CPU for rows of at least 128 entries, XLA's sort otherwise."""
  xla = lambda v: jnp.argsort(v, axis=-1, stable=True).astype(jnp.int32)
  if x.shape[-1] < _BITONIC_MIN:
    return xla(x)
  return lax.platform_dependent(x, cpu=_bitonic_argsort, default=xla)
