"""The in-memory synthetic generator: determinism, shapes, split protocol, domain differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlabel.data.synthetic import SyntheticReid, preview_grid
from streamlabel.data.synthetic_params import sample_cameras, sample_identities

SMALL = {"num_train_ids": 8, "num_test_ids": 6}


@pytest.fixture(scope="module")
def source() -> SyntheticReid:
    return SyntheticReid("source", seed=0, **SMALL)


@pytest.fixture(scope="module")
def target() -> SyntheticReid:
    return SyntheticReid("target", seed=0, **SMALL)


def test_same_seed_gives_identical_images(source: SyntheticReid) -> None:
    again = SyntheticReid("source", seed=0, **SMALL)
    assert torch.equal(source.images, again.images)
    for key in ("pids", "camids", "split"):
        assert torch.equal(getattr(source, key), getattr(again, key))
    assert source.names == again.names


def test_other_seed_or_domain_differs(source: SyntheticReid, target: SyntheticReid) -> None:
    other = SyntheticReid("source", seed=1, **SMALL)
    n = min(len(other), len(source))
    assert not torch.equal(other.images[:n], source.images[:n])
    n = min(len(target), len(source))
    assert not torch.equal(target.images[:n], source.images[:n])


def test_shapes_dtypes_and_custom_size(source: SyntheticReid) -> None:
    n = len(source)
    assert source.images.shape == (n, 3, 64, 32) and source.images.dtype == torch.uint8
    assert source.pids.shape == source.camids.shape == source.split.shape == (n,)
    assert len(source.names) == n
    assert sum(len(source.subset(s)) for s in ("train", "query", "gallery")) == n
    big = SyntheticReid("target", seed=2, num_train_ids=2, num_test_ids=1, num_cams=3, height=96, width=40)
    assert big.images.shape[1:] == (3, 96, 40)
    assert set(big.camids.tolist()) <= {0, 1, 2}


def test_split_follows_market_protocol(source: SyntheticReid) -> None:
    train_ids = set(source.train.pids.tolist())
    test_ids = set(source.query.pids.tolist()) | set(source.gallery.pids.tolist())
    assert len(train_ids) == SMALL["num_train_ids"] and len(test_ids) == SMALL["num_test_ids"]
    assert not train_ids & test_ids
    assert min(source.pids.tolist()) >= 1  # pid 0 means "distractor" in Market
    for pid in source.pids.unique().tolist():  # every identity crosses at least two cameras
        assert source.camids[source.pids == pid].unique().numel() >= 2
    q, g = source.query, source.gallery
    for pid, cam in zip(q.pids.tolist(), q.camids.tolist(), strict=True):
        assert ((g.pids == pid) & (g.camids != cam)).any(), "every query needs a cross-camera match"
        assert ((g.pids == pid) & (g.camids == cam)).any(), "and a same-camera gallery image, as in Market"
    assert len(set(source.names)) == len(source.names)


def test_identities_do_not_depend_on_dataset_size() -> None:
    few = sample_identities(3, "target", range(4))
    many = sample_identities(3, "target", range(20))
    for key, value in few.items():
        np.testing.assert_array_equal(value, many[key][:4], err_msg=key)


def test_target_cameras_are_darker_and_bluer(source: SyntheticReid, target: SyntheticReid) -> None:
    src_cams, tgt_cams = sample_cameras(0, "source", 4), sample_cameras(0, "target", 4)
    assert tgt_cams["brightness"].max() < src_cams["brightness"].min()
    src_rgb = source.images.float().mean((0, 2, 3))
    tgt_rgb = target.images.float().mean((0, 2, 3))
    assert tgt_rgb.mean() < src_rgb.mean() - 20
    assert tgt_rgb[2] / tgt_rgb[0] > src_rgb[2] / src_rgb[0]


def test_cameras_look_different(source: SyntheticReid) -> None:
    means = torch.stack([source.images[source.camids == c].float().mean((0, 2, 3)) for c in range(4)])
    spread = torch.cdist(means, means)
    assert spread[~torch.eye(4, dtype=torch.bool)].min() > 3.0  # per-camera looks, in 0..255 units


def test_preview_grid_layout() -> None:
    image = preview_grid("both", seed=0, ids=3, shots=1, num_cams=4, height=64, width=32)
    assert image.mode == "RGB"
    assert image.height == 16 + 3 * 64 and image.width == 2 * 4 * 32 + 12


def test_unknown_domain_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        SyntheticReid("mars", num_train_ids=1, num_test_ids=1)
