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

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from entropylab import info
from entropylab.coupling._sorting import stable_argsort
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


def _ebim_single(p: Array, rate: Array) -> Array:
  """Algorithm 1 on one ``p: [n]`` and a scalar rate; returns ``p_xt: [n, n]``."""
  if p.shape[-1] == 1:
    return p[:, None]
  return jax.nn.one_hot(_ebim_clusters(p, rate), p.shape[-1], dtype=p.dtype) * p[:, None]


def _ebim_clusters(p: Array, rate: Array) -> Array:
  """Algorithm 1 on one ``p: [n]`` and a scalar rate, without its loop; returns the
  code of each symbol, ``t: [n]`` int32 (the column of ``p_xt``). See
  :func:`_ebim_plan`."""
  return _ebim_plan(p, rate)[0]


class _CodePlan(NamedTuple):
  """What :func:`_code_order` needs to sort the code masses without a sort: the
  symbols by mass (``by_large``), how many are non-zero, the merged clusters' places
  among them (a prefix of ``prefix`` ranks; the pair at ranks ``pa < pb``, or ``n``)
  and their columns ``c1`` (the prefix's) and ``c2`` (the pair's)."""
  by_large: Array
  count: Array
  prefix: Array
  pa: Array
  pb: Array
  c1: Array
  c2: Array
  has_top: Array
  has_pair: Array


