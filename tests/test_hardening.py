"""Hostile and careless input to AQDNeighbors: clear errors naming the argument, state untouched."""

import pickle

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn import AQDNeighbors


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)


@pytest.mark.parametrize("params", [{}, {"n_lists": 4}], ids=["exhaustive", "ivf"])
def test_n_neighbors_zero_after_fit_gives_empty_results(data, params):
    X, Q = data
    index = AQDNeighbors(M=2, K=16, random_state=0, **params).fit(X).set_params(n_neighbors=0)
    dist, ind = index.kneighbors(Q)
    assert dist.shape == ind.shape == (3, 0) and dist.dtype == np.float32
    assert index.kneighbors(return_distance=False).shape == (200, 0)
    assert index.kneighbors_graph(Q).shape == (3, 200) and index.kneighbors_graph(Q).nnz == 0
    with pytest.raises(ValueError, match="Expected n_neighbors > 0"):
        index.kneighbors(Q, n_neighbors=0)  # an argument must be positive, as scikit-learn's


@pytest.mark.parametrize(
    "value, error", [(2.0, TypeError), ("2", TypeError), (True, TypeError), (-1, ValueError)]
)
def test_n_neighbors_set_after_fit_is_checked_at_search_time(data, value, error):
    X, Q = data
    index = AQDNeighbors(M=2, K=16, random_state=0).fit(X).set_params(n_neighbors=value)
    with pytest.raises(error, match="n_neighbors"):
        index.kneighbors(Q)
    with pytest.raises(error, match="n_neighbors"):
        index.kneighbors_graph()


@pytest.mark.parametrize(
    "value, error", [(2.0, TypeError), ("2", TypeError), (None, TypeError), (0, ValueError)]
)
@pytest.mark.parametrize("method", ["kneighbors", "radius_neighbors", "kneighbors_graph", "score"])
def test_n_probe_set_after_fit_is_checked_at_search_time(data, value, error, method):
    X, Q = data
    y = np.arange(200) % 3
    index = AQDNeighbors(M=2, K=16, n_lists=4, random_state=0).fit(X, y).set_params(n_probe=value)
    args = (Q, np.arange(3) % 3) if method == "score" else (Q,)
    with pytest.raises(error, match="n_probe"):
        getattr(index, method)(*args)


def test_state_survives_pickle_and_old_pickles_load(data):
    X, Q = data
    index = AQDNeighbors(M=2, K=16, n_lists=4, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(index))
    assert_array_equal(again.kneighbors(Q)[1], index.kneighbors(Q)[1])
    # the layout of earlier versions: one instance attribute per fitted array
    old = {k: v for k, v in vars(index).items() if k != "_fitted"}
    old.update(codebooks_=index.codebooks_, codes_=index.codes_, n_samples_fit_=200, _fit_labels=None,
               coarse_centroids_=index.coarse_centroids_, list_offsets_=index.list_offsets_,
               list_ids_=index.list_ids_, _list_metric="l2", rotation_=None)
    restored = AQDNeighbors.__new__(AQDNeighbors)
    restored.__setstate__(old)
    assert_array_equal(restored.kneighbors(Q)[1], index.kneighbors(Q)[1])
    assert "codes_" not in vars(restored)


def test_fitted_attributes_are_read_only_views_of_one_state(data):
    X, _ = data
    index = AQDNeighbors(M=2, K=16, n_lists=4, random_state=0).fit(X)
    with pytest.raises(AttributeError):
        index.codes_ = index.codes_[:10]
    assert index.n_samples_fit_ == index.codes_.shape[0] == index.list_ids_.shape[0] == 200
    assert not hasattr(AQDNeighbors(), "codes_")
