"""Hybrid memory loss (HCD Eq. 1 / SpCL): target entries, the loss, the source momentum update."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from streamlabel.banks.hybrid_memory import HybridMemory, memory_entries
from streamlabel.methods import build_policy


def _normed(*rows: tuple[float, ...]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def _brute_entries(
    features: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: loop over the sorted cluster ids, then over the outliers in sample order."""
    entries, positive = [], torch.empty(len(labels), dtype=torch.long)
    for cluster in sorted({int(x) for x in labels if x >= 0}):
        members = [i for i in range(len(labels)) if int(labels[i]) == cluster]
        mean = sum(features[i].double() for i in members) / len(members)
        for i in members:
            positive[i] = len(entries)
        entries.append(mean / mean.norm())
    for i in range(len(labels)):
        if labels[i] < 0:
            positive[i] = len(entries)
            entries.append(features[i].double() / features[i].double().norm())
    return torch.stack(entries).float(), positive


def _naive_loss(
    memory: HybridMemory, fs, ys, ft, idx, entries, positive
) -> tuple[float, float, float]:
    """Reference: one sample at a time, log-sum-exp in float64."""
    bank = [memory.source_centres[k].double() for k in range(memory.num_source_classes)]
    bank += [entries[j].double() for j in range(entries.shape[0])]
    losses = []
    samples = [(f, int(y)) for f, y in zip(fs, ys, strict=True)]
    samples += [
        (f, memory.num_source_classes + int(positive[i])) for f, i in zip(ft, idx, strict=True)
    ]
    for f, pos in samples:
        f = f.double() / f.double().norm()
        logits = [float(f @ z) / memory.temperature for z in bank]
        top = max(logits)
        lse = top + math.log(sum(math.exp(x - top) for x in logits))
        losses.append(lse - logits[pos])
    ns = len(fs)
    return (
        sum(losses) / len(losses),
        sum(losses[:ns]) / max(ns, 1),
        sum(losses[ns:]) / max(len(losses) - ns, 1),
    )


# --------------------------------------------------------------------------------- memory_entries
def test_memory_entries_hand_example():
    feats = _normed((1, 0), (0, 1), (0.6, 0.8), (0, 1), (-1, 0))
    labels = torch.tensor([0, 1, -1, 0, -1])
    entries, positive = memory_entries(feats, labels)
    # cluster 0 = rows 0, 3: mean (0.5, 0.5); cluster 1 = row 1 -> (0, 1);
    # then the outliers in sample order: row 2 (0.6, 0.8) -> entry 2, row 4 (-1, 0) -> entry 3
    assert torch.allclose(entries, torch.tensor([[0.5, 0.5], [0, 1], [0.6, 0.8], [-1, 0]]), atol=1e-6)
    assert positive.tolist() == [0, 1, 2, 0, 3]
    # normalised: cluster 0 -> (1/sqrt2, 1/sqrt2), the rest unchanged
    entries, positive = memory_entries(feats, labels, centres="normalised")
    r = 1 / math.sqrt(2)
    assert torch.allclose(entries, torch.tensor([[r, r], [0, 1], [0.6, 0.8], [-1, 0]]), atol=1e-6)
    assert positive.tolist() == [0, 1, 2, 0, 3]


@pytest.mark.parametrize("seed", range(5))
def test_memory_entries_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n, d = 97, 16
    feats = F.normalize(torch.randn(n, d, generator=g), dim=1)
    labels = torch.randint(-3, 30, (n,), generator=g)  # several negative values, ids with gaps
    entries, positive = memory_entries(feats, labels, centres="normalised")
    ref_entries, ref_positive = _brute_entries(feats, labels)
    assert torch.equal(positive, ref_positive)
    assert torch.allclose(entries, ref_entries, atol=1e-6)
    assert torch.allclose(entries.norm(dim=1), torch.ones(len(entries)), atol=1e-5)
    # every clustered sample points at its own cluster, every outlier at its own row
    assert torch.allclose(entries[positive[labels < 0]], feats[labels < 0], atol=1e-6)


