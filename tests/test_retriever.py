"""Retriever: a DeepQuantizer and the index of its codes, raw queries in, neighbours out."""

import json
import shutil

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdqn import AQDNeighbors, DeepQuantizer, Retriever
from skdqn._retriever import codebooks_fingerprint

TINY = dict(M=1, K=4, n_components=4, hidden_layer_sizes=(8,), max_epochs=2, warmup_epochs=1, batch_size=16)
SMALL = dict(M=2, K=16, n_components=8, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return X[:400], y[:400], X[400:460], y[400:460]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    return Retriever(DeepQuantizer(random_state=0, **SMALL), n_neighbors=7).fit(X, y)


@pytest.fixture(scope="module")
def other(digits):
    """A retriever with another model (another seed): other codebooks."""
    X, y, _, _ = digits
    return Retriever(DeepQuantizer(random_state=1, **SMALL), n_neighbors=7).fit(X, y)


# ------------------------------------------------- scikit-learn conventions
# Every common check applies and passes: none is expected to fail
# (check_array_api_input is skipped by scikit-learn itself unless SCIPY_ARRAY_API is set).
@parametrize_with_checks(
    [Retriever(DeepQuantizer(random_state=0, **TINY), n_neighbors=2)], expected_failed_checks=lambda est: {}
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_clone_and_grid_search_over_the_quantizer(digits):
    X, y, Q, yq = digits
    quantizer = DeepQuantizer(random_state=0, **SMALL)
    retriever = Retriever(quantizer, n_neighbors=5)
    copy = clone(retriever)
    assert copy.quantizer is not quantizer and copy.quantizer.get_params() == quantizer.get_params()
    retriever.fit(X, y)
    assert not hasattr(quantizer, "codebooks_")  # fit trained a clone, the parameter stays unfitted
    assert retriever.quantizer_ is not quantizer
    clone(retriever).fit(X[:200], y[:200])  # a fitted retriever clones into an unfitted one
    search = GridSearchCV(Retriever(quantizer), {"quantizer__lam": [0.0, 1e-2]}, cv=2).fit(X, y)
    assert [p["quantizer__lam"] for p in search.cv_results_["params"]] == [0.0, 1e-2]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.quantizer_.lam == search.best_params_["quantizer__lam"]
    assert 0.0 < search.score(Q, yq) <= 1.0


def test_kneighbors_equals_the_manual_route(fitted, digits):
    X, y, Q, yq = digits
    dq = fitted.quantizer_
    manual = AQDNeighbors(n_neighbors=7, codebooks=dq.codebooks_).fit(dq.transform(X), y)
    dist, ind = fitted.kneighbors(Q)
    ref_dist, ref_ind = manual.kneighbors(dq.transform(Q))
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    np.testing.assert_array_equal(fitted.kneighbors(None, n_neighbors=3)[1], manual.kneighbors(None, n_neighbors=3)[1])
    radius = float(np.median(dist))
    got = fitted.radius_neighbors(Q, radius=radius, sort_results=True)
    ref = manual.radius_neighbors(dq.transform(Q), radius=radius, sort_results=True)
    for a, b in zip(got[1], ref[1]):
        np.testing.assert_array_equal(a, b)
    assert sum(len(i) for i in got[1]) > 0
    assert fitted.score(Q, yq) == manual.score(dq.transform(Q), yq) == dq.score(Q, yq)
    assert fitted.score(Q, yq, top_k=5) == manual.score(dq.transform(Q), yq, top_k=5)
    # No second embedding of the training set: the index holds the codes fit computed.
    np.testing.assert_array_equal(fitted.index_.codes_, dq.codes_)
    assert fitted.fingerprint_ == codebooks_fingerprint(dq.codebooks_)


def test_inverted_lists_and_search_parameters_pass_through(digits):
    X, y, Q, _ = digits
    retriever = Retriever(DeepQuantizer(random_state=0, **SMALL), n_lists=4, n_probe=1, random_state=0).fit(X, y)
    dq = retriever.quantizer_
    manual = AQDNeighbors.from_codes(dq.codebooks_, dq.encode(X), y, n_lists=4, random_state=0)
    assert retriever.index_.coarse_centroids_.shape == (4, 8)
    np.testing.assert_array_equal(retriever.kneighbors(Q)[1], manual.kneighbors(dq.transform(Q))[1])
    exhaustive = AQDNeighbors(codebooks=dq.codebooks_).fit(dq.transform(X))
    retriever.set_params(n_probe=4, n_neighbors=9)  # read at search time, as AQDNeighbors does
    np.testing.assert_array_equal(retriever.kneighbors(Q)[1], exhaustive.kneighbors(dq.transform(Q), 9)[1])


def test_add_grows_the_index_and_a_failed_add_changes_nothing(digits):
    X, y, Q, yq = digits
    retriever = Retriever(DeepQuantizer(random_state=0, **SMALL)).fit(X[:300], y[:300])
    dq = retriever.quantizer_
    codes = retriever.index_.codes_.copy()
    with pytest.raises(ValueError, match="y is required"):
        retriever.add(X[300:])
    with pytest.raises(ValueError, match="features"):
        retriever.add(X[300:, :10], y[300:])
    np.testing.assert_array_equal(retriever.index_.codes_, codes)
    assert retriever.n_samples_fit_ == 300
    assert retriever.add(X[300:], y[300:]) is retriever and retriever.n_samples_fit_ == 400
    manual = AQDNeighbors(codebooks=dq.codebooks_).fit(dq.transform(X), y)
    np.testing.assert_array_equal(retriever.kneighbors(Q)[1], manual.kneighbors(dq.transform(Q))[1])
    assert retriever.score(Q, yq) == manual.score(dq.transform(Q), yq)


def test_bad_parameters_are_refused_before_training_and_a_failed_fit_keeps_the_fit(fitted, digits):
    X, y, Q, _ = digits
    with pytest.raises(ValueError, match="'quantizer' parameter"):
        Retriever(quantizer="dqn").fit(X, y)
    with pytest.raises(ValueError, match="'n_probe' parameter"):
        Retriever(DeepQuantizer(**SMALL), n_probe=0).fit(X, y)
    with pytest.raises(ValueError, match="radius"):
        Retriever(DeepQuantizer(**SMALL), metric="sqeuclidean", radius=-1.0).fit(X, y)
    with pytest.raises(TypeError, match="DeepQuantizer or a Pipeline ending with one"):
        Retriever(PCA(4)).fit(X, y)
    retriever = clone(fitted).fit(X, y)
    before = retriever.kneighbors(Q)[1]
    with pytest.raises(ValueError):
        retriever.fit(X, y[:10])  # labels of the wrong length
    np.testing.assert_array_equal(retriever.kneighbors(Q)[1], before)


def test_a_pipeline_quantizer(digits):
    X, y, Q, yq = digits
    model = make_pipeline(PCA(16, random_state=0), DeepQuantizer(random_state=0, **SMALL))
    retriever = Retriever(model).fit(X, y)
    assert retriever.kneighbors(Q)[1].shape == (len(Q), 5)
    assert retriever.score(Q, yq) == retriever.quantizer_.score(Q, yq)
    with pytest.raises(TypeError, match="DeepQuantizer alone"):
        retriever.save("unused")


def test_save_load_round_trip(fitted, digits, tmp_path):
    _, _, Q, yq = digits
    path = fitted.save(tmp_path / "retriever")
    assert sorted(p.name for p in path.iterdir()) == ["index", "model.npz", "retriever.json"]
    assert "pickle" not in (path / "retriever.json").read_text()
    for mmap_mode in (None, "r"):
        loaded = Retriever.load(path, mmap_mode=mmap_mode)
        assert loaded.get_params(deep=False).keys() == fitted.get_params(deep=False).keys()
        assert loaded.n_neighbors == 7 and loaded.fingerprint_ == fitted.fingerprint_
        assert loaded.quantizer.get_params() == fitted.quantizer_.get_params()
        assert not hasattr(loaded.quantizer, "codebooks_")  # the parameter is unfitted: clone-safe
        np.testing.assert_array_equal(loaded.kneighbors(Q)[1], fitted.kneighbors(Q)[1])
        np.testing.assert_array_equal(loaded.kneighbors(Q)[0], fitted.kneighbors(Q)[0])
        assert loaded.score(Q, yq) == fitted.score(Q, yq)
    assert isinstance(Retriever.load(path, mmap_mode="r").index_.codes_, np.memmap)
    fitted.save(path)  # over a saved retriever
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a saved retriever"):
        fitted.save(tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="not a saved Retriever"):
        Retriever.load(tmp_path / "busy")


def test_mismatched_model_and_index_are_refused(fitted, other, digits, tmp_path):
    _, _, Q, _ = digits
    assert other.fingerprint_ != fitted.fingerprint_
    ours, theirs = fitted.save(tmp_path / "ours"), other.save(tmp_path / "theirs")
    # Another model's file beside our index.
    swapped_model = tmp_path / "swapped_model"
    shutil.copytree(ours, swapped_model)
    shutil.copy(theirs / "model.npz", swapped_model / "model.npz")
    with pytest.raises(ValueError, match="do not belong together"):
        Retriever.load(swapped_model)
    # Another index beside our model.
    swapped_index = tmp_path / "swapped_index"
    shutil.copytree(ours, swapped_index)
    shutil.rmtree(swapped_index / "index")
    shutil.copytree(theirs / "index", swapped_index / "index")
    with pytest.raises(ValueError, match="do not belong together"):
        Retriever.load(swapped_index)
    # A header edited to another fingerprint.
    header = json.loads((ours / "retriever.json").read_text())
    header["fingerprint"] = other.fingerprint_
    (ours / "retriever.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="do not belong together"):
        Retriever.load(ours)
    # In memory: a quantizer swapped into a fitted retriever is refused at query time.
    mixed = clone(fitted).fit(*digits[:2])
    mixed.quantizer_ = other.quantizer_
    with pytest.raises(ValueError, match="do not belong together"):
        mixed.kneighbors(Q)
    with pytest.raises(ValueError, match="do not belong together"):
        mixed.score(Q, digits[3])


def test_the_command_line_reads_a_saved_retriever(fitted, other, digits, tmp_path, capsys):
    from skdqn.cli import main

    _, _, Q, yq = digits
    path = str(fitted.save(tmp_path / "retriever"))
    queries, labels, out = tmp_path / "Q.npy", tmp_path / "yq.npy", tmp_path / "nn.npy"
    np.save(queries, Q)
    np.save(labels, yq)
    # The directory serves as MODEL and as --index: raw queries in, the retriever's neighbours out.
    assert main(["search", path, "--index", path, str(queries), "-k", "7", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), fitted.kneighbors(Q)[1])
    assert main(["evaluate", path, "--index", path, str(queries), "--query-labels", str(labels), "-k", "5"]) == 0
    printed = capsys.readouterr().out
    assert f"MAP             {fitted.score(Q, yq):.4f}" in printed
    # Another model's index is refused, as for any index.
    theirs = str(other.save(tmp_path / "theirs"))
    assert main(["search", path, "--index", theirs, str(queries), "-o", str(out)]) == 2
    assert "was not built with the codebooks" in capsys.readouterr().err
