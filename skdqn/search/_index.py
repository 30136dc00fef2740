"""The fitted index behind :class:`~skdqn.AQDNeighbors`, and the plan of one search.

An :class:`~skdqn.AQDNeighbors` holds exactly one fitted index object,
published with one assignment (so a search running beside ``partial_fit``
sees the old index or the new one, never a mix):

* :class:`FlatIndex`: codebooks and the codes of every item, searched
  exhaustively (:func:`skdqn.search._search.aqd_kneighbors`, shards of the codes);
* :class:`IVFIndex`: the same, with the codes stored in inverted-list order
  and the :class:`~skdqn.search._ivf.InvertedLists` that say where each list lies
  (:func:`skdqn.search._ivf.ivf_kneighbors`, each probed list's slice).

Both answer the same three questions, ``kneighbors(queries, k, plan)``,
``radius_neighbors(queries, threshold, plan)`` and ``row_items()``, and grow
by ``extend``; a :class:`SearchPlan`, built once per call by the estimator,
carries how to search (kernels, workers, probes). :func:`build_index` is the
one builder every path uses (``fit``, ``partial_fit``, ``from_codes``,
``load``, ``from_faiss``, unpickling).
"""

from dataclasses import dataclass, replace

import numpy as np

from ._ivf import InvertedLists, append_to_lists, ivf_kneighbors, ivf_radius_neighbors
from ._search import aqd_kneighbors, aqd_radius_neighbors

__all__ = ["SearchPlan", "FlatIndex", "IVFIndex", "build_index", "recall_at_k", "choose_n_probe", "AUTO_RECALL"]

# n_probe="auto": the fewest lists (1, 2, 4, ...) whose recall@AUTO_K against the
# exhaustive search reaches AUTO_RECALL on AUTO_QUERIES sampled items. 0.95 at k=10:
# faiss' usual tuning target; on Fashion-MNIST (60,000 items, 256 lists, issue 25)
# n_probe 1 gave recall@10 0.76 and 8 gave 0.99.
AUTO_RECALL = 0.95
AUTO_K = 10
AUTO_QUERIES = 256


@dataclass(frozen=True)
class SearchPlan:
    """How one search call runs: built once per call, passed down to the index.

    Parameters
    ----------
    kernel : object or None
        The kernel that scans contiguous codes (:func:`skdqn.search._search.get_kernel`);
        used by :class:`FlatIndex`.
    list_kernel : object or None
        The kernel that scans inverted lists; None: numpy's own list sums
        (:mod:`skdqn.search._csr`). Used by :class:`IVFIndex`.
    n_jobs : int or None
        Workers (joblib's convention).
    n_probe : int
        Lists probed per query (:class:`IVFIndex`).
    allowed : ndarray of intp or None
        The candidate filter: the sorted item indices the search may return
        (:mod:`skdqn.search._filters` resolves a call's ``filter`` into groups of
        queries sharing one such array); None: every item.

    Examples
    --------
    >>> from skdqn.search._search import get_kernel
    >>> SearchPlan(kernel=get_kernel("numpy")).n_probe
    1
    """

    kernel: object = None
    list_kernel: object = None
    n_jobs: object = None
    n_probe: int = 1
    allowed: object = None


def _padded(dist, ind, k):
    """``(dist, ind)`` widened to ``k`` columns with ``(inf, -1)``: fewer allowed items than ``k``."""
    if ind.shape[1] == k:
        return dist, ind
    pad = k - ind.shape[1]
    return (np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf),
            np.pad(ind, ((0, 0), (0, pad)), constant_values=-1))


def _filtered_knn(index, queries, k, plan):
    """Top-k over the items ``plan.allowed`` only (indices in the full numbering), padded to ``k``."""
    sub = index.restricted(plan.allowed, plan.n_probe)
    kk = min(k, sub.n_rows)
    if kk == 0:
        return _padded(np.empty((queries.n_queries, 0), np.float32), np.empty((queries.n_queries, 0), np.intp), k)
    dist, ind = sub.kneighbors(queries, kk, replace(plan, allowed=None))
    return _padded(dist, ind, k)


def _filtered_radius(index, queries, threshold, plan):
    """Radius matches among the items ``plan.allowed`` only (indices in the full numbering)."""
    sub = index.restricted(plan.allowed, plan.n_probe)
    if sub.n_rows == 0:
        return [np.empty(0, np.float32)] * queries.n_queries, [np.empty(0, np.intp)] * queries.n_queries
    return sub.radius_neighbors(queries, threshold, replace(plan, allowed=None))


