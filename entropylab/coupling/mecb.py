r"""Minimum entropy coupling with bottleneck (MEC-B): EBIM encoder + greedy MEC decoder.

Ebrahimi, Chen & Khisti, "Minimum Entropy Coupling with Bottleneck", NeurIPS 2024
(arXiv:2410.21666). MEC-B couples :math:`p_X` and :math:`p_Y` through a code ``T`` of
bounded entropy,

.. math:: \max_{p_{T|X},\, p_{Y|T}} I(X;Y) \quad \text{s.t.}\ X - T - Y,\
   H(T) \le R,\ P_X = p_X,\ P_Y = p_Y,

and is split (their Lemma 1: :math:`I(X;Y) = I(X;T) + I(Y;T) - I(T;X,Y)`,
hence :math:`I(X;Y) \ge I(X;T) + I(Y;T) - R`) into an encoder problem, EBIM, solved
with their greedy Algorithm 1 (:func:`entropylab.coupling.ebim.ebim`), and a decoder
problem, a minimum entropy coupling of :math:`p_T` and :math:`p_Y`, solved with the
greedy coupling of Kocaoglu et al. (AAAI 2017, Algorithm 1;
:func:`entropylab.coupling.mec.greedy_mec`).

Rates, entropies and informations are in bits. Concrete inputs are validated eagerly
(``ValueError`` naming ``p_x``, ``p_y`` or ``rate``); the computation is pure ``jnp``
with fixed shapes, so it is jit-able and vmap-able.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.coupling.ebim import _ebim_single, _prepare_marginal, _prepare_rate
from entropylab.coupling.mec import greedy_mec

Array = jax.Array


class MECBResult(NamedTuple):
  """The MEC-B coupling and its two halves (all joints in probability, not bits).

  Attributes:
    p_xy: ``[..., n, m]`` the composed joint :math:`p(x,y)`.
    p_xt: ``[..., n, n]`` the EBIM encoder joint :math:`p(x,t)` (layout of
      :func:`entropylab.coupling.ebim.ebim`: empty columns are zero).
    p_ty: ``[..., n, m]`` the greedy MEC decoder joint :math:`p(t,y)` (zero rows for
      empty codes).
  """

  p_xy: Array
  p_xt: Array
  p_ty: Array


def _mec_b_single(p: Array, q: Array, rate: Array):
  p_xt = _ebim_single(p, rate)
  p_t = jnp.sum(p_xt, axis=0)
  p_ty = greedy_mec(p_t, q).astype(p.dtype)
  used = p_t > 0
  # p(y|t); rows of unused codes are zero (no x maps there, so they never contribute).
  p_y_given_t = jnp.where(used[:, None], p_ty / jnp.where(used, p_t, 1.0)[:, None], 0.0)
  p_xy = jnp.matmul(p_xt, p_y_given_t, precision=jax.lax.Precision.HIGHEST)
  return p_xy, p_xt, p_ty


_mec_b_core = jax.jit(
    jnp.vectorize(_mec_b_single, signature="(n),(m),()->(n,m),(n,n),(n,m)"))


def mec_b(p_x, p_y, rate, return_parts: bool = False):
  r"""MEC-B coupling of ``p_x`` and ``p_y`` through a code of entropy at most ``rate``.

  Ebrahimi, Chen & Khisti 2024: the Lemma 1 decomposition with Algorithm 1
  as the encoder and greedy MEC (Kocaoglu et al. 2017, Algorithm 1) as the decoder:

  1. encoder :math:`p(x,t)` = ``ebim(p_x, rate)``, a deterministic ``T = g(X)`` with
     :math:`H(T) \le R` bits;
  2. decoder :math:`p(t,y)` = ``greedy_mec(p_T, p_y)`` with
     :math:`p_T = \sum_x p(x,t)`;
  3. :math:`p(x,y) = \sum_t p(x,t)\,p(t,y)/p(t)`, i.e.
     :math:`P_{XY} = P_{XT}\,\mathrm{diag}(1/p_T)\,P_{TY}` over the used codes.

  ``X - T - Y`` is a Markov chain, so :math:`I(X;Y) = I(X;T) + I(Y;T) - I(T;X,Y) \ge
  I(X;T) + I(Y;T) - H(T) \ge I(X;T) + I(Y;T) - R` (Lemma 1). For
  :math:`R \ge H(X)` the encoder is the identity and ``p_xy`` is
  ``greedy_mec(p_x, p_y)`` (to rounding); for ``R = 0``, ``p_xy`` is the independent coupling
  :math:`p_X p_Y^\top`.

  Args:
    p_x: ``[..., n]`` probabilities of ``X``.
    p_y: ``[..., m]`` probabilities of ``Y``; batch axes broadcast with ``p_x``'s.
    rate: the code budget ``R`` in bits, ``>= 0`` (``inf`` allowed); broadcasts with
      the batch axes.
    return_parts: if ``True`` return an :class:`MECBResult` (``p_xy``, ``p_xt``,
      ``p_ty``) instead of ``p_xy`` alone (a Python bool, static under ``jit``).

  Returns:
    ``p_xy: [..., n, m]`` with marginals ``p_x`` (rows) and ``p_y`` (columns), or an
    :class:`MECBResult` when ``return_parts``.
  """
  p = _prepare_marginal(p_x, "p_x")
  q = _prepare_marginal(p_y, "p_y")
  try:
    batch = np.broadcast_shapes(p.shape[:-1], q.shape[:-1])
  except ValueError:
    raise ValueError(f"p_x of shape {p.shape} and p_y of shape {q.shape} have batch axes "
                     "that do not broadcast") from None
  dtype = jnp.result_type(p.dtype, q.dtype)
  r = _prepare_rate(rate, batch, dtype, against="p_x and p_y")
  p_xy, p_xt, p_ty = _mec_b_core(p.astype(dtype), q.astype(dtype), r)
  if return_parts:
    return MECBResult(p_xy, p_xt, p_ty)
  return p_xy


__all__ = ["MECBResult", "mec_b"]
