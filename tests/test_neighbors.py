"""Tests of the AQDNeighbors estimator (skdqn._neighbors).

The central trick: when every indexed row is exactly a combination of
codewords, quantization is lossless, so AQDNeighbors must return what
:class:`sklearn.neighbors.NearestNeighbors` returns on the same rows (indices
and distances, up to float32 and to the order of tied items, which
NearestNeighbors does not specify). On integer data float32 arithmetic is
exact, and the results must equal a stable brute force over the decoded
vectors exactly, ties by index included.
"""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdqn import AQDNeighbors
from skdqn._pq import decode
from skdqn.search._kernels import aqd_distances
from skdqn.search._tables import distance_tables

METRICS = ["euclidean", "sqeuclidean", "inner_product"]
NN_METRICS = ["euclidean", "sqeuclidean"]  # those NearestNeighbors has too


# ----------------------------------------------------------------- helpers
def lossless_problem(kind="float", n=120, nq=25, M=2, K=6, ds=2, seed=0):
    """Codebooks, rows that are exactly codeword combinations, and queries.

    ``kind="int"``: small integer codebooks and queries (exact arithmetic,
    many ties). Both include all-zero rows and duplicated rows.
    """
    rng = np.random.default_rng(seed)
    if kind == "float":
        codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    else:
        codebooks = rng.integers(-3, 4, size=(M, K, ds)).astype(np.float32)
    codebooks[:, 0] = 0.0
    codes = rng.integers(0, K, size=(n, M))
    codes[:3] = 0  # all-zero rows
    codes[n // 2 : n // 2 + 4] = codes[n // 3]  # duplicates
    codes[-1] = codes[5]
    X = decode(codes, codebooks).astype(np.float64)
    if kind == "float":
        Q = rng.normal(size=(nq, M * ds))
    else:
        Q = rng.integers(-4, 5, size=(nq, M * ds)).astype(np.float64)
    Q[0] = 0.0
    Q[1] = X[n // 3]
    return codebooks, X, Q


def exact_distances(Q, X, metric):
    """float64 distances in ``metric`` units (for the inner product: -<q, x>)."""
    if metric == "inner_product":
        return -(Q @ X.T)
    sq = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    return np.sqrt(sq) if metric == "euclidean" else sq


def stable_topk(D, k):
    ind = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, ind, axis=1), ind


def leave_self_out(D, k, metric):
    """kneighbors(X=None) by its definition: per item, the stable top k of all the others."""
    n = D.shape[0]
    others = D.astype(np.float64, copy=True)
    others[np.arange(n), np.arange(n)] = np.inf  # the item itself ranks after everything
    dist, ind = stable_topk(others, k)
    return np.take_along_axis(D, ind, axis=1), ind


def assert_same_knn(dist, ind, ref_dist, ref_ind, exact):
    """Equal up to float32 and to which of several tied items fill the list."""
    assert ind.shape == ref_ind.shape
    assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-5)
    for q in range(ind.shape[0]):
        d_ours, d_ref = exact[q, ind[q]], exact[q, ref_ind[q]]
        assert_allclose(np.sort(d_ours), np.sort(d_ref), rtol=1e-12, atol=1e-12)
        last = d_ref.max()
        assert set(ind[q][d_ours < last]) == set(ref_ind[q][d_ref < last])
        assert len(set(ind[q])) == len(ind[q])


def assert_same_radius(dist, ind, ref_dist, ref_ind):
    assert len(ind) == len(ref_ind)
    for a_d, a_i, b_d, b_i in zip(dist, ind, ref_dist, ref_ind):
        oa, ob = np.argsort(a_i), np.argsort(b_i)
        assert_array_equal(a_i[oa], b_i[ob])
        assert_allclose(a_d[oa], b_d[ob], rtol=1e-5, atol=1e-5)


def knn_rows(graph, k):
    """(data, indices) of a CSR k-neighbours graph, one row per query."""
    graph = sp.csr_matrix(graph)
    return graph.data.reshape(-1, k), graph.indices.reshape(-1, k)


class CodebookLender:
    """Stand-in for an estimator that learns codebooks (e.g. DeepQuantizer)."""

    def __init__(self, codebooks):
        self.codebooks = codebooks

    def fit(self, X=None, y=None):
        self.codebooks_ = np.asarray(self.codebooks, dtype=np.float32).copy()
        return self


class EstimatorLender(BaseEstimator):
    def __init__(self, codebooks=None):
        self.codebooks = codebooks

    def fit(self, X=None, y=None):
        self.codebooks_ = np.asarray(self.codebooks, dtype=np.float32).copy()
        return self


@pytest.fixture
def gaussian_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8))
    X[:3] = 0.0
    X[10:14] = X[50]
    y = rng.integers(0, 3, size=200)
    return X, y


# ------------------------------------------------- scikit-learn conventions
def _expected_failed_checks(estimator):
    # Every common check applies and passes (check_array_api_input is skipped
    # by scikit-learn itself unless SCIPY_ARRAY_API is set).
    return {}


