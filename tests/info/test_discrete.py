"""Discrete information measures against closed forms, scipy and dit."""

import math

import dit
import dit.multivariate
import dit.other
import dit.shannon
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
from hypothesis import given

from entropylab import info
from tests.info.conftest import random_joint, simplex

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- closed forms


def test_fair_coin_is_one_bit(variant):
  h = variant(lambda p: info.entropy(p, base=2))(jnp.array([0.5, 0.5]))
  np.testing.assert_allclose(h, 1.0, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000])
def test_uniform_entropy_is_log_n(variant, n):
  h = variant(info.entropy)(jnp.full((n,), 1.0 / n))
  np.testing.assert_allclose(h, math.log(n), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.999, 1.0, 2.0, 7.5, math.inf])
@pytest.mark.parametrize("n", [2, 5, 64])
def test_renyi_of_uniform_is_log_n_for_every_order(variant, alpha, n):
  h = variant(lambda p: info.renyi_entropy(p, alpha))(jnp.full((n,), 1.0 / n))
  np.testing.assert_allclose(h, math.log(n), rtol=1e-5)


def test_kl_u2_u3_is_log2_of_1_5_bits(variant):
  p = jnp.array([0.5, 0.5, 0.0])
  q = jnp.full((3,), 1.0 / 3.0)
  kl = variant(lambda a, b: info.kl_divergence(a, b, base=2))(p, q)
  np.testing.assert_allclose(kl, math.log2(1.5), rtol=1e-6)


def test_kl_with_zero_q_is_inf_not_nan(variant):
  p = jnp.array([0.5, 0.5])
  q = jnp.array([1.0, 0.0])
  kl = variant(info.kl_divergence)(p, q)
  ce = variant(info.cross_entropy)(p, q)
  assert np.isposinf(kl) and np.isposinf(ce)
  # and the reverse direction is finite: q's support is inside p's.
  np.testing.assert_allclose(variant(info.kl_divergence)(q, p), LN2, rtol=1e-6)


def test_renyi_limits_and_hartley(x64):
  p = jnp.array([0.5, 0.25, 0.125, 0.125, 0.0])
  shannon = 1.75 * LN2
  np.testing.assert_allclose(info.renyi_entropy(p, 0.0), math.log(4), rtol=1e-12)
  np.testing.assert_allclose(info.renyi_entropy(p, 1.0), shannon, rtol=1e-12)
  np.testing.assert_allclose(info.renyi_entropy(p, 1.0 + 1e-7), shannon, rtol=1e-6)
  np.testing.assert_allclose(info.renyi_entropy(p, math.inf), LN2, rtol=1e-12)
  # collision entropy: -log sum p^2
  np.testing.assert_allclose(info.renyi_entropy(p, 2.0), -math.log(0.25 + 1 / 16 + 2 / 64),
                             rtol=1e-12)


@given(simplex())
def test_renyi_non_increasing_in_order(p):
  alphas = jnp.array([0.0, 0.5, 1.0, 1.5, 2.0, 4.0, jnp.inf])
  with jax.enable_x64(True):
    h = info.renyi_entropy(jnp.broadcast_to(jnp.asarray(p), (7, p.size)), alphas)
  assert np.all(np.diff(np.asarray(h)) <= 1e-9)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0, 3.3])
def test_tsallis_pseudo_additivity(x64, q):
  rng = np.random.default_rng(0)
  a = rng.dirichlet(np.ones(4))
  b = rng.dirichlet(np.ones(6))
  ab = np.outer(a, b).ravel()
  sa, sb, sab = (info.tsallis_entropy(jnp.asarray(v), q) for v in (a, b, ab))
  np.testing.assert_allclose(sab, sa + sb + (1 - q) * sa * sb, rtol=1e-10)


def test_tsallis_q1_is_shannon_and_q2_closed_form(x64):
  p = jnp.array([0.7, 0.2, 0.1])
  np.testing.assert_allclose(info.tsallis_entropy(p, 1.0), info.entropy(p), rtol=1e-12)
  np.testing.assert_allclose(info.tsallis_entropy(p, 2.0), 1 - (0.49 + 0.04 + 0.01), rtol=1e-12)


