"""Euler-Maruyama integration (entropylab.production.sde)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab import production as prod


def test_steps_follow_the_recursion_exactly(x64):
  """A NumPy replay of x + b(x) dt + sigma sqrt(dt) xi with the same draws."""
  key = jax.random.key(0)
  drift = lambda x: -x ** 3 + jnp.sin(x)
  x0 = np.array([0.3, -1.2, 2.0])
  noise = np.array([0.5, 0.0, 1.5])
  dt, n = 0.01, 40
  got = np.asarray(prod.euler_maruyama(key, drift, x0, dt, n, noise=noise))
  x = x0.copy()
  for t in range(n):
    xi = np.asarray(jax.random.normal(jax.random.fold_in(key, t), (3,), jnp.float64))
    x = x + (-x ** 3 + np.sin(x)) * dt + noise * np.sqrt(dt) * xi
    np.testing.assert_allclose(got[t], x, rtol=0, atol=1e-13)


def test_saving_and_split_runs_reproduce_the_full_run(x64):
  key = jax.random.key(1)
  m, d = prod.bead_spring_chain([1.0, 4.0])
  full = prod.simulate_ou(key, m, d, np.zeros(2), 0.01, 60)
  every3 = prod.simulate_ou(key, m, d, np.zeros(2), 0.01, 60, save_every=3)
  np.testing.assert_array_equal(every3, full[2::3])
  first = prod.simulate_ou(key, m, d, np.zeros(2), 0.01, 30)
  second = prod.simulate_ou(key, m, d, first[-1], 0.01, 30, start_step=30)
  np.testing.assert_allclose(np.concatenate([first, second]), full, rtol=0, atol=1e-14)


def test_noiseless_coordinates_are_deterministic(x64):
  out = prod.euler_maruyama(jax.random.key(2), lambda x: -x, np.ones((4, 2)), 0.1, 5,
                            noise=np.array([0.0, 1.0]))
  np.testing.assert_allclose(out[:, :, 0], np.broadcast_to(0.9 ** np.arange(1, 6)[:, None],
                                                           (5, 4)), rtol=1e-14)
  assert np.std(np.asarray(out[-1, :, 1])) > 0


def test_ou_chains_reach_the_lyapunov_covariance():
  """Stationary covariance of many chains against the Lyapunov solution. Euler-Maruyama
  at dt = 0.005 biases it by O(dt) (~0.5%); 2000 chains x 50 saved states give ~2%
  sampling error on each entry."""
  m, d = prod.bead_spring_chain([1.0, 10.0])
  chains = 2000
  traj = prod.simulate_ou(jax.random.key(3), m, d, np.zeros((chains, 2)), 0.005, 4000,
                          save_every=40)
  samples = np.asarray(traj[:, 50:]).reshape(-1, 2)  # drop the first 10 time units
  cov = np.cov(samples.T)
  ref = np.asarray(prod.lyapunov_covariance(m, d))
  np.testing.assert_allclose(cov, ref, rtol=0, atol=0.05 * np.max(np.abs(ref)))


def test_correlated_noise_matrix(x64):
  """sigma sigma^T = 2 D with a full D: the one-step covariance is 2 D dt."""
  dmat = np.array([[1.0, 0.6], [0.6, 0.5]])
  sig = np.linalg.cholesky(2 * dmat)
  out = jax.vmap(lambda k: prod.euler_maruyama(k, lambda x: 0.0 * x, np.zeros(2), 0.1, 1,
                                               noise_matrix=sig))(
      jax.random.split(jax.random.key(4), 40000))
  np.testing.assert_allclose(np.cov(np.asarray(out[:, 0]).T), 2 * dmat * 0.1, rtol=0, atol=0.01)


def test_bad_input_raises():
  f = lambda x: -x
  with pytest.raises(ValueError, match="dt"):
    prod.euler_maruyama(jax.random.key(0), f, np.zeros(2), 0.0, 10)
  with pytest.raises(ValueError, match="dt"):
    prod.euler_maruyama(jax.random.key(0), f, np.zeros(2), np.nan, 10)
  with pytest.raises(ValueError, match="multiple of save_every"):
    prod.euler_maruyama(jax.random.key(0), f, np.zeros(2), 0.1, 10, save_every=3)
  with pytest.raises(ValueError, match="noise"):
    prod.euler_maruyama(jax.random.key(0), f, np.zeros(2), 0.1, 10, noise=np.ones(3))
  with pytest.raises(ValueError, match="noise_matrix"):
    prod.euler_maruyama(jax.random.key(0), f, np.zeros(2), 0.1, 10, noise_matrix=np.eye(3))
  with pytest.raises(TypeError, match="drift"):
    prod.euler_maruyama(jax.random.key(0), None, np.zeros(2), 0.1, 10)
  with pytest.raises(ValueError, match="M is not stable"):
    prod.simulate_ou(jax.random.key(0), np.eye(2), np.ones(2), np.zeros(2), 0.1, 10)
  with pytest.raises(ValueError, match="x0"):
    prod.simulate_ou(jax.random.key(0), -np.eye(2), np.ones(2), np.zeros(3), 0.1, 10)
