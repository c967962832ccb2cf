"""The hcd policy on the real CUHK03 OSNet embeddings of ../shared (the job the engine exists for):
the online and offline labels follow features that improve, streaming the same features changes
nothing, and the default labels beat the SpCL-style yardstick. benchmarks/tracking.py runs the full
probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlabel.evaluation.tracking_probe import toward_identity_means, track
from tests.helpers.shared_data import shared_file

pytestmark = [pytest.mark.shared, pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


@pytest.fixture(scope="module")
def cuhk03_train() -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    data = np.load(shared_file("embeddings", "cuhk03p1_train_osnet_x0_25_msmt17.npz"))
    return (
        torch.from_numpy(data["feats"]).float(),
        data["pids"],
        torch.from_numpy(data["camids"]).long(),
    )


@pytest.mark.parametrize("refresh_every", [0, 1])
def test_labels_follow_features_moved_toward_their_identities(cuhk03_train, refresh_every):
    feats, pids, cams = cuhk03_train
    moved = toward_identity_means(feats, pids, 0.3)
    result = track(feats, moved, pids, cams, {"refresh_every": refresh_every}, passes=2)
    assert result.start_f >= 0.66  # the default labels of the unmoved features
    assert result.fresh_f > result.start_f + 0.2  # the probe is a real change of the features
    assert result.gap <= 0.02, (result.fresh_f, result.streamed_f)
    # the labels are those of a fresh initialize on the bank
    assert abs(result.own_bank_gap) <= 0.005


def test_streaming_the_same_features_keeps_the_labels(cuhk03_train):
    feats, pids, cams = cuhk03_train
    result = track(feats, feats, pids, cams, {}, passes=1, fresh_f=0.0)  # (no fresh run needed)
    assert result.streamed_f >= result.start_f - 0.005
