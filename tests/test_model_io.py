"""DeepQuantizer.save / DeepQuantizer.load (skdqn.io._model_io): round trips and trust.

Loading never unpickles: every saved member replaced by a pickle that would
write a marker file when loaded is refused with a ValueError, and the marker
is never written. Every member truncated or with a byte flipped gives the
identical model or a clear ValueError.
"""

import io
import json
import pickle
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.exceptions import NotFittedError

from conftest import damage_file
from skdqn import AQDNeighbors, DeepQuantizer
from skdqn.io._io import _header_text, write_bundle

TINY = dict(M=2, K=8, n_components=8, hidden_layer_sizes=(16,), max_epochs=2, warmup_epochs=1, batch_size=64)
MEMBERS = ["header.json", "codebooks.npy", "codes.npy", "labels.npy", "classes.npy", "network.npy"]


@pytest.fixture(scope="module")
def data(small):
    X, X_q, y, y_q = small
    return X[:120], X_q[:20], y[:120], y_q[:20]


@pytest.fixture(scope="module")
def model(data):
    X, _, y, _ = data
    return DeepQuantizer(random_state=0, **TINY).fit(X, y)


def assert_same_model(a, b, X_q, y_q):
    assert_array_equal(a.transform(X_q), b.transform(X_q))
    assert_array_equal(a.encode(X_q), b.encode(X_q))
    assert_array_equal(a.codebooks_, b.codebooks_)
    assert_array_equal(a.codes_, b.codes_)
    assert_array_equal(a.classes_, b.classes_)
    assert a.score(X_q, y_q) == b.score(X_q, y_q)
    assert (a.n_features_in_, a.n_components_, a.n_iter_) == (b.n_features_in_, b.n_components_, b.n_iter_)
    assert json.dumps(a.history_) == json.dumps(b.history_)  # NaN included
    params_a, params_b = a.get_params(deep=False), b.get_params(deep=False)
    params_a.pop("network"), params_b.pop("network")
    assert params_a == params_b


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["model", "model.npz"])
def test_round_trip(tmp_path, model, data, name):
    X, X_q, _, y_q = data
    path = model.save(tmp_path / name)
    assert path.is_dir() == (name == "model")
    loaded = DeepQuantizer.load(path)
    assert_same_model(model, loaded, X_q, y_q)
    assert loaded.network is None and not loaded.network_.training
    assert loaded.get_params()["hidden_layer_sizes"] == (16,)
    # Its codebooks serve an index as the original's do.
    a = AQDNeighbors(n_neighbors=5, codebooks=model).fit(model.transform(X))
    b = AQDNeighbors(n_neighbors=5, codebooks=loaded).fit(loaded.transform(X))
    for got, ref in zip(b.kneighbors(loaded.transform(X_q)), a.kneighbors(model.transform(X_q))):
        assert_array_equal(got, ref)
    # Saved again over itself, it is the same model.
    assert_same_model(model, DeepQuantizer.load(loaded.save(path)), X_q, y_q)


# ArrayBatches wraps the read-only array validate_data returns for a DataFrame
# (torch warns; a skdqn.training._data matter, not one of persistence).
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
def test_string_labels_feature_names_and_no_hidden_layer(tmp_path, data):
    pd = pytest.importorskip("pandas")
    X, X_q, y, y_q = data
    names = np.array(list("abcdefghij"), dtype=object)
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    dq = DeepQuantizer(random_state=0, **{**TINY, "hidden_layer_sizes": ()}).fit(frame, names[y])
    loaded = DeepQuantizer.load(dq.save(tmp_path / "m.npz"))
    assert_array_equal(loaded.feature_names_in_, dq.feature_names_in_)
    frame_q = pd.DataFrame(X_q, columns=frame.columns)
    assert_same_model(dq, loaded, frame_q, names[y_q])


