"""Training shared by the experiments: Adam on a cosine schedule through the runner's
checkpointed loop."""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import optax

from entropylab.runner.rundir import RunDir
from entropylab.runner.train import fit


def fit_adam_cosine(loss_fn: Callable[..., Any], params: Any, key: jax.Array, *,
                    num_steps: int, learning_rate: float,
                    batch_fn: Callable[[jax.Array, jax.Array], Any], run_dir: RunDir,
                    resume: bool, progress: bool = False,
                    callback: Optional[Callable[[Any, dict], None]] = None) -> Any:
  """Trains with Adam whose rate decays from ``learning_rate`` to 5% of it on a cosine
  (:func:`entropylab.runner.train.fit`, checkpoints in ``run_dir``, ``resume`` as
  there). Chunks are the largest divisor of ``num_steps`` up to 500 and a quarter of
  the run, so a resumed run restarts at most a chunk back; ``callback(state, record)``
  runs after each chunk as in ``fit``. Returns the final params."""
  schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.05)
  chunk = max(1, min(500, num_steps // 4))
  while num_steps % chunk:
    chunk -= 1
  state, _ = fit(loss_fn, params, optax.adam(schedule), key, num_steps=num_steps,
                 batch_fn=batch_fn, run_dir=run_dir, chunk_size=chunk, resume=resume,
                 progress=progress, callback=callback)
  return state.params
