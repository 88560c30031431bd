r"""Markov coding games: send a message through the actions of a maximum-entropy policy.

In a Markov coding game (Sokota, Schroeder de Witt, Igl, Zintgraf, Torr, Strohmeier,
Kolter, Whiteson & Foerster, "Communicating via Markov decision processes", ICML 2022)
a sender knows a message :math:`m \sim p_M` and acts in an MDP; a receiver sees the
trajectory and must guess :math:`m` at the end. MEME, their method, first finds a
maximum-entropy policy :math:`\pi` (soft Q-value iteration, :func:`soft_q_iteration`),
then at every step couples the receiver's belief :math:`b_t` over messages with
:math:`\pi(\cdot \mid s_t)` by a minimum-entropy coupling :math:`p_t(m, a)`. The sender
draws its action from the row of its message, :math:`a_t \sim p_t(\cdot \mid m)`; the
receiver, who computes the same coupling from the same shared state, updates its belief
to the observed action's normalised column, :math:`b_{t+1}(m) \propto p_t(m, a_t)`, and
guesses :math:`\arg\max_m b_T(m)`. Since the coupling's action marginal is
:math:`\pi(\cdot \mid s_t)`, the actions are distributed as the policy's and the MDP
reward is that of :math:`\pi`.

MEC-B (Ebrahimi, Chen & Khisti, NeurIPS 2024, Section 5) adds a rate limit: when
:math:`H(b_t) > R` the belief is first compressed to a code :math:`T = g(M)` of entropy
at most :math:`R` bits (EBIM, their Algorithm 1, or the uniform quantiser baseline), and
the code, not the message, is coupled with the policy:
:math:`p_t(m, a) = p(m, t)\, p(t, a) / p(t)` (:func:`entropylab.coupling.mec_b`).
Messages that share a code send the same action distribution at that step.

All functions are pure ``jnp``; an episode is one ``lax.while_loop`` and
:func:`play_coding_game` vmaps it over messages and keys (and, given a
``jax.sharding.Mesh``, splits the episodes over its devices with ``shard_map``, each
device running its own loop). Rates and entropies are in bits; rewards in the
environment's units.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.sharding import Mesh, PartitionSpec

from entropylab.coupling import imec as _imec
from entropylab.coupling._sorting import stable_argsort
from entropylab.coupling.ebim import _code_order, _ebim_plan, _quantizer_bin_size
from entropylab import info
from entropylab.info import _checks

Array = jax.Array
COMPRESSION = ("ebim", "uniform", "none")


# --------------------------------------------------------------------------- policy


def soft_q_iteration(transitions, rewards, discount: float, beta, terminal=None,
                     iterations: int = 1000) -> tuple[Array, Array]:
  r"""Soft Q-value iteration of a tabular MDP and its maximum-entropy policy.

  Iterates (Sokota et al. 2022, MEME's marginal policy; the soft Bellman backup of
  Haarnoja et al. 2017)

  .. math:: Q(s,a) \leftarrow r(s,a) + \gamma \sum_{s'} P(s' \mid s,a)\,
     (1 - \mathrm{term}(s'))\, V(s'), \qquad
     V(s) = \beta \log \sum_a e^{Q(s,a)/\beta},

  from :math:`Q = 0` for ``iterations`` sweeps (a :math:`\gamma`-contraction: the
  error shrinks by :math:`\gamma` per sweep), and returns
  :math:`\pi(a \mid s) = \mathrm{softmax}_a(Q(s,\cdot)/\beta)`, the policy maximising
  the return plus :math:`\beta` times its entropy (nats). ``beta -> 0`` approaches
  ordinary value iteration and a greedy policy.

  Args:
    transitions: ``[S, A, S]`` probabilities :math:`P(s' \mid s, a)`.
    rewards: ``[S, A]`` expected immediate reward of taking ``a`` in ``s``.
    discount: :math:`\gamma \in [0, 1)`.
    beta: temperature :math:`\beta > 0` (reward units per nat); a scalar, may be traced.
    terminal: optional ``[S]`` bool, states after which nothing more is earned.
    iterations: number of sweeps (static).

  Returns:
    ``(q [S, A], policy [S, A])``.
  """
  p = jnp.asarray(transitions)
  r = jnp.asarray(rewards, p.dtype)
  if p.ndim != 3 or p.shape[0] != p.shape[2]:
    raise ValueError(f"transitions must have shape [S, A, S], got {p.shape}")
  if r.shape != p.shape[:2]:
    raise ValueError(f"rewards must have shape {p.shape[:2]} (states, actions), got {r.shape}")
  if _checks.is_concrete(r) and not np.all(np.isfinite(np.asarray(r))):
    raise ValueError("rewards must be finite")
  if _checks.is_concrete(p):
    pn = np.asarray(p, np.float64)
    if not np.all(np.isfinite(pn)) or np.any(pn < 0) or \
        not np.allclose(pn.sum(-1), 1.0, atol=1e-6):
      raise ValueError("transitions must be finite, non-negative, and sum to 1 over s'")
  if not (0.0 <= float(discount) < 1.0):
    raise ValueError(f"discount must be in [0, 1), got {discount}")
  if _checks.is_concrete(beta) and not (np.all(np.asarray(beta) > 0)
                                        and np.all(np.isfinite(np.asarray(beta)))):
    raise ValueError(f"beta must be a finite temperature > 0, got {beta}")
  _checks.check_positive_int(iterations, "iterations")
  keep = jnp.ones(p.shape[0], p.dtype)
  if terminal is not None:
    term = jnp.asarray(terminal)
    if term.shape != (p.shape[0],):
      raise ValueError(f"terminal must have shape [{p.shape[0]}], got {term.shape}")
    keep = 1.0 - term.astype(p.dtype)
  beta = jnp.asarray(beta, p.dtype)
  cont = discount * p * keep  # [S, A, S]

  def sweep(_, q):
    v = beta * jax.nn.logsumexp(q / beta, axis=1)
    return r + jnp.einsum("sat,t->sa", cont, v)

  q = jax.lax.fori_loop(0, iterations, sweep, jnp.zeros_like(r))
  return q, jax.nn.softmax(q / beta, axis=1)


# --------------------------------------------------------------------------- coupling


def _check_rate(rate, method: str) -> None:
  """A compressed game needs ``rate > 0`` bits (at rate 0 every message shares one code
  and nothing is sent); ``"none"`` ignores the rate."""
  if method != "none" and _checks.is_concrete(rate):
    rn = np.asarray(rate, np.float64)
    if np.any(np.isnan(rn)) or np.any(rn <= 0):
      raise ValueError(f"rate must be > 0 bits (inf allowed) for method {method!r}, got "
                       f"{rate}")


def _check_messages(messages, count: int, what: str) -> Array:
  """``messages`` as an int vector ``[E]`` with values in ``0..count-1``."""
  messages = jnp.asarray(messages)
  if messages.ndim != 1 or not jnp.issubdtype(messages.dtype, jnp.integer):
    raise ValueError(f"messages must be a vector [E] of ints, got {messages.dtype} "
                     f"{messages.shape}")
  if _checks.is_concrete(messages) and messages.size and (
      np.asarray(messages).min() < 0 or np.asarray(messages).max() >= count):
    raise ValueError(f"messages must lie in 0..{what}")
  return messages


def _check_method(method: str) -> None:
  if method not in COMPRESSION:
    raise ValueError(f"method must be one of {COMPRESSION}, got {method!r}")


def _lex_first(values: Array, index: Array) -> Array:
  """Position along the last axis of the largest of ``values [..., k]``, ties to the
  lowest ``index``."""
  top = jnp.max(values, axis=-1, keepdims=True)
  return jnp.argmin(jnp.where(values == top, index, jnp.iinfo(jnp.int32).max),
                    axis=-1).astype(jnp.int32)


def _pick(x: Array, pos: Array) -> Array:
  """``x[b, pos[b]]`` for ``x: [B, k]``, ``pos: [B]``."""
  return jnp.take_along_axis(x, pos[:, None], axis=1)[:, 0]


def _few_rows(p: Array, q: Array, order: Array) -> Array:
  """:func:`greedy_coupling_few` of every row of ``p: [B, n]`` and ``q: [B, m]``, given
  each row's descending order ``order: [B, n]`` (ties to the lower index; after the
  non-zero masses, any indices of zero masses).

  One loop for the whole batch whose step counter is shared, so every write of a step
  goes to one static-shaped slice (no scatter per step) and the loop runs until the
  longest row is done; a row that is done keeps its state.
  """
  batch, n = p.shape
  m = q.shape[1]
  ps = jnp.take_along_axis(p, order, axis=1)
  empty = jnp.asarray(-1.0, p.dtype)
  slots = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32), (batch, m))
  # Every step uses up a symbol of p or of q, and zero masses are never paired with
  # positive ones, so (non-zero symbols of p) + m - 1 steps place all the mass (fewer
  # for the sparse beliefs of a coding game's later steps).
  steps = jnp.sum((p > 0).astype(jnp.int32), axis=1) + m - 1
  total = jnp.max(steps)
  size = n + m - 1

  def cond(carry):
    return carry[0] < total

  def body(carry):
    t, ptr, pend_val, pend_idx, q_res, cell_i, cell_j, cell_r = carry
    live = ptr < n
    head = jnp.minimum(ptr, n - 1)
    s_val = jnp.where(live, _pick(ps, head), empty)
    s_idx = jnp.where(live, _pick(order, head), n)
    slot = _lex_first(pend_val, pend_idx)
    b_val, b_idx = _pick(pend_val, slot), _pick(pend_idx, slot)
    from_stream = (s_val > b_val) | ((s_val == b_val) & (s_idx < b_idx))
    p_val = jnp.where(from_stream, s_val, b_val)
    i = jnp.where(from_stream, s_idx, b_idx)
    j = _lex_first(q_res, slots)
    on = t < steps
    r = jnp.where(on & (p_val >= 0),
                  jnp.maximum(jnp.minimum(p_val, _pick(q_res, j)), 0.0), 0.0)
    q_res = q_res - jnp.where(slots == j[:, None], r[:, None], 0.0)
    left = p_val - r
    # The chosen symbol's residual: a new buffer entry (from the stream) or an update.
    free = jnp.argmin(pend_val >= 0, axis=1).astype(jnp.int32)
    target = slots == jnp.where(from_stream, free, slot)[:, None]
    keep = (on & (p_val >= 0) & (left > 0))[:, None]
    write = target & on[:, None] & (keep | ~from_stream[:, None])
    pend_val = jnp.where(write, jnp.where(keep, left[:, None], empty), pend_val)
    pend_idx = jnp.where(write, jnp.where(keep, i[:, None], n), pend_idx)
    cell_i = jax.lax.dynamic_update_index_in_dim(cell_i, jnp.minimum(i, n - 1), t, 0)
    cell_j = jax.lax.dynamic_update_index_in_dim(cell_j, j, t, 0)
    cell_r = jax.lax.dynamic_update_index_in_dim(cell_r, r, t, 0)
    ptr = ptr + (on & from_stream).astype(jnp.int32)
    return t + 1, ptr, pend_val, pend_idx, q_res, cell_i, cell_j, cell_r

  init = (jnp.asarray(0, jnp.int32), jnp.zeros(batch, jnp.int32),
          jnp.full((batch, m), empty), jnp.full((batch, m), n, jnp.int32), q,
          jnp.zeros((size, batch), jnp.int32), jnp.zeros((size, batch), jnp.int32),
          jnp.zeros((size, batch), p.dtype))
  _, _, _, _, _, cell_i, cell_j, cell_r = jax.lax.while_loop(cond, body, init)
  # Each cell receives mass at most once, so one scatter-add places it exactly.
  rows = jnp.broadcast_to(jnp.arange(batch)[None], cell_i.shape)
  return jnp.zeros((batch, n, m), p.dtype).at[rows, cell_i, cell_j].add(cell_r)


@custom_vmap
def _few_flat(p: Array, q: Array, order: Array) -> Array:
  """``p: [B, n]``, ``q: [B, m]``, ``order: [B, n]`` -> ``[B, n, m]``; vmap folds into
  ``B``."""
  return _few_rows(p, q, order)


@_few_flat.def_vmap
def _few_flat_vmap(axis_size, in_batched, *args):
  args = [x if batched else jnp.broadcast_to(x, (axis_size,) + x.shape)
          for x, batched in zip(args, in_batched)]
  batch = args[0].shape[1]
  out = _few_flat(*(x.reshape((axis_size * batch,) + x.shape[2:]) for x in args))
  return out.reshape((axis_size, batch) + out.shape[1:]), True


def _greedy_few(p: Array, q: Array, order: Optional[Array] = None) -> Array:
  """:func:`greedy_coupling_few` without input checks; ``order`` as in
  :func:`_few_rows` (default: a stable sort of ``-p``)."""
  if order is None:
    order = stable_argsort(-p)
  return _few_flat(p[None], q.astype(p.dtype)[None], order[None])[0]


def greedy_coupling_few(p: Array, q: Array) -> Array:
  r"""Greedy minimum-entropy coupling of ``p: [n]`` and a short ``q: [m]``, dense
  ``[n, m]``: the same joint as :func:`entropylab.coupling.greedy_mec` (Kocaoglu et
  al. 2017, Algorithm 1: pair the largest residuals, ties to the lower index), in
  O(n log n + (n + m) m) instead of O((n + m) n).

  Sorting ``p`` once suffices: a symbol of ``p`` that no step has touched is used in
  the sorted order, and a touched one keeps a residual only when it used up a symbol
  of ``q``, which happens at most ``m`` times; those residuals wait in a buffer of ``m``
  slots and compete with the next untouched symbol by value, then by index. Each
  ``(p, q)`` cell receives mass at most once, so the joint is bit-identical to the
  reference's. Under ``jax.vmap`` the batch runs as one loop with a shared step
  counter (``custom_vmap``), which keeps every step's writes scatter-free.
  """
  p, q = jnp.asarray(p), jnp.asarray(q)
  if p.ndim != 1 or q.ndim != 1 or p.shape[0] < 1 or q.shape[0] < 1:
    raise ValueError(f"p and q must be non-empty vectors, got shapes {p.shape} and {q.shape}")
  return _greedy_few(p, q)


def _uniform_codes(ids: Array, rate: Array, num_messages: int) -> Array:
  """Code of each entry of a compacted belief (message ``ids``, ascending ids first,
  zero entries last) under the uniform quantiser: its contiguous blocks of message ids
  (Algorithm 5 on the full alphabet of ``num_messages`` symbols), each named by the
  position of its first member, so code order follows message order as in the full
  alphabet."""
  block = ids // _quantizer_bin_size(num_messages, rate).astype(ids.dtype)
  pos = jnp.arange(ids.shape[0], dtype=jnp.int32)
  start = jnp.concatenate([jnp.ones(1, bool), block[1:] != block[:-1]])
  return jax.lax.cummax(jnp.where(start, pos, 0))


def _joint(vals: Array, ids: Array, policy: Array, rate, method: str,
           num_messages: int) -> Array:
  """:func:`compressed_coupling` of a (possibly compacted) belief."""
  policy = policy.astype(vals.dtype)
  if method == "none":
    return _greedy_few(vals, policy)
  rate = jnp.asarray(rate, vals.dtype)
  if method == "ebim":
    # EBIM's plan orders the code masses for the greedy coupling: no second sort.
    code, plan = _ebim_plan(vals, rate)
  else:
    code = _uniform_codes(ids, rate, num_messages)
  p_t = jax.ops.segment_sum(vals, code, num_segments=vals.shape[0])
  p_ta = _greedy_few(p_t, policy, _code_order(plan, p_t) if method == "ebim" else None)
  used = p_t > 0
  p_a_given_t = jnp.where(used[:, None], p_ta / jnp.where(used, p_t, 1.0)[:, None], 0.0)
  return vals[:, None] * p_a_given_t[code]


def compressed_coupling(belief: Array, policy: Array, rate, method: str = "ebim") -> Array:
  r"""The joint :math:`p(m, a)` of one coding step (MEC-B, Ebrahimi et al. 2024).

  ``method="none"``: greedy MEC of ``belief`` and ``policy`` (MEME). ``"ebim"`` or
  ``"uniform"``: the belief is first mapped to a code ``T`` with :math:`H(T) \le`
  ``rate`` bits (the code of :func:`entropylab.coupling.ebim` or
  :func:`entropylab.coupling.uniform_quantizer`; identity when the belief's entropy
  is already within the rate for EBIM), then :math:`p(m,a) = p(m)\,p(a \mid t(m))`
  with :math:`p(t,a)` the greedy MEC of :math:`p_T` and ``policy``; equal to
  :func:`entropylab.coupling.mec_b`'s ``p_xy`` for EBIM. The greedy couplings are
  :func:`greedy_coupling_few` (the action space is short).

  Args:
    belief: ``[M]`` probabilities over messages.
    policy: ``[A]`` probabilities over actions.
    rate: ``R`` in bits (``> 0``; ``inf`` = no limit); ignored by ``"none"``.
    method: one of :data:`COMPRESSION` (static).

  Returns:
    ``[M, A]`` joint with row sums ``belief`` and column sums ``policy``.
  """
  _check_method(method)
  belief, policy = jnp.asarray(belief), jnp.asarray(policy)
  if belief.ndim != 1 or belief.shape[0] < 1:
    raise ValueError(f"belief must be a vector [M], got shape {belief.shape}")
  if policy.ndim != 1 or policy.shape[0] < 1:
    raise ValueError(f"policy must be a vector [A], got shape {policy.shape}")
  _check_rate(rate, method)
  n = belief.shape[0]
  return _joint(belief, jnp.arange(n, dtype=jnp.int32), policy, rate, method, n)


# --------------------------------------------------------------------------- episodes


class Episode(NamedTuple):
  """One coding-game episode (fields gain leading axes under vmap).

  Attributes:
    decoded: ``[]`` int, the receiver's MAP guess.
    correct: ``[]`` bool, ``decoded == message``.
    reward: ``[]`` discounted MDP return of the sender's trajectory.
    belief_entropy: ``[horizon + 1]`` entropy (bits) of the receiver's belief before
      each step and at the end.
    steps: ``[]`` number of steps before the MDP episode ended (``horizon`` if never).
  """

  decoded: Array
  correct: Array
  reward: Array
  belief_entropy: Array
  steps: Array


# Belief widths after the first: each phase is one more compiled loop, so by default a
# phase is at most a quarter of the previous width; the last (one message left) plays
# the policy without a coupling. ``benchmarks/bench_mcg.py`` (512 messages: widths 512,
# 128, 32, 8, 1) times the games with them.
_DEFAULT_WIDTHS = (128, 32, 8, 1)


def _widths(num_messages: int, widths) -> tuple[int, ...]:
  if widths is None:
    widths = []
    for w in _DEFAULT_WIDTHS:
      if 4 * w <= (widths[-1] if widths else num_messages):
        widths.append(w)
  out = [num_messages]
  for w in widths:
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
      raise ValueError(f"widths must be positive ints, got {widths!r}")
    if w < out[-1]:
      out.append(w)
  return tuple(out)


def coding_game_episode(key: Array, env: Any, policy_fn: Callable[[Any], Array],
                        message, prior, rate, method: str = "ebim", horizon: int = 64,
                        discount: float = 0.95, widths=None) -> Episode:
  r"""One episode of the Markov coding game (module docstring).

  The belief is kept as its non-zero entries: it starts at full width ``M`` and, once
  at most ``w`` messages keep positive belief, moves to the next of ``widths`` (the
  entries in message order, so every tie is broken as on the full alphabet). Under
  vmap every episode's belief shrinks fast, and most steps run at a small width.

  Args:
    key: PRNG key (environment reset and dynamics, the sender's action draws).
    env: an environment with ``reset(key) -> state`` and ``step(state, action) ->
      state`` (Brax's shape; ``state.reward``, ``state.done``), discrete actions
      ``0..A-1``; e.g. :class:`entropylab.rl.gridworld.GridWorld`.
    policy_fn: ``state -> [A]`` the marginal policy at the state.
    message: ``[]`` int, the sender's message in ``0..M-1``.
    prior: ``[M]`` the receiver's initial belief :math:`p_M`.
    rate: the rate limit ``R`` in bits (``inf``: none).
    method: compression, one of :data:`COMPRESSION` (static).
    horizon: steps (static). Coding stops when the MDP episode ends.
    discount: discount of the reported return.
    widths: static decreasing belief widths after the first (default: those of
      ``(128, 32, 8, 1)`` at most a quarter of the width before, e.g. 8 and 1 for
      ``M = 64``; ``()`` keeps the full width throughout). At width 1 (one message
      left) the coupling is the policy itself and no coupling is computed.

  Returns:
    :class:`Episode`.
  """
  _check_method(method)
  _checks.check_positive_int(horizon, "horizon")
  prior = jnp.asarray(prior)
  num = prior.shape[0]
  phases = _widths(num, widths)
  k_reset, k_run = jax.random.split(key)
  first = env.reset(k_reset)

  def body(carry):
    t, state, vals, ids, alive, ret, k, ent = carry
    k, k_a = jax.random.split(k)
    joint = _joint(vals, ids, policy_fn(state), rate, method, num)
    row = joint[jnp.argmax(ids == message)]
    action = jax.random.categorical(k_a, jnp.log(row / jnp.sum(row)))
    col = joint[:, action]
    vals = col / jnp.sum(col)
    state = env.step(state, action)
    ret = ret + discount ** t.astype(ret.dtype) * state.reward
    ent = ent.at[t + 1].set(info.entropy(vals, base=2))
    return (t + 1, state, vals, ids, 1.0 - state.done, ret, k, ent)

  def body_one(carry):
    """One message left: the coupling is the policy itself (its only row), the belief
    stays put and its entropy is 0 (the entries ``ent`` already holds)."""
    t, state, vals, ids, alive, ret, k, ent = carry
    k, k_a = jax.random.split(k)
    pol = policy_fn(state).astype(vals.dtype)
    action = jax.random.categorical(k_a, jnp.log(pol / jnp.sum(pol)))
    state = env.step(state, action)
    ret = ret + discount ** t.astype(ret.dtype) * state.reward
    return (t + 1, state, vals, ids, 1.0 - state.done, ret, k, ent)

  def compact(carry, width):
    """The ``width`` non-zero entries in ascending message order (zeros last)."""
    t, state, vals, ids, alive, ret, k, ent = carry
    _, keep = jax.lax.top_k(vals, width)
    kept_vals, kept_ids = vals[keep], ids[keep]
    order = jnp.argsort(jnp.where(kept_vals > 0, kept_ids, num + kept_ids), stable=True)
    return (t, state, kept_vals[order], kept_ids[order], alive, ret, k, ent)

  ent = jnp.zeros(horizon + 1, prior.dtype).at[0].set(info.entropy(prior, base=2))
  carry = (jnp.asarray(0, jnp.int32), first, prior, jnp.arange(num, dtype=jnp.int32),
           jnp.asarray(1.0, prior.dtype), jnp.zeros((), prior.dtype), k_run, ent)
  for phase, width in enumerate(phases):
    if phase:
      carry = compact(carry, width)
    limit = phases[phase + 1] if phase + 1 < len(phases) else 0

    def cond(c, limit=limit):
      t, _, vals, _, alive, _, _, _ = c
      return (t < horizon) & (alive > 0) & (jnp.sum((vals > 0).astype(jnp.int32)) > limit)

    carry = jax.lax.while_loop(cond, body_one if width == 1 else body, carry)
  steps, _, vals, ids, _, ret, _, ent = carry
  # After the episode ends the belief no longer changes.
  ent = jnp.where(jnp.arange(horizon + 1) > steps, ent[steps], ent)
  decoded = ids[jnp.argmax(vals)]
  return Episode(decoded, decoded == message, ret, ent, steps)


def _run_episodes(episode: Callable[[Array, Array], Episode], key: Array, messages: Array,
                  mesh: Optional[Mesh]) -> Episode:
  """``episode(key, message)`` for every message, one key each (``split(key, E)``),
  vmapped; with a mesh the episodes are split over the mesh's first axis by
  ``shard_map`` (padded to a multiple of its size, the padding dropped), so each
  device's while loops stop with its own episodes."""
  count = messages.shape[0]
  keys = jax.random.split(key, count)
  run = jax.vmap(episode)
  if mesh is None:
    return run(keys, messages)
  size = mesh.shape[mesh.axis_names[0]]
  pad = -count % size
  if pad:
    first = jnp.zeros(pad, jnp.int32)
    keys = jnp.concatenate([keys, keys[first]])
    messages = jnp.concatenate([messages, messages[first]])
  spec = PartitionSpec(mesh.axis_names[0])
  out = jax.shard_map(run, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                      check_vma=False)(keys, messages)
  return jax.tree.map(lambda x: x[:count], out)


def play_coding_game(key: Array, env: Any, policy_fn: Callable[[Any], Array], messages,
                     prior, rate, method: str = "ebim", horizon: int = 64,
                     discount: float = 0.95, widths=None,
                     mesh: Optional[Mesh] = None) -> Episode:
  """Episodes of :func:`coding_game_episode` for every message of ``messages`` (``[E]``
  ints), each with its own key (``jax.random.split(key, E)``), in one vmapped batch;
  fields of the result gain a leading ``[E]`` axis. ``prior`` must be a distribution
  over ``M`` messages and ``messages`` lie in ``0..M-1``; ``rate`` must be ``> 0``
  bits for ``"ebim"`` and ``"uniform"`` (``"none"`` ignores it). With ``mesh`` (a
  ``jax.sharding.Mesh``) the episodes are split over the devices of its first axis;
  the results equal the unsharded ones."""
  _check_method(method)
  _check_env(env)
  _checks.check_mesh(mesh)
  prior = jnp.asarray(prior)
  if prior.ndim != 1 or prior.shape[0] < 1:
    raise ValueError(f"prior must be a vector [M] of message probabilities, got shape "
                     f"{prior.shape}")
  if _checks.is_concrete(prior):
    pn = np.asarray(prior, np.float64)
    if not np.all(np.isfinite(pn)) or np.any(pn < 0) or abs(pn.sum() - 1) > 1e-6:
      raise ValueError("prior must be finite, non-negative and sum to 1")
  _check_rate(rate, method)
  messages = _check_messages(messages, prior.shape[0], f"{prior.shape[0] - 1}")
  _widths(prior.shape[0], widths)
  if widths is not None:
    widths = tuple(widths)
  return _play(key, messages, prior, rate, env=env, policy_fn=policy_fn, method=method,
               horizon=horizon, discount=discount, widths=widths, mesh=mesh)


def _cached(*static_names: str) -> Callable:
  """Decorator: ``fn(*arrays, **static)`` compiled once per distinct set of the static
  keyword arguments ``static_names``, so repeated calls with the same env, policy and
  settings reuse the program; static arguments that cannot key a cache (unhashable)
  run ``fn`` uncached."""

  def wrap(fn: Callable) -> Callable:
    compiled = jax.jit(fn, static_argnames=static_names)

    def call(*args, **static):
      try:
        hash(tuple(static.values()))
      except TypeError:
        return fn(*args, **static)
      return compiled(*args, **static)

    return call

  return wrap


@_cached("env", "policy_fn", "method", "horizon", "discount", "widths", "mesh")
def _play(key, messages, prior, rate, *, env, policy_fn, method, horizon, discount,
          widths, mesh) -> Episode:
  return _run_episodes(lambda k, m: coding_game_episode(k, env, policy_fn, m, prior, rate,
                                                        method, horizon, discount, widths),
                       key, messages, mesh)


@_cached("env", "policy_fn", "num_blocks", "block_bits", "horizon", "discount",
         "mesh")
def _play_imec(key, messages, *, env, policy_fn, num_blocks, block_bits, horizon, discount,
               mesh) -> Episode:
  return _run_episodes(lambda k, m: imec_coding_game_episode(
      k, env, policy_fn, m, num_blocks, block_bits, horizon, discount), key, messages, mesh)


def _check_env(env: Any) -> None:
  actions = getattr(env, "num_actions", None)
  if isinstance(actions, bool) or not isinstance(actions, int) or actions < 1:
    raise ValueError("env must have discrete actions: an int attribute num_actions >= 1 "
                     f"(a continuous env needs its actions discretised), got {actions!r}")


def imec_coding_game_episode(key: Array, env: Any, policy_fn: Callable[[Any], Array],
                             message, num_blocks: int, block_bits: int,
                             horizon: int = 64, discount: float = 0.95) -> Episode:
  r"""One coding-game episode whose message space is too large to enumerate.

  The uniform message of ``num_blocks * block_bits`` bits (e.g. 4 x 4 = 2^16 messages)
  is factored into blocks, and each step couples the policy with the belief of the
  block of highest entropy: iterative MEC (Schroeder de Witt et al., ICLR 2023;
  :func:`entropylab.coupling.imec_encode_step`), the sender sampling from its block
  value's row and both sides updating that block. ``belief_entropy`` is the sum of the
  block entropies (the factorised belief's entropy, bits); ``decoded`` joins the
  blocks' MAP values (:func:`entropylab.coupling.blocks_to_message`). Other arguments
  and the result as :func:`coding_game_episode`.
  """
  _checks.check_positive_int(horizon, "horizon")
  state0 = _imec.imec_init(num_blocks, block_bits)
  blocks = _imec.message_to_blocks(message, block_bits, num_blocks)
  k_reset, k_run = jax.random.split(key)
  first = env.reset(k_reset)
  total = lambda st: jnp.sum(_imec.imec_block_entropies(st))

  def cond(carry):
    t, _, _, alive, _, _, _ = carry
    return (t < horizon) & (alive > 0)

  def body(carry):
    t, env_state, beliefs, alive, ret, k, ent = carry
    k, k_a = jax.random.split(k)
    action, beliefs = _imec.imec_encode_step(k_a, beliefs, blocks, policy_fn(env_state))
    env_state = env.step(env_state, action)
    ret = ret + discount ** t.astype(ret.dtype) * env_state.reward
    ent = ent.at[t + 1].set(total(beliefs))
    return (t + 1, env_state, beliefs, 1.0 - env_state.done, ret, k, ent)

  ent = jnp.zeros(horizon + 1).at[0].set(total(state0))
  init = (jnp.asarray(0, jnp.int32), first, state0, jnp.asarray(1.0), jnp.zeros(()), k_run,
          ent)
  steps, _, beliefs, _, ret, _, ent = jax.lax.while_loop(cond, body, init)
  ent = jnp.where(jnp.arange(horizon + 1) > steps, ent[steps], ent)
  decoded = _imec.imec_decode_message(beliefs)
  guess = _imec.blocks_to_message(decoded, block_bits)
  return Episode(guess, guess == message, ret, ent, steps)


def play_imec_coding_game(key: Array, env: Any, policy_fn: Callable[[Any], Array], messages,
                          num_blocks: int, block_bits: int, horizon: int = 64,
                          discount: float = 0.95, mesh: Optional[Mesh] = None) -> Episode:
  """:func:`imec_coding_game_episode` for every message of ``messages`` (``[E]`` ints
  below ``2 ** (num_blocks * block_bits)``, at most 2^31), one key each, vmapped and,
  with ``mesh``, split over its devices as in :func:`play_coding_game`."""
  _check_env(env)
  _checks.check_mesh(mesh)
  bits = num_blocks * block_bits
  if bits > 31:
    raise ValueError(f"num_blocks * block_bits must be <= 31 bits (int32 messages), got {bits}")
  messages = _check_messages(messages, 2 ** bits, f"2^{bits} - 1")
  return _play_imec(key, messages, env=env, policy_fn=policy_fn, num_blocks=num_blocks,
                    block_bits=block_bits, horizon=horizon, discount=discount, mesh=mesh)


__all__ = ["COMPRESSION", "Episode", "coding_game_episode", "compressed_coupling",
           "greedy_coupling_few", "imec_coding_game_episode", "play_coding_game",
           "play_imec_coding_game", "soft_q_iteration"]
