"""Shared fixtures and helpers for the skdqn tests.

* ``small_blocks``: tiny scan blocks (:func:`skdqn.search._search.scan_blocks`);
* ``pairs_on_small_data``: the one-query pair scan on any number of codes;
* ``_single_torch_thread``: every test trains on one torch thread;
* ``digits``, ``digits_with_blank_rows``, ``small``, ``small_cnn``: data and a
  small backbone for the DeepQuantizer tests;
* :func:`assert_same_search`: two indexes give identical search results;
* :func:`make_problem`, :func:`integer_problem`, :func:`kneighbors_reference`:
  tables and codes with degenerate rows, and the top-k reference.

Helpers are imported as ``from conftest import ...``.
"""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skdqn.search._kernels import aqd_distances
from skdqn.search._search import scan_blocks


@pytest.fixture
def pairs_on_small_data(monkeypatch):
    """The one-query pair scan on small problems (by default only from 4,096 codes)."""
    import skdqn.search._tuning

    monkeypatch.setattr(skdqn.search._tuning, "PAIR_MIN_ROWS", 0)


@pytest.fixture
def small_blocks():
    """Tiny scan blocks, so that small problems cross many block boundaries.

    With 16 database items and 8 queries per block, a database of a few
    hundred items exercises the running-threshold merges and the query-block
    stitching that only happen on large data with the default sizes. The
    sizes travel with the search's tasks, so they hold on process and dask
    workers too.
    """
    with scan_blocks(query=8, database=16) as blocks:
        yield blocks


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Train the tests' tiny networks on one thread.

    Their matrices are far too small for intra-op parallelism to pay; with
    two threads on a busy 2-core machine, OpenMP spinning made each fit
    several times slower in CPU time. Results do not depend on it.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_same_search(a, b, X=None, *, n_neighbors=None, radius=None):
    """Assert that indexes ``a`` and ``b`` return identical results for the queries ``X``.

    Compares ``kneighbors`` (indices and distances, bit for bit) and, when
    ``radius`` is given, ``radius_neighbors`` (every query's indices and
    distances, in order). ``X=None`` queries the indexed items themselves.
    """
    d_a, i_a = a.kneighbors(X, n_neighbors)
    d_b, i_b = b.kneighbors(X, n_neighbors)
    assert_array_equal(i_a, i_b)
    assert_array_equal(d_a, d_b)
    if radius is not None:
        r_a = a.radius_neighbors(X, radius=radius)
        r_b = b.radius_neighbors(X, radius=radius)
        assert len(r_a[1]) == len(r_b[1])
        for got, ref in zip(list(r_a[1]) + list(r_a[0]), list(r_b[1]) + list(r_b[0])):
            assert_array_equal(got, ref)


# ------------------------------------------------ search problems (kernel and engine tests)
def make_problem(kind, nq, n, M=4, K=16, seed=0):
    """Tables and codes; ``"ties"``: small integer tables, many exact ties."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        tables = rng.random((nq, M, K), dtype=np.float32)
    else:
        tables = rng.integers(0, 3, size=(nq, M, K)).astype(np.float32)
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8 if K <= 256 else np.uint16)
    # Degenerate rows: a block of duplicated items, repeated items far apart.
    codes[n // 3 : n // 3 + 5] = codes[0]
    codes[-1] = codes[min(1, n - 1)]
    return tables, codes


def integer_problem(seed=0, n=300, nq=40, M=3, K=8, ds=2):
    """Integer codebooks and queries: float32 tables and sums are exact."""
    rng = np.random.default_rng(seed)
    codebooks = rng.integers(-3, 4, size=(M, K, ds)).astype(np.float32)
    codebooks[:, 0] = 0.0  # a zero codeword in every subspace
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8)
    codes[:4] = 0  # all-zero items
    codes[10:20] = codes[30]  # duplicates
    Q = rng.integers(-4, 5, size=(nq, M * ds)).astype(np.float64)
    Q[0] = 0.0
    return Q, codebooks, codes


def kneighbors_reference(tables, codes, k):
    """Top-k by a stable argsort of all distances: the reference of every top-k."""
    dist = aqd_distances(tables, codes)
    ind = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, ind, axis=1), ind


# ------------------------------------------------ digits and a small CNN (DeepQuantizer tests)
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


def damage_file(target, how, position):
    """Truncate ``target`` at, or flip the byte at, ``position`` (0 to 1) of its length (fuzz tests)."""
    data = bytearray(target.read_bytes())
    at = int(position * (len(data) - 1))
    if how == "truncate":
        data = data[:at]
    else:
        data[at] ^= 0xFF
    target.write_bytes(bytes(data))


# ------------------------------------------------ a small fitted DeepQuantizer (hand-off, feedback tests)
SMALL_QUANTIZER = dict(M=2, K=16, n_components=8, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1)


@pytest.fixture(scope="module")
def scaled_digits_300():
    """Digits scaled to [0, 1], float32: 300 training items and 40 queries, ``(X, y, X_q, y_q)``."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return X[:300], y[:300], X[300:340], y[300:340]


@pytest.fixture(scope="module")
def small_quantizer(scaled_digits_300):
    """A DeepQuantizer with :data:`SMALL_QUANTIZER`, fitted on :func:`scaled_digits_300` (seed 0)."""
    from skdqn import DeepQuantizer

    X, y, _, _ = scaled_digits_300
    return DeepQuantizer(random_state=0, **SMALL_QUANTIZER).fit(X, y)
