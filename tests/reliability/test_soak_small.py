"""150 ``step`` calls of ``benchmarks/soak.py`` at a small N, both hcd rule sets: invariants hold at every check;
the paper rules reuse label ids (more new cluster ids are handed out than there are ids, yet every id stays
below N); the tracking rules name every cluster by its smallest member, so ids stay below N by construction."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from streamlabel.banks.label_bank import HierarchicalLabelBank
from tests.reliability.reliability_inputs import REPO


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_benchmark", REPO / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_soak_keeps_invariants_and_reuses_ids(monkeypatch) -> None:
    handed_out = {"ids": 0}
    allocate = HierarchicalLabelBank.allocate

    def counting(self, level: int, count: int):
        handed_out["ids"] += count
        return allocate(self, level, count)

    monkeypatch.setattr(HierarchicalLabelBank, "allocate", counting)
    n, steps = 200, 150
    run = _soak_module().soak(n, 16, 16, steps, 30, seed=3, dynamics="paper", init_rounds=1, noise=1.0,
                              log=lambda _: None)
    curve = run["curve"]
    assert [p["step"] for p in curve] == list(range(0, steps + 1, 30))  # every check ran (and passed)
    assert handed_out["ids"] > n, "too few splits to show id reuse; raise the noise"
    assert max(p["id_high_water"] for p in curve) < n
    assert all(max(p["alive_ids"]) <= n for p in curve)
    assert all(p["sum_error"] < 1e-3 and p["norm_error"] < 1e-3 for p in curve)


def test_small_soak_of_the_tracking_rules_keeps_invariants() -> None:
    n, steps = 200, 150
    run = _soak_module().soak(n, 16, 16, steps, 30, seed=3, noise=1.0, log=lambda _: None)
    curve = run["curve"]
    assert [p["step"] for p in curve] == list(range(0, steps + 1, 30))
    assert max(p["id_high_water"] for p in curve) < n
    assert all(p["sum_error"] < 1e-3 and p["norm_error"] < 1e-3 for p in curve)


def test_soak_command_writes_json_and_markdown(tmp_path: Path) -> None:
    soak = _soak_module()
    code = soak.main(["--n", "120", "--dim", "8", "--batch", "16", "--steps", "40", "--every", "10",
                      "--out", str(tmp_path)])
    result = json.loads((tmp_path / "soak.json").read_text())
    assert code == 0 and result["invariants_ok"] and result["memory"]["ok"]
    assert result["args"]["steps"] == 40 and len(result["curve"]) == 5
    assert "| step | rows streamed | RSS MiB |" in (tmp_path / "soak.md").read_text()
