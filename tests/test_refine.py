"""Re-ranking by exact distance (refine_factor): the kernel against its loop, the index against brute force."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn import AQDNeighbors
from skdqn.search._refine import exact_distances, refine

N, D = 600, 8


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)).astype(np.float32)
    X[:10] = 0.0  # zero rows: exact ties
    X[10:20] = X[20:30]  # duplicates
    return X, rng.normal(size=(15, D)).astype(np.float32)


def _brute(Q, X, k, metric, allowed=None):
    """Exact top-k by a float64 loop, ties by index (the reference)."""
    allowed = np.arange(len(X)) if allowed is None else allowed
    out_d, out_i = [], []
    for q in Q.astype(np.float64):
        v = X[allowed].astype(np.float64)
        d = -(v @ q) if metric == "inner_product" else ((v - q) ** 2).sum(axis=1)
        order = np.lexsort((allowed, d))[:k]
        out_d.append(d[order])
        out_i.append(allowed[order])
    d = np.array(out_d)
    return (np.sqrt(d) if metric == "euclidean" else d), np.array(out_i)


def test_refine_equals_its_reference_loop(data):
    X, Q = data
    rng = np.random.default_rng(1)
    candidates = rng.integers(0, N, size=(len(Q), 12))
    candidates[:, -2:] = -1  # padding
    candidates[0, :4] = [0, 1, 2, 3]  # tied zero rows
    for table in ("sqeuclidean", "inner_product"):
        values = exact_distances(Q, X, candidates, table)
        for q in range(len(Q)):
            for j, i in enumerate(candidates[q]):
                if i < 0:
                    assert values[q, j] == np.inf
                    continue
                x, v = Q[q].astype(float), X[i].astype(float)
                assert values[q, j] == pytest.approx(-(x @ v) if table == "inner_product" else ((x - v) ** 2).sum())
        d, i = refine(Q, X, candidates, 5, table)
        for q in range(len(Q)):
            order = np.lexsort((np.where(candidates[q] < 0, 10**9, candidates[q]), values[q]))[:5]
            assert_array_equal(i[q], candidates[q][order])
            assert_array_equal(d[q], values[q][order].astype(np.float32))


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
@pytest.mark.parametrize("lists", [False, True])
def test_a_factor_covering_every_item_gives_the_exact_neighbours(data, metric, lists):
    X, Q = data
    extra = dict(n_lists=8, n_probe=8) if lists else {}
    index = AQDNeighbors(M=2, K=8, metric=metric, refine_factor=N, random_state=0, **extra).fit(X)
    dist, ind = index.kneighbors(Q, 6)
    ref_d, ref_i = _brute(Q, X, 6, metric)
    assert_array_equal(ind, ref_i)
    assert np.allclose(dist, ref_d, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factor", [1, 2, 5])
def test_refine_reranks_the_aqd_candidates(data, factor):
    X, Q = data
    plain = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    refined = AQDNeighbors(M=2, K=8, random_state=0, refine_factor=factor).fit(X)
    candidates = plain.kneighbors(Q, 4 * factor, return_distance=False)
    d, i = refine(Q, X, candidates, 4, "sqeuclidean")
    dist, ind = refined.kneighbors(Q, 4)
    assert_array_equal(ind, i)
    assert np.allclose(dist, np.sqrt(d))
    exact = _brute(Q, X, 4, "euclidean")[1]
    recall = lambda found: np.mean([len(set(a) & set(b)) for a, b in zip(found, exact)])  # noqa: E731
    assert recall(ind) >= recall(plain.kneighbors(Q, 4, return_distance=False))


def test_refine_composes_with_filters_removal_and_items_as_queries(data):
    X, Q = data
    index = AQDNeighbors(M=2, K=8, random_state=0, refine_factor=N).fit(X)
    allowed = np.arange(0, N, 3)
    assert_array_equal(index.kneighbors(Q, 5, filter=allowed)[1], _brute(Q, X, 5, "euclidean", allowed)[1])
    index.remove(np.arange(1, N, 3))
    alive = np.setdiff1d(np.arange(N), np.arange(1, N, 3))
    assert_array_equal(index.kneighbors(Q, 5)[1], _brute(Q, X, 5, "euclidean", alive)[1])
    dist, ind = index.kneighbors(None, 3)
    for item in alive[:50]:  # each item's exact neighbours among the others
        others = alive[alive != item]
        assert_array_equal(ind[item], _brute(X[item : item + 1], X, 3, "euclidean", others)[1][0])


def test_vectors_grow_with_partial_fit_and_survive_save_load(data, tmp_path):
    X, Q = data
    index = AQDNeighbors(M=2, K=8, random_state=0, refine_factor=4).fit(X[:400])
    index.partial_fit(X[400:])
    assert index._state().vectors.shape == (N, D)
    expected = index.kneighbors(Q, 5)
    for name, mmap in (("i.npz", None), ("folder", "r")):
        loaded = AQDNeighbors.load(index.save(tmp_path / name), mmap_mode=mmap)
        for a, b in zip(loaded.kneighbors(Q, 5), expected):
            assert_array_equal(a, b)


def test_from_codes_takes_vectors_as_they_are(data, tmp_path):
    X, Q = data
    fitted = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    path = tmp_path / "vectors.npy"
    np.save(path, X)
    on_disk = np.load(path, mmap_mode="r")
    index = AQDNeighbors.from_codes(fitted.codebooks_, fitted.codes_, vectors=on_disk, refine_factor=N)
    assert index._state().vectors is on_disk  # not copied
    assert_array_equal(index.kneighbors(Q, 4)[1], _brute(Q, X, 4, "euclidean")[1])


def test_bad_vectors_and_a_missing_refinement_are_refused(data):
    X, Q = data
    fitted = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    with pytest.raises(ValueError, match="vectors, which this index does not hold"):
        fitted.set_params(refine_factor=2).kneighbors(Q, 3)
    fitted.set_params(refine_factor=None)
    bad = X.copy()
    bad[5, 0] = np.nan
    for vectors, error, match in ((X[:-1], ValueError, "shape"), (X.astype(str), TypeError, "numeric"),
                                  (bad, ValueError, "NaN")):
        with pytest.raises(error, match=match):
            AQDNeighbors.from_codes(fitted.codebooks_, fitted.codes_, vectors=vectors)
    with pytest.raises(ValueError, match="refine_factor"):
        AQDNeighbors(refine_factor=0).fit(X)
