"""The scan contract: what every scanner (numpy, torch) provides and shares.

A *scanner* computes the Asymmetric Quantizer Distance of a block of queries
(their lookup tables, ``(nq, M, K)`` float32, :mod:`skdqn.search._tables`) to a
contiguous slice of codes (``(n, M)``, a view or a memory-mapped slice), and
hands what may matter to the one running top-k or radius collector of
:mod:`skdqn.search._topk`. Two kinds of sums exist:

* float32 sums, added in subspace order ``m = 0, 1, ...`` (the reference);
* integer sums of quantized tables (:mod:`skdqn.search._qscan`) with an exact
  float32 re-rank of the candidates under a conservative bound: an
  :class:`IntegerScan` says how a scanner computes them, and
  :func:`topk_integer` / :func:`radius_integer` drive any such scanner, so the
  numpy kernel (:mod:`skdqn.search._kernels`) and the torch kernel
  (:mod:`skdqn.search._torch_kernel`) share one loop and give the same results, bit
  for bit.

A kernel is an object with ``kneighbors(tables, codes, k, *, method,
db_block)`` and ``radius_neighbors(tables, codes, threshold, *, db_block)``
returning local row indices (ties by row); the engine
(:func:`skdqn.search._search.get_kernel`) chooses it. This module imports neither
kernel: they import it.
"""

import numpy as np

from . import _tuning
from ._qscan import exact_candidates, integer_threshold, upper_bound
from ._topk import RadiusCollector, RunningTopK

__all__ = [
    "table_offsets",
    "uses_pairs",
    "IntegerScan",
    "topk_integer",
    "radius_integer",
    "FloatScan",
    "topk_float",
    "radius_float",
]

def table_offsets(M, K):
    """Row of subspace ``m``'s first entry in a flat ``(M * K, nq)`` table: ``m * K``, shape (M,), intp.

    >>> table_offsets(3, 4)
    array([0, 4, 8])
    """
    return np.arange(M, dtype=np.intp) * K


class IntegerScan:
    """How a kernel computes the integer sums of the integer scan, block by block.

    Attributes
    ----------
    scan : callable
        ``scan(start, stop)`` -> ndarray of shape (stop - start, nq): the
        integer sums of items ``start:stop``, in the scanner's own encoding
        (ordered as the sums).
    step : int
        Items per call of ``scan``.
    encode : callable
        uint16 thresholds (nq,) -> the same encoding (``sums < encode(thr)``
        iff ``integer sums < thr``); default identity.
    decode : callable
        Encoded sums (nq,) -> integer sums; default identity.
    below : callable
        ``below(start, stop, thr)`` -> the flat indices of the entries of
        ``scan(start, stop)`` below ``thr`` (encoded, (nq,)), rows ascending
        within each query (the order radius results keep); the
        default computes ``scan`` and compares. A scanner may skip work for
        the items it can prove above ``thr``.
    """

    def __init__(self, scan, step, encode=None, decode=None, below=None):
        self.scan = scan
        self.step = step
        self.encode = encode or (lambda thr: thr)
        self.decode = decode or (lambda values: values)
        self.below = below or (lambda start, stop, thr: np.flatnonzero(scan(start, stop) < thr))


def uses_pairs(codes, K, M):
    """Whether one query over ``codes`` is scanned by pair look-ups (uint8 codes, ``K <= 256``, ``M > 1``).

    Below :data:`skdqn.search._tuning.PAIR_MIN_ROWS` codes, building the pair tables
    costs more than the look-ups it saves (measured: the row gather is faster
    up to about 3,000 codes).
    """
    return codes.dtype == np.uint8 and K <= 256 and M > 1 and codes.shape[0] >= _tuning.PAIR_MIN_ROWS


def topk_integer(flat, codes, k, offsets, qt, scanner):
    """Top-k by an integer scan: candidates under a conservative bound, re-ranked exactly.

    Parameters
    ----------
    flat : ndarray of shape (M * K, nq), float32
        The float32 tables (:func:`skdqn.search._tables.flat_tables`).
    codes : ndarray of shape (n, M), integer
    k : int
    offsets : ndarray of shape (M,), intp
        :func:`table_offsets`.
    qt : QuantizedTables
        The integer tables the scanner sums (:func:`skdqn.search._qscan.quantize_tables`).
    scanner : IntegerScan

    Returns
    -------
    distances : ndarray of shape (nq, k), float32
    rows : ndarray of shape (nq, k), intp
        The float32 scan's result, bit for bit: every item whose float32 AQD
        can be at or below the running k-th is a candidate, and candidates
        get their float32 AQD summed in subspace order.
    """
    nq = flat.shape[1]
    n = codes.shape[0]
    scan, step, encode = scanner.scan, scanner.step, scanner.encode
    top = RunningTopK(nq, k)
    thr = encode(integer_threshold(qt, top.kth))
    full = False
    for start in range(0, n, step):
        stop = min(n, start + step)
        if full:  # the scanner may skip the items it proves above the threshold
            flat_hit = scanner.below(start, stop, thr)
        else:
            qsum = scan(start, stop)
            if qsum.shape[0] >= k:
                # Seed: the block's k smallest integer sums bound the k-th AQD from above.
                seed = scanner.decode(np.partition(qsum, k - 1, axis=0)[k - 1])
                thr = np.minimum(thr, encode(integer_threshold(qt, upper_bound(qt, seed))))
            flat_hit = np.flatnonzero(qsum < thr)
        if not flat_hit.size:
            continue
        rows, cols = np.divmod(flat_hit, nq)
        rows += start
        d = exact_candidates(flat, codes, offsets, rows, cols)
        if full:  # an equal distance further down loses the tie: strictly below
            keep = d < top.kth[cols]
            d, rows, cols = d[keep], rows[keep], cols[keep]
        merged = top.add(cols, d, rows)
        if not full:  # merge at once until every query holds k items
            top.fold()
            merged, full = True, top.full
        if merged:  # a new k-th: a tighter threshold
            thr = np.minimum(thr, encode(integer_threshold(qt, top.kth)))
    return top.result()