def test_memory_entries_degenerate_labelings():
    feats = F.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    # every sample an outlier: one instance entry each, in order
    entries, positive = memory_entries(feats, torch.full((6,), -1))
    assert torch.allclose(entries, feats) and positive.tolist() == list(range(6))
    # one giant cluster
    entries, positive = memory_entries(feats, torch.zeros(6, dtype=torch.long))
    assert entries.shape == (1, 3) and positive.tolist() == [0] * 6
    assert torch.allclose(entries[0], feats.mean(0))
    entries, _ = memory_entries(feats, torch.zeros(6, dtype=torch.long), centres="normalised")
    assert torch.allclose(entries[0], F.normalize(feats.mean(0), dim=0))
    # clusters of one: centre == own row
    entries, positive = memory_entries(feats, torch.tensor([3, 1, 0, 2, 5, 4]))
    assert torch.allclose(entries[positive], feats, atol=1e-6)
    # ids with a gap (no sample has label 1): dropped, not an empty zero entry
    entries, positive = memory_entries(feats, torch.tensor([0, 2, 2, -1, 0, 3]))
    assert entries.shape[0] == 3 + 1 and positive.tolist() == [0, 1, 1, 3, 0, 2]
    # a cluster whose rows cancel: zero centre, no NaN
    pair = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]])
    for mode in ("mean", "normalised"):
        entries, _ = memory_entries(pair, torch.tensor([0, 0]), centres=mode)
        assert torch.isfinite(entries).all() and entries.abs().sum() == 0
    # half-precision bank rows: float32 entries
    entries, _ = memory_entries(feats.half(), torch.tensor([0, 0, 1, -1, 1, -1]))
    assert entries.dtype == torch.float32 and torch.isfinite(entries).all()


