"""Batch sources: how :class:`~skdqn.DeepQuantizer` reads its inputs.

``DeepQuantizer`` trains and embeds from a *batch source*, one of two small
classes with the same three methods:

* :class:`ArrayBatches` over an in-memory float32 tensor (the array path:
  rows are indexed directly, exactly as before Datasets were supported);
* :class:`DatasetBatches` over a map-style :class:`torch.utils.data.Dataset`
  (data that does not fit in memory, e.g. images read from disk): items are
  loaded by a :class:`torch.utils.data.DataLoader`, optionally in worker
  processes, and checked batch by batch (same shape, finite values).

Both give :class:`Batch` tuples ``(index, x, y)``:

* ``head(k)``: the first ``k`` inputs (to probe a network);
* ``batches(index_batches)``: the given mini-batches of item indices, in
  order (training; the estimator draws the permutation itself, so both
  sources see the same batches for the same seed);
* ``chunks()``: all items in order, in consecutive batches (embedding).

The order of items and of random draws is the same for an array and for a
:class:`~torch.utils.data.TensorDataset` holding it, so training on either
performs the same steps. Nothing here keeps a reference to the inputs
beyond the source object itself.
"""

from collections import namedtuple
from numbers import Number

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = [
    "Batch",
    "is_dataset",
    "check_dataset",
    "split_item",
    "concatenate_labels",
    "ArrayBatches",
    "DatasetBatches",
]

Batch = namedtuple("Batch", ["index", "x", "y"])
Batch.__doc__ = """A mini-batch: item indices, stacked inputs and (optionally) labels.

Attributes
----------
index : torch.Tensor of shape (B,), int64
    Positions of the items in the array or Dataset.
x : torch.Tensor of shape (B, ...), float32
    The inputs, stacked.
y : ndarray of shape (B,) or (B, n_labels), or None
    Class labels or label indicator rows, when they were asked for.
"""


def is_dataset(X):
    """Whether ``X`` is a torch Dataset (rather than an array-like).

    Parameters
    ----------
    X : object
        Anything passed as ``X``.

    Returns
    -------
    bool
        True for any :class:`torch.utils.data.Dataset` instance, including an
        :class:`~torch.utils.data.IterableDataset` (rejected later by
        :func:`check_dataset` with a clear message).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from torch.utils.data import TensorDataset
    >>> from skdqn._data import is_dataset
    >>> is_dataset(TensorDataset(torch.zeros(3, 2))), is_dataset(np.zeros((3, 2)))
    (True, False)
    """
    return isinstance(X, Dataset)


def check_dataset(dataset, *, name="X"):
    """Check that a Dataset is map-style with a length, and return the length.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        The Dataset to check.
    name : str, default="X"
        Name of the argument, for error messages.

    Returns
    -------
    n_items : int
        ``len(dataset)``.

    Raises
    ------
    TypeError
        For an :class:`~torch.utils.data.IterableDataset`, or a Dataset
        without ``__len__``: items are drawn at random indices, so both
        ``__len__`` and ``__getitem__`` are needed.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from skdqn._data import check_dataset
    >>> check_dataset(TensorDataset(torch.zeros(5, 2)))
    5
    """
    expected = (
        "a map-style torch.utils.data.Dataset (with __len__ and __getitem__, items "
        "fetched by integer index)"
    )
    if isinstance(dataset, IterableDataset):
        raise TypeError(
            f"{name} is an IterableDataset ({type(dataset).__name__}); expected {expected}. "
            "Mini-batches are drawn in random order, which needs random access: wrap the "
            "data in a map-style Dataset, or load it into an array."
        )
    if not hasattr(dataset, "__len__"):
        raise TypeError(
            f"{name} ({type(dataset).__name__}) has no __len__; expected {expected}."
        )
    return int(len(dataset))


def _is_scalar(value):
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim == 0
    return isinstance(value, (Number, str, bytes, np.generic))


def split_item(item, *, index=0, require_pair=False, name="X"):
    """Split a Dataset item into ``(x, y)``.

    An item is a pair when it is a tuple or list of length 2 whose first
    element is not a scalar: ``(x, y)``. A 1-tuple ``(x,)`` (as given by a
    :class:`~torch.utils.data.TensorDataset` of inputs alone) and a bare
    ``x`` give ``y = None``.

    Parameters
    ----------
    item : object
        What ``dataset[index]`` returned.
    index : int, default=0
        Its index, for error messages.
    require_pair : bool, default=False
        Raise a ``ValueError`` unless the item is an ``(x, y)`` pair.
    name : str, default="X"
        Name of the argument, for error messages.

    Returns
    -------
    x : object
        The input.
    y : object or None
        The label, or None when the item has none.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._data import split_item
    >>> x, y = split_item((np.zeros(3), 7))
    >>> x.shape, y
    ((3,), 7)
    >>> split_item(np.zeros(3))[1] is None
    True
    """
    if isinstance(item, (tuple, list)) and len(item) in (1, 2) and not _is_scalar(item[0]):
        if len(item) == 2:
            return item[0], item[1]
        if not require_pair:
            return item[0], None
    elif not require_pair:
        return item, None
    what = f"a {type(item).__name__}"
    if isinstance(item, (tuple, list)):
        what += f" of length {len(item)}"
        if len(item) == 2:
            what += (
                f" whose first element (x) is a scalar {type(item[0]).__name__}: x must be an "
                "array of shape (n_features,), or of a shape the network accepts"
            )
    raise ValueError(
        f"fit needs a Dataset whose items are (x, y) pairs (an input and its label); "
        f"{name}[{index}] is {what}."
    )