def test_js_divergence_bounds_and_closed_form(x64):
  p = jnp.array([1.0, 0.0])
  q = jnp.array([0.0, 1.0])
  np.testing.assert_allclose(info.js_divergence(p, q), LN2, rtol=1e-12)
  np.testing.assert_allclose(info.js_divergence(p, q, base=2), 1.0, rtol=1e-12)
  np.testing.assert_allclose(info.js_divergence(p, p), 0.0, atol=1e-15)
  # weighted: JS_w = H(w1 p + w2 q) - w1 H(p) - w2 H(q) = H(w) for disjoint supports.
  w = jnp.array([0.2, 0.8])
  np.testing.assert_allclose(info.js_divergence(p, q, weights=w), info.entropy(w), rtol=1e-12)


def test_symmetric_cross_entropy(x64):
  p = jnp.array([0.6, 0.3, 0.1])
  q = jnp.array([0.2, 0.5, 0.3])
  hpq = -np.sum(np.asarray(p) * np.log(np.asarray(q)))
  hqp = -np.sum(np.asarray(q) * np.log(np.asarray(p)))
  np.testing.assert_allclose(info.symmetric_cross_entropy(p, q), 0.5 * (hpq + hqp), rtol=1e-12)
  np.testing.assert_allclose(info.symmetric_cross_entropy(p, q, alpha=0.25),
                             0.75 * hpq + 0.25 * hqp, rtol=1e-12)
  np.testing.assert_allclose(info.symmetric_cross_entropy(p, q), info.symmetric_cross_entropy(q, p),
                             rtol=1e-12)


def test_joint_measures_closed_forms(x64):
  # X uniform on 4, Y = X mod 2: I(X;Y) = H(Y) = log 2, H(Y|X) = 0, H(X|Y) = log 2.
  pxy = np.zeros((4, 2))
  for x in range(4):
    pxy[x, x % 2] = 0.25
  pxy = jnp.asarray(pxy)
  np.testing.assert_allclose(info.mutual_information(pxy), LN2, rtol=1e-12)
  np.testing.assert_allclose(info.conditional_entropy(pxy), 0.0, atol=1e-15)
  np.testing.assert_allclose(info.conditional_entropy(pxy.T), LN2, rtol=1e-12)
  np.testing.assert_allclose(info.joint_entropy(pxy), math.log(4), rtol=1e-12)
  # independent: I = 0
  ind = jnp.outer(jnp.array([0.3, 0.7]), jnp.array([0.1, 0.2, 0.7]))
  np.testing.assert_allclose(info.mutual_information(ind), 0.0, atol=1e-15)
  # XOR: Z = X xor Y with X, Y fair and independent: I(X;Y) = 0, I(X;Y|Z) = 1 bit.
  pxyz = np.zeros((2, 2, 2))
  for x in range(2):
    for y in range(2):
      pxyz[x, y, x ^ y] = 0.25
  np.testing.assert_allclose(info.conditional_mutual_information(jnp.asarray(pxyz), base=2), 1.0,
                             rtol=1e-12)


# --------------------------------------------------------------------------- references


@given(simplex())
def test_entropy_matches_scipy(p):
  for base in (None, 2.0):
    ours = info.entropy(jnp.asarray(p, jnp.float32), base=base)
    ref = scipy.stats.entropy(p, base=base)
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=2e-6)


@given(simplex(zeros=True), simplex(zeros=False))
def test_kl_matches_scipy(p, q):
  n = min(p.size, q.size)
  p, q = p[:n] / p[:n].sum(), q[:n] / q[:n].sum()
  if not np.isfinite(p).all() or p.sum() == 0:
    return
  with jax.enable_x64(True):
    ours = info.kl_divergence(jnp.asarray(p), jnp.asarray(q), base=2)
    np.testing.assert_allclose(ours, scipy.stats.entropy(p, q, base=2), rtol=1e-10, atol=1e-12)
    js = info.js_divergence(jnp.asarray(p), jnp.asarray(q))
    np.testing.assert_allclose(js, scipy.spatial.distance.jensenshannon(p, q) ** 2,
                               rtol=1e-8, atol=1e-12)


