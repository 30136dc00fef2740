"""Tests of the inverted lists (skdqn.search._ivf) and of AQDNeighbors with n_lists.

The oracle is the exhaustive search of the same codes: probing every list
gives it exactly (ties included), and probing fewer lists gives the
exhaustive search restricted to the items of the probed lists (a reference
written with a stable argsort here). Fixtures hold overlapping clusters,
duplicates and all-zero rows; lists may be empty or hold one item.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone

from conftest import assert_same_search
from skdqn import AQDNeighbors
from skdqn.search import _tuning
from skdqn.search._ivf import (
    InvertedLists,
    append_to_lists,
    assign_lists,
    build_lists,
    coarse_scores,
    ivf_kneighbors,
    ivf_radius_neighbors,
    make_lists,
    probe_lists,
    train_coarse,
)
from skdqn.search._kernels import aqd_distances
from skdqn.search._search import aqd_kneighbors, scan_blocks
from skdqn.search._tables import CodeQueries, VectorQueries, distance_tables
from skdqn.search._topk import RunningTopK


def clustered(n=800, d=8, n_centers=12, seed=0):
    """Overlapping Gaussian clusters, with duplicates and all-zero rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_centers, d)) * 2.0
    X = centers[rng.integers(0, n_centers, n)] + rng.normal(size=(n, d))
    X[:5] = 0.0
    X[20:40] = X[50]
    y = rng.integers(0, 5, n)
    return X, y


def index_pair(metric="euclidean", n_lists=16, K=16, seed=0, **params):
    X, y = clustered(seed=seed)
    flat = AQDNeighbors(n_neighbors=7, M=4, K=K, metric=metric, random_state=seed, **params).fit(X, y)
    ivf = clone(flat).set_params(n_lists=n_lists).fit(X, y)
    return X, y, flat, ivf


def reference_ivf(index, Q, k):
    """The exhaustive top-k restricted to the items of the probed lists (stable by index)."""
    table = "inner_product" if index.metric == "inner_product" else "sqeuclidean"
    full = aqd_distances(distance_tables(Q, index.codebooks_, table), index.codes_)  # rows: list order
    lists = index._lists()
    scores = coarse_scores(Q, lists.centroids, lists.metric)
    query, probed = probe_lists(scores, lists.sizes, index.n_probe, k)
    item_of_row = lists.ids
    out = []
    for q in range(Q.shape[0]):
        rows = np.concatenate([np.arange(lists.offsets[l], lists.offsets[l + 1]) for l in probed[query == q]])
        order = np.lexsort((item_of_row[rows], full[q, rows]))[:k]
        out.append(item_of_row[rows][order])
    return np.array(out)


# ------------------------------------------------------- the exhaustive oracle
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
@pytest.mark.parametrize("K", [2, 16, 256])
def test_probing_every_list_is_the_exhaustive_search(metric, K):
    X, y, flat, ivf = index_pair(metric, K=K, seed=K)
    assert_array_equal(ivf.codebooks_, flat.codebooks_)  # the same codes
    assert_array_equal(ivf.codes_, flat.codes_[ivf.list_ids_])
    ivf.set_params(n_probe=ivf.n_lists)
    radius = {"euclidean": 1.5, "sqeuclidean": 2.0, "inner_product": -3.0}[metric]
    assert_same_search(ivf, flat, X[:40], radius=radius)
    assert_same_search(ivf, flat, None, radius=radius)  # X=None: every item, itself left out
    assert_same_search(ivf, flat, X[:30], n_neighbors=len(X))  # every item ranked
    assert ivf.score(X[:50], y[:50]) == flat.score(X[:50], y[:50])
    assert ivf.score(X[:50], y[:50], top_k=10) == flat.score(X[:50], y[:50], top_k=10)


def test_ties_are_broken_by_item_index_as_in_the_exhaustive_search():
    # Few distinct codes: many exact ties, spread over the lists.
    rng = np.random.default_rng(1)
    X = rng.integers(0, 3, size=(600, 4)).astype(float)
    flat = AQDNeighbors(n_neighbors=25, M=2, K=4, random_state=0).fit(X)
    ivf = clone(flat).set_params(n_lists=9, n_probe=9).fit(X)
    assert_same_search(ivf, flat, X[:50], radius=1.0)
    assert_same_search(ivf, flat, None)


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
@pytest.mark.parametrize("n_probe", [1, 2, 5])
def test_few_lists_probed_match_the_restricted_reference(metric, n_probe):
    X, _, _, ivf = index_pair(metric, n_lists=20)
    ivf.set_params(n_probe=n_probe)
    Q = X[::37] + 0.3
    dist, ind = ivf.kneighbors(Q)
    assert_array_equal(ind, reference_ivf(ivf, Q, 7))
    table = "inner_product" if metric == "inner_product" else "sqeuclidean"
    exact = aqd_distances(distance_tables(Q, ivf.codebooks_, table), ivf.codes_[np.argsort(ivf.list_ids_)])
    expected = np.take_along_axis(exact, ind, axis=1)
    assert_array_equal(dist, np.sqrt(expected) if metric == "euclidean" else expected)


