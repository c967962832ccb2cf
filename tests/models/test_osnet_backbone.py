"""OSNet widths: output contract, feature map size, structure (streams, shared gate), folded variant."""

from __future__ import annotations

import pytest
import torch

from streamlabel.models import build_model
from streamlabel.models.osnet import OSBlock


@pytest.mark.parametrize(
    ("name", "channels"),
    [("osnet_x1_0", 512), ("osnet_x0_75", 384), ("osnet_x0_5", 256), ("osnet_x0_25", 128)],
)
def test_osnet_shapes_train_and_eval(name: str, channels: int) -> None:
    images = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(1))
    model = build_model(name)
    assert model.feat_dim == 512
    out = model.train()(images)
    assert out["embedding"].shape == (2, 512)
    assert out["global_feat"].shape == (2, channels)
    assert out["feature_map"].shape == (2, channels, 16, 8)
    with torch.no_grad():
        emb = model.eval()(images)
    assert emb.shape == (2, 512) and torch.isfinite(emb).all()


def test_osnet_x1_0_size_matches_paper() -> None:
    n = sum(p.numel() for p in build_model("osnet_x1_0").parameters())
    assert 2.1e6 < n < 2.3e6  # paper: 2.2M parameters


def test_os_block_structure() -> None:
    block = OSBlock(64, 256)
    assert [len(s) for s in block.streams] == [1, 2, 3, 4]  # T = 4 streams of growing receptive field
    gate_params = [n for n, _ in block.named_parameters() if n.startswith("gate.")]
    assert len(gate_params) == 4  # one gate (fc1, fc2 weights + biases), shared by all streams
    assert block.streams[0][0].depthwise.conv.groups == 64


def test_fold_bn_variant_has_no_batchnorm2d() -> None:
    model = build_model("osnet_x0_25", fold_bn=True, feat_dim=256)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model.conv1.conv.bias is not None and model.feat_dim == 256