@parametrize_with_checks(
    [AQDNeighbors(M=1, K=4, random_state=0)], expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ------------------------------------------ lossless: equals NearestNeighbors
@pytest.mark.parametrize("kind", ["float", "int"])
@pytest.mark.parametrize("metric", NN_METRICS)
def test_kneighbors_matches_nearest_neighbors_when_lossless(kind, metric):
    codebooks, X, Q = lossless_problem(kind)
    index = AQDNeighbors(n_neighbors=7, codebooks=codebooks, metric=metric).fit(X)
    assert_array_equal(decode(index.codes_, index.codebooks_), X)  # lossless
    nn = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(X)

    dist, ind = index.kneighbors(Q)
    ref_dist, ref_ind = nn.kneighbors(Q)
    exact = exact_distances(Q, X, metric)
    assert_same_knn(dist, ind, ref_dist, ref_ind, exact)
    # Beyond NearestNeighbors: ties are broken by index, exactly.
    _, stable_ind = stable_topk(exact if kind == "int" else aqd_of(index, Q), 7)
    assert_array_equal(ind, stable_ind)

    # X=None: every item queries the others.
    dist, ind = index.kneighbors()
    ref_dist, ref_ind = nn.kneighbors()
    exact = exact_distances(X, X, metric)
    assert_same_knn(dist, ind, ref_dist, ref_ind, exact)
    assert not (ind == np.arange(X.shape[0])[:, None]).any()
    if kind == "int":
        assert_array_equal(ind, leave_self_out(exact, 7, metric)[1])


def aqd_of(index, Q):
    """The float32 AQD matrix the index ranks by (smaller is better)."""
    metric = "inner_product" if index.metric == "inner_product" else "sqeuclidean"
    return aqd_distances(distance_tables(Q, index.codebooks_, metric), index.codes_)


@pytest.mark.parametrize("kind", ["float", "int"])
@pytest.mark.parametrize("metric", NN_METRICS)
@pytest.mark.parametrize("sort_results", [False, True])
def test_radius_neighbors_matches_nearest_neighbors_when_lossless(kind, metric, sort_results):
    codebooks, X, Q = lossless_problem(kind)
    # Integer data: radius 2 hits squared distance 4 exactly (boundary included).
    radius = {"euclidean": 2.0, "sqeuclidean": 4.0}[metric]
    index = AQDNeighbors(radius=radius, codebooks=codebooks, metric=metric).fit(X)
    nn = NearestNeighbors(radius=radius, metric=metric, algorithm="brute").fit(X)
    for queries, exact in [(Q, exact_distances(Q, X, metric)), (None, exact_distances(X, X, metric))]:
        if kind == "float":  # keep clear of the boundary at float precision
            assert (np.abs(exact - radius) > 1e-4).all()
        dist, ind = index.radius_neighbors(queries, sort_results=sort_results)
        ref_dist, ref_ind = nn.radius_neighbors(queries, sort_results=sort_results)
        assert dist.dtype == object and ind.dtype == object
        assert_same_radius(dist, ind, ref_dist, ref_ind)
        for q, (d, i) in enumerate(zip(dist, ind)):
            if sort_results:  # by distance, ties by index
                order = np.lexsort((i, d))
            else:  # by index
                order = np.argsort(i)
            assert_array_equal(order, np.arange(len(i)))
            if queries is None:
                assert q not in i
        only_ind = index.radius_neighbors(queries, return_distance=False)
        for a, b in zip(only_ind, ind):
            assert_array_equal(np.sort(a), np.sort(b))


@pytest.mark.parametrize("metric", NN_METRICS)
@pytest.mark.parametrize("mode", ["connectivity", "distance"])
@pytest.mark.parametrize("use_queries", [True, False])
def test_graphs_match_nearest_neighbors_when_lossless(metric, mode, use_queries):
    codebooks, X, Q = lossless_problem("int", seed=3)
    queries = Q if use_queries else None
    radius = 2.5 if metric == "euclidean" else 6.0
    index = AQDNeighbors(n_neighbors=4, radius=radius, codebooks=codebooks, metric=metric).fit(X)
    nn = NearestNeighbors(n_neighbors=4, radius=radius, metric=metric, algorithm="brute").fit(X)
    n_queries = Q.shape[0] if use_queries else X.shape[0]

    G = index.kneighbors_graph(queries, mode=mode)
    G_ref = nn.kneighbors_graph(queries, mode=mode)
    assert sp.issparse(G) and G.format == "csr"
    assert type(G) is type(G_ref)
    assert G.shape == G_ref.shape == (n_queries, X.shape[0])
    assert G.nnz == G_ref.nnz == n_queries * 4
    data, ind = knn_rows(G, 4)
    ref_data, ref_ind = knn_rows(G_ref, 4)
    exact = exact_distances(Q if use_queries else X, X, metric)
    assert_same_knn(data, ind, ref_data, ref_ind, exact)
    if mode == "connectivity":
        assert_array_equal(G.data, 1.0)

    G = index.radius_neighbors_graph(queries, mode=mode)
    G_ref = nn.radius_neighbors_graph(queries, mode=mode)
    assert sp.issparse(G) and G.format == "csr"
    assert type(G) is type(G_ref)
    assert G.shape == G_ref.shape == (n_queries, X.shape[0])
    assert G.nnz == G_ref.nnz
    assert_allclose(G.toarray(), G_ref.toarray(), rtol=1e-6)
    if mode == "distance":
        G = index.radius_neighbors_graph(queries, mode=mode, sort_results=True)
        for row in range(n_queries):
            start, stop = G.indptr[row], G.indptr[row + 1]
            assert_array_equal(np.lexsort((G.indices[start:stop], G.data[start:stop])), np.arange(stop - start))
        assert_allclose(G.toarray(), G_ref.toarray(), rtol=1e-6)


def test_graphs_bad_mode():
    codebooks, X, _ = lossless_problem()
    index = AQDNeighbors(codebooks=codebooks).fit(X)
    for method in (index.kneighbors_graph, index.radius_neighbors_graph):
        with pytest.raises(ValueError, match="Unsupported mode"):
            method(mode="weights")


# ---------------------------------------- brute force over decoded vectors
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n_neighbors", [1, 5, 60])
def test_brute_force_over_decoded_vectors_exact(metric, n_neighbors):
    # Learned codebooks (lossy), but integer-valued data would not stay
    # integer: use integer codebooks given as an array and integer queries
    # on arbitrary (not codeword) integer rows, so AQD is exact.
    codebooks, _, Q = lossless_problem("int", seed=7)
    rng = np.random.default_rng(7)
    X = rng.integers(-4, 5, size=(150, 4)).astype(np.float64)
    X[:4] = 0.0
    X[20:25] = X[30]
    index = AQDNeighbors(n_neighbors=n_neighbors, codebooks=codebooks, metric=metric).fit(X)
    X_hat = decode(index.codes_, index.codebooks_).astype(np.float64)
    exact = exact_distances(Q, X_hat, metric)
    ref_dist, ref_ind = stable_topk(exact, n_neighbors)
    dist, ind = index.kneighbors(Q)
    assert dist.dtype == np.float32
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-7)  # sqrt in float32 for euclidean
    assert_array_equal(index.kneighbors(Q, return_distance=False), ind)

    # X=None: the reconstructions query the index, each leaving itself out.
    exact_self = exact_distances(X_hat, X_hat, metric)
    ref_dist, ref_ind = leave_self_out(exact_self, n_neighbors, metric)
    dist, ind = index.kneighbors()
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, ref_dist, rtol=1e-7)

    radius = {"euclidean": 2.0, "sqeuclidean": 4.0, "inner_product": -3.0}[metric]
    dist, ind = index.radius_neighbors(Q, radius=radius)
    for q in range(Q.shape[0]):
        expected = np.flatnonzero(exact[q] <= radius)
        assert_array_equal(ind[q], expected)
        assert_allclose(dist[q], exact[q, expected], rtol=1e-7)


