"""Label handling shared by the losses, the metrics and the estimators.

Relevance in supervised hashing and quantization is "the two items share at
least one label". Two label layouts are accepted everywhere in skdqn:

* 1-D class labels of any type (``["cat", "dog", ...]`` or integers), one label
  per item;
* a 2-D binary indicator matrix of shape ``(n_samples, n_labels)`` (dense or
  sparse), any number of labels per item (multi-label data).

The functions here are small and pure: they validate, they never modify their
inputs, and they return new arrays.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import type_of_target

__all__ = ["check_labels", "label_kind", "relevance", "label_indicator"]


def check_labels(y, *, name="y", allow_single_class=True):
    """Validate labels and return them in one of the two canonical layouts.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        1-D class labels of any type, or a 2-D binary indicator matrix
        (dense or sparse) for multi-label data.
    name : str, default="y"
        Name of the argument, used in error messages.
    allow_single_class : bool, default=True
        If False, raise a ``ValueError`` when every sample has the same label
        (nothing can be learnt from that).

    Returns
    -------
    labels : ndarray
        Either a 1-D array of shape (n_samples,) (a copy of the class labels)
        or a 2-D ``bool`` array of shape (n_samples, n_labels).

    Raises
    ------
    ValueError
        If the labels are continuous, contain NaN, are empty, or are not a
        1-D/2-D array.

    Examples
    --------
    >>> from skdqn._labels import check_labels
    >>> check_labels(["a", "b", "a"])
    array(['a', 'b', 'a'], dtype='<U1')
    >>> check_labels([[1, 0], [1, 1]])
    array([[ True, False],
           [ True,  True]])
    """
    if y is None:
        raise ValueError(f"{name} is required (class labels or a label indicator matrix), got None.")
    if sp.issparse(y):
        y = y.toarray()
    y_arr = np.asarray(y)
    if y_arr.ndim == 0 or y_arr.ndim > 2:
        raise ValueError(
            f"{name} must be 1-D class labels or a 2-D label indicator matrix; "
            f"got an array with {y_arr.ndim} dimensions."
        )
    if y_arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one label is required.")
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr.ravel()
    if y_arr.dtype.kind == "f" and np.isnan(y_arr).any():
        raise ValueError(f"{name} contains NaN: every sample needs a label.")
    if y_arr.dtype.kind == "O" and any(v is None for v in y_arr.ravel()):
        raise ValueError(f"{name} contains None: every sample needs a label.")
    kind = type_of_target(y_arr, input_name=name)
    if kind == "unknown":
        raise ValueError(
            f"Unknown label type for {name}: expected class labels or a label indicator "
            f"matrix, got values of dtype {y_arr.dtype}."
        )
    if y_arr.ndim == 2:
        if kind != "multilabel-indicator":
            if kind == "multiclass-multioutput" or np.any((y_arr != 0) & (y_arr != 1)):
                raise ValueError(
                    f"{name} is 2-D, so it must be a binary label indicator matrix "
                    f"(0/1 entries); got {kind!r} values."
                )
        labels = y_arr.astype(bool)
        if not allow_single_class and (labels.all(axis=0) | ~labels.any(axis=0)).all():
            raise ValueError(
                f"{name} has a single label configuration: every sample shares the same "
                "labels, so there is nothing to learn. At least two classes are needed."
            )
        return labels
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"{name} must hold class labels (binary or multiclass), but its values look "
            f"{kind}. Continuous targets cannot define which items are relevant to each "
            "other; bin them or use class labels."
        )
    labels = y_arr.copy()
    if not allow_single_class and np.unique(labels).shape[0] < 2:
        raise ValueError(
            f"{name} has a single class; at least two classes are needed to learn "
            "which items are similar and which are not."
        )
    return labels


def label_kind(labels):
    """What canonical labels hold: ``"indicator"``, ``"text"`` or ``"number"``.

    Labels of different kinds never share a label: a string ``"1"`` is not
    the class ``1``, so mixing them is refused where labels are combined.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
        Output of :func:`check_labels`.

    Returns
    -------
    kind : {"indicator", "text", "number"}

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._labels import label_kind
    >>> label_kind(np.array(["cat"])), label_kind(np.array([3])), label_kind(np.eye(2, dtype=bool))
    ('text', 'number', 'indicator')
    """
    if labels.ndim == 2:
        return "indicator"
    if labels.dtype.kind == "O":
        return "text" if labels.size and isinstance(labels[0], (str, bytes)) else "number"
    return "text" if labels.dtype.kind in "US" else "number"


def label_indicator(labels, classes=None):
    """Turn canonical labels into a float32 multi-hot matrix.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
        Output of :func:`check_labels`.
    classes : ndarray of shape (n_classes,), default=None
        For 1-D labels, the sorted classes that define the columns. Labels
        not in ``classes`` get an all-zero row (relevant to nothing). Computed
        from ``labels`` when None. Ignored for 2-D labels.

    Returns
    -------
    indicator : ndarray of shape (n_samples, n_classes), dtype float32
        One row per sample, 1.0 where the sample carries the label.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._labels import label_indicator
    >>> label_indicator(np.array([2, 0, 2]))
    array([[0., 1.],
           [1., 0.],
           [0., 1.]], dtype=float32)
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(np.float32)
    if classes is None:
        classes = np.unique(labels)
    pos = np.searchsorted(classes, labels)
    pos = np.clip(pos, 0, max(len(classes) - 1, 0))
    known = classes[pos] == labels if len(classes) else np.zeros(labels.shape, bool)
    out = np.zeros((labels.shape[0], len(classes)), dtype=np.float32)
    rows = np.flatnonzero(known)
    out[rows, pos[rows]] = 1.0
    return out


def relevance(query_labels, database_labels):
    """Boolean relevance matrix: do query i and database item j share a label?

    Parameters
    ----------
    query_labels : ndarray of shape (n_queries,) or (n_queries, n_labels)
        Canonical labels (see :func:`check_labels`).
    database_labels : ndarray of shape (n_database,) or (n_database, n_labels)
        Canonical labels, in the same layout as ``query_labels``.

    Returns
    -------
    rel : ndarray of shape (n_queries, n_database), dtype bool

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._labels import relevance
    >>> relevance(np.array([0, 1]), np.array([1, 1, 0]))
    array([[False, False,  True],
           [ True,  True, False]])
    """
    q = np.asarray(query_labels)
    d = np.asarray(database_labels)
    if q.ndim != d.ndim:
        raise ValueError(
            "query and database labels must have the same layout (both 1-D class labels "
            f"or both 2-D indicators); got {q.ndim}-D and {d.ndim}-D."
        )
    if q.ndim == 1:
        return q[:, None] == d[None, :]
    if q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query labels have {q.shape[1]} label columns but database labels have "
            f"{d.shape[1]}."
        )
    return (q.astype(np.float32) @ d.astype(np.float32).T) > 0