def radius_integer(flat, codes, threshold, offsets, qt, scanner):
    """Radius matches by an integer scan, candidates checked with their exact float32 AQD.

    Parameters are those of :func:`topk_integer`, with ``threshold`` (a
    numpy.float32, compared exactly with the float32 sums) for ``k``.

    Returns
    -------
    found : list of (distances, rows) tuples, one per query
        float32 and intp, rows ascending.
    """
    nq = flat.shape[1]
    n = codes.shape[0]
    step = scanner.step
    thr = scanner.encode(integer_threshold(qt, np.full(nq, threshold, dtype=np.float64)))
    found = RadiusCollector(nq)
    for start in range(0, n, step):
        stop = min(n, start + step)
        flat_hit = scanner.below(start, stop, thr)
        if not flat_hit.size:
            continue
        rows, cols = np.divmod(flat_hit, nq)
        rows += start
        d = exact_candidates(flat, codes, offsets, rows, cols)
        keep = d <= threshold
        found.add(cols[keep], d[keep], rows[keep])
    return found.per_query(ids_ascending=True)


# ------------------------------------------------------------------ the float32 scan: one loop
class FloatScan:
    """How a kernel computes the float32 sums of the float scan, block by block.

    Attributes
    ----------
    scan : callable
        ``scan(start, stop)`` -> the sums of items ``start:stop`` for every
        query, shape (stop - start, nq), in the kernel's own array type
        (numpy, or a torch tensor on its device).
    step : int
        Items per call of ``scan``.
    own_kth : callable
        ``own_kth(sums, k)`` -> ndarray (nq,): each query's k-th smallest sum
        of the block (``k <= stop - start``).
    select : callable
        ``select(sums, start, bound, strict)`` -> ``(distances, rows,
        queries)`` numpy arrays of the entries ``< bound[query]`` (``strict``)
        or ``<= bound[query]``, rows counted from 0 of the whole scan
        (``start`` added), rows ascending within each query.
    """

    def __init__(self, scan, step, own_kth, select):
        self.scan, self.step, self.own_kth, self.select = scan, step, own_kth, select


def topk_float(n, nq, k, scanner):
    """Top-k of a float32 scan: candidates under the running k-th, merged in :class:`~skdqn.search._topk.RunningTopK`.

    Parameters
    ----------
    n : int
        Items scanned.
    nq : int
        Queries.
    k : int
        ``1 <= k <= n``.
    scanner : FloatScan

    Returns
    -------
    distances : ndarray of shape (nq, k), float32
    rows : ndarray of shape (nq, k), intp
        Ascending by (sum, row): the stable-argsort reference's result.

    Notes
    -----
    Until every query holds ``k`` items, a block keeps its items at or below
    its own k-th sum (ties included: an item above it cannot be in the top
    k) and is merged at once; then only items strictly below the running
    k-th are kept (an equal item further down loses the tie), and merged in
    bulk.
    """
    top = RunningTopK(nq, k)
    full = False
    for start in range(0, n, scanner.step):
        stop = min(n, start + scanner.step)
        sums = scanner.scan(start, stop)
        if full:
            d, rows, cols = scanner.select(sums, start, top.kth, True)
        else:
            d, rows, cols = scanner.select(sums, start, scanner.own_kth(sums, min(k, stop - start)), False)
        if d.size:
            top.add(cols, d, rows)
        if not full:
            top.fold()
            full = top.full
    return top.result()


def radius_float(n, nq, threshold, scanner):
    """Every (sum, row) ``<= threshold`` per query of a float32 scan, rows ascending.

    Parameters
    ----------
    n, nq : int
    threshold : numpy.float32
    scanner : FloatScan

    Returns
    -------
    found : list of (distances, rows) tuples, one per query
    """
    bound = np.full(nq, threshold, dtype=np.float32)
    found = RadiusCollector(nq)
    for start in range(0, n, scanner.step):
        stop = min(n, start + scanner.step)
        d, rows, cols = scanner.select(scanner.scan(start, stop), start, bound, False)
        found.add(cols, d, rows)
    return found.per_query(ids_ascending=True)
