"""Maximum entropy under moment constraints against closed forms, scipy and duality."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import given
from hypothesis import strategies as st

from entropylab import info
from entropylab.info.maxent import MaxEntResult, maxent_distribution

FACES = np.arange(1.0, 7.0)
DICE = FACES[:, None]
# Jaynes' Brandeis dice problem, mean 4.5: the solution quoted, to five decimals, in
# Jaynes (1978), "Where do we stand on maximum entropy?".
JAYNES_4_5 = np.array([0.05435, 0.07877, 0.11416, 0.16545, 0.23977, 0.34749])
SQUARES = np.stack([FACES, FACES**2], axis=1)  # hull: points of a parabola

# Shared wrappers, so each input shape compiles once across the tests.
_jit_maxent = jax.jit(maxent_distribution)
_vmap_maxent = jax.vmap(maxent_distribution, in_axes=(None, 0))


def _kl(p, q):
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  pos = p > 0
  return float(np.sum(p[pos] * np.log(p[pos] / q[pos])))


def _entropy(p):
  p = np.asarray(p, np.float64)
  return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("mean_energy", [0.4, 1.2, 3.5])
def test_recovers_boltzmann_distribution(x64, mean_energy):
  energies = np.array([0.0, 0.3, 1.1, 1.7, 2.5, 4.0])

  def mean_at(beta):
    log_w = -beta * energies
    w = np.exp(log_w - log_w.max())
    return w @ energies / w.sum()

  # mean_at decreases in beta; the uniform mean 1.6 lies between the parametrised targets.
  beta = scipy.optimize.brentq(lambda b: mean_at(b) - mean_energy, -50.0, 50.0,
                               xtol=1e-14, rtol=1e-15)
  boltzmann = np.exp(-beta * energies)
  boltzmann /= boltzmann.sum()

  res = maxent_distribution(energies[:, None], np.array([mean_energy]))
  assert isinstance(res, MaxEntResult)
  assert res.p.dtype == jnp.float64 and bool(res.converged)
  np.testing.assert_allclose(res.p, boltzmann, rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(res.multipliers, [-beta], rtol=1e-8)
  assert float(res.max_moment_error) <= 1e-10 * np.ptp(energies)
  # Thermodynamic identity S = beta U + log Z, in nats.
  log_z = math.log(np.sum(np.exp(-beta * energies)))
  np.testing.assert_allclose(info.entropy(res.p), beta * mean_energy + log_z, rtol=1e-10)


def test_brandeis_dice_against_primal_scipy_solution(x64):
  # Independent solution: maximise H(p) directly over the simplex (SLSQP on the primal).
  cons = [{"type": "eq", "fun": lambda p: np.sum(p) - 1.0},
          {"type": "eq", "fun": lambda p: p @ FACES - 4.5}]
  primal = scipy.optimize.minimize(lambda p: np.sum(p * np.log(p)), np.full(6, 1 / 6),
                                   jac=lambda p: np.log(p) + 1.0, method="SLSQP",
                                   constraints=cons,
                                   bounds=[(1e-12, 1.0)] * 6,
                                   options={"ftol": 1e-15, "maxiter": 500})
  assert primal.success
  res = maxent_distribution(DICE, np.array([4.5]))
  assert bool(res.converged)
  np.testing.assert_allclose(res.p, primal.x, atol=2e-6)
  np.testing.assert_allclose(res.p, JAYNES_4_5, atol=6e-6)
  np.testing.assert_allclose(res.p @ FACES, 4.5, rtol=1e-12)
  assert _entropy(res.p) >= -primal.fun - 1e-12
  # p_x / p_{x-1} = e^lambda: a geometric distribution over the faces.
  np.testing.assert_allclose(res.p[1:] / res.p[:-1], np.exp(res.multipliers[0]), rtol=1e-12)
  # Mirror image: mean 2.5 reverses the faces and flips the multiplier.
  mirror = maxent_distribution(DICE, np.array([2.5]))
  np.testing.assert_allclose(mirror.p, res.p[::-1], rtol=1e-10)
  np.testing.assert_allclose(mirror.multipliers, -res.multipliers, rtol=1e-10)


def test_brandeis_dice_float32():
  res = maxent_distribution(DICE, jnp.array([4.5]))
  assert res.p.dtype == jnp.float32 and res.multipliers.dtype == jnp.float32
  assert bool(res.converged)
  assert float(res.max_moment_error) <= 1e-5 * 5
  np.testing.assert_allclose(res.p, JAYNES_4_5, atol=1e-5)
  np.testing.assert_allclose(jnp.sum(res.p), 1.0, rtol=1e-6)


def test_no_constraint_gives_uniform_or_prior():
  res = maxent_distribution(jnp.zeros((4, 0)), jnp.zeros((0,)))
  np.testing.assert_allclose(res.p, 0.25, rtol=1e-7)
  assert bool(res.converged) and int(res.iterations) == 0 and res.multipliers.shape == (0,)
  q = jnp.array([0.1, 0.0, 0.6, 0.3])
  res = maxent_distribution(jnp.zeros((4, 0)), jnp.zeros((0,)), prior=q)
  np.testing.assert_allclose(res.p, q, rtol=1e-6)
  assert float(res.p[1]) == 0.0


def test_targets_at_prior_moments_return_the_prior(x64):
  q = np.random.default_rng(3).dirichlet(np.ones(6))
  res = maxent_distribution(SQUARES, q @ SQUARES, prior=q)
  assert bool(res.converged) and int(res.iterations) <= 1
  np.testing.assert_allclose(res.p, q, rtol=1e-12)
  np.testing.assert_allclose(res.multipliers, 0.0, atol=1e-12)


def test_redundant_and_constant_features_give_the_same_distribution():
  base = maxent_distribution(DICE, jnp.array([4.5]))
  doubled = maxent_distribution(np.stack([FACES, 2 * FACES], 1), jnp.array([4.5, 9.0]))
  constant = maxent_distribution(np.stack([FACES, np.ones(6)], 1), jnp.array([4.5, 1.0]))
  for res in (doubled, constant):
    assert bool(res.converged)
    np.testing.assert_allclose(res.p, base.p, atol=1e-6)
  # The multipliers are not unique for doubled features, but lambda . f is.
  np.testing.assert_allclose(doubled.multipliers @ np.array([1.0, 2.0]), base.multipliers[0],
                             rtol=1e-5)
  np.testing.assert_allclose(constant.multipliers, [base.multipliers[0], 0.0], atol=1e-5)


def test_affine_change_of_feature_units(x64):
  base = maxent_distribution(DICE, np.array([4.5]))
  a, b = 1e3, -1e5
  scaled = maxent_distribution(a * DICE + b, np.array([a * 4.5 + b]))
  assert bool(scaled.converged)
  np.testing.assert_allclose(scaled.p, base.p, rtol=1e-10)
  np.testing.assert_allclose(scaled.multipliers, base.multipliers / a, rtol=1e-10)
  np.testing.assert_allclose(scaled.max_moment_error, 0.0, atol=1e-10 * a * 5)


# --------------------------------------------------------------------------- properties


@given(st.integers(0, 2**32 - 1), st.sampled_from(["uniform", "random", "zeros"]))
def test_matches_moments_and_maximises_entropy(seed, prior_kind):
  rng = np.random.default_rng(seed)
  n = 6
  features = rng.normal(size=(n, 2)) * np.array([1.0, 30.0])
  q = np.full(n, 1 / n) if prior_kind == "uniform" else rng.dirichlet(np.ones(n))
  if prior_kind == "zeros":
    q[rng.integers(n)] = 0.0
    q /= q.sum()
  p0 = rng.dirichlet(np.full(n, 2.0)) * (q > 0)  # moments strictly inside the hull
  p0 /= p0.sum()
  targets = p0 @ features
  with jax.enable_x64(True):
    res = maxent_distribution(features, targets, prior=q)
  p = np.asarray(res.p)
  assert bool(res.converged)
  assert np.all(p[q == 0] == 0) and np.all(p[q > 0] > 0)
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-13)
  pos = q > 0
  # Converged: each moment within tol = 1e-10 of its feature's range on the support.
  assert np.all(np.abs(p @ features - targets) <= 1e-10 * np.ptp(features[pos], axis=0))
  # Exponential family: log(p / q) is affine in the features with slope lambda.
  log_ratio = np.log(p[pos] / q[pos]) - np.asarray(res.multipliers) @ features[pos].T
  np.testing.assert_allclose(log_ratio, log_ratio.mean(), atol=1e-9)
  # Csiszar's Pythagorean identity for the I-projection: D(p0||q) = D(p0||p) + D(p||q).
  np.testing.assert_allclose(_kl(p0, q), _kl(p0, p) + _kl(p, q), rtol=1e-9, atol=1e-12)
  # Every distribution with the same moments and support is at least as far from q:
  # move along the null space of [features^T; 1] restricted to the support.
  constraints = np.vstack([features[pos].T, np.ones(pos.sum())])
  null = np.linalg.svd(constraints)[2][constraints.shape[0]:]
  for _ in range(5):
    v = np.zeros(n)
    v[pos] = rng.normal(size=null.shape[0]) @ null
    neg = v < 0
    step = rng.uniform(0.05, 1.0) * np.min(p[neg] / -v[neg])
    other = np.clip(p + step * v, 0.0, None)
    np.testing.assert_allclose(other @ features, targets, atol=1e-9 * np.abs(features).max())
    # Pythagoras again, now for ``other``: the excess over D(p||q) is D(other||p) >= 0.
    excess = _kl(other, q) - _kl(p, q)
    np.testing.assert_allclose(excess, _kl(other, p), rtol=1e-6, atol=1e-12)
    assert excess >= -1e-13
    if prior_kind == "uniform":
      assert _entropy(other) <= _entropy(p) + 1e-13


# --------------------------------------------------------------------------- feasibility


@pytest.mark.parametrize("features, targets, prior, match", [
    (DICE, [7.0], None, r"targets\[0\] = 7 lies outside \[1, 6\]"),
    (DICE, [0.5], None, r"targets\[0\] = 0.5 lies outside"),
    (DICE, [5.5], [0.2] * 5 + [0.0], r"targets\[0\] = 5.5 lies outside \[1, 5\].*prior mass"),
    (DICE, [6.0], None, r"targets\[0\] = 6 equals the maximum.*boundary"),
    (DICE, [1.0], None, r"targets\[0\] = 1 equals the minimum.*boundary"),
    (np.stack([FACES, 2 * FACES], 1), [3.0, 7.0], None, r"targets is not in the affine hull"),
    (np.stack([FACES, np.ones(6)], 1), [3.0, 2.0], None, r"targets\[1\] = 2 lies outside"),
    # Inside the bounding box [1, 6] x [1, 36] but outside the hull of the parabola:
    # variance 10 - 3.5^2 < 0, and 12.251 - 3.5^2 below 1/4, the least variance of a
    # law on 1..6 with mean 3.5 (caught along a principal axis of the feature vectors).
    (SQUARES, [3.5, 10.0], None, r"targets lies outside the convex hull"),
    (SQUARES, [3.5, 12.251], None, r"targets lies outside the convex hull"),
    # Inside every principal-axis range too; the dual diverges (variances -1, and
    # 6.75 above the largest, 6.25, of a law on 1..6 with mean 3.5).
    (SQUARES, [2.0, 3.0], None, r"targets are infeasible or on the boundary.*diverge"),
    (SQUARES, [3.5, 19.0], None, r"targets are infeasible or on the boundary.*diverge"),
])
def test_infeasible_targets_raise(features, targets, prior, match):
  with pytest.raises(ValueError, match=match):
    maxent_distribution(features, jnp.array(targets), prior=prior)


def test_infeasible_targets_under_jit_are_finite_and_not_converged():
  res = _jit_maxent(DICE, jnp.array([7.0]))
  assert not bool(res.converged)
  assert np.all(np.isfinite(res.p)) and np.all(np.isfinite(res.multipliers))
  np.testing.assert_allclose(jnp.sum(res.p), 1.0, rtol=1e-6)
  assert float(res.p[5]) > 0.99  # concentrated on the face nearest the target
  np.testing.assert_allclose(res.max_moment_error, 1.0, rtol=1e-5)


def test_boundary_target_under_jit_approaches_the_face():
  # Documented: an exact boundary target has no finite multiplier; under jit the
  # iteration stops once the moment error is within tol, with p on the face 6.
  res = _jit_maxent(DICE, jnp.array([6.0]))
  assert bool(res.converged) and np.all(np.isfinite(res.multipliers))
  assert float(res.multipliers[0]) > 5.0
  assert float(res.p[5]) > 1 - 1e-4


def test_oblique_boundary_face_gives_the_face_distribution(x64):
  # (3.5, 12.5) lies on the hull edge between (3, 9) and (4, 16): only the law
  # (1/2, 1/2) on faces 3 and 4 has these moments. Not axis-aligned, so no eager error;
  # the result is that law up to mass ~tol off the face.
  res = maxent_distribution(SQUARES, np.array([3.5, 12.5]), prior=np.full(6, 1 / 6))
  assert bool(res.converged)
  np.testing.assert_allclose(res.p, [0, 0, 0.5, 0.5, 0, 0], atol=1e-8)


def test_not_converged_without_divergence_is_returned():
  res = maxent_distribution(DICE, jnp.array([4.5]), max_iter=1)
  assert not bool(res.converged) and int(res.iterations) == 1
  assert float(res.max_moment_error) > 1e-3
  assert np.all(np.isfinite(res.p))


# --------------------------------------------------------------------------- transforms


def test_jit_equals_eager():
  for target in (1.5, 3.5, 4.5, 5.9):
    eager = maxent_distribution(DICE, jnp.array([target]))
    jitted = _jit_maxent(DICE, jnp.array([target]))
    np.testing.assert_allclose(jitted.p, eager.p, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(jitted.multipliers, eager.multipliers, rtol=1e-6)
    assert bool(jitted.converged) == bool(eager.converged)
    assert int(jitted.iterations) == int(eager.iterations)


def test_vmap_over_targets_equals_loop():
  targets = jnp.array([[1.2], [2.5], [3.5], [4.5], [5.95]])
  batched = _vmap_maxent(DICE, targets)
  assert batched.p.shape == (5, 6) and batched.multipliers.shape == (5, 1)
  for i in range(targets.shape[0]):
    single = maxent_distribution(DICE, targets[i])
    np.testing.assert_allclose(batched.p[i], single.p, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(batched.multipliers[i], single.multipliers, rtol=1e-6, atol=1e-9)
    assert bool(batched.converged[i]) and bool(single.converged)
    # Finished rows are frozen inside the batched loop: same iteration counts.
    assert int(batched.iterations[i]) == int(single.iterations)
  np.testing.assert_allclose(batched.p @ FACES, targets[:, 0], rtol=1e-5)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("features, targets, prior, kwargs, match", [
    (FACES, [4.5], None, {}, r"features must have shape \[n, k\]"),
    (np.zeros((0, 1)), [0.0], None, {}, "features has no states"),
    (DICE, [4.5, 1.0], None, {}, r"targets must have shape \(1,\)"),
    (DICE, [[4.5]], None, {}, r"targets must have shape \(1,\)"),
    (DICE, [4.5], np.full(5, 0.2), {}, r"prior must have shape \(6,\)"),
    (DICE, [4.5], [0.5, 0.5, 0.5, -0.5, 0.0, 0.0], {}, "prior has negative entries"),
    (DICE, [4.5], np.full(6, 0.2), {}, "prior must sum to 1"),
    (DICE, [4.5], [np.nan] + [0.2] * 5, {}, "prior contains NaN"),
    (np.where(FACES == 3, np.nan, FACES)[:, None], [4.5], None, {}, "features contains NaN"),
    (DICE, [np.inf], None, {}, "targets contains NaN or infinite"),
    (DICE, [4.5], None, {"max_iter": -1}, "max_iter"),
    (DICE, [4.5], None, {"max_iter": 2.5}, "max_iter"),
    (DICE, [4.5], None, {"tol": 0.0}, "tol"),
    (DICE, [4.5], None, {"ridge": -1.0}, "ridge"),
])
def test_invalid_inputs_raise(features, targets, prior, kwargs, match):
  with pytest.raises(ValueError, match=match):
    maxent_distribution(features, jnp.array(targets), prior=prior, **kwargs)


def test_non_numeric_input_raises_type_error():
  with pytest.raises(TypeError, match="targets"):
    maxent_distribution(DICE, "4.5")
  with pytest.raises(TypeError, match="features"):
    maxent_distribution(None, [4.5])