def _ebim_plan(p: Array, rate: Array) -> tuple[Array, _CodePlan]:
  """Algorithm 1 on one ``p: [n]`` and a scalar rate, without its loop; returns the
  code of each symbol, ``t: [n]`` int32 (the column of ``p_xt``), and a
  :class:`_CodePlan` for :func:`_code_order`.

  A merge of the two largest clusters makes the new largest, so after ``k - 1`` such
  merges the clusters are ``B_k``, the ``k`` largest symbols in one cluster, and the
  other symbols alone. The candidates the loop tries are therefore fixed: at each
  state ``k = 1, 2, ...``, first ``B_k`` with its two smallest clusters merged, then
  ``B_{k+1}``; it returns the first whose entropy is at most ``rate``. Sorting once
  (mass descending, ties to the lower index as in the loop, which also places the
  smallest clusters: see below) and prefix sums give every candidate's entropy at
  once: O(n log n) instead of O(n^2). ``tests/coupling/test_ebim.py`` checks it against
  a transcription of the loop, ties and zero masses included.
  """
  n = p.shape[-1]
  idx = jnp.arange(n, dtype=jnp.int32)
  if n == 1:
    zero, no = jnp.int32(0), jnp.asarray(False)
    return idx, _CodePlan(idx, jnp.sum((p > 0).astype(jnp.int32)), zero, jnp.int32(n),
                          jnp.int32(n), zero, zero, no, no)
  active = p > 0
  count = jnp.sum(active.astype(jnp.int32))
  # The rank order: mass descending, ties to the lower index, zero masses last. A
  # stable ascending sort of the reversed masses lists ties higher index first;
  # reversing its non-zero part gives the rank order (one sort; XLA's CPU sort is slow).
  asc = n - 1 - stable_argsort(jnp.where(active, p, jnp.inf)[::-1])
  by_large = jnp.where(idx < count, asc[jnp.maximum(count - 1 - idx, 0)], asc)
  mass = p[by_large]
  to_bits = lambda x: _checks.to_base(info.discrete._neg_xlogx(x), 2)  # -x log2 x
  phi = to_bits(mass)
  prefix = jnp.cumsum(mass)
  # rest[k] = sum over ranks > k (1-based) of phi: a suffix sum, no cancellation.
  rest = jnp.concatenate([jnp.cumsum(phi[::-1])[::-1][1:], jnp.zeros(1, p.dtype)])
  h_state = to_bits(prefix) + rest  # [n]: entropy of state k = 1..n at index k - 1
  # Two smallest singles of state k ("smallest": mass ascending, ties to the lower
  # index), among the ranks from st + 1 on (st = k for k >= 2; all for k = 1). In rank
  # order the smallest masses come last and each run of equal masses is in index order,
  # so they are the first of the last run (from st on), then the next of that run or
  # else the first of the run before it. last_run, prev_run: where those runs start.
  k = jnp.arange(1, n + 1, dtype=jnp.int32)
  st = jnp.where(k == 1, 0, jnp.minimum(k, n - 1))
  last_run = jnp.sum((mass > mass[jnp.maximum(count - 1, 0)]).astype(jnp.int32))
  prev_run = jnp.sum((mass > mass[jnp.maximum(last_run - 1, 0)]).astype(jnp.int32))
  a_pos = jnp.maximum(st, last_run)
  b_pos = jnp.where(a_pos < count - 1, a_pos + 1, jnp.maximum(st, prev_run))
  a, b = by_large[a_pos], by_large[b_pos]
  pa, pb = mass[a_pos], mass[b_pos]
  h_small = h_state - to_bits(pa) - to_bits(pb) + to_bits(pa + pb)
  # With B_k and one single left (k = count - 1 >= 2) the merge leaves one cluster.
  h_small = jnp.where((k >= 2) & (k == count - 1), 0.0, h_small)
  h_large = jnp.concatenate([h_state[1:], jnp.zeros(1, p.dtype)])
  valid = k <= count - 1
  # Entropies computed in different orders (this sort, a compacted alphabet, the loop
  # of the reference) differ by rounding; with dyadic masses a candidate's entropy often
  # equals the rate exactly, so the budget gets a few ulps of slack to decide those
  # ties the same way everywhere.
  rate = rate + 64 * jnp.finfo(p.dtype).eps * jnp.maximum(rate, 1.0)
  small_ok = valid & (h_small <= rate)
  # The loop stops once one cluster is left, whatever the rounding of its entropy.
  large_ok = valid & ((h_large <= rate) | (k == count - 1))
  # Candidates in the loop's order: small_1, large_1, small_2, large_2, ...
  ok = jnp.stack([small_ok, large_ok], axis=1).reshape(-1)
  first = jnp.argmax(ok)
  kk = first // 2 + 1
  is_small = first % 2 == 0
  top = jnp.where(is_small, kk, kk + 1)  # size of the merged largest cluster
  # The top ranks: (mass, -index) at least the top-th's.
  p_top, i_top = mass[top - 1], by_large[top - 1]
  in_top = active & ((p > p_top) | ((p == p_top) & (idx <= i_top)))
  col = jnp.where(in_top, jnp.min(jnp.where(in_top, idx, n)), idx)
  a_k, b_k = a[kk - 1], b[kk - 1]
  everything = (kk >= 2) & (kk == count - 1)
  pair_col = jnp.minimum(col[a_k], col[b_k])
  merged_pair = jnp.where(everything, active, (idx == a_k) | (idx == b_k)
                          | (col == col[a_k]) | (col == col[b_k]))
  col = jnp.where(is_small & merged_pair,
                  jnp.where(everything, jnp.min(jnp.where(active, idx, n)), pair_col), col)
  done = (_bits(p) <= rate) | (count <= 1)
  col = jnp.where(done, idx, col)
  # The code masses' order (see _code_order): the merged prefix B_top (all of the
  # non-zero symbols when everything merges; none when top = 1, a single) and the pair.
  has_pair = ~done & is_small & ~everything
  has_top = ~done & (everything | (top >= 2))
  prefix = jnp.where(has_top, jnp.where(everything, count, top), 0).astype(jnp.int32)
  ra, rb = a_pos[kk - 1], b_pos[kk - 1]
  pa = jnp.where(has_pair, jnp.minimum(ra, rb), n).astype(jnp.int32)
  pb = jnp.where(has_pair, jnp.maximum(ra, rb), n).astype(jnp.int32)
  plan = _CodePlan(by_large, count, prefix, pa, pb, col[by_large[0]], col[a_k], has_top,
                   has_pair)
  return col, plan