def test_recall_never_decreases_as_n_probe_grows():
    X, _, flat, ivf = index_pair(n_lists=30)
    Q = X[::11] + 0.5
    truth = flat.kneighbors(Q, n_neighbors=10)[1]
    recalls = []
    for n_probe in range(1, 31):
        got = ivf.set_params(n_probe=n_probe).kneighbors(Q, n_neighbors=10)[1]
        recalls.append(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]))
    assert all(b >= a for a, b in zip(recalls, recalls[1:]))
    assert recalls[0] < 1.0 and recalls[-1] == 1.0


def test_n_probe_takes_effect_without_refitting():
    X, _, flat, ivf = index_pair(n_lists=25)
    codes = ivf.codes_
    one = ivf.set_params(n_probe=1).kneighbors(X[:20] + 0.7)[1]
    ivf.set_params(n_probe=25)
    assert ivf.codes_ is codes
    assert_array_equal(ivf.kneighbors(X[:20] + 0.7)[1], flat.kneighbors(X[:20] + 0.7)[1])
    ivf.set_params(n_probe=1)
    assert_array_equal(ivf.kneighbors(X[:20] + 0.7)[1], one)


# --------------------------------------------------------- degenerate lists
def test_empty_and_one_item_lists_and_short_lists_probe_further():
    X = np.r_[np.zeros((30, 2)), [[50.0, 50.0]]]  # 30 items at 0, one far away
    centroids = np.array([[0.0, 0.0], [50.0, 50.0], [-99.0, 99.0], [99.0, -99.0]])
    index = AQDNeighbors(n_neighbors=5, M=1, K=2, coarse_centroids=centroids, random_state=0).fit(X)
    assert index.coarse_centroids_.shape == (4, 2)
    assert np.diff(index.list_offsets_).tolist() == [30, 1, 0, 0]
    # The far item's list holds one item: its query probes further (n_probe=1)
    # and still gets 5 neighbours, the exhaustive ones.
    flat = AQDNeighbors(n_neighbors=5, M=1, K=2, random_state=0).fit(X)
    assert_array_equal(index.codebooks_, flat.codebooks_)
    dist, ind = index.kneighbors([[50.0, 49.0]])
    assert_array_equal(ind, flat.kneighbors([[50.0, 49.0]])[1])
    assert ind.shape == (1, 5)
    # Queries nearest to an empty list probe the next lists.
    assert_array_equal(index.kneighbors([[-99.0, 99.0]])[1], flat.kneighbors([[-99.0, 99.0]])[1])
    assert_array_equal(index.kneighbors(n_neighbors=30)[1], flat.kneighbors(n_neighbors=30)[1])
    # Radius: exactly the probed lists (approximate by design).
    assert index.radius_neighbors([[50.0, 50.0]], radius=1.0)[1][0].tolist() == [30]
    assert index.radius_neighbors([[-99.0, 99.0]], radius=1e9)[1][0].size == 0  # an empty list


def test_partial_fit_into_empty_lists_equals_fit():
    X, y = clustered(n=900)
    centroids = np.r_[X[:600:50], [[40.0] * 8, [-40.0] * 8]]  # the last two lists start empty
    first = AQDNeighbors(n_neighbors=6, M=4, K=16, coarse_centroids=centroids, random_state=0)
    first.partial_fit(X[:600], y[:600])
    assert (np.diff(first.list_offsets_)[-2:] == 0).all()
    far = np.r_[np.full((3, 8), 40.0), np.full((2, 8), -40.0)]
    X2, y2 = np.r_[X[600:], far], np.r_[y[600:], [1, 2, 3, 4, 0]]
    first.partial_fit(X2, y2)
    assert (np.diff(first.list_offsets_)[-2:] == [3, 2]).all()
    assert first.n_samples_fit_ == 905
    once = AQDNeighbors(
        n_neighbors=6, codebooks=first.codebooks_, coarse_centroids=centroids
    ).fit(np.r_[X[:600], X2], np.r_[y[:600], y2])
    assert_array_equal(first.list_ids_, once.list_ids_)
    assert_array_equal(first.codes_, once.codes_)
    for n_probe in (1, 3):
        first.set_params(n_probe=n_probe)
        once.set_params(n_probe=n_probe)
        assert_same_search(first, once, X[::29], radius=2.0)
        assert_same_search(first, once, None)
    assert first.score(X[:40], y[:40]) == once.score(X[:40], y[:40])


