"""Confidence gain and CK-PLUG: entropy-triggered control of knowledge reliance.

Bi et al., "Parameters vs. Context: Fine-Grained Control of Knowledge Reliance in
Language Models" (arXiv:2503.15888, 2025), the CK-PLUG method.
A language model predicts the next token twice: from the query alone (the
*parametric* prediction :math:`p(x|X_q)`) and from retrieved context plus query (the
*contextual* prediction :math:`p(x|X_r+X_q)`). Where adding the context makes the
model less certain, the two sources disagree; at those positions CK-PLUG mixes the
log-probabilities with one weight ``alpha``: ``alpha = 1`` follows the parameters,
``alpha = 0`` the context.

Conventions (all functions):

* Logits lie along the last axis (``[..., vocab]``) unless an ``axis`` argument says
  otherwise; leading axes are batch axes (batch, sequence position, ...).
* Probabilities are ``softmax(logits)`` and log-probabilities ``log_softmax(logits)``;
  ``log(softmax)`` is never formed. ``-inf`` logits mask tokens (probability 0); NaN and
  ``+inf`` are rejected, and every distribution needs at least one finite logit.
* Entropies in nats by default (``base=2`` gives bits, the paper's eq. 2-3). Both sides
  of the CK-PLUG trigger and both parts of the adaptive weight scale alike with the log
  base, so neither depends on it. Output log-probabilities are natural logs.
* Concrete inputs are validated eagerly and a ``ValueError``/``TypeError`` names the
  argument. Inside ``jit``/``vmap`` only the static checks (dtype, shapes, ``top_k``) run.
* Pure ``jnp``: jit-able, vmap-able, and differentiable with finite gradients for
  finite logits.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks
from entropylab.info.discrete import entropy_from_logits

Array = jax.Array


# --------------------------------------------------------------------------- validation


def _as_logits(x, name: str) -> Array:
  """Floating array of logits; ``TypeError`` for non-numeric or non-float input."""
  arr = _checks.as_float_array(x, name)
  raw_dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  if not jnp.issubdtype(raw_dtype, jnp.floating):
    raise TypeError(f"{name} must be floating-point logits, got dtype {raw_dtype} "
                    "(integer input is usually token ids, not logits)")
  _checks.check_rank_at_least(arr, 1, name)
  return arr


def _check_logit_values(arr: Array, name: str, axis: int) -> None:
  """NaN, +inf and all -inf distributions are errors (concrete arrays only)."""
  if arr.shape[axis] == 0:
    raise ValueError(f"{name} has an empty vocabulary axis (shape {arr.shape})")
  if not _checks.is_concrete(arr) or arr.size == 0:
    return
  v = np.asarray(arr)
  if v.dtype not in (np.float32, np.float64):
    v = v.astype(np.float32)
  if np.any(np.isnan(v)):
    raise ValueError(f"{name} contains NaN entries")
  if np.any(v == np.inf):
    raise ValueError(f"{name} contains +inf entries (mask a token with -inf instead)")
  if np.any(np.all(v == -np.inf, axis=axis)):
    raise ValueError(f"{name} has a distribution whose logits are all -inf")


def _prepare_pair(logits_param, logits_ctx, axis: int):
  """Validates both logits arrays (types, shapes, values) and promotes them to one dtype."""
  lp = _as_logits(logits_param, "logits_param")
  lc = _as_logits(logits_ctx, "logits_ctx")
  _checks.check_same_shape(lp, lc, "logits_param", "logits_ctx")
  ax = _checks.check_axis(lp, axis, "logits_param")
  _check_logit_values(lp, "logits_param", ax)
  _check_logit_values(lc, "logits_ctx", ax)
  dtype = jnp.result_type(lp, lc)
  return lp.astype(dtype), lc.astype(dtype), ax


def _batch_param(value, name: str, batch_shape, dtype) -> Array:
  """A real scalar or array broadcastable to ``batch_shape``; finite when concrete."""
  if value is None:
    raise TypeError(f"{name} must be a number or an array of numbers, got None")
  arr = _checks.as_float_array(value, name)
  try:
    shape = jnp.broadcast_shapes(arr.shape, tuple(batch_shape))
  except ValueError:
    shape = None
  if shape != tuple(batch_shape):
    raise ValueError(
        f"{name} of shape {arr.shape} does not broadcast to the batch shape {tuple(batch_shape)}")
  if _checks.is_concrete(arr) and arr.size:
    v = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(v)):
      raise ValueError(f"{name} must be finite, got {value}")
  return arr.astype(dtype)


def _check_top_k(top_k, vocab: int) -> int:
  if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)):
    raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
  if not 1 <= top_k <= vocab:
    raise ValueError(f"top_k must lie in [1, vocab] = [1, {vocab}], got {top_k}")
  return int(top_k)


# --------------------------------------------------------------------------- helpers


def _head(logits: Array, k: int) -> Array:
  """Tokens whose logit is at least the k-th largest (ties included), and finite.

  Ranking raw logits gives the same order as ranking probabilities, without the
  rounding of ``log_softmax`` that could merge near-ties.
  """
  x = lax.stop_gradient(logits)
  kth = lax.top_k(x, k)[0][..., k - 1:k]
  return (x >= kth) & (x > -jnp.inf)


@functools.partial(jax.jit, static_argnames=("k", "adaptive"))
def _ckplug_core(lp: Array, lc: Array, a, eps: Array, k: int, adaptive: bool) -> Array:
  """Eqs. 4-11 on validated ``[..., vocab]`` logits (one compiled kernel per shape)."""
  batch_shape = lp.shape[:-1]
  # Clamped at 0: a rounding error below 0 must not fire the trigger at epsilon <= -1.
  h_para = jnp.maximum(entropy_from_logits(lp), 0.0)
  h_cont = jnp.maximum(entropy_from_logits(lc), 0.0)
  conflict = (h_para - h_cont) < eps * jnp.abs(h_cont)  # eq. 11 (eq. 7 at eps = 0)
  if adaptive:
    total = h_para + h_cont
    positive = total > 0
    a = jnp.where(positive, h_cont / jnp.where(positive, total, 1.0), 0.5)  # eq. 10
  a = jnp.broadcast_to(a, batch_shape)[..., None]

  log_para = jax.nn.log_softmax(lp, axis=-1)
  log_ctx = jax.nn.log_softmax(lc, axis=-1)
  support = jnp.isfinite(lp) & jnp.isfinite(lc)
  head = (_head(lp, k) | _head(lc, k)) & support  # eq. 9
  modulate = conflict & jnp.any(head, axis=-1)
  # q_para and q_cont (eqs. 5-6) where both are defined; 0 elsewhere keeps every
  # intermediate finite, so masked entries carry no NaN into the gradient.
  q_para = jnp.where(support, log_para, 0.0)
  q_cont = jnp.where(support, log_ctx, 0.0) - q_para
  mixed = a * q_para + (1.0 - a) * q_cont  # eq. 8
  rows = modulate[..., None]
  mixed = jnp.where(rows, jnp.where(head, mixed, -jnp.inf), 0.0)
  return jnp.where(rows, jax.nn.log_softmax(mixed, axis=-1), log_ctx)  # eq. 7


@functools.partial(jax.jit, static_argnames=("axis",))
def _confidence_gain_core(lp: Array, lc: Array, axis: int) -> Array:
  return entropy_from_logits(lp, axis=axis) - entropy_from_logits(lc, axis=axis)  # eq. 4


# --------------------------------------------------------------------------- public


def confidence_gain(logits_param, logits_ctx, axis: int = -1,
                    base: Optional[float] = None) -> Array:
  r"""Confidence gain :math:`CG = H(p(x|X_q)) - H(p(x|X_r+X_q))` (Bi et al. 2025, eq. 4).

  The entropy of the parametric next-token prediction minus that of the contextual
  one, with :math:`p = \mathrm{softmax}(\text{logits})` over the whole vocabulary
  (eq. 3). Negative values mean the context made the model less certain, the paper's
  sign of a knowledge conflict (eq. 7); positive values mean the context agreed with
  and sharpened the parametric prediction. Each entropy comes from
  :func:`entropylab.info.entropy_from_logits`, so no ``log(softmax)`` is formed.

  Args:
    logits_param: ``[..., vocab, ...]`` logits of :math:`p(x|X_q)` (query only).
    logits_ctx: logits of :math:`p(x|X_r+X_q)` (context + query), same shape.
    axis: the vocabulary axis.
    base: log base; ``None`` for nats, ``2`` for bits (the paper's eq. 2-3).

  Returns:
    ``logits_param.shape`` without ``axis``: CG in nats (or ``base`` units), in
    ``[-log vocab, log vocab]``. Gradients are finite for finite logits.
  """
  lp, lc, ax = _prepare_pair(logits_param, logits_ctx, axis)
  _checks.check_base(base)
  return _checks.to_base(_confidence_gain_core(lp, lc, ax), base)


def ckplug_logits(logits_param, logits_ctx, alpha, epsilon=-1.0, top_k: int = 10,
                  adaptive: bool = False) -> Array:
  r"""CK-PLUG next-token log-probabilities (Bi et al. 2025, eqs. 4-11).

  Per position, with :math:`p_{para} = \mathrm{softmax}(\text{logits\_param})`,
  :math:`p_{ctx} = \mathrm{softmax}(\text{logits\_ctx})` and entropies
  :math:`H_{para}, H_{cont}` over the whole vocabulary:

  * **Trigger** (eq. 4, 7, 11): the position is a conflict when
    :math:`CG = H_{para} - H_{cont} < \varepsilon \cdot |H_{cont}|`, i.e.
    :math:`H_{para} < (1 + \varepsilon) H_{cont}`. ``epsilon = 0`` is the main text's
    eq. 7 (:math:`CG < 0`); ``-1 < epsilon < 0`` modulates fewer positions, ``epsilon > 0``
    more. Since :math:`H_{para} \ge 0`, **no position ever triggers for
    epsilon <= -1**, which includes the default and every value the appendix lists
    (-2, -1, -1, -3 for LLaMA2-7B, LLaMA3-8B, Mistral-v0.3-7B, Qwen2.5-7B); see 1 below.
  * **Modulation** (eqs. 5, 6, 8): with :math:`q_{para} = \log p_{para}` and
    :math:`q_{cont} = \log(p_{ctx}/p_{para})`, a conflict position outputs
    :math:`\mathrm{softmax}(\alpha q_{para} + (1-\alpha) q_{cont})` on the head and
    probability 0 elsewhere. ``alpha = 1`` gives :math:`p_{para}` renormalised on the
    head; ``alpha = 0`` gives :math:`\propto p_{ctx}/p_{para}` (the context's
    contribution alone); ``alpha = 1/2`` gives :math:`\propto \sqrt{p_{ctx}}`.
  * **Head** (eq. 9): the union of the ``top_k`` most probable tokens of
    :math:`p_{para}` and of :math:`p_{ctx}` (ties with the k-th token included),
    restricted to tokens with non-zero probability under both (where
    :math:`q_{para}, q_{cont}` are defined). If that set is empty (a ``-inf`` mask
    leaves the two supports disjoint) the position is left as it is.
  * **Adaptive** (eq. 10): ``adaptive=True`` replaces ``alpha`` per position by
    :math:`H_{cont} / (H_{para} + H_{cont})` (``1/2`` where both entropies are 0), so the
    less certain source gets less weight.
  * Other positions keep :math:`p_{ctx}` (eq. 7): the output there is
    ``log_softmax(logits_ctx)``.

  Where the paper and the authors' released code differ, this function follows the
  paper, except for the head (see 3). The code read was GitHub ``byronBBL/CK-PLUG-Ano``
  (April 2025; the paper links ``byronBBL/CK-PLUG``): the ``_ck_decoding`` and
  ``relative_top_filter`` methods it adds to ``transformers`` 4.49
  ``generation/utils.py``, where ``input_ids`` carry the context prompt and
  ``input_ids_student`` the query-only prompt.

  1. Trigger sign. Eq. 11 reads :math:`CG < \varepsilon|H_{cont}|` and the appendix
     sets :math:`\varepsilon \in \{-2, -1, -1, -3\}` for "a stricter token
     filtering"; taken literally these never fire (:math:`CG \ge -H_{cont}`). The code
     tests ``CG + |H_cont| * e < 0`` with ``e = -1`` fixed for every model, i.e.
     :math:`CG < -e|H_{cont}| = +|H_{cont}|` (:math:`H_{para} < 2H_{cont}`): looser
     than eq. 7, so it also modulates positions where the context *raised* confidence by
     less than :math:`H_{cont}`. The code's threshold is eq. 11's with the sign of
     :math:`\varepsilon` flipped: ``epsilon=1.0`` here reproduces it. The default
     ``epsilon=-1.0`` is eq. 11 read literally with the paper's LLaMA3-8B value, and
     so returns ``log_softmax(logits_ctx)`` everywhere; pass ``epsilon=0.0`` for eq. 7 or
     ``epsilon=1.0`` for the released code.
  2. Trigger entropies. The code computes both entropies after cutting both
     distributions to its head (item 3; renormalised, ``log(p + 1e-9)``, natural log);
     the paper's eq. 3-4 and this function use the full vocabulary.
  3. Head. Eq. 9 ranks :math:`q_{cont} = \log(p_{ctx}/p_{para})` and keeps tokens
     *strictly* above the k-th, i.e. ``k - 1`` per side. The code ranks
     :math:`p_{ctx}` itself (as the adaptive plausibility constraint the paper cites
     does; a ratio ranking admits tokens improbable under both) and keeps the k-th,
     and additionally keeps every token with :math:`p \ge 0.01 \max p` when that set is
     larger than the top-k (``relative_top=0.01``, ``min_tokens_to_keep=select_top``,
     default 10). Here:
     top-``k`` of :math:`p_{para}` and of :math:`p_{ctx}`, k-th included, no relative
     rule.
  4. Non-conflict positions. The code cuts them to the head too (it filters the logits
     in place before branching); eq. 7 and this function keep the full
     :math:`p_{ctx}`. The greedy choice is the same either way.
  5. Adaptive weights. The code multiplies :math:`q_{para}` by
     :math:`2H_{cont}/(H_{cont} + \nu H_{para})` and :math:`q_{cont}` by
     :math:`2H_{para}/(H_{cont} + \nu H_{para})` with
     :math:`\nu = 1 + |H_{cont} - H_{para}|/(H_{cont} + H_{para})`: the same ratio as
     eq. 10 but a sum of weights other than 1, i.e. eq. 10's distribution at inverse
     temperature :math:`2(H_{cont} + H_{para})/(H_{cont} + \nu H_{para})` (2 when the
     entropies are equal). The argmax, which the code's greedy decoding uses, agrees.

  Args:
    logits_param: ``[..., vocab]`` logits of the parametric prediction
      :math:`p(x|X_q)` (query only). ``-inf`` masks a token.
    logits_ctx: ``[..., vocab]`` logits of the contextual prediction
      :math:`p(x|X_r+X_q)` (retrieved context + query), same shape.
    alpha: reliance on parametric knowledge, in ``[0, 1]``; a scalar or an array
      broadcastable to ``logits_param.shape[:-1]``. Ignored (may be ``None``) when
      ``adaptive`` is true.
    epsilon: detection threshold :math:`\varepsilon` of eq. 11 (dimensionless, a
      multiple of :math:`|H_{cont}|`); finite, a scalar or broadcastable to the batch
      shape. ``0`` gives eq. 7, ``1.0`` the released code's rule; ``<= -1`` (the
      default included) never triggers.
    top_k: ``k`` of eq. 9, a Python int in ``[1, vocab]`` (static under ``jit``).
    adaptive: use eq. 10's entropy ratio for ``alpha`` (a Python bool, static).

  Returns:
    ``[..., vocab]`` normalised log-probabilities in nats (``logsumexp`` over the last
    axis is 0), in the promoted dtype of the inputs; ``-inf`` for tokens with probability 0
    (outside the head at conflict positions, masked in ``logits_ctx`` elsewhere).
    Gradients are finite for finite logits (the head and trigger are piecewise
    constant and carry none).
  """
  lp, lc, _ = _prepare_pair(logits_param, logits_ctx, -1)
  if not isinstance(adaptive, (bool, np.bool_)):
    raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}")
  vocab = lp.shape[-1]
  k = _check_top_k(top_k, vocab)
  batch_shape = lp.shape[:-1]
  eps = _batch_param(epsilon, "epsilon", batch_shape, lp.dtype)
  a = None
  if not adaptive:
    a = _batch_param(alpha, "alpha", batch_shape, lp.dtype)
    if _checks.is_concrete(a) and a.size:
      v = np.asarray(a, dtype=np.float64)
      if np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
  return _ckplug_core(lp, lc, a, eps, k, bool(adaptive))


__all__: Sequence[str] = (
    "confidence_gain",
    "ckplug_logits",
)
