"""Greedy minimum-entropy coupling and the majorization bound.

References used here: a plain-Python loop of Kocaoglu et al.'s Algorithm 1 (must give
the identical coupling), an exact brute-force MEC for tiny supports (entropy is
concave, so its minimum over the transportation polytope sits at a vertex; the vertices
are the non-negative basic solutions on n + m - 1 cells), and hand-derived closed forms.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropylab.coupling import greedy_mec, greedy_mec_sparse, majorization_lower_bound
from entropylab.coupling.mec import majorization_meet

LOG2E = math.log2(math.e)


def bits(m):
  m = np.asarray(m, np.float64).ravel()
  m = m[m > 0]
  return float(-(m * np.log2(m)).sum())


def slow_greedy(p, q):
  rp, rq = list(map(float, p)), list(map(float, q))
  joint = np.zeros((len(p), len(q)))
  for _ in range(len(p) + len(q) - 1):
    i = max(range(len(rp)), key=lambda k: (rp[k], -k))
    j = max(range(len(rq)), key=lambda k: (rq[k], -k))
    r = min(rp[i], rq[j])
    joint[i, j] += r
    rp[i] -= r
    rq[j] -= r
  return joint


def exact_mec_entropy(p, q):
  n, m = len(p), len(q)
  cells = [(i, j) for i in range(n) for j in range(m)]
  a = np.zeros((n + m, n * m))
  for c, (i, j) in enumerate(cells):
    a[i, c] = 1.0
    a[n + j, c] = 1.0
  b = np.concatenate([p, q])
  best = math.inf
  for support in itertools.combinations(range(n * m), n + m - 1):
    sub = a[:, support]
    x, *_ = np.linalg.lstsq(sub, b, rcond=None)
    if np.allclose(sub @ x, b, atol=1e-12) and np.all(x > -1e-12):
      best = min(best, bits(np.clip(x, 0, None)))
  return best


def random_marginals(rng, n, m, alpha=1.0):
  return rng.dirichlet(np.full(n, alpha)), rng.dirichlet(np.full(m, alpha))


@pytest.mark.parametrize("seed", range(8))
def test_identical_to_slow_reference_and_exact_marginals(seed):
  rng = np.random.default_rng(seed)
  n, m = rng.integers(2, 30, size=2)
  p, q = random_marginals(rng, n, m)
  with jax.enable_x64(True):
    joint = np.asarray(greedy_mec(jnp.asarray(p), jnp.asarray(q)))
    rows, cols, mass = (np.asarray(v) for v in greedy_mec_sparse(jnp.asarray(p), jnp.asarray(q)))
  ref = slow_greedy(p, q)
  np.testing.assert_allclose(joint, ref, rtol=0, atol=1e-15)
  dense = np.zeros_like(joint)
  np.add.at(dense, (rows, cols), mass)
  np.testing.assert_array_equal(dense, joint)
  assert np.all(joint >= 0) and np.count_nonzero(joint) <= n + m - 1
  np.testing.assert_allclose(joint.sum(1), p, atol=1e-12)
  np.testing.assert_allclose(joint.sum(0), q, atol=1e-12)
  assert np.all(np.diff(mass) <= 1e-15)  # masses come out non-increasing


@settings(max_examples=25)
@given(st.sampled_from([2, 5, 17, 40]), st.sampled_from([3, 9, 40]), st.integers(0, 10**6),
       st.sampled_from([0.2, 1.0, 5.0]))
def test_entropy_between_meet_and_meet_plus_log2e(n, m, seed, alpha):
  rng = np.random.default_rng(seed)
  p, q = random_marginals(rng, n, m, alpha)
  with jax.enable_x64(True):
    h = bits(greedy_mec(jnp.asarray(p), jnp.asarray(q)))
    lb = float(majorization_lower_bound(jnp.asarray(p), jnp.asarray(q)))
  assert lb - 1e-9 <= h <= lb + LOG2E + 1e-9
  assert max(bits(p), bits(q)) - 1e-9 <= lb  # the meet is majorised by both


@pytest.mark.parametrize("n, m", [(2, 2), (2, 3), (3, 3), (3, 4)])
def test_greedy_within_053_bits_of_brute_force_optimum(n, m):
  rng = np.random.default_rng(n * 10 + m)
  worst = 0.0
  for _ in range(12):
    p, q = random_marginals(rng, n, m, alpha=0.7)
    with jax.enable_x64(True):
      h = bits(greedy_mec(jnp.asarray(p), jnp.asarray(q)))
      lb = float(majorization_lower_bound(jnp.asarray(p), jnp.asarray(q)))
    opt = exact_mec_entropy(p, q)
    assert lb - 1e-9 <= opt <= h + 1e-9
    worst = max(worst, h - opt)
  assert worst <= LOG2E / math.e


def test_closed_forms(x64):
  p = jnp.array([0.5, 0.3, 0.2])
  # coupling a marginal with itself: the diagonal
  np.testing.assert_allclose(greedy_mec(p, p), np.diag(np.asarray(p)), atol=1e-15)
  # with a point mass: the product
  np.testing.assert_allclose(greedy_mec(p, jnp.array([0.0, 1.0])),
                             np.outer(np.asarray(p), [0.0, 1.0]), atol=1e-15)
  # by hand: p = (0.6, 0.4), q = (0.5, 0.5) -> [[0.5, 0.1], [0, 0.4]]
  np.testing.assert_allclose(greedy_mec(jnp.array([0.6, 0.4]), jnp.array([0.5, 0.5])),
                             [[0.5, 0.1], [0.0, 0.4]], atol=1e-15)
  # the meet of (0.6, 0.4) and (0.5, 0.5): prefix mins (0.5, 1.0) -> (0.5, 0.5)
  np.testing.assert_allclose(majorization_meet(jnp.array([0.6, 0.4]), jnp.array([0.5, 0.5])),
                             [0.5, 0.5], atol=1e-15)


def test_jit_vmap_batch_equal_loop():
  rng = np.random.default_rng(1)
  p = rng.dirichlet(np.ones(7), size=6).astype(np.float32)
  q = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
  loop = np.stack([np.asarray(greedy_mec(p[i], q[i])) for i in range(6)])
  np.testing.assert_array_equal(greedy_mec(p, q), loop)
  np.testing.assert_array_equal(jax.vmap(greedy_mec)(jnp.asarray(p), jnp.asarray(q)), loop)
  np.testing.assert_array_equal(jax.jit(greedy_mec)(p, q), loop)
  # q broadcast against a batch of p
  np.testing.assert_array_equal(greedy_mec(p, q[0]),
                                np.stack([np.asarray(greedy_mec(p[i], q[0])) for i in range(6)]))


@pytest.mark.slow
def test_large_sparse_support_runs_in_linear_memory(x64):
  rng = np.random.default_rng(2)
  p, q = random_marginals(rng, 20000, 15000)
  rows, cols, mass = greedy_mec_sparse(jnp.asarray(p), jnp.asarray(q))
  assert mass.shape == (34999,)
  np.testing.assert_allclose(np.bincount(np.asarray(rows), np.asarray(mass), 20000), p, atol=1e-12)
  np.testing.assert_allclose(np.bincount(np.asarray(cols), np.asarray(mass), 15000), q, atol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: greedy_mec(jnp.array([0.5, -0.1, 0.6]), jnp.array([1.0])), "p has negative"),
        (lambda: greedy_mec(jnp.array([0.5, 0.5]), jnp.array([0.5, 0.6])), "q must sum to 1"),
        (lambda: greedy_mec(jnp.array([0.5, jnp.nan]), jnp.array([1.0])), "p contains NaN"),
        (lambda: greedy_mec(jnp.ones((2, 3)) / 3, jnp.ones((3, 4)) / 4), "do not broadcast"),
        (lambda: greedy_mec_sparse(jnp.ones((2, 3)) / 3, jnp.ones((3, 4)) / 4), "do not broadcast"),
        (lambda: majorization_lower_bound(jnp.array([0.5, 0.5])), "at least two"),
        (lambda: majorization_lower_bound(jnp.array([0.5, 0.5]), jnp.array([0.9, 0.2])),
         r"marginals\[1\] must sum"),
    ],
)
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()
