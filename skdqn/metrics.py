"""Retrieval metrics of the deep hashing literature, done right.

Every metric here ranks a database for each query, either from an explicit
``ranking`` (database indices, best first, e.g. from a top-k search) or from a
``distances`` matrix (smaller is better; ties are broken by database index,
smaller index first), and calls a ranked item *relevant* to a query when the
two share at least one label (see :mod:`skdqn._labels`).

Queries are processed in blocks so that memory stays bounded, whatever the
size of the database: only the relevance of the ranked items is computed,
never the full ``(n_queries, n_database)`` relevance matrix. The blocks of
all workers together take about a sixteenth of scikit-learn's
``working_memory`` (64 MiB by default; see :func:`sklearn.config_context`).
With ``n_jobs``, blocks run in parallel threads (NumPy sorts and gathers
release the GIL) through :class:`sklearn.utils.parallel.Parallel`, so that a
joblib backend or a :func:`sklearn.config_context` reaches them; inside a
joblib worker they run sequentially, never as a pool nested in joblib's. Sorting the distances
dominates the cost: it is fastest for float32 distances (or any distances
exact in float32, such as Hamming distances) and with a small ``top_k``. The
inputs are never modified.
"""

import inspect

import numpy as np
from joblib import effective_n_jobs
from sklearn import get_config
from sklearn.pipeline import Pipeline
from sklearn.utils.parallel import Parallel, delayed

from .search import _tuning
from ._labels import check_labels, label_kind, relevance
from ._validation import check_positive_int

__all__ = [
    "average_precision_scores",
    "mean_average_precision",
    "precision_at_k",
    "recall_at_k",
    "precision_recall_curve",
    "map_scorer",
]

_NORMALIZE = ("retrieved", "all")
_NO_RELEVANT = ("zero", "skip")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_normalize(normalize):
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}.")
    return normalize


def _check_no_relevant(no_relevant):
    if no_relevant not in _NO_RELEVANT:
        raise ValueError(
            f"no_relevant must be 'zero' (a query with no relevant item in its top k counts "
            f"as AP 0, skdqn's convention) or 'skip' (it is left out of the mean, as in the "
            f"DeepHash code base); got {no_relevant!r}."
        )
    return no_relevant


def _check_depth_fits(depth, n_ranked, name, ranked_by_distances):
    """Raise unless a depth (k or top_k) is at most the number of items ranked per query."""
    if depth is not None and depth > n_ranked:
        what = (
            f"the database ({n_ranked} items, the width of distances)"
            if ranked_by_distances
            else f"the ranking ({n_ranked} items per query)"
        )
        raise ValueError(
            f"{name}={depth} is larger than {what}: the metric at depth {depth} needs that "
            f"many ranked items. Use {name} <= {n_ranked}, or rank more items."
        )


def _check_depths(depths, name):
    """Return ``(depths as a 1-D int array, whether a scalar was given)``."""
    scalar = np.ndim(depths) == 0
    if scalar:
        value = depths.item() if isinstance(depths, np.ndarray) else depths
        return np.array([check_positive_int(value, name)]), True
    arr = np.asarray(depths)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or (arr < 1).any():
        raise ValueError(
            f"{name} must be a positive integer or a non-empty 1-D array of positive "
            f"integers, got {depths!r}."
        )
    return arr.astype(np.intp), False


def _check_label_pair(query_labels, database_labels):
    """Canonical query and database labels, checked to be comparable."""
    q = check_labels(query_labels, name="query_labels")
    d = check_labels(database_labels, name="database_labels")
    if q.ndim != d.ndim:
        raise ValueError(
            "query_labels and database_labels must have the same layout (both 1-D class "
            f"labels or both 2-D indicators); got {q.ndim}-D and {d.ndim}-D."
        )
    if q.ndim == 2 and q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query_labels has {q.shape[1]} label columns but database_labels has "
            f"{d.shape[1]}."
        )
    if q.ndim == 1 and label_kind(q) != label_kind(d):
        raise ValueError(
            "query_labels and database_labels hold labels of different types "
            f"({q.dtype} and {d.dtype}); no query could share a label with the database."
        )
    return q, d


