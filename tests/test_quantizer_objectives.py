"""DeepQuantizer's objectives: the paper's pairwise loss, the class-proxy loss and the ``auto`` rule."""

import io
import json
import pickle
from contextlib import redirect_stderr

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skdqn import DeepQuantizer
from skdqn.training._losses import AUTO_PROXY_MIN_CLASSES
from skdqn.io._io import _header_text
from skdqn.datasets import make_ordered_pairs

FAST = dict(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=4, warmup_epochs=1, batch_size=64)


def _blobs(n_classes, n_per_class, seed=0, n_features=8, spread=6.0):
    """Well-separated Gaussian blobs, one per class, plus a blank row and a duplicate."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(n_classes, n_features))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = (centres[y] + rng.normal(size=(len(y), n_features))).astype(np.float32)
    X[0] = 0.0  # a degenerate row
    X[2] = X[1]  # a duplicate
    return X, y


def _multilabel(y, n_labels, seed=0):
    """Indicator labels: each item's class plus, for some, one more label (and one item with none)."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((len(y), n_labels), dtype=int)
    Y[np.arange(len(y)), y % n_labels] = 1
    extra = rng.random(len(y)) < 0.3
    Y[np.flatnonzero(extra), rng.integers(0, n_labels, extra.sum())] = 1
    Y[5] = 0  # an item with no label
    return Y


@pytest.mark.parametrize("loss", ["pairwise", "proxy"])
def test_each_objective_learns_and_separates_two_classes(loss):
    X, y = _blobs(2, 100)
    dq = DeepQuantizer(loss=loss, random_state=0, **{**FAST, "max_epochs": 6}).fit(X, y)
    assert dq.loss_ == loss
    key = "pair_loss" if loss == "pairwise" else "proxy_loss"
    other = "proxy_loss" if loss == "pairwise" else "pair_loss"
    trained = [record[key] for record in dq.history_]
    assert trained[-1] < trained[0]
    assert all(np.isnan(record[other]) for record in dq.history_)
    # The codes separate the classes: no code is shared by items of both.
    codes = [set(map(tuple, dq.codes_[y == c])) for c in (0, 1)]
    assert not codes[0] & codes[1]
    assert dq.score(X, y) > 0.95


@pytest.mark.parametrize("loss", ["auto", "pairwise", "proxy"])
def test_every_objective_takes_multilabel_data(loss):
    X, y = _blobs(6, 40, seed=1)
    Y = _multilabel(y, 6)
    dq = DeepQuantizer(loss=loss, random_state=0, **FAST).fit(X, Y)
    assert dq.loss_ == ("pairwise" if loss == "auto" else loss)
    key = "pair_loss" if dq.loss_ == "pairwise" else "proxy_loss"
    assert dq.history_[-1][key] < dq.history_[0][key]
    labelled = Y.any(axis=1)  # the item without a label is relevant to nothing
    assert dq.score(X[labelled], Y[labelled]) > 0.6  # chance is about 0.3 with these labels


@pytest.mark.parametrize(
    "labels, expected",
    [
        (np.arange(400) % 10, "pairwise"),
        (np.arange(400) % (AUTO_PROXY_MIN_CLASSES - 1), "pairwise"),
        (np.arange(400) % AUTO_PROXY_MIN_CLASSES, "proxy"),
        (np.array([f"class {i}" for i in np.arange(400) % 40]), "proxy"),
        (np.eye(40, dtype=int)[np.arange(400) % 40], "pairwise"),  # multi-label layout
    ],
)
def test_auto_rule_choices(labels, expected):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    dq = DeepQuantizer(random_state=0, **{**FAST, "max_epochs": 2}).fit(X, labels)
    assert dq.loss == "auto" and dq.loss_ == expected


def test_auto_is_the_paper_loss_bit_for_bit_with_few_classes():
    X, y = _blobs(4, 50)
    auto = DeepQuantizer(random_state=0, **FAST).fit(X, y)
    paper = DeepQuantizer(loss="pairwise", random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(auto.codes_, paper.codes_)
    np.testing.assert_array_equal(auto.codebooks_, paper.codebooks_)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(loss="hinge"), "loss"),
        (dict(loss=None), "loss"),
        (dict(proxy_scale=0.0), "proxy_scale"),
        (dict(proxy_scale="8"), "proxy_scale"),
        (dict(proxy_margin=-0.1), "proxy_margin"),
    ],
)
def test_invalid_objective_parameters(params, match):
    X, y = _blobs(2, 20)
    dq = DeepQuantizer(**FAST, **params)
    with pytest.raises(ValueError, match=match):
        dq.fit(X, y)
    assert not hasattr(dq, "loss_")


