"""Resumable grids of independent cells (a sweep over sizes, rates, seeds, ...).

Experiments that do not train but evaluate many independent configurations run them
through :func:`run_cells`: each finished cell is written atomically to
``cells/<id>.json`` and logged to ``metrics.jsonl``; with ``resume=True`` cells whose
file is complete are read back instead of recomputed, and a file torn by a kill is
recomputed. A progress bar shows cells done, rate and ETA.
"""

from __future__ import annotations

import json
from typing import Callable, Hashable, Mapping, Sequence

from entropylab.runner.rundir import RunDir, write_json


def run_cells(run_dir: RunDir, cells: Sequence[tuple[str, Hashable]],
              compute: Callable[[Hashable], Mapping], *, resume: bool = False,
              desc: str = "cells", progress: bool = True,
              metrics: Callable[[Mapping], Mapping] | None = None) -> dict:
  """Computes (or, on resume, reloads) every cell.

  Args:
    run_dir: the run directory; cell files go to ``run_dir/cells/``.
    cells: ``(cell_id, spec)`` pairs; ``cell_id`` is a file-name-safe string.
    compute: ``spec -> result``; the result must be JSON-serialisable.
    resume: reuse complete cell files from an earlier, interrupted run.
    desc: progress-bar label.
    progress: show the progress bar.
    metrics: optional ``result -> dict`` of scalars appended to ``metrics.jsonl``.

  Returns:
    ``{spec: result}`` in the order of ``cells``.
  """
  ids = [cid for cid, _ in cells]
  if len(set(ids)) != len(ids):
    raise ValueError("cells: cell ids must be unique")
  cells_dir = run_dir.path / "cells"
  cells_dir.mkdir(parents=True, exist_ok=True)
  log = run_dir.metrics
  if not resume and log.path.exists():
    log.path.unlink()
  from tqdm.auto import tqdm
  results = {}
  with tqdm(total=len(cells), desc=desc, unit="cell", disable=not progress) as bar:
    for step, (cid, spec) in enumerate(cells):
      path = cells_dir / f"{cid}.json"
      if resume and path.exists():
        try:
          results[spec] = json.loads(path.read_text())
          bar.update(1)
          continue
        except json.JSONDecodeError:
          pass  # torn by a kill: recompute
      result = dict(compute(spec))
      write_json(path, result)
      log.append(step, cell=cid, **(dict(metrics(result)) if metrics else {}))
      results[spec] = json.loads(path.read_text())  # the JSON form, as a resume would see it
      bar.update(1)
  return results
