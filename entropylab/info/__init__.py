"""Information measures: entropies, divergences, mutual information, estimators.

Pure ``jnp`` functions over arrays (jit-, vmap- and grad-safe). Natural log (nats) by
default; pass ``base=2`` for bits. See :mod:`entropylab.info.discrete` and
:mod:`entropylab.info.estimators` (distributions and counts), :mod:`entropylab.info.knn`
(nearest-neighbour estimators from samples), :mod:`entropylab.info.gaussian`
(Gaussian closed forms), :mod:`entropylab.info.spectral` (diffusion spectral entropy),
:mod:`entropylab.info.ckplug` (confidence gain, CK-PLUG) and
:mod:`entropylab.info.maxent` (maximum entropy under moment constraints).
"""

from entropylab.info.discrete import (
    conditional_entropy,
    conditional_mutual_information,
    cross_entropy,
    entropy,
    entropy_from_logits,
    joint_entropy,
    js_divergence,
    kl_divergence,
    mutual_information,
    renyi_entropy,
    symmetric_cross_entropy,
    tsallis_entropy,
)
from entropylab.info.ckplug import ckplug_logits, confidence_gain
from entropylab.info.gaussian import gaussian_entropy, gaussian_mutual_information
from entropylab.info.knn import (
    conditional_mutual_information_ksg,
    entropy_knn,
    kl_divergence_knn,
    mutual_information_ksg,
    transfer_entropy_ksg,
)
from entropylab.info.maxent import MaxEntResult, maxent_distribution
from entropylab.info.spectral import (
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
)
from entropylab.info.estimators import (
    entropy_chao_shen,
    entropy_grassberger,
    entropy_miller_madow,
    entropy_nsb,
    entropy_plugin,
)

__all__ = [
    "MaxEntResult",
    "ckplug_logits",
    "confidence_gain",
    "diffusion_spectral_entropy",
    "diffusion_spectral_mutual_information",
    "maxent_distribution",
    "conditional_entropy",
    "conditional_mutual_information",
    "conditional_mutual_information_ksg",
    "entropy_knn",
    "gaussian_entropy",
    "gaussian_mutual_information",
    "kl_divergence_knn",
    "mutual_information_ksg",
    "transfer_entropy_ksg",
    "cross_entropy",
    "entropy",
    "entropy_chao_shen",
    "entropy_from_logits",
    "entropy_grassberger",
    "entropy_miller_madow",
    "entropy_nsb",
    "entropy_plugin",
    "joint_entropy",
    "js_divergence",
    "kl_divergence",
    "mutual_information",
    "renyi_entropy",
    "symmetric_cross_entropy",
    "tsallis_entropy",
]