@dataclass(frozen=True)
class _StoredCodes:
    """What every index stores (see :class:`FlatIndex`): codebooks, codes, labels, rotation, removals."""

    codebooks: np.ndarray
    codes: np.ndarray
    labels: object = None
    rotation: object = None
    removed: object = None
    vectors: object = None

    @property
    def n_rows(self):
        """Number of stored rows of codes."""
        return int(self.codes.shape[0])

    @property
    def n_samples(self):
        """Size of the item numbering: items ever added, removed ones included."""
        return self.n_rows if self.removed is None else int(self.removed.shape[0])

    @property
    def n_removed(self):
        """Number of removed items."""
        return 0 if self.removed is None else int(np.count_nonzero(self.removed))

    def alive(self):
        """Sorted item indices that were not removed, intp."""
        return np.arange(self.n_samples) if self.removed is None else np.flatnonzero(~self.removed)

    def holds_removed(self):
        """Whether some stored row is a removed item (a search must then filter it out)."""
        return self.removed is not None and self.n_rows > self.n_samples - self.n_removed

    def without(self, items):
        """A new index with ``items`` (item indices, valid) marked removed; rows stay until :meth:`compact`."""
        removed = np.zeros(self.n_samples, dtype=bool) if self.removed is None else self.removed.copy()
        removed[items] = True
        return replace(self, removed=removed)


@dataclass(frozen=True)
class FlatIndex(_StoredCodes):
    """An exhaustive index: every item's code, scanned in shards.

    Parameters
    ----------
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray or numpy.memmap of shape (n_rows, M), uint8 or uint16
        Row ``j`` is item ``ids[j]`` (item ``j`` without ``ids``).
    labels : ndarray of shape (n,) or (n, n_labels), or None
        Item order, over the whole numbering.
    rotation : ndarray of shape (M * ds, M * ds), float32, or None
        Applied to queries and items before the tables and codes.
    removed : ndarray of shape (n,), bool, or None
        Items removed (never returned); None: none ever was. ``n`` is the
        size of the numbering, kept by :meth:`compact`.
    vectors : ndarray or numpy.memmap of shape (n, d), or None
        The items' full-precision vectors, item order (for re-ranking).
    ids : ndarray of shape (n_rows,), int64, or None
        The item of each stored row, increasing; None: row ``j`` is item
        ``j`` (until a :meth:`compact` drops removed rows).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._search import get_kernel
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    >>> index = build_index(C, np.array([[3], [0], [1]], np.uint8))
    >>> index.kneighbors(VectorQueries(np.array([[0.5]]), C, "sqeuclidean"), 2, SearchPlan(get_kernel()))
    (array([[0.25, 0.25]], dtype=float32), array([[1, 2]]))
    """

    ids: object = None

    lists = None  # no inverted lists (a class attribute, not a field)

    def row_items(self):
        """The item index of each stored row, shape (n_rows,), intp."""
        return np.arange(self.n_rows) if self.ids is None else np.asarray(self.ids, dtype=np.intp)

    def kneighbors(self, queries, k, plan):
        """``(distances, indices)`` of shape (nq, k): the AQD top-k of a query source, ties by index.

        With ``plan.allowed``, the top-k of the allowed items, padded with
        ``(inf, -1)`` when fewer than ``k`` are allowed.
        """
        if plan.allowed is not None:
            return _filtered_knn(self, queries, k, plan)
        dist, rows = aqd_kneighbors(queries, self.codes, k, n_jobs=plan.n_jobs, kernel=plan.kernel)
        return dist, rows if self.ids is None else np.asarray(self.ids, dtype=np.intp)[rows]

    def radius_neighbors(self, queries, threshold, plan):
        """``(distances, indices)``: lists of one array per query, the items with AQD ``<= threshold``, indices ascending."""
        if plan.allowed is not None:
            return _filtered_radius(self, queries, threshold, plan)
        dists, rows = aqd_radius_neighbors(queries, self.codes, threshold, n_jobs=plan.n_jobs, kernel=plan.kernel)
        if self.ids is None:
            return dists, rows
        ids = np.asarray(self.ids, dtype=np.intp)
        return dists, [ids[r] for r in rows]

    def restricted(self, allowed, n_probe=None):
        """An index of the ``allowed`` items only (sorted item indices, all stored), their numbers kept.

        The allowed items keep their order, so ties still go to the smaller
        item index; the cost is a copy of their codes (``M`` bytes each).
        """
        rows = allowed if self.ids is None else np.searchsorted(self.ids, allowed)
        return FlatIndex(self.codebooks, np.asarray(self.codes[rows]), ids=np.asarray(allowed, dtype=np.int64))



    def extend(self, codes, vectors, labels):
        """A new index with ``codes`` (of the rotated ``vectors``) appended as new items, and ``labels`` (all items)."""
        del vectors  # an exhaustive index stores codes only
        n_new = codes.shape[0]
        ids = self.ids if self.ids is None else np.concatenate([self.ids, np.arange(n_new) + self.n_samples])
        removed = None if self.removed is None else np.concatenate([self.removed, np.zeros(n_new, bool)])
        return replace(self, codes=np.concatenate([np.asarray(self.codes), codes]), labels=labels,
                       removed=removed, ids=ids)

    def with_vectors(self, vectors):
        """A new index whose items' vectors (item order, the whole numbering) are ``vectors``."""
        return replace(self, vectors=vectors)

    def compact(self):
        """A new index storing only the items not removed, every item keeping its number."""
        if not self.holds_removed():
            return self
        keep = ~self.removed[self.row_items()]
        return replace(self, codes=np.asarray(self.codes)[keep], ids=self.row_items()[keep].astype(np.int64))


