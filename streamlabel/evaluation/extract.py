"""Feature extraction: run a re-ID model over a loader of ``{"img", "pid", "camid", "index"}`` batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from tqdm.auto import tqdm

__all__ = ["extract_features", "model_embedding"]

EMBEDDING_KEYS = ("embedding", "feat", "features")


def model_embedding(out: object) -> torch.Tensor:
    """The embedding in a model output: a tensor, a dict with ``embedding``, or a tuple's first item."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        for key in EMBEDDING_KEYS:
            if key in out:
                return out[key]
        raise ValueError(f"model output dict has none of the keys {EMBEDDING_KEYS}: {list(out)}")
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ValueError(f"cannot read an embedding from a model output of type {type(out).__name__}")


def _ids(value: object, n: int) -> torch.Tensor:
    t = torch.as_tensor(value).reshape(-1).long().cpu()
    if t.shape[0] != n:
        raise ValueError(f"batch metadata has {t.shape[0]} entries for {n} images")
    return t


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, object]],
    device: str | torch.device | None = None,
    flip: bool = False,
    normalize: bool = True,
    progress: bool = True,
    parts: bool = False,
    desc: str = "extract",
) -> dict[str, torch.Tensor]:
    """Embeddings of every image in ``loader`` (model in eval mode, no grad), on the CPU.

    ``flip`` averages the embeddings of the image and its horizontal mirror; ``normalize`` L2-normalises
    the result. Returns ``feats`` [N, D] float32 and ``pids`` / ``camids`` / ``indices`` [N] int64, in
    loader order. ``parts=True`` also returns ``parts`` [N, P, D] from ``model(img, with_parts=True)``
    (models built with ``parts=P``), each part normalised like the embedding. The model's train/eval
    mode is restored afterwards. ``desc`` names the progress bar (say which split is extracted).
    """
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    feats, pids, camids, indices, part_feats = [], [], [], [], []

    def forward(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not parts:
            return model_embedding(model(img)).float(), None
        out = model(img, with_parts=True)
        return out["embedding"].float(), out["parts"].float()

    try:
        total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
        for batch in tqdm(loader, total=total, desc=desc, disable=not progress, leave=False):
            img = batch["img"].to(device, non_blocking=True)
            emb, part = forward(img)
            if flip:
                emb_f, part_f = forward(torch.flip(img, dims=[3]))
                emb = 0.5 * (emb + emb_f)
                part = None if part is None else 0.5 * (part + part_f)
            if part is not None:
                part_feats.append((torch.nn.functional.normalize(part, dim=2) if normalize else part).cpu())
            emb = emb.reshape(emb.shape[0], -1)
            if normalize:
                emb = torch.nn.functional.normalize(emb, dim=1)
            n = emb.shape[0]
            feats.append(emb.cpu())
            pids.append(_ids(batch["pid"], n))
            camids.append(_ids(batch["camid"], n))
            indices.append(_ids(batch["index"], n))
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the loader yielded no batches")
    extra = {"parts": torch.cat(part_feats)} if parts else {}
    return {
        **extra,
        "feats": torch.cat(feats),
        "pids": torch.cat(pids),
        "camids": torch.cat(camids),
        "indices": torch.cat(indices),
    }
