"""CUDA smoke tests (marker ``cuda``; skipped without a GPU): the hcd labels of the real CUHK03 embeddings on
the GPU are those of the CPU, and a tiny training run works end to end on the GPU.
``benchmarks/gpu_check.sh`` runs these and times the engine at N = 1M on one GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.evaluation.label_quality import bcubed
from streamlabel.launch import train as train_entry
from streamlabel.methods import build_policy
from tests.helpers.shared_data import shared_file
from tests.training.tiny_runs import REPO, tiny_overrides

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.shared
@pytest.mark.parametrize("dynamics", ["tracking", "paper"])
def test_hcd_labels_on_cuda_equal_the_cpu_labels(dynamics: str) -> None:
    data = np.load(shared_file("embeddings", "cuhk03p1_train_osnet_x0_25_msmt17.npz"))
    feats, cams = torch.from_numpy(data["feats"]).float(), torch.from_numpy(data["camids"]).long()
    torch.backends.cuda.matmul.allow_tf32 = False  # full fp32 products, as on the CPU
    labels = {}
    for device in ("cpu", "cuda"):
        policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], device=device,
                              dynamics=dynamics)
        policy.initialize(feats.to(device), cams.to(device))
        rows = torch.arange(0, feats.shape[0], 7)[:64]
        policy.step(rows.to(device), feats[rows].to(device), cams[rows].to(device))
        labels[device] = policy.labels().cpu().numpy()
    if not np.array_equal(labels["cpu"], labels["cuda"]):
        # products summed in another order may flip an exact tie; anything more is a bug
        outliers = labels["cuda"] < 0
        reference = np.where(outliers, labels["cuda"].max() + 1 + np.arange(outliers.size), labels["cuda"])
        assert bcubed(labels["cpu"], reference)[2] > 0.999
    f_cpu, f_cuda = (bcubed(labels[d], data["pids"])[2] for d in ("cpu", "cuda"))
    assert abs(f_cpu - f_cuda) < 1e-3


def test_tiny_training_run_on_cuda(tmp_path: Path, synthetic_root: Path) -> None:
    overrides = [*tiny_overrides(tmp_path / "run", synthetic_root), "device=cuda", "train.amp=true"]
    results = train_entry.run(argparse.Namespace(config=REPO / "configs" / "demo.yaml", overrides=overrides,
                                                 resume=False, cpu=False, quiet=True))
    assert np.isfinite(results["adapted_mAP"]) and results["skipped_steps"] == 0
