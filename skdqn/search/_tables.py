"""Lookup tables of Asymmetric Quantizer Distance, and the queries that make them.

A query ``q`` stays real-valued; per query an ``(M, K)`` table of the
distances between each query subvector and each codeword is computed once
(:func:`distance_tables`), and the distance to an item is the sum of ``M``
entries picked by its code (see :mod:`skdqn.search._kernels`).

The search never builds the tables of all queries at once: it asks a *query
source* for the tables of one block of queries at a time, inside the task
that scans that block. The three sources share one small interface
(:class:`QuerySource`):

* :class:`VectorQueries`: real-valued queries (``kneighbors(X)``);
* :class:`CodeQueries`: the indexed items themselves, each decoded from its
  code block by block (``kneighbors()`` with ``X=None``), so no table per item
  is built up front;
* :class:`TableQueries`: tables given as they are (kernel tests, callers that
  already hold them).

``block(rows)`` returns a source for a slice of the queries that holds views
only, so a task shipped to another process or machine carries just its own
queries (and the small codebooks).
"""

from typing import Protocol

import numpy as np
from scipy.spatial.distance import cdist

from . import _tuning
from .._pq import check_magnitude, decode

__all__ = [
    "distance_tables",
    "flat_tables",
    "QuerySource",
    "VectorQueries",
    "CodeQueries",
    "TableQueries",
    "as_query_source",
]

_TABLE_METRICS = ("sqeuclidean", "inner_product")


