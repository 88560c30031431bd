"""NumPy helpers shared by the coupling tests (entropies in bits, the slow greedy)."""

import numpy as np


def bits(p):
  """Entropy in bits over the last axis."""
  p = np.asarray(p, dtype=np.float64)
  return -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def mi_bits(pab):
  """Mutual information in bits of joints ``[..., a, b]``."""
  pab = np.asarray(pab, dtype=np.float64)
  flat = pab.reshape(pab.shape[:-2] + (-1,))
  return bits(pab.sum(-1)) + bits(pab.sum(-2)) - bits(flat)


def slow_greedy(marginals, dtype=np.float64):
  """Kocaoglu et al. (AAAI 2017), Algorithm 1 step by step with ``numpy.argmax`` (lowest
  index on ties) in ``dtype``: ``(index [S, k], mass [S])``, unused steps 0 / index 0."""
  res = [np.array(m, dtype=dtype) for m in marginals]
  steps = sum(len(r) for r in res) - len(res) + 1
  index = np.zeros((steps, len(res)), np.int64)
  mass = np.zeros(steps, dtype)
  for t in range(steps):
    tops = [int(np.argmax(r)) for r in res]
    r = min(res[i][j] for i, j in enumerate(tops))
    if r <= 0:  # some marginal is used up: nothing more can be placed
      break
    for i, j in enumerate(tops):
      res[i][j] = res[i][j] - r
    index[t] = tops
    mass[t] = r
  return index, mass
