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
