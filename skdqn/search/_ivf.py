"""Inverted lists (IVF): non-exhaustive AQD search over the same PQ codes.

A coarse quantizer of ``n_lists`` centroids splits the indexed items into
inverted lists, each item in the list of its nearest centroid (IVFADC, Jegou
et al. 2011; ``faiss.IndexIVFPQ`` with ``by_residual=False``). Items keep
their PQ codes (not residuals), so every distance the search returns is the
exact AQD of the exhaustive search; only the candidates are pruned: a query
scans the ``n_probe`` lists whose centroids are nearest to it.

Storage (:class:`InvertedLists`): the codes sorted by list, one contiguous
slice per list (``offsets``), and ``ids``, the original item index of each
stored row. Within a list, rows are in increasing item index, so ties are
broken by item index exactly as in the exhaustive search, and probing every
list gives the exhaustive result, tie order included.

The search runs on the engine's tasks (:func:`skdqn.search._search._fan_out`): a
task is a block of queries against a contiguous range of lists (one range
unless the work is sharded). It computes its queries' lookup tables (one
contiguous row per query) and coarse scores, ranks the lists for each query
(:func:`probe_lists`), and sums the AQD of each probed list's rows with
scipy's compiled CSR product (:mod:`skdqn.search._csr`): a list probed by few
queries of the block query by query, into flat chunks of bounded size where
each (query, list) pair is one contiguous run; a list probed by many once
for all of them. The top k is selected exactly (packed keys,
:mod:`skdqn.search._ranking`), keeping per query only the candidates at or below a
bound of its k-th distance.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from sklearn.utils import check_random_state

from . import _tuning
from .._pq import _nearest_codewords, check_magnitude, lloyd
from ._ranking import MAX_KEY_INDEX, pack_keys, stable_smallest
from ._csr import list_aqd, list_aqd_runs, row_index, rows_per_call
from ._search import Shard, TaskPlan, _auto_shards, _fan_out, _float32_floor, get_scan_blocks, merge_kneighbors
from ._tables import flat_tables
from ._topk import RadiusCollector, RunningTopK

__all__ = [
    "InvertedLists",
    "train_coarse",
    "assign_lists",
    "build_lists",
    "coarse_scores",
    "probe_lists",
    "ivf_kneighbors",
    "ivf_radius_neighbors",
]

_TRAIN_PER_LIST = 256  # k-means runs on at most this many vectors per list (as faiss does)
_COARSE_ITER = 10  # Lloyd iterations of the coarse k-means


@dataclass(frozen=True)
class InvertedLists:
    """The inverted lists of an index: coarse centroids, list offsets, item ids.

    Parameters
    ----------
    centroids : ndarray of shape (n_lists, d), float32
        The coarse quantizer.
    offsets : ndarray of shape (n_lists + 1,), int64
        List ``l`` is rows ``offsets[l]:offsets[l + 1]`` of the (sorted) codes.
    ids : ndarray of shape (n_items,), int64
        The item index of each stored row (may be memory-mapped), increasing
        within each list (every builder keeps them so: :func:`build_lists`,
        :func:`append_to_lists`, loading; a search with a ``kernel`` relies
        on it for its tie order).
    metric : {"l2", "inner_product"}
        How items and queries are assigned to centroids: nearest in L2, or
        largest inner product (as faiss' coarse quantizers do for each metric).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import InvertedLists
    >>> lists = InvertedLists(np.zeros((2, 3), np.float32), np.array([0, 1, 4]), np.arange(4), "l2")
    >>> lists.n_lists, lists.sizes.tolist()
    (2, [1, 3])
    """

    centroids: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    metric: str = "l2"

    @property
    def n_lists(self):
        """Number of lists."""
        return self.centroids.shape[0]

    @property
    def sizes(self):
        """Items per list, shape (n_lists,)."""
        return np.diff(self.offsets)


# --------------------------------------------------------------- building
def train_coarse(X, n_lists, *, max_samples=None, n_iter=_COARSE_ITER, random_state=None):
    """Coarse centroids by k-means: a random start among the rows, then Lloyd iterations.

    Parameters
    ----------
    X : ndarray of shape (n, d), float
        Training vectors, ``n >= n_lists``.
    n_lists : int
        Number of centroids.
    max_samples : int, default=None
        k-means runs on a random subset of at most this many rows; ``None``
        uses ``256 * n_lists`` (faiss' default).
    n_iter : int, default=10
        Most Lloyd iterations (stops earlier when no assignment changes);
        faiss' coarse quantizers run 10.
    random_state : int, RandomState instance or None, default=None
        Seeds the subset and the start.

    Returns
    -------
    centroids : ndarray of shape (n_lists, d), float32

    Notes
    -----
    The start is ``n_lists`` distinct rows drawn at random (not k-means++,
    whose cost grows with ``n_lists * n``), then the Lloyd loop of the PQ
    codebooks, :func:`skdqn._pq.lloyd`, in one space of ``d`` dimensions
    (empty clusters re-seeded on the points worst quantized).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import train_coarse
    >>> X = np.r_[np.zeros((50, 2)), np.ones((50, 2)) * 10]
    >>> np.sort(train_coarse(X, 2, random_state=0)[:, 0]).tolist()
    [0.0, 10.0]
    """
    rng = check_random_state(random_state)
    X = np.asarray(X)
    if X.ndim != 2 or not 1 <= n_lists <= X.shape[0]:
        raise ValueError(f"train_coarse needs 2-D X of at least n_lists={n_lists} >= 1 rows; got shape {X.shape}.")
    check_magnitude(X)
    X = X.astype(np.float32, copy=False)
    limit = _TRAIN_PER_LIST * n_lists if max_samples is None else max_samples
    if X.shape[0] > limit:
        X = X[np.sort(rng.choice(X.shape[0], limit, replace=False))]
    start = X[np.sort(rng.choice(X.shape[0], n_lists, replace=False))]
    centroids, _ = lloyd(X[:, None, :], start[None], n_iter=n_iter, exact_labels=False)
    return np.ascontiguousarray(centroids[0])


def assign_lists(X, centroids, metric="l2"):
    """The list of each vector: its nearest centroid (or largest inner product).

    Parameters
    ----------
    X : ndarray of shape (n, d), float
    centroids : ndarray of shape (n_lists, d), float32
    metric : {"l2", "inner_product"}, default="l2"

    Returns
    -------
    lists : ndarray of shape (n,), intp
        Ties go to the smaller list. For ``"l2"``, exactly the nearest
        centroid (float64 differences decide close calls): the kernel of
        the PQ encoding in one space (``skdqn._pq._nearest_codewords``).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import assign_lists
    >>> assign_lists(np.array([[0.2], [9.0]]), np.array([[0.0], [10.0]], np.float32)).tolist()
    [0, 1]
    """
    if metric == "l2":
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        check_magnitude(X)
        out = np.empty((X.shape[0], 1), dtype=np.intp)
        _nearest_codewords(X[:, None, :], np.asarray(centroids, dtype=np.float32)[None], out)
        return out[:, 0]
    X = np.asarray(X, dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.intp)
    step = 8192
    for start in range(0, X.shape[0], step):
        out[start : start + step] = np.argmax(X[start : start + step] @ centroids.T, axis=1)
    return out


def build_lists(list_of_item, n_lists):
    """Order and offsets of the items sorted by list, items ascending within a list.

    Parameters
    ----------
    list_of_item : ndarray of shape (n,), int
        The list of each item, in ``[0, n_lists)``.
    n_lists : int

    Returns
    -------
    order : ndarray of shape (n,), int64
        Item indices in storage order (the ``ids`` of the rows).
    offsets : ndarray of shape (n_lists + 1,), int64

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import build_lists
    >>> order, offsets = build_lists(np.array([1, 0, 1, 1]), 3)
    >>> order.tolist(), offsets.tolist()
    ([1, 0, 2, 3], [0, 1, 4, 4])
    """
    order = np.argsort(list_of_item, kind="stable").astype(np.int64)
    counts = np.bincount(list_of_item, minlength=n_lists)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return order, offsets


# ----------------------------------------------------------------- probing
def coarse_scores(V, centroids, metric="l2"):
    """Scores of queries against the centroids, smaller is nearer.

    Parameters
    ----------
    V : ndarray of shape (nq, d), float
    centroids : ndarray of shape (n_lists, d), float32
    metric : {"l2", "inner_product"}, default="l2"
        ``"l2"``: ``||c||^2 - 2 <v, c>`` (the squared distance less ``||v||^2``);
        ``"inner_product"``: ``-<v, c>``.

    Returns
    -------
    scores : ndarray of shape (nq, n_lists), float32

    Notes
    -----
    One matrix-vector product per query (a stacked ``matmul``), so a query's
    scores, hence the lists it probes, never depend on the other queries.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import coarse_scores
    >>> coarse_scores(np.array([[1.0, 0.0]]), np.eye(2, dtype=np.float32))
    array([[-1.,  1.]], dtype=float32)
    """
    return _scores(V, *_prepare_centroids(centroids, metric))


def _prepare_centroids(centroids, metric):
    """What :func:`_scores` needs of the centroids: ``(d, n_lists)`` contiguous, and their squared norms (l2)."""
    norms = np.einsum("ld,ld->l", centroids, centroids) if metric == "l2" else None
    return np.ascontiguousarray(centroids.T), norms


def _scores(V, centroids_t, norms):
    """:func:`coarse_scores` of ``V`` from :func:`_prepare_centroids` (once per task, not per step)."""
    V = np.asarray(V, dtype=np.float32)
    products = np.matmul(V[:, None, :], centroids_t)[:, 0, :]
    if norms is not None:
        products *= np.float32(-2.0)
        products += norms
        return products
    return np.negative(products, out=products)


def probe_lists(scores, sizes, n_probe, k=0):
    """The lists each query scans: its ``n_probe`` nearest, more if they hold fewer than k items.

    Parameters
    ----------
    scores : ndarray of shape (nq, n_lists), float32
        From :func:`coarse_scores`.
    sizes : ndarray of shape (n_lists,), int
        Items per list.
    n_probe : int
        Lists probed per query, ``1 <= n_probe <= n_lists``.
    k : int, default=0
        A query whose ``n_probe`` lists hold fewer than ``k`` items probes the
        next nearest lists too, until they hold at least ``k`` (or all lists
        are probed); 0 for radius search.

    Returns
    -------
    query : ndarray of shape (n_pairs,), intp
        Non-decreasing.
    lists : ndarray of shape (n_pairs,), intp
        For each query, its lists from the nearest on (ties by list index).

    Notes
    -----
    The lists of a query are the first ones of one fixed order, so a larger
    ``n_probe`` probes a superset, and ``n_probe == n_lists`` every list.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import probe_lists
    >>> scores = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], np.float32)
    >>> q, l = probe_lists(scores, np.array([1, 5, 5]), 1, k=3)
    >>> q.tolist(), l.tolist()
    ([0, 0, 1], [0, 1, 2])
    """
    nq, n_lists = scores.shape
    ranked = stable_smallest(scores, n_probe)
    counts = np.full(nq, n_probe, dtype=np.intp)
    short = np.flatnonzero(sizes[ranked].sum(axis=1) < k) if k else np.empty(0, np.intp)
    if short.size == 0:
        return np.repeat(np.arange(nq), n_probe), ranked.ravel()
    full = stable_smallest(scores[short], n_lists)
    reach = (np.cumsum(sizes[full], axis=1) < k).sum(axis=1) + 1
    counts[short] = np.minimum(np.maximum(reach, n_probe), n_lists)
    width = int(counts.max())
    table = np.zeros((nq, width), dtype=np.intp)
    table[:, :n_probe] = ranked
    table[short] = full[:, :width]
    keep = np.arange(width) < counts[:, None]
    return np.repeat(np.arange(nq), counts), table[keep]


# ------------------------------------------------------------- list scans
def _narrow_and_wide(pairs, offsets, row_start):
    """The non-empty probed lists as ``(cols, first, stop)``, split by how many queries probe them.

    Narrow lists (at most ``NARROW`` queries, :mod:`skdqn.search._tuning`) are summed query by query
    into flat chunks (:func:`_narrow_chunks`); wide ones once for all their
    queries (:func:`_wide_pieces`). Both sum the same entries in the same
    order, so the split never changes a result.
    """
    narrow, wide = [], []
    for cols, first, stop in _by_list(pairs, offsets, row_start):
        if stop > first:
            (narrow if cols.size <= _tuning.NARROW else wide).append((cols, first, stop))
    return narrow, wide


def _narrow_chunks(per_query, codes, narrow, budget):
    """AQD of the narrow lists, each (query, list) pair one contiguous run of a chunk.

    ``per_query`` (nq, M * K) float32, C-contiguous. Yields ``(dist, query,
    first, pos, length)`` per chunk of at most ``budget`` distances: pair
    ``p`` (of query ``query[p]``) holds the AQD of local rows ``first[p] :
    first[p] + length[p]`` at ``dist[pos[p] : pos[p] + length[p]]``. A list
    is summed for all its queries at once, in pieces of at most ``budget //
    len(cols)`` rows (at least one; and at most ``rows_per_call(M)``, so that
    the indices of a call stay in the cache); the buffer is reused, so a
    chunk is valid until the next one is asked for.
    """
    K = per_query.shape[1] // codes.shape[1]
    buffer = np.empty(max([budget] + [cols.size for cols, _, _ in narrow]), dtype=np.float32)
    pieces, used = [], 0  # per piece of a list: (its queries, first row, rows, position in the chunk)
    for cols, first, stop in narrow:
        step = max(1, min(budget // cols.size, rows_per_call(codes.shape[1])))
        for start in range(first, stop, step):
            n = min(stop, start + step) - start
            if pieces and used + n * cols.size > buffer.size:
                yield (buffer[:used], *_pair_columns(pieces))
                pieces, used = [], 0
            out = buffer[used : used + n * cols.size]
            list_aqd_runs(per_query, cols, row_index(codes[start : start + n], K), out)
            pieces.append((cols, start, n, used))
            used += n * cols.size
    if pieces:
        yield (buffer[:used], *_pair_columns(pieces))


def _pair_columns(pieces):
    """(query, first, pos, length) intp arrays of the (query, list) pairs of a chunk's pieces."""
    cols, first, n, pos = zip(*pieces)
    width = np.fromiter((c.size for c in cols), dtype=np.intp, count=len(cols))
    n = np.array(n, dtype=np.intp)
    within = np.arange(width.sum(), dtype=np.intp) - np.repeat(np.cumsum(width) - width, width)
    positions = np.repeat(np.array(pos, dtype=np.intp), width) + within * np.repeat(n, width)
    first = np.repeat(np.array(first, dtype=np.intp), width)
    return np.concatenate(cols).astype(np.intp), first, positions, np.repeat(n, width)


