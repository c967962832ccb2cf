"""ONNX import of the BN-folded OSNet-x0.25: equality with onnxruntime, trainability, BN un-folding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.models import build_model, calibrate_batchnorm
from streamlabel.models.onnx_import import map_module_path, scope_to_module_path
from tests.helpers.shared_data import shared_file

needs_shared = pytest.mark.shared
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def onnx_path() -> Path:
    """The MSMT17 OSNet ONNX file of ../shared (the test skips without it, or fails under the CI variable)."""
    return shared_file("models", "osnet_x0_25_msmt17.onnx")


def real_images(n: int) -> torch.Tensor:
    """The first ``n`` val crops, resized 256x128 bilinear, ImageNet-normalised."""
    from PIL import Image

    out = []
    for path in sorted(shared_file("data", "cuhk03_p1", "val").glob("*.jpg"))[:n]:
        img = Image.open(path).convert("RGB").resize((128, 256), Image.BILINEAR)
        out.append((torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255 - MEAN) / STD)
    return torch.stack(out)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_model("onnx", path=onnx_path())


def test_scope_mapping() -> None:
    assert scope_to_module_path("/conv2/conv2.0/conv2b/conv2b.1/conv2/Conv") == "conv2.0.conv2b.1.conv2"
    assert map_module_path("conv2.0.conv2b.1.conv2") == "conv2.0.streams.1.1.depthwise.conv"
    assert map_module_path("conv3.1.conv2a.conv1") == "conv3.1.streams.0.0.pointwise"
    assert map_module_path("conv4.0.gate.fc1_3") == "conv4.0.gate.fc1"
    assert map_module_path("conv3.2.0.conv") == "conv3.2.conv.conv"
    assert map_module_path("conv4.0.downsample.conv") == "conv4.0.shortcut.conv"
    with pytest.raises(KeyError):
        map_module_path("head.classifier")


def test_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("onnx", path=tmp_path / "nope.onnx")


@needs_shared
def test_imported_architecture(model: torch.nn.Module) -> None:
    assert model.channels == (16, 64, 96, 128) and model.feat_dim == 512
    assert not model.training
    assert 190_000 < sum(p.numel() for p in model.parameters()) < 210_000


@needs_shared
@pytest.mark.parametrize("kind", ["gaussian", "uniform_image", "real"])
def test_matches_onnxruntime(model: torch.nn.Module, kind: str) -> None:
    from streamlabel.models.onnx_import import onnxruntime_embed

    g = torch.Generator().manual_seed(3)
    if kind == "gaussian":
        x = torch.randn(2, 3, 256, 128, generator=g)
    elif kind == "uniform_image":
        x = (torch.rand(2, 3, 256, 128, generator=g) - MEAN) / STD
    else:
        x = real_images(4)
    with torch.no_grad():
        ours = model.eval()(x).numpy()
    ref = onnxruntime_embed(onnx_path(), x)
    assert ours.shape == ref.shape == (x.shape[0], 512)
    assert np.abs(ours - ref).max() < 1e-4


@needs_shared
def test_gradients_flow_through_imported_model() -> None:
    model = build_model("onnx", path=onnx_path()).train()
    params = dict(model.named_parameters())
    assert all(p.requires_grad for p in params.values())
    out = model(torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(4)))
    out["embedding"].pow(2).sum().backward()
    for name in ("conv1.conv.weight", "conv2.0.streams.3.3.depthwise.conv.bias", "conv4.1.gate.fc1.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    assert sum(p.grad is None for p in params.values()) == 0


@needs_shared
def test_unfolded_bn_keeps_eval_function(model: torch.nn.Module) -> None:
    x = real_images(8)
    unfolded = build_model("onnx", path=onnx_path(), bn="unfolded")
    # one BN per folded conv+BN pair of OSNet-x0.25
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules()) == 79
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(unfolded.eval()(x), ref, rtol=0, atol=1e-4)
        calibrate_batchnorm(unfolded, [x[:4], x[4:]])
        torch.testing.assert_close(unfolded.eval()(x), ref, rtol=0, atol=1e-4)
        train_out = unfolded.train()(x)["embedding"]
    cos = torch.nn.functional.cosine_similarity(train_out, ref).min()
    assert cos > 0.99  # calibrated on this data: train mode starts from the pretrained function


@needs_shared
def test_folded_calibration_recentres_fc_bn() -> None:
    x = real_images(8)
    plain = build_model("onnx", path=onnx_path())
    calibrated = build_model("onnx", path=onnx_path(), calibration=[x])
    with torch.no_grad():
        ref = plain(x)
        torch.testing.assert_close(calibrated(x), ref, rtol=0, atol=1e-4)
        cos_plain = torch.nn.functional.cosine_similarity(plain.train()(x)["embedding"], ref).mean()
        cos_cal = torch.nn.functional.cosine_similarity(calibrated.train()(x)["embedding"], ref).mean()
    assert cos_cal > 0.999 and cos_cal > cos_plain
