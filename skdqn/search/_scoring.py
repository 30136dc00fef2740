"""Mean average precision of queries against stored codes: the ``score`` of both estimators.

:meth:`skdqn.AQDNeighbors.score` and :meth:`skdqn.DeepQuantizer.score` both
rank a database of codes for each query by Asymmetric Quantizer Distance
(:mod:`skdqn.search._search`) and average the precision of the ranking with
:mod:`skdqn.metrics`; this module is the one place that joins the two, so the
search engine does not depend on the metrics.
"""

import warnings

import numpy as np

from . import _tuning
from .._progress import count_progress
from ._search import aqd_kneighbors, full_sort_block
from ._tables import as_query_source
from .._validation import check_y
from ..exceptions import NoRelevantItemsWarning
from ..metrics import _check_no_relevant, _mean_of_aps, _n_relevant, average_precision_scores

__all__ = ["retrieval_average_precisions", "score_codes", "warn_absent_labels"]


def retrieval_average_precisions(
    queries, codes, query_labels, database_labels, *, top_k=None, normalize="retrieved", n_jobs=None,
    search=None, verbose=0, desc="MAP",
):
    """Average precision of each query when the database is ranked by AQD.

    Parameters
    ----------
    queries : QuerySource or ndarray of shape (n_queries, M, K), float32
        The queries (see :func:`skdqn.search._search.aqd_kneighbors`).
    codes : ndarray of shape (n_database, M), integer
    query_labels : ndarray of shape (n_queries,) or (n_queries, n_labels)
    database_labels : ndarray of shape (n_database,) or (n_database, n_labels)
        Relevance = sharing at least one label.
    top_k : int, default=None
        Rank depth; the whole database when None or larger than it (MAP@k
        over fewer than k items is the MAP of the whole ranking).
    normalize : {"retrieved", "all"}, default="retrieved"
        See :func:`skdqn.metrics.average_precision_scores`.
    n_jobs : int, default=None
        Parallel workers of the search and of the metric.
    search : callable, default=None
        ``search(queries, k) -> (distances, indices)``, the top k of a query
        source over the database (e.g. an index's inverted-list search);
        the exhaustive :func:`~skdqn.search._search.aqd_kneighbors` over ``codes``
        when None. Indices are database items, the rows of ``database_labels``.
    verbose : int, default=0
        ``1`` reports the queries ranked so far on stderr (a bar on a
        terminal, a line per tenth of the queries elsewhere), under ``desc``.
    desc : str, default="MAP"
        The name of the progress.

    Returns
    -------
    ap : ndarray of shape (n_queries,), float64

    Notes
    -----
    The rankings (``n_queries x top_k`` indices) are built a chunk of queries
    at a time, so memory stays bounded by ``working_memory``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._scoring import retrieval_average_precisions
    >>> tables = np.array([[[0.0, 1.0]]], dtype=np.float32)
    >>> retrieval_average_precisions(tables, np.array([[1], [0]]), np.array([0]), np.array([1, 0]))
    array([1.])
    """
    queries = as_query_source(queries)
    if search is None:
        def search(source, k):
            return aqd_kneighbors(source, codes, k, n_jobs=n_jobs)
    n = codes.shape[0]
    k = n if top_k is None else min(int(top_k), n)
    chunk = full_sort_block(n) if k * _tuning.FULL_SORT_RATIO >= n else _tuning.RANKING_CHUNK
    out = np.empty(queries.n_queries, dtype=np.float64)
    progress = count_progress(queries.n_queries, desc, verbose=verbose)
    try:
        for start in range(0, queries.n_queries, chunk):
            s = slice(start, min(queries.n_queries, start + chunk))
            _, ranking = search(queries.block(s), k)
            out[s] = average_precision_scores(
                query_labels[s], database_labels, ranking, top_k=k, normalize=normalize, n_jobs=n_jobs
            )
            progress.update(s.stop - s.start)
    finally:
        progress.close()
    return out


