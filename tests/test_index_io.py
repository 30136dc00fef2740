"""Tests of saving and loading AQDNeighbors (skdqn.io._index_io): trust under damage.

Every saved member is truncated and has bytes flipped in turn: each load
gives the identical index or a clear ValueError, never another exception.
Saving never writes into a file that is memory-mapped, and replaces the
whole index.
"""

import json
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from conftest import assert_same_search, damage_file
from skdqn import AQDNeighbors
from skdqn.io._io import write_bundle


def data(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:4] = 0.0
    X[10:20] = X[30]
    return X, rng.integers(0, 4, size=n)


def same_index(a, b, X):
    assert a.get_params(deep=False).keys() == b.get_params(deep=False).keys()
    for key, value in a.get_params(deep=False).items():
        other = b.get_params(deep=False)[key]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            assert_array_equal(value, other)
        else:
            assert value == other, key
    assert_array_equal(a.codebooks_, b.codebooks_)
    assert_array_equal(a.codes_, b.codes_)
    for name in ("coarse_centroids_", "list_offsets_", "list_ids_"):
        if getattr(a, name) is None:
            assert getattr(b, name) is None
        else:
            assert_array_equal(getattr(a, name), getattr(b, name))
    assert_array_equal(a._fit_labels, b._fit_labels)
    assert_same_search(a, b, X)


@pytest.fixture(params=["exhaustive", "lists"])
def index(request):
    X, y = data()
    params = {"n_lists": 6, "n_probe": 2} if request.param == "lists" else {}
    return AQDNeighbors(n_neighbors=4, M=2, K=8, random_state=0, **params).fit(X, y), X


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", ["i", "i.npz"])
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_round_trip(tmp_path, index, name, mmap_mode):
    index, X = index
    loaded = AQDNeighbors.load(index.save(tmp_path / name), mmap_mode=mmap_mode)
    same_index(index, loaded, X)
    if mmap_mode and name == "i":
        assert isinstance(loaded.codes_, np.memmap)
    assert loaded.score(X[:30], index._fit_labels[:30]) == index.score(X[:30], index._fit_labels[:30])


def test_lists_memory_mapped_and_grown(tmp_path):
    X, y = data()
    index = AQDNeighbors(n_neighbors=4, M=2, K=8, n_lists=6, random_state=0).fit(X[:300], y[:300])
    loaded = AQDNeighbors.load(index.save(tmp_path / "i"), mmap_mode="r")
    assert isinstance(loaded.list_ids_, np.memmap)
    loaded.partial_fit(X[300:], y[300:])
    index.partial_fit(X[300:], y[300:])
    same_index(index, loaded, X)
    assert pickle.loads(pickle.dumps(loaded)).n_samples_fit_ == 400


def test_format_version_1_still_loads(tmp_path):
    # What the previous version wrote: no checksums, no lists, format_version 1.
    index, X = AQDNeighbors(n_neighbors=3, M=2, K=8, random_state=0).fit(data()[0]), data()[0]
    folder = tmp_path / "v1"
    folder.mkdir()
    params = {"K": 8, "M": 2, "metric": "euclidean", "n_jobs": None, "n_neighbors": 3, "radius": 1.0,
              "random_state": 0}
    header = {"format": "skdqn.AQDNeighbors", "format_version": 1, "skdqn_version": "0.1.0",
              "params": params, "codebooks_given": False, "n_samples_fit": 400, "n_features_in": 8,
              "feature_names_in": None}
    (folder / "header.json").write_text(json.dumps(header))
    np.save(folder / "codebooks.npy", index.codebooks_)
    np.save(folder / "codes.npy", index.codes_)
    loaded = AQDNeighbors.load(folder)
    assert loaded.n_lists is None and loaded.coarse_centroids_ is None
    assert_same_search(loaded, index, X[:20])


def test_format_version_2_still_loads(tmp_path):
    # An index with lists and no rotation is written exactly as before rotations existed:
    # format_version 2, no "rotation" field, no rotation.npy.
    X, y = data()
    index = AQDNeighbors(n_neighbors=3, M=2, K=8, n_lists=4, random_state=0).fit(X, y)
    folder = index.save(tmp_path / "v2")
    header = json.loads((folder / "header.json").read_text())
    assert header["format_version"] == 2 and "rotation" not in header
    assert not (folder / "rotation.npy").exists()
    loaded = AQDNeighbors.load(folder)
    assert loaded.rotation is None and loaded.rotation_ is None
    same_index(index, loaded, X[:20])


