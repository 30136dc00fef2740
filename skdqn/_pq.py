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
codewords re-seeded). :func:`lloyd` alternates the two in each space; it is
the one k-means of the package: :func:`train_codebooks` (after a k-means++
start) and :func:`refine_codebooks` for the codebooks,
:func:`skdqn.search._ivf.train_coarse` for the coarse centroids of inverted lists
(one space of ``d`` dimensions). One kernel, ``_nearest_codewords``, finds
the nearest codeword for all of them: blocks of float32 matrix products,
then an exact float64 re-check of the close calls.
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
    "lloyd",
    "refine_codebooks",
    "train_codebooks",
    "quantization_error",
]

# Float32 scores per block of the nearest-codeword kernel (4 MiB): rows per
# block = this // (M * K). Encode of 200,000 items of bench_build.py's data
# (M=8, K=256, one thread) against faiss' compute_codes, interleaved, best
# of 4 (bench_build.py --n 200000 --skip fit ivf, this value patched):
# 2^17: 2.10x, 2^18: 1.97x, 2^19: 1.89x, 2^20: 1.84x, 2^21: 1.88x,
# 2^22: 2.01x faiss. Smaller blocks pay the per-call cost of the dozen numpy
# calls per block more often, larger ones fall out of the 1 MiB L2 cache
# more (see the results page, "Building an index").
_SCORE_FLOATS = 1 << 20
# float64 elements of one block of exact (row, candidate) differences in the
# encode's re-check: 2^18 (2 MiB). Rows near several codewords of a wide
# subspace (e.g. standardized pixels, ds = 784) once made one (pairs, ds)
# array of several GiB; blocks of this size keep it bounded, same results.
# Encode of the 10,000 standardized Fashion-MNIST test images, M = 1, K = 64
# (a fifth of the rows re-checked, 2.2 candidates each), one thread: 2^14
# to 2^20: 0.051 to 0.064 s; 2^22: 0.068 to 0.252 s (blocks of 32 MiB are
# fresh memory, mapped again at each call).
_PAIR_ELEMENTS = 1 << 18
# Rows per sparse product of the C-step: 2^14 (1 to 8 MiB of float64 rows).
# Sums of 262,144 rows, ds = 64, K = 1,024 (the coarse k-means of 1,024
# lists): 2^12: 12.1 ms, 2^13: 9.7, 2^14: 8.5, 2^16: 35.5, all at once: 43.8
# (fresh memory); 8 spaces of 65,536 rows, ds = 8, K = 256: 18.0 to 21.7 ms.
_UPDATE_ROWS = 1 << 14
# Lloyd iterations of train_codebooks (see its Notes for the measurements).
_KMEANS_ITER = 12
# The k-means++ start of train_codebooks draws among at most max(_INIT_ROWS,
# _INIT_PER_CODEWORD * K) rows (its cost grows as rows * K). Quantization
# error relative to the previous version (k-means++ on all rows, up to 20
# iterations), mean of 2 to 4 seeds, 12 iterations: 64-d mixture of
# bench_build.py, 65,536 rows, K=256: 1.0061 with 4,096 rows, 1.0065 with
# all (2.5 s against 6.0 s, loaded machine); Fashion-MNIST test set, PCA to
# 64, K=256: 1.0062 with 4,096, 1.0047 with all 10,000; but standardized
# digits, M=16, K=16: 1.198 with 256 rows, 1.004 with all 1,797 (rare
# values the subset misses): hence a floor in rows, not only per codeword
# (4,096 rows: a sixteenth of the cost of all 65,536 on the mixture).
_INIT_ROWS = 4096
_INIT_PER_CODEWORD = 16
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


