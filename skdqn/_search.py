"""Asymmetric Quantizer Distance (AQD) search with lookup tables, in numpy.

A query ``q`` stays real-valued, database items are codes. Per query an
``(M, K)`` table of the distances between each query subvector and each
codeword is computed once (:func:`distance_tables`); the distance to an item
is then the sum of ``M`` table entries picked by its code::

    aqd(q, i) = sum_m table[m, codes[i, m]]

The scan (:func:`aqd_kneighbors`, :func:`aqd_radius_neighbors`) works on
blocks of ``_QUERY_BLOCK`` queries and ``_DB_BLOCK`` database items, so its
working set is a few megabytes, whatever the size of the database, and no
``(n_queries, n_database)`` matrix is ever built. For each block it gathers
rows of the query tables (``np.take`` on an ``(M * K, n_queries_block)``
table, contiguous rows) and adds them; for top-k it keeps a running k-th
distance per query and only keeps items strictly below it, so after the first
blocks almost nothing survives and the selection costs little more than a
comparison (two-stage top-k: filter, then an exact sort of the survivors).

Ties are broken by database index, smaller first, so results are
deterministic (:class:`sklearn.neighbors.NearestNeighbors` leaves the order
of tied items unspecified).
"""

import math

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import get_config

from ._pq import split_subspaces

__all__ = [
    "distance_tables",
    "aqd_distances",
    "aqd_kneighbors",
    "aqd_radius_neighbors",
    "merge_kneighbors",
    "database_shards",
]

_QUERY_BLOCK = 128  # queries scanned together; one float32 table row is this wide
_DB_BLOCK = 4096  # database items per scanned block (long enough calls for threads to scale)
_TABLE_BLOCK_FLOATS = 1 << 22  # bound on the temporary of distance_tables


