"""Tests of the pickle-free array bundles (skdqn.io._io)."""

import json
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn.io._io import check_header, format_header, read_bundle, write_bundle


def arrays_fixture():
    rng = np.random.default_rng(0)
    return {
        "codes": rng.integers(0, 256, size=(1000, 8)).astype(np.uint8),
        "wide": rng.integers(0, 4000, size=(7, 3)).astype(np.uint16),
        "codebooks": rng.normal(size=(2, 4, 3)).astype(np.float32),
        "labels": np.array(["cat", "dog", ""] * 3),
        "indicator": rng.random((9, 4)) < 0.5,
        "empty": np.zeros((0, 8), np.uint8),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    }


@pytest.mark.parametrize("name", ["bundle.npz", "bundle"])
@pytest.mark.parametrize("mmap_mode", [None, "r", "c"])
def test_round_trip(tmp_path, name, mmap_mode):
    arrays = arrays_fixture()
    path = write_bundle(tmp_path / name, {"a": 1, "b": [1, 2]}, arrays)
    header, back = read_bundle(path, mmap_mode=mmap_mode)
    assert header == {"a": 1, "b": [1, 2]}
    assert set(back) == set(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype, key
        assert_array_equal(back[key], value)
    if mmap_mode is not None:
        assert isinstance(back["codes"], np.memmap)
        assert not back["codes"].flags.writeable or mmap_mode == "c"


def test_single_file_is_a_plain_npz(tmp_path):
    arrays = arrays_fixture()
    path = write_bundle(tmp_path / "b.npz", {"x": 1}, arrays)
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        header = json.loads(zf.read("header.json"))  # with the checksums of the arrays and itself
        assert {k: v for k, v in header.items() if k not in ("checksums", "header_crc32")} == {"x": 1}
        assert set(header["checksums"]) == set(arrays)
    with np.load(path, allow_pickle=False) as npz:
        assert_array_equal(npz["codes"], arrays["codes"])


def test_memmapped_source_is_copied_in_blocks(tmp_path):
    codes = arrays_fixture()["codes"]
    np.save(tmp_path / "src.npy", codes)
    src = np.load(tmp_path / "src.npy", mmap_mode="r")
    for name in ("out.npz", "out"):
        path = write_bundle(tmp_path / name, {}, {"codes": src}, chunk_rows=77)
        _, back = read_bundle(path, mmap_mode="r")
        assert_array_equal(back["codes"], codes)


def test_overwrites_a_directory(tmp_path):
    write_bundle(tmp_path / "d", {"v": 1}, {"x": np.zeros(3)})
    write_bundle(tmp_path / "d", {"v": 2}, {"x": np.ones(3)})
    header, arrays = read_bundle(tmp_path / "d")
    assert header == {"v": 2}
    assert_array_equal(arrays["x"], np.ones(3))


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dtype=object"):
        write_bundle(tmp_path / "b.npz", {}, {"labels": np.array([1, "a", None], dtype=object)})
    assert not (tmp_path / "b.npz").exists()


def test_pickled_member_is_refused(tmp_path):
    path = tmp_path / "evil"
    path.mkdir()
    (path / "header.json").write_text("{}")
    np.save(path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle|allow_pickle"):
        read_bundle(path)


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved index"):
        read_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="header.json"):
        read_bundle(tmp_path / "empty")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="neither a directory"):
        read_bundle(tmp_path / "text.npz")
    np.savez_compressed(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="header.json"):
        read_bundle(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="mmap_mode"):
        read_bundle(tmp_path / "plain.npz", mmap_mode="w+")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_bundle(tmp_path / "file", {}, {"x": np.zeros(1)})


def test_compressed_member_cannot_be_mapped(tmp_path):
    path = tmp_path / "c.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.json", "{}")
        with zf.open("x.npy", "w") as member:
            np.lib.format.write_array(member, np.arange(5))
    _, arrays = read_bundle(path)  # read into memory: fine
    assert_array_equal(arrays["x"], np.arange(5))
    with pytest.raises(ValueError, match="compressed"):
        read_bundle(path, mmap_mode="r")


@pytest.mark.parametrize("name", ["bundle.npz", "bundle"])
def test_header_that_is_not_json_names_the_file(tmp_path, name):
    path = write_bundle(tmp_path / name, {"a": 1}, {"x": np.arange(3)})
    if path.is_dir():
        (path / "header.json").write_text("{not json")
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("header.json", b"\xff\xfe not json")
    with pytest.raises(ValueError, match=rf"{name}.*header.json is not valid JSON"):
        read_bundle(path)


def test_check_header():
    good = format_header("skdqn.demo", 2)
    assert good["format"] == "skdqn.demo" and good["format_version"] == 2
    assert check_header(good, "p", "skdqn.demo", 2, what="a demo") == 2
    assert check_header({"format": "skdqn.demo"}, "p", "skdqn.demo", 2, what="a demo") == 0
    with pytest.raises(ValueError, match="p: header.json must hold a JSON object; got a JSON list"):
        check_header([1, 2], "p", "skdqn.demo", 2, what="a demo")
    with pytest.raises(ValueError, match="p does not hold a demo"):
        check_header({**good, "format": "other"}, "p", "skdqn.demo", 2, what="a demo")
    with pytest.raises(ValueError, match="newer skdqn"):
        check_header({**good, "format_version": 3}, "p", "skdqn.demo", 2, what="a demo")
    for bad in ("1", 1.5, True, -1, None):
        with pytest.raises(ValueError, match="format_version"):
            check_header({**good, "format_version": bad}, "p", "skdqn.demo", 2, what="a demo")
