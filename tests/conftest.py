"""Fixtures shared by every test folder.

``single_thread``: the engine tests work on tiny tensors, where one intra-op thread avoids thread
contention overhead (10-20x faster on a busy 2-core machine). Opt in per module with
``pytestmark = pytest.mark.usefixtures("single_thread")``; the thread count is restored after each test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
