"""Part features (models/parts.py): shapes, stripe pooling by hand, gradients, eval contract unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamlabel.models import build_model
from streamlabel.models.parts import PartHead

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster


def test_stripe_pooling_by_hand() -> None:
    # feature map [1, 1, 3, 2], rows (1, 3), (5, 7), (9, 11): stripe means 2, 6, 10 with P = 3
    fmap = torch.tensor([[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]]).view(1, 1, 3, 2)
    head = PartHead(3, 1).eval()  # fresh BN in eval: x / sqrt(1 + 1e-5)
    out = head(fmap, nn.Identity())
    assert out.shape == (1, 3, 1)
    torch.testing.assert_close(out.flatten(), torch.tensor([2.0, 6.0, 10.0]) / (1 + 1e-5) ** 0.5)


@pytest.mark.parametrize("name,kwargs,dim", [("osnet_x0_25", {}, 512), ("resnet50", {"embed_dim": 64}, 64)])
def test_parts_shapes_and_gradients(name: str, kwargs: dict, dim: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, parts=3, **kwargs)
    x = torch.randn(4, 3, 64, 32)
    out = model.train()(x)
    assert out["embedding"].shape == (4, dim) and out["parts"].shape == (4, 3, dim)
    out["parts"][:, 1].pow(2).sum().backward()  # the middle stripe reaches its BN and the trunk
    head = model.part_head.norm
    assert head.weight.grad is not None and head.weight.grad[dim : 2 * dim].abs().sum() > 0
    assert head.weight.grad[:dim].abs().sum() == 0 and head.weight.grad[2 * dim :].abs().sum() == 0
    first_conv = model.conv1 if name == "resnet50" else model.conv1.conv
    assert first_conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        plain = model(x)
        both = model(x, with_parts=True)
    assert isinstance(plain, torch.Tensor) and plain.shape == (4, dim)  # eval contract unchanged
    torch.testing.assert_close(both["embedding"], plain)
    assert both["parts"].shape == (4, 3, dim)


def test_default_models_have_no_parts() -> None:
    model = build_model("osnet_x0_25").train()
    out = model(torch.randn(2, 3, 64, 32))
    assert "parts" not in out and model.parts == 0
    assert not any(k.startswith("part_head") for k in model.state_dict())
    with pytest.raises(ValueError, match="parts"):
        build_model("osnet_x0_25", parts=-1)
