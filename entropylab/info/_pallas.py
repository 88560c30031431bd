r"""A Pallas kernel for the entropy of ``softmax(logits)`` in one streaming read.

What :func:`entropylab.info.entropy_from_logits` runs on NVIDIA GPUs (16- and 32-bit
floats). On an H100 (``benchmarks/results/bench_info_gpu_NVIDIA_H100_80GB_HBM3.md``) XLA's
variadic reduction (``discrete._logits_entropy_one_pass``) took 1.62x the time of the
single-reduction read floor. This kernel, in tiles of one row by 4096 columns, took
1.04x. The tests check its values in interpreter mode on CPU and compiled on a GPU.
It lowers through Pallas' Triton backend, which jax 0.11 marks deprecated: a jax without
it needs a port to the Mosaic GPU backend (the compiled-GPU test will fail first).

Each program owns ``block_rows`` rows and walks their columns in tiles of
``block_cols``, carrying per row the running maximum :math:`m`, :math:`s = \sum_j
e^{z_j}` and :math:`u = \sum_j e^{z_j} z_j` with :math:`z = l - m`; when the maximum
grows from :math:`m` to :math:`m'` the carried sums are rescaled by
:math:`e^{m - m'}` and :math:`u` gains :math:`s (m - m')`. At the end
:math:`H = \log s - u / s` (nats). ``-inf`` logits contribute nothing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

Array = jax.Array


def _kernel(x_ref, o_ref, *, block_cols: int, tiles: int):
  rows = x_ref.shape[0]

  def body(j, carry):
    m, s, u = carry
    x = x_ref[:, pl.ds(j * block_cols, block_cols)].astype(jnp.float32)
    m_new = jnp.maximum(m, jnp.max(x, axis=1))
    # All -inf so far: keep a finite reference so that no -inf - -inf appears.
    ref = jnp.where(m_new > -jnp.inf, m_new, 0.0)
    shift = jnp.where(m > -jnp.inf, m - ref, 0.0)
    scale = jnp.where(s > 0, jnp.exp(shift), 0.0)
    z = x - ref[:, None]
    e = jnp.exp(z)
    ez = jnp.where(e > 0, e * z, 0.0)
    s_new = s * scale + jnp.sum(e, axis=1)
    u_new = (u + s * shift) * scale + jnp.sum(ez, axis=1)
    return m_new, s_new, u_new

  init = (jnp.full((rows,), -jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.float32),
          jnp.zeros((rows,), jnp.float32))
  _, s, u = lax.fori_loop(0, tiles, body, init)
  o_ref[...] = (jnp.log(s) - u / s).astype(o_ref.dtype)


@functools.partial(jax.jit, static_argnames=("block_rows", "block_cols", "interpret"))
def logits_entropy_pallas(x: Array, block_rows: int = 8, block_cols: int = 2048,
                          interpret: bool = False) -> Array:
  """Entropy in nats of ``softmax(x)`` over the last axis of ``x: [B, n]``; ``[B]``.

  ``block_rows`` and ``block_cols`` are powers of two; inputs are padded with ``-inf``
  columns and repeated rows to whole tiles (no copy when they already divide). Every
  row needs a finite logit. Computes in float32 and returns ``x``'s dtype.
  """
  b, n = x.shape
  cols = min(block_cols, pl.next_power_of_2(n))
  pad_cols = -n % cols
  pad_rows = -b % block_rows
  if pad_cols:
    x = jnp.pad(x, ((0, 0), (0, pad_cols)), constant_values=-jnp.inf)
  if pad_rows:
    x = jnp.pad(x, ((0, pad_rows), (0, 0)), mode="edge")
  rows_total, n_total = x.shape
  kernel = functools.partial(_kernel, block_cols=cols, tiles=n_total // cols)
  out = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((rows_total,), x.dtype),
      grid=(rows_total // block_rows,),
      in_specs=[pl.BlockSpec((block_rows, n_total), lambda i: (i, 0))],
      out_specs=pl.BlockSpec((block_rows,), lambda i: (i,)),
      interpret=interpret,
  )(x)
  return out[:b]
