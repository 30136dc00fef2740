"""Shared fixtures for the skdqn tests (kept minimal)."""

import pytest

from skdqn import _search


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny scan blocks, so that small problems cross many block boundaries.

    The scan reads ``_DB_BLOCK`` and ``_QUERY_BLOCK`` at call time; with 16
    database items and 8 queries per block, a database of a few hundred items
    exercises the running-threshold merges and the query-block stitching that
    only happen on large data with the default sizes.
    """
    monkeypatch.setattr(_search, "_DB_BLOCK", 16)
    monkeypatch.setattr(_search, "_QUERY_BLOCK", 8)


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Train the tests' tiny networks on one thread.

    Their matrices are far too small for intra-op parallelism to pay; with
    two threads on a busy 2-core machine, OpenMP spinning made each fit
    several times slower in CPU time. Results do not depend on it.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
