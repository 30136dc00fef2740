"""Local data loaders (no downloads)."""

import gzip

import numpy as np
import pytest

from skdqn.datasets import load_fashion_mnist, retrieval_split


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_load_fashion_mnist_reads_idx_files(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    labels = np.array([3, 0, 9])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    X, y = load_fashion_mnist("test", data_home=tmp_path)
    np.testing.assert_array_equal(X, images.reshape(3, -1))
    np.testing.assert_array_equal(y, labels)


def test_load_fashion_mnist_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", data_home=tmp_path)
    with pytest.raises(ValueError, match="subset"):
        load_fashion_mnist("validation", data_home=tmp_path)


def test_retrieval_split_is_balanced_disjoint_and_seeded():
    y = np.repeat(np.arange(4), 10)
    first = retrieval_split(y, 3, random_state=0)
    np.testing.assert_array_equal(np.bincount(y[first]), [3, 3, 3, 3])
    second = retrieval_split(y, 5, exclude=first, random_state=0)
    assert np.intersect1d(first, second).size == 0
    np.testing.assert_array_equal(first, retrieval_split(y, 3, random_state=0))
    with pytest.raises(ValueError, match="fewer than n_per_class"):
        retrieval_split(y, 8, exclude=first)
