"""benchmarks/train_runs.py: a results file assembled from several invocations (``--append``) names the
commit and command of every row, not only those of the last invocation."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _train_runs():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module("train_runs")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _row(config: str, **extra: str) -> dict:
    epochs = [{"epoch": -1, "bcubed_p": 0.5, "bcubed_r": 0.5, "bcubed_f": 0.5, "clusters": 3,
               "outlier_frac": 0.0, "eval_mAP": None, "eval_rank1": None}]
    return {"config": config, "overrides": [], "seed": 0, "threads": 1, "wall_s": 1.0, "before_mAP": 0.1,
            "before_rank1": 0.1, "adapted_mAP": 0.2, "adapted_rank1": 0.2, "epochs": epochs, **extra}


def _payload(*rows: dict) -> dict:
    machine = {"cpu": "test cpu", "cpu_count": 2, "memory_gib": 1.0, "torch": "x", "torch_threads": 1,
               "load_average_at_start": 0.0}
    return {"commit": "c0ffee", "machine": machine, "command": "python last", "rows": list(rows)}


def test_one_invocation_keeps_one_commit_line() -> None:
    module = _train_runs()
    payload = _payload(_row("a.yaml", commit="c0ffee", command="python last"), _row("b.yaml"))
    text = module.to_markdown(payload)
    assert "Commit `c0ffee`" in text and "several invocations" not in text


def test_rows_of_several_invocations_name_their_own_commit() -> None:
    module = _train_runs()
    payload = _payload(_row("a.yaml", commit="0ld", command="python first"), _row("b.yaml"))
    text = module.to_markdown(payload)
    assert "several invocations" in text
    assert "a.yaml  (seed 0): commit `0ld`, `python first`" in text
    assert "b.yaml  (seed 0): commit `c0ffee`, `python last`" in text


def test_append_keeps_other_rows_with_their_provenance() -> None:
    module = _train_runs()
    old = _payload(_row("a.yaml"), _row("a.yaml", overrides=["x=1"]), _row("b.yaml", commit="0ld", command="c"))
    kept = module.kept_rows(old, ["a.yaml"], ["x=1"])
    assert [(r["config"], r["overrides"]) for r in kept] == [("a.yaml", []), ("b.yaml", [])]
    assert [(r["commit"], r["command"]) for r in kept] == [("c0ffee", "python last"), ("0ld", "c")]
