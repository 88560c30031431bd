"""Interacting active Ornstein-Uhlenbeck particles (entropylab.production.active)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab import production as prod
from entropylab.production import active


def params(n=64, phi=0.5, **kw):
  base = dict(v0=0.025, gamma=1e-4, epsilon=0.0, half_width=active.box_half_width(n, phi))
  base.update(kw)
  return active.AOUPParams(**base)


def slow_pairs(x, p):
  """Every ordered pair ``i != j`` in a Python loop: ``(i, r, |r|)`` with ``r`` the
  minimum-image difference ``x_i - x_j``."""
  n = x.shape[0]
  for i in range(n):
    for j in range(n):
      if i != j:
        r = x[i] - x[j]
        r = r - 2 * p.half_width * np.round(r / (2 * p.half_width))
        yield i, r, np.linalg.norm(r)


def slow_forces(x, p):
  """All pairs in a Python loop over periodic images, straight from eq. 9."""
  out = np.zeros_like(x)
  for i, r, dist in slow_pairs(x, p):
    out[i] += np.logaddexp(0.0, p.beta * (2 * p.radius - dist)) / p.beta * r / dist
  return out


def test_box_from_packing_fraction():
  half = active.box_half_width(256, 0.5)
  assert 256 * math.pi / (2 * half) ** 2 == pytest.approx(0.5, rel=1e-12)
  half3 = active.box_half_width(100, 0.3, radius=0.5, dim=3)
  assert 100 * 4 / 3 * math.pi * 0.125 / (2 * half3) ** 3 == pytest.approx(0.3, rel=1e-12)
  with pytest.raises(ValueError, match="packing_fraction"):
    active.box_half_width(10, 1.2)


@pytest.mark.parametrize("n, phi", [(64, 0.5), (200, 0.7), (10, 0.05)])
def test_neighbor_list_forces_equal_all_pairs(x64, n, phi):
  p = params(n, phi)
  x = np.asarray(active.random_configuration(jax.random.key(n), n, p)[0])
  ref = slow_forces(x, p)
  np.testing.assert_allclose(active.pair_forces_dense(jnp.asarray(x), p), ref, rtol=0, atol=1e-10)
  cutoff = active.interaction_cutoff(p) + 0.5
  nbrs = active.neighbor_list(jnp.asarray(x), p, cutoff, max_neighbors=64, max_per_cell=32)
  assert int(nbrs.overflow) == 0
  got = np.asarray(active.pair_forces(jnp.asarray(x), nbrs, p))
  # Pairs beyond the cutoff carry less than exp(-12) / beta each.
  np.testing.assert_allclose(got, ref, rtol=0, atol=64 * math.exp(-12) / p.beta)
  # Newton's third law and translation invariance (positions shifted and re-wrapped).
  np.testing.assert_allclose(got.sum(axis=0), 0.0, atol=1e-9)
  shifted = active.wrap_positions(jnp.asarray(x) + jnp.array([3.3, -7.1]), p.half_width)
  np.testing.assert_allclose(active.pair_forces_dense(shifted, p), ref, atol=1e-10)


def test_neighbor_list_reports_overflow():
  p = params(200, 0.7)
  x = active.random_configuration(jax.random.key(0), 200, p)[0]
  cutoff = active.interaction_cutoff(p) + 0.5
  assert int(active.neighbor_list(x, p, cutoff, max_neighbors=2, max_per_cell=32).overflow) > 0
  assert int(active.neighbor_list(x, p, cutoff, max_neighbors=64, max_per_cell=1).overflow) > 0


def test_simulation_steps_match_a_numpy_replay(x64):
  """Two saved blocks of the jitted loop against eq. 9 stepped in NumPy with the same
  draws (Euler-Maruyama in x, exact OU in g), neighbour rebuilds included."""
  n, dt = 24, 0.1
  p = params(n, 0.4, v0=0.5, gamma=0.2, epsilon=0.05)
  s0 = np.asarray(active.random_configuration(jax.random.key(1), n, p))
  key = jax.random.key(2)
  res = active.simulate_aoup(key, s0, p, dt, 6, save_every=3, skin=0.3)
  x, g = s0[0].copy(), s0[1].copy()
  for t in range(6):
    xi = np.asarray(jax.random.normal(jax.random.fold_in(key, t), s0.shape, jnp.float64))
    fx = slow_forces(x, p)
    x_new = x + (p.v0 * g + p.k * fx) * dt + math.sqrt(2 * p.epsilon * dt) * xi[0]
    x = np.mod(x_new + p.half_width, 2 * p.half_width) - p.half_width
    g = math.exp(-p.gamma * dt) * g + math.sqrt(1 - math.exp(-2 * p.gamma * dt)) * xi[1]
    if t % 3 == 2:
      # The list drops pairs beyond the cutoff, each under exp(-12) / beta.
      np.testing.assert_allclose(res.states[t // 3], np.stack([x, g]), rtol=0, atol=1e-6)
  assert int(res.rebuilds) >= 2 and int(res.overflow) == 0
  # Split runs reproduce the whole one.
  first = active.simulate_aoup(key, s0, p, dt, 3, save_every=3, skin=0.3)
  second = active.simulate_aoup(key, first.states[-1], p, dt, 3, save_every=3, skin=0.3,
                                start_step=3)
  np.testing.assert_allclose(second.states[-1], res.states[-1], rtol=0, atol=1e-12)


def test_free_trapped_particles_reach_the_lyapunov_covariance():
  """k = 0 with a trap: each particle is the linear trapped AOUP, whose stationary
  covariance entropylab.production.ou gives exactly (a large box, so no wrapping)."""
  n = 4000
  p = active.AOUPParams(v0=0.3, gamma=0.5, epsilon=0.1, k=0.0, trap=0.5, half_width=1e3)
  s0 = jnp.zeros((2, n, 1))
  res = active.simulate_aoup(jax.random.key(3), s0, p, 0.01, 3000, save_every=100)
  samples = np.asarray(res.states[10:]).transpose(0, 2, 1, 3).reshape(-1, 2)
  ref = np.asarray(prod.lyapunov_covariance(*prod.trapped_aoup(0.5, 0.5, 0.1, 0.3)))
  np.testing.assert_allclose(np.cov(samples.T), ref, atol=0.03 * np.max(ref))


def test_drift_with_and_without_neighbors_and_its_linear_limit(x64):
  """aoup_drift with a neighbour list equals the all-pairs drift; without interactions
  it is the linear drift of trapped_aoup acting on each particle."""
  n = 16
  p = params(n, 0.3, v0=0.4, gamma=1.0, epsilon=0.5, trap=0.02)
  s = active.random_configuration(jax.random.key(4), n, p)
  nbrs = active.neighbor_list(s[0], p, active.interaction_cutoff(p) + 0.5, 32, 16)
  np.testing.assert_allclose(active.aoup_drift(s, p, nbrs), active.aoup_drift(s, p),
                             atol=n * math.exp(-12) / p.beta)
  free = p._replace(k=0.0)
  m, d = prod.trapped_aoup(free.trap, free.gamma, free.epsilon, free.v0, dim=2)
  z = jnp.concatenate([s[0], s[1]], axis=1)                    # [N, (x, g)] per particle
  expect = (z @ m.T).reshape(n, 2, 2).transpose(1, 0, 2)
  np.testing.assert_allclose(active.aoup_drift(s, free), expect, rtol=1e-12)
  np.testing.assert_allclose(jnp.broadcast_to(active.aoup_diffusion(free), (2, n, 2)),
                             jnp.diagonal(d).reshape(2, 1, 2).repeat(n, axis=1))


@pytest.mark.parametrize("one_loop", [True, False, None])
def test_chains_equal_each_chain_alone(one_loop):
  """``state0 [C, 2, N, d]`` runs C chains, in one loop or one after another; each is
  the chain run alone with its key (given keys, or fold_in of one key), its own
  neighbour-list rebuild count included, and a non-finite chain names its first bad
  saved step. Bit for bit at this size (N = 64, one cell list of all pairs) and with
  chains one after another at any size; N = 300 uses a real cell list."""
  p = params(64, 0.5)
  keys = jax.random.split(jax.random.key(0), 3)
  x0 = jnp.stack([active.random_configuration(jax.random.key(i), 64, p) for i in range(3)])
  both = active.simulate_aoup(keys, x0, p, 0.1, 400, save_every=100, start_step=7,
                              one_loop=one_loop)
  assert both.states.shape == (3, 4, 2, 64, 2)
  for c in range(3):
    alone = active.simulate_aoup(keys[c], x0[c], p, 0.1, 400, save_every=100, start_step=7)
    np.testing.assert_array_equal(both.states[c], alone.states)
    assert int(both.rebuilds[c]) == int(alone.rebuilds) > 1
  big = params(300, 0.5)
  y0 = jnp.stack([active.random_configuration(jax.random.key(i), 300, big) for i in range(2)])
  both = active.simulate_aoup(keys[:2], y0, big, 0.1, 60, save_every=60, one_loop=one_loop)
  for c in range(2):
    alone = active.simulate_aoup(keys[c], y0[c], big, 0.1, 60, save_every=60)
    tol = 0.0 if one_loop is not True else 1e-4
    np.testing.assert_allclose(both.states[c], alone.states, rtol=0, atol=tol)
    assert int(both.rebuilds[c]) == int(alone.rebuilds) > 1
  folded = active.simulate_aoup(jax.random.key(5), x0, p, 0.1, 200, save_every=100)
  alone = active.simulate_aoup(jax.random.fold_in(jax.random.key(5), 1), x0[1], p, 0.1, 200,
                               save_every=100)
  np.testing.assert_array_equal(folded.states[1], alone.states)
  raw = active.simulate_aoup(jax.random.PRNGKey(3), x0[0], p, 0.1, 100, save_every=100)
  typed = active.simulate_aoup(jax.random.wrap_key_data(jax.random.PRNGKey(3)), x0[0], p,
                               0.1, 100, save_every=100)
  np.testing.assert_array_equal(raw.states, typed.states)  # raw uint32 keys are accepted
  with pytest.raises(ValueError, match="one per chain"):
    active.simulate_aoup(keys[:2], x0, p, 0.1, 100)
  with pytest.raises(ValueError, match="single key"):
    active.simulate_aoup(keys, x0[0], p, 0.1, 100)
  bad = x0.at[2, 1].set(jnp.inf)  # chain 2's self-propulsion: infinite from the start
  with pytest.raises(FloatingPointError, match="step 100 "):
    active.simulate_aoup(keys, bad, p, 0.1, 200, save_every=100)


def test_bad_input_raises():
  p = params()
  with pytest.raises(ValueError, match="params.gamma"):
    active.simulate_aoup(jax.random.key(0), jnp.zeros((2, 4, 2)), p._replace(gamma=0.0), 0.1, 1)
  with pytest.raises(ValueError, match="state0"):
    active.simulate_aoup(jax.random.key(0), jnp.zeros((3, 4, 2)), p, 0.1, 1)
  with pytest.raises(ValueError, match="dt"):
    active.simulate_aoup(jax.random.key(0), jnp.zeros((2, 4, 2)), p, -0.1, 1)
  with pytest.raises(ValueError, match="state must be"):
    active.aoup_drift(jnp.zeros((4, 2)), p)
  with pytest.raises(ValueError, match="cutoff"):
    active.neighbor_list(jnp.zeros((4, 2)), p, 0.0, 8, 8)
  with pytest.raises(ValueError, match="max_neighbors"):
    active.neighbor_list(jnp.zeros((4, 2)), p, 3.0, 0, 8)
  with pytest.raises(ValueError, match="capacity"):
    x = active.random_configuration(jax.random.key(0), 200, params(200, 0.7))
    active.simulate_aoup(jax.random.key(0), x, params(200, 0.7), 0.1, 2, max_neighbors=1)


def test_passive_interacting_particles_produce_no_entropy():
  """v0 = 0 with interactions is an equilibrium (Boltzmann in x, Gaussian in g): the
  shift parametrisation with a zero network is its exact score, so the rate vanishes
  identically; and the score-free form on simulated samples is zero within its
  statistical error, small against the scale E[b D^-1 b] of the terms it cancels."""
  n = 6
  p = active.AOUPParams(v0=0.0, gamma=1.0, epsilon=0.2, k=1.0, trap=0.3, half_width=50.0)
  score = active.shifted_score(lambda z: jnp.zeros_like(z), p)
  drift = lambda z: active.aoup_drift(z, p)
  diff = jnp.broadcast_to(active.aoup_diffusion(p), (2, n, 2))
  s0 = jnp.stack([jax.random.normal(jax.random.key(5), (n, 2)), jnp.zeros((n, 2))])
  states = active.simulate_aoup(jax.random.key(6), s0, p, 0.01, 40_000, save_every=20).states
  x = states[200:]                                     # 1800 samples after 40 time units
  assert float(prod.entropy_production_rate(drift, score, diff, x)) < 1e-10
  free = float(prod.score_free_entropy_production(drift, diff, x))
  scale = float(jnp.mean(jax.vmap(lambda z: jnp.sum(drift(z) ** 2 / diff))(x)))
  assert abs(free) < 0.05 * scale
  # With a zero network v = b - D s vanishes for any v0 (b_x / eps includes v0 g): the
  # network must learn everything the activity changes.
  with pytest.raises(ValueError, match="epsilon"):
    active.shifted_score(lambda z: z, p._replace(epsilon=0.0))
  # The per-particle form agrees with the generic one on these interacting samples.
  ours = float(active.aoup_score_free_entropy_production(x, p))
  assert ours == pytest.approx(free, rel=1e-4, abs=1e-6 * scale)


def slow_pair_divergence(x, p):
  """sum_j div F(x_i - x_j) in a loop:
  -sigmoid(beta (2a - r)) + (d - 1) softplus_beta(2a - r) / r."""
  n, d = x.shape
  out = np.zeros(n)
  for i, _, dist in slow_pairs(x, p):
    u = p.beta * (2 * p.radius - dist)
    out[i] += -1.0 / (1.0 + np.exp(-u)) + (d - 1) * np.logaddexp(0.0, u) / p.beta / dist
  return out


@pytest.mark.parametrize("d", [2, 3])
def test_drift_divergence_against_a_loop_and_the_jacobian(x64, d):
  n = 24
  p = params(n, 0.6, k=1.3, trap=0.2)._replace(half_width=active.box_half_width(n, 0.6, dim=d))
  x = np.asarray(jax.random.uniform(jax.random.key(3), (n, d), minval=-p.half_width,
                                    maxval=p.half_width))
  ref = p.k * slow_pair_divergence(x, p) - p.trap * d
  dense = active.aoup_drift_divergence(jnp.asarray(x), p)
  np.testing.assert_allclose(dense, ref, rtol=1e-10, atol=1e-12)
  state = jnp.stack([jnp.asarray(x), jnp.zeros((n, d))])
  jac = jax.jit(lambda z: prod.score.jacobian_diagonal(lambda y: active.aoup_drift(y, p), z))(
      state)[0].sum(-1)
  np.testing.assert_allclose(dense, jac, rtol=1e-10, atol=1e-12)
  cutoff = active.interaction_cutoff(p)
  nb = active.neighbor_list(jnp.asarray(x), p, cutoff, n, n)
  assert int(nb.overflow) == 0
  # Pairs beyond the cutoff carry less than exp(-12) of the force law; dropped.
  np.testing.assert_allclose(active.aoup_drift_divergence(jnp.asarray(x), p, nb), ref,
                             atol=1e-4 * n)
  # Two particles at contact, d = 2: -1/2 + log(2) / (2 beta) = -0.4538 each.
  two = active.AOUPParams(v0=0.0, gamma=1.0, epsilon=0.0, half_width=50.0)
  div2 = active.aoup_drift_divergence(jnp.array([[0.0, 0.0], [2.0, 0.0]]), two)
  np.testing.assert_allclose(div2, -0.5 + math.log(2) / 15.0, rtol=1e-12)


def test_velocity_features_against_the_full_jacobian(x64):
  """Interacting particles: the blocks are the diagonal blocks of jacfwd(aoup_drift), the
  acceleration is that Jacobian times u, the same with a neighbour list (up to the
  dropped tail), and the derivatives in g are those the docstring gives (u_i moves with
  g_i alone; the own block of d a / d g is blocks[i] / sqrt(gamma))."""
  n, d = 16, 2
  p = params(n, 0.6, v0=0.3, gamma=0.05, k=1.3, trap=0.2)
  keys = jax.random.split(jax.random.key(4))
  x = jax.random.uniform(keys[0], (n, d), minval=-p.half_width, maxval=p.half_width)
  state = jnp.stack([x, jax.random.normal(keys[1], (n, d))])
  feats = active.velocity_features(state, p)
  jac = jax.jit(jax.jacfwd(lambda y: active.aoup_drift(jnp.stack([y, state[1]]), p)[0]))(x)
  jac = np.asarray(jac).reshape(n * d, n * d)                  # [(i a), (j b)]
  u = np.asarray(active.aoup_drift(state, p)[0]) / (p.v0 * math.sqrt(p.gamma))
  np.testing.assert_allclose(feats.velocity, u, rtol=1e-12)
  np.testing.assert_allclose(feats.acceleration, (jac @ u.reshape(-1)).reshape(n, d),
                             rtol=1e-10, atol=1e-12)
  diag = np.stack([jac[d * i:d * i + d, d * i:d * i + d] for i in range(n)])
  np.testing.assert_allclose(feats.blocks, diag, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(np.trace(diag, axis1=1, axis2=2),
                             active.aoup_drift_divergence(x, p), rtol=1e-10, atol=1e-12)
  # d u_i / d g_j = delta_ij I / sqrt(gamma); d a / d g = J / sqrt(gamma).
  dg = jax.jit(jax.jacfwd(
      lambda g: jnp.stack(active.velocity_features(jnp.stack([x, g]), p)[:2])))(
          state[1])                                            # [2, n, d, n, d]
  eye = np.eye(n)[:, None, :, None]
  np.testing.assert_allclose(dg[0], eye * np.eye(d)[None, :, None, :] / math.sqrt(p.gamma),
                             atol=1e-10)
  np.testing.assert_allclose(np.asarray(dg[1]).reshape(n * d, n * d),
                             jac / math.sqrt(p.gamma), rtol=1e-10, atol=1e-10)
  nb = active.neighbor_list(x, p, active.interaction_cutoff(p), n, n)
  listed = active.velocity_features(state, p, nb)
  # The dropped tail (below e^-12 / beta per pair) is scaled by 1 / (v0 sqrt(gamma)).
  for a, b in zip(listed, feats):
    np.testing.assert_allclose(a, b, atol=1e-5 * float(np.abs(b).max()))
  with pytest.raises(ValueError, match="v0"):
    active.velocity_features(state, p._replace(v0=0.0))
  with pytest.raises(ValueError, match="state must be"):
    active.velocity_features(x, p)
  with pytest.raises(ValueError, match="gamma"):
    active.velocity_features(state, p._replace(gamma=-1.0))


@pytest.mark.parametrize("d", [1, 2])
def test_velocity_features_give_the_exact_score_of_trapped_particles(x64, d):
  """Harmonic forces (k = 0): (a - gamma u) / sqrt(gamma) is the g-part of the exact
  score -Sigma^-1 z of ``trapped_aoup`` at every state, for gamma down to 1e-4."""
  trap, v0, n = 0.7, 0.025, 5
  for gamma in (0.1, 1e-4):
    m, dm = prod.trapped_aoup(trap, gamma, 0.0, v0, dim=1)
    precision = np.linalg.inv(np.asarray(prod.lyapunov_covariance(m, dm)))
    z = np.random.default_rng(1).normal(size=(2, n, d))       # any state
    exact = -(precision[1, 0] * z[0] + precision[1, 1] * z[1])
    p = active.AOUPParams(v0=v0, gamma=gamma, epsilon=0.0, k=0.0, trap=trap, half_width=1e6)
    f = active.velocity_features(jnp.asarray(z), p)
    np.testing.assert_allclose((f.acceleration - gamma * f.velocity) / math.sqrt(gamma),
                               exact, rtol=1e-9)
    score = active.harmonic_self_propulsion_score(p)
    out = np.asarray(score(jnp.asarray(z), jnp.array([3, 0])))
    np.testing.assert_allclose(out[1], exact[[3, 0]], rtol=1e-9)
    assert np.all(out[0] == 0)


def test_harmonic_score_divergence_and_bound(x64):
  """Interacting particles: moving particle m's own g by ``self_shift`` moves its score
  as moving g_m in the state does, so the implicit score matching terms' divergence is
  the trace of the own block of jacfwd; with a neighbour list it agrees up to the dropped
  tail. Trapped particles (A = 0.05, gamma = 0.1, v0 = 0.3, d = 2): on 8e4 exact
  stationary samples the bound of this score is the rate A d = 0.1 per particle within 4
  standard errors."""
  n, d = 16, 2
  p = params(n, 0.6, v0=0.3, gamma=0.05, k=1.3, trap=0.2)
  keys = jax.random.split(jax.random.key(4))
  x = jax.random.uniform(keys[0], (n, d), minval=-p.half_width, maxval=p.half_width)
  state = jnp.stack([x, jax.random.normal(keys[1], (n, d))])
  score = active.harmonic_self_propulsion_score(p)
  jac = jax.jacfwd(lambda g: score(jnp.stack([x, g]))[1])(state[1])   # [n, d, n, d]
  own = np.trace(np.asarray(jac)[np.arange(n), :, np.arange(n), :], axis1=1, axis2=2)
  s_g = np.asarray(score(state)[1])
  terms = np.asarray(prod.local_implicit_score_matching_terms(score, state))[0]
  np.testing.assert_allclose(terms, 0.5 * np.sum(s_g ** 2, axis=-1) + own, rtol=1e-9)
  listed = active.harmonic_self_propulsion_score(p, max_neighbors=n, max_per_cell=n)
  np.testing.assert_allclose(listed(state), score(state), atol=1e-5 * np.abs(s_g).max())
  trap, gamma, v0, b, m = 0.05, 0.1, 0.3, 4000, 20
  mat, dm = prod.trapped_aoup(trap, gamma, 0.0, v0, dim=1)
  chol = np.linalg.cholesky(np.asarray(prod.lyapunov_covariance(mat, dm)))
  z = np.einsum("ij,bnkj->bink", chol, np.random.default_rng(0).normal(size=(b, m, d, 2)))
  trapped = active.AOUPParams(v0=v0, gamma=gamma, epsilon=0.0, k=0.0, trap=trap,
                              half_width=1e6)
  local = np.asarray(prod.hypoelliptic_entropy_production_bound(
      active.harmonic_self_propulsion_score(trapped), jnp.asarray(z), gamma, local=True))
  per_state = local.sum(axis=1) / m
  assert abs(per_state.mean() - trap * d) < 4 * per_state.std() / math.sqrt(b)
  with pytest.raises(ValueError, match="epsilon"):
    active.harmonic_self_propulsion_score(p._replace(epsilon=0.1))
  with pytest.raises(ValueError, match="max_neighbors"):
    active.harmonic_self_propulsion_score(p, max_neighbors=0)
  with pytest.raises(ValueError, match="v0"):
    active.harmonic_self_propulsion_score(p._replace(v0=0.0))
  feats = active.velocity_features(state, p)
  with pytest.raises(ValueError, match="gamma"):
    active.own_velocity_features(feats, None, None, 0.0)
  with pytest.raises(ValueError, match="shift_g"):
    active.own_velocity_features(feats, jnp.array([0, 1]), jnp.zeros((3, d)), p.gamma)


@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_score_free_rate_equals_the_generic_form_on_interacting_states(x64, epsilon):
  """Per state and particle, the terms equal the per-coordinate terms of
  ``score_free_entropy_production`` (full Jacobian diagonal, all pairs) summed over the
  particle's coordinates, for noise in g only and in both."""
  n, b = 12, 6
  p = params(n, 0.55, v0=0.4, gamma=0.2, epsilon=epsilon, trap=0.1)
  keys = jax.random.split(jax.random.key(8))
  x = jax.random.uniform(keys[0], (b, n, 2), minval=-p.half_width, maxval=p.half_width)
  states = jnp.stack([x, jax.random.normal(keys[1], (b, n, 2))], axis=1)
  drift = lambda z: active.aoup_drift(z, p)
  diffusion = jnp.broadcast_to(active.aoup_diffusion(p), (2, n, 2))
  generic = np.asarray(jax.jit(jax.vmap(lambda z: prod.score_free_entropy_production(
      drift, diffusion, z[None], local=True).sum(axis=(0, 2))))(states))
  local = active.aoup_score_free_entropy_production(states, p, local=True)
  np.testing.assert_allclose(local, generic, rtol=1e-10, atol=1e-10)
  total = active.aoup_score_free_entropy_production(states, p)
  np.testing.assert_allclose(total, generic.sum(axis=1).mean(), rtol=1e-10)
  np.testing.assert_allclose(active.aoup_score_free_entropy_production(states, p, base=2),
                             total / math.log(2), rtol=1e-12)
  # The neighbour list drops the softplus tail beyond the cutoff (below e^-12 per pair).
  listed = active.aoup_score_free_entropy_production(states, p, max_neighbors=11)
  np.testing.assert_allclose(listed, total, rtol=1e-4)


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_score_free_rate_of_trapped_particles_is_the_closed_form(x64, epsilon):
  """Free particles in a trap (k = 0), exact stationary samples from the Lyapunov
  covariance: the rate per particle is A d with noise in g only and
  d gamma v0^2 / (eps (A + gamma)) with eps > 0 (``trapped_aoup``'s closed forms, 0.2
  and 1.2 here), within 4 standard errors of the sample mean."""
  a, gamma, v0, d, n, b = 0.05, 0.1, 0.3, 2, 16, 4000
  m, dm = prod.trapped_aoup(a, gamma, epsilon, v0, dim=1)
  chol = np.linalg.cholesky(np.asarray(prod.lyapunov_covariance(m, dm)))
  z = np.einsum("ij,bnkj->bink", chol, np.random.default_rng(0).normal(size=(b, n, d, 2)))
  p = active.AOUPParams(v0=v0, gamma=gamma, epsilon=epsilon, k=0.0, trap=a, half_width=1e6)
  terms = np.asarray(active.aoup_score_free_entropy_production(jnp.asarray(z), p,
                                                               local=True))
  exact = a * d if epsilon == 0 else d * gamma * v0 ** 2 / (epsilon * (a + gamma))
  se = terms.sum(axis=1).std() / math.sqrt(b) / n
  assert abs(terms.mean() - exact) < 4 * se
  assert se < 0.05 * exact