# ---------------------------------------------------------------------------------------- loss
def test_loss_hand_computed():
    memory = HybridMemory(1, 2, temperature=1.0)
    memory.init_source(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))  # w_1 = (1, 0)
    entries = torch.tensor([[0.0, 1.0], [0.6, 0.8]])  # c_1 = (0, 1), c_2 = (0.6, 0.8)
    positive = torch.tensor([1, 0])  # target sample 0 -> c_2, sample 1 -> c_1
    out = memory.loss(torch.tensor([[3.0, 0.0]]), torch.tensor([0]),
                      torch.tensor([[0.0, 2.0]]), torch.tensor([0]), entries, positive)
    # source f = (1, 0): logits [w1, c1, c2] = [1, 0, 0.6]
    #   logsumexp = log(e^1 + e^0 + e^0.6) = log(5.540401) = 1.712067;
    #   loss = 1.712067 - 1 = 0.712067
    # target f = (0, 1): logits = [0, 1, 0.8], positive c_2 (index 1 + 1 = 2)
    #   logsumexp = log(1 + e^1 + e^0.8) = log(5.943823) = 1.782352;
    #   loss = 1.782352 - 0.8 = 0.982352
    # mean over the two samples = (0.712067 + 0.982352) / 2 = 0.847210
    assert out["source_loss"].item() == pytest.approx(0.712067, abs=1e-5)
    assert out["target_loss"].item() == pytest.approx(0.982352, abs=1e-5)
    assert out["loss"].item() == pytest.approx(0.847210, abs=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_loss_matches_naive_loop(seed):
    g = torch.Generator().manual_seed(seed)
    ns_classes, d, n = 7, 12, 50
    memory = HybridMemory(ns_classes, d)
    memory.init_source(torch.randn(40, d, generator=g), torch.arange(40) % ns_classes)
    bank = F.normalize(torch.randn(n, d, generator=g), dim=1)
    labels = torch.randint(-1, 6, (n,), generator=g)
    entries, positive = memory_entries(bank, labels)
    fs, ys = torch.randn(9, d, generator=g) * 3, torch.randint(0, ns_classes, (9,), generator=g)
    ft, idx = torch.randn(11, d, generator=g), torch.randint(0, n, (11,), generator=g)
    out = memory.loss(fs, ys, ft, idx, entries, positive)
    ref = _naive_loss(memory, fs, ys, ft, idx, entries, positive)
    for key, value in zip(("loss", "source_loss", "target_loss"), ref, strict=True):
        assert out[key].item() == pytest.approx(value, rel=1e-5, abs=1e-5)


def test_loss_unsupervised_mode():
    g = torch.Generator().manual_seed(3)
    memory = HybridMemory(0, 8)
    bank = F.normalize(torch.randn(30, 8, generator=g), dim=1)
    entries, positive = memory_entries(bank, torch.randint(-1, 4, (30,), generator=g))
    ft, idx = torch.randn(10, 8, generator=g), torch.arange(10)
    out = memory.loss(
        torch.zeros(0, 8), torch.zeros(0, dtype=torch.long), ft, idx, entries, positive
    )
    ref = _naive_loss(memory, [], [], ft, idx, entries, positive)
    assert out["loss"].item() == pytest.approx(ref[0], rel=1e-5)
    assert out["source_loss"].item() == 0.0 and out["target_loss"].item() == pytest.approx(
        ref[0], rel=1e-5
    )
    assert memory.loss(None, None, ft, idx, entries, positive)["loss"].item() == pytest.approx(
        ref[0], rel=1e-5
    )


def test_gradient_reaches_features_not_memory():
    g = torch.Generator().manual_seed(1)
    memory = HybridMemory(5, 6)
    assert list(memory.parameters()) == [] and "source_centres" in memory.state_dict()
    memory.init_source(torch.randn(20, 6, generator=g), torch.arange(20) % 5)
    bank = F.normalize(torch.randn(25, 6, generator=g), dim=1)
    entries, positive = memory_entries(bank, torch.randint(-1, 3, (25,), generator=g))
    entries.requires_grad_(True)  # even a caller's entries with grad get no gradient
    fs = torch.randn(4, 6, generator=g, requires_grad=True)
    ft = torch.randn(5, 6, generator=g, requires_grad=True)
    out = memory.loss(fs, torch.tensor([0, 1, 2, 2]), ft, torch.arange(5), entries, positive)
    out["loss"].backward()
    for grad in (fs.grad, ft.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert entries.grad is None
    assert not memory.source_centres.requires_grad and memory.source_centres.grad is None
    before = memory.source_centres.clone()
    # features with grad: still no autograd on the memory
    memory.update_source(fs, torch.tensor([0, 1, 2, 2]))
    assert not memory.source_centres.requires_grad and not torch.equal(
        before, memory.source_centres
    )


def test_loss_float32_under_autocast():
    g = torch.Generator().manual_seed(2)
    memory = HybridMemory(3, 8)
    memory.init_source(torch.randn(9, 8, generator=g), torch.arange(9) % 3)
    bank = F.normalize(torch.randn(12, 8, generator=g), dim=1)
    entries, positive = memory_entries(
        bank.bfloat16(), torch.tensor([0, 0, 1, 1, -1, 2, 2, -1, 0, 1, 2, -1])
    )
    fs, ft = torch.randn(3, 8, generator=g), torch.randn(4, 8, generator=g)
    args = (torch.tensor([0, 1, 2]), ft, torch.arange(4), entries, positive)
    plain = memory.loss(fs, *args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = memory.loss(fs.bfloat16(), args[0], ft.bfloat16(), *args[2:])
    assert mixed["loss"].dtype == torch.float32
    # only the bf16 rounding of the inputs differs, not of the logits (those would be ~1e-1 off at
    # tau = 0.05)
    assert mixed["loss"].item() == pytest.approx(plain["loss"].item(), abs=0.05)


def test_loss_degenerate_cases_finite():
    g = torch.Generator().manual_seed(4)
    d = 5
    bank = F.normalize(torch.randn(8, d, generator=g), dim=1)
    ft, idx = bank[:4] + 0.1 * torch.randn(4, d, generator=g), torch.arange(4)
    memory = HybridMemory(4, d)
    # class 3: no sample
    memory.init_source(torch.randn(6, d, generator=g), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(memory.source_centres[3], torch.zeros(d))
    # classes 2, 3 absent from the batch
    fs, ys = torch.randn(3, d, generator=g), torch.tensor([0, 0, 1])
    for labels in (torch.full((8,), -1), torch.zeros(8, dtype=torch.long), torch.arange(8)):
        entries, positive = memory_entries(bank, labels)
        out = memory.loss(fs, ys, ft.clone().requires_grad_(), idx, entries, positive)
        assert all(torch.isfinite(v) for v in out.values())
        out["loss"].backward()
    # one giant cluster and nothing else in the memory: the softmax has one entry, loss exactly 0
    entries, positive = memory_entries(bank, torch.zeros(8, dtype=torch.long))
    assert HybridMemory(0, d).loss(None, None, ft, idx, entries, positive)["loss"].item() == 0.0
    # zero feature vector: normalised to zero, logits 0, finite loss log(M)
    singles = memory_entries(bank, torch.arange(8))
    out = HybridMemory(0, d).loss(None, None, torch.zeros(1, d), torch.tensor([0]), *singles)
    assert out["loss"].item() == pytest.approx(math.log(8), rel=1e-6)
    with pytest.raises(ValueError, match="empty batch"):
        memory.loss(None, None, None, None, entries, positive)
    with pytest.raises(ValueError, match="source labels"):
        memory.loss(fs, torch.tensor([0, 4, 1]), None, None, entries, positive)


# ---------------------------------------------------------------------------------- source update
def test_update_source_momentum_by_hand():
    memory = HybridMemory(3, 2)  # m = 0.2 (weight on the old centre)
    memory.init_source(
        torch.tensor([[1.0, 0.0], [0.0, 5.0], [1.0, 1.0], [1.0, -1.0]]), torch.tensor([0, 1, 2, 2])
    )
    # class 2: mean of (1, 1)/sqrt2 and (1, -1)/sqrt2 = (1/sqrt2, 0) -> normalised (1, 0)
    assert torch.allclose(
        memory.source_centres, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    )
    memory.update_source(
        torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0], [0.0, 7.0]]), torch.tensor([0, 0, 1, 1])
    )
    # class 0: batch mean of normalised (0, 1), (0, 1) = (0, 1); 0.2*(1, 0) + 0.8*(0, 1) =
    # (0.2, 0.8)
    #          / sqrt(0.04 + 0.64) = / 0.824621 -> (0.242536, 0.970143)
    # class 1: batch mean of (1, 0), (0, 1) = (0.5, 0.5); 0.2*(0, 1) + 0.8*(0.5, 0.5) = (0.4, 0.6)
    #          / sqrt(0.16 + 0.36) = / 0.721110 -> (0.554700, 0.832050)
    # class 2: absent from the batch, unchanged (1, 0)
    expected = torch.tensor([[0.242536, 0.970143], [0.554700, 0.832050], [1.0, 0.0]])
    assert torch.allclose(memory.source_centres, expected, atol=1e-6)
    # one sample per class == SpCL's per-sample step
    memory.update_source(torch.tensor([[1.0, 0.0]]), torch.tensor([2]))
    assert torch.allclose(memory.source_centres[2], torch.tensor([1.0, 0.0]))
    memory.update_source(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))  # empty batch: no-op
    # a class with a zero centre (no sample at init) takes the batch direction
    fresh = HybridMemory(2, 2)
    fresh.init_source(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    fresh.update_source(torch.tensor([[0.0, 2.0]]), torch.tensor([1]))
    assert torch.allclose(fresh.source_centres[1], torch.tensor([0.0, 1.0]))


def test_mean_centres_by_hand():
    """``centres="mean"`` (SpCL / HCD): the plain mean of the unit rows, shorter than 1 for a loose
    cluster."""
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, -1.0]])
    entries, positive = memory_entries(feats, torch.tensor([0, 0, 1, -1]), centres="mean")
    # mean of 0/1, the single row, the outlier
    expected = torch.tensor([[0.5, 0.5], [0.6, 0.8], [0.0, -1.0]])
    torch.testing.assert_close(entries, expected)
    assert positive.tolist() == [0, 0, 1, 2]
    normalised, _ = memory_entries(feats, torch.tensor([0, 0, 1, -1]), centres="normalised")
    torch.testing.assert_close(normalised[0], torch.tensor([0.5, 0.5]) / 0.5**0.5)


