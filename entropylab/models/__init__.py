"""Flax (linen) networks shared by the modules above :mod:`entropylab.info` and
:mod:`entropylab.coupling`: :class:`MLP` for low-dimensional states."""

from entropylab.models.mlp import MLP

__all__ = ["MLP"]
