"""Entropies, divergences and mutual information of discrete distributions.

The Shannon family (Shannon 1948; Cover & Thomas, *Elements of Information Theory*,
2nd ed., ch. 2), Renyi (1961) and Tsallis (1988) entropies, and the symmetric cross
entropy used as a consistency loss in test-time adaptation (Doebler, Marsden & Yang,
"Robust Mean Teacher for Continual and Gradual Test-Time Adaptation", CVPR 2023, eq. 4).

Conventions (all functions):

* Distributions lie along the last axis (``p: [..., n]``); leading axes are batch axes.
  Joint distributions put their variables on the trailing axes (``pxy: [..., x, y]``).
* Natural log (nats) by default; ``base=2`` gives bits.
* ``0 log 0 = 0``. Terms with ``p = 0`` contribute nothing and have zero gradient, so
  gradients are finite for every strictly positive input (and at exact zeros).
* Concrete inputs are validated eagerly (non-negative, finite, summing to 1 within
  ``1e-4`` for float32 and ``1e-8`` for float64) and a ``ValueError`` names the
  argument. Inside ``jit`` only static shape checks run.
* Pure ``jnp``: every function is jit-able, vmap-able and differentiable.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from entropylab.info import _checks, _pallas

Array = jax.Array


# --------------------------------------------------------------------------- helpers


def _safe_log(p: Array) -> Array:
  """log(p) where p > 0, and 0 where p == 0 (gradient-safe double ``where``)."""
  positive = p > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), 0.0)


def _neg_xlogx(p: Array) -> Array:
  """-p log p with 0 log 0 = 0 and a finite gradient at 0."""
  return -p * _safe_log(p)


def _prepare(p, name: str, axis=-1) -> Array:
  arr = _checks.as_float_array(p, name)
  _checks.check_rank_at_least(arr, 1, name)
  _checks.check_probabilities(arr, name, axis=axis)
  return arr


# --------------------------------------------------------------------------- Shannon


def entropy(p, axis: int = -1, base: Optional[float] = None) -> Array:
  r"""Shannon entropy :math:`H(p) = -\sum_i p_i \log p_i`.

  Shannon (1948); Cover & Thomas eq. (2.1).

  Args:
    p: ``[..., n, ...]`` probabilities, normalised along ``axis``.
    axis: the axis holding the distribution.
    base: log base; ``None`` for nats, ``2`` for bits.

  Returns:
    ``p.shape`` without ``axis``: the entropy in nats (or in ``base`` units).
  """
  arr = _checks.as_float_array(p, "p")
  _checks.check_rank_at_least(arr, 1, "p")
  ax = _checks.check_axis(arr, axis, "p")
  _checks.check_probabilities(arr, "p", axis=ax)
  _checks.check_base(base)
  return _checks.to_base(jnp.sum(_neg_xlogx(arr), axis=ax), base)


def _logits_entropy_two_pass(x: Array) -> Array:
  """H of softmax(x) over the last axis: -sum softmax(x) log_softmax(x).

  ``-inf`` logits give probability 0 and ``log_softmax = -inf``; clamping the log to the
  dtype's lowest finite value makes their product 0 (a ``jnp.where`` here would stop
  XLA:CPU from fusing the reduction, 7x slower in benchmarks/bench_info.py).
  """
  p = jax.nn.softmax(x, axis=-1)
  logp = jnp.maximum(jax.nn.log_softmax(x, axis=-1), jnp.finfo(x.dtype).min)
  return -jnp.sum(p * logp, axis=-1)


def _logits_entropy_one_pass(x: Array) -> Array:
  """Same value in a single read: a variadic reduction carrying per row the running
  max m, s = sum exp(x - m) and u = sum exp(x - m)(x - m). Kept for the benchmark
  (benchmarks/bench_info.py), which compares it with the two-pass form per device.
  """
  init = (jnp.array(-jnp.inf, x.dtype), jnp.array(0.0, x.dtype), jnp.array(0.0, x.dtype))

  def combine(a, b):
    m1, s1, u1 = a
    m2, s2, u2 = b
    # One exp per combine: the side holding the larger max keeps weight 1, the other
    # is scaled by exp(-|m1 - m2|). An empty side (s = 0, m = -inf) gets weight 0.
    first_larger = m1 >= m2
    m = jnp.where(first_larger, m1, m2)
    gap = jnp.where((s1 > 0) & (s2 > 0), -jnp.abs(m1 - m2), -jnp.inf)
    e = jnp.exp(gap)
    w1 = jnp.where(s1 > 0, jnp.where(first_larger, 1.0, e), 0.0)
    w2 = jnp.where(s2 > 0, jnp.where(first_larger, e, 1.0), 0.0)
    d1 = jnp.where(w1 > 0, m1 - m, 0.0)
    d2 = jnp.where(w2 > 0, m2 - m, 0.0)
    return m, s1 * w1 + s2 * w2, (u1 + s1 * d1) * w1 + (u2 + s2 * d2) * w2

  s0 = jnp.where(jnp.isfinite(x), jnp.ones_like(x), 0.0)
  _, s, u = lax.reduce((x, s0, jnp.zeros_like(x)), init, combine, (x.ndim - 1,))
  return jnp.log(s) - u / s


def _logits_entropy_cuda(x: Array) -> Array:
  """NVIDIA GPUs: the Pallas streaming kernel (:mod:`entropylab.info._pallas`) in tiles of
  one row by 4096 columns, the fastest tile shape measured; float64 logits (which the
  kernel would round to float32) and empty batches keep the one-pass reduction."""
  if x.dtype == jnp.float64 or x.size == 0:
    return _logits_entropy_one_pass(x)
  rows = x.reshape(-1, x.shape[-1])
  h = _pallas.logits_entropy_pallas(rows, block_rows=1, block_cols=4096)
  return h.reshape(x.shape[:-1])


@jax.custom_jvp
def _entropy_from_logits_last(logits: Array) -> Array:
  # Accelerators are bound by memory reads: one read of the logits, by the Pallas kernel
  # on NVIDIA GPUs and by XLA's variadic reduction elsewhere. On CPU the exps dominate
  # and the two-pass form (one exp per element, no rescaling) is faster and more
  # accurate. Measured in benchmarks/results/bench_info_*.md.
  return lax.platform_dependent(logits, cpu=_logits_entropy_two_pass,
                                cuda=_logits_entropy_cuda,
                                default=_logits_entropy_one_pass)


@_entropy_from_logits_last.defjvp
def _entropy_from_logits_jvp(primals, tangents):
  (logits,), (dlogits,) = primals, tangents
  logp = jax.nn.log_softmax(logits, axis=-1)
  p = jnp.exp(logp)
  h = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
  # dH/dl_i = -p_i (log p_i + H)
  grad = -jnp.where(p > 0, p * (logp + h[..., None]), 0.0)
  return _entropy_from_logits_last(logits), jnp.sum(grad * dlogits, axis=-1)


def entropy_from_logits(logits, axis: int = -1, base: Optional[float] = None) -> Array:
  r"""Shannon entropy of ``softmax(logits)``, never forming ``log(softmax)``.

  :math:`H = \log \sum_j e^{z_j} - \sum_j e^{z_j} z_j / \sum_j e^{z_j}` with
  :math:`z = l - \max l`, no probability array materialised. On GPU/TPU one streaming
  pass carrying max, sum and weighted sum reads the logits once (a Pallas kernel on
  NVIDIA GPUs for 16- and 32-bit floats, else a variadic reduction); on CPU ``-sum softmax(l) log_softmax(l)``, which XLA:CPU fuses into one loop. Gradient (custom JVP)
  :math:`\partial H/\partial l_i = -p_i(\log p_i + H)`.

  Args:
    logits: ``[..., n, ...]`` real logits; ``-inf`` entries mean zero probability
      (at least one entry per distribution must be finite).
    axis: the class axis.
    base: log base; ``None`` for nats.

  Returns:
    ``logits.shape`` without ``axis``, in nats (or ``base`` units). Finite for any
    finite logits; gradients finite for any finite logits.
  """
  arr = _checks.as_float_array(logits, "logits")
  _checks.check_rank_at_least(arr, 1, "logits")
  ax = _checks.check_axis(arr, axis, "logits")
  _checks.check_base(base)
  if _checks.is_concrete(arr) and arr.size:
    import numpy as np  # local: eager validation only
    v = np.asarray(arr)
    if np.any(np.isnan(v)) or np.any(v == np.inf):
      raise ValueError("logits contain NaN or +inf entries")
    if np.any(np.all(v == -np.inf, axis=ax)):
      raise ValueError("logits has a distribution whose entries are all -inf")
  arr = jnp.moveaxis(arr, ax, -1)
  return _checks.to_base(_entropy_from_logits_last(arr), base)


def cross_entropy(p, q, base: Optional[float] = None) -> Array:
  r"""Cross entropy :math:`H(p, q) = -\sum_i p_i \log q_i` (Cover & Thomas §2.3).

  Args:
    p, q: ``[..., n]`` probabilities of the same shape.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``; ``inf`` where some ``q_i = 0`` has ``p_i > 0`` (never NaN).
  """
  p = _prepare(p, "p")
  q = _prepare(q, "q")
  _checks.check_same_shape(p, q, "p", "q")
  _checks.check_base(base)
  pos = p > 0
  logq = jnp.where(pos, jnp.log(jnp.where(pos, q, 1.0)), 0.0)
  return _checks.to_base(-jnp.sum(p * logq, axis=-1), base)


def kl_divergence(p, q, base: Optional[float] = None) -> Array:
  r"""Kullback-Leibler divergence :math:`D(p\|q) = \sum_i p_i \log(p_i / q_i)`.

  Kullback & Leibler (1951); Cover & Thomas eq. (2.26).

  Args:
    p, q: ``[..., n]`` probabilities of the same shape.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``, ``>= 0``; ``inf`` where ``q_i = 0 < p_i`` (never NaN).
  """
  p = _prepare(p, "p")
  q = _prepare(q, "q")
  _checks.check_same_shape(p, q, "p", "q")
  _checks.check_base(base)
  return _checks.to_base(_kl(p, q), base)


def _kl(p: Array, q: Array) -> Array:
  pos = p > 0
  logp = jnp.log(jnp.where(pos, p, 1.0))
  logq = jnp.log(jnp.where(pos, q, 1.0))
  terms = jnp.where(pos, p * (logp - logq), 0.0)
  return jnp.maximum(jnp.sum(terms, axis=-1), 0.0)


def js_divergence(p, q, weights=None, base: Optional[float] = None) -> Array:
  r"""Jensen-Shannon divergence :math:`\pi_1 D(p\|m) + \pi_2 D(q\|m)`, :math:`m = \pi_1 p + \pi_2 q`.

  Lin (1991), "Divergence measures based on the Shannon entropy", eq. (4.1). Bounded by
  :math:`H(\pi) \le \log 2` and zero iff ``p == q`` (for positive weights).

  Args:
    p, q: ``[..., n]`` probabilities of the same shape.
    weights: ``None`` for ``(1/2, 1/2)``, or ``[2]`` / ``[..., 2]`` non-negative weights
      summing to 1.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``, in nats (or ``base`` units).
  """
  p = _prepare(p, "p")
  q = _prepare(q, "q")
  _checks.check_same_shape(p, q, "p", "q")
  _checks.check_base(base)
  if weights is None:
    w = jnp.full(p.shape[:-1] + (2,), 0.5, dtype=p.dtype)
  else:
    w = _checks.as_float_array(weights, "weights")
    if w.ndim < 1 or w.shape[-1] != 2:
      raise ValueError(f"weights must have a last axis of size 2, got shape {w.shape}")
    _checks.check_probabilities(w, "weights")
  w1, w2 = w[..., 0:1], w[..., 1:2]
  m = w1 * p + w2 * q
  js = w1[..., 0] * _kl(p, m) + w2[..., 0] * _kl(q, m)
  return _checks.to_base(js, base)


def symmetric_cross_entropy(p, q, alpha: float = 0.5, base: Optional[float] = None) -> Array:
  r"""Symmetric cross entropy :math:`(1-\alpha) H(p, q) + \alpha H(q, p)`.

  The consistency loss of the Robust Mean Teacher (Doebler et al., CVPR 2023, eq. 4),
  where ``p`` is the teacher's and ``q`` the student's prediction and ``alpha = 1/2``.

  Args:
    p, q: ``[..., n]`` probabilities of the same shape.
    alpha: weight of :math:`H(q, p)`, in ``[0, 1]``.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``; ``inf`` when either support misses mass of the other.
  """
  if _checks.is_concrete(alpha) and not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
  return (1.0 - alpha) * cross_entropy(p, q, base=base) + alpha * cross_entropy(q, p, base=base)


# --------------------------------------------------------------------------- Renyi, Tsallis


def renyi_entropy(p, alpha, base: Optional[float] = None) -> Array:
  r"""Renyi entropy :math:`H_\alpha(p) = \frac{1}{1-\alpha}\log\sum_i p_i^\alpha`.

  Renyi (1961), eq. (1.4). Limits: :math:`\alpha=0` gives log of the support size
  (Hartley), :math:`\alpha=1` Shannon, :math:`\alpha=\infty` the min-entropy
  :math:`-\log\max_i p_i`. Non-increasing in :math:`\alpha`.

  Args:
    p: ``[..., n]`` probabilities.
    alpha: order, a scalar or an array broadcastable to ``p.shape[:-1]``; ``>= 0``,
      ``inf`` allowed.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``, in nats (or ``base`` units).
  """
  p = _prepare(p, "p")
  _checks.check_order(alpha, "alpha")
  _checks.check_base(base)
  a = jnp.asarray(alpha, dtype=p.dtype)
  pos = p > 0
  logp = jnp.log(jnp.where(pos, p, 1.0))
  # log sum_i p_i^a = logsumexp(a log p_i) over the support.
  is_one = a == 1.0
  is_inf = jnp.isinf(a)
  a_safe = jnp.where(is_one | is_inf, 0.5, a)[..., None]
  lse = jax.nn.logsumexp(jnp.where(pos, a_safe * logp, -jnp.inf), axis=-1)
  generic = lse / (1.0 - a_safe[..., 0])
  # Near alpha = 1 the division amplifies rounding; use log sum p^a = log1p(sum p
  # expm1((a - 1) log p)), exact for normalised p and accurate as a -> 1.
  delta = a_safe - 1.0
  s = jnp.sum(jnp.where(pos, p * jnp.expm1(delta * logp), 0.0), axis=-1)
  near_one = -jnp.log1p(s) / delta[..., 0]
  generic = jnp.where(jnp.abs(delta[..., 0]) < 0.5, near_one, generic)
  shannon = jnp.sum(_neg_xlogx(p), axis=-1)
  min_entropy = -jnp.max(jnp.where(pos, logp, -jnp.inf), axis=-1)
  out = jnp.where(is_one, shannon, jnp.where(is_inf, min_entropy, generic))
  return _checks.to_base(out, base)


def tsallis_entropy(p, q) -> Array:
  r"""Tsallis entropy :math:`S_q(p) = \frac{1 - \sum_i p_i^q}{q - 1}` (k = 1).

  Tsallis (1988), J. Stat. Phys. 52, eq. (1). :math:`q \to 1` gives Shannon (nats).
  Pseudo-additive: for independent A, B,
  :math:`S_q(A,B) = S_q(A) + S_q(B) + (1-q) S_q(A) S_q(B)`.

  Args:
    p: ``[..., n]`` probabilities.
    q: entropic index, scalar or broadcastable to ``p.shape[:-1]``, ``>= 0``.

  Returns:
    ``[...]``, dimensionless (nats at ``q = 1``).
  """
  p = _prepare(p, "p")
  _checks.check_order(q, "q")
  qq = jnp.asarray(q, dtype=p.dtype)
  is_one = qq == 1.0
  q_safe = jnp.where(is_one, 2.0, qq)[..., None]
  pos = p > 0
  logp = jnp.log(jnp.where(pos, p, 1.0))
  power_sum = jnp.sum(jnp.where(pos, jnp.exp(q_safe * logp), 0.0), axis=-1)
  generic = (1.0 - power_sum) / (q_safe[..., 0] - 1.0)
  shannon = jnp.sum(_neg_xlogx(p), axis=-1)
  return jnp.where(is_one, shannon, generic)


# --------------------------------------------------------------------------- joint measures


def _prepare_joint(pxy, name: str, nvars: int) -> Array:
  arr = _checks.as_float_array(pxy, name)
  _checks.check_rank_at_least(arr, nvars, name)
  _checks.check_probabilities(arr, name, axis=tuple(range(arr.ndim - nvars, arr.ndim)))
  return arr


def joint_entropy(pxy, base: Optional[float] = None) -> Array:
  r"""Joint entropy :math:`H(X, Y) = -\sum_{x,y} p(x,y)\log p(x,y)` (Cover & Thomas eq. 2.8).

  Args:
    pxy: ``[..., x, y]`` joint probabilities summing to 1 over the last two axes.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``.
  """
  pxy = _prepare_joint(pxy, "pxy", 2)
  _checks.check_base(base)
  return _checks.to_base(jnp.sum(_neg_xlogx(pxy), axis=(-2, -1)), base)


def conditional_entropy(pxy, base: Optional[float] = None) -> Array:
  r"""Conditional entropy :math:`H(Y|X) = H(X,Y) - H(X)`, X on axis -2 (Cover & Thomas eq. 2.10).

  Computed as :math:`-\sum_{x,y} p(x,y)\log p(y|x)`, so it is ``>= 0`` up to rounding.

  Args:
    pxy: ``[..., x, y]`` joint probabilities.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``.
  """
  pxy = _prepare_joint(pxy, "pxy", 2)
  _checks.check_base(base)
  px = jnp.sum(pxy, axis=-1, keepdims=True)
  pos = pxy > 0
  log_cond = jnp.log(jnp.where(pos, pxy, 1.0)) - jnp.log(jnp.where(pos, px, 1.0))
  h = -jnp.sum(jnp.where(pos, pxy * log_cond, 0.0), axis=(-2, -1))
  return _checks.to_base(jnp.maximum(h, 0.0), base)


def mutual_information(pxy, base: Optional[float] = None) -> Array:
  r"""Mutual information :math:`I(X;Y) = D(p_{XY} \| p_X p_Y)` (Cover & Thomas eq. 2.28).

  Args:
    pxy: ``[..., x, y]`` joint probabilities.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``, ``>= 0`` and ``<= min(H(X), H(Y))``.
  """
  pxy = _prepare_joint(pxy, "pxy", 2)
  _checks.check_base(base)
  px = jnp.sum(pxy, axis=-1, keepdims=True)
  py = jnp.sum(pxy, axis=-2, keepdims=True)
  pos = pxy > 0
  ratio = (jnp.log(jnp.where(pos, pxy, 1.0)) - jnp.log(jnp.where(pos, px, 1.0))
           - jnp.log(jnp.where(pos, py, 1.0)))
  mi = jnp.sum(jnp.where(pos, pxy * ratio, 0.0), axis=(-2, -1))
  return _checks.to_base(jnp.maximum(mi, 0.0), base)


def conditional_mutual_information(pxyz, base: Optional[float] = None) -> Array:
  r"""Conditional mutual information :math:`I(X;Y|Z)` (Cover & Thomas eq. 2.60).

  :math:`\sum_{x,y,z} p(x,y,z)\log\frac{p(x,y,z)\,p(z)}{p(x,z)\,p(y,z)}`.

  Args:
    pxyz: ``[..., x, y, z]`` joint probabilities summing to 1 over the last three axes.
    base: log base; ``None`` for nats.

  Returns:
    ``[...]``, ``>= 0``.
  """
  pxyz = _prepare_joint(pxyz, "pxyz", 3)
  _checks.check_base(base)
  pxz = jnp.sum(pxyz, axis=-2, keepdims=True)
  pyz = jnp.sum(pxyz, axis=-3, keepdims=True)
  pz = jnp.sum(pxyz, axis=(-3, -2), keepdims=True)
  pos = pxyz > 0

  def lg(a):
    return jnp.log(jnp.where(pos, a, 1.0))

  ratio = lg(pxyz) + lg(pz) - lg(pxz) - lg(pyz)
  cmi = jnp.sum(jnp.where(pos, pxyz * ratio, 0.0), axis=(-3, -2, -1))
  return _checks.to_base(jnp.maximum(cmi, 0.0), base)


__all__: Sequence[str] = (
    "entropy",
    "entropy_from_logits",
    "cross_entropy",
    "kl_divergence",
    "js_divergence",
    "symmetric_cross_entropy",
    "renyi_entropy",
    "tsallis_entropy",
    "joint_entropy",
    "conditional_entropy",
    "mutual_information",
    "conditional_mutual_information",
)
