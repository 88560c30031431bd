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


def test_hypoelliptic_trapped_rate_is_the_trap_stiffness(x64):
  """Without translational noise the trapped particle produces A d whatever its
  activity v0 > 0 (0.025 to 10) and persistence 1 / gamma (gamma 1e-4 to 1): a
  caged active particle produces in proportion to its cage's stiffness, which is the
  phase-space contraction -div_x b_x = A d."""
  for a in (0.05, 1.0, 20.0):
    for gamma in (1e-4, 1e-2, 1.0):
      for v0 in (0.025, 1.0, 10.0):
        rate = float(prod.ou_entropy_production(*prod.trapped_aoup(a, gamma, 0.0, v0, 2)))
        assert rate == pytest.approx(2 * a, rel=1e-8), (a, gamma, v0)


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


def slow_restricted_deficits(m, d, support):
  """D_ii E(s_i - s*_i)^2 of the best score of z_{S_i}, by explicit index sets with
  scipy's covariance: P_ii - [(Sigma_SS)^-1]_ii (i in S), else P_ii."""
  sigma = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  prec = np.linalg.inv(sigma)
  out = []
  for i in range(m.shape[0]):
    s = np.flatnonzero(support[i])
    explained = 0.0
    if i in s:
      explained = np.linalg.inv(sigma[np.ix_(s, s)])[list(s).index(i), list(s).index(i)]
    out.append(d[i, i] * (prec[i, i] - explained))
  return np.array(out)


@pytest.mark.parametrize("seed", range(3))
def test_restricted_score_bound_against_index_sets(x64, seed):
  rng = np.random.default_rng(40 + seed)
  m, d = random_system(rng, 5, diagonal=True)
  support = rng.uniform(size=(5, 5)) < 0.5
  support[0, 0] = False                         # one row that cannot see its own coordinate
  deficits = np.asarray(prod.ou_restricted_score_bound(m, np.diag(d), support,
                                                       per_coordinate=True))
  np.testing.assert_allclose(deficits, slow_restricted_deficits(m, d, support), rtol=1e-8,
                             atol=1e-10)
  assert np.all(deficits >= -1e-10)
  rate = float(prod.ou_entropy_production(m, d))
  bound = float(prod.ou_restricted_score_bound(m, d, support))
  assert bound == pytest.approx(rate - deficits.sum(), rel=1e-10)
  # Jitted (every row solved, none skipped for lack of noise): the same value.
  assert float(jax.jit(prod.ou_restricted_score_bound)(m, np.diag(d), support)) == (
      pytest.approx(bound, rel=1e-10))
  full = float(prod.ou_restricted_score_bound(m, d, np.ones((5, 5), bool)))
  assert full == pytest.approx(rate, rel=1e-9)
  # A larger support never certifies less.
  assert float(prod.ou_restricted_score_bound(m, d, support | np.eye(5, dtype=bool))) >= bound


def test_restricted_bound_is_the_hypoelliptic_bound_of_the_best_local_score(x64):
  """On exact samples of a ring of 6 active particles, the best score that sees only
  each particle's own x_i and g_i (linear, its weights from Sigma) fed to
  hypoelliptic_entropy_production_bound gives the closed form within sampling error."""
  n, gamma = 6, 0.2
  m, d = (np.asarray(a) for a in prod.active_spring_ring(n, 0.5, 0.3, gamma, 0.4))
  sigma = scipy.linalg.solve_continuous_lyapunov(m, -2 * d)
  own = np.zeros((2 * n, 2 * n), bool)
  for i in range(n):
    for a in (i, n + i):
      own[a, [i, n + i]] = True
  w = np.zeros((2 * n, 2 * n))
  for row in range(2 * n):
    s = np.flatnonzero(own[row])
    w[row, s] = -np.linalg.inv(sigma[np.ix_(s, s)])[:, list(s).index(row)]
  w = jnp.asarray(w)
  self_w = jnp.asarray(np.stack([[np.diag(w[p * n:(p + 1) * n, q * n:(q + 1) * n])
                                  for q in range(2)] for p in range(2)]))   # [2, 2, n]

  def score(state, query=None, self_shift=None):                 # state [2, n, 1]
    out = (w @ state.reshape(-1)).reshape(2, n, 1)
    if self_shift is not None:
      out = out + jnp.einsum("pqm,qmd->pmd", self_w, self_shift)
    return out

  z = np.random.default_rng(0).multivariate_normal(np.zeros(2 * n), sigma, size=200_000)
  terms = np.asarray(prod.hypoelliptic_entropy_production_bound(
      score, jnp.asarray(z.reshape(-1, 2, n, 1)), gamma, local=True)).sum(axis=1)
  expect = float(prod.ou_restricted_score_bound(m, np.diag(d), own))
  assert abs(terms.mean() - expect) < 4 * terms.std() / np.sqrt(len(terms))
  assert expect < 0.9 * float(prod.ou_entropy_production(m, d))   # a real gap


