"""Property-based fuzz (hypothesis, bounded budget): random bank operations with poisoned inputs mixed in, random
feature dumps, random policy parameters. Each input is either accepted with every invariant intact, or refused
with the library's own error type; never a crash from deep inside, never a NaN in a bank."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamlabel.banks.feature_bank import FeatureBank
from streamlabel.config.errors import ConfigError
from streamlabel.launch.errors import InputError
from streamlabel.launch.feature_dump import load_feature_dump
from streamlabel.launch.run_config import load_run_config as load_config
from streamlabel.methods import build_policy, policy_parameters

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N, D = 20, 6

# one bank operation: (kind, row indices, a poison to put in the batch)
operations = st.tuples(
    st.sampled_from(["step", "step", "step", "epoch_end"]),
    st.lists(st.integers(-2, N + 1), min_size=0, max_size=8),
    st.sampled_from([None, None, "nan", "inf", "zero", "huge", "wide"]),
)


def _batch(indices: list[int], poison: str | None, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.randn(len(indices), D + (poison == "wide"), generator=gen)
    if poison == "nan" and len(indices):
        feats[0, 0] = float("nan")
    elif poison == "inf" and len(indices):
        feats[-1, -1] = float("inf")
    elif poison == "zero":
        feats.zero_()
    elif poison == "huge":
        feats *= 1e30
    return torch.tensor(indices, dtype=torch.long), feats


@FUZZ
@given(seed=st.integers(0, 10_000), ops=st.lists(operations, min_size=1, max_size=10))
def test_random_policy_operations_keep_the_banks_sound(seed: int, ops: list) -> None:
    gen = torch.Generator().manual_seed(seed)
    policy = build_policy("hcd", num_samples=N, feat_dim=D, k=4, seed=seed)
    policy.initialize(F.normalize(torch.randn(N, D, generator=gen), dim=1))
    for epoch, (kind, indices, poison) in enumerate(ops):
        if kind == "epoch_end":
            policy.epoch_end(epoch)
            continue
        rows, feats = _batch(indices, poison, gen)
        before = policy.bank.features.clone()
        valid = all(0 <= i < N for i in indices) and poison not in ("nan", "inf", "wide") and len(indices) > 0
        try:
            policy.step(rows, feats)
        except ValueError:
            assert not valid, f"a valid batch was refused: {indices} {poison}"
            assert torch.equal(before, policy.bank.features), "a refused batch changed the bank"
        else:
            assert valid or not indices, f"an invalid batch was accepted: {indices} {poison}"
        bank = policy.bank.features
        assert bool(torch.isfinite(bank).all())
        assert torch.allclose(bank.norm(dim=1), torch.ones(N), atol=1e-4)
        policy.label_bank.check_invariant()
    entries, _ = policy.memory_entries()
    assert bool(torch.isfinite(entries).all())


@FUZZ
@given(
    momentum=st.floats(0.0, 0.99),
    ops=st.lists(st.tuples(st.lists(st.integers(0, N - 1), min_size=1, max_size=12),
                           st.sampled_from([None, "nan", "zero", "huge", "tiny"])), min_size=1, max_size=12),
)
def test_feature_bank_rows_stay_unit_and_finite(momentum: float, ops: list) -> None:
    bank = FeatureBank(N, D, momentum=momentum)
    bank.initialize(torch.randn(N, D))
    gen = torch.Generator().manual_seed(0)
    for indices, poison in ops:
        rows, feats = _batch(indices, None if poison == "tiny" else poison, gen)
        if poison == "tiny":
            feats *= 1e-30
        try:
            bank.update(rows, feats)
        except ValueError:
            assert poison == "nan"
        rows_now = bank.features
        assert bool(torch.isfinite(rows_now).all())
        assert torch.allclose(rows_now.norm(dim=1), torch.ones(N), atol=1e-4)


dumps = st.fixed_dictionaries(
    {"feats": hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_, np.complex64, np.uint8]),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))},
    optional={"pids": hnp.arrays(dtype=st.sampled_from([np.int64, np.float32]), shape=st.integers(0, 6)),
              "camids": hnp.arrays(dtype=st.sampled_from([np.int64, np.int8]), shape=hnp.array_shapes(max_dims=2))},
)


@FUZZ
@given(arrays=dumps)
def test_random_feature_dumps_load_clean_or_raise_input_error(arrays: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feats.npz"
        np.savez(path, **arrays)
        try:
            out = load_feature_dump(path)
        except InputError as err:
            assert str(path) in str(err)
            return
    feats = out["feats"]
    assert feats.ndim == 2 and min(feats.shape) >= 1 and np.isfinite(feats).all()
    assert (np.abs(feats) > 0).any(axis=1).all()
    for key in ("pids", "camids"):
        if key in out:
            assert out[key].shape == (feats.shape[0],) and np.issubdtype(out[key].dtype, np.integer)


_HCD = policy_parameters("hcd")
parameter_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(-2, 2), st.just(float("nan")),
                             st.sampled_from(["", "random", "row", "mutual", "float16", "bogus"]))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(sorted(_HCD)), parameter_values, max_size=4))
def test_random_policy_parameters_load_only_when_the_policy_builds(params: dict) -> None:
    """A config that loads builds its policy (N above every neighbour count): no parameter error is left for later."""
    overrides = [f"policy.{key}={'null' if value is None else value}" for key, value in params.items()]
    try:
        cfg = load_config(None, overrides)
    except ConfigError as err:
        assert "policy" in str(err)
        return
    built = {k: v for k, v in cfg["policy"].items() if k != "name"}
    policy = build_policy("hcd", num_samples=64, feat_dim=4, **built)
    assert policy.num_samples == 64
