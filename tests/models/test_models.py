"""Networks (entropylab.models): shapes follow the state, and the local transformer's
symmetries (permutation equivariance, translation invariance, locality) hold exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.models import LocalTransformer, MLP, nearest_neighbors
from entropylab.production import active


def test_mlp_maps_states_to_their_shape_or_a_scalar():
  x = jnp.ones((5, 3, 2))
  m = MLP(features=(8,), state_ndim=2)
  p = m.init(jax.random.key(0), x)
  out = m.apply(p, x)
  # One state's output does not depend on the others in the batch.
  np.testing.assert_allclose(out[1], m.apply(p, x[1]), rtol=1e-6)
  s = MLP(features=(8,), out_features=1, squeeze=True)
  ps = s.init(jax.random.key(0), jnp.ones(4))
  assert s.apply(ps, jnp.ones((7, 4))).shape == (7,)


def test_nearest_neighbors_match_a_slow_search():
  rng = np.random.default_rng(0)
  half = 5.0
  x = rng.uniform(-half, half, size=(40, 2))
  idx, rel = nearest_neighbors(jnp.asarray(x), half, 6)
  for i in range(40):
    d = x - x[i]
    d = d - 2 * half * np.round(d / (2 * half))
    dist = np.linalg.norm(d, axis=1)
    dist[i] = np.inf
    np.testing.assert_array_equal(np.sort(np.asarray(idx[i])), np.sort(np.argsort(dist)[:6]))
    np.testing.assert_allclose(rel[i], d[np.asarray(idx[i])], atol=1e-5)


@pytest.fixture(scope="module")
def transformer():
  p = active.AOUPParams(v0=0.1, gamma=0.1, epsilon=0.1, half_width=active.box_half_width(48, 0.3))
  state = active.random_configuration(jax.random.key(1), 48, p)
  net = LocalTransformer(num_neighbors=8, width=32, depth=2, heads=4)
  params = net.init(jax.random.key(2), state, p.half_width)
  return net, params, state, p


def test_local_transformer_is_permutation_equivariant(transformer):
  net, params, state, p = transformer
  perm = jax.random.permutation(jax.random.key(3), state.shape[1])
  out = net.apply(params, state, p.half_width)
  np.testing.assert_allclose(net.apply(params, state[:, perm], p.half_width), out[:, perm],
                             rtol=1e-5, atol=1e-5)


def test_local_transformer_is_translation_invariant(transformer):
  net, params, state, p = transformer
  shifted = state.at[0].set(active.wrap_positions(state[0] + jnp.array([2.7, -4.1]),
                                                  p.half_width))
  np.testing.assert_allclose(net.apply(params, shifted, p.half_width),
                             net.apply(params, state, p.half_width), rtol=1e-4, atol=1e-4)


def test_local_transformer_is_local_and_transfers_to_larger_systems(transformer):
  """Tiling the box 2x2 (4N particles, same density) leaves every particle's
  neighbourhood, hence its output, unchanged."""
  net, params, state, p = transformer
  L = p.half_width
  x, g = state[0], state[1]
  tiles = [x + jnp.array([dx, dy]) for dx in (-L, L) for dy in (-L, L)]
  big_x = active.wrap_positions(jnp.concatenate([active.wrap_positions(t, 2 * L) for t in tiles]),
                                2 * L)
  big = jnp.stack([big_x, jnp.concatenate([g] * 4)])
  out_big = net.apply(params, big, 2 * L)
  out = net.apply(params, state, L)
  for t in range(4):
    np.testing.assert_allclose(out_big[:, t * 48:(t + 1) * 48], out, rtol=1e-4, atol=1e-4)


def test_zero_readout_starts_at_zero_and_still_learns(transformer):
  """``zero_readout`` makes the initial output exactly 0 while the other weights keep
  their random draw (the same key gives the same body), and a loss's gradient reaches
  the readout, so the first step moves the output off zero."""
  _, params, state, p = transformer
  net = LocalTransformer(num_neighbors=8, width=32, depth=2, heads=4, zero_readout=True)
  zero = net.init(jax.random.key(2), state, p.half_width)
  np.testing.assert_array_equal(net.apply(zero, state, p.half_width), 0.0)
  flat, flat_zero = (jax.tree_util.tree_leaves_with_path(t["params"]) for t in (params, zero))
  for (path, a), (_, b) in zip(flat, flat_zero):
    if "readout" in jax.tree_util.keystr(path) and "kernel" in jax.tree_util.keystr(path):
      assert float(jnp.abs(a).max()) > 0
    else:
      np.testing.assert_array_equal(a, b)
  target = jax.random.normal(jax.random.key(4), state.shape)
  grad = jax.grad(lambda q: jnp.sum((net.apply(q, state, p.half_width) - target) ** 2))(zero)
  assert float(jnp.abs(grad["params"]["readout"]["kernel"]).max()) > 1e-3


def test_local_transformer_needs_more_particles_than_neighbors(transformer):
  net, params, state, p = transformer
  with pytest.raises(ValueError, match="num_neighbors"):
    net.apply(params, state[:, :8], p.half_width)


def test_local_transformer_query_and_self_shift(transformer):
  """A query returns those rows of the full output; a zero self-shift changes nothing,
  and a self-shift of particle i's own coordinates moves only particle i's output, as
  moving g_i does (g_i enters other particles' outputs as a neighbour feature, which
  the self-shift leaves out)."""
  net, params, state, p = transformer
  full = net.apply(params, state, p.half_width)
  query = jnp.array([11, 0, 47, 3])
  sub = net.apply(params, state, p.half_width, query)
  np.testing.assert_allclose(sub, full[:, query], rtol=1e-5, atol=1e-6)
  zero = net.apply(params, state, p.half_width, query, jnp.zeros((2, 4, 2)))
  np.testing.assert_allclose(zero, sub, rtol=1e-6, atol=1e-7)
  shift = jnp.zeros((2, 48, 2)).at[1, 5].set(jnp.array([0.3, -0.2]))
  shifted = net.apply(params, state, p.half_width, None, shift)
  moved = net.apply(params, state.at[1, 5].add(jnp.array([0.3, -0.2])), p.half_width)
  np.testing.assert_allclose(shifted[:, 5], moved[:, 5], rtol=1e-5, atol=1e-6)
  others = jnp.arange(48) != 5
  np.testing.assert_allclose(shifted[:, others], full[:, others], rtol=1e-6, atol=1e-7)
  assert float(jnp.abs(moved[:, others] - full[:, others]).max()) > 1e-4


def test_local_transformer_features(transformer):
  """Per-particle features keep the symmetries (permuted with the particles), reach a
  particle's output only through itself (self_features) and its neighbours (features),
  select with a query, and bad shapes raise."""
  net, _, state, p = transformer
  n = state.shape[1]
  feats = jax.random.normal(jax.random.key(7), (n, 3))
  own = jax.random.normal(jax.random.key(8), (n, 5))
  params = net.init(jax.random.key(2), state, p.half_width, None, None, feats, own)
  out = net.apply(params, state, p.half_width, None, None, feats, own)
  perm = jax.random.permutation(jax.random.key(3), n)
  np.testing.assert_allclose(
      net.apply(params, state[:, perm], p.half_width, None, None, feats[perm], own[perm]),
      out[:, perm], rtol=1e-5, atol=1e-5)
  # Changing particle 5's features moves the outputs of 5 (own) and of the particles
  # with 5 among their neighbours (features), and no other.
  idx, _ = nearest_neighbors(state[0], p.half_width, net.num_neighbors)
  sees5 = np.asarray(jnp.any(idx == 5, axis=1))
  moved = net.apply(params, state, p.half_width, None, None, feats.at[5].add(1.0), own)
  changed = np.asarray(jnp.abs(moved - out).max(axis=(0, 2)) > 1e-6)
  np.testing.assert_array_equal(changed, sees5)
  moved_own = net.apply(params, state, p.half_width, None, None, feats, own.at[5].add(1.0))
  changed = np.asarray(jnp.abs(moved_own - out).max(axis=(0, 2)) > 1e-6)
  np.testing.assert_array_equal(changed, np.arange(n) == 5)
  query = jnp.array([4, 9])
  np.testing.assert_allclose(net.apply(params, state, p.half_width, query, None, feats,
                                       own[query]), out[:, query], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="features must be"):
    net.apply(params, state, p.half_width, None, None, feats[:4], own)
  with pytest.raises(ValueError, match="self_features must be"):
    net.apply(params, state, p.half_width, query, None, feats, own)
