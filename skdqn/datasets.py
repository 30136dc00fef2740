"""Data sets for retrieval experiments, read from local files only (no downloads).

* :func:`load_fashion_mnist` reads Fashion-MNIST from the IDX files of the
  Debian package ``dataset-fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``) or any folder holding them.
* :func:`retrieval_split` draws the class-balanced query / training subsets
  of the usual deep-hashing protocol.
"""

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist", "retrieval_split"]

#: Where the Debian package ``dataset-fashion-mnist`` puts the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = Path(directory) / name
        if path.exists():
            return path
    return None


def load_fashion_mnist(subset="train", *, data_home=None):
    """Load Fashion-MNIST (70,000 28x28 grey images, 10 classes) from local files.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        The 60,000 training or the 10,000 test images.
    data_home : str or path-like, default=None
        Folder with the IDX files (gzipped or not). ``None`` uses the
        environment variable ``SKDQN_FASHION_MNIST`` if set, else
        :data:`FASHION_MNIST_DIR`.

    Returns
    -------
    X : ndarray of shape (n_images, 784), uint8
        Pixels, row by row.
    y : ndarray of shape (n_images,), uint8
        Classes 0-9.

    Raises
    ------
    FileNotFoundError
        When the files are missing, with the command that installs them.

    Examples
    --------
    >>> from skdqn.datasets import load_fashion_mnist
    >>> X, y = load_fashion_mnist("test")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((10000, 784), (10000,))
    """
    if subset not in _FILES:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}.")
    directory = data_home or os.environ.get("SKDQN_FASHION_MNIST") or FASHION_MNIST_DIR
    paths = [_find(directory, stem) for stem in _FILES[subset]]
    if any(p is None for p in paths):
        raise FileNotFoundError(
            f"Fashion-MNIST files for subset {subset!r} not found in {directory}. Install them "
            "with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or pass data_home."
        )
    images, labels = (_read_idx(p) for p in paths)
    return images.reshape(images.shape[0], -1), labels


def retrieval_split(y, n_per_class, *, exclude=None, random_state=None):
    """Indices of a class-balanced sample: ``n_per_class`` items of every class.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_per_class : int
        Items drawn from each class, without replacement.
    exclude : array-like of int, default=None
        Indices that may not be drawn (e.g. the queries already taken).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw.

    Returns
    -------
    indices : ndarray of shape (n_classes * n_per_class,), sorted
        Positions in ``y`` of the drawn items, in increasing order.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.datasets import retrieval_split
    >>> y = np.repeat([0, 1, 2], 5)
    >>> idx = retrieval_split(y, 2, random_state=0)
    >>> np.bincount(y[idx])
    array([2, 2, 2])
    """
    rng = check_random_state(random_state)
    y = np.asarray(y)
    allowed = np.ones(y.shape[0], dtype=bool)
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=np.intp)] = False
    picked = []
    for cls in np.unique(y):
        pool = np.flatnonzero((y == cls) & allowed)
        if pool.size < n_per_class:
            raise ValueError(f"class {cls!r} has {pool.size} items available, fewer than n_per_class={n_per_class}.")
        picked.append(rng.choice(pool, n_per_class, replace=False))
    return np.sort(np.concatenate(picked))
