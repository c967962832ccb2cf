"""benchmarks/mutants.py stays runnable: every mutant's text is in its file exactly once and names tests
that exist (a refactor that moves the code must move the mutant too)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from mutants import MUTANTS, stale  # noqa: E402


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_applies(mutant):
    assert not stale(mutant), f"{mutant.name}: its text is not in {mutant.path} exactly once"
    assert mutant.old != mutant.new
    for test in mutant.tests:
        assert (REPO / test).is_file(), test