@pytest.mark.parametrize("metric", METRICS)
def test_learned_codebooks_vs_brute_force_float(gaussian_data, metric):
    X, _ = gaussian_data
    index = AQDNeighbors(n_neighbors=6, M=4, K=16, metric=metric, random_state=0).fit(X)
    assert index.codebooks_.shape == (4, 16, 2) and index.codebooks_.dtype == np.float32
    assert index.codes_.shape == (200, 4) and index.codes_.dtype == np.uint8
    Q = np.random.default_rng(1).normal(size=(30, 8))
    X_hat = decode(index.codes_, index.codebooks_).astype(np.float64)
    exact = exact_distances(Q, X_hat, metric)
    dist, ind = index.kneighbors(Q)
    ref_dist, ref_ind = stable_topk(aqd_of(index, Q), 6)
    assert_array_equal(ind, ref_ind)
    assert_allclose(dist, np.take_along_axis(exact, ind, axis=1), rtol=1e-5, atol=1e-5)
    assert_allclose(dist, stable_topk(exact, 6)[0], rtol=1e-5, atol=1e-5)


def test_inner_product_ranks_largest_first():
    codebooks = np.array([[[1.0], [2.0], [-1.0], [0.0]]], dtype=np.float32)
    X = np.array([[1.0], [2.0], [-1.0], [0.0], [2.0]])
    index = AQDNeighbors(n_neighbors=3, codebooks=codebooks, metric="inner_product").fit(X)
    dist, ind = index.kneighbors([[3.0]])
    assert_array_equal(ind, [[1, 4, 0]])
    assert_array_equal(dist, [[-6.0, -6.0, -3.0]])
    dist, ind = index.radius_neighbors([[3.0]], radius=-3.0)
    assert_array_equal(ind[0], [0, 1, 4])
    # X=None with an item that is not its own best match: the worst goes.
    dist, ind = index.kneighbors(n_neighbors=2)
    assert_array_equal(ind[2], [3, 0])  # item 2 ranks [2, 3, 0]: itself dropped
    assert_array_equal(ind[3], [0, 1])  # item 3 (zero) ties all: absent, last dropped
    assert not (ind == np.arange(5)[:, None]).any()


def test_kneighbors_self_and_duplicates_corner_case():
    # Five identical rows and n_neighbors=2: for the last duplicates, more
    # than n_neighbors items tie with the item at smaller indices, so it is
    # absent from its own (k + 1)-list. NearestNeighbors then drops the first
    # entry ([1, 2] for items 3 and 4); skdqn leaves out exactly the item
    # itself: the top 2 of the others, ties by index, is [0, 1].
    codebooks = np.array([[[0.0], [1.0], [5.0]]], dtype=np.float32)
    X = np.array([[1.0]] * 5 + [[0.0], [5.0]])
    index = AQDNeighbors(n_neighbors=2, codebooks=codebooks).fit(X)
    dist, ind = index.kneighbors()
    assert_array_equal(ind[:5], [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]])
    # Shorter lists are prefixes of longer ones.
    for k in (1, 2, 3, 5):
        longer = index.kneighbors(n_neighbors=k + 1)
        assert_array_equal(index.kneighbors(n_neighbors=k)[1], longer[1][:, :k])
    assert_array_equal(dist[:5], 0.0)
    assert_array_equal(ind[5], [0, 1])
    assert_allclose(dist[5], [1.0, 1.0])
    nn = NearestNeighbors(n_neighbors=2).fit(X)
    ref_dist, ref_ind = nn.kneighbors()
    assert_allclose(dist, ref_dist)
    assert not (ref_ind == np.arange(7)[:, None]).any()
    # With queries given, an item is its own neighbour.
    assert_array_equal(index.kneighbors(X[:1], n_neighbors=3)[1], [[0, 1, 2]])


def test_n_neighbors_equal_n_samples_fit():
    codebooks, X, Q = lossless_problem("int", n=20)
    index = AQDNeighbors(codebooks=codebooks).fit(X)
    assert index.kneighbors(Q, n_neighbors=20)[1].shape == (Q.shape[0], 20)
    assert index.kneighbors(n_neighbors=19)[1].shape == (20, 19)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        index.kneighbors(n_neighbors=20)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        index.kneighbors(Q, n_neighbors=21)