def test_custom_network_needs_a_module_of_the_same_architecture(tmp_path, data, small_cnn):
    X, X_q, y, y_q = data
    images, images_q = X.reshape(-1, 1, 8, 8), X_q.reshape(-1, 1, 8, 8)
    dq = DeepQuantizer(network=small_cnn(), random_state=0, **TINY).fit(images, y)
    path = dq.save(tmp_path / "cnn")
    with pytest.raises(ValueError, match=r"custom network \(conftest.SmallCNN\).*pass a module"):
        DeepQuantizer.load(path)
    fresh = small_cnn()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    loaded = DeepQuantizer.load(path, network=fresh)
    assert_same_model(dq, loaded, images_q, y_q)
    assert loaded.network is fresh and loaded.network_.backbone is not fresh
    for key, value in fresh.state_dict().items():  # the given module is not modified
        torch.testing.assert_close(value, before[key])
    with pytest.raises(ValueError, match=r"expected items of shape \(1, 8, 8\), got \(1, 4, 16\)"):
        loaded.transform(images_q.reshape(-1, 1, 4, 16))
    other = small_cnn()
    other.conv = torch.nn.Conv2d(1, 4, 5, padding=2)
    with pytest.raises(ValueError, match=r"do not fit the network.*backbone.conv.weight is \(4, 1, 3, 3\)"):
        DeepQuantizer.load(path, network=other)
    with pytest.raises(ValueError, match="unexpected weights.*missing weights|missing weights"):
        DeepQuantizer.load(path, network=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16)))
    with pytest.raises(TypeError, match="network must be a torch.nn.Module"):
        DeepQuantizer.load(path, network="SmallCNN")


def test_a_custom_network_shaped_like_the_mlp_still_needs_the_module(tmp_path, data):
    X, X_q, y, y_q = data
    module = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU())
    dq = DeepQuantizer(network=module, random_state=0, **TINY).fit(X, y)
    path = dq.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"custom network \(a torch.nn.Sequential\)"):
        DeepQuantizer.load(path)
    assert_same_model(dq, DeepQuantizer.load(path, network=module), X_q, y_q)


def test_default_mlp_refuses_a_network_and_unfitted_refuses_save(tmp_path, model, small_cnn):
    path = model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="default MLP.*do not pass a network"):
        DeepQuantizer.load(path, network=small_cnn())
    with pytest.raises(NotFittedError):
        DeepQuantizer(**TINY).save(tmp_path / "unfitted")
    with pytest.raises(FileNotFoundError):
        DeepQuantizer.load(tmp_path / "nothing-here")


def test_an_index_file_is_not_a_model(tmp_path, data):
    X, _, y, _ = data
    path = AQDNeighbors(M=2, K=8, random_state=0).fit(X, y).save(tmp_path / "index")
    with pytest.raises(ValueError, match="does not hold a DeepQuantizer model"):
        DeepQuantizer.load(path)


@contextmanager
def storages_tagged_cuda():
    """torch.save records every storage as on "cuda:0" (as on a GPU machine)."""
    registry = torch.serialization._package_registry

    def tagger(storage):
        return "cuda:0"

    torch.serialization.register_package(-1000, tagger, lambda obj, location: None)
    try:
        yield
    finally:
        registry[:] = [entry for entry in registry if entry[1] is not tagger]


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_model_saved_on_cuda_loads_on_cpu(tmp_path, model, data):
    _, X_q, _, y_q = data
    with storages_tagged_cuda():
        path = model.save(tmp_path / "gpu")
    edit_header(path, lambda h: h.update(device="cuda:0"))
    blob = np.load(path / "network.npy").tobytes()
    with pytest.raises(RuntimeError, match="CUDA"):  # the weights really say CUDA
        torch.load(io.BytesIO(blob), weights_only=True)
    loaded = DeepQuantizer.load(path)
    assert loaded.device_ == torch.device("cpu")
    assert_same_model(model, loaded, X_q, y_q)
    # A pickle of the default MLP, recorded on CUDA, loads on the CPU too.
    with storages_tagged_cuda():
        state = model.__getstate__()
    state["device_"] = torch.device("cuda", 0)
    restored = DeepQuantizer.__new__(DeepQuantizer)
    restored.__setstate__(state)
    assert_same_model(model, restored, X_q, y_q)


# ------------------------------------------------------------- the header
def edit_header(folder, change):
    """Apply ``change`` to the header of a directory bundle, keeping its checksums valid."""
    header = json.loads((folder / "header.json").read_text())
    checksums = header.pop("checksums")
    header.pop("header_crc32")
    change(header)
    (folder / "header.json").write_text(_header_text(header, checksums))


