"""benchmarks/labels_table.py runs `streamlabel labels` in-process with every option of the command at its
default (a hand-built Namespace missed the options added later: every policy row became an error)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_a_policy_row_on_a_tiny_dump(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        labels_table = importlib.import_module("labels_table")
    finally:
        sys.path.remove(str(BENCHMARKS))
    rng = np.random.default_rng(0)
    feats = (np.repeat(rng.normal(size=(10, 16)), 8, 0) + 0.05 * rng.normal(size=(80, 16))).astype("float32")
    path = tmp_path / "f.npz"
    np.savez(path, feats=feats, pids=np.repeat(np.arange(10), 8), camids=np.tile([0, 1], 40))
    for cameras in (True, False):
        row = labels_table.run_policy(path, "hcd", cameras=cameras, extra=["edge_k=3"])
        assert "error" not in row, row.get("error")
        assert row["bcubed_f"] > 0.8 and ("(no camera ids)" in row["params"]) != cameras
