"""Filtered search: equal to a search over only the allowed items, on every path."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from skdqn import AQDNeighbors, HasLabel, SameLabel
from skdqn.search._filters import check_filter

N, M, K, D = 400, 2, 8, 6


@pytest.fixture(scope="module")
def problem():
    """Hand-made codebooks and codes (no k-means): ties, zero rows and duplicates included."""
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(M, K, D // M)).astype(np.float32)
    codebooks[:, 1] = codebooks[:, 0]  # duplicate codewords: tied distances
    codes = rng.integers(0, K, size=(N, M)).astype(np.uint8)
    codes[:40] = codes[40:80]  # duplicate items
    Q = rng.normal(size=(12, D))
    Q[0] = 0.0  # a zero query
    y = rng.integers(0, 4, N)
    coarse = rng.normal(size=(6, D)).astype(np.float32)
    assign = rng.integers(0, 6, N)
    return codebooks, codes, Q, y, coarse, assign


def _index(problem, lists=False, metric="euclidean", backend="numpy", n_probe=2, keep=None):
    codebooks, codes, _, y, coarse, assign = problem
    keep = np.arange(N) if keep is None else keep
    extra = dict(coarse_centroids=coarse, list_assignments=assign[keep], n_probe=n_probe) if lists else {}
    return AQDNeighbors.from_codes(codebooks, codes[keep], y[keep], metric=metric, backend=backend,
                                   device="cpu", **extra)


def _masks():
    rng = np.random.default_rng(1)
    return {"1%": rng.random(N) < 0.01, "10%": rng.random(N) < 0.1, "50%": rng.random(N) < 0.5,
            "all": np.ones(N, bool)}


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("lists", [False, True])
@pytest.mark.parametrize("share", ["1%", "10%", "50%", "all"])  # lists: exhaustive, exhaustive, lists, lists
def test_filtered_search_equals_an_index_of_the_allowed_items(problem, metric, backend, lists, share):
    """The reference: an index of the allowed items only (with lists: the same centroids and lists)."""
    _, _, Q, *_ = problem
    mask = _masks()[share]
    keep = np.flatnonzero(mask)
    index = _index(problem, lists, metric, backend)
    k = min(5, keep.size)
    # With lists, allowed items fewer than the probed lists hold on average (n_probe 2 of 6
    # lists: N / 3) are searched exhaustively: the reference is then an exhaustive index.
    by_lists = lists and keep.size * 6 > N * 2
    reference = _index(problem, by_lists, metric, backend, keep=keep)
    for allowed in (mask, keep, keep[::-1].tolist()):  # a mask, sorted indices, any order
        dist, ind = index.kneighbors(Q, k, filter=allowed)
        ref_d, ref_i = reference.kneighbors(Q, k)
        assert_array_equal(ind, keep[ref_i])
        assert_array_equal(dist, ref_d)
    radius = float(np.median(ref_d[:, -1]))
    dists, inds = index.radius_neighbors(Q, radius, filter=mask)
    ref_ds, ref_is = reference.radius_neighbors(Q, radius)
    for d, i, rd, ri in zip(dists, inds, ref_ds, ref_is):
        assert_array_equal(i, keep[ri])
        assert_array_equal(d, rd)


@pytest.mark.parametrize("lists", [False, True])
def test_items_as_queries_with_a_filter(problem, lists):
    """X=None: item i's neighbours among the allowed items other than itself, rows in item order."""
    codebooks, codes, *_ = problem
    index = _index(problem, lists, n_probe=6)
    mask = _masks()["10%"]
    dist, ind = index.kneighbors(None, 3, filter=mask)
    assert dist.shape == (N, 3)
    exact = _index(problem)  # exhaustive, the items' reconstructions as queries
    reconstructed = index.decode(codes)
    d4, i4 = exact.kneighbors(reconstructed, 4, filter=mask)
    for item in range(N):
        keep = i4[item] != item
        expected = i4[item][keep][:3] if not keep.all() else i4[item][:3]
        assert_array_equal(ind[item], expected)
        assert np.allclose(dist[item], d4[item][keep][:3] if not keep.all() else d4[item][:3])
    assert not np.isin(ind, np.flatnonzero(~mask)).any()


@pytest.mark.parametrize("form", ["dense", "sparse", "same_label"])
@pytest.mark.parametrize("lists", [False, True])
def test_per_query_filters_equal_one_search_per_query(problem, form, lists):
    _, _, Q, y, *_ = problem
    index = _index(problem, lists)
    y_q = np.random.default_rng(2).integers(0, 4, len(Q))
    per_query = y[None, :] == y_q[:, None]  # (n_queries, N)
    per_query[3] = False  # a query allowed nothing
    per_query[5, :] = True  # a query allowed everything
    given = {"dense": per_query, "sparse": sp.csr_matrix(per_query), "same_label": SameLabel(y_q)}[form]
    if form == "same_label":
        per_query = y[None, :] == y_q[:, None]
    dist, ind = index.kneighbors(Q, 4, filter=given)
    dists, inds = index.radius_neighbors(Q, 2.0, filter=given)
    for q in range(len(Q)):
        one_d, one_i = index.kneighbors(Q[q : q + 1], 4, filter=per_query[q])
        assert_array_equal(ind[q], one_i[0])
        assert_array_equal(dist[q], one_d[0])
        rd, ri = index.radius_neighbors(Q[q : q + 1], 2.0, filter=per_query[q])
        assert_array_equal(inds[q], ri[0])