def test_score_free_rate_bad_input():
  p = params(8)
  with pytest.raises(ValueError, match="x must be"):
    active.aoup_score_free_entropy_production(jnp.zeros((3, 8, 2)), p)
  with pytest.raises(ValueError, match="max_neighbors"):
    active.aoup_score_free_entropy_production(jnp.zeros((1, 2, 8, 2)), p, max_neighbors=0)
  with pytest.raises(ValueError, match="gamma"):
    active.aoup_score_free_entropy_production(jnp.zeros((1, 2, 8, 2)), p._replace(gamma=0.0))
  with pytest.raises(ValueError, match="no states"):
    active.aoup_score_free_entropy_production(jnp.zeros((0, 2, 8, 2)), p)
  with pytest.raises(ValueError, match="non-finite"):
    active.aoup_score_free_entropy_production(jnp.full((1, 2, 8, 2), jnp.nan), p)
  with pytest.raises(ValueError, match="max_per_cell"):
    active.aoup_score_free_entropy_production(jnp.zeros((1, 2, 8, 2)), p, max_neighbors=4,
                                              max_per_cell=-1)
  crowded = jnp.zeros((1, 2, 8, 2)).at[0, 0].set(jnp.linspace(0, 0.1, 16).reshape(8, 2))
  with pytest.raises(ValueError, match="overflowed"):
    active.aoup_score_free_entropy_production(crowded, p, max_neighbors=2)
  with pytest.raises(ValueError, match="x must be"):
    active.aoup_drift_divergence(jnp.zeros((2, 8, 2)), p)
  with pytest.raises(ValueError, match="beta"):
    active.aoup_drift_divergence(jnp.zeros((8, 2)), p._replace(beta=-1.0))
  with pytest.raises(TypeError, match="AOUPParams"):
    active.aoup_drift_divergence(jnp.zeros((8, 2)), tuple(p))
  # Traced params (a jit over systems) skip the value checks and give the same result.
  x = active.random_configuration(jax.random.key(0), 8, p)[0]
  np.testing.assert_allclose(jax.jit(active.aoup_drift_divergence)(x, p),
                             active.aoup_drift_divergence(x, p), rtol=1e-6, atol=1e-7)


