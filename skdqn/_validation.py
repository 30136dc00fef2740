"""Input checks shared by the estimators: clear, early errors."""

import numpy as np
from sklearn.exceptions import NotFittedError

from ._pq import code_dtype

_CHECK_ROWS = 1 << 20  # rows of a (memory-mapped) code array checked at a time

__all__ = ["check_n_subspaces", "check_codebooks", "check_codes"]


def check_n_subspaces(n_dims, M, *, what="n_features"):
    """Raise a ValueError unless ``n_dims`` splits into ``M`` equal subspaces.

    Parameters
    ----------
    n_dims : int
        Dimension of the vectors to quantize.
    M : int
        Number of subspaces.
    what : str, default="n_features"
        How the dimension is called in the message (e.g. ``"n_components"``).

    Examples
    --------
    >>> from skdqn._validation import check_n_subspaces
    >>> check_n_subspaces(64, 4)
    """
    if n_dims % M:
        raise ValueError(
            f"{what}={n_dims} is not divisible by M={M}: product quantization "
            "splits the vectors into M subspaces of equal dimension."
        )


def check_codebooks(codebooks, n_features):
    """Return codebooks as a float32 (M, K, n_features / M) array, or raise.

    Parameters
    ----------
    codebooks : array-like of shape (M, K, ds) or fitted estimator
        An array, or an estimator with a ``codebooks_`` attribute (fitted).
    n_features : int
        Dimension of the vectors the codebooks must quantize (``M * ds``).

    Returns
    -------
    codebooks : ndarray of shape (M, K, ds), float32
        A new array (the argument is never modified or aliased).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._validation import check_codebooks
    >>> check_codebooks(np.zeros((2, 4, 3)), 6).shape
    (2, 4, 3)
    """
    if hasattr(codebooks, "fit") and not isinstance(codebooks, np.ndarray):
        # Duck-typed on purpose: any object with fit() lends its codebooks_
        # once fitted. check_is_fitted would also demand scikit-learn tags and
        # raise an AttributeError for a lender that is not a BaseEstimator.
        if not hasattr(codebooks, "codebooks_"):
            raise NotFittedError(
                f"This {type(codebooks).__name__} instance is not fitted yet (it has no "
                "codebooks_ attribute). Call its 'fit' method before lending its "
                "codebooks, or pass codebooks=None to learn them."
            )
        source = f"{type(codebooks).__name__}.codebooks_"
        codebooks = codebooks.codebooks_
    else:
        source = "codebooks"
    try:
        arr = np.array(codebooks, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "codebooks must be None, an array of shape (M, K, n_features / M) or a fitted "
            f"estimator with a codebooks_ attribute; got {type(codebooks).__name__}."
        ) from exc
    if arr.ndim != 3:
        raise ValueError(
            f"{source} must have shape (M, K, n_features / M); got an array with "
            f"{arr.ndim} dimensions."
        )
    M, K, ds = arr.shape
    if M * ds != n_features:
        raise ValueError(
            f"{source} has shape {arr.shape}, which quantizes vectors of M * ds = {M * ds} "
            f"features, but X has n_features={n_features}."
        )
    if K < 1 or K > 2**16:
        raise ValueError(f"{source} has K={K} codewords per subspace; expected 1 <= K <= 65536.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{source} contains NaN or infinity.")
    return arr


def check_codes(codes, M, K, *, copy=True, name="codes"):
    """Return codes as an (n, M) array of :func:`~skdqn._pq.code_dtype` ``(K)``, or raise.

    Parameters
    ----------
    codes : array-like of shape (n, M), integer
        Values must lie in ``[0, K)``.
    M, K : int
        Subspaces and codewords per subspace.
    copy : bool, default=True
        If False, an array already of the right dtype is returned as it is
        (a :class:`numpy.memmap` stays memory-mapped; its values are checked
        in blocks, reading the file once, unless the dtype cannot exceed
        ``K - 1``).
    name : str, default="codes"
        Name used in error messages.

    Returns
    -------
    codes : ndarray of shape (n, M), uint8 or uint16

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._validation import check_codes
    >>> check_codes([[0, 3], [1, 2]], M=2, K=4)
    array([[0, 3],
           [1, 2]], dtype=uint8)
    """
    arr = codes if isinstance(codes, np.ndarray) else np.asarray(codes)
    if arr.dtype.kind not in "iu" or arr.dtype == bool:
        raise TypeError(f"{name} must be an integer array; got dtype {arr.dtype}.")
    if arr.ndim != 2 or arr.shape[1] != M:
        raise ValueError(f"{name} must have shape (n_samples, M={M}); got shape {arr.shape}.")
    if arr.size and not (arr.dtype.kind == "u" and np.iinfo(arr.dtype).max < K):
        for start in range(0, arr.shape[0], _CHECK_ROWS):
            block = arr[start : start + _CHECK_ROWS]
            if block.min() < 0 or block.max() >= K:
                raise ValueError(f"{name} must lie in [0, K={K}); found values outside it.")
    dtype = code_dtype(K)
    if not copy and arr.dtype == dtype:
        return arr
    return np.array(arr, dtype=dtype)
