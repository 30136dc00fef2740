"""DeepQuantizer's input standardization, network factories, backbone learning rate and threads."""

import json
import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from skdqn import DeepQuantizer
from skdqn.io._io import _header_text
from skdqn.training._network import input_statistics

FAST = dict(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def raw_digits():
    """Raw digits pixels (0..16) split 3:1, as float64: ``(X_db, X_q, y_db, y_q)``."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


# ------------------------------------------------------------------ standardize
def test_map_does_not_depend_on_the_scale_of_the_inputs(raw_digits):
    """Standardized, [0, 1] and raw pixels: the same MAP (loose bound; the benchmark holds 0.01)."""
    X_db, X_q, y_db, y_q = raw_digits
    mean, std = X_db.mean(0), X_db.std(0) + (X_db.std(0) == 0)
    scalings = {"standardized": lambda X: (X - mean) / std, "unit": lambda X: X / 16, "raw": lambda X: X}
    params = dict(M=4, K=16, max_epochs=6, warmup_epochs=3, random_state=0)
    scores = {
        name: DeepQuantizer(**params).fit(f(X_db), y_db).score(f(X_q), y_q) for name, f in scalings.items()
    }
    assert min(scores.values()) > 0.5, scores
    assert max(scores.values()) - min(scores.values()) < 0.03, scores
    # Without standardization, raw pixels (std 4.5 to 6) train to another model.
    plain = DeepQuantizer(standardize=False, **params).fit(X_db, y_db)
    assert not np.allclose(plain.transform(X_q[:20]), DeepQuantizer(**params).fit(X_db, y_db).transform(X_q[:20]))


def test_statistics_are_learned_in_fit_and_constant_features_get_scale_one(raw_digits):
    X_db, _, y_db, _ = raw_digits
    X = X_db + 1e6  # far from zero: the shifted sums keep the precision
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, y_db)
    standardizer = dq.network_.standardizer
    np.testing.assert_allclose(standardizer.mean.numpy(), X.mean(0), rtol=1e-6)
    constant = X_db.std(0) == 0  # digits' first column is always blank
    assert constant.any()
    np.testing.assert_allclose(standardizer.scale.numpy()[~constant], X_db.std(0)[~constant], rtol=1e-3)
    assert_array_equal(standardizer.scale.numpy()[constant], 1.0)
    assert np.isfinite(dq.transform(X[:5])).all()
    mean, scale = input_statistics([torch.full((3, 2), 7.0)], 2)
    assert mean.tolist() == [7.0, 7.0] and scale.tolist() == [1.0, 1.0]


def test_standardize_false_and_custom_networks_see_the_inputs_as_given(small):
    X, _, y, _ = small
    assert not DeepQuantizer(standardize=False, random_state=0, **FAST).fit(X, y).network_.standardizes
    custom = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU())
    assert not DeepQuantizer(network=custom, random_state=0, **FAST).fit(X, y).network_.standardizes


def test_standardization_is_saved_pickled_and_cloned(raw_digits, tmp_path):
    X_db, X_q, y_db, _ = raw_digits
    dq = DeepQuantizer(random_state=0, **FAST).fit(X_db[:300], y_db[:300])
    codes = dq.encode(X_q)
    for path in (tmp_path / "m.npz", tmp_path / "folder"):
        loaded = DeepQuantizer.load(dq.save(path))
        assert loaded.standardize and loaded.network_.standardizes
        assert_array_equal(loaded.encode(X_q), codes)
    header = json.loads((tmp_path / "folder" / "header.json").read_text())
    assert header["network"]["standardize"] is True and header["params"]["standardize"] is True
    assert_array_equal(pickle.loads(pickle.dumps(dq)).encode(X_q), codes)
    assert clone(dq).get_params()["standardize"] is True


def _as_format_1(folder):
    """Rewrite a saved bundle's header as skdqn wrote it before format 2 (checksums kept)."""
    header = json.loads((folder / "header.json").read_text())
    checksums = header.pop("checksums")
    header.pop("header_crc32")
    header["format_version"] = 1
    header["network"].pop("standardize")
    for name in ("standardize", "backbone_lr_factor", "n_threads"):
        header["params"].pop(name)
    # and without what format 3 added (the objective)
    header["network"].pop("normalize")
    header.pop("loss")
    for name in ("loss", "proxy_scale", "proxy_margin"):
        header["params"].pop(name)
    for record in header["history"]:
        record.pop("proxy_loss")
    (folder / "header.json").write_text(_header_text(header, checksums))


def test_format_1_models_load_without_standardization(small, tmp_path):
    X, X_q, y, _ = small
    dq = DeepQuantizer(standardize=False, random_state=0, **FAST).fit(X, y)
    folder = dq.save(tmp_path / "old")
    _as_format_1(folder)
    loaded = DeepQuantizer.load(folder)
    assert loaded.standardize is False and not loaded.network_.standardizes
    assert_array_equal(loaded.encode(X_q), dq.encode(X_q))


def test_a_header_that_disagrees_on_standardize_is_refused(small, tmp_path):
    X, _, y, _ = small
    folder = DeepQuantizer(random_state=0, **FAST).fit(X, y).save(tmp_path / "m")
    header = json.loads((folder / "header.json").read_text())
    checksums = header.pop("checksums")
    header.pop("header_crc32")
    header["params"]["standardize"] = False
    (folder / "header.json").write_text(_header_text(header, checksums))
    with pytest.raises(ValueError, match="standardize=True but 'params' has standardize=False"):
        DeepQuantizer.load(folder)


def test_a_failed_fit_leaves_the_fitted_standardization_unchanged(raw_digits):
    X_db, X_q, y_db, _ = raw_digits
    dq = DeepQuantizer(random_state=0, **FAST).fit(X_db[:300], y_db[:300])
    network, codes = dq.network_, dq.encode(X_q)
    bad = X_db[:300] * 10
    bad[5, 3] = np.nan
    with pytest.raises(ValueError):
        dq.fit(bad, y_db[:300])
    assert dq.network_ is network
    assert_array_equal(dq.encode(X_q), codes)


# ------------------------------------------------------------- network factories
class _Backbone(torch.nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.layer = torch.nn.Linear(64, width)

    def forward(self, x):
        return torch.relu(self.layer(x))


def test_random_state_seeds_a_network_factory(small):
    from functools import partial

    X, X_q, y, _ = small
    for factory in (_Backbone, partial(_Backbone, width=8)):
        a = DeepQuantizer(network=factory, random_state=0, **FAST).fit(X, y)
        b = DeepQuantizer(network=factory, random_state=0, **FAST).fit(X, y)
        assert_array_equal(a.encode(X_q), b.encode(X_q))
        assert isinstance(a.network_.backbone, _Backbone)
    c = DeepQuantizer(network=_Backbone, random_state=1, **FAST).fit(X, y)
    assert not torch.equal(c.network_.backbone.layer.weight, a.network_.backbone.layer.weight)


def test_a_module_instance_keeps_its_weights_and_a_factory_is_loaded(small, tmp_path):
    X, X_q, y, _ = small
    module = _Backbone()
    frozen = DeepQuantizer(network=module, backbone_lr_factor=0, random_state=3, **FAST).fit(X, y)
    assert torch.equal(frozen.network_.backbone.layer.weight, module.layer.weight)  # not re-initialised
    assert frozen.network_.backbone is not module and module.layer.weight.requires_grad
    dq = DeepQuantizer(network=_Backbone, random_state=0, **FAST).fit(X, y)
    loaded = DeepQuantizer.load(dq.save(tmp_path / "m.npz"), network=_Backbone)
    assert loaded.network is _Backbone
    assert_array_equal(loaded.encode(X_q), dq.encode(X_q))


def test_a_factory_that_returns_no_module_is_a_type_error(small):
    X, _, y, _ = small
    with pytest.raises(TypeError, match="network: the factory .* returned a str"):
        DeepQuantizer(network=lambda: "resnet", **FAST).fit(X, y)


# ------------------------------------------------------------ backbone_lr_factor
def test_backbone_lr_factor_scales_the_backbone_group():
    dq = DeepQuantizer(learning_rate=0.01, backbone_lr_factor=0.1)
    from skdqn.training._network import QuantizationNetwork, build_mlp

    net = QuantizationNetwork(build_mlp(8, (16,)), 16, 4)
    groups = dq._make_optimizer(net).param_groups
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.001)]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.fcb.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in net.backbone.parameters()}