def slow_local_packing(x, p, probe):
  """Centres within ``probe`` (itself included), by a loop over pairs and periodic images."""
  n, d = x.shape
  counts = np.zeros(n)
  for i in range(n):
    for j in range(n):
      r = x[i] - x[j]
      r = r - 2 * p.half_width * np.round(r / (2 * p.half_width))
      counts[i] += np.dot(r, r) <= probe * probe
  return counts * (p.radius / probe) ** d


@pytest.mark.parametrize("n, block", [(50, 16), (64, 256), (33, 7)])
def test_local_packing_fraction_counts_pairs_across_the_boundary(x64, n, block):
  p = params(n, 0.4)
  x = np.asarray(active.random_configuration(jax.random.key(n), n, p)[0])
  ref = slow_local_packing(x, p, 3.0)
  got = active.local_packing_fraction(jnp.asarray(x), p, block=block)
  np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-12)
  # Two particles straddling the boundary see each other through it; a third far away
  # sees only itself: (a / R)^2 = 1/9 and 2/9.
  L = p.half_width
  pair = jnp.array([[L - 0.5, 0.0], [-L + 0.5, 0.0], [0.0, 0.0]])
  np.testing.assert_allclose(active.local_packing_fraction(pair, p), [2 / 9, 2 / 9, 1 / 9])