def _wide_pieces(per_query, codes, wide, budget, scan_tables):
    """AQD of each wide list to the queries that probe it, at most ``budget`` distances at a time.

    Yields ``(cols, dist, rows)``: the queries (ascending), their distances
    ``(len(rows), len(cols))`` float32 and the local rows (a slice). A
    list's rows are summed against its queries' tables as the columns of
    one ``(M * K, len(cols))`` array: for up to ``ROWS_MAX_WIDTH`` queries
    (:mod:`skdqn.search._tuning`)
    their rows of ``per_query``, transposed; for more, the columns of the
    ``(M * K, nq)`` tables that ``scan_tables()`` returns (the same floats
    in the scan's layout), asked for at the first such list.
    """
    K = per_query.shape[1] // codes.shape[1]
    flat = None
    for cols, first, stop in wide:
        if cols.size <= _tuning.ROWS_MAX_WIDTH:
            columns = np.ascontiguousarray(per_query[cols].T)
        else:
            flat = scan_tables() if flat is None else flat
            columns = np.take(flat, cols, axis=1)
        step = max(1, min(budget // cols.size, rows_per_call(codes.shape[1])))
        for start in range(first, stop, step):
            end = min(stop, start + step)
            out = np.empty((end - start, cols.size), dtype=np.float32)
            yield cols, list_aqd(columns, row_index(codes[start:end], K), out), slice(start, end)


def _scan_tables(queries):
    """A callable giving the ``(M * K, nq)`` tables of ``queries``, computed again in the scan's layout.

    Computing them (scipy's ``cdist``, about 6 ms for 1,000 queries at M = 8,
    K = 256) is cheaper than transposing the query-major copy (18-30 ms,
    measured).
    """
    return lambda: flat_tables(queries.tables(layout="scan"))


def _chunk_bounds(dist, query, pos, length, top):
    """Per query of a chunk, a distance no candidate of its final top k lies above.

    The smallest of its running k-th distance (``top.kth``) and, over its
    pairs in the chunk, the k-th smallest of the first ``BOUND_SAMPLE`` (:mod:`skdqn.search._tuning`)
    distances of the pair (the k-th of a subset is never below that of the
    whole).
    """
    k = top.k
    width = max(k, _tuning.BOUND_SAMPLE)
    take = np.minimum(pos[:, None] + np.arange(width), dist.size - 1)
    sample = np.where(np.arange(width) < length[:, None], dist[take], np.float32(np.inf))
    bound = top.kth.copy()
    np.minimum.at(bound, query, np.partition(sample, k - 1, axis=1)[:, k - 1])
    return bound


def _chunk_hits(dist, query, first, pos, length, thresholds):
    """(queries, local rows, distances) of a chunk's distances at or below their query's threshold."""
    hit = np.flatnonzero(dist <= np.repeat(thresholds[query], length))
    pair = np.searchsorted(pos, hit, side="right") - 1
    return query[pair], first[pair] + (hit - pos[pair]), dist[hit]


# ------------------------------------------------------------------- tasks
def _probe_block(queries, lists, n_probe, k):
    """Query-major tables and probed (query, list) pairs of one block of queries.

    The coarse scores (``queries x n_lists``) are computed and ranked
    ``PROBE_FLOATS // n_lists`` queries (:mod:`skdqn.search._tuning`) at a time, so their memory does not
    grow with the number of lists. Returns ``(per_query, tables, pairs)``:
    the tables as one C-contiguous ``(nq, M * K)`` row per query, the tables
    as computed (``(nq, M, K)``, for a kernel), and the pairs.
    """
    vectors = queries.vectors()
    tables = queries.tables(layout="query")
    per_query = np.ascontiguousarray(tables).reshape(tables.shape[0], -1)  # a no-op but for given tables
    prepared = _prepare_centroids(lists.centroids, lists.metric)
    step = max(1, _tuning.PROBE_FLOATS // lists.n_lists)
    query, probed = [np.empty(0, np.intp)], [np.empty(0, np.intp)]
    for start in range(0, vectors.shape[0], step):
        q, l = probe_lists(_scores(vectors[start : start + step], *prepared), lists.sizes, n_probe, k)
        query.append(q + start)
        probed.append(l)
    return per_query, tables, (np.concatenate(query), np.concatenate(probed))


@dataclass(frozen=True)
class ProbedLists:
    """What one task scans: its block of queries and their probed lists within its shard.

    Attributes
    ----------
    queries : QuerySource
    per_query : ndarray of shape (nq, M * K), float32
        One contiguous table row per query (the CSR sums read them).
    tables : ndarray of shape (nq, M, K), float32
        The tables as computed (for a kernel).
    pairs : tuple of ndarray
        ``(query, list)`` pairs probed, lists within the shard.
    codes, ids : ndarray
        The shard's codes and the item of each row.
    offsets : ndarray of shape (n_lists + 1,)
        Rows of each list in the index's codes.
    row_start : int
        Row of the shard's first code.
    """

    queries: object
    per_query: np.ndarray
    tables: np.ndarray
    pairs: tuple
    codes: object
    ids: object
    offsets: np.ndarray
    row_start: int


def _probed(queries, shard, plan, k):
    """The :class:`ProbedLists` of a block of queries over a :class:`~skdqn.search._search.Shard`."""
    per_query, tables, pairs = _probe_block(queries, plan.lists, plan.n_probe, k)
    return ProbedLists(queries, per_query, tables, _in_part(*pairs, shard.lists_part), shard.codes, shard.ids,
                       plan.lists.offsets, shard.start)


class CSRListScan:
    """numpy's scan of inverted lists: scipy's CSR sums (:mod:`skdqn.search._csr`), many lists per call.

    Narrow lists are summed query by query into flat chunks, whose
    candidates at or below their query's bound (:func:`_chunk_bounds`) are
    kept; wide lists are then summed once for all their queries, keeping
    what can still enter each query's top k (:func:`_below_kth`). The sums
    are the exhaustive scan's, float for float.
    """

    def knn(self, p, top, budget):
        """Add to ``top`` (a RunningTopK) the candidates of the probed lists ``p`` (:class:`ProbedLists`)."""
        narrow, wide = _narrow_and_wide(p.pairs, p.offsets, p.row_start)
        for chunk in _narrow_chunks(p.per_query, p.codes, narrow, budget):
            q, rows, dist = _chunk_hits(*chunk, _chunk_bounds(chunk[0], chunk[1], chunk[3], chunk[4], top))
            top.add(q, dist, p.ids[rows])
        top.fold()  # each query's k-th distance so far bounds what the wide lists keep
        for cols, dist, rows in _wide_pieces(p.per_query, p.codes, wide, budget, _scan_tables(p.queries)):
            top.add_keys(*_below_kth(dist, p.ids[rows], cols, top.kth, top.k))

    def radius(self, p, found, threshold, budget):
        """Add to ``found`` (a RadiusCollector) the matches ``<= threshold`` in the probed lists ``p``."""
        narrow, wide = _narrow_and_wide(p.pairs, p.offsets, p.row_start)
        everywhere = np.full(p.queries.n_queries, threshold, dtype=np.float32)
        for chunk in _narrow_chunks(p.per_query, p.codes, narrow, budget):
            q, rows, dist = _chunk_hits(*chunk, everywhere)
            found.add(q, dist, p.ids[rows])
        for cols, dist, rows in _wide_pieces(p.per_query, p.codes, wide, budget, _scan_tables(p.queries)):
            hit = np.flatnonzero(dist <= threshold)
            r, c = np.divmod(hit, cols.size)
            found.add(cols[c], dist[r, c], p.ids[rows][r])


class KernelListScan:
    """A scan kernel's scan of inverted lists: each probed list's slice of codes, once for its queries.

    The kernel contract of the exhaustive search (:mod:`skdqn.search._scan`)
    serves the lists: what ``backend="torch"`` does on CUDA. The kernel
    breaks ties by row, and rows of a list hold increasing item ids (every
    builder of :class:`InvertedLists` keeps them so), so a list's top k by
    (distance, row) is its top k by key.

    Parameters
    ----------
    kernel : object
        A scan kernel (:func:`skdqn.search._search.get_kernel`).
    db_block : int
        Codes the kernel scans at a time.
    """

    def __init__(self, kernel, db_block):
        self.kernel, self.db_block = kernel, db_block

    def knn(self, p, top, budget):
        """Add to ``top`` each probed list's top-k for its queries."""
        del budget  # the kernel bounds its own memory by db_block
        for cols, first, stop in _by_list(p.pairs, p.offsets, p.row_start):
            k = min(top.k, stop - first)
            if k == 0:
                continue
            dist, rows = self.kernel.kneighbors(p.tables[cols], p.codes[first:stop], k, db_block=self.db_block)
            top.add(np.repeat(cols, k), dist.ravel(), p.ids[first + rows].ravel())

    def radius(self, p, found, threshold, budget):
        """Add to ``found`` the matches ``<= threshold`` in each probed list."""
        del budget
        for cols, first, stop in _by_list(p.pairs, p.offsets, p.row_start):
            if stop == first:
                continue
            matches = self.kernel.radius_neighbors(p.tables[cols], p.codes[first:stop], threshold, db_block=self.db_block)
            for q, (dist, rows) in zip(cols, matches):
                found.add(np.full(rows.size, q, dtype=np.intp), dist, p.ids[first + rows])


def _ivf_knn_task(queries, shard, plan):
    """Top-k of a block of queries over the probed lists of one range of lists (a :class:`~skdqn.search._search.Shard`).

    ``plan.list_scan`` (:class:`CSRListScan` or :class:`KernelListScan`)
    scans the probed lists into one running top-k. Returns (nq, k)
    distances and item ids; queries with fewer than k candidates in this
    range are padded with (inf, -1).
    """
    top = RunningTopK(queries.n_queries, plan.k, limit=2 * queries.n_queries * plan.k)
    plan.list_scan.knn(_probed(queries, shard, plan, plan.k), top, plan.budget)
    return top.result()


def _in_part(query, probed, lists_part):
    """The (query, list) pairs whose list lies in ``lists_part = (first, stop)``."""
    first, stop = lists_part
    keep = (probed >= first) & (probed < stop)
    return query[keep], probed[keep]


def _by_list(pairs, offsets, row_start):
    """Per probed list (ascending), ``(cols, first, stop)``: its queries (ascending) and its local rows."""
    query, probed = pairs
    order = np.argsort(probed, kind="stable")  # queries stay ascending within a list
    query, probed = query[order], probed[order]
    bounds = np.flatnonzero(np.diff(probed, prepend=-1, append=-1))
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield query[a:b], offsets[probed[a]] - row_start, offsets[probed[a] + 1] - row_start


def _below_kth(dist, row_ids, cols, kth, k):
    """Candidates of a scanned piece that can still enter the top k: (queries, keys).

    Keeps the distances ``<= kth`` of their query (ties kept: ids are not
    monotonic across lists); a query without a k-th distance yet keeps the
    piece's own k smallest (ties at the k-th included).
    """
    bound = kth[cols]
    fresh = np.flatnonzero(np.isinf(bound))
    if fresh.size and dist.shape[0] > k:
        own = np.partition(np.ascontiguousarray(dist[:, fresh].T), k - 1, axis=1)[:, k - 1]
        bound[fresh] = own
    hit = np.flatnonzero(dist <= bound)
    r, c = np.divmod(hit, cols.size)
    return cols[c], pack_keys(dist[r, c], row_ids[r])


def _ivf_radius_task(queries, shard, plan):
    """Radius matches of a block of queries in the probed lists of one range: per query (d, ids), by ``plan.list_scan``."""
    found = RadiusCollector(queries.n_queries)
    plan.list_scan.radius(_probed(queries, shard, plan, 0), found, plan.threshold, plan.budget)
    return found.per_query()


def _list_scan(kernel, db_block):
    """The list scanner of a search: numpy's CSR sums without a kernel, else the kernel on each probed list."""
    return CSRListScan() if kernel is None else KernelListScan(kernel, db_block)


def _list_shards(codes, lists, n_shards):
    """Shards of contiguous ranges of lists, balanced by rows: what each task receives."""
    n_rows = codes.shape[0]
    n_shards = max(1, min(int(n_shards), lists.n_lists))
    targets = np.linspace(0, n_rows, n_shards + 1)[1:-1]
    cuts = np.unique(np.searchsorted(lists.offsets, targets, side="left"))
    bounds = [0] + [int(c) for c in cuts if 0 < c < lists.n_lists] + [lists.n_lists]
    shards = []
    for first, stop in zip(bounds[:-1], bounds[1:]):
        r0, r1 = int(lists.offsets[first]), int(lists.offsets[stop])
        shards.append(Shard(codes[r0:r1], r0, ids=lists.ids[r0:r1], lists_part=(first, stop)))
    return shards


def _check_probe(n_probe, lists):
    if not 1 <= n_probe <= lists.n_lists:
        raise ValueError(f"n_probe must be in [1, n_lists={lists.n_lists}]; got n_probe={n_probe}.")


def _plan(queries, codes, lists, n_probe, n_jobs, n_shards):
    """Check the search and return (queries per task, budget, shards).

    A task holds more queries than an exhaustive one (up to ``IVF_BLOCK_FACTOR``
    times :class:`~skdqn.search._search.ScanBlocks` ``.query``, within
    ``IVF_TABLE_FLOATS`` floats of tables; :mod:`skdqn.search._tuning`), so that each probed list is
    scanned once for many queries; with several workers, at most a
    worker's share of the queries.
    """
    _check_probe(n_probe, lists)
    if not hasattr(queries, "vectors"):
        raise TypeError("an inverted-list search needs query vectors (a VectorQueries or CodeQueries).")
    blocks = get_scan_blocks()
    budget = max(1, blocks.query * blocks.database // 2)  # candidates gathered at a time
    M, K = queries.codebooks.shape[:2]
    most = min(_tuning.IVF_BLOCK_FACTOR * blocks.query, _tuning.IVF_TABLE_FLOATS // (M * K))
    query_block = max(blocks.query, most)
    workers = effective_n_jobs(n_jobs)
    if workers > 1:  # parallel over query blocks first: every worker gets one
        query_block = max(blocks.query, min(query_block, -(-queries.n_queries // workers)))
    if n_shards is None:
        n_blocks = -(-queries.n_queries // query_block)
        n_shards = _auto_shards(n_jobs, n_blocks, codes.shape[0], blocks.database)
    return query_block, budget, _list_shards(codes, lists, n_shards)


def ivf_kneighbors(queries, codes, lists, n_neighbors, *, n_probe=1, n_jobs=None, n_shards=None, kernel=None):
    """Top-k by AQD over the probed inverted lists, ties by item index.

    Parameters
    ----------
    queries : VectorQueries or CodeQueries
        The queries (see :mod:`skdqn.search._tables`); their vectors are assigned to
        lists, their tables scan the codes.
    codes : ndarray of shape (n_items, M), integer in ``[0, K)``
        Sorted by list (row ``j`` holds item ``lists.ids[j]``); may be
        memory-mapped.
    lists : InvertedLists
    n_neighbors : int
        ``1 <= n_neighbors <= n_items``.
    n_probe : int, default=1
        Lists probed per query; a query whose lists hold fewer than
        ``n_neighbors`` items probes the next nearest lists too
        (:func:`probe_lists`), so every query gets ``n_neighbors`` results.
    n_jobs : int, default=None
        Parallel workers (joblib; threads by default), as for
        :func:`skdqn.search._search.aqd_kneighbors`.
    n_shards : int, default=None
        Split the lists into this many contiguous ranges, each searched as
        its own task; ``None`` chooses as the exhaustive search does. Results
        never depend on it.
    kernel : scan kernel, default=None
        ``None``: the numpy scan of the lists (grouped by list, or flat
        candidates). A kernel (:func:`skdqn.search._search.get_kernel`, e.g.
        torch) scans each probed list once for the queries that probe it;
        the same results (on CUDA, distances up to float32 rounding).

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float32
        Ascending; exact AQD, the values of the exhaustive search.
    indices : ndarray of shape (n_queries, n_neighbors), intp
        Item indices.

    Notes
    -----
    Reference: the exhaustive search restricted to the items of the probed
    lists; with ``n_probe == n_lists`` it is the exhaustive search, ties
    included.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import InvertedLists, ivf_kneighbors
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.array([[[0.0], [10.0]]], np.float32)
    >>> lists = InvertedLists(C[0].copy(), np.array([0, 2, 3]), np.array([0, 2, 1]), "l2")
    >>> codes = np.array([[0], [0], [1]], np.uint8)  # items 0, 2 in list 0; item 1 in list 1
    >>> ivf_kneighbors(VectorQueries(np.array([[1.0]]), C, "sqeuclidean"), codes, lists, 2)
    (array([[1., 1.]], dtype=float32), array([[0, 2]]))
    """
    query_block, budget, shards = _plan(queries, codes, lists, n_probe, n_jobs, n_shards)
    dist = np.empty((queries.n_queries, n_neighbors), dtype=np.float32)
    ind = np.empty((queries.n_queries, n_neighbors), dtype=np.intp)
    plan = TaskPlan(kernel, k=n_neighbors, n_probe=n_probe, budget=budget, lists=lists,
                    list_scan=_list_scan(kernel, get_scan_blocks().database))
    for rows, parts in _fan_out(_ivf_knn_task, queries, shards, query_block, n_jobs, plan):
        if len(parts) > 1:
            parts = [merge_kneighbors([p[0] for p in parts], [p[1] for p in parts], n_neighbors)]
        dist[rows], ind[rows] = parts[0]
    return dist, ind


def ivf_radius_neighbors(queries, codes, lists, radius, *, n_probe=1, n_jobs=None, n_shards=None, kernel=None):
    """Items of the probed lists within ``radius`` (AQD ``<= radius``) of each query.

    Parameters
    ----------
    queries : VectorQueries or CodeQueries
    codes : ndarray of shape (n_items, M), sorted by list
    lists : InvertedLists
    radius : float
        Bound on the summed table values (compared exactly, not rounded up).
    n_probe : int, default=1
        Lists probed per query (exactly these: approximate, an item in an
        unprobed list is not found).
    n_jobs : int, default=None
        Parallel workers.
    n_shards : int, default=None
        Ranges of lists searched as separate tasks.
    kernel : scan kernel, default=None
        As for :func:`ivf_kneighbors`.

    Returns
    -------
    distances : list of ndarray, one float32 array per query
    indices : list of ndarray, one intp array per query
        Item indices, increasing.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import InvertedLists, ivf_radius_neighbors
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.array([[[0.0], [10.0]]], np.float32)
    >>> lists = InvertedLists(C[0].copy(), np.array([0, 2, 3]), np.array([0, 2, 1]), "l2")
    >>> codes = np.array([[0], [0], [1]], np.uint8)
    >>> d, i = ivf_radius_neighbors(VectorQueries(np.array([[1.0]]), C, "sqeuclidean"), codes, lists, 5.0)
    >>> i[0]
    array([0, 2])
    """
    query_block, budget, shards = _plan(queries, codes, lists, n_probe, n_jobs, n_shards)
    plan = TaskPlan(kernel, threshold=_float32_floor(radius), n_probe=n_probe, budget=budget, lists=lists,
                    list_scan=_list_scan(kernel, get_scan_blocks().database))
    dists, inds = [], []
    for _, parts in _fan_out(_ivf_radius_task, queries, shards, query_block, n_jobs, plan):
        for q in range(len(parts[0])):
            d = np.concatenate([p[q][0] for p in parts])
            i = np.concatenate([p[q][1] for p in parts])
            order = np.argsort(i, kind="stable")
            dists.append(d[order])
            inds.append(i[order])
    return dists, inds


# ------------------------------------------------------- lists of an index
def check_n_lists(n_lists, coarse_centroids, n_features):
    """The coarse centroids given (validated, float32) and the number of lists, or raise.

    Parameters
    ----------
    n_lists : int or None
        The ``n_lists`` parameter.
    coarse_centroids : array-like of shape (n_lists, n_features) or None
        The ``coarse_centroids`` parameter.
    n_features : int
        Dimension of the indexed vectors.

    Returns
    -------
    centroids : ndarray of shape (n_lists, n_features), float32, or None
        None when the centroids are to be learned.
    n_lists : int or None
        None for an exhaustive index.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import check_n_lists
    >>> check_n_lists(None, np.zeros((3, 2)), 2)[1]
    3
    """
    if coarse_centroids is None:
        return None, n_lists
    try:
        centroids = np.array(coarse_centroids, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"coarse_centroids must be None or an array of shape (n_lists, n_features); got "
            f"{type(coarse_centroids).__name__}."
        ) from exc
    if centroids.ndim != 2 or centroids.shape[1] != n_features or centroids.shape[0] < 1:
        raise ValueError(
            f"coarse_centroids must have shape (n_lists, n_features={n_features}); got shape "
            f"{centroids.shape}."
        )
    if n_lists is not None and n_lists != centroids.shape[0]:
        raise ValueError(
            f"n_lists={n_lists} but coarse_centroids holds {centroids.shape[0]} centroids; give "
            "n_lists=None (taken from coarse_centroids) or the same number."
        )
    if not np.isfinite(centroids).all():
        raise ValueError("coarse_centroids contains NaN or infinity.")
    check_centroid_magnitude(centroids)
    return centroids, centroids.shape[0]


_TINY = float(np.sqrt(np.finfo(np.float32).tiny))  # smaller values square to subnormals or 0 in float32


def check_centroid_magnitude(centroids, name="coarse_centroids"):
    """Raise a ValueError for coarse centroids too large or too small for float32 distances.

    Too large: squared distances overflow (as for ``X`` and the codebooks,
    :func:`skdqn._pq.check_magnitude`). Too small: centroids that are not
    all zero but whose largest magnitude is below ``sqrt(tiny(float32))``
    (about ``1.1e-19``) square to subnormal numbers or zero, so the lists'
    distances lose all precision; they are refused, not rescaled (rescale
    the data and the centroids together).

    Parameters
    ----------
    centroids : ndarray of shape (n_lists, d), float32
        Finite.
    name : str, default="coarse_centroids"
        For the message.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import check_centroid_magnitude
    >>> check_centroid_magnitude(np.zeros((2, 3), np.float32))
    >>> check_centroid_magnitude(np.full((2, 3), 1e-25, np.float32))
    Traceback (most recent call last):
    ...
    ValueError: coarse_centroids has values of magnitude at most 1e-25, ...
    """
    check_magnitude(centroids, name=name)
    peak = max(float(centroids.max()), -float(centroids.min())) if centroids.size else 0.0
    if 0.0 < peak < _TINY:
        raise ValueError(
            f"{name} has values of magnitude at most {peak:.3g}, whose squares underflow float32 "
            f"(below {_TINY:.3g}): the lists' distances would all be 0. Rescale the data and "
            "the centroids together (e.g. with sklearn.preprocessing.StandardScaler)."
        )


def check_list_assignments(assignments, n, n_lists):
    """The ``list_assignments`` of ``from_codes`` checked: 1-D, ``n`` integers in ``[0, n_lists)``.

    Parameters
    ----------
    assignments : array-like of shape (n,)
    n : int
        Number of items.
    n_lists : int

    Returns
    -------
    assignments : ndarray of shape (n,), intp

    Examples
    --------
    >>> from skdqn.search._ivf import check_list_assignments
    >>> check_list_assignments([1, 0, 1], 3, 2).tolist()
    [1, 0, 1]
    >>> check_list_assignments([1, 2], 2, 2)
    Traceback (most recent call last):
    ...
    ValueError: list_assignments must lie in [0, n_lists=2); got values from 1 to 2.
    """
    try:
        array = np.asarray(assignments)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"list_assignments must be an array of {n} integers; got {type(assignments).__name__}.") from exc
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"list_assignments must be an array of integers (the list of each item); got dtype {array.dtype}."
        )
    if array.shape != (n,):
        raise ValueError(
            f"list_assignments must be 1-D with one list per item, shape ({n},); got shape {array.shape}."
        )
    if n and (int(array.min()) < 0 or int(array.max()) >= n_lists):
        raise ValueError(
            f"list_assignments must lie in [0, n_lists={n_lists}); got values from {int(array.min())} "
            f"to {int(array.max())}."
        )
    return array.astype(np.intp, copy=False)


def make_lists(X, n_lists, centroids, metric, random_state=None, assignments=None):
    """Inverted lists of the vectors ``X``: learn or take the centroids, assign, sort.

    Parameters
    ----------
    X : ndarray of shape (n, d), float, or CodeQueries
        The vectors, or items given by their codes (a
        :class:`~skdqn.search._tables.CodeQueries`), decoded block by block.
    n_lists : int
        Number of lists, ``<= n``.
    centroids : ndarray of shape (n_lists, d), float32, or None
        Given centroids; learned by :func:`train_coarse` on at most
        ``256 * n_lists`` vectors when None.
    metric : {"l2", "inner_product"}
        The coarse metric.
    random_state : int, RandomState instance or None, default=None
        Seeds the coarse k-means.
    assignments : ndarray of shape (n,), int, default=None
        The list of each vector, used as given (then ``centroids``, if None,
        are the means of each list's vectors).

    Returns
    -------
    lists : InvertedLists
        ``lists.ids`` is the order in which to store the items.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import make_lists
    >>> lists = make_lists(np.array([[0.0], [9.0], [0.1]]), 2, None, "l2", random_state=0)
    >>> np.sort(lists.sizes).tolist(), lists.ids.shape
    ([1, 2], (3,))
    """
    if isinstance(X, np.ndarray):
        n, rows_of = X.shape[0], X.__getitem__
    else:
        n, rows_of = X.n_queries, (lambda rows: X.block(rows).vectors())
    if n < n_lists:
        raise ValueError(
            f"n_lists={n_lists} lists need at least as many items; got n_samples={n}. Lower "
            "n_lists (about 4 * sqrt(n_samples) is usual)."
        )
    if n > MAX_KEY_INDEX - 1:
        raise ValueError(f"inverted lists hold at most {MAX_KEY_INDEX - 1} items; got {n}.")
    if assignments is None:
        if centroids is None:
            centroids = _train_on_sample(rows_of, n, n_lists, random_state)
        assignments = _assign_blocks(rows_of, n, centroids, metric)
    else:
        assignments = check_list_assignments(assignments, n, n_lists)
    if centroids is None:
        centroids = _list_means(rows_of, n, assignments, n_lists)
    order, offsets = build_lists(assignments, n_lists)
    return InvertedLists(centroids, offsets, order, metric)


def _train_on_sample(rows_of, n, n_lists, random_state):
    rng = check_random_state(random_state)
    limit = _TRAIN_PER_LIST * n_lists
    rows = np.sort(rng.choice(n, limit, replace=False)) if n > limit else slice(0, n)
    return train_coarse(rows_of(rows), n_lists, random_state=rng)


def _assign_blocks(rows_of, n, centroids, metric, step=1 << 16):
    out = np.empty(n, dtype=np.intp)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        out[rows] = assign_lists(rows_of(rows), centroids, metric)
    return out


def _list_means(rows_of, n, assignments, n_lists, step=1 << 16):
    sums, counts = 0.0, np.bincount(assignments, minlength=n_lists)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        block = np.asarray(rows_of(rows), dtype=np.float64)
        member = sp.csr_matrix(
            (np.ones(block.shape[0]), (assignments[rows], np.arange(block.shape[0]))), shape=(n_lists, block.shape[0])
        )
        sums = sums + member @ block  # one sparse product: 10 times faster than np.add.at
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def append_to_lists(lists, codes, new_codes, new_vectors, first_id=None):
    """Lists and sorted codes after appending items (each to the end of its list).

    Parameters
    ----------
    lists : InvertedLists
    codes : ndarray of shape (n, M), sorted by list
    new_codes : ndarray of shape (n_new, M)
    new_vectors : ndarray of shape (n_new, d)
        Assigned to lists with the existing centroids (not refitted); they
        get the item indices ``first_id, first_id + 1, ...``.
    first_id : int, default=None
        The first new item index; ``n`` (the rows stored) when None. An
        index whose removed items were compacted away passes the size of its
        numbering, so that numbers are never reused.

    Returns
    -------
    lists : InvertedLists
    codes : ndarray of shape (n + n_new, M)

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ivf import InvertedLists, append_to_lists
    >>> lists = InvertedLists(np.array([[0.0], [9.0]], np.float32), np.array([0, 1, 2]), np.array([1, 0]), "l2")
    >>> new, codes = append_to_lists(lists, np.array([[5], [6]]), np.array([[7]]), np.array([[0.5]]))
    >>> new.ids.tolist(), new.offsets.tolist(), codes.ravel().tolist()
    ([1, 2, 0], [0, 2, 3], [5, 7, 6])
    """
    n = lists.ids.shape[0] if first_id is None else int(first_id)
    target = assign_lists(new_vectors, lists.centroids, lists.metric)
    order = np.argsort(target, kind="stable")
    positions = lists.offsets[1:][target[order]]
    codes = np.insert(np.asarray(codes), positions, new_codes[order], axis=0)
    ids = np.insert(np.asarray(lists.ids), positions, n + order.astype(np.int64))
    counts = np.bincount(target, minlength=lists.n_lists)
    offsets = lists.offsets + np.concatenate([[0], np.cumsum(counts)])
    return InvertedLists(lists.centroids, offsets.astype(np.int64), ids, lists.metric), codes
