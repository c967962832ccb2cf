"""The tracking dynamics of the hcd policy (methods/hcd_tracking.py) on cases small enough to check
by hand: a component made of two groups splits at the default k, one identity's clusters merge and
two identities' do not whatever the neighbourhood, a moved sample relabels in one step, and the
online labels are those of a fresh initialize on the same bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.methods import build_policy
from streamlabel.methods.label_propagation import propagate

pytestmark = pytest.mark.usefixtures("single_thread")

WITHIN = 0.94  # cosine of two samples of one group
# the nearest-centre merge these cases were built for (the edge-share merge: tests/methods/test_edge_merge.py)
CENTROID = {"merge": "centroid", "num_levels": 3}


def from_gram(gram: torch.Tensor) -> torch.Tensor:
    """Unit rows whose pairwise cosines are exactly ``gram`` (positive definite, unit diagonal)."""
    return torch.linalg.cholesky(gram.double()).float()


class Bank:
    """Features built group by group in orthogonal directions, so every cosine is known by
    construction.

    A group is ``size`` samples around a unit centre c: x = normalize(c + e s) with private
    orthonormal noise directions s and e^2 = 1/WITHIN - 1, so two samples of a group have cosine
    WITHIN and two samples of groups whose centres have cosine r have cosine r * WITHIN.
    """

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.used = 0
        self.rows: list[torch.Tensor] = []
        self.group_of: list[int] = []

    def direction(self) -> torch.Tensor:
        out = torch.zeros(self.dim)
        out[self.used] = 1.0
        self.used += 1
        return out

    def group(self, centre: torch.Tensor, size: int = 4) -> int:
        noise = (1.0 / WITHIN - 1.0) ** 0.5
        gid = max(self.group_of, default=-1) + 1
        for _ in range(size):
            self.rows.append(F.normalize(centre + noise * self.direction(), dim=0))
            self.group_of.append(gid)
        return gid

    def background(self, groups: int, centre_cos: float, seed: int = 0) -> None:
        """``groups`` identities whose centres have cosine ``centre_cos`` (+-0.01, so there are no
        exact ties) to each other: a dense, re-ID-like space where every sample's k-th neighbour (k
        > group size) is at about centre_cos * WITHIN, the calibrated floor."""
        common = self.direction()
        shared = torch.stack([self.direction() for _ in range(8)])
        jitter = 0.05 * F.normalize(
            torch.randn(groups, 8, generator=torch.Generator().manual_seed(seed)), dim=1
        )
        for i in range(groups):
            centre = (
                centre_cos**0.5 * common
                + (1 - centre_cos) ** 0.5 * self.direction()
                + jitter[i] @ shared
            )
            self.group(F.normalize(centre, dim=0))

    def pair(self, centre_cos: float) -> tuple[int, int]:
        """Two groups whose centres have cosine ``centre_cos``, orthogonal to everything else."""
        base, other = self.direction(), self.direction()
        return (self.group(base),
                self.group(centre_cos * base + (1 - centre_cos**2) ** 0.5 * other))

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack(self.rows), torch.tensor(self.group_of)


def same_cluster(labels: torch.Tensor, groups: torch.Tensor, a: int, b: int) -> bool:
    la, lb = labels[groups == a], labels[groups == b]
    return bool((la >= 0).all()) and bool((la.unsqueeze(1) == lb.unsqueeze(0)).all())


# ------------------------------------------------------------------------------------------- split
def two_linked_groups() -> torch.Tensor:
    """Samples a0 a1 a2 | b0 b1 b2: cosine 0.94 inside a group; across, a_i-b_i 0.68 / 0.67 / 0.66,
    else 0.65. Each sample's 3 nearest are its 2 group mates and its b_i / a_i partner, so all six
    form one mutual 3-NN component."""
    gram = torch.full((6, 6), 0.65)
    gram[:3, :3] = WITHIN
    gram[3:, 3:] = WITHIN
    for i, cross in enumerate((0.68, 0.67, 0.66)):
        gram[i, 3 + i] = gram[3 + i, i] = cross
    gram.fill_diagonal_(1.0)
    return from_gram(gram)


def test_a_component_of_two_groups_splits_at_default_k():
    feats = two_linked_groups()
    # defaults: k = 30, link_k = 3, split_gap = 2
    policy = build_policy("hcd", num_samples=6, feat_dim=6)
    policy.initialize(feats)
    assert policy.rules.components.tolist() == [0] * 6  # one linked component
    # by hand: nearest-neighbour distance 0.06 everywhere -> gap 2 x 0.06 = 0.12. Density rho = 1 +
    # sum of the mutual-edge cosines = 1 + 2 x 0.94 + cross: a0 = b0 = 3.56 (a0 first by index), a1
    # = b1 = 3.55, 3.54. delta(b0) = 1 - 0.68 = 0.32 >= 0.12 (its only denser unit is a0); every
    # other delta is 1 - 0.94 = 0.06.
    assert policy.rules.min_gap == pytest.approx(0.12, abs=1e-5)
    level0 = policy.labels(level=0)
    assert (
        level0[:3].unique().numel() == 1
        and level0[3:].unique().numel() == 1
        and level0[0] != level0[3]
    )
    # the assignment is the argmax of P* = (I - 0.99 S)^-1 Y0 over the two anchors a0, b0 (Eq. 2,
    # 4)
    sims = feats @ feats.t()
    links = torch.zeros(6, 6, dtype=torch.bool)
    for i in range(6):
        links[i, torch.topk(sims[i] - 2 * torch.eye(6)[i], 3).indices] = True
    affinity = torch.where(links & links.t(), sims, torch.zeros(()))
    degree = affinity.sum(1)
    spread = propagate(
        affinity / torch.sqrt(degree[:, None] * degree[None]), torch.eye(6)[:, [0, 3]], 0.99
    )
    assert spread.argmax(1).tolist() == [0, 0, 0, 1, 1, 1]


def test_a_cluster_that_now_holds_two_groups_splits_while_streaming():
    bank = Bank()
    bank.background(40, 0.8)
    a, b = bank.pair(0.99)  # at first one identity: all eight samples in one top-level cluster
    feats, groups = bank.features()
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], **CENTROID)
    policy.initialize(feats)
    assert same_cluster(policy.labels(), groups, a, b)
    # group b moves away to centre cosine 0.7 (sample cosine 0.66 across, 0.94 inside): below the
    # floor
    rows = (groups == b).nonzero().flatten()
    centre_a = F.normalize(feats[groups == a].sum(0), dim=0)
    target = F.normalize(0.7 * centre_a + (1 - 0.7**2) ** 0.5 * bank.direction(), dim=0)
    moved = F.normalize(target.unsqueeze(0) + (1 / WITHIN - 1) ** 0.5 * torch.stack(
        [bank.direction() for _ in range(rows.numel())]), dim=1)
    for _ in range(3):  # momentum 0.2: three updates bring the rows within 1% of the new features
        policy.step(rows, moved)
    assert policy.rules.floor == pytest.approx(0.8 * WITHIN, abs=0.02)
    for level in range(policy.num_levels):
        assert not same_cluster(policy.labels(level), groups, a, b), level


# ------------------------------------------------------------------------------------------- merge
@pytest.mark.parametrize("neighbours", [0, 8, 30])
def test_one_identity_merges_two_do_not_whatever_the_neighbourhood(neighbours):
    bank = Bank()
    bank.background(60, 0.8)  # calibrated floor: about 0.8 x 0.94 = 0.752
    # two clusters of one identity: centre cosine 0.9 / (1 + e^2 / 4) = 0.886
    same = bank.pair(0.9)
    different = bank.pair(0.6)  # two identities: centre cosine 0.59
    for _ in range(neighbours):  # other clusters around, less similar to each than the pair itself
        bank.group(F.normalize(bank.direction(), dim=0), size=2)
    feats, groups = bank.features()
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], **CENTROID)
    policy.initialize(feats)
    assert policy.rules.floor == pytest.approx(0.8 * WITHIN, abs=0.02)
    top = policy.labels()
    assert same_cluster(top, groups, *same)
    assert not same_cluster(top, groups, *different)


def test_clusters_sharing_a_camera_do_not_merge_above_cross_camera_from():
    bank = Bank()
    bank.background(40, 0.8)
    g1, g2 = bank.pair(0.95)  # both seen by camera 0, very similar
    base = F.normalize(sum(bank.rows[-8:-4]), dim=0)  # centre of g1
    # camera 1
    g3 = bank.group(F.normalize(0.9 * base + (1 - 0.9**2) ** 0.5 * bank.direction(), dim=0))
    feats, groups = bank.features()
    cams = torch.where(groups == g3, 1, 0)
    cams[groups < g1] = torch.arange(int((groups < g1).sum())) % 2
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], num_levels=2, merge="centroid",
                          cross_camera_from=1)
    policy.initialize(feats, cams)
    top = policy.labels()
    assert not same_cluster(top, groups, g1, g2)  # nearest pair, but one camera
    assert same_cluster(top, groups, g1, g3)  # the nearest cluster seen by another camera
    without = build_policy(
        "hcd",
        num_samples=feats.shape[0],
        feat_dim=feats.shape[1],
        num_levels=2,
        merge="centroid",
        cross_camera_from=1,
    )
    without.initialize(feats)  # no cameras: the nearest pair merges
    assert same_cluster(without.labels(), groups, g1, g2)


# ------------------------------------------------------------------------------------------ online
def test_a_moved_sample_relabels_in_one_step():
    bank = Bank()
    bank.background(40, 0.8)
    a, b = bank.pair(0.3)
    feats, groups = bank.features()
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], **CENTROID)
    policy.initialize(feats)
    row = int((groups == a).nonzero()[0])
    target = F.normalize(feats[groups == b].sum(0), dim=0)
    policy.step(torch.tensor([row]), target.unsqueeze(0))  # one step: 0.2 old + 0.8 new
    for level in range(policy.num_levels):
        labels = policy.labels(level)
        others_a = labels[(groups == a) & (torch.arange(len(groups)) != row)]
        assert bool((labels[groups == b] == labels[row]).all()), level
        assert not bool((others_a == labels[row]).any()), level


def _stream_steps(policy, feats, groups, seed: int, steps: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randperm(feats.shape[0], generator=g)[:24]
        # half the rows keep their place (small noise), half jump onto another group's sample
        jump = torch.rand(rows.numel(), generator=g) < 0.5
        other = torch.randint(0, feats.shape[0], (rows.numel(),), generator=g)
        target = torch.where(jump.unsqueeze(1), feats[other], feats[rows])
        policy.step(
            rows, F.normalize(target + 0.02 * torch.randn(target.shape, generator=g), dim=1)
        )


def _paired_bank() -> tuple[torch.Tensor, torch.Tensor]:
    bank = Bank(dim=256)
    bank.background(30, 0.8)
    for cos in (0.9, 0.85, 0.6, 0.3):
        bank.pair(cos)
    return bank.features()


@pytest.mark.parametrize("merge", ["edges", "centroid"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_labels_are_those_of_a_fresh_initialize_on_the_same_bank(seed, merge):
    feats, groups = _paired_bank()
    n = feats.shape[0]
    cams = torch.arange(n) % 2
    # complete lists (slack >= N) and (centroid) a fixed floor: nothing is left to the lists' slack or a
    # drifting statistic
    params = {"knn_slack": n, **({"merge_floor": 0.7, **CENTROID} if merge == "centroid" else {})}
    policy = build_policy("hcd", num_samples=n, feat_dim=feats.shape[1], **params)
    policy.initialize(feats, cams)
    _stream_steps(policy, feats, groups, seed, steps=6)
    policy.epoch_end(0)
    fresh = build_policy("hcd", num_samples=n, feat_dim=feats.shape[1], **params)
    fresh.initialize(policy.bank.features.clone(), cams)
    # cluster ids are smallest members
    assert torch.equal(policy.label_bank.labels, fresh.label_bank.labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_merge_labels_after_steps_alone_are_those_of_a_fresh_initialize(seed):
    """No epoch_end between the stream and the check: ``step`` itself re-derives every level (the camera
    means, which only initialize and epoch_end take, are left out: camera_centring false)."""
    feats, groups = _paired_bank()
    n = feats.shape[0]
    cams = torch.arange(n) % 2
    params = {"camera_centring": False}  # default list slack: the repair of doubtful lists is exercised
    policy = build_policy("hcd", num_samples=n, feat_dim=feats.shape[1], **params)
    policy.initialize(feats, cams)
    before = policy.label_bank.labels.clone()
    _stream_steps(policy, feats, groups, seed, steps=6)
    fresh = build_policy("hcd", num_samples=n, feat_dim=feats.shape[1], **params)
    fresh.initialize(policy.bank.features.clone(), cams)
    assert not torch.equal(before, fresh.label_bank.labels)  # the stream changed the partition
    assert torch.equal(policy.label_bank.labels, fresh.label_bank.labels)


def test_streaming_the_same_features_changes_no_label():
    bank = Bank()
    bank.background(30, 0.8)
    bank.pair(0.9)
    bank.pair(0.6)
    feats, _ = bank.features()
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], **CENTROID)
    policy.initialize(feats)
    before = policy.label_bank.labels.clone()
    order = torch.randperm(feats.shape[0], generator=torch.Generator().manual_seed(0))
    for rows in order.split(16):
        policy.step(rows, feats[rows])
    policy.epoch_end(0)
    assert torch.equal(policy.label_bank.labels, before)


def test_merge_only_never_separates():
    bank = Bank()
    bank.background(30, 0.8)
    a, b = bank.pair(0.3)
    feats, groups = bank.features()
    policy = build_policy(
        "hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], merge_only=True
    )
    policy.initialize(feats)
    row = int((groups == a).nonzero()[0])
    policy.step(torch.tensor([row]), F.normalize(feats[groups == b].sum(0), dim=0).unsqueeze(0))
    labels = policy.labels(0)
    assert bool((labels[groups == a] == labels[row]).all())  # still with its old group...
    assert bool((labels[groups == b] == labels[row]).all())  # ...and now with the new one too


# ------------------------------------------------------------------------------ tagged k-NN lists
def test_units_sharing_a_tag_never_list_each_other():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(40, 8, generator=g), dim=1)
    tags = torch.ones(40, dtype=torch.long) << (torch.arange(40) % 3)
    tags[::7] |= 0b110  # some units carry two tags
    graph = KnnGraph(40, 4, slack=2)
    graph.tags = tags
    alive = torch.ones(40, dtype=torch.bool)
    graph.rebuild(centres, alive)

    def check():
        listed = graph.idx >= 0
        shared = (tags.unsqueeze(1) & tags[graph.idx.clamp_min(0)]) != 0
        assert not bool((listed & shared).any())
        eligible = (tags.unsqueeze(1) & tags.unsqueeze(0)) == 0
        sims = torch.where(eligible, centres @ centres.t(), torch.tensor(float("-inf")))
        best = sims.max(1).values
        # the first entry is the nearest eligible unit
        assert torch.allclose(graph.sims[:, 0], best)

    check()
    moved = torch.tensor([1, 5, 22])
    centres[moved] = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    graph.refresh(moved, centres, alive)
    check()


def test_kth_similarity_is_tracked_for_short_and_long_lists():
    feats = F.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    graph = KnnGraph(12, 2, slack=1, kth=30)  # k-th deeper than the lists and than N - 1
    graph.rebuild(feats, torch.ones(12, dtype=torch.bool))
    sims = feats @ feats.t()
    sims.fill_diagonal_(float("-inf"))
    expected = sims.sort(dim=1, descending=True).values[:, 10]  # the last (11th) neighbour
    assert torch.allclose(graph.kth_sims, expected)
    assert graph.idx.shape[1] == 3
    np.testing.assert_allclose(
        graph.sims.numpy(), sims.sort(dim=1, descending=True).values[:, :3].numpy(), atol=1e-6
    )


def _co_membership(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """[L, m, m] same-cluster matrix of the samples ``keep`` at every level."""
    sub = labels[:, keep]
    return sub.unsqueeze(2) == sub.unsqueeze(1)


def _list_changes(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Samples whose list changed, and every sample that entered or left one of those lists."""
    out = set()
    for i in (before != after).any(dim=1).nonzero().flatten().tolist():
        old, new = set(before[i].tolist()), set(after[i].tolist())
        out |= {i} | (old ^ new)
    out.discard(-1)
    return torch.tensor(sorted(out), dtype=torch.long)


