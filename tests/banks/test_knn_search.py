"""Exact k-NN search (banks/knn.py): brute force agreement, self exclusion, masks, padding,
faiss."""

from __future__ import annotations

import pytest
import torch

from streamlabel.banks.knn import faiss_available, topk_inner_product
from tests.helpers.features import brute_topk_sims, unit_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_matches_brute_force_and_blocking():
    bank = unit_rows(200, 16, seed=1)
    queries = unit_rows(37, 16, seed=2)
    sims, idx = topk_inner_product(queries, bank, 7, block_size=5)
    ref = brute_topk_sims(queries, bank, 7)
    torch.testing.assert_close(sims, ref)
    # the returned ids really have the returned similarities
    torch.testing.assert_close((queries.unsqueeze(1) * bank[idx]).sum(-1), sims)
    # same answer whatever the block size
    sims2, idx2 = topk_inner_product(queries, bank, 7, block_size=4096)
    assert torch.equal(idx, idx2)


def test_query_ids_exclude_self():
    bank = unit_rows(50, 8, seed=3)
    rows = torch.tensor([0, 7, 49])
    sims, idx = topk_inner_product(bank[rows], bank, 5, query_ids=rows)
    assert not (idx == rows.unsqueeze(1)).any()
    torch.testing.assert_close(sims, brute_topk_sims(bank[rows], bank, 5, exclude=rows))
    # -1 means "not in the bank": nothing is excluded, so the row finds itself first
    _, idx = topk_inner_product(bank[rows], bank, 1, query_ids=torch.tensor([-1, -1, -1]))
    assert torch.equal(idx[:, 0], rows)


def test_valid_mask_and_short_lists():
    bank = unit_rows(10, 4, seed=4)
    valid = torch.zeros(10, dtype=torch.bool)
    valid[[1, 3, 5]] = True
    sims, idx = topk_inner_product(bank[:2], bank, 5, valid=valid)
    assert set(idx[0, :3].tolist()) == {1, 3, 5}
    assert torch.equal(idx[:, 3:], torch.full((2, 2), -1))
    assert torch.isinf(sims[:, 3:]).all() and (sims[:, 3:] < 0).all()


def test_k_larger_than_bank_pads_with_minus_one():
    bank = unit_rows(4, 3, seed=5)
    sims, idx = topk_inner_product(bank, bank, 6, query_ids=torch.arange(4))
    assert idx.shape == (4, 6) and sims.shape == (4, 6)
    # 3 real neighbours (self excluded), then padding
    assert (idx[:, :3] >= 0).all()
    assert torch.equal(idx[:, 3:], torch.full((4, 3), -1))
    assert torch.isneginf(sims[:, 3:]).all()
    for q in range(4):
        assert sorted(idx[q, :3].tolist()) == [r for r in range(4) if r != q]


def test_bad_input():
    bank = unit_rows(10, 4)
    with pytest.raises(ValueError, match="must be"):
        topk_inner_product(unit_rows(3, 5), bank, 2)
    with pytest.raises(ValueError, match="must be"):
        topk_inner_product(torch.zeros(4), bank, 2)
    with pytest.raises(ValueError, match="k must be"):
        topk_inner_product(bank, bank, 0)
    with pytest.raises(ValueError, match="backend"):
        topk_inner_product(bank, bank, 2, backend="annoy")


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@pytest.mark.parametrize("with_ids", [False, True])
def test_faiss_backend_equals_torch(with_ids):
    bank = unit_rows(300, 24, seed=6)
    rows = torch.arange(0, 300, 7)
    query_ids = rows if with_ids else None
    sims_t, idx_t = topk_inner_product(bank[rows], bank, 9, query_ids=query_ids, backend="torch")
    sims_f, idx_f = topk_inner_product(bank[rows], bank, 9, query_ids=query_ids, backend="faiss")
    torch.testing.assert_close(sims_f, sims_t, atol=1e-5, rtol=0)
    assert torch.equal(idx_f, idx_t)  # random data: no ties


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_backend_pads_like_torch():
    bank = unit_rows(4, 3, seed=7)
    sims_t, idx_t = topk_inner_product(bank, bank, 6, query_ids=torch.arange(4), backend="torch")
    sims_f, idx_f = topk_inner_product(bank, bank, 6, query_ids=torch.arange(4), backend="faiss")
    assert torch.equal(idx_f, idx_t)
    assert torch.isneginf(sims_f[:, 3:]).all()
