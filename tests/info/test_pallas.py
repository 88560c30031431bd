"""The Pallas entropy-from-logits kernel (entropylab.info._pallas).

On CPU the kernel runs in Pallas' interpreter, which executes the same tiling, carries
and rescaling as the compiled kernel; the values must match the two-pass
``-sum softmax * log_softmax`` form. With a GPU present the compiled kernel is checked
too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.info import _pallas, discrete


@pytest.mark.parametrize("shape, block_rows, block_cols", [
    ((8, 4096), 4, 256),   # tiles divide: no padding
    ((13, 1000), 4, 256),  # rows and columns padded
    ((3, 5), 8, 2048),     # one tile narrower than block_cols
])
def test_interpreted_kernel_matches_two_pass(shape, block_rows, block_cols):
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(3.0 * rng.normal(size=shape), jnp.float32)
  # A row with half its logits at -inf (probability 0), a row with huge logits, and a
  # row whose maximum arrives in the last tile (the carried sums get rescaled).
  x = x.at[0, : shape[1] // 2].set(-jnp.inf)
  x = x.at[1].add(1e4)
  x = x.at[2, -1].set(60.0)
  got = _pallas.logits_entropy_pallas(x, block_rows=block_rows, block_cols=block_cols,
                                      interpret=True)
  want = discrete._logits_entropy_two_pass(x)
  np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
  # The -inf half-row is a distribution over the other half only.
  half = discrete._logits_entropy_two_pass(x[:1, shape[1] // 2:])
  np.testing.assert_allclose(got[:1], half, rtol=2e-6, atol=2e-6)


def test_uniform_logits_give_log_n():
  x = jnp.zeros((4, 3000), jnp.float32)
  got = _pallas.logits_entropy_pallas(x, block_rows=2, block_cols=512, interpret=True)
  np.testing.assert_allclose(got, np.log(3000.0), rtol=1e-6)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU")
@pytest.mark.parametrize("shape", [(64, 32768), (3, 50257), (5, 1000), (2, 7), (2, 3, 4096)])
def test_compiled_kernel_on_gpu(shape):
  """The compiled kernel in the tile shapes entropy_from_logits uses on GPUs (and the
  default ones), on widths that need padding, and through the public function with
  its leading axes, -inf entries and bfloat16 input."""
  x = 2.0 * jax.random.normal(jax.random.key(0), shape, jnp.float32)
  x = x.at[..., 1].set(-jnp.inf)
  ref = discrete._logits_entropy_two_pass(x)
  flat = x.reshape(-1, shape[-1])
  for tiles in ({}, {"block_rows": 1, "block_cols": 4096}):
    np.testing.assert_allclose(_pallas.logits_entropy_pallas(flat, **tiles).reshape(ref.shape),
                               ref, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(jax.jit(discrete.entropy_from_logits)(x), ref, rtol=2e-6,
                             atol=2e-6)
  xb = x.astype(jnp.bfloat16)
  np.testing.assert_allclose(discrete.entropy_from_logits(xb).astype(jnp.float32),
                             discrete._logits_entropy_two_pass(xb.astype(jnp.float32)),
                             rtol=1e-2, atol=1e-2)
  g = jax.grad(lambda l: discrete.entropy_from_logits(l).sum())(x)
  assert bool(jnp.all(jnp.isfinite(g)))
