"""Input checks shared by the estimators, the metrics and the CLI: clear, early errors.

Each check is written once here and used everywhere it applies: the codes
(:func:`check_codes`), enough samples for ``K`` codewords
(:func:`check_enough_samples`), labels of the right length
(:func:`check_y`), positive integers (:func:`check_positive_int`), torch
devices (:func:`check_device`) and rotations (:func:`check_rotation`); and
the fingerprint that tells whether a model and an index share their codebooks
(:func:`codebooks_fingerprint`).
"""

import hashlib
import numbers

import numpy as np
from sklearn.exceptions import NotFittedError

from ._labels import check_labels
from ._pq import check_magnitude, code_dtype

_CHECK_ROWS = 1 << 20  # rows of a (memory-mapped) code array checked at a time

__all__ = [
    "check_n_subspaces",
    "check_codebooks",
    "check_codes",
    "check_enough_samples",
    "check_y",
    "check_positive_int",
    "check_device",
    "check_rotation",
    "codebooks_fingerprint",
    "check_vectors",
    "as_vectors",
]

# Largest |R^T R - I| entry accepted for a given rotation: a float64
# orthogonal matrix rounded to float32 is orthogonal to about sqrt(d) * 6e-8.
ROTATION_TOL = 1e-5


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

    Raises
    ------
    ValueError
        For a wrong shape, NaN or infinity, or values so large that float32
        squared distances overflow (see :func:`skdqn._pq.check_magnitude`).

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
                f"This {type(codebooks).__name__} instance given as codebooks is not fitted yet "
                "(it has no codebooks_ attribute). An estimator given as the codebooks parameter "
                "is not clone-safe: sklearn.base.clone (and GridSearchCV, cross_validate) replace "
                "it by an unfitted copy. Pass the fitted model's codebooks as an array with "
                "AQDNeighbors.from_quantizer(fitted_model, ...), use skdqn.Retriever to train and "
                "index in one estimator, or pass codebooks=None to learn them by k-means."
            )
        source = f"{type(codebooks).__name__}.codebooks_"
        codebooks = codebooks.codebooks_
    else:
        source = "codebooks"
    try:
        # float64 first: values beyond float32 are refused below, not cast to inf.
        arr = np.array(codebooks, dtype=np.float64)
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
    check_magnitude(arr, n_features, name=source)
    return arr.astype(np.float32)


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
        raise TypeError(f"{name} must be integers in [0, K={K}); got an array of dtype {arr.dtype}.")
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


def check_enough_samples(n_samples, K, *, who, action="train on"):
    """Raise a ValueError unless there are at least ``K`` samples to learn ``K`` codewords.

    Parameters
    ----------
    n_samples : int
        Number of samples the codebooks are learned from.
    K : int
        Codewords per subspace.
    who : str
        Name of the estimator, for the message.
    action : str, default="train on"
        What the user should give more samples to (``"index"``, ``"train on"``).

    Examples
    --------
    >>> from skdqn._validation import check_enough_samples
    >>> check_enough_samples(300, 256, who="AQDNeighbors")
    """
    if n_samples < K:
        raise ValueError(
            f"{who} needs n_samples >= K to learn K={K} codewords per subspace; got "
            f"n_samples={n_samples}. Lower K or {action} more samples."
        )


def check_y(y, n_samples, *, allow_single_class=True):
    """Validate labels (see :func:`skdqn._labels.check_labels`) and their number.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_labels)
        Class labels or a (dense or sparse) label indicator matrix.
    n_samples : int
        Number of samples of the ``X`` that ``y`` labels.
    allow_single_class : bool, default=True
        If False, every sample having the same label is an error.

    Returns
    -------
    labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
        The canonical labels (a new array).

    Examples
    --------
    >>> from skdqn._validation import check_y
    >>> check_y([0, 1, 1], 3)
    array([0, 1, 1])
    """
    labels = check_labels(y, allow_single_class=allow_single_class)
    # labels.shape[0], not len(y): len() is undefined for sparse y.
    if labels.shape[0] != n_samples:
        raise ValueError(f"y has {labels.shape[0]} entries but X has n_samples={n_samples}.")
    return labels