def _code_order(plan: _CodePlan, p_t: Array) -> Array:
  """The order in which the greedy coupling takes the code masses ``p_t: [n]`` (the
  column sums of :func:`_ebim_plan`'s code): mass descending, ties to the lower index,
  as ``stable_argsort(-p_t)`` gives it, on the non-zero masses; the positions after
  them hold an index of a zero mass (not a permutation: the greedy coupling gives zero
  masses nothing whatever their order).

  No sort: the symbols left alone keep their masses and hence their order in
  ``plan.by_large``; only the (at most two) merged clusters are placed among them, by
  counting the singles that come first. O(n).
  """
  n = p_t.shape[0]
  j = jnp.arange(n, dtype=jnp.int32)
  has_top, has_pair = plan.has_top, plan.has_pair

  def single(s):  # the s-th single: rank prefix + s, skipping the pair's ranks pa < pb
    u = s + plan.prefix
    u = u + (u >= plan.pa)
    u = u + (u >= plan.pb)
    return plan.by_large[jnp.clip(u, 0, n - 1)]

  singles = single(j)
  n_single = plan.count - plan.prefix - 2 * has_pair.astype(jnp.int32)
  s_val = jnp.where(j < n_single, p_t[singles], -1.0)
  v1, v2 = p_t[plan.c1], p_t[plan.c2]

  def ahead(v, c):  # singles taken before a cluster of mass v at column c
    return jnp.sum(((s_val > v) | ((s_val == v) & (singles < c))).astype(jnp.int32))

  top_first = ~has_pair | (v1 > v2) | ((v1 == v2) & (plan.c1 < plan.c2))
  pos1 = ahead(v1, plan.c1) + (has_pair & ~top_first)
  pos2 = ahead(v2, plan.c2) + (has_top & top_first)
  at1 = has_top & (j == pos1)
  at2 = has_pair & (j == pos2)
  s = j - (has_top & (pos1 < j)) - (has_pair & (pos2 < j))
  live = j < n_single + has_top + has_pair
  zero = jnp.argmin(p_t).astype(jnp.int32)
  return jnp.where(at1, plan.c1, jnp.where(at2, plan.c2, jnp.where(live, single(s), zero)))


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

  Ties in cluster mass go to the lower column index. The budget is compared with 64
  ulps of slack (relative, for rates above 1 bit), so that a candidate whose entropy
  equals ``R`` in exact arithmetic (common with dyadic masses) counts as feasible
  whatever the rounding. The search runs without a loop: the candidates do not depend on
  ``R`` (see :func:`_ebim_clusters`), so one sort finds them all, in O(n log n). Since ``T`` is a function of
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


def _quantizer_bin_size(n: int, rate: Array) -> Array:
  """Symbols per bin of the uniform quantiser of ``n`` symbols at ``rate`` bits."""
  tiny = 8 * jnp.finfo(rate.dtype).eps
  # floor(2^R) bins, clipped to [1, n]; the relative slack keeps R = log2(k) at k bins.
  bins = jnp.clip(jnp.floor(jnp.exp2(rate) * (1 + tiny)), 1, n)
  return jnp.ceil(n / bins).astype(jnp.int32)


def _quantizer_clusters(p: Array, rate: Array) -> Array:
  """The uniform quantiser's code of each symbol, ``t: [n]`` int32."""
  n = p.shape[-1]
  return jnp.arange(n, dtype=jnp.int32) // _quantizer_bin_size(n, rate.astype(p.dtype))


def _quantizer_single(p: Array, rate: Array) -> Array:
  n = p.shape[-1]
  return jax.nn.one_hot(_quantizer_clusters(p, rate), n, dtype=p.dtype) * p[:, None]


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
