"""MEC-B (Ebrahimi, Chen & Khisti, NeurIPS 2024): EBIM encoder composed with greedy MEC.

Checks the composition p(x,y) = P_XT diag(1/p_T) P_TY against its parts, the exact
marginals, Lemma 1 (I(X;Y) = I(X;T) + I(Y;T) - I(T;X,Y), hence >= I(X;T) + I(Y;T) - R),
the limits R >= H(X) (plain greedy MEC) and R = 0 (independent coupling), validation,
and jit/vmap against loops.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from entropylab.coupling.ebim import ebim
from entropylab.coupling.mec import greedy_mec
from entropylab.coupling.mecb import MECBResult, mec_b
from tests.coupling.reference import bits, mi_bits
from tests.info.conftest import simplex




# a few (n, m) sizes: each new shape compiles the encoder and decoder loops once
SIZES = st.sampled_from([(2, 3), (5, 5), (8, 4)])


@given(SIZES.flatmap(lambda nm: st.tuples(simplex(nm[0], nm[0]), simplex(nm[1], nm[1]))),
       st.floats(0.0, 1.2))
def test_marginals_lemma1_and_composition(pair, frac):
  p_x, p_y = pair
  rate = frac * float(bits(p_x))
  with jax.enable_x64(True):
    res = mec_b(p_x, p_y, rate, return_parts=True)
    p_xy, p_xt, p_ty = (np.asarray(a) for a in res)
    assert p_xy.dtype == np.float64
    np.testing.assert_array_equal(p_xt, ebim(p_x, rate))
    np.testing.assert_allclose(p_ty, greedy_mec(jnp.sum(res.p_xt, axis=0), p_y), atol=1e-15)
  p_t = p_xt.sum(0)
  np.testing.assert_allclose(p_xy.sum(1), p_x, rtol=0, atol=1e-12)
  np.testing.assert_allclose(p_xy.sum(0), p_y, rtol=0, atol=1e-12)
  np.testing.assert_allclose(p_ty.sum(1), p_t, rtol=0, atol=1e-12)
  assert np.all(p_xy >= 0)

  # X - T - Y: p(x,t,y) = p(x,t) p(y|t)
  safe = np.where(p_t > 0, p_t, 1.0)
  p_xty = p_xt[:, :, None] * (p_ty / safe[:, None])[None, :, :]
  np.testing.assert_allclose(p_xty.sum(1), p_xy, atol=1e-15)
  i_xy, i_xt, i_ty = mi_bits(p_xy), mi_bits(p_xt), mi_bits(p_ty)
  i_t_xy = mi_bits(np.moveaxis(p_xty, 1, 0).reshape(len(p_t), -1))  # I(T; (X,Y))
  h_t = float(bits(p_t))
  np.testing.assert_allclose(i_xy, i_xt + i_ty - i_t_xy, atol=1e-9)  # Lemma 1
  assert h_t <= rate + 1e-12
  assert i_xy >= i_xt + i_ty - h_t - 1e-9
  assert i_xy >= i_xt + i_ty - rate - 1e-9  # the paper's bound
  assert i_xy <= min(i_xt, i_ty) + 1e-9  # data processing: the bottleneck binds


def test_rate_above_entropy_is_greedy_mec(variant, x64):
  rng = np.random.default_rng(0)
  for _ in range(5):
    p_x = rng.dirichlet(np.ones(6))
    p_y = rng.dirichlet(np.ones(4))
    expected = np.asarray(greedy_mec(p_x, p_y))
    for rate in (float(bits(p_x)), 10.0, math.inf):
      got = variant(mec_b)(p_x, p_y, rate)
      np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
      res = mec_b(p_x, p_y, rate, return_parts=True)
      np.testing.assert_array_equal(res.p_xt, np.diag(p_x))  # the identity relabelling


def test_zero_rate_is_the_independent_coupling(variant, x64):
  p_x = jnp.array([0.5, 0.3, 0.2])
  p_y = jnp.array([0.1, 0.6, 0.3])
  p_xy = variant(mec_b)(p_x, p_y, 0.0)
  np.testing.assert_allclose(p_xy, np.outer(p_x, p_y), atol=1e-15)
  assert mi_bits(p_xy) <= 1e-12


def test_uniform_four_at_one_bit():
  # Algorithm 1 on uniform(4), R = 1: merges {0,1} (largest, by index) then {2,3}
  # (smallest) -> T uniform on 2 codes. Greedy MEC of [1/2, 1/2] with uniform(4) puts each
  # code on two y's, so p(x,y) = 1/8 on two 2x2 blocks: I(X;Y) = 2 + 2 - 3 = 1 bit,
  # meeting the bound I(X;T) + I(Y;T) - R = 1 + 1 - 1.
  u = jnp.full(4, 0.25)
  res = mec_b(u, u, 1.0, return_parts=True)
  assert isinstance(res, MECBResult)
  np.testing.assert_array_equal(np.argmax(np.asarray(res.p_xt), axis=1), [0, 0, 2, 2])
  np.testing.assert_allclose(np.sort(np.asarray(res.p_xy).ravel())[-8:], 0.125, atol=1e-7)
  np.testing.assert_allclose(mi_bits(res.p_xy), 1.0, atol=1e-6)


def test_vmap_and_batch_equal_a_loop(x64):
  rng = np.random.default_rng(1)
  p_x = rng.dirichlet(np.ones(5), size=6)
  p_y = rng.dirichlet(np.ones(3), size=6)
  rates = rng.uniform(0.0, 2.4, size=6)
  loop = np.stack([np.asarray(mec_b(a, b, r)) for a, b, r in zip(p_x, p_y, rates)])
  np.testing.assert_array_equal(jax.vmap(mec_b)(p_x, p_y, rates), loop)
  np.testing.assert_array_equal(jax.jit(jax.vmap(mec_b))(p_x, p_y, rates), loop)
  np.testing.assert_array_equal(mec_b(p_x, p_y, rates), loop)
  # one p_y shared by the batch (broadcast)
  shared = mec_b(p_x, p_y[0], rates)
  loop = np.stack([np.asarray(mec_b(a, p_y[0], r)) for a, r in zip(p_x, rates)])
  np.testing.assert_array_equal(shared, loop)
  parts = jax.jit(lambda a, b, r: mec_b(a, b, r, return_parts=True))(p_x, p_y, rates)
  assert isinstance(parts, MECBResult)
  np.testing.assert_array_equal(parts.p_xt, ebim(p_x, rates))


@pytest.mark.parametrize("kwargs, match", [
    (dict(p_x=[0.5, -0.1, 0.6]), "p_x has negative"),
    (dict(p_x=[0.5, 0.6]), "p_x must sum to 1"),
    (dict(p_x=[np.nan, 1.0]), "p_x contains NaN"),
    (dict(p_y=[0.3, 0.3]), "p_y must sum to 1"),
    (dict(p_y=[1.2, -0.2]), "p_y has negative"),
    (dict(rate=-1.0), "rate must be >= 0"),
    (dict(rate=np.nan), "rate must be >= 0"),
    (dict(p_x=np.full((2, 3), 1 / 3), rate=[0.5, 0.5, 0.5]), "rate of shape"),
    (dict(p_x=np.full((2, 3), 1 / 3), p_y=np.full((3, 2), 0.5)), "p_x of shape"),
])
def test_bad_inputs_raise(kwargs, match):
  args = dict(p_x=[0.5, 0.25, 0.25], p_y=[0.5, 0.5], rate=1.0)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    mec_b(jnp.asarray(args["p_x"]), jnp.asarray(args["p_y"]), args["rate"])
