r"""Minimum-entropy coupling: the greedy coupling and the majorization lower bound.

A coupling of marginals ``p: [n]`` and ``q: [m]`` is a joint ``[n, m]`` with those
marginals; the minimum-entropy coupling (MEC) problem asks for the one of least joint
entropy (NP-hard). The greedy coupling of Kocaoglu, Dimakis, Vishwanath & Hassibi
("Entropic causal inference", AAAI 2017, Algorithm 1) repeatedly puts the smaller of the
two largest residual masses on their cell; it is within :math:`\log_2(e)/e \approx 0.53`
bits of the optimum (Compton, Katz, Qiu, Uhler & Vishwanath, AISTATS 2023). No coupling
has entropy below that of the majorization meet :math:`p \wedge q` (Cicalese, Gargano &
Vaccaro, IEEE Trans. Inf. Theory 2019, Lemma 1).

Conventions: marginals on the last axis, leading axes are batch axes (they broadcast);
entropies in bits. The greedy loop has a fixed length n + m - 1 (``lax.fori_loop``), so
it jits and vmaps; ties between equal residuals go to the lowest index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks

Array = jax.Array


def _prepare(p, name: str) -> Array:
  arr = _checks.as_float_array(p, name)
  _checks.check_rank_at_least(arr, 1, name)
  _checks.check_probabilities(arr, name)
  return arr


def _pair(p, q):
  p = _prepare(p, "p")
  q = _prepare(q, "q")
  try:
    batch = np.broadcast_shapes(p.shape[:-1], q.shape[:-1])
  except ValueError:
    raise ValueError(f"p of shape {p.shape} and q of shape {q.shape} have batch axes that "
                     "do not broadcast") from None
  dtype = jnp.result_type(p.dtype, q.dtype)
  p = jnp.broadcast_to(p.astype(dtype), batch + p.shape[-1:])
  q = jnp.broadcast_to(q.astype(dtype), batch + q.shape[-1:])
  return p, q


def _greedy_steps(p: Array, q: Array):
  """The n + m - 1 greedy steps on ``p: [n]``, ``q: [m]``: (rows, cols, masses)."""
  n, m = p.shape[0], q.shape[0]
  steps = n + m - 1

  def body(k, carry):
    rp, rq, rows, cols, mass = carry
    i = jnp.argmax(rp)
    j = jnp.argmax(rq)
    # The last step takes both remainders whole, so round-off cannot strand mass.
    last = k == steps - 1
    a, b = rp[i], rq[j]
    r = jnp.where(last, jnp.maximum(a, b), jnp.minimum(a, b))
    rp = rp.at[i].set(jnp.where(last, 0.0, jnp.maximum(a - r, 0.0)))
    rq = rq.at[j].set(jnp.where(last, 0.0, jnp.maximum(b - r, 0.0)))
    return (rp, rq, rows.at[k].set(i.astype(jnp.int32)), cols.at[k].set(j.astype(jnp.int32)),
            mass.at[k].set(r))

  init = (p, q, jnp.zeros((steps,), jnp.int32), jnp.zeros((steps,), jnp.int32),
          jnp.zeros((steps,), p.dtype))
  _, _, rows, cols, mass = lax.fori_loop(0, steps, body, init)
  return rows, cols, mass


@jax.jit
def _greedy_sparse_batched(p: Array, q: Array):
  fn = jnp.vectorize(_greedy_steps, signature="(n),(m)->(s),(s),(s)")
  return fn(p, q)


def greedy_mec_sparse(p, q):
  r"""Greedy coupling (Kocaoglu et al. 2017, Algorithm 1) as its non-zero cells.

  Args:
    p: ``[..., n]`` probabilities.
    q: ``[..., m]`` probabilities; batch axes broadcast with ``p``'s.

  Returns:
    ``(rows, cols, mass)``, each ``[..., n + m - 1]``: step ``k`` puts ``mass[k]`` on
    cell ``(rows[k], cols[k])``. Masses are non-increasing; steps after the residuals
    are exhausted carry mass 0 (their indices are then arbitrary). Memory is
    O(n + m), so supports of 10^5 and more fit. Summing the masses into a dense array
    reproduces ``greedy_mec``.
  """
  p, q = _pair(p, q)
  return _greedy_sparse_batched(p, q)


@jax.jit
def _greedy_dense_batched(p: Array, q: Array) -> Array:
  def one(a, b):
    rows, cols, mass = _greedy_steps(a, b)
    return jnp.zeros((a.shape[0], b.shape[0]), a.dtype).at[rows, cols].add(mass)

  return jnp.vectorize(one, signature="(n),(m)->(n,m)")(p, q)


def greedy_mec(p, q) -> Array:
  r"""Greedy minimum-entropy coupling (Kocaoglu et al., AAAI 2017, Algorithm 1).

  Repeat n + m - 1 times: take the largest residual :math:`p_i` and the largest residual
  :math:`q_j`, put :math:`\min(p_i, q_j)` on cell ``(i, j)`` and subtract it from both.
  The result has marginals ``p`` and ``q`` (exactly up to round-off: the last step
  assigns both remainders), at most n + m - 1 non-zero cells, and joint entropy
  between :math:`H(p \wedge q)` and :math:`H(p \wedge q) + \log_2 e` bits.

  Args:
    p: ``[..., n]`` probabilities.
    q: ``[..., m]`` probabilities; batch axes broadcast with ``p``'s.

  Returns:
    ``[..., n, m]`` joint distribution.
  """
  p, q = _pair(p, q)
  return _greedy_dense_batched(p, q)


def majorization_meet(*marginals) -> Array:
  r"""The meet :math:`p \wedge q \wedge \dots` in the majorization lattice.

  Cicalese, Gargano & Vaccaro (2019), Fact 1: sort each marginal in decreasing order
  (zero-padded to a common length), take the elementwise minimum of the prefix sums,
  and difference it. Every coupling's joint distribution, sorted, is majorised by it.

  Args:
    *marginals: two or more ``[..., n_i]`` probability vectors (batch axes broadcast).

  Returns:
    ``[..., max n_i]`` the meet, in decreasing order.
  """
  if len(marginals) < 2:
    raise ValueError(f"majorization_meet needs at least two marginals, got {len(marginals)}")
  arrs = [_prepare(m, f"marginals[{k}]") for k, m in enumerate(marginals)]
  length = max(a.shape[-1] for a in arrs)
  dtype = jnp.result_type(*arrs)
  prefix = None
  for a in arrs:
    pad = [(0, 0)] * (a.ndim - 1) + [(0, length - a.shape[-1])]
    s = jnp.cumsum(-jnp.sort(-jnp.pad(a.astype(dtype), pad), axis=-1), axis=-1)
    prefix = s if prefix is None else jnp.minimum(prefix, s)
  return jnp.diff(prefix, axis=-1, prepend=jnp.zeros_like(prefix[..., :1]))


def majorization_lower_bound(*marginals, base: float = 2) -> Array:
  r"""Entropy of the majorization meet: a lower bound on every coupling's entropy.

  Cicalese, Gargano & Vaccaro (2019), Lemma 1: :math:`H(X_1, \dots, X_k) \ge H(p_1
  \wedge \dots \wedge p_k)` for any coupling.

  Args:
    *marginals: two or more ``[..., n_i]`` probability vectors.
    base: log base (default 2, bits).

  Returns:
    ``[...]`` the bound, in bits by default.
  """
  meet = jnp.maximum(majorization_meet(*marginals), 0.0)
  pos = meet > 0
  h = -jnp.sum(jnp.where(pos, meet * jnp.log(jnp.where(pos, meet, 1.0)), 0.0), axis=-1)
  return _checks.to_base(h, base)


__all__ = ["greedy_mec", "greedy_mec_sparse", "majorization_meet", "majorization_lower_bound"]