def test_radius_semantics():
    codebooks = np.array([[[0.0], [1.0], [3.0]], [[0.0], [2.0], [4.0]]], dtype=np.float32)
    X = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 4.0], [0.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    index = AQDNeighbors(radius=np.sqrt(5.0), codebooks=codebooks).fit(X)
    dist, ind = index.radius_neighbors([[0.0, 0.0]])  # self.radius, <= included
    assert_array_equal(ind[0], [0, 1, 3, 4, 5])
    assert_allclose(dist[0], [0.0, 1.0, 2.0, np.sqrt(5.0), 0.0], rtol=1e-6)
    dist, ind = index.radius_neighbors([[0.0, 0.0]], radius=1.0, sort_results=True)
    assert_array_equal(ind[0], [0, 5, 1])
    assert_array_equal(dist[0], [0.0, 0.0, 1.0])
    sq = AQDNeighbors(radius=5.0, codebooks=codebooks, metric="sqeuclidean").fit(X)
    assert_array_equal(sq.radius_neighbors([[0.0, 0.0]])[1][0], [0, 1, 3, 4, 5])
    # A negative radius is refused, as NearestNeighbors does; empty results
    # keep their types; radius=inf finds everything (as a parameter too).
    with pytest.raises(ValueError, match="radius must be >= 0"):
        index.radius_neighbors([[0.0, 0.0]], radius=-1.0)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        AQDNeighbors(radius=-0.5, codebooks=codebooks).fit(X)
    dist, ind = index.radius_neighbors([[10.0, 10.0]], radius=0.0)
    assert ind[0].shape == (0,) and dist[0].shape == (0,)
    everything = AQDNeighbors(radius=np.inf, codebooks=codebooks).fit(X)
    assert_array_equal(everything.radius_neighbors([[0.0, 0.0]])[1][0], np.arange(6))
    assert_array_equal(index.radius_neighbors([[0.0, 0.0]], radius=np.inf)[1][0], np.arange(6))
    # X=None leaves the item out; duplicates (rows 0 and 5) find each other.
    dist, ind = index.radius_neighbors(radius=1.0)
    assert_array_equal(ind[0], [1, 5])
    assert_array_equal(ind[5], [0, 1])
    with pytest.raises(ValueError, match="return_distance must be True"):
        index.radius_neighbors(return_distance=False, sort_results=True)


@pytest.mark.parametrize("metric, at", [("euclidean", 2.0), ("sqeuclidean", 4.0)])
def test_radius_just_below_a_distance_matches_nearest_neighbors(metric, at):
    # Regression: a radius just below an exact distance was rounded up to
    # float32 and the item at that distance was returned.
    codebooks = np.array([[[0.0], [2.0], [1.0]]], dtype=np.float32)
    X = np.array([[0.0], [2.0], [1.0]])
    index = AQDNeighbors(codebooks=codebooks, metric=metric).fit(X)
    nn = NearestNeighbors(metric=metric, algorithm="brute").fit(X)
    for radius in (float(np.nextafter(at, 0.0)), at):
        ind = index.radius_neighbors([[0.0]], radius=radius, return_distance=False)[0]
        ref = nn.radius_neighbors([[0.0]], radius=radius, return_distance=False)[0]
        assert_array_equal(np.sort(ind), np.sort(ref))
    assert_array_equal(np.sort(ind), [0, 1, 2])


def test_n_jobs_identical_results(gaussian_data):
    X, _ = gaussian_data
    Q = np.random.default_rng(2).normal(size=(300, 8))
    one = AQDNeighbors(n_neighbors=5, M=2, K=8, random_state=0, n_jobs=1).fit(X)
    two = clone(one).set_params(n_jobs=2).fit(X)
    assert_array_equal(one.codes_, two.codes_)
    for a, b in zip(one.kneighbors(Q), two.kneighbors(Q)):
        assert_array_equal(a, b)
    for a, b in zip(one.radius_neighbors(Q, 1.0), two.radius_neighbors(Q, 1.0)):
        for u, v in zip(a, b):
            assert_array_equal(u, v)


# ----------------------------------------------------- codebooks parameter
def test_codebooks_given_as_array():
    codebooks, X, Q = lossless_problem("float")
    given = codebooks.astype(np.float64)  # any float dtype; stored as float32
    given0 = given.copy()
    index = AQDNeighbors(codebooks=given, M=99, K=3).fit(X)  # M, K ignored
    assert index.codebooks_.dtype == np.float32
    assert_array_equal(index.codebooks_, codebooks)
    assert not np.shares_memory(index.codebooks_, given)
    given[:] = 0.0  # later changes to the argument do not leak in
    assert_array_equal(index.codebooks_, codebooks)
    assert_array_equal(given0.astype(np.float32), codebooks)
    # Fewer samples than codewords is fine: nothing to learn.
    small = AQDNeighbors(n_neighbors=1, codebooks=codebooks).fit(X[:2])
    assert small.n_samples_fit_ == 2


def test_codebooks_lent_by_fitted_estimator():
    codebooks, X, Q = lossless_problem("float")
    lender = CodebookLender(codebooks).fit()
    index = AQDNeighbors(codebooks=lender).fit(X)
    assert_array_equal(index.codebooks_, codebooks)
    assert not np.shares_memory(index.codebooks_, lender.codebooks_)
    direct = AQDNeighbors(codebooks=codebooks).fit(X)
    for a, b in zip(index.kneighbors(Q), direct.kneighbors(Q)):
        assert_array_equal(a, b)
    # clone() deep-copies a plain object, fitted state included.
    assert_array_equal(clone(index).fit(X).codes_, index.codes_)


def test_codebooks_lent_by_unfitted_estimator():
    codebooks, X, _ = lossless_problem("float")
    with pytest.raises(NotFittedError):
        AQDNeighbors(codebooks=CodebookLender(codebooks)).fit(X)
    with pytest.raises(NotFittedError):
        AQDNeighbors(codebooks=EstimatorLender(codebooks)).fit(X)


def test_codebooks_lent_by_frozen_estimator_survive_clone():
    # clone() resets a scikit-learn estimator given as a parameter; wrapping
    # it in FrozenEstimator keeps it fitted (e.g. inside GridSearchCV).
    frozen_mod = pytest.importorskip("sklearn.frozen")
    codebooks, X, _ = lossless_problem("float")
    lender = EstimatorLender(codebooks).fit()
    index = clone(AQDNeighbors(codebooks=frozen_mod.FrozenEstimator(lender))).fit(X)
    assert_array_equal(index.codebooks_, codebooks)


@pytest.mark.parametrize(
    "codebooks, err, match",
    [
        (np.zeros((2, 4)), ValueError, "codebooks must have shape"),
        (np.zeros((2, 4, 3)), ValueError, "n_features=4"),
        (np.zeros((3, 4, 2)), ValueError, "n_features=4"),
        (np.full((2, 4, 2), np.nan), ValueError, "codebooks contains NaN"),
        (np.zeros((2, 0, 2)), ValueError, "K=0"),
        ("abc", TypeError, "codebooks must be None"),
    ],
)
def test_bad_codebooks(codebooks, err, match):
    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(err, match=match):
        AQDNeighbors(codebooks=codebooks).fit(X)


def test_lent_codebooks_of_wrong_shape_name_the_lender():
    X = np.random.default_rng(0).normal(size=(10, 4))
    lender = CodebookLender(np.zeros((3, 4, 2))).fit()
    with pytest.raises(ValueError, match="CodebookLender.codebooks_"):
        AQDNeighbors(codebooks=lender).fit(X)


# -------------------------------------------------------------- M and K
def test_reconstruction_error_shrinks_as_M_grows(gaussian_data):
    X, _ = gaussian_data
    X = np.vstack([X, np.random.default_rng(3).normal(size=(600, 8))])
    errors = []
    for M in (1, 2, 4, 8):
        index = AQDNeighbors(M=M, K=16, random_state=0).fit(X)
        errors.append(((X - decode(index.codes_, index.codebooks_)) ** 2).sum(axis=1).mean())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def test_learned_codebooks_reproducible_and_uint16(gaussian_data):
    X, _ = gaussian_data
    a = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    b = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    assert_array_equal(a.codebooks_, b.codebooks_)
    assert_array_equal(a.codes_, b.codes_)
    rng = np.random.default_rng(0)
    X_big = rng.normal(size=(320, 2))
    index = AQDNeighbors(M=1, K=300, random_state=0).fit(X_big)
    assert index.codes_.dtype == np.uint16
    assert index.codes_.max() < 300
    dist, ind = index.kneighbors(X_big[:5], n_neighbors=1)
    assert ind.shape == (5, 1)


def test_degenerate_data(gaussian_data):
    # Fewer distinct rows than K: lossless, and search still works.
    X = np.vstack([np.zeros((10, 4)), np.ones((10, 4)), np.zeros((5, 4))])
    index = AQDNeighbors(n_neighbors=3, M=2, K=8, random_state=0).fit(X)
    assert_array_equal(decode(index.codes_, index.codebooks_), X)
    dist, ind = index.kneighbors()
    assert_array_equal(dist, 0.0)
    assert np.isfinite(index.codebooks_).all()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "X, err, match",
    [
        (np.full((20, 4), np.nan), ValueError, "NaN"),
        (np.full((20, 4), np.inf), ValueError, "infinity"),
        (np.zeros(20), ValueError, "2D array"),
        (np.zeros((20, 4, 1)), ValueError, "dim 3"),
        (np.zeros((0, 4)), ValueError, "0 sample"),
        (np.zeros((20, 6)), ValueError, "n_features=6 is not divisible by M=4"),
        (np.zeros((7, 4)), ValueError, "n_samples=7"),
        ([["a", "b", "c", "d"]] * 20, ValueError, "could not convert|string"),
    ],
)
def test_bad_X_at_fit(X, err, match):
    with pytest.raises(err, match=match):
        AQDNeighbors(M=4, K=8).fit(X)