@pytest.mark.parametrize("gamma", [0.1, 1e-3])
def test_active_spring_ring_rate_and_its_local_score(x64, gamma):
  """The rate is n (2k + A) whatever gamma; a score of g_i that sees the particles
  within 2 sites certifies all of it (the stationary precision is banded), within 1
  site less, and its own particle alone almost nothing."""
  n, k, a = 16, 0.5, 0.01
  m, d = prod.active_spring_ring(n, k, a, gamma, 0.025)
  rate = float(prod.ou_entropy_production(m, d))
  assert rate == pytest.approx(n * (2 * k + a), rel=1e-6)
  idx = np.arange(n)
  dist = np.abs(idx[:, None] - idx[None, :])
  dist = np.minimum(dist, n - dist)

  def bound(r):
    support = np.ones((2 * n, 2 * n), bool)
    support[n:, :n] = support[n:, n:] = dist <= r
    return float(prod.ou_restricted_score_bound(m, np.diagonal(d), support))

  assert bound(2) == pytest.approx(rate, rel=1e-6)
  one = np.ones((2 * n, 2 * n), bool)
  one[n:, :n] = one[n:, n:] = dist <= 1
  jitted = jax.jit(prod.ou_restricted_score_bound)(m, np.diagonal(d), one)
  assert float(jitted) == pytest.approx(bound(1), rel=1e-9)     # noiseless rows solved too
  assert bound(0) < 0.01 * rate < bound(1) < 0.6 * rate
  # Without springs the particles are independent trapped particles: their own
  # coordinates suffice, and the rate is A per particle (trapped_aoup).
  m0, d0 = prod.active_spring_ring(n, 0.0, 0.3, gamma, 0.025)
  own = np.ones((2 * n, 2 * n), bool)
  own[n:, :n] = own[n:, n:] = dist == 0
  assert float(prod.ou_restricted_score_bound(m0, np.diagonal(d0), own)) == pytest.approx(
      n * 0.3, rel=1e-6)


def test_restricted_bound_and_ring_bad_input():
  m, d = prod.active_spring_ring(4, 0.5, 0.1, 0.1, 0.3)
  full = np.ones((8, 8), bool)
  with pytest.raises(ValueError, match="diagonal"):
    prod.ou_restricted_score_bound(m, np.eye(8) + 0.1 * np.ones((8, 8)), full)
  with pytest.raises(ValueError, match="support must be"):
    prod.ou_restricted_score_bound(m, np.diagonal(d), full[:4])
  with pytest.raises(TypeError, match="booleans"):
    prod.ou_restricted_score_bound(m, np.diagonal(d), full.astype(float))
  with pytest.raises(ValueError, match="M is not stable"):
    prod.ou_restricted_score_bound(-np.asarray(m), np.diagonal(d), full)
  with pytest.raises(ValueError, match="at least 3"):
    prod.active_spring_ring(2, 0.5, 0.1, 0.1, 0.3)
  with pytest.raises(ValueError, match="trap"):
    prod.active_spring_ring(4, 0.5, 0.0, 0.1, 0.3)