def test_fewer_allowed_items_than_k_pad_with_minus_one_and_inf(problem):
    _, _, Q, *_ = problem
    index = _index(problem)
    dist, ind = index.kneighbors(Q, 4, filter=[7, 3])
    assert (np.sort(ind[:, :2], axis=1) == [3, 7]).all()
    assert (ind[:, 2:] == -1).all() and np.isinf(dist[:, 2:]).all()
    dist, ind = index.kneighbors(Q, 2, filter=[])
    assert (ind == -1).all() and np.isinf(dist).all()
    graph = index.kneighbors_graph(Q, 4, mode="distance", filter=[7, 3])
    assert graph.shape == (len(Q), N) and graph.nnz == 2 * len(Q)
    assert set(graph.indices.tolist()) == {3, 7}
    assert all(len(i) == 0 for i in index.radius_neighbors(Q, 1e9, filter=np.zeros(N, bool))[1])


def test_has_label_filters_by_the_stored_labels(problem):
    _, _, Q, y, *_ = problem
    index = _index(problem)
    ind = index.kneighbors(Q, 6, filter=HasLabel([1, 3]), return_distance=False)
    assert np.isin(y[ind], [1, 3]).all()
    assert_array_equal(ind, index.kneighbors(Q, 6, filter=np.isin(y, [1, 3]), return_distance=False))
    multi = AQDNeighbors.from_codes(index.codebooks_, index.codes_, np.eye(4, dtype=int)[y])
    assert_array_equal(multi.kneighbors(Q, 6, filter=HasLabel([1, 3]), return_distance=False), ind)
    same = multi.kneighbors(Q, 3, filter=SameLabel(np.eye(4, dtype=int)[y[:12]]), return_distance=False)
    assert (y[same] == y[:12, None]).all()


def test_a_selective_filter_scans_only_the_allowed_codes(problem, monkeypatch):
    """The cost of a filtered search is that of a search over the allowed items (the codes scanned)."""
    import skdqn.search._index as index_module

    seen = []
    original = index_module.aqd_kneighbors
    monkeypatch.setattr(index_module, "aqd_kneighbors", lambda q, codes, *a, **kw: seen.append(len(codes))
                        or original(q, codes, *a, **kw))
    _, _, Q, *_ = problem
    _index(problem).kneighbors(Q, 3, filter=np.arange(0, N, 50))
    assert seen == [N // 50]


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.ones(N - 1, bool), ValueError, r"shape \(n_samples_fit,\) = \(400,\)"),
        (np.array([0.5, 2.0]), TypeError, "boolean mask or an array of item indices"),
        ([0, N], ValueError, r"in \[0, n_samples_fit=400\)"),
        ([-1], ValueError, r"in \[0, n_samples_fit=400\)"),
        (np.ones((12, N - 1), bool), ValueError, r"shape \(n_queries, n_samples_fit\) = \(12, 400\)"),
        (np.ones((12, N), int), TypeError, "boolean or a scipy sparse matrix"),
        (np.ones((1, 1, 1), bool), ValueError, "1-D .* or 2-D"),
        (SameLabel([0, 1]), ValueError, "one label .* per query"),
    ],
)
def test_bad_filters_are_refused_clearly(problem, bad, error, match):
    _, _, Q, *_ = problem
    with pytest.raises(error, match=match):
        _index(problem).kneighbors(Q, 3, filter=bad)


def test_label_filters_need_labels(problem):
    codebooks, codes, Q, *_ = problem
    index = AQDNeighbors.from_codes(codebooks, codes)
    with pytest.raises(ValueError, match="HasLabel needs an index fitted with labels"):
        index.kneighbors(Q, 3, filter=HasLabel([1]))


def test_groups_put_queries_with_equal_rows_together():
    rows = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], bool)
    groups = check_filter(rows, 3, 3).groups(np.arange(3))
    assert [(g.tolist(), a.tolist()) for g, a in groups] == [([0, 2], [0, 2]), ([1], [1])]


def test_the_retriever_passes_filters_on(small_quantizer, scaled_digits_300):
    from skdqn import Retriever

    X, y = scaled_digits_300[:2]
    retriever = Retriever(small_quantizer).fit(X, y)
    ind = retriever.kneighbors(X[:5], 4, filter=SameLabel(y[:5]), return_distance=False)
    assert (y[ind] == y[:5, None]).all()
    assert all(np.isin(i, np.flatnonzero(y == 3)).all()
               for i in retriever.radius_neighbors(X[:5], 1e9, filter=HasLabel([3]), return_distance=False))
