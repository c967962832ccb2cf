"""``train.channels_last``: the network's 4-D weights in NHWC, the same embeddings as NCHW up to fp32
rounding, and a checkpoint of one layout loads into the other."""

from __future__ import annotations

import torch

from streamlabel.engine.setup import build_network
from streamlabel.evaluation.extract import model_embedding
from streamlabel.launch.run_config import load_run_config


def _network(channels_last: bool) -> torch.nn.Module:
    cfg = load_run_config(None, ["model.name=osnet_x0_25", f"train.channels_last={str(channels_last).lower()}"])
    return build_network(cfg)


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim == 4 and p.shape[2] * p.shape[3] > 1 and p.shape[1] > 1]


def test_layout_follows_the_key() -> None:
    nhwc, nchw = _conv_weights(_network(True)), _conv_weights(_network(False))
    assert nhwc and all(w.is_contiguous(memory_format=torch.channels_last) for w in nhwc)
    assert not any(w.is_contiguous(memory_format=torch.channels_last) for w in nchw)


def test_same_embeddings_and_state_across_layouts() -> None:
    torch.manual_seed(0)
    nchw = _network(False).eval()
    nhwc = _network(True).eval()
    nhwc.load_state_dict(nchw.state_dict())  # a checkpoint of one layout loads into the other
    images = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = model_embedding(nchw(images)), model_embedding(nhwc(images))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    pairs = zip(nchw.state_dict().values(), nhwc.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
