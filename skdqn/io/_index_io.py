"""Storing an AQDNeighbors index without pickle, and reading back its validated parts.

The bundle (:mod:`skdqn.io._io`: a directory or one ``.npz``, checksummed) holds

* ``codebooks.npy`` (M, K, ds) float32 and ``codes.npy`` (n, M) uint8/uint16;
* ``labels.npy`` when the index has labels (item order);
* with inverted lists (format version 2): ``coarse_centroids.npy``
  (n_lists, d) float32, ``list_offsets.npy`` (n_lists + 1,) int64 and
  ``list_ids.npy`` (n,) int64, the codes then being in list order;
* with a rotation (format version 3): ``rotation.npy`` (d, d) float32;
* with removed items (format version 4): ``removed.npy`` (n,) bool over the
  whole numbering, the header's ``n_rows`` (rows of codes stored, fewer
  than ``n_samples_fit`` after a compaction) and, for an exhaustive index
  whose rows are not items ``0 .. n - 1``, ``item_ids.npy`` (n_rows,) int64
  (with lists, ``list_ids.npy`` has ``n_rows`` entries);
* with the items' vectors for re-ranking (format version 4): ``vectors.npy``
  (n, d) float32, item order (memory-mapped with the codes);
* a JSON header: ``format``, ``format_version``, ``skdqn_version``, the
  parameters, ``codebooks_given``, ``n_samples_fit``, ``n_features_in``,
  ``feature_names_in``, ``lists``, ``list_metric``,
  ``coarse_centroids_given`` and ``rotation`` (null, ``"opq"``: learned by
  ``fit``, or ``"given"``: the ``rotation`` parameter was the array).

A bundle is written with the lowest version that holds it (1 without lists
or rotation), so older skdqn versions still read what they can.
:func:`read_index` validates every header field (type, allowed values,
agreement with the arrays' shapes and dtypes) and every array, and raises a
``ValueError`` that names the file and the field; files written by format
versions 1 (no inverted lists) and 2 (no rotation) still load. It returns
the parts (:class:`IndexParts`); the estimator builds its own state from
them (:meth:`skdqn.AQDNeighbors.load`): this module never writes an
estimator's attributes.
"""

from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ._io import check_header, format_header, read_bundle, write_bundle
from ..search._ivf import InvertedLists, check_centroid_magnitude
from .._pq import code_dtype
from .._validation import check_codebooks, check_codes, check_rotation

__all__ = ["save_index", "read_index", "IndexParts", "make_estimator", "FORMAT", "FORMAT_VERSION"]

FORMAT = "skdqn.AQDNeighbors"
FORMAT_VERSION = 4  # 1: exhaustive only; 2: + inverted lists; 3: + rotation (OPQ); 4: + removed items
_LIST_ARRAYS = ("coarse_centroids", "list_offsets", "list_ids")
_LIST_METRICS = ("l2", "inner_product")
_ROTATION_KINDS = (None, "opq", "given")


def _params_for_header(index):
    params = index.get_params(deep=False)
    params.pop("codebooks")
    params.pop("coarse_centroids")  # stored as an array when the index has lists
    params.pop("rotation")  # header field "rotation", the array in rotation.npy
    random_state = params["random_state"]
    if not (random_state is None or isinstance(random_state, Integral)):
        params["random_state"] = None  # a RandomState instance is not stored
    return {k: (int(v) if isinstance(v, Integral) and not isinstance(v, bool) else v) for k, v in params.items()}


