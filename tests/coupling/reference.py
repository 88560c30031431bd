"""NumPy float64 helpers shared by the coupling tests (entropies in bits)."""

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
