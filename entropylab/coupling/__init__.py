"""Couplings: greedy minimum-entropy coupling, EBIM and MEC with bottleneck.

Pure ``jnp`` + ``lax`` over probability vectors (no flax, no brax); rates and
entropies in bits. Modules: :mod:`~entropylab.coupling.mec` (greedy MEC, bounds),
:mod:`~entropylab.coupling.ebim` (encoder), :mod:`~entropylab.coupling.mecb` (MEC-B),
:mod:`~entropylab.coupling.imec` (iterative MEC encoder/decoder for large messages).
"""

from entropylab.coupling.ebim import ebim, ebim_refine, uniform_quantizer
from entropylab.coupling.imec import (
    IMECState,
    IMECTrace,
    blocks_to_message,
    imec_block_entropies,
    imec_decode,
    imec_decode_message,
    imec_decode_step,
    imec_encode,
    imec_encode_step,
    imec_init,
    imec_token_distribution,
    message_to_blocks,
)
from entropylab.coupling.mec import (
    coupling_entropy,
    greedy_mec,
    greedy_mec_multi,
    greedy_mec_sparse,
    majorization_lower_bound,
    majorization_meet,
    profile_lower_bound,
)
from entropylab.coupling.mecb import MECBResult, mec_b

__all__ = [
    # mec
    "coupling_entropy",
    "greedy_mec",
    "greedy_mec_multi",
    "greedy_mec_sparse",
    "majorization_lower_bound",
    "majorization_meet",
    "profile_lower_bound",
    # ebim
    "ebim",
    "ebim_refine",
    "uniform_quantizer",
    # mecb
    "MECBResult",
    "mec_b",
    # imec
    "IMECState",
    "IMECTrace",
    "blocks_to_message",
    "imec_block_entropies",
    "imec_decode",
    "imec_decode_message",
    "imec_decode_step",
    "imec_encode",
    "imec_encode_step",
    "imec_init",
    "imec_token_distribution",
    "message_to_blocks",
]
