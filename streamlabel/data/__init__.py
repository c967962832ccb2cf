"""streamlabel.data: dataset parsers, image loading, transforms, identity samplers and loaders.

Parsers return a ``ReidDataset`` of ``ReidSample(path, pid, camid)`` lists, sorted so that a sample's
position (its feature-bank row) is the same in every process. ``build_dataset(name, root, **kw)`` picks a
parser by name; ``@register_dataset(name)`` adds one. Torch-dependent parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cuhk03 import cuhk03np
from .errors import DatasetLayoutError, UnreadableImageError
from .folder import cuhk03_p1, cuhk03_p1_transductive, folder_dataset, parse_folder, split_by_camera
from .images import find_unreadable_images, load_image, verify_dataset, verify_images
from .market import dukemtmcreid, market1501
from .msmt17 import msmt17
from .registry import available_datasets, build_dataset, get_dataset_builder, register_dataset
from .samples import ReidDataset, ReidSample, relabel, reverse_direction

_LAZY = {
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "build_transforms": "transforms",
    "ReidImageDataset": "image_dataset",
    "IdentityBatchSampler": "samplers",
    "MixedBatchLoader": "loaders",
    "build_identity_loader": "loaders",
}

__all__ = [
    "DatasetLayoutError",
    "UnreadableImageError",
    "ReidDataset",
    "ReidSample",
    "relabel",
    "reverse_direction",
    "available_datasets",
    "build_dataset",
    "get_dataset_builder",
    "register_dataset",
    "market1501",
    "dukemtmcreid",
    "msmt17",
    "cuhk03np",
    "folder_dataset",
    "parse_folder",
    "cuhk03_p1",
    "cuhk03_p1_transductive",
    "split_by_camera",
    "load_image",
    "find_unreadable_images",
    "verify_images",
    "verify_dataset",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
