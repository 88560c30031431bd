"""Trajectory baselines: NEEP and the short-time TUR (entropylab.production.trajectory).

References: the exact pair entropy D_KL(p(z0, z_tau) || p(z_tau, z0)) of linear systems
(entropylab.production.ou.ou_pair_entropy_production), its tau -> 0 limit (the exact
rate, checked against scipy in test_ou.py), and exact stationary transitions
(sample_ou_pairs), so no time-step error enters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from entropylab import production as prod
from entropylab.models import MLP
from entropylab.runner.train import fit


def exact_log_ratio(m, d, tau):
  """h(x, x') = -1/2 [x; x']^T C^-1 [x; x'] makes Delta S the exact log-ratio."""
  sigma = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  e = scipy.linalg.expm(m * tau)
  c_inv = jnp.asarray(np.linalg.inv(np.block([[sigma, sigma @ e.T], [e @ sigma, sigma]])))
  return lambda x, y: -0.5 * jnp.concatenate([x, y]) @ c_inv @ jnp.concatenate([x, y])


def test_pair_entropy_tends_to_the_rate_from_below(x64):
  m, d = prod.bead_spring_chain([1.0, 10.0])
  rates = [float(prod.ou_pair_entropy_production(m, d, tau)) / tau
           for tau in (1.0, 0.1, 0.01, 1e-3)]
  assert all(a < b for a, b in zip(rates, rates[1:]))
  assert rates[-1] < 2.025 and abs(rates[-1] - 2.025) < 0.01 * 2.025
  # Equilibrium: equal temperatures produce nothing at any sampling interval.
  assert abs(float(prod.ou_pair_entropy_production(*prod.bead_spring_chain([2.0, 2.0]), 0.3))) < 1e-10


def test_exact_pairs_have_the_stationary_statistics(x64):
  m, d = prod.bead_spring_chain([1.0, 10.0])
  x, y = prod.sample_ou_pairs(jax.random.key(0), m, d, 0.5, 200_000)
  sigma = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  e = scipy.linalg.expm(m * 0.5)
  scale = np.max(np.abs(sigma))
  np.testing.assert_allclose(np.cov(np.asarray(x).T), sigma, atol=0.02 * scale)
  np.testing.assert_allclose(np.cov(np.asarray(y).T), sigma, atol=0.02 * scale)
  cross = np.asarray(y).T @ np.asarray(x) / x.shape[0]
  np.testing.assert_allclose(cross, e @ sigma, atol=0.02 * scale)


def test_neep_objective_and_estimate_at_the_exact_log_ratio(x64):
  """With the exact log-ratio: E[Delta S] = Sigma_tau and J = Sigma_tau - 1 (since
  E[exp(-Delta S)] = 1), up to Monte Carlo error."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  tau = 0.05
  sigma_tau = float(prod.ou_pair_entropy_production(m, d, tau))
  x, y = prod.sample_ou_pairs(jax.random.key(1), m, d, tau, 400_000)
  h = exact_log_ratio(m, d, tau)
  est = float(prod.neep_entropy_production(h, x, y, tau))
  assert abs(est - sigma_tau / tau) < 0.03 * sigma_tau / tau
  j = float(prod.neep_objective(h, x, y))
  assert abs(j - (sigma_tau - 1.0)) < 0.01
  # Antisymmetry: swapping the pair flips Delta S.
  np.testing.assert_allclose(prod.neep_delta_s(h, y[:10], x[:10]),
                             -prod.neep_delta_s(h, x[:10], y[:10]), rtol=1e-12)


@pytest.mark.parametrize("system", ["beads2", "beads5", "aoup"])
def test_tur_with_linear_currents_recovers_linear_rates(x64, system):
  """Exact for linear systems as tau -> 0. At finite tau it follows the pair entropy
  Sigma_tau / tau (from below, within a few percent of the rate at tau = 0.01); with
  10^6 exact transitions its relative standard error is under 2%: within 6%."""
  m, d = {"beads2": lambda: prod.bead_spring_chain([1.0, 10.0]),
          "beads5": lambda: prod.bead_spring_chain(np.linspace(1.0, 10.0, 5)),
          "aoup": lambda: prod.trapped_aoup(0.05, 0.1, 0.1, 0.3, dim=1)}[system]()
  tau = 0.01 if system != "aoup" else 0.1
  x, y = prod.sample_ou_pairs(jax.random.key(2), m, d, tau, 1_000_000)
  exact = float(prod.ou_entropy_production(m, d))
  reference = float(prod.ou_pair_entropy_production(m, d, tau)) / tau
  assert reference < exact and reference > 0.95 * exact
  assert abs(float(prod.tur_entropy_production(x, y, tau)) - reference) < 0.06 * reference
  # Currents along one coordinate only bound the rate from below.
  partial = float(prod.tur_entropy_production(x, y, tau, coordinates=[0]))
  assert partial < exact


def test_trained_neep_recovers_the_two_bead_rate():
  """An MLP h(x, x') trained on NEEP's objective over 2e5 exact transitions at
  tau = 0.05: E[Delta S] / tau within 10% of Sigma_tau / tau (1.91)."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  tau = 0.05
  x, y = prod.sample_ou_pairs(jax.random.key(3), m, d, tau, 200_000)
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  model = MLP(features=(64, 64), out_features=1, squeeze=True)
  params = model.init(jax.random.key(0), jnp.zeros(4))
  h_of = lambda p: (lambda a, b: model.apply(p, jnp.concatenate([a, b])))

  def batch_fn(k, step):
    i = jax.random.randint(k, (1024,), 0, x.shape[0])
    return x[i], y[i]

  loss = lambda p, batch: -prod.neep_objective(h_of(p), *batch)
  state, _ = fit(loss, params, optax.adam(1e-3), jax.random.key(4), num_steps=1500,
                 batch_fn=batch_fn, chunk_size=500, progress=False)
  with jax.enable_x64(True):
    target = float(prod.ou_pair_entropy_production(m, d, tau)) / tau
  est = float(prod.neep_entropy_production(h_of(state.params), x, y, tau))
  assert abs(est - target) < 0.1 * target


def test_bad_input_raises():
  x = np.zeros((10, 2))
  h = lambda a, b: jnp.sum(a * b)
  with pytest.raises(ValueError, match="same shape"):
    prod.neep_objective(h, x, np.zeros((10, 3)))
  with pytest.raises(ValueError, match="tau"):
    prod.neep_entropy_production(h, x, x, 0.0)
  with pytest.raises(ValueError, match="tau"):
    prod.tur_entropy_production(x, x, -1.0)
  with pytest.raises(ValueError, match="coordinates"):
    prod.tur_entropy_production(x, x, 0.1, coordinates=[5])
  with pytest.raises(TypeError, match="h must be callable"):
    prod.neep_objective(None, x, x)
  with pytest.raises(ValueError, match="non-finite"):
    prod.neep_objective(h, np.full((3, 2), np.nan), np.zeros((3, 2)))
  m, d = prod.bead_spring_chain([1.0, 2.0])
  with pytest.raises(ValueError, match="tau"):
    prod.ou_pair_entropy_production(m, d, 0.0)
  with pytest.raises(ValueError, match="num"):
    prod.sample_ou_pairs(jax.random.key(0), m, d, 0.1, 0)
