"""From a DeepQuantizer to an index: the clone-safe hand-off and its guard."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline

from skdqn import AQDNeighbors, DeepQuantizer, Retriever
from skdqn._validation import codebooks_fingerprint

SMALL = dict(M=2, K=16, n_components=8, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1)


@pytest.fixture(scope="module")
def digits(scaled_digits_300):
    return scaled_digits_300


@pytest.fixture(scope="module")
def dq(small_quantizer):
    return small_quantizer


@pytest.fixture(scope="module")
def other_dq(digits):
    X, y, _, _ = digits
    return DeepQuantizer(random_state=1, **SMALL).fit(X, y)


# ------------------------------------------------------------ from_quantizer
def test_from_quantizer_holds_a_copy_of_the_codebooks(dq, digits):
    X, y, Q, _ = digits
    index = AQDNeighbors.from_quantizer(dq, n_neighbors=4, metric="sqeuclidean")
    assert not hasattr(index, "codebooks_")  # unfitted
    params = index.get_params()
    assert isinstance(params["codebooks"], np.ndarray) and params["codebooks"].dtype == np.float32
    assert_array_equal(params["codebooks"], dq.codebooks_)
    assert not np.shares_memory(params["codebooks"], dq.codebooks_)
    assert (params["n_neighbors"], params["metric"]) == (4, "sqeuclidean")
    index.fit(dq.transform(X), y)
    lent = AQDNeighbors(n_neighbors=4, metric="sqeuclidean", codebooks=dq).fit(dq.transform(X), y)
    for a, b in zip(index.kneighbors(dq.transform(Q)), lent.kneighbors(dq.transform(Q))):
        assert_array_equal(a, b)  # the same index as the old form
    assert index.score(dq.transform(Q), digits[3]) == lent.score(dq.transform(Q), digits[3])


def test_from_quantizer_survives_clone_and_grid_search(dq, digits):
    X, y, Q, yq = digits
    Z, Zq = dq.transform(X), dq.transform(Q)
    index = AQDNeighbors.from_quantizer(dq, n_neighbors=5)
    fitted = clone(index).fit(Z, y)  # the old form raised NotFittedError here
    assert_array_equal(fitted.codebooks_, dq.codebooks_)
    assert_array_equal(clone(fitted).fit(Z, y).codes_, fitted.codes_)  # a fitted one clones too
    search = GridSearchCV(index, {"n_lists": [None, 4], "metric": ["euclidean", "inner_product"]}, cv=2)
    search.fit(Z, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert_array_equal(search.best_estimator_.codebooks_, dq.codebooks_)  # never k-means codebooks
    assert 0.0 < search.score(Zq, yq) <= 1.0
    assert np.all(cross_val_score(index, Z, y, cv=2) > 0.0)


def test_from_quantizer_of_a_pipeline_uses_its_last_step(digits):
    X, y, Q, _ = digits
    pipe = make_pipeline(PCA(16, random_state=0), DeepQuantizer(random_state=0, **SMALL)).fit(X, y)
    index = clone(AQDNeighbors.from_quantizer(pipe, n_neighbors=3)).fit(pipe.transform(X))
    assert_array_equal(index.codebooks_, pipe[-1].codebooks_)
    assert index.check_quantizer(pipe) is index
    assert index.kneighbors(pipe.transform(Q))[1].shape == (len(Q), 3)


def test_from_quantizer_refuses_bad_arguments(dq, digits):
    with pytest.raises(NotFittedError, match="not fitted yet.*from_quantizer"):
        AQDNeighbors.from_quantizer(DeepQuantizer())
    with pytest.raises(TypeError, match="from_quantizer takes the codebooks from quantizer"):
        AQDNeighbors.from_quantizer(dq, codebooks=None)
    with pytest.raises(TypeError, match="fitted DeepQuantizer.*got ndarray"):
        AQDNeighbors.from_quantizer(dq.codebooks_)
    with pytest.raises(ValueError, match="rotation='opq'.*codebooks=None"):
        AQDNeighbors.from_quantizer(dq, rotation="opq")
    with pytest.raises(ValueError, match="n_neighbors"):
        AQDNeighbors.from_quantizer(dq, n_neighbors=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        AQDNeighbors.from_quantizer(dq, n_neighbour=3)


# ------------------------------------------------------- the old form, cloned
def test_old_form_under_clone_points_to_the_new_ones(dq, digits):
    X, y, _, _ = digits
    Z = dq.transform(X)
    old = AQDNeighbors(codebooks=dq).fit(Z)  # still works as long as nothing clones it
    assert_array_equal(old.codebooks_, dq.codebooks_)
    advice = r"given as codebooks is not fitted.*clone.*AQDNeighbors\.from_quantizer.*Retriever"
    with pytest.raises(NotFittedError, match=advice) as caught:  # as before, and a ValueError:
        clone(AQDNeighbors(codebooks=dq)).fit(Z)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ValueError, match=advice):  # GridSearchCV's summary quotes the advice
        GridSearchCV(AQDNeighbors(codebooks=dq), {"n_neighbors": [1, 2]}, cv=2).fit(Z, y)


def test_documented_compositions_clone_and_grid_search(dq, digits):
    # DeepQuantizer alone, a Pipeline ending with it, and a Retriever of either.
    X, y, _, _ = digits
    for model, grid in [
        (DeepQuantizer(random_state=0, **SMALL), {"lam": [0.0, 1e-2]}),
        (make_pipeline(PCA(16, random_state=0), DeepQuantizer(random_state=0, **SMALL)),
         {"deepquantizer__lam": [0.0, 1e-2]}),
        (Retriever(make_pipeline(PCA(16, random_state=0), DeepQuantizer(random_state=0, **SMALL))),
         {"quantizer__deepquantizer__lam": [0.0, 1e-2]}),
    ]:
        search = GridSearchCV(clone(model), grid, cv=2).fit(X, y)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# ------------------------------------------------------------------- guard
def test_check_quantizer_refuses_another_models_codebooks(dq, other_dq, digits, tmp_path):
    X, _, _, _ = digits
    index = AQDNeighbors.from_quantizer(dq).fit(dq.transform(X))
    assert index.check_quantizer(dq) is index
    ours, theirs = codebooks_fingerprint(dq.codebooks_), codebooks_fingerprint(other_dq.codebooks_)
    assert ours != theirs
    with pytest.raises(ValueError, match=f"built with codebooks {ours}.*DeepQuantizer has codebooks {theirs}"):
        index.check_quantizer(other_dq)
    # A model refitted in place gets new codebooks: refused as well.
    refitted = clone(dq).set_params(random_state=2).fit(X, digits[1])
    with pytest.raises(ValueError, match="from_quantizer.*Retriever"):
        AQDNeighbors.from_quantizer(dq).fit(dq.transform(X)).check_quantizer(refitted)
    with pytest.raises(NotFittedError):
        AQDNeighbors.from_quantizer(dq).check_quantizer(dq)  # the index itself is not fitted
    with pytest.raises(NotFittedError, match="check_quantizer"):
        index.check_quantizer(DeepQuantizer())
    # A loaded index keeps the codebooks, so the check still passes after save/load.
    AQDNeighbors.load(index.save(tmp_path / "index.npz")).check_quantizer(dq)


def test_from_codes_of_a_quantizer_keeps_its_codebooks_as_an_array(dq, digits):
    X, y, Q, _ = digits
    index = AQDNeighbors.from_codes(dq, dq.codes_, y, n_neighbors=3)
    assert isinstance(index.codebooks, np.ndarray)  # not the estimator: clone-safe
    assert_array_equal(index.codebooks, dq.codebooks_)
    refit = clone(index).fit(dq.transform(X), y)
    assert_array_equal(refit.codebooks_, dq.codebooks_)
    assert_array_equal(refit.kneighbors(dq.transform(Q))[1], index.kneighbors(dq.transform(Q))[1])