# ------------------------------------------------------------ parallel search
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_sharded_and_parallel_search_identical_to_serial(small_blocks, n_jobs):
    X, y, _, ivf = index_pair(n_lists=20)
    parallel = clone(ivf).set_params(n_jobs=n_jobs).fit(X, y)
    for queries in (X[:3], X[:100]):  # few queries: shards of lists; many: query blocks
        for n_probe in (1, 4, 20):
            ivf.set_params(n_probe=n_probe)
            parallel.set_params(n_probe=n_probe)
            assert_same_search(parallel, ivf, queries, radius=1.5)
    lists, codes = ivf._lists(), ivf.codes_
    source = VectorQueries(X[:9], ivf.codebooks_, "sqeuclidean")
    ref = ivf_kneighbors(source, codes, lists, 12, n_probe=3)
    for n_shards in (2, 3, 7, 20, 50):
        got = ivf_kneighbors(source, codes, lists, 12, n_probe=3, n_shards=n_shards)
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])
        r_got = ivf_radius_neighbors(source, codes, lists, 4.0, n_probe=3, n_shards=n_shards)
        r_ref = ivf_radius_neighbors(source, codes, lists, 4.0, n_probe=3)
        for a, b in zip(r_got[0] + r_got[1], r_ref[0] + r_ref[1]):
            assert_array_equal(a, b)


def test_candidate_chunks_do_not_change_results():
    # Tiny scan blocks: a chunk holds 2 candidates, so lists split into pieces.
    X, _, _, ivf = index_pair(n_lists=10)
    ivf.set_params(n_probe=3)
    ref = ivf.kneighbors(X[:15], n_neighbors=9)
    radius = ivf.radius_neighbors(X[:15], radius=1.2)
    with scan_blocks(query=4, database=1):
        got = ivf.kneighbors(X[:15], n_neighbors=9)
        got_radius = ivf.radius_neighbors(X[:15], radius=1.2)
    assert_array_equal(got[1], ref[1])
    assert_array_equal(got[0], ref[0])
    for a, b in zip(list(got_radius[1]) + list(got_radius[0]), list(radius[1]) + list(radius[0])):
        assert_array_equal(a, b)


# --------------------------------------------------------------- parameters
def test_errors():
    X, y = clustered(n=200)
    with pytest.raises(ValueError, match="n_lists=300 lists need at least as many items"):
        AQDNeighbors(M=2, K=8, n_lists=300).fit(X)
    with pytest.raises(ValueError, match=r"coarse_centroids must have shape \(n_lists, n_features=8\)"):
        AQDNeighbors(M=2, K=8, coarse_centroids=np.zeros((4, 3))).fit(X)
    with pytest.raises(ValueError, match="n_lists=5 but coarse_centroids holds 4"):
        AQDNeighbors(M=2, K=8, n_lists=5, coarse_centroids=np.zeros((4, 8))).fit(X)
    with pytest.raises(ValueError, match="NaN or infinity"):
        AQDNeighbors(M=2, K=8, coarse_centroids=np.full((4, 8), np.nan)).fit(X)
    with pytest.raises(ValueError, match="n_probe"):
        AQDNeighbors(M=2, K=8, n_lists=4, n_probe=0).fit(X)
    index = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"n_probe must be in \[1, n_lists=4\]; got n_probe=5"):
        index.set_params(n_probe=5).kneighbors(X[:2])


def test_same_seed_same_lists_and_codebooks_as_without_lists():
    X, y = clustered(n=700)
    a = AQDNeighbors(M=4, K=16, n_lists=12, random_state=3).fit(X)
    b = AQDNeighbors(M=4, K=16, n_lists=12, random_state=3).fit(X)
    assert_array_equal(a.coarse_centroids_, b.coarse_centroids_)
    assert_array_equal(a.list_ids_, b.list_ids_)
    flat = AQDNeighbors(M=4, K=16, random_state=3).fit(X)
    assert_array_equal(a.codebooks_, flat.codebooks_)


def test_refit_without_lists_clears_them():
    X, y = clustered(n=300)
    index = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X)
    index.set_params(n_lists=None).fit(X)
    assert index.coarse_centroids_ is None and index.list_ids_ is None
    assert_same_search(index, AQDNeighbors(M=2, K=8, random_state=0).fit(X), X[:5])


