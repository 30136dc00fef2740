"""Optimized product quantization (OPQ): a learned rotation before PQ.

OPQ (Ge, He, Ke and Sun, "Optimized Product Quantization", CVPR 2013, the
non-parametric solution) looks for an orthogonal ``R`` (``R^T R = I``) and
PQ codebooks ``C`` that minimise the quantization error of the rotated data,

    min_{R, C, h} sum_i ||x_i R - C h_i||^2,

by alternating the two closed-form steps:

* with ``R`` fixed, a few Lloyd iterations of PQ on ``X R``
  (:func:`skdqn._pq.refine_codebooks`, hot-started from the previous
  codebooks);
* with the codes fixed, ``R`` by the orthogonal Procrustes solution
  (:func:`procrustes`): the SVD of the ``d x d`` matrix ``X^T Y``, ``Y`` the
  reconstructions.

Shapes and dtypes: data ``X`` ``(n, d)`` float; ``rotation`` ``(d, d)``, the
rotated data being ``X @ rotation`` (row vectors; faiss'
:class:`faiss.OPQMatrix` stores the transpose, ``A = rotation.T``, and
computes ``A x``); codebooks ``(M, K, d / M)`` float32 in the rotated space.

The iterations follow faiss' ``OPQMatrix``: 50 alternations, 40 k-means
iterations for the first PQ and 4 for each later one, the rotation trained
on centred data (the codebooks absorb the mean afterwards, so no offset is
stored), from a random rotation. Other starts (the eigenvalue allocation
of :func:`eigen_allocation`, Ge et al.'s parametric solution; plain PQ's
axes; or several, the best run kept) are options of :func:`train_opq`.
"""

from contextlib import nullcontext

import numpy as np
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

from ._pq import (
    check_magnitude,
    decode,
    quantization_error,
    refine_codebooks,
    split_subspaces,
    train_codebooks,
)

__all__ = ["random_rotation", "eigen_allocation", "procrustes", "rotate", "train_opq"]

# Rows rotated per matrix product: about 2^22 multiply-adds (1,024 rows at
# d = 64, 16 at d >= 512). The last block is zero-padded to this size, so
# every row goes through the same product and its result never depends on
# the other rows of the call; a single query pays for at most that.
_ROTATE_WORK = 1 << 22
_ROTATE_ROWS = (16, 1024)  # bounds of the block
# Below this many multiply-adds per product (n * d * d), the alternation runs
# its BLAS calls on one thread: products and SVDs that small gain nothing
# from threads, and on a busy machine their synchronisation cost 10x (digits,
# M = 8 on 2 shared cores: 16.5 s with OpenBLAS' threads, 1.8 s on one).
_SINGLE_THREAD_WORK = 1 << 28


def random_rotation(d, random_state=None):
    """A random orthogonal ``d x d`` matrix (uniform over the orthogonal group).

    Parameters
    ----------
    d : int
        Dimension.
    random_state : int, RandomState instance or None, default=None
        Seeds the Gaussian draw.

    Returns
    -------
    rotation : ndarray of shape (d, d), float64
        ``rotation.T @ rotation`` is the identity to float64 precision.

    Notes
    -----
    The Q factor of the QR decomposition of a standard Gaussian matrix, its
    columns' signs fixed by the signs of R's diagonal (Mezzadri, 2007), as
    faiss' ``OPQMatrix`` starts (``float_randn`` then ``matrix_qr``).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._opq import random_rotation
    >>> R = random_rotation(4, random_state=0)
    >>> bool(np.allclose(R.T @ R, np.eye(4)))
    True
    """
    rng = check_random_state(random_state)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    return q * signs


