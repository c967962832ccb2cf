"""The dataset registry: built-in names, custom registration, unknown names."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlabel.data import ReidDataset, ReidSample, available_datasets, build_dataset, register_dataset


def test_builtin_names() -> None:
    names = set(available_datasets())
    assert {"market1501", "dukemtmcreid", "msmt17", "cuhk03np", "folder", "cuhk03_p1", "synthetic"} <= names


def test_register_custom_and_duplicate() -> None:
    @register_dataset("unit_test_toy")
    def toy(root: str | Path, n: int = 1) -> ReidDataset:
        return ReidDataset("toy", train=[ReidSample(str(root), i, 0) for i in range(n)])

    assert build_dataset("unit_test_toy", "/x", n=3).num_train_pids == 3
    register_dataset("unit_test_toy")(toy)  # re-registering the same builder is harmless
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("unit_test_toy")(lambda root: ReidDataset("other"))


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="market1501"):
        build_dataset("market", "/x")
