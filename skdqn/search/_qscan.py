"""The fast numpy scan: integer tables for the scan, then an exact float32 re-rank.

The float32 scan of :mod:`skdqn.search._kernels` moves 4 bytes per (item, query,
subspace). Here each query's table is quantized to integers once
(:func:`quantize_tables`, ``uint16``, at most ``65534 // M`` per entry, so a
sum of ``M`` entries fits a ``uint16`` accumulator), the scan sums those
(2 bytes per look-up), and a *conservative* bound turns the running k-th
float32 distance into an integer threshold: an item whose integer sum is above
it cannot have a float32 AQD at or below the k-th, so only the few items at or
below it are *candidates*, whose float32 AQD is then computed exactly as the
reference does (``sum_m tables[q, m, codes[i, m]]`` added in subspace order).
Results are therefore bit for bit those of the float32 scan, ties included:
the integer sums only decide which items are looked at twice.

The bound. With ``lo[m] = min_k t[m, k]`` and one step ``delta`` per query,
``qt[m, k] = floor((t[m, k] - lo[m]) / delta)``, so the exact sum of an item
lies in ``[L + delta * Q, L + delta * (Q + M)]`` (``L = sum_m lo[m]``, ``Q``
its integer sum); its float32 sum differs from the exact one by at most
``(M - 1) 2**-24 sum_m max_k |t[m, k]|``. ``slack`` over-bounds that rounding
by 4x, plus the float64 rounding of the bound itself.

For one query (and small batches) the scan looks up *pairs of subspaces*:
for uint8 codes with ``K <= 256``, the ``uint16`` view of two adjacent codes
``c0 + 256 c1`` indexes a table of ``65536`` pair sums ``qt[2p, c0] +
qt[2p + 1, c1]`` (128 KiB, integer, so exact), which halves the look-ups of
the one-column scan (:func:`pair_tables`, :func:`pair_scan_block`). Once the
running threshold is known, :func:`pair_scan_below` adds the last pair only to
the items whose partial sum is still below it: entries are ``>= 0``, so a
partial sum at or above the threshold can only grow, and those items are
never candidates (after three of four pairs, under 1 % of the items of a
random database remain, so the fourth look-up all but disappears).
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "QuantizedTables",
    "quantize_tables",
    "integer_threshold",
    "upper_bound",
    "exact_candidates",
    "pair_tables",
    "pair_codes",
    "pair_scan_block",
    "pair_scan_below",
]

_ACC_MAX = 65534  # largest integer sum: a uint16 threshold of _ACC_MAX + 1 admits every item


@dataclass
class QuantizedTables:
    """Integer tables of a block of queries and what bounds their error.

    Attributes
    ----------
    q : ndarray of shape (nq, M, K), uint16
        ``floor((t - lo[m]) / delta)``, at most ``max_sum // M``.
    lo : ndarray of shape (nq,), float64
        ``sum_m min_k t[q, m, k]``.
    delta : ndarray of shape (nq,), float64
        The step of each query (``> 0``).
    slack : ndarray of shape (nq,), float64
        Over-bound of the rounding of the float32 sums and of the bound.
    """

    q: np.ndarray
    lo: np.ndarray
    delta: np.ndarray
    slack: np.ndarray


def quantize_tables(tables, max_sum=_ACC_MAX):
    """Quantize float32 tables for the integer scan, or None if they cannot be.

    Parameters
    ----------
    tables : ndarray of shape (nq, M, K), float32
    max_sum : int, default=65534
        Largest integer sum of ``M`` entries (each entry at most
        ``max_sum // M``): 65534 for uint16 sums, 2047 for sums exact in
        float16 (the torch CPU scan).

    Returns
    -------
    quantized : QuantizedTables or None
        None when a table holds a non-finite value or ``M > max_sum``: use
        the float32 scan then.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._qscan import quantize_tables
    >>> qt = quantize_tables(np.array([[[0.0, 1.0], [0.0, 4.0]]], np.float32))
    >>> qt.q[0].tolist(), float(qt.delta[0] * 32767)
    ([[0, 8191], [0, 32767]], 4.0)
    """
    nq, M, K = tables.shape
    levels = int(max_sum) // M
    if levels < 1 or not np.isfinite(tables).all():
        return None
    t = tables.astype(np.float64)
    lo_m = t.min(axis=2)
    span = (t.max(axis=2) - lo_m).max(axis=1) if nq else np.zeros(0)
    delta = np.where(span > 0, span / levels, 1.0)
    q = np.floor((t - lo_m[..., None]) / delta[:, None, None])
    np.clip(q, 0, levels, out=q)
    lo = lo_m.sum(axis=1)
    absmax = np.abs(t).max(axis=2).sum(axis=1)
    # float32 sequential sum: <= (M - 1) 2^-24 absmax; taken 4x. The float64
    # terms (quantization, bound arithmetic) are ~2^-50 of the magnitudes.
    slack = M * 2.0**-22 * absmax + 2.0**-40 * (np.abs(lo) + M * span + absmax)
    return QuantizedTables(q.astype(np.uint16), lo, delta, slack)


def integer_threshold(qt, bound):
    """The uint16 ``thr`` such that ``Q < thr`` keeps every item with float32 AQD ``<= bound``.

    Parameters
    ----------
    qt : QuantizedTables
    bound : ndarray of shape (nq,), float
        Per query; ``inf`` keeps every item, ``-inf`` (or below every sum) none.

    Returns
    -------
    thr : ndarray of shape (nq,), uint16
        ``floor((bound - lo + slack) / delta) + 1``, clipped to ``[0, 65535]``.

    Notes
    -----
    An item with ``Q > (bound - lo + slack) / delta`` has exact sum
    ``>= lo + delta Q > bound + slack`` and float32 sum ``> bound``.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.floor((np.asarray(bound, np.float64) - qt.lo + qt.slack) / qt.delta) + 1
    x = np.where(np.isnan(x), _ACC_MAX + 1, x)
    return np.clip(x, 0, _ACC_MAX + 1).astype(np.uint16)


def upper_bound(qt, qsum):
    """An upper bound on the float32 AQD of items with integer sums ``qsum`` (per query).

    Parameters
    ----------
    qt : QuantizedTables
    qsum : ndarray of shape (nq,), integer

    Returns
    -------
    bound : ndarray of shape (nq,), float64
        ``lo + delta * (qsum + M) + slack``.
    """
    M = qt.q.shape[1]
    return qt.lo + qt.delta * (np.asarray(qsum, np.float64) + M) + qt.slack


def exact_candidates(flat, codes, offsets, rows, cols):
    """Float32 AQD of (row, query) pairs, summed in subspace order as the scan does.

    Parameters
    ----------
    flat : ndarray of shape (M * K, nq), float32
        :func:`skdqn.search._tables.flat_tables` of the queries.
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    offsets : ndarray of shape (M,), intp
        ``m * K``.
    rows, cols : ndarray of shape (n_pairs,), intp
        Row of ``codes`` and query of each pair.

    Returns
    -------
    distances : ndarray of shape (n_pairs,), float32
        Bit for bit the value the float32 scan computes.

    Notes
    -----
    Reference::

        out[p] = float32 sum over m = 0, 1, ... of flat[offsets[m] + codes[rows[p], m], cols[p]]
    """
    picked = codes[rows]
    out = flat[offsets[0] + picked[:, 0].astype(np.intp), cols]
    for m in range(1, picked.shape[1]):
        out += flat[offsets[m] + picked[:, m].astype(np.intp), cols]
    return out


def pair_tables(q):
    """Integer tables of adjacent subspace pairs for one query (uint8 codes, ``K <= 256``).

    Parameters
    ----------
    q : ndarray of shape (M, K), uint16
        One query's quantized table.

    Returns
    -------
    pairs : ndarray of shape (M // 2, 65536), uint16
        ``pairs[p, c0 + 256 * c1] = q[2p, c0] + q[2p + 1, c1]`` (zero beyond ``K``).
    last : ndarray of shape (K,), uint16 or None
        ``q[M - 1]`` when ``M`` is odd.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._qscan import pair_tables
    >>> pairs, last = pair_tables(np.array([[0, 1], [0, 4]], np.uint16))
    >>> int(pairs[0, 1 + 256 * 1]), last is None
    (5, True)
    """
    M, K = q.shape
    n_pairs = M // 2
    pairs = (np.empty if K == 256 else np.zeros)((n_pairs, 256, 256), dtype=np.uint16)
    for p in range(n_pairs):
        np.add(q[2 * p + 1][:, None], q[2 * p][None, :], out=pairs[p, :K, :K])
    return pairs.reshape(n_pairs, 65536), (q[M - 1] if M % 2 else None)


def pair_codes(codes):
    """The uint16 view of adjacent code pairs: ``(n, M // 2)``, ``c[2p] + 256 c[2p + 1]``.

    Parameters
    ----------
    codes : ndarray of shape (n, M), uint8

    Returns
    -------
    pairs : ndarray of shape (n, M // 2), uint16
        A view when ``codes`` is C-contiguous with ``M`` even, else a copy.
    """
    n, M = codes.shape
    even = codes[:, : M - M % 2]
    if M % 2 or not even.flags.c_contiguous:
        even = np.ascontiguousarray(even)
    return even.view("<u2").reshape(n, M // 2)


def pair_scan_block(pairs, last, codes, start, stop, out, tmp):
    """Integer sums of items ``start:stop`` for one query by pair look-ups.

    Parameters
    ----------
    pairs, last : from :func:`pair_tables`
    codes : ndarray of shape (n, M), uint8
    start, stop : int
    out, tmp : ndarray of shape (stop - start,), uint16
        ``out`` receives ``sum_m q[m, codes[i, m]]``; ``tmp`` is scratch.

    Returns
    -------
    out : ndarray of shape (stop - start,), uint16
        The same integer sums as the one-subspace-at-a-time scan.
    """
    block = codes[start:stop]
    if pairs.shape[0] == 0:  # M == 1
        return np.take(last, block[:, 0], out=out, mode="clip")
    both = pair_codes(block)
    np.take(pairs[0], both[:, 0], out=out, mode="clip")
    for p in range(1, pairs.shape[0]):
        np.take(pairs[p], both[:, p], out=tmp, mode="clip")
        out += tmp
    if last is not None:
        np.take(last, block[:, -1], out=tmp, mode="clip")
        out += tmp
    return out


def pair_scan_below(pairs, last, codes, start, stop, thr, out, tmp):
    """Local rows of items ``start:stop`` whose integer sum is below ``thr``, for one query.

    The same rows as ``np.flatnonzero(pair_scan_block(...) < thr)``: every
    pair but the last is summed for all the items; the last pair (and the
    odd subspace) only for those whose partial sum is still below ``thr``.
    Table entries are ``>= 0``, so a partial sum at or above ``thr`` can only
    grow, and its item is not a candidate.

    Parameters
    ----------
    pairs, last : from :func:`pair_tables`
    codes : ndarray of shape (n, M), uint8
    start, stop : int
    thr : ndarray of shape (1,), uint16
        Rows with an integer sum ``< thr`` are returned.
    out, tmp : ndarray of shape (stop - start,), uint16
        Scratch.

    Returns
    -------
    rows : ndarray of shape (n_found,), intp
        Ascending, relative to ``start``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._qscan import pair_scan_below, pair_tables
    >>> q = np.array([[0, 1], [0, 4], [0, 2], [0, 1]], np.uint16)  # M = 4, K = 2
    >>> pairs, last = pair_tables(q)
    >>> codes = np.array([[1, 1, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0]], np.uint8)
    >>> out, tmp = np.empty(3, np.uint16), np.empty(3, np.uint16)
    >>> pair_scan_below(pairs, last, codes, 0, 3, np.array([2], np.uint16), out, tmp)
    array([1, 2])
    """
    n_pairs = pairs.shape[0]
    if n_pairs < 2:  # nothing to skip: the plain pair scan
        return np.flatnonzero(pair_scan_block(pairs, last, codes, start, stop, out, tmp) < thr)
    block = codes[start:stop]
    both = pair_codes(block)
    np.take(pairs[0], both[:, 0], out=out, mode="clip")
    for p in range(1, n_pairs - 1):
        np.take(pairs[p], both[:, p], out=tmp, mode="clip")
        out += tmp
    live = np.flatnonzero(out < thr)
    if not live.size:
        return live
    part = out[live]
    part += np.take(pairs[-1], both[live, -1], mode="clip")
    if last is not None:
        part += np.take(last, block[live, -1], mode="clip")
    return live[part < thr]