def test_n_samples_less_than_K_message():
    X = np.random.default_rng(0).normal(size=(5, 4))
    with pytest.raises(ValueError, match=r"n_samples=5") as info:
        AQDNeighbors(M=2, K=16).fit(X)
    assert "K=16" in str(info.value)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 2.5}, "n_neighbors"),
        ({"metric": "cosine"}, "metric"),
        ({"M": 0}, "'M'"),
        ({"K": 1}, "'K'"),
        ({"K": 2**16 + 1}, "'K'"),
    ],
)
def test_bad_params(params, match):
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match=match):
        AQDNeighbors(**{"M": 2, "K": 4, **params}).fit(X)


def test_bad_queries_and_n_neighbors(gaussian_data):
    X, y = gaussian_data
    index = AQDNeighbors(n_neighbors=3, M=2, K=8, random_state=0).fit(X, y)
    nn = NearestNeighbors(n_neighbors=3).fit(X)
    cases = [
        ({"n_neighbors": 0}, ValueError, "Expected n_neighbors > 0"),
        ({"n_neighbors": -2}, ValueError, "Expected n_neighbors > 0"),
        ({"n_neighbors": 2.0}, TypeError, "n_neighbors does not take"),
        ({"n_neighbors": 201}, ValueError, "Expected n_neighbors <= n_samples_fit"),
    ]
    for kwargs, err, match in cases:
        for est in (index, nn):  # the same errors as NearestNeighbors
            with pytest.raises(err, match=match):
                est.kneighbors(X[:2], **kwargs)
    for est in (index, nn):
        with pytest.raises(ValueError, match="Expected n_neighbors < n_samples_fit"):
            est.kneighbors(n_neighbors=200)
        with pytest.raises(ValueError, match="X has 3 features, but"):
            est.kneighbors(X[:2, :3])
        with pytest.raises(ValueError, match="X has 3 features, but"):
            est.radius_neighbors(X[:2, :3])
        with pytest.raises(ValueError, match="NaN"):
            est.kneighbors(np.full((2, 8), np.nan))
    with pytest.raises(ValueError, match="X has 3 features, but"):
        index.kneighbors_graph(X[:2, :3])
    with pytest.raises(ValueError, match="X has 3 features, but"):
        index.score(X[:2, :3], [0, 1])


