"""HCDPolicy (methods/hcd.py), both rule sets: invariants after random steps, recovery of a
Gaussian mixture, determinism, exact resume, offline mode and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlabel.evaluation import bcubed
from streamlabel.methods import build_policy
from tests.helpers.features import gaussian_mixture

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = {"k": 6, "num_levels": 3, "knn_slack": 4}
PRESETS = {
    "tracking": {"dynamics": "tracking", "link_k": 3},
    "paper": {"dynamics": "paper", "link_k": 2},
}


def _small_policy(n: int, d: int, preset: str = "tracking", **params):
    cfg = {**SMALL, **PRESETS[preset]}
    cfg.update(params)
    return build_policy("hcd", num_samples=n, feat_dim=d, **cfg)


@pytest.fixture(params=sorted(PRESETS))
def preset(request) -> str:
    return request.param


def _stream(
    policy, feats, ids, centres, g, *, batches: int, batch_size: int = 16, noise: float = 0.05
):
    """Deterministic mini-batches of noisy copies of the true centres; returns the batch rows."""
    out = []
    for _ in range(batches):
        rows = torch.randperm(feats.shape[0], generator=g)[:batch_size]
        f = F.normalize(
            centres[ids[rows]] + noise * torch.randn(rows.numel(), feats.shape[1], generator=g),
            dim=1,
        )
        policy.step(rows, f)
        out.append(rows)
    return out


# ----------------------------------------------------------------------------------- invariants
def check_policy_invariants(policy, rows: torch.Tensor | None = None) -> None:
    lb, bank = policy.label_bank, policy.bank
    n = policy.num_samples
    lb.check_invariant()  # cluster preserve property, sizes == bincount(labels), ids in range
    assert int(lb.labels.min()) >= 0 and int(lb.labels.max()) < n
    fresh = copy.deepcopy(lb)
    fresh.recompute(bank.features)
    assert torch.equal(fresh.sizes, lb.sizes)
    torch.testing.assert_close(lb.sums, fresh.sums, atol=1e-4, rtol=0)
    # the kept row norms are those of the sums as they stand (not of a recompute: the sums may
    # drift)
    assert torch.equal(lb.norms, torch.linalg.vector_norm(lb.sums.float(), dim=-1))
    # fp16 / bf16 rows are rounded
    norm_tol = 1e-5 if bank.features.dtype == torch.float32 else 1e-2
    torch.testing.assert_close(
        bank.features.float().norm(dim=1), torch.ones(n), atol=norm_tol, rtol=0
    )
    for level in range(policy.num_levels):
        dense = policy.labels(level)
        kept = dense[dense >= 0]
        if kept.numel():
            assert set(kept.tolist()) == set(range(int(kept.max()) + 1))  # dense 0..C-1
        singleton = lb.sizes[level][lb.labels[level]] == 1
        assert torch.equal(dense < 0, singleton)  # -1 exactly for singletons
        # two samples share a dense label iff they share a bank label
        same_dense = dense.unsqueeze(0) == dense.unsqueeze(1)
        same_bank = lb.labels[level].unsqueeze(0) == lb.labels[level].unsqueeze(1)
        both = (dense >= 0).unsqueeze(0) & (dense >= 0).unsqueeze(1)
        assert torch.equal(same_dense & both, same_bank & both)
    if rows is not None:
        # the sample k-NN lists of the batch rows are an exact top-k of the current bank (up to
        # ties), as the graphs see it (tracking with cameras: camera-centred rows)
        graph = policy.graphs[0]
        rows = torch.unique(rows)
        view = getattr(policy.rules, "view", None)
        feats = bank.features.float() if view is None else view
        sims = feats[rows] @ feats.t()
        sims[torch.arange(rows.numel()), rows] = float("-inf")
        k = min(graph.k, n - 1)  # k larger than N - 1: the rest of the list is padding
        ref = torch.topk(sims, k, dim=1).values
        assert (graph.idx[rows, k : graph.k] == -1).all()
        listed = graph.idx[rows, :k]
        assert (listed >= 0).all() and not (listed == rows.unsqueeze(1)).any()
        got = (feats[rows].unsqueeze(1) * feats[listed]).sum(-1)
        torch.testing.assert_close(got, ref, atol=norm_tol, rtol=0)
        assert all(len(set(r)) == k for r in listed.tolist())  # no repeated neighbour


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    num_levels=st.integers(1, 3),
    steps=st.lists(
        st.tuples(
            st.lists(st.integers(0, 59), min_size=1, max_size=24),
            st.floats(0.0, 0.6),
            st.integers(0, 99),
        ),
        min_size=1,
        max_size=6,
    ),
    anchor_method=st.sampled_from(["density_peak", "random", "farthest_point"]),
    preset=st.sampled_from(sorted(PRESETS)),
)
def test_invariants_after_random_steps(seed, num_levels, steps, anchor_method, preset):
    feats, ids, centres, _ = gaussian_mixture(6, 8, 6, 12, 0.15, seed=seed)
    n = 60
    feats = (
        feats[:n]
        if feats.shape[0] >= n
        else torch.cat([feats, feats[: n - feats.shape[0]].flip(1)])
    )
    ids = ids[:n] if ids.shape[0] >= n else torch.cat([ids, ids[: n - ids.shape[0]] + 100])
    policy = _small_policy(
        n, 8, preset, num_levels=num_levels, anchor_method=anchor_method, seed=seed
    )
    policy.initialize(feats, torch.arange(n) % 3)
    check_policy_invariants(policy)
    for epoch, (rows, noise, draw) in enumerate(steps):
        g = torch.Generator().manual_seed(draw)
        rows_t = torch.tensor(rows)  # may hold duplicates
        # a mix of: noisy copies of the true centre, and jumps to a random other point
        target = torch.where(
            torch.rand(len(rows), 1, generator=g) < 0.3,
            feats[torch.randint(0, n, (len(rows),), generator=g)],
            centres[ids[rows_t] % 6],
        )
        f = F.normalize(target + noise * torch.randn(len(rows), 8, generator=g), dim=1) * 3.0
        policy.step(rows_t, f)
        check_policy_invariants(policy, rows_t)
        if epoch % 3 == 2:
            policy.epoch_end(epoch)
            check_policy_invariants(policy)


def test_invariants_after_offline_refresh(preset):
    feats, ids, centres, g = gaussian_mixture(8, 16, 6, 10, 0.1, seed=3)
    policy = _small_policy(feats.shape[0], 16, preset, refresh_every=1)
    policy.initialize(feats)
    _stream(policy, feats, ids, centres, g, batches=4)
    check_policy_invariants(policy)
    assert policy.epoch_end(0)
    check_policy_invariants(policy)


@pytest.mark.parametrize("bank_dtype", ["float16", "bfloat16"])
def test_low_precision_bank_keeps_sums_consistent(bank_dtype, preset):
    # the incremental cluster sums must follow the rows as stored (rounded), not the fp32 update
    feats, ids, centres, g = gaussian_mixture(6, 8, 10, 12, 0.15, seed=1)
    policy = _small_policy(feats.shape[0], 8, preset, bank_dtype=bank_dtype)
    policy.initialize(feats)
    for rows in _stream(policy, feats, ids, centres, g, batches=10, noise=0.3):
        check_policy_invariants(policy, rows)


# ----------------------------------------------------------------------------- mixture recovery
@pytest.mark.parametrize("dynamics", ["tracking", "paper"])
def test_gaussian_mixture_recovered_and_kept_while_streaming(dynamics):
    # 40 well separated unit-norm centres in D = 32, 8-15 points each, small noise (~0.11 in norm)
    feats, ids, centres, g = gaussian_mixture(40, 32, 8, 15, 0.02, seed=0)
    n = feats.shape[0]
    # link_k = 3: level 0 links mutual 3-NN samples. (With link_k = 2 the paper's bootstrap leaves
    # ~2-sample fragments whose k=30 ego-nets are so large that p_uv ~ 1/|ego| < sigma and the
    # first labels only reach BCubed F ~ 0.77; streaming then brings them above 0.9.)
    policy = build_policy("hcd", num_samples=n, feat_dim=32, link_k=3, dynamics=dynamics)
    policy.initialize(feats)
    _, _, f_init = bcubed(policy.labels(), ids)
    assert f_init > 0.9, f_init
    for epoch in range(2):
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, 32):
            rows = perm[start : start + 32]
            noisy = F.normalize(
                feats[rows] + 0.01 * torch.randn(rows.numel(), 32, generator=g), dim=1
            )
            policy.step(rows, noisy)
        policy.epoch_end(epoch)
        _, _, f_stream = bcubed(policy.labels(), ids)
        assert f_stream > 0.9, (epoch, f_stream)
    check_policy_invariants(policy)


# -------------------------------------------------------------------------------- determinism
def _run(anchor_method: str, preset: str, steps: int = 6):
    feats, ids, centres, g = gaussian_mixture(10, 16, 6, 12, 0.1, seed=11)
    policy = _small_policy(feats.shape[0], 16, preset, anchor_method=anchor_method, seed=5)
    policy.initialize(feats)
    _stream(policy, feats, ids, centres, g, batches=steps, noise=0.2)
    return policy


@pytest.mark.parametrize("anchor_method", ["density_peak", "random"])
def test_two_identical_runs_are_identical(anchor_method, preset):
    a, b = _run(anchor_method, preset), _run(anchor_method, preset)
    assert torch.equal(a.label_bank.labels, b.label_bank.labels)
    assert torch.equal(a.bank.features, b.bank.features)
    for ga, gb in zip(a.graphs, b.graphs, strict=True):
        assert torch.equal(ga.idx, gb.idx) and torch.equal(ga.sims, gb.sims)
    for level in range(a.num_levels):
        assert torch.equal(a.labels(level), b.labels(level))


# ------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("anchor_method", ["density_peak", "random"])
def test_state_dict_round_trip_gives_identical_labels(anchor_method, preset):
    feats, ids, centres, g = gaussian_mixture(10, 16, 6, 12, 0.1, seed=21)
    n = feats.shape[0]
    run_a = _small_policy(n, 16, preset, anchor_method=anchor_method, seed=1)
    run_a.initialize(feats, torch.arange(n) % 2)
    _stream(run_a, feats, ids, centres, g, batches=5, noise=0.2)
    state = copy.deepcopy(run_a.state_dict())
    g_state = g.get_state()
    _stream(run_a, feats, ids, centres, g, batches=5, noise=0.2)

    run_b = _small_policy(n, 16, preset, anchor_method=anchor_method, seed=1)
    run_b.load_state_dict(state)
    g.set_state(g_state)
    _stream(run_b, feats, ids, centres, g, batches=5, noise=0.2)
    assert torch.equal(run_a.label_bank.labels, run_b.label_bank.labels)
    assert torch.equal(run_a.labels(), run_b.labels())
    assert torch.equal(run_a.bank.features, run_b.bank.features)
    assert torch.equal(run_a.label_bank.sums, run_b.label_bank.sums)


@pytest.mark.parametrize(
    "preset, key, value",
    [
        ("paper", "sigma", 0.3),
        ("tracking", "split_gap", 3.0),
        ("tracking", "k", 5),
        ("paper", "num_levels", 2),
        ("tracking", "anchor_method", "random"),
        ("tracking", "dynamics", "paper"),
    ],
)
def test_state_from_other_config_is_refused(preset, key, value):
    feats, *_ = gaussian_mixture(4, 8, 5, 6, 0.1)
    a = _small_policy(feats.shape[0], 8, preset)
    a.initialize(feats)
    changed = {**PRESETS[preset], key: value}
    if key == "dynamics":
        changed = PRESETS["paper"]
    b = build_policy("hcd", num_samples=feats.shape[0], feat_dim=8, **{**SMALL, **changed})
    with pytest.raises(ValueError, match=key):
        b.load_state_dict(a.state_dict())


# ---------------------------------------------------------------------------------- offline mode
def test_offline_mode_steps_keep_labels_and_epoch_end_refreshes(preset):
    feats, ids, centres, g = gaussian_mixture(8, 16, 8, 12, 0.05, seed=4)
    n = feats.shape[0]
    policy = _small_policy(n, 16, preset, refresh_every=1, momentum=0.0)
    policy.initialize(feats)
    before = policy.label_bank.labels.clone()
    top = policy.labels()
    # half of identity 0 jumps onto identity 1: features change a lot, labels must wait for the
    # refresh
    own = (ids == 0).nonzero().flatten()
    moved, stayed = own[: own.numel() // 2], own[own.numel() // 2 :]
    assert (top[moved].unsqueeze(1) == top[stayed].unsqueeze(0)).any()  # they shared a cluster
    f = F.normalize(centres[1] + 0.05 * torch.randn(moved.numel(), 16, generator=g), dim=1)
    _stream(policy, feats, ids, centres, g, batches=3)
    policy.step(moved, f)  # last, so no later batch moves them back
    assert torch.equal(policy.label_bank.labels, before)
    check_policy_invariants(policy)  # sums still follow the features
    assert policy.epoch_end(0) is True
    after = policy.labels()
    assert not torch.equal(policy.label_bank.labels, before)
    # the refresh split the moved half away from the half that stayed
    shared = (after[moved].unsqueeze(1) == after[stayed].unsqueeze(0)) & (
        after[moved] >= 0
    ).unsqueeze(1)
    assert not shared.any()
    check_policy_invariants(policy)
    # and it is a clustering from scratch: the labels of a fresh initialize on the same bank
    fresh = _small_policy(n, 16, preset, refresh_every=1, momentum=0.0)
    fresh.initialize(policy.bank.features.clone())
    assert torch.equal(fresh.labels(), policy.labels())


def test_epoch_end_schedule(preset):
    feats, *_ = gaussian_mixture(4, 8, 5, 6, 0.1)
    online = _small_policy(feats.shape[0], 8, preset)
    online.initialize(feats)
    assert online.epoch_end(0) is False
    every2 = _small_policy(feats.shape[0], 8, preset, refresh_every=2)
    every2.initialize(feats)
    assert every2.epoch_end(0) is False and every2.epoch_end(1) is True


# ----------------------------------------------------------------------------------- bad input
@pytest.fixture
def ready(preset):
    feats, *_ = gaussian_mixture(4, 8, 5, 6, 0.1)
    policy = _small_policy(feats.shape[0], 8, preset)
    policy.initialize(feats)
    return policy


def test_nan_features_raise_and_leave_banks_unchanged(ready):
    bank, labels, sums = (
        ready.bank.features.clone(),
        ready.label_bank.labels.clone(),
        ready.label_bank.sums.clone(),
    )
    f = torch.ones(3, 8)
    f[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ready.step(torch.tensor([0, 1, 2]), f)
    f[1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN"):
        ready.step(torch.tensor([0, 1, 2]), f)
    assert torch.equal(ready.bank.features, bank)
    assert torch.equal(ready.label_bank.labels, labels) and torch.equal(
        ready.label_bank.sums, sums
    )
    fresh = _small_policy(ready.num_samples, 8)
    with pytest.raises(ValueError, match="NaN"):
        fresh.initialize(torch.full((ready.num_samples, 8), float("nan")))


def test_wrong_shapes(ready):
    n = ready.num_samples
    with pytest.raises(ValueError):
        ready.step(torch.tensor([0, 1]), torch.ones(2, 9))
    with pytest.raises(ValueError):
        ready.step(torch.tensor([0, 1, 2]), torch.ones(2, 8))
    with pytest.raises(ValueError):
        ready.step(torch.tensor([n]), torch.ones(1, 8))
    with pytest.raises(ValueError):
        ready.step(torch.tensor([0]), torch.ones(8))
    with pytest.raises(ValueError):
        _small_policy(n, 8).initialize(torch.ones(n - 1, 8))
    with pytest.raises(ValueError):
        _small_policy(n, 8).initialize(torch.ones(n, 7))


def test_step_before_initialize():
    policy = _small_policy(20, 4)
    with pytest.raises(RuntimeError, match="initialize"):
        policy.step(torch.tensor([0]), torch.ones(1, 4))
    with pytest.raises(RuntimeError, match="initialize"):
        policy.labels()
    with pytest.raises(RuntimeError, match="initialize"):
        policy.epoch_end(0)


def test_unknown_parameter_names_nearest_key():
    with pytest.raises(KeyError, match="sigma"):
        build_policy("hcd", num_samples=10, feat_dim=4, dynamics="paper", simga=0.2)
    with pytest.raises(KeyError, match="anchor_method"):
        build_policy("hcd", num_samples=10, feat_dim=4, anchor_methd="random")


@pytest.mark.parametrize(
    "params, key",
    [
        ({"alpha_split": 1.0}, "alpha_split"),
        ({"dynamics": "paper", "alpha_merge": 1.0}, "alpha_merge"),
        ({"dynamics": "paper", "alpha_merge": -0.1}, "alpha_merge"),
        ({"dynamics": "paper", "sigma": 0.0}, "sigma"),
        ({"dynamics": "paper", "sigma": 1.0}, "sigma"),
        ({"dynamics": "paper", "assign": "random"}, "assign"),
        ({"dynamics": "paper", "criterion": "centroid"}, "criterion"),
        ({"criterion": "lp"}, "criterion"),
        ({"split_gap": 0.0}, "split_gap"),
        ({"merge_floor": 1.5}, "merge_floor"),
        ({"cross_camera_from": 0}, "cross_camera_from"),
        ({"dynamics": "online"}, "dynamics"),
        ({"bank": "sharded"}, "sharded"),
        ({"k": 0}, "k"),
        ({"k": 4, "link_k": 5}, "link_k"),
        ({"num_levels": 0}, "num_levels"),
        ({"max_anchors": 0}, "max_anchors"),
        ({"momentum": 1.0}, "momentum"),
        ({"refresh_every": -1}, "refresh_every"),
        ({"anchor_method": "kmeans"}, "anchor_method"),
        ({"dynamics": "paper", "merge_norm": "l2"}, "merge_norm"),
        ({"bank_dtype": "float64"}, "bank_dtype"),
    ],
)
def test_out_of_range_parameters(params, key):
    with pytest.raises(ValueError, match=key):
        build_policy("hcd", num_samples=10, feat_dim=4, **params)


def test_graph_k_larger_than_samples_pads():
    # k = 30 with only 12 samples: lists hold the 11 other samples, then -1
    feats, *_ = gaussian_mixture(3, 8, 4, 4, 0.1)
    policy = build_policy("hcd", num_samples=12, feat_dim=8, dynamics="paper")
    policy.initialize(feats)
    lists = policy.graphs[0].neighbors(torch.arange(12))
    assert (lists[:, :11] >= 0).all() and (lists[:, 11:] == -1).all()
    policy.step(torch.tensor([0, 5]), feats[[1, 6]])
    check_policy_invariants(policy, torch.tensor([0, 5]))


def test_online_extract_reanchors_on_the_fresh_pass_at_every_epoch_end(preset):
    feats, ids, centres, g = gaussian_mixture(8, 16, 8, 12, 0.05, seed=5)
    n = feats.shape[0]
    # online from the bank: no epoch-end refresh
    assert not _small_policy(n, 16, preset).refreshes_after(0)
    policy = _small_policy(n, 16, preset, refresh_source="extract")
    assert all(policy.refreshes_after(epoch) for epoch in range(3))
    policy.initialize(feats)
    _stream(policy, feats, ids, centres, g, batches=3)
    fresh_pass = F.normalize(centres[ids] + 0.05 * torch.randn(n, 16, generator=g), dim=1)
    policy.reload_bank(fresh_pass)
    # every row replaced, no momentum blend
    torch.testing.assert_close(policy.bank.features, fresh_pass)
    assert policy.epoch_end(0) is True
    check_policy_invariants(policy)
    # the labels start anew from the fresh pass: those of a fresh initialize on it
    reference = _small_policy(n, 16, preset)
    reference.initialize(fresh_pass)
    assert torch.equal(policy.labels(), reference.labels())


def test_refresh_source_is_bank_or_extract():
    with pytest.raises(ValueError, match="refresh_source must be 'bank'"):
        _small_policy(10, 4, refresh_source="fresh")