# ------------------------------------------------------ saving is safe
@pytest.mark.parametrize("name", ["i", "i.npz"])
def test_saving_over_a_memory_mapped_index_is_safe(tmp_path, name):
    # Regression: load(path, mmap_mode="r").save(path) truncated the mapped
    # files (SIGBUS, and the index on disk destroyed). Run in a subprocess, so
    # that a crash fails the test instead of killing the test run.
    X, y = data()
    path = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X, y).save(tmp_path / name)
    code = f"""
import numpy as np
from skdqn import AQDNeighbors
index = AQDNeighbors.load({str(path)!r}, mmap_mode="r")
before = index.kneighbors(np.zeros((3, 8)))
index.save({str(path)!r})
after = index.kneighbors(np.zeros((3, 8)))  # the old mapping still reads
again = AQDNeighbors.load({str(path)!r}, mmap_mode="r").kneighbors(np.zeros((3, 8)))
assert all((a == b).all() and (a == c).all() for a, b, c in zip(before, after, again))
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_save_replaces_the_whole_index(tmp_path):
    # Regression: an unlabelled index saved over a labelled one left the old
    # labels.npy behind, and loading failed ("400 labels for 30 items").
    X, y = data()
    folder = AQDNeighbors(M=2, K=8, n_lists=3, random_state=0).fit(X, y).save(tmp_path / "i")
    small = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:30])
    small.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["codebooks.npy", "codes.npy", "header.json"]
    same_index(small, AQDNeighbors.load(folder), X[:10])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_saving_refuses_to_replace_a_directory_that_is_not_an_index(tmp_path):
    X, _ = data()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(ValueError, match="holds other files"):
        AQDNeighbors(M=2, K=8, random_state=0).fit(X).save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


# ------------------------------------------------------------ the header
def edit_header(folder, change):
    header = json.loads((folder / "header.json").read_text())
    change(header)
    (folder / "header.json").write_text(json.dumps(header))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda h: h["params"].update(M="4"), "'params' is invalid"),
        (lambda h: h["params"].update(M=4), "disagree with the codebooks"),
        (lambda h: h["params"].update(K=16), "disagree with the codebooks"),
        (lambda h: h["params"].update(metric=3), "'params' is invalid"),
        (lambda h: h["params"].update(n_probe=0), "'params' is invalid"),
        (lambda h: h["params"].update(surprise=1), "unknown parameters"),
        (lambda h: h.update(params=[1]), "'params' must be an object"),
        (lambda h: h.pop("n_samples_fit"), "no field 'n_samples_fit'"),
        (lambda h: h.update(n_samples_fit="400"), "'n_samples_fit' must be an integer"),
        (lambda h: h.update(n_samples_fit=True), "'n_samples_fit' must be an integer"),
        (lambda h: h.update(n_samples_fit=399), "codes have shape"),
        (lambda h: h.update(n_features_in=6), "does not fit the header"),
        (lambda h: h.update(codebooks_given="no"), "'codebooks_given' must be true or false"),
        (lambda h: h.update(feature_names_in=["a"]), "'feature_names_in' must be null or a list"),
        (lambda h: h.update(lists=False), "arrays its header does not describe"),
        (lambda h: h.update(list_metric="cosine"), "'list_metric' must be one of"),
        (lambda h: h.update(format_version="2"), "format_version"),
        (lambda h: h.update(format="skdqn.Other"), "does not hold an AQDNeighbors index"),
    ],
)
def test_every_header_field_is_validated(tmp_path, change, match):
    X, y = data()
    folder = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X, y).save(tmp_path / "i")
    edit_header(folder, change)
    with pytest.raises(ValueError, match="header.json is damaged"):
        AQDNeighbors.load(folder)  # the checksum sees any edit
    with pytest.raises(ValueError, match=match):
        AQDNeighbors.load(folder, verify=False)  # and each field is checked on its own


@pytest.mark.parametrize(
    "header",
    ["not json {", "[1, 2]", '"a string"', '{"format": "skdqn.AQDNeighbors", "format_version": 2}'],
)
def test_headers_that_are_not_index_headers(tmp_path, header):
    X, _ = data()
    folder = AQDNeighbors(M=2, K=8, random_state=0).fit(X).save(tmp_path / "i")
    (folder / "header.json").write_text(header)
    with pytest.raises(ValueError, match="header.json|no field"):
        AQDNeighbors.load(folder, verify=False)


def test_damaged_lists_are_refused(tmp_path):
    X, y = data()
    index = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X, y)
    folder = index.save(tmp_path / "i")
    for name, damage, match in [
        ("list_ids", lambda a: a[::-1].copy(), "ascend within each list"),
        ("list_ids", lambda a: np.where(a == 0, 1, a), "each item index"),
        ("list_offsets", lambda a: a[::-1].copy(), "rise from 0"),
        ("list_offsets", lambda a: a[:-1], "list_offsets must be int64 of shape"),
        ("coarse_centroids", lambda a: a.astype(np.float64), "coarse_centroids must be float32"),
    ]:
        original = np.load(folder / f"{name}.npy")
        np.save(folder / f"{name}.npy", damage(original))
        with pytest.raises(ValueError, match=match):
            AQDNeighbors.load(folder, verify=False)
        np.save(folder / f"{name}.npy", original)
    (folder / "list_ids.npy").unlink()
    with pytest.raises(ValueError, match="are missing"):
        AQDNeighbors.load(folder, verify=False)


# ------------------------------------------------------------------ fuzz
def _members(path):
    if path.is_dir():
        return sorted(p.name for p in path.iterdir())
    return ["<archive>"]


@pytest.mark.parametrize("name", ["i", "i.npz"])
def test_fuzz_every_member_damaged_gives_the_index_or_a_clear_error(tmp_path, name):
    X, y = data(n=200)
    index = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X, y)
    reference = index.save(tmp_path / f"ref-{name}")
    outcomes = {"identical": 0, "refused": 0}
    for member in _members(reference):
        for how in ("truncate", "flip"):
            for position in (0.0, 0.01, 0.3, 0.5, 0.77, 0.999):
                path = index.save(tmp_path / name)
                damage_file(path / member if path.is_dir() else path, how, position)
                for mmap_mode in (None, "r"):
                    try:
                        loaded = AQDNeighbors.load(path, mmap_mode=mmap_mode)
                    except ValueError:
                        outcomes["refused"] += 1
                        continue
                    same_index(index, loaded, X[:5])
                    outcomes["identical"] += 1
    assert outcomes["refused"] > 0