# --------------------------------------------------------------- the kernels
def test_coarse_scores_and_assignment():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(300, 6)).astype(np.float32)
    C = rng.normal(size=(17, 6)).astype(np.float32)
    for metric in ("l2", "inner_product"):
        full = coarse_scores(V, C, metric)
        exact = ((V[:, None] - C[None]) ** 2).sum(-1) - (V**2).sum(1)[:, None] if metric == "l2" else -(V @ C.T)
        np.testing.assert_allclose(full, exact, rtol=1e-4, atol=1e-4)
        for rows in (slice(0, 1), slice(7, 100)):  # a query's scores do not depend on the others
            assert_array_equal(coarse_scores(V[rows], C, metric), full[rows])
        assert_array_equal(assign_lists(V, C, metric), np.argmin(exact, axis=1))


def test_probe_lists_matches_a_loop():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(40, 9)).astype(np.float32)  # ties
    sizes = rng.integers(0, 4, size=9)
    for n_probe in (1, 3, 9):
        for k in (0, 1, 6, 100):
            query, lists = probe_lists(scores, sizes, n_probe, k)
            assert (np.diff(query) >= 0).all()
            for q in range(40):
                order = np.argsort(scores[q], kind="stable")
                need = n_probe
                while need < 9 and sizes[order[:need]].sum() < k:
                    need += 1
                assert_array_equal(lists[query == q], order[:need])


def test_build_and_append_lists():
    order, offsets = build_lists(np.array([2, 0, 2, 0, 1]), 4)
    assert order.tolist() == [1, 3, 4, 0, 2] and offsets.tolist() == [0, 2, 3, 5, 5]
    lists = InvertedLists(np.array([[0.0], [5.0], [9.0], [20.0]], np.float32), offsets, order, "l2")
    codes = np.arange(5)[order, None]  # the code of item i is i
    new, new_codes = append_to_lists(lists, codes, np.array([[5], [6], [7]]), np.array([[19.0], [0.1], [0.2]]))
    assert new.offsets.tolist() == [0, 4, 5, 7, 8]
    assert new.ids.tolist() == [1, 3, 6, 7, 4, 0, 2, 5]
    assert_array_equal(new_codes.ravel(), new.ids)


def test_coarse_centroids_come_from_the_one_lloyd_loop():
    # train_coarse: a random start among the rows, then skdqn._pq.lloyd in one space.
    from sklearn.utils import check_random_state

    from skdqn._pq import lloyd

    X, _ = clustered(n=700, d=6)
    rng = check_random_state(3)
    sample = X[np.sort(rng.choice(700, 256 * 2, replace=False))].astype(np.float32)  # max 256 per list
    start = sample[np.sort(rng.choice(sample.shape[0], 2, replace=False))]
    expected, _ = lloyd(sample[:, None, :], start[None], n_iter=10)
    C = train_coarse(X, 2, random_state=3)
    assert_array_equal(C, expected[0])
    assert_array_equal(C, train_coarse(X, 2, random_state=3))  # same random_state, same centroids
    X0 = X.copy()
    assert_array_equal(assign_lists(X, C), assign_lists(X.astype(np.float32), C))
    assert_array_equal(X, X0)
    with pytest.raises(ValueError, match="at least n_lists"):
        train_coarse(X[:3], 4)


def test_assign_lists_exact_in_blocks(monkeypatch):
    """The nearest centroid exactly (ties to the smaller list), whatever the block size."""
    import skdqn._pq as pq

    rng = np.random.default_rng(5)
    C = rng.integers(-2, 3, size=(40, 5)).astype(np.float32)
    C[7] = C[3]
    V = np.vstack([rng.normal(size=(300, 5)), (C[:20] + C[20:]) / 2, C, np.zeros((2, 5))])
    exact = ((V[:, None, :] - C[None].astype(np.float64)) ** 2).sum(axis=2)
    for floats in (1, 333, 1 << 20):
        monkeypatch.setattr(pq, "_SCORE_FLOATS", floats)
        assert_array_equal(assign_lists(V, C), np.argmin(exact, axis=1))


def test_train_coarse_on_data_far_from_the_origin_finds_the_clusters():
    X, _ = clustered(n=600, d=8, n_centers=4, seed=1)
    for offset in (0.0, 1e4):
        C = train_coarse(X + offset, 4, random_state=0)
        lists = assign_lists(X + offset, C)
        exact = train_coarse(X, 4, random_state=0)
        inertia = ((X + offset - C[lists]) ** 2).sum()
        reference = ((X - exact[assign_lists(X, exact)]) ** 2).sum()
        assert inertia <= 1.05 * reference  # the centring keeps the float32 scores meaningful