def _as_input(x, index, name):
    try:
        x_t = torch.as_tensor(x)
        if x_t.is_complex():
            raise TypeError(f"complex dtype {x_t.dtype}")
        return x_t.to(torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name}[{index}]: x ({type(x).__name__}) could not be converted to a float32 "
            f"tensor: {exc}"
        ) from exc


def _label_value(y, index, name):
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if isinstance(y, np.ndarray) and y.ndim == 0:
        return y[()], 0
    if _is_scalar(y) or y is None:
        return y, 0
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"{name}[{index}]: y must be a class label or a 1-D label indicator vector; "
            f"got an array of shape {arr.shape}."
        )
    return arr, 1


def _stack_labels(ys, indices, name):
    values = [_label_value(y, i, name) for y, i in zip(ys, indices)]
    ndims = {nd for _, nd in values}
    if len(ndims) > 1:
        raise ValueError(
            f"{name}: items {indices[0]}..{indices[-1]} mix class labels and label indicator "
            "vectors; every y must be of the same kind."
        )
    if ndims == {0}:
        return np.asarray([v for v, _ in values])
    lengths = {v.shape[0] for v, _ in values}
    if len(lengths) > 1:
        raise ValueError(
            f"{name}: the label indicator vectors of items {indices[0]}..{indices[-1]} "
            f"have different lengths {sorted(lengths)}."
        )
    return np.stack([v for v, _ in values])


def concatenate_labels(parts, *, name="X"):
    """Concatenate the labels of consecutive batches (the ``y`` of :class:`Batch` es).

    Parameters
    ----------
    parts : list of ndarray of shape (B_i,) or (B_i, n_labels)
        Per-batch class labels, or label indicator rows.
    name : str, default="X"
        Name of the argument, for error messages.

    Returns
    -------
    labels : ndarray of shape (sum B_i,) or (sum B_i, n_labels)
        Not yet validated (see :func:`skdqn._labels.check_labels`).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._data import concatenate_labels
    >>> concatenate_labels([np.array([0, 1]), np.array([1])])
    array([0, 1, 1])
    """
    if not parts:
        return np.empty(0)
    if len({part.ndim for part in parts}) > 1:
        raise ValueError(
            f"{name}: some items have class labels and others label indicator vectors; "
            "every y must be of the same kind."
        )
    try:
        return np.concatenate(parts)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: the labels of the items cannot be combined: {exc}") from exc


