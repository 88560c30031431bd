r"""Entropy-bounded information maximisation (EBIM): the encoder half of MEC-B.

Ebrahimi, Chen & Khisti, "Minimum Entropy Coupling with Bottleneck", NeurIPS 2024
(arXiv:2410.21666). EBIM is the problem

.. math:: \mathcal{I}_{EBIM}(p_X, R) = \max_{p_{T|X}} I(X;T) \quad
   \text{s.t.}\ H(T) \le R,

solved here by the paper's greedy search over deterministic mappings (Algorithm 1,
guarantee Theorem 2), the moves of Theorem 3 that leave a deterministic mapping along
the optimal :math:`I(X;T)`-:math:`H(T)` frontier, and the uniform-quantiser baseline of
their experiments.

Conventions (all functions):

* ``p_x: [..., n]`` on the last axis; leading axes are batch axes and ``rate`` broadcasts
  against them. The code ``T`` has at most ``n`` values, so every joint has the fixed
  shape ``p_xt: [..., n, n]`` (rows ``x``, columns ``t``); unused columns are zero.
* Rates, entropies and mutual informations are in **bits**.
* Concrete inputs are validated eagerly (``p_x`` finite, non-negative, normalised;
  ``rate >= 0``; broadcastable shapes) and a ``ValueError`` names the argument before any
  work starts. Inside ``jit`` only the static shape checks run.
* Pure ``jnp`` with fixed shapes: jit-able and vmap-able; float64 when x64 is enabled and
  the input is float64.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab import info
from entropylab.info import _checks

Array = jax.Array

DIRECTIONS = ("up", "down")


# --------------------------------------------------------------------------- validation


def _prepare_marginal(p, name: str) -> Array:
  arr = _checks.as_float_array(p, name)
  _checks.check_rank_at_least(arr, 1, name)
  _checks.check_probabilities(arr, name, axis=-1)
  return arr


def _prepare_rate(rate, batch_shape: Tuple[int, ...], dtype, against: str = "p_x") -> Array:
  r = _checks.as_float_array(rate, "rate")
  _checks.check_order(r, "rate")
  try:
    np.broadcast_shapes(tuple(batch_shape), r.shape)
  except ValueError:
    raise ValueError(
        f"rate of shape {r.shape} does not broadcast against the batch shape "
        f"{tuple(batch_shape)} of {against}") from None
  return r.astype(dtype)


def _bits(masses: Array) -> Array:
  """Entropy in bits of a mass vector (no validation: called on traced intermediates)."""
  return info.entropy(masses, base=2)


# --------------------------------------------------------------------------- Algorithm 1


def _merge(assign: Array, mass: Array, a: Array, b: Array):
  """Merges clusters a and b into column min(a, b); column max(a, b) becomes empty."""
  keep = jnp.minimum(a, b)
  drop = jnp.maximum(a, b)
  mass = mass.at[keep].add(mass[drop]).at[drop].set(0.0)
  assign = jnp.where(assign == drop, keep, assign)
  return assign, mass


def _ebim_single(p: Array, rate: Array) -> Array:
  """Algorithm 1 on one ``p: [n]`` and a scalar rate; returns ``p_xt: [n, n]``."""
  n = p.shape[-1]
  if n == 1:
    return p[:, None]
  active0 = p > 0
  clusters0 = jnp.sum(active0.astype(jnp.int32))
  # R >= H(X): T = X. Also covers a single-atom p_x (H(X) = 0 <= R).
  done0 = _bits(p) <= rate

  def two(mass, largest):
    active = mass > 0
    if largest:
      key = jnp.where(active, mass, -jnp.inf)
    else:
      key = jnp.where(active, -mass, -jnp.inf)
    # top_k lists equal keys lower index first: ties go to the lower column.
    _, idx = lax.top_k(key, 2)
    return idx[0], idx[1]

  def cond(state):
    _, _, done, clusters = state
    return jnp.logical_and(jnp.logical_not(done), clusters > 1)

  def body(state):
    assign, mass, _, clusters = state
    a, b = two(mass, largest=False)
    assign_s, mass_s = _merge(assign, mass, a, b)
    small_ok = _bits(mass_s) <= rate
    a, b = two(mass, largest=True)
    assign_l, mass_l = _merge(assign, mass, a, b)
    large_ok = _bits(mass_l) <= rate
    assign = jnp.where(small_ok, assign_s, assign_l)
    mass = jnp.where(small_ok, mass_s, mass_l)
    return assign, mass, jnp.logical_or(small_ok, large_ok), clusters - 1

  init = (jnp.arange(n, dtype=jnp.int32), p, done0, clusters0)
  assign, _, _, _ = lax.while_loop(cond, body, init)
  return jax.nn.one_hot(assign, n, dtype=p.dtype) * p[:, None]


_ebim_core = jax.jit(jnp.vectorize(_ebim_single, signature="(n),()->(n,n)"))


def ebim(p_x, rate) -> Array:
  r"""Greedy deterministic EBIM solver (Ebrahimi, Chen & Khisti 2024, Algorithm 1).

  Searches deterministic mappings ``T = g(X)`` with :math:`H(T) \le R`. Start from
  ``T = X`` (each symbol its own cluster; zero-mass symbols never join a cluster) and
  return it if :math:`R \ge H(X)`. Otherwise repeat, at most ``n - 1`` times:

  1. if merging the two clusters of smallest mass gives :math:`H(T) \le R`, do that
     merge and stop (the merge that loses the least entropy, so the final step lands
     as close below ``R`` as one merge allows);
  2. else merge the two clusters of largest mass, and stop if now
     :math:`H(T) \le R` (this check follows the authors' reference implementation:
     without it the next step 1 would merge once more and lose information).

  Ties in cluster mass go to the lower column index. Since ``T`` is a function of
  ``X``, :math:`I(X;T) = H(T)`; it is non-decreasing in ``R`` (the candidate mappings
  do not depend on ``R`` and come in order of non-increasing entropy). Theorem 2 bounds the gap to the optimum:
  :math:`\mathcal{I}_{EBIM}(p_X, R) - I(X;T) \le h(p_2)`, with ``h`` the binary
  entropy (bits) and :math:`p_2` the second-largest mass of ``p_x``. The tests check
  the stronger :math:`I(X;T) \ge \min(R, H(X)) - h(p_2)`, which implies it since
  :math:`\mathcal{I}_{EBIM} \le \min(R, H(X))`. ``R = 0`` gives a single cluster.

  Args:
    p_x: ``[..., n]`` probabilities of ``X``.
    rate: the entropy budget ``R`` in bits, ``>= 0`` (``inf`` allowed); a scalar or any
      shape broadcasting against ``p_x.shape[:-1]``.

  Returns:
    ``p_xt: [..., n, n]``, the joint :math:`p(x,t)`, with exactly one non-zero per row
    ``x`` of positive mass (all-zero rows where :math:`p(x) = 0`). Column order: column
    ``t`` holds the cluster whose smallest member is symbol ``t``; other columns are
    zero. ``p_xt.sum(-1) == p_x`` exactly. Batch shape: ``p_x.shape[:-1]`` broadcast
    with ``rate.shape``.
  """
  p = _prepare_marginal(p_x, "p_x")
  r = _prepare_rate(rate, p.shape[:-1], p.dtype)
  return _ebim_core(p, r)


# --------------------------------------------------------------------------- Theorem 3


def _refine_single(pxt: Array, eps: Array, direction: str) -> Array:
  n, m = pxt.shape
  pt = jnp.sum(pxt, axis=0)
  nonzero = pxt > 0
  used = pt > 0
  if direction == "up":
    # The cell with the smallest p(x|t) moves to an empty column in its own row.
    cond = jnp.where(nonzero, pxt / jnp.where(used, pt, 1.0)[None, :], jnp.inf)
    flat = jnp.argmin(cond.reshape(-1))
    x, t = flat // m, flat % m
    target = jnp.argmax(jnp.logical_not(used))  # first empty column
    possible = jnp.any(jnp.logical_not(used)) & jnp.any(nonzero)
  else:
    # The smallest cell of the lightest column moves to the heaviest column, same row.
    cols = jnp.arange(m)
    t = jnp.argmin(jnp.where(used, pt, jnp.inf))
    target = jnp.argmax(jnp.where(used & (cols != t), pt, -jnp.inf))
    x = jnp.argmin(jnp.where(nonzero[:, t], pxt[:, t], jnp.inf))
    possible = jnp.sum(used.astype(jnp.int32)) >= 2
  moved = jnp.where(possible, jnp.minimum(eps, pxt[x, t]), 0.0)
  return pxt.at[x, t].add(-moved).at[x, target].add(moved)


def ebim_refine(p_xt, direction: str, eps=1e-3) -> Array:
  r"""Leaves a deterministic mapping along the optimal EBIM frontier (Theorem 3).

  Ebrahimi, Chen & Khisti 2024, Theorem 3 (and Fig. 2): let ``p_xt`` define
  ``T = g(X)`` with :math:`I(X;T) = H(T) = R_g`. The optimal couplings for rates
  slightly above and below :math:`R_g` are reached by moving a small mass
  :math:`\epsilon` within one row ``x`` (so :math:`p_X` is kept):

  * ``"up"`` (:math:`R_g + \cdot`, raises :math:`H(T)`): take the non-zero cell with the
    smallest normalised value :math:`p(x|t) = p(x,t)/p(t)` and move :math:`\epsilon`
    of it to a new (empty) column, the first empty one.
  * ``"down"`` (:math:`R_g - \cdot`, lowers :math:`H(T)`): take the non-empty column of
    smallest mass :math:`p(t)`, its smallest non-zero cell :math:`p(x,t)`, and move
    :math:`\epsilon` of it to the column of largest mass in the same row.

  The theorem concerns infinitesimal :math:`\epsilon`. Taking :math:`\epsilon` from 0
  to the whole cell traces a curve that ends on another deterministic mapping (``x``
  split off into its own cluster, or moved into the heaviest one); over all
  deterministic mappings the upper envelope of these curves is the frontier
  :math:`\mathcal{I}_{EBIM}(p_X, R)` (their Fig. 2; checked against a brute-force
  search in ``tests/coupling/test_ebim.py``). Ties go to the lower row, then column.

  The result is returned unchanged when there is no move: ``"up"`` with no empty column
  (with the ``[n, n]`` layout of :func:`ebim` only for ``T = X``, where
  :math:`I(X;T) = H(X)` is already maximal) or ``"down"`` with fewer than two
  non-empty columns.

  Args:
    p_xt: ``[..., n, m]`` joint of a deterministic mapping (at most one non-zero per
      row), summing to 1 over the last two axes, e.g. the output of :func:`ebim`.
    direction: ``"up"`` or ``"down"`` (static).
    eps: probability mass to move, ``>= 0``; clipped to the selected cell's mass (so
      ``inf`` moves the whole cell). Broadcasts against ``p_xt.shape[:-2]``; traced
      values are fine (e.g. ``vmap`` over ``eps`` to trace a curve).

  Returns:
    ``[..., n, m]``: the moved coupling. Row sums (:math:`p_X`) are unchanged; compute
    the point on the curve with ``mutual_information(., base=2)`` and
    ``entropy(.sum(-2), base=2)`` (bits).
  """
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
  pxt = _checks.as_float_array(p_xt, "p_xt")
  _checks.check_rank_at_least(pxt, 2, "p_xt")
  _checks.check_probabilities(pxt, "p_xt", axis=(-2, -1))
  if _checks.is_concrete(pxt):
    rows = np.count_nonzero(np.asarray(pxt), axis=-1)
    if np.any(rows > 1):
      raise ValueError("p_xt must be a deterministic mapping: at most one non-zero entry "
                       f"per row, found a row with {int(rows.max())}")
  e = _checks.as_float_array(eps, "eps")
  _checks.check_order(e, "eps")
  try:
    np.broadcast_shapes(pxt.shape[:-2], e.shape)
  except ValueError:
    raise ValueError(f"eps of shape {e.shape} does not broadcast against the batch shape "
                     f"{pxt.shape[:-2]} of p_xt") from None
  fn = jnp.vectorize(lambda a, b: _refine_single(a, b, direction), signature="(n,m),()->(n,m)")
  return fn(pxt, e.astype(pxt.dtype))


# --------------------------------------------------------------------------- baseline


def _quantizer_single(p: Array, rate: Array) -> Array:
  n = p.shape[-1]
  tiny = 8 * jnp.finfo(p.dtype).eps
  # floor(2^R) bins, clipped to [1, n]; the relative slack keeps R = log2(k) at k bins.
  bins = jnp.clip(jnp.floor(jnp.exp2(rate) * (1 + tiny)), 1, n)
  size = jnp.ceil(n / bins).astype(jnp.int32)
  t = jnp.arange(n, dtype=jnp.int32) // size
  return jax.nn.one_hot(t, n, dtype=p.dtype) * p[:, None]


_quantizer_core = jax.jit(jnp.vectorize(_quantizer_single, signature="(n),()->(n,n)"))


def uniform_quantizer(p_x, rate) -> Array:
  r"""Uniform scalar quantiser, the EBIM baseline (Ebrahimi, Chen & Khisti 2024, Alg. 5).

  Splits the ordered alphabet ``0..n-1`` into contiguous bins of equal numbers of
  symbols (not equal mass), as in the authors' code: with
  :math:`m = \lfloor 2^R \rfloor` (clipped to ``[1, n]``) each bin holds
  :math:`s = \lceil n/m \rceil` consecutive symbols (the last one possibly fewer), so
  there are :math:`\lceil n/s \rceil \le m` non-empty bins and
  :math:`H(T) \le \log_2 m \le R` bits for every ``p_x``. The mass of ``p_x`` is not
  used to place the bins.

  Args:
    p_x: ``[..., n]`` probabilities of ``X`` (symbol order = quantisation order).
    rate: ``R`` in bits, ``>= 0`` (``inf`` allowed), broadcasting against
      ``p_x.shape[:-1]``.

  Returns:
    ``p_xt: [..., n, n]`` with ``T = x // s``: bin ``b`` in column ``b``, unused
    columns zero. ``I(X;T) = H(T)`` since ``T`` is a function of ``X``.
  """
  p = _prepare_marginal(p_x, "p_x")
  r = _prepare_rate(rate, p.shape[:-1], p.dtype)
  return _quantizer_core(p, r)


__all__ = ["ebim", "ebim_refine", "uniform_quantizer"]