def refresh_checksum(folder, member):
    """Make the header's checksum agree with a replaced member (as an attacker would)."""
    header = json.loads((folder / "header.json").read_text())
    checksums = header.pop("checksums")
    header.pop("header_crc32")
    checksums[member[: -len(".npy")]] = zlib.crc32((folder / member).read_bytes())
    (folder / "header.json").write_text(_header_text(header, checksums))


def _set(key, value):
    return lambda h: h.update({key: value})


def _set_network(key, value):
    return lambda h: h["network"].update({key: value})


HEADER_CASES = [
    (lambda h: h["params"].update(M="2"), "'params' is invalid"),
    (lambda h: h["params"].update(M=4), "codebooks.npy has shape"),
    (lambda h: h["params"].update(K=16), "codebooks.npy has shape"),
    (lambda h: h["params"].update(n_components=16), "'n_components'=8 disagrees"),
    (lambda h: h["params"].update(pair_loss=3), "'params' is invalid"),
    (lambda h: h["params"].update(surprise=1), "unknown parameters"),
    (lambda h: h["params"].update(network=None), "must not hold 'network'"),
    (_set("params", [1]), "'params' must be an object"),
    (lambda h: h.pop("n_components"), "no field 'n_components'"),
    (_set("n_components", "8"), "'n_components' must be an integer"),
    (_set("n_components", True), "'n_components' must be an integer"),
    (_set("n_components", 0), "'n_components' must be >= 1"),
    (_set("n_features_in", 63), "MLP's sizes disagree"),
    (_set("n_iter", 3), "'history' has 2 records for n_iter=3"),
    (_set("n_iter", -1), "'n_iter' must be >= 0"),
    (lambda h: h["history"][0].update(epoch=2), "'history', record 0"),
    (lambda h: h["history"][1].update(loss="low"), "'history', record 1"),
    (lambda h: h["history"][1].pop("lam"), "'history', record 1"),
    (_set("history", {}), "'history' must be a list"),
    (_set("network_param", "no"), "'network_param' must be true or false"),
    (_set("network", "mlp"), "'network' must be an object"),
    (_set_network("kind", "cnn"), "kind 'mlp' or 'custom'"),
    (_set_network("dropout", 1.5), "dropout must be a number in"),
    (_set_network("hidden_layer_sizes", [16, 0]), "hidden_layer_sizes' must be a list of positive"),
    (_set_network("hidden_layer_sizes", [32]), "MLP's sizes disagree"),
    (_set_network("n_components", 4), "disagrees with n_components"),
    (_set_network("n_backbone_features", "16"), "n_backbone_features must be a positive integer"),
    # Forged sizes are checked against the weights before anything is built.
    (
        lambda h: h["network"].update(hidden_layer_sizes=[10**12], n_backbone_features=10**12),
        r"fcb.weight is \(8, 16\) in the file but \(8, 1000000000000\)",
    ),
    (lambda h: h["network"].update(hidden_layer_sizes=[16, 16]), r"unexpected weights|missing weights \['backbone.3"),
    (
        lambda h: h["network"].update(hidden_layer_sizes=[10**12, 16]),
        r"backbone.0.weight is \(16, 64\) in the file but \(1000000000000, 64\)",
    ),
    (_set_network("surprise", 1), "exactly the keys"),
    (lambda h: h["network"].update(kind="custom", **{"class": "x.Y"}), "exactly the keys"),
    (_set("input_shape", [64, 1]), "'input_shape' \\[64, 1\\] disagrees"),
    (_set("input_shape", [65]), "'input_shape' \\[65\\] disagrees"),
    (_set("input_shape", "64"), "'input_shape' must be a list"),
    (_set("feature_names_in", ["a"]), "'feature_names_in' must be null or a list of n_features_in"),
    (_set("device", "tpu:x"), "'device' is not a torch device"),
    (_set("device", 0), "'device' must be a device name"),
    (_set("standardize", {"n_samples_seen": 0}), "'standardize' must be null"),
    (_set("standardize", {"n_samples_seen": 10}), "incomplete: missing \\['scaler_mean'"),
    (_set("skdqn_version", 1), "'skdqn_version' must be a version string"),
    (_set("format_version", "1"), "format_version"),
    (_set("format_version", 4), "newer skdqn"),
    (_set("loss", "hinge"), "'loss' must be one of"),
    (_set("loss", 1), "'loss' must be an objective name"),
    (lambda h: h.pop("loss"), "no field 'loss'"),
    (lambda h: h["params"].update(loss="proxy"), "'loss' 'pairwise' disagrees with the parameter loss='proxy'"),
    (lambda h: h["history"][1].pop("proxy_loss"), "'history', record 1"),
    (_set_network("normalize", "yes"), "normalize must be true or false"),
    (_set_network("normalize", True), "normalizes exactly when that loss is 'proxy'"),
    (lambda h: h["network"].pop("normalize"), "exactly the keys"),
    (_set("format", "skdqn.AQDNeighbors"), "does not hold a DeepQuantizer model"),
]


