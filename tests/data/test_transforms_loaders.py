"""Transforms output, the image Dataset's items, the identity DataLoader and the source+target mixer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from streamlabel.data import (
    IdentityBatchSampler,
    MixedBatchLoader,
    ReidImageDataset,
    build_identity_loader,
    build_transforms,
    market1501,
)
from tests.data.reid_layouts import MARKET_GALLERY, MARKET_QUERY, MARKET_TRAIN, market_like


def test_transform_shapes_and_normalisation() -> None:
    img = Image.new("RGB", (70, 300), (124, 116, 104))  # ~ ImageNet mean colour
    test_t = build_transforms(train=False)
    out = test_t(img)
    assert out.shape == (3, 256, 128) and out.dtype == torch.float32
    assert out.abs().max() < 0.05
    torch.manual_seed(0)
    train_t = build_transforms(train=True, height=64, width=32, erasing_p=1.0)
    aug = train_t(img)
    assert aug.shape == (3, 64, 32)
    torch.manual_seed(0)
    assert torch.equal(train_t(img), aug)  # torch's RNG drives every augmentation


def test_image_dataset_items(tmp_path: Path) -> None:
    ds = market1501(market_like(tmp_path, MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY))
    images = ReidImageDataset(ds.gallery, build_transforms(False, height=32, width=16))
    assert len(images) == len(ds.gallery)
    item = images[3]
    assert set(item) == {"img", "pid", "camid", "index"}
    assert item["img"].shape == (3, 32, 16) and item["index"] == 3
    assert (item["pid"], item["camid"]) == (ds.gallery[3].pid, ds.gallery[3].camid)
    assert images.pids.tolist() == [s.pid for s in ds.gallery]


def test_identity_loader_batches(tmp_path: Path) -> None:
    ds = market1501(market_like(tmp_path, MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY))
    loader = build_identity_loader(ds.train, transform=build_transforms(True, height=32, width=16),
                                   batch_size=6, num_instances=2, num_workers=0)
    assert isinstance(loader.batch_sampler, IdentityBatchSampler)
    batches = list(loader)
    assert len(batches) == len(loader) >= 1
    b = batches[0]
    assert b["img"].shape == (6, 3, 32, 16)
    assert (b["pid"].view(3, 2)[:, 0] == b["pid"].view(3, 2)[:, 1]).all()
    assert (torch.tensor([ds.train[i].pid for i in b["index"]]) == b["pid"]).all()
    with pytest.raises(ValueError, match="labels for"):
        build_identity_loader(ds.train, labels=[0, 1], batch_size=4, num_instances=2, num_workers=0)


def test_mixed_loader_epoch_by_target_cycles_source() -> None:
    source, target = [f"s{i}" for i in range(3)], [f"t{i}" for i in range(5)]
    mixed = MixedBatchLoader(source, target)
    assert len(mixed) == 5
    first = list(mixed)
    assert [b["target"] for b in first] == target
    assert [b["source"] for b in first] == ["s0", "s1", "s2", "s0", "s1"]
    assert [b["source"] for b in mixed][:2] == ["s2", "s0"]  # source continues across epochs


def test_mixed_loader_fixed_iterations_and_empty() -> None:
    mixed = MixedBatchLoader(range(4), range(2), num_iters=5)
    assert [(b["source"], b["target"]) for b in mixed] == [(0, 0), (1, 1), (2, 0), (3, 1), (0, 0)]
    with pytest.raises(ValueError, match="source loader yields no batches"):
        list(MixedBatchLoader([], [1, 2]))
    with pytest.raises(ValueError, match="target loader yields no batches"):
        list(MixedBatchLoader([1], []))
    with pytest.raises(ValueError, match="num_iters"):
        MixedBatchLoader([1], iter([1]))
