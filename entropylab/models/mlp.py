"""A multilayer perceptron over the flattened state, output in the state's shape."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """``x: [*S] -> [*S]`` (or ``[*batch, *S]`` with ``state_ndim``): dense layers of
  ``features`` widths with ``activation``, then a linear layer back to ``prod(S)``.

  Attributes:
    features: hidden layer widths.
    activation: elementwise nonlinearity (smooth ones, e.g. ``nn.swish`` or
      ``jnp.tanh``, keep the divergences that score matching differentiates smooth).
    state_ndim: number of trailing axes that form one state; leading axes are batch.
  """

  features: Sequence[int] = (64, 64)
  activation: Callable[[jax.Array], jax.Array] = nn.swish
  state_ndim: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    state_shape = x.shape[x.ndim - self.state_ndim:]
    h = x.reshape(x.shape[:x.ndim - self.state_ndim] + (-1,))
    size = h.shape[-1]
    for width in self.features:
      h = self.activation(nn.Dense(width)(h))
    out = nn.Dense(size)(h)
    return out.reshape(x.shape[:x.ndim - self.state_ndim] + state_shape)
