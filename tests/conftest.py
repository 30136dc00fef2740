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


# ------------------------------------------------ digits and a small CNN (DeepQuantizer tests)
import numpy as np  # noqa: E402 - appended section: fixtures shared by the DeepQuantizer tests
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def _split_digits(X, y):
    """Stratified 3:1 database/query split, standardized on the database; float32."""
    X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_db)
    return scaler.transform(X_db).astype(np.float32), scaler.transform(X_q).astype(np.float32), y_db, y_q


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's digits as ``(X_db, X_q, y_db, y_q)``: 1347 database items, 450 queries.

    A test module may override it (e.g. with :func:`digits_with_blank_rows`);
    :func:`small` then slices the module's version.
    """
    X, y = load_digits(return_X_y=True)
    return _split_digits(X, y)


@pytest.fixture(scope="module")
def digits_with_blank_rows():
    """As :func:`digits`, from float32 images whose first three are blank.

    The blank images are degenerate rows (all zero, duplicates of each
    other) mixed into the split.
    """
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X[:3] = 0.0  # degenerate rows: all-zero images (duplicates of each other)
    return _split_digits(X, y)


@pytest.fixture(scope="module")
def small(digits):
    """The first 300 database items and 60 queries of ``digits``: ``(X, X_q, y, y_q)``."""
    X_db, X_q, y_db, y_q = digits
    return X_db[:300], X_q[:60], y_db[:300], y_q[:60]


class SmallCNN(torch.nn.Module):
    """A small CNN backbone over ``(B, 1, 8, 8)`` images: 4 channels pooled to 2x2 (16 features)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x)))


@pytest.fixture
def small_cnn():
    """The :class:`SmallCNN` class: call it for a fresh, randomly initialised module."""
    return SmallCNN
