r"""Discretised actions for continuous-control environments (Markov coding games on Brax).

A Markov coding game (:mod:`entropylab.rl.mcg`) couples the receiver's belief with a
distribution over a finite action set. For a Brax environment, whose actions lie in
``[-1, 1]^A``, each action dimension is cut into ``bins`` equal intervals
(:func:`bin_edges`) and the agent plays the interval's centre (:func:`bin_centres`);
the joint discrete action is the row-major index of the ``A`` bins, so there are
``bins ** A`` actions (:class:`DiscreteActions`).

The marginal policy is the soft actor-critic policy of :mod:`entropylab.rl.sac`, a
tanh-squashed Gaussian :math:`a = \tanh(u)`, :math:`u \sim N(\mu, \sigma^2)` per
dimension (Haarnoja et al. 2018), discretised exactly: the probability of bin
:math:`[e_k, e_{k+1}]` is the probability that the squashed sample falls in it,

.. math:: \Pr[k] = \Phi\Big(\frac{\operatorname{atanh} e_{k+1} - \mu}{s\sigma}\Big)
   - \Phi\Big(\frac{\operatorname{atanh} e_k - \mu}{s\sigma}\Big),

with :math:`\operatorname{atanh}(\pm 1) = \pm\infty` at the outer edges, and the joint
is the product over the dimensions (the policy is factorised)
(:func:`discretized_tanh_gaussian`). ``std_scale`` :math:`s` widens or narrows every
dimension's Gaussian, the Brax analogue of the soft-Q temperature ``beta`` of the
gridworld study: a smaller :math:`s` is greedier (more reward, less action entropy to
carry the message).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from entropylab.info import _checks

Array = jax.Array


def _check_bins(bins: Any) -> int:
  if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
    raise ValueError(f"bins must be an int >= 2, got {bins!r}")
  return bins


def bin_edges(bins: int) -> Array:
  """``[bins + 1]`` edges ``-1 + 2k / bins`` of the equal bins of ``[-1, 1]``."""
  _check_bins(bins)
  return jnp.linspace(-1.0, 1.0, bins + 1)


def bin_centres(bins: int) -> Array:
  """``[bins]`` centres ``-1 + (2k + 1) / bins`` of the bins of :func:`bin_edges`."""
  _check_bins(bins)
  return -1.0 + (2.0 * jnp.arange(bins) + 1.0) / bins


def discretized_tanh_gaussian(mean: Array, log_std: Array, bins: int,
                              std_scale=1.0) -> Array:
  r"""Probabilities of the ``bins ** A`` discrete actions under a tanh-squashed Gaussian
  policy (module docstring; exact, no sampling).

  Args:
    mean: ``[..., A]`` means :math:`\mu` of the Gaussian before the tanh (the first
      output of :class:`entropylab.rl.sac.TanhGaussianActor`).
    log_std: ``[..., A]`` log standard deviations :math:`\log\sigma` (its second).
    bins: bins per dimension (static int ``>= 2``).
    std_scale: :math:`s > 0`, multiplies every standard deviation.

  Returns:
    ``[..., bins ** A]`` probabilities (summing to 1) in the row-major order of the
    per-dimension bins, the order of :class:`DiscreteActions`.
  """
  _check_bins(bins)
  mean, log_std = jnp.asarray(mean), jnp.asarray(log_std)
  if mean.ndim < 1 or mean.shape != log_std.shape:
    raise ValueError(f"mean and log_std must have the same shape [..., A], got {mean.shape} "
                     f"and {log_std.shape}")
  if _checks.is_concrete(std_scale):
    s = float(std_scale)
    if not s > 0 or s == float("inf"):
      raise ValueError(f"std_scale must be a finite number > 0, got {std_scale}")
  dtype = jnp.result_type(mean.dtype, jnp.float32)
  mean, log_std = mean.astype(dtype), log_std.astype(dtype)
  inner = jnp.arctanh(bin_edges(bins)[1:-1].astype(dtype))  # [bins - 1]
  sigma = jnp.exp(log_std) * jnp.asarray(std_scale, dtype)
  z = (inner - mean[..., None]) / sigma[..., None]  # [..., A, bins - 1]
  # Upper-tail edges from the survival function, so a far-off bin keeps its small
  # mass instead of a difference of two numbers near 1.
  lower = jnp.concatenate([jnp.zeros_like(z[..., :1]), ndtr(z)], axis=-1)
  upper = jnp.concatenate([ndtr(z), jnp.ones_like(z[..., :1])], axis=-1)
  below = upper - lower
  s_lower = jnp.concatenate([jnp.ones_like(z[..., :1]), ndtr(-z)], axis=-1)
  s_upper = jnp.concatenate([ndtr(-z), jnp.zeros_like(z[..., :1])], axis=-1)
  above = s_lower - s_upper
  # Each bin from the tail in which its lower edge lies.
  lo_z = jnp.concatenate([jnp.full_like(z[..., :1], -jnp.inf), z], axis=-1)
  per_dim = jnp.maximum(jnp.where(lo_z > 0, above, below), 0.0)
  per_dim = per_dim / jnp.sum(per_dim, axis=-1, keepdims=True)  # [..., A, bins]
  joint = per_dim[..., 0, :]
  for d in range(1, per_dim.shape[-2]):
    joint = (joint[..., :, None] * per_dim[..., d, None, :]).reshape(
        joint.shape[:-1] + (-1,))
  return joint


class DiscreteActions:
  """An environment with actions in ``[-1, 1]^A`` (a Brax env) played through
  ``bins ** A`` discrete actions, the bins' centres (module docstring).

  ``reset(key)`` is the environment's; ``step(state, action)`` takes an int action
  index (row-major over the dimensions' bins) and steps the environment with the
  centres. States are the environment's (``state.obs``, ``state.reward``,
  ``state.done``), so :func:`entropylab.rl.play_coding_game` runs on it unchanged.

  Args:
    env: has ``reset(key)``, ``step(state, action [A])`` and an int ``action_size``.
    bins: bins per dimension (int ``>= 2``).
  """

  def __init__(self, env: Any, bins: int):
    size = getattr(env, "action_size", None)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
      raise ValueError(f"env must have continuous actions: an int attribute action_size >= 1,"
                       f" got {size!r}")
    for name in ("reset", "step"):
      if not callable(getattr(env, name, None)):
        raise ValueError(f"env must have a callable {name}()")
    self.env = env
    self.bins = _check_bins(bins)
    self.action_size = size
    self.num_actions = bins ** size

  @property
  def observation_size(self) -> int:
    return self.env.observation_size

  def action(self, index: Array) -> Array:
    """``[]`` int action index -> ``[A]`` continuous action (bin centres)."""
    digits = jnp.unravel_index(jnp.asarray(index), (self.bins,) * self.action_size)
    return bin_centres(self.bins)[jnp.stack(digits)]

  def reset(self, key: Array):
    return self.env.reset(key)

  def step(self, state, action: Array):
    return self.env.step(state, self.action(action))


__all__ = ["DiscreteActions", "bin_centres", "bin_edges", "discretized_tanh_gaussian"]