def procrustes(X, Y):
    """The orthogonal ``R`` that minimises ``||X R - Y||_F`` (orthogonal Procrustes).

    Parameters
    ----------
    X : ndarray of shape (n, d), float
    Y : ndarray of shape (n, d), float

    Returns
    -------
    rotation : ndarray of shape (d, d), float64
        ``U V^T`` for the SVD ``X^T Y = U S V^T`` (Schoenemann, 1966).

    Notes
    -----
    Reference: ``||X R - Y||^2 = ||X||^2 + ||Y||^2 - 2 tr(R^T X^T Y)``, and
    the trace of ``R^T U S V^T`` over orthogonal ``R`` is largest, ``sum S``,
    at ``R = U V^T``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._opq import procrustes
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> procrustes(X, X[:, ::-1]).round(6)
    array([[0., 1.],
           [1., 0.]])
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    u, _, vt = np.linalg.svd(X.T @ Y)
    return u @ vt


def rotate(X, rotation):
    """The rotated vectors ``X @ rotation``, each row independent of the others.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32 or float64
    rotation : ndarray of shape (d, d), float

    Returns
    -------
    X_rot : ndarray of shape (n, d), dtype of ``X`` (float64 for other dtypes)
        Computed in float64 and rounded once. Rows are multiplied in blocks
        of a fixed size for ``d`` (16 to 1,024 rows; the last block
        zero-padded), so a row's result is the same whether it is rotated
        alone or among others: a query gets the same neighbours alone or in
        a batch.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._opq import rotate
    >>> rotate(np.array([[1.0, 2.0]]), np.array([[0.0, 1.0], [1.0, 0.0]]))
    array([[2., 1.]])
    """
    X = np.asarray(X)
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    R = np.asarray(rotation, dtype=np.float64)
    n, d = X.shape
    out = np.empty((n, R.shape[1]), dtype=dtype)
    step = int(np.clip(2 ** int(np.log2(max(1, _ROTATE_WORK // max(1, d * d)))), *_ROTATE_ROWS))
    block = np.zeros((step, d))
    for start in range(0, n, step):
        rows = min(step, n - start)
        block[:rows] = X[start : start + rows]
        block[rows:] = 0.0
        out[start : start + rows] = (block @ R)[:rows]
    return out


def eigen_allocation(X, M):
    """The rotation of "eigenvalue allocation": principal axes shared out to balance the subspaces.

    Parameters
    ----------
    X : ndarray of shape (n, d), float
        Training vectors (centred inside).
    M : int
        Number of subspaces, ``d`` divisible by ``M``.

    Returns
    -------
    rotation : ndarray of shape (d, d), float64
        Orthogonal; its columns are the principal axes of ``X``, subspace by
        subspace (``d / M`` columns each).

    Notes
    -----
    The parametric solution of OPQ (Ge et al., 2013, section 4): for Gaussian
    data the error of PQ is lowest when the products of the variances of the
    subspaces are equal. Axes are taken by decreasing variance, each into
    the subspace, not yet full, of smallest product so far (sums of
    logarithms; variances floored at ``1e-12`` times the largest, so
    constant directions count as tiny, not zero). Reference::

        w, V = eigh(cov(X)); order = argsort(-w)
        for j in order:
            m = argmin(log_product[not full]); subspace[m].append(j)
        rotation = V[:, concatenate(subspace)]

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._opq import eigen_allocation
    >>> X = np.random.default_rng(0).normal(size=(500, 4)) * [8.0, 4.0, 2.0, 1.0]
    >>> np.abs(eigen_allocation(X, 2)).argmax(axis=0).tolist()  # axes (0, 3) and (1, 2) paired
    [0, 3, 1, 2]
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    w, V = np.linalg.eigh(Xc.T @ Xc)
    order = np.argsort(-w, kind="stable")
    logs = np.log(np.maximum(w[order], 1e-12 * max(float(w.max()), np.finfo(np.float64).tiny)))
    d = X.shape[1]
    ds = d // M
    members = [[] for _ in range(M)]
    log_product = np.zeros(M)
    for j, log_w in zip(order, logs):
        open_ = [m for m in range(M) if len(members[m]) < ds]
        m = min(open_, key=lambda m: log_product[m])  # ties: the first subspace
        members[m].append(j)
        log_product[m] += log_w
    return V[:, [j for group in members for j in group]]


_STARTS = ("identity", "eigen", "random")


def _start(name, Xc, M, rng):
    """The starting rotation ``name`` (one of ``_STARTS``) for the centred data ``Xc``."""
    if name == "identity":
        return np.eye(Xc.shape[1])
    if name == "eigen":
        return eigen_allocation(Xc, M)
    return random_rotation(Xc.shape[1], rng)


def _alternate(X, R, M, K, n_iter, n_iter_pq, n_iter_pq_first, rng):
    """One OPQ run from the rotation ``R``: (float32 rotation, codebooks, training error)."""
    mean = X.mean(axis=0)
    Xc = X - mean
    codebooks = train_codebooks(Xc @ R, M, K, n_iter=n_iter_pq_first, random_state=rng)
    for it in range(n_iter):
        codebooks, codes = refine_codebooks(Xc @ R, codebooks, n_iter=n_iter_pq if it else 0)
        R = procrustes(Xc, decode(codes, codebooks))
    R32 = R.astype(np.float32)
    shift = split_subspaces((mean @ R32.astype(np.float64))[None, :], M)[:, 0]  # (M, ds)
    start = (codebooks + shift[:, None, :]).astype(np.float32)
    Z = rotate(X, R32)
    codebooks, codes = refine_codebooks(Z, start, n_iter=n_iter_pq)
    codebooks = codebooks.astype(np.float32, copy=False)
    return R32, codebooks, quantization_error(Z, codebooks, codes)


