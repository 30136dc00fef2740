"""AQD of the rows of one list of codes, summed by scipy's compiled CSR products.

The AQD of a row of codes to a query is ``sum_m table[m * K + codes[r, m]]``:
row ``r`` of a sparse matrix holding ``M`` ones, at the columns
``m * K + codes[r, m]`` (:func:`row_index`), times the query's flat table.
scipy's CSR product (``csr_matvec``, and ``csr_matvecs`` for several
queries) runs that gather-and-add in compiled code, about 1 ns per entry,
without the temporaries of a numpy gather (measured on 1,000-row lists: 6
against 20-40 microseconds per list and query). It adds a row's entries in
order, onto the output's initial value: started from ``-0.0`` (``-0.0 + t ==
t`` for every float), its float32 sums are bit for bit those of the numpy
scan (:func:`skdqn.search._kernels._scan_block`), so the two never change a result.

The products are scipy's private ``scipy.sparse._sparsetools`` functions:
building a public ``csr_array`` costs about 20 microseconds per call, more
than the scan of a list. They are checked at import on a small problem
against the numpy sum; if the module is missing or disagrees,
:func:`list_aqd` sums with numpy instead (the same values, slower), and
:data:`BACKEND` says which runs.
"""

import numpy as np

from . import _tuning

try:  # pragma: no cover - the import is what is being guarded
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover
    _sparsetools = None

__all__ = ["row_index", "list_aqd", "list_aqd_runs", "rows_per_call", "BACKEND"]

_offsets, _rows = {}, {}