def test_train_coarse_and_make_lists_from_codes():
    X, _ = clustered(n=800)
    C = train_coarse(X, 10, random_state=0)
    assert C.shape == (10, 8) and C.dtype == np.float32
    assert_array_equal(C, train_coarse(X, 10, random_state=0))
    index = AQDNeighbors(M=4, K=16, random_state=0).fit(X)
    decoded = CodeQueries(index.codes_, index.codebooks_, "sqeuclidean")
    from_codes = make_lists(decoded, 10, C, "l2")
    from_vectors = make_lists(index.decode(index.codes_), 10, C, "l2")
    assert_array_equal(from_codes.ids, from_vectors.ids)
    given = make_lists(decoded, 10, None, "l2", assignments=assign_lists(index.decode(index.codes_), C))
    assert_array_equal(given.ids, from_codes.ids)
    assert given.centroids.shape == (10, 8)


def test_ivf_needs_vectors():
    lists = InvertedLists(np.zeros((1, 2), np.float32), np.array([0, 3]), np.arange(3), "l2")
    with pytest.raises(TypeError, match="query vectors"):
        ivf_kneighbors(np.zeros((1, 1, 4), np.float32), np.zeros((3, 1), np.uint8), lists, 1)


def test_with_deep_quantizer_codebooks(small):
    from skdqn import DeepQuantizer

    X, X_q, y, y_q = small
    dq = DeepQuantizer(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=2,
                       warmup_epochs=1, random_state=0).fit(X, y)
    Z = dq.transform(X)
    index = AQDNeighbors(n_neighbors=5, codebooks=dq, n_lists=8, n_probe=8).fit(Z, y)
    flat = AQDNeighbors(n_neighbors=5, codebooks=dq).fit(Z, y)
    assert_array_equal(index.codes_, dq.codes_[index.list_ids_])
    assert_same_search(index, flat, dq.transform(X_q))
    assert index.score(dq.transform(X_q), y_q) == pytest.approx(dq.score(X_q, y_q))
    source = VectorQueries(dq.transform(X_q), dq.codebooks_, "sqeuclidean")
    assert_array_equal(ivf_kneighbors(source, index.codes_, index._lists(), 5, n_probe=8)[1],
                       aqd_kneighbors(source, dq.codes_, 5)[1])


# ------------------------------------------------ narrow and wide list scans
@pytest.mark.parametrize("narrow", [0, 2, 10**9])
@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_narrow_and_wide_paths_give_the_same_results(monkeypatch, narrow, metric):
    # narrow=0: every list summed once for all its queries; 10**9: every (query,
    # list) pair summed on its own into flat chunks; 2: a mixture.
    X, _, flat, ivf = index_pair(metric, n_lists=20)
    Q = X[::7] + 0.2
    ivf.set_params(n_probe=3)
    expected = reference_ivf(ivf, Q, 7)
    monkeypatch.setattr(_tuning, "NARROW", narrow)
    assert_array_equal(ivf.kneighbors(Q)[1], expected)
    ivf.set_params(n_probe=20)
    assert_same_search(ivf, flat, Q, radius=1.0 if metric == "euclidean" else -3.0)
    assert_same_search(ivf, flat, None)


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_the_numpy_fallback_of_the_list_sums_gives_the_same_search(monkeypatch, metric):
    import skdqn.search._csr as csr

    X, _, flat, ivf = index_pair(metric, n_lists=20)
    Q = X[::7] + 0.2
    radius = 1.0 if metric == "euclidean" else -3.0
    for n_probe in (3, 20):
        ivf.set_params(n_probe=n_probe)
        expected = ivf.kneighbors(Q), ivf.radius_neighbors(Q, radius=radius), ivf.kneighbors()
        with monkeypatch.context() as patch:
            patch.setattr(csr, "BACKEND", "numpy")
            got = ivf.kneighbors(Q), ivf.radius_neighbors(Q, radius=radius), ivf.kneighbors()
        for a, b in ((expected[0], got[0]), (expected[2], got[2])):
            assert_array_equal(a[0], b[0])
            assert_array_equal(a[1], b[1])
        for a, b in zip(expected[1][1], got[1][1]):
            assert_array_equal(a, b)
        for a, b in zip(expected[1][0], got[1][0]):
            assert_array_equal(a, b)


@pytest.mark.parametrize("narrow", [0, 10**9])
def test_lists_summed_a_few_rows_per_call_change_nothing(monkeypatch, narrow):
    X, _, flat, ivf = index_pair(n_lists=10)
    Q = X[::9] + 0.1
    ivf.set_params(n_probe=4)
    expected = ivf.kneighbors(Q), ivf.radius_neighbors(Q, radius=1.0)
    monkeypatch.setattr(_tuning, "CALL_ENTRIES", 4 * 3)  # M = 4: 3 rows per call
    monkeypatch.setattr(_tuning, "NARROW", narrow)
    got = ivf.kneighbors(Q), ivf.radius_neighbors(Q, radius=1.0)
    assert_array_equal(got[0][0], expected[0][0])
    assert_array_equal(got[0][1], expected[0][1])
    for a, b in zip(list(got[1][0]) + list(got[1][1]), list(expected[1][0]) + list(expected[1][1])):
        assert_array_equal(a, b)


