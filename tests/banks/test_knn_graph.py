"""KnnGraph (banks/knn_graph.py): exact rebuild, incremental refresh of moved / dead units,
state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.banks.knn_graph import KnnGraph
from tests.helpers.features import brute_topk_sims, unit_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def _check_lists_consistent(graph: KnnGraph, centres: torch.Tensor, alive: torch.Tensor) -> None:
    """Every stored entry: a live other unit, its true similarity, lists sorted, no repeats."""
    for row in alive.nonzero().flatten().tolist():
        ids = graph.idx[row]
        real = ids[ids >= 0]
        assert row not in real.tolist() and bool(alive[real].all())
        assert len(set(real.tolist())) == real.numel()
        sims = graph.sims[row, : real.numel()]
        torch.testing.assert_close(sims, centres[real] @ centres[row], atol=1e-5, rtol=0)
        assert bool((sims[:-1] >= sims[1:]).all())
        assert (ids[real.numel() :] == -1).all()
    assert (graph.idx[~alive] == -1).all()


def _check_exact(
    graph: KnnGraph, rows: torch.Tensor, centres: torch.Tensor, alive: torch.Tensor
) -> None:
    sims = centres[rows] @ centres.t()
    sims[:, ~alive] = float("-inf")
    sims[torch.arange(rows.numel()), rows] = float("-inf")
    ref = torch.topk(sims, graph.k, dim=1).values
    torch.testing.assert_close(graph.sims[rows, : graph.k], ref, atol=1e-5, rtol=0)


def test_rebuild_is_exact():
    centres = unit_rows(80, 8, seed=1)
    alive = torch.ones(80, dtype=torch.bool)
    graph = KnnGraph(80, 5, slack=3, block_size=16)
    graph.rebuild(centres, alive)
    rows = torch.arange(80)
    torch.testing.assert_close(
        graph.sims, brute_topk_sims(centres, centres, 8, exclude=rows), atol=1e-5, rtol=0
    )
    assert graph.neighbors(rows).shape == (80, 5) and graph.neighbors(rows, 2).shape == (80, 2)


def test_refresh_moved_rows_exact_and_lists_consistent():
    g = torch.Generator().manual_seed(0)
    centres = unit_rows(100, 8, seed=2)
    alive = torch.ones(100, dtype=torch.bool)
    graph = KnnGraph(100, 5, slack=4)
    graph.rebuild(centres, alive)
    for _ in range(6):
        rows = torch.randperm(100, generator=g)[:10]
        centres = centres.clone()
        centres[rows] = F.normalize(centres[rows] + 0.5 * torch.randn(10, 8, generator=g), dim=1)
        graph.refresh(rows, centres, alive)
        _check_exact(graph, rows, centres, alive)
        _check_lists_consistent(graph, centres, alive)


def test_refresh_with_dying_and_born_units():
    centres = unit_rows(60, 6, seed=3)
    alive = torch.ones(60, dtype=torch.bool)
    alive[50:] = False
    graph = KnnGraph(60, 4, slack=2)
    graph.rebuild(centres, alive)
    _check_lists_consistent(graph, centres, alive)
    # units 3 and 7 die, unit 55 is born
    alive = alive.clone()
    alive[[3, 7]] = False
    alive[55] = True
    graph.refresh(torch.tensor([3, 7, 55]), centres, alive)
    assert not torch.isin(graph.idx, torch.tensor([3, 7])).any()
    _check_exact(graph, torch.tensor([55]), centres, alive)
    _check_lists_consistent(graph, centres, alive)


def test_many_changed_rows_fall_back_to_exact_rebuild():
    centres = unit_rows(40, 6, seed=4)
    alive = torch.ones(40, dtype=torch.bool)
    graph = KnnGraph(40, 3, slack=2)
    graph.rebuild(centres, alive)
    centres = unit_rows(40, 6, seed=5)  # everything moved
    graph.refresh(torch.arange(20), centres, alive)
    _check_exact(graph, torch.arange(40), centres, alive)


def test_state_dict_round_trip_and_mismatch():
    centres = unit_rows(20, 4, seed=6)
    graph = KnnGraph(20, 3)
    graph.rebuild(centres, torch.ones(20, dtype=torch.bool))
    other = KnnGraph(20, 3)
    other.load_state_dict(graph.state_dict())
    assert torch.equal(other.idx, graph.idx) and torch.equal(other.sims, graph.sims)
    with pytest.raises(ValueError, match="mismatch"):
        KnnGraph(20, 4).load_state_dict(graph.state_dict())


def _reference_refresh(
    graph: KnnGraph, rows: torch.Tensor, centres: torch.Tensor, alive: torch.Tensor
):
    """What refresh must give every unit not in ``rows``: the top ``width`` of its old entries that
    are not in ``rows`` and every alive moved unit at its new similarity (the documented
    semantics), as {unit: {id: sim}}."""
    moved = rows[alive[rows]]
    expected = {}
    for unit in (
        (alive & ~torch.isin(torch.arange(graph.capacity), rows)).nonzero().flatten().tolist()
    ):
        old = {int(i): float(s) for i, s in zip(graph.idx[unit], graph.sims[unit], strict=True)
               if i >= 0 and int(i) not in rows.tolist()}
        old.update(
            {int(m): float(centres[m] @ centres[unit]) for m in moved.tolist() if m != unit}
        )
        best = sorted(old.items(), key=lambda item: -item[1])[: graph.width]
        expected[unit] = dict(best)
    return expected


@pytest.mark.parametrize("alive_fraction", [1.0, 0.3])
def test_refresh_matches_reference_semantics(alive_fraction):
    """Moves, deaths and births over several refreshes, compacted (few alive) and not: every list
    equals the top width of (old entries, moved units at their new similarity) and the moved units'
    lists are exact."""
    g = torch.Generator().manual_seed(7)
    n = 120
    centres = unit_rows(n, 6, seed=8)
    alive = torch.rand(n, generator=g) < alive_fraction
    graph = KnnGraph(n, 4, slack=3)
    graph.rebuild(centres, alive)
    for _ in range(8):
        alive_ids = alive.nonzero().flatten()
        moved = alive_ids[torch.randperm(alive_ids.numel(), generator=g)[:5]]
        centres = centres.clone()
        centres[moved] = F.normalize(centres[moved] + 0.6 * torch.randn(5, 6, generator=g), dim=1)
        alive = alive.clone()
        died, born = moved[:1], (~alive).nonzero().flatten()[:1]
        alive[died] = False
        alive[born] = True
        rows = torch.cat([moved, born])
        expected = _reference_refresh(graph, rows, centres, alive)
        graph.refresh(rows, centres, alive)
        for unit, best in expected.items():
            got = {
                int(i): float(s)
                for i, s in zip(graph.idx[unit], graph.sims[unit], strict=True)
                if i >= 0
            }
            assert set(got) == set(best), f"unit {unit}"
            torch.testing.assert_close(
                torch.tensor([got[i] for i in best]), torch.tensor(list(best.values()))
            )
        _check_exact(graph, rows[alive[rows]], centres, alive)
        _check_lists_consistent(graph, centres, alive)


def test_refresh_with_norms_equals_normalised_centres():
    """Un-normalised rows plus their norms give the same lists as the normalised rows."""
    g = torch.Generator().manual_seed(9)
    sums = torch.randn(90, 5, generator=g) * torch.rand(90, 1, generator=g) * 10
    alive = torch.ones(90, dtype=torch.bool)
    alive[::4] = False
    sums[~alive] = 0.0
    plain, scaled = KnnGraph(90, 4, slack=2), KnnGraph(90, 4, slack=2)
    plain.rebuild(F.normalize(sums, dim=1), alive)
    scaled.rebuild(F.normalize(sums, dim=1), alive)
    rows = torch.tensor([1, 2, 5, 9])
    sums[rows] += torch.randn(4, 5, generator=g)
    plain.refresh(rows, F.normalize(sums, dim=1), alive)
    scaled.refresh(rows, sums, alive, norms=sums.norm(dim=1))
    assert torch.equal(plain.idx, scaled.idx)
    torch.testing.assert_close(plain.sims, scaled.sims)


def test_refresh_with_deaths_only_compacts_the_lists():
    """Units that only die: entries pointing at them go, and every list stays sorted with no hole
    before its last entry (``neighbors(rows, k)`` reads the first k)."""
    centres = unit_rows(50, 5, seed=10)
    alive = torch.ones(50, dtype=torch.bool)
    graph = KnnGraph(50, 4, slack=3)
    graph.rebuild(centres, alive)
    alive = alive.clone()
    dead = graph.idx[0, :3].clone()  # the three nearest neighbours of unit 0 die
    alive[dead] = False
    graph.refresh(dead, centres, alive)
    assert not torch.isin(graph.idx, dead).any()
    _check_lists_consistent(graph, centres, alive)
    assert (graph.idx[0, : graph.width - 3] >= 0).all()
