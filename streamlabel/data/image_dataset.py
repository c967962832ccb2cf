"""A torch Dataset over a list of samples; ``index`` is the sample's stable row in the feature bank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from .images import load_image
from .samples import ReidSample
from .transforms import build_transforms


class ReidImageDataset(Dataset):
    """Items ``{"img", "pid", "camid", "index"}`` where ``index`` = position in ``samples``.

    The index -> bank row mapping is stable across epochs, processes and ranks because every parser sorts
    its files, so the same root always yields the same list in the same order. ``transform`` defaults to
    the test-time transform (resize + normalise).
    """

    def __init__(
        self,
        samples: Sequence[ReidSample],
        transform: Callable[[Image.Image], Any] | None = None,
        loader: Callable[[str], Image.Image] = load_image,
    ) -> None:
        self.samples = list(samples)
        self.transform = build_transforms(train=False) if transform is None else transform
        self.loader = loader
        self.pids = torch.tensor([s.pid for s in self.samples], dtype=torch.long)
        self.camids = torch.tensor([s.camid for s in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        img = self.transform(self.loader(sample.path))
        return {"img": img, "pid": sample.pid, "camid": sample.camid, "index": int(index)}
