"""Entropy production: stochastic systems, score learning and entropy production rates.

* :mod:`entropylab.production.ou`: linear (Ornstein-Uhlenbeck) systems, their stationary
  covariance and exact entropy production rate, the bead-spring chain, the trapped
  active Ornstein-Uhlenbeck particle, a ring of active particles joined by springs, and
  the rate a score of restricted locality can certify;
* :mod:`entropylab.production.sde`: Euler-Maruyama trajectories;
* :mod:`entropylab.production.active`: interacting active Ornstein-Uhlenbeck particles
  in a periodic box (soft repulsion, cell lists), the motility-induced phase
  separation system;
* :mod:`entropylab.production.score`: score-matching losses (among them implicit score
  matching of local particle scores with the exact per-particle divergence) and the
  entropy production rate from a learned score (Boffi & Vanden-Eijnden, PNAS 2024),
  with a score-free cross-check and, for active particles with noise in ``g`` only, a
  lower bound that holds for any score;
* :mod:`entropylab.production.trajectory`: the trajectory baselines NEEP (Kim et al.,
  PRL 2020) and the short-time TUR with linear currents (Manikandan et al., PRL 2020).

Rates are in nats per unit time (``base=2`` for bits).
"""

from entropylab.production.active import (
    AOUPParams,
    aoup_diffusion,
    aoup_drift,
    aoup_drift_divergence,
    aoup_score_free_entropy_production,
    box_half_width,
    simulate_aoup,
)
from entropylab.production.ou import (
    active_spring_ring,
    bead_spring_chain,
    lyapunov_covariance,
    ou_entropy_production,
    ou_pair_entropy_production,
    ou_restricted_score_bound,
    sample_ou_pairs,
    trapped_aoup,
)
from entropylab.production.score import (
    denoising_score_matching_loss,
    entropy_production_rate,
    fit_linear_self_propulsion_score,
    hypoelliptic_entropy_production_bound,
    implicit_score_matching_loss,
    local_denoising_score_matching_loss,
    local_implicit_score_matching_loss,
    local_implicit_score_matching_terms,
    jacobian_diagonal,
    linear_self_propulsion_bound,
    linear_self_propulsion_moments,
    probability_flow_velocity,
    score_free_entropy_production,
    self_divergence,
    self_propulsion_bound_terms,
    stationarity_residual,
)
from entropylab.production.sde import euler_maruyama, simulate_ou
from entropylab.production.trajectory import (
    linear_currents,
    neep_delta_s,
    neep_entropy_production,
    neep_objective,
    tur_entropy_production,
)

__all__ = [
    "AOUPParams",
    "aoup_diffusion",
    "aoup_drift",
    "aoup_drift_divergence",
    "aoup_score_free_entropy_production",
    "bead_spring_chain",
    "box_half_width",
    "denoising_score_matching_loss",
    "entropy_production_rate",
    "euler_maruyama",
    "fit_linear_self_propulsion_score",
    "hypoelliptic_entropy_production_bound",
    "implicit_score_matching_loss",
    "local_denoising_score_matching_loss",
    "local_implicit_score_matching_loss",
    "local_implicit_score_matching_terms",
    "jacobian_diagonal",
    "linear_self_propulsion_bound",
    "linear_self_propulsion_moments",
    "linear_currents",
    "neep_delta_s",
    "neep_entropy_production",
    "neep_objective",
    "lyapunov_covariance",
    "ou_entropy_production",
    "ou_pair_entropy_production",
    "probability_flow_velocity",
    "sample_ou_pairs",
    "score_free_entropy_production",
    "self_divergence",
    "self_propulsion_bound_terms",
    "simulate_aoup",
    "simulate_ou",
    "stationarity_residual",
    "trapped_aoup",
    "tur_entropy_production",
]
