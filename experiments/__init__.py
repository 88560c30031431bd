"""Runnable reproductions, one module per paper result.

An experiment is a frozen config dataclass with ``smoke`` and ``paper`` presets plus a
``run(config, run_dir) -> summary`` function, registered by name in :data:`REGISTRY`.
Run them with ``python -m experiments``::

    python -m experiments list
    python -m experiments run NAME --preset smoke|paper [--set key=value ...]
                                   [--out DIR] [--resume] [--distributed]
    python -m experiments all --preset smoke      # every experiment + runs/report.md
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

# Modules that define experiments; each calls `register` at import.
_MODULES = (
    "experiments.entropy_estimators",
    "experiments.ebim_frontier",
    "experiments.mec_gap",
    "experiments.mecb_couplings",
    "experiments.information_estimators",
    "experiments.epr_validation",
    "experiments.active_matter",
    "experiments.qarl",
    "experiments.coding_game",
    "experiments.coding_game_brax",
)


@dataclasses.dataclass(frozen=True)
class Experiment:
  name: str
  description: str
  presets: Mapping[str, Any]
  run: Callable[[Any, Any], Mapping[str, Any]]

  @property
  def config_cls(self) -> type:
    return type(next(iter(self.presets.values())))


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, presets: Mapping[str, Any],
             run: Callable[[Any, Any], Mapping[str, Any]]) -> Experiment:
  """Adds an experiment. ``presets`` maps preset names (``smoke``, ``paper``) to configs."""
  if name in REGISTRY:
    raise ValueError(f"experiment {name!r} is registered twice")
  missing = {"smoke", "paper"} - set(presets)
  if missing:
    raise ValueError(f"experiment {name!r} lacks presets {sorted(missing)}")
  exp = Experiment(name, description, dict(presets), run)
  REGISTRY[name] = exp
  return exp


def load_all() -> dict[str, Experiment]:
  for module in _MODULES:
    importlib.import_module(module)
  return REGISTRY
