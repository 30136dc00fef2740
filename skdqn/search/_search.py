"""The search engine: Asymmetric Quantizer Distance search split into bounded tasks.

A search is a set of *tasks*. A task is one block of queries (a query source,
see :mod:`skdqn.search._tables`) against one set of candidate rows of the codes: a
contiguous shard of the database today (an inverted list tomorrow). Each task
computes the lookup tables of its own queries, scans its rows with a kernel
(:mod:`skdqn.search._kernels`, chosen by :func:`get_kernel`) and
returns its top-k or its radius matches with global indices. One fan-out
(:func:`_fan_out`) builds and runs the tasks, for k-NN and radius alike; the
per-shard top-k lists of a query block are then merged
(:func:`merge_kneighbors`), the radius matches concatenated.

Memory is bounded by the blocks, not by the work: at most one task per
worker is in flight, and a task holds the tables of ``query`` queries
(``query * M * K`` floats, 1 MiB for M = 8, K = 256) and the distances of
``database`` codes to them (``2 * query * database`` floats, 4 MiB). The
sizes are the :class:`ScanBlocks` of :func:`scan_blocks`; when ``k`` is a
large part of the database, every distance of a query block is sorted and the
block holds as many queries as ``working_memory`` allows.

Ties are broken by database index, smaller first, so results are
deterministic (:class:`sklearn.neighbors.NearestNeighbors` leaves the order
of tied items unspecified), and never depend on the blocks, the shards or
the number of workers.
"""

import collections
import contextlib
import contextvars
import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from joblib import effective_n_jobs
from sklearn import config_context, get_config
from sklearn.utils.parallel import Parallel, delayed

from . import _tuning
from ._kernels import NumpyKernel
from ._tables import as_query_source

__all__ = [
    "ScanBlocks",
    "scan_blocks",
    "get_scan_blocks",
    "aqd_kneighbors",
    "aqd_radius_neighbors",
    "merge_kneighbors",
    "database_shards",
    "full_sort_block",
    "get_kernel",
]


def _torch_kernel(**options):
    from ._torch_kernel import TorchKernel  # torch is imported only when asked for

    return TorchKernel(**options)


_KERNELS = {"numpy": NumpyKernel, "torch": _torch_kernel}


def get_kernel(name="numpy", **options):
    """The scan kernel called ``name``: the one place where a kernel is chosen.

    Parameters
    ----------
    name : {"numpy", "torch"} or kernel, default="numpy"
        A kernel object (with ``kneighbors`` and ``radius_neighbors``) is
        returned as it is.
    **options
        Passed to the kernel: ``fast`` for numpy
        (:class:`skdqn.search._kernels.NumpyKernel`), ``device`` for torch
        (:class:`skdqn.search._torch_kernel.TorchKernel`).

    Returns
    -------
    kernel : object
        With ``kneighbors`` and ``radius_neighbors`` as
        :class:`skdqn.search._kernels.NumpyKernel` (the contract of :mod:`skdqn.search._scan`).

    Examples
    --------
    >>> from skdqn.search._search import get_kernel
    >>> get_kernel().name
    'numpy'
    """
    if not isinstance(name, str):
        return name
    try:
        make = _KERNELS[name]
    except KeyError:
        raise ValueError(f"kernel must be one of {sorted(_KERNELS)}; got {name!r}.") from None
    return make(**options)


@dataclass(frozen=True)
class ScanBlocks:
    """Block sizes of the scan: how much work one task holds at a time.

    Parameters
    ----------
    query : int, optional
        Queries per task (the width of a table row in the numpy scan);
        :data:`skdqn.search._tuning.QUERY_BLOCK` (128) when not given.
    database : int, optional
        Codes scanned at a time inside a task;
        :data:`skdqn.search._tuning.DB_BLOCK` (4096) when not given.

    Examples
    --------
    >>> from skdqn.search._search import ScanBlocks
    >>> ScanBlocks()
    ScanBlocks(query=128, database=4096)
    """

    query: int = field(default_factory=lambda: _tuning.QUERY_BLOCK)
    database: int = field(default_factory=lambda: _tuning.DB_BLOCK)

    def __post_init__(self):
        for name in ("query", "database"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"ScanBlocks.{name} must be a positive integer, got {value!r}.")


