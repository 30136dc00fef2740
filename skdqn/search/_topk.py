"""What a scan keeps of what it sees: one running top-k and one radius collector.

Every search path (the numpy and torch kernels, exhaustive or over inverted
lists) scans blocks of codes and hands the items that may still matter to
one of these two objects:

* :class:`RunningTopK`: per query, the ``k`` smallest ``(distance, id)``
  pairs seen so far, and ``kth``, the k-th smallest distance merged so far,
  which tells a scan what it may skip (a candidate above it can never
  enter); candidates are pooled and merged in bulk, so memory stays bounded
  and merging is rare once ``kth`` is tight;
* :class:`RadiusCollector`: per query, every ``(distance, id)`` found, in id
  order.

Order is always "by distance, then by id" (the stable order): a distance and
an id pack into one ``uint64`` key (:mod:`skdqn.search._ranking`), so a plain sort
of keys is the stable order, several times faster than a stable argsort of
pairs. Distances are float32 (the AQD sums) and ids below
``MAX_KEY_INDEX = 2**32 - 1``.
"""

import numpy as np

from ._ranking import _SIGN, MAX_KEY_INDEX, PAD_KEY, pack_keys, unpack_keys

__all__ = ["RunningTopK", "RadiusCollector", "pool_topk", "merge_keys", "MAX_KEY_INDEX"]


def key_values(keys):
    """The float32 values of keys (``PAD_KEY``: ``inf``), without their indices: a running k-th.

    >>> import numpy as np
    >>> from skdqn.search._ranking import pack_keys
    >>> key_values(np.array([pack_keys(np.float32(2.5), 7), PAD_KEY], dtype=np.uint64))
    array([2.5, inf], dtype=float32)
    """
    high = (keys >> np.uint64(32)).astype(np.uint32)
    values = np.where(high >= _SIGN, high ^ _SIGN, ~high).view(np.float32)  # order_bits, inverted
    return np.where(keys == PAD_KEY, np.float32(np.inf), values)


def merge_keys(best, new, k):
    """The ``k`` smallest of two row-wise key arrays, per row, ascending.

    Parameters
    ----------
    best, new : ndarray of shape (nq, k1) and (nq, k2), uint64
        Keys from :func:`skdqn.search._ranking.pack_keys` (or ``PAD_KEY``).
    k : int
        ``k <= k1 + k2``.

    Returns
    -------
    keys : ndarray of shape (nq, k), uint64

    Examples
    --------
    >>> import numpy as np
    >>> merge_keys(np.array([[1, 5]], np.uint64), np.array([[3, 9]], np.uint64), 3)
    array([[1, 3, 5]], dtype=uint64)
    """
    both = np.concatenate([best, new], axis=1)
    both.sort(axis=1)
    return both[:, :k]


def pool_topk(queries, keys, nq, k):
    """Per query, the ``k`` smallest of pooled keys, padded with ``PAD_KEY``.

    Parameters
    ----------
    queries : ndarray of shape (n,), integer in ``[0, nq)``
        The query of each key.
    keys : ndarray of shape (n,), uint64
    nq, k : int

    Returns
    -------
    top : ndarray of shape (nq, k), uint64
        Ascending per row.

    Notes
    -----
    Reference loop::

        for q in range(nq):
            mine = np.sort(keys[queries == q])[:k]
            top[q, :mine.size] = mine

    Sorted by key, then stably by query, each query's keys form one
    ascending run whose first ``k`` are taken. The stable sort by query is
    numpy's radix sort when the queries fit in 16 bits (3x faster than the
    merge sort of wider integers, measured).

    Examples
    --------
    >>> import numpy as np
    >>> pool_topk(np.array([1, 0, 1]), np.array([7, 4, 2], np.uint64), 2, 1)
    array([[4],
           [2]], dtype=uint64)
    """
    if nq == 1:  # one query (the latency path): its k smallest keys
        top = np.sort(keys if keys.size <= 4 * k else np.partition(keys, k - 1)[:k])[:k]
        return np.concatenate([top, np.full(k - top.size, PAD_KEY, dtype=np.uint64)])[None, :]
    order = np.argsort(keys)
    by_query = queries[order].astype(np.uint16) if nq <= 1 << 16 else queries[order]
    order = order[np.argsort(by_query, kind="stable")]
    counts = np.bincount(queries, minlength=nq)
    first = np.cumsum(counts) - counts
    take = first[:, None] + np.arange(k)
    valid = np.arange(k) < counts[:, None]
    out = np.full((nq, k), PAD_KEY, dtype=np.uint64)
    out[valid] = keys[order[take[valid]]]
    return out