@given(simplex(n_min=2, n_max=6))
def test_renyi_tsallis_match_dit(p):
  d = dit.Distribution([str(i) for i in range(p.size)], list(p))
  with jax.enable_x64(True):
    for order in (0.5, 2.0, 3.0):
      ours = info.renyi_entropy(jnp.asarray(p), order, base=2)
      np.testing.assert_allclose(ours, dit.other.renyi_entropy(d, order), rtol=1e-7, atol=1e-9)
      ours_t = info.tsallis_entropy(jnp.asarray(p), order)
      np.testing.assert_allclose(ours_t, dit.other.tsallis_entropy(d, order), rtol=1e-7, atol=1e-9)


def _dit_joint(pmf):
  outcomes, probs = [], []
  for idx in np.ndindex(*pmf.shape):
    if pmf[idx] > 0:
      outcomes.append(tuple(idx))
      probs.append(pmf[idx])
  return dit.Distribution(outcomes, probs)


@pytest.mark.parametrize("seed", range(6))
def test_joint_measures_match_dit(x64, seed):
  rng = np.random.default_rng(seed)
  pxy = random_joint(rng, (3, 4))
  d = _dit_joint(pxy)
  j = jnp.asarray(pxy)
  np.testing.assert_allclose(info.joint_entropy(j, base=2), dit.shannon.entropy(d), rtol=1e-10)
  np.testing.assert_allclose(info.conditional_entropy(j, base=2),
                             dit.shannon.conditional_entropy(d, [1], [0]), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(info.mutual_information(j, base=2),
                             dit.shannon.mutual_information(d, [0], [1]), rtol=1e-9, atol=1e-12)
  pxyz = random_joint(rng, (2, 3, 3))
  d3 = _dit_joint(pxyz)
  np.testing.assert_allclose(info.conditional_mutual_information(jnp.asarray(pxyz), base=2),
                             dit.multivariate.coinformation(d3, [[0], [1]], [2]),
                             rtol=1e-9, atol=1e-12)


@given(simplex(n_min=2, n_max=5), simplex(n_min=2, n_max=5))
def test_mutual_information_bounds_and_chain_rule(px, py):
  rng = np.random.default_rng(int(px.size * 10 + py.size))
  pxy = 0.5 * np.outer(px, py) + 0.5 * random_joint(rng, (px.size, py.size), zeros_frac=0.0)
  with jax.enable_x64(True):
    j = jnp.asarray(pxy)
    mi = info.mutual_information(j)
    hx = info.entropy(j.sum(1))
    hy = info.entropy(j.sum(0))
    assert 0.0 <= mi <= min(hx, hy) + 1e-12
    np.testing.assert_allclose(info.joint_entropy(j), hx + info.conditional_entropy(j), rtol=1e-10)
    np.testing.assert_allclose(mi, hx + hy - info.joint_entropy(j), rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------- logits


def test_entropy_from_logits_matches_softmax_entropy(variant, x64):
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 7, 50)) * 4.0
  p = scipy.special.softmax(logits, axis=-1)
  ref = -np.sum(p * np.log(p), axis=-1)
  ours = variant(info.entropy_from_logits)(jnp.asarray(logits))
  np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-15)
  # another axis
  ours_ax = variant(lambda l: info.entropy_from_logits(l, axis=1))(jnp.asarray(logits))
  p1 = scipy.special.softmax(logits, axis=1)
  np.testing.assert_allclose(ours_ax, -np.sum(p1 * np.log(p1), axis=1), rtol=1e-10, atol=1e-15)


