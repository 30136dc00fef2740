"""DeepQuantizer: the estimator, its training, its errors and its quality on digits."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdqn import AQDNeighbors, DeepQuantizer
from skdqn._labels import label_indicator
from skdqn.training._losses import pair_similarity, pairwise_loss, quantization_loss
from skdqn.training._network import QuantizationNetwork, build_mlp
from skdqn._pq import decode, encode, quantization_error, train_codebooks

# Small settings: a few epochs of a small MLP, K=16.
FAST = dict(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def digits(digits_with_blank_rows):
    """This module's digits include three blank images (see tests/conftest.py)."""
    return digits_with_blank_rows


@pytest.fixture(scope="module")
def fitted(small):
    X, _, y, _ = small
    return DeepQuantizer(random_state=0, **FAST).fit(X, y)


# ---------------------------------------------------------------- estimator checks
CHECK_PARAMS = dict(M=1, K=4, n_components=4, hidden_layer_sizes=(8,), max_epochs=2, warmup_epochs=1, batch_size=16)


@parametrize_with_checks(
    [DeepQuantizer(random_state=0, **CHECK_PARAMS)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- fit / transform
def test_fitted_attributes_and_shapes(fitted, small):
    X, X_q, y, _ = small
    dq = fitted
    assert dq.codebooks_.shape == (2, 16, 8) and dq.codebooks_.dtype == np.float32
    assert dq.codes_.shape == (300, 2) and dq.codes_.dtype == np.uint8
    assert dq.n_components_ == 16 and dq.n_features_in_ == 64
    np.testing.assert_array_equal(dq.classes_, np.arange(10))
    assert dq.n_iter_ == 3 and len(dq.history_) == 3
    assert set(dq.history_[0]) == {"epoch", "pair_loss", "proxy_loss", "quantization_loss", "loss", "lam", "seconds"}
    assert dq.loss_ == "pairwise" and np.isnan(dq.history_[0]["proxy_loss"])  # ten classes: the paper's loss
    assert np.isnan(dq.history_[0]["quantization_loss"]) and dq.history_[0]["lam"] == 0.0
    assert dq.history_[1]["lam"] == dq.lam and np.isfinite(dq.history_[1]["quantization_loss"])
    assert not dq.network_.training
    Z = dq.transform(X_q)
    assert Z.shape == (60, 16) and Z.dtype == np.float32
    assert np.all(np.abs(Z) <= 1)
    codes = dq.encode(X_q)
    np.testing.assert_array_equal(codes, encode(Z, dq.codebooks_))
    np.testing.assert_array_equal(dq.decode(codes), decode(codes, dq.codebooks_))
    # codes_ are the codes of the training set under the final network and codebooks.
    np.testing.assert_array_equal(dq.codes_, dq.encode(X))
    np.testing.assert_array_equal(
        dq.get_feature_names_out(), [f"deepquantizer{i}" for i in range(16)]
    )


def test_fit_transform_equals_fit_then_transform(small):
    X, _, y, _ = small
    a = DeepQuantizer(random_state=0, **FAST).fit_transform(X, y)
    b = DeepQuantizer(random_state=0, **FAST).fit(X, y).transform(X)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("M,expected", [(1, 300), (3, 300), (4, 300), (7, 301), (8, 304)])
def test_default_n_components_rule(small, M, expected):
    X, _, y, _ = small
    dq = DeepQuantizer(M=M, K=4, max_epochs=1, hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    assert dq.n_components_ == expected and dq.codebooks_.shape == (M, 4, expected // M)


def test_same_random_state_same_codes(small):
    X, X_q, y, _ = small
    a = DeepQuantizer(random_state=3, **FAST).fit(X, y)
    b = DeepQuantizer(random_state=3, **FAST).fit(X, y)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    np.testing.assert_array_equal(a.encode(X_q), b.encode(X_q))
    np.testing.assert_array_equal(a.codebooks_, b.codebooks_)
    c = DeepQuantizer(random_state=4, **FAST).fit(X, y)
    assert not np.array_equal(a.transform(X_q), c.transform(X_q))


def test_fit_leaves_global_torch_rng_alone(small):
    X, _, y, _ = small
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DeepQuantizer(random_state=0, **FAST).fit(X, y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_inputs_not_modified(small):
    X, _, y, _ = small
    X64 = X.astype(np.float64)
    X_copy, y_copy = X64.copy(), y.copy()
    DeepQuantizer(random_state=0, **FAST).fit(X64, y)
    np.testing.assert_array_equal(X64, X_copy)
    np.testing.assert_array_equal(y, y_copy)


def test_string_labels_and_multilabel(small):
    X, X_q, y, y_q = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, names[y])
    np.testing.assert_array_equal(dq.classes_, np.sort(names))
    assert 0 <= dq.score(X_q, names[y_q]) <= 1
    # Multi-label: "is even" and "is at least 5", plus the class itself.
    Y = np.column_stack([label_indicator(y, np.arange(10)), y % 2 == 0, y >= 5]).astype(int)
    Y_q = np.column_stack([label_indicator(y_q, np.arange(10)), y_q % 2 == 0, y_q >= 5]).astype(int)
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, Y)
    np.testing.assert_array_equal(dq.classes_, np.arange(12))
    assert 0 <= dq.score(X_q, Y_q) <= 1


def test_cosine_schedule_anneals_the_learning_rate(small):
    X, _, y, _ = small
    seen = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    dq = DeepQuantizer(random_state=0, learning_rate=0.01, **{**FAST, "max_epochs": 4})
    dq._make_optimizer = lambda net: Spy(net.parameters(), lr=dq.learning_rate)
    dq.fit(X, y)
    per_epoch = seen[::5]  # 300 samples / 64 = 5 batches per epoch
    np.testing.assert_allclose(per_epoch, [0.01 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])


def test_inner_product_loss_sgd_and_uniform_run(small):
    X, _, y, _ = small
    for params in (
        dict(pair_loss="inner_product"),
        dict(optimizer="sgd", learning_rate=0.01),
        dict(pair_weighting="uniform"),
        dict(lr_schedule="constant"),
    ):
        dq = DeepQuantizer(random_state=0, **FAST, **params).fit(X, y)
        assert np.isfinite(dq.history_[-1]["loss"])


# ---------------------------------------------------------------- custom networks
def test_custom_cnn_backbone_on_images(small, small_cnn):
    X, X_q, y, _ = small
    images = X.reshape(-1, 1, 8, 8)
    cnn = small_cnn()
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    dq = DeepQuantizer(network=cnn, random_state=0, **FAST).fit(images, y)
    assert dq.transform(X_q.reshape(-1, 1, 8, 8)).shape == (60, 16)
    # The module given as a parameter is never trained in place.
    for key, value in cnn.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert dq.network_.backbone is not cnn
    # clone copies the (untrained) module parameter.
    cloned = clone(dq)
    assert cloned.network is not cnn


def test_network_that_cannot_take_X_gives_clear_error(small):
    X, _, y, _ = small
    with pytest.raises(ValueError, match="network could not process X"):
        DeepQuantizer(network=torch.nn.Linear(5, 3), **FAST).fit(X, y)


# ---------------------------------------------------------------- broken networks
class Broken(torch.nn.Module):
    """A linear backbone over 64 features that misbehaves as told.

    ``how``: "nan" / "inf" (its output), "drop_row" (one row too few),
    "scalar" (a 0-d output), "raise" (an error inside it), "wide" (more
    features than when built); ``when``: "always", "training" (train mode
    only, i.e. not the first forward pass), or "after:N" (from the N-th
    training call on: training diverges), or "never".
    """

    def __init__(self, how, when="always"):
        super().__init__()
        self.how, self.when = how, when
        self.body = torch.nn.Linear(64, 16)
        self.calls = 0

    def _broken(self):
        if self.training:
            self.calls += 1
        if self.when.startswith("after:"):
            return self.training and self.calls >= int(self.when[6:])
        return {"always": True, "training": self.training, "never": False}[self.when]

    def forward(self, x):
        out = self.body(x.reshape(x.shape[0], -1))
        if not self._broken():
            return out
        if self.how == "raise":
            raise RuntimeError("kaboom")
        return {
            "nan": lambda: out * float("nan"),
            "inf": lambda: out + float("inf"),
            "drop_row": lambda: out[:-1],
            "scalar": lambda: out.sum(),
            "wide": lambda: torch.cat([out, out], dim=1),
        }[self.how]()


@pytest.mark.parametrize(
    "how, match",
    [
        ("nan", r"first forward pass \(a batch of shape \(2, 64\)\), the network returned NaN"),
        ("inf", r"first forward pass .* returned infinity"),
        ("drop_row", r"first forward pass .* returned an output of shape \(1, 16\): its first dimension must be"),
        ("scalar", r"returned an output of shape \(\)"),
    ],
)
def test_broken_network_in_the_first_forward_pass(small, how, match):
    X, _, y, _ = small
    with pytest.raises(ValueError, match=match):
        DeepQuantizer(network=Broken(how), **FAST).fit(X, y)


def test_error_in_the_first_forward_pass_names_the_input_shape(small, small_cnn):
    X, _, y, _ = small
    with pytest.raises(ValueError, match=r"batch of shape \(2, 64\), raised RuntimeError: kaboom") as exc:
        DeepQuantizer(network=Broken("raise"), **FAST).fit(X, y)
    assert isinstance(exc.value.__cause__, RuntimeError)
    with pytest.raises(ValueError, match=r"X of shape \(300, 1, 4, 16\).*batch of shape \(2, 1, 4, 16\)"):
        DeepQuantizer(network=torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), **FAST).fit(X.reshape(-1, 1, 4, 16), y)


@pytest.mark.parametrize(
    "how, when, match",
    [
        ("nan", "after:7", r"Training diverged in epoch 2 .*NaN or infinity"),
        ("inf", "training", r"Training diverged in epoch 1 "),
        ("drop_row", "training", r"In epoch 1: the network returned an output of shape \(63, 16\) for a batch of 64"),
        ("wide", "training", r"In epoch 1: the network returned 32 features per item .* but 16 when it was built"),
    ],
)
def test_network_that_breaks_during_training(small, how, when, match):
    X, X_q, y, _ = small
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, y)
    before = fitted_state(dq)
    Z = dq.transform(X_q)
    with pytest.raises(ValueError, match=match):
        dq.set_params(network=Broken(how, when)).fit(X, y)
    # The failed fit left the fitted estimator as it was.
    after = fitted_state(dq)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(dq.set_params(network=None).transform(X_q), Z)


@pytest.mark.parametrize(
    "how, match",
    [
        ("nan", r"output holds NaN or infinity for X, for 60 of 60 items \(0, 1, 2, 3, 4, \.\.\.\)"),
        ("drop_row", r"output of shape \(59, 16\) for a batch of 60 items of shape \(64,\)"),
    ],
)
def test_network_broken_after_fit_fails_transform_encode_and_score(small, how, match):
    X, X_q, y, y_q = small
    dq = DeepQuantizer(network=Broken(how, "never"), random_state=0, **FAST).fit(X, y)
    dq.network_.backbone.when = "always"
    for call in (lambda: dq.transform(X_q), lambda: dq.encode(X_q), lambda: dq.score(X_q, y_q)):
        with pytest.raises(ValueError, match=match):
            call()


def test_image_inputs_are_checked_against_the_fitted_item_shape(small, small_cnn):
    X, X_q, y, y_q = small
    dq = DeepQuantizer(network=small_cnn(), random_state=0, **FAST).fit(X.reshape(-1, 1, 8, 8), y)
    big = np.zeros((5, 1, 16, 16), np.float32)
    message = r"expected items of shape \(1, 8, 8\), got \(1, 16, 16\)"
    for call in (dq.transform, dq.encode, lambda Z: dq.score(Z, y_q[:5])):
        with pytest.raises(ValueError, match=message):
            call(big)
    with pytest.raises(ValueError, match=r"expected items of shape \(1, 8, 8\), got \(64,\)"):
        dq.transform(X_q)
    with pytest.raises(ValueError, match=r"expected items of shape \(1, 8, 8\), got \(3, 8, 8\)"):
        dq.transform(np.zeros((2, 3, 8, 8)))
    data = torch.utils.data.TensorDataset(torch.zeros(5, 1, 16, 16), torch.zeros(5))
    for call in (dq.transform, dq.score):
        with pytest.raises(ValueError, match=message):
            call(data)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "y_bad, match",
    [
        (None, "requires y"),
        ("continuous", "continuous"),
        ("short", "n_samples"),
        ("single", "single class"),
        ("nan", "NaN"),
    ],
)
def test_bad_y(small, y_bad, match):
    X, _, y, _ = small
    y_bad = {
        None: None,
        "continuous": np.linspace(0, 1, len(y)),
        "short": y[:-1],
        "single": np.zeros(len(y)),
        "nan": np.where(np.arange(len(y)) == 5, np.nan, y.astype(float)),
    }[y_bad]
    with pytest.raises(ValueError, match=match):
        DeepQuantizer(**FAST).fit(X, y_bad)


