"""Scan kernels: the AQD of a block of queries to rows of codes, and its top-k.

A kernel takes the lookup tables of one block of queries (``(nq, M, K)``,
see :mod:`skdqn.search._tables`) and a contiguous array of codes (``(n, M)``, a view
or memory-mapped slice) and returns, with *local* row indices:

* ``kneighbors(tables, codes, k, method=..., db_block=...)``: the ``k``
  smallest sums per query, ascending, ties by row;
* ``radius_neighbors(tables, codes, threshold, db_block=...)``: every row with
  a sum ``<= threshold``, per query, in row order.

The engine (:mod:`skdqn.search._search`) splits the work into such tasks and merges
their results; the kernel is chosen in one place,
:func:`skdqn.search._search.get_kernel`. The numpy kernel here is the default and
the reference; another implementation (e.g. torch) provides the same two
methods, on the shared contract of :mod:`skdqn.search._scan` (the integer-scan
loop) and :mod:`skdqn.search._topk` (the running top-k and radius collector).

The numpy scan gathers rows of the flat ``(M * K, nq)`` table (``np.take``:
contiguous rows) and adds them, ``db_block`` items at a time, so its working
set is a few megabytes whatever the number of codes. For top-k it keeps a
running k-th distance per query and only keeps items strictly below it, so
after the first blocks almost nothing survives (two-stage top-k: filter, then
an exact sort of the survivors).
"""

import numpy as np

from . import _tuning
from ._qscan import (
    exact_candidates,
    integer_threshold,
    pair_scan_below,
    pair_scan_block,
    pair_tables,
    quantize_tables,
    upper_bound,
)
from ._scan import FloatScan, IntegerScan, radius_float, radius_integer, table_offsets, topk_float, topk_integer, uses_pairs
from ._tables import flat_tables

__all__ = ["NumpyKernel", "aqd_distances"]


def _scan_block(flat, codes, offsets, start, stop, out, tmp):
    """AQD of database items ``start:stop`` to the queries of ``flat``.

    ``out[i - start, j] = sum_m flat[offsets[m] + codes[i, m], j]``, written in
    ``out`` (shape (stop - start, nq)); ``tmp`` is scratch of the same shape.
    Indices were validated when the codes were stored, so ``mode="clip"`` (no
    bounds checks, several times faster) changes nothing.
    """
    idx = np.add(codes[start:stop].T, offsets[:, None], dtype=np.intp)
    np.take(flat, idx[0], axis=0, out=out, mode="clip")
    for m in range(1, idx.shape[0]):
        np.take(flat, idx[m], axis=0, out=tmp, mode="clip")
        np.add(out, tmp, out=out)
    return out


def _scan_below(flat, codes, offsets, start, stop, thr, out, tmp):
    """Flat indices (into ``(stop - start, nq)``) of the integer sums below ``thr``.

    The same entries as ``np.flatnonzero(_scan_block(...) < thr)`` for
    non-negative integer tables: the first ``M - 1`` subspaces are summed
    for every (item, query); the last one only for the entries still below
    ``thr`` (a partial sum of non-negative entries at or above it can only
    grow).
    """
    M, nq = codes.shape[1], flat.shape[1]
    if M < 2:
        return np.flatnonzero(_scan_block(flat, codes, offsets, start, stop, out, tmp) < thr)
    idx = np.add(codes[start:stop].T, offsets[:, None], dtype=np.intp)
    np.take(flat, idx[0], axis=0, out=out, mode="clip")
    for m in range(1, M - 1):
        np.take(flat, idx[m], axis=0, out=tmp, mode="clip")
        np.add(out, tmp, out=out)
    flat_hit = np.flatnonzero(out < thr)
    if flat_hit.size:
        rows, cols = np.divmod(flat_hit, nq)
        total = out.ravel()[flat_hit] + flat[idx[M - 1, rows], cols]
        flat_hit = flat_hit[total < thr[cols]]
    return flat_hit


