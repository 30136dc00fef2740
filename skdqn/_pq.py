"""Product-quantization core: codebooks, encoding and decoding.

Small pure functions on numpy arrays, no estimator state. Shapes and dtypes:

* data ``X``: ``(n, d)`` float, ``d = M * ds``; subspace ``m`` is the column
  slice ``X[:, m * ds:(m + 1) * ds]``;
* ``codebooks``: ``(M, K, ds)`` float32, the block-diagonal ``C = diag(C_1, ...,
  C_M)`` of the paper stored block by block;
* ``codes``: ``(n, M)`` unsigned integers in ``[0, K)``, ``uint8`` for
  ``K <= 256`` and ``uint16`` above (one byte per subspace at the usual
  ``K = 256``).

The k-means here is the closed-form part of DQN's alternating optimisation:
:func:`encode` is the H-step (nearest codeword per subspace) and
:func:`update_codebooks` the C-step (least-squares / centroid update, empty
codewords re-seeded), so :func:`train_codebooks` is plain alternation of the
two after a k-means++ start.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

__all__ = [
    "code_dtype",
    "max_magnitude",
    "check_magnitude",
    "split_subspaces",
    "kmeans_plusplus",
    "encode",
    "decode",
    "update_codebooks",
    "refine_codebooks",
    "train_codebooks",
    "quantization_error",
]

# Rows per block when a kernel builds an (n_rows, K) temporary.
_ROW_BLOCK = 8192
# float64 elements of one block of exact (row, candidate) differences in the
# encode's re-check: 2^22 (32 MiB). Rows near several codewords of a wide
# subspace (e.g. standardized pixels, ds = 784) once made one (pairs, ds)
# array of several GiB; blocks of this size keep it bounded, same results.
_PAIR_ELEMENTS = 1 << 22
_EPS32 = float(np.finfo(np.float32).eps)
_MAX32 = float(np.finfo(np.float32).max)


def code_dtype(K):
    """Smallest unsigned integer dtype that holds codes in ``[0, K)``.

    Parameters
    ----------
    K : int
        Number of codewords per subspace.

    Returns
    -------
    dtype : numpy.dtype
        ``uint8`` for ``K <= 256``, ``uint16`` for ``K <= 65536``, else ``uint32``.

    Examples
    --------
    >>> from skdqn._pq import code_dtype
    >>> code_dtype(256), code_dtype(257)
    (dtype('uint8'), dtype('uint16'))
    """
    if K <= 2**8:
        return np.dtype(np.uint8)
    if K <= 2**16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def split_subspaces(X, M):
    """View ``X`` of shape (n, M * ds) as (M, n, ds) without copying data.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        ``d`` must be divisible by ``M``.
    M : int
        Number of subspaces.

    Returns
    -------
    blocks : ndarray of shape (M, n, ds)
        ``blocks[m]`` is ``X[:, m * ds:(m + 1) * ds]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import split_subspaces
    >>> split_subspaces(np.arange(8).reshape(2, 4), 2)[1]
    array([[2, 3],
           [6, 7]])
    """
    n, d = X.shape
    if d % M:
        raise ValueError(f"n_features={d} is not divisible by M={M}.")
    return X.reshape(n, M, d // M).transpose(1, 0, 2)


def _sq_dists_to_row(X, i):
    """Exact squared distances from every row of X to row i (0 for duplicates)."""
    diff = X - X[i]
    return np.einsum("ij,ij->i", diff, diff)


def kmeans_plusplus(X, K, random_state=None):
    """Choose ``K`` initial centroids among the rows of ``X`` by k-means++.

    Parameters
    ----------
    X : ndarray of shape (n, ds), float
        Points of one subspace, ``n >= K``.
    K : int
        Number of centroids.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampling.

    Returns
    -------
    centroids : ndarray of shape (K, ds), same dtype as ``X``

    Notes
    -----
    The first centroid is drawn uniformly, each next one with probability
    proportional to the squared distance to the nearest centroid chosen so
    far (Arthur & Vassilvitskii, 2007). When every remaining point coincides
    with a centroid (duplicates), the next one is drawn uniformly.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import kmeans_plusplus
    >>> X = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> np.sort(kmeans_plusplus(X, 2, random_state=0).ravel() // 5)
    array([0., 2.])
    """
    rng = check_random_state(random_state)
    n = X.shape[0]
    centroids = np.empty((K, X.shape[1]), dtype=X.dtype)
    first = rng.randint(n)
    centroids[0] = X[first]
    closest = _sq_dists_to_row(X, first).astype(np.float64)
    for k in range(1, K):
        total = closest.sum()
        if total > 0:
            # side="right": the first point whose cumulative weight exceeds the
            # draw, so a point with zero weight (an already chosen centroid or
            # its duplicate) is never picked, even for a draw of exactly 0.
            idx = int(np.searchsorted(np.cumsum(closest), rng.uniform(0, total), side="right"))
            idx = min(idx, n - 1)
        else:
            idx = rng.randint(n)
        centroids[k] = X[idx]
        np.minimum(closest, _sq_dists_to_row(X, idx), out=closest)
    return centroids


def max_magnitude(n_features):
    """Largest absolute value for which float32 distances of ``n_features``-vectors stay finite.

    Every squared distance ``||x - c||^2`` (and inner product ``<x, c>``)
    between two vectors of ``n_features`` values of at most this magnitude is
    at most half the largest float32, so the float32 lookup tables and their
    sums never overflow: ``n_features * (2 * limit) ** 2 <= float32 max / 2``.
    The limit is itself a float32 value: data accepted in float64 stays
    accepted once cast to float32.

    Parameters
    ----------
    n_features : int
        Dimension of the vectors (``M * ds``).

    Returns
    -------
    limit : float

    Examples
    --------
    >>> from skdqn._pq import max_magnitude
    >>> f"{max_magnitude(1):.3g}", f"{max_magnitude(64):.3g}"
    ('6.52e+18', '8.15e+17')
    """
    exact = np.sqrt(_MAX32 / (8 * n_features))
    limit = np.float32(exact)
    if limit > exact:  # a float32 value, so that casting accepted data to float32 keeps it accepted
        limit = np.nextafter(limit, np.float32(0))
    return float(limit)


def check_magnitude(X, n_features=None, *, name="X"):
    """Raise a ValueError when ``X`` holds values whose float32 squared distances overflow.

    Parameters
    ----------
    X : ndarray of float, any shape
        Values to check (finite; NaN and infinity are refused elsewhere, and
        infinity fails here too).
    n_features : int, default=None
        Dimension of the vectors the distances are taken between;
        ``X.shape[-1]`` when None.
    name : str, default="X"
        Name of the argument, for the message.

    Raises
    ------
    ValueError
        If ``max |X| > max_magnitude(n_features)``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import check_magnitude
    >>> check_magnitude(np.array([[1e18, -3.0]]))
    >>> check_magnitude(np.array([[1e20, -3.0]]))
    Traceback (most recent call last):
    ...
    ValueError: X has values of magnitude 1e+20; squared distances between vectors of ...
    """
    if X.size == 0:
        return
    n_features = X.shape[-1] if n_features is None else n_features
    peak = max(float(X.max()), -float(X.min()))  # two passes, no |X| temporary
    limit = max_magnitude(n_features)
    if not peak <= limit:
        raise ValueError(
            f"{name} has values of magnitude {peak:.3g}; squared distances between vectors of "
            f"{n_features} features overflow float32 above magnitude {limit:.3g}. Rescale "
            f"{name} (e.g. with sklearn.preprocessing.StandardScaler)."
        )


def _first_minima(rows, cands, dist):
    """Per row, the candidate of smallest ``dist``, ties to the first (smallest) candidate.

    ``rows``, ``cands`` (intp) and ``dist`` (float64) are 1-D of one length,
    sorted by row, candidates ascending within a row (``np.nonzero`` order).
    Returns ``(row_ids, best_cands)``, one entry per distinct row.
    """
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    row_min = np.minimum.reduceat(dist, starts)
    is_min = np.flatnonzero(dist == np.repeat(row_min, np.diff(np.r_[starts, rows.size])))
    first = is_min[np.r_[True, rows[is_min[1:]] != rows[is_min[:-1]]]]
    return rows[first], cands[first]


def _encode_subspace(Xm, Cm, out):
    """Exact nearest codeword of each row: fast float32 ranking, exact re-check of close calls.

    Parameters
    ----------
    Xm : ndarray of shape (n, ds), float32 or float64
        One subspace of the data (a strided view is fine).
    Cm : ndarray of shape (K, ds), float32
        Its codewords.
    out : ndarray of shape (n,), integer
        Written with ``argmin_k ||Xm[i] - Cm[k]||^2`` (ties: smallest ``k``).

    Notes
    -----
    The float32 scores ``||c||^2 / 2 - <x, c>`` (around the first codeword,
    so that their error scales with the spread of the codewords, not with
    the distance to the origin) err by at most ``E_i = (ds + 5) u (r^2 +
    ||x_i|| r)``, with ``u`` the float32 unit roundoff and ``r`` the largest
    centred codeword norm. Every codeword scoring within ``2 * E_i`` of row
    ``i``'s best can be the nearest (the window taken is four times that,
    to spare); the rows with
    more than one such candidate (rare, but all rows for near-duplicate
    codewords) are decided by exact float64 differences ``sum (x - c)^2``.
    """
    ds = Cm.shape[1]
    center = Cm[0].astype(np.float64)
    Cc = (Cm - center).astype(np.float32)
    half_sq = np.float32(0.5) * np.einsum("kd,kd->k", Cc, Cc)
    radius = np.float32(np.sqrt(2.0 * float(half_sq.max())))
    slack = np.float32(4 * (ds + 5) * _EPS32)  # 8 E_i: the 2 E_i needed, four times over
    for start in range(0, Xm.shape[0], _ROW_BLOCK):
        chunk = Xm[start : start + _ROW_BLOCK]
        block = (chunk - center).astype(np.float32)
        scores = block @ Cc.T  # (b, K)
        np.subtract(half_sq, scores, out=scores)
        best = np.argmin(scores, axis=1)
        norms = np.sqrt(np.einsum("id,id->i", block, block))
        limit = scores[np.arange(block.shape[0]), best] + slack * radius * (radius + norms)
        close = scores <= limit[:, None]  # holds each row's best, at least
        if np.count_nonzero(close) > block.shape[0]:  # some rows have several candidates
            several = np.flatnonzero(close.view(np.uint8).sum(axis=1, dtype=np.intp) > 1)
            sub_rows, cands = np.nonzero(close[several])
            rows = several[sub_rows]
            ids, nearest = _first_minima(rows, cands, _exact_distances(chunk, Cm, rows, cands))
            best[ids] = nearest
        out[start : start + block.shape[0]] = best


def _exact_distances(X, C, rows, cands):
    """``sum_d (X[rows[p], d] - C[cands[p], d])^2`` in float64, for each pair ``p``.

    Computed in blocks of ``_PAIR_ELEMENTS`` float64 elements (the same
    sums, pair by pair, whatever the block), so memory stays bounded.

    >>> import numpy as np
    >>> _exact_distances(np.array([[0.0, 1.0]]), np.array([[1.0, 1.0], [3.0, 5.0]]), np.array([0, 0]), np.array([0, 1]))
    array([ 1., 25.])
    """
    out = np.empty(rows.shape[0], dtype=np.float64)
    step = max(1, _PAIR_ELEMENTS // max(X.shape[1], 1))
    for start in range(0, rows.shape[0], step):
        part = slice(start, start + step)
        diff = X[rows[part]].astype(np.float64) - C[cands[part]].astype(np.float64)
        out[part] = np.einsum("pd,pd->p", diff, diff)
    return out


def encode(X, codebooks):
    """Nearest codeword per subspace (the H-step).

    Parameters
    ----------
    X : ndarray of shape (n, M * ds), float
        Vectors to encode.
    codebooks : ndarray of shape (M, K, ds), float32

    Returns
    -------
    codes : ndarray of shape (n, M), ``code_dtype(K)``
        ``codes[i, m] = argmin_k ||X[i, m-th block] - codebooks[m, k]||^2``,
        exactly (``X`` in its own precision, float32 or float64); ties go to
        the smallest ``k``.

    Raises
    ------
    ValueError
        If ``X`` holds values so large that float32 squared distances
        overflow (see :func:`check_magnitude`).

    Notes
    -----
    Reference loop (exact differences in float64)::

        for i in range(n):
            for m in range(M):
                x = X[i, m * ds:(m + 1) * ds].astype(np.float64)
                d = ((codebooks[m].astype(np.float64) - x) ** 2).sum(axis=1)
                codes[i, m] = np.argmin(d)  # first minimum: smallest k

    The vectorised version ranks by ``||c||^2 / 2 - <x, c>`` (the ``||x||^2``
    term is the same for every codeword), one float32 matrix product per
    subspace and block of rows, around the first codeword of each subspace;
    the codewords that score within the rounding error of the best are
    re-ranked by exact differences (see ``_encode_subspace``), so codewords
    however close are never confused.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import encode
    >>> codebooks = np.array([[[0.0], [1.0]], [[0.0], [5.0]]], dtype=np.float32)
    >>> encode(np.array([[0.9, 4.0], [0.2, 0.1]]), codebooks)
    array([[1, 1],
           [0, 0]], dtype=uint8)
    """
    M, K, _ = codebooks.shape
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    check_magnitude(X)
    codes = np.empty((X.shape[0], M), dtype=code_dtype(K))
    blocks = split_subspaces(X, M)
    for m in range(M):
        _encode_subspace(blocks[m], codebooks[m], codes[:, m])
    return codes


def decode(codes, codebooks):
    """Reconstruct vectors from codes: ``C h`` (the block-diagonal product).

    Parameters
    ----------
    codes : ndarray of shape (n, M), integer
    codebooks : ndarray of shape (M, K, ds)

    Returns
    -------
    X_hat : ndarray of shape (n, M * ds), dtype of ``codebooks``
        ``X_hat[i, m-th block] = codebooks[m, codes[i, m]]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import decode
    >>> codebooks = np.array([[[0.0], [1.0]], [[0.0], [5.0]]], dtype=np.float32)
    >>> decode(np.array([[1, 1], [0, 1]]), codebooks)
    array([[1., 5.],
           [0., 5.]], dtype=float32)
    """
    M, K, ds = codebooks.shape
    codes = np.asarray(codes)
    out = np.empty((codes.shape[0], M, ds), dtype=codebooks.dtype)
    for m in range(M):
        np.take(codebooks[m], codes[:, m], axis=0, out=out[:, m])
    return out.reshape(codes.shape[0], M * ds)


def update_codebooks(X, codes, codebooks):
    """Closed-form codebook update given the codes (the C-step).

    With block-diagonal ``C`` and one-hot ``h``, the least-squares solution
    ``C_m = Z_m H_m^T (H_m H_m^T)^{-1}`` is the mean of the points assigned to
    each codeword. A codeword that no point uses is re-seeded on the point
    with the largest quantization error in its subspace (distinct points for
    several empty codewords), as k-means implementations do.

    Parameters
    ----------
    X : ndarray of shape (n, M * ds), float
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    codebooks : ndarray of shape (M, K, ds), float32
        Current codebooks: used to measure the errors for re-seeding. Not
        modified.

    Returns
    -------
    new_codebooks : ndarray of shape (M, K, ds), float32
    n_reseeded : int
        How many empty codewords were re-seeded, all subspaces together.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import update_codebooks
    >>> X = np.array([[0.0], [2.0], [10.0]])
    >>> C, n_empty = update_codebooks(X, np.array([[0], [0], [1]]),
    ...                               np.zeros((1, 3, 1), np.float32))
    >>> C.ravel(), n_empty
    (array([ 1., 10., 10.], dtype=float32), 1)
    """
    M, K, ds = codebooks.shape
    X = np.asarray(X)
    n = X.shape[0]
    blocks = split_subspaces(X, M)
    new = np.empty_like(codebooks)
    n_reseeded = 0
    for m in range(M):
        assign = sp.csr_matrix(
            (np.ones(n), (codes[:, m].astype(np.intp), np.arange(n))), shape=(K, n)
        )
        counts = np.bincount(codes[:, m], minlength=K)
        sums = assign @ blocks[m].astype(np.float64)
        used = counts > 0
        new[m][used] = sums[used] / counts[used, None]
        empty = np.flatnonzero(~used)
        if empty.size:
            residual = ((blocks[m] - codebooks[m][codes[:, m]]) ** 2).sum(axis=1)
            # Largest error first; ties by row index, so the result is deterministic.
            far = np.argsort(-residual, kind="stable")[: empty.size]
            new[m][empty[: far.size]] = blocks[m][far]
            new[m][empty[far.size :]] = codebooks[m][empty[far.size :]]
            n_reseeded += empty.size
    return new, n_reseeded


def refine_codebooks(X, codebooks, codes=None, *, n_iter=20):
    """Lloyd iterations from given codebooks: C-step, H-step, until no code changes.

    Parameters
    ----------
    X : ndarray of shape (n, M * ds), float
        Vectors to quantize.
    codebooks : ndarray of shape (M, K, ds), float32
        Starting codebooks. Not modified.
    codes : ndarray of shape (n, M), default=None
        Codes of ``X`` under ``codebooks``; computed with :func:`encode` when None.
    n_iter : int, default=20
        Maximum number of iterations (each a :func:`update_codebooks` then an
        :func:`encode`); stops earlier when no code changes.

    Returns
    -------
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray of shape (n, M)
        ``encode(X, codebooks)`` of the returned codebooks.

    Notes
    -----
    Reference loop::

        codes = encode(X, codebooks)
        for _ in range(n_iter):
            codebooks, _ = update_codebooks(X, codes, codebooks)
            new_codes = encode(X, codebooks)
            if (new_codes == codes).all():
                break
            codes = new_codes

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import refine_codebooks
    >>> X = np.array([[0.0], [1.0], [9.0], [10.0]])
    >>> C, codes = refine_codebooks(X, np.array([[[0.0], [1.0]]], np.float32))
    >>> C.ravel(), codes.ravel()
    (array([0.5, 9.5], dtype=float32), array([0, 0, 1, 1], dtype=uint8))
    """
    if codes is None:
        codes = encode(X, codebooks)
    for _ in range(n_iter):
        codebooks, _ = update_codebooks(X, codes, codebooks)
        new_codes = encode(X, codebooks)
        if np.array_equal(new_codes, codes):
            break
        codes = new_codes
    return codebooks, codes


def train_codebooks(X, M, K, *, n_iter=20, max_samples=None, random_state=None):
    """Learn PQ codebooks by k-means in each subspace.

    Parameters
    ----------
    X : ndarray of shape (n, M * ds), float
        Training vectors, ``n >= K``.
    M : int
        Number of subspaces.
    K : int
        Number of codewords per subspace.
    n_iter : int, default=20
        Maximum number of Lloyd iterations (encode, then update) per subspace;
        stops earlier when no code changes.
    max_samples : int, default=None
        If given and ``n > max_samples``, k-means runs on a random subset of
        this many rows (faiss does the same for large training sets).
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means++ start and the subsampling.

    Returns
    -------
    codebooks : ndarray of shape (M, K, ds), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import train_codebooks, encode, decode
    >>> X = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    >>> C = train_codebooks(X, M=2, K=16, random_state=0)
    >>> C.shape, C.dtype
    ((2, 16, 4), dtype('float32'))
    >>> bool(((X - decode(encode(X, C), C)) ** 2).sum() < (X ** 2).sum())
    True
    """
    rng = check_random_state(random_state)
    X = np.asarray(X)
    check_magnitude(X)
    X = X.astype(np.float32, copy=False)
    if max_samples is not None and X.shape[0] > max_samples:
        X = X[np.sort(rng.choice(X.shape[0], max_samples, replace=False))]
    blocks = split_subspaces(X, M)
    codebooks = np.stack([kmeans_plusplus(blocks[m], K, rng) for m in range(M)])
    codebooks, _ = refine_codebooks(X, codebooks, n_iter=n_iter)
    return codebooks.astype(np.float32, copy=False)


def quantization_error(X, codebooks, codes=None):
    """Mean squared reconstruction error ``mean_i ||x_i - C h_i||^2``.

    Parameters
    ----------
    X : ndarray of shape (n, M * ds)
    codebooks : ndarray of shape (M, K, ds)
    codes : ndarray of shape (n, M), default=None
        Codes of ``X``; computed with :func:`encode` when None.

    Returns
    -------
    error : float
        The PQ loss ``Q`` of the paper divided by ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import quantization_error
    >>> C = np.array([[[0.0], [1.0]]], dtype=np.float32)
    >>> quantization_error(np.array([[0.25], [1.0]]), C)
    0.03125
    """
    X = np.asarray(X, dtype=np.float32)
    if codes is None:
        codes = encode(X, codebooks)
    return float(((X - decode(codes, codebooks)).astype(np.float64) ** 2).sum(axis=1).mean())
