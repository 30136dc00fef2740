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
    index = AQDNeighbors(M=2, K=16, n_lists=4, n_probe=1, random_state=0).fit(X)  # older versions: an int
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


# ---------------------------------------------------------------- list_assignments, coarse_centroids
@pytest.fixture(scope="module")
def coded(data):
    X, _ = data
    index = AQDNeighbors(M=2, K=16, random_state=0).fit(X)
    return index.codebooks_, index.codes_


@pytest.mark.parametrize("centroids", [None, "given"], ids=["n_lists", "coarse_centroids"])
@pytest.mark.parametrize(
    "assignments, error, match",
    [
        (np.zeros(150, np.int64), ValueError, r"shape \(200,\)"),  # too short: items would be dropped
        (np.zeros(201, np.int64), ValueError, r"shape \(200,\)"),
        (np.full(200, 4), ValueError, r"\[0, n_lists=4\)"),  # out of range: -1 indices, inf distances
        (np.full(200, -1), ValueError, r"\[0, n_lists=4\)"),
        (np.zeros(200, np.float64), TypeError, "integers"),
        (np.zeros((200, 1), np.int64), ValueError, "1-D"),
        (np.array(["0"] * 200), TypeError, "integers"),
        ([[0, 1], [2]], TypeError, "list_assignments"),
    ],
)
def test_list_assignments_are_checked_on_every_path(coded, data, centroids, assignments, error, match):
    codebooks, codes = coded
    lists = {"n_lists": 4} if centroids is None else {"coarse_centroids": data[0][:4]}
    with pytest.raises(error, match=match) as info:
        AQDNeighbors.from_codes(codebooks, codes, list_assignments=assignments, **lists)
    assert "list_assignments" in str(info.value)


def test_list_assignments_given_with_centroids_are_used_as_given(coded, data):
    codebooks, codes = coded
    assignments = np.arange(200) % 4
    index = AQDNeighbors.from_codes(codebooks, codes, list_assignments=assignments, coarse_centroids=data[0][:4])
    assert index.list_offsets_.tolist() == [0, 50, 100, 150, 200]
    assert_array_equal(np.sort(index.list_ids_[50:100]), np.arange(1, 200, 4))


@pytest.mark.parametrize("scale, match", [(1e19, "overflow"), (1e-25, "underflow")])
@pytest.mark.parametrize("build", ["fit", "from_codes"])
def test_coarse_centroid_magnitudes_are_checked(coded, data, scale, match, build):
    codebooks, codes = coded
    centroids = np.sign(data[0][:4]) * scale
    with pytest.raises(ValueError, match=f"coarse_centroids.*{match}"):
        if build == "fit":
            AQDNeighbors(M=2, K=16, coarse_centroids=centroids).fit(data[0])
        else:
            AQDNeighbors.from_codes(codebooks, codes, coarse_centroids=centroids)
    zero = AQDNeighbors(M=2, K=16, coarse_centroids=np.zeros((1, 8)), random_state=0).fit(data[0])
    assert zero.list_offsets_.tolist() == [0, 200]  # all-zero centroids are exact: accepted


# ---------------------------------------------------------------- custom network factories
def test_a_network_factory_returning_no_module_is_refused_at_fit():
    """DeepQuantizer already refuses it at fit (_quantizer._backbone_from); this pins it."""
    pytest.importorskip("torch")
    from skdqn import DeepQuantizer

    X = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32)
    for factory in (lambda: None, lambda: "a string"):
        with pytest.raises(TypeError, match="network: the factory .* returned a"):
            DeepQuantizer(network=factory, M=1, K=4, n_components=4, max_epochs=1).fit(X, np.arange(60) % 3)


def test_a_network_factory_returning_none_is_refused_at_load(tmp_path):
    torch = pytest.importorskip("torch")
    from skdqn import DeepQuantizer

    X = np.random.default_rng(0).normal(size=(60, 6)).astype(np.float32)
    dq = DeepQuantizer(network=lambda: torch.nn.Linear(6, 5), M=1, K=4, n_components=4,
                       max_epochs=2, warmup_epochs=1, random_state=0).fit(X, np.arange(60) % 3)
    path = dq.save(tmp_path / "m")
    with pytest.raises(TypeError, match="network must be a torch.nn.Module or a factory returning one"):
        DeepQuantizer.load(path, network=lambda: "a string")
    with pytest.raises(TypeError, match="factory returning one; got function returning NoneType"):
        DeepQuantizer.load(path, network=lambda: None)
