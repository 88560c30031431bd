"""Couplings: greedy minimum-entropy coupling, EBIM and MEC with bottleneck.

Pure ``jnp`` + ``lax`` over probability vectors (no flax, no brax); rates and
entropies in bits. See :mod:`entropylab.coupling.ebim` and :mod:`entropylab.coupling.mecb`.
"""

from entropylab.coupling.ebim import ebim, ebim_refine, uniform_quantizer

__all__ = [
    "ebim",
    "ebim_refine",
    "uniform_quantizer",
]
