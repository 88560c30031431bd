"""The bitonic stable argsort equals numpy's stable argsort (ties to the lower index)."""

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.coupling import _sorting


def test_bitonic_argsort_is_the_stable_sort():
  rng = np.random.default_rng(0)
  for n in (3, 130):
    x = rng.random((6, n)).astype(np.float32)
    x[:3] = np.round(x[:3] * 4) / 4  # many ties
    x[4, : n // 2] = 0.0
    expect = np.argsort(x, axis=-1, kind="stable")
    if n < _sorting._BITONIC_MIN:  # the network itself on a padded short row
      np.testing.assert_array_equal(_sorting._bitonic_argsort(jnp.asarray(x)), expect)
    # The public entry point (the network from 128 entries on CPU), jitted and vmapped.
    np.testing.assert_array_equal(jax.jit(jax.vmap(_sorting.stable_argsort))(jnp.asarray(x)),
                                  expect)