def distance_tables(Q, codebooks, metric="sqeuclidean", *, block_floats=None, layout="scan"):
    """Per-query lookup tables of subspace distances to every codeword.

    Parameters
    ----------
    Q : ndarray of shape (n_queries, M * ds), float
        Real-valued queries.
    codebooks : ndarray of shape (M, K, ds), float32
    metric : {"sqeuclidean", "inner_product"}, default="sqeuclidean"
        ``"sqeuclidean"``: ``table[q, m, k] = ||Q[q, m-th block] - codebooks[m, k]||^2``,
        so that the sum over ``m`` is the AQD of the paper.
        ``"inner_product"``: ``table[q, m, k] = -<Q[q, m-th block], codebooks[m, k]>``;
        the sum is the negated inner product ``-<q, C h>``, so that smaller is
        still better.
    block_floats : int, default=None
        Bound on the temporaries, in floats (:data:`skdqn.search._tuning.TABLE_BLOCK_FLOATS`,
        4194304, when None; ``"sqeuclidean"``: float64
        blocks of ``block_floats // 64`` values, ``K`` per query;
        ``"inner_product"``: ``(K, queries)`` blocks of ``block_floats // K``
        queries in the scan layout, at most ``block_floats // 32`` in the
        query layout); results do not depend on it.
    layout : {"scan", "query"}, default="scan"
        ``"scan"``: a transposed view of a C-contiguous ``(M, K, n_queries)``
        array, the layout the exhaustive numpy scan reads (:func:`flat_tables`
        then copies nothing). ``"query"``: C-contiguous, each query's table
        one contiguous row (the layout the inverted lists read). The same
        floats either way.

    Returns
    -------
    tables : ndarray of shape (n_queries, M, K), float32

    Notes
    -----
    Queries are first rounded to float32. Squared distances are computed by
    ``scipy.spatial.distance.cdist(..., "sqeuclidean")``: each (query,
    codeword) pair on its own, as float64 differences (not by expanding the
    square) squared and summed in the order ``d = 0, 1, ...``, then rounded
    once to float32; so a query equal to a codeword gets exactly 0, and
    integer data exact values (measured: twice as fast as the float32 numpy
    accumulation it replaced, and more accurate). Inner products are
    accumulated in float32 one dimension at a time, ``sum_d q_d c_d`` in the
    same order, elementwise. Either way no matrix product is involved (whose
    rounding depends on the number of rows): a query's table is the same,
    bit for bit, whatever the other queries computed with it, and results
    never depend on the query blocks of a search.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import distance_tables
    >>> C = np.array([[[0.0], [1.0]], [[0.0], [2.0]]], dtype=np.float32)
    >>> distance_tables(np.array([[1.0, 0.0]]), C)
    array([[[1., 0.],
            [0., 4.]]], dtype=float32)
    """
    if metric not in _TABLE_METRICS:
        raise ValueError(f"metric must be 'sqeuclidean' or 'inner_product', got {metric!r}.")
    if layout not in ("scan", "query"):
        raise ValueError(f"layout must be 'scan' or 'query', got {layout!r}.")
    Q = np.asarray(Q, dtype=np.float32)
    if block_floats is None:
        block_floats = _tuning.TABLE_BLOCK_FLOATS
    if metric == "sqeuclidean":
        return _squared_tables(Q, codebooks, layout, max(1, block_floats // 64 // codebooks.shape[1]))
    if layout == "query":
        return _query_major_products(Q, codebooks, max(1, block_floats // 32))
    return _scan_layout_products(Q, codebooks, block_floats)


def _squared_tables(Q, codebooks, layout, step):
    """Squared-distance tables by scipy's ``cdist``, ``step`` queries at a time, in ``layout``."""
    nq, (M, K, ds) = Q.shape[0], codebooks.shape
    C = codebooks.astype(np.float64)
    out = np.empty((nq, M, K) if layout == "query" else (M, K, nq), dtype=np.float32)
    for start in range(0, nq, step):
        rows = slice(start, min(nq, start + step))
        block = Q[rows].astype(np.float64)
        for m in range(M):
            sub = block[:, m * ds : (m + 1) * ds]
            if layout == "query":
                out[rows, m] = cdist(sub, C[m], "sqeuclidean")
            else:  # |c - q| == |q - c|: the same floats
                out[m, :, rows] = cdist(C[m], sub, "sqeuclidean")
    return out if layout == "query" else out.transpose(2, 0, 1)


def _scan_layout_products(Q, codebooks, block_floats):
    """Inner-product tables in the ``(M, K, nq)`` layout, one dimension at a time."""
    M, K, ds = codebooks.shape
    QT = np.ascontiguousarray(Q.T)  # (M * ds, nq): one contiguous row per dimension
    out = np.empty((M, K, Q.shape[0]), dtype=np.float32)
    step = max(1, block_floats // K)
    tmp = np.empty((K, min(step, Q.shape[0])), dtype=np.float32)
    for start in range(0, Q.shape[0], step):
        cols = slice(start, min(Q.shape[0], start + step))
        for m in range(M):
            _accumulate_negated_products(
                QT[m * ds : (m + 1) * ds, cols], codebooks[m], out[m, :, cols], tmp[:, : cols.stop - start]
            )
    return out.transpose(2, 0, 1)


def _query_major_products(Q, codebooks, block_floats):
    """Inner-product tables in the ``(nq, M, K)`` layout, a block of queries and subspaces at a time.

    Per block, every product ``(ds, queries, subspaces, K)`` is formed and
    summed over its first axis, which numpy adds in order ``d = 0, 1, ...``:
    the floats of :func:`_accumulate_negated_products`, without a
    transposing copy.
    """
    nq, (M, K, ds) = Q.shape[0], codebooks.shape
    CT = np.ascontiguousarray(codebooks.transpose(2, 0, 1))  # (ds, M, K)
    QD = np.ascontiguousarray(Q.reshape(nq, M, ds).transpose(2, 0, 1))  # (ds, nq, M)
    out = np.empty((nq, M, K), dtype=np.float32)
    m_step = max(1, min(M, block_floats // (ds * K)))
    q_step = max(1, block_floats // (ds * m_step * K))
    tmp = np.empty((ds, min(q_step, nq), m_step, K), dtype=np.float32)
    for q0 in range(0, nq, q_step):
        q1 = min(nq, q0 + q_step)
        for m0 in range(0, M, m_step):
            m1 = min(M, m0 + m_step)
            t = tmp[:, : q1 - q0, : m1 - m0]
            np.multiply(CT[:, None, m0:m1], QD[:, q0:q1, m0:m1, None], out=t)
            np.add.reduce(t, axis=0, out=out[q0:q1, m0:m1], initial=-0.0)  # -0.0 + x == x: zeros keep their sign
    return np.negative(out, out=out)


def _accumulate_negated_products(q, c, out, tmp):
    """``out[k, j] = -sum_d q[d, j] c[k, d]``, summed over ``d`` in order (shapes as above)."""
    np.multiply.outer(c[:, 0], q[0], out=out)
    for d in range(1, q.shape[0]):
        np.multiply.outer(c[:, d], q[d], out=tmp)
        out += tmp
    np.negative(out, out=out)


def flat_tables(tables):
    """(nq, M, K) tables -> (M * K, nq), C-contiguous: one row per (m, k).

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32

    Returns
    -------
    flat : ndarray of shape (M * K, n_queries), float32
        ``flat[m * K + k, q] = tables[q, m, k]``: the layout the numpy scan
        gathers rows from.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import flat_tables
    >>> flat_tables(np.arange(4, dtype=np.float32).reshape(1, 2, 2)).ravel()
    array([0., 1., 2., 3.], dtype=float32)
    """
    nq, M, K = tables.shape
    return np.ascontiguousarray(tables.reshape(nq, M * K).T)


class QuerySource(Protocol):
    """What the search needs from its queries: their number, blocks, and tables.

    Attributes
    ----------
    n_queries : int
        Number of queries.

    Methods
    -------
    block(rows)
        A source for the queries ``rows`` (a slice), holding views only.
    tables(layout="scan")
        The ``(n_queries, M, K)`` float32 lookup tables of these queries, in
        the layout asked for (see :func:`distance_tables`) where the source
        computes them.
    """

    n_queries: int

    def block(self, rows):
        """A source for the queries ``rows`` (a slice)."""

    def tables(self, layout="scan"):
        """The ``(n_queries, M, K)`` float32 tables of these queries."""


class _RowQueries:
    """Queries held as the rows of an array; tables computed when asked.

    Subclasses say how rows become vectors (:meth:`_vectors`).
    """

    def __init__(self, rows, codebooks, metric):
        self._rows = rows
        self.codebooks = codebooks
        self.metric = metric
        self.n_queries = rows.shape[0]

    def block(self, rows):
        """A source for the queries ``rows`` (a view of the array)."""
        return type(self)(self._rows[rows], self.codebooks, self.metric)

    def vectors(self):
        """The queries as real vectors, shape (n_queries, M * ds)."""
        return self._vectors()

    def tables(self, layout="scan"):
        """``distance_tables`` of the queries' vectors, in ``layout``."""
        return distance_tables(self._vectors(), self.codebooks, self.metric, layout=layout)


class VectorQueries(_RowQueries):
    """Real-valued queries; their tables are computed when asked, block by block.

    Parameters
    ----------
    X : ndarray of shape (n_queries, M * ds), float
        The queries (validated by the caller; not copied).
    codebooks : ndarray of shape (M, K, ds), float32
    metric : {"sqeuclidean", "inner_product"}
        The table metric (see :func:`distance_tables`).

    Raises
    ------
    ValueError
        If ``X`` holds values so large that the float32 tables would
        overflow (see :func:`skdqn._pq.check_magnitude`): distances are
        never silently infinite.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.zeros((2, 4, 3), np.float32)
    >>> queries = VectorQueries(np.ones((10, 6)), C, "sqeuclidean")
    >>> queries.n_queries, queries.block(slice(2, 5)).tables().shape
    (10, (3, 2, 4))
    """

    def __init__(self, X, codebooks, metric):
        check_magnitude(X, codebooks.shape[0] * codebooks.shape[2])
        super().__init__(X, codebooks, metric)

    @property
    def X(self):
        """The queries."""
        return self._rows

    def _vectors(self):
        return self._rows


class CodeQueries(_RowQueries):
    """The indexed items as queries: each is its reconstruction ``C h`` from its code.

    Parameters
    ----------
    codes : ndarray of shape (n_queries, M), integer in ``[0, K)``
        May be memory-mapped; a block is decoded only when its tables are asked.
    codebooks : ndarray of shape (M, K, ds), float32
    metric : {"sqeuclidean", "inner_product"}
        The table metric (see :func:`distance_tables`).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import CodeQueries
    >>> C = np.array([[[0.0], [1.0]]], np.float32)
    >>> CodeQueries(np.array([[1], [0]], np.uint8), C, "sqeuclidean").tables()[:, 0]
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """

    @property
    def codes(self):
        """The codes of the queries."""
        return self._rows

    def _vectors(self):
        return decode(self._rows, self.codebooks)


class TableQueries:
    """Queries given by their lookup tables.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import TableQueries
    >>> TableQueries(np.zeros((5, 2, 4), np.float32)).block(slice(0, 2)).tables().shape
    (2, 2, 4)
    """

    def __init__(self, tables):
        self._tables = tables
        self.n_queries = tables.shape[0]

    def block(self, rows):
        """A source for ``tables[rows]`` (a view)."""
        return TableQueries(self._tables[rows])

    def tables(self, layout="scan"):
        """The tables, as given (whatever ``layout``)."""
        return self._tables


def as_query_source(queries):
    """A query source, or tables wrapped as :class:`TableQueries`.

    Parameters
    ----------
    queries : QuerySource or ndarray of shape (n_queries, M, K)

    Returns
    -------
    source : QuerySource

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._tables import as_query_source
    >>> type(as_query_source(np.zeros((1, 2, 4), np.float32))).__name__
    'TableQueries'
    """
    if isinstance(queries, np.ndarray):
        if queries.ndim != 3:
            raise ValueError(
                f"tables must have shape (n_queries, M, K); got an array of shape {queries.shape}."
            )
        return TableQueries(queries)
    return queries
