"""The research data in ``../shared`` (CUHK03 images, the MSMT17 OSNet model, its embeddings).

Tests that read it carry the ``shared`` marker and ask for their files through ``shared_file``:
absent ``../shared``, the test is skipped. With ``STREAMLABEL_REQUIRE_SHARED=1`` (set by
``.ci/run`` when ``../shared`` is there), a missing file fails the test instead, so a broken copy
cannot turn the real-data tests into skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests/helpers/ -> the checkout -> its parent
SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def shared_required() -> bool:
    return os.environ.get("STREAMLABEL_REQUIRE_SHARED") == "1" and SHARED.is_dir()


def shared_file(*parts: str) -> Path:
    """The path ``../shared/<parts>``; skips the test when it is absent (fails under the CI
    variable)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is absent"
        if shared_required():
            pytest.fail(f"{message}, but ../shared is present and STREAMLABEL_REQUIRE_SHARED=1")
        pytest.skip(message)
    return path
