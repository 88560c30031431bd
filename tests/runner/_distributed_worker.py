"""One process of the two-process loopback cluster used by ``test_distributed.py``.

Usage::

  python _distributed_worker.py <coordinator host:port> <num_processes> <id> <out dir>

Joins the cluster, contributes ``(process_id + 1) * ones((local_devices, 3))`` as its
part of a global batch sharded over every device of every process, reduces it with a
jitted sum and an all-gather, and writes what it saw to ``<out dir>/result_<id>.json``
(a file, not stdout: the collectives' native libraries log to the same stream). Then
trains the tiny regression of ``_train_script`` with ``fit`` on a mesh of all devices
of all processes, checkpointing into ``<out dir>/run``, and writes its final
parameters to ``<out dir>/params_<id>.npz``. Expects ``JAX_PLATFORMS=cpu`` and
``XLA_FLAGS`` to be set by the caller.
"""

import json
import sys

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from entropylab.runner import devices
from entropylab.runner import train
from tests.runner import _train_script

FIT_STEPS, FIT_CHUNK = 40, 20


def main(argv):
  address, num_processes, process_id = argv[1], int(argv[2]), int(argv[3])
  out_dir = argv[4]
  devices.initialize_distributed(
      coordinator_address=address, num_processes=num_processes, process_id=process_id,
      initialization_timeout=60)
  mesh = devices.make_mesh()
  local = np.full((jax.local_device_count(), 3), process_id + 1, np.float32)
  batch = devices.shard_batch(local, mesh)
  total = jax.jit(jnp.sum)(batch)
  gathered = multihost_utils.process_allgather(jnp.asarray([process_id + 1.0]))
  result = {
      "process_id": process_id,
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
      "global_devices": jax.device_count(),
      "local_devices": jax.local_device_count(),
      "batch_shape": list(batch.shape),
      "batch_shards": len(batch.sharding.device_set),
      "total": float(np.asarray(total.addressable_data(0))),
      "gathered": np.asarray(gathered).ravel().tolist(),
  }
  with open(f"{out_dir}/result_{process_id}.json", "w") as f:
    json.dump(result, f)

  params, optimizer, loss_fn, batch_fn, key = _train_script.make_problem(seed=0)
  state, _ = train.fit(loss_fn, params, optimizer, key, num_steps=FIT_STEPS,
                       batch_fn=batch_fn, chunk_size=FIT_CHUNK, progress=False,
                       mesh=mesh, run_dir=f"{out_dir}/run")
  local = jax.tree.map(lambda x: x.addressable_data(0), state.params)
  np.savez(f"{out_dir}/params_{process_id}.npz", **_train_script.flat_params(local))
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(sys.argv)