def _lists_probed_by(counts, offsets, nq, rng):
    """(query, probed) pairs: list l probed by counts[l] distinct queries."""
    query = np.concatenate([rng.choice(nq, c, replace=False) for c in counts])
    return query, np.repeat(np.arange(len(counts)), counts)


def test_narrow_chunks_hold_each_pair_as_one_run():
    # Pairs of lists probed by 1 to 3 queries, a list longer than the budget,
    # an empty list: every run holds exactly the AQD of its rows, chunks stay
    # within the budget, and every (query, row) pair is summed once.
    from skdqn.search._ivf import _narrow_and_wide, _narrow_chunks

    rng = np.random.default_rng(8)
    nq, M, K, budget = 12, 3, 16, 64
    tables = rng.random((nq, M, K), dtype=np.float32)
    codes = rng.integers(0, K, size=(200, M)).astype(np.uint8)
    offsets = np.array([0, 10, 40, 40, 41, 200])
    pairs = _lists_probed_by([1, 3, 2, 1, 2], offsets, nq, rng)
    narrow, wide = _narrow_and_wide(pairs, offsets, 0)
    assert wide == [] and len(narrow) == 4  # the empty list is dropped
    full = aqd_distances(tables, codes)  # (nq, 200)
    seen = []
    for dist, query, first, pos, length in _narrow_chunks(tables.reshape(nq, -1), codes, narrow, budget):
        assert dist.size <= budget and dist.size == length.sum()
        assert_array_equal(pos, np.cumsum(length) - length)
        for q, f, p, n in zip(query, first, pos, length):
            assert_array_equal(dist[p : p + n], full[q, f : f + n])
            seen.extend((int(q), r) for r in range(f, f + n))
    expected = [(int(q), r) for q, l in zip(*pairs) for r in range(offsets[l], offsets[l + 1])]
    assert sorted(seen) == sorted(expected)


@pytest.mark.parametrize("rows_max_width", [0, 10, 10**9])
def test_wide_pieces_sum_each_list_against_its_own_queries(monkeypatch, rows_max_width):
    # Tables as rows of the query-major array (transposed), as columns of
    # one (M * K, nq) copy, or a mixture.
    import skdqn.search._ivf as ivf_module

    monkeypatch.setattr(_tuning, "ROWS_MAX_WIDTH", rows_max_width)
    rng = np.random.default_rng(9)
    nq, M, K = 40, 3, 16
    tables = rng.random((nq, M, K), dtype=np.float32)
    codes = rng.integers(0, K, size=(90, M)).astype(np.uint8)
    offsets = np.array([0, 10, 40, 41, 90])
    pairs = _lists_probed_by([9, 12, 30, 40], offsets, nq, rng)
    narrow, wide = ivf_module._narrow_and_wide(pairs, offsets, 0)
    assert narrow == [] and len(wide) == 4
    full = aqd_distances(tables, codes)
    seen = []
    scan_tables = lambda: np.ascontiguousarray(tables.reshape(nq, -1).T)  # noqa: E731
    for cols, dist, rows in ivf_module._wide_pieces(tables.reshape(nq, -1), codes, wide, 64, scan_tables):
        assert dist.shape == (rows.stop - rows.start, cols.size) and dist.size <= max(64, cols.size)
        assert_array_equal(dist, full[cols][:, rows].T)
        seen.append((int(cols.size), rows.start, rows.stop))
    assert {c for c, _, _ in seen} == {9, 12, 30, 40}
    assert sum(b - a for _, a, b in seen) == 90


@pytest.mark.parametrize("narrow", [0, 10**9])
def test_paths_keep_ties_by_item_index_across_lists(monkeypatch, narrow):
    # Lists hold items of interleaved indices and many equal distances: the
    # k-th distance bound must keep ties (ids are not monotonic across lists).
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, size=(500, 4)).astype(float)
    flat = AQDNeighbors(n_neighbors=30, M=2, K=4, random_state=0).fit(X)
    ivf = clone(flat).set_params(n_lists=7, n_probe=7).fit(X)
    monkeypatch.setattr(_tuning, "NARROW", narrow)
    with scan_blocks(query=16, database=64):  # small chunks and frequent pool folds
        assert_same_search(ivf, flat, X[:80])
        assert_same_search(ivf, flat, X[:80], n_neighbors=200)


