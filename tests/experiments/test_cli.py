"""The experiment command line: listing, errors, run directories, report."""

import dataclasses
import json
import pathlib

import pytest

import experiments
from experiments import __main__ as cli
from experiments import entropy_estimators as ee
from entropylab.runner import config as config_lib

TINY = ee.Config(distributions=("zipf",), supports=(8,), sample_sizes=(10, 1000), replicates=8,
                 estimators=("plugin", "miller_madow"), progress=False)


def _error_line(capsys, argv):
  with pytest.raises(SystemExit) as exc:
    cli.main(argv)
  assert exc.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  return err


def test_list_prints_one_line_per_experiment(capsys):
  assert cli.main(["list"]) == 0
  out = capsys.readouterr().out.strip().splitlines()
  names = sorted(experiments.load_all())
  assert len(out) == len(names)
  assert all(line.split()[0] == name for line, name in zip(out, names))


def test_unknown_name_preset_key_and_type_are_one_line_errors(capsys):
  err = _error_line(capsys, ["run", "nope"])
  assert "unknown experiment 'nope'" in err and "entropy_estimators" in err
  err = _error_line(capsys, ["run", "entropy_estimators", "--preset", "huge"])
  assert "unknown preset 'huge'" in err and "paper" in err and "smoke" in err
  err = _error_line(capsys, ["run", "entropy_estimators", "--set", "repliates=3"])
  assert "repliates" in err and "valid keys" in err and "replicates" in err
  err = _error_line(capsys, ["run", "entropy_estimators", "--set", "replicates=many"])
  assert "replicates" in err and "expected an int" in err
  err = _error_line(capsys, ["run", "entropy_estimators", "--set", "distributions=zipf,cauchy"])
  assert "distributions" in err and "cauchy" in err and "dirichlet" in err
  err = _error_line(capsys, ["run", "entropy_estimators", "--set", "progress=maybe"])
  assert "progress" in err and "bool" in err


def test_overrides_parse_types():
  cfg = config_lib.apply_overrides(ee.PRESETS["smoke"], [
      "replicates=5", "supports=4,16", "zipf_exponent=1.5", "progress=false", "seed=1e1"])
  assert cfg.replicates == 5 and cfg.supports == (4, 16) and cfg.zipf_exponent == 1.5
  assert cfg.progress is False and cfg.seed == 10


def test_run_writes_run_directory(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["run", "entropy_estimators", "--out", str(out), "--set", "supports=8",
          "--set", "sample_sizes=10,1000", "--set", "replicates=8", "--set", "distributions=zipf",
          "--set", "estimators=plugin,miller_madow", "--set", "progress=false"]
  assert cli.main(argv) == 0
  cfg = json.loads((out / "config.json").read_text())
  assert cfg["experiment"] == "entropy_estimators" and cfg["config"]["replicates"] == 8
  summary = json.loads((out / "summary.json").read_text())
  assert summary["zipf"]["best_estimator"] in ("plugin", "miller_madow")
  records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [0, 1]
  assert (out / "bias_rmse_zipf.png").stat().st_size > 1000
  # resume with a different config is refused
  err = _error_line(capsys, argv[:-2] + ["--set", "replicates=9", "--resume"])
  assert "config differs" in err


def test_all_writes_report_with_figures(tmp_path, monkeypatch):
  registry = experiments.load_all()
  exp = registry["entropy_estimators"]
  monkeypatch.setitem(registry, "entropy_estimators",
                      dataclasses.replace(exp, presets={"smoke": TINY, "paper": TINY}))
  # The smoke presets that train (minutes each on 2 cores), and coding_game's, stay out
  # of the suite's budget; each has its own test on a tiny config
  # (tests/experiments/test_<name>.py), and `make demo` runs them all.
  for name in ("qarl", "active_matter", "epr_validation", "information_estimators",
               "coding_game", "coding_game_brax"):
    monkeypatch.delitem(registry, name)
  assert cli.main(["all", "--preset", "smoke", "--root", str(tmp_path)]) == 0
  report = (tmp_path / "report.md").read_text()
  assert "## entropy_estimators" in report and "zipf.best_estimator" in report
  images = [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
  assert images and all((tmp_path / rel).exists() for rel in images)
