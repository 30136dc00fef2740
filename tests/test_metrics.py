"""Tests of skdqn.metrics: retrieval metrics of the deep hashing literature."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score, pairwise_distances
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdqn import metrics
from skdqn.search import _tuning
from skdqn.metrics import (
    average_precision_scores,
    map_scorer,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    recall_at_k,
)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def brute_force_ap(rel_rows, n_relevant=None):
    """AP of each row of a ranked 0/1 relevance matrix, by the definition."""
    out = []
    for i, row in enumerate(rel_rows):
        hits, total = 0, 0.0
        for position, r in enumerate(row, start=1):
            if r:
                hits += 1
                total += hits / position
        denominator = hits if n_relevant is None else n_relevant[i]
        out.append(total / denominator if denominator else 0.0)
    return np.array(out)


def shares_label(q, d):
    q, d = np.asarray(q), np.asarray(d)
    if q.ndim == 1:
        return q[:, None] == d[None, :]
    return (q.astype(int) @ d.astype(int).T) > 0


def random_problem(seed, n_queries, n_database, multilabel, n_classes=4):
    rng = np.random.default_rng(seed)
    if multilabel:
        yq = rng.random((n_queries, n_classes)) < 0.4
        yd = rng.random((n_database, n_classes)) < 0.4
    else:
        yq = rng.integers(0, n_classes, n_queries)
        yd = rng.integers(0, n_classes, n_database)
    distances = rng.random((n_queries, n_database))
    return yq, yd, distances


# --------------------------------------------------------------------------
# Hand-computed average precision
# --------------------------------------------------------------------------


def test_ap_known_relevance_pattern():
    # relevance pattern [1, 0, 1, 0]
    ap = average_precision_scores([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]])
    assert ap.shape == (1,) and ap.dtype == np.float64
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    ap = average_precision_scores([0], [0, 1, 0, 1], distances=[[0.1, 0.2, 0.3, 0.4]])
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # reversed ranking: pattern [0, 1, 0, 1]
    ap = average_precision_scores([0], [0, 1, 0, 1], ranking=[[3, 2, 1, 0]])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_ties_in_distances_broken_by_database_index():
    # All tied: ranking 0, 1, 2, 3 -> pattern [1, 0, 0, 0].
    ap = average_precision_scores([0], [0, 1, 1, 1], distances=[[1.0, 1.0, 1.0, 1.0]])
    assert ap[0] == 1.0
    ap = average_precision_scores([0], [1, 1, 1, 0], distances=[[1.0, 1.0, 1.0, 1.0]])
    assert ap[0] == pytest.approx(1 / 4)
    # distances [0.2, 0.1, 0.2, 0.1] -> ranking 1, 3, 0, 2 -> pattern [0, 1, 1, 0]
    ap = average_precision_scores([0], [0, 1, 1, 0], distances=[[0.2, 0.1, 0.2, 0.1]])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # -0.0 and 0.0 tie, as in np.argsort: ranking 0, 1 -> pattern [0, 1]
    ap = average_precision_scores([0], [1, 0], distances=[[0.0, -0.0]])
    assert ap[0] == pytest.approx(1 / 2)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8]
)
def test_stable_argsort_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        values = rng.integers(-3, 4, (7, 50)).astype(dtype)
        values[0, :6] = [0.0, -0.0, np.inf, -np.inf, 0.0, -0.0]
        values[1] = rng.standard_normal(50)  # no ties
        values[2] = rng.standard_normal(50) * 1e-30 + 1.0  # float64: ties after rounding to float32
    elif np.dtype(dtype).kind == "u":
        values = rng.integers(0, 4, (7, 50)).astype(dtype)
    else:
        values = rng.integers(-3, 4, (7, 50)).astype(dtype)
        if np.dtype(dtype).itemsize == 8:
            values[3] = 2**40 + rng.integers(0, 3, 50)  # not exact in float32
    expected = np.argsort(values, axis=1, kind="stable")
    for depth in (1, 7, 24, 25, 50):
        got = metrics._stable_argsort(values, depth)
        np.testing.assert_array_equal(got, expected[:, :depth])


def test_float64_distances_not_exact_in_float32():
    # Distinct in float64, equal once rounded to float32: the order must follow float64.
    base = 1.0
    distances = np.array([[base + 2e-12, base + 1e-12, base]])
    ap = average_precision_scores([0], [1, 1, 0], distances=distances)
    assert ap[0] == 1.0


def test_query_without_relevant_item_gets_zero():
    ap = average_precision_scores([0, 2], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]] * 2)
    assert ap[0] == pytest.approx(5 / 6)
    assert ap[1] == 0.0
    ap_all = average_precision_scores(
        [0, 2], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]] * 2, normalize="all"
    )
    assert ap_all[1] == 0.0
    # relevant items exist, but none in the top k
    assert average_precision_scores([0], [1, 0], ranking=[[0]])[0] == 0.0
    assert mean_average_precision([0, 2], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]] * 2) == (
        pytest.approx(5 / 12)
    )


def test_multilabel_indicators():
    query = [[1, 0, 1]]
    database = [[0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0]]
    # pattern [0, 1, 1, 0]
    ap = average_precision_scores(query, database, ranking=[[0, 1, 2, 3]])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    ap = average_precision_scores(
        np.array(query, dtype=bool), np.array(database, dtype=bool), distances=[[0, 1, 2, 3]]
    )
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_multilabel_many_labels_uses_several_words():
    rng = np.random.default_rng(3)
    yq = rng.random((5, 150)) < 0.02
    yd = rng.random((40, 150)) < 0.02
    yd[:, 149] = yq[0, 149] = True  # the last word matters
    distances = rng.random((5, 40))
    ranking = np.argsort(distances, axis=1, kind="stable")
    expected = brute_force_ap(np.take_along_axis(shares_label(yq, yd), ranking, axis=1))
    np.testing.assert_allclose(average_precision_scores(yq, yd, distances=distances), expected)


def test_top_k_larger_and_smaller():
    labels_q, labels_d, ranking = [0], [0, 1, 0, 1], [[0, 1, 2, 3]]
    full = average_precision_scores(labels_q, labels_d, ranking)
    np.testing.assert_array_equal(average_precision_scores(labels_q, labels_d, ranking, top_k=4), full)
    np.testing.assert_array_equal(
        average_precision_scores(labels_q, labels_d, distances=[[0, 1, 2, 3]], top_k=4), full
    )
    # Beyond the ranking: refused (issue 11), not silently the whole ranking.
    for top_k in (5, 1000):
        with pytest.raises(ValueError, match=rf"top_k={top_k} is larger than the ranking \(4 items"):
            average_precision_scores(labels_q, labels_d, ranking, top_k=top_k)
        with pytest.raises(ValueError, match=rf"top_k={top_k} is larger than the database \(4 items"):
            average_precision_scores(labels_q, labels_d, distances=[[0, 1, 2, 3]], top_k=top_k)
    # top 2: pattern [1, 0]
    assert average_precision_scores(labels_q, labels_d, ranking, top_k=2)[0] == 1.0
    assert average_precision_scores(
        labels_q, labels_d, ranking, top_k=2, normalize="all"
    )[0] == pytest.approx(1 / 2)
    # top 3: both relevant items retrieved, the two normalizations agree
    for normalize in ("retrieved", "all"):
        assert average_precision_scores(
            labels_q, labels_d, ranking, top_k=3, normalize=normalize
        )[0] == pytest.approx((1 + 2 / 3) / 2)
    # a ranking shorter than the database, top_k beyond it: refused
    assert average_precision_scores(labels_q, labels_d, [[1, 0]], top_k=2)[0] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match=r"top_k=10 is larger than the ranking \(2 items per query\)"):
        mean_average_precision(labels_q, labels_d, [[1, 0]], top_k=10)


def test_normalize_all_vs_retrieved():
    # ranking [1, 0] of [0, 1, 0, 1] for query 0: pattern [0, 1]; 2 relevant in database
    retrieved = average_precision_scores([0], [0, 1, 0, 1], [[1, 0]])
    everything = average_precision_scores([0], [0, 1, 0, 1], [[1, 0]], normalize="all")
    assert retrieved[0] == pytest.approx(1 / 2)
    assert everything[0] == pytest.approx(1 / 4)
    assert mean_average_precision([0], [0, 1, 0, 1], [[1, 0]], normalize="all") == (
        pytest.approx(1 / 4)
    )


def test_string_and_object_labels():
    ap = average_precision_scores(["cat"], ["cat", "dog", "cat", "dog"], [[0, 1, 2, 3]])
    assert ap[0] == pytest.approx(5 / 6)
    ap = average_precision_scores(
        np.array(["cat"], dtype=object), ["dog", "cat"], [[0, 1]]
    )
    assert ap[0] == pytest.approx(1 / 2)


def test_mean_average_precision_is_the_mean():
    yq, yd, distances = random_problem(0, 9, 30, multilabel=False)
    ap = average_precision_scores(yq, yd, distances=distances, top_k=7)
    value = mean_average_precision(yq, yd, distances=distances, top_k=7)
    assert isinstance(value, float)
    assert value == pytest.approx(ap.mean())


# --------------------------------------------------------------------------
# Agreement with references
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_queries, n_database", [(1, 5), (7, 40), (20, 200)])
@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalize_all_matches_sklearn(seed, n_queries, n_database, multilabel, dtype):
    yq, yd, distances = random_problem(seed, n_queries, n_database, multilabel)
    distances = distances.astype(dtype)
    assert all(len(np.unique(row)) == n_database for row in distances)  # no ties
    rel = shares_label(yq, yd)
    ap = average_precision_scores(yq, yd, distances=distances, normalize="all")
    for i in range(n_queries):
        if rel[i].any():
            expected = average_precision_score(rel[i], -distances[i].astype(np.float64))
            assert ap[i] == pytest.approx(expected, rel=1e-12)
        else:
            assert ap[i] == 0.0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_queries=st.integers(1, 6),
    n_database=st.integers(1, 25),
    n_levels=st.integers(1, 5),
    multilabel=st.booleans(),
    top_k=st.one_of(st.none(), st.integers(1, 30)),
    normalize=st.sampled_from(["retrieved", "all"]),
)
def test_matches_definition(seed, n_queries, n_database, n_levels, multilabel, top_k, normalize):
    yq, yd, _ = random_problem(seed, n_queries, n_database, multilabel, n_classes=3)
    rng = np.random.default_rng(seed)
    distances = rng.integers(0, n_levels, (n_queries, n_database)).astype(float)  # many ties
    ranking = np.argsort(distances, axis=1, kind="stable")
    rel = shares_label(yq, yd)
    ranked = np.take_along_axis(rel, ranking, axis=1)[:, :top_k]
    n_relevant = rel.sum(axis=1) if normalize == "all" else None
    expected = brute_force_ap(ranked, n_relevant)
    for given_ in ({"distances": distances}, {"ranking": ranking}):
        if top_k is not None and top_k > n_database:
            with pytest.raises(ValueError, match=f"top_k={top_k} is larger than"):
                average_precision_scores(yq, yd, top_k=top_k, normalize=normalize, **given_)
            continue
        ap = average_precision_scores(yq, yd, top_k=top_k, normalize=normalize, **given_)
        np.testing.assert_allclose(ap, expected, rtol=1e-12)


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("top_k", [None, 1, 13, 60])
@pytest.mark.parametrize("normalize", ["retrieved", "all"])
def test_ranking_and_distances_agree(multilabel, top_k, normalize):
    yq, yd, distances = random_problem(1, 15, 60, multilabel)
    distances = np.round(distances * 5)  # duplicate distances
    ranking = np.argsort(distances, axis=1, kind="stable")
    by_distances = average_precision_scores(
        yq, yd, distances=distances, top_k=top_k, normalize=normalize
    )
    by_ranking = average_precision_scores(yq, yd, ranking, top_k=top_k, normalize=normalize)
    np.testing.assert_allclose(by_ranking, by_distances, rtol=1e-12)
    # a truncated ranking (e.g. from a top-k search) gives the same AP@k
    if top_k is not None and top_k < 60:
        truncated = average_precision_scores(
            yq, yd, ranking[:, :top_k], normalize=normalize
        )
        np.testing.assert_allclose(truncated, by_distances, rtol=1e-12)


@pytest.mark.parametrize("block_bytes", [1, 3000])
@pytest.mark.parametrize("n_jobs", [1, 3])
@pytest.mark.parametrize("multilabel", [False, True])
def test_blocks_give_the_same_result(block_bytes, n_jobs, multilabel):
    yq, yd, distances = random_problem(2, 23, 50, multilabel)
    ranking = np.argsort(distances, axis=1, kind="stable")[:, :30]

    def everything(n_jobs=None):
        return [
            average_precision_scores(yq, yd, distances=distances, n_jobs=n_jobs),
            average_precision_scores(yq, yd, ranking, top_k=20, normalize="all", n_jobs=n_jobs),
            precision_at_k(yq, yd, distances=distances, k=[1, 5, 50], n_jobs=n_jobs),
            recall_at_k(yq, yd, ranking, k=[1, 5, 30], n_jobs=n_jobs),
            *precision_recall_curve(yq, yd, distances=distances, n_jobs=n_jobs),
        ]

    one_block = everything()
    # The blocks take a sixteenth of sklearn's working_memory (MiB).
    with config_context(working_memory=block_bytes * 16 / 2**20):
        blocks = everything(n_jobs)
    for got, expected in zip(blocks, one_block):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


# --------------------------------------------------------------------------
# Degenerate inputs
# --------------------------------------------------------------------------


def test_all_database_items_relevant():
    yd = np.full(6, 3)
    distances = np.array([[0.5, 0.5, 0.1, 0.1, 0.9, 0.9], [1.0] * 6])
    assert mean_average_precision([3, 3], yd, distances=distances) == 1.0
    assert mean_average_precision([3, 3], yd, distances=distances, normalize="all") == 1.0
    assert mean_average_precision(
        [3, 3], yd, distances=distances, top_k=2, normalize="all"
    ) == pytest.approx(2 / 6)
    np.testing.assert_allclose(precision_at_k([3, 3], yd, distances=distances, k=[1, 6]), 1.0)
    np.testing.assert_allclose(
        recall_at_k([3, 3], yd, distances=distances, k=[1, 3, 6]), [1 / 6, 3 / 6, 1.0]
    )


def test_duplicate_rows_and_single_item_database():
    distances = np.array([[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]])
    ap = average_precision_scores([1, 1], [0, 1, 1], distances=distances)
    np.testing.assert_allclose(ap, (1 / 2 + 2 / 3) / 2)
    assert mean_average_precision([5], [5], distances=[[0.0]]) == 1.0
    assert mean_average_precision([5], [4], ranking=[[0]]) == 0.0


# --------------------------------------------------------------------------
# Inputs are never modified
# --------------------------------------------------------------------------


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_not_modified(multilabel, dtype):
    yq, yd, distances = random_problem(4, 6, 20, multilabel)
    distances = distances.astype(dtype)
    distances[0, :3] = [-0.0, 0.0, -1.5]
    ranking = np.argsort(distances, axis=1)[:, :10].astype(np.int32)
    originals = [x.copy() for x in (yq, yd, distances, ranking)]
    average_precision_scores(yq, yd, distances=distances, normalize="all")
    mean_average_precision(yq, yd, ranking, top_k=5)
    precision_at_k(yq, yd, distances=distances, k=3)
    recall_at_k(yq, yd, ranking, k=[2, 3])
    precision_recall_curve(yq, yd, distances=distances)
    for now, before in zip((yq, yd, distances, ranking), originals):
        np.testing.assert_array_equal(now, before)
        assert now.dtype == before.dtype
    assert np.signbit(distances[0, 0]) and not np.signbit(distances[0, 1])


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

YQ, YD = [0, 1], [0, 1, 0]
DIST = np.zeros((2, 3))
RANK = np.array([[0, 1, 2], [2, 1, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ranking": RANK, "distances": DIST}, "exactly one of ranking .* or distances"),
        ({}, "exactly one of ranking .* or distances"),
        ({"ranking": RANK[:1]}, "ranking has shape"),
        ({"ranking": np.zeros((2, 4), dtype=int)}, "ranking has shape"),
        ({"ranking": RANK[:, :0]}, "ranking has shape"),
        ({"ranking": RANK[0]}, "ranking must be a 2-D integer array"),
        ({"ranking": RANK.astype(float)}, "ranking must be a 2-D integer array"),
        ({"ranking": RANK + 1}, r"ranking holds indices outside \[0, 3\)"),
        ({"ranking": RANK - 1}, r"ranking holds indices outside \[0, 3\)"),
        ({"distances": DIST[:, :2]}, "distances has shape"),
        ({"distances": DIST[:1]}, "distances has shape"),
        ({"distances": DIST[0]}, "distances must be a 2-D real array"),
        ({"distances": DIST.astype(complex)}, "distances must be a 2-D real array"),
        ({"distances": np.where(np.eye(2, 3) > 0, np.nan, 0.0)}, "distances contains NaN"),
        ({"distances": DIST, "top_k": 0}, "top_k must be a positive integer"),
        ({"distances": DIST, "top_k": 2.0}, "top_k must be a positive integer"),
        ({"distances": DIST, "top_k": True}, "top_k must be a positive integer"),
        ({"distances": DIST, "normalize": "none"}, "normalize must be one of"),
    ],
)
def test_bad_ranking_distances_and_options(kwargs, match):
    for func in (average_precision_scores, mean_average_precision):
        with pytest.raises(ValueError, match=match):
            func(YQ, YD, **kwargs)


@pytest.mark.parametrize(
    "yq, yd, match",
    [
        ([0.5, 1.7], YD, "query_labels must hold class labels"),
        (YQ, [0.1, 0.2, 0.3], "database_labels must hold class labels"),
        ([[1, 0], [0, 1]], YD, "same layout"),
        (YQ, [[1, 0], [0, 1], [1, 1]], "same layout"),
        ([[1, 0], [0, 1]], [[1, 0, 0], [0, 1, 0], [1, 1, 0]], "label columns"),
        ([[1, 2], [0, 1]], [[1, 0], [0, 1], [1, 1]], "query_labels is 2-D"),
        (["a", "b"], YD, "different types"),
        (None, YD, "query_labels is required"),
        ([], YD, "query_labels is empty"),
    ],
)
def test_bad_labels(yq, yd, match):
    with pytest.raises(ValueError, match=match):
        average_precision_scores(yq, yd, distances=np.zeros((2, 3)))


@pytest.mark.parametrize("k", [0, -1, 1.5, [], [1, 0], [[1, 2]], [1.0, 2.0], None])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        precision_at_k(YQ, YD, distances=DIST, k=k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(YQ, YD, distances=DIST, k=k)


def test_bad_depths():
    with pytest.raises(ValueError, match="depths must be"):
        precision_recall_curve(YQ, YD, distances=DIST, depths=[0, 1])
    with pytest.raises(ValueError, match="exactly one of ranking"):
        precision_recall_curve(YQ, YD)


# --------------------------------------------------------------------------
# precision@k, recall@k, precision-recall curve
# --------------------------------------------------------------------------


def test_precision_and_recall_at_k_hand_computed():
    # query 0: pattern [1, 0, 1, 0]; query 1: pattern [0, 1, 0, 1]
    yq, yd, ranking = [0, 1], [0, 1, 0, 1], [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert precision_at_k(yq, yd, ranking, k=1) == pytest.approx((1 + 0) / 2)
    assert precision_at_k(yq, yd, ranking, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at_k(yq, yd, ranking, k=1) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_at_k(yq, yd, ranking, k=2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert recall_at_k(yq, yd, ranking, k=4) == 1.0
    assert isinstance(precision_at_k(yq, yd, ranking, k=np.int64(2)), float)
    assert isinstance(recall_at_k(yq, yd, ranking, k=2), float)


def test_precision_and_recall_array_of_k():
    yq, yd, distances = [0], [0, 1, 0, 1], [[0.1, 0.2, 0.3, 0.4]]
    precision = precision_at_k(yq, yd, distances=distances, k=np.array([3, 1, 2, 4]))
    np.testing.assert_allclose(precision, [2 / 3, 1, 1 / 2, 1 / 2])
    recall = recall_at_k(yq, yd, distances=distances, k=[3, 1, 2, 4])
    np.testing.assert_allclose(recall, [1, 1 / 2, 1 / 2, 1])
    assert isinstance(precision, np.ndarray) and precision.shape == (4,)


def test_k_beyond_the_ranking_is_refused():
    # Issue 11: precision_at_k(k=5) on a ranking 3 wide returned precision@3.
    yq, yd = [0], [0, 1, 0, 1]
    ranking = [[2, 1, 3]]
    assert precision_at_k(yq, yd, ranking, k=3) == pytest.approx(1 / 3)
    assert recall_at_k(yq, yd, ranking, k=3) == pytest.approx(1 / 2)
    for metric in (precision_at_k, recall_at_k):
        with pytest.raises(ValueError, match=r"k=5 is larger than the ranking \(3 items per query\)"):
            metric(yq, yd, ranking, k=5)
        with pytest.raises(ValueError, match=r"k=5 is larger than the ranking"):
            metric(yq, yd, ranking, k=[1, 5])
        with pytest.raises(ValueError, match=r"k=100 is larger than the database \(4 items"):
            metric(yq, yd, distances=[[0, 1, 2, 3]], k=100)
    with pytest.raises(ValueError, match=r"depths=4 is larger than the ranking \(3 items"):
        precision_recall_curve(yq, yd, ranking, depths=[1, 4])
    with pytest.raises(ValueError, match=r"top_k=4 is larger than the ranking \(3 items"):
        mean_average_precision(yq, yd, ranking, top_k=4)


def test_recall_of_query_without_relevant_item_is_zero():
    yq, yd, ranking = [0, 7], [0, 1, 0, 1], [[0, 1, 2, 3]] * 2
    assert recall_at_k(yq, yd, ranking, k=4) == pytest.approx(1 / 2)
    assert precision_at_k(yq, yd, ranking, k=1) == pytest.approx(1 / 2)


def test_precision_recall_curve_hand_computed():
    yq, yd, ranking = [0, 1], [0, 1, 0, 1], [[0, 1, 2, 3], [0, 1, 2, 3]]
    precision, recall, depths = precision_recall_curve(yq, yd, ranking)
    np.testing.assert_array_equal(depths, [1, 2, 3, 4])
    np.testing.assert_allclose(precision, [1 / 2, 1 / 2, 1 / 2, 1 / 2])
    np.testing.assert_allclose(recall, [1 / 4, 1 / 2, 3 / 4, 1])
    precision, recall, depths = precision_recall_curve(yq, yd, ranking, depths=[3, 1])
    np.testing.assert_array_equal(depths, [3, 1])
    np.testing.assert_allclose(precision, [1 / 2, 1 / 2])
    np.testing.assert_allclose(recall, [3 / 4, 1 / 4])
    precision, recall, depths = precision_recall_curve(yq, yd, ranking, depths=2)
    np.testing.assert_array_equal(depths, [2])


def test_precision_recall_curve_default_depths_and_consistency():
    yq, yd, distances = random_problem(5, 8, 500, multilabel=True)
    precision, recall, depths = precision_recall_curve(yq, yd, distances=distances)
    assert depths[0] == 1 and depths[-1] == 500 and len(depths) <= 100
    assert np.all(np.diff(depths) > 0)
    np.testing.assert_allclose(precision, precision_at_k(yq, yd, distances=distances, k=depths))
    np.testing.assert_allclose(recall, recall_at_k(yq, yd, distances=distances, k=depths))
    assert np.all(np.diff(recall) >= 0)
    # a truncated ranking: depths stop at its length
    ranking = np.argsort(distances, axis=1, kind="stable")[:, :30]
    _, _, depths = precision_recall_curve(yq, yd, ranking)
    np.testing.assert_array_equal(depths, np.arange(1, 31))


# --------------------------------------------------------------------------
# map_scorer
# --------------------------------------------------------------------------


class FakeRetriever(BaseEstimator):
    """Retrieves by Euclidean distance over the features selected by ``weights``."""

    def __init__(self, weights=(1.0, 1.0)):
        self.weights = weights

    def fit(self, X, y):
        self.database_ = np.asarray(X) * self.weights
        self.labels_ = np.asarray(y)
        return self

    def score(self, X, y, top_k=None, normalize="retrieved"):
        distances = pairwise_distances(np.asarray(X) * self.weights, self.database_)
        return mean_average_precision(
            y, self.labels_, distances=distances, top_k=top_k, normalize=normalize
        )


class AccuracyLike(BaseEstimator):
    def fit(self, X, y):
        return self

    def score(self, X, y):
        return 0.5


def blobs(seed=0, n=60):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = np.column_stack([y * 4 + rng.standard_normal(n), rng.standard_normal(n) * 10])
    return X, y


def test_map_scorer_calls_score_with_its_arguments():
    X, y = blobs()
    est = FakeRetriever().fit(X[:40], y[:40])
    scorer = map_scorer(top_k=5, normalize="all")
    expected = est.score(X[40:], y[40:], top_k=5, normalize="all")
    assert scorer(est, X[40:], y[40:]) == expected
    assert expected != est.score(X[40:], y[40:])
    assert isinstance(scorer(est, X[40:], y[40:]), float)


def test_map_scorer_repr_and_validation():
    assert repr(map_scorer()) == "map_scorer(top_k=None, normalize='retrieved')"
    assert repr(map_scorer(10, "all")) == "map_scorer(top_k=10, normalize='all')"
    with pytest.raises(ValueError, match="top_k"):
        map_scorer(top_k=0)
    with pytest.raises(ValueError, match="normalize"):
        map_scorer(normalize="some")


def test_map_scorer_in_grid_search():
    X, y = blobs()
    search = GridSearchCV(
        FakeRetriever(),
        {"weights": [(1.0, 0.0), (0.0, 1.0)]},
        scoring=map_scorer(top_k=10),
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"weights": (1.0, 0.0)}
    assert 0.0 <= search.best_score_ <= 1.0


def test_map_scorer_in_cross_val_score():
    X, y = blobs()
    scores = cross_val_score(FakeRetriever(), X, y, scoring=map_scorer(top_k=3), cv=3)
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
    default = cross_val_score(FakeRetriever(), X, y, cv=3)  # uses score() defaults
    np.testing.assert_allclose(
        cross_val_score(FakeRetriever(), X, y, scoring=map_scorer(), cv=3), default
    )


def test_map_scorer_with_pipeline():
    X, y = blobs()
    pipe = make_pipeline(StandardScaler(), FakeRetriever()).fit(X[:40], y[:40])
    Xt = pipe[0].transform(X[40:])
    expected = pipe[-1].score(Xt, y[40:], top_k=4, normalize="all")
    assert map_scorer(top_k=4, normalize="all")(pipe, X[40:], y[40:]) == expected
    assert expected != pipe[-1].score(Xt, y[40:])
    nested = make_pipeline("passthrough", make_pipeline(StandardScaler(), FakeRetriever()))
    nested.fit(X[:40], y[:40])
    assert map_scorer(top_k=4, normalize="all")(nested, X[40:], y[40:]) == expected
    search = GridSearchCV(
        make_pipeline(StandardScaler(), FakeRetriever()),
        {"fakeretriever__weights": [(1.0, 0.0), (0.0, 1.0)]},
        scoring=map_scorer(top_k=10),
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"fakeretriever__weights": (1.0, 0.0)}


def test_map_scorer_rejects_estimator_without_map_score():
    X, y = blobs()
    with pytest.raises(TypeError, match="does not accept top_k and normalize"):
        map_scorer()(AccuracyLike().fit(X, y), X, y)
    pipe = make_pipeline(StandardScaler(), AccuracyLike()).fit(X, y)
    with pytest.raises(TypeError, match="AccuracyLike.score"):
        map_scorer()(pipe, X, y)


def test_map_scorer_with_metadata_routing_enabled():
    sklearn = pytest.importorskip("sklearn")
    X, y = blobs()
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            make_pipeline(StandardScaler(), FakeRetriever()),
            {"fakeretriever__weights": [(1.0, 0.0), (0.0, 1.0)]},
            scoring=map_scorer(top_k=10),
            cv=3,
        ).fit(X, y)
    assert search.best_params_ == {"fakeretriever__weights": (1.0, 0.0)}


# --------------------------------------------------------------------------
# Issue 11: repeated indices, and the two MAP conventions
# --------------------------------------------------------------------------

ALL_METRICS = [
    lambda yq, yd, r: average_precision_scores(yq, yd, r),
    lambda yq, yd, r: mean_average_precision(yq, yd, r),
    lambda yq, yd, r: precision_at_k(yq, yd, r, k=1),
    lambda yq, yd, r: recall_at_k(yq, yd, r, k=1),
    lambda yq, yd, r: precision_recall_curve(yq, yd, r),
]


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_ranking_with_repeated_indices_is_refused(metric, monkeypatch):
    yq, yd = [0, 0], [0, 1, 0, 1]
    # [[0, 0, 0], ...] gave MAP 1.0: one relevant item counted three times.
    with pytest.raises(ValueError, match="ranking row 0 holds database index 0 more than once"):
        metric(yq, yd, [[0, 0, 0], [1, 2, 3]])
    monkeypatch.setattr(_tuning, "DUPLICATE_CHECK_ITEMS", 3)  # one row per block: the second block
    with pytest.raises(ValueError, match="ranking row 1 holds database index 2 more than once"):
        metric(yq, yd, [[0, 1, 2], [2, 3, 2]])
    metric(yq, yd, [[0, 1, 2], [3, 2, 1]])  # distinct: accepted


def deephash_map(query_labels, database_labels, ranking):
    """MAP as the DeepHash code base computes it (get_mAPs): queries with no hit left out."""
    aps = []
    for q, order in zip(query_labels, ranking):
        rel = shares_label([q], database_labels)[0][order]
        if rel.sum():
            precision = np.cumsum(rel) / np.arange(1, rel.size + 1)
            aps.append((precision * rel).sum() / rel.sum())
    return float(np.mean(aps))


def test_no_relevant_conventions_hand_computed():
    # Multi-label: query 1's relevant items exist (1 and 3) but none is in its
    # top 2; query 2 finds one at rank 2.
    yq = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    yd = [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 1]]
    ranking = [[0, 1], [0, 2], [1, 3]]
    assert mean_average_precision(yq, yd, ranking) == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert mean_average_precision(yq, yd, ranking, no_relevant="skip") == pytest.approx((1 + 1 / 2) / 2)
    assert mean_average_precision(yq, yd, ranking, no_relevant="skip") == pytest.approx(
        deephash_map(np.array(yq, bool), np.array(yd, bool), np.array(ranking))
    )
    # normalize="all": query 0 has 2 relevant items in the database
    assert mean_average_precision(yq, yd, ranking, normalize="all") == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert mean_average_precision(yq, yd, ranking, normalize="all", no_relevant="skip") == pytest.approx(1 / 2)
    # A query whose label no database item has: 0, or left out.
    yq, yd, full = [0, 2], [0, 1, 0, 1], [[0, 1, 2, 3]] * 2
    assert mean_average_precision(yq, yd, full) == pytest.approx(5 / 12)
    assert mean_average_precision(yq, yd, full, no_relevant="skip") == pytest.approx(5 / 6)
    assert mean_average_precision(yq, yd, distances=[[0, 1, 2, 3]] * 2, no_relevant="skip") == pytest.approx(5 / 6)
    # No query finds anything: 0.0 under both conventions (no NaN, no warning).
    assert mean_average_precision([2, 3], yd, full) == 0.0
    assert mean_average_precision([2, 3], yd, full, no_relevant="skip") == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_skip_is_the_deephash_map_on_multilabel_data(seed):
    yq, yd, distances = random_problem(seed, 40, 80, multilabel=True, n_classes=6)
    yd &= np.random.default_rng(seed).random(yd.shape) < 0.3  # sparse labels: some queries miss
    ranking = np.argsort(distances, axis=1, kind="stable")[:, :5]
    ours = mean_average_precision(yq, yd, ranking, no_relevant="skip")
    assert ours == pytest.approx(deephash_map(yq, yd, ranking), rel=1e-12)
    zero = mean_average_precision(yq, yd, ranking)
    ap = average_precision_scores(yq, yd, ranking)
    assert (ap == 0).any() and ours > zero  # some queries retrieve nothing relevant
    assert zero == pytest.approx(ours * (ap > 0).mean(), rel=1e-12)


def test_no_relevant_is_validated():
    for bad in ("none", None, 0, "Skip"):
        with pytest.raises(ValueError, match="no_relevant must be 'zero' .* or 'skip'"):
            mean_average_precision([0], [0, 1], [[0, 1]], no_relevant=bad)
        with pytest.raises(ValueError, match="no_relevant must be"):
            map_scorer(no_relevant=bad)


class DeepHashRetriever(FakeRetriever):
    def score(self, X, y, top_k=None, normalize="retrieved", no_relevant="zero"):
        distances = pairwise_distances(np.asarray(X) * self.weights, self.database_)
        return mean_average_precision(
            y, self.labels_, distances=distances, top_k=top_k, normalize=normalize,
            no_relevant=no_relevant,
        )


def test_map_scorer_no_relevant():
    X, y = blobs()
    y = np.arange(60) % 5  # 5 classes: many queries miss at top_k=1
    est = DeepHashRetriever(weights=(0.0, 1.0)).fit(X[:40], y[:40])
    skip = map_scorer(top_k=1, no_relevant="skip")(est, X[40:], y[40:])
    zero = map_scorer(top_k=1)(est, X[40:], y[40:])
    assert skip == est.score(X[40:], y[40:], top_k=1, no_relevant="skip")
    assert zero == est.score(X[40:], y[40:], top_k=1)
    assert skip > zero
    assert repr(map_scorer(no_relevant="skip")) == (
        "map_scorer(top_k=None, normalize='retrieved', no_relevant='skip')"
    )
    # An estimator whose score takes top_k and normalize only: the default
    # scorer works, the DeepHash one says what is missing.
    plain = FakeRetriever().fit(X[:40], y[:40])
    assert map_scorer()(plain, X[40:], y[40:]) == plain.score(X[40:], y[40:])
    with pytest.raises(TypeError, match="does not accept top_k, normalize and no_relevant"):
        map_scorer(no_relevant="skip")(plain, X[40:], y[40:])


def test_text_labels_in_object_and_unicode_arrays_are_one_kind():
    # metrics now asks skdqn._labels.label_kind (its own _holds_text is gone).
    yq = np.array(["cat"], dtype=object)
    ap = average_precision_scores(yq, np.array(["dog", "cat"]), [[0, 1]])
    assert ap[0] == pytest.approx(1 / 2)
    for numbers in ([1, 2], np.array([1.0, 2.0])):
        with pytest.raises(ValueError, match="different types"):
            average_precision_scores(yq, numbers, [[0, 1]])