def test_not_fitted():
    index = AQDNeighbors()
    X = np.zeros((2, 4))
    for call in (
        lambda: index.kneighbors(X),
        lambda: index.kneighbors(),
        lambda: index.radius_neighbors(X),
        lambda: index.kneighbors_graph(X),
        lambda: index.radius_neighbors_graph(X),
        lambda: index.score(X, [0, 1]),
    ):
        with pytest.raises(NotFittedError):
            call()


# -------------------------------------------------------- inputs unchanged
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_never_modified(gaussian_data, dtype):
    X, y = gaussian_data
    X = X.astype(dtype)  # both accepted dtypes: validate_data makes no copy
    Q = np.random.default_rng(4).normal(size=(20, 8)).astype(dtype)
    yq = np.arange(20) % 3
    saved = [a.copy() for a in (X, y, Q, yq)]
    codebooks = AQDNeighbors(M=2, K=8, random_state=0).fit(X).codebooks_.copy()
    cb0 = codebooks.copy()
    for params in ({"M": 2, "K": 8, "random_state": 0}, {"codebooks": codebooks}):
        index = AQDNeighbors(n_neighbors=3, **params).fit(X, y)
        index.kneighbors(Q)
        index.kneighbors()
        index.radius_neighbors(Q, sort_results=True)
        index.kneighbors_graph(Q, mode="distance")
        index.radius_neighbors_graph(Q, mode="distance")
        index.score(Q, yq)
        for a, b in zip((X, y, Q, yq), saved):
            assert_array_equal(a, b)
        assert_array_equal(codebooks, cb0)
        assert not np.shares_memory(index.codebooks_, codebooks)


# -------------------------------------------------------- persistence
def test_pickle_and_joblib_round_trip(gaussian_data, tmp_path):
    X, y = gaussian_data
    Q = np.random.default_rng(5).normal(size=(15, 8))
    index = AQDNeighbors(n_neighbors=4, M=4, K=16, random_state=0).fit(X, y)
    path = tmp_path / "index.joblib"
    joblib.dump(index, path)
    for other in (pickle.loads(pickle.dumps(index)), joblib.load(path)):
        assert_array_equal(other.codebooks_, index.codebooks_)
        assert_array_equal(other.codes_, index.codes_)
        for a, b in zip(other.kneighbors(Q), index.kneighbors(Q)):
            assert_array_equal(a, b)
        for a, b in zip(other.radius_neighbors(Q, 2.0), index.radius_neighbors(Q, 2.0)):
            for u, v in zip(a, b):
                assert_array_equal(u, v)
        assert other.score(Q, np.arange(15) % 3) == index.score(Q, np.arange(15) % 3)


# ------------------------------------------------------------------ score
def average_precision_reference(exact, query_labels, database_labels, top_k=None):
    """AP of each query, database ranked by a stable sort of ``exact``."""
    aps = []
    for q in range(exact.shape[0]):
        ranking = np.argsort(exact[q], kind="stable")[:top_k]
        ql, dl = query_labels[q], database_labels[ranking]
        rel = (dl & ql).any(axis=1) if dl.ndim == 2 else dl == ql
        hits = np.cumsum(rel)
        precisions = hits[rel] / (np.flatnonzero(rel) + 1)
        aps.append(precisions.mean() if rel.any() else 0.0)
    return np.array(aps)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("top_k", [None, 10])
def test_score_is_map(metric, multilabel, top_k):
    codebooks, _, Q = lossless_problem("int", seed=11)
    rng = np.random.default_rng(11)
    X = rng.integers(-4, 5, size=(90, 4)).astype(np.float64)
    X[:3] = 0.0
    if multilabel:
        y = rng.random((90, 4)) < 0.3
        yq = rng.random((Q.shape[0], 4)) < 0.3
        y, yq = y.astype(int), yq.astype(int)
    else:
        y, yq = rng.integers(0, 3, size=90), rng.integers(0, 3, size=Q.shape[0])
    index = AQDNeighbors(codebooks=codebooks, metric=metric).fit(X, y)
    X_hat = decode(index.codes_, index.codebooks_).astype(np.float64)
    exact = exact_distances(Q, X_hat, metric)
    lab = (lambda a: a.astype(bool)) if multilabel else (lambda a: a)
    expected = average_precision_reference(exact, lab(yq), lab(y), top_k).mean()
    score = index.score(Q, yq, top_k=top_k)
    assert isinstance(score, float)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(expected, rel=1e-12)


def test_score_perfect_and_sparse_labels():
    X = np.r_[np.zeros((4, 2)), np.full((4, 2), 5.0)]
    y = np.r_[np.zeros(4), np.ones(4)]
    index = AQDNeighbors(M=1, K=2, random_state=0).fit(X, y)
    assert index.score(X, y) == 1.0
    Y = sp.csr_matrix(np.eye(2)[y.astype(int)])
    assert AQDNeighbors(M=1, K=2, random_state=0).fit(X, Y).score(X, Y.toarray()) == 1.0