def test_entropy_from_logits_float32_accuracy():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 32768)) * 3.0
  p = scipy.special.softmax(logits, axis=-1)
  ref = -np.sum(p * np.log(p), axis=-1)
  ours = info.entropy_from_logits(jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(ours, ref, rtol=2e-6)


def test_entropy_from_logits_extreme_and_masked_values(variant):
  logits = jnp.array([[1e4, -1e4, 0.0], [3e4, 3e4, -jnp.inf], [-5e3, -5e3, -5e3]])
  h = variant(info.entropy_from_logits)(logits)
  np.testing.assert_allclose(h, [0.0, LN2, math.log(3)], atol=1e-6)
  g = jax.grad(lambda l: info.entropy_from_logits(l).sum())(logits)
  assert np.all(np.isfinite(np.asarray(g)))


def test_entropy_from_logits_gradient(x64):
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(4, 9)) * 2)

  def naive(l):
    return -jnp.sum(jax.nn.softmax(l) * jax.nn.log_softmax(l), axis=-1).sum()

  g = jax.grad(lambda l: info.entropy_from_logits(l).sum())(logits)
  np.testing.assert_allclose(g, jax.grad(naive)(logits), rtol=1e-10, atol=1e-12)
  # second order works through the custom JVP's primal-output rule too
  hvp = jax.jvp(jax.grad(lambda l: info.entropy_from_logits(l).sum()), (logits,), (logits,))[1]
  hvp_ref = jax.jvp(jax.grad(naive), (logits,), (logits,))[1]
  np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- transforms


def test_gradients_finite_for_positive_inputs_and_zeros():
  p = jnp.array([0.2, 0.3, 0.5])
  q = jnp.array([0.1, 0.6, 0.3])
  pz = jnp.array([0.0, 0.4, 0.6])
  j = jnp.array([[0.1, 0.2], [0.3, 0.4]])
  j3 = jnp.full((2, 2, 2), 0.125)
  fns = [
      lambda a: info.entropy(a),
      lambda a: info.kl_divergence(a, q),
      lambda a: info.kl_divergence(q, a),
      lambda a: info.cross_entropy(a, q),
      lambda a: info.js_divergence(a, q),
      lambda a: info.symmetric_cross_entropy(a, q),
      lambda a: info.renyi_entropy(a, 0.5),
      lambda a: info.renyi_entropy(a, 2.0),
      lambda a: info.renyi_entropy(a, 1.0),
      lambda a: info.tsallis_entropy(a, 0.5),
  ]
  for fn in fns:
    for arg in (p, pz):
      if not np.isfinite(fn(arg)):
        continue  # KL(q || pz) and H(q, pz) are +inf there: no finite gradient exists
      g = jax.grad(fn)(arg)
      assert np.all(np.isfinite(np.asarray(g))), fn
  for fn in (info.joint_entropy, info.conditional_entropy, info.mutual_information):
    assert np.all(np.isfinite(np.asarray(jax.grad(fn)(j))))
  assert np.all(np.isfinite(np.asarray(jax.grad(info.conditional_mutual_information)(j3))))


def test_vmap_and_batch_agree_with_loop():
  rng = np.random.default_rng(4)
  p = jnp.asarray(rng.dirichlet(np.ones(6), size=8), jnp.float32)
  q = jnp.asarray(rng.dirichlet(np.ones(6), size=8), jnp.float32)
  for fn in (info.entropy, lambda a: info.renyi_entropy(a, 2.0), lambda a: info.tsallis_entropy(a, 2.0)):
    loop = np.array([fn(p[i]) for i in range(8)])
    np.testing.assert_allclose(jax.vmap(fn)(p), loop, rtol=1e-6)
    np.testing.assert_allclose(fn(p), loop, rtol=1e-6)
  for fn in (info.kl_divergence, info.js_divergence, info.cross_entropy):
    loop = np.array([fn(p[i], q[i]) for i in range(8)])
    np.testing.assert_allclose(jax.vmap(fn)(p, q), loop, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(fn)(p, q), loop, rtol=1e-6)
  pxy = jnp.asarray(rng.dirichlet(np.ones(12), size=8).reshape(8, 3, 4), jnp.float32)
  loop = np.array([info.mutual_information(pxy[i]) for i in range(8)])
  np.testing.assert_allclose(jax.vmap(info.mutual_information)(pxy), loop, rtol=1e-5, atol=1e-7)


