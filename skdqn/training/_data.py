"""Batch sources: how :class:`~skdqn.DeepQuantizer` reads its inputs.

``DeepQuantizer`` trains and embeds from a *batch source* (the
:class:`BatchSource` protocol), one of two small classes:

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

The estimator's methods reach them through one input path, whatever ``X``
is: :func:`training_source` (``fit``), :func:`prediction_source`
(``transform``, ``encode``) and :func:`scoring_data` (``score``); arrays are
validated by scikit-learn's ``validate_data``, Datasets item by item.

The order of items and of random draws is the same for an array and for a
:class:`~torch.utils.data.TensorDataset` holding it, so training on either
performs the same steps. Nothing here keeps a reference to the inputs
beyond the source object itself.
"""

from collections import namedtuple
from numbers import Number
from typing import Iterable, Iterator, Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ._network import module_device
from .._validation import check_enough_samples, check_y

# Rows per embedding batch of an array when ``predict_batch_size`` is None.
_INFERENCE_BATCH = 1024

__all__ = [
    "Batch",
    "BatchSource",
    "is_dataset",
    "check_dataset",
    "split_item",
    "concatenate_labels",
    "ArrayBatches",
    "DatasetBatches",
    "embed",
    "check_item_shape",
    "dataset_n_features",
    "training_source",
    "prediction_source",
    "scoring_data",
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


@runtime_checkable
class BatchSource(Protocol):
    """What :class:`~skdqn.DeepQuantizer` trains and embeds from: items read in batches.

    A source holds ``n = len(source)`` items; every input has the same
    shape ``item_shape`` (``(n_features,)`` for the default MLP backbone,
    any shape the ``network`` accepts otherwise). It yields :class:`Batch`
    tuples of ``B`` items: ``index`` of shape ``(B,)`` (int64 positions of
    the items), ``x`` of shape ``(B, *item_shape)`` (float32) and ``y``
    (None, unless labels are asked of :meth:`DatasetBatches.chunks`).
    Implemented by :class:`ArrayBatches` and :class:`DatasetBatches`.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._data import ArrayBatches, BatchSource
    >>> isinstance(ArrayBatches(torch.zeros(4, 2)), BatchSource)
    True
    """

    def __len__(self) -> int:
        """Number of items ``n``."""

    def reseed(self, seed: int) -> None:
        """Seed whatever randomness reading involves (DataLoader workers), from ``seed``."""

    def head(self, k: int) -> torch.Tensor:
        """The first ``min(k, n)`` inputs, shape ``(min(k, n), *item_shape)``, float32."""

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """One :class:`Batch` per 1-D int64 tensor of item indices, in the order given."""

    def chunks(self) -> Iterator[Batch]:
        """All items in order, in consecutive :class:`Batch` es (the embedding passes)."""


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
    >>> from skdqn.training._data import is_dataset
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
    >>> from skdqn.training._data import check_dataset
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
    >>> from skdqn.training._data import split_item
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
    >>> from skdqn.training._data import concatenate_labels
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
    >>> from skdqn.training._data import ArrayBatches
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

    def batches(self, index_batches):
        """Yield a :class:`Batch` per 1-D int64 index tensor (``y`` is always None)."""
        for idx in index_batches:
            yield Batch(idx, self.X[idx], None)

    def chunks(self):
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
    >>> from skdqn.training._data import DatasetBatches
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

    def batches(self, index_batches):
        """Yield a :class:`Batch` per list or 1-D tensor of item indices, in order (``y`` is None)."""
        sampler = [idx.tolist() if isinstance(idx, torch.Tensor) else list(idx) for idx in index_batches]
        return self._iterate(sampler, False)

    def chunks(self, with_labels=False):
        """Yield consecutive :class:`Batch` es of ``batch_size`` items, in order.

        With ``with_labels``, ``y`` holds the labels of the items (class
        labels, or label indicator rows); otherwise it is None.
        """
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


# ----------------------------------------------------------- the input path
def embed(net, source, *, with_labels=False):
    """Embeddings of all items of a batch source, in eval mode (no dropout).

    Streams ``source.chunks()``: only the ``(n, R)`` float32 result (and,
    with ``with_labels``, the labels) is held, never all the inputs. The
    network's train/eval mode is restored afterwards.

    Parameters
    ----------
    net : skdqn.training._network.QuantizationNetwork
        The network (its ``fcb`` layer gives ``R``).
    source : BatchSource
        The items.
    with_labels : bool, default=False
        Also return the labels of the items (a :class:`DatasetBatches` of
        ``(x, y)`` pairs only).

    Returns
    -------
    Z : ndarray of shape (n, R), float32
        The embeddings.
    labels : ndarray of shape (n,) or (n, n_labels)
        Only with ``with_labels``; not yet validated.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._data import ArrayBatches, embed
    >>> from skdqn.training._network import QuantizationNetwork, build_mlp
    >>> net = QuantizationNetwork(build_mlp(2, ()), 2, 3)
    >>> embed(net, ArrayBatches(torch.zeros(5, 2), chunk_size=2)).shape
    (5, 3)
    """
    was_training = net.training
    net.eval()
    device = module_device(net)
    Z = np.empty((len(source), net.fcb.out_features), dtype=np.float32)
    labels = []
    start = 0
    with torch.no_grad():
        for batch in source.chunks(with_labels=True) if with_labels else source.chunks():
            stop = start + batch.x.shape[0]
            Z[start:stop] = net(batch.x.to(device)).cpu().numpy()
            labels.append(batch.y)
            start = stop
    net.train(was_training)
    if with_labels:
        return Z, concatenate_labels(labels)
    return Z


def check_item_shape(estimator, item_shape, *, reset):
    """Check the shape of one x of a Dataset, as ``validate_data`` does for arrays.

    Parameters
    ----------
    estimator : DeepQuantizer
        Gives ``network`` (the default MLP needs 1-D items) and, unless
        ``reset``, the ``n_features_in_`` seen by ``fit``.
    item_shape : tuple of int
        Shape of one input x.
    reset : bool
        True in ``fit`` (nothing to compare with); False afterwards, when
        ``item_shape[0]`` must equal ``n_features_in_``. Nothing is set
        here (see :func:`dataset_n_features`).

    Examples
    --------
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.training._data import check_item_shape
    >>> check_item_shape(DeepQuantizer(), (64,), reset=True)
    """
    if len(item_shape) == 0:
        raise ValueError(
            "Each x of the Dataset must be an array of shape (n_features,) (or any shape "
            "the network accepts); got scalars."
        )
    if estimator.network is None and len(item_shape) != 1:
        raise ValueError(
            f"Each x of the Dataset must be 1-D, of shape (n_features,), for the default "
            f"MLP backbone; got x of shape {item_shape}. Give a network (e.g. a CNN) for "
            "other input shapes."
        )
    if not reset and item_shape[0] != estimator.n_features_in_:
        raise ValueError(
            f"X has {item_shape[0]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )


def dataset_n_features(source):
    """``n_features_in_`` of a Dataset source (``item_shape[0]``), or None for arrays.

    For arrays, ``validate_data(reset=True)`` already set ``n_features_in_``
    (and ``feature_names_in_``); a :class:`DatasetBatches` has no column
    names, so the estimator sets ``n_features_in_`` to this value and removes
    ``feature_names_in_``.

    Parameters
    ----------
    source : BatchSource
        A training source, from :func:`training_source`.

    Returns
    -------
    n_features : int or None

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from skdqn.training._data import DatasetBatches, dataset_n_features
    >>> source = DatasetBatches(TensorDataset(torch.zeros(4, 3)), batch_size=2)
    >>> _ = source.head(1)
    >>> dataset_n_features(source)
    3
    """
    return int(source.item_shape[0]) if isinstance(source, DatasetBatches) else None


def _chunk_size(estimator, default):
    """Items per embedding batch: ``predict_batch_size``, or ``default`` when None."""
    # getattr: an estimator pickled before predict_batch_size existed lacks it.
    size = getattr(estimator, "predict_batch_size", None)
    return default if size is None else size


def _array_input(estimator, X, *, reset):
    """``X`` validated by scikit-learn: float32, n-D only when a ``network`` is given."""
    allow_nd = estimator.network is not None
    return validate_data(
        estimator, X, reset=reset, dtype=np.float32, allow_nd=allow_nd, ensure_min_samples=1
    )


def _array_batches(estimator, X):
    """:class:`ArrayBatches` over a validated array."""
    return ArrayBatches(torch.from_numpy(X), _chunk_size(estimator, _INFERENCE_BATCH))


def _dataset_batches(estimator, dataset, *, require_pair, device):
    """:class:`DatasetBatches` with the estimator's loading parameters."""
    return DatasetBatches(
        dataset,
        _chunk_size(estimator, estimator.batch_size),
        require_pair=require_pair,
        num_workers=estimator.num_workers,
        pin_memory=device.type == "cuda",
    )


def _check_no_y(y, hint=""):
    """Raise unless ``y`` is None: a Dataset's items carry their labels."""
    if y is not None:
        raise ValueError(
            "X is a torch Dataset, whose items are (x, y) pairs: y must be None, got "
            f"{type(y).__name__}.{hint}"
        )


def training_source(estimator, X, y, device):
    """The batch source and the labels ``fit`` trains on, for an array or a Dataset.

    Arrays are validated by scikit-learn's ``validate_data`` (``reset=True``:
    this sets ``n_features_in_`` and ``feature_names_in_``) and ``y`` by
    :func:`~skdqn._validation.check_y`. A Dataset of ``(x, y)`` pairs is
    probed on its first two items (structure, conversion, shape), then read
    once for the labels, which checks every x (shape, NaN) so that bad data
    fails before any training; the global torch RNG is left alone.

    Parameters
    ----------
    estimator : DeepQuantizer
        The estimator being fitted (its parameters say how to read ``X``).
    X : array-like or torch.utils.data.Dataset
        The training inputs.
    y : array-like or None
        The labels; None for a Dataset.
    device : torch.device
        The training device (a Dataset's batches are pinned for CUDA).

    Returns
    -------
    source : BatchSource
        :class:`ArrayBatches` or :class:`DatasetBatches`.
    labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
        The validated labels (at least two classes).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.training._data import training_source
    >>> X, y = np.zeros((20, 3)), np.arange(20) % 2
    >>> source, labels = training_source(DeepQuantizer(K=16), X, y, torch.device("cpu"))
    >>> len(source), labels.shape
    (20, (20,))
    """
    who = type(estimator).__name__
    if is_dataset(X):
        _check_no_y(y, " Put the labels in the Dataset's items.")
        return _dataset_training_source(estimator, X, device)
    X = _array_input(estimator, X, reset=True)
    if y is None:
        raise ValueError(
            f"{who} requires y to be passed, but the target y is None: "
            "the labels define which items are similar."
        )
    check_enough_samples(X.shape[0], estimator.K, who=who, action="train on")
    labels = check_y(y, X.shape[0], allow_single_class=False)
    return _array_batches(estimator, X), labels


def _dataset_training_source(estimator, dataset, device):
    """:func:`training_source` for a Dataset: probe, then one label pass."""
    source = _dataset_batches(estimator, dataset, require_pair=True, device=device)
    check_enough_samples(len(source), estimator.K, who=type(estimator).__name__, action="train on")
    source.head(2)  # early errors: item structure, conversion, shape
    check_item_shape(estimator, source.item_shape, reset=True)
    # One pass reads the labels and checks every x (shape, NaN), so bad data
    # fails before any training. A Dataset may speed up all passes by
    # defining __getitems__(indices) (one read per batch).
    with torch.random.fork_rng(devices=[]):  # leave the global RNG alone
        labels = concatenate_labels([batch.y for batch in source.chunks(with_labels=True)])
    return source, check_y(labels, len(source), allow_single_class=False)


def prediction_source(estimator, X, *, require_pair=False):
    """The batch source of a fitted estimator's ``transform``, ``encode`` or ``score``.

    Parameters
    ----------
    estimator : DeepQuantizer
        A fitted estimator (checked here).
    X : array-like or torch.utils.data.Dataset
        An array, validated by ``validate_data`` (``reset=False``: its
        features must match ``fit``'s), or a non-empty map-style Dataset
        whose items are ``(x, y)``, ``(x,)`` or ``x``.
    require_pair : bool, default=False
        Every Dataset item must be an ``(x, y)`` pair (``score``).

    Returns
    -------
    source : BatchSource
        In chunks of ``predict_batch_size`` items (None: 1024 rows of an
        array, ``batch_size`` items of a Dataset).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.training._data import prediction_source
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=1, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
    >>> len(prediction_source(dq, X[:5]))
    5
    """
    check_is_fitted(estimator)
    if not is_dataset(X):
        return _array_batches(estimator, _array_input(estimator, X, reset=False))
    source = _dataset_batches(estimator, X, require_pair=require_pair, device=estimator.device_)
    if len(source) == 0:
        raise ValueError("X is an empty Dataset: at least one item is required.")
    source.head(1)
    check_item_shape(estimator, source.item_shape, reset=False)
    return source


def scoring_data(estimator, X, y=None):
    """Embeddings and labels of the queries of ``score``.

    Parameters
    ----------
    estimator : DeepQuantizer
        A fitted estimator.
    X : array-like or torch.utils.data.Dataset
        Query inputs, or a Dataset of ``(x, y)`` pairs (one pass reads the
        inputs and the labels).
    y : array-like of shape (n_queries,) or (n_queries, n_labels), default=None
        The labels of an array ``X``; None for a Dataset.

    Returns
    -------
    Z : ndarray of shape (n_queries, ``n_components_``), float32
        The embeddings of the queries.
    labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Their labels, as given (or read from the Dataset); ``score``
        validates them with :func:`~skdqn._validation.check_y`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> from skdqn.training._data import scoring_data
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=1, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
    >>> Z, labels = scoring_data(dq, X[:5], y[:5])
    >>> Z.shape, len(labels)
    ((5, 8), 5)
    """
    if is_dataset(X):
        _check_no_y(y)
        source = prediction_source(estimator, X, require_pair=True)
        Z, y = embed(estimator.network_, source, with_labels=True)
    else:
        source = prediction_source(estimator, X)
        Z = embed(estimator.network_, source)
    return Z, y