def test_score_errors():
    X = np.random.default_rng(0).normal(size=(30, 4))
    index = AQDNeighbors(M=2, K=4, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"fit\(X, y\)"):
        index.score(X, np.zeros(30))
    with pytest.raises(ValueError, match="y has 29 entries"):
        AQDNeighbors(M=2, K=4).fit(X, np.zeros(29))
    with pytest.raises(ValueError, match="y has 29 entries"):
        AQDNeighbors(M=2, K=4).fit(X, np.zeros(30)).score(X, np.zeros(29))
    with pytest.raises(ValueError, match="Unknown label type"):
        AQDNeighbors(M=2, K=4).fit(X, np.arange(30).astype(object))


def test_pipeline_grid_search_over_M():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(3, 8))
    y = rng.permutation(np.repeat(np.arange(3), 40))  # (the CV folds are not shuffled)
    X = centers[y] + rng.normal(size=(120, 8)) + 100.0  # off-centre: scaled first
    X[:2] = 0.0
    pipe = make_pipeline(StandardScaler(), AQDNeighbors(K=8, random_state=0))
    search = GridSearchCV(pipe, {"aqdneighbors__M": [1, 2, 4]}, cv=3).fit(X, y)
    assert search.best_params_["aqdneighbors__M"] in (1, 2, 4)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and (scores > 0.5).all()
    assert 0.5 < search.score(X, y) <= 1.0


def test_feature_names():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 4)), columns=list("abcd"))
    index = AQDNeighbors(M=2, K=4, random_state=0).fit(X)
    assert_array_equal(index.feature_names_in_, list("abcd"))
    assert index.n_features_in_ == 4
    with pytest.warns(UserWarning, match="feature names"):
        index.kneighbors(X.to_numpy()[:2])


def test_fitted_attributes(gaussian_data):
    X, _ = gaussian_data
    index = AQDNeighbors(M=4, K=16, random_state=0).fit(X)
    assert index.n_features_in_ == 8
    assert index.n_samples_fit_ == 200
    assert not hasattr(index, "feature_names_in_")
    assert index.codebooks_.shape == (4, 16, 2) and index.codebooks_.dtype == np.float32
    assert index.codes_.shape == (200, 4) and index.codes_.dtype == np.uint8


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_kneighbors_without_queries_on_duplicates_is_a_prefix_family(metric):
    # Regression: with many duplicated items, an item's single nearest
    # neighbour was not the first entry of its 79 nearest (scikit-learn's
    # "drop the first column when the item is missing" breaks the tie order).
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(6, 4)), 20, axis=0)  # 6 points, 20 copies each
    index = AQDNeighbors(M=2, K=8, metric=metric, random_state=0).fit(X)
    longest = index.kneighbors(n_neighbors=79)
    for k in (1, 2, 19, 20, 21, 78):
        dist, ind = index.kneighbors(n_neighbors=k)
        assert_array_equal(ind, longest[1][:, :k])
        assert_array_equal(dist, longest[0][:, :k])
    assert not (longest[1] == np.arange(len(X))[:, None]).any()
    # The definition: the stable top k of all the other items.
    ref = leave_self_out(aqd_of(index, index.decode(index.codes_)), 79, metric)[1]
    assert_array_equal(longest[1], ref)


# ------------------------------------------------- numbers at the edges
def test_close_codewords_far_from_the_origin_are_not_confused():
    # Issue 11: the float32 expansion ||c||^2 - 2 <x, c> swapped 1000.0 and 1000.1.
    X = np.array([[0.0], [1000.0], [1000.1]])
    index = AQDNeighbors(n_neighbors=1, codebooks=X[None].astype(np.float32)).fit(X)
    assert_array_equal(index.codes_.ravel(), [0, 1, 2])
    assert_array_equal(index.kneighbors(X)[1], [[0], [1], [2]])
    assert_array_equal(index.kneighbors(X, return_distance=True)[0], np.zeros((3, 1)))


def lossless_codebooks(X, M):
    """Per subspace the distinct sub-vectors of X (padded by repeating the first): K >= distinct."""
    blocks = [np.unique(b, axis=0) for b in np.split(X, M, axis=1)]
    K = max(len(b) for b in blocks)
    return np.stack([np.vstack([b, np.repeat(b[:1], K - len(b), axis=0)]) for b in blocks]).astype(np.float32)


