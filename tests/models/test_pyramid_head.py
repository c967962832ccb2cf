"""NPLP pyramid head (models/pyramid.py, head="pyramid" on ResNet-50 and OSNet): PAP by hand, shapes,
gradients through the hyper-network, default models unchanged, bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamlabel.models import build_model
from streamlabel.models.pyramid import PyramidAveragePool


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 16, generator=torch.Generator().manual_seed(0))


def test_pyramid_average_pool_by_hand():
    # channel 0 rows 1,2,3,4; channel 1 rows 10,20,30,40 (W = 2, both columns equal)
    # PAP-2: granularity 1 -> [2.5, 25]; granularity 2 -> [1.5, 3.5, 15, 35] (channel-major)
    col = torch.tensor([1.0, 2.0, 3.0, 4.0])
    fmap = torch.stack([col, 10 * col]).unsqueeze(-1).expand(2, 4, 2).unsqueeze(0)
    out = PyramidAveragePool(2)(fmap)
    assert out.tolist() == [[2.5, 25.0, 1.5, 3.5, 15.0, 35.0]]
    # PAP-3 on H = 4 stripes by adaptive pooling: 3 stripes of rows {1,2}, {2,3}, {3,4} -> 1.5, 2.5, 3.5
    out3 = PyramidAveragePool(3)(fmap[:, :1])
    assert out3.tolist() == [[2.5, 1.5, 3.5, 1.5, 2.5, 3.5]]
    assert PyramidAveragePool(4).parts == 10  # 1 + 2 + 3 + 4 stripes


@pytest.mark.parametrize(("name", "channels", "kwargs", "dim"),
                         [("osnet_x0_25", 128, {}, 512), ("resnet50", 2048, {"embed_dim": 256}, 256)])
def test_shapes_and_gradients(name: str, channels: int, kwargs: dict, dim: int):
    model = build_model(name, head="pyramid", pyramid_levels=3, **kwargs)
    assert model.feat_dim == dim
    trunk_end = model.conv5.conv if name.startswith("osnet") else model.layer4[-1].conv3
    for p in model.parameters():  # backward only through the head and the last conv: fast on the CPU
        p.requires_grad_(False)
    head = model.fc if name.startswith("osnet") else nn.ModuleList([model.proj, model.neck])
    for p in [*trunk_end.parameters(), *head.parameters()]:
        p.requires_grad_(True)
    out = model.train()(_images())
    assert out["embedding"].shape == (2, dim)
    hyper = model.fc[0] if name.startswith("osnet") else model.proj
    assert isinstance(hyper, nn.Linear) and hyper.in_features == 6 * channels and hyper.out_features == dim
    out["embedding"].pow(2).sum().backward()
    assert hyper.weight.grad is not None and float(hyper.weight.grad.abs().sum()) > 0
    assert float(trunk_end.weight.grad.abs().sum()) > 0  # through the pyramid into the trunk
    with torch.no_grad():
        emb = model.eval()(_images())
    assert isinstance(emb, torch.Tensor) and emb.shape == (2, dim) and bool(torch.isfinite(emb).all())


def test_default_levels():
    model = build_model("osnet_x0_25", head="pyramid")
    assert model.pool.levels == 2 and model.fc[0].in_features == 3 * 128  # PAP-2 by default


@pytest.mark.parametrize("name", ["osnet_x0_25", "resnet50"])
def test_default_models_unchanged(name: str):
    default = build_model(name)
    explicit = build_model(name, head="global")
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()}
    assert isinstance(default.pool, nn.AdaptiveAvgPool2d)
    images = _images()
    with torch.no_grad():
        default.eval()
        emb = default(images)
        fmap = default.forward_features(images)
        pooled = fmap.mean(dim=(2, 3))
        expected = default.fc(pooled) if name.startswith("osnet") else default.neck(default.proj(pooled))
    torch.testing.assert_close(emb, expected)
    if name == "resnet50":
        assert isinstance(default.proj, nn.Identity)
    else:
        assert default.fc[0].in_features == 128


def test_bad_options():
    with pytest.raises(ValueError, match="unknown head"):
        build_model("osnet_x0_25", head="pyramids")
    with pytest.raises(ValueError, match="pyramid_levels"):
        build_model("osnet_x0_25", head="pyramid", pyramid_levels=0)
    with pytest.raises(ValueError, match="pool must be 'avg'"):
        build_model("resnet50", head="pyramid", pool="gem")
    with pytest.raises(ValueError, match="do not combine"):
        build_model("osnet_x0_25", head="pyramid", parts=3)