@pytest.mark.parametrize("sample", [1, 3, 10, 100])
def test_chunk_bounds_never_fall_below_the_kth_of_a_query(monkeypatch, sample):
    import skdqn.search._ivf as ivf_module

    monkeypatch.setattr(_tuning, "BOUND_SAMPLE", sample)
    rng = np.random.default_rng(sample)
    length = np.array([1, 3, 4, 9, 50, 2, 6])
    query = np.array([0, 1, 1, 2, 3, 4, 4])  # queries 1 and 4: two pairs each; query 5: none
    pos = np.cumsum(length) - length
    dist = rng.integers(0, 6, length.sum()).astype(np.float32)  # many ties
    top = RunningTopK(6, 3, limit=100)
    top.kth[3] = 2.0  # a running k-th already known
    bound = ivf_module._chunk_bounds(dist, query, pos, length, top)
    for q in range(6):
        runs = [dist[p : p + n] for p, n, qq in zip(pos, length, query) if qq == q]
        every = np.concatenate(runs) if runs else np.empty(0, np.float32)
        if every.size >= 3:
            assert bound[q] >= min(np.sort(every)[2], top.kth[q])
        own = [np.sort(r[: max(3, sample)])[2] for r in runs if r.size >= 3]
        assert bound[q] == min(own + [top.kth[q]])


def test_probing_in_chunks_of_queries_changes_nothing(monkeypatch):
    X, _, _, ivf = index_pair(n_lists=20)
    ivf.set_params(n_probe=3)
    Q = X[::5] + 0.1
    expected = ivf.kneighbors(Q, n_neighbors=9)
    radius = ivf.radius_neighbors(Q, radius=1.0)
    monkeypatch.setattr(_tuning, "PROBE_FLOATS", 45)  # 2 queries' scores at a time
    got = ivf.kneighbors(Q, n_neighbors=9)
    assert_array_equal(got[0], expected[0])
    assert_array_equal(got[1], expected[1])
    for a, b in zip(ivf.radius_neighbors(Q, radius=1.0)[1], radius[1]):
        assert_array_equal(a, b)


# ---------------------------------------------------- other kernels on lists
KERNELS = [
    pytest.param(("numpy", {}), id="numpy-per-list"),
    pytest.param(("numpy", {"fast": False}), id="numpy-float32-per-list"),
    pytest.param(("torch", {"device": "cpu"}), id="torch-cpu"),
    pytest.param(("torch", {"device": "cpu", "fast": False}), id="torch-cpu-float32"),
]


def _make_kernel(spec):
    name, options = spec
    if name == "torch":
        pytest.importorskip("torch")
        from skdqn.search._torch_kernel import TorchKernel

        return TorchKernel(**options)
    from skdqn.search._search import get_kernel

    return get_kernel(name, **options)


@pytest.mark.parametrize("spec", KERNELS)
@pytest.mark.parametrize("metric, K", [("euclidean", 16), ("inner_product", 16), ("sqeuclidean", 256)])
def test_a_kernel_scanning_each_list_gives_the_numpy_list_scan(spec, metric, K):
    """The per-list kernel path against the numpy scan (grouped and flat) and the reference."""
    kernel = _make_kernel(spec)
    X, _, _, ivf = index_pair(metric=metric, n_lists=16, K=K)
    lists, codes = ivf._lists(), ivf.codes_
    table = "inner_product" if metric == "inner_product" else "sqeuclidean"
    for n_probe in (1, 3, 16):
        ivf.set_params(n_probe=n_probe)
        for source in (VectorQueries(X[:40], ivf.codebooks_, table), CodeQueries(codes[:25], ivf.codebooks_, table)):
            ref = ivf_kneighbors(source, codes, lists, 9, n_probe=n_probe)
            for n_shards in (None, 3):
                got = ivf_kneighbors(source, codes, lists, 9, n_probe=n_probe, kernel=kernel, n_shards=n_shards)
                assert_array_equal(got[1], ref[1])
                assert_array_equal(got[0], ref[0])
            threshold = float(np.median(ref[0]))
            r_ref = ivf_radius_neighbors(source, codes, lists, threshold, n_probe=n_probe)
            r_got = ivf_radius_neighbors(source, codes, lists, threshold, n_probe=n_probe, kernel=kernel)
            for a, b in zip(r_got[0] + r_got[1], r_ref[0] + r_ref[1]):
                assert_array_equal(a, b)
    ivf.set_params(n_probe=3)
    expected = reference_ivf(ivf, X[:40].astype(np.float32), 9)
    got = ivf_kneighbors(VectorQueries(X[:40], ivf.codebooks_, table), codes, lists, 9, n_probe=3, kernel=kernel)
    assert_array_equal(got[1], expected)


