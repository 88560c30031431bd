r"""Iterative minimum-entropy coupling (iMEC): an encoder/decoder pair for large messages.

Schroeder de Witt, Sokota, Kolter, Foerster & Strohmeier, "Perfectly secure
steganography using minimum entropy coupling", ICLR 2023 (arXiv:2210.14889; the iMEC
encoder and decoder). A uniformly distributed message ``M`` is hidden in a sequence of tokens
:math:`x_1, x_2, \dots` whose distributions :math:`p_1, p_2, \dots` (a language model's
next-token distribution, a policy's action distribution, ...) are known to both sides.
The message space is too large to enumerate, so it is factored into blocks
:math:`M = (M_1, \dots, M_K)` of ``block_bits`` bits each, and both sides keep a belief
:math:`\mu_k` over every block (initially uniform). At step ``t``:

1. pick the block with the largest belief entropy, :math:`k = \arg\max_k H(\mu_k)`
   (lowest index on ties);
2. couple :math:`\mu_k` with :math:`p_t` by the greedy minimum-entropy coupling
   :math:`\gamma` (Kocaoglu et al., AAAI 2017, Algorithm 1;
   :func:`entropylab.coupling.greedy_mec_sparse`);
3. the **encoder** samples :math:`x_t \sim \gamma(\cdot \mid m_k)`, the row of the
   block's true value;
4. both sides set :math:`\mu_k \leftarrow \gamma(\cdot, x_t) / p_t(x_t)`, the posterior
   of the block given the token.

Because the coupling's column marginal is :math:`p_t`, a uniform message makes every
token distributed exactly as :math:`p_t` given the past (perfect security: their result
that a procedure induced by couplings is perfectly secure), and the product of the block
beliefs is the exact posterior of ``M`` given the tokens. The encoder can stop once every block's belief entropy is below a
threshold: the receiver's MAP guess is then the message.

The decoder recomputes the same couplings from the same beliefs and distributions, so
encoder and decoder must run the same computation (same dtype, same platform): a
last-bit difference in a coupling can desynchronise them.

Conventions: beliefs ``[K, 2**block_bits]``; entropies in **bits**; messages as int32
block values ``[K]`` (:func:`message_to_blocks` splits an integer message). Every
function is pure, jit-able and vmap-able (``jax.vmap`` over messages, keys or whole
sequences); the step functions compose into any ``lax.scan`` where the next
distribution depends on the tokens so far (see :func:`imec_encode_step`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.coupling import mec as _mec
from entropylab.info import _checks

Array = jax.Array

# Beliefs are dense [K, 2**block_bits] arrays and every step couples one of them.
MAX_BLOCK_BITS = 24
DEFAULT_THRESHOLD_BITS = 1e-9  # the authors' belief_entropy_threshold (10E-10)


class IMECState(NamedTuple):
  """Shared state of iMEC encoder and decoder.

  Attributes:
    beliefs: ``[K, 2**block_bits]`` the belief over each message block; rows sum to 1.
  """

  beliefs: Array


class IMECTrace(NamedTuple):
  """What :func:`imec_encode` produced.

  Attributes:
    tokens: ``[T]`` int32, the sampled tokens (the covertext).
    blocks: ``[T]`` int32, the block coupled at each step.
    entropies: ``[T, K]`` the block belief entropies in bits after each step (the same
      on the receiver's side).
    num_steps: ``[]`` int32, the fewest steps after which every block entropy is at
      most the threshold (``T`` if that never happened; see ``done``). Sending
      ``tokens[:num_steps]`` suffices for decoding.
    done: ``[]`` bool, whether the threshold was reached within ``T`` steps.
    state: the final :class:`IMECState`.
  """

  tokens: Array
  blocks: Array
  entropies: Array
  num_steps: Array
  done: Array
  state: IMECState


# --------------------------------------------------------------------------- checks


def _check_block_bits(block_bits) -> int:
  if isinstance(block_bits, bool) or not isinstance(block_bits, (int, np.integer)):
    raise TypeError(f"block_bits must be an int, got {type(block_bits).__name__}")
  if not 1 <= block_bits <= MAX_BLOCK_BITS:
    raise ValueError(f"block_bits must be between 1 and {MAX_BLOCK_BITS}, got {block_bits}")
  return int(block_bits)


def _check_num_blocks(num_blocks) -> int:
  if isinstance(num_blocks, bool) or not isinstance(num_blocks, (int, np.integer)):
    raise TypeError(f"num_blocks must be an int, got {type(num_blocks).__name__}")
  if num_blocks < 1:
    raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
  return int(num_blocks)


def _as_int_array(x, name: str, shape, high: int) -> Array:
  """Integer array with values in ``[0, high)`` (checked if concrete).

  ``shape``: the required shape, or an int: the required number of dimensions.
  """
  if isinstance(x, (str, bytes)) or x is None:
    raise TypeError(f"{name} must be an array of ints, got {type(x).__name__}")
  arr = jnp.asarray(x)
  if not jnp.issubdtype(arr.dtype, jnp.integer):
    raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
  if isinstance(shape, int):
    if arr.ndim != shape or arr.size == 0:
      raise ValueError(f"{name} must be a non-empty array with {shape} dimension(s), "
                       f"got shape {arr.shape}")
  elif arr.shape != shape:
    raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
  if _checks.is_concrete(arr):
    v = np.asarray(arr)
    if v.size and (v.min() < 0 or v.max() >= high):
      raise ValueError(f"{name} must hold values in [0, {high}), got min {v.min()} and max {v.max()}")
  return arr.astype(jnp.int32)


def _prepare_dist(p, name: str, ndim: int) -> Array:
  arr = _checks.as_float_array(p, name)
  if arr.ndim != ndim:
    raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
  _checks.check_probabilities(arr, name)
  if jnp.finfo(arr.dtype).bits < 32:
    arr = arr.astype(jnp.float32)
  return arr


def _prepare_state(state) -> IMECState:
  if not isinstance(state, IMECState):
    raise TypeError(f"state must be an IMECState (from imec_init), got {type(state).__name__}")
  beliefs = _checks.as_float_array(state.beliefs, "state.beliefs")
  if beliefs.ndim != 2:
    raise ValueError(f"state.beliefs must be [num_blocks, block_size], got shape {beliefs.shape}")
  size = beliefs.shape[1]
  if size < 2 or size & (size - 1):
    raise ValueError(f"state.beliefs rows must have a power-of-two length >= 2, got {size}")
  _checks.check_probabilities(beliefs, "state.beliefs")
  return IMECState(beliefs)


def _check_threshold(threshold) -> float:
  t = float(threshold)
  if not (t >= 0 and math.isfinite(t)):
    raise ValueError(f"threshold must be a finite number >= 0 (bits), got {threshold}")
  return t


# --------------------------------------------------------------------------- messages


def message_to_blocks(message, block_bits: int, num_blocks: int) -> Array:
  """Splits integer messages into ``num_blocks`` blocks of ``block_bits`` bits.

  Big-endian: block 0 holds the most significant bits (the order in which the
  authors' encoder reads a bit string).

  Args:
    message: ``[...]`` non-negative ints below ``2**(block_bits * num_blocks)``.
    block_bits: bits per block, 1 to 24.
    num_blocks: number of blocks; ``block_bits * num_blocks`` must fit the integer
      dtype (at most 31 bits with int32, 63 with int64 under ``jax_enable_x64``).

  Returns:
    ``[..., num_blocks]`` int32 block values in ``[0, 2**block_bits)``.
  """
  b = _check_block_bits(block_bits)
  k = _check_num_blocks(num_blocks)
  arr = jnp.asarray(message)
  if not jnp.issubdtype(arr.dtype, jnp.integer):
    raise TypeError(f"message must have an integer dtype, got {arr.dtype}")
  width = jnp.iinfo(arr.dtype).bits - (1 if jnp.issubdtype(arr.dtype, jnp.signedinteger) else 0)
  if b * k > width:
    raise ValueError(f"block_bits * num_blocks = {b * k} bits do not fit message's dtype "
                     f"{arr.dtype} ({width} value bits)")
  if _checks.is_concrete(arr) and arr.size:
    v = np.asarray(arr)
    if np.any(v < 0) or (b * k < width and np.any(v >> (b * k))):
      raise ValueError(f"message must hold values in [0, 2**{b * k}), got min {v.min()} "
                       f"and max {v.max()}")
  shifts = jnp.asarray([(k - 1 - i) * b for i in range(k)], arr.dtype)
  return ((arr[..., None] >> shifts) & ((1 << b) - 1)).astype(jnp.int32)


def blocks_to_message(blocks, block_bits: int, dtype=jnp.int32) -> Array:
  """Inverse of :func:`message_to_blocks`: ``[..., K]`` block values -> ``[...]`` ints."""
  b = _check_block_bits(block_bits)
  arr = jnp.asarray(blocks)
  if not jnp.issubdtype(arr.dtype, jnp.integer):
    raise TypeError(f"blocks must have an integer dtype, got {arr.dtype}")
  if arr.ndim < 1:
    raise ValueError(f"blocks must have a last axis of blocks, got shape {arr.shape}")
  k = arr.shape[-1]
  width = jnp.iinfo(dtype).bits - (1 if jnp.issubdtype(dtype, jnp.signedinteger) else 0)
  if b * k > width:
    raise ValueError(f"{k} blocks of {b} bits do not fit dtype {jnp.dtype(dtype)}")
  out = jnp.zeros(arr.shape[:-1], dtype)
  for i in range(k):
    out = (out << b) | arr[..., i].astype(dtype)
  return out


# --------------------------------------------------------------------------- core


def _block_entropies(beliefs: Array) -> Array:
  """``[K, n]`` beliefs -> ``[K]`` entropies in bits."""
  return jnp.sum(_mec._neg_xlogx(beliefs), axis=-1) / jnp.log(jnp.asarray(2.0, beliefs.dtype))


class _Step(NamedTuple):
  """This step's coupling: the block coupled next and its greedy cells with ``p``."""

  beliefs: Array  # [K, n] in the common dtype
  p: Array        # [m] in the common dtype
  block: Array    # [] int32, the highest-entropy block (lowest index on ties)
  rows: Array     # [S] block values of the cells
  cols: Array     # [S] tokens of the cells
  mass: Array     # [S] cell masses (0 for unused steps)


def _couple_next(beliefs: Array, p: Array) -> _Step:
  """Both sides' shared computation: pick the block, couple its belief with ``p``."""
  dtype = jnp.result_type(beliefs.dtype, p.dtype)
  beliefs, p = beliefs.astype(dtype), p.astype(dtype)
  block = jnp.argmax(_block_entropies(beliefs)).astype(jnp.int32)
  index, mass = _mec._greedy_sparse(beliefs[block], p)
  return _Step(beliefs, p, block, index[:, 0], index[:, 1], mass)


def _update(step: _Step, token: Array) -> Array:
  """The beliefs with the coupled block set to the normalised column ``token``."""
  column = jnp.where(step.cols == token, step.mass, 0.0)
  post = jnp.zeros(step.beliefs.shape[1], step.beliefs.dtype).at[step.rows].add(column)
  total = jnp.sum(post)
  # A token outside the coupling's support (p[token] = 0) carries no information about
  # the block: keep the old belief rather than divide by zero.
  new = jnp.where(total > 0, post / jnp.where(total > 0, total, 1.0), step.beliefs[step.block])
  return step.beliefs.at[step.block].set(new)


@jax.jit
def _encode_step(key: Array, beliefs: Array, message: Array, p: Array):
  step = _couple_next(beliefs, p)
  weights = jnp.where(step.rows == message[step.block], step.mass, 0.0)
  key_cell, key_fallback = jax.random.split(key)
  cell = jax.random.categorical(key_cell, jnp.log(weights))
  # The true value always keeps positive belief (its row is where the last token was
  # drawn from), so its row is never empty; the fallback only guards against underflow.
  fallback = jax.random.categorical(key_fallback, jnp.log(step.p)).astype(jnp.int32)
  token = jnp.where(jnp.any(weights > 0), step.cols[cell], fallback)
  return token, _update(step, token), step.block


@jax.jit
def _decode_step(beliefs: Array, p: Array, token: Array):
  step = _couple_next(beliefs, p)
  return _update(step, token), step.block


@jax.jit
def _token_distribution(beliefs: Array, message: Array, p: Array) -> Array:
  step = _couple_next(beliefs, p)
  weights = jnp.where(step.rows == message[step.block], step.mass, 0.0)
  row = jnp.zeros(step.p.shape[0], step.p.dtype).at[step.cols].add(weights)
  total = jnp.sum(row)
  return jnp.where(total > 0, row / jnp.where(total > 0, total, 1.0), step.p)


# --------------------------------------------------------------------------- public steps


def imec_init(num_blocks: int, block_bits: int, dtype=jnp.float32) -> IMECState:
  """Uniform beliefs over ``num_blocks`` blocks of ``block_bits`` bits.

  Args:
    num_blocks: ``K >= 1``.
    block_bits: bits per block ``b``, 1 to 24 (each belief has ``2**b`` entries and
      every step couples one of them: larger blocks cost more per step).
    dtype: float dtype of the beliefs; use float64 (``jax_enable_x64``) for long
      messages, as the authors compute in extended precision.

  Returns:
    :class:`IMECState` with ``beliefs [K, 2**b]`` all equal to ``2**-b``.
  """
  k = _check_num_blocks(num_blocks)
  b = _check_block_bits(block_bits)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a float dtype, got {dtype}")
  size = 1 << b
  return IMECState(jnp.full((k, size), 1.0 / size, dtype))


def imec_block_entropies(state: IMECState) -> Array:
  """``[K]`` entropies of the block beliefs, in bits (:math:`\\sum_k` is the
  remaining uncertainty about the message)."""
  state = _prepare_state(state)
  return _block_entropies(state.beliefs)


def imec_token_distribution(state: IMECState, message, p) -> Array:
  r"""The distribution the encoder samples the next token from.

  :math:`\gamma(\cdot \mid m_k) = \gamma(m_k, \cdot)/\mu_k(m_k)` for the block ``k``
  coupled next (Schroeder de Witt et al. 2023, the iMEC encoder). Averaged over the belief,
  :math:`\sum_v \mu_k(v)\,\gamma(\cdot \mid v) = p` (the coupling's column marginal):
  this is the perfect-security property, and what the tests check.

  Args:
    state: :class:`IMECState` with ``beliefs [K, n]``.
    message: ``[K]`` int block values in ``[0, n)``.
    p: ``[m]`` the next token's distribution.

  Returns:
    ``[m]`` the encoder's conditional token distribution.
  """
  state = _prepare_state(state)
  k, n = state.beliefs.shape
  message = _as_int_array(message, "message", (k,), n)
  p = _prepare_dist(p, "p", 1)
  return _token_distribution(state.beliefs, message, p)


def imec_encode_step(key: Array, state: IMECState, message, p) -> tuple[Array, IMECState]:
  r"""One iMEC encoder step: sample a token carrying information about ``message``.

  Schroeder de Witt et al. (ICLR 2023), one iteration of the iMEC encoder: couple the
  highest-entropy block belief :math:`\mu_k` with ``p`` (greedy MEC), sample
  :math:`x \sim \gamma(\cdot \mid m_k)` and update :math:`\mu_k \leftarrow
  \gamma(\cdot, x)/p(x)`. The update equals :func:`imec_decode_step` on the same token,
  so the encoder always knows the receiver's beliefs.

  For distributions that depend on the tokens so far, scan the step::

      def body(carry, key):
        state, ctx = carry
        p = next_distribution(ctx)
        token, state = imec_encode_step(key, state, message, p)
        return (state, advance(ctx, token)), token

  Args:
    key: a ``jax.random`` key.
    state: :class:`IMECState` with ``beliefs [K, n]``.
    message: ``[K]`` int block values in ``[0, n)``.
    p: ``[m]`` the token distribution at this step.

  Returns:
    ``(token, state)``: an int32 scalar in ``[0, m)`` and the updated state.
  """
  state = _prepare_state(state)
  k, n = state.beliefs.shape
  message = _as_int_array(message, "message", (k,), n)
  p = _prepare_dist(p, "p", 1)
  token, beliefs, _ = _encode_step(key, state.beliefs, message, p)
  return token, IMECState(beliefs)


def imec_decode_step(state: IMECState, p, token) -> IMECState:
  r"""One iMEC decoder step: update the block beliefs from an observed token.

  Schroeder de Witt et al. (ICLR 2023), one iteration of the iMEC decoder: couple the
  highest-entropy block belief :math:`\mu_k` with ``p`` exactly as the encoder did and
  set :math:`\mu_k \leftarrow \gamma(\cdot, x)/p(x)`.

  Args:
    state: :class:`IMECState` with ``beliefs [K, n]``.
    p: ``[m]`` the token distribution at this step (the encoder's).
    token: int scalar in ``[0, m)``. A concrete token with ``p[token] = 0`` raises
      ``ValueError``; under ``jit`` such a token leaves the beliefs unchanged.

  Returns:
    The updated :class:`IMECState`.
  """
  state = _prepare_state(state)
  p = _prepare_dist(p, "p", 1)
  token = _as_int_array(token, "token", (), p.shape[0])
  if _checks.is_concrete(token) and _checks.is_concrete(p) and float(p[int(token)]) == 0.0:
    raise ValueError(f"token {int(token)} has probability 0 under p: it cannot have been "
                     "sampled by the encoder")
  beliefs, _ = _decode_step(state.beliefs, p, token)
  return IMECState(beliefs)


def imec_decode_message(state: IMECState) -> Array:
  """The receiver's MAP guess: ``[K]`` int32, the most likely value of each block."""
  state = _prepare_state(state)
  return jnp.argmax(state.beliefs, axis=-1).astype(jnp.int32)


# --------------------------------------------------------------------------- sequences


@jax.jit
def _encode_sequence(key: Array, beliefs: Array, message: Array, dists: Array,
                     threshold: Array):
  keys = jax.random.split(key, dists.shape[0])

  def body(beliefs, xs):
    k, p = xs
    token, beliefs, block = _encode_step(k, beliefs, message, p)
    return beliefs, (token, block, _block_entropies(beliefs))

  beliefs, (tokens, blocks, ents) = lax.scan(body, beliefs, (keys, dists))
  finished = jnp.max(ents, axis=-1) <= threshold
  done = jnp.any(finished)
  num_steps = jnp.where(done, jnp.argmax(finished) + 1, dists.shape[0]).astype(jnp.int32)
  return tokens, blocks, ents, num_steps, done, beliefs


@jax.jit
def _decode_sequence(beliefs: Array, dists: Array, tokens: Array):
  def body(beliefs, xs):
    p, token = xs
    beliefs, _ = _decode_step(beliefs, p, token)
    return beliefs, None

  beliefs, _ = lax.scan(body, beliefs, (dists, tokens))
  return beliefs


def imec_encode(key: Array, message, dists, block_bits: int,
                threshold: float = DEFAULT_THRESHOLD_BITS) -> IMECTrace:
  r"""iMEC encoder over a sequence of known token distributions.

  Schroeder de Witt et al. (ICLR 2023), the iMEC encoder, run for ``T`` steps as one
  ``lax.scan`` (see :func:`imec_encode_step` for the step and for distributions that
  depend on past tokens). With a uniformly random message every token is distributed
  exactly as ``dists[t]``; the message is recovered by :func:`imec_decode` from
  ``tokens[:num_steps]`` once ``done``.

  Args:
    key: a ``jax.random`` key.
    message: ``[K]`` int block values in ``[0, 2**block_bits)``
      (:func:`message_to_blocks`); the scheme is secure for uniformly random messages
      (encrypt first).
    dists: ``[T, m]`` the token distribution at each step.
    block_bits: bits per block ``b`` (beliefs have ``2**b`` entries), 1 to 24.
    threshold: stop criterion in bits: ``num_steps`` is the first step after which
      every block's belief entropy is at most this (default ``1e-9``, the authors').

  Returns:
    :class:`IMECTrace` (``tokens [T]``, ``blocks [T]``, ``entropies [T, K]``,
    ``num_steps``, ``done``, ``state``). Beliefs are in ``dists``' float dtype.
  """
  b = _check_block_bits(block_bits)
  dists = _prepare_dist(dists, "dists", 2)
  message = _as_int_array(message, "message", 1, 1 << b)
  t = _check_threshold(threshold)
  state = imec_init(message.shape[0], b, dists.dtype)
  tokens, blocks, ents, num_steps, done, beliefs = _encode_sequence(
      key, state.beliefs, message, dists, jnp.asarray(t, dists.dtype))
  return IMECTrace(tokens, blocks, ents, num_steps, done, IMECState(beliefs))


def imec_decode(tokens, dists, block_bits: int, num_blocks: int) -> tuple[Array, IMECState]:
  r"""iMEC decoder: recover the message blocks from the tokens.

  Schroeder de Witt et al. (ICLR 2023), the iMEC decoder: replay the encoder's block choices
  and couplings from uniform beliefs and the observed tokens, then take each block's
  MAP value. The final beliefs are the exact posterior of the message given the
  tokens (the product of the block beliefs).

  Args:
    tokens: ``[T]`` int tokens in ``[0, m)``.
    dists: ``[T, m]`` the distributions the encoder used (same dtype and platform).
    block_bits: bits per block, as in :func:`imec_encode`.
    num_blocks: ``K``, as in :func:`imec_encode`.

  Returns:
    ``(blocks, state)``: ``[K]`` int32 MAP block values and the final
    :class:`IMECState`.
  """
  b = _check_block_bits(block_bits)
  k = _check_num_blocks(num_blocks)
  dists = _prepare_dist(dists, "dists", 2)
  tokens = _as_int_array(tokens, "tokens", (dists.shape[0],), dists.shape[1])
  if _checks.is_concrete(tokens) and _checks.is_concrete(dists):
    probs = np.asarray(dists)[np.arange(dists.shape[0]), np.asarray(tokens)]
    if np.any(probs == 0):
      t = int(np.argmax(probs == 0))
      raise ValueError(f"tokens[{t}] = {int(tokens[t])} has probability 0 under dists[{t}]")
  state = imec_init(k, b, dists.dtype)
  beliefs = _decode_sequence(state.beliefs, dists, tokens)
  return jnp.argmax(beliefs, axis=-1).astype(jnp.int32), IMECState(beliefs)


__all__ = [
    "IMECState",
    "IMECTrace",
    "blocks_to_message",
    "imec_block_entropies",
    "imec_decode",
    "imec_decode_message",
    "imec_decode_step",
    "imec_encode",
    "imec_encode_step",
    "imec_init",
    "imec_token_distribution",
    "message_to_blocks",
]
