"""Filtered search: which items each query may return.

A search's ``filter`` restricts the candidates, as faiss' ``IDSelector`` in
``SearchParameters`` does. It is given in the index's item numbering and
resolved once per call into *groups*: queries that share one set of allowed
items (:func:`check_filter`, :meth:`ItemFilter.groups`). The index then
searches each group over its allowed items only
(:meth:`skdqn.search._index.FlatIndex.restricted`): the cost of a selective filter
is that of a search over the allowed items, and the results are those of a
search over only the allowed items, with indices in the full numbering.

Forms of ``filter``:

* a boolean mask of shape ``(n_samples_fit,)``, or an array of item indices:
  one set for every query of the call;
* a boolean array or a scipy sparse matrix of shape ``(n_queries,
  n_samples_fit)``: row ``q`` allows the items of its nonzero entries (queries
  with identical rows are searched together);
* :class:`HasLabel`: the items with one of the given labels, for every query;
* :class:`SameLabel`: per query, the items sharing a label with it (by the
  index's stored labels).
"""

import numpy as np
import scipy.sparse as sp

from .._labels import check_labels

__all__ = ["HasLabel", "SameLabel", "ItemFilter", "check_filter", "only_items"]


class HasLabel:
    """A filter for every query: the items having one of ``labels`` (by the index's stored labels).

    Parameters
    ----------
    labels : array-like of shape (n_labels,)
        Class labels (for an index fitted with class labels), or column
        indices of the indicator matrix (multi-label).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn import AQDNeighbors, HasLabel
    >>> X = np.arange(16.0).reshape(8, 2)
    >>> index = AQDNeighbors(M=1, K=8).fit(X, y=[0, 1, 0, 1, 0, 1, 0, 1])
    >>> index.kneighbors([[0.0, 1.0]], n_neighbors=2, filter=HasLabel([1]), return_distance=False)
    array([[1, 3]])
    """

    def __init__(self, labels):
        self.labels = labels

    def __repr__(self):
        return f"HasLabel({self.labels!r})"


class SameLabel:
    """A per-query filter: the items sharing a label with each query (by the index's stored labels).

    Parameters
    ----------
    y : array-like of shape (n_queries,) or (n_queries, n_labels)
        The queries' labels, in the layout the index was fitted with (class
        labels, or a multi-label indicator matrix: an item qualifies when it
        shares at least one label).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn import AQDNeighbors, SameLabel
    >>> X = np.arange(16.0).reshape(8, 2)
    >>> index = AQDNeighbors(M=1, K=8).fit(X, y=[0, 1, 0, 1, 0, 1, 0, 1])
    >>> index.kneighbors([[0.0, 1.0], [4.0, 5.0]], n_neighbors=1, filter=SameLabel([1, 0]),
    ...                  return_distance=False)
    array([[1],
           [2]])
    """

    def __init__(self, y):
        self.y = y

    def __repr__(self):
        return f"SameLabel(<{len(self.y)} labels>)"


class ItemFilter:
    """A resolved filter: per query, a sorted array of allowed items.

    Parameters
    ----------
    shared : ndarray of intp or None
        The allowed items of every query (sorted, unique); None with ``rows``.
    rows : scipy.sparse.csr_matrix of shape (n_queries, n_items) or None
        Per query, its allowed items (the nonzero columns).

    Examples
    --------
    >>> import numpy as np
    >>> f = check_filter(np.array([[True, False, True], [True, False, True]]), 3, 2)
    >>> [(q.tolist(), items.tolist()) for q, items in f.groups(np.arange(2))]
    [([0, 1], [0, 2])]
    """

    def __init__(self, shared=None, rows=None):
        self.shared, self.rows = shared, rows

    def groups(self, query_ids):
        """``(positions, allowed)`` pairs covering ``query_ids`` (intp array of query indices).

        ``positions`` index ``query_ids`` (ascending); ``allowed`` are the
        sorted item indices those queries may return; queries whose allowed
        sets are equal form one group.
        """
        positions = np.arange(len(query_ids))
        if self.shared is not None:
            return [(positions, self.shared)]
        rows = self.rows[query_ids]
        keys = {}
        for p in range(rows.shape[0]):
            cols = rows.indices[rows.indptr[p] : rows.indptr[p + 1]]
            keys.setdefault(cols.tobytes(), (cols, []))[1].append(p)
        return [(np.array(members, dtype=np.intp), cols.astype(np.intp)) for cols, members in keys.values()]


def only_items(resolved, keep):
    """``resolved`` (an :class:`ItemFilter` or None) restricted to the items where ``keep`` (bool, (n_items,)) is True."""
    if resolved is None:
        return ItemFilter(shared=np.flatnonzero(keep))
    if resolved.shared is not None:
        return ItemFilter(shared=resolved.shared[keep[resolved.shared]])
    rows = sp.csr_matrix(resolved.rows.multiply(keep[None, :]), dtype=bool)
    rows.eliminate_zeros()
    rows.sort_indices()
    return ItemFilter(rows=rows)