def train_opq(
    X, M, K, *, n_iter=50, n_iter_pq=4, n_iter_pq_first=40, init="random",
    max_samples=None, random_state=None,
):
    """Learn an OPQ rotation and the PQ codebooks of the rotated data.

    Parameters
    ----------
    X : ndarray of shape (n, d), float
        Training vectors, ``n >= K``, ``d`` divisible by ``M``.
    M : int
        Number of subspaces.
    K : int
        Number of codewords per subspace.
    n_iter : int, default=50
        Alternations (PQ, then rotation) of each run; faiss' ``OPQMatrix.niter``.
    n_iter_pq : int, default=4
        Lloyd iterations of each PQ after the first (hot-started from the
        previous codebooks); faiss' ``niter_pq``.
    n_iter_pq_first : int, default=40
        Lloyd iterations of the first PQ of a run (k-means++ start); faiss'
        ``niter_pq_0``.
    init : str or tuple of str, default="random"
        Starting rotations, one run each; the run of lowest final error on
        the training vectors is kept (ties: the first). ``"random"``:
        :func:`random_rotation`, as faiss starts. ``"eigen"``:
        :func:`eigen_allocation`, the parametric solution (Ge et al.'s
        start). ``"identity"``: plain PQ's axes (the error then stays near
        or below plain PQ's).
    max_samples : int, default=None
        If given and ``n > max_samples``, the training runs on a random subset
        of this many rows (faiss: ``256 * 256``).
    random_state : int, RandomState instance or None, default=None
        Seeds the subset, the random start and the k-means++ starts.

    Returns
    -------
    rotation : ndarray of shape (d, d), float32
        Orthogonal; the codes are those of ``rotate(X, rotation)``.
    codebooks : ndarray of shape (M, K, d / M), float32
        PQ codebooks in the rotated space, refined (``n_iter_pq`` Lloyd
        iterations) on the uncentred rotated data after the last rotation.

    Notes
    -----
    Reference loop of one run (``Xc`` the centred training data)::

        R = start
        C = train_codebooks(Xc @ R, M, K, n_iter=n_iter_pq_first)
        for it in range(n_iter):
            if it:
                C, _ = refine_codebooks(Xc @ R, C, n_iter=n_iter_pq)
            R = procrustes(Xc, decode(encode(Xc @ R, C), C))
        C = refine_codebooks(X @ R, C + mean @ R, n_iter=n_iter_pq)

    Each step can only lower ``||Xc R - C h||^2`` (up to the re-seeding of
    empty codewords), but only to a local minimum that depends on the start.
    Measured, 20 iterations: on a random rotation of anisotropic Gaussian
    data (2,000 x 16, ``M = 4``, ``K = 16``) the eigenvalue allocation ends
    at 2.70, random starts at 2.98 to 4.02 depending on the seed (faiss'
    OPQ: 3.10), plain PQ's axes at 3.57. On digits, plain PQ's axes
    (neighbouring pixels) end lowest (``M = 4``, ``K = 256``: 3.89, the
    eigenvalue allocation 6.69, random 7.03 to 7.15). Yet a lower error is
    not a better ranking of labelled images: on the standardised pixels of
    ``benchmarks/reproduce_paper.py`` (Fashion-MNIST, quick sizes, 32 bits,
    5 iterations), the eigenvalue start ends at a training error of 124
    and a MAP of 0.439, random starts at 131 and 0.4475 (faiss' OPQ: 165
    and 0.449), and on digits plain PQ's axes rank worst. The random start
    is the default: it ranks as faiss' OPQ does, the baseline of the
    paper.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._opq import train_opq
    >>> X = np.random.default_rng(0).normal(size=(300, 8)) @ np.diag([4.0, 3, 2, 1, 1, 1, 1, 1])
    >>> R, C = train_opq(X, M=2, K=8, n_iter=5, random_state=0)
    >>> R.shape, C.shape, bool(np.allclose(R.T @ R, np.eye(8), atol=1e-5))
    ((8, 8), (2, 8, 4), True)
    """
    starts = (init,) if isinstance(init, str) else tuple(init)
    if not starts or any(name not in _STARTS for name in starts):
        raise ValueError(f"init must be one of {_STARTS} or a non-empty tuple of them; got {init!r}.")
    rng = check_random_state(random_state)
    X = np.asarray(X)
    check_magnitude(X)
    if max_samples is not None and X.shape[0] > max_samples:
        X = X[np.sort(rng.choice(X.shape[0], max_samples, replace=False))]
    X = X.astype(np.float64)
    best = None
    small = X.shape[0] * X.shape[1] ** 2 < _SINGLE_THREAD_WORK
    with threadpool_limits(limits=1, user_api="blas") if small else nullcontext():
        for name in starts:
            R = _start(name, X - X.mean(axis=0), M, rng)
            run = _alternate(X, R, M, K, n_iter, n_iter_pq, n_iter_pq_first, rng)
            if best is None or run[2] < best[2]:
                best = run
    return best[0], best[1]