def aqd_distances(tables, codes):
    """All AQD distances, shape (n_queries, n_database): for small problems and tests.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32
        From :func:`skdqn.search._tables.distance_tables`.
    codes : ndarray of shape (n_database, M), integer in ``[0, K)``

    Returns
    -------
    distances : ndarray of shape (n_queries, n_database), float32
        ``distances[q, i] = sum_m tables[q, m, codes[i, m]]``, summed in the
        order ``m = 0, 1, ...`` in float32, exactly as the scan does.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._kernels import aqd_distances
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> aqd_distances(tables, np.array([[0, 0], [1, 1], [1, 0]]))
    array([[0., 5., 1.]], dtype=float32)
    """
    nq, M, K = tables.shape
    flat = flat_tables(tables)
    n = codes.shape[0]
    out = np.empty((n, nq), dtype=np.float32)
    _scan_block(flat, codes, table_offsets(M, K), 0, n, out, np.empty_like(out))
    return np.ascontiguousarray(out.T)


def _float_scanner(flat, codes, offsets, db_block):
    """The numpy :class:`~skdqn.search._scan.FloatScan`: the row gather of :func:`_scan_block`, ``db_block`` items at a time."""
    nq = flat.shape[1]
    out = np.empty((min(codes.shape[0], db_block), nq), dtype=np.float32)
    tmp = np.empty_like(out)

    def scan(start, stop):
        return _scan_block(flat, codes, offsets, start, stop, out[: stop - start], tmp[: stop - start])

    def own_kth(sums, k):
        return np.partition(sums, k - 1, axis=0)[k - 1]

    def select(sums, start, bound, strict):
        flat_hit = np.flatnonzero(sums < bound if strict else sums <= bound)
        rows, cols = np.divmod(flat_hit, nq)
        return sums.ravel()[flat_hit], rows + start, cols

    return FloatScan(scan, db_block, own_kth, select)


def _topk_full_sort(flat, codes, k, offsets, db_block):
    """Top-k by computing all distances of the block and a stable sort: for large k."""
    nq = flat.shape[1]
    n = codes.shape[0]
    dist = np.empty((n, nq), dtype=np.float32)
    tmp = np.empty((min(n, db_block), nq), dtype=np.float32)
    for start in range(0, n, db_block):
        stop = min(n, start + db_block)
        _scan_block(flat, codes, offsets, start, stop, dist[start:stop], tmp[: stop - start])
    dist = np.ascontiguousarray(dist.T)
    ind = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, ind, axis=1), ind


# ------------------------------------------------ integer scan + exact re-rank (skdqn.search._qscan)
def _integer_scanner(qt, codes, offsets, db_block):
    """The numpy :class:`IntegerScan` (uint16 sums) for a block of queries.

    One query with uint8 codes (``K <= 256``, at least ``PAIR_MIN_ROWS``
    rows, :func:`uses_pairs`): pair look-ups
    (:func:`skdqn.search._qscan.pair_scan_block`), ``PAIR_BLOCK_FACTOR * db_block``
    items at a time (:mod:`skdqn.search._tuning`),
    the last pair only for the items still below the threshold
    (:func:`skdqn.search._qscan.pair_scan_below`); otherwise the row gather of the
    float scan on uint16 tables.
    """
    nq, M, K = qt.q.shape
    if nq == 1 and uses_pairs(codes, K, M):
        pairs, last = pair_tables(qt.q[0])
        step = db_block * _tuning.PAIR_BLOCK_FACTOR
        out = np.empty(step, dtype=np.uint16)
        tmp = np.empty_like(out)

        def scan(start, stop):
            return pair_scan_block(pairs, last, codes, start, stop, out[: stop - start], tmp[: stop - start])[:, None]

        def below(start, stop, thr):  # one query: the local rows are the flat indices
            return pair_scan_below(pairs, last, codes, start, stop, thr, out[: stop - start], tmp[: stop - start])

        return IntegerScan(scan, step, below=below)
    flat_q = flat_tables(qt.q)
    out = np.empty((db_block, nq), dtype=np.uint16)
    tmp = np.empty_like(out)

    def scan(start, stop):
        return _scan_block(flat_q, codes, offsets, start, stop, out[: stop - start], tmp[: stop - start])

    def below(start, stop, thr):
        return _scan_below(flat_q, codes, offsets, start, stop, thr, out[: stop - start], tmp[: stop - start])

    return IntegerScan(scan, db_block, below=below)


