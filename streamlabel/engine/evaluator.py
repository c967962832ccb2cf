"""Evaluation during training: retrieval on a dataset's query/gallery, and label churn between epochs."""

from __future__ import annotations

import torch

from streamlabel.data import ReidDataset
from streamlabel.engine.setup import eval_loader
from streamlabel.evaluation import ari, evaluate_retrieval, extract_features, unscorable_reason


def check_evaluable(dataset: ReidDataset | None, split: str) -> None:
    """Refuse, before training or embedding, an ``eval.split`` dataset on which nothing could be scored: no
    query/gallery split, every query pid -1, or no query with a gallery match from another camera (its mAP
    would be 0/0, reported as 0 or NaN after all the work)."""
    if dataset is None:
        raise ValueError(f"eval.split is {split!r} but there is no {split} dataset (data.{split} is null)")
    if not dataset.query or not dataset.gallery:
        raise ValueError(f"nothing could be scored on eval.split {split!r}: dataset {dataset.name!r} has no "
                         "query/gallery split to evaluate on")
    reason = unscorable_reason([s.pid for s in dataset.query], [s.camid for s in dataset.query],
                               [s.pid for s in dataset.gallery], [s.camid for s in dataset.gallery])
    if reason:
        raise ValueError(f"nothing could be scored on eval.split {split!r} (dataset {dataset.name!r}): {reason}; "
                         "the evaluation needs query identities the gallery holds from another camera")


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
