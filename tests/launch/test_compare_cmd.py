"""`streamlabel compare`: one tiny training run per refresh interval, table + plot + JSON rows, bad lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamlabel.launch.cli import main
from streamlabel.launch.compare_cmd import markdown_table, parse_intervals
from tests.training.tiny_runs import (
    tiny_overrides,  # the tiny synthetic config of the training tests
)

REPO = Path(__file__).resolve().parents[2]


def test_two_intervals_table_plot_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = tiny_overrides(tmp_path / "runs", tmp_path / "data")
    out = tmp_path / "cmp"
    code = main(["compare", "--config", str(REPO / "configs" / "demo.yaml"), "--refresh-every", "0,1",
                 "--baseline", "spcl", "--cpu", "--quiet", "--out", str(out), "--json", *overrides])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    payload = json.loads(printed[-1])
    rows, baseline = payload["rows"][:2], payload["rows"][2]
    assert [r["refresh_every"] for r in rows] == [0, 1]
    assert baseline["policy"] == "spcl" and baseline["refresh_every"] is None
    assert "name: spcl" in (Path(baseline["output_dir"]) / "config.yaml").read_text()
    for row in payload["rows"]:  # per-epoch curves: the first labels (-1), then every adaptation epoch
        assert [e["epoch"] for e in row["epochs"]] == [-1, 0, 1]
        assert row["epochs"][-1]["eval_mAP"] == row["adapted_mAP"] and 0 < row["epochs"][-1]["bcubed_f"] <= 1
    for row in rows:
        assert 0.0 <= row["adapted_mAP"] <= 1.0 and 0.0 <= row["adapted_rank1"] <= 1.0
        assert 0.0 < row["bcubed_f"] <= 1.0 and row["seconds"] > 0
        saved = (Path(row["output_dir"]) / "config.yaml").read_text()  # each run in its own folder, own interval
        assert f"refresh_every: {row['refresh_every']}" in saved
    assert rows[0]["output_dir"] != rows[1]["output_dir"]
    table = (out / "table.md").read_text()
    assert "| 0 | every batch (online) |" in table and "| 1 | every 1 epoch |" in table
    assert "| spcl (its default) | its own refresh |" in table
    assert "| 0 | every batch (online) |" in "\n".join(printed)  # the table is printed too
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "rows.json").read_text()) == payload["rows"]
    origin = json.loads((out / "provenance.json").read_text())
    assert origin["command"] == payload["command"]
    assert origin["commit"] == "unknown" or len(origin["commit"].split("+")[0]) == 40


@pytest.mark.parametrize(("text", "message"), [("0,x", "'x' is not an integer"), ("1,-2", "-2 is outside"),
                                               ("", "empty"), ("1,1", "listed twice")])
def test_bad_interval_list(text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=message):
        parse_intervals(text)
    assert main(["compare", "--refresh-every", text]) == 2
    assert message in capsys.readouterr().err


def test_parse_and_table_by_hand() -> None:
    assert parse_intervals(" 0, 2 ,10") == [0, 2, 10]
    row = {"refresh_every": 2, "adapted_mAP": 0.2591, "adapted_rank1": 0.5, "bcubed_f": 0.61234, "clusters": 40,
           "outlier_frac": 0.125, "seconds": 512.4}
    table = markdown_table([row], policy="hcd", command="streamlabel compare")
    # 100 * 0.2591 = 25.9 ; 100 * 0.125 = 12.5 ; 512.4 -> 512
    assert "| 2 | every 2 epochs | 25.9 | 50.0 | 0.612 | 40 | 12.5 | 512 |" in table
