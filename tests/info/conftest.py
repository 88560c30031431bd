"""Strategies and generators shared by the info (and coupling) tests."""

import numpy as np
from hypothesis import strategies as st


def simplex(n_min=2, n_max=12, zeros=True):
  """Hypothesis strategy for probability vectors (float64 numpy), optionally with zeros."""

  @st.composite
  def draw(draw_fn):
    n = draw_fn(st.integers(n_min, n_max))
    w = np.array(draw_fn(st.lists(st.floats(0.0, 10.0), min_size=n, max_size=n)))
    if not zeros:
      w = w + 1e-3
    if w.sum() <= 0:
      w = np.ones(n)
    return w / w.sum()

  return draw()


def random_joint(rng, shape, zeros_frac=0.2):
  w = rng.gamma(0.7, size=shape)
  w[rng.random(shape) < zeros_frac] = 0.0
  if w.sum() == 0:
    w[(0,) * len(shape)] = 1.0
  return w / w.sum()