@dataclass(frozen=True)
class IVFIndex(_StoredCodes):
    """An inverted-file index: codes stored list by list, a query scans the lists it probes.

    Parameters
    ----------
    codebooks, labels, rotation, removed
        As :class:`FlatIndex`.
    codes : ndarray or numpy.memmap of shape (n_rows, M)
        In list order: row ``j`` is item ``lists.ids[j]``.
    lists : InvertedLists
        Coarse centroids, list offsets and the item of each row.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import InvertedLists
    >>> C = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    >>> lists = InvertedLists(np.array([[0.0], [3.0]], np.float32), np.array([0, 2, 3]), np.array([1, 2, 0]), "l2")
    >>> build_index(C, np.array([[0], [1], [3]], np.uint8), lists=lists).row_items()
    array([1, 2, 0])
    """

    lists: object = None
    auto_probe: object = None  # what n_probe="auto" chose; None until measured

    def row_items(self):
        """The item index of each stored row, shape (n_rows,), intp (the lists' order)."""
        return np.asarray(self.lists.ids, dtype=np.intp)

    def kneighbors(self, queries, k, plan):
        """The AQD top-k over the ``plan.n_probe`` lists each query probes, ties by index.

        More lists are probed when those hold fewer than ``k`` (allowed)
        items; with ``plan.allowed``, padded with ``(inf, -1)`` only when
        fewer than ``k`` items are allowed in all.
        """
        if plan.allowed is not None:
            return _filtered_knn(self, queries, k, plan)
        return ivf_kneighbors(
            queries, self.codes, self.lists, k, n_probe=plan.n_probe, n_jobs=plan.n_jobs, kernel=plan.list_kernel
        )

    def radius_neighbors(self, queries, threshold, plan):
        """``(distances, indices)``: lists of one array per query, the matches in its probed lists, indices ascending."""
        if plan.allowed is not None:
            return _filtered_radius(self, queries, threshold, plan)
        return ivf_radius_neighbors(
            queries, self.codes, self.lists, threshold, n_probe=plan.n_probe, n_jobs=plan.n_jobs,
            kernel=plan.list_kernel,
        )

    def _keep_rows(self, rows):
        """The index storing only ``rows`` (ascending), each list keeping its rows in order."""
        lists = self.lists
        sizes = np.bincount(np.searchsorted(lists.offsets, rows, side="right") - 1, minlength=lists.n_lists)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        kept = InvertedLists(lists.centroids, offsets, np.asarray(lists.ids[rows], dtype=np.int64), lists.metric)
        return replace(self, codes=np.asarray(self.codes[rows]), lists=kept)

    def restricted(self, allowed, n_probe=1):
        """The index the ``allowed`` items (sorted item indices) are searched in, their numbers kept.

        The lists holding only them (same centroids, rows in order); or,
        when they are fewer than the ``n_probe`` lists hold on average
        (``len(allowed) * n_lists <= n_rows * n_probe``), an exhaustive index
        of them: it scans no more codes than an unfiltered search and finds
        their exact AQD top-k (a search of a few items in many tiny lists
        would pay for each list).
        """
        if len(allowed) * self.lists.n_lists <= self.n_rows * n_probe:
            position = np.empty(self.n_samples, dtype=np.intp)
            position[self.row_items()] = np.arange(self.n_rows)
            return FlatIndex(self.codebooks, np.asarray(self.codes[position[allowed]]),
                             ids=np.asarray(allowed, dtype=np.int64))
        keep = np.zeros(self.n_samples, dtype=bool)
        keep[allowed] = True
        return replace(self._keep_rows(np.flatnonzero(keep[self.row_items()])), labels=None, removed=None, vectors=None)

    def with_vectors(self, vectors):
        """A new index whose items' vectors (item order, the whole numbering) are ``vectors``."""
        return replace(self, vectors=vectors)

    def extend(self, codes, vectors, labels):
        """A new index with the items appended to their nearest lists (by the rotated ``vectors``)."""
        lists, codes = append_to_lists(self.lists, self.codes, codes, vectors, first_id=self.n_samples)
        removed = None if self.removed is None else np.concatenate([self.removed, np.zeros(codes.shape[0] - self.n_rows, bool)])
        return replace(self, codes=codes, labels=labels, lists=lists, removed=removed)

    def compact(self):
        """A new index storing only the items not removed, every item keeping its number."""
        if not self.holds_removed():
            return self
        return self._keep_rows(np.flatnonzero(~self.removed[self.row_items()]))


