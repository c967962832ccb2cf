"""Bad feature files and feature tensors: refused with the file/key and the expectation; banks never take NaN."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.launch import cli
from streamlabel.launch.errors import InputError
from streamlabel.launch.feature_dump import load_feature_dump
from streamlabel.methods import build_policy

_F = np.random.default_rng(0).random((10, 4)).astype(np.float32) + 0.1
_AT = np.arange(40).reshape(10, 4)

# (case, arrays for np.savez, regex the message must match after "<file>: ")
BAD_DUMPS = [
    ("NaN", {"feats": np.where(_AT == 5, np.nan, _F)}, r"feats contain NaN or infinite values in 1 row\(s\), first "
     r"row 1"),
    ("Inf", {"feats": np.where(_AT == 9, -np.inf, _F)}, r"feats contain NaN or infinite values in 1 row\(s\), "
     r"first row 2"),
    ("all-zero row", {"feats": np.where(_AT // 4 == 3, 0.0, _F)}, r"feats has 1 all-zero row\(s\) .* first row 3"),
    ("1-D feats", {"feats": _F.ravel()}, r"feats must be a real-valued \[N, D\] array, got float32 \(40,\)"),
    ("3-D feats", {"feats": _F.reshape(10, 2, 2)}, r"feats must be a real-valued \[N, D\] array, got float32 "
     r"\(10, 2, 2\)"),
    ("string feats", {"feats": np.array([["a", "b"]])}, r"feats must be a real-valued \[N, D\] array, got <U1"),
    ("complex feats", {"feats": _F.astype(np.complex64)}, r"feats must be a real-valued .* got complex64"),
    ("bool feats", {"feats": _F > 0.5}, r"feats must be a real-valued .* got bool"),
    ("object feats", {"feats": np.array([{"a": 1}, None], dtype=object)}, r"cannot read as .npz \(ValueError: "
     r"Object arrays cannot be loaded when allow_pickle=False"),
    ("no rows", {"feats": np.zeros((0, 4), np.float32)}, r"feats must hold at least one row and one column, got "
     r"shape \(0, 4\)"),
    ("no columns", {"feats": np.zeros((5, 0), np.float32)}, r"feats must hold at least one row and one "
     r"column, got shape \(5, 0\)"),
    ("feats missing", {"features": _F}, r"missing key\(s\) feats \(has: features\)"),
    ("float pids", {"feats": _F, "pids": np.arange(10.0)}, r"pids must be integers, got dtype float64"),
    ("short pids", {"feats": _F, "pids": np.arange(9)}, r"pids has shape \(9,\), expected \(10,\) to match feats"),
    ("2-D camids", {"feats": _F, "camids": np.zeros((10, 1), np.int64)}, r"camids has shape \(10, 1\), expected "
     r"\(10,\)"),
]


@pytest.mark.parametrize(("case", "arrays", "pattern"), BAD_DUMPS, ids=[c[0] for c in BAD_DUMPS])
def test_bad_feature_dump_names_file_key_and_expectation(tmp_path: Path, case: str, arrays: dict,
                                                         pattern: str) -> None:
    path = tmp_path / "feats.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as info:
        load_feature_dump(path)
    assert re.fullmatch(re.escape(f"{path}: ") + pattern + r".*", str(info.value), re.S), f"{case}: {info.value}"


def _npy_named_npz(path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, _F)


def _truncated_npz(path: Path) -> None:
    np.savez(path, feats=np.random.default_rng(1).random((200, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# (case, how to write the file, regex of the message after "<file>: ")
BAD_FILES = [
    ("random bytes", lambda p: p.write_bytes(os.urandom(64).replace(b"PK", b"pk")),
     r"not an .npz archive \(np.savez writes a zip file; .*\)"),
    (".npy under an .npz name", _npy_named_npz, r"not an .npz archive \(np.savez writes a zip file; this one starts "
     r"with b'\\x93NUM'\)"),
    ("truncated archive", _truncated_npz, r"cannot read as .npz \((BadZipFile|EOFError|OSError|ValueError): .*"
     r"truncated\?\)"),
    ("empty file", lambda p: p.write_bytes(b""), r"not an .npz archive .* starts with b''\)"),
]


@pytest.mark.parametrize(("case", "write", "pattern"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_unreadable_feature_file(tmp_path: Path, case: str, write, pattern: str) -> None:
    path = tmp_path / "feats.npz"
    write(path)
    with pytest.raises(InputError) as info:
        load_feature_dump(path)
    assert re.fullmatch(re.escape(f"{path}: ") + pattern, str(info.value), re.S), f"{case}: {info.value}"


def test_missing_feature_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"feature file not found: .*absent.npz"):
        load_feature_dump(tmp_path / "absent.npz")


def test_labels_command_reports_bad_features_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "feats.npz"
    np.savez(path, feats=np.where(_AT == 5, np.nan, _F))
    assert cli.main(["labels", "--features", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamlabel labels: error: {path}: feats contain NaN") and "Traceback" not in err


def test_labels_command_refuses_k_not_below_n(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "feats.npz"
    np.savez(path, feats=_F)
    assert cli.main(["labels", "--features", str(path), "--quiet", "k=10"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: parameter 'k' of policy 'hcd' is 10 but there are only 10 samples" in err


# ----------------------------------------------------------------------------- tensors into a policy
def _policy() -> object:
    feats = torch.nn.functional.normalize(torch.randn(24, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    policy = build_policy("hcd", num_samples=24, feat_dim=8, k=5)
    policy.initialize(feats)
    return policy


def _snapshot(policy) -> dict:
    return {k: v.clone() for k, v in (("bank", policy.bank.features), ("labels", policy.label_bank.labels),
                                      ("sums", policy.label_bank.sums))}


_NAN = torch.full((4, 8), float("nan"))
# (case, indices, features, regex of the ValueError)
BAD_STEPS = [
    ("NaN features", torch.arange(4), _NAN, r"features contain NaN/Inf in 4 row\(s\) \(first: row 0\); the bank "
     r"was not modified"),
    ("one Inf value", torch.arange(4), torch.ones(4, 8).index_put_((torch.tensor([2]), torch.tensor([3])),
                                                                   torch.tensor(float("inf"))),
     r"NaN/Inf in 1 row\(s\) \(first: row 2\)"),
    ("wrong width", torch.arange(4), torch.ones(4, 7), r"features must be \[B, 8\], got \(4, 7\)"),
    ("1-D features", torch.arange(4), torch.ones(8), r"features must be \[B, 8\], got \(8,\)"),
    ("indices do not match rows", torch.arange(3), torch.ones(4, 8), r"indices must be \[4\], got \(3,\)"),
    ("index out of range", torch.tensor([0, 1, 2, 24]), torch.ones(4, 8), r"indices must lie in \[0, 24\), got "
     r"0..24"),
    ("negative index", torch.tensor([-1, 1, 2, 3]), torch.ones(4, 8), r"indices must lie in \[0, 24\)"),
]


@pytest.mark.parametrize(("case", "indices", "features", "pattern"), BAD_STEPS, ids=[c[0] for c in BAD_STEPS])
def test_bad_step_input_is_refused_and_banks_stay_untouched(case: str, indices: torch.Tensor,
                                                            features: torch.Tensor, pattern: str) -> None:
    policy = _policy()
    before = _snapshot(policy)
    with pytest.raises(ValueError, match=pattern):
        policy.step(indices, features)
    after = _snapshot(policy)
    assert all(torch.equal(before[k], after[k]) for k in before), case


@pytest.mark.parametrize(("case", "features", "pattern"), [
    ("NaN row", torch.randn(24, 8).index_fill_(0, torch.tensor([7]), float("nan")),
     r"features contain NaN/Inf in 1 row\(s\) \(first: row 7\)"),
    ("wrong shape", torch.randn(23, 8), r"initial features must be \(24, 8\), got \(23, 8\)"),
    ("all-zero row", torch.randn(24, 8).index_fill_(0, torch.tensor([5]), 0.0),
     r"initial features hold 1 all-zero row\(s\) \(first: row 5\): a zero feature has no direction; the bank was "
     r"not modified"),
], ids=["NaN row", "wrong shape", "all-zero row"])
def test_bad_initial_features_are_refused(case: str, features: torch.Tensor, pattern: str) -> None:
    policy = build_policy("hcd", num_samples=24, feat_dim=8, k=5)
    with pytest.raises(ValueError, match=pattern):
        policy.initialize(features)
    assert not bool(policy.bank.features.isnan().any())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int32], ids=str)
def test_other_numeric_dtypes_are_converted(dtype: torch.dtype) -> None:
    policy = _policy()
    policy.step(torch.arange(4), (torch.rand(4, 8) * 4 + 1).to(dtype))
    norms = policy.bank.features.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
