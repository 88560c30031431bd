"""Score matching and entropy production from scores (entropylab.production.score).

The references are the closed forms of entropylab.production.ou (themselves checked
against scipy and the papers' values in test_ou.py), evaluated with exact stationary
samples drawn from N(0, Sigma).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from entropylab import production as prod
from entropylab.models import MLP
from entropylab.runner.train import fit


def gaussian_system(m, d, n_samples, seed=0):
  """Exact stationary samples and the exact score of dz = Mz dt + sqrt(2D) dW."""
  sigma = np.asarray(prod.lyapunov_covariance(m, d), np.float64)
  x = np.random.default_rng(seed).multivariate_normal(np.zeros(len(sigma)), sigma, n_samples)
  prec = jnp.asarray(np.linalg.inv(sigma))
  mj = jnp.asarray(m)
  return jnp.asarray(x), (lambda z: mj @ z), (lambda z: -prec @ z)


def test_jacobian_diagonal_matches_jacfwd(x64):
  f = lambda x: jnp.tanh(x[::-1] * x) + x ** 3 * jnp.sum(x)
  x = jnp.array([[0.3, -0.7], [1.1, 0.2]])
  full = jax.jacfwd(f)(x).reshape(4, 4)
  np.testing.assert_allclose(prod.jacobian_diagonal(f, x).reshape(-1), np.diagonal(full),
                             rtol=1e-14)


@pytest.mark.parametrize("system", ["beads2", "beads5", "aoup", "aoup_hypo"])
def test_exact_score_gives_the_closed_form_rate(x64, system):
  """Monte Carlo over 2e5 exact stationary samples: within 1.5% (the estimator's
  relative standard error here is below 0.5%); per-coordinate rates within 0.01."""
  m, d = {"beads2": lambda: prod.bead_spring_chain([1.0, 10.0]),
          "beads5": lambda: prod.bead_spring_chain(np.linspace(1.0, 10.0, 5)),
          "aoup": lambda: prod.trapped_aoup(0.05, 0.1, 0.1, 0.3, dim=2),
          "aoup_hypo": lambda: prod.trapped_aoup(0.05, 0.1, 0.0, 0.3, dim=2)}[system]()
  x, drift, score = gaussian_system(m, d, 200_000)
  diag = jnp.diagonal(d)
  exact = float(prod.ou_entropy_production(m, d))
  got = float(prod.entropy_production_rate(drift, score, diag, x))
  assert abs(got - exact) < 0.015 * exact
  local = np.asarray(prod.entropy_production_rate(drift, score, diag, x, local=True))
  np.testing.assert_allclose(local, prod.ou_entropy_production(m, d, per_coordinate=True),
                             rtol=0.02, atol=1e-3)
  free = float(prod.score_free_entropy_production(drift, diag, x))
  assert abs(free - exact) < 0.03 * exact
  free_local = np.asarray(prod.score_free_entropy_production(drift, diag, x, local=True))
  assert abs(free_local.sum() - free) < 1e-9 * max(1.0, abs(free))
  # Closed form of those terms: (M S M^T)_ii / D_i + M_ii, or -M_ii where D_i = 0.
  sig = np.asarray(prod.lyapunov_covariance(m, d))
  mm, dd = np.asarray(m), np.diagonal(np.asarray(d))
  bb = np.diagonal(mm @ sig @ mm.T)
  expect = np.where(dd > 0, bb / np.where(dd > 0, dd, 1.0) + np.diagonal(mm), -np.diagonal(mm))
  scale = np.where(dd > 0, bb / np.where(dd > 0, dd, 1.0), np.abs(np.diagonal(mm)))
  np.testing.assert_allclose(free_local, expect, rtol=0, atol=0.02 * np.max(scale))
  # Stationarity: E[v . s] vanishes against the scale E[|v| |s|].
  resid = float(prod.stationarity_residual(drift, score, diag, x))
  v = jax.vmap(prod.probability_flow_velocity(drift, score, diag))(x)
  s = jax.vmap(score)(x)
  scale = float(jnp.mean(jnp.linalg.norm(v, axis=1) * jnp.linalg.norm(s, axis=1)))
  assert abs(resid) < 0.01 * scale


def test_wrong_score_is_detected(x64):
  m, d = prod.bead_spring_chain([1.0, 10.0])
  x, drift, score = gaussian_system(m, d, 100_000)
  half = lambda z: 0.5 * score(z)
  diag = jnp.diagonal(d)
  v = jax.vmap(prod.probability_flow_velocity(drift, half, diag))(x)
  scale = float(jnp.mean(jnp.linalg.norm(v, axis=1) * jnp.linalg.norm(jax.vmap(half)(x), axis=1)))
  assert abs(float(prod.stationarity_residual(drift, half, diag, x))) > 0.1 * scale


def test_implicit_loss_orders_scores_by_fisher_distance(x64):
  """ISM(s) - ISM(s*) = 1/2 E|s - s*|^2 for any s (Hyvarinen 2005, Theorem 1), on the same
  samples up to sampling error; Hutchinson's estimator has the exact loss as its mean."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  x, _, score = gaussian_system(m, d, 200_000)
  other = lambda z: score(z) + jnp.array([1.0, -0.8]) * jnp.tanh(z)
  gap = float(prod.implicit_score_matching_loss(other, x)
              - prod.implicit_score_matching_loss(score, x))
  fisher = 0.5 * float(jnp.mean(jnp.sum((jax.vmap(other)(x) - jax.vmap(score)(x)) ** 2, 1)))
  assert abs(gap - fisher) < 0.05 * fisher
  exact = float(prod.implicit_score_matching_loss(other, x[:100_000]))
  hutch = float(prod.implicit_score_matching_loss(other, x[:100_000], key=jax.random.key(0),
                                                  probes=8))
  assert abs(hutch - exact) < 0.02 * abs(exact)


