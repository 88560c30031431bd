"""Entropy estimators from counts: peers' reference values, closed forms, slow loops.

Reference values and where they come from:
  * plug-in on data [0]*7 + [1]*3: 0.8812908992 bits (binary entropy h(0.3)).
  * Miller-Madow: H_ML + (K-1)/(2N) nats -- infomeasure's tests/estimators/entropy/
    test_miller_madow.py use the same formula on the same kind of data.
  * Grassberger 1988 form: infomeasure's test_grassberger.py hard-coded values
    ([1,1,2] -> 1.3757622595782166 bits, ...), which use G(n) = psi(n) + (-1)^n/(n+1).
  * Grassberger 2003: G(n) closed form for integers, eq. (31) of physics/0307138.
  * NSB: the ndd package's README example (counts below, k = 100) -> 2.8060922529931225
    nats; and a slow float64 scipy quadrature of the NSB integral written here.
    infomeasure's NSB test value for [1,1,2] (0.7915412244694688 bits) is NOT the NSB
    estimate: it is reproduced only by weighting each bin's log-gamma ratio by its
    count and truncating beta at ln K (see test_infomeasure_nsb_value_is_a_variant).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special as sp
from hypothesis import given
from hypothesis import strategies as st

from entropylab import info
from entropylab.info.estimators import grassberger_g

NDD_COUNTS = [4, 12, 4, 5, 3, 1, 5, 1, 2, 2, 2, 2, 11, 3, 4, 12, 12, 1, 2]
NDD_K = 100
NDD_VALUE = 2.8060922529931225  # nats, simomarsili/ndd README / tests/run_example.py

counts_strategy = st.lists(st.integers(0, 30), min_size=2, max_size=20).filter(lambda c: sum(c) > 0)


# --------------------------------------------------------------------------- slow references


def slow_plugin(c):
  n = sum(c)
  return -sum((x / n) * math.log(x / n) for x in c if x > 0)


def slow_chao_shen(c):
  n = sum(c)
  f1 = sum(1 for x in c if x == 1)
  if f1 == n:
    f1 = n - 1
  cov = 1 - f1 / n
  h = 0.0
  for x in c:
    if x > 0:
      pa = cov * x / n
      h -= pa * math.log(pa) / (1 - (1 - pa) ** n)
  return h


def slow_grassberger_2003(c):
  n = sum(c)

  def g(m):  # eq. (31): G(2k+1) = G(2k) = -gamma - ln 2 + sum_{j=1}^{k} 2/(2j-1)
    k = m // 2
    return -np.euler_gamma - math.log(2) + sum(2.0 / (2 * j - 1) for j in range(1, k + 1))

  return math.log(n) - sum(x * g(x) for x in c if x > 0) / n


def slow_nsb(counts, k=None, *, weight_by_count=False, beta_max=None):
  """NSB by adaptive scipy quadrature over beta in float64 (independent of our grids)."""
  c = np.asarray(counts, float)
  k = len(c) if k is None else k
  c = np.concatenate([c, np.zeros(k - len(c))])
  n = c.sum()

  def log_evidence(b):
    ratio = sp.gammaln(c + b) - sp.gammaln(b)
    if weight_by_count:
      ratio = c * ratio
    return sp.gammaln(k * b) - sp.gammaln(n + k * b) + ratio.sum()

  def dxi(b):
    return k * sp.polygamma(1, 1 + k * b) - sp.polygamma(1, 1 + b)

  def mean_h(b):
    a = n + k * b
    return sp.digamma(a + 1) - np.sum((c + b) / a * sp.digamma(c + b + 1))

  # integrate over t = log(beta)
  hi = math.log(beta_max) if beta_max is not None else 30.0
  grid = np.linspace(-30, hi, 4001)
  lw = np.array([log_evidence(math.exp(t)) + math.log(abs(dxi(math.exp(t)))) + t for t in grid])
  l0 = lw.max()

  def w(t):
    b = math.exp(t)
    return math.exp(log_evidence(b) + math.log(abs(dxi(b))) + t - l0)

  peak = grid[np.argmax(lw)]
  pts = [peak]
  num = scipy.integrate.quad(lambda t: w(t) * mean_h(math.exp(t)), -30, hi, points=pts, limit=400,
                             epsabs=0, epsrel=1e-11)[0]
  den = scipy.integrate.quad(w, -30, hi, points=pts, limit=400, epsabs=0, epsrel=1e-11)[0]
  return num / den


# --------------------------------------------------------------------------- plug-in, MM


def test_plugin_peer_value(variant):
  counts = jnp.array([7.0, 3.0])  # data [0]*7 + [1]*3
  h = variant(lambda c: info.entropy_plugin(c, base=2))(counts)
  np.testing.assert_allclose(h, 0.8812908992, rtol=1e-7)


def test_miller_madow_peer_formula(variant):
  counts = jnp.array([7.0, 3.0, 0.0])  # the empty bin does not count in K
  h = variant(info.entropy_miller_madow)(counts)
  p = np.array([0.7, 0.3])
  np.testing.assert_allclose(h, -(p * np.log(p)).sum() + (2 - 1) / (2 * 10), rtol=1e-6)
  # uniform over 5 with one sample each: log 5 + 4/10 (infomeasure's uniform case)
  np.testing.assert_allclose(info.entropy_miller_madow(jnp.ones(5)), math.log(5) + 0.4, rtol=1e-6)


@given(counts_strategy)
def test_plugin_and_chao_shen_match_slow_loops(c):
  with jax.enable_x64(True):
    arr = jnp.asarray(c, jnp.float64)
    np.testing.assert_allclose(info.entropy_plugin(arr), slow_plugin(c), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(info.entropy_chao_shen(arr), slow_chao_shen(c), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- Grassberger


def test_grassberger_g_matches_integer_closed_form(x64):
  n = jnp.arange(1, 40, dtype=jnp.float64)
  closed = [-np.euler_gamma - math.log(2) + sum(2.0 / (2 * j - 1) for j in range(1, m // 2 + 1))
            for m in range(1, 40)]
  np.testing.assert_allclose(grassberger_g(n), closed, rtol=1e-12, atol=1e-13)


@given(counts_strategy)
def test_grassberger_2003_matches_slow_loop(c):
  with jax.enable_x64(True):
    np.testing.assert_allclose(info.entropy_grassberger(jnp.asarray(c, jnp.float64)),
                               slow_grassberger_2003(c), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(
    "counts, base, expected",
    [  # infomeasure tests/estimators/entropy/test_grassberger.py, hard-coded values
        ([2, 1], 2, 1.3757622595782166),
        ([2, 2, 2], None, 1.0356418007962545),
        ([4], 2, -0.10073373919735826),
        ([2, 2], 10, 0.2736822602584788),
        ([1, 2, 3], 2, 1.9950510682325175),
        ([1, 1, 1, 1, 1], None, 2.6866535773356333),
        ([3, 1], 2, 1.6605564565545845),
    ],
)
def test_grassberger_1988_matches_infomeasure(x64, counts, base, expected):
  h = info.entropy_grassberger(jnp.asarray(counts, jnp.float64), base=base, variant="1988")
  np.testing.assert_allclose(h, expected, rtol=1e-10)


# --------------------------------------------------------------------------- NSB


def test_nsb_matches_ndd_reference(x64):
  counts = jnp.asarray(NDD_COUNTS + [0] * (NDD_K - len(NDD_COUNTS)), jnp.float64)
  h = info.entropy_nsb(counts)
  # ndd integrates with its own quadrature; agreement to 2e-6 relative.
  np.testing.assert_allclose(h, NDD_VALUE, rtol=2e-6)
  np.testing.assert_allclose(h, slow_nsb(NDD_COUNTS, NDD_K), rtol=1e-8)


@pytest.mark.parametrize(
    "counts",
    [[2, 1], [2, 2, 1, 1, 1], [3, 2, 1], [5, 3, 2], [1, 1, 1, 1, 0, 0, 0, 0], [50, 1, 0, 0],
     [9, 0], [1000, 2000, 3000, 10, 1]],
)
def test_nsb_matches_slow_quadrature(x64, counts):
  np.testing.assert_allclose(info.entropy_nsb(jnp.asarray(counts, jnp.float64)), slow_nsb(counts),
                             rtol=1e-7)


def test_infomeasure_nsb_value_is_a_variant(x64):
  # infomeasure's test value for data [1, 1, 2] in bits. The slow reference reproduces it
  # only with count-weighted log-gamma ratios and beta <= ln K; the NSB integral itself
  # (NSB 2002 eq. 9-11, and ndd) gives 0.84967 bits.
  variant_value = slow_nsb([2, 1], weight_by_count=True, beta_max=math.log(2)) / math.log(2)
  np.testing.assert_allclose(variant_value, 0.7915412244694688, rtol=1e-7)
  ours = info.entropy_nsb(jnp.array([2.0, 1.0]), base=2)
  np.testing.assert_allclose(ours, slow_nsb([2, 1]) / math.log(2), rtol=1e-7)
  assert abs(ours - 0.7915412244694688) > 0.05


def test_nsb_converges_to_truth_and_beats_plugin_when_undersampled(x64):
  # Uniform over K = 200 with N = 100 samples: plug-in is far below log K; NSB is close.
  key = jax.random.PRNGKey(0)
  k, n, reps = 200, 100, 16
  samples = jax.random.randint(key, (reps, n), 0, k)
  counts = jax.vmap(lambda s: jnp.bincount(s, length=k))(samples).astype(jnp.float64)
  truth = math.log(k)
  nsb_err = np.abs(np.asarray(info.entropy_nsb(counts)) - truth).mean()
  plugin_err = np.abs(np.asarray(info.entropy_plugin(counts)) - truth).mean()
  assert nsb_err < 0.1 * plugin_err
  assert nsb_err < 0.1


# --------------------------------------------------------------------------- common properties


ESTIMATORS = [info.entropy_plugin, info.entropy_miller_madow, info.entropy_grassberger,
              info.entropy_chao_shen, info.entropy_nsb]


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda f: f.__name__)
def test_batched_jit_vmap_agree(est):
  rng = np.random.default_rng(0)
  counts = jnp.asarray(rng.integers(0, 20, size=(2, 3, 12)), jnp.float32)
  counts = counts.at[..., 0].add(1.0)
  loop = np.array([[est(counts[i, j]) for j in range(3)] for i in range(2)])
  np.testing.assert_allclose(est(counts), loop, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.jit(est)(counts), loop, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.vmap(jax.vmap(est))(counts), loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda f: f.__name__)
def test_consistent_for_large_samples(est, x64):
  # With N >> K every estimator approaches the true entropy.
  p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
  counts = jnp.asarray(np.round(p * 1e6), jnp.float64)
  np.testing.assert_allclose(est(counts), -(p * np.log(p)).sum(), atol=2e-5)


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda f: f.__name__)
def test_bits_are_nats_over_ln2(est):
  c = jnp.array([5.0, 3.0, 1.0, 1.0])
  np.testing.assert_allclose(est(c, base=2), est(c) / math.log(2), rtol=1e-6)


@pytest.mark.parametrize("est", ESTIMATORS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "bad, match",
    [([3.0, -1.0], "counts has negative"), ([0.0, 0.0], "total count 0"),
     ([1.0, float("nan")], "counts contains NaN"), ([], "non-empty last axis")],
)
def test_bad_counts_raise(est, bad, match):
  with pytest.raises(ValueError, match=match):
    est(jnp.asarray(bad, jnp.float32))


def test_estimator_specific_bad_arguments():
  with pytest.raises(ValueError, match="variant"):
    info.entropy_grassberger(jnp.ones(3), variant="2010")
  with pytest.raises(ValueError, match="fine must be an odd"):
    info.entropy_nsb(jnp.ones(3), fine=100)


@pytest.mark.parametrize("k, n", [(10, 10), (100, 50), (1000, 300), (1000, 100000), (10000, 1000),
                                  (10000, 100000), (50, 1000000)])
def test_nsb_float32_agrees_with_float64(k, n):
  # The log-evidence is a difference of O(N log N) terms and beta spans e^-20..e^20;
  # Stirling differences keep float32 usable. Measured agreement: ~2e-6 relative.
  rng = np.random.default_rng(k + n)
  counts = rng.multinomial(n, rng.dirichlet(np.ones(k)))
  h32 = info.entropy_nsb(jnp.asarray(counts, jnp.float32))
  assert h32.dtype == jnp.float32
  with jax.enable_x64(True):
    h64 = info.entropy_nsb(jnp.asarray(counts, jnp.float64))
  np.testing.assert_allclose(float(h32), float(h64), rtol=2e-5)


def test_log_rising_matches_gammaln_difference(x64):
  from entropylab.info.estimators import _log_rising, _nsb_dxi
  b = jnp.asarray(np.geomspace(1e-6, 1e6, 49))  # beyond 1e6 the float64 reference cancels
  huge = jnp.asarray([1e7, 1e8, 1e12])
  np.testing.assert_allclose(_log_rising(huge, jnp.ones(3)), np.log(np.asarray(huge)), rtol=1e-14)
  for c in (0.0, 1.0, 3.0, 250.0, 1e5):
    ref = sp.gammaln(np.asarray(b) + c) - sp.gammaln(np.asarray(b))
    np.testing.assert_allclose(_log_rising(b, jnp.full_like(b, c)), ref, rtol=1e-9, atol=1e-9)
  for k in (2.0, 100.0):
    bn = np.asarray(b)[np.asarray(b) < 1e4]  # beyond, the direct reference itself cancels
    ref = k * sp.polygamma(1, k * bn + 1) - sp.polygamma(1, bn + 1)
    np.testing.assert_allclose(_nsb_dxi(jnp.asarray(bn), jnp.asarray(k)), ref, rtol=1e-6)
