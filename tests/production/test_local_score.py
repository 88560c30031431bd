"""Local score matching for particle systems: the per-particle divergence, the
self-propulsion score matching loss and the entropy production bound
(entropylab.production.score).

References: the full Jacobian of the network (``jacobian_diagonal``, one derivative per
coordinate), the full implicit score matching loss, and the closed forms of the trapped
active particle (``trapped_aoup`` with ``lyapunov_covariance``, checked in test_ou.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab import production as prod
from entropylab.models import LocalTransformer
from entropylab.production import active


@pytest.fixture(scope="module")
def local_net():
  p = active.AOUPParams(v0=0.1, gamma=0.1, epsilon=0.1, half_width=active.box_half_width(24, 0.3))
  state = active.random_configuration(jax.random.key(1), 24, p)
  state = state.at[1].multiply(1.7)
  net = LocalTransformer(num_neighbors=6, width=16, depth=2, heads=2)
  params = net.init(jax.random.key(2), state, p.half_width)

  def score(z, query=None, shift=None):
    return net.apply(params, z, p.half_width, query, shift)

  return score, state


def test_self_divergence_is_the_trace_of_each_diagonal_jacobian_block(local_net):
  score, state = local_net
  diag = jax.jit(lambda z: prod.jacobian_diagonal(score, z))(state).sum(-1)   # [2, N]
  assert float(jnp.abs(diag).min()) > 1e-3          # the blocks are not trivially zero
  full = jax.jit(lambda z: prod.self_divergence(lambda sh: score(z, None, sh), z.shape))(state)
  np.testing.assert_allclose(full, diag, rtol=1e-4, atol=1e-5)
  query = jnp.array([7, 0, 23, 12, 3])
  sub = jax.jit(lambda z: prod.self_divergence(lambda sh: score(z, query, sh), (2, 5, 2),
                                               parts=(1,)))(state)
  np.testing.assert_allclose(sub[0], diag[1, query], rtol=1e-4, atol=1e-5)


def test_local_loss_equals_the_full_implicit_loss(local_net):
  score, state = local_net
  x = jnp.stack([state, state.at[1].multiply(-0.5)])
  full = float(jax.jit(lambda y: prod.implicit_score_matching_loss(lambda z: score(z), y))(x))
  both = float(jax.jit(lambda y: prod.local_implicit_score_matching_loss(score, y, (0, 1)))(x))
  np.testing.assert_allclose(both, full, rtol=1e-4)
  # Only the g-part: 1/2 |s_g|^2 plus the g-entries of the Jacobian diagonal.
  diag = jax.jit(jax.vmap(lambda z: prod.jacobian_diagonal(score, z)))(x)
  want = float(jnp.mean(0.5 * jnp.sum(jax.jit(jax.vmap(score))(x)[:, 1] ** 2, axis=(1, 2))
                        + jnp.sum(diag[:, 1], axis=(1, 2))))
  got = jax.jit(lambda y: prod.local_implicit_score_matching_loss(score, y))(x)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  # A subset of all N particles is a permutation: the same loss.
  perm = float(jax.jit(lambda y: prod.local_implicit_score_matching_loss(
      score, y, query_size=24, key=jax.random.key(0)))(x))
  np.testing.assert_allclose(perm, want, rtol=1e-4)


def test_subset_loss_is_unbiased(local_net):
  """Mean over 800 random subsets of 4 of the 24 particles, scaled by 24 / 4, against the
  loss over all particles: within 4 standard errors of the subset mean."""
  score, state = local_net
  full = float(jax.jit(lambda y: prod.local_implicit_score_matching_loss(score, y))(state[None]))
  x = jnp.broadcast_to(state, (100,) + state.shape)
  subsets = jax.jit(lambda k: prod.local_implicit_score_matching_loss(score, x, query_size=4,
                                                                      key=k))
  means = [float(subsets(jax.random.key(k))) for k in range(8)]
  se = np.std(means, ddof=1) / np.sqrt(len(means))
  assert se > 0
  assert abs(np.mean(means) - full) < 4 * se + 1e-6 * abs(full)


def trapped_particles(trap, gamma, v0, n, batch, seed=0):
  """``[batch, 2, n, 2]`` independent stationary trapped active particles (eps = 0) and
  their exact per-particle precision, state order (x1, x2, g1, g2)."""
  m, d = prod.trapped_aoup(trap, gamma, 0.0, v0, dim=2)
  sigma = np.asarray(prod.lyapunov_covariance(m, d), np.float64)
  z = np.random.default_rng(seed).multivariate_normal(np.zeros(4), sigma, (batch, n))
  states = np.stack([z[..., :2], z[..., 2:]], axis=1)                    # [B, 2, n, 2]
  return jnp.asarray(states), np.linalg.inv(sigma), sigma, float(prod.ou_entropy_production(m, d))


def linear_local_score(prec):
  prec = jnp.asarray(prec)

  def score(state, query=None, shift=None):
    z = state if query is None else state[:, query]
    if shift is not None:
      z = z + shift
    flat = jnp.concatenate([z[0], z[1]], axis=-1)                        # [M, 4]
    out = -flat @ prec.T
    return jnp.stack([out[:, :2], out[:, 2:]])

  return score


def test_bound_is_the_rate_minus_the_fisher_distance(x64):
  """Trapped active particles (A = 0.05, gamma = 0.1, v0 = 0.3, eps = 0): rate A d = 0.1
  per particle. The exact score gives the rate; a wrong g-score gives the rate minus
  gamma E|s_g - s*_g|^2 in closed form (tr(Q Sigma Q^T) for the error -Q z); both within
  3% over 2e5 exact samples."""
  trap, gamma, v0, n = 0.05, 0.1, 0.3, 50
  x, prec, sigma, rate = trapped_particles(trap, gamma, v0, n, 4000)
  assert abs(rate - trap * 2) < 1e-9
  exact = float(prod.hypoelliptic_entropy_production_bound(linear_local_score(prec), x, gamma))
  assert abs(exact / n - rate) < 0.03 * rate
  q = np.zeros((4, 4))
  q[2:, :] = 0.3 * np.array([[0.4, -0.2, 0.8, 0.1], [0.1, 0.3, -0.2, 0.9]])
  wrong = float(prod.hypoelliptic_entropy_production_bound(linear_local_score(prec + q), x,
                                                           gamma))
  expect = rate - gamma * np.trace(q @ sigma @ q.T)
  assert 0.2 * rate < expect < 0.8 * rate
  assert abs(wrong / n - expect) < 0.03 * rate
  local = np.asarray(prod.hypoelliptic_entropy_production_bound(linear_local_score(prec + q), x,
                                                                gamma, local=True))
  assert local.shape == (4000, n)
  np.testing.assert_allclose(local.sum(1).mean(), wrong, rtol=1e-9)
  bits = float(prod.hypoelliptic_entropy_production_bound(linear_local_score(prec + q), x,
                                                          gamma, base=2))
  np.testing.assert_allclose(bits, wrong / np.log(2), rtol=1e-9)


@pytest.mark.parametrize("coupling, rate, entropy_change", [(0.5, 0.2 / 11, -0.9 / 11),
                                                               (1.5, 0.6, 0.5)])
def test_off_stationarity_the_bound_holds_and_the_score_free_rate_misses_dh_dt(
    x64, coupling, rate, entropy_change):
  """Trapped active particles (A = 0.05, gamma = 0.1, v0 = 0.3, eps = 0) drawn from a
  Gaussian that is not stationary: the stationary covariance with its x-g block scaled
  by ``coupling`` (g keeps its stationary marginal). The instantaneous rate
  gamma E|g + s*_g|^2 (closed form from the precision) and dH/dt = tr(P (M S + S M^T +
  2 D)) / 2 per particle are checked against their values (0.0182 and -0.0818, 0.6 and
  0.5). The bound with the exact score of this density is that rate, while the
  score-free formula (stationarity assumed) gives the rate minus dH/dt, here A d = 0.1
  in both cases: 5.5 times the rate, then a sixth of it. Both within 4 standard errors
  over 2e5 exact samples."""
  trap, gamma, v0, n, b = 0.05, 0.1, 0.3, 50, 4000
  m, d = (np.asarray(a, np.float64) for a in prod.trapped_aoup(trap, gamma, 0.0, v0, dim=2))
  sigma = np.array(prod.lyapunov_covariance(m, d), np.float64)
  sigma[:2, 2:] *= coupling
  sigma[2:, :2] *= coupling
  prec = np.linalg.inv(sigma)
  residual = np.hstack([np.zeros((2, 2)), np.eye(2)]) - prec[2:]      # g + s*_g = R z
  np.testing.assert_allclose(gamma * np.trace(residual @ sigma @ residual.T), rate,
                             rtol=1e-9)
  np.testing.assert_allclose(0.5 * np.trace(prec @ (m @ sigma + sigma @ m.T + 2 * d)),
                             entropy_change, rtol=1e-9)
  z = np.random.default_rng(0).multivariate_normal(np.zeros(4), sigma, (b, n))
  x = jnp.asarray(np.stack([z[..., :2], z[..., 2:]], axis=1))
  se = lambda terms: terms.sum(axis=1).std() / np.sqrt(b) / n
  bound = np.asarray(prod.hypoelliptic_entropy_production_bound(linear_local_score(prec), x,
                                                                gamma, local=True))
  assert abs(bound.sum(axis=1).mean() / n - rate) < 4 * se(bound)
  p = active.AOUPParams(v0=v0, gamma=gamma, epsilon=0.0, k=0.0, trap=trap, half_width=1e6)
  free = np.asarray(active.aoup_score_free_entropy_production(x, p, local=True))
  assert abs(free.sum(axis=1).mean() / n - (rate - entropy_change)) < 4 * se(free)
  assert 4 * se(free) < 0.1 * abs(entropy_change)


def test_local_denoising_loss_is_the_full_loss_on_the_same_noise(local_net):
  """With every part and particle, each sample's term is ``denoising_score_matching_loss``
  of that sample with the noise key the local loss draws for it; a subset of all N
  particles is a permutation of the same terms; positions only leaves g un-noised."""
  score, state = local_net
  x = jnp.stack([state, state.at[1].multiply(-0.5), state.at[0].multiply(0.9)])
  key, sigma = jax.random.key(3), 0.2
  got = float(jax.jit(lambda y: prod.local_denoising_score_matching_loss(
      score, y, key, sigma, parts=(0, 1)))(x))
  keys = jax.random.split(key, x.shape[0])
  full = jax.jit(lambda z: score(z))
  want = np.mean([float(prod.denoising_score_matching_loss(
      full, x[b:b + 1], jax.random.split(keys[b])[1], sigma)) for b in range(x.shape[0])])
  np.testing.assert_allclose(got, want, rtol=1e-5)
  perm = float(jax.jit(lambda y: prod.local_denoising_score_matching_loss(
      score, y, key, sigma, (0, 1), 24))(x))
  np.testing.assert_allclose(perm, got, rtol=1e-5)
  # Positions only: the g-part of the state is left as it is and not scored.
  xi = jnp.stack([jax.random.normal(jax.random.split(k)[1], (1, 24, 2)) for k in keys])
  def slow(b):
    total = 0.0
    for sign in (1.0, -1.0):
      out = full(x[b].at[0].add(sign * sigma * xi[b, 0]))[0]
      total += 0.5 * float(jnp.sum((sigma * out + sign * xi[b, 0]) ** 2))
    return total
  pos = float(jax.jit(lambda y: prod.local_denoising_score_matching_loss(
      score, y, key, sigma, (0,)))(x))
  np.testing.assert_allclose(pos, np.mean([slow(b) for b in range(3)]), rtol=1e-5)


def test_local_denoising_subset_loss_is_unbiased(local_net):
  """Subsets of 4 of 24 particles (scaled by 6) against all particles, on the same
  states: the means of 8 batches of 100 noise draws each agree within 4 standard errors
  of the difference."""
  score, state = local_net
  x = jnp.broadcast_to(state, (100,) + state.shape)
  loss = jax.jit(lambda k, m: prod.local_denoising_score_matching_loss(score, x, k, 0.1, (0,), m),
                 static_argnums=1)
  sub = [float(loss(jax.random.key(k), 4)) for k in range(8)]
  full = [float(loss(jax.random.key(100 + k), 24)) for k in range(8)]
  se = np.hypot(np.std(sub, ddof=1), np.std(full, ddof=1)) / np.sqrt(8)
  assert se > 0
  assert abs(np.mean(sub) - np.mean(full)) < 4 * se


def test_local_denoising_minimum_is_the_smoothed_fisher_information(x64):
  """Trapped active particles (Gaussian, x and g correlated), noise sigma on the
  positions only: the loss is minimised by the positions' score of N(0, S) with
  S = Sigma + sigma^2 diag(1, 1, 0, 0), where it equals E|xi|^2 - sigma^2 E|s_x|^2
  = 2 - sigma^2 tr([S^-1]_xx) per particle (Tweedie); the unsmoothed score S = Sigma
  costs sigma^2 tr(E_x S E_x^T) more with E = Sigma^-1 - S^-1. Both within 2% of
  the per-particle loss, over 1e5 exact samples with antithetic noise."""
  trap, gamma, v0, n, sigma = 0.05, 0.1, 0.3, 25, 2.0
  x, prec, cov, _ = trapped_particles(trap, gamma, v0, n, 4000, seed=1)
  smooth = cov + sigma ** 2 * np.diag([1.0, 1, 0, 0])
  p_s = np.linalg.inv(smooth)
  key = jax.random.key(7)
  best = float(prod.local_denoising_score_matching_loss(linear_local_score(p_s), x, key,
                                                        sigma, (0,))) / n
  expect = 2 - sigma ** 2 * np.trace(p_s[:2, :2])
  assert 0.1 < expect < 1.9                      # smoothing matters at this sigma
  assert abs(best - expect) < 0.02 * expect
  err = (prec - p_s)[:2]
  gap = sigma ** 2 * np.trace(err @ smooth @ err.T)
  assert gap > 0.1 * expect
  raw = float(prod.local_denoising_score_matching_loss(linear_local_score(prec), x, key,
                                                       sigma, (0,))) / n
  assert abs(raw - (expect + gap)) < 0.02 * expect


def test_local_score_bad_input_raises(local_net):
  score, state = local_net
  x = state[None]
  with pytest.raises(ValueError, match="parts"):
    prod.local_implicit_score_matching_loss(score, x, parts=(2,))
  with pytest.raises(ValueError, match="query_size"):
    prod.local_implicit_score_matching_loss(score, x, query_size=25, key=jax.random.key(0))
  with pytest.raises(ValueError, match="key"):
    prod.local_implicit_score_matching_loss(score, x, query_size=4)
  with pytest.raises(ValueError, match=r"\[B, P, N, d\]"):
    prod.local_implicit_score_matching_loss(score, state[0][None])
  with pytest.raises(ValueError, match="gamma"):
    prod.hypoelliptic_entropy_production_bound(score, x, 0.0)
  with pytest.raises(ValueError, match="non-finite"):
    prod.hypoelliptic_entropy_production_bound(score, x.at[0, 1, 0, 0].set(jnp.nan), 0.1)
  with pytest.raises(ValueError, match="shift_shape"):
    prod.self_divergence(lambda sh: sh, (2, 4))
  with pytest.raises(ValueError, match="parts"):
    prod.self_divergence(lambda sh: sh, (2, 4, 2), parts=(3,))
  with pytest.raises(ValueError, match=r"\[P, N, d\]"):
    prod.local_implicit_score_matching_terms(score, state[0])
  with pytest.raises(TypeError, match="score"):
    prod.local_implicit_score_matching_terms(None, state)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="sigma"):
    prod.local_denoising_score_matching_loss(score, x, key, 0.0)
  with pytest.raises(ValueError, match="sigma"):
    prod.local_denoising_score_matching_loss(score, x, key, jnp.ones(2))
  with pytest.raises(ValueError, match="key"):
    prod.local_denoising_score_matching_loss(score, x, None, 0.1)
  with pytest.raises(ValueError, match="query_size"):
    prod.local_denoising_score_matching_loss(score, x, key, 0.1, query_size=0)
  with pytest.raises(ValueError, match="parts"):
    prod.local_denoising_score_matching_loss(score, x, key, 0.1, parts=())
  with pytest.raises(ValueError, match=r"\[B, P, N, d\]"):
    prod.local_denoising_score_matching_loss(score, state, key, 0.1)
