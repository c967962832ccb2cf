"""Sharded banks (bank: sharded), low-precision sums and the projected k-NN: same labels and losses
as the replicated bank, in one process and in two gloo processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.banks.row_shards import RowShards, projection_matrix
from streamlabel.methods import build_policy
from tests.banks.sharded_runs import SMALL, run_processes, stream_run
from tests.helpers.features import brute_topk_sims, gaussian_mixture, unit_rows


# ----------------------------------------------------------------------------- RowShards, world 1
def test_row_shards_gather_and_write_rows():
    full = unit_rows(20, 6, seed=1)
    rows = RowShards(20, 6, distributed=False)
    rows.copy_(full)
    ids = torch.tensor([[3, 0], [19, 3]])
    assert torch.equal(rows.gather_rows(ids), full[ids])
    rows.index_add_(0, torch.tensor([2, 2]), torch.ones(2, 6))
    rows.empty_rows_(torch.tensor([5]))
    expect = full.clone()
    expect[2] += 2.0
    expect[5] = 0.0
    assert torch.allclose(rows.gather_rows(torch.arange(20)), expect, atol=1e-6)
    assert torch.equal(rows.all_rows(), rows.gather_rows(torch.arange(20)))
    assert torch.equal(rows.gather_rows(torch.arange(20) < 4), rows.gather_rows(torch.arange(4)))
    # reading rows is a collective: always spelled gather_rows
    assert not hasattr(rows, "__getitem__")


def test_row_shards_search_is_exact_top_k_in_small_blocks():
    bank, queries = unit_rows(50, 8, seed=2), unit_rows(7, 8, seed=3)
    # many blocks: the running merge is exercised
    rows = RowShards(50, 8, distributed=False, block_rows=6)
    rows.copy_(bank)
    sims, idx = rows.search(queries, 5)
    assert torch.allclose(sims, brute_topk_sims(queries, bank, 5), atol=1e-6)
    assert torch.allclose((queries.unsqueeze(1) * bank[idx]).sum(-1), sims, atol=1e-6)
    own = torch.tensor([4, 9, 0, 1, 2, 3, 49])
    sims_x, idx_x = rows.search(bank[own], 5, query_ids=own)
    assert not (idx_x == own.unsqueeze(1)).any()
    assert torch.allclose(sims_x, brute_topk_sims(bank[own], bank, 5, exclude=own), atol=1e-6)
    valid = torch.arange(50) % 10 != 0
    _, idx_v = rows.search(queries, 60, valid=valid)  # more slots than valid rows: padded with -1
    assert (
        (idx_v[:, :45] >= 0).all() and (idx_v[:, 45:] == -1).all() and valid[idx_v[:, :45]].all()
    )


def test_projected_search_rescores_exactly_and_finds_the_neighbours():
    torch.manual_seed(0)
    bank = unit_rows(400, 64, seed=4)
    queries = torch.nn.functional.normalize(bank[:20] + 0.05 * unit_rows(20, 64, seed=5), dim=1)
    rows = RowShards(
        400, 64, distributed=False, projection=projection_matrix(64, 16, seed=0), oversample=8
    )
    rows.copy_(bank)
    sims, idx = rows.search(queries, 5)
    # exact scores
    assert torch.allclose((queries.unsqueeze(1) * bank[idx]).sum(-1), sims, atol=1e-5)
    assert (idx[:, 0] == torch.arange(20)).all()  # the true nearest row is always found
    exact = brute_topk_sims(queries, bank, 5)
    assert (sims <= exact + 1e-5).all()


def test_segment_sums_match_index_add():
    feats = unit_rows(30, 4, seed=6)
    labels = torch.randint(0, 30, (30,), generator=torch.Generator().manual_seed(0))
    source = RowShards(30, 4, distributed=False)
    source.copy_(feats)
    sums = RowShards(30, 4, distributed=False, block_rows=7)
    sums.assign_segment_sums_(labels, source)
    assert torch.equal(
        sums.gather_rows(torch.arange(30)), torch.zeros(30, 4).index_add_(0, labels, feats)
    )


def test_compact_rows_store_only_rows_in_use_and_search_like_dense():
    full = unit_rows(3000, 8, seed=7)
    dense = RowShards(3000, 8, distributed=False, normalize_rows=True)
    compact = RowShards(
        3000, 8, distributed=False, normalize_rows=True, compact=True, block_rows=100
    )
    ids = torch.randperm(3000, generator=torch.Generator().manual_seed(1))[:1500]
    for rows in (dense, compact):
        rows.index_copy_(0, ids, full[ids])
        rows.empty_rows_(ids[:500])  # emptied: the compact store frees these slots ...
        rows.index_add_(0, ids[:10], full[ids[:10]])  # ... and reuses them
    assert compact.used == 1500 and compact.local.shape[0] == 2048  # 1024 doubled once, never N
    assert int((compact.slot_row >= 0).sum()) == 1010
    everything = torch.arange(3000)
    assert torch.equal(compact.gather_rows(everything), dense.gather_rows(everything))
    valid = torch.zeros(3000, dtype=torch.bool)
    valid[ids[500:]] = True
    valid[ids[:10]] = True
    queries = unit_rows(5, 8, seed=8)
    (s_c, i_c), (s_d, i_d) = (
        compact.search(queries, 7, valid=valid),
        dense.search(queries, 7, valid=valid),
    )
    assert torch.equal(i_c, i_d) and torch.allclose(s_c, s_d)


# ------------------------------------------------------------------------------------- the policy
def test_sharded_world_one_equals_replicated_bit_for_bit():
    replicated, sharded = stream_run({}), stream_run({"bank": "sharded"})
    assert torch.equal(replicated["raw_labels"], sharded["raw_labels"])
    assert replicated["losses"] == sharded["losses"]
    assert torch.equal(replicated["bank"], sharded["bank"])
    assert torch.equal(replicated["graph0"], sharded["graph0"])
    assert len(torch.unique(replicated["labels"][-1])) > 5  # a real clustering, not one blob


@pytest.mark.parametrize("params", [
    {"bank": "sharded", "bank_dtype": "float16", "sums_dtype": "float16"},
    {"bank": "sharded", "knn_projection": 8},
    {"bank": "replicated", "bank_dtype": "bfloat16", "sums_dtype": "bfloat16"},
])
def test_scale_options_keep_the_label_bank_consistent(params):
    feats, ids, centres, g = gaussian_mixture(10, 16, 6, 10, 0.1, seed=2)
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=16, **SMALL, **params)
    policy.initialize(feats)
    for _ in range(6):
        rows = torch.randperm(feats.shape[0], generator=g)[:12]
        f = torch.nn.functional.normalize(
            centres[ids[rows]] + 0.3 * torch.randn(12, 16, generator=g), dim=1
        )
        policy.step(rows, f)
    lb = policy.label_bank
    lb.check_invariant()
    everything = torch.arange(feats.shape[0])
    bank = policy.bank.storage.gather_rows(everything).float()
    low_precision = params.get("sums_dtype", "float32") != "float32"
    # incremental sums == exact sums of the bank (up to the sums' rounding)
    for level in range(lb.num_levels):
        exact = torch.zeros_like(bank).index_add_(0, lb.labels[level], bank)
        sums = lb.rows[level].gather_rows(everything).float()
        assert torch.allclose(sums, exact, atol=0.05 if low_precision else 1e-4)


def test_sharded_state_round_trip():
    feats, _, _, _ = gaussian_mixture(8, 16, 6, 10, 0.1, seed=3)
    make = lambda: build_policy(  # noqa: E731
        "hcd",
        num_samples=feats.shape[0],
        feat_dim=16,
        bank="sharded",
        knn_projection=4,
        **SMALL,
    )
    first = make()
    first.initialize(feats)
    second = make()
    second.load_state_dict(first.state_dict())
    rows, f = torch.arange(5), feats[:5].flip(0)
    first.step(rows, f)
    second.step(rows, f)
    assert torch.equal(first.label_bank.labels, second.label_bank.labels)


@pytest.mark.parametrize(("params", "message"), [
    ({"bank": "mirrored"}, "bank"),
    ({"knn_projection": 8}, "sharded"),
    ({"bank": "sharded", "knn_projection": 16}, "knn_projection"),
    ({"sums_dtype": "float64"}, "sums_dtype"),
    ({"bank": "sharded", "knn_backend": "faiss"}, "knn_backend"),
])
def test_bad_scale_options_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        build_policy("hcd", num_samples=10, feat_dim=16, **params)


# --------------------------------------------------------------------------------- two processes
@pytest.mark.slow
def test_two_gloo_processes_give_the_labels_and_losses_of_one(tmp_path: Path):
    """Sharded (each rank holds half the rows) and replicated banks in 2 processes: every rank ends
    with exactly the labels, loss trace, bank and sample graph of the 1-process replicated run."""
    one = stream_run({})
    ranks = run_processes([{"bank": "sharded"}, {"bank": "replicated"}], tmp_path)
    for rank_results in ranks:
        for result in rank_results:
            assert torch.equal(result["raw_labels"], one["raw_labels"])
            assert torch.equal(result["labels"], one["labels"])
            assert result["losses"] == one["losses"]
            assert torch.equal(result["bank"], one["bank"])
            assert torch.equal(result["graph0"], one["graph0"])


def test_sharded_bank_initialize_checks_like_the_feature_bank():
    from streamlabel.banks.sharded_feature_bank import ShardedFeatureBank

    bank = ShardedFeatureBank(4, 3, distributed=False)
    feats = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="all-zero"):
        bank.initialize(feats)
    with pytest.raises(ValueError, match="NaN"):
        bank.initialize(feats.index_fill(0, torch.tensor([3]), float("nan")))
    feats[3, 1] = 5.0
    bank.initialize(feats)
    assert torch.allclose(
        bank.storage.gather_rows(torch.arange(4)), torch.nn.functional.normalize(feats, dim=1)
    )
