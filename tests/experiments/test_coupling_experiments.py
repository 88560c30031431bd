"""The coupling experiments on small configurations: their guarantees hold."""

import json

import numpy as np

from entropylab.runner.rundir import RunDir
from experiments import ebim_frontier as ebf


def test_ebim_frontier_small(tmp_path):
  cfg = ebf.Config(rates=21, refine_steps=2001, brute_force_samples=50_000, source_size=10,
                   progress=False)
  run_dir = RunDir(tmp_path)
  summary = ebf.run(cfg, run_dir)
  # Theorem 3's moves trace the frontier: a random search over all p(t|x) finds nothing
  # better (beyond its own resolution), and it finds points close to every frontier value.
  assert summary["refined_minus_brute_force_bits"]["min"] > -5e-3
  assert summary["refined_minus_brute_force_bits"]["max"] < 1e-2
  rows = (tmp_path / "table.md").read_text().splitlines()[2:]
  vals = np.array([[float(c) for c in r.strip("|").split("|")] for r in rows])
  rates, greedy, refined = vals[:, 0], vals[:, 1], vals[:, 2]
  assert np.all(greedy <= refined + 1e-4)          # greedy is a deterministic mapping
  assert np.all(refined <= rates + 1e-4)           # I(X;T) <= H(T) <= R
  assert summary["binomial_ebim_below_quantizer_rates"] == 0
  assert summary["geometric_ebim_below_quantizer_rates"] == 0
  assert (tmp_path / "ebim_frontier.png").exists() and (tmp_path / "ebim_vs_quantizer.png").exists()
  assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 0


def test_mec_gap_small(tmp_path):
  from experiments import mec_gap
  cfg = mec_gap.Config(sizes=(5, 50), pairs=6, progress=False)
  summary = mec_gap.run(cfg, RunDir(tmp_path))
  for n in ("5", "50"):
    # greedy is above the bound and, by Compton et al., within log2(e)/e of OPT >= bound
    assert 0.0 <= summary["gap_mean_bits"][n] <= summary["gap_max_bits"][n] < np.log2(np.e)
  cells = [json.loads(p.read_text()) for p in sorted((tmp_path / "cells").glob("*.json"))]
  for c in cells:
    assert c["lower_bound_bits"] <= c["greedy_bits"] <= c["independent_bits"]
  assert (tmp_path / "mec_gap.png").exists()


def test_mecb_couplings_small(tmp_path):
  from experiments import mecb_couplings
  cfg = mecb_couplings.Config(sizes=(8,), compression=(1.0, 2.0, 4.0, 8.0), progress=False)
  mecb_couplings.run(cfg, RunDir(tmp_path))
  cells = sorted((json.loads(p.read_text()) for p in (tmp_path / "cells").glob("*.json")),
                 key=lambda c: c["compression"])
  # no bottleneck: MEC-B of two uniforms is a bijection, no randomness left
  assert abs(cells[0]["H_Y_given_X"]) < 1e-9 and abs(cells[0]["I_XY"] - 3.0) < 1e-9
  stoch = [c["H_Y_given_X"] for c in cells]
  assert all(b >= a - 1e-9 for a, b in zip(stoch, stoch[1:]))  # more compression, more noise
  for c in cells:
    assert c["H_T"] <= c["rate_bits"] + 1e-9 and c["lemma1_slack_bits"] >= -1e-9
    assert abs(c["H_XY"] - (3.0 + c["H_Y_given_X"])) < 1e-9
