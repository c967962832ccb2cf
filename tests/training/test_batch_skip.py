"""``identity_batches(skip=s)``: the batches s.. of an epoch, exactly as the full stream has them (a mid-epoch
resume), across sampler rounds, without loading the skipped ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.data import build_dataset
from streamlabel.data.image_dataset import ReidImageDataset
from streamlabel.engine.setup import identity_batches
from streamlabel.launch.run_config import load_run_config as load_config

SIZES = {"num_train_ids": 6, "num_test_ids": 2, "num_cams": 2, "images_per_cam": 2, "height": 32, "width": 16}


@pytest.mark.parametrize("skip", [0, 1, 3, 5])
def test_skipped_stream_is_the_tail_of_the_full_one(tmp_path: Path, skip: int, monkeypatch) -> None:
    data = build_dataset("synthetic", tmp_path / "target", domain="target", seed=1, **SIZES)
    cfg = load_config(None, ["data.height=32", "data.width=16", "data.num_instances=2", "data.num_workers=0"])
    labels = torch.tensor([s.pid for s in data.train])
    common = {"batch_size": 8, "epoch": 3, "num_batches": 7, "num_replicas": 1, "rank": 0, "outliers": "singleton"}
    full = list(identity_batches(data.train, labels, cfg, **common))
    assert len(full) == 7  # more than one sampler round (38 images, 4 batches a round)
    loaded = []
    original = ReidImageDataset.__getitem__
    monkeypatch.setattr(ReidImageDataset, "__getitem__",
                        lambda self, i: loaded.append(i) or original(self, i))
    tail = list(identity_batches(data.train, labels, cfg, skip=skip, **common))
    assert len(tail) == 7 - skip
    for got, want in zip(tail, full[skip:], strict=True):
        assert torch.equal(got["index"], want["index"]) and torch.equal(got["img"], want["img"])
    assert len(loaded) == sum(batch["index"].numel() for batch in tail)  # skipped batches were never loaded