def test_local_packing_fraction_of_a_triangular_crystal():
  """A patch of the close-packed lattice of radius-1 disks (spacing 2) in a large box:
  around an interior particle the shells hold 6 centres at 2, 6 at 2 sqrt(3) = 3.46 and
  6 at 4, so probes of radius 3, 3.5 and 4.5 count 7, 13 and 19 centres."""
  pts = np.array([[2.0 * c + (r % 2), math.sqrt(3.0) * r] for r in range(12)
                  for c in range(12)])
  pts = pts - pts.mean(0)
  centre = int(np.argmin(np.sum(pts ** 2, axis=1)))
  p = active.AOUPParams(v0=0.0, gamma=1.0, epsilon=0.0, half_width=100.0)
  for probe, expected in ((3.0, 7), (3.5, 13), (4.5, 19)):
    local = active.local_packing_fraction(jnp.asarray(pts), p, probe=probe)
    assert float(local[centre]) == pytest.approx(expected / probe ** 2, rel=1e-6)


def test_clumped_start_is_a_folded_normal():
  p = params(4096, 0.5)
  uniform = active.random_configuration(jax.random.key(3), 4096, p)
  again = active.random_configuration(jax.random.key(3), 4096, p, spread=None)
  np.testing.assert_array_equal(uniform, again)
  tight = np.asarray(active.random_configuration(jax.random.key(3), 4096, p, spread=0.1)[0])
  # 0.1 L is far below the box, so folding changes nothing: mean 0, std 0.1 L (to the
  # sampling error of 4096 x 2 draws).
  assert np.std(tight) == pytest.approx(0.1 * p.half_width, rel=0.03)
  assert abs(np.mean(tight)) < 0.005 * p.half_width
  wide = np.asarray(active.random_configuration(jax.random.key(3), 4096, p, spread=2.0)[0])
  assert np.all(wide >= -p.half_width) and np.all(wide < p.half_width)
  with pytest.raises(ValueError, match="spread"):
    active.random_configuration(jax.random.key(3), 16, p, spread=0.0)
  with pytest.raises(ValueError, match="probe"):
    active.local_packing_fraction(jnp.zeros((4, 2)), p, probe=-1.0)


