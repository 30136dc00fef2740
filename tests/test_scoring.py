"""Tests of skdqn.search._scoring: MAP of queries against stored codes, for both score methods."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import config_context

from skdqn.search._kernels import aqd_distances
from skdqn.search._scoring import retrieval_average_precisions, score_codes
from skdqn.search._tables import VectorQueries, distance_tables
from skdqn.metrics import average_precision_scores


def problem(seed=0, n=300, nq=40):
    rng = np.random.default_rng(seed)
    codebooks = rng.normal(size=(2, 8, 3)).astype(np.float32)
    codes = rng.integers(0, 8, size=(n, 2)).astype(np.uint8)
    codes[:10] = codes[0]  # duplicates: ties broken by index
    Q = rng.normal(size=(nq, 6))
    return Q, codebooks, codes, rng.integers(0, 4, size=nq), rng.integers(0, 4, size=n)


@pytest.mark.parametrize("top_k", [None, 1, 17, 300])
@pytest.mark.parametrize("normalize", ["retrieved", "all"])
def test_matches_the_metric_on_all_distances(top_k, normalize):
    Q, codebooks, codes, yq, yd = problem(seed=top_k or 0)
    source = VectorQueries(Q, codebooks, "sqeuclidean")
    got = retrieval_average_precisions(source, codes, yq, yd, top_k=top_k, normalize=normalize)
    distances = aqd_distances(distance_tables(Q, codebooks), codes)
    expected = average_precision_scores(yq, yd, distances=distances, top_k=top_k, normalize=normalize)
    assert_allclose(got, expected, rtol=1e-12)
    # In small chunks of queries (a tiny working memory) and two workers: the same.
    with config_context(working_memory=0.01):
        chunked = retrieval_average_precisions(source, codes, yq, yd, top_k=top_k, normalize=normalize, n_jobs=2)
    assert_allclose(chunked, expected, rtol=1e-12)


def test_score_codes_checks_the_labels():
    Q, codebooks, codes, yq, yd = problem()
    source = VectorQueries(Q, codebooks, "sqeuclidean")
    score = score_codes(source, yq, codes, yd)
    assert score == pytest.approx(retrieval_average_precisions(source, codes, yq, yd).mean())
    with pytest.raises(ValueError, match="y has 39 entries but X has n_samples=40"):
        score_codes(source, yq[:-1], codes, yd)
    with pytest.raises(ValueError, match="y is required"):
        score_codes(source, None, codes, yd)


def test_score_codes_no_relevant_conventions():
    Q, codebooks, codes, yq, yd = problem(seed=3)
    source = VectorQueries(Q, codebooks, "sqeuclidean")
    ap = retrieval_average_precisions(source, codes, yq, yd, top_k=1)
    assert (ap == 0).any() and (ap > 0).any()
    zero = score_codes(source, yq, codes, yd, top_k=1)
    skip = score_codes(source, yq, codes, yd, top_k=1, no_relevant="skip")
    assert zero == pytest.approx(ap.mean())
    assert skip == pytest.approx(ap[ap > 0].mean())
    with pytest.raises(ValueError, match="no_relevant must be"):
        score_codes(source, yq, codes, yd, no_relevant="deephash")


def test_score_codes_top_k_beyond_the_database_is_the_whole_database():
    # The estimator ranks its whole database itself: MAP@k with k beyond it is
    # the MAP of the whole ranking (nothing given is cut), so it is accepted.
    Q, codebooks, codes, yq, yd = problem(seed=4)
    source = VectorQueries(Q, codebooks, "sqeuclidean")
    assert score_codes(source, yq, codes, yd, top_k=10_000) == score_codes(source, yq, codes, yd)


def test_both_score_methods_take_no_relevant():
    from skdqn import AQDNeighbors, DeepQuantizer
    from skdqn.metrics import mean_average_precision

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 8)), rng.integers(0, 6, size=120)
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:80], y[:80])
    ranking = index.kneighbors(X[80:], n_neighbors=2, return_distance=False)
    dq = DeepQuantizer(M=2, K=4, max_epochs=1, batch_size=40, random_state=0, device="cpu").fit(X[:80], y[:80])
    dq_index = AQDNeighbors.from_codes(dq.codebooks_, dq.codes_, metric="sqeuclidean")
    dq_ranking = dq_index.kneighbors(dq.transform(X[80:]), n_neighbors=2, return_distance=False)
    for estimator, ranked in ((index, ranking), (dq, dq_ranking)):
        scores = {}
        for convention in ("zero", "skip"):
            scores[convention] = estimator.score(X[80:], y[80:], top_k=2, no_relevant=convention)
            expected = mean_average_precision(y[80:], y[:80], ranked, no_relevant=convention)
            assert scores[convention] == pytest.approx(expected, rel=1e-12)
        assert scores["skip"] > scores["zero"]
        assert estimator.score(X[80:], y[80:], top_k=2) == scores["zero"]  # default unchanged