def test_bad_X(small, fitted):
    X, _, y, _ = small
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DeepQuantizer(**FAST).fit(X_nan, y)
    X_inf = X.copy()
    X_inf[1, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        DeepQuantizer(**FAST).fit(X_inf, y)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(X[:, :10])
    with pytest.raises(ValueError, match="2D array|dim"):
        DeepQuantizer(**FAST).fit(X.reshape(-1, 8, 8), y)


def test_bad_structure_parameters(small):
    X, _, y, _ = small
    with pytest.raises(ValueError, match="n_components=10 is not divisible by M=4"):
        DeepQuantizer(M=4, n_components=10, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="n_samples=300"):
        DeepQuantizer(K=512, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="lam"):
        DeepQuantizer(lam=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="pair_loss"):
        DeepQuantizer(pair_loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        DeepQuantizer(hidden_layer_sizes=(0,), **{k: v for k, v in FAST.items() if k != "hidden_layer_sizes"}).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_errors(small):
    X, _, y, _ = small
    with pytest.raises(ValueError, match="CUDA is not available"):
        DeepQuantizer(device="cuda", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="device must be"):
        DeepQuantizer(device="tpu-ish", **FAST).fit(X, y)


def test_decode_validates_codes(fitted):
    with pytest.raises(ValueError, match="shape"):
        fitted.decode(np.zeros((3, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, K=16\)"):
        fitted.decode(np.full((1, 2), 16))
    with pytest.raises(TypeError, match="integers"):
        fitted.decode(np.zeros((1, 2)))


@pytest.mark.parametrize("method", ["transform", "encode", "score", "decode"])
def test_not_fitted(small, method):
    X, _, y, _ = small
    dq = DeepQuantizer(**FAST)
    args = {"transform": (X,), "encode": (X,), "score": (X, y), "decode": (np.zeros((1, 2), int),)}[method]
    with pytest.raises(NotFittedError):
        getattr(dq, method)(*args)


# ---------------------------------------------------------------- state
def test_pickle_round_trip(fitted, small):
    _, X_q, _, y_q = small
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.transform(X_q), fitted.transform(X_q))
    np.testing.assert_array_equal(loaded.codes_, fitted.codes_)
    assert loaded.score(X_q, y_q) == fitted.score(X_q, y_q)


class _WritesAMarker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_of_the_default_mlp_holds_only_weights(fitted, small, tmp_path):
    """The default MLP is pickled as its architecture and a state_dict, read with weights_only=True."""
    import io

    _, X_q, _, _ = small
    state = fitted.__getstate__()
    assert set(state["network_"]) == {"architecture", "state_dict"}
    assert state["network_"]["architecture"]["hidden_layer_sizes"] == [32]
    assert fitted.network_ is not None  # the live estimator is untouched
    marker = tmp_path / "ran"
    buffer = io.BytesIO()
    torch.save({"fcb.weight": _WritesAMarker(marker)}, buffer)
    state["network_"]["state_dict"] = buffer.getvalue()
    with pytest.raises(ValueError, match="pickled network does not hold network weights readable without pickle"):
        DeepQuantizer.__new__(DeepQuantizer).__setstate__(state)
    assert not marker.exists()


def test_pickle_of_a_custom_network_keeps_the_module(small, small_cnn):
    X, X_q, y, _ = small
    images = X.reshape(-1, 1, 8, 8)
    dq = DeepQuantizer(network=small_cnn(), random_state=0, **FAST).fit(images, y)
    assert isinstance(dq.__getstate__()["network_"], bytes)  # torch.save of the module
    loaded = pickle.loads(pickle.dumps(dq))
    assert type(loaded.network_.backbone).__name__ == "SmallCNN"
    np.testing.assert_array_equal(loaded.transform(X_q.reshape(-1, 1, 8, 8)), dq.transform(X_q.reshape(-1, 1, 8, 8)))
    with pytest.raises(ValueError, match="expected items of shape"):
        loaded.transform(X_q)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_gpu_fitted_model_loads_on_cpu(fitted, small):
    """A pickle that records a CUDA device loads on a CPU-only machine."""
    _, X_q, _, _ = small
    state = fitted.__getstate__()
    state["device_"] = torch.device("cuda", 0)
    restored = DeepQuantizer.__new__(DeepQuantizer)
    restored.__setstate__(state)
    assert restored.device_ == torch.device("cpu")
    np.testing.assert_array_equal(restored.transform(X_q), fitted.transform(X_q))


class RaisingMLP(torch.nn.Module):
    """Raises ``error`` on the n-th training forward pass (Ctrl-C, or a failure mid-training)."""

    def __init__(self, after, error=KeyboardInterrupt):
        super().__init__()
        self.after = after
        self.error = error
        self.body = torch.nn.Linear(64, 16)
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.after:
                raise self.error
        return torch.relu(self.body(x))


def test_keyboard_interrupt_leaves_usable_estimator(small):
    X, X_q, y, y_q = small
    # 300 samples / batch 64 = 5 batches per epoch: interrupt during epoch 3.
    dq = DeepQuantizer(network=RaisingMLP(after=13), random_state=0, **{**FAST, "max_epochs": 10})
    with pytest.warns(UserWarning, match="interrupted"):
        dq.fit(X, y)
    assert dq.n_iter_ == 2
    assert dq.codes_.shape == (300, 2)
    assert 0 <= dq.score(X_q, y_q) <= 1


def test_verbose_progress_bar(small, capsys):
    X, _, y, _ = small
    DeepQuantizer(verbose=1, random_state=0, **FAST).fit(X, y)
    err = capsys.readouterr().err
    assert "DeepQuantizer" in err and "epoch" in err


# ---------------------------------------------------------------- optimisation pieces
def test_training_steps_lower_the_objective_on_a_fixed_batch(small):
    """Back-propagation with C and H fixed lowers L + lam * Q on the batch."""
    X, _, y, _ = small
    torch.manual_seed(0)
    x = torch.from_numpy(X[:128])
    S = pair_similarity(torch.from_numpy(label_indicator(y[:128], np.arange(10))))
    net = QuantizationNetwork(build_mlp(64, (32,)), 32, 16)
    with torch.no_grad():
        Z = net(x).numpy()
    C = train_codebooks(Z, 2, 8, random_state=0)
    C_t, H_t = torch.from_numpy(C), torch.from_numpy(encode(Z, C).astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def objective():
        z = net(x)
        return pairwise_loss(z, S) + 0.1 * quantization_loss(z, C_t, H_t)

    before = objective().item()
    for _ in range(20):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        opt.step()
    assert objective().item() < before


# ---------------------------------------------------------------- integration
def test_aqdneighbors_with_dqn_codebooks(fitted, small):
    X, X_q, _, _ = small
    index = AQDNeighbors(n_neighbors=5, codebooks=fitted).fit(fitted.transform(X))
    np.testing.assert_array_equal(index.codes_, fitted.codes_)
    np.testing.assert_array_equal(index.codebooks_, fitted.codebooks_)
    dist, ind = index.kneighbors(fitted.transform(X_q))
    assert ind.shape == (60, 5)


def test_pipeline_and_grid_search_over_lam(digits):
    X_db, _, y_db, _ = digits
    X, y = X_db[:600], y_db[:600]
    pipe = make_pipeline(
        StandardScaler(),
        DeepQuantizer(random_state=0, **FAST),
        AQDNeighbors(M=2, K=16, random_state=0),
    )
    pipe.fit(X, y)
    assert 0 <= pipe.score(X[:50], y[:50]) <= 1
    search = GridSearchCV(pipe, {"deepquantizer__lam": [0.0, 0.1]}, cv=2).fit(X, y)
    assert search.best_params_["deepquantizer__lam"] in (0.0, 0.1)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_grid_search_on_the_estimator_alone(digits):
    X_db, _, y_db, _ = digits
    search = GridSearchCV(DeepQuantizer(random_state=0, **FAST), {"lam": [0.0, 1e-2]}, cv=3)
    search.fit(X_db[:450], y_db[:450])
    assert search.best_params_["lam"] in (0.0, 1e-2)
    assert search.best_estimator_.codes_.shape == (450, 2)


# ---------------------------------------------------------------- quality on digits
QUALITY = dict(M=4, K=256, max_epochs=20, warmup_epochs=5, random_state=0)


@pytest.fixture(scope="module")
def quality_runs(digits):
    X_db, X_q, y_db, y_q = digits
    dqn = DeepQuantizer(**QUALITY).fit(X_db, y_db)
    two_step = DeepQuantizer(**{**QUALITY, "lam": 0.0}).fit(X_db, y_db)
    pq = AQDNeighbors(M=4, K=256, random_state=0).fit(X_db, y_db)
    return dqn, two_step, pq


def test_dqn_beats_pq_of_pixels_and_matches_two_step(quality_runs, digits):
    _, X_q, _, y_q = digits
    dqn, two_step, pq = quality_runs
    map_dqn, map_two, map_pq = dqn.score(X_q, y_q), two_step.score(X_q, y_q), pq.score(X_q, y_q)
    assert map_dqn >= map_pq + 0.2, (map_dqn, map_pq)
    assert map_dqn >= map_two - 0.02, (map_dqn, map_two)


def test_large_lam_makes_embeddings_easier_to_quantize(quality_runs, digits):
    X_db, _, y_db, _ = digits
    _, two_step, _ = quality_runs
    strong = DeepQuantizer(**{**QUALITY, "lam": 0.1}).fit(X_db, y_db)
    err_strong = quantization_error(strong.transform(X_db), strong.codebooks_)
    err_none = quantization_error(two_step.transform(X_db), two_step.codebooks_)
    assert err_strong < err_none, (err_strong, err_none)


def test_multilabel_digits_quality(digits):
    """Pairs of digits side by side; label set = the two classes."""
    X_db, X_q, y_db, y_q = digits
    rng = np.random.default_rng(0)

    def pairs(X, y, n):
        i, j = rng.integers(0, len(y), n), rng.integers(0, len(y), n)
        Y = np.zeros((n, 10), int)
        Y[np.arange(n), y[i]] = 1
        Y[np.arange(n), y[j]] = 1
        return np.hstack([X[i], X[j]]), Y

    X2, Y2 = pairs(X_db, y_db, 1200)
    X2_q, Y2_q = pairs(X_q, y_q, 200)
    dq = DeepQuantizer(M=4, K=64, max_epochs=20, warmup_epochs=5, random_state=0).fit(X2, Y2)
    pq = AQDNeighbors(M=4, K=64, random_state=0).fit(X2, Y2)
    assert dq.score(X2_q, Y2_q) > pq.score(X2_q, Y2_q) + 0.05


# ---------------------------------------------------------------- the training ladder
def fitted_state(dq):
    return {k: v for k, v in vars(dq).items() if k.endswith("_") and not k.startswith("__")}


def test_failed_fit_leaves_a_fitted_estimator_as_it_was(small):
    X, X_q, y, _ = small
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, y)
    before = fitted_state(dq)
    Z = dq.transform(X_q)
    # Fails in the labels check, after validate_data saw 32 features.
    with pytest.raises(ValueError, match="single class"):
        dq.fit(X[:, :32], np.zeros(len(y)))
    # Fails in the middle of training.
    dq.set_params(network=RaisingMLP(after=7, error=RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        dq.fit(X, y)
    after = fitted_state(dq)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before if k != "n_features_in_")
    assert dq.n_features_in_ == 64
    np.testing.assert_array_equal(dq.transform(X_q), Z)


def test_keyboard_interrupt_keeps_the_complete_epochs_in_history(small):
    X, _, y, _ = small
    dq = DeepQuantizer(network=RaisingMLP(after=13), random_state=0, **{**FAST, "max_epochs": 10})
    with pytest.warns(UserWarning, match="after 2 complete epoch"):
        dq.fit(X, y)
    assert [h["epoch"] for h in dq.history_] == [1, 2]


@pytest.mark.parametrize("warmup, every, max_epochs", [(2, 3, 10), (0, 1, 3), (10, 2, 3), (1, 2, 3), (3, 1, 3)])
def test_codebook_refresh_schedule(warmup, every, max_epochs):
    dq = DeepQuantizer(warmup_epochs=warmup, codebook_update_every=every, max_epochs=max_epochs)
    due = [done for done in range(1, max_epochs + 1) if dq._codebook_refresh_due(done)]
    expected = [
        done
        for done in range(1, max_epochs + 1)
        if done >= warmup and (done - warmup) % every == 0 and done < max_epochs
    ]
    assert due == expected
    if (warmup, every, max_epochs) == (2, 3, 10):
        assert due == [2, 5, 8]


def test_refreshes_are_counted_by_the_schedule(small, monkeypatch):
    X, _, y, _ = small
    calls = []
    dq = DeepQuantizer(random_state=0, **{**FAST, "max_epochs": 6, "warmup_epochs": 1, "codebook_update_every": 2})
    refresh = dq._refresh_codebooks
    monkeypatch.setattr(dq, "_refresh_codebooks", lambda state: calls.append(len(state.history)) or refresh(state))
    dq.fit(X, y)
    assert calls == [1, 3, 5]
    assert np.isnan(dq.history_[0]["quantization_loss"])
    assert all(np.isfinite(h["quantization_loss"]) for h in dq.history_[1:])


def test_predict_batch_size(small):
    X, X_q, y, _ = small
    assert DeepQuantizer().predict_batch_size is None
    assert clone(DeepQuantizer(predict_batch_size=7)).get_params()["predict_batch_size"] == 7
    with pytest.raises(ValueError, match="predict_batch_size"):
        DeepQuantizer(predict_batch_size=0, **FAST).fit(X, y)
    a = DeepQuantizer(random_state=0, **FAST).fit(X, y)
    b = clone(a).set_params(predict_batch_size=7).fit(X, y)
    # Only the embedding passes chunk differently: equal up to rounding.
    np.testing.assert_allclose(b.transform(X_q), a.transform(X_q), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(b.codes_, b.encode(X))
