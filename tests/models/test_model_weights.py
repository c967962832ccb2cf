"""Local-only pretrained loading: clear error for an absent file, key report for torchvision dicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from streamlabel.models import build_model, list_models, load_pretrained


def test_missing_weights_file_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError) as err:
        build_model("resnet50", pretrained=path)
    message = str(err.value)
    assert str(path) in message and "never downloads" in message and "state-dict" in message


def test_torchvision_state_dict_report(tmp_path: Path) -> None:
    source = torchvision.models.resnet50(weights=None)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # DDP-style prefix is stripped
    del state["module.layer2.0.conv1.weight"]
    state["module.extra.weight"] = torch.zeros(3)
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": state}, path)

    model = build_model("resnet50")
    report = load_pretrained(model, path)
    assert "layer2.0.conv1.weight" in report.missing
    assert {"extra.weight", "fc.weight", "fc.bias"} <= set(report.unexpected)
    assert {"neck.weight", "neck.bias"} <= set(report.missing)
    assert not report.mismatched
    assert len(report.loaded) == len(source.state_dict()) - 3  # minus the deleted key and fc.*
    torch.testing.assert_close(model.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    assert "missing" in str(report) and "fc.weight" in str(report)


def test_shape_mismatch_is_reported_not_loaded(tmp_path: Path) -> None:
    model = build_model("osnet_x0_25")
    state = model.state_dict()
    state["fc.0.weight"] = torch.ones(7, 7)
    path = tmp_path / "osnet.pth"
    torch.save(state, path)
    before = model.fc[0].weight.clone()
    report = load_pretrained(model, path)
    assert report.mismatched == [("fc.0.weight", (512, 128), (7, 7))]
    torch.testing.assert_close(model.fc[0].weight, before)


def test_registry_names() -> None:
    names = set(list_models())
    osnets = {f"osnet_x{w}" for w in ("1_0", "0_75", "0_5", "0_25")}
    expected = {"resnet50", "resnet50_ibn_a", "onnx"} | osnets
    assert expected <= names
    with pytest.raises(KeyError, match="available"):
        build_model("resnet1000")