def warn_absent_labels(query_labels, database_labels, *, stacklevel=3):
    """Warn (:class:`~skdqn.exceptions.NoRelevantItemsWarning`) if some queries share no label with the database.

    Parameters
    ----------
    query_labels : ndarray of shape (n_queries,) or (n_queries, n_labels)
        Canonical labels (see :func:`skdqn._validation.check_y`).
    database_labels : ndarray of shape (n_database,) or (n_database, n_labels)
    stacklevel : int, default=3
        Passed to :func:`warnings.warn`.

    Returns
    -------
    n_absent : int
        The number of such queries (0: no warning).

    Examples
    --------
    >>> import numpy as np, warnings
    >>> from skdqn.search._scoring import warn_absent_labels
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     warn_absent_labels(np.array([0, 5, 6]), np.array([0, 1, 1]))
    2
    """
    n_absent = int((_n_relevant(query_labels, database_labels) == 0).sum())
    if n_absent:
        warnings.warn(
            f"{n_absent} of {len(query_labels)} queries have no relevant item in the database (none "
            "of their labels is among the database's labels): each counts as an average precision "
            "of 0. Check that the query and database labels are of the same kind, or pass "
            "no_relevant='skip' to leave those queries out.",
            NoRelevantItemsWarning, stacklevel=stacklevel,
        )
    return n_absent


def score_codes(
    queries, y, codes, database_labels, *, top_k=None, normalize="retrieved", no_relevant="zero",
    n_jobs=None, search=None, verbose=0,
):
    """MAP of labelled queries against labelled codes: what ``score`` returns.

    Parameters
    ----------
    queries : QuerySource
        The queries, e.g. :class:`~skdqn.search._tables.VectorQueries`.
    y : array-like of shape (n_queries,) or (n_queries, n_labels)
        The queries' labels (validated here, their number too).
    codes : ndarray of shape (n_database, M), integer
    database_labels : ndarray of shape (n_database,) or (n_database, n_labels)
        Canonical labels of the database.
    top_k : int, default=None
        Rank depth (MAP@top_k); the whole database when None or larger.
    normalize : {"retrieved", "all"}, default="retrieved"
        See :func:`skdqn.metrics.mean_average_precision`.
    no_relevant : {"zero", "skip"}, default="zero"
        A query with no relevant item in its top k counts as 0 (skdqn) or
        is left out of the mean (DeepHash code base); see
        :func:`skdqn.metrics.mean_average_precision`.
    n_jobs : int, default=None
        Parallel workers.
    search : callable, default=None
        The index's search, see :func:`retrieval_average_precisions`.
    verbose : int, default=0
        ``1`` reports progress on stderr, see :func:`retrieval_average_precisions`.

    Returns
    -------
    score : float
        MAP in [0, 1].

    Warns
    -----
    NoRelevantItemsWarning
        With ``no_relevant="zero"``, when some queries share no label with
        the whole database (they score 0 whatever the ranking).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._scoring import score_codes
    >>> from skdqn.search._tables import VectorQueries
    >>> C = np.array([[[0.0], [1.0]]], dtype=np.float32)
    >>> queries = VectorQueries(np.array([[0.1], [0.9]]), C, "sqeuclidean")
    >>> score_codes(queries, [0, 1], np.array([[0], [1], [1]]), np.array([0, 1, 1]))
    1.0
    """
    no_relevant = _check_no_relevant(no_relevant)
    labels = check_y(y, queries.n_queries)
    desc = "MAP" if top_k is None else f"MAP@{top_k}"
    ap = retrieval_average_precisions(
        queries, codes, labels, database_labels, top_k=top_k, normalize=normalize, n_jobs=n_jobs,
        search=search, verbose=verbose, desc=desc,
    )  # validates the labels against each other first
    if no_relevant == "zero" and not ap.all():
        warn_absent_labels(labels, database_labels, stacklevel=4)  # at the caller of score
    return _mean_of_aps(ap, no_relevant)