def test_proxy_fit_is_reproducible_and_picklable():
    Xp, yp = make_ordered_pairs(*_blobs(5, 20, seed=2), 4, random_state=0)  # 25 classes
    a = DeepQuantizer(loss="proxy", random_state=3, **FAST).fit(Xp, yp)
    b = DeepQuantizer(loss="proxy", random_state=3, **FAST).fit(Xp, yp)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    restored = pickle.loads(pickle.dumps(a))
    assert restored.loss_ == "proxy"
    np.testing.assert_array_equal(restored.encode(Xp), a.encode(Xp))


def test_proxy_embeddings_lie_on_the_unit_sphere():
    X, y = _blobs(3, 30)
    proxy = DeepQuantizer(loss="proxy", random_state=0, **FAST).fit(X, y)
    np.testing.assert_allclose(np.linalg.norm(proxy.transform(X), axis=1), 1.0, rtol=1e-5)
    paper = DeepQuantizer(loss="pairwise", random_state=0, **FAST).fit(X, y)
    assert not paper.network_.normalize
    assert np.abs(np.linalg.norm(paper.transform(X), axis=1) - 1).max() > 0.1  # tanh outputs, not unit vectors


def test_proxy_model_save_load_round_trip(tmp_path):
    X, y = _blobs(3, 30)
    dq = DeepQuantizer(loss="proxy", proxy_scale=10.0, random_state=0, **FAST).fit(X, y)
    for path in (tmp_path / "model", tmp_path / "model.npz"):
        loaded = DeepQuantizer.load(dq.save(path))
        assert loaded.loss_ == "proxy" and loaded.get_params()["proxy_scale"] == 10.0
        np.testing.assert_array_equal(loaded.encode(X), dq.encode(X))
        assert np.isnan(loaded.history_[0]["pair_loss"]) and loaded.history_[0]["proxy_loss"] > 0


def test_a_version_2_model_still_loads_as_pairwise(tmp_path):
    """Files written before the objective was a parameter (format 2) load with loss='pairwise'."""
    X, y = _blobs(3, 30)
    dq = DeepQuantizer(loss="pairwise", random_state=0, **FAST).fit(X, y)
    folder = dq.save(tmp_path / "m")
    header = json.loads((folder / "header.json").read_text())
    checksums = header.pop("checksums")
    header.pop("header_crc32")
    header["format_version"] = 2
    del header["loss"]
    for name in ("loss", "proxy_scale", "proxy_margin"):
        del header["params"][name]
    for record in header["history"]:
        del record["proxy_loss"]
    del header["network"]["normalize"]
    (folder / "header.json").write_text(_header_text(header, checksums))
    loaded = DeepQuantizer.load(folder)
    assert loaded.loss == "pairwise" and loaded.loss_ == "pairwise"
    np.testing.assert_array_equal(loaded.encode(X), dq.encode(X))


def test_grid_search_over_the_objective():
    Xp, yp = make_ordered_pairs(*_blobs(5, 20, seed=4), 8, random_state=0)
    order = np.random.default_rng(0).permutation(len(yp))  # pairs come sorted by class
    Xp, yp = Xp[order], yp[order]
    grid = {"loss": ["pairwise", "proxy"], "proxy_scale": [8.0, 16.0]}
    search = GridSearchCV(DeepQuantizer(random_state=0, **{**FAST, "max_epochs": 2}), grid, cv=2)
    search.fit(Xp, yp)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.loss_ == search.best_params_["loss"]


def test_progress_names_the_loss():
    X, y = _blobs(3, 30)
    for loss, name in (("proxy", "proxy loss"), ("pairwise", "pair loss")):
        log = io.StringIO()
        with redirect_stderr(log):
            DeepQuantizer(loss=loss, verbose=1, random_state=0, **{**FAST, "max_epochs": 2}).fit(X, y)
        lines = log.getvalue().splitlines()
        assert len(lines) == 2 and all(name in line for line in lines), lines