def _nearest_codewords(X3, codebooks, out, exact=True):
    """Exact nearest codeword of each row in each subspace: float32 ranking, exact re-check of close calls.

    Parameters
    ----------
    X3 : ndarray of shape (n, M, ds), float32 or float64
        The data, subspace by subspace (a strided view is fine).
    codebooks : ndarray of shape (M, K, ds), float32
        The codewords of each subspace.
    out : ndarray of shape (n, M), integer
        Written with ``argmin_k ||X3[i, m] - codebooks[m, k]||^2`` (ties:
        smallest ``k``).
    exact : bool, default=True
        False: the float32 winner, without the second ``argmin`` pass and
        the re-check (a row almost equally near two codewords may get
        either; what the inner k-means iterations use, :func:`lloyd`).

    Notes
    -----
    Reference loop (what is computed, exactly)::

        for i in range(n):
            for m in range(M):
                d = ((codebooks[m].astype(np.float64) - X3[i, m].astype(np.float64)) ** 2).sum(axis=1)
                out[i, m] = np.argmin(d)

    Blocks of ``_SCORE_FLOATS // (M * K)`` rows. Per block, one float32
    matrix product per subspace gives the scores ``||c||^2 / 2 - <x, c>``
    (around the first codeword, so that their error scales with the spread
    of the codewords, not with the distance to the origin): the rows,
    centred, get a last column of ones and the codewords a last row of
    ``||c||^2 / 2``. Two ``argmin`` passes give each row's best and
    second-best scores. The float32 scores err by at most ``E_i = (ds + 5)
    u (r^2 + ||x_i|| r)``, with ``u`` the float32 unit roundoff and ``r``
    the largest centred codeword norm: a codeword scoring more than ``2 *
    E_i`` above row ``i``'s best cannot be the nearest (the window taken is
    four times that, to spare). Rows whose second best lies inside the
    window (rare, but all rows for near-duplicate codewords) are decided by
    exact float64 differences ``sum (x - c)^2`` over the codewords inside
    it.
    """
    M, K, ds = codebooks.shape
    work = np.float32 if X3.dtype == np.float32 else np.float64
    center = codebooks[:, :1, :].astype(np.float64)  # (M, 1, ds)
    Cc = (codebooks - center).astype(np.float32)
    half_sq = np.float32(0.5) * np.einsum("mkd,mkd->mk", Cc, Cc)
    radius = np.sqrt(np.float32(2.0) * half_sq.max(axis=1))[:, None]  # (M, 1)
    slack = np.float32(4 * (ds + 5) * _EPS32) * radius  # 8 E_i / (r + ||x_i||): the 2 E_i needed, four times over
    weights = np.empty((M, ds + 1, K), dtype=np.float32)
    weights[:, :ds] = -Cc.transpose(0, 2, 1)
    weights[:, ds] = half_sq
    rows = max(1, min(_SCORE_FLOATS // (M * K), X3.shape[0]))
    rows_1 = np.empty((M, rows, ds + 1), dtype=np.float32)
    rows_1[:, :, ds] = 1.0
    scores = np.empty((M, rows, K), dtype=np.float32)
    flat = scores.reshape(-1)
    base = (np.arange(M * rows, dtype=np.intp) * K).reshape(M, rows)  # flat index of each row's first score
    center = center.astype(work)
    for start in range(0, X3.shape[0], rows):
        chunk = X3[start : start + rows]
        b = chunk.shape[0]
        block, ranked, first = rows_1[:, :b], scores[:, :b], base[:, :b]
        np.subtract(chunk.transpose(1, 0, 2), center, out=block[:, :, :ds], casting="unsafe")
        np.matmul(block, weights, out=ranked)
        best = ranked.argmin(axis=2)  # (M, b)
        if not exact:
            out[start : start + b] = best.T
            continue
        at_best = first + best
        low = flat[at_best]
        flat[at_best] = np.inf
        second = flat[first + ranked.argmin(axis=2)]
        norms = np.sqrt(np.einsum("mid,mid->mi", block[:, :, :ds], block[:, :, :ds]))
        limit = low + slack * (radius + norms)
        close_m, close_i = np.nonzero(second <= limit)
        if close_m.size:
            flat[at_best[close_m, close_i]] = low[close_m, close_i]
            _recheck(chunk, codebooks, ranked, limit, close_m, close_i, best)
        out[start : start + b] = best.T


def _recheck(chunk, codebooks, ranked, limit, close_m, close_i, best):
    """Decide the close calls of one block by exact differences (in place in ``best``).

    ``chunk`` (b, M, ds) the rows, ``ranked`` (M, b, K) their float32
    scores, ``limit`` (M, b) the window, ``(close_m, close_i)`` the
    (subspace, row) pairs with several codewords inside it, in increasing
    order, ``best`` (M, b) the float32 winners, overwritten for those pairs.
    All subspaces in one call: each pair of the block is one row of a flat
    (M * b, ds) copy of the block, each codeword one row of the (M * K, ds)
    codebooks.
    """
    b, M, ds = chunk.shape
    K = codebooks.shape[1]
    pair, cands = np.nonzero(ranked[close_m, close_i] <= limit[close_m, close_i, None])
    subspace = close_m[pair]
    rows = subspace * b + close_i[pair]  # increasing, candidates increasing within a row
    flat_rows = chunk.transpose(1, 0, 2).reshape(M * b, ds)
    dist = _exact_distances(flat_rows, codebooks.reshape(M * K, ds), rows, subspace * K + cands)
    ids, nearest = _first_minima(rows, cands, dist)
    best[ids // b, ids % b] = nearest


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
    re-ranked by exact differences (see ``_nearest_codewords``), so codewords
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
    _nearest_codewords(split_subspaces(X, M).transpose(1, 0, 2), np.asarray(codebooks), codes)
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
    M = codebooks.shape[0]
    blocks = split_subspaces(np.asarray(X), M)
    new = np.empty_like(codebooks)
    n_reseeded = 0
    for m in range(M):
        new[m], n_empty = _update_centroids(blocks[m], codes[:, m], codebooks[m])
        n_reseeded += n_empty
    return new, n_reseeded


def _update_centroids(Xm, labels, centroids):
    """The C-step in one space: ``(new_centroids, n_empty)``, the means of each centroid's rows.

    ``Xm`` (n, ds) float, ``labels`` (n,) integers in ``[0, K)``,
    ``centroids`` (K, ds) the current ones (not modified). The sums are
    sparse (K, rows) by (rows, ds) float64 products over blocks of
    ``_UPDATE_ROWS`` rows (faster than ``np.bincount`` per column,
    ``np.add.at`` or a sort: 18 ms against 38, 180 and 53 ms for 8 spaces
    of 65,536 rows, ds = 8, K = 256). Empty centroids are re-seeded on the
    rows of largest error (ties by row index).
    """
    K = centroids.shape[0]
    labels = labels.astype(np.intp, copy=False)
    counts = np.bincount(labels, minlength=K)
    sums = np.zeros((K, Xm.shape[1]))
    for start in range(0, Xm.shape[0], _UPDATE_ROWS):
        rows = labels[start : start + _UPDATE_ROWS]
        member = sp.csr_matrix((np.ones(rows.size), (rows, np.arange(rows.size))), shape=(K, rows.size))
        sums += member @ Xm[start : start + _UPDATE_ROWS].astype(np.float64)
    new = np.empty_like(centroids)
    used = counts > 0
    new[used] = sums[used] / counts[used, None]
    empty = np.flatnonzero(~used)
    if empty.size:
        residual = ((Xm - centroids[labels]) ** 2).sum(axis=1)
        # Largest error first; ties by row index, so the result is deterministic.
        far = np.argsort(-residual, kind="stable")[: empty.size]
        new[empty[: far.size]] = Xm[far]
        new[empty[far.size :]] = centroids[empty[far.size :]]
    return new, int(empty.size)


def lloyd(X3, centroids, labels=None, *, n_iter, exact_labels=True):
    """Lloyd iterations in each of ``M`` spaces: C-step, then H-step, until no label changes.

    The one k-means loop of the package: PQ codebooks (``M`` subspaces,
    :func:`refine_codebooks`, :func:`train_codebooks`) and the coarse
    centroids of inverted lists (``M = 1``, :func:`skdqn.search._ivf.train_coarse`).

    Parameters
    ----------
    X3 : ndarray of shape (n, M, ds), float32 or float64
        The rows, space by space (``split_subspaces(X, M).transpose(1, 0,
        2)``, or ``X[:, None, :]`` for one space).
    centroids : ndarray of shape (M, K, ds), float32
        Starting centroids. Not modified.
    labels : ndarray of shape (n, M), integer, default=None
        The nearest centroid of each row under ``centroids``; computed when
        None. Not modified.
    n_iter : int
        Most iterations per space. A space stops as soon as an iteration
        changes none of its labels (a fixed point: more iterations would
        change nothing), the others go on.
    exact_labels : bool, default=True
        False: skip the last exact assignment, return ``labels=None``
        (the coarse k-means of inverted lists, whose rows are assigned
        afterwards anyway).

    Returns
    -------
    centroids : ndarray of shape (M, K, ds), float32
    labels : ndarray of shape (n, M), ``code_dtype(K)``, or None
        The exact nearest centroid of each row under the returned centroids
        (None when ``exact_labels`` is False).

    Notes
    -----
    The iterations assign rows by their float32 winners
    (``_nearest_codewords(..., exact=False)``, 40 % cheaper), so a row
    almost equally near two centroids may go to either while training; the
    labels returned are exact.

    Reference loop (one space ``m``; spaces are independent)::

        for _ in range(n_iter):
            centroids[m], _ = _update_centroids(X3[:, m], labels[:, m], centroids[m])
            new = nearest centroid of each row of X3[:, m]
            if (new == labels[:, m]).all():
                break
            labels[:, m] = new

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._pq import lloyd
    >>> X = np.array([[0.0], [1.0], [9.0], [10.0]])[:, None, :]
    >>> C, labels = lloyd(X, np.array([[[0.0], [1.0]]], np.float32), n_iter=10)
    >>> C.ravel(), labels.ravel()
    (array([0.5, 9.5], dtype=float32), array([0, 0, 1, 1], dtype=uint8))
    """
    n, M, _ = X3.shape
    centroids = np.array(centroids, dtype=np.float32)
    if labels is None:  # float32 winners when iterations follow, as theirs
        labels = np.empty((n, M), dtype=code_dtype(centroids.shape[1]))
        _nearest_codewords(X3, centroids, labels, exact=not n_iter)
    else:
        labels = np.array(labels, dtype=code_dtype(centroids.shape[1]))
    active = np.arange(M)
    for it in range(n_iter):
        if not active.size:
            break
        for m in active:
            centroids[m] = _update_centroids(X3[:, m], labels[:, m], centroids[m])[0]
        if it == n_iter - 1:
            break  # the last labels are computed exactly below, or not at all
        new = np.empty((n, active.size), dtype=labels.dtype)
        _nearest_codewords(X3 if active.size == M else X3[:, active], centroids[active], new, exact=False)
        changed = (new != labels[:, active]).any(axis=0)
        labels[:, active] = new
        active = active[changed]
    if not exact_labels:
        return centroids, None
    if n_iter:  # the iterations' labels are the float32 winners; the returned ones are exact
        _nearest_codewords(X3, centroids, labels)
    return centroids, labels


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
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    check_magnitude(X)
    M = codebooks.shape[0]
    return lloyd(split_subspaces(X, M).transpose(1, 0, 2), codebooks, codes, n_iter=n_iter)


def train_codebooks(X, M, K, *, n_iter=_KMEANS_ITER, max_samples=None, init="k-means++", random_state=None):
    """Learn PQ codebooks by k-means in each subspace.

    Parameters
    ----------
    X : ndarray of shape (n, M * ds), float
        Training vectors, ``n >= K``.
    M : int
        Number of subspaces.
    K : int
        Number of codewords per subspace.
    n_iter : int, default=12
        Most Lloyd iterations (update, then encode) per subspace; a subspace
        stops earlier when no code changes (:func:`lloyd`).
    max_samples : int, default=None
        If given and ``n > max_samples``, k-means runs on a random subset of
        this many rows (``AQDNeighbors`` passes ``256 * K``, faiss' default
        ``max_points_per_centroid``).
    init : {"k-means++", "random"}, default="k-means++"
        The start: :func:`kmeans_plusplus` in each subspace, among at most
        ``max(4096, 16 * K)`` of the rows drawn at random; or ``K`` distinct
        rows drawn at random (as faiss does: as good on smooth data, up to
        18 % worse on standardized digits).
    random_state : int, RandomState instance or None, default=None
        Seeds the start and the subsampling.

    Returns
    -------
    codebooks : ndarray of shape (M, K, ds), float32

    Notes
    -----
    The defaults were chosen with ``benchmarks/bench_build.py``'s data
    (``--sweep`` prints the error and seconds by start and ``n_iter``)
    (64-d Gaussian mixture, M = 8, K = 256, 65,536 training rows, the
    quantization error measured on 200,000 items, one thread) and with
    digits and Fashion-MNIST: the previous version (k-means++ on all rows,
    up to 20 iterations) reached 27.13 in 7.8 s on the mixture; from a
    random start, 10, 12, 15, 20 and 25 iterations reached 27.36, 27.30,
    27.23, 27.16 and 27.12. Fewer rows per codeword lose more than fewer
    iterations (32,768 rows, 25 iterations: 27.42). A random start is as
    good as k-means++ on the mixture but not on real data (standardized
    digits, M = 8, K = 64: 18 % above the previous error, k-means++ 0.4 %);
    k-means++ on all 65,536 rows costs 1.5 s, on a subset of 4,096 a tenth
    of that for the same error (see ``_INIT_ROWS``). 12 iterations keep the
    error within 1 % of the previous version's everywhere measured (0.6 %
    on the mixture), against faiss' ``IndexPQ.train`` (25 iterations,
    random start; faiss' 25 reach 27.11 on the mixture).

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
    if init not in ("random", "k-means++"):
        raise ValueError(f"init must be 'random' or 'k-means++'; got {init!r}.")
    rng = check_random_state(random_state)
    X = np.asarray(X)
    check_magnitude(X)
    X = X.astype(np.float32, copy=False)
    if max_samples is not None and X.shape[0] > max_samples:
        X = X[np.sort(rng.choice(X.shape[0], max_samples, replace=False))]
    X3 = split_subspaces(X, M).transpose(1, 0, 2)
    if X3.shape[0] < K:
        raise ValueError(f"k-means of K={K} codewords needs at least K rows; got {X3.shape[0]}.")
    if init == "random":
        start = np.stack([X3[np.sort(rng.choice(X3.shape[0], K, replace=False)), m] for m in range(M)])
    else:  # on a subset: its cost grows as n * K
        seeds = X3
        limit = max(_INIT_ROWS, _INIT_PER_CODEWORD * K)
        if X3.shape[0] > limit:
            seeds = X3[np.sort(rng.choice(X3.shape[0], limit, replace=False))]
        start = np.stack([kmeans_plusplus(seeds[:, m], K, rng) for m in range(M)])
    return lloyd(X3, start, n_iter=n_iter, exact_labels=False)[0]


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
