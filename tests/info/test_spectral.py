"""Diffusion spectral entropy / mutual information against closed forms and dse-dsmi."""

import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.info import spectral

dse = spectral.diffusion_spectral_entropy
dsmi = spectral.diffusion_spectral_mutual_information

# Clusters of 30 points with spread 0.01 sigma, centres 20 sigma apart: kernel weights
# between clusters are exp(-200) (0 in float32), and inside a cluster 1 - O(1e-4).
# A cluster's block of K is then the all-(1/n) matrix (eigenvalue 1) plus a
# perturbation of rank <= d + 2 (the squared distances) and size O(1e-4), so each
# cluster adds a few eigenvalues of O(1e-4) to the spectrum: a few times
# 1e-4 * log2(1e4) / k bits each, measured <= 0.004 bits in total. Tolerance 0.01 bits.
CLUSTER_TOL = 0.01


def _clusters(rng, k, size=30, spread=0.01, gap=20.0, d=2):
  centres = gap * np.stack([np.arange(k), np.zeros(k)], axis=1)
  centres = np.pad(centres, ((0, 0), (0, d - 2)))
  x = np.concatenate([c + spread * rng.normal(size=(size, d)) for c in centres])
  return x, np.repeat(np.arange(k), size)


CLASS_SIZES = (10, 10, 16)


def _overlapping_classes():
  """Three overlapping Gaussian classes of unequal sizes in 2-D: 0 < DSMI < log2 3."""
  rng = np.random.default_rng(21)
  centres = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5]])
  x = np.concatenate([c + rng.normal(size=(m, 2)) for c, m in zip(centres, CLASS_SIZES)])
  return x, np.repeat(np.arange(3), CLASS_SIZES)


def _isolated(n, d=3, gap=40.0):
  """n points on a line, gap sigma apart: exp(-gap^2 / 2) = 0 in float32 and float64."""
  x = np.zeros((n, d))
  x[:, 0] = gap * np.arange(n)
  return x


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n", [2, 40])
def test_isolated_points_give_log2_n(variant, n):
  # Off-diagonal weights underflow to 0, so K = I: N eigenvalues 1, uniform spectrum.
  x = jnp.asarray(_isolated(n), jnp.float32)
  fn = variant(dse)
  for t in (1.0, 2.5):
    np.testing.assert_allclose(fn(x, 1.0, t), math.log2(n), rtol=1e-6)


@pytest.mark.parametrize("n", [2, 40])
def test_identical_points_give_zero(variant, n):
  # W = all ones, K = all 1/N: one eigenvalue 1, the rest 0. float32 rounding leaves
  # those at ~1e-7, each worth ~1e-7 log2(1e7) = 2.3e-6 bits: < 1e-4 bits for N = 40
  # (measured 5.6e-5); the bound 5e-4 leaves room for other LAPACK builds.
  x = jnp.full((n, 3), 3.0, jnp.float32)
  h = variant(dse)(x, 1.0, 1.0)
  assert 0.0 <= float(h) < 5e-4


@pytest.mark.parametrize("k", [2, 3])
def test_tight_separated_clusters_give_log2_k(k):
  x, _ = _clusters(np.random.default_rng(k), k)
  h = dse(jnp.asarray(x, jnp.float32), 1.0)
  np.testing.assert_allclose(h, math.log2(k), atol=CLUSTER_TOL)


def test_dsmi_is_log2_k_for_cluster_labels_and_zero_for_shuffled():
  # Cluster labels: DSE(class) ~ 0, and a random subset of 30 of the 30k points hits
  # every cluster (it misses one with probability < k (1 - 1/k)^30 = 1.6e-5 per
  # subset), so DSE(subset) ~ log2 k and DSMI ~ log2 k. Shuffled labels: each class is
  # itself a random subset of its size, so both terms are ~ log2 k and DSMI ~ 0. The
  # deviations are the small cluster eigenvalues of CLUSTER_TOL.
  k = 3
  rng = np.random.default_rng(13)
  x, y = _clusters(rng, k)
  x = jnp.asarray(x, jnp.float32)
  key = jax.random.key(k)
  np.testing.assert_allclose(dsmi(x, jnp.asarray(y), 1.0, key=key), math.log2(k), atol=CLUSTER_TOL)
  shuffled = jnp.asarray(rng.permutation(y))
  np.testing.assert_allclose(dsmi(x, shuffled, 1.0, key=key), 0.0, atol=CLUSTER_TOL)


