"""Confidence gain and CK-PLUG (Bi et al. 2025) against closed forms and a NumPy loop."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from entropylab.info.ckplug import ckplug_logits, confidence_gain

NEG_INF = -np.inf
# Most tests share these shapes, so each compiled kernel is reused across tests.
SHAPE64 = (3, 5, 24)
SHAPE32 = (8, 24)


@functools.lru_cache(maxsize=None)
def _ck(k, adaptive=False):
  """One function object per (top_k, adaptive): ``jax.jit`` caches it across tests."""
  if adaptive:
    return lambda a, b, e: ckplug_logits(a, b, None, epsilon=e, top_k=k, adaptive=True)
  return lambda a, b, w, e: ckplug_logits(a, b, w, epsilon=e, top_k=k)


# --------------------------------------------------------------------------- references


def _random_logits(rng, shape, mask_frac=0.0):
  """Normal logits with a random temperature per row, so entropies (and CG) vary."""
  scale = rng.uniform(0.2, 4.0, size=shape[:-1] + (1,))
  x = rng.normal(size=shape) * scale
  if mask_frac:
    x[rng.random(shape) < mask_frac] = NEG_INF
    x[..., 0] = np.where(np.all(np.isinf(x), axis=-1), 0.0, x[..., 0])
  return x


def _entropy(logits, axis=-1, base=None):
  return scipy.stats.entropy(scipy.special.softmax(logits, axis=axis), axis=axis, base=base)


def _top_k_set(logits, k):
  """Indices whose logit ties or beats the k-th largest, finite only (slow and plain)."""
  kth = sorted(logits.tolist(), reverse=True)[k - 1]
  return {i for i, v in enumerate(logits) if v >= kth and v > NEG_INF}


def _reference(lp, lc, alpha, epsilon, k, adaptive=False):
  """CK-PLUG position by position in float64 NumPy; returns (log-probs, conflict mask)."""
  lp = np.asarray(lp, np.float64)
  lc = np.asarray(lc, np.float64)
  batch = lp.shape[:-1]
  alpha_b = None if adaptive else np.broadcast_to(np.asarray(alpha, np.float64), batch)
  eps_b = np.broadcast_to(np.asarray(epsilon, np.float64), batch)
  out = np.empty_like(lp)
  conflict = np.zeros(batch, bool)
  for idx in np.ndindex(*batch):
    a, c = lp[idx], lc[idx]
    h_para, h_cont = _entropy(a), _entropy(c)
    log_ctx = scipy.special.log_softmax(c)
    head = (_top_k_set(a, k) | _top_k_set(c, k)) & set(
        np.flatnonzero(np.isfinite(a) & np.isfinite(c)).tolist())
    if not (h_para - h_cont < eps_b[idx] * abs(h_cont)) or not head:
      out[idx] = log_ctx
      continue
    conflict[idx] = True
    w = h_cont / (h_para + h_cont) if adaptive else alpha_b[idx]
    log_para = scipy.special.log_softmax(a)
    z = np.full(a.shape, NEG_INF)
    for i in head:
      z[i] = w * log_para[i] + (1 - w) * (log_ctx[i] - log_para[i])
    out[idx] = z - scipy.special.logsumexp(z)
  return out, conflict


def _assert_same_log_probs(ours, ref, rtol=1e-10, atol=1e-12):
  ours = np.asarray(ours, np.float64)
  np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
  finite = np.isfinite(ref)
  np.testing.assert_allclose(ours[finite], ref[finite], rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- closed forms


def test_confidence_gain_of_known_distributions(variant):
  p = jnp.log(jnp.array([0.5, 0.5, 0.0, 0.0]))  # 1 bit
  q = jnp.log(jnp.full((4,), 0.25))  # 2 bits
  np.testing.assert_allclose(variant(confidence_gain)(q, p), math.log(2), rtol=1e-6)
  np.testing.assert_allclose(confidence_gain(p, q, base=2), -1.0, rtol=1e-6)


def test_hand_computed_modulation(variant):
  # p_para = (.6, .25, .1, .05), p_ctx = (.1, .2, .3, .4): H_para = 1.0332 < H_cont = 1.2799
  # nats, so CG < 0 and eq. 7 (epsilon = 0) fires. top_k = 1: head = {0} u {3}.
  # alpha = 1: p_para on the head = (.6, .05)/.65; alpha = 0: p_ctx/p_para = (1/6, 8)
  # normalised; alpha = 1/2: sqrt(p_ctx) = (sqrt .1, sqrt .4), i.e. (1/3, 2/3).
  lp = jnp.log(jnp.array([0.6, 0.25, 0.1, 0.05]))
  lc = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  h_para = -(0.6 * math.log(0.6) + 0.25 * math.log(0.25) + 0.1 * math.log(0.1)
             + 0.05 * math.log(0.05))
  h_cont = -sum(v * math.log(v) for v in (0.1, 0.2, 0.3, 0.4))
  np.testing.assert_allclose(variant(confidence_gain)(lp, lc), h_para - h_cont, rtol=1e-5)
  expected = {
      1.0: [12 / 13, 0.0, 0.0, 1 / 13],
      0.0: [1 / 49, 0.0, 0.0, 48 / 49],
      0.5: [1 / 3, 0.0, 0.0, 2 / 3],
  }
  fn = variant(_ck(1))
  for alpha, probs in expected.items():
    out = fn(lp, lc, alpha, 0.0)
    np.testing.assert_allclose(np.exp(out), probs, rtol=1e-5, atol=1e-7)
    assert np.isneginf(out[1]) and np.isneginf(out[2])
  # A threshold below CG / H_cont = -0.193 leaves p_ctx untouched.
  np.testing.assert_allclose(np.exp(fn(lp, lc, 0.5, -0.2)), [0.1, 0.2, 0.3, 0.4], rtol=1e-5)
  np.testing.assert_allclose(np.exp(fn(lp, lc, 0.5, -0.18)), [1 / 3, 0.0, 0.0, 2 / 3], rtol=1e-5,
                             atol=1e-7)


def test_ties_with_the_kth_token_join_the_head(variant):
  # p_ctx has a tie for first place, so top_k = 1 keeps both; alpha = 1/2 -> sqrt(p_ctx).
  lp = jnp.log(jnp.array([0.7, 0.1, 0.1, 0.1]))
  lc = jnp.log(jnp.array([0.3, 0.3, 0.2, 0.2]))
  fn = variant(_ck(1))
  np.testing.assert_allclose(np.exp(fn(lp, lc, 0.5, 0.0)), [0.5, 0.5, 0.0, 0.0], atol=1e-6)
  # alpha = 0 reverses the parametric preference: (.3/.7, .3/.1) -> (1/8, 7/8).
  np.testing.assert_allclose(np.exp(fn(lp, lc, 0.0, 0.0)), [1 / 8, 7 / 8, 0.0, 0.0], rtol=1e-5,
                             atol=1e-7)


def test_epsilon_one_is_the_released_code_rule(variant):
  # p_para is sharper than p_ctx by less than H_cont: CG > 0 but CG < H_cont, i.e. the
  # code's CG + |H_cont| * (-1) < 0 holds and eq. 7 does not.
  lp = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
  lc = jnp.log(jnp.array([0.6, 0.3, 0.05, 0.05]))
  cg = float(confidence_gain(lp, lc))
  assert 0 < cg < scipy.stats.entropy([0.6, 0.3, 0.05, 0.05])
  fn = variant(_ck(1))
  np.testing.assert_allclose(np.exp(fn(lp, lc, 1.0, 0.0)), [0.6, 0.3, 0.05, 0.05], rtol=1e-5)
  np.testing.assert_allclose(np.exp(fn(lp, lc, 1.0, 1.0)), [1.0, 0.0, 0.0, 0.0], atol=1e-7)


@pytest.mark.parametrize("epsilon", [-1.0, -2.0, -3.0])
def test_appendix_thresholds_read_literally_never_fire(epsilon):
  # Eq. 11 with the appendix's epsilon <= -1 needs H_para < (1 + eps) H_cont <= 0.
  rng = np.random.default_rng(6)
  lp = _random_logits(rng, SHAPE32)
  lp[:3] = 0.1 * rng.normal(size=(3, SHAPE32[1]))
  lp[:3, 0] = 60.0  # near one-hot parametric predictions: H_para ~ 0, CG ~ -H_cont
  lp = jnp.asarray(lp, jnp.float32)
  lc = jnp.asarray(_random_logits(rng, SHAPE32), jnp.float32)
  out = ckplug_logits(lp, lc, 0.5, epsilon=epsilon, top_k=3)
  np.testing.assert_array_equal(out, jax.nn.log_softmax(lc, axis=-1))
  # while eq. 7 (epsilon = 0) does modulate those positions
  out0 = ckplug_logits(lp, lc, 0.5, epsilon=0.0, top_k=3)
  assert np.all(np.isneginf(np.asarray(out0[:3])).sum(-1) >= SHAPE32[1] - 6)


# --------------------------------------------------------------------------- references


def test_confidence_gain_matches_scipy(variant, x64):
  rng = np.random.default_rng(0)
  lp = _random_logits(rng, SHAPE64, mask_frac=0.2)
  lc = _random_logits(rng, SHAPE64, mask_frac=0.2)
  ours = variant(confidence_gain)(jnp.asarray(lp), jnp.asarray(lc))
  np.testing.assert_allclose(ours, _entropy(lp) - _entropy(lc), rtol=1e-10, atol=1e-12)
  bits = confidence_gain(jnp.asarray(lp), jnp.asarray(lc), base=2)
  np.testing.assert_allclose(bits, _entropy(lp, base=2) - _entropy(lc, base=2), rtol=1e-10,
                             atol=1e-12)
  # the vocabulary on axis 1 (no masks there: a column may be all -inf)
  lp1, lc1 = np.nan_to_num(lp, neginf=-5.0), np.nan_to_num(lc, neginf=-5.0)
  ours = confidence_gain(jnp.asarray(lp1), jnp.asarray(lc1), axis=1)
  np.testing.assert_allclose(ours, _entropy(lp1, 1) - _entropy(lc1, 1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "alpha, epsilon, top_k, adaptive",
    [(0.3, 0.0, 3, False), (0.0, 1.0, 3, False), (1.0, -0.3, 3, False), (None, 0.0, 3, True),
     (None, 1.0, 3, True)],
)
def test_matches_numpy_reference(variant, x64, alpha, epsilon, top_k, adaptive):
  rng = np.random.default_rng(1)
  lp = _random_logits(rng, SHAPE64, mask_frac=0.1)
  lc = _random_logits(rng, SHAPE64, mask_frac=0.1)
  args = (jnp.asarray(lp), jnp.asarray(lc)) + ((epsilon,) if adaptive else (alpha, epsilon))
  ours = variant(_ck(top_k, adaptive))(*args)
  ref, conflict = _reference(lp, lc, alpha, epsilon, top_k, adaptive)
  assert 0 < conflict.sum() < conflict.size  # both branches are exercised
  _assert_same_log_probs(ours, ref)


def test_float32_matches_float64_reference():
  rng = np.random.default_rng(2)
  lp = _random_logits(rng, SHAPE32)
  lc = _random_logits(rng, SHAPE32)
  ours = _ck(3)(jnp.asarray(lp, jnp.float32), jnp.asarray(lc, jnp.float32), 0.4, 0.0)
  assert ours.dtype == jnp.float32
  ref, conflict = _reference(lp, lc, 0.4, 0.0, 3)
  assert 0 < conflict.sum() < conflict.size
  _assert_same_log_probs(ours, ref, rtol=2e-5, atol=2e-5)


def test_alpha_limits_on_the_head(x64):
  # alpha = 1: p_para renormalised on the head. alpha = 0: p_ctx / p_para on the head.
  rng = np.random.default_rng(3)
  lp = _random_logits(rng, SHAPE64)
  lc = _random_logits(rng, SHAPE64)
  one = np.asarray(ckplug_logits(jnp.asarray(lp), jnp.asarray(lc), 1.0, epsilon=0.0, top_k=3))
  zero = np.asarray(ckplug_logits(jnp.asarray(lp), jnp.asarray(lc), 0.0, epsilon=0.0, top_k=3))
  conflict = _entropy(lp) < _entropy(lc)
  assert 0 < conflict.sum() < conflict.size
  for idx in zip(*np.nonzero(conflict)):
    head = sorted(_top_k_set(lp[idx], 3) | _top_k_set(lc[idx], 3))
    outside = np.setdiff1d(np.arange(lp.shape[-1]), head)
    pp, pc = scipy.special.softmax(lp[idx]), scipy.special.softmax(lc[idx])
    np.testing.assert_allclose(np.exp(one[idx][head]), pp[head] / pp[head].sum(), rtol=1e-10)
    ratio = pc[head] / pp[head]
    np.testing.assert_allclose(np.exp(zero[idx][head]), ratio / ratio.sum(), rtol=1e-10)
    assert np.all(np.isneginf(one[idx][outside])) and np.all(np.isneginf(zero[idx][outside]))
    assert np.argmax(one[idx]) == np.argmax(lp[idx])  # alpha = 1 keeps the parametric favourite


def test_adaptive_alpha_is_the_entropy_ratio(x64):
  rng = np.random.default_rng(7)
  lp = _random_logits(rng, SHAPE64, mask_frac=0.1)
  lc = _random_logits(rng, SHAPE64, mask_frac=0.1)
  alpha = _entropy(lc) / (_entropy(lp) + _entropy(lc))  # eq. 10
  lp, lc = jnp.asarray(lp), jnp.asarray(lc)
  explicit = _ck(3)(lp, lc, jnp.asarray(alpha), 0.5)
  adaptive = _ck(3, True)(lp, lc, 0.5)
  _assert_same_log_probs(adaptive, np.asarray(explicit))
  ref, conflict = _reference(lp, lc, alpha, 0.5, 3)
  assert 0 < conflict.sum() < conflict.size
  _assert_same_log_probs(explicit, ref)
  # alpha is ignored in adaptive mode, even outside [0, 1]
  ignored = ckplug_logits(lp, lc, 7.0, epsilon=0.5, top_k=3, adaptive=True)
  _assert_same_log_probs(ignored, np.asarray(adaptive))


# --------------------------------------------------------------------------- properties


def test_outputs_are_normalised_and_never_nan():
  rng = np.random.default_rng(4)
  lp = jnp.asarray(_random_logits(rng, SHAPE32, mask_frac=0.3), jnp.float32)
  lc = jnp.asarray(_random_logits(rng, SHAPE32, mask_frac=0.3), jnp.float32)
  fixed, adaptive = _ck(3), _ck(3, True)
  for out in (fixed(lp, lc, 0.0, 1.0), fixed(lp, lc, 0.7, 0.0), adaptive(lp, lc, 0.5)):
    assert not np.any(np.isnan(np.asarray(out)))
    assert not np.any(np.isposinf(np.asarray(out)))
    np.testing.assert_allclose(jax.nn.logsumexp(out, axis=-1), 0.0, atol=2e-6)


def test_non_conflict_positions_equal_log_softmax_ctx():
  rng = np.random.default_rng(5)
  lp = jnp.asarray(_random_logits(rng, SHAPE32, mask_frac=0.1), jnp.float32)
  lc = jnp.asarray(_random_logits(rng, SHAPE32, mask_frac=0.1), jnp.float32)
  out = np.asarray(_ck(3)(lp, lc, 0.5, 0.0))
  ctx = np.asarray(jax.nn.log_softmax(lc, axis=-1))
  keep = np.asarray(confidence_gain(lp, lc)) >= 0.0
  assert 0 < keep.sum() < keep.size
  np.testing.assert_allclose(out[keep], ctx[keep], rtol=1e-6, atol=1e-6)
  # and every conflict position differs from p_ctx (its head drops most of the vocabulary)
  lc = np.asarray(lc)
  assert np.all(np.isneginf(out[~keep]).sum(-1) > np.isneginf(lc[~keep]).sum(-1))


def test_masked_tokens(variant):
  # Row 0: token 1 masked in p_para, token 2 masked in p_ctx; both leave the head.
  # Row 1: disjoint supports (p_para one-hot on 0, p_ctx on {2, 3, 4}): CG = -H_cont < 0
  # but no token has both probabilities positive, so p_ctx is kept.
  lp = jnp.array([[4.0, -jnp.inf, 0.0, 0.0, 0.0], [3.0, -jnp.inf, -jnp.inf, -jnp.inf, -jnp.inf]])
  lc = jnp.array([[2.0, 3.0, -jnp.inf, 1.0, 0.0], [-jnp.inf, -jnp.inf, 0.0, 0.5, 1.0]])
  out = variant(_ck(5))(lp, lc, 0.5, 0.0)  # top_k = vocab: the head is the common support
  assert not np.any(np.isnan(np.asarray(out)))
  assert np.all(np.asarray(confidence_gain(lp, lc)) < 0)
  # alpha = 1/2 cancels q_para: the result is sqrt(p_ctx) on the common head {0, 3, 4}.
  w = np.sqrt(scipy.special.softmax(np.array([2.0, 3.0, -np.inf, 1.0, 0.0])))
  w[1] = 0.0
  np.testing.assert_allclose(np.exp(out[0]), w / w.sum(), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(out[1], jax.nn.log_softmax(lc[1]), rtol=1e-6)


def test_gradients_finite():
  rng = np.random.default_rng(8)
  lp = _random_logits(rng, SHAPE32, mask_frac=0.2)
  lc = _random_logits(rng, SHAPE32, mask_frac=0.2)
  # extremes: both predictions one-hot (H = 0, the adaptive ratio's 0/0), and huge logits
  lp[0] = lc[0] = 0.0
  lp[0, 0] = lc[0, 0] = 1e4
  lp[1] = 0.0
  lp[1, :2] = [1e4, -1e4]
  lp, lc = jnp.asarray(lp, jnp.float32), jnp.asarray(lc, jnp.float32)
  fn = lambda a, b: jnp.stack([_ck(3)(a, b, 0.3, 0.5), _ck(3, True)(a, b, 0.5)])
  finite = np.isfinite(np.asarray(fn(lp, lc)))
  assert 0 < np.sum(~finite)
  loss = lambda a, b: jnp.sum(jnp.where(finite, fn(a, b), 0.0)) + confidence_gain(a, b).sum()
  ga, gb = jax.jit(jax.grad(loss, argnums=(0, 1)))(lp, lc)
  assert np.all(np.isfinite(np.asarray(ga))) and np.all(np.isfinite(np.asarray(gb)))
  assert np.any(np.asarray(ga) != 0.0)  # the parametric logits do reach the output


def test_gradient_matches_finite_differences(x64):
  rng = np.random.default_rng(9)
  lp = jnp.asarray(_random_logits(rng, SHAPE64))
  lc = jnp.asarray(_random_logits(rng, SHAPE64))
  # adaptive mode: the gradient also flows through both entropies into alpha (eq. 10)
  fn = lambda a, b: _ck(3, True)(a, b, 0.5)
  finite = np.isfinite(np.asarray(fn(lp, lc)))
  assert 0 < np.sum(~finite)  # some positions were cut to their head

  def loss(a, b):
    safe = jnp.where(finite, fn(a, b), 0.0)
    return jnp.sum(jnp.where(finite, jnp.sin(safe), 0.0))

  ga, gb = jax.jit(jax.grad(loss, argnums=(0, 1)))(lp, lc)
  # central differences along random directions (small enough to keep every head)
  for seed in range(3):
    r = np.random.default_rng(100 + seed)
    va, vb = r.normal(size=SHAPE64), r.normal(size=SHAPE64)
    h = 1e-6
    numeric = (loss(lp + h * va, lc + h * vb) - loss(lp - h * va, lc - h * vb)) / (2 * h)
    analytic = np.sum(np.asarray(ga) * va) + np.sum(np.asarray(gb) * vb)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_vmap_equals_loop():
  rng = np.random.default_rng(10)
  lp = jnp.asarray(_random_logits(rng, SHAPE32), jnp.float32)
  lc = jnp.asarray(_random_logits(rng, SHAPE32), jnp.float32)
  alpha = jnp.linspace(0.0, 1.0, SHAPE32[0])
  n = SHAPE32[0]
  loop = np.stack([np.asarray(_ck(3)(lp[i], lc[i], alpha[i], 0.0)) for i in range(n)])
  assert len({tuple(np.isneginf(row)) for row in loop}) > 1  # conflict and plain rows
  _assert_same_log_probs(jax.vmap(_ck(3), in_axes=(0, 0, 0, None))(lp, lc, alpha, 0.0), loop,
                         rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- bad input

_P = jnp.zeros((2, 12))
_Q = jnp.ones((2, 12))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ckplug_logits(_P, jnp.zeros((2, 5)), 0.5), ValueError,
         "logits_param and logits_ctx must have the same shape"),
        (lambda: confidence_gain(_P, jnp.zeros((3, 12))), ValueError, "same shape"),
        (lambda: ckplug_logits(_P, _Q, 1.5), ValueError, "alpha must lie in"),
        (lambda: ckplug_logits(_P, _Q, -0.1), ValueError, "alpha must lie in"),
        (lambda: ckplug_logits(_P, _Q, jnp.nan), ValueError, "alpha must be finite"),
        (lambda: ckplug_logits(_P, _Q, None), TypeError, "alpha must be"),
        (lambda: ckplug_logits(_P, _Q, jnp.zeros(3)), ValueError, "alpha of shape"),
        (lambda: ckplug_logits(_P, _Q, 0.5, top_k=0), ValueError, "top_k"),
        (lambda: ckplug_logits(_P, _Q, 0.5, top_k=13), ValueError, "top_k"),
        (lambda: ckplug_logits(_P, _Q, 0.5, top_k=2.0), TypeError, "top_k must be an int"),
        (lambda: ckplug_logits(_P, _Q, 0.5, epsilon=jnp.nan), ValueError, "epsilon must be finite"),
        (lambda: ckplug_logits(_P, _Q, 0.5, adaptive="yes"), TypeError, "adaptive must be a bool"),
        (lambda: ckplug_logits(_P.at[0, 1].set(jnp.nan), _Q, 0.5), ValueError,
         "logits_param contains NaN"),
        (lambda: confidence_gain(_P, _Q.at[1, 1].set(jnp.nan)), ValueError,
         "logits_ctx contains NaN"),
        (lambda: ckplug_logits(_P, _Q.at[0, 0].set(jnp.inf), 0.5), ValueError,
         "logits_ctx contains \\+inf"),
        (lambda: ckplug_logits(_P.at[1].set(-jnp.inf), _Q, 0.5), ValueError,
         "logits_param has a distribution whose logits are all -inf"),
        (lambda: ckplug_logits(jnp.zeros((2, 0)), jnp.zeros((2, 0)), 0.5), ValueError, "empty"),
        (lambda: ckplug_logits(jnp.ones((2, 12), jnp.int32), _Q, 0.5), TypeError,
         "logits_param must be floating-point"),
        (lambda: confidence_gain(_P, "abc"), TypeError, "logits_ctx must be"),
        (lambda: confidence_gain(jnp.array(1.0), jnp.array(1.0)), ValueError, "at least 1"),
        (lambda: confidence_gain(_P, _Q, base=1.0), ValueError, "base"),
        (lambda: confidence_gain(_P, _Q, axis=2), ValueError, "axis"),
    ],
)
def test_bad_input_raises_naming_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_static_checks_still_run_under_jit():
  # Under jit only the static checks apply: shapes and top_k still raise at trace time.
  with pytest.raises(ValueError, match="top_k"):
    jax.jit(lambda a, b: ckplug_logits(a, b, 0.5, top_k=13))(_P, _Q)
  with pytest.raises(ValueError, match="same shape"):
    jax.jit(lambda a, b: ckplug_logits(a, b, 0.5))(_P, jnp.zeros((12, 2)))
