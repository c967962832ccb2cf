"""Command-line values checked before any work: devices, output files, ranges, --version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.launch.cli import main


def _dump(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "f.npz"
    np.savez(path, feats=rng.normal(size=(40, 8)).astype("float32"), pids=np.repeat(np.arange(10), 4),
             camids=np.tile([0, 1], 20))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
@pytest.mark.parametrize("command", [["labels", "--features", "F"], ["evaluate", "--split-by-camera", "F"]])
def test_a_missing_device_is_one_line(tmp_path, capsys, command) -> None:
    args = [a if a != "F" else str(_dump(tmp_path)) for a in command]
    assert main([*args, "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize(("out", "words"), [(".", "is a folder"), ("labels.txt", "must end in .npy"),
                                            ("f.npz/labels.npy", "is a file, not a folder")])
def test_labels_out_is_written_where_asked_or_refused(tmp_path, capsys, out, words) -> None:
    dump = _dump(tmp_path)
    target = tmp_path / out if out != "." else tmp_path
    assert main(["labels", "--features", str(dump), "--out", str(target), "--quiet"]) == 2
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]  # nothing written


@pytest.mark.parametrize(("args", "words"), [(["--level", "5"], "--level"), (["--level", "-6"], "--level"),
                                             (["--passes", "-1"], "--passes"), (["--batch-size", "0"], "--batch-size")])
def test_labels_numbers_have_ranges(tmp_path, capsys, args, words) -> None:
    assert main(["labels", "--features", str(_dump(tmp_path)), "--quiet", *args]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--lambda-value", "1.5"], ["--k1", "0"], ["--k2", "0"], ["--chunk-size", "0"]])
def test_evaluate_numbers_have_ranges(tmp_path, capsys, args) -> None:
    assert main(["evaluate", "--split-by-camera", str(_dump(tmp_path)), *args]) == 2
    assert args[0] in capsys.readouterr().err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and "streamlabel 0." in capsys.readouterr().out
