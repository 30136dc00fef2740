"""Data sets for retrieval experiments, read from local files only (no downloads).

* :func:`load_fashion_mnist` reads Fashion-MNIST from the IDX files of the
  Debian package ``dataset-fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``) or any folder holding them.
* :func:`retrieval_split` draws the class-balanced query / training subsets
  of the usual deep-hashing protocol.
* :func:`make_ordered_pairs` turns any single-label image set into a set
  with many classes: two images side by side, labelled by the ordered pair
  of their classes (10 classes give 100).
"""

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["FASHION_MNIST_DIR", "load_fashion_mnist", "make_ordered_pairs", "retrieval_split"]

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


def make_ordered_pairs(X, y, n_per_class, *, image_shape=None, random_state=None):
    """A many-class set: two images side by side, labelled by the ordered pair of their classes.

    For every ordered pair of classes ``(a, b)`` (``a == b`` included),
    ``n_per_class`` items are made, each a random image of class ``a`` on
    the left of a random, different image of class ``b``. With 10 classes
    this gives 100 classes, every one of which shares its left or right
    half with 18 others: a harder retrieval problem than its parts.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Images, one flattened image per row (e.g. digits or Fashion-MNIST).
    y : array-like of shape (n_samples,)
        Their class labels; every class needs at least two images.
    n_per_class : int
        Items made for each ordered pair of classes.
    image_shape : tuple of (height, width), default=None
        The images' shape: the pair is then one ``height x 2 width`` image,
        flattened row by row (what a CNN should see). None: the two rows of
        features are concatenated (the same features, in another order).
    random_state : int, RandomState instance or None, default=None
        Seeds the draw of the images.

    Returns
    -------
    X_pairs : ndarray of shape (n_classes ** 2 * n_per_class, 2 * n_features)
        Same dtype as ``X``.
    y_pairs : ndarray of shape (n_classes ** 2 * n_per_class,), int64
        ``index(a) * n_classes + index(b)``, with ``index`` the position of a
        class in the sorted classes of ``y``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn.datasets import make_ordered_pairs
    >>> X, y = load_digits(return_X_y=True)
    >>> Xp, yp = make_ordered_pairs(X, y, 3, image_shape=(8, 8), random_state=0)
    >>> Xp.shape, len(set(yp))
    ((300, 128), 100)
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X must be 2-D and y 1-D with one label per row; got X of shape {X.shape} and y of "
            f"shape {y.shape}."
        )
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    if image_shape is not None and (len(image_shape) != 2 or image_shape[0] * image_shape[1] != X.shape[1]):
        raise ValueError(f"image_shape {image_shape!r} does not hold the {X.shape[1]} features of X.")
    rng = check_random_state(random_state)
    classes, y_idx = np.unique(y, return_inverse=True)
    pools = [np.flatnonzero(y_idx == c) for c in range(len(classes))]
    if min(len(p) for p in pools) < 2:
        raise ValueError("every class of y needs at least two images.")
    n_classes = len(classes)
    left, right = [], []
    for a in range(n_classes):
        for b in range(n_classes):
            left.append(rng.choice(pools[a], n_per_class))
            picked = rng.choice(pools[b], n_per_class)
            same = picked == left[-1]  # the same image twice: move to the pool's next image
            position = np.searchsorted(pools[b], picked[same])
            picked[same] = pools[b][(position + 1) % len(pools[b])]
            right.append(picked)
    left, right = np.concatenate(left), np.concatenate(right)
    y_pairs = y_idx[left].astype(np.int64) * n_classes + y_idx[right]
    if image_shape is None:
        return np.concatenate([X[left], X[right]], axis=1), y_pairs
    h, w = image_shape
    side = np.concatenate([X[left].reshape(-1, h, w), X[right].reshape(-1, h, w)], axis=2)
    return side.reshape(len(left), 2 * h * w), y_pairs
