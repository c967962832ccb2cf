"""ResNet-50 / IBN-a re-ID backbone: output contract, last stride, GeM pooling, IBN layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamlabel.models import GeneralizedMeanPool, build_model
from streamlabel.models.ibn import IBN


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["resnet50", "resnet50_ibn_a"])
def test_resnet_shapes_train_and_eval(name: str, images: torch.Tensor) -> None:
    model = build_model(name)
    assert model.feat_dim == 2048
    model.train()
    out = model(images)
    assert set(out) == {"embedding", "global_feat", "feature_map"}
    assert out["embedding"].shape == (2, 2048)
    assert out["global_feat"].shape == (2, 2048)
    assert out["feature_map"].shape == (2, 2048, 16, 8)  # last stride 1 at 256x128
    model.eval()
    with torch.no_grad():
        emb = model(images)
    assert isinstance(emb, torch.Tensor) and emb.shape == (2, 2048)
    assert torch.isfinite(emb).all()


def test_last_stride_two_and_projection(images: torch.Tensor) -> None:
    model = build_model("resnet50", last_stride=2, embed_dim=256, pool="gem").train()
    out = model(images)
    assert out["feature_map"].shape == (2, 2048, 8, 4)
    assert out["global_feat"].shape == (2, 256) and out["embedding"].shape == (2, 256)
    assert model.feat_dim == 256


def test_bn_neck_has_frozen_zero_shift() -> None:
    neck = build_model("resnet50").neck
    assert isinstance(neck, nn.BatchNorm1d)
    assert not neck.bias.requires_grad and torch.all(neck.bias == 0)


def test_gem_limits() -> None:
    x = torch.rand(3, 5, 4, 6) + 0.01
    avg = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(GeneralizedMeanPool(p=1.0)(x), avg, rtol=1e-5, atol=1e-5)
    big = GeneralizedMeanPool(p=200.0)(x.double())
    mx = x.double().amax(dim=(2, 3), keepdim=True)
    assert torch.all(big <= mx + 1e-9)
    assert torch.all(big >= mx * (1 / 24) ** (1 / 200) - 1e-9)  # power mean >= max * n^(-1/p)
    gem = GeneralizedMeanPool()
    assert gem.p.requires_grad and gem.p.item() == pytest.approx(3.0)


def test_ibn_a_layers_present() -> None:
    model = build_model("resnet50_ibn_a")
    ibn_blocks = [name for name, m in model.named_modules() if isinstance(m, IBN)]
    # every bottleneck of layer1-3 (3 + 4 + 6), none in layer4
    assert len(ibn_blocks) == 13
    assert all(n.split(".")[0] in {"layer1", "layer2", "layer3"} for n in ibn_blocks)
    first = model.layer1[0].bn1
    assert isinstance(first.IN, nn.InstanceNorm2d) and first.IN.affine
    assert first.IN.num_features == 32 and first.BN.num_features == 32  # half of 64 channels each
    assert not any(isinstance(m, IBN) for m in build_model("resnet50").modules())
