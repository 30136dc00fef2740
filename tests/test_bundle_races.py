"""Saved bundles under concurrent saves and loads, forged members, strict JSON headers."""

import json
import math
import os
import threading

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import skdqn.io._io as bundle_io
from skdqn import AQDNeighbors
from skdqn.io._io import read_bundle, write_bundle


def _index(seed, n=300):
    X = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return AQDNeighbors(n_neighbors=3 + seed, M=2, K=16, n_lists=4, random_state=seed).fit(X)


@pytest.mark.parametrize("mmap_mode", [None, "r"])
@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("name", ["index.npz", "index"])
def test_a_load_racing_a_save_never_mixes_two_bundles(name, verify, mmap_mode, tmp_path, monkeypatch):
    """The save lands between reading the header and reading the members (the worst moment)."""
    path = tmp_path / name
    old, new = _index(0), _index(1)  # same shapes: a mix would load without complaint
    old.save(path)
    parse = bundle_io._parse_header
    raced = []

    def parse_then_save(text, where):
        header = parse(text, where)
        if not raced:
            raced.append(True)
            new.save(path)
        return header

    monkeypatch.setattr(bundle_io, "_parse_header", parse_then_save)
    try:
        loaded = AQDNeighbors.load(path, mmap_mode=mmap_mode, verify=verify)
    except ValueError as exc:  # allowed: a clear error naming the path, never another index
        assert str(path) in str(exc) and "load it again" in str(exc)
        return
    assert raced
    # one bundle, whole: the .npz whose header was read, or the directory read again after the swap
    whole = [index for index in (old, new) if np.array_equal(loaded.codebooks_, index.codebooks_)]
    assert len(whole) == 1
    assert_array_equal(loaded.codes_, whole[0].codes_)
    assert_array_equal(loaded.list_ids_, whole[0].list_ids_)
    assert_array_equal(loaded.list_offsets_, whole[0].list_offsets_)
    assert loaded.get_params()["n_neighbors"] == whole[0].n_neighbors  # the header of the same bundle
    if name.endswith(".npz"):
        assert whole[0] is old  # the file opened first is read to the end


@pytest.mark.parametrize("name", ["index.npz", "index"])
def test_concurrent_saves_to_one_path_leave_exactly_one_bundle(name, tmp_path):
    indexes = [_index(seed, n=200 + 20 * seed) for seed in range(4)]
    path, errors = tmp_path / name, []

    def save(index):
        try:
            for _ in range(5):
                index.save(path)
        except Exception as exc:  # noqa: BLE001 - any failure breaks the contract
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(index,)) for index in indexes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert os.listdir(tmp_path) == [name]  # no .tmp- or .old- copies left behind
    loaded = AQDNeighbors.load(path)
    assert any(np.array_equal(loaded.codes_, index.codes_) for index in indexes)


def test_a_failed_save_names_the_users_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "index.npz"
    with pytest.raises(OSError, match="could not save to .*afile/index.npz"):
        _index(0).save(target)


def _forge(npy_path):
    """Rewrite a .npy header to claim a huge shape (the header keeps its length)."""
    data = bytearray(npy_path.read_bytes())
    header_end = data.index(b"\n")
    header = data[:header_end].decode("latin1")
    start, stop = header.index("'shape': (") + len("'shape': ("), header.index(")", header.index("'shape'"))
    forged = header[:start] + "1000000000000, 4" + header[stop:]
    forged = forged.rstrip(" ")
    forged = forged + " " * (header_end - len(forged))
    data[:header_end] = forged.encode("latin1")
    npy_path.write_bytes(bytes(data))


@pytest.mark.parametrize("mmap_mode", [None, "r"])
@pytest.mark.parametrize("layout", ["directory", "npz"])
def test_a_forged_member_shape_is_a_value_error_naming_the_file(layout, mmap_mode, tmp_path):
    folder = tmp_path / "index"
    _index(0).save(folder)
    _forge(folder / "codes.npy")
    path = folder
    if layout == "npz":
        import zipfile

        path = tmp_path / "index.npz"
        with zipfile.ZipFile(path, "w") as zf:  # stored, as skdqn writes
            for member in sorted(os.listdir(folder)):
                zf.write(folder / member, member)
    for verify in (True, False):
        with pytest.raises(ValueError, match="codes.npy .*declares shape") as info:
            AQDNeighbors.load(path, mmap_mode=mmap_mode, verify=verify)
        assert str(path) in str(info.value)


def test_a_forged_compressed_member_is_refused_before_reading(tmp_path):
    import zipfile

    folder = tmp_path / "b"
    write_bundle(folder, {"kind": "demo"}, {"x": np.zeros((3, 4))})
    _forge(folder / "x.npy")
    path = tmp_path / "b.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member in sorted(os.listdir(folder)):
            zf.write(folder / member, member)
    with pytest.raises(ValueError, match="x.npy .*declares shape"):
        read_bundle(path, verify=False)


def _strict(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_header_is_strict_json_and_non_finite_floats_round_trip(tmp_path):
    header = {"kind": "demo", "nan": math.nan, "values": [math.inf, -math.inf, 1.5], "nested": {"x": math.nan}}
    for path in (tmp_path / "b", tmp_path / "b.npz"):
        write_bundle(path, header, {"x": np.arange(3)})
        if path.suffix == ".npz":
            import zipfile

            with zipfile.ZipFile(path) as zf:
                text = zf.read("header.json").decode()
        else:
            text = (path / "header.json").read_text()
        _strict(text)  # no NaN / Infinity literals
        read, _ = read_bundle(path)
        assert math.isnan(read["nan"]) and math.isnan(read["nested"]["x"])
        assert read["values"] == [math.inf, -math.inf, 1.5]


def test_an_index_with_an_infinite_radius_saves_strict_json(tmp_path):
    X = np.random.default_rng(0).normal(size=(100, 4))
    index = AQDNeighbors(M=2, K=8, radius=math.inf, random_state=0).fit(X)
    path = index.save(tmp_path / "i")
    _strict((path / "header.json").read_text())
    assert AQDNeighbors.load(path).radius == math.inf


def test_old_headers_with_nan_literals_still_load(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    np.save(folder / "x.npy", np.arange(3))
    (folder / "header.json").write_text(json.dumps({"kind": "demo", "loss": math.nan, "r": math.inf}))
    header, arrays = read_bundle(folder)
    assert math.isnan(header["loss"]) and header["r"] == math.inf
    assert_array_equal(arrays["x"], np.arange(3))
