"""Label validation and relevance."""

import numpy as np
import pytest
import scipy.sparse as sp

from skdqn._labels import check_labels, label_indicator, relevance


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("multilabel", [False, True])
def test_relevance_matches_loop(seed, multilabel):
    rng = np.random.default_rng(seed)
    if multilabel:
        q, d = rng.random((5, 4)) < 0.3, rng.random((9, 4)) < 0.3
        q[0] = False  # a query without labels is relevant to nothing
        expected = np.array([[bool(np.any(a & b)) for b in d] for a in q])
    else:
        q, d = rng.integers(0, 3, 5), rng.integers(0, 3, 9)
        expected = np.array([[a == b for b in d] for a in q])
    np.testing.assert_array_equal(relevance(q, d), expected)


def test_check_labels_layouts():
    np.testing.assert_array_equal(check_labels(["b", "a", "b"]), ["b", "a", "b"])
    out = check_labels(sp.csr_matrix([[1, 0], [0, 1]]))
    assert out.dtype == bool and out.shape == (2, 2)
    # A single column is 1-D class labels.
    np.testing.assert_array_equal(check_labels(np.array([[1], [2]])), [1, 2])


def test_check_labels_does_not_alias_input():
    y = np.array([1, 2, 1])
    out = check_labels(y)
    out[0] = 5
    assert y[0] == 1


@pytest.mark.parametrize(
    "y, match",
    [
        (None, "required"),
        ([0.5, 1.5, 2.25], "continuous"),
        ([1.0, np.nan], "NaN"),
        (np.array(["a", None], dtype=object), "None"),
        ([[0, 2], [1, 0]], "binary label indicator"),
        (np.zeros((2, 2, 2)), "dimensions"),
        ([], "empty"),
    ],
)
def test_check_labels_errors(y, match):
    with pytest.raises(ValueError, match=match):
        check_labels(y)


def test_single_class_rejected_when_asked():
    with pytest.raises(ValueError, match="single class"):
        check_labels([3, 3, 3], allow_single_class=False)
    with pytest.raises(ValueError, match="single label configuration"):
        check_labels([[1, 0], [1, 0]], allow_single_class=False)
    check_labels([3, 3, 3])  # fine for queries


def test_label_indicator_unknown_class_is_zero_row():
    out = label_indicator(np.array([1, 7]), classes=np.array([1, 2]))
    np.testing.assert_array_equal(out, [[1, 0], [0, 0]])


def test_relevance_layout_mismatch():
    with pytest.raises(ValueError, match="same layout"):
        relevance(np.array([1]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="label columns"):
        relevance(np.array([[1, 0]]), np.array([[1, 0, 1]]))
