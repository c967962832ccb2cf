"""shared_data.shared_file: absent data skips a test, except under STREAMLABEL_REQUIRE_SHARED=1 with ../shared
present, where it fails it (so CI cannot pass on a broken copy of ../shared)."""

from __future__ import annotations

import pytest

from tests.helpers import shared_data


def test_missing_file_skips_without_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shared_data, "SHARED", tmp_path)
    monkeypatch.delenv("STREAMLABEL_REQUIRE_SHARED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="absent"):
        shared_data.shared_file("embeddings", "x.npz")


def test_missing_file_fails_under_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shared_data, "SHARED", tmp_path)
    monkeypatch.setenv("STREAMLABEL_REQUIRE_SHARED", "1")
    with pytest.raises(pytest.fail.Exception, match="STREAMLABEL_REQUIRE_SHARED=1"):
        shared_data.shared_file("embeddings", "x.npz")
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "x.npz").write_bytes(b"")
    assert shared_data.shared_file("embeddings", "x.npz") == tmp_path / "embeddings" / "x.npz"


def test_no_shared_folder_skips_even_under_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(shared_data, "SHARED", tmp_path / "absent")
    monkeypatch.setenv("STREAMLABEL_REQUIRE_SHARED", "1")
    with pytest.raises(pytest.skip.Exception):
        shared_data.shared_file("embeddings", "x.npz")