def check_positive_int(value, name, *, allow_none=False):
    """Return ``value`` as an int if it is a positive integer (not a bool), else raise.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Name of the argument, for the message.
    allow_none : bool, default=False
        Let ``None`` through (returned as it is).

    Returns
    -------
    value : int or None

    Examples
    --------
    >>> from skdqn._validation import check_positive_int
    >>> check_positive_int(3, "k")
    3
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_device(device, *, name="device"):
    """The :class:`torch.device` for a ``device`` parameter, with a clear error if unusable.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``
        or ``"cuda:N"``.
    name : str, default="device"
        Name of the argument, for the message.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        For a string torch does not parse, or a CUDA device on a machine
        without CUDA.

    Examples
    --------
    >>> from skdqn._validation import check_device
    >>> check_device("cpu")
    device(type='cpu')
    """
    import torch  # here, not at the top: the search side of skdqn runs without torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{name}={device!r} but CUDA is not available on this machine; use 'auto' "
            "(CUDA when present, else CPU) or 'cpu'."
        )
    return resolved


def check_rotation(rotation, n_features, *, name="rotation"):
    """Return a rotation as a float32 ``(n_features, n_features)`` orthogonal array, or raise.

    Parameters
    ----------
    rotation : array-like of shape (n_features, n_features)
        An orthogonal matrix ``R`` (``R^T R = I``); vectors are rotated as
        ``X @ R``.
    n_features : int
        Dimension of the vectors.
    name : str, default="rotation"
        Name of the argument, for the messages.

    Returns
    -------
    rotation : ndarray of shape (n_features, n_features), float32
        A new array (the argument is never modified or aliased).

    Raises
    ------
    TypeError
        If ``rotation`` is not numeric.
    ValueError
        For a wrong shape, NaN or infinity, or a matrix that is not
        orthogonal: some entry of ``R^T R - I`` above ``1e-5`` in absolute
        value (computed in float64 from the float32 values).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._validation import check_rotation
    >>> check_rotation(np.eye(2)[::-1], 2)
    array([[0., 1.],
           [1., 0.]], dtype=float32)
    >>> check_rotation(2 * np.eye(2), 2)
    Traceback (most recent call last):
    ...
    ValueError: rotation is not orthogonal: max |R^T R - I| = 3 (at most 1e-05 allowed). ...
    """
    try:
        arr = np.array(rotation, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be None, 'opq' or an orthogonal array of shape (n_features, n_features); "
            f"got {type(rotation).__name__}."
        ) from exc
    if arr.shape != (n_features, n_features):
        raise ValueError(
            f"{name} must have shape (n_features, n_features) = ({n_features}, {n_features}); "
            f"got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity.")
    arr = arr.astype(np.float32)
    R = arr.astype(np.float64)
    error = float(np.abs(R.T @ R - np.eye(n_features)).max()) if n_features else 0.0
    if not error <= ROTATION_TOL:
        raise ValueError(
            f"{name} is not orthogonal: max |R^T R - I| = {error:.3g} (at most {ROTATION_TOL:g} "
            "allowed). Orthogonalize it, e.g. with scipy.linalg.polar(R)[0] or the Q of np.linalg.qr."
        )
    return arr


def codebooks_fingerprint(codebooks):
    """A short, stable digest of codebooks: equal for the same float32 numbers, shape included.

    Parameters
    ----------
    codebooks : array-like of shape (M, K, ds)

    Returns
    -------
    fingerprint : str
        ``"sha256:"`` and 16 hex digits.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn._validation import codebooks_fingerprint
    >>> C = np.zeros((2, 4, 3), dtype=np.float32)
    >>> codebooks_fingerprint(C) == codebooks_fingerprint(C.astype(np.float64))
    True
    >>> codebooks_fingerprint(C) == codebooks_fingerprint(C + 1)
    False
    """
    C = np.ascontiguousarray(codebooks, dtype=np.float32)
    digest = hashlib.sha256(repr(C.shape).encode())
    digest.update(C.tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def as_vectors(X):
    """Full-precision vectors as an index stores them (re-ranking): float32, C order, a copy unless already so.

    >>> as_vectors([[1, 2]]).dtype
    dtype('float32')
    """
    return np.ascontiguousarray(X, dtype=np.float32)


def check_vectors(vectors, n_samples, n_features, name="vectors"):
    """Full-precision vectors of ``n_samples`` items: float32 C-ordered (not copied when already so), finite.

    Parameters
    ----------
    vectors : array-like or numpy.memmap of shape (n_samples, n_features)
    n_samples, n_features : int
        The shape expected.
    name : str, default="vectors"
        Named in errors.

    Returns
    -------
    vectors : ndarray or numpy.memmap, float32
        A memory-mapped array is checked for NaN on its first 65,536 rows
        only (a file is not read whole).

    Examples
    --------
    >>> import numpy as np
    >>> check_vectors(np.zeros((2, 3)), 2, 3).dtype
    dtype('float32')
    """
    if not hasattr(vectors, "shape") or not hasattr(vectors, "dtype"):
        vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape != (n_samples, n_features):
        raise ValueError(f"{name} must have shape (n_samples, n_features) = ({n_samples}, {n_features}); got {vectors.shape}.")
    if vectors.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a numeric array; got dtype {vectors.dtype}.")
    if vectors.dtype != np.float32 or not vectors.flags.c_contiguous:
        vectors = as_vectors(vectors)
    checked = vectors[: 1 << 16] if isinstance(vectors, np.memmap) else vectors  # a file is not read whole
    if not np.isfinite(checked).all():
        raise ValueError(f"{name} holds NaN or infinity.")
    return vectors