def certain_prefix(ranked, items, rtol=1e-4):
    """How many leading ranks of a sorted row float32 distances cannot reorder.

    ``ranked``: exact distances, sorted stably; ``items``: the items in that
    order. Values closer than ``rtol`` form groups; a group of duplicates of
    one item keeps its order (ties by index); any other group may not, since
    float32 rounds differently grouped sums differently, even of equal reals.
    """
    start = 0
    for j in range(1, ranked.size + 1):
        if j == ranked.size or ranked[j] - ranked[j - 1] > rtol * ranked[j]:
            if not (items[start:j] == items[start]).all():
                return start
            start = j
    return ranked.size


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_lossless_index_equals_nearest_neighbors(data):
    # Two clusters far apart (0 and an offset) of values a small step apart:
    # codewords close compared with the spread, the case the float32
    # expansion ||c||^2 - 2 <x, c> confused. Values are float32 numbers, so
    # the index is lossless; duplicates give exact ties.
    M, ds = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    n, nq = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 4))
    offset = data.draw(st.sampled_from([1.0, 1000.0, -25000.0]))
    step = data.draw(st.sampled_from([1.0, 0.125, 0.1, 1e-3]))
    shape = (n + nq, M * ds)
    far = data.draw(hnp.arrays(bool, shape))
    ints = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-3, 3)))
    V = (offset * far + step * ints).astype(np.float32).astype(np.float64)
    X, Q = V[:n], np.vstack([V[n:], V[:n]])  # the items are queries too
    k = data.draw(st.integers(1, n))
    metric = data.draw(st.sampled_from(NN_METRICS))
    index = AQDNeighbors(n_neighbors=k, metric=metric, codebooks=lossless_codebooks(X, M)).fit(X)
    assert_array_equal(decode(index.codes_, index.codebooks_), X)  # every code exact: lossless
    dist, ind = index.kneighbors(Q)
    squared = dist.astype(np.float64) ** (2 if metric == "euclidean" else 1)
    assert_array_equal(squared[nq:, 0], 0.0)  # an item finds itself (or an earlier duplicate)
    # Exact squared distances (float64 differences); sorted stably: ties by smaller index.
    exact = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    full_order = np.argsort(exact, axis=1, kind="stable")
    order = full_order[:, :k]
    ranked = np.take_along_axis(exact, full_order, axis=1)
    assert_allclose(squared, ranked[:, :k], rtol=1e-5, atol=1e-12)
    # NearestNeighbors expands ||x||^2 - 2 <x, y> + ||y||^2 in float64: its own
    # error is about 1e-16 ||x||^2, so compare to it within that.
    nn_dist, nn_ind = NearestNeighbors(n_neighbors=k, metric=metric).fit(X).kneighbors(Q)
    nn_squared = nn_dist ** (2 if metric == "euclidean" else 1)
    nn_error = 1e-13 * (1.0 + (V**2).sum(axis=1).max())
    assert_allclose(squared, nn_squared, rtol=1e-5, atol=nn_error)
    # The order, wherever float32 distances can resolve it; NearestNeighbors's
    # where it has no ties (it leaves their order open) and resolves it too.
    certain = np.minimum([certain_prefix(r, X[o]) for r, o in zip(ranked, full_order)], k)
    separated = (np.diff(ranked[:, : k + 1], axis=1) > nn_error).all(axis=1)
    for row in range(Q.shape[0]):
        assert_array_equal(ind[row, : certain[row]], order[row, : certain[row]])
        if certain[row] == k and separated[row]:
            assert_array_equal(ind[row], nn_ind[row])


@pytest.mark.parametrize("scale", [1e19, 1e20, 1e30, 1e300])
@pytest.mark.parametrize("given_codebooks", [False, True])
def test_fit_on_huge_values_says_rescale(scale, given_codebooks):
    X = np.random.default_rng(0).normal(size=(40, 4)) * scale
    codebooks = np.ones((2, 4, 2), np.float32) if given_codebooks else None
    index = AQDNeighbors(M=2, K=4, codebooks=codebooks, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (overflow) from numpy either
        with pytest.raises(ValueError, match=r"X has values of magnitude .*overflow float32.*Rescale X"):
            index.fit(X)
    assert not hasattr(index, "codes_")


def test_partial_fit_and_queries_with_huge_values_say_rescale(gaussian_data):
    X, _ = gaussian_data
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    codes = index.codes_.copy()
    huge = X[:5] * 1e20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X has values of magnitude \d\.?\d*e\+20"):
            index.partial_fit(huge)
        assert_array_equal(index.codes_, codes)  # index unchanged
        for call in (index.kneighbors, index.radius_neighbors, index.kneighbors_graph, index.encode):
            for queries in (huge, X[:5] * 1e39):  # 1e39: beyond float32 itself
                with pytest.raises(ValueError, match="overflow float32"):
                    call(queries)
        with pytest.raises(ValueError, match="overflow float32"):
            index.radius_neighbors(huge, radius=np.inf)


@pytest.mark.parametrize("metric", METRICS)
def test_largest_accepted_values_give_finite_distances(metric):
    from skdqn._pq import max_magnitude

    limit = max_magnitude(4)
    X = np.array([[limit, -limit, limit, -limit], [-limit, limit, -limit, limit], [0.0, 0.0, 0.0, 0.0]])
    index = AQDNeighbors(n_neighbors=3, M=2, K=3, metric=metric, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist, ind = index.kneighbors(X)
        assert np.isfinite(dist).all()
        assert np.isfinite(index.kneighbors(n_neighbors=2)[0]).all()
        assert_array_equal(np.sort(ind, axis=1), np.tile([0, 1, 2], (3, 1)))


@pytest.mark.parametrize("scale", [1e20, 1e39])  # 1e39: beyond float32 itself
def test_codebooks_with_huge_values_say_rescale(scale):
    X = np.zeros((10, 4))
    codebooks = np.ones((2, 3, 2)) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast"
        with pytest.raises(ValueError, match="codebooks has values of magnitude .*overflow float32"):
            AQDNeighbors(codebooks=codebooks).fit(X)
        with pytest.raises(ValueError, match="codebooks has values of magnitude"):
            AQDNeighbors.from_codes(codebooks, np.zeros((10, 2), np.uint8))


@pytest.mark.parametrize("n_lists", [None, 6])
def test_x_none_searched_in_chunks_of_items_changes_nothing(monkeypatch, n_lists):
    # kneighbors(X=None) searches the stored items a chunk at a time (bounded
    # memory beyond the output); tiny chunks, duplicates and ties included.
    import skdqn._neighbors as neighbors_module

    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, size=(300, 4)).astype(float)
    X[:20] = X[20]
    index = AQDNeighbors(n_neighbors=12, M=2, K=4, n_lists=n_lists, n_probe=3, random_state=0).fit(X)
    expected = index.kneighbors()
    graph = index.kneighbors_graph(mode="distance").toarray()
    monkeypatch.setattr("skdqn.search._tuning.SELF_CHUNK", 7)
    got = index.kneighbors()
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(index.kneighbors_graph(mode="distance").toarray(), graph)
    assert not (got[1] == np.arange(300)[:, None]).any()  # never itself
