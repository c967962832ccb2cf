"""DataLoader builders and the source+target batch mixer used by domain-adaptive training."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from .image_dataset import ReidImageDataset
from .samplers import IdentityBatchSampler, OutlierMode
from .samples import ReidSample
from .transforms import build_transforms


def build_identity_loader(
    samples: Sequence[ReidSample],
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    batch_size: int = 64,
    num_instances: int = 4,
    outliers: OutlierMode = "exclude",
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    num_workers: int = 4,
    pin_memory: bool = False,
) -> DataLoader:
    """Training loader of P x K batches (``batch_size`` global); labels default to the samples' pids.

    The loader's ``batch_sampler`` is the IdentityBatchSampler: call its ``set_labels`` with new pseudo
    labels and save its ``state_dict`` with checkpoints.
    """
    dataset = ReidImageDataset(samples, build_transforms(train=True) if transform is None else transform)
    sampler = IdentityBatchSampler(
        dataset.pids if labels is None else labels,
        batch_size=batch_size,
        num_instances=num_instances,
        outliers=outliers,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    if len(sampler.labels) != len(dataset):
        raise ValueError(f"{len(sampler.labels)} labels for {len(dataset)} samples")
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed * 1000 + rank),
    )


class MixedBatchLoader:
    """Yields ``{"source": batch, "target": batch}`` by zipping two loaders.

    An epoch lasts one pass over ``target`` (or ``num_iters`` batches when given); the source loader, and the
    target one in the fixed-length mode, are cycled and continue across epochs where they left off.
    """

    def __init__(self, source: Iterable[Any], target: Iterable[Any], num_iters: int | None = None) -> None:
        if num_iters is not None and num_iters < 1:
            raise ValueError(f"num_iters must be >= 1, got {num_iters}")
        if num_iters is None and not isinstance(target, Sized):
            raise ValueError("target loader has no len(); give num_iters")
        self.source = source
        self.target = target
        self.num_iters = num_iters
        self._iters: dict[str, Iterator[Any]] = {}

    def __len__(self) -> int:
        return self.num_iters if self.num_iters is not None else len(self.target)  # type: ignore[arg-type]

    def _next(self, which: str) -> Any:
        loader = self.source if which == "source" else self.target
        it = self._iters.get(which)
        if it is not None:
            try:
                return next(it)
            except StopIteration:
                pass
        it = self._iters[which] = iter(loader)
        try:
            return next(it)
        except StopIteration:
            raise ValueError(f"the {which} loader yields no batches") from None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.num_iters is None:
            empty = True
            for target_batch in self.target:
                empty = False
                yield {"source": self._next("source"), "target": target_batch}
            if empty:
                raise ValueError("the target loader yields no batches")
        else:
            for _ in range(self.num_iters):
                yield {"source": self._next("source"), "target": self._next("target")}