_SCAN_BLOCKS = contextvars.ContextVar("skdqn_scan_blocks", default=None)  # None: the defaults of _tuning


def get_scan_blocks():
    """The :class:`ScanBlocks` in effect (see :func:`scan_blocks`).

    Outside a :func:`scan_blocks` context, the defaults of
    :mod:`skdqn.search._tuning` as they are now.

    Returns
    -------
    blocks : ScanBlocks

    Examples
    --------
    >>> from skdqn.search._search import get_scan_blocks
    >>> get_scan_blocks().query
    128
    """
    blocks = _SCAN_BLOCKS.get()
    return ScanBlocks() if blocks is None else blocks


@contextlib.contextmanager
def scan_blocks(query=None, database=None):
    """Context manager: scan with other block sizes (results never change).

    The sizes are read when a search starts and travel with its tasks, so
    they also hold on the workers of a process or dask backend. Smaller
    blocks lower the memory of a search and cost speed; tests use tiny
    blocks so that small problems cross many block boundaries.

    Parameters
    ----------
    query : int, default=None
        Queries per task; :data:`skdqn.search._tuning.QUERY_BLOCK` (128) when None.
    database : int, default=None
        Codes scanned at a time inside a task; :data:`skdqn.search._tuning.DB_BLOCK`
        (4096) when None.

    Yields
    ------
    blocks : ScanBlocks

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._search import aqd_kneighbors, scan_blocks
    >>> tables = np.random.default_rng(0).random((20, 2, 4), dtype=np.float32)
    >>> codes = np.random.default_rng(1).integers(0, 4, (50, 2)).astype(np.uint8)
    >>> with scan_blocks(query=3, database=7):
    ...     small = aqd_kneighbors(tables, codes, 5)
    >>> bool((small[1] == aqd_kneighbors(tables, codes, 5)[1]).all())
    True
    """
    sizes = {name: value for name, value in (("query", query), ("database", database)) if value is not None}
    token = _SCAN_BLOCKS.set(ScanBlocks(**sizes))
    try:
        yield _SCAN_BLOCKS.get()
    finally:
        _SCAN_BLOCKS.reset(token)


