"""Fixtures for the training tests (the helpers they import are in tiny_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic images written once per session and shared by the training tests."""
    return tmp_path_factory.mktemp("synthetic")
