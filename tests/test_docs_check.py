"""benchmarks/docs_check.py: README.md and docs/ pass; a planted wrong number, a missing results file and a
results file from a dirty tree each fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import docs_check  # noqa: E402


def test_the_docs_pass():
    assert docs_check.main([]) == 0


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_a_planted_wrong_number_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "run.json").write_text(json.dumps({"commit": "abc", "mAP": 0.33641, "rank1": 0.5982}))
    (results / "run.md").write_text("| mAP | rank-1 |\n| 33.6 | 59.8 |\n")
    monkeypatch.setattr(docs_check, "RESULTS", results)
    cite = "[run](benchmarks/results/run.md)"
    assert docs_check.problems([_doc(tmp_path, f"Zero-shot: 33.6% mAP, rank-1 0.598 ({cite}).\n")]) == []
    found = docs_check.problems([_doc(tmp_path, f"Zero-shot: 33.7% mAP ({cite}).\n")])
    assert len(found) == 1 and "33.7" in found[0]
    assert docs_check.problems([_doc(tmp_path, f"Same `lr 0.123` in code ({cite}).\n")]) == []  # code is not prose
    found = docs_check.problems([_doc(tmp_path, "See [gone](benchmarks/results/gone.md): 1.5.\n")])
    assert any("does not exist" in line for line in found)
    (results / "run.json").write_text(json.dumps({"commit": "abc+dirty", "mAP": 0.33641}))
    found = docs_check.problems([_doc(tmp_path, f"33.6% ({cite}).\n")])
    assert any("dirty" in line for line in found)
