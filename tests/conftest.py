"""Suite-wide guards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Each test starts with the process's torch thread count.

    Float sums depend on how many threads split them, so a test that compares an in-process run
    with a subprocess run (same seed) needs both at the default count; some code under test sets
    the count for its own process (an Ape-X actor: one thread) and would leak it into the
    next test on the same xdist worker.
    """
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
