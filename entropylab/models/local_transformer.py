"""A spatially local transformer over each particle's nearest neighbours.

A score network in the manner of Boffi & Vanden-Eijnden ("Deep learning probability flows
and entropy production rates in active matter", PNAS 2024), who use spatially local
attention over neighbours, for systems of
``N`` identical particles in a periodic box: particle ``i`` sees its own
self-propulsion ``g_i`` and, for each of its ``K`` nearest neighbours ``j``, the
minimum-image offset ``x_j - x_i``, its length and ``g_j``. A stack of pre-norm
self-attention blocks mixes these ``K + 1`` tokens, and the first token's final
embedding is read out as particle ``i``'s score ``(s_x_i, s_g_i)``.

Hence the output is

* permutation-equivariant: relabelling the particles relabels the outputs;
* translation-invariant: only offsets enter, wrapped into the box;
* local: a particle's output depends on its ``K`` neighbours only, so a network
  trained at ``N`` particles applies unchanged to any ``N' > K`` and to other
  densities (box sizes are an argument, not a weight).

Neighbours are chosen by ``lax.top_k`` over all minimum-image distances (``O(N^2)``
distances, ``O(N K)`` attention work); their indices carry no gradient, their offsets do.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def nearest_neighbors(x: Array, half_width, k: int,
                      query: Optional[Array] = None) -> tuple[Array, Array]:
  """The ``k`` nearest other particles of each of ``x: [N, d]`` in the periodic box
  ``[-L, L)^d``: indices ``[M, k]`` and minimum-image offsets ``x_j - x_i`` ``[M, k, d]``
  for the ``M`` particles ``i`` in ``query`` (integer indices ``[M]``; all ``N`` if
  ``None``). Cost ``O(M N)`` distances."""
  centres = x if query is None else x[query]
  diff = x[None, :, :] - centres[:, None, :]
  diff = diff - 2.0 * half_width * jnp.round(diff / (2.0 * half_width))
  d2 = jnp.sum(diff * diff, axis=-1)
  rows = jnp.arange(x.shape[0]) if query is None else query
  d2 = jnp.where(rows[:, None] == jnp.arange(x.shape[0])[None, :], jnp.inf, d2)
  _, idx = lax.top_k(-lax.stop_gradient(d2), k)
  return idx, jnp.take_along_axis(diff, idx[:, :, None], axis=1)


class _Block(nn.Module):
  width: int
  heads: int

  @nn.compact
  def __call__(self, h: Array) -> Array:
    a = nn.LayerNorm()(h)
    h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width)(a, a)
    a = nn.LayerNorm()(h)
    a = nn.Dense(2 * self.width)(a)
    return h + nn.Dense(self.width)(nn.gelu(a))


class LocalTransformer(nn.Module):
  """``state [2, N, d] -> [2, N, d]`` (positions and self-propulsions in; the score, or
  any per-particle field, out); ``half_width`` is the box half width ``L``.

  Attributes:
    num_neighbors: ``K``, neighbours each particle attends to.
    width: token embedding width.
    depth: attention blocks.
    heads: attention heads (dividing ``width``).
    zero_readout: initialise the readout at zero, so the initial output is exactly 0
      (a network that learns a correction to a known field starts at that field).
  """

  num_neighbors: int = 16
  width: int = 64
  depth: int = 2
  heads: int = 4
  zero_readout: bool = False

  @nn.compact
  def __call__(self, state: Array, half_width, query: Optional[Array] = None,
               self_shift: Optional[Array] = None, features: Optional[Array] = None,
               self_features: Optional[Array] = None) -> Array:
    """Args:
      state: ``[2, N, d]`` positions (in the box) and self-propulsions.
      half_width: the box half width ``L``.
      query: integer indices ``[M]`` of the particles whose outputs are wanted (all
        ``N``, in order, if ``None``); the others still act as neighbours. Work is
        ``O(M N)`` distances plus ``O(M K)`` attention.
      self_shift: ``[2, M, d]`` added to each queried particle's own position and
        self-propulsion as seen by its own output only (its neighbours' outputs see the
        unshifted state). At zero the output is unchanged, and the forward derivative
        along it is the per-particle diagonal block ``d out_i / d state_i`` of the
        Jacobian, whose trace is the exact divergence (see
        ``entropylab.production.self_divergence``).
      features: ``[N, f]`` extra inputs of each particle (for example its drift),
        appended to its token wherever it is a neighbour. A particle's own token does
        not take them from here but from ``self_features``.
      self_features: ``[M, f']`` extra inputs of each queried particle's own token.
        Inputs computed from the state are part of the function being differentiated:
        pass here their values at the self-shifted state, so that the derivative along
        ``self_shift`` includes them. ``features`` enter unshifted, so they must not
        depend on the queried particle's own shifted coordinates (a neighbour's
        function of its own ``g`` is fine).

    Returns:
      ``[2, M, d]``.
    """
    x, g = state[0], state[1]
    n, dim = x.shape
    if n <= self.num_neighbors:
      raise ValueError(f"need more than num_neighbors = {self.num_neighbors} particles, got {n}")
    idx, rel = nearest_neighbors(x, half_width, self.num_neighbors, query)
    g_self = g if query is None else g[query]
    if self_shift is not None:
      rel = rel - self_shift[0][:, None, :]
      g_self = g_self + self_shift[1]
    dist = jnp.sqrt(jnp.sum(rel * rel, axis=-1, keepdims=True) + 1e-12)
    tokens, own = [rel, dist, g[idx]], [g_self]          # [M, K, 2d + 1 (+ f)], [M, d (+ f')]
    if features is not None:
      if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features must be [N, f] with N = {n}, got shape {features.shape}")
      tokens.append(features[idx])
    if self_features is not None:
      if self_features.ndim != 2 or self_features.shape[0] != g_self.shape[0]:
        raise ValueError(f"self_features must be [M, f] with M = {g_self.shape[0]} queried "
                         f"particles, got shape {self_features.shape}")
      own.append(self_features)
    neighbor_tokens = nn.Dense(self.width, name="embed_neighbor")(jnp.concatenate(tokens, -1))
    self_token = nn.Dense(self.width, name="embed_self")(
        jnp.concatenate(own, -1))[:, None, :]                           # [M, 1, W]
    h = jnp.concatenate([self_token, neighbor_tokens], axis=1)
    for _ in range(self.depth):
      h = _Block(self.width, self.heads)(h)
    kernel_init = (nn.initializers.zeros if self.zero_readout
                   else nn.initializers.lecun_normal())
    out = nn.Dense(2 * dim, name="readout", kernel_init=kernel_init)(
        nn.LayerNorm()(h[:, 0]))                                           # [M, 2d]
    return jnp.stack([out[:, :dim], out[:, dim:]])