def test_phase_fractions_of_an_ideal_gas_are_binomial_tails():
  """Independent uniform positions in the periodic box: each particle sees
  K ~ Binomial(N - 1, pi R^2 / (2L)^2) other centres within R = 3, and its local packing
  is (1 + K) / 9, so the dense share (>= 0.7) is P(K >= 6) and the dilute share
  (<= 0.3) is P(K <= 1); averaged over 4 configurations of 4096 particles."""
  from scipy import stats
  n = 4096
  p = params(n, 0.5)
  x = jnp.stack([active.random_configuration(jax.random.key(i), n, p)[0] for i in range(4)])
  dense, dilute = active.phase_fractions(x, p)
  assert dense.shape == dilute.shape == (4,)
  prob = math.pi * 9.0 / (2 * p.half_width) ** 2
  assert float(jnp.mean(dense)) == pytest.approx(stats.binom.sf(5, n - 1, prob), abs=0.01)
  assert float(jnp.mean(dilute)) == pytest.approx(stats.binom.cdf(1, n - 1, prob), abs=0.006)
  # The three groups partition the particles; the middle one is 2 <= K <= 5.
  groups = active.packing_groups(x, p)
  assert all(m.shape == (4, n) for m in groups.values())
  np.testing.assert_array_equal(sum(np.asarray(m, int) for m in groups.values()), 1)
  np.testing.assert_allclose(np.mean(groups["dense"], axis=1), dense)
  middle = stats.binom.cdf(5, n - 1, prob) - stats.binom.cdf(1, n - 1, prob)
  assert float(jnp.mean(groups["intermediate"])) == pytest.approx(middle, abs=0.012)
  with pytest.raises(ValueError, match="dilute"):
    active.phase_fractions(x, p, dense=0.2, dilute=0.3)
  with pytest.raises(ValueError, match="dilute"):
    active.packing_groups(x, p, dense=0.5, dilute=0.5)
  # The same masks from packing fractions computed once (NumPy in, NumPy out).
  local = np.stack([np.asarray(active.local_packing_fraction(z, p)) for z in x])
  again = active.group_by_packing(local)
  for name, mask in groups.items():
    assert isinstance(again[name], np.ndarray)
    np.testing.assert_array_equal(again[name], np.asarray(mask))
  with pytest.raises(ValueError, match="dilute"):
    active.group_by_packing(local, dense=0.3, dilute=0.4)


