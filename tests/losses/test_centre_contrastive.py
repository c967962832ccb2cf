"""NPLP centre contrastive loss (losses/centre_contrastive.py): loss value and halving update by hand,
rebuild after a refresh, gradients, checkpoint round trip, registry, one table over two gloo processes."""

from __future__ import annotations

import math
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from streamlabel.losses import LossBatch, LossTerms, available_losses
from streamlabel.losses.centre_contrastive import CentreContrastiveLoss, halving_update


class StubPolicy:
    """Just what the term reads: bank.features, labels(), rounds."""

    def __init__(self, bank, labels, rounds=1):
        self.bank = SimpleNamespace(features=bank)
        self._labels = labels
        self.rounds = rounds

    def labels(self, level=-1):
        return self._labels.clone()


def _batch(feats, indices, policy):
    labels = policy.labels()[indices]
    empty = torch.zeros(0, feats.shape[1])
    return LossBatch(empty, torch.zeros(0, dtype=torch.long), feats, indices, labels, policy=policy)


# bank rows (1,0),(1,0),(0,1),(0,1): mean (.5,.5), std .5 -> BN rows (1,-1),(1,-1),(-1,1),(-1,1)
# -> ReLU (1,0),(1,0),(0,1),(0,1) -> centres V0 = (1,0), V1 = (0,1) for labels 0,0,1,1
BANK = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])


def test_halving_update_by_hand():
    # label 0 gets f1 = (4,0) then f2 = (0,8): ((0,0)+(4,0))/2 = (2,0); ((2,0)+(0,8))/2 = (1,4)
    # label 2 gets (2,2) once: ((2,6)+(2,2))/2 = (2,4); label 1 untouched
    v = torch.tensor([[0.0, 0.0], [5.0, 5.0], [2.0, 6.0]])
    f = torch.tensor([[4.0, 0.0], [2.0, 2.0], [0.0, 8.0]])
    out = halving_update(v, f, torch.tensor([0, 2, 0]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 4.0], [5.0, 5.0], [2.0, 4.0]]))


def test_loss_value_and_update_by_hand():
    policy = StubPolicy(BANK, torch.tensor([0, 0, 1, 1]))
    term = CentreContrastiveLoss(temperature=0.5, bn_eps=1e-12)
    # batch f1 = (1,0) label 0, f2 = (0,1) label 1: batch BN -> (1,-1), (-1,1); ReLU -> (1,0), (0,1)
    # logits / 0.5: row 1 [2, 0] (target 0), row 2 [0, 2] (target 1): loss = log(1 + e^-2) each
    loss = term(_batch(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 2]), policy))
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    torch.testing.assert_close(term.centres, torch.eye(2))  # (V + f)/2 with f = V: unchanged
    # both rows in cluster 0 (indices 0, 1): row 1 logits [2, 0] target 0, row 2 [0, 2] target 0
    # loss = (log(1 + e^-2) + log(1 + e^2)) / 2; V0 <- V0/4 + f1/4 + f2/2 = (.5, .5)
    loss = term(_batch(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), policy))
    assert float(loss) == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2, abs=1e-6)
    torch.testing.assert_close(term.centres, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))


def test_rebuild_after_refresh_outliers_and_gradients():
    policy = StubPolicy(BANK, torch.tensor([0, 0, 1, -1]))
    term = CentreContrastiveLoss()
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    loss = term(_batch(feats, torch.tensor([0, 2, 3]), policy))  # row 3 is an outlier: not in the loss
    loss.backward()
    assert feats.grad is not None and bool(feats.grad[:2].abs().sum() > 0)
    assert term.centres.shape == (2, 2)
    moved = term.centres.clone()
    term(_batch(feats.detach(), torch.tensor([0, 2, 3]), policy))
    assert not torch.equal(term.centres, moved)  # halving moved them
    policy._labels, policy.rounds = torch.tensor([0, 1, 2, 2]), 2  # a refresh: three clusters
    term(_batch(feats.detach()[:2], torch.tensor([0, 1]), policy))
    assert term.centres.shape == (3, 2) and int(term.built_round) == 2
    # no policy yet (source-only warm-up) or no clustered row: zero
    assert float(term(LossBatch(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), feats.detach(), torch.tensor([0]),
                                torch.tensor([-1]), policy=None))) == 0.0


def test_state_round_trip_and_registry():
    assert "centre_contrastive" in available_losses()
    terms = LossTerms({"centre_contrastive": {"weight": 0.5, "temperature": 0.1}})
    policy = StubPolicy(BANK, torch.tensor([0, 0, 1, 1]))
    terms(_batch(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), policy))
    fresh = LossTerms({"centre_contrastive": {"weight": 0.5, "temperature": 0.1}})
    fresh.load_state_dict(terms.state_dict())  # different buffer sizes before loading
    a, b = terms.terms["centre_contrastive"], fresh.terms["centre_contrastive"]
    for name in ("centres", "built_labels", "built_round", "bank_mean", "bank_std"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    with pytest.raises(ValueError, match="temperature"):
        CentreContrastiveLoss(temperature=0.0)
    with pytest.raises(ValueError, match="feature bank"):
        a(_batch(torch.ones(2, 2), torch.tensor([0, 1]), SimpleNamespace(labels=lambda: torch.tensor([0, 0]))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(rank)
    return torch.randn(3, 2, generator=g), torch.tensor([0, 1, 0]) if rank == 0 else torch.tensor([1, 2, 3])


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        term = CentreContrastiveLoss()
        feats, rows = _rank_batch(rank)
        term(_batch(feats, rows, StubPolicy(BANK, torch.tensor([0, 0, 1, 1]))))
        torch.save(term.centres, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: seconds of imports each
def test_two_processes_keep_one_table(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    c0, c1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(c0, c1)
    # = one process halving rank 0's clustered rows, then rank 1's (rank order), each with its own batch BN
    term = CentreContrastiveLoss()
    term.rebuild(BANK, torch.tensor([0, 0, 1, 1]), 1)
    f_r, y = [], []
    for rank in range(2):
        feats, rows = _rank_batch(rank)
        mean, std = feats.mean(0), (feats.var(0, unbiased=False) + 1e-5).sqrt()
        f_r.append(torch.relu((feats - mean) / std))
        y.append(torch.tensor([0, 0, 1, 1])[rows])
    expected = halving_update(term.centres, torch.cat(f_r), torch.cat(y))
    torch.testing.assert_close(c0, expected)