class _Indexed(Dataset):
    """Items ``(i, dataset[i])``, so that batches carry their indices."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset[i]

    def __getitems__(self, indices):
        indices = list(indices)
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        return list(zip(indices, items))


class _Collate:
    """collate_fn: stack the inputs of ``[(i, item), ...]`` (picklable for workers)."""

    def __init__(self, require_pair, with_labels, name, item_shape=None):
        self.require_pair = require_pair
        self.with_labels = with_labels
        self.name = name
        self.item_shape = item_shape  # expected shape of x, when known

    def __call__(self, pairs):
        indices = [int(i) for i, _ in pairs]
        xs, ys = [], []
        for i, item in pairs:
            x, y = split_item(item, index=i, require_pair=self.require_pair, name=self.name)
            xs.append(_as_input(x, i, self.name))
            ys.append(y)
        if self.item_shape is None:
            shape, where = tuple(xs[0].shape), f"x of item {indices[0]} has"
        else:
            shape, where = tuple(self.item_shape), "earlier items have"
        for i, x in zip(indices, xs):
            if tuple(x.shape) != shape:
                raise ValueError(
                    f"{self.name}: x of item {i} has shape {tuple(x.shape)} but {where} shape "
                    f"{shape}; every x must have the same shape."
                )
        labels = _stack_labels(ys, indices, self.name) if self.with_labels else None
        return Batch(torch.tensor(indices, dtype=torch.int64), torch.stack(xs), labels)


class ArrayBatches:
    """Batch source over an in-memory tensor of inputs.

    Parameters
    ----------
    X : torch.Tensor of shape (n_samples, ...)
        The inputs, float32 (already validated).
    chunk_size : int, default=1024
        Rows per batch of :meth:`chunks`.

    Examples
    --------
    >>> import torch
    >>> from skdqn._data import ArrayBatches
    >>> source = ArrayBatches(torch.arange(10.0).reshape(5, 2), chunk_size=2)
    >>> len(source), [tuple(b.x.shape) for b in source.chunks()]
    (5, [(2, 2), (2, 2), (1, 2)])
    >>> next(source.batches([torch.tensor([4, 0])])).x
    tensor([[8., 9.],
            [0., 1.]])
    """

    def __init__(self, X, chunk_size=1024):
        self.X = X
        self.chunk_size = chunk_size

    def __len__(self):
        return self.X.shape[0]

    def reseed(self, seed):
        """No-op (nothing random happens while reading an array)."""

    def head(self, k):
        """The first ``k`` inputs, shape ``(min(k, n), ...)``."""
        return self.X[:k]

    def batches(self, index_batches, with_labels=False):
        """Yield a :class:`Batch` per 1-D int64 index tensor (``y`` is always None)."""
        for idx in index_batches:
            yield Batch(idx, self.X[idx], None)

    def chunks(self, with_labels=False):
        """Yield consecutive :class:`Batch` es of ``chunk_size`` rows (``y`` is None)."""
        n = len(self)
        for start in range(0, n, self.chunk_size):
            stop = min(start + self.chunk_size, n)
            yield Batch(torch.arange(start, stop), self.X[start:stop], None)


class DatasetBatches:
    """Batch source over a map-style Dataset, read through a DataLoader.

    Every batch is checked in the main process as it arrives: all inputs
    have the shape of the first one, and hold no NaN or infinity (the
    ``ValueError`` names the offending item indices). Inputs are converted
    to float32; only the current batches are in memory.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style, with ``__len__``; items ``(x, y)`` or ``x`` (see
        :func:`split_item`). A Dataset may define ``__getitems__(indices)``
        to load a whole batch at once; it is used when present.
    batch_size : int
        Items per batch of :meth:`chunks` (and of :meth:`batches` as given).
    require_pair : bool, default=False
        Every item must be an ``(x, y)`` pair (training).
    num_workers : int, default=0
        Worker processes of the DataLoader; 0 loads in the main process.
    pin_memory : bool, default=False
        Pin batches in page-locked memory (faster copies to a CUDA device).
    seed : int, default=0
        Seeds the DataLoader's private generator, from which the worker
        seeds are drawn (the global torch RNG is never used).
    name : str, default="X"
        Name of the argument, for error messages.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from skdqn._data import DatasetBatches
    >>> data = TensorDataset(torch.arange(10.0).reshape(5, 2), torch.tensor([0, 1, 0, 1, 1]))
    >>> source = DatasetBatches(data, batch_size=2, require_pair=True)
    >>> [b.y.tolist() for b in source.chunks(with_labels=True)]
    [[0, 1], [0, 1], [1]]
    >>> source.item_shape
    (2,)
    """

    def __init__(self, dataset, batch_size, *, require_pair=False, num_workers=0,
                 pin_memory=False, seed=0, name="X"):
        self.n = check_dataset(dataset, name=name)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.require_pair = require_pair
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.name = name
        self.item_shape = None  # shape of x, set by the first batch read
        self._head = None  # (k, inputs): head(k) is asked twice by fit
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return self.n

    def reseed(self, seed):
        """Re-seed the generator of the worker seeds."""
        self.generator.manual_seed(int(seed))

    def head(self, k):
        """The first ``k`` inputs, stacked (read in the main process)."""
        if self._head is None or self._head[0] != k:
            indices = range(min(k, self.n))
            batch = _Collate(self.require_pair, False, self.name)([(i, self.dataset[i]) for i in indices])
            self._head = (k, self._checked(batch).x)
        return self._head[1]

    def batches(self, index_batches, with_labels=False):
        """Yield a :class:`Batch` per list or 1-D tensor of item indices, in order."""
        sampler = [idx.tolist() if isinstance(idx, torch.Tensor) else list(idx) for idx in index_batches]
        return self._iterate(sampler, with_labels)

    def chunks(self, with_labels=False):
        """Yield consecutive :class:`Batch` es of ``batch_size`` items, in order."""
        sampler = [range(s, min(s + self.batch_size, self.n)) for s in range(0, self.n, self.batch_size)]
        return self._iterate(sampler, with_labels)

    def _iterate(self, batch_sampler, with_labels):
        loader = DataLoader(
            _Indexed(self.dataset),
            batch_sampler=batch_sampler,
            collate_fn=_Collate(self.require_pair, with_labels, self.name, self.item_shape),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=self.generator,
        )
        for batch in loader:
            yield self._checked(batch)

    def _checked(self, batch):
        shape = tuple(batch.x.shape[1:])
        if self.item_shape is None:
            self.item_shape = shape
        elif shape != self.item_shape:
            raise ValueError(
                f"{self.name}: x of item {int(batch.index[0])} has shape {shape} but earlier "
                f"items have shape {self.item_shape}; every x must have the same shape."
            )
        x = batch.x.reshape(batch.x.shape[0], -1)
        for bad, what in ((torch.isnan(x), "NaN"), (torch.isinf(x), "infinity")):
            rows = bad.any(dim=1)
            if rows.any():
                items = batch.index[rows].tolist()
                shown = ", ".join(str(i) for i in items[:5]) + (", ..." if len(items) > 5 else "")
                raise ValueError(
                    f"Input {self.name} contains {what}: item(s) {shown} (in a batch of items "
                    f"{int(batch.index.min())}..{int(batch.index.max())}). Inputs are checked "
                    "batch by batch as they are read."
                )
        return batch