def test_backbone_lr_factor_zero_freezes_the_backbone(small):
    X, _, y, _ = small
    params = dict(network=_Backbone, random_state=0, **FAST)
    init = DeepQuantizer(**{**params, "max_epochs": 1, "learning_rate": 1e-12}).fit(X, y)
    frozen = DeepQuantizer(backbone_lr_factor=0, **params).fit(X, y)
    slow = DeepQuantizer(backbone_lr_factor=0.1, **params).fit(X, y)
    full = DeepQuantizer(**params).fit(X, y)
    start = init.network_.backbone.layer.weight
    assert torch.allclose(frozen.network_.backbone.layer.weight, start, atol=1e-9)
    # The fitted network is left trainable: re-used with a factor > 0, its backbone trains.
    assert all(p.requires_grad for p in frozen.network_.parameters())
    refit = DeepQuantizer(**{**params, "network": frozen.network_.backbone, "max_epochs": 1}).fit(X, y)
    assert not torch.allclose(refit.network_.backbone.layer.weight, start, atol=1e-6)
    assert not torch.allclose(frozen.network_.fcb.weight, init.network_.fcb.weight, atol=1e-6)
    moved = [float((m.network_.backbone.layer.weight - start).abs().mean().detach()) for m in (slow, full)]
    assert 0 < moved[0] < moved[1] / 3, moved
    with pytest.raises(InvalidParameterError, match="backbone_lr_factor"):
        DeepQuantizer(backbone_lr_factor=-1, **FAST).fit(X, y)


# ----------------------------------------------------------------------- threads
def test_n_threads_applies_during_fit_and_transform_and_is_restored(small):
    X, X_q, y, _ = small
    seen = []

    class Spy(_Backbone):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    torch.set_num_threads(2)
    try:
        dq = DeepQuantizer(network=Spy, random_state=0, **FAST).fit(X, y)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        dq.transform(X_q)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        dq.set_params(n_threads=None).score(X_q, y[: len(X_q)])
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(1)
    with pytest.raises(InvalidParameterError, match="n_threads"):
        DeepQuantizer(n_threads=0, **FAST).fit(X, y)


def test_pickles_of_older_versions_unpickle_without_the_new_parameters(small):
    X, X_q, y, _ = small
    dq = DeepQuantizer(standardize=False, random_state=0, **FAST).fit(X, y)
    state = dq.__getstate__()
    for name in ("standardize", "backbone_lr_factor", "n_threads"):
        del state[name]
    old = DeepQuantizer.__new__(DeepQuantizer)
    old.__setstate__(state)
    assert (old.standardize, old.backbone_lr_factor, old.n_threads) == (False, 1.0, None)
    assert_array_equal(old.encode(X_q), dq.encode(X_q))
