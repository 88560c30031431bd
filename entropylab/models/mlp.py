"""A multilayer perceptron over the flattened state, output in the state's shape."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """``x: [*S] -> [*S]`` (or ``[*batch, *S]`` with ``state_ndim``): dense layers of
  ``features`` widths with ``activation``, then a linear layer back to ``prod(S)``
  outputs, or to ``[out_features]`` when that is set (``1`` and ``squeeze`` for a scalar).

  Attributes:
    features: hidden layer widths.
    out_features: output width; ``None`` for the state's own shape.
    squeeze: with ``out_features=1``, drop the last axis (a scalar per state).
    activation: elementwise nonlinearity (smooth ones, e.g. ``nn.swish`` or
      ``jnp.tanh``, keep the divergences that score matching differentiates smooth).
    state_ndim: number of trailing axes that form one state; leading axes are batch.
  """

  features: Sequence[int] = (64, 64)
  activation: Callable[[jax.Array], jax.Array] = nn.swish
  state_ndim: int = 1
  out_features: Optional[int] = None
  squeeze: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    state_shape = x.shape[x.ndim - self.state_ndim:]
    h = x.reshape(x.shape[:x.ndim - self.state_ndim] + (-1,))
    size = h.shape[-1]
    for width in self.features:
      h = self.activation(nn.Dense(width)(h))
    batch = x.shape[:x.ndim - self.state_ndim]
    if self.out_features is None:
      return nn.Dense(size)(h).reshape(batch + state_shape)
    out = nn.Dense(self.out_features)(h)
    return out[..., 0] if self.squeeze and self.out_features == 1 else out