@pytest.mark.parametrize("change, match", HEADER_CASES)
def test_every_header_field_is_validated(tmp_path, model, change, match):
    folder = model.save(tmp_path / "m")
    edit_header(folder, change)
    with pytest.raises(ValueError, match=match) as exc:
        DeepQuantizer.load(folder)
    assert str(folder) in str(exc.value)


def test_a_header_edit_without_its_checksum_is_refused(tmp_path, model):
    folder = model.save(tmp_path / "m")
    header = json.loads((folder / "header.json").read_text())
    header["params"]["lam"] = 0.5
    (folder / "header.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match="header.json is damaged"):
        DeepQuantizer.load(folder)


ARRAY_CASES = [
    ("codebooks", lambda a, m: a.astype(np.float64), "codebooks.npy has shape .* float64"),
    ("codebooks", lambda a, m: np.where(a == a.flat[0], np.nan, a), "codebooks.npy holds NaN"),
    ("codes", lambda a, m: a.astype(np.int64), "codes.npy has shape"),
    ("codes", lambda a, m: np.full_like(a, 9), r"\[0, K=8\)"),
    ("labels", lambda a, m: a[:-1], "labels.npy has shape"),
    ("labels", lambda a, m: np.where(np.arange(len(a)) == 0, 42, a), "classes.npy and labels.npy disagree"),
    ("classes", lambda a, m: a.astype(str), "classes.npy and labels.npy disagree"),
    ("classes", lambda a, m: a[None], "classes.npy must be 1-D"),
    ("network", lambda a, m: a.astype(np.int16), "network.npy must be a 1-D uint8"),
    ("network", lambda a, m: a[: len(a) // 2], "network.npy does not hold network weights"),
    ("network", lambda a, m: _weights(m, {"fcb.weight": torch.zeros(3, 3)}), r"fcb.weight is \(3, 3\)"),
    ("network", lambda a, m: _weights(m, {"fcb.bias": torch.full((8,), np.nan)}), "hold NaN or infinity"),
    ("network", lambda a, m: _weights(m, {"fcb.extra": torch.zeros(1)}), r"unexpected weights \['fcb.extra'\]"),
    ("network", lambda a, m: np.frombuffer(_torch_bytes([1, 2]), np.uint8), "does not hold a state_dict"),
]


def _torch_bytes(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _weights(model, changes):
    """The model's weights as network.npy holds them, with some tensors changed or added."""
    state = {**model.network_.state_dict(), **changes}
    return np.frombuffer(_torch_bytes(state), np.uint8)


@pytest.mark.parametrize("name, damage, match", ARRAY_CASES)
def test_every_array_is_validated(tmp_path, model, name, damage, match):
    folder = model.save(tmp_path / "m")
    np.save(folder / f"{name}.npy", damage(np.load(folder / f"{name}.npy"), model))
    refresh_checksum(folder, f"{name}.npy")
    with pytest.raises(ValueError, match=match) as exc:
        DeepQuantizer.load(folder)
    assert str(folder) in str(exc.value)


def test_missing_and_extra_members(tmp_path, model):
    folder = model.save(tmp_path / "m")
    (folder / "classes.npy").unlink()
    edit_header(folder, lambda h: None)
    header = json.loads((folder / "header.json").read_text())
    checksums = {k: v for k, v in header.pop("checksums").items() if k != "classes"}
    header.pop("header_crc32")
    (folder / "header.json").write_text(_header_text(header, checksums))
    with pytest.raises(ValueError, match=r"incomplete: missing \['classes'\]"):
        DeepQuantizer.load(folder)
    path = write_bundle(tmp_path / "extra", header, {**_arrays(model), "extra": np.zeros(2)})
    with pytest.raises(ValueError, match=r"arrays its header does not describe: \['extra'\]"):
        DeepQuantizer.load(path)


def _arrays(model):
    folder_arrays = {}
    for name in ("codebooks", "codes", "labels", "classes"):
        folder_arrays[name] = np.asarray(getattr(model, {"labels": "_fit_labels"}.get(name, name + "_")))
    folder_arrays["network"] = np.frombuffer(_torch_bytes(model.network_.state_dict()), np.uint8)
    return folder_arrays


# ------------------------------------------------------------- never unpickle
class WritesAMarker:
    """Unpickling this calls ``open(path, "w")``: it creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _hostile_versions(member, marker):
    """Ways to put a pickle that runs code where ``member`` was."""
    evil = WritesAMarker(marker)
    versions = {"raw pickle": pickle.dumps(evil)}
    if member.endswith(".npy"):
        buffer = io.BytesIO()
        np.save(buffer, np.array([evil], dtype=object), allow_pickle=True)
        versions["object .npy"] = buffer.getvalue()
        for label, blob in (("pickle", pickle.dumps(evil)), ("torch.save", _torch_bytes(evil))):
            buffer = io.BytesIO()
            np.save(buffer, np.frombuffer(blob, np.uint8))
            versions[f"uint8 .npy of a {label}"] = buffer.getvalue()
    return versions


def test_the_marker_pickle_really_runs_code(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(WritesAMarker(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("member", MEMBERS)
def test_a_member_replaced_by_a_pickle_is_refused_without_running_it(tmp_path, model, member):
    marker = tmp_path / "ran"
    for label, blob in _hostile_versions(member, marker).items():
        folder = model.save(tmp_path / "m")
        (folder / member).write_bytes(blob)
        if member != "header.json":
            refresh_checksum(folder, member)  # CRC-32 is no defence: an attacker recomputes it
        with pytest.raises(ValueError, match=str(folder)):
            DeepQuantizer.load(folder)
        assert not marker.exists(), f"{member} as {label} ran code"


def test_a_single_file_replaced_by_a_pickle_is_refused_without_running_it(tmp_path, model):
    marker = tmp_path / "ran"
    path = tmp_path / "m.npz"
    path.write_bytes(pickle.dumps(WritesAMarker(marker)))
    with pytest.raises(ValueError, match="m.npz"):
        DeepQuantizer.load(path)
    # A valid bundle (checksums and all) whose weights are a hostile torch.save.
    header = json.loads((model.save(tmp_path / "ref") / "header.json").read_text())
    header.pop("checksums"), header.pop("header_crc32")
    arrays = {**_arrays(model), "network": np.frombuffer(_torch_bytes(WritesAMarker(marker)), np.uint8)}
    with pytest.raises(ValueError, match="network weights readable without pickle"):
        DeepQuantizer.load(write_bundle(path, header, arrays))
    assert not marker.exists()


# ------------------------------------------------------------------ fuzz
@pytest.mark.parametrize("name", ["m", "m.npz"])
def test_fuzz_every_member_damaged_gives_the_model_or_a_clear_error(tmp_path, model, data, name):
    _, X_q, _, y_q = data
    outcomes = {"identical": 0, "refused": 0}
    members = MEMBERS if name == "m" else ["<archive>"]
    positions = (0.0, 0.01, 0.2, 0.5, 0.77, 0.999) if name == "m" else np.linspace(0, 1, 25)
    for member in members:
        for how in ("truncate", "flip"):
            for position in positions:
                path = model.save(tmp_path / name)
                damage_file(path / member if path.is_dir() else path, how, position)
                try:
                    loaded = DeepQuantizer.load(path)
                except ValueError:
                    outcomes["refused"] += 1
                    continue
                assert_same_model(model, loaded, X_q, y_q)
                outcomes["identical"] += 1
    assert outcomes["refused"] > 0
