"""Markov coding games: the gridworld model, soft Q-value iteration, the rate-limited
coupling and whole episodes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.coupling import greedy_mec, mec_b
from entropylab.rl import mcg
from entropylab.rl.gridworld import GridWorld


@pytest.fixture(scope="module")
def world():
  return GridWorld()


def test_gridworld_model_is_the_papers(world):
  p, r, term = (np.asarray(x, np.float64) for x in world.tables())
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
  s = world.index((5, 4))
  # Up from the start: (4, 4) and the right slip's (5, 5) are obstacles, so 0.9 stays
  # put; the left slip reaches (5, 3).
  np.testing.assert_allclose(p[s, 0, s], 0.9, atol=1e-7)
  np.testing.assert_allclose(p[s, 0, world.index((5, 3))], 0.1, atol=1e-7)
  # left from (5, 4): 0.8 to (5, 3), 0.1 up to (4, 4) blocked -> stays, 0.1 down to (6, 4).
  np.testing.assert_allclose(p[s, 3, world.index((5, 3))], 0.8, atol=1e-7)
  np.testing.assert_allclose(p[s, 3, s], 0.1, atol=1e-7)
  np.testing.assert_allclose(p[s, 3, world.index((6, 4))], 0.1, atol=1e-7)
  # Corner (0, 0) going up: the wall keeps 0.8 + the left slip 0.1 in place.
  c = world.index((0, 0))
  np.testing.assert_allclose(p[c, 0, c], 0.9, atol=1e-7)
  # Next to the goal: right from (0, 6) earns 0.8 * 1 (down slip to (1, 6) earns 0).
  np.testing.assert_allclose(r[world.index((0, 6)), 1], 0.8, atol=1e-7)
  # Above the trap's row: down from (0, 7) is terminal (goal): no reward from there.
  assert term[world.index((0, 7))] and term[world.index((1, 7))] and term.sum() == 2
  np.testing.assert_allclose(r[world.index((0, 7))], 0.0)


def test_gridworld_steps_sample_the_model(world):
  p, _, _ = world.tables()
  s0 = world.reset(jax.random.key(0))
  keys = jax.random.split(jax.random.key(1), 20000)
  nxt = jax.vmap(lambda k: world.step(s0._replace(key=k), 3))(keys)
  freq = np.bincount(np.asarray(nxt.cell), minlength=world.num_states) / keys.shape[0]
  np.testing.assert_allclose(freq, np.asarray(p[s0.cell, 3]), atol=0.012)
  assert float(jnp.max(nxt.reward)) == 0.0 and float(jnp.max(nxt.done)) == 0.0
  near = s0._replace(cell=jnp.asarray(world.index((0, 6))))
  ends = jax.vmap(lambda k: world.step(near._replace(key=k), 1))(keys[:4000])
  goal = np.asarray(ends.cell) == world.index(world.goal)
  np.testing.assert_array_equal(np.asarray(ends.reward)[goal], 1.0)
  np.testing.assert_array_equal(np.asarray(ends.done), goal.astype(np.float32))
  assert abs(goal.mean() - 0.8) < 0.03


def _slow_soft_q(p, r, gamma, beta, term, iters):
  q = np.zeros_like(r)
  for _ in range(iters):
    v = np.array([beta * math.log(sum(math.exp(x / beta) for x in row)) for row in q])
    q = r + gamma * np.einsum("sat,t->sa", p, np.where(term, 0.0, v))
  return q


def test_soft_q_iteration_closed_form_and_slow_loop(world):
  with jax.enable_x64(True):
    # One state with self-loops: V = beta * log sum_a exp(r_a / beta) / (1 - gamma).
    r = np.array([[0.3, -0.2, 1.0]])
    q, pi = mcg.soft_q_iteration(np.ones((1, 3, 1)), r, 0.9, 0.5, iterations=800)
    v = 0.5 * np.log(np.exp(r / 0.5).sum()) / 0.1
    np.testing.assert_allclose(q, r + 0.9 * v, rtol=1e-12)
    np.testing.assert_allclose(pi, np.exp(r / 0.5) / np.exp(r / 0.5).sum(), rtol=1e-12)
    p, r, term = (np.asarray(x, np.float64) for x in world.tables(jnp.float64))
    term = term > 0
    q, pi = mcg.soft_q_iteration(p, r, 0.95, 0.05, term, iterations=60)
    np.testing.assert_allclose(q, _slow_soft_q(p, r, 0.95, 0.05, term, 60), atol=1e-12)
    np.testing.assert_allclose(np.asarray(pi).sum(1), 1.0, atol=1e-12)
    # A small temperature gives the greedy policy of ordinary value iteration.
    q0 = np.zeros_like(r)
    for _ in range(400):
      q0 = r + 0.95 * np.einsum("sat,t->sa", p, np.where(term, 0.0, q0.max(1)))
    _, cold = mcg.soft_q_iteration(p, r, 0.95, 1e-4, term, iterations=400)
    live = ~term & ~np.isin(np.arange(64), [world.index(c) for c in world.obstacles])
    decisive = np.sort(q0, 1)[:, -1] - np.sort(q0, 1)[:, -2] > 1e-2
    sel = live & decisive
    np.testing.assert_array_equal(np.argmax(cold, 1)[sel], np.argmax(q0, 1)[sel])
    assert sel.sum() > 30


def test_compressed_coupling_marginals_and_codes():
  rng = np.random.default_rng(3)
  coupling = jax.jit(mcg.compressed_coupling, static_argnames="method")
  with jax.enable_x64(True):
    for _ in range(5):
      b = rng.dirichlet(np.ones(40))
      pi = rng.dirichlet(np.ones(4))
      hb = -np.sum(b * np.log2(b))
      for rate in (0.5, 2.0, hb - 0.3):
        for method in ("ebim", "uniform"):
          joint = np.asarray(coupling(jnp.asarray(b), jnp.asarray(pi), rate, method))
          np.testing.assert_allclose(joint.sum(1), b, atol=1e-12)
          np.testing.assert_allclose(joint.sum(0), pi, atol=1e-12)
          # Messages of one code send the same action distribution: the rows p(a | m)
          # take at most as many distinct values as codes, and H(codes) <= rate.
          cond = np.round(joint / b[:, None], 10)
          codes, inv = np.unique(cond, axis=0, return_inverse=True)
          mass = np.bincount(inv.reshape(-1), weights=b)
          assert -np.sum(mass * np.log2(mass)) <= rate + 1e-9
        np.testing.assert_allclose(coupling(jnp.asarray(b), jnp.asarray(pi), rate, "ebim"),
                                   mec_b(b, pi, rate), atol=1e-15)
      np.testing.assert_allclose(coupling(jnp.asarray(b), jnp.asarray(pi), 0.0, "none"),
                                 greedy_mec(b, pi))


M = 64


@pytest.fixture(scope="module")
def games(world):
  """Accuracy and reward over 64 uniform messages (each sent once), for two policies
  and several rates."""
  p, r, term = world.tables()
  prior = jnp.full(M, 1.0 / M)
  messages = jnp.arange(M)
  out = {}
  # The policy table is an argument: one program per method serves both policies.
  play = jax.jit(lambda key, rate, pi, method: mcg.play_coding_game(
      key, world, lambda s: pi[s.cell], messages, prior, rate, method, horizon=300),
      static_argnames="method")
  for name, beta in (("greedy", math.exp(-6)), ("soft", math.exp(-4))):
    _, pi = mcg.soft_q_iteration(p, r, 0.95, beta, term, iterations=200)
    for ratio in (1, 2, 3):
      for method in (("none",) if ratio == 1 else ("ebim", "uniform")):
        ep = play(jax.random.key(ratio), math.log2(M) / ratio, pi, method)
        out[name, ratio, method] = ep
  return out


def test_coding_game_decodes_and_trades_reward_for_accuracy(games):
  soft, greedy = games["soft", 1, "none"], games["greedy", 1, "none"]
  # No rate limit, soft policy, long horizon: every message decoded exactly.
  assert float(soft.correct.mean()) == 1.0
  assert np.all(np.asarray(soft.steps) < 300)  # every episode ended before the horizon
  assert float(soft.belief_entropy[:, -1].max()) < 1e-6
  np.testing.assert_allclose(soft.belief_entropy[:, 0], math.log2(M), rtol=1e-6)
  # A greedier policy: more reward, less action entropy to carry the message.
  assert float(greedy.reward.mean()) > float(soft.reward.mean())
  assert float(greedy.correct.mean()) < 0.6
  for name in ("soft", "greedy"):
    acc = {k[1:]: float(v.correct.mean()) for k, v in games.items() if k[0] == name}
    # EBIM at least as accurate as the uniform quantiser at the same rate, and both no
    # better under a tighter limit than without one.
    for ratio in (2, 3):
      assert acc[ratio, "ebim"] >= acc[ratio, "uniform"]
      assert acc[ratio, "uniform"] <= acc[1, "none"]
    assert acc[3, "uniform"] <= acc[2, "uniform"]
  # The uniform quantiser's fixed contiguous blocks (8 and 16 messages at rates 3 and 2
  # bits) can never be told apart: at most one message per block is decoded.
  assert float(games["soft", 2, "uniform"].correct.mean()) <= 1 / 8
  assert float(games["soft", 3, "uniform"].correct.mean()) <= 1 / 16


def test_bad_input_names_the_argument(world):
  p, r, term = world.tables()
  pol = lambda s: jnp.full(4, 0.25)
  with pytest.raises(ValueError, match="prior"):
    mcg.play_coding_game(jax.random.key(0), world, pol, jnp.arange(3), jnp.ones(4), 1.0)
  with pytest.raises(ValueError, match="rate"):
    mcg.play_coding_game(jax.random.key(0), world, pol, jnp.arange(3), jnp.full(4, 0.25), -1.0)
  for method in ("ebim", "uniform"):  # rate 0: one code for every message, nothing sent
    with pytest.raises(ValueError, match="rate must be > 0"):
      mcg.play_coding_game(jax.random.key(0), world, pol, jnp.arange(3), jnp.full(4, 0.25),
                           0.0, method)
  with pytest.raises(ValueError, match="messages"):
    mcg.play_coding_game(jax.random.key(0), world, pol, jnp.arange(5), jnp.full(4, 0.25), 1.0)
  with pytest.raises(ValueError, match="method"):
    mcg.play_coding_game(jax.random.key(0), world, pol, jnp.arange(3), jnp.full(4, 0.25), 1.0,
                         method="huffman")
  with pytest.raises(ValueError, match="num_actions"):
    mcg.play_coding_game(jax.random.key(0), object(), pol, jnp.arange(3), jnp.full(4, 0.25),
                         1.0)
  with pytest.raises(ValueError, match="belief"):
    mcg.compressed_coupling(jnp.ones((2, 2)) / 4, jnp.full(4, 0.25), 1.0)
  with pytest.raises(ValueError, match="rate"):
    mcg.compressed_coupling(jnp.full(4, 0.25), jnp.full(4, 0.25), -0.5)
  with pytest.raises(ValueError, match="beta"):
    mcg.soft_q_iteration(p, r, 0.95, 0.0, term)
  with pytest.raises(ValueError, match="discount"):
    mcg.soft_q_iteration(p, r, 1.0, 0.1, term)
  with pytest.raises(ValueError, match="obstacle"):
    GridWorld(start=(3, 3))
  with pytest.raises(ValueError, match="slip"):
    GridWorld(slip=0.7)


def test_greedy_coupling_few_is_greedy_mec_bit_for_bit():
  """The sorted kernel for a short second marginal against the reference greedy
  coupling, on ties (uniform, small integer weights), zeros and random masses (one
  padded shape per ``m``, so each compiles once)."""
  rng = np.random.default_rng(0)
  n = 29
  few = jax.jit(jax.vmap(mcg.greedy_coupling_few))
  with jax.enable_x64(True):
    for m in (1, 2, 4, 6):
      ps, qs = [], []
      for t in range(60):
        k = int(rng.integers(1, n + 1))
        p = np.zeros(n)
        if t % 3 == 0:
          p[:k] = 1.0 / k
        elif t % 3 == 1:
          p[:k] = rng.integers(0, 4, k)
          p[0] += p.sum() == 0
          p /= p.sum()
        else:
          p[:k] = rng.dirichlet(np.full(k, 0.5))
        ps.append(rng.permutation(p))
        q = rng.integers(1, 3, m).astype(np.float64) if t % 2 else rng.dirichlet(np.ones(m))
        qs.append(q / q.sum())
      ps, qs = np.stack(ps), np.stack(qs)
      np.testing.assert_array_equal(few(jnp.asarray(ps), jnp.asarray(qs)), greedy_mec(ps, qs))


def test_ebim_coupling_orders_code_masses_without_changing_the_joint():
  """The EBIM step hands the greedy coupling the code masses' order derived from EBIM's
  own sort; the joint is bit-for-bit the one that sorts the code masses again, on
  random, tied and sparse beliefs over 130 messages (the bitonic sort's rows)."""
  from entropylab.coupling.ebim import _ebim_clusters

  def resorted(b, pi, rate):
    code = _ebim_clusters(b, rate)
    p_t = jax.ops.segment_sum(b, code, num_segments=b.shape[0])
    p_ta = mcg.greedy_coupling_few(p_t, pi)
    used = p_t > 0
    return b[:, None] * jnp.where(used[:, None], p_ta / jnp.where(used, p_t, 1.0)[:, None],
                                  0.0)[code]

  ours = jax.jit(jax.vmap(lambda b, pi, r: mcg.compressed_coupling(b, pi, r, "ebim")))
  ref = jax.jit(jax.vmap(resorted))
  rng = np.random.default_rng(4)
  n = 130
  bs = []
  for t in range(96):
    k = int(rng.integers(2, n + 1))
    b = np.zeros(n)
    b[:k] = (rng.dirichlet(np.full(k, 0.3)) if t % 3 == 0 else
             rng.integers(1, 4, k) if t % 3 == 1 else 2.0 ** -rng.integers(0, 6, k))
    bs.append(rng.permutation(b / b.sum()))
  bs = np.stack(bs)
  pis = rng.dirichlet(np.ones(5), size=len(bs))
  rates = rng.uniform(0.0, 7.0, size=len(bs))
  for dtype in (jnp.float32, jnp.float64):
    with jax.enable_x64(dtype == jnp.float64):
      args = (jnp.asarray(bs, dtype), jnp.asarray(pis, dtype), jnp.asarray(rates, dtype))
      np.testing.assert_array_equal(ours(*args), ref(*args))


def test_compacted_beliefs_play_the_same_games(world):
  """Episodes that move the belief to its non-zero entries (the default widths for 64
  messages: 8, then 1, where the policy alone is played once one message is left)
  decode the same messages in the same number of steps, with the same return (to
  float32 rounding), as at full width, for all three methods."""
  p, r, term = world.tables()
  _, pi = mcg.soft_q_iteration(p, r, 0.95, math.exp(-4), term, iterations=200)
  prior = jnp.full(M, 1.0 / M)
  assert mcg._widths(M, None) == (M, 8, 1)
  assert mcg._widths(512, None) == (512, 128, 32, 8, 1)  # the benchmark's
  for method, rate in (("none", 0.0), ("ebim", 2.0), ("uniform", 3.0)):
    eps = [mcg.play_coding_game(jax.random.key(3), world, lambda s: pi[s.cell],
                                jnp.arange(M), prior, rate, method, horizon=300,
                                widths=w) for w in ((), None)]
    np.testing.assert_array_equal(eps[0].decoded, eps[1].decoded)
    np.testing.assert_array_equal(eps[0].steps, eps[1].steps)
    np.testing.assert_allclose(eps[0].reward, eps[1].reward, rtol=1e-6)
    np.testing.assert_allclose(eps[0].belief_entropy, eps[1].belief_entropy, atol=1e-4)


def test_imec_game_sends_two_to_the_sixteen_messages(world):
  """2^16 messages as 4 blocks of 4 bits (iterative MEC): a soft policy with episodes of
  about 50 steps carries all 16 bits; a near-greedy one (about 22 steps of little action
  entropy) cannot, and its final belief keeps most of its entropy."""
  p, r, term = world.tables()
  messages = jax.random.randint(jax.random.key(0), (32,), 0, 2 ** 16)
  out = {}
  for log_beta in (-4, -6):
    _, pi = mcg.soft_q_iteration(p, r, 0.95, math.exp(log_beta), term, iterations=200)
    out[log_beta] = mcg.play_imec_coding_game(jax.random.key(1), world,
                                              lambda s, pi=pi: pi[s.cell], messages, 4, 4,
                                              horizon=300)
  assert float(out[-4].correct.mean()) == 1.0
  np.testing.assert_array_equal(out[-4].decoded, messages)
  np.testing.assert_allclose(out[-4].belief_entropy[:, 0], 16.0, rtol=1e-6)
  assert float(out[-4].belief_entropy[:, -1].max()) < 1e-3
  assert float(out[-6].correct.mean()) < 0.2
  assert float(out[-6].belief_entropy[:, -1].mean()) > 8.0
  assert float(out[-6].reward.mean()) > float(out[-4].reward.mean())
  with pytest.raises(ValueError, match="31 bits"):
    mcg.play_imec_coding_game(jax.random.key(0), world, lambda s: pi[s.cell], messages, 4, 8)


def test_greedy_coupling_few_under_nested_and_partial_vmap():
  """The batched kernel (``custom_vmap``) gives each pair's coupling: a vmap over ``p``
  only, and two nested vmaps, against the unbatched call and the reference."""
  rng = np.random.default_rng(5)
  with jax.enable_x64(True):
    ps = jnp.asarray(rng.dirichlet(np.full(17, 0.7), size=(3, 4)))
    q = jnp.asarray(rng.dirichlet(np.ones(3)))
    one_q = jax.jit(jax.vmap(mcg.greedy_coupling_few, in_axes=(0, None)))(ps[0], q)
    nested = jax.jit(jax.vmap(jax.vmap(mcg.greedy_coupling_few, in_axes=(0, None)),
                              in_axes=(0, None)))(ps, q)
    unbatched = jax.jit(mcg.greedy_coupling_few)
    for a in range(3):
      for b in range(4):
        single = unbatched(ps[a, b], q)
        np.testing.assert_array_equal(single, greedy_mec(np.asarray(ps[a, b]), np.asarray(q)))
        np.testing.assert_array_equal(nested[a, b], single)
    np.testing.assert_array_equal(one_q, nested[0])


def test_sharded_episodes_equal_unsharded(world):
  """Episodes split over a mesh of the four test devices (10 episodes: padded to 12)
  decode, earn and stop exactly as the unsharded batch; the belief entropies agree to
  float32 rounding (vector code of another batch width). (``play_imec_coding_game``
  shares the same splitting code.) A second call with a new key and rate reuses the
  first one's program; an unhashable policy plays the same games uncached."""
  p, r, term = world.tables()
  _, pi = mcg.soft_q_iteration(p, r, 0.95, math.exp(-4), term, iterations=200)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("episodes",))
  assert mesh.devices.size == 4
  prior = jnp.full(32, 1.0 / 32)
  messages = jnp.arange(3, 13)
  policy = lambda s: pi[s.cell]
  plain = mcg.play_coding_game(jax.random.key(7), world, policy, messages, prior, 2.0,
                               "ebim", horizon=120)
  split = mcg.play_coding_game(jax.random.key(7), world, policy, messages, prior, 2.0,
                               "ebim", horizon=120, mesh=mesh)
  assert split.decoded.shape == (10,)
  for field in ("decoded", "correct", "reward", "steps"):
    np.testing.assert_array_equal(getattr(plain, field), getattr(split, field))
  np.testing.assert_allclose(plain.belief_entropy, split.belief_entropy, atol=1e-5)
  assert float(plain.correct.mean()) == 1.0
  # Another key and rate, same env, policy and settings: the compiled program is reused
  # (the policy is not traced again).
  traces = []
  counted = lambda s: traces.append(1) or pi[s.cell]
  for k in (8, 9):
    mcg.play_coding_game(jax.random.key(k), world, counted, messages, prior, 1.0 + k / 10,
                         "ebim", horizon=120)
    if k == 8:
      first = len(traces)
  assert first > 0 and len(traces) == first
  # A policy that cannot key the cache (unhashable) runs uncached, with the same games.
  class Table:
    __hash__ = None

    def __call__(self, s):
      return pi[s.cell]

  uncached = mcg.play_coding_game(jax.random.key(7), world, Table(), messages, prior, 2.0,
                                  "ebim", horizon=120)
  for field in ("decoded", "correct", "steps"):
    np.testing.assert_array_equal(getattr(plain, field), getattr(uncached, field))
  with pytest.raises(TypeError, match="mesh"):
    mcg.play_coding_game(jax.random.key(7), world, policy, messages, prior, 2.0, mesh="cpu")
  with pytest.raises(TypeError, match="mesh"):
    mcg.play_imec_coding_game(jax.random.key(7), world, policy, messages, 2, 3, mesh=mesh.devices)
