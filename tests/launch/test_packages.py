"""Optional packages are checked before any work starts, with the pip command to run."""

from __future__ import annotations

import importlib.util

import pytest

from streamlabel.launch.errors import CommandError
from streamlabel.launch.packages import require, require_for_training


def _missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *a: None if module == name else real(module, *a))


def test_present_package_passes() -> None:
    require("json", "anything")


@pytest.mark.parametrize(("cfg", "name", "words"), [
    ({"model": {"name": "onnx"}, "log": {"tensorboard": False}}, "onnx", "model.name: onnx needs the 'onnx'"),
    ({"model": {"name": "resnet50"}, "log": {"tensorboard": True}}, "tensorboard", "set log.tensorboard=false"),
])
def test_training_names_the_missing_package(monkeypatch: pytest.MonkeyPatch, cfg: dict, name: str, words: str) -> None:
    _missing(monkeypatch, name)
    with pytest.raises(CommandError, match=words) as info:
        require_for_training(cfg)
    assert f"pip install {name}" in str(info.value)


def test_compare_checks_matplotlib_before_training(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from streamlabel.launch.cli import main

    _missing(monkeypatch, "matplotlib")
    started = []
    monkeypatch.setattr("streamlabel.launch.train.run", lambda args: started.append(args))
    code = main(["compare", "--refresh-every", "0,1", f"output_dir={tmp_path}", "log.tensorboard=false"])
    assert code == 2 and not started  # refused before the first run
