"""Discretised continuous actions: the exact bin probabilities of a tanh-Gaussian policy
and the action index <-> bin centre map (the coding game on Brax itself is tested by
tests/experiments/test_coding_game_brax.py)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from entropylab.rl import DiscreteActions, bin_centres, bin_edges, discretized_tanh_gaussian


def _scipy_bins(mu, sigma, bins):
  """Reference: P[tanh(u) in bin k] = Phi((atanh e_{k+1} - mu)/sigma) - Phi(...), with
  scipy's normal and the edges written out, in float64."""
  with np.errstate(divide="ignore"):  # the outer edges are atanh(+-1) = +-inf
    edges = np.arctanh(np.linspace(-1, 1, bins + 1))
  cdf = stats.norm(mu, sigma).cdf(edges)
  return np.diff(cdf)


@pytest.mark.parametrize("mu,log_std,scale", [(0.3, 0.0, 1.0), (-1.7, -1.2, 0.5),
                                              (2.5, 0.8, 2.0), (0.0, -3.0, 1.0)])
def test_bins_match_scipy(x64, mu, log_std, scale):
  for bins in (2, 5, 9):
    ours = discretized_tanh_gaussian(jnp.array([mu]), jnp.array([log_std]), bins, scale)
    np.testing.assert_allclose(ours, _scipy_bins(mu, math.exp(log_std) * scale, bins),
                               rtol=1e-9, atol=1e-14)


def test_bins_match_samples_in_two_dimensions():
  """Row-major joint over two dimensions against a histogram of 400,000 squashed
  Gaussian samples (within 5 standard errors)."""
  rng = np.random.default_rng(0)
  mean, log_std, bins = np.array([0.4, -0.9]), np.array([-0.3, 0.2]), 4
  probs = np.asarray(discretized_tanh_gaussian(jnp.asarray(mean), jnp.asarray(log_std), bins))
  a = np.tanh(mean + np.exp(log_std) * rng.standard_normal((400_000, 2)))
  digit = np.clip(np.digitize(a, np.asarray(bin_edges(bins))[1:-1]), 0, bins - 1)
  freq = np.bincount(digit[:, 0] * bins + digit[:, 1], minlength=bins * bins) / a.shape[0]
  se = np.sqrt(probs * (1 - probs) / a.shape[0])
  assert np.all(np.abs(freq - probs) <= 5 * se + 1e-6)
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-6)


def test_tails_and_near_deterministic_policies_are_exact():
  # Far in a tail (float32): the mass sits in the outer bin, no NaN, the far bins keep
  # their tiny masses (survival function), never negative.
  far = discretized_tanh_gaussian(jnp.array([6.0, -6.0]), jnp.array([-1.0, -1.0]), 5)
  assert np.all(np.isfinite(far)) and np.all(np.asarray(far) >= 0)
  np.testing.assert_allclose(far[4 * 5 + 0], 1.0, atol=1e-6)  # (last bin, first bin)
  # A vanishing std puts all mass on the bin holding tanh(mean).
  for m in (-1.3, -0.1, 0.05, 0.9):
    p = discretized_tanh_gaussian(jnp.array([m]), jnp.array([0.0]), 5, std_scale=1e-7)
    k = int(np.digitize(np.tanh(m), np.asarray(bin_edges(5))[1:-1]))
    np.testing.assert_allclose(p, np.eye(5)[k], atol=1e-6)
  # Batched and jitted: same as one by one.
  means = jnp.array([[0.2], [-2.0], [1.0]])
  logs = jnp.array([[0.1], [-0.5], [0.3]])
  batch = jax.jit(lambda m, s: discretized_tanh_gaussian(m, s, 3))(means, logs)
  for i in range(3):
    np.testing.assert_allclose(batch[i], discretized_tanh_gaussian(means[i], logs[i], 3),
                               rtol=1e-6)


class _Line:
  """A 2-D continuous toy environment: records the action it is given."""

  action_size = 2
  observation_size = 2

  def reset(self, key):
    return {"obs": jnp.zeros(2)}

  def step(self, state, action):
    return {"obs": action}


def test_action_index_plays_the_bin_centres():
  env = DiscreteActions(_Line(), 3)
  assert env.num_actions == 9
  np.testing.assert_allclose(bin_centres(3), [-2 / 3, 0.0, 2 / 3], atol=1e-7)
  edges = np.asarray(bin_edges(3))[1:-1]
  probs = discretized_tanh_gaussian(jnp.array([0.5, -0.2]), jnp.array([0.0, -0.5]), 3)
  per_dim = [discretized_tanh_gaussian(jnp.array([m]), jnp.array([s]), 3)
             for m, s in ((0.5, 0.0), (-0.2, -0.5))]
  for index in range(9):
    a = np.asarray(env.step(env.reset(None), index)["obs"])
    d0, d1 = np.digitize(a, edges)
    assert d0 * 3 + d1 == index
    np.testing.assert_allclose(probs[index], per_dim[0][d0] * per_dim[1][d1], rtol=1e-6)


def test_bad_input_names_the_argument():
  with pytest.raises(ValueError, match="bins"):
    discretized_tanh_gaussian(jnp.zeros(1), jnp.zeros(1), 1)
  with pytest.raises(ValueError, match="bins"):
    bin_centres(2.5)
  with pytest.raises(ValueError, match="std_scale"):
    discretized_tanh_gaussian(jnp.zeros(1), jnp.zeros(1), 3, std_scale=0.0)
  with pytest.raises(ValueError, match="std_scale"):
    discretized_tanh_gaussian(jnp.zeros(1), jnp.zeros(1), 3, std_scale=float("inf"))
  with pytest.raises(ValueError, match="log_std"):
    discretized_tanh_gaussian(jnp.zeros(2), jnp.zeros(3), 3)
  from entropylab.rl import GridWorld
  with pytest.raises(ValueError, match="action_size"):
    DiscreteActions(GridWorld(), 3)
  with pytest.raises(ValueError, match="bins"):
    DiscreteActions(_Line(), 1)