def test_dsmi_is_zero_for_isolated_points_whatever_the_labels():
  # Every subset of m isolated points has DSE exactly log2 m, so the class term and its
  # size-matched random stand-in cancel for unbalanced classes too. Comparing with
  # DSE of all N points instead would give log2 N - sum_c p_c log2 n_c = 0.92 bits here.
  x = jnp.asarray(_isolated(36), jnp.float32)
  y = np.random.default_rng(8).permutation(np.arange(36) % 3 == 0).astype(np.int32)  # 12 and 24
  key = jax.random.key(0)
  eager = dsmi(x, jnp.asarray(y), 1.0, key=key)
  traced = jax.jit(lambda a, b: dsmi(a, b, 1.0, key=key, num_classes=2))(x, jnp.asarray(y))
  closed = jax.jit(lambda a: dsmi(a, y, 1.0, key=key))(x)  # concrete labels inside jit
  np.testing.assert_allclose([eager, traced, closed], 0.0, atol=1e-5)


def test_non_increasing_in_t_and_invariances(x64):
  # H of p_i ~ |lambda_i|^t has dH/dt = -t Var(ln |lambda|) <= 0 (in nats).
  rng = np.random.default_rng(7)
  x = rng.normal(size=(40, 5))
  hs = [float(dse(jnp.asarray(x), 1.5, t)) for t in (0.5, 1, 2, 3, 8)]
  assert all(a > b for a, b in zip(hs, hs[1:])), hs
  # Depends only on distances / sigma: permutations, rigid motions and a common
  # rescaling of x and sigma leave it unchanged.
  rot, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  moved = x[rng.permutation(40)] @ rot + np.array([5.0, -2.0, 100.0, 0.0, 1.0])
  np.testing.assert_allclose(dse(jnp.asarray(moved), 1.5, 2), hs[2], rtol=1e-10)
  np.testing.assert_allclose(dse(jnp.asarray(7.0 * x), 10.5, 2), hs[2], rtol=1e-10)


def test_finite_and_in_range_for_degenerate_input():
  # Duplicated points, huge and tiny bandwidths, fractional and large t: never NaN.
  rng = np.random.default_rng(3)
  x = np.concatenate([np.zeros((20, 2)), np.ones((20, 2)), rng.normal(size=(20, 2))])
  x = jnp.asarray(x, jnp.float32)
  for sigma in (1e-30, 1e-6, 0.3, 1e6):  # 2 sigma^2 underflows to 0 at 1e-30
    for t in (0.25, 1, 40, 1e9):
      h = float(dse(x, sigma, t))
      assert 0.0 <= h <= math.log2(60) + 1e-5, (sigma, t, h)
  for sigma in (1e-30, 1e-6):  # 22 distinct points, none within reach of another
    np.testing.assert_allclose(dse(x, sigma), math.log2(22), rtol=1e-6)


# --------------------------------------------------------------------------- references

# Values of dse_dsmi.diffusion_spectral_entropy(x, gaussian_kernel_sigma=sigma, t=t) from
# the authors' package dse-dsmi 1.1 (numpy 2.4.6, scipy 1.17.1, scikit-learn 1.9.1),
# with x = np.random.default_rng(seed).normal(size=(n, d)) * scale.
REFERENCE_DSE = [
    # seed, n, d, scale, sigma, t, DSE (bits)
    (0, 40, 5, 1.0, 1.0, 1, 4.8994214742083315),
    (1, 40, 5, 0.5, 0.4, 2, 4.494281399951563),
    (2, 50, 20, 5.0, 10.0, 1, 5.590060469377471),  # the reference's default sigma
    (3, 50, 20, 1.0, 4.0, 3, 0.20613367192059553),
]