def test_float64_path_resolves_tiny_masses(x64):
  eps = 1e-12
  p = jnp.array([1 - eps, eps])
  p0 = float(p[0])  # 1 - p0 is exact in float64 (Sterbenz), though not exactly eps
  ref = -p0 * math.log1p(-(1.0 - p0)) - eps * math.log(eps)
  h = info.entropy(p)
  assert h.dtype == jnp.float64
  np.testing.assert_allclose(h, ref, rtol=1e-9)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: info.entropy(jnp.array([0.5, -0.1, 0.6])), "p has negative"),
        (lambda: info.entropy(jnp.array([0.5, 0.6])), "p must sum to 1"),
        (lambda: info.entropy(jnp.array([0.5, jnp.nan])), "p contains NaN"),
        (lambda: info.entropy(jnp.array([0.5, 0.5]), base=1.0), "base"),
        (lambda: info.entropy(jnp.array([0.5, 0.5]), axis=3), "axis"),
        (lambda: info.kl_divergence(jnp.array([0.5, 0.5]), jnp.array([0.2, 0.3, 0.5])), "same shape"),
        (lambda: info.kl_divergence(jnp.array([0.5, 0.5]), jnp.array([0.2, 0.3])), "q must sum"),
        (lambda: info.renyi_entropy(jnp.array([0.5, 0.5]), -1.0), "alpha must be >= 0"),
        (lambda: info.tsallis_entropy(jnp.array([0.5, 0.5]), -0.5), "q must be >= 0"),
        (lambda: info.js_divergence(jnp.array([0.5, 0.5]), jnp.array([0.5, 0.5]),
                                    weights=jnp.array([0.5, 0.6])), "weights must sum"),
        (lambda: info.mutual_information(jnp.array([0.5, 0.5])), "pxy must have at least 2"),
        (lambda: info.conditional_mutual_information(jnp.ones((2, 2, 2))), "pxyz must sum"),
        (lambda: info.entropy_from_logits(jnp.array([0.0, jnp.nan])), "logits contain NaN"),
        (lambda: info.entropy_from_logits(jnp.array([-jnp.inf, -jnp.inf])), "all -inf"),
        (lambda: info.symmetric_cross_entropy(jnp.array([0.5, 0.5]), jnp.array([0.5, 0.5]),
                                              alpha=1.5), "alpha must lie"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_non_numeric_input_raises_type_error():
  with pytest.raises(TypeError, match="p must be"):
    info.entropy("abc")


def test_tolerance_is_stated_and_applied():
  # float32 accepts a sum off by 5e-5, rejects 5e-3.
  info.entropy(jnp.array([0.5, 0.50005], jnp.float32))
  with pytest.raises(ValueError, match="within 0.0001"):
    info.entropy(jnp.array([0.5, 0.505], jnp.float32))


@pytest.mark.parametrize("impl", ["_logits_entropy_one_pass", "_logits_entropy_two_pass"])
def test_every_logits_kernel_is_accurate(impl):
  # The accelerator kernels are chosen by platform; check each one here on the CPU.
  from entropylab.info import discrete
  fn = jax.jit(getattr(discrete, impl))
  rng = np.random.default_rng(5)
  cases = {
      "normal": rng.normal(size=(6, 4096)) * 3.0,
      "peaked": np.concatenate([np.full((2, 1), 30.0), rng.normal(size=(2, 999))], axis=1),
      "huge": np.array([[1e4, -1e4, 0.0, 5.0], [60.0, 59.0, 0.0, -3.0]]),
      "masked": np.array([[0.0, -np.inf, 0.0, -np.inf], [-49.0, -np.inf, -49.0, -49.0]]),
  }
  for name, logits in cases.items():
    with np.errstate(invalid="ignore"):
      p = scipy.special.softmax(logits, axis=-1)
      ref = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    ours = np.asarray(fn(jnp.asarray(logits, jnp.float32)))
    # float32: absolute error ~ eps * (|max| + H)
    np.testing.assert_allclose(ours, ref, atol=2e-5 * (1 + np.abs(logits[np.isfinite(logits)]).max() / 50),
                               err_msg=f"{impl} on {name}")
  bf = fn(jnp.asarray(cases["normal"], jnp.bfloat16))
  assert bf.dtype == jnp.bfloat16