def database_shards(n_database, n_shards):
    """Split ``range(n_database)`` into ``n_shards`` contiguous, near-equal slices.

    Parameters
    ----------
    n_database : int
        Number of database items.
    n_shards : int
        Number of shards, ``>= 1``; at most ``n_database`` non-empty slices
        are returned.

    Returns
    -------
    shards : list of slice
        In database order; their ``start`` is the offset of each shard's
        local indices in the global index.

    Examples
    --------
    >>> from skdqn import database_shards
    >>> database_shards(10, 3)
    [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    n_database = int(n_database)
    n_shards = max(1, min(int(n_shards), n_database))
    base, extra = divmod(n_database, n_shards)  # the first `extra` shards get one more
    bounds = np.cumsum([0] + [base + (i < extra) for i in range(n_shards)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def merge_kneighbors(distances, indices, n_neighbors=None, *, offsets=None):
    """Merge per-shard top-k results into one global top-k, ties by global index.

    Each shard of a database is searched on its own (on another thread,
    process or machine); this gives the top-k over the whole database, the
    same as one search of the whole database would return.

    Parameters
    ----------
    distances : sequence of ndarray of shape (n_queries, k_s)
        Each shard's distances (smaller is better), one array per shard.
        Shards may return different numbers ``k_s`` of neighbours.
    indices : sequence of ndarray of shape (n_queries, k_s), integer
        Each shard's neighbour indices: local to the shard when ``offsets``
        is given, global otherwise. Entries ``< 0`` (padding) are ignored.
    n_neighbors : int, default=None
        Neighbours to keep per query; all of them when None. Must not exceed
        the number of (non-padding) entries of any query.
    offsets : sequence of int, default=None
        Global index of each shard's first item, added to its ``indices``.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors)
        Ascending, the dtype of the inputs.
    indices : ndarray of shape (n_queries, n_neighbors), intp
        Global indices; among equal distances the smaller index comes first.

    Notes
    -----
    Reference::

        d = np.hstack(distances); i = np.hstack([ind + o for ind, o in zip(indices, offsets)])
        order = np.lexsort((i, d))          # row by row: by distance, then index
        d, i = np.take_along_axis(d, order, 1)[:, :k], np.take_along_axis(i, order, 1)[:, :k]

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn import merge_kneighbors
    >>> d, i = merge_kneighbors([np.array([[0.5, 2.0]]), np.array([[0.5, 1.0]])],
    ...                         [np.array([[1, 0]]), np.array([[0, 1]])], 3, offsets=[0, 10])
    >>> d, i
    (array([[0.5, 0.5, 1. ]]), array([[ 1, 10, 11]]))
    """
    distances = [np.asarray(d) for d in distances]
    indices = [np.asarray(i) for i in indices]
    if not distances or len(distances) != len(indices):
        raise ValueError(
            "distances and indices must be non-empty sequences of the same length (one "
            f"array per shard); got {len(distances)} and {len(indices)}."
        )
    if offsets is None:
        offsets = [0] * len(indices)
    elif len(offsets) != len(indices):
        raise ValueError(f"offsets has {len(offsets)} entries for {len(indices)} shards.")
    n_queries = distances[0].shape[0] if distances[0].ndim == 2 else -1
    for s, (d, i) in enumerate(zip(distances, indices)):
        if d.ndim != 2 or d.shape != i.shape or d.shape[0] != n_queries:
            raise ValueError(
                "every shard's distances and indices must be 2-D arrays of the same shape "
                f"(n_queries, k) with the same n_queries; shard {s} has distances "
                f"{d.shape} and indices {i.shape}."
            )
        if i.dtype.kind not in "iu":
            raise TypeError(f"indices must be integer arrays; shard {s} has dtype {i.dtype}.")
    d = np.hstack(distances)
    i = np.hstack([np.where(ind < 0, -1, ind.astype(np.intp) + int(o)) for ind, o in zip(indices, offsets)])
    valid = i >= 0
    n_valid = valid.sum(axis=1).min() if n_queries else 0
    k = int(n_valid) if n_neighbors is None else int(n_neighbors)
    if k < 0 or k > n_valid:
        raise ValueError(
            f"n_neighbors={n_neighbors} but the shards hold only {n_valid} neighbours for "
            "some query; expected n_neighbors <= that."
        )
    # Padding sorts last: infinite distance and the largest index.
    d_key = np.where(valid, d, np.inf)
    i_key = np.where(valid, i, np.iinfo(np.intp).max)
    order = np.lexsort((i_key, d_key), axis=-1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)


def full_sort_block(n_database, working_memory=None, max_block=None):
    """Queries per block when every distance of the block is computed and sorted.

    Parameters
    ----------
    n_database : int
        Items ranked per query.
    working_memory : float, default=None
        MiB; a quarter of it bounds the block's ``(n_database, queries)``
        distances and their argsort. ``None`` uses
        ``sklearn.get_config()["working_memory"]``.
    max_block : int, default=None
        Upper bound on the result; :data:`skdqn.search._tuning.QUERY_BLOCK` (128)
        when None.

    Returns
    -------
    n_queries : int
        At least 1.

    Examples
    --------
    >>> from skdqn.search._search import full_sort_block
    >>> full_sort_block(10**6, working_memory=64)
    1
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    if max_block is None:
        max_block = _tuning.QUERY_BLOCK
    budget = int(working_memory * 2**20) // 4
    per_query = _tuning.FULL_SORT_BYTES_PER_ITEM * max(1, n_database)
    return int(np.clip(budget // per_query, 1, max_block))


def _auto_shards(n_jobs, n_query_blocks, n_database, db_block=None):
    """Database shards so that query blocks x shards keeps every worker busy.

    A shard holds at least :data:`skdqn.search._tuning.MIN_SHARD_BLOCKS` scan blocks
    (65,536 items by default).
    """
    if db_block is None:
        db_block = get_scan_blocks().database
    min_shard = _tuning.MIN_SHARD_BLOCKS * db_block
    workers = effective_n_jobs(n_jobs)
    if workers <= 1 or n_query_blocks >= workers:
        return 1
    wanted = math.ceil(workers / max(n_query_blocks, 1))
    return max(1, min(wanted, n_database // min_shard))


def _run_tasks(tasks, n_jobs):
    """Run ``(function, args)`` tasks: inline, on this process' threads, or with joblib.

    Returns an iterator over the results, in task order, so a caller can
    write each result into its output and drop it. One task, one worker, or
    a call from inside a task: inline. Several workers with joblib's
    default (threads; no :func:`joblib.parallel_backend` context asking for
    processes or a cluster): a thread pool kept for the process
    (:func:`_thread_pool`), whose dispatch costs about 0.1 ms where a joblib
    ``Parallel`` call costs about 13 ms, which would dominate a search of a
    few queries. Otherwise :class:`sklearn.utils.parallel.Parallel` (e.g.
    dask). Either way the caller's :func:`sklearn.config_context` reaches
    the tasks.
    """
    if len(tasks) <= 1 or getattr(_IN_TASK, "active", False):  # nested: never wait on our own pool
        return (function(*args) for function, args in tasks)
    workers = effective_n_jobs(n_jobs)
    if _default_threads():
        if min(workers, len(tasks)) <= 1:
            return (function(*args) for function, args in tasks)
        return _pooled(_thread_pool(workers), tasks, 2 * min(workers, len(tasks)), get_config())
    parallel = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")
    return parallel(delayed(function)(*args) for function, args in tasks)


def _default_threads():
    """Whether joblib's active backend is threads (its default here), not processes or a cluster."""
    try:
        from joblib._parallel_backends import ThreadingBackend
        from joblib.parallel import get_active_backend
    except ImportError:  # pragma: no cover - a joblib without them: always use joblib
        return False
    backend, _ = get_active_backend(prefer="threads")
    return type(backend) is ThreadingBackend


_POOLS = {}  # (process id, workers) -> ThreadPoolExecutor
_POOLS_LOCK = threading.Lock()
_IN_TASK = threading.local()  # set while a pool thread runs a task


def _thread_pool(workers):
    """The thread pool of ``workers`` threads of this process, made on first use and reused."""
    key = (os.getpid(), workers)  # a forked child makes its own
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="skdqn-search")
        return _POOLS[key]


def _pooled(pool, tasks, window, config):
    """Results of ``tasks`` run on ``pool``, in order, at most ``window`` in flight (bounded memory).

    Tasks not started yet are cancelled when a task fails or the caller stops reading.
    """
    pending = collections.deque()
    queue = iter(tasks)

    def submit():
        for function, args in itertools.islice(queue, 1):
            pending.append(pool.submit(_with_config, config, function, args))

    try:
        for _ in range(window):
            submit()
        while pending:
            result = pending.popleft().result()
            submit()
            yield result
    finally:
        for future in pending:
            future.cancel()


def _with_config(config, function, args):
    _IN_TASK.active = True
    try:
        with config_context(**config):
            return function(*args)
    finally:
        _IN_TASK.active = False


@dataclass(frozen=True)
class Shard:
    """The candidate rows a task scans: a contiguous slice of the stored codes.

    Parameters
    ----------
    codes : ndarray of shape (n_rows, M)
        ``codes[start:stop]`` of the index (a view, or memory-mapped).
    start : int
        Row of the index's codes where the slice starts.
    ids : ndarray of shape (n_rows,) or None
        With inverted lists, the item of each row (``lists.ids[start:stop]``).
    lists_part : tuple of int or None
        With inverted lists, the range ``(first, stop)`` of lists the slice holds.
    """

    codes: object
    start: int
    ids: object = None
    lists_part: tuple = None


@dataclass(frozen=True)
class TaskPlan:
    """What every task of one search call does, built once per call (no positional tuples).

    Parameters
    ----------
    kernel : object or None
        The scan kernel (:func:`get_kernel`); for inverted lists, None is
        numpy's own list sums.
    k : int or None
        Neighbours per query (a k-NN search).
    threshold : numpy.float32 or None
        Bound on the summed table values (a radius search).
    method : str
        ``"threshold"`` or ``"full_sort"`` (exhaustive k-NN).
    db_block : int
        Codes a kernel scans at a time.
    n_probe : int
        Lists probed per query (inverted lists).
    budget : int
        Candidates gathered at a time by the list sums (inverted lists).
    lists : InvertedLists or None
        The lists (inverted lists).
    list_scan : object or None
        How the probed lists are scanned (inverted lists):
        :class:`~skdqn.search._ivf.CSRListScan` or
        :class:`~skdqn.search._ivf.KernelListScan`.
    """

    kernel: object
    k: object = None
    threshold: object = None
    method: str = "threshold"
    db_block: int = None
    n_probe: int = 1
    budget: int = None
    lists: object = None
    list_scan: object = None


def _fan_out(task, queries, shards, query_block, n_jobs, plan):
    """Run ``task(query_block_source, shard, plan)`` for every (query block, :class:`Shard`) pair.

    Yields ``(rows, parts)`` per query block, in order: the block's query
    rows (a slice) and the shards' results, in shard order. A task receives
    only its own queries (views), its shard's rows (views with threads; a
    process or cluster backend ships just those) and the call's
    :class:`TaskPlan`.
    """
    n_queries = queries.n_queries
    blocks = [slice(s, min(n_queries, s + query_block)) for s in range(0, n_queries, query_block)]
    tasks = [(task, (queries.block(b), shard, plan)) for b in blocks for shard in shards]
    results = _run_tasks(tasks, n_jobs)
    for rows in blocks:
        yield rows, [next(results) for _ in shards]


def _code_shards(codes, n_shards):
    """The :class:`Shard` of each contiguous database shard."""
    return [Shard(codes[s], s.start) for s in database_shards(codes.shape[0], n_shards)]


def _knn_task(queries, shard, plan):
    """Top-k of one task (global indices)."""
    k = min(plan.k, shard.codes.shape[0])
    dist, ind = plan.kernel.kneighbors(queries.tables(), shard.codes, k, method=plan.method, db_block=plan.db_block)
    return dist, ind + shard.start


def _radius_task(queries, shard, plan):
    """Radius matches of one task, per query (global indices)."""
    found = plan.kernel.radius_neighbors(queries.tables(), shard.codes, plan.threshold, db_block=plan.db_block)
    return [(d, i + shard.start) for d, i in found]


def _knn_plan(n_neighbors, n_database, n_queries, n_jobs, working_memory, n_shards, blocks):
    """(method, queries per task, shards) of a k-NN search."""
    if n_neighbors * _tuning.FULL_SORT_RATIO >= n_database:
        return "full_sort", full_sort_block(n_database, working_memory, blocks.query), 1
    if n_shards is None:
        n_shards = _auto_shards(n_jobs, math.ceil(n_queries / blocks.query), n_database, blocks.database)
    return "threshold", blocks.query, n_shards


def aqd_kneighbors(
    queries, codes, n_neighbors, *, n_jobs=None, working_memory=None, n_shards=None, kernel="numpy"
):
    """Exact top-k by Asymmetric Quantizer Distance, ties by database index.

    Parameters
    ----------
    queries : QuerySource or ndarray of shape (n_queries, M, K), float32
        A query source (:class:`~skdqn.search._tables.VectorQueries`,
        :class:`~skdqn.search._tables.CodeQueries`), whose tables are computed block
        by block inside the tasks, or the tables themselves (from
        :func:`~skdqn.search._tables.distance_tables`).
    codes : ndarray of shape (n_database, M), integer in ``[0, K)``
        May be a memory-mapped array; it is read block by block.
    n_neighbors : int
        Number of neighbours, ``1 <= n_neighbors <= n_database``.
    n_jobs : int, default=None
        Tasks run in parallel by joblib (threads by default: numpy releases
        the GIL in the scan; any backend of a :func:`joblib.parallel_backend`
        context, e.g. ``"dask"``). A task is a block of queries against a
        database shard. ``None`` means 1 unless in a joblib context.
    working_memory : float, default=None
        MiB; bounds the distance block when ``n_neighbors`` is a large part
        of the database (then every distance of a query block is sorted).
        ``None`` uses ``sklearn.get_config()["working_memory"]``.
    n_shards : int, default=None
        Split the database into this many contiguous shards, each searched
        as its own task, the per-shard top-k merged by
        :func:`merge_kneighbors`. ``None`` shards only when there are fewer
        query blocks than workers (few queries, several workers), with
        shards of at least 65,536 items. Results never depend on it.
    kernel : {"numpy", "torch"} or kernel object, default="numpy"
        The scan kernel (:func:`get_kernel`); results never
        depend on it.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float32
        Ascending.
    indices : ndarray of shape (n_queries, n_neighbors), intp

    Notes
    -----
    Reference (what the tests compare against)::

        dist = aqd_distances(tables, codes)          # (nq, N)
        ind = np.argsort(dist, axis=1, kind="stable")[:, :n_neighbors]

    Block sizes come from :func:`scan_blocks`.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._search import aqd_kneighbors
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> aqd_kneighbors(tables, np.array([[1, 1], [1, 0], [0, 0], [0, 0]]), 3)
    (array([[0., 0., 1.]], dtype=float32), array([[2, 3, 1]]))
    """
    queries = as_query_source(queries)
    blocks = get_scan_blocks()
    if queries.n_queries == 0:
        return np.empty((0, n_neighbors), np.float32), np.empty((0, n_neighbors), np.intp)
    method, query_block, n_shards = _knn_plan(
        n_neighbors, codes.shape[0], queries.n_queries, n_jobs, working_memory, n_shards, blocks
    )
    per_block = _fan_out(
        _knn_task, queries, _code_shards(codes, n_shards), query_block, n_jobs,
        TaskPlan(get_kernel(kernel), k=n_neighbors, method=method, db_block=blocks.database),
    )
    dist = np.empty((queries.n_queries, n_neighbors), dtype=np.float32)
    ind = np.empty((queries.n_queries, n_neighbors), dtype=np.intp)
    for rows, parts in per_block:  # each block's result written as it completes
        if len(parts) > 1:
            parts = [merge_kneighbors([p[0] for p in parts], [p[1] for p in parts], n_neighbors)]
        dist[rows], ind[rows] = parts[0]
    return dist, ind


def _float32_floor(x):
    """The largest float32 ``<= x``: for a float32 ``d``, ``d <= result`` iff ``d <= x``.

    Comparing the float32 distances with a Python float rounds the float to
    the *nearest* float32 (NumPy 2 promotion rules), which can be above it:
    with ``radius = 3.9999999999999996`` an item at distance exactly 4 was
    returned. Rounding down keeps the float32 comparison exact.
    """
    x = float(x)
    with np.errstate(over="ignore"):
        x32 = np.float32(x)
    if float(x32) > x:
        x32 = np.nextafter(x32, np.float32(-np.inf))
    return x32


def aqd_radius_neighbors(queries, codes, radius, *, n_jobs=None, n_shards=None, kernel="numpy"):
    """All database items within ``radius`` (AQD ``<= radius``) of each query.

    Parameters
    ----------
    queries : QuerySource or ndarray of shape (n_queries, M, K), float32
        A query source or the tables themselves, as for :func:`aqd_kneighbors`.
    codes : ndarray of shape (n_database, M), integer in ``[0, K)``
    radius : float
        Threshold on the summed table distance (for squared-Euclidean tables
        a squared radius).
    n_jobs : int, default=None
        Tasks (a block of queries against a database shard) run in parallel
        by joblib, threads by default; see :func:`aqd_kneighbors`.
    n_shards : int, default=None
        Database shards searched as separate tasks and concatenated in
        database order; ``None`` chooses as :func:`aqd_kneighbors` does.
    kernel : {"numpy", "torch"} or kernel object, default="numpy"
        The scan kernel (:func:`get_kernel`); results never
        depend on it.

    Returns
    -------
    distances : list of ndarray, one float32 array per query
    indices : list of ndarray, one intp array per query
        In increasing database index (unsorted by distance).

    Notes
    -----
    Reference::

        dist = aqd_distances(tables, codes)
        indices = [np.flatnonzero(row.astype(np.float64) <= radius) for row in dist]

    The comparison is exact: ``radius`` is not rounded (up) to float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._search import aqd_radius_neighbors
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> d, i = aqd_radius_neighbors(tables, np.array([[1, 1], [1, 0], [0, 0]]), 1.0)
    >>> d[0], i[0]
    (array([1., 0.], dtype=float32), array([1, 2]))
    """
    queries = as_query_source(queries)
    blocks = get_scan_blocks()
    n = codes.shape[0]
    if n_shards is None:
        n_shards = _auto_shards(n_jobs, math.ceil(queries.n_queries / blocks.query), n, blocks.database)
    per_block = _fan_out(
        _radius_task, queries, _code_shards(codes, n_shards), blocks.query, n_jobs,
        TaskPlan(get_kernel(kernel), threshold=_float32_floor(radius), db_block=blocks.database),
    )
    dists, inds = [], []
    for _, parts in per_block:
        for q in range(len(parts[0])):
            dists.append(np.concatenate([p[q][0] for p in parts]))
            inds.append(np.concatenate([p[q][1] for p in parts]))
    return dists, inds
