"""A tiny Flax regression trained with ``fit``; run in subprocesses by the runner tests.

Usage::

  python _train_script.py train RUN_DIR OUT.npz [--seed S] [--num-steps N]
      [--chunk-size C] [--sleep SECONDS] [--resume]
  python _train_script.py restore RUN_DIR OUT.npz

``train`` fits ``y = sin(x)`` with a 1-32-32-1 tanh MLP, checkpointing every chunk,
sleeping ``--sleep`` seconds after each chunk (so a test has time to kill it), and
writes the final parameters to ``OUT.npz``. ``restore`` restores the newest valid
checkpoint of ``RUN_DIR`` in this (fresh) process and writes its parameters and step.
The tests import :func:`make_problem` too, so in-process and subprocess runs train the
same model.
"""

import argparse
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from entropylab.runner import checkpoint
from entropylab.runner import train
from entropylab.runner.rundir import RunDir

BATCH = 32


class MLP(nn.Module):
  """1-32-32-1 tanh multilayer perceptron."""

  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(32)(x))
    x = nn.tanh(nn.Dense(32)(x))
    return nn.Dense(1)(x)


MODEL = MLP()
# Module-level objects, so every fit call of a process reuses one compilation.
OPTIMIZER = optax.adam(1e-2)
_init = jax.jit(MODEL.init)


def batch_fn(key, step):
  """``BATCH`` points ``x ~ U(-3, 3)`` with targets ``sin(x)``."""
  del step
  x = jax.random.uniform(key, (BATCH, 1), minval=-3.0, maxval=3.0)
  return x, jnp.sin(x)


def loss_fn(params, batch):
  """Mean squared error, with the largest absolute error as an aux metric."""
  x, y = batch
  err = MODEL.apply(params, x) - y
  return jnp.mean(err ** 2), {"max_abs_err": jnp.max(jnp.abs(err))}


def make_problem(seed=0):
  """Returns ``(params, optimizer, loss_fn, batch_fn, key)`` for ``y = sin(x)``."""
  init_key, run_key = jax.random.split(jax.random.key(seed))
  params = _init(init_key, jnp.zeros((1, 1), jnp.float32))
  return params, OPTIMIZER, loss_fn, batch_fn, run_key


def flat_params(params):
  """``{pytree path: numpy array}`` of a parameter pytree."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=["train", "restore"])
  parser.add_argument("run_dir")
  parser.add_argument("out")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-steps", type=int, default=400)
  parser.add_argument("--chunk-size", type=int, default=20)
  parser.add_argument("--sleep", type=float, default=0.0)
  parser.add_argument("--resume", action="store_true")
  args = parser.parse_args(argv)

  params, optimizer, loss_fn, batch_fn, key = make_problem(args.seed)
  if args.mode == "restore":
    template = train.init_state(params, optimizer, key)
    step, state = checkpoint.restore(RunDir(args.run_dir).checkpoint_dir, template)
    np.savez(args.out, __step__=np.asarray(step), __devices__=jax.device_count(),
             **flat_params(state.params))
    return

  def pause(state, record):
    del state, record
    time.sleep(args.sleep)

  state, _ = train.fit(loss_fn, params, optimizer, key, num_steps=args.num_steps,
                       batch_fn=batch_fn, run_dir=args.run_dir,
                       chunk_size=args.chunk_size, resume=args.resume,
                       progress=False, callback=pause if args.sleep > 0 else None)
  np.savez(args.out, __step__=np.asarray(state.step), **flat_params(state.params))


if __name__ == "__main__":
  main(sys.argv[1:])