def test_slab_start_is_a_periodic_triangular_slab_and_a_gas():
  """The slab tiles the periodic height with an even number of rows: every slab
  particle's nearest slab neighbour is at the in-row spacing (also across the y boundary),
  its six lattice neighbours lie within 1.1 spacings, and no gas particle starts inside
  the slab's x range."""
  n = 1024
  p = params(n, 0.5)
  s = np.asarray(active.slab_configuration(jax.random.key(0), n, p, dense_share=0.7))
  x, g = s[0], s[1]
  assert s.shape == (2, n, 2)
  assert np.all(x >= -p.half_width) and np.all(x < p.half_width)
  diff = np.asarray(active.minimum_image(jnp.asarray(x[:, None] - x[None]), p.half_width))
  dist = np.sqrt(np.sum(diff ** 2, axis=-1))
  np.fill_diagonal(dist, np.inf)
  # The slab's particles come first; at least 68 % of them are slab particles.
  width = float(np.max(np.abs(x[:int(0.68 * n), 0])))
  in_slab = np.abs(x[:, 0]) <= width
  slab = np.flatnonzero(in_slab)
  assert 0.68 * n <= slab.size <= 0.72 * n
  np.testing.assert_allclose(np.min(dist[np.ix_(slab, slab)], axis=1), 2.1, rtol=1e-5)
  # Interior slab particles (away from the slab's x edges) have six neighbours within
  # 1.1 spacings: the two in their row and four in the rows above and below.
  interior = slab[np.abs(x[slab, 0]) < width - 3.0]
  assert interior.size > 0.5 * slab.size
  np.testing.assert_array_equal(np.sum(dist[interior] < 1.1 * 2.1, axis=1), 6)
  # The gas fills the rest of the box; the self-propulsions are standard normal.
  assert np.all(np.abs(x[~in_slab, 0]) > width)
  assert np.std(g) == pytest.approx(1.0, rel=0.05)
  with pytest.raises(ValueError, match="dense_share"):
    active.slab_configuration(jax.random.key(0), n, p, dense_share=1.0)
  with pytest.raises(ValueError, match="spacing"):
    active.slab_configuration(jax.random.key(0), n, p, spacing=-2.0)
  with pytest.raises(ValueError, match="dense_share=0.99"):
    active.slab_configuration(jax.random.key(0), 64, params(64, 0.9), dense_share=0.99)


def test_mips_relaxation_labels_match_the_authors_neighbour_counts():
  """``benchmarks.mips_relaxation`` turns the authors' labels (solid: >= 5 centres,
  itself included, within 2.4; gas: <= 2) into local-packing thresholds; on random
  configurations, a clump and a slab they must pick the same particles as direct counts."""
  from benchmarks import mips_relaxation as study
  n = 512
  p = params(n, 0.5)
  starts = [active.random_configuration(jax.random.key(0), n, p),
            active.random_configuration(jax.random.key(1), n, p, spread=0.5),
            active.slab_configuration(jax.random.key(2), n, p)]
  x = np.stack([np.asarray(s[0]) for s in starts])
  got = study.order_parameters(x, p)
  diff = np.asarray(active.minimum_image(jnp.asarray(x[:, :, None] - x[:, None, :]),
                                         p.half_width))
  counts = np.sum(np.sum(diff ** 2, axis=-1) < 2.4 ** 2, axis=-1)  # itself included
  assert got["solid"] == pytest.approx(np.mean(counts >= 5), abs=1e-12)
  assert got["gas"] == pytest.approx(np.mean(counts <= 2), abs=1e-12)
  assert 0.0 < got["gas"] < got["solid"] < 1.0