def rows_per_call(M):
    """Rows of ``M`` entries the callers sum per call at most, so that indices stay in the cache.

    :data:`skdqn.search._tuning.CALL_ENTRIES` table entries (1 MiB of int32 indices).

    Examples
    --------
    >>> from skdqn.search._csr import rows_per_call
    >>> rows_per_call(8)
    32768
    """
    return max(1, _tuning.CALL_ENTRIES // M)


def _column_offsets(M, K, n_rows):
    """``m * K`` for every entry of ``n_rows`` rows, int32 (cached; one assignment: safe with threads)."""
    cached = _offsets.get((M, K))
    if cached is None or cached.size < n_rows * M:
        cached = np.tile(np.arange(M, dtype=np.int32) * np.int32(K), max(rows_per_call(M), n_rows))
        _offsets[(M, K)] = cached
    return cached


def _row_constants(M, n_rows):
    """(row pointers, ones) of a CSR matrix of ``n_rows`` rows of ``M`` entries (cached)."""
    cached = _rows.get(M)
    if cached is None or cached[0].size <= n_rows:
        n = max(rows_per_call(M), n_rows)
        cached = (np.arange(0, (n + 1) * M, M, dtype=np.int32), np.ones(n * M, dtype=np.float32))
        _rows[M] = cached
    return cached


def row_index(codes, K):
    """Column of every table entry the rows of ``codes`` sum, row by row.

    Parameters
    ----------
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    K : int
        Codewords per subspace; ``M * K < 2**31``.

    Returns
    -------
    index : ndarray of shape (n * M,), int32
        ``index[r * M + m] = m * K + codes[r, m]``: the column indices of the
        CSR rows, and the flat indices into a ``(M * K,)`` table.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._csr import row_index
    >>> row_index(np.array([[1, 0], [3, 2]], np.uint8), 4)
    array([1, 4, 3, 6], dtype=int32)
    """
    n, M = codes.shape
    index = np.asarray(codes).reshape(-1).astype(np.int32)
    index += _column_offsets(M, K, n)[: index.size]
    return index


def list_aqd(tables, index, out):
    """AQD of the rows given by ``index`` to one or several queries, into ``out``.

    Parameters
    ----------
    tables : ndarray of shape (M * K,) or (M * K, w), float32, C-contiguous
        One query's flat table, or the tables of ``w`` queries as columns
        (``tables[m * K + k, j]``).
    index : ndarray of shape (n * M,), int32
        From :func:`row_index`.
    out : ndarray of shape (n,) or (n, w), float32, C-contiguous
        Written: ``out[r] = sum_m tables[index[r * M + m]]``, summed in
        subspace order (the numpy scan's floats, bit for bit).

    Returns
    -------
    out : ndarray
        ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._csr import list_aqd, row_index
    >>> table = np.array([0.0, 1.0, 10.0, 20.0], np.float32)  # M=2, K=2
    >>> list_aqd(table, row_index(np.array([[1, 1], [0, 0]], np.uint8), 2), np.empty(2, np.float32))
    array([21., 10.], dtype=float32)
    """
    n = out.shape[0]
    if n == 0:
        return out
    aqd = _scipy_aqd if BACKEND == "scipy" else _numpy_aqd
    return aqd(tables, index, n, index.size // n, out)


def list_aqd_runs(tables, queries, index, out):
    """AQD of the rows given by ``index`` to each of ``queries``, one run per query, into ``out``.

    Parameters
    ----------
    tables : ndarray of shape (nq, M * K), float32, C-contiguous
        One flat table per row.
    queries : ndarray of shape (w,), int
        Rows of ``tables``.
    index : ndarray of shape (n * M,), int32
        From :func:`row_index`.
    out : ndarray of shape (w * n,), float32, C-contiguous
        Written: ``out[j * n + r]`` is the AQD of row ``r`` to query
        ``queries[j]`` (the floats of :func:`list_aqd`).

    Returns
    -------
    out : ndarray of shape (w * n,)
        ``out``, each query's run one call of the compiled product (no
        gather of tables: a query's table is read where it lies).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._csr import list_aqd_runs, row_index
    >>> tables = np.array([[0.0, 1.0, 10.0, 20.0], [5.0, 0.0, 0.0, 1.0]], np.float32)
    >>> list_aqd_runs(tables, np.array([1, 0]), row_index(np.array([[1, 1], [0, 0]], np.uint8), 2),
    ...               np.empty(4, np.float32))
    array([ 1.,  5., 21., 10.], dtype=float32)
    """
    n = out.size // len(queries) if len(queries) else 0
    if n == 0:
        return out
    M = index.size // n
    if BACKEND != "scipy":
        for j, q in enumerate(queries):
            _numpy_aqd(tables[q], index, n, M, out[j * n : (j + 1) * n])
        return out
    indptr, ones = _row_constants(M, n)
    out.fill(-0.0)  # the products add onto it: -0.0 + t == t
    matvec, n_cols = _sparsetools.csr_matvec, tables.shape[1]
    for j, q in enumerate(np.asarray(queries).tolist()):  # Python ints: faster indexing
        matvec(n, n_cols, indptr, index, ones, tables[q], out[j * n : (j + 1) * n])
    return out


def _scipy_aqd(tables, index, n, M, out):
    """:func:`list_aqd` by ``csr_matvec`` (one query) or ``csr_matvecs`` (columns)."""
    indptr, ones = _row_constants(M, n)
    out.fill(-0.0)  # the products add onto it: -0.0 + t == t
    n_cols = tables.shape[0]
    if tables.ndim == 1:
        _sparsetools.csr_matvec(n, n_cols, indptr, index, ones, tables, out)
    else:
        _sparsetools.csr_matvecs(n, n_cols, tables.shape[1], indptr, index, ones, tables, out.reshape(-1))
    return out


def _numpy_aqd(tables, index, n, M, out):
    """:func:`list_aqd` with numpy: the reference, and the fallback.

    Reference (the same floats)::

        out[r] = tables[index[r * M]]
        for m in 1 .. M - 1: out[r] += tables[index[r * M + m]]
    """
    by_subspace = index.reshape(n, M).T  # (M, n)
    np.take(tables, by_subspace[0], axis=0, out=out, mode="clip")  # indices were validated with the codes
    for m in range(1, M):
        out += np.take(tables, by_subspace[m], axis=0, mode="clip")
    return out


def _check_scipy():
    """``"scipy"`` when scipy's products give the numpy sums on a small problem, else ``"numpy"``."""
    if _sparsetools is None:  # pragma: no cover
        return "numpy"
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, size=(7, 3))
    index = row_index(codes, 5)
    try:
        for tables in (rng.normal(size=15).astype(np.float32), rng.normal(size=(15, 3)).astype(np.float32)):
            shape = (7,) + tables.shape[1:]
            got = _scipy_aqd(tables, index, 7, 3, np.empty(shape, np.float32))
            if not np.array_equal(got, _numpy_aqd(tables, index, 7, 3, np.empty(shape, np.float32))):
                return "numpy"  # pragma: no cover
    except Exception:  # pragma: no cover - any failure of a private API means: do not use it
        return "numpy"
    return "scipy"


BACKEND = _check_scipy()
