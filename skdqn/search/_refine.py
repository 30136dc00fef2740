"""Re-ranking AQD candidates by exact distance to stored full-precision vectors.

As faiss' ``IndexRefineFlat`` and LanceDB's ``refine_factor``: a search asks
the codes for ``refine_factor * k`` candidates by AQD, computes their exact
distance to the query from the items' real vectors, and keeps the ``k``
nearest by that distance (ties by item index). The codes prune, the vectors
decide; tied AQD groups (many items sharing one code) are broken by the real
distance.
"""

import numpy as np

from . import _tuning

__all__ = ["exact_distances", "refine"]


def exact_distances(queries, vectors, candidates, table):
    """Exact table values (``sqeuclidean``: squared distance; ``inner_product``: ``-<q, v>``) of candidates.

    Parameters
    ----------
    queries : ndarray of shape (nq, d)
    vectors : ndarray or numpy.memmap of shape (n, d)
        The items' vectors; only the candidates' rows are read.
    candidates : ndarray of shape (nq, c), int
        Item indices; ``-1`` (padding) gives ``inf``.
    table : {"sqeuclidean", "inner_product"}
        What the index's tables sum (:class:`skdqn.search._metric.Metric.table`).

    Returns
    -------
    values : ndarray of shape (nq, c), float64

    Notes
    -----
    Reference loop::

        for q in range(nq):
            for j, i in enumerate(candidates[q]):
                diff = queries[q].astype(float) - vectors[i].astype(float)
                values[q, j] = diff @ diff  # or -(queries[q] @ vectors[i])

    Examples
    --------
    >>> import numpy as np
    >>> exact_distances(np.zeros((1, 2)), np.eye(2), np.array([[1, -1]]), "sqeuclidean")
    array([[ 1., inf]])
    """
    nq, c = candidates.shape
    out = np.full((nq, c), np.inf)
    step = max(1, _tuning.REFINE_CANDIDATE_FLOATS // max(1, c * vectors.shape[1]))
    for start in range(0, nq, step):
        block = candidates[start : start + step]
        valid = block >= 0
        rows = np.where(valid, block, 0)
        gathered = np.asarray(vectors[rows.ravel()], dtype=np.float64).reshape(*rows.shape, -1)
        q = np.asarray(queries[start : start + step], dtype=np.float64)[:, None, :]
        if table == "inner_product":
            values = -np.einsum("qcd,qcd->qc", gathered, np.broadcast_to(q, gathered.shape))
        else:
            diff = gathered - q
            values = np.einsum("qcd,qcd->qc", diff, diff)
        out[start : start + step] = np.where(valid, values, np.inf)
    return out


def refine(queries, vectors, candidates, k, table):
    """The ``k`` candidates nearest by exact distance, per query: ``(values, indices)``.

    Parameters
    ----------
    queries : ndarray of shape (nq, d)
    vectors : ndarray of shape (n, d)
    candidates : ndarray of shape (nq, c), int, ``c >= k``
        AQD candidates (``-1``: padding).
    k : int
    table : {"sqeuclidean", "inner_product"}

    Returns
    -------
    values : ndarray of shape (nq, k), float32
        Exact table values (as the AQD's: squared distances or ``-<q, v>``),
        ascending; padding ``inf``.
    indices : ndarray of shape (nq, k), intp
        Ties by item index; padding ``-1``.

    Examples
    --------
    >>> import numpy as np
    >>> refine(np.zeros((1, 1)), np.array([[3.0], [1.0], [1.0]]), np.array([[0, 2, 1]]), 2, "sqeuclidean")
    (array([[1., 1.]], dtype=float32), array([[1, 2]]))
    """
    values = exact_distances(queries, vectors, candidates, table)
    big = np.iinfo(np.intp).max
    order = np.lexsort((np.where(candidates < 0, big, candidates), values), axis=-1)[:, :k]
    return (np.take_along_axis(values, order, axis=1).astype(np.float32),
            np.take_along_axis(candidates, order, axis=1).astype(np.intp))
