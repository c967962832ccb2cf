"""Name -> dataset builder registry, so configs can say ``dataset: {name: market1501, root: ...}``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .samples import ReidDataset

DatasetBuilder = Callable[..., ReidDataset]
B = TypeVar("B", bound=DatasetBuilder)

_REGISTRY: dict[str, DatasetBuilder] = {}

# Built-in names whose module registers them on import; imported lazily on first use so that a module
# (e.g. ``synthetic``) can import this registry without import cycles.
_BUILTIN_MODULES = {
    "market1501": "streamlabel.data.market",
    "dukemtmcreid": "streamlabel.data.market",
    "msmt17": "streamlabel.data.msmt17",
    "cuhk03np": "streamlabel.data.cuhk03",
    "folder": "streamlabel.data.folder",
    "cuhk03_p1": "streamlabel.data.folder",
    "synthetic": "streamlabel.data.synthetic",
}


def register_dataset(name: str) -> Callable[[B], B]:
    """Decorator: make ``builder(root, **kwargs) -> ReidDataset`` available as ``build_dataset(name)``."""

    def wrap(builder: B) -> B:
        if name in _REGISTRY and _REGISTRY[name] is not builder:
            raise ValueError(f"dataset name {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = builder
        return builder

    return wrap


def available_datasets() -> list[str]:
    """All dataset names that ``build_dataset`` accepts."""
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered as ``name`` (importing its built-in module if needed)."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name]


def build_dataset(name: str, root: str | Path, /, **kwargs: object) -> ReidDataset:
    """Parse the dataset ``name`` found at ``root``; ``kwargs`` (which may include a ``name``) go to it."""
    return get_dataset_builder(name)(root, **kwargs)