def test_denoising_loss_is_minimised_by_the_smoothed_score(x64):
  """For N(0, S) the minimiser is -(S + sigma^2 I)^-1 z: scaling it by 0.8 or 1.2
  raises the (antithetic and plain) loss on the same draws."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  sigma_mat = np.asarray(prod.lyapunov_covariance(m, d))
  x, _, _ = gaussian_system(m, d, 100_000)
  sig = 0.3
  prec = jnp.asarray(np.linalg.inv(sigma_mat + sig ** 2 * np.eye(2)))
  for antithetic in (True, False):
    loss = lambda c: float(prod.denoising_score_matching_loss(
        lambda z: -c * (prec @ z), x, jax.random.key(1), sig, antithetic=antithetic))
    assert loss(1.0) < loss(0.8) and loss(1.0) < loss(1.2)


def train_score(x, loss, steps, key):
  model = MLP(features=(32, 32))
  params = model.init(jax.random.key(0), x[0])
  n = x.shape[0]

  def batch_fn(k, step):
    k1, k2 = jax.random.split(k)
    return x[jax.random.randint(k1, (256,), 0, n)], k2

  def loss_fn(p, batch):
    xb, k = batch
    return loss(lambda z: model.apply(p, z), xb, k)

  state, _ = fit(loss_fn, params, optax.adam(3e-3), key, num_steps=steps, batch_fn=batch_fn,
                 chunk_size=steps // 4, progress=False)
  return lambda z: model.apply(state.params, z)


def test_learned_score_recovers_the_two_bead_rate():
  """An MLP trained by implicit score matching on 2e4 stationary samples of the two-bead
  chain gives its entropy production (2.025) within 10%, and so does denoising score
  matching on the trapped AOUP (0.6 per dimension, 1 dimension) within 15%."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  x, drift, _ = gaussian_system(m, d, 20_000, seed=5)
  x = x.astype(jnp.float32)
  drift32 = lambda z: jnp.asarray(m, jnp.float32) @ z
  ism = lambda s, xb, k: prod.implicit_score_matching_loss(s, xb)
  learned = train_score(x, ism, 2000, jax.random.key(1))
  rate = float(prod.entropy_production_rate(drift32, learned, jnp.diagonal(d), x))
  assert abs(rate - 2.025) < 0.1 * 2.025

  m, d = prod.trapped_aoup(0.05, 0.1, 0.1, 0.3, dim=1)
  x, _, _ = gaussian_system(m, d, 20_000, seed=6)
  x = x.astype(jnp.float32)
  drift32 = lambda z: jnp.asarray(m, jnp.float32) @ z
  dsm = lambda s, xb, k: prod.denoising_score_matching_loss(s, xb, k, 0.05)
  learned = train_score(x, dsm, 2000, jax.random.key(2))
  rate = float(prod.entropy_production_rate(drift32, learned, jnp.diagonal(d), x))
  assert abs(rate - 0.6) < 0.15 * 0.6


def test_bad_input_raises():
  f = lambda z: -z
  with pytest.raises(ValueError, match="diffusion"):
    prod.entropy_production_rate(f, f, np.ones(3), np.zeros((5, 2)))
  with pytest.raises(ValueError, match="diffusion"):
    prod.entropy_production_rate(f, f, np.array([1.0, -1.0]), np.zeros((5, 2)))
  with pytest.raises(ValueError, match="x must be a batch"):
    prod.entropy_production_rate(f, f, 1.0, np.zeros(5))
  with pytest.raises(ValueError, match="non-finite"):
    prod.score_free_entropy_production(f, 1.0, np.array([[np.nan, 0.0]]))
  with pytest.raises(ValueError, match="sigma"):
    prod.denoising_score_matching_loss(f, np.zeros((4, 2)), jax.random.key(0), 0.0)
  with pytest.raises(ValueError, match="probes"):
    prod.implicit_score_matching_loss(f, np.zeros((4, 2)), key=jax.random.key(0), probes=0)
  with pytest.raises(TypeError, match="score"):
    prod.implicit_score_matching_loss(None, np.zeros((4, 2)))