@pytest.mark.parametrize("seed, n, d, scale, sigma, t, ref", REFERENCE_DSE)
def test_dse_matches_recorded_reference_values(seed, n, d, scale, sigma, t, ref):
  x = np.random.default_rng(seed).normal(size=(n, d)) * scale
  # float32: eigenvalue rounding ~1e-7 per eigenvalue, measured <= 5e-7 bits.
  np.testing.assert_allclose(dse(jnp.asarray(x, jnp.float32), sigma, t), ref, atol=1e-5)
  # float64: the reference adds 2.2e-16 to each probability, ~1e-14 N bits.
  with jax.enable_x64(True):
    h = dse(jnp.asarray(x), sigma, t)
    assert h.dtype == jnp.float64
    np.testing.assert_allclose(h, ref, rtol=0, atol=1e-9)


def test_dse_matches_reference_package_on_random_data():
  dse_dsmi = pytest.importorskip("dse_dsmi")
  rng = np.random.default_rng(20)
  # Shapes as in REFERENCE_DSE, whose compiled programs are reused.
  for n, d in [(40, 5), (50, 20), (40, 5), (50, 20), (40, 5)]:
    sigma, t = float(rng.uniform(0.3, 4.0)), int(rng.integers(1, 4))
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0)
    ref = dse_dsmi.diffusion_spectral_entropy(x, gaussian_kernel_sigma=sigma, t=t)
    np.testing.assert_allclose(dse(jnp.asarray(x, jnp.float32), sigma, t), ref, atol=1e-5)
    with jax.enable_x64(True):
      np.testing.assert_allclose(dse(jnp.asarray(x), sigma, t), ref, rtol=0, atol=1e-9)


def test_dsmi_matches_reference_formula(x64):
  ref_dse = pytest.importorskip("dse_dsmi").diffusion_spectral_entropy
  x, y = _overlapping_classes()
  sigma, t, reps = 0.8, 2, 5
  key = jax.random.key(5)
  ours = dsmi(jnp.asarray(x), jnp.asarray(y), sigma, t, key=key, num_repetitions=reps)
  # The reference's DSMI formula, with its DSE, on the documented subsets: repetition r
  # orders the points by jax.random.permutation(split(key, R)[r], N); class c takes
  # the first n_c.
  orders = [np.asarray(jax.random.permutation(k, len(x))) for k in jax.random.split(key, reps)]
  expected = 0.0
  for c, n_c in enumerate(CLASS_SIZES):
    h_class = ref_dse(x[y == c], gaussian_kernel_sigma=sigma, t=t)
    h_random = np.mean([ref_dse(x[o[:n_c]], gaussian_kernel_sigma=sigma, t=t) for o in orders])
    expected += n_c / len(x) * (h_random - h_class)
  assert 0.1 < expected < math.log2(3) - 0.1
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-9)


def test_dsmi_matches_reference_package_on_clusters():
  # The package's own DSMI draws its own subsets; on tight clusters the sampling noise
  # is far below CLUSTER_TOL, so the two estimates must agree to it.
  dse_dsmi = pytest.importorskip("dse_dsmi")
  x, y = _clusters(np.random.default_rng(13), 3)  # the data of the cluster test
  state = random.getstate()  # the reference reseeds Python's global random module
  try:
    ref_mi, _ = dse_dsmi.diffusion_spectral_mutual_information(x, y, gaussian_kernel_sigma=1.0)
  finally:
    random.setstate(state)
  ours = dsmi(jnp.asarray(x, jnp.float32), jnp.asarray(y), 1.0, key=jax.random.key(6))
  np.testing.assert_allclose(ours, ref_mi, atol=CLUSTER_TOL)
  np.testing.assert_allclose(ref_mi, math.log2(3), atol=CLUSTER_TOL)


# --------------------------------------------------------------------------- transforms


def test_jit_equals_eager_with_traced_sigma_and_t(x64):
  x, y = _overlapping_classes()  # shapes as in test_dsmi_matches_reference_formula
  x, y = jnp.asarray(x), jnp.asarray(y)
  eager = dse(x, 0.8, 2)
  jitted = jax.jit(dse)(x, 0.8, 2)
  np.testing.assert_allclose(jitted, eager, rtol=1e-12)
  # concrete labels (gathered class subsets) vs traced labels (masks over all N points)
  key = jax.random.key(5)
  mi = dsmi(x, y, 0.8, 2, key=key)
  mi_traced = jax.jit(lambda a, b, s, tt: dsmi(a, b, s, tt, key=key, num_classes=3))(x, y, 0.8, 2)
  assert float(mi) > 0.1  # not a trivially zero comparison
  np.testing.assert_allclose(mi_traced, mi, rtol=1e-9)


