"""Couplings: greedy minimum-entropy coupling, EBIM and MEC with bottleneck.

Pure ``jnp`` + ``lax`` over probability vectors (no flax, no brax); rates and
entropies in bits. Modules: :mod:`~entropylab.coupling.mec` (greedy MEC, bounds),
:mod:`~entropylab.coupling.ebim` (encoder), :mod:`~entropylab.coupling.mecb` (MEC-B).
"""

from entropylab.coupling.ebim import ebim, ebim_refine, uniform_quantizer
from entropylab.coupling.mec import (
    greedy_mec,
    greedy_mec_sparse,
    majorization_lower_bound,
    majorization_meet,
)
from entropylab.coupling.mecb import MECBResult, mec_b

__all__ = [
    "MECBResult",
    "ebim",
    "ebim_refine",
    "greedy_mec",
    "greedy_mec_sparse",
    "majorization_lower_bound",
    "majorization_meet",
    "mec_b",
    "uniform_quantizer",
]
