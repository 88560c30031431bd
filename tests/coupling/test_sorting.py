"""The bitonic stable argsort equals numpy's stable argsort (ties to the lower index)."""

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.coupling import _sorting


def test_bitonic_argsort_is_the_stable_sort():
  rng = np.random.default_rng(0)
  for n in (2, 3, 130):
    x = rng.random((6, n)).astype(np.float32)
    x[:3] = np.round(x[:3] * 4) / 4  # many ties
    x[4, : n // 2] = 0.0
    expect = np.argsort(x, axis=-1, kind="stable")
    np.testing.assert_array_equal(jax.jit(_sorting._bitonic_argsort)(jnp.asarray(x)), expect)
    # The public entry point (bitonic from 128 entries on CPU), also under vmap.
    np.testing.assert_array_equal(jax.vmap(_sorting.stable_argsort)(jnp.asarray(x)), expect)
