"""Closed-form self-propulsion scores over a linear family, and the slaved-mode basis of
interacting active particles without translational noise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab import production as prod
from entropylab.production import active
from tests.production.test_local_score import linear_local_score, trapped_particles


def position_and_g_basis(state):
  """``phi = (x, g)`` per particle; divergences in the own ``g``: 0 and ``d``."""
  n, dim = state.shape[1:]
  return jnp.stack([state[0], state[1]]), jnp.stack([jnp.zeros(n), jnp.full(n, float(dim))])


def test_fit_on_trapped_particles_gives_the_score_and_the_rate(x64):
  """Trapped active particles (A = 0.05, gamma = 0.1, v0 = 0.3, eps = 0; rate A d = 0.1
  per particle): over f = c_x x + c_g g the fit recovers the exact score's coefficients
  (from the Lyapunov precision, -P_gx and 1 - P_gg) within 3%, and its bound on
  held-out samples the rate within 3%. The closed-form bound equals
  ``hypoelliptic_entropy_production_bound`` of the same score, total, per particle and
  in bits."""
  trap, gamma, v0, n = 0.05, 0.1, 0.3, 50
  x, prec, _, rate = trapped_particles(trap, gamma, v0, n, 2000)
  held_out = trapped_particles(trap, gamma, v0, n, 2000, seed=1)[0]
  c = np.asarray(jax.jit(lambda y: prod.fit_linear_self_propulsion_score(
      position_and_g_basis, y))(x))
  np.testing.assert_allclose(c, [-prec[2, 0], 1 - prec[2, 2]], rtol=0.03)
  assert abs(prec[2, 1]) < 1e-12 and abs(prec[2, 3]) < 1e-12     # isotropic blocks
  bound = float(prod.linear_self_propulsion_bound(position_and_g_basis, c, held_out, gamma))
  assert abs(bound / n - rate) < 0.03 * rate
  same = np.zeros((4, 4))
  same[2:, :2] = -c[0] * np.eye(2)
  same[2:, 2:] = (1 - c[1]) * np.eye(2)
  score = linear_local_score(same)
  np.testing.assert_allclose(
      bound, float(prod.hypoelliptic_entropy_production_bound(score, held_out, gamma)),
      rtol=1e-9)
  local = np.asarray(prod.linear_self_propulsion_bound(position_and_g_basis, c, held_out,
                                                       gamma, local=True))
  np.testing.assert_allclose(local, np.asarray(prod.hypoelliptic_entropy_production_bound(
      score, held_out, gamma, local=True)), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(
      float(prod.linear_self_propulsion_bound(position_and_g_basis, c, held_out, gamma,
                                              base=2)), bound / np.log(2), rtol=1e-9)
  m, gram = prod.linear_self_propulsion_moments(position_and_g_basis, held_out)
  assert m.shape == (2000, 2) and gram.shape == (2000, 2, 2)
  np.testing.assert_allclose(np.mean(gamma * (2 * m @ c - np.einsum("k,bkl,l->b", c, gram, c))),
                             bound, rtol=1e-9)


def test_fit_gives_zero_to_a_function_that_vanishes():
  """A basis function that is zero on every sample gets coefficient 0 (pseudo-inverse),
  and the bound is that of the other functions alone."""
  x = trapped_particles(0.05, 0.1, 0.3, 10, 200)[0]
  padded = lambda s: tuple(jnp.concatenate([a, jnp.zeros_like(a[:1])])
                           for a in position_and_g_basis(s))
  c = np.asarray(prod.fit_linear_self_propulsion_score(padded, x))
  assert c[2] == 0.0
  np.testing.assert_allclose(c[:2], prod.fit_linear_self_propulsion_score(
      position_and_g_basis, x), rtol=1e-5)


def packed_pair_system(trap=0.0):
  return active.AOUPParams(v0=0.025, gamma=1e-3, epsilon=0.0, trap=trap, half_width=4.0)


def test_slaved_mode_basis_divergences_match_autodiff(x64):
  """Five particles in contact (k = 1, beta = 7.5, trap 1 so that every mode is
  stable), in three bands: ``dense_position_jacobian`` is the drift's ``jacfwd``; the
  per-particle divergences of all terms equal the traces of their
  forward-mode Jacobians in each particle's own g; and with the bands holding every
  mode, -g plus the harmonic terms is ``harmonic_self_propulsion_score``."""
  params = packed_pair_system(trap=1.0)
  rng = np.random.default_rng(3)
  x = np.array([[0, 0], [1.8, 0], [0, 1.8], [1.8, 1.8], [0.9, 3.3]]) + rng.uniform(
      -0.1, 0.1, (5, 2))
  g = rng.normal(size=(5, 2))
  state = jnp.asarray(np.stack([x, g]))
  jac_x = np.asarray(jax.jacfwd(lambda y: active.aoup_drift(
      jnp.stack([y, state[1]]), params)[0])(state[0])).reshape(10, 10)
  np.testing.assert_allclose(active.dense_position_jacobian(state[0], params), jac_x,
                             rtol=1e-10, atol=1e-12)
  lam = np.linalg.eigvalsh(jac_x)
  assert lam.max() < 0 and lam.min() < -1.5                       # stable, and not only the trap
  edges = [(lam[1] + lam[2]) / 2, (lam[5] + lam[6]) / 2, lam.max() / 2]  # 2, 4 and 4 modes
  basis = active.slaved_mode_basis(params, edges)
  phi, div = jax.jit(basis)(state)
  assert phi.shape == (9, 5, 2) and div.shape == (9, 5)
  jac = jax.jit(jax.jacfwd(lambda gg: basis(jnp.stack([state[0], gg]))[0]))(state[1])
  own = jnp.einsum("kiaia->ki", jac)
  np.testing.assert_allclose(div, own, rtol=1e-8, atol=1e-8 * float(jnp.abs(own).max()))
  assert float(jnp.abs(phi[3:]).max()) > 0                         # forces are not harmonic
  harmonic = active.harmonic_self_propulsion_score(params)(state)[1]
  np.testing.assert_allclose(-state[1] + phi[:3].sum(0), harmonic, rtol=1e-8,
                             atol=1e-8 * float(jnp.abs(harmonic).max()))


def test_slaving_terms_cancel_the_drift_that_follows_a_slide(x64):
  """Two particles (v0 = 0.025, gamma = 1e-4, k = 1, beta = 7.5, no trap), the second
  pushed left against the first from 20 degrees above the line of centres, g frozen, no
  noise: it slides round the first. On this slow motion the contact mode carries drift
  that the noise did not cause, which the harmonic term reads as a score of tens. The
  first slaving term cancels all but a fifth of it at each of three times while the
  contact holds (predicted: the stiff component of b_x is -q.w / lambda^2 to leading
  order); the second takes a further fifth off at the first two. (At the third, where
  the contact is about to open, the series no longer converges and the second term
  overshoots: 13.5 against 6.2.)"""
  params = packed_pair_system()._replace(gamma=1e-4, half_width=20.0)
  g = jnp.array([[0.0, 0.0], [-1.0, 0.0]])
  th = np.deg2rad(20.0)
  x0 = jnp.array([[0.0, 0.0], [1.95 * np.cos(th), 1.95 * np.sin(th)]])
  drift = lambda y: active.aoup_drift(jnp.stack([y, g]), params)[0]
  slide = jax.jit(lambda y: jax.lax.fori_loop(0, 4000, lambda _, z: z + 0.01 * drift(z), y))
  basis = jax.jit(active.slaved_mode_basis(params, [-0.05]))
  x = x0
  for time in range(3):
    x = slide(x)
    phi = basis(jnp.stack([x, g]))[0]
    harm, first, second = (float(jnp.linalg.norm(phi[:k].sum(0))) for k in (1, 2, 3))
    assert harm > 10.0
    assert first < 0.2 * harm
    if time < 2:
      assert second < 0.8 * first


def clumped_system(n_clumps=24, seed=5):
  """``(params, state)``: clumps of four particles in contact (a 1.8-square, jittered) at
  random places in a box of packing 0.015, and Gaussian self-propulsions."""
  params = active.AOUPParams(v0=0.025, gamma=1e-3, epsilon=0.0,
                             half_width=active.box_half_width(4 * n_clumps, 0.015))
  rng = np.random.default_rng(seed)
  square = np.array([[0, 0], [1.8, 0], [0, 1.8], [1.8, 1.8]])
  centres = rng.uniform(-params.half_width, params.half_width, (n_clumps, 1, 2))
  x = (centres + square + rng.uniform(-0.1, 0.1, (n_clumps, 4, 2))).reshape(-1, 2)
  x = np.asarray(active.wrap_positions(jnp.asarray(x), params.half_width))
  return params, jnp.asarray(np.stack([x, rng.normal(size=x.shape)]))


def dense_slaved_vectors(state, params):
  """``(J, h, w_1, w_2, w_3)`` from the all-pairs drift and their definitions along the
  flow at fixed g (an independent path: no neighbour list, no probing, no expansion of
  the derivatives): ``w_1 = D^2 b_x[b_x, b_x]``, ``w_2`` and ``w_3`` its first and second
  derivatives along ``b_x``, each over ``v0 gamma``."""
  gamma, v0 = params.gamma, params.v0
  forces = lambda y: active.aoup_drift(jnp.stack([y, jnp.zeros_like(y)]), params)[0]
  drift = lambda y: active.aoup_drift(jnp.stack([y, state[1]]), params)[0]
  x, b = state[0], drift(state[0])
  d1 = lambda y, u: jax.jvp(forces, (y,), (u,))[1]
  w_of = lambda y: jax.jvp(lambda z: d1(z, drift(y)), (y,), (drift(y),))[1]
  along = lambda f: lambda y: jax.jvp(f, (y,), (drift(y),))[1]
  jmat = active.dense_position_jacobian(x, params)
  return (jmat, (d1(x, b) - gamma * b) / (v0 * gamma) + state[1],
          *(f(x) / (v0 * gamma) for f in (w_of, along(w_of), along(along(w_of)))))


def test_local_slaved_mode_basis_is_exact_and_local(x64):
  """24 four-particle clumps in a box of packing 0.015, degree 1 with three slaving
  orders: the functions are the powers of the all-pairs J times the vectors h, w_1, w_2,
  w_3 of the dense drift (to the dropped softplus tail, 1e-5 of the largest); the
  probing colours (fewer than N, so not the particle-by-particle fallback) keep
  particles of one colour further apart than the reach; the divergences equal the
  traces of the dense functions' forward-mode Jacobian in each particle's own g (to the
  same tail); and moving one particle
  leaves the functions of every particle beyond the reach (4 cut-offs) unchanged."""
  params, state = clumped_system()
  n = state.shape[1]
  basis = jax.jit(active.local_slaved_mode_basis(params, degree=1, order=3,
                                                 probes_per_pass=8))
  phi, div = basis(state)
  assert phi.shape == (8, n, 2) and div.shape == (8, n)

  def expected(g):
    jmat, *vectors = dense_slaved_vectors(jnp.stack([state[0], g]), params)
    return jnp.stack([m for v in vectors for m in (v, (jmat @ v.reshape(-1)).reshape(n, 2))])

  expect = expected(state[1])
  for t in range(4):
    scale = float(jnp.abs(expect[2 * t:2 * t + 2]).max())
    assert scale > 0
    np.testing.assert_allclose(phi[2 * t:2 * t + 2], expect[2 * t:2 * t + 2], rtol=0,
                               atol=1e-5 * scale)
  reach = 4 * active.interaction_cutoff(params)
  colour, count = active._probe_colours(state[0], params, reach)
  assert 1 < int(count) < n
  diff = active.minimum_image(state[0][:, None] - state[0][None], params.half_width)
  dist = np.asarray(jnp.linalg.norm(diff, axis=-1))
  same = (np.asarray(colour)[:, None] == np.asarray(colour)[None]) & ~np.eye(n, dtype=bool)
  assert same.any() and dist[same].min() > reach
  own = jnp.einsum("kiaia->ki", jax.jit(jax.jacfwd(expected))(state[1]))
  for t in range(4):
    scale = float(jnp.abs(own[2 * t:2 * t + 2]).max())
    assert scale > 0
    np.testing.assert_allclose(div[2 * t:2 * t + 2], own[2 * t:2 * t + 2], rtol=0,
                               atol=1e-5 * scale)
  moved = state.at[0, 0].add(jnp.array([0.3, -0.2])).at[1, 0].add(0.5)
  phi_moved = basis(moved)[0]
  far = dist[0] > reach
  assert far.sum() > n // 2
  np.testing.assert_array_equal(phi_moved[:, far], phi[:, far])
  assert float(jnp.abs(phi_moved[:, 0] - phi[:, 0]).max()) > 0


def test_local_slaved_mode_fit_on_trapped_particles_gives_the_rate(x64):
  """Trapped particles without interactions (k = 0, A = 0.05, gamma = 0.1, v0 = 0.3):
  J = -A, the harmonic term is the exact score and the slaving terms vanish. The fit over
  the local harmonic terms (degree 1) certifies the rate A d = 0.1 per particle within 3%
  on held-out samples."""
  trap, gamma, v0, n = 0.05, 0.1, 0.3, 20
  params = active.AOUPParams(v0=v0, gamma=gamma, epsilon=0.0, k=0.0, trap=trap,
                             half_width=40.0)
  x, _, _, rate = trapped_particles(trap, gamma, v0, n, 1500)
  held_out = trapped_particles(trap, gamma, v0, n, 1500, seed=1)[0]
  phi = jax.jit(active.local_slaved_mode_basis(params, degree=0, order=2))(x[0])[0]
  assert float(jnp.abs(phi[0]).max()) > 0 and float(jnp.abs(phi[1:]).max()) == 0.0
  basis = jax.jit(active.local_slaved_mode_basis(params, degree=1, order=0))
  c = prod.fit_linear_self_propulsion_score(basis, x)
  bound = float(prod.linear_self_propulsion_bound(basis, c, held_out, gamma)) / n
  assert abs(bound - rate) < 0.03 * rate


def test_bad_input_is_refused():
  params = packed_pair_system()
  with pytest.raises(ValueError, match="edges must be strictly increasing"):
    active.slaved_mode_basis(params, [-0.1, -0.5])
  with pytest.raises(ValueError, match="edges must be finite and negative"):
    active.slaved_mode_basis(params, [-0.1, 0.2])
  with pytest.raises(ValueError, match="edges must be a non-empty"):
    active.slaved_mode_basis(params, [])
  with pytest.raises(ValueError, match="epsilon must be 0"):
    active.slaved_mode_basis(params._replace(epsilon=0.1), [-0.1])
  with pytest.raises(ValueError, match="v0 must be non-zero"):
    active.slaved_mode_basis(params._replace(v0=0.0), [-0.1])
  with pytest.raises(ValueError, match="order must be 0, 1 or 2"):
    active.slaved_mode_basis(params, [-0.1], order=3)
  with pytest.raises(ValueError, match="degree must be an integer >= 0"):
    active.local_slaved_mode_basis(params, degree=-1)
  with pytest.raises(ValueError, match="order must be 0, 1, 2 or 3"):
    active.local_slaved_mode_basis(params, order=4)
  with pytest.raises(ValueError, match="scale must be a finite positive"):
    active.local_slaved_mode_basis(params, scale=0.0)
  with pytest.raises(ValueError, match="epsilon must be 0"):
    active.local_slaved_mode_basis(params._replace(epsilon=0.1))
  with pytest.raises(ValueError, match="max_neighbors"):
    active.local_slaved_mode_basis(params, max_neighbors=0)
  x = trapped_particles(0.05, 0.1, 0.3, 4, 3)[0]
  with pytest.raises(ValueError, match="x must be"):
    prod.fit_linear_self_propulsion_score(position_and_g_basis, x[:, 0])
  with pytest.raises(TypeError, match="basis must be callable"):
    prod.fit_linear_self_propulsion_score(None, x)
  with pytest.raises(ValueError, match="x has non-finite"):
    prod.fit_linear_self_propulsion_score(position_and_g_basis, x.at[0, 1, 0, 0].set(jnp.nan))
  with pytest.raises(ValueError, match="basis must return"):
    prod.fit_linear_self_propulsion_score(lambda s: (s[1][None], jnp.zeros((1, 3))), x)
  with pytest.raises(ValueError, match="gamma must be > 0"):
    prod.linear_self_propulsion_bound(position_and_g_basis, jnp.ones(2), x, 0.0)
  with pytest.raises(ValueError, match="coefficients has 3 entries"):
    prod.linear_self_propulsion_bound(position_and_g_basis, jnp.ones(3), x, 0.1)
  with pytest.raises(ValueError, match="coefficients has non-finite"):
    prod.linear_self_propulsion_bound(position_and_g_basis, jnp.array([1.0, jnp.nan]), x, 0.1)


def test_bound_terms_from_a_field_match_the_bound_of_its_score(x64):
  """``self_propulsion_bound_terms`` of ``f = tanh(x W) + A g`` (divergence ``tr A`` per
  particle, written out by hand) equals, particle by particle, the bound that
  ``hypoelliptic_entropy_production_bound`` computes for the score ``s_g = -g + f`` with
  forward-mode divergences; NumPy float64 input stays NumPy float64, and it jits."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(6, 2, 9, 2))
  w, a, gamma = rng.normal(size=(2, 2)), rng.normal(size=(2, 2)), 0.2
  field = lambda s: jnp.tanh(s[0] @ w) + s[1] @ a.T

  def score(state, query=None, shift=None):
    z = state if query is None else state[:, query]
    z = z if shift is None else z + shift
    return jnp.stack([jnp.zeros_like(z[0]), field(z) - z[1]])

  f = np.stack([np.asarray(field(jnp.asarray(s))) for s in x])
  div = np.full(x.shape[:1] + x.shape[2:3], np.trace(a))
  terms = prod.self_propulsion_bound_terms(x[:, 1], f, div, gamma)
  assert isinstance(terms, np.ndarray) and terms.dtype == np.float64
  reference = np.asarray(prod.hypoelliptic_entropy_production_bound(score, jnp.asarray(x),
                                                                    gamma, local=True))
  np.testing.assert_allclose(terms, reference, rtol=1e-9, atol=1e-12)
  jitted = jax.jit(prod.self_propulsion_bound_terms)(x[:, 1], f, div, gamma)
  np.testing.assert_allclose(np.asarray(jitted), terms, rtol=1e-9)
  with pytest.raises(ValueError, match="div"):
    prod.self_propulsion_bound_terms(x[:, 1], f, div[:, :3], gamma)
  with pytest.raises(ValueError, match="f of the same shape"):
    prod.self_propulsion_bound_terms(x[:, 1], f[..., :1], div, gamma)
  with pytest.raises(ValueError, match="gamma"):
    prod.self_propulsion_bound_terms(x[:, 1], f, div, 0.0)
