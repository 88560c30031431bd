"""Iterative minimum-entropy coupling (entropylab.coupling.imec).

References and exact properties used here:

* ``slow_imec``: Schroeder de Witt et al. (ICLR 2023), the iMEC encoder and decoder written as a plain
  NumPy loop over ``reference.slow_greedy``; our beliefs, block choices and token
  distributions must match it.
* Perfect security, exactly: by enumerating every message and every token sequence of
  a small game, the token sequence averaged over uniform messages has probability
  ``prod_t p_t(x_t)``, and the product of the block beliefs is the Bayes posterior of the
  message given the tokens.
* Closed forms: with uniform channels of ``2**c`` symbols and ``b``-bit blocks every
  token reveals exactly ``c`` bits, so ``K`` blocks decode in exactly ``K * b / c`` steps.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax

from entropylab import coupling
from entropylab.coupling import imec
from tests.coupling.reference import bits, slow_greedy


# --------------------------------------------------------------------------- reference


def slow_imec(tokens, dists, block_bits, num_blocks, message=None):
  """Decoder replay in NumPy float64: beliefs after each step, blocks, encoder rows."""
  n = 2**block_bits
  beliefs = np.full((num_blocks, n), 1.0 / n)
  history, blocks, rows = [], [], []
  for x, p in zip(tokens, dists):
    k = int(np.argmax(bits(beliefs)))
    index, mass = slow_greedy([beliefs[k], p])
    joint = np.zeros((n, len(p)))
    np.add.at(joint, (index[:, 0], index[:, 1]), mass)
    if message is not None:
      row = joint[message[k]]
      rows.append(row / row.sum())
    beliefs[k] = joint[:, x] / joint[:, x].sum()
    history.append(beliefs.copy())
    blocks.append(k)
  return np.array(history), np.array(blocks), np.array(rows)


def dirichlet(rng, shape, alpha=1.0):
  return rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])


# --------------------------------------------------------------------------- reference match


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_replay_matches_slow_reference(x64, seed):
  rng = np.random.default_rng(seed)
  k, b, m, t = 3, 4, 7, 12
  dists = dirichlet(rng, (t, m))
  message = rng.integers(0, 2**b, size=k)
  trace = coupling.imec_encode(jax.random.key(seed), message, dists, block_bits=b)
  ref_beliefs, ref_blocks, ref_rows = slow_imec(np.asarray(trace.tokens), dists, b, k, message)
  # Once every block is decoded all entropies are 0 up to rounding (1e-16 in one sum
  # order, exactly 0 in another), so the choice among them is arbitrary: compare the
  # choices while some block is still uncertain.
  done = int(trace.num_steps)
  assert bool(trace.done) and done < t
  np.testing.assert_array_equal(trace.blocks[:done], ref_blocks[:done])
  np.testing.assert_allclose(trace.state.beliefs, ref_beliefs[-1], rtol=0, atol=1e-12)
  np.testing.assert_allclose(trace.entropies, bits(ref_beliefs), rtol=0, atol=1e-10)
  # The encoder's sampling distributions, replayed step by step, equal the reference rows.
  state = coupling.imec_init(k, b, jnp.float64)
  for step, (p, x) in enumerate(zip(dists, np.asarray(trace.tokens))):
    dist = coupling.imec_token_distribution(state, message, p)
    np.testing.assert_allclose(dist, ref_rows[step], rtol=0, atol=1e-12)
    assert dist[x] > 0  # the sampled token is in the true value's row
    state = coupling.imec_decode_step(state, p, x)
  np.testing.assert_allclose(state.beliefs, trace.state.beliefs, rtol=0, atol=1e-15)


def test_sampled_tokens_follow_the_true_row():
  """Empirical frequencies of the first token given the message match its row."""
  rng = np.random.default_rng(3)
  p = jnp.asarray(dirichlet(rng, (1, 6))[0], jnp.float32)
  message = jnp.array([5, 2], jnp.int32)
  state = coupling.imec_init(2, 3)
  row = np.asarray(coupling.imec_token_distribution(state, message, p))
  keys = jax.random.split(jax.random.key(0), 20_000)
  step = jax.jit(jax.vmap(lambda key: coupling.imec_encode_step(key, state, message, p)[0]))
  freq = np.bincount(np.asarray(step(keys)), minlength=6) / keys.shape[0]
  assert np.all(freq[row == 0] == 0)
  # 20k draws: 5 standard errors of the largest cell is below 0.018.
  np.testing.assert_allclose(freq, row, atol=0.018)


# --------------------------------------------------------------------------- security


def test_perfect_security_and_exact_posterior_by_enumeration(x64):
  """All 16 messages x all 27 sequences of a K=2, b=2, m=3, T=3 game."""
  rng = np.random.default_rng(7)
  k, b, m, t = 2, 2, 3, 3
  dists = jnp.asarray(dirichlet(rng, (t, m), alpha=2.0))
  messages = jnp.array(list(itertools.product(range(2**b), repeat=k)), jnp.int32)
  seqs = jnp.array(list(itertools.product(range(m), repeat=t)), jnp.int32)

  def seq_prob(message, seq):
    def body(state, xs):
      p, x = xs
      dist = coupling.imec_token_distribution(state, message, p)
      return coupling.imec_decode_step(state, p, x), dist[x]

    state, probs = lax.scan(body, coupling.imec_init(k, b, jnp.float64), (dists, seq))
    return jnp.prod(probs), state.beliefs

  probs, beliefs = jax.jit(jax.vmap(jax.vmap(seq_prob, (None, 0)), (0, None)))(messages, seqs)
  probs = np.asarray(probs)  # [message, sequence]
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
  covertext = np.prod(np.asarray(dists)[np.arange(t), np.asarray(seqs)], axis=1)
  np.testing.assert_allclose(probs.mean(axis=0), covertext, rtol=0, atol=1e-12)
  # The decoder's beliefs do not depend on the message (index 0) and their product is
  # the posterior P(message | tokens) from Bayes' rule under the uniform prior.
  beliefs = np.asarray(beliefs[0])  # [sequence, K, 2**b]
  posterior = probs / probs.sum(axis=0, keepdims=True)
  product = np.prod(beliefs[:, np.arange(k), np.asarray(messages)], axis=-1).T  # [msg, seq]
  np.testing.assert_allclose(product, posterior, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_mixture_of_rows_is_the_channel_mid_trajectory(x64, seed):
  rng = np.random.default_rng(seed)
  k, b, m = 3, 5, 20
  dists = dirichlet(rng, (6, m), alpha=0.5)
  state = coupling.imec_init(k, b, jnp.float64)
  for p in dists[:5]:
    x = rng.choice(m, p=p)
    state = coupling.imec_decode_step(state, p, x)
  p = dists[5]
  block = int(np.argmax(coupling.imec_block_entropies(state)))
  rows = jax.vmap(lambda v: coupling.imec_token_distribution(
      state, jnp.full(k, v, jnp.int32), p))(jnp.arange(2**b))
  mixture = np.asarray(state.beliefs[block]) @ np.asarray(rows)
  np.testing.assert_allclose(mixture, p, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("c, steps_per_block", [(4, 1), (2, 2), (1, 4)])
def test_uniform_channel_decodes_in_the_closed_form_number_of_steps(c, steps_per_block):
  k, b = 3, 4
  message = jnp.array([9, 0, 14], jnp.int32)
  dists = jnp.full((20, 2**c), 2.0**-c)
  trace = coupling.imec_encode(jax.random.key(1), message, dists, block_bits=b)
  assert bool(trace.done)
  assert int(trace.num_steps) == k * steps_per_block
  np.testing.assert_array_equal(trace.entropies[int(trace.num_steps) - 1], 0.0)
  if c == b:  # the diagonal coupling: each token is a block value
    np.testing.assert_array_equal(trace.tokens[:3], message)
  decoded, _ = coupling.imec_decode(trace.tokens[:int(trace.num_steps)],
                                    dists[:int(trace.num_steps)], b, k)
  np.testing.assert_array_equal(decoded, message)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_messages_decode_exactly(dtype):
  with jax.enable_x64(dtype == "float64"):
    rng = np.random.default_rng(11)
    k, b, m, t, batch = 4, 6, 16, 60, 48
    dists = jnp.asarray(dirichlet(rng, (t, m)), dtype)
    messages = jnp.asarray(rng.integers(0, 2**b, size=(batch, k)), jnp.int32)
    keys = jax.random.split(jax.random.key(2), batch)
    traces = jax.vmap(lambda key, msg: coupling.imec_encode(key, msg, dists, block_bits=b))(
        keys, messages)
    assert bool(jnp.all(traces.done))
    decoded, states = jax.vmap(lambda tok: coupling.imec_decode(tok, dists, b, k))(traces.tokens)
    np.testing.assert_array_equal(decoded, messages)
    np.testing.assert_array_equal(states.beliefs, traces.state.beliefs)
    # Decoding only the first num_steps tokens already recovers the message.
    for i in range(3):
      n = int(traces.num_steps[i])
      head, _ = coupling.imec_decode(traces.tokens[i, :n], dists[:n], b, k)
      np.testing.assert_array_equal(head, messages[i])
    # 24 bits cannot be sent in fewer tokens than the channel's entropy allows: the
    # tokens are distributed as the channel, so E[sum_t H(p_t)] >= H(M) = 24 bits.
    ent = np.cumsum(bits(np.asarray(dists, np.float64)))
    spent = ent[np.asarray(traces.num_steps) - 1]
    assert spent.mean() >= k * b


def test_history_dependent_channel_with_the_step_functions(x64):
  """A Markov-chain covertext: p_{t+1} = P[x_t], scanned with the step functions."""
  rng = np.random.default_rng(5)
  m, k, b, t = 5, 2, 5, 40
  trans = jnp.asarray(dirichlet(rng, (m, m)))
  p0 = jnp.full(m, 1.0 / m)
  message = jnp.array([17, 30], jnp.int32)

  @jax.jit
  def send(key):
    def body(carry, key):
      state, p = carry
      token, state = coupling.imec_encode_step(key, state, message, p)
      return (state, trans[token]), (token, p)

    init = (coupling.imec_init(k, b, jnp.float64), p0)
    (state, _), (tokens, used) = lax.scan(body, init, jax.random.split(key, t))
    return tokens, used, state

  @jax.jit
  def receive(tokens):
    def body(carry, token):
      state, p = carry
      return (coupling.imec_decode_step(state, p, token), trans[token]), None

    (state, _), _ = lax.scan(body, (coupling.imec_init(k, b, jnp.float64), p0), tokens)
    return state

  tokens, used, sent_state = send(jax.random.key(4))
  state = receive(tokens)
  np.testing.assert_array_equal(state.beliefs, sent_state.beliefs)
  np.testing.assert_array_equal(coupling.imec_decode_message(state), message)
  assert float(jnp.max(coupling.imec_block_entropies(state))) <= 1e-9
  # The same run through the sequence API, with the realised distributions.
  decoded, _ = coupling.imec_decode(tokens, used, b, k)
  np.testing.assert_array_equal(decoded, message)


# --------------------------------------------------------------------------- transforms


def test_encode_step_jit_equals_eager(variant):
  rng = np.random.default_rng(0)
  p = jnp.asarray(dirichlet(rng, (1, 9))[0], jnp.float32)
  state = coupling.imec_init(3, 3)
  message = jnp.array([1, 7, 4], jnp.int32)
  token, new = variant(coupling.imec_encode_step)(jax.random.key(3), state, message, p)
  ref_token, ref_new = coupling.imec_encode_step(jax.random.key(3), state, message, p)
  assert int(token) == int(ref_token)
  np.testing.assert_array_equal(new.beliefs, ref_new.beliefs)


def test_vmap_over_messages_equals_loop():
  rng = np.random.default_rng(1)
  dists = jnp.asarray(dirichlet(rng, (15, 8)), jnp.float32)
  messages = jnp.asarray(rng.integers(0, 8, size=(5, 3)), jnp.int32)
  key = jax.random.key(9)
  batched = jax.vmap(lambda msg: coupling.imec_encode(key, msg, dists, block_bits=3))(messages)
  for i in range(messages.shape[0]):
    single = coupling.imec_encode(key, messages[i], dists, block_bits=3)
    np.testing.assert_array_equal(batched.tokens[i], single.tokens)
    np.testing.assert_array_equal(batched.state.beliefs[i], single.state.beliefs)
    assert int(batched.num_steps[i]) == int(single.num_steps)


def test_impossible_token_under_jit_keeps_beliefs_finite():
  p = jnp.array([0.5, 0.5, 0.0])
  state = coupling.imec_init(1, 2)
  new = jax.jit(coupling.imec_decode_step)(state, p, jnp.int32(2))
  np.testing.assert_array_equal(new.beliefs, state.beliefs)


# --------------------------------------------------------------------------- messages


@given(st.integers(1, 8), st.integers(1, 3), st.data())
def test_message_blocks_round_trip(block_bits, num_blocks, data):
  value = data.draw(st.integers(0, 2**(block_bits * num_blocks) - 1))
  blocks = coupling.message_to_blocks(jnp.int32(value), block_bits, num_blocks)
  assert np.all((np.asarray(blocks) >= 0) & (np.asarray(blocks) < 2**block_bits))
  expect = [(value >> ((num_blocks - 1 - i) * block_bits)) & (2**block_bits - 1)
            for i in range(num_blocks)]
  np.testing.assert_array_equal(blocks, expect)
  assert int(coupling.blocks_to_message(blocks, block_bits)) == value


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_naming_the_argument():
  p = jnp.full(4, 0.25)
  state = coupling.imec_init(2, 3)
  msg = jnp.array([1, 2], jnp.int32)
  dists = jnp.full((5, 4), 0.25)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="block_bits"):
    coupling.imec_init(2, 0)
  with pytest.raises(ValueError, match="block_bits"):
    coupling.imec_encode(key, msg, dists, block_bits=25)
  with pytest.raises(TypeError, match="block_bits"):
    coupling.imec_init(2, True)
  with pytest.raises(ValueError, match="num_blocks"):
    coupling.imec_init(0, 3)
  with pytest.raises(ValueError, match="message"):
    coupling.imec_encode_step(key, state, jnp.array([1, 8], jnp.int32), p)
  with pytest.raises(ValueError, match="message"):
    coupling.imec_encode_step(key, state, jnp.array([1, 2, 3], jnp.int32), p)
  with pytest.raises(TypeError, match="message"):
    coupling.imec_encode(key, jnp.array([1.0, 2.0]), dists, block_bits=3)
  with pytest.raises(ValueError, match="p"):
    coupling.imec_encode_step(key, state, msg, jnp.array([0.5, 0.6, -0.1, 0.1]))
  with pytest.raises(ValueError, match="p must sum to 1"):
    coupling.imec_decode_step(state, jnp.array([0.5, 0.6, 0.0, 0.0]), 1)
  with pytest.raises(ValueError, match="dists"):
    coupling.imec_encode(key, msg, jnp.full(4, 0.25), block_bits=3)
  with pytest.raises(ValueError, match="dists"):
    coupling.imec_encode(key, msg, dists.at[2, 0].set(jnp.nan), block_bits=3)
  with pytest.raises(ValueError, match="threshold"):
    coupling.imec_encode(key, msg, dists, block_bits=3, threshold=-1.0)
  with pytest.raises(ValueError, match="tokens"):
    coupling.imec_decode(jnp.zeros(4, jnp.int32), dists, 3, 2)
  with pytest.raises(ValueError, match="tokens"):
    coupling.imec_decode(jnp.full(5, 4, jnp.int32), dists, 3, 2)
  with pytest.raises(ValueError, match=r"tokens\[1\] = 3 has probability 0"):
    coupling.imec_decode(jnp.array([0, 3, 0, 0, 0]), dists.at[1].set(jnp.array([0.5, 0.5, 0, 0])),
                         3, 2)
  with pytest.raises(ValueError, match="token 2 has probability 0"):
    coupling.imec_decode_step(state, jnp.array([0.5, 0.5, 0.0, 0.0]), 2)
  with pytest.raises(TypeError, match="state"):
    coupling.imec_decode_step(state.beliefs, p, 1)
  with pytest.raises(ValueError, match="state.beliefs"):
    coupling.imec_decode_step(coupling.IMECState(jnp.full((2, 6), 1 / 6)), p, 1)
  with pytest.raises(ValueError, match="message"):
    coupling.message_to_blocks(jnp.int32(256), 4, 2)
  with pytest.raises(ValueError, match="do not fit"):
    coupling.message_to_blocks(jnp.int32(1), 16, 2)