def save_index(index, path, state=None):
    """Write a fitted index to ``path`` (see the module docstring for the layout).

    Parameters
    ----------
    index : AQDNeighbors
        Fitted.
    path : str or path-like
        A name ending in ``.npz`` writes one file; any other a directory.
    state : object, default=None
        The index's published fitted state (codebooks, codes, labels, lists,
        rotation), taken once by the caller; ``index._state()`` when None.
        Every array and header field is written from it, so a
        ``partial_fit`` publishing a new state meanwhile cannot mix into
        the bundle.

    Returns
    -------
    path : pathlib.Path

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from skdqn import AQDNeighbors
    >>> from skdqn.io._index_io import save_index, read_index
    >>> index = AQDNeighbors(M=2, K=8, random_state=0).fit(np.eye(16, 4))
    >>> path = save_index(index, os.path.join(tempfile.mkdtemp(), "i.npz"))
    >>> read_index(path).fields["n_samples_fit"]
    16
    """
    state = index._state() if state is None else state
    names = getattr(index, "feature_names_in_", None)
    lists, rotation = state.lists, state.rotation
    removed, vectors = state.removed, state.vectors
    version = 4 if removed is not None or vectors is not None else 3 if rotation is not None else 2 if lists is not None else 1
    header = {
        **format_header(FORMAT, version),
        "params": _params_for_header(index),
        "codebooks_given": index.codebooks is not None,
        "n_samples_fit": state.n_samples,
        "n_features_in": int(index.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "lists": lists is not None,
        "list_metric": None if lists is None else lists.metric,
        "coarse_centroids_given": index.coarse_centroids is not None,
    }
    if lists is not None and state.auto_probe is not None:
        header["auto_probe"] = int(state.auto_probe)  # what n_probe="auto" chose (ignored by older readers)
    if rotation is not None:
        header["rotation"] = "opq" if isinstance(index.rotation, str) else "given"
    arrays = {"codebooks": state.codebooks, "codes": state.codes}
    if vectors is not None:
        header["vectors"] = True
        arrays["vectors"] = vectors
    if removed is not None:
        header.update(removed=True, n_rows=state.n_rows)
        arrays["removed"] = removed
        if lists is None and getattr(state, "ids", None) is not None:
            arrays["item_ids"] = state.ids
    if state.labels is not None:
        labels = state.labels
        if labels.dtype.hasobject:
            # e.g. strings from a pandas column: stored as a numpy str/int array.
            labels = np.asarray(labels.tolist())
        arrays["labels"] = labels
    if lists is not None:
        arrays.update(coarse_centroids=lists.centroids, list_offsets=lists.offsets, list_ids=lists.ids)
    if rotation is not None:
        arrays["rotation"] = rotation
    return write_bundle(path, header, arrays)


# ----------------------------------------------------------------- loading
def _field(header, path, name, kinds, what):
    """``header[name]``, checked to be of ``kinds`` (bool is not an int)."""
    if name not in header:
        raise ValueError(f"{path}: the header has no field {name!r}.")
    value = header[name]
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        raise ValueError(f"{path}: header field {name!r} must be {what}; got {value!r}.")
    return value


def _check_fields(header, path, version):
    """The header's fields, each checked for its type."""
    fields = {
        "params": _field(header, path, "params", (dict,), "an object of parameters"),
        "codebooks_given": _field(header, path, "codebooks_given", (bool,), "true or false"),
        "n_samples_fit": _field(header, path, "n_samples_fit", (int,), "an integer"),
        "n_features_in": _field(header, path, "n_features_in", (int,), "an integer"),
        "feature_names_in": header.get("feature_names_in"),
        "lists": _field(header, path, "lists", (bool,), "true or false") if version >= 2 else False,
    }
    fields["coarse_centroids_given"] = fields["lists"] and _field(
        header, path, "coarse_centroids_given", (bool,), "true or false"
    )
    names = fields["feature_names_in"]
    if names is not None and (
        not isinstance(names, list) or len(names) != fields["n_features_in"]
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(
            f"{path}: header field 'feature_names_in' must be null or a list of "
            f"n_features_in={fields['n_features_in']} strings."
        )
    if fields["n_samples_fit"] < 0:
        raise ValueError(f"{path}: header field 'n_samples_fit' must be >= 0.")
    fields["list_metric"] = header.get("list_metric")
    if fields["lists"] and fields["list_metric"] not in _LIST_METRICS:
        raise ValueError(f"{path}: header field 'list_metric' must be one of {_LIST_METRICS}.")
    fields["removed"] = _field(header, path, "removed", (bool,), "true or false") if version >= 4 and "removed" in header else False
    fields["vectors"] = _field(header, path, "vectors", (bool,), "true or false") if version >= 4 and "vectors" in header else False
    fields["n_rows"] = _field(header, path, "n_rows", (int,), "an integer") if fields["removed"] else fields["n_samples_fit"]
    if not 0 <= fields["n_rows"] <= fields["n_samples_fit"]:
        raise ValueError(f"{path}: header field 'n_rows' must be in [0, n_samples_fit].")
    fields["auto_probe"] = None  # n_probe="auto" measures it at the first search
    if fields["lists"] and "auto_probe" in header:
        fields["auto_probe"] = _field(header, path, "auto_probe", (int,), "an integer")
        if fields["auto_probe"] < 1:
            raise ValueError(f"{path}: header field 'auto_probe' must be >= 1.")
    fields["rotation"] = header.get("rotation") if version >= 3 else None
    if fields["rotation"] not in _ROTATION_KINDS:
        raise ValueError(f"{path}: header field 'rotation' must be one of {_ROTATION_KINDS}.")
    return fields


def make_estimator(cls, params, path):
    """``cls(**params)``, its parameters validated; errors name the file and field.

    Parameters
    ----------
    cls : type
        The estimator class, given by the caller (this module imports no
        estimator).
    params : dict
        Parameters read from a file's header.
    path : str or path-like
        Named in the errors.

    Returns
    -------
    estimator : cls
        Unfitted.

    Examples
    --------
    >>> from skdqn import AQDNeighbors
    >>> make_estimator(AQDNeighbors, {"M": 2}, "index.npz").M
    2
    """
    known = set(cls().get_params(deep=False)) - {"codebooks", "coarse_centroids", "rotation"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{path}: header field 'params' has unknown parameters {unknown}.")
    index = cls(**params)
    try:
        index._validate_params()
    except (ValueError, TypeError) as exc:  # sklearn's InvalidParameterError is both
        raise ValueError(f"{path}: header field 'params' is invalid: {exc}") from None
    return index


def _check_codes_array(codes, fields, codebooks, path, verify):
    M, K, _ = codebooks.shape
    n = fields["n_rows"]
    if codes.shape != (n, M) or codes.dtype != code_dtype(K):
        raise ValueError(
            f"{path}: codes have shape {codes.shape} and dtype {codes.dtype}; expected "
            f"({n}, {M}) and {code_dtype(K)}."
        )
    return check_codes(codes, M, K, copy=False)


def _check_lists(arrays, fields, path):
    """The inverted lists of a bundle, checked to describe a valid sorted layout."""
    missing = [name for name in _LIST_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{path} is incomplete: the header says it has lists, but {missing} are missing.")
    n, d = fields["n_rows"], fields["n_features_in"]
    centroids = np.asarray(arrays["coarse_centroids"])
    offsets, ids = np.asarray(arrays["list_offsets"]), arrays["list_ids"]
    if centroids.ndim != 2 or centroids.shape[1] != d or centroids.shape[0] < 1 or centroids.dtype != np.float32:
        raise ValueError(f"{path}: coarse_centroids must be float32 of shape (n_lists, {d}); got {centroids.shape}.")
    if not np.isfinite(centroids).all():
        raise ValueError(f"{path}: coarse_centroids contains NaN or infinity.")
    try:
        check_centroid_magnitude(centroids)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if offsets.shape != (centroids.shape[0] + 1,) or offsets.dtype != np.int64:
        raise ValueError(f"{path}: list_offsets must be int64 of shape ({centroids.shape[0] + 1},).")
    if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
        raise ValueError(f"{path}: list_offsets must rise from 0 to the rows stored, {n}.")
    if ids.shape != (n,) or ids.dtype != np.int64:
        raise ValueError(f"{path}: list_ids must be int64 of shape ({n},).")
    _check_ids(np.asarray(ids), offsets, path, fields["n_samples_fit"])
    return InvertedLists(np.array(centroids), np.array(offsets), ids, fields["list_metric"])


def _check_rotation_array(arrays, fields, path):
    """The bundle's rotation (float32, orthogonal), or None when the header says it has none."""
    if not fields["rotation"]:
        return None
    if "rotation" not in arrays:
        raise ValueError(f"{path} is incomplete: the header says it has a rotation, but rotation.npy is missing.")
    rotation = np.asarray(arrays["rotation"])
    if rotation.dtype != np.float32:
        raise ValueError(f"{path}: rotation must be float32; got {rotation.dtype}.")
    try:
        return check_rotation(rotation, fields["n_features_in"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: rotation.npy does not fit the header: {exc}") from None


def _check_ids(ids, offsets, path, n_items=None):
    """Item ids: at most once each, in ``[0, n_items)`` (each once when every item is stored), ascending within each list."""
    n = ids.shape[0]
    n_items = n if n_items is None else n_items
    if n and (ids.min() < 0 or ids.max() >= n_items or (np.bincount(ids, minlength=n_items) > 1).any()):
        if n == n_items:
            raise ValueError(f"{path}: list_ids must hold each item index 0 .. {n - 1} once.")
        raise ValueError(f"{path}: list_ids must hold item indices in 0 .. {n_items - 1}, each at most once.")
    rises = np.diff(ids) > 0
    rises[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < n)] - 1] = True  # list boundaries
    if not rises.all():
        raise ValueError(f"{path}: list_ids must ascend within each list.")


@dataclass(frozen=True)
class IndexParts:
    """What a saved index holds, every part validated: the estimator builds itself from it.

    Attributes
    ----------
    fields : dict
        The checked header fields: ``params`` (the parameters, without
        ``codebooks``, ``coarse_centroids`` and ``rotation``),
        ``codebooks_given``, ``coarse_centroids_given``, ``rotation`` (None,
        ``"opq"`` or ``"given"``), ``n_samples_fit``, ``n_features_in``,
        ``feature_names_in``, ``lists``, ``list_metric``.
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray or numpy.memmap of shape (n, M)
        In list order with inverted lists.
    labels : ndarray or None
    lists : InvertedLists or None
    rotation : ndarray of shape (d, d), float32, or None
    removed : ndarray of shape (n_samples_fit,), bool, or None
        The removed items (format version 4).
    ids : ndarray of shape (n_rows,), int64, or None
        The item of each row of an exhaustive index after a compaction.
    vectors : ndarray of shape (n_samples_fit, n_features_in), float32, or None
        The items' vectors, for re-ranking.
    """

    fields: dict
    codebooks: np.ndarray
    codes: np.ndarray
    labels: object
    lists: object
    rotation: object
    removed: object = None
    ids: object = None
    vectors: object = None


def read_index(path, mmap_mode=None, *, verify=True):
    """Read the parts of an index written by :func:`save_index`, every field and array validated.

    Parameters
    ----------
    path : str or path-like
    mmap_mode : {None, "r", "c"}, default=None
        As :meth:`skdqn.AQDNeighbors.load`.
    verify : bool, default=True
        Check the bundle's checksums (see :func:`skdqn.io._io.read_bundle`).

    Returns
    -------
    parts : IndexParts
        Validated on their own and against each other; the parameters are
        checked by the estimator that is built from them
        (:meth:`skdqn.AQDNeighbors.load`, with :func:`make_estimator`).

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from skdqn import AQDNeighbors
    >>> from skdqn.io._index_io import save_index, read_index
    >>> index = AQDNeighbors(M=2, K=8, n_lists=2, random_state=0).fit(np.eye(16, 4))
    >>> parts = read_index(save_index(index, os.path.join(tempfile.mkdtemp(), "i")), mmap_mode="r")
    >>> parts.lists.offsets.tolist() == index.list_offsets_.tolist(), parts.codes.shape
    (True, (16, 2))
    """
    header, arrays = read_bundle(path, mmap_mode=mmap_mode, verify=verify)
    version = check_header(header, path, FORMAT, FORMAT_VERSION, what="an AQDNeighbors index")
    fields = _check_fields(header, path, version)
    missing = {"codebooks", "codes"} - set(arrays)
    if missing:
        raise ValueError(f"{path} is incomplete: missing {sorted(missing)}.")
    extra = set(arrays) - {"codebooks", "codes", "labels"} - (set(_LIST_ARRAYS) if fields["lists"] else set())
    extra -= {"rotation"} if fields["rotation"] else set()
    extra -= {"removed", "item_ids"} if fields["removed"] else set()
    extra -= {"vectors"} if fields["vectors"] else set()
    if extra:
        raise ValueError(f"{path} holds arrays its header does not describe: {sorted(extra)}.")
    rotation = _check_rotation_array(arrays, fields, path)
    try:
        codebooks = check_codebooks(np.asarray(arrays["codebooks"]), fields["n_features_in"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: codebooks.npy does not fit the header: {exc}") from None
    codes = _check_codes_array(arrays["codes"], fields, codebooks, path, verify)
    lists = _check_lists(arrays, fields, path) if fields["lists"] else None
    labels = arrays.get("labels")
    if labels is not None and (labels.ndim not in (1, 2) or labels.shape[0] != fields["n_samples_fit"]):
        raise ValueError(f"{path}: labels of shape {labels.shape} for {fields['n_samples_fit']} items.")
    removed, ids = _check_removed(arrays, fields, lists, path) if fields["removed"] else (None, None)
    vectors = _check_vectors(arrays, fields, path) if fields["vectors"] else None
    return IndexParts(fields, codebooks, codes, labels, lists, rotation, removed, ids, vectors)


def _check_vectors(arrays, fields, path):
    """The items' vectors of a bundle: float32 of shape (n_samples_fit, n_features_in), finite (its first rows when memory-mapped)."""
    if "vectors" not in arrays:
        raise ValueError(f"{path} is incomplete: the header says it has vectors, but vectors.npy is missing.")
    vectors = arrays["vectors"]
    shape = (fields["n_samples_fit"], fields["n_features_in"])
    if vectors.shape != shape or vectors.dtype != np.float32:
        raise ValueError(f"{path}: vectors.npy must be float32 of shape {shape}; got {vectors.dtype} {vectors.shape}.")
    checked = vectors[: 1 << 16] if isinstance(vectors, np.memmap) else vectors
    if not np.isfinite(checked).all():
        raise ValueError(f"{path}: vectors.npy holds NaN or infinity.")
    return vectors


def _check_removed(arrays, fields, lists, path):
    """``(removed, item_ids)`` of a bundle with removed items, checked: every item not removed is stored."""
    n, n_rows = fields["n_samples_fit"], fields["n_rows"]
    removed = np.asarray(arrays.get("removed", np.zeros(0)))
    if removed.shape != (n,) or removed.dtype != bool:
        raise ValueError(f"{path}: removed.npy must be bool of shape (n_samples_fit,) = ({n},).")
    ids = None
    if lists is not None:
        stored = np.asarray(lists.ids)
    elif "item_ids" in arrays:
        ids = np.array(arrays["item_ids"])
        if ids.shape != (n_rows,) or ids.dtype != np.int64 or (n_rows and (ids[0] < 0 or ids[-1] >= n)) or (
            np.diff(ids) <= 0
        ).any():
            raise ValueError(f"{path}: item_ids.npy must be int64 of shape ({n_rows},), increasing, in [0, {n}).")
        stored = ids
    elif n_rows != n:
        raise ValueError(f"{path}: {n_rows} rows for {n} items, but no item_ids.npy says which.")
    else:
        stored = np.arange(n)
    held = np.zeros(n, dtype=bool)
    held[stored] = True
    if not held[~removed].all():
        raise ValueError(f"{path}: some items that were not removed are not stored.")
    return removed, ids