def _from_items(values, n_items, name):
    """Sorted unique item indices from a 1-D boolean mask or integer index array."""
    if values.dtype == bool:
        if values.shape != (n_items,):
            raise ValueError(f"{name}: a boolean mask must have shape (n_samples_fit,) = ({n_items},); got {values.shape}.")
        return np.flatnonzero(values)
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a boolean mask or an array of item indices; got dtype {values.dtype}.")
    if values.size and (values.min() < 0 or values.max() >= n_items):
        raise ValueError(f"{name}: item indices must be in [0, n_samples_fit={n_items}); got {values.min()}..{values.max()}.")
    return np.unique(values).astype(np.intp)


def _from_rows(values, n_items, n_queries, name):
    """The per-query CSR form of a 2-D boolean array or sparse matrix."""
    if values.shape != (n_queries, n_items):
        raise ValueError(
            f"{name}: a per-query filter must have shape (n_queries, n_samples_fit) = "
            f"({n_queries}, {n_items}); got {values.shape}."
        )
    if not sp.issparse(values) and values.dtype != bool:
        raise TypeError(f"{name}: a 2-D filter must be boolean or a scipy sparse matrix; got dtype {values.dtype}.")
    rows = sp.csr_matrix(values, dtype=bool)
    rows.eliminate_zeros()
    rows.sort_indices()
    return rows


def _label_sets(labels, wanted, name):
    """Boolean mask of the items whose stored labels meet ``wanted`` (class labels or indicator columns)."""
    if labels.ndim == 2:
        columns = np.asarray(wanted)
        if columns.dtype.kind not in "iu" or (columns.size and (columns.min() < 0 or columns.max() >= labels.shape[1])):
            raise ValueError(f"{name}: with multi-label data, labels are column indices in [0, {labels.shape[1]}).")
        return np.asarray(labels[:, columns] != 0).any(axis=1)
    return np.isin(labels, np.asarray(wanted))


def _same_label(labels, y, n_queries, name):
    """The per-query CSR form of :class:`SameLabel`: one row per query, grouped by label."""
    y = check_labels(y)
    if y.shape[0] != n_queries or y.ndim != labels.ndim or (y.ndim == 2 and y.shape[1] != labels.shape[1]):
        raise ValueError(
            f"{name}: SameLabel needs one label (row) per query in the index's layout: shape "
            f"({n_queries},{'' if labels.ndim == 1 else f' {labels.shape[1]}'}); got {y.shape}."
        )
    if labels.ndim == 1:
        classes, inverse = np.unique(y, return_inverse=True)
        masks = [labels == c for c in classes]
    else:
        classes, inverse = np.unique(y != 0, axis=0, return_inverse=True)
        masks = [np.asarray(labels[:, row] != 0).any(axis=1) for row in classes]
    items = sp.csr_matrix(np.array(masks, dtype=bool).reshape(len(masks), labels.shape[0]))
    return items[np.ravel(inverse)]


def check_filter(filter, n_items, n_queries, labels=None, name="filter"):
    """The ``filter`` argument of a search, validated and resolved.

    Parameters
    ----------
    filter : None, array-like, scipy sparse matrix, HasLabel or SameLabel
        See the module docstring.
    n_items : int
        ``n_samples_fit_``.
    n_queries : int
        Queries of the call.
    labels : ndarray or None
        The index's stored labels (item order), for :class:`HasLabel` and
        :class:`SameLabel`.
    name : str
        Named in errors.

    Returns
    -------
    resolved : ItemFilter or None

    Examples
    --------
    >>> import numpy as np
    >>> check_filter([3, 1, 3], 5, 2).shared
    array([1, 3])
    """
    if filter is None:
        return None
    if isinstance(filter, (HasLabel, SameLabel)):
        if labels is None:
            raise ValueError(f"{name}: {type(filter).__name__} needs an index fitted with labels (fit(X, y)).")
        if isinstance(filter, HasLabel):
            return ItemFilter(shared=np.flatnonzero(_label_sets(labels, filter.labels, name)))
        return ItemFilter(rows=_same_label(labels, filter.y, n_queries, name))
    if sp.issparse(filter):
        return ItemFilter(rows=_from_rows(filter, n_items, n_queries, name))
    values = np.asarray(filter)
    if values.ndim == 1 and values.size == 0:  # no item allowed
        return ItemFilter(shared=np.empty(0, dtype=np.intp))
    if values.ndim == 1:
        return ItemFilter(shared=_from_items(values, n_items, name))
    if values.ndim == 2:
        return ItemFilter(rows=_from_rows(values, n_items, n_queries, name))
    raise ValueError(f"{name} must be 1-D (items for every query) or 2-D (per query); got {values.ndim} dimensions.")