class RunningTopK:
    """Per query, the ``k`` smallest ``(distance, id)`` seen so far, and a pool not yet merged.

    Parameters
    ----------
    nq : int
        Number of queries.
    k : int
        Neighbours kept per query.
    limit : int, default=None
        The pool is merged once it holds at least this many candidates
        (default ``nq * k``): memory stays within a few times the result's.

    Attributes
    ----------
    kth : ndarray of shape (nq,), float32
        Each query's k-th smallest distance merged so far; ``inf`` until it
        holds ``k`` items. A candidate above it can never enter the top k;
        one equal to it enters only with a smaller id.
    best : ndarray of shape (nq, k), uint64
        The merged keys, ascending, padded with ``PAD_KEY``.

    Examples
    --------
    >>> import numpy as np
    >>> top = RunningTopK(nq=1, k=2)
    >>> top.add(np.array([0, 0, 0]), np.array([3.0, 1.0, 1.0], np.float32), np.array([5, 9, 2]))  # merged
    True
    >>> top.result()
    (array([[1., 1.]], dtype=float32), array([[2, 9]]))
    """

    def __init__(self, nq, k, limit=None):
        self.nq, self.k = nq, k
        self.limit = nq * k if limit is None else limit
        self.best = np.full((nq, k), PAD_KEY, dtype=np.uint64)
        self.kth = np.full(nq, np.inf, dtype=np.float32)
        self._pool, self._pooled = [], 0

    @property
    def full(self):
        """Whether every query holds ``k`` merged items (then ``kth`` is finite or an infinite distance)."""
        return bool((self.best[:, -1] != PAD_KEY).all())

    def add(self, queries, distances, ids):
        """Pool candidates: ``queries``, float32 ``distances`` and ``ids``, each of shape (n,).

        Returns True when the pool was merged (``kth`` may have dropped).
        """
        return self.add_keys(queries, pack_keys(distances, ids))

    def add_keys(self, queries, keys):
        """Pool candidates given as packed keys (n,) of the ``queries`` (n,); True when merged."""
        self._pool.append((queries, keys))
        self._pooled += keys.size
        if self._pooled >= self.limit:
            self.fold()
            return True
        return False

    def fold(self):
        """Merge the pooled candidates into ``best`` and update ``kth``."""
        if self._pool:
            queries = np.concatenate([p[0] for p in self._pool])
            keys = np.concatenate([p[1] for p in self._pool])
            self._pool, self._pooled = [], 0
            self.best = merge_keys(self.best, pool_topk(queries, keys, self.nq, self.k), self.k)
            self.kth = key_values(self.best[:, -1])

    def result_keys(self):
        """The (nq, k) smallest keys of everything added, ascending, padded with ``PAD_KEY``."""
        self.fold()
        return self.best

    def result(self):
        """``(distances, ids)`` of shape (nq, k): float32 ascending, intp; padding is ``(inf, -1)``."""
        return unpack_keys(self.result_keys())


class RadiusCollector:
    """Per query, every ``(distance, id)`` found, returned in id order.

    Parameters
    ----------
    nq : int
        Number of queries.

    Examples
    --------
    >>> import numpy as np
    >>> found = RadiusCollector(2)
    >>> found.add(np.array([1, 0, 1]), np.array([0.5, 0.2, 0.1], np.float32), np.array([8, 4, 3]))
    >>> [ids.tolist() for _, ids in found.per_query()]
    [[4], [3, 8]]
    """

    def __init__(self, nq):
        self.nq = nq
        self._found = []

    def add(self, queries, distances, ids):
        """Record matches: ``queries``, ``distances`` and ``ids``, each of shape (n,)."""
        if len(queries):
            self._found.append((queries, distances, ids))

    def per_query(self, ids_ascending=False):
        """A list of ``(distances, ids)`` per query (float32, intp), ids ascending.

        Parameters
        ----------
        ids_ascending : bool, default=False
            True when the matches were added in ascending id order per query
            (a scan of increasing rows): a stable sort by query then keeps
            them so, cheaper than sorting by (query, id).
        """
        if self._found:
            q, d, i = (np.concatenate(parts) for parts in zip(*self._found))
        else:
            q, d, i = np.empty(0, np.intp), np.empty(0, np.float32), np.empty(0, np.intp)
        order = np.argsort(q, kind="stable") if ids_ascending else np.lexsort((i, q))
        q, d, i = q[order], d[order], i[order].astype(np.intp, copy=False)
        bounds = np.searchsorted(q, np.arange(self.nq + 1))
        return [(d[a:b], i[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