# ------------------------------------------------------------------------------------ policy side
def _assert_fast_equals_default(policy) -> None:
    fast_entries, fast_positive = policy.memory_entries()
    slow_entries, slow_positive = memory_entries(policy.bank.features, policy.labels())
    assert torch.equal(fast_positive, slow_positive)
    assert torch.allclose(fast_entries, slow_entries, atol=1e-5)
    fast_unit, _ = policy.memory_entries(centres="normalised")
    slow_unit, _ = memory_entries(policy.bank.features, policy.labels(), centres="normalised")
    assert torch.allclose(fast_unit, slow_unit, atol=1e-5)
    labels = policy.labels()
    assert fast_entries.shape[0] == int(labels.max()) + 1 + int((labels < 0).sum())


@pytest.mark.parametrize("singletons_as_outliers", [True, False])
def test_hcd_fast_entries_equal_default_on_a_set_hierarchy(singletons_as_outliers):
    """Label bank with sparse ids, singletons and big clusters; sums then moved incrementally by
    steps."""
    n, d = 40, 8
    g = torch.Generator().manual_seed(7)
    feats = F.normalize(torch.randn(n, d, generator=g), dim=1)
    # samples 0..37 in sparse ids < 30 at every level (each level a function of the one below:
    # nesting holds); samples 38 and 39 own ids 38 and 39 at every level: top-level singletons
    level0 = torch.cat([torch.randint(0, 30, (n - 2,), generator=g), torch.tensor([38, 39])])
    level1 = torch.cat(
        [torch.randint(0, 30, (n,), generator=g)[:30] // 3 * 3, torch.arange(30, n)]
    )[level0]
    top = torch.where(level1 < 30, level1 // 2, level1)
    policy = build_policy("hcd", num_samples=n, feat_dim=d, refresh_every=1, num_levels=3,
                          singletons_as_outliers=singletons_as_outliers)
    policy.bank.initialize(feats)
    policy.label_bank.assign(torch.stack([level0, level1, top]), policy.bank.features)
    policy.initialized = True
    _assert_fast_equals_default(policy)
    # offline-mode steps: features move, the top-level sums follow incrementally
    for _ in range(3):
        idx = torch.randperm(n, generator=g)[:12]
        policy.step(idx, torch.randn(12, d, generator=g))
    _assert_fast_equals_default(policy)
    if singletons_as_outliers:
        assert (policy.labels() < 0).sum() >= 2


@pytest.mark.parametrize(
    # edge_share 2 (the most): the lone points stay outliers instead of joining their nearest blob
    "preset", [{"dynamics": "tracking", "edge_share": 2.0}, {"dynamics": "paper", "init_rounds": 1}]
)
def test_hcd_fast_entries_equal_default_online(preset):
    g = torch.Generator().manual_seed(0)
    means = F.normalize(torch.randn(5, 16, generator=g), dim=1)
    blobs = means.repeat_interleave(8, 0) + 0.03 * torch.randn(40, 16, generator=g)
    feats = F.normalize(torch.cat([blobs, torch.randn(6, 16, generator=g)]), dim=1)
    policy = build_policy("hcd", num_samples=46, feat_dim=16, k=6, **preset)
    policy.initialize(feats)
    idx = torch.randperm(46, generator=g)[:12]
    policy.step(idx, feats[idx] + 0.01 * torch.randn(12, 16, generator=g))
    labels = policy.labels()
    # clusters and instance entries both exercised
    assert (labels < 0).any() and int(labels.max()) >= 2
    _assert_fast_equals_default(policy)


def test_policy_without_bank_has_no_default_entries():
    from streamlabel.methods.base import BankUpdatePolicy

    class NoBank(BankUpdatePolicy):
        def initialize(self, features, cameras=None): ...
        def step(self, indices, features, cameras=None): ...
        def labels(self, level=-1): return torch.zeros(self.num_samples, dtype=torch.long)
        def state_dict(self): return {}
        def load_state_dict(self, state): ...

    with pytest.raises(NotImplementedError, match="no feature bank"):
        NoBank(4, 2).memory_entries()