def _per_query(kneighbors, tables, codes, k, db_block):
    """``kneighbors`` of each query alone (the one-query path); results stacked."""
    parts = [kneighbors(tables[q : q + 1], codes, k, db_block=db_block) for q in range(tables.shape[0])]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class NumpyKernel:
    """The pure-numpy scan: the default kernel, and the reference for any other.

    Parameters
    ----------
    fast : bool, default=True
        Scan integer (uint16) tables and re-rank the candidates with their
        exact float32 AQD (:mod:`skdqn.search._qscan`); one query at a time by pair
        look-ups. ``False``: the plain float32 scan. Both give the same
        result, bit for bit; tables with a non-finite value always take the
        float32 scan.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._kernels import NumpyKernel
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> codes = np.array([[1, 1], [1, 0], [0, 0]], dtype=np.uint8)
    >>> NumpyKernel().kneighbors(tables, codes, 2)
    (array([[0., 1.]], dtype=float32), array([[2, 1]]))
    """

    name = "numpy"

    def __init__(self, fast=True):
        self.fast = fast

    def kneighbors(self, tables, codes, k, *, method="threshold", db_block=None):
        """The ``k`` smallest AQDs of each query over ``codes``, local row indices.

        Parameters
        ----------
        tables : ndarray of shape (nq, M, K), float32
        codes : ndarray of shape (n, M), integer in ``[0, K)``, ``k <= n``
        k : int
        method : {"threshold", "full_sort"}, default="threshold"
            ``"threshold"``: running k-th distance, for ``k`` much smaller
            than ``n`` (the integer scan when ``fast``); ``"full_sort"``:
            every distance, then a stable sort. Both give the same result.
        db_block : int, default=None
            Codes scanned at a time; :data:`skdqn.search._tuning.DB_BLOCK` (4096)
            when None.

        Returns
        -------
        distances : ndarray of shape (nq, k), float32
            Ascending; ties by row.
        indices : ndarray of shape (nq, k), intp
            Rows of ``codes``.
        """
        nq, M, K = tables.shape
        db_block = _tuning.DB_BLOCK if db_block is None else db_block
        if method == "full_sort":
            return _topk_full_sort(flat_tables(tables), codes, k, table_offsets(M, K), db_block)
        if self.fast and 1 < nq <= _tuning.PAIR_QUERIES and uses_pairs(codes, K, M):
            return _per_query(self.kneighbors, tables, codes, k, db_block)
        qt = quantize_tables(tables) if self.fast else None
        flat, offsets = flat_tables(tables), table_offsets(M, K)
        if qt is None:
            return topk_float(codes.shape[0], nq, k, _float_scanner(flat, codes, offsets, db_block))
        return topk_integer(flat, codes, k, offsets, qt, _integer_scanner(qt, codes, offsets, db_block))

    def radius_neighbors(self, tables, codes, threshold, *, db_block=None):
        """Rows of ``codes`` whose AQD is ``<= threshold``, per query, in row order.

        Parameters
        ----------
        tables : ndarray of shape (nq, M, K), float32
        codes : ndarray of shape (n, M), integer in ``[0, K)``
        threshold : numpy.float32
            Compared exactly with the float32 sums.
        db_block : int, default=None
            Codes scanned at a time; :data:`skdqn.search._tuning.DB_BLOCK` (4096)
            when None.

        Returns
        -------
        found : list of (distances, indices) tuples, one per query
            float32 distances and intp rows.
        """
        nq, M, K = tables.shape
        db_block = _tuning.DB_BLOCK if db_block is None else db_block
        qt = quantize_tables(tables) if self.fast and np.isfinite(threshold) else None
        flat, offsets = flat_tables(tables), table_offsets(M, K)
        if qt is None:
            return radius_float(codes.shape[0], nq, threshold, _float_scanner(flat, codes, offsets, db_block))
        return radius_integer(flat, codes, threshold, offsets, qt, _integer_scanner(qt, codes, offsets, db_block))