def distance_tables(Q, codebooks, metric="sqeuclidean"):
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

    Returns
    -------
    tables : ndarray of shape (n_queries, M, K), float32

    Notes
    -----
    The squared distances are computed as differences (not by expanding the
    square), so a query equal to a codeword gets exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._search import distance_tables
    >>> C = np.array([[[0.0], [1.0]], [[0.0], [2.0]]], dtype=np.float32)
    >>> distance_tables(np.array([[1.0, 0.0]]), C)
    array([[[1., 0.],
            [0., 4.]]], dtype=float32)
    """
    M, K, ds = codebooks.shape
    Q = np.asarray(Q, dtype=np.float32)
    blocks = split_subspaces(Q, M)
    tables = np.empty((Q.shape[0], M, K), dtype=np.float32)
    if metric == "inner_product":
        for m in range(M):
            np.negative(blocks[m] @ codebooks[m].T, out=tables[:, m])
        return tables
    if metric != "sqeuclidean":
        raise ValueError(f"metric must be 'sqeuclidean' or 'inner_product', got {metric!r}.")
    step = max(1, _TABLE_BLOCK_FLOATS // (K * ds))
    for start in range(0, Q.shape[0], step):
        stop = start + step
        for m in range(M):
            diff = blocks[m][start:stop, None, :] - codebooks[m][None, :, :]
            np.einsum("qkd,qkd->qk", diff, diff, out=tables[start:stop, m])
    return tables


def _flat_tables(tables):
    """(nq, M, K) tables -> (M * K, nq) C-contiguous: one row per (m, k)."""
    nq, M, K = tables.shape
    return np.ascontiguousarray(tables.reshape(nq, M * K).T)


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


def _offsets(M, K):
    return np.arange(M, dtype=np.intp) * K


def aqd_distances(tables, codes):
    """All AQD distances, shape (n_queries, n_database): for small problems and tests.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32
        From :func:`distance_tables`.
    codes : ndarray of shape (n_database, M), integer in ``[0, K)``

    Returns
    -------
    distances : ndarray of shape (n_queries, n_database), float32
        ``distances[q, i] = sum_m tables[q, m, codes[i, m]]``, summed in the
        order ``m = 0, 1, ...`` in float32, exactly as the scan does.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._search import aqd_distances
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> aqd_distances(tables, np.array([[0, 0], [1, 1], [1, 0]]))
    array([[0., 5., 1.]], dtype=float32)
    """
    nq, M, K = tables.shape
    flat = _flat_tables(tables)
    n = codes.shape[0]
    out = np.empty((n, nq), dtype=np.float32)
    _scan_block(flat, codes, _offsets(M, K), 0, n, out, np.empty_like(out))
    return np.ascontiguousarray(out.T)


def _merge_topk(best_d, best_i, cand_d, cand_i, cand_q, k):
    """Merge sorted per-query top-k lists with flat candidates; keep k per query.

    Order is (distance, database index); every query keeps exactly ``k``
    entries, padded with (inf, -1) while fewer items were seen.
    """
    nq = best_d.shape[0]
    q = np.concatenate([np.repeat(np.arange(nq), k), cand_q])
    d = np.concatenate([best_d.ravel(), cand_d])
    i = np.concatenate([best_i.ravel(), cand_i])
    # Padding (-1) sorts after real items with an infinite distance only if its
    # index is larger: map -1 to a huge index for the sort.
    order = np.lexsort((np.where(i < 0, np.iinfo(np.intp).max, i), d, q))
    first = np.searchsorted(q[order], np.arange(nq))
    keep = order[(first[:, None] + np.arange(k)).ravel()]
    return d[keep].reshape(nq, k), i[keep].reshape(nq, k)


def _topk_threshold(flat, codes, k, offsets):
    """Top-k by scanning blocks and keeping items below the running k-th distance."""
    nq = flat.shape[1]
    n = codes.shape[0]
    best_d = np.full((nq, k), np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.intp)
    kth = best_d[:, -1].copy()
    pending, n_pending = [], 0
    out = np.empty((_DB_BLOCK, nq), dtype=np.float32)
    tmp = np.empty_like(out)
    for start in range(0, n, _DB_BLOCK):
        stop = min(n, start + _DB_BLOCK)
        dist = _scan_block(flat, codes, offsets, start, stop, out[: stop - start], tmp[: stop - start])
        if start == 0 and dist.shape[0] >= k:
            # First block: keep only what can be in its own top k (ties at
            # the k-th value included), not every item.
            hit = dist <= np.partition(dist, k - 1, axis=0)[k - 1]
        else:
            # Strictly below the k-th best: an equal distance further down the
            # database loses the tie (larger index), so it can never enter.
            hit = dist < kth
        if not hit.any():
            continue
        flat_hit = np.flatnonzero(hit)
        rows, cols = np.divmod(flat_hit, nq)
        pending.append((dist.ravel()[flat_hit], rows + start, cols))
        n_pending += flat_hit.size
        if n_pending >= nq * k or start == 0:
            cand_d, cand_i, cand_q = (np.concatenate(parts) for parts in zip(*pending))
            best_d, best_i = _merge_topk(best_d, best_i, cand_d, cand_i, cand_q, k)
            kth = best_d[:, -1].copy()
            pending, n_pending = [], 0
    if pending:
        cand_d, cand_i, cand_q = (np.concatenate(parts) for parts in zip(*pending))
        best_d, best_i = _merge_topk(best_d, best_i, cand_d, cand_i, cand_q, k)
    return best_d, best_i


def _topk_full_sort(flat, codes, k, offsets):
    """Top-k by computing all distances of the block and a stable sort: for large k."""
    nq = flat.shape[1]
    n = codes.shape[0]
    dist = np.empty((n, nq), dtype=np.float32)
    tmp = np.empty((min(n, _DB_BLOCK), nq), dtype=np.float32)
    for start in range(0, n, _DB_BLOCK):
        stop = min(n, start + _DB_BLOCK)
        _scan_block(flat, codes, offsets, start, stop, dist[start:stop], tmp[: stop - start])
    dist = np.ascontiguousarray(dist.T)
    ind = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, ind, axis=1), ind


def _query_blocks(nq, block):
    return [slice(s, min(nq, s + block)) for s in range(0, nq, block)]


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


def _full_sort_block(n, working_memory):
    """Queries per block for the full-sort path: dist (n, b) float32 plus argsort."""
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    budget = int(working_memory * 2**20) // 4  # a quarter of the working memory
    return int(np.clip(budget // max(1, 16 * n), 1, _QUERY_BLOCK))


def _auto_shards(n_jobs, n_query_blocks, n_database):
    """Database shards so that query blocks x shards keeps every worker busy.

    A shard holds at least ``16 * _DB_BLOCK`` items (65,536 by default), so a
    task scans long enough to pay for its scheduling.
    """
    min_shard = 16 * _DB_BLOCK
    workers = effective_n_jobs(n_jobs)
    if workers <= 1 or n_query_blocks >= workers:
        return 1
    wanted = math.ceil(workers / max(n_query_blocks, 1))
    return max(1, min(wanted, n_database // min_shard))


def _run_tasks(tasks, n_jobs):
    """Run ``(function, args)`` tasks with joblib, or inline when there is one."""
    if len(tasks) <= 1:  # no pool to start for a single task
        return [function(*args) for function, args in tasks]
    return Parallel(n_jobs=n_jobs, prefer="threads")(delayed(function)(*args) for function, args in tasks)


def _shard_kernel(kernel, tables, part, start, k, offsets):
    """Top-k of one task: a query block against the shard ``part`` (global indices).

    The task receives only its shard's codes (a view with threads; a process
    or cluster backend ships just that slice).
    """
    dist, ind = kernel(_flat_tables(tables), part, min(k, part.shape[0]), offsets)
    return dist, ind + start


def aqd_kneighbors(tables, codes, n_neighbors, *, n_jobs=None, working_memory=None, n_shards=None):
    """Exact top-k by Asymmetric Quantizer Distance, ties by database index.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32
        From :func:`distance_tables`.
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

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._search import aqd_kneighbors
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> aqd_kneighbors(tables, np.array([[1, 1], [1, 0], [0, 0], [0, 0]]), 3)
    (array([[0., 0., 1.]], dtype=float32), array([[2, 3, 1]]))
    """
    nq, M, K = tables.shape
    n = codes.shape[0]
    offsets = _offsets(M, K)
    if n_neighbors * 16 >= n:
        kernel, block = _topk_full_sort, _full_sort_block(n, working_memory)
    else:
        kernel, block = _topk_threshold, _QUERY_BLOCK
    blocks = _query_blocks(nq, block)
    if not blocks:
        return np.empty((0, n_neighbors), np.float32), np.empty((0, n_neighbors), np.intp)
    if n_shards is None:
        n_shards = _auto_shards(n_jobs, len(blocks), n) if kernel is _topk_threshold else 1
    shards = database_shards(n, n_shards)
    tasks = [
        (_shard_kernel, (kernel, tables[b], codes[shard], shard.start, n_neighbors, offsets))
        for b in blocks
        for shard in shards
    ]
    results = _run_tasks(tasks, n_jobs)
    dist, ind = [], []
    for j in range(len(blocks)):
        parts = results[j * len(shards) : (j + 1) * len(shards)]
        if len(parts) == 1:
            d, i = parts[0]
        else:
            d, i = merge_kneighbors([p[0] for p in parts], [p[1] for p in parts], n_neighbors)
        dist.append(d)
        ind.append(i)
    return np.vstack(dist), np.vstack(ind)


def _radius_block(flat, codes, radius, offsets, start_index=0):
    nq = flat.shape[1]
    n = codes.shape[0]
    out = np.empty((min(n, _DB_BLOCK), nq), dtype=np.float32)
    tmp = np.empty_like(out)
    found_d, found_i, found_q = [], [], []
    for start in range(0, n, _DB_BLOCK):
        stop = min(n, start + _DB_BLOCK)
        dist = _scan_block(flat, codes, offsets, start, stop, out[: stop - start], tmp[: stop - start])
        flat_hit = np.flatnonzero(dist <= radius)
        if flat_hit.size:
            rows, cols = np.divmod(flat_hit, nq)
            found_d.append(dist.ravel()[flat_hit])
            found_i.append(rows + start + start_index)
            found_q.append(cols)
    d = np.concatenate(found_d) if found_d else np.empty(0, np.float32)
    i = np.concatenate(found_i) if found_i else np.empty(0, np.intp)
    q = np.concatenate(found_q) if found_q else np.empty(0, np.intp)
    order = np.argsort(q, kind="stable")  # keeps database order within a query
    bounds = np.searchsorted(q[order], np.arange(nq + 1))
    d, i = d[order], i[order]
    return [(d[a:b], i[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


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


def aqd_radius_neighbors(tables, codes, radius, *, n_jobs=None, n_shards=None):
    """All database items within ``radius`` (AQD ``<= radius``) of each query.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32
        From :func:`distance_tables`.
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
    >>> from skdqn._search import aqd_radius_neighbors
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> d, i = aqd_radius_neighbors(tables, np.array([[1, 1], [1, 0], [0, 0]]), 1.0)
    >>> d[0], i[0]
    (array([1., 0.], dtype=float32), array([1, 2]))
    """
    nq, M, K = tables.shape
    offsets = _offsets(M, K)
    radius = _float32_floor(radius)
    blocks = _query_blocks(nq, _QUERY_BLOCK)
    n = codes.shape[0]
    if n_shards is None:
        n_shards = _auto_shards(n_jobs, len(blocks), n)
    shards = database_shards(n, n_shards)
    tasks = [
        (_radius_block, (_flat_tables(tables[b]), codes[shard], radius, offsets, shard.start))
        for b in blocks
        for shard in shards
    ]
    results = _run_tasks(tasks, n_jobs)
    dists, inds = [], []
    for j in range(len(blocks)):
        parts = results[j * len(shards) : (j + 1) * len(shards)]
        for q in range(len(parts[0])):
            dists.append(np.concatenate([p[q][0] for p in parts]))
            inds.append(np.concatenate([p[q][1] for p in parts]))
    return dists, inds


def retrieval_average_precisions(
    tables, codes, query_labels, database_labels, *, top_k=None, normalize="retrieved", n_jobs=None
):
    """Average precision of each query when the database is ranked by AQD.

    Parameters
    ----------
    tables : ndarray of shape (n_queries, M, K), float32
        From :func:`distance_tables`.
    codes : ndarray of shape (n_database, M), integer
    query_labels : ndarray of shape (n_queries,) or (n_queries, n_labels)
    database_labels : ndarray of shape (n_database,) or (n_database, n_labels)
        Relevance = sharing at least one label.
    top_k : int, default=None
        Rank depth; the whole database when None.
    normalize : {"retrieved", "all"}, default="retrieved"
        See :func:`skdqn.metrics.average_precision_scores`.
    n_jobs : int, default=None
        Threads for the search.

    Returns
    -------
    ap : ndarray of shape (n_queries,), float64

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._search import retrieval_average_precisions
    >>> tables = np.array([[[0.0, 1.0]]], dtype=np.float32)
    >>> retrieval_average_precisions(tables, np.array([[1], [0]]), np.array([0]), np.array([1, 0]))
    array([1.])
    """
    from .metrics import average_precision_scores

    n = codes.shape[0]
    k = n if top_k is None else min(int(top_k), n)
    # Rankings of n_queries x k indices are built a chunk of queries at a time.
    chunk = _full_sort_block(n, None) if k * 16 >= n else 4096
    out = np.empty(tables.shape[0], dtype=np.float64)
    for s in _query_blocks(tables.shape[0], chunk):
        _, ranking = aqd_kneighbors(tables[s], codes, k, n_jobs=n_jobs)
        out[s] = average_precision_scores(
            query_labels[s], database_labels, ranking, top_k=top_k, normalize=normalize
        )
    return out
