"""The cross-experiment report: one table row per summary value, figures embedded."""

import json

from entropylab.runner import report


def test_report_flattens_summaries_and_formats_records(tmp_path):
  """Nested mappings become dotted rows; floats keep 4 significant digits; a list of
  records (a profile's rows) is one cell, its records in parentheses and separated by
  semicolons; figures are embedded relative to the report; a run without a summary
  says so."""
  run = tmp_path / "runs" / "exp" / "1"
  run.mkdir(parents=True)
  (run / "summary.json").write_text(json.dumps({
      "rate": 0.123456789, "by": {"dense": {"share": 0.5}},
      "curve": [1, 0.25, 2, 0.5],
      "profile": [{"centres": 1, "epr": 1.23456e-7}, {"centres": 2, "epr": 0.5}]}))
  (run / "map.png").write_bytes(b"png")
  empty = tmp_path / "runs" / "other" / "1"
  empty.mkdir(parents=True)
  path = report.write_report(tmp_path / "runs" / "report.md",
                             [("exp", "what it shows", run), ("other", "none", empty)])
  text = path.read_text()
  assert "| rate | 0.1235 |" in text
  assert "| by.dense.share | 0.5 |" in text
  assert "| curve | 1, 0.25, 2, 0.5 |" in text
  assert "| profile | (centres 1, epr 1.235e-07); (centres 2, epr 0.5) |" in text
  assert "![exp: map](exp/1/map.png)" in text
  assert "_no summary.json: the run did not finish_" in text
