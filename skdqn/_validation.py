"""Input checks shared by the estimators: clear, early errors."""

import numpy as np
from sklearn.exceptions import NotFittedError

__all__ = ["check_n_subspaces", "check_codebooks"]


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
