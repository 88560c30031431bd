"""Flax (linen) networks shared by the modules above :mod:`entropylab.info` and
:mod:`entropylab.coupling`: :class:`MLP` for low-dimensional states and
:class:`LocalTransformer` for particle systems in a periodic box."""

from entropylab.models.local_transformer import LocalTransformer, nearest_neighbors
from entropylab.models.mlp import MLP

__all__ = ["LocalTransformer", "MLP", "nearest_neighbors"]
