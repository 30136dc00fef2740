"""Tests of the metric policy (skdqn.search._metric): one place for what a metric means."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn.search._metric import METRIC_NAMES, get_metric, metric_for_faiss


def test_every_metric_is_defined():
    assert METRIC_NAMES == {"euclidean", "sqeuclidean", "inner_product"}
    for name in METRIC_NAMES:
        metric = get_metric(name)
        assert metric.name == name
        assert metric.table in ("sqeuclidean", "inner_product")
        assert metric.faiss in ("l2", "inner_product")


def test_user_units_and_radius():
    dist = np.array([0.0, 4.0, 9.0], np.float32)
    assert_array_equal(get_metric("euclidean").to_user(dist), [0.0, 2.0, 3.0])
    assert get_metric("euclidean").to_user(dist).dtype == np.float32
    for name in ("sqeuclidean", "inner_product"):
        assert get_metric(name).to_user(dist) is dist
    assert get_metric("euclidean").radius_threshold(3.0) == 9.0
    assert get_metric("euclidean").radius_threshold(-3.0) == -9.0  # nothing is closer than 0
    assert get_metric("sqeuclidean").radius_threshold(3.0) == 3.0
    assert get_metric("inner_product").radius_threshold(-3.0) == -3.0


def test_faiss_metrics():
    assert metric_for_faiss("l2") == "sqeuclidean"
    assert metric_for_faiss("inner_product") == "inner_product"
    assert metric_for_faiss("l2", "euclidean") == "euclidean"
    with pytest.raises(ValueError, match="ranks by L2 distance"):
        metric_for_faiss("l2", "inner_product")
    with pytest.raises(ValueError, match="ranks by inner product"):
        metric_for_faiss("inner_product", "euclidean")


def test_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        get_metric("cosine")


def test_check_radius():
    for name in METRIC_NAMES:
        get_metric(name).check_radius(0.0)
        get_metric(name).check_radius(np.inf)
        for bad in (np.nan, "1", None, True):
            with pytest.raises(ValueError, match="radius must be a real number"):
                get_metric(name).check_radius(bad)
    get_metric("inner_product").check_radius(-3.0)
    for name in ("euclidean", "sqeuclidean"):
        with pytest.raises(ValueError, match=r"radius must be >= 0 for metric"):
            get_metric(name).check_radius(-0.5)