def _check_ranking(ranking, n_queries, n_database):
    ranking = np.asarray(ranking)
    if ranking.ndim != 2 or ranking.dtype.kind not in "iu":
        raise ValueError(
            "ranking must be a 2-D integer array of shape (n_queries, k) holding "
            f"database indices; got dtype {ranking.dtype} and shape {ranking.shape}."
        )
    if ranking.shape[0] != n_queries or not 1 <= ranking.shape[1] <= n_database:
        raise ValueError(
            f"ranking has shape {ranking.shape}; expected ({n_queries}, k) with "
            f"1 <= k <= {n_database} (n_queries, n_database)."
        )
    if ranking.min() < 0 or ranking.max() >= n_database:
        raise ValueError(
            f"ranking holds indices outside [0, {n_database}): every entry must be "
            "the index of a database item."
        )
    _check_distinct_rows(ranking)
    return ranking


def _check_distinct_rows(ranking):
    """Raise if a row of the ranking names a database item twice (sorted copies, in blocks)."""
    step = max(1, _tuning.DUPLICATE_CHECK_ITEMS // ranking.shape[1])
    for start in range(0, ranking.shape[0], step):
        block = np.sort(ranking[start : start + step], axis=1)
        repeated = block[:, 1:] == block[:, :-1]
        if repeated.any():
            row, col = np.argwhere(repeated)[0]
            raise ValueError(
                f"ranking row {start + row} holds database index {block[row, col]} more than "
                "once: a ranking lists distinct database items, best first."
            )


def _check_distances(distances, n_queries, n_database):
    distances = np.asarray(distances)
    if distances.ndim != 2 or distances.dtype.kind not in "iuf":
        raise ValueError(
            "distances must be a 2-D real array of shape (n_queries, n_database); got "
            f"dtype {distances.dtype} and shape {distances.shape}."
        )
    if distances.shape != (n_queries, n_database):
        raise ValueError(
            f"distances has shape {distances.shape}; expected ({n_queries}, {n_database}) "
            "(n_queries, n_database)."
        )
    if distances.dtype.kind == "f" and np.isnan(distances.min()):
        raise ValueError("distances contains NaN: every pair needs a distance.")
    return distances


def _check_problem(query_labels, database_labels, ranking, distances):
    """Validate the inputs of every metric.

    Returns ``(q, d, ranking, distances, n_ranked)``: canonical labels, the
    validated ranking or distances (the other one None) and the length of the
    ranking available for each query.
    """
    q, d = _check_label_pair(query_labels, database_labels)
    n_queries, n_database = q.shape[0], d.shape[0]
    if (ranking is None) == (distances is None):
        raise ValueError(
            "Give exactly one of ranking (database indices, best first) or distances "
            "(smaller is better); got " + ("both." if ranking is not None else "neither.")
        )
    if ranking is not None:
        ranking = _check_ranking(ranking, n_queries, n_database)
        return q, d, ranking, None, ranking.shape[1]
    return q, d, None, _check_distances(distances, n_queries, n_database), n_database


# --------------------------------------------------------------------------
# Ranking and relevance of ranked items, per block of queries
# --------------------------------------------------------------------------


def _stable_argsort(distances, depth):
    """Row-wise ``np.argsort(distances, axis=1, kind="stable")[:, :depth]``, only faster.

    NumPy's stable sort is several times slower than its (SIMD) default sort.
    When the distances are exact in float32 (float32 input, Hamming distances,
    ...), each (distance, index) pair is packed into a unique uint64 whose order
    is the stable order, and sorted with the fast sort (after a partition when
    only the first ``depth`` are needed). Otherwise the fast sort is used and
    only the rows that hold ties are sorted again, stably.
    """
    n = distances.shape[1]
    # A new float32 array; adding 0 turns -0.0 into +0.0 so the two zeros tie.
    with np.errstate(over="ignore"):  # huge float64 values: not exact, see below
        as32 = np.add(distances, np.float32(0.0), dtype=np.float32)
    exact = distances.dtype in (np.float16, np.float32) or np.array_equal(as32, distances)
    if exact and n < 2**32:
        bits = as32.view(np.int32)
        bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)  # now int32 order == float order
        bits ^= np.int32(-(2**31))  # and uint32 order == float order
        keys = bits.view(np.uint32).astype(np.uint64)
        keys <<= np.uint64(32)
        keys |= np.arange(n, dtype=np.uint64)  # ties go to the smaller index
        if depth < n // 2:  # keys are distinct: the partition keeps the right ones
            keys = np.partition(keys, depth - 1, axis=1)[:, :depth]
        keys.sort(axis=1)
        keys &= np.uint64(0xFFFFFFFF)
        return keys.view(np.int64)[:, :depth]
    order = np.argsort(distances, axis=1)
    ranked = np.take_along_axis(distances, order, axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(distances[tied], axis=1, kind="stable")
    return order[:, :depth]


def _encode_labels(q, d):
    """Compact label codes, cheap to gather and compare.

    1-D labels become small integer codes (a query label absent from the
    database gets a code no database item has); 2-D indicators become rows of
    uint64 bit words. Returns ``(q_codes, d_codes)``.
    """
    if q.ndim == 1:
        classes, d_codes = np.unique(d, return_inverse=True)
        dtype = np.min_scalar_type(len(classes))
        pos = np.minimum(np.searchsorted(classes, q), len(classes) - 1)
        q_codes = np.where(classes[pos] == q, pos, len(classes))
        return q_codes.astype(dtype), d_codes.astype(dtype)

    def words(indicator):
        bits = np.packbits(indicator, axis=1)
        pad = -bits.shape[1] % 8
        bits = np.pad(bits, ((0, 0), (0, pad)))
        return np.ascontiguousarray(bits).view(np.uint64)

    return words(q), words(d)


def _block_bytes():
    """Bytes the query blocks processed at once may take (all workers together).

    ``working_memory`` divided by :data:`skdqn.search._tuning.METRICS_MEMORY_DIVISOR`
    (64 MiB of the default 1024 MiB).
    """
    return int(get_config()["working_memory"] * 2**20 / _tuning.METRICS_MEMORY_DIVISOR)


def _map_ranked_relevance(func, q, d, ranking, distances, depth, n_jobs=None):
    """Apply ``func(rows, rel)`` to successive blocks of queries and concatenate.

    ``rel[i, j]`` is True when the database item ranked ``j``-th (0-based,
    ``j < depth``) for query ``rows[i]`` shares a label with it. Only the
    ranked items are looked at, and blocks are sized so that those processed
    at once (one per worker; NumPy's sorts and gathers run without the GIL)
    take about :func:`_block_bytes`.
    """
    q_codes, d_codes = _encode_labels(q, d)
    n_workers = max(1, effective_n_jobs(n_jobs))
    width = depth if distances is None else distances.shape[1]
    per_item = _tuning.METRICS_BYTES_PER_ITEM + d_codes[:1].nbytes
    step = max(1, _block_bytes() // (n_workers * width * per_item))

    def block(start):
        rows = slice(start, start + step)
        if distances is None:
            order = ranking[rows, :depth]
        else:
            order = _stable_argsort(distances[rows], depth)
        ranked = d_codes[order]
        if d_codes.ndim == 1:
            return func(rows, ranked == q_codes[rows, None])
        return func(rows, (ranked & q_codes[rows, None, :]).any(axis=2))

    starts = range(0, q.shape[0], step)
    if n_workers == 1 or len(starts) == 1:
        return np.concatenate([block(start) for start in starts])
    parts = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(block)(start) for start in starts)
    return np.concatenate(parts)


def _n_relevant(q, d):
    """Number of database items sharing a label with each query, shape (n_queries,)."""
    groups, counts = np.unique(d, axis=0 if d.ndim == 2 else None, return_counts=True)
    step = max(1, _block_bytes() // (16 * len(groups)))
    out = np.empty(q.shape[0], dtype=np.int64)
    for start in range(0, q.shape[0], step):
        rows = slice(start, start + step)
        out[rows] = relevance(q[rows], groups) @ counts
    return out


def _precision_sums(rel):
    """Per row: the sum of precision@i over the relevant positions i, and their number."""
    n_rows = rel.shape[0]
    rows, cols = np.nonzero(rel)  # row-major: positions ascend within each row
    n_hits = np.bincount(rows, minlength=n_rows)
    first = np.cumsum(n_hits) - n_hits
    hits_so_far = np.arange(1, rows.size + 1) - first[rows]
    sums = np.bincount(rows, weights=hits_so_far / (cols + 1), minlength=n_rows)
    return sums, n_hits


def _hits_at(q, d, ranking, distances, n_ranked, depths, n_jobs=None):
    """Number of relevant items in the top ``depths`` of each query, (n_queries, n_depths)."""
    cut = np.minimum(depths, n_ranked)

    def hits(rows, rel):
        return np.cumsum(rel, axis=1, dtype=np.int64)[:, cut - 1]

    return _map_ranked_relevance(hits, q, d, ranking, distances, cut.max(), n_jobs)


# --------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------


def average_precision_scores(
    query_labels,
    database_labels,
    ranking=None,
    *,
    distances=None,
    top_k=None,
    normalize="retrieved",
    n_jobs=None,
):
    """Average precision (AP@k) of each query.

    AP@k as in the deep hashing literature: the mean of precision@i over the
    positions i (1-based, i <= k) holding a relevant item, i.e.
    ``sum_i rel_i * P@i / n``, where ``n`` is the number of relevant items in
    the top k (``normalize="retrieved"``) or in the whole database
    (``normalize="all"``, the textbook AP; with ``top_k=None`` and distances
    without ties it equals :func:`sklearn.metrics.average_precision_score`
    with ``y_score=-distances``). A query with no relevant item in its top k
    gets an AP of 0 (see ``no_relevant`` in :func:`mean_average_precision`).

    Parameters
    ----------
    query_labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class labels of the queries, or a binary label indicator matrix.
        A query and a database item are relevant to each other when they
        share at least one label.
    database_labels : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same layout as ``query_labels``.
    ranking : array-like of int of shape (n_queries, k), default=None
        Database indices, best first, for each query (e.g. from a top-k
        search; ``k`` may be smaller than ``n_database``). The indices of a
        row must be distinct. Give either ``ranking`` or ``distances``.
    distances : array-like of shape (n_queries, n_database), default=None
        Query-to-database distances, smaller is better. Each row is ranked
        by a stable sort: ties go to the smaller database index.
    top_k : int, default=None
        Only the top ``top_k`` ranked items count. None means the whole
        ranking given (all of the database with ``distances``); a larger
        ``top_k`` than that raises a ``ValueError``.
    normalize : {"retrieved", "all"}, default="retrieved"
        Divide by the number of relevant items retrieved in the top k
        ("retrieved", the usual mAP@k of deep hashing papers) or by the
        number of relevant items in the whole database ("all").
    n_jobs : int, default=None
        Blocks of queries processed in parallel threads (joblib; ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        all processors). Results do not depend on it.

    Returns
    -------
    ap : ndarray of shape (n_queries,), dtype float64
        The average precision of each query, in [0, 1].

    Examples
    --------
    >>> from skdqn.metrics import average_precision_scores
    >>> # relevance pattern [1, 0, 1, 0]: AP = (1/1 + 2/3) / 2
    >>> average_precision_scores([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]])
    array([0.83333333])
    >>> average_precision_scores([0, 1], [0, 1, 0, 1], distances=[[0, 1, 2, 3], [0, 1, 2, 3]])
    array([0.83333333, 0.5       ])
    >>> average_precision_scores([0], [0, 1, 0, 1], ranking=[[1, 0]], normalize="all")
    array([0.25])
    """
    normalize = _check_normalize(normalize)
    top_k = check_positive_int(top_k, "top_k", allow_none=True)
    q, d, ranking, distances, n_ranked = _check_problem(
        query_labels, database_labels, ranking, distances
    )
    _check_depth_fits(top_k, n_ranked, "top_k", distances is not None)
    depth = n_ranked if top_k is None else top_k
    n_relevant = _n_relevant(q, d) if normalize == "all" else None

    def average_precision(rows, rel):
        sums, n_hits = _precision_sums(rel)
        denominator = n_hits if n_relevant is None else n_relevant[rows]
        return np.divide(sums, denominator, out=np.zeros(sums.shape), where=denominator > 0)

    return _map_ranked_relevance(average_precision, q, d, ranking, distances, depth, n_jobs)


def mean_average_precision(
    query_labels,
    database_labels,
    ranking=None,
    *,
    distances=None,
    top_k=None,
    normalize="retrieved",
    no_relevant="zero",
    n_jobs=None,
):
    """Mean average precision (mAP@k) over the queries.

    The mean of :func:`average_precision_scores`; see there for the
    definition, the ranking and relevance rules and the parameters.

    Parameters
    ----------
    query_labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class labels of the queries, or a binary label indicator matrix.
    database_labels : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same layout as ``query_labels``.
    ranking : array-like of int of shape (n_queries, k), default=None
        Database indices, best first, for each query (distinct in a row).
        Give either ``ranking`` or ``distances``.
    distances : array-like of shape (n_queries, n_database), default=None
        Query-to-database distances, smaller is better; ties go to the
        smaller database index.
    top_k : int, default=None
        Only the top ``top_k`` ranked items count (None: the whole ranking);
        at most the width of the ranking.
    normalize : {"retrieved", "all"}, default="retrieved"
        Divide each AP by the number of relevant items retrieved in the top k
        or by the number of relevant items in the whole database.
    no_relevant : {"zero", "skip"}, default="zero"
        A query with no relevant item in its top k has an AP of 0 (0/0 with
        ``normalize="retrieved"``). ``"zero"``: it counts as 0 in a mean over
        all queries (skdqn's convention, the textbook MAP). ``"skip"``: it is
        left out of the mean (the DeepHash code base, whose MAP the DQN paper
        reports); never lower, equal when every query finds a relevant item.
        Both give 0.0 when no query does.
    n_jobs : int, default=None
        Blocks of queries processed in parallel threads (joblib; ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        all processors). Results do not depend on it.

    Returns
    -------
    map : float
        The mean average precision, in [0, 1].

    Examples
    --------
    >>> from skdqn.metrics import mean_average_precision
    >>> mean_average_precision([0, 1], [0, 1, 0, 1], ranking=[[0, 1, 2, 3], [1, 3, 0, 2]])
    0.9166666666666666
    >>> mean_average_precision([0, 1], [0, 1, 0, 1], ranking=[[0, 1], [1, 3]], top_k=1)
    1.0

    The second query finds nothing relevant in its top 1:

    >>> mean_average_precision([0, 1], [0, 1, 0, 1], ranking=[[0, 1], [0, 2]], top_k=1)
    0.5
    >>> mean_average_precision([0, 1], [0, 1, 0, 1], ranking=[[0, 1], [0, 2]], top_k=1,
    ...                        no_relevant="skip")
    1.0
    """
    no_relevant = _check_no_relevant(no_relevant)
    ap = average_precision_scores(
        query_labels,
        database_labels,
        ranking,
        distances=distances,
        top_k=top_k,
        normalize=normalize,
        n_jobs=n_jobs,
    )
    return _mean_of_aps(ap, no_relevant)


def _mean_of_aps(ap, no_relevant="zero"):
    """The MAP of per-query average precisions, under either convention.

    Parameters
    ----------
    ap : ndarray of shape (n_queries,)
        Average precisions, as from :func:`average_precision_scores`: 0
        exactly for a query with no relevant item in its top k, positive
        otherwise.
    no_relevant : {"zero", "skip"}, default="zero"
        Count such queries as 0 (skdqn) or leave them out of the mean
        (DeepHash code base); see :func:`mean_average_precision`.

    Returns
    -------
    map : float
        0.0 when ``no_relevant="skip"`` and every AP is 0.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.metrics import _mean_of_aps
    >>> ap = np.array([1.0, 0.5, 0.0, 0.0])
    >>> _mean_of_aps(ap), _mean_of_aps(ap, "skip")
    (0.375, 0.75)
    """
    no_relevant = _check_no_relevant(no_relevant)
    ap = np.asarray(ap, dtype=np.float64)
    if no_relevant == "skip":
        ap = ap[ap > 0]
    return float(ap.mean()) if ap.size else 0.0


def precision_at_k(query_labels, database_labels, ranking=None, *, distances=None, k, n_jobs=None):
    """Mean precision@k: the fraction of relevant items in the top k.

    ``k`` may not exceed the ranking available (the columns of ``ranking``,
    or ``n_database`` with ``distances``): a ``ValueError`` says so, rather
    than a precision over fewer items than asked.

    Parameters
    ----------
    query_labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class labels of the queries, or a binary label indicator matrix.
    database_labels : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same layout as ``query_labels``.
    ranking : array-like of int of shape (n_queries, n_ranked), default=None
        Database indices, best first, for each query. Give either
        ``ranking`` or ``distances``.
    distances : array-like of shape (n_queries, n_database), default=None
        Query-to-database distances, smaller is better; ties go to the
        smaller database index.
    k : int or array-like of int
        Cut-off depth, or several of them (e.g. for a precision@k curve).
    n_jobs : int, default=None
        Blocks of queries processed in parallel threads (joblib; ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        all processors). Results do not depend on it.

    Returns
    -------
    precision : float or ndarray of shape (n_k,)
        Precision@k averaged over the queries; an array when ``k`` is one.

    Raises
    ------
    ValueError
        If ``k`` is larger than the ranking, or a row of ``ranking``
        repeats a database index.

    Examples
    --------
    >>> from skdqn.metrics import precision_at_k
    >>> precision_at_k([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]], k=3)
    0.6666666666666666
    >>> precision_at_k([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]], k=[1, 2, 4])
    array([1. , 0.5, 0.5])
    """
    depths, scalar = _check_depths(k, "k")
    q, d, ranking, distances, n_ranked = _check_problem(
        query_labels, database_labels, ranking, distances
    )
    _check_depth_fits(int(depths.max()), n_ranked, "k", distances is not None)
    hits = _hits_at(q, d, ranking, distances, n_ranked, depths, n_jobs)
    precision = (hits / depths).mean(axis=0)
    return float(precision[0]) if scalar else precision


def recall_at_k(query_labels, database_labels, ranking=None, *, distances=None, k, n_jobs=None):
    """Mean recall@k: the fraction of a query's relevant items found in its top k.

    A query without any relevant item in the database has a recall of 0.
    ``k`` may not exceed the ranking available (a ``ValueError`` says so).

    Parameters
    ----------
    query_labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class labels of the queries, or a binary label indicator matrix.
    database_labels : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same layout as ``query_labels``.
    ranking : array-like of int of shape (n_queries, n_ranked), default=None
        Database indices, best first, for each query. Give either
        ``ranking`` or ``distances``.
    distances : array-like of shape (n_queries, n_database), default=None
        Query-to-database distances, smaller is better; ties go to the
        smaller database index.
    k : int or array-like of int
        Cut-off depth, or several of them.
    n_jobs : int, default=None
        Blocks of queries processed in parallel threads (joblib; ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        all processors). Results do not depend on it.

    Returns
    -------
    recall : float or ndarray of shape (n_k,)
        Recall@k averaged over the queries; an array when ``k`` is one.

    Raises
    ------
    ValueError
        If ``k`` is larger than the ranking, or a row of ``ranking``
        repeats a database index.

    Examples
    --------
    >>> from skdqn.metrics import recall_at_k
    >>> recall_at_k([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]], k=2)
    0.5
    >>> recall_at_k([0], [0, 1, 0, 1], ranking=[[0, 1, 2, 3]], k=[1, 3])
    array([0.5, 1. ])
    """
    depths, scalar = _check_depths(k, "k")
    q, d, ranking, distances, n_ranked = _check_problem(
        query_labels, database_labels, ranking, distances
    )
    _check_depth_fits(int(depths.max()), n_ranked, "k", distances is not None)
    recall = _recall(_hits_at(q, d, ranking, distances, n_ranked, depths, n_jobs), _n_relevant(q, d))
    return float(recall[0]) if scalar else recall


def _recall(hits, n_relevant):
    n_relevant = n_relevant[:, None]
    per_query = np.divide(
        hits, n_relevant, out=np.zeros(hits.shape), where=n_relevant > 0
    )
    return per_query.mean(axis=0)


def precision_recall_curve(
    query_labels, database_labels, ranking=None, *, distances=None, depths=None, n_jobs=None
):
    """Mean precision and mean recall over the queries at several ranking depths.

    Parameters
    ----------
    query_labels : array-like of shape (n_queries,) or (n_queries, n_labels)
        Class labels of the queries, or a binary label indicator matrix.
    database_labels : array-like of shape (n_database,) or (n_database, n_labels)
        Labels of the database, in the same layout as ``query_labels``.
    ranking : array-like of int of shape (n_queries, n_ranked), default=None
        Database indices, best first, for each query. Give either
        ``ranking`` or ``distances``.
    distances : array-like of shape (n_queries, n_database), default=None
        Query-to-database distances, smaller is better; ties go to the
        smaller database index.
    depths : array-like of int, default=None
        Ranking depths at which to measure. None: up to 100 depths evenly
        spaced from 1 to the length of the ranking (``n_database`` with
        ``distances``). A depth beyond the ranking is refused, as in
        :func:`precision_at_k`.
    n_jobs : int, default=None
        Blocks of queries processed in parallel threads (joblib; ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context, ``-1``
        all processors). Results do not depend on it.

    Returns
    -------
    precision : ndarray of shape (n_depths,)
        Mean precision@depth, as in :func:`precision_at_k`.
    recall : ndarray of shape (n_depths,)
        Mean recall@depth, as in :func:`recall_at_k`.
    depths : ndarray of shape (n_depths,)
        The depths used.

    Examples
    --------
    >>> from skdqn.metrics import precision_recall_curve
    >>> precision, recall, depths = precision_recall_curve(
    ...     [0], [0, 1, 0, 1], distances=[[0.1, 0.2, 0.3, 0.4]])
    >>> depths
    array([1, 2, 3, 4])
    >>> precision
    array([1.        , 0.5       , 0.66666667, 0.5       ])
    >>> recall
    array([0.5, 0.5, 1. , 1. ])
    """
    q, d, ranking, distances, n_ranked = _check_problem(
        query_labels, database_labels, ranking, distances
    )
    if depths is None:
        depths = np.unique(np.linspace(1, n_ranked, num=min(100, n_ranked)).astype(np.intp))
    else:
        depths, _ = _check_depths(np.atleast_1d(depths), "depths")
        _check_depth_fits(int(depths.max()), n_ranked, "depths", distances is not None)
    hits = _hits_at(q, d, ranking, distances, n_ranked, depths, n_jobs)
    precision = (hits / depths).mean(axis=0)
    return precision, _recall(hits, _n_relevant(q, d)), depths


# --------------------------------------------------------------------------
# Scorer for model selection
# --------------------------------------------------------------------------


class _MAPScorer:
    """Scorer ``scorer(estimator, X, y) -> float``; see :func:`map_scorer`."""

    def __init__(self, top_k, normalize, no_relevant="zero"):
        self.top_k = check_positive_int(top_k, "top_k", allow_none=True)
        self.normalize = _check_normalize(normalize)
        self.no_relevant = _check_no_relevant(no_relevant)

    def _score_arguments(self):
        # no_relevant only when not the default: estimators whose score takes
        # top_k and normalize alone keep working with the default scorer.
        arguments = {"top_k": self.top_k, "normalize": self.normalize}
        if self.no_relevant != "zero":
            arguments["no_relevant"] = self.no_relevant
        return arguments

    def __repr__(self):
        arguments = ", ".join(f"{name}={value!r}" for name, value in self._score_arguments().items())
        return f"map_scorer({arguments})"

    def __call__(self, estimator, X, y):
        final, Xt = estimator, X
        # Pipeline.score drops extra keyword arguments unless metadata routing
        # is enabled: transform through the steps and score the last one.
        while isinstance(final, Pipeline):
            for _, step in final.steps[:-1]:
                if step is not None and step != "passthrough":
                    Xt = step.transform(Xt)
            final = final.steps[-1][1]
        arguments = self._score_arguments()
        if not _accepts_arguments(getattr(final, "score", None), arguments):
            names = list(arguments)
            raise TypeError(
                f"{self!r} needs an estimator whose score(X, y, "
                f"{', '.join(name + '=...' for name in names)}) returns the mean average "
                f"precision (e.g. DeepQuantizer, AQDNeighbors); {type(final).__name__}.score "
                f"does not accept {', '.join(names[:-1])} and {names[-1]}."
            )
        return float(final.score(Xt, y, **arguments))


def _accepts_arguments(score, arguments):
    if not callable(score):
        return False
    try:
        parameters = inspect.signature(score).parameters
    except (TypeError, ValueError):
        return False
    kinds = {p.kind for p in parameters.values()}
    return inspect.Parameter.VAR_KEYWORD in kinds or set(arguments) <= set(parameters)


def map_scorer(top_k=None, normalize="retrieved", no_relevant="zero"):
    """Make a mean-average-precision scorer for model selection.

    The scorer ``scorer(estimator, X, y)`` returns
    ``estimator.score(X, y, top_k=top_k, normalize=normalize)`` (and
    ``no_relevant=no_relevant`` when it is not the default): the mAP of
    ``X`` (labelled ``y``) as queries against the database the estimator was
    fitted on. It works with :class:`~skdqn.DeepQuantizer`,
    :class:`~skdqn.AQDNeighbors`, any estimator whose ``score`` accepts these
    keyword arguments, and :class:`~sklearn.pipeline.Pipeline` objects ending
    in one (``X`` is transformed by the earlier steps, then the last step
    scores it). Any other estimator raises a ``TypeError``.

    Parameters
    ----------
    top_k : int, default=None
        Only the top ``top_k`` retrieved items count (None: the whole
        database; a ``top_k`` beyond the database counts all of it).
    normalize : {"retrieved", "all"}, default="retrieved"
        See :func:`average_precision_scores`.
    no_relevant : {"zero", "skip"}, default="zero"
        A query with no relevant item in its top k counts as 0 (skdqn) or is
        left out of the mean (DeepHash code base); see
        :func:`mean_average_precision`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, usable as ``scoring=`` in
        :class:`~sklearn.model_selection.GridSearchCV` or
        :func:`~sklearn.model_selection.cross_val_score`.

    Examples
    --------
    >>> from skdqn.metrics import map_scorer
    >>> scorer = map_scorer(top_k=100)
    >>> scorer
    map_scorer(top_k=100, normalize='retrieved')
    >>> map_scorer(top_k=100, no_relevant="skip")
    map_scorer(top_k=100, normalize='retrieved', no_relevant='skip')
    """
    return _MAPScorer(top_k, normalize, no_relevant)