@pytest.mark.parametrize("spec", KERNELS)
def test_a_kernel_on_lists_keeps_exact_ties_by_item_index(spec, small_blocks):
    """Integer codebooks: exact float sums, many ties across and within lists, tiny kernel chunks."""
    from conftest import integer_problem

    kernel = _make_kernel(spec)
    Q, codebooks, codes = integer_problem(seed=3, n=300, nq=30)
    rng = np.random.default_rng(3)
    lists_of = rng.integers(0, 7, codes.shape[0])
    lists_of[10:20] = rng.integers(0, 7, 10)  # the duplicates spread over several lists
    index = AQDNeighbors.from_codes(codebooks, codes, list_assignments=lists_of, n_lists=7, n_neighbors=12)
    lists, stored = index._lists(), index.codes_
    source = VectorQueries(Q, codebooks, "sqeuclidean")
    for n_probe in (1, 4, 7):
        ref = ivf_kneighbors(source, stored, lists, 12, n_probe=n_probe)
        got = ivf_kneighbors(source, stored, lists, 12, n_probe=n_probe, kernel=kernel)
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])
    full = aqd_distances(distance_tables(Q, codebooks), codes)  # every list probed: the exhaustive order
    order = np.argsort(full, axis=1, kind="stable")[:, :12]
    assert_array_equal(got[1], order)


def test_backend_torch_with_lists_gives_the_numpy_results(small_blocks):
    pytest.importorskip("torch")
    X, y, _, ivf = index_pair(n_lists=12)
    torch_ivf = clone(ivf).set_params(backend="torch", device="cpu", n_jobs=2).fit(X, y)
    for n_probe in (1, 12):
        ivf.set_params(n_probe=n_probe)
        torch_ivf.set_params(n_probe=n_probe)
        assert_same_search(torch_ivf, ivf, X[:60], radius=1.5)
    ivf.set_params(n_probe=3)
    torch_ivf.set_params(n_probe=3)
    assert_same_search(torch_ivf, ivf, None, radius=1.5)
    graph = torch_ivf.kneighbors_graph(X[:30], mode="distance")
    assert (graph != ivf.kneighbors_graph(X[:30], mode="distance")).nnz == 0
    assert torch_ivf.score(X, y) == ivf.score(X, y)


class _KernelElsewhere:
    """The torch CPU kernel, presented as a kernel on another device (as on CUDA); counts its calls."""

    def __init__(self):
        from skdqn.search._torch_kernel import TorchKernel

        self.kernel, self.device, self.calls = TorchKernel("cpu"), "elsewhere", 0

    def kneighbors(self, *args, **kwargs):
        self.calls += 1
        return self.kernel.kneighbors(*args, **kwargs)

    def radius_neighbors(self, *args, **kwargs):
        self.calls += 1
        return self.kernel.radius_neighbors(*args, **kwargs)


def test_lists_of_a_torch_index_on_the_cpu_take_the_numpy_scan(monkeypatch, small_blocks):
    # On the CPU numpy's list scan serves backend="torch"; a kernel on another
    # device (CUDA) scans the probed lists itself, with the same results.
    pytest.importorskip("torch")
    X, y, _, ivf = index_pair(n_lists=12)
    torch_ivf = clone(ivf).set_params(backend="torch", device="cpu").fit(X, y)
    assert torch_ivf._list_kernel() is None
    elsewhere = _KernelElsewhere()
    monkeypatch.setattr(type(torch_ivf), "_kernel", lambda self: elsewhere)
    assert torch_ivf._list_kernel() is elsewhere
    for n_probe in (1, 12):
        ivf.set_params(n_probe=n_probe)
        torch_ivf.set_params(n_probe=n_probe)
        assert_same_search(torch_ivf, ivf, X[:60], radius=1.5)
    assert elsewhere.calls > 0


def _has_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="no CUDA device on this machine: the CUDA scan of inverted lists is not tested")
def test_backend_torch_on_cuda_with_lists():
    X, y, _, ivf = index_pair(n_lists=12)
    cuda_ivf = clone(ivf).set_params(backend="torch", device="cuda").fit(X, y)
    for n_probe in (1, 5):
        ivf.set_params(n_probe=n_probe)
        cuda_ivf.set_params(n_probe=n_probe)
        d_ref, i_ref = ivf.kneighbors(X[:60])
        d_got, i_got = cuda_ivf.kneighbors(X[:60])
        assert_array_equal(i_got, i_ref)
        np.testing.assert_allclose(d_got, d_ref, rtol=1e-5, atol=1e-5)
