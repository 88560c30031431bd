"""Linear systems: Lyapunov covariance and exact entropy production (entropylab.production.ou).

References: scipy.linalg.solve_continuous_lyapunov; the closed forms of the bead-spring
chain (Kim et al., PRL 2020: 2.025 for two beads at temperatures 1 and 10, 0.629817 for
five beads from 1 to 10) and of the trapped active Ornstein-Uhlenbeck particle (Boffi &
Vanden-Eijnden, PNAS 2024: gamma v0^2 / (eps (A + gamma)) per dimension, A when eps = 0).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from entropylab import production as prod


def random_system(rng, n, diagonal=False):
  a = rng.normal(size=(n, n))
  m = a - (np.max(np.linalg.eigvals(a).real) + rng.uniform(0.2, 1.0)) * np.eye(n)
  if diagonal:
    return m, np.diag(rng.uniform(0.2, 2.0, size=n))
  b = rng.normal(size=(n, n))
  return m, b @ b.T / n + 0.1 * np.eye(n)


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_lyapunov_matches_scipy(x64, n):
  rng = np.random.default_rng(n)
  m, d = random_system(rng, n)
  got = np.asarray(prod.lyapunov_covariance(m, d))
  ref = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.max(np.abs(ref)))
  assert np.allclose(got, got.T)


def test_lyapunov_float32_and_vector_diffusion():
  rng = np.random.default_rng(3)
  m, d = random_system(rng, 4, diagonal=True)
  ref = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  got = np.asarray(prod.lyapunov_covariance(m.astype(np.float32), np.diag(d).astype(np.float32)))
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.max(np.abs(ref)))


@pytest.mark.parametrize("seed", range(4))
def test_rate_equals_trace_formula_of_an_independent_solver(x64, seed):
  """Tr(D^+ V S V^T) against Tr(M^T D^-1 M S) + Tr M with scipy's covariance."""
  rng = np.random.default_rng(10 + seed)
  m, d = random_system(rng, 3 + seed)
  s = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  ref = np.trace(m.T @ np.linalg.inv(d) @ m @ s) + np.trace(m)
  assert abs(float(prod.ou_entropy_production(m, d)) - ref) < 1e-9 * max(1.0, abs(ref))
  terms = np.asarray(prod.ou_entropy_production(m, d, per_coordinate=True))
  assert abs(terms.sum() - ref) < 1e-9 * max(1.0, abs(ref))


def test_bead_spring_closed_forms(x64):
  assert abs(float(prod.ou_entropy_production(*prod.bead_spring_chain([1.0, 10.0]))) - 2.025) < 1e-12
  five = prod.ou_entropy_production(*prod.bead_spring_chain(np.linspace(1.0, 10.0, 5)))
  assert abs(float(five) - 0.629817) < 5e-7
  # Equal temperatures: equilibrium, no production.
  assert abs(float(prod.ou_entropy_production(*prod.bead_spring_chain([2.0, 2.0, 2.0])))) < 1e-12
  # Bits: the same rate divided by ln 2.
  bits = prod.ou_entropy_production(*prod.bead_spring_chain([1.0, 10.0]), base=2)
  assert abs(float(bits) - 2.025 / math.log(2)) < 1e-12


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_trapped_aoup_closed_forms(x64, dim):
  a, gamma, eps, v0 = 0.05, 0.1, 0.1, 0.3
  terms = np.asarray(prod.ou_entropy_production(*prod.trapped_aoup(a, gamma, eps, v0, dim),
                                                per_coordinate=True))
  total = gamma * v0 ** 2 / (eps * (a + gamma))
  assert abs(total - 0.6) < 1e-12
  np.testing.assert_allclose(terms[dim:], 0.04, rtol=0, atol=1e-12)  # the g part
  np.testing.assert_allclose(terms[:dim], total - 0.04, rtol=0, atol=1e-12)
  hypo = prod.ou_entropy_production(*prod.trapped_aoup(a, gamma, 0.0, v0, dim))
  assert abs(float(hypo) - a * dim) < 1e-12
  # No self-propulsion, with thermal noise: equilibrium.
  assert abs(float(prod.ou_entropy_production(*prod.trapped_aoup(a, gamma, eps, 0.0, dim)))) < 1e-12


def test_gradient_dynamics_produce_nothing(x64):
  """M = -D H with symmetric positive H satisfies detailed balance: zero production."""
  rng = np.random.default_rng(5)
  b = rng.normal(size=(4, 4))
  h = b @ b.T + np.eye(4)
  d = np.diag(rng.uniform(0.5, 2.0, size=4))
  assert abs(float(prod.ou_entropy_production(-d @ h, d))) < 1e-10


def test_jit_and_vmap_agree(x64):
  temps = np.array([[1.0, 10.0], [1.0, 3.0], [2.0, 5.0]])
  f = lambda t: prod.ou_entropy_production(*prod.bead_spring_chain(t))
  batched = jax.vmap(f)(jnp.asarray(temps))
  expect = [(t1 - t0) ** 2 / (4 * t0 * t1) for t0, t1 in temps]
  np.testing.assert_allclose(batched, expect, rtol=1e-12)
  assert abs(float(jax.jit(f)(temps[0])) - 2.025) < 1e-12


def test_bad_input_raises():
  m, d = prod.bead_spring_chain([1.0, 2.0])
  with pytest.raises(ValueError, match="M is not stable"):
    prod.ou_entropy_production(np.array([[0.1, 0.0], [0.0, -1.0]]), d)
  with pytest.raises(ValueError, match="D must be symmetric"):
    prod.ou_entropy_production(m, np.array([[1.0, 0.5], [0.0, 1.0]]))
  with pytest.raises(ValueError, match="positive semidefinite"):
    prod.ou_entropy_production(m, np.array([1.0, -0.5]))
  with pytest.raises(ValueError, match="nonzero"):
    prod.ou_entropy_production(m, np.zeros(2))
  with pytest.raises(ValueError, match="to match M"):
    prod.ou_entropy_production(m, np.ones(3))
  with pytest.raises(ValueError, match="square"):
    prod.lyapunov_covariance(np.ones((2, 3)), np.ones(2))
  with pytest.raises(ValueError, match="non-finite"):
    prod.lyapunov_covariance(np.array([[np.nan, 0.0], [0.0, -1.0]]), np.ones(2))
  with pytest.raises(ValueError, match="temperatures"):
    prod.bead_spring_chain([1.0, -2.0])
  with pytest.raises(ValueError, match="epsilon"):
    prod.trapped_aoup(0.05, 0.1, -0.1, 0.3)