def recall_at_k(index, queries, k, plan, exact=None):
    """Recall@k of ``index`` searched with ``plan``, against its exhaustive search.

    Parameters
    ----------
    index : FlatIndex or IVFIndex
    queries : QuerySource
    k : int
        ``<=`` the items searched.
    plan : SearchPlan
    exact : ndarray of shape (nq,), float32, default=None
        Each query's exact k-th smallest AQD (computed when None).

    Returns
    -------
    recall : float
        The share of returned neighbours at or below their query's exact k-th
        AQD: a tie with the exhaustive k-th counts as found (any of tied
        items is as near).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._search import get_kernel
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    >>> index = build_index(C, np.array([[3], [0], [1]], np.uint8))
    >>> recall_at_k(index, VectorQueries(np.array([[0.5]]), C, "sqeuclidean"), 2, SearchPlan(get_kernel()))
    1.0
    """
    if exact is None:
        exact = aqd_kneighbors(queries, index.codes, k, n_jobs=plan.n_jobs, kernel=plan.kernel or "numpy")[0][:, -1]
    dist, _ = index.kneighbors(queries, k, plan)
    return float(np.mean(dist <= exact[:, None]))


def choose_n_probe(index, queries, plan, k=AUTO_K, target=AUTO_RECALL):
    """The fewest lists (1, 2, 4, ..., all) whose :func:`recall_at_k` reaches ``target``.

    Parameters
    ----------
    index : IVFIndex
    queries : QuerySource
        A sample of typical queries (e.g. :data:`AUTO_QUERIES` items).
    plan : SearchPlan
        Kernels and workers (its ``n_probe`` is replaced).
    k : int, default=AUTO_K
    target : float, default=AUTO_RECALL

    Returns
    -------
    n_probe : int
        ``n_lists`` at most (the exhaustive search, recall 1).
    """
    k = min(k, index.n_rows)
    exact = aqd_kneighbors(queries, index.codes, k, n_jobs=plan.n_jobs, kernel=plan.kernel or "numpy")[0][:, -1]
    n_probe = 1
    while n_probe < index.lists.n_lists:
        if recall_at_k(index, queries, k, replace(plan, n_probe=n_probe), exact) >= target:
            return n_probe
        n_probe *= 2
    return index.lists.n_lists


def build_index(codebooks, codes, labels=None, lists=None, rotation=None, *, removed=None, ids=None):
    """The one builder of a fitted index: :class:`FlatIndex`, or :class:`IVFIndex` with ``lists``.

    Parameters
    ----------
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray of shape (n, M)
        In list order when ``lists`` is given.
    labels : ndarray or None, default=None
        Item order.
    lists : InvertedLists or None, default=None
    rotation : ndarray of shape (M * ds, M * ds), float32, or None, default=None
    removed : ndarray of shape (n,), bool, or None, default=None
        Removed items (over the whole numbering).
    ids : ndarray of shape (n_rows,), int64, or None, default=None
        The item of each stored row of an exhaustive index (after a
        compaction); an inverted-file index keeps them in ``lists.ids``.

    Returns
    -------
    index : FlatIndex or IVFIndex
        The parts are taken as they are (validated by the caller).

    Examples
    --------
    >>> import numpy as np
    >>> build_index(np.zeros((1, 2, 1), np.float32), np.zeros((3, 1), np.uint8)).n_samples
    3
    """
    if lists is None:
        return FlatIndex(codebooks, codes, labels, rotation, removed, ids=ids)
    return IVFIndex(codebooks, codes, labels, rotation, removed, lists=lists)
