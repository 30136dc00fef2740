"""Tests of skdqn._scoring: MAP of queries against stored codes, for both score methods."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import config_context

from skdqn._kernels import aqd_distances
from skdqn._scoring import retrieval_average_precisions, score_codes
from skdqn._tables import VectorQueries, distance_tables
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
