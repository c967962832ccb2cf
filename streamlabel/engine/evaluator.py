"""Evaluation during training: retrieval on a dataset's query/gallery, and label churn between epochs."""

from __future__ import annotations

import torch

from streamlabel.data import ReidDataset
from streamlabel.engine.setup import eval_loader
from streamlabel.evaluation import ari, evaluate_retrieval, extract_features


def evaluate_model(model: torch.nn.Module, dataset: ReidDataset, cfg: dict, *, device: torch.device,
                   progress: bool = True) -> dict:
    """mAP / CMC of ``model`` on ``dataset.query`` against ``dataset.gallery`` (Market protocol)."""
    if not dataset.query or not dataset.gallery:
        raise ValueError(f"dataset {dataset.name!r} has no query/gallery split to evaluate on")
    flip = cfg["eval"]["flip"]
    query, gallery = (
        extract_features(model, eval_loader(samples, cfg), device=device, flip=flip, progress=progress,
                         desc=f"extract {dataset.name} {split}")
        for split, samples in (("query", dataset.query), ("gallery", dataset.gallery))
    )
    return evaluate_retrieval(query["feats"], query["pids"], query["camids"],
                              gallery["feats"], gallery["pids"], gallery["camids"])


def label_churn(previous: torch.Tensor, current: torch.Tensor) -> float:
    """1 - ARI between two labelings of the same samples (0 = same partition, whatever the ids)."""
    return float(1.0 - ari(previous.cpu().numpy(), current.cpu().numpy()))
