"""Name -> dataset builder registry, so configs can say ``dataset: {name: market1501, root: ...}``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamlabel.registry import Registry

from .samples import ReidDataset

DatasetBuilder = Callable[..., ReidDataset]
B = TypeVar("B", bound=DatasetBuilder)

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
DATASETS: Registry[DatasetBuilder] = Registry("dataset", lazy=_BUILTIN_MODULES)


def register_dataset(name: str) -> Callable[[B], B]:
    """Decorator: make ``builder(root, **kwargs) -> ReidDataset`` available as ``build_dataset(name)``."""
    return DATASETS.register(name)


def available_datasets() -> list[str]:
    """All dataset names that ``build_dataset`` accepts."""
    return DATASETS.names()


def get_dataset_builder(name: str) -> DatasetBuilder:
    """The builder registered as ``name`` (importing its built-in module if needed)."""
    return DATASETS.get(name)


def build_dataset(name: str, root: str | Path, /, **kwargs: object) -> ReidDataset:
    """Parse the dataset ``name`` found at ``root``; ``kwargs`` (which may include a ``name``) go to it."""
    return get_dataset_builder(name)(root, **kwargs)