@pytest.mark.parametrize("merge", ["edges", "centroid"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_step_changes_co_membership_only_around_what_it_touched(seed, merge):
    """Locality: a step moves two rows; only clusters (before or after, any level) that hold a moved row or a
    sample whose neighbour lists gained or lost an entry may change their co-memberships. Everything else
    keeps its partition exactly, step after step (no epoch_end). Re-deriving every component inside step
    would still pass (the rules are a function of the lists and rows, the region is an optimisation); what
    fails is a decision far away that moves with a global statistic of the bank."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.arange(80).repeat_interleave(4)
    centres = F.normalize(torch.randn(80, 32, generator=g), dim=1)
    feats = F.normalize(centres[ids] + 0.08 * torch.randn(ids.numel(), 32, generator=g), dim=1)
    n = feats.shape[0]
    cams = torch.arange(n) % 2
    policy = build_policy("hcd", num_samples=n, feat_dim=feats.shape[1], merge=merge)
    policy.initialize(feats, cams)
    outside_seen = 0
    for _ in range(6):
        rows = torch.randperm(n, generator=g)[:2]
        target = feats[torch.randint(0, n, (rows.numel(),), generator=g)]  # each row jumps onto another sample
        lists_before = [graph.idx.clone() for graph in policy.graphs[:2]]
        labels_before = policy.label_bank.labels.clone()
        policy.step(rows, F.normalize(target + 0.02 * torch.randn(target.shape, generator=g), dim=1))
        labels_after = policy.label_bank.labels
        changed = torch.zeros(n, dtype=torch.bool)
        changed[rows] = True
        for before, graph in zip(lists_before, policy.graphs[:2], strict=True):
            changed[_list_changes(before, graph.idx)] = True
        allowed = changed.clone()
        for labels in (labels_before, labels_after):
            for level in range(labels.shape[0]):
                hit = torch.zeros(n, dtype=torch.bool)
                hit[labels[level, changed]] = True
                allowed |= hit[labels[level]]
        outside = (~allowed).nonzero().flatten()
        outside_seen += outside.numel()
        assert torch.equal(_co_membership(labels_before, outside), _co_membership(labels_after, outside))
    assert outside_seen > 6 * n // 5  # a fair share of the bank stays outside what a step touches: the check bites


def test_the_merge_floor_follows_the_bank_within_steps():
    """merge: centroid calibrates its floor on the bank's k-th similarities at every step (no epoch_end): a
    row's k-th similarity is exact when the row last moved, so after the whole bank moved the floor has moved
    toward that of a fresh initialize on the moved bank; epoch_end renews every k-th similarity and the floor
    equals the fresh one. Kills a floor frozen at its first value, and k-th similarities never renewed."""
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(8).repeat_interleave(40)  # identities larger than k = 30: the k-th neighbour is a mate
    centres = F.normalize(torch.randn(8, 32, generator=g), dim=1)
    loose = F.normalize(centres[ids] + 0.5 * torch.randn(ids.numel(), 32, generator=g), dim=1)
    tight = F.normalize(centres[ids] + 0.1 * torch.randn(ids.numel(), 32, generator=g), dim=1)
    params = {**CENTROID, "momentum": 0.0}
    policy = build_policy("hcd", num_samples=ids.numel(), feat_dim=32, **params)
    policy.initialize(loose)
    first = policy.rules.floor
    for rows in torch.randperm(ids.numel(), generator=g).split(32):
        policy.step(rows, tight[rows])
    fresh = build_policy("hcd", num_samples=ids.numel(), feat_dim=32, **params)
    fresh.initialize(policy.bank.features.clone())
    assert fresh.rules.floor - first > 0.3  # the bank's k-th similarities really moved
    assert first + 0.1 < policy.rules.floor < fresh.rules.floor  # followed within the steps, staleness bounded
    policy.epoch_end(0)
    assert policy.rules.floor == pytest.approx(fresh.rules.floor, abs=1e-6)