def test_vmap_over_point_clouds_and_sigmas_matches_loop():
  rng = np.random.default_rng(31)
  xs = jnp.asarray(rng.normal(size=(3, 40, 5)), jnp.float32)
  loop = np.array([dse(xs[i], 0.7) for i in range(3)])
  np.testing.assert_allclose(jax.vmap(lambda a: dse(a, 0.7))(xs), loop, rtol=1e-5)
  sigmas = jnp.array([0.5, 1.5, 4.0])
  loop_s = np.array([dse(xs[0], float(s)) for s in sigmas])
  np.testing.assert_allclose(jax.vmap(lambda s: dse(xs[0], s))(sigmas), loop_s, rtol=1e-5)
  assert loop_s[0] > loop_s[1] > loop_s[2]  # wider kernels merge more points


# --------------------------------------------------------------------------- bad input

_X = jnp.asarray(np.random.default_rng(40).normal(size=(6, 2)), jnp.float32)
_Y = jnp.asarray([0, 0, 1, 1, 2, 2])
_KEY = jax.random.key(0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: dse(_X.at[1, 0].set(jnp.nan), 1.0), "x contains NaN"),
        (lambda: dse(_X.at[2, 1].set(jnp.inf), 1.0), "x contains NaN or infinite"),
        (lambda: dse(_X[0], 1.0), r"x must have shape \[N, d\]"),
        (lambda: dse(_X[None], 1.0), r"x must have shape \[N, d\]"),
        (lambda: dse(_X[:1], 1.0), "x must hold at least 2 points"),
        (lambda: dse(_X[:, :0], 1.0), "x must have at least 1 feature"),
        (lambda: dse(_X, 0.0), "sigma must be a positive finite"),
        (lambda: dse(_X, -1.0), "sigma must be a positive finite"),
        (lambda: dse(_X, jnp.nan), "sigma must be a positive finite"),
        (lambda: dse(_X, jnp.inf), "sigma must be a positive finite"),
        (lambda: dse(_X, jnp.array([1.0, 2.0])), "sigma must be a scalar"),
        (lambda: dse(_X, 1.0, 0), "t must be a positive finite"),
        (lambda: dse(_X, 1.0, -2), "t must be a positive finite"),
        (lambda: dse(_X, 1.0, math.inf), "t must be a positive finite"),
        (lambda: dsmi(_X, _Y[:5], 1.0, key=_KEY), r"y must have shape \[N\]"),
        (lambda: dsmi(_X, _Y[:, None], 1.0, key=_KEY), r"y must have shape \[N\]"),
        (lambda: dsmi(_X.at[0, 0].set(jnp.nan), _Y, 1.0, key=_KEY), "x contains NaN"),
        (lambda: dsmi(_X, _Y, -1.0, key=_KEY), "sigma must be"),
        (lambda: dsmi(_X, _Y, 1.0, 0, key=_KEY), "t must be"),
        (lambda: dsmi(_X, _Y, 1.0, key=_KEY, num_classes=2), r"y must lie in \[0, num_classes\)"),
        (lambda: dsmi(_X, _Y, 1.0, key=_KEY, num_repetitions=0), "num_repetitions"),
        (lambda: jax.jit(lambda b: dsmi(_X, b, 1.0, key=_KEY))(_Y), "num_classes is required"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_bad_types_raise_type_error():
  with pytest.raises(TypeError, match="x must be"):
    dse("points", 1.0)
  with pytest.raises(TypeError, match="sigma must be a positive number"):
    dse(_X, None)
  with pytest.raises(TypeError, match="t must be a positive number"):
    dse(_X, 1.0, True)
  with pytest.raises(TypeError, match="y must hold integer class labels"):
    dsmi(_X, _Y.astype(jnp.float32), 1.0, key=_KEY)
  with pytest.raises(TypeError, match="key must be a jax.random key"):
    dsmi(_X, _Y, 1.0, key=0)
  with pytest.raises(TypeError, match="key"):
    dsmi(_X, _Y, 1.0)  # key is required: DSMI is defined through random subsets
