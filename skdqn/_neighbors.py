"""AQDNeighbors: a NearestNeighbors-style index over product-quantization codes."""

from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .io._faiss import (
    from_faiss_index,
    from_faiss_ivf,
    from_faiss_pretransform,
    is_faiss_ivf,
    is_faiss_pretransform,
    to_faiss_index,
    to_faiss_ivf,
    to_faiss_idmap,
    to_faiss_pretransform,
)
from .search import _tuning
from .search._filters import check_filter, only_items
from .search._refine import refine
from .search._index import AUTO_QUERIES, SearchPlan, build_index, choose_n_probe
from .io._index_io import make_estimator, read_index, save_index
from .search._ivf import InvertedLists, check_n_lists, make_lists
from ._labels import label_kind
from .search._metric import METRIC_NAMES, get_metric, metric_for_faiss
from ._opq import rotate, train_opq
from ._pq import code_dtype, decode, encode, train_codebooks
from .search._scoring import score_codes
from .search._search import aqd_kneighbors, get_kernel
from .search._tables import CodeQueries, VectorQueries
from ._validation import (
    as_vectors,
    check_vectors,
    check_codebooks,
    check_codes,
    check_enough_samples,
    check_n_subspaces,
    check_rotation,
    check_y,
    codebooks_fingerprint,
)

__all__ = ["AQDNeighbors"]



def _as_sparse_interface(graph):
    """Return a CSR graph in the sparse interface sklearn is configured for."""
    if get_config().get("sparse_interface") == "sparray":
        return sp.csr_array(graph)
    return graph


def _object_array(list_of_arrays):
    out = np.empty(len(list_of_arrays), dtype=object)
    out[:] = list_of_arrays
    return out




class _ArraySummary:
    """Stands for an array parameter in a repr: ``array(shape=(4, 256, 8), dtype=float32)``."""

    def __init__(self, array):
        self._text = f"array(shape={tuple(array.shape)}, dtype={array.dtype})"

    def __repr__(self):
        return self._text


def _drop_self(dist, ind, items):
    """Each row's top ``k - 1`` without its own item ``items[row]``: (dist, ind) of shape (n, k - 1).

    When the item is not in its own k-list (more than k - 1 items rank
    before it, e.g. tied duplicates of smaller index), the first k - 1
    entries are already the top of the other items: the last entry goes.
    """
    n, k = ind.shape
    keep = ind != items[:, None]
    keep[keep.all(axis=1), k - 1] = False
    return dist[keep].reshape(n, k - 1), ind[keep].reshape(n, k - 1)


def _rotated(X, rotation):
    """``X`` rotated (``X @ rotation``, each row on its own), or ``X`` itself without a rotation."""
    return X if rotation is None else rotate(X, rotation)


def _lent_codebooks(quantizer, method):
    """The float32 codebooks of a fitted quantizer (a Pipeline: of its last step), checked."""
    model = quantizer.steps[-1][1] if hasattr(quantizer, "steps") else quantizer
    if isinstance(model, (np.ndarray, str)) or not hasattr(model, "fit"):
        raise TypeError(
            f"{method} takes a fitted DeepQuantizer (or a Pipeline ending with one); got "
            f"{type(quantizer).__name__}. Given codebooks as an array: AQDNeighbors(codebooks=array)."
        )
    if not hasattr(model, "codebooks_"):
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet (it has no codebooks_ "
            f"attribute): call its fit method before {method}."
        )
    shape = np.shape(model.codebooks_)
    if len(shape) != 3:
        raise ValueError(f"{type(model).__name__}.codebooks_ must have shape (M, K, ds); got shape {shape}.")
    return check_codebooks(model.codebooks_, shape[0] * shape[2])


def _append_labels(old, labels):
    """The stored labels ``old`` followed by ``labels``, or a clear error if they do not mix."""
    if labels.ndim != old.ndim or labels.shape[1:] != old.shape[1:]:
        raise ValueError(
            f"y has the layout {labels.shape[1:] or '1-D class labels'} but the index "
            f"holds {old.shape[1:] or '1-D class labels'}; use the same label layout."
        )
    if label_kind(labels) != label_kind(old):
        raise TypeError(
            f"y holds {label_kind(labels)} labels (dtype {labels.dtype}) but the index holds "
            f"{label_kind(old)} labels (dtype {old.dtype}); a {label_kind(labels)} label never "
            "equals a stored one. Convert y to the type of the labels given to fit."
        )
    return np.concatenate([old, labels])


def _given_rotation(rotation, n_features):
    """A rotation given with codes (``from_codes``, ``from_faiss``): None or a checked array."""
    if isinstance(rotation, str):
        raise ValueError(
            f"rotation={rotation!r} learns a rotation from data, which an index built from codes "
            "does not have; pass rotation=None or the orthogonal array of shape (n_features, "
            "n_features) the codes were made with."
        )
    return None if rotation is None else check_rotation(rotation, n_features)


def _is_auto(n_probe):
    """Whether the ``n_probe`` parameter is ``"auto"``."""
    return isinstance(n_probe, str) and n_probe == "auto"


def _sample(n, rng, size=AUTO_QUERIES):
    """Sorted rows of a random sample of ``min(size, n)`` of ``n`` (the queries that tune ``n_probe="auto"``)."""
    return np.sort(rng.choice(n, min(size, n), replace=False))


def _ranked_items(state):
    """``(codes, labels)`` of the items not removed, in item order: the database :meth:`AQDNeighbors.score` ranks.

    An exhaustive index never removed from gives its arrays as they are; inverted
    lists (codes in list order) and removals give a copy (``M`` bytes per item).
    """
    if state.removed is None and state.lists is None and getattr(state, "ids", None) is None:
        return state.codes, state.labels
    items = state.row_items()
    rows = np.argsort(items, kind="stable")
    if state.removed is not None:
        rows = rows[~state.removed[items[rows]]]
    return np.asarray(state.codes[rows]), None if state.labels is None else state.labels[items[rows]]


def _state_attribute(read, doc):
    """A read-only attribute read from the published state (AttributeError when unfitted)."""

    def getter(self):
        state = self.__dict__.get("_fitted")
        if state is None:
            raise AttributeError(f"{type(self).__name__} has no fitted state yet: call fit first.")
        return read(state)

    return property(getter, doc=doc)


class AQDNeighbors(BaseEstimator):
    """Nearest neighbours over product-quantization codes, searched by AQD.

    A compressed, drop-in replacement for
    :class:`sklearn.neighbors.NearestNeighbors`: ``fit`` stores each item as
    ``M`` codeword indices (``M`` bytes per item with ``K = 256``), and queries
    stay real-valued. For each query an ``(M, K)`` lookup table of distances
    between its subvectors and the codewords is computed once; the distance to
    an item is the sum of ``M`` table entries (Asymmetric Quantizer Distance,
    AQD). The scan is pure numpy by default (``backend``), works in blocks of
    bounded size, and breaks ties by database index.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours for :meth:`kneighbors`.
    radius : float, default=1.0
        Range for :meth:`radius_neighbors`, in the units of ``metric``.
    M : int, default=4
        Number of subspaces; ``n_features`` must be divisible by ``M``.
        Ignored when ``codebooks`` is given (its shape decides).
    K : int, default=256
        Codewords per subspace (``K <= 256`` stores one byte per subspace).
        Ignored when ``codebooks`` is given.
    codebooks : None, array-like of shape (M, K, n_features / M) or fitted estimator, default=None
        ``None`` learns PQ codebooks by k-means in each subspace on the data
        given to :meth:`fit` (k-means++ start, seeded by ``random_state``). An
        array is used as given. To index a fitted
        :class:`~skdqn.DeepQuantizer`'s embeddings, build the index with
        :meth:`from_quantizer` (its codebooks as this array, so the index can
        be cloned), or use :class:`~skdqn.Retriever`. A fitted estimator with
        a ``codebooks_`` attribute is still accepted and lends its codebooks
        at ``fit``, but is not clone-safe: :func:`~sklearn.base.clone` (and
        so :class:`~sklearn.model_selection.GridSearchCV`) copies it unfitted,
        and ``fit`` then raises a ``NotFittedError`` (a ValueError) pointing
        to :meth:`from_quantizer`.
    metric : {"euclidean", "sqeuclidean", "inner_product"}, default="euclidean"
        ``"euclidean"``: square root of the AQD, as
        :class:`~sklearn.neighbors.NearestNeighbors` would return.
        ``"sqeuclidean"``: the AQD itself, as in the paper.
        ``"inner_product"``: ranks by ``<q, C h>``, largest first, as the
        authors' released evaluation code does; distances are returned as the
        negated inner products, so that ascending order still means best
        first, and ``radius`` bounds ``-<q, C h>``.
    n_jobs : int, default=None
        Number of parallel workers. A task is a block of queries searched
        against a shard of the database; with fewer query blocks than
        workers the database is split into shards whose top-k lists are
        merged (:func:`~skdqn.merge_kneighbors`). Threads by default (numpy
        releases the GIL in the scan); inside a
        :func:`joblib.parallel_backend` context, that backend (e.g.
        ``"dask"`` to use a cluster). ``None`` means 1 unless in such a
        context; ``-1`` uses all processors. Results do not depend on it.
    backend : {"numpy", "torch"}, default="numpy"
        The scan kernel. ``"numpy"``: the pure-numpy
        scan (integer tables, then an exact float32 re-rank; one query at a
        time by pair look-ups). ``"torch"``: the scan in torch on ``device``
        (on the CPU the same integer scan, float16 sums; on CUDA the float32
        sums); the same neighbours, tie order included, and the same float32
        distances (on CUDA up to float32 rounding). Codes move to the
        device a chunk at a time (at most 256 MiB of device memory per
        task). With inverted lists on CUDA, the torch kernel scans each
        probed list once for all the queries of a block that probe it; on
        the CPU, numpy's list scan serves them (same results; the per-list
        torch kernel measured 0.3-0.4x its speed there).
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Device of the torch kernel (``backend="torch"`` only): ``"auto"``
        is CUDA when available, else the CPU. CUDA on a machine without it
        raises a ValueError at :meth:`fit` and at search time.
    n_lists : int, default=None
        ``None``: exhaustive search, every query scans every code. An integer
        builds inverted lists (IVF): a coarse quantizer of ``n_lists``
        centroids (k-means on at most ``256 * n_lists`` of the vectors given
        to :meth:`fit`, seeded by ``random_state``; or ``coarse_centroids``),
        each item in the list of its nearest centroid; a query then scans only
        the ``n_probe`` lists nearest to it. Items keep the same PQ codes, so
        every distance returned is the exact AQD of the exhaustive search;
        only candidates are pruned. About ``4 * sqrt(n_samples)`` is usual.
    n_probe : int or "auto", default="auto"
        Lists scanned per query (inverted lists only), read at search time:
        ``set_params(n_probe=...)`` takes effect at the next query. More lists
        find more of the exhaustive neighbours and cost more;
        ``n_probe == n_lists`` is the exhaustive search, tie order included.
        ``"auto"``: the fewest lists (1, 2, 4, ...) whose recall@10 against
        the exhaustive search reaches 0.95 on 256 items sampled when the
        lists are built (``n_probe_``; :meth:`measure_recall` measures any
        setting). faiss' default of one list lost a quarter of the
        neighbours on Fashion-MNIST with 256 lists.
        A query whose lists hold fewer than ``n_neighbors`` items scans the
        next nearest lists too, so :meth:`kneighbors` always returns
        ``n_neighbors`` items (faiss pads with -1 instead).
    coarse_centroids : array-like of shape (n_lists, n_features), default=None
        Coarse centroids to use as given instead of learning them
        (``n_lists`` may then be None). With a ``rotation``, in the rotated
        space (as ``coarse_centroids_``).
    rotation : None, "opq" or array-like of shape (n_features, n_features), default=None
        An orthogonal rotation ``R`` applied to items and queries (``X @ R``)
        before the codes and the lookup tables; every search then runs on
        the rotated vectors, and distances are unchanged by a rotation.
        ``None``: no rotation (plain PQ). ``"opq"``: Optimized Product
        Quantization (Ge et al., 2013): :meth:`fit` learns ``R`` and the
        codebooks together (needs ``codebooks=None``), alternating PQ on
        ``X @ R`` and ``R`` by orthogonal Procrustes (an SVD of ``d x d``),
        50 alternations with 4 k-means iterations each (40 for the first
        PQ) from a random rotation, as faiss' ``OPQMatrix``, on at most
        ``256 * K`` vectors, seeded by ``random_state``. It costs about 50
        PQ trainings and 50 SVDs. An array: that
        rotation, orthogonal to ``1e-5``; the codebooks are learned (or
        given) in the rotated space. Helps when the features are correlated
        or of unequal variance; see the user guide.
    refine_factor : int, default=None
        Re-rank by exact distance (as faiss' ``IndexRefineFlat``): a
        :meth:`kneighbors` asks the codes for ``refine_factor * n_neighbors``
        candidates by AQD and keeps the ``n_neighbors`` nearest by their
        exact distance to the query (ties by index), which also breaks the
        ties of items sharing a code. Needs the items' vectors: :meth:`fit`
        and :meth:`partial_fit` keep them (float32, ``4 * n_features``
        bytes per item, saved with the index) when ``refine_factor`` is set,
        or :meth:`from_codes` takes them (``vectors=``, e.g. a memory-mapped
        array, not copied). Radius searches and :meth:`score` stay by AQD.
    random_state : int, RandomState instance or None, default=None
        Seeds codebook learning (when ``codebooks`` is None; with
        ``rotation="opq"``, the rotation too), then the coarse k-means. The
        same seed gives the same codes, with or without lists.

    Attributes
    ----------
    codebooks_ : ndarray of shape (M, K, n_features / M), float32
        The codebooks used to encode and search (in the rotated space, with
        a ``rotation``).
    rotation_ : ndarray of shape (n_features, n_features), float32, or None
        The orthogonal rotation applied before encoding and searching
        (``X @ rotation_``), learned with ``rotation="opq"``; None without
        a rotation.
    codes_ : ndarray or numpy.memmap of shape (n_samples_fit, M), uint8 or uint16
        The stored items (memory-mapped when loaded with
        ``load(path, mmap_mode="r")``); in list order with inverted lists
        (row ``j`` holds item ``list_ids_[j]``).
    n_samples_fit_ : int
        Number of items ever indexed: item indices are ``0 ..
        n_samples_fit_ - 1``, removed ones (:meth:`remove`) included.
    removed_ : ndarray of shape (n_removed,), intp
        The removed items, ascending (never returned by a search).
    n_probe_ : int or None
        Lists a search probes (``n_probe``, or the value ``"auto"`` chose);
        None without inverted lists.
    coarse_centroids_ : ndarray of shape (n_lists, n_features), float32, or None
        The coarse quantizer of the inverted lists (in the rotated space,
        with a rotation); None for an exhaustive index.
    list_offsets_ : ndarray of shape (n_lists + 1,), int64, or None
        With inverted lists, ``codes_`` is stored sorted by list: list ``l`` is
        rows ``list_offsets_[l]:list_offsets_[l + 1]``.
    list_ids_ : ndarray of shape (n_samples_fit,), int64, or None
        With inverted lists, the item index of each row of ``codes_`` (items
        ascending within a list). Every public result uses item indices.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen during :meth:`fit`, when ``X`` has string
        column names.

    See Also
    --------
    DeepQuantizer : Learns embeddings and codebooks for this index.
    sklearn.neighbors.NearestNeighbors : The exact, uncompressed equivalent.

    Notes
    -----
    With ``X=None``, :meth:`kneighbors` and :meth:`radius_neighbors` query the
    indexed items themselves. The index keeps only codes, so the query for
    item ``i`` is its reconstruction ``C h_i`` (its distance to itself is 0),
    and item ``i`` is left out of its own list, as in
    :class:`~sklearn.neighbors.NearestNeighbors`. Unlike scikit-learn, which
    searches ``k + 1`` neighbours and drops the first one when the item is
    not among them (it may be, when more than ``k`` duplicates precede it),
    exactly item ``i`` is left out: each list is the top ``k`` of all the
    other items, ties by smaller index, so a shorter list is always a prefix
    of a longer one.

    Distances are float32, the precision of the codebooks and tables.

    Growing, storing and moving an index: :meth:`partial_fit` appends items
    encoded with the existing codebooks; :meth:`save` and :meth:`load` write
    and read a directory or a single ``.npz`` file (numpy arrays and a JSON
    header, no pickle), and ``load(..., mmap_mode="r")`` searches codes that
    stay on disk; :meth:`to_faiss` and :meth:`from_faiss` convert to and
    from :class:`faiss.IndexPQ`.

    Threads: the fitted state is one immutable object, replaced whole by
    ``fit``, :meth:`partial_fit` and taken once by every other call, so a
    search, ``score`` or :meth:`save` running during a :meth:`partial_fit`
    answers for the index before it or after it, never a mix. Two
    :meth:`partial_fit` calls must not overlap (the user guide's section
    "Concurrency" lists what may run together).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn import AQDNeighbors
    >>> X = np.random.default_rng(0).normal(size=(500, 16))
    >>> index = AQDNeighbors(n_neighbors=3, M=4, K=16, random_state=0).fit(X)
    >>> index.codes_.shape, index.codes_.dtype
    ((500, 4), dtype('uint8'))
    >>> dist, ind = index.kneighbors(X[:2])
    >>> ind.shape
    (2, 3)
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, None, None, closed="both")],
        "M": [Interval(Integral, 1, None, closed="left")],
        "K": [Interval(Integral, 2, 2**16, closed="both")],
        "codebooks": "no_validation",
        "metric": [StrOptions(set(METRIC_NAMES))],
        "n_jobs": [None, Integral],
        "backend": [StrOptions({"numpy", "torch"})],
        "device": [str],
        "n_lists": [None, Interval(Integral, 1, None, closed="left")],
        "n_probe": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "coarse_centroids": "no_validation",
        "rotation": [None, StrOptions({"opq"}), "array-like"],
        "refine_factor": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_neighbors=5,
        radius=1.0,
        *,
        M=4,
        K=256,
        codebooks=None,
        metric="euclidean",
        n_jobs=None,
        backend="numpy",
        device="auto",
        n_lists=None,
        n_probe="auto",
        coarse_centroids=None,
        rotation=None,
        refine_factor=None,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.M = M
        self.K = K
        self.codebooks = codebooks
        self.metric = metric
        self.n_jobs = n_jobs
        self.backend = backend
        self.device = device
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.coarse_centroids = coarse_centroids
        self.rotation = rotation
        self.refine_factor = refine_factor
        self.random_state = random_state

    def __repr__(self, N_CHAR_MAX=700):
        """scikit-learn's repr, with array parameters summarised by their shape and dtype.

        A loaded index holds its codebooks (and coarse centroids) as
        parameters; printing their numbers would fill a screen.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> AQDNeighbors(codebooks=np.zeros((4, 256, 8), dtype=np.float32), n_neighbors=3)
        AQDNeighbors(codebooks=array(shape=(4, 256, 8), dtype=float32), n_neighbors=3)
        """
        params = self.get_params(deep=False)
        arrays = {name: _ArraySummary(value) for name, value in params.items() if isinstance(value, np.ndarray)}
        if not arrays:
            return super().__repr__(N_CHAR_MAX)
        shown = type(self)(**{**params, **arrays})  # only the parameters are printed
        return BaseEstimator.__repr__(shown, N_CHAR_MAX)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn or take the codebooks, then encode and store ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Items to index. Not modified.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
            Class labels or a multi-label indicator matrix. Not needed for
            search; kept for :meth:`score` (mean average precision).

        Returns
        -------
        self : AQDNeighbors
            The fitted index.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(100, 8))
        >>> index = AQDNeighbors(M=2, K=8, random_state=0).fit(X, y=np.arange(100) % 3)
        >>> index.n_samples_fit_, index.codebooks_.shape
        (100, (2, 8, 4))
        """
        return self._fit(X, y)

    def _fit(self, X, y):
        metric = get_metric(self.metric)
        metric.check_radius(self.radius)
        self._kernel()  # an unusable device fails now, not at the first query
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_samples, n_features = X.shape
        centroids, n_lists = check_n_lists(self.n_lists, self.coarse_centroids, n_features)
        rotation = self._check_rotation(n_features)
        rng = check_random_state(self.random_state)  # codebooks (and rotation) first, then the lists
        if self.codebooks is None:
            check_n_subspaces(n_features, self.M)
            check_enough_samples(n_samples, self.K, who=type(self).__name__, action="index")
            if isinstance(rotation, str):
                rotation, codebooks = train_opq(X, self.M, self.K, max_samples=256 * self.K, random_state=rng)
            else:
                codebooks = train_codebooks(
                    _rotated(X, rotation), self.M, self.K, max_samples=256 * self.K, random_state=rng
                )
        else:
            codebooks = check_codebooks(self.codebooks, n_features)
        labels = None if y is None else check_y(y, n_samples)
        vectors = None if self.refine_factor is None else as_vectors(X)
        X = _rotated(X, rotation)
        codes = encode(X, codebooks)
        lists = None
        if n_lists is not None:
            lists = make_lists(X, n_lists, centroids, metric.faiss, rng)
            codes = codes[lists.ids]
        self._set_fitted(codebooks, codes, labels, lists, rotation, vectors=vectors)
        if lists is not None and _is_auto(self.n_probe):  # an integer n_probe needs no measurement
            self._choose_probe(VectorQueries(X[_sample(X.shape[0], rng)], codebooks, metric.table))
        return self

    def _measure_probe(self, state):
        """``n_probe="auto"`` on an index built with an integer (or loaded without the choice): measured now.

        On up to 256 stored items' reconstructions (seeded by ``random_state``);
        published with the state unless another state was published meanwhile.
        """
        rows = _sample(state.n_rows, check_random_state(self.random_state))
        queries = CodeQueries(state.codes[rows], state.codebooks, get_metric(self.metric).table)
        chosen = choose_n_probe(state, queries, self._plan(state, n_probe=1))
        if self.__dict__.get("_fitted") is state:
            self._fitted = replace(state, auto_probe=chosen)
        return chosen

    def _choose_probe(self, queries):
        """Publish the state with the ``n_probe="auto"`` choice measured on ``queries`` (:func:`~skdqn.search._index.choose_n_probe`)."""
        state = self._state()
        plan = self._plan(state, n_probe=1)
        self._fitted = replace(state, auto_probe=choose_n_probe(state, queries, plan))

    def _check_rotation(self, n_features):
        """The ``rotation`` parameter checked: None, ``"opq"`` or a float32 orthogonal array."""
        if self.rotation is None:
            return None
        if isinstance(self.rotation, str):
            if self.codebooks is not None:
                raise ValueError(
                    "rotation='opq' learns the rotation together with the codebooks, so it needs "
                    "codebooks=None; with given codebooks, pass the rotation they were learned "
                    "with (an orthogonal array) or rotation=None."
                )
            return self.rotation
        return check_rotation(self.rotation, n_features)

    def _set_fitted(self, codebooks, codes, labels, lists, rotation=None, *, removed=None, ids=None, vectors=None):
        """Publish the fitted index (:func:`~skdqn.search._index.build_index`) with one assignment (codes in list order with lists)."""
        index = build_index(codebooks, codes, labels, lists, rotation, removed=removed, ids=ids)
        self._fitted = index if vectors is None else index.with_vectors(vectors)

    def _state(self):
        """The published fitted state, taken once by each call; NotFittedError when unfitted."""
        state = self.__dict__.get("_fitted")
        if state is None:
            check_is_fitted(self)  # raises sklearn's NotFittedError
        return state

    def __sklearn_is_fitted__(self):
        """Fitted once a state is published (by fit, partial_fit, from_codes or load)."""
        return self.__dict__.get("_fitted") is not None

    def __setstate__(self, state):
        """Unpickle, also from the one-attribute-each layout of earlier versions (``codes_``, ...)."""
        if "codes_" in state and "_fitted" not in state:
            old = {name: state.pop(name, None) for name in (
                "codebooks_", "codes_", "_fit_labels", "coarse_centroids_", "list_offsets_",
                "list_ids_", "_list_metric", "rotation_", "n_samples_fit_")}
            lists = None if old["coarse_centroids_"] is None else InvertedLists(
                old["coarse_centroids_"], old["list_offsets_"], old["list_ids_"], old["_list_metric"])
            state["_fitted"] = build_index(old["codebooks_"], old["codes_"], old["_fit_labels"], lists, old["rotation_"])
        super().__setstate__(state)

    def _lists(self):
        """The inverted lists of the published state, or None for an exhaustive index."""
        return self._state().lists

    def _with_labels(self, labels):
        """Publish the current state with ``labels`` (item order, already checked) in place of the stored ones."""
        self._fitted = replace(self._state(), labels=labels)

    codebooks_ = _state_attribute(lambda s: s.codebooks, "The codebooks (see the class docstring).")
    codes_ = _state_attribute(lambda s: s.codes, "The stored codes (see the class docstring).")
    n_samples_fit_ = _state_attribute(lambda s: s.n_samples, "Number of items in the index.")
    rotation_ = _state_attribute(lambda s: s.rotation, "The rotation, or None.")
    coarse_centroids_ = _state_attribute(
        lambda s: None if s.lists is None else s.lists.centroids, "The coarse centroids, or None."
    )
    list_offsets_ = _state_attribute(lambda s: None if s.lists is None else s.lists.offsets, "List offsets, or None.")
    list_ids_ = _state_attribute(lambda s: None if s.lists is None else s.lists.ids, "Item of each row, or None.")
    _fit_labels = _state_attribute(lambda s: s.labels, "The labels of the items, or None.")
    n_probe_ = property(
        lambda self: None if self._state().lists is None else self._n_probe(self._state()),
        doc="Lists a search probes (n_probe, or the value 'auto' chose); None without inverted lists.",
    )
    removed_ = _state_attribute(
        lambda s: np.flatnonzero(np.zeros(0, bool) if s.removed is None else s.removed),
        "The removed items' indices, ascending (empty when none was removed).",
    )

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Append items to the index, encoded with its existing codebooks.

        The first call on an unfitted index is :meth:`fit` (it learns or
        takes the codebooks). Later calls encode ``X`` with ``codebooks_``
        (nothing is refitted) and append the codes; the new items get the
        indices ``n_samples_fit_, n_samples_fit_ + 1, ...``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Items to add. Not modified.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
            Their labels: required when the index was built with labels
            (for :meth:`score`), refused when it was built without.

        Returns
        -------
        self : AQDNeighbors
            The grown index.

        Notes
        -----
        Appending copies the stored codes (``M`` bytes per item); add items
        in large batches. A memory-mapped index (from :meth:`load`) is read
        into memory by the first append.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(300, 8))
        >>> index = AQDNeighbors(M=2, K=16, random_state=0).partial_fit(X[:200])
        >>> index.partial_fit(X[200:]).n_samples_fit_
        300
        """
        state = self.__dict__.get("_fitted")
        if state is None:
            return self._fit(X, y)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        n_new = X.shape[0]
        labels = None
        if state.labels is not None:
            if y is None:
                raise ValueError(
                    "y is required: the index was built with labels (for score), so every "
                    "item added needs one."
                )
            labels = _append_labels(state.labels, check_y(y, n_new))
        elif y is not None:
            raise ValueError(
                "y was given but the index was built without labels; refit with fit(X, y) to "
                "keep labels for score."
            )
        new = None if state.vectors is None else np.concatenate([np.asarray(state.vectors), as_vectors(X)])
        X = _rotated(X, state.rotation)
        codes = encode(X, state.codebooks)
        grown = state.extend(codes, X, state.labels if labels is None else labels)
        self._fitted = grown if new is None else grown.with_vectors(new)  # one assignment
        return self

    def remove(self, indices):
        """Remove items: they never appear in a result again; every other item keeps its index.

        Removal marks the items (a tombstone per item, as vector databases
        do); searches skip them, and their storage is reclaimed by
        :meth:`compact`. Indices are never reused: items added later with
        :meth:`partial_fit` get new ones, after every index ever given.

        Parameters
        ----------
        indices : array-like of int, or boolean mask of shape ``(n_samples_fit_,)``
            Items to remove (removing an item twice is allowed).

        Returns
        -------
        self : AQDNeighbors

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.arange(16.0).reshape(8, 2)
        >>> index = AQDNeighbors(M=1, K=8).fit(X)
        >>> index.remove([0]).kneighbors([[0.0, 1.0]], n_neighbors=2, return_distance=False)
        array([[1, 2]])
        """
        state = self._state()
        items = check_filter(indices, state.n_samples, 1, name="indices").shared
        if items is None:
            raise ValueError("indices must be 1-D: item indices or a boolean mask of shape (n_samples_fit_,).")
        self._fitted = state.without(items)  # one assignment
        return self

    def compact(self):
        """Reclaim the storage of removed items; every item keeps its index.

        Returns
        -------
        self : AQDNeighbors
            Its codes hold only the items not removed (a memory-mapped
            index is read into memory). Results do not change.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> index = AQDNeighbors(M=1, K=8).fit(np.arange(16.0).reshape(8, 2)).remove([0, 5])
        >>> index.compact().codes_.shape, index.n_samples_fit_
        ((6, 1), 8)
        """
        self._fitted = self._state().compact()
        return self

    def measure_recall(self, X=None, n_neighbors=10, *, n_queries=256, random_state=None):
        """Recall@k of the current search setting (``n_probe``) against the exhaustive search.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries; None: ``n_queries`` indexed items sampled (their
            reconstructions).
        n_neighbors : int, default=10
        n_queries : int, default=256
            Items sampled when ``X`` is None.
        random_state : int, RandomState instance or None, default=None
            Seeds that sample.

        Returns
        -------
        recall : float
            The share of the neighbours returned at or below their query's
            exhaustive k-th AQD (a tie with the k-th counts as found); 1.0
            for an exhaustive index.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(2000, 8))
        >>> index = AQDNeighbors(M=2, K=16, n_lists=32, n_probe=32, random_state=0).fit(X)
        >>> index.measure_recall(random_state=0)
        1.0
        """
        state = self._state()
        k = self._n_neighbors(n_neighbors)
        if state.lists is None:
            return 1.0
        table = get_metric(self.metric).table
        if X is None:
            alive = state.alive()
            rows = np.flatnonzero(np.isin(state.row_items(), alive[_sample(alive.size, check_random_state(random_state), n_queries)]))
            queries = CodeQueries(state.codes[rows], state.codebooks, table)
        else:
            queries = self._queries(state, X)
        codes, _ = _ranked_items(state)
        if k > codes.shape[0]:
            raise ValueError(f"n_neighbors={k} is larger than the {codes.shape[0]} items of the index.")
        exact = aqd_kneighbors(queries, codes, k, n_jobs=self.n_jobs, kernel=self._kernel())[0][:, -1]
        dist, _ = self._knn(state, queries, k, self._filter(state, None, queries.n_queries))
        return float(np.mean(dist <= exact[:, None]))

    def encode(self, X):
        """Codes of ``X`` under the index's codebooks (nearest codeword per subspace).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Vectors to encode.

        Returns
        -------
        codes : ndarray of shape (n_samples, M), uint8 or uint16

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(100, 4))
        >>> index = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
        >>> bool((index.encode(X) == index.codes_).all())
        True
        """
        state = self._state()
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return encode(_rotated(X, state.rotation), state.codebooks)

    def decode(self, codes):
        """Reconstructions ``C h`` of codes: the vectors the index actually compares.

        With a rotation, the reconstructions are rotated back to the original
        space (``C h @ rotation_.T``).

        Parameters
        ----------
        codes : array-like of shape (n_samples, M), integer in ``[0, K)``

        Returns
        -------
        X_rec : ndarray of shape (n_samples, n_features), float32

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> index = AQDNeighbors(M=1, K=2).fit([[0.0], [0.0], [4.0]])
        >>> index.decode(index.encode([[3.5], [0.5]])).ravel().tolist()
        [4.0, 0.0]
        """
        state = self._state()
        M, K, _ = state.codebooks.shape
        decoded = decode(check_codes(codes, M, K), state.codebooks)
        return decoded if state.rotation is None else rotate(decoded, state.rotation.T)

    # ------------------------------------------------------ storage, faiss
    def save(self, path):
        """Write the index to a directory or a single ``.npz`` file, without pickle.

        The codebooks, the codes, the labels (when the index has them) and the
        inverted lists (when it has them) are stored as ``.npy`` arrays, the
        parameters and sizes in a small JSON header, each with a checksum;
        :meth:`load` reads them back, memory-mapped if asked. The new index is
        written beside the old one and swapped in, so saving over an index
        that is memory-mapped (even the one being saved) is safe, and an
        interrupted save leaves the old index intact.

        Parameters
        ----------
        path : str or path-like
            A name ending in ``.npz`` writes one file (an uncompressed ZIP
            archive, which :func:`numpy.load` can also open); any other name
            a directory with ``header.json``, ``codebooks.npy``, ``codes.npy``,
            ``labels.npy`` and, with inverted lists, ``coarse_centroids.npy``,
            ``list_offsets.npy`` and ``list_ids.npy``. An existing directory
            is replaced whole only if it is a saved bundle or empty.

        Returns
        -------
        path : pathlib.Path

        Notes
        -----
        Labels held as Python objects (e.g. strings from a pandas column) are
        stored as a numpy string or number array.

        Examples
        --------
        >>> import numpy as np, os, tempfile
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(100, 4))
        >>> index = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
        >>> path = index.save(os.path.join(tempfile.mkdtemp(), "index.npz"))
        >>> loaded = AQDNeighbors.load(path, mmap_mode="r")
        >>> bool((loaded.kneighbors(X[:3])[1] == index.kneighbors(X[:3])[1]).all())
        True
        """
        return save_index(self, path, self._state())

    @classmethod
    def load(cls, path, mmap_mode=None, *, verify=True):
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The directory or ``.npz`` file given to :meth:`save`.
        mmap_mode : {None, "r", "c"}, default=None
            ``None`` reads the codes into memory. ``"r"`` memory-maps them
            (and the labels): they stay on disk and searches stream them
            block by block, so the index may be larger than memory. ``"c"``
            maps copy-on-write.
        verify : bool, default=True
            Check every array's and the header's checksum (memory-mapped
            arrays are read once for it). ``False`` skips that read for a
            large memory-mapped index; the header and shapes are still
            validated.

        Returns
        -------
        index : AQDNeighbors
            Fitted, with the saved parameters. If the saved index was given
            its codebooks (array or estimator), the loaded one holds them as
            the ``codebooks`` array, so a clone refits with the same codebooks.

        Raises
        ------
        ValueError
            If the file is not an intact index written by skdqn: a damaged or
            truncated file, a header field of the wrong type or value, arrays
            that disagree with the header; the message names the file and the
            field. Nothing is ever unpickled.

        Examples
        --------
        >>> import numpy as np, os, tempfile
        >>> from skdqn import AQDNeighbors
        >>> index = AQDNeighbors(M=2, K=8, random_state=0).fit(np.eye(16, 4))
        >>> folder = index.save(os.path.join(tempfile.mkdtemp(), "index"))
        >>> AQDNeighbors.load(folder).n_samples_fit_
        16
        """
        if mmap_mode not in (None, "r", "c"):
            raise ValueError(
                f"mmap_mode must be None, 'r' or 'c'; got {mmap_mode!r} (a loaded index is "
                "grown with partial_fit, in memory, not written in place)."
            )
        parts = read_index(path, mmap_mode=mmap_mode, verify=verify)
        return cls._from_saved(parts, path)

    @classmethod
    def _from_saved(cls, parts, path):
        """A fitted index from the validated parts of a saved bundle (:func:`skdqn.io._index_io.read_index`)."""
        fields = parts.fields
        index = make_estimator(cls, fields["params"], path)
        M, K, _ = parts.codebooks.shape
        if not fields["codebooks_given"] and (index.M, index.K) != (M, K):
            raise ValueError(
                f"{path}: header parameters M={index.M}, K={index.K} disagree with the codebooks' (M={M}, K={K})."
            )
        if fields["codebooks_given"]:
            index.codebooks = parts.codebooks
        if fields["coarse_centroids_given"]:
            index.coarse_centroids = parts.lists.centroids
        if parts.rotation is not None:
            index.rotation = "opq" if fields["rotation"] == "opq" else parts.rotation
        index.n_features_in_ = fields["n_features_in"]
        if fields["feature_names_in"] is not None:
            index.feature_names_in_ = np.array(fields["feature_names_in"], dtype=object)
        index._set_fitted(parts.codebooks, parts.codes, parts.labels, parts.lists, parts.rotation,
                          removed=parts.removed, ids=parts.ids, vectors=parts.vectors)
        if parts.lists is not None:
            index._fitted = replace(index._fitted, auto_probe=fields["auto_probe"])
        return index

    @classmethod
    def from_codes(cls, codebooks, codes, y=None, *, list_assignments=None, vectors=None, **params):
        """An index over given codes, e.g. written to a memory-mapped file chunk by chunk.

        Parameters
        ----------
        codebooks : array-like of shape (M, K, ds) or fitted estimator
            As the ``codebooks`` parameter; a fitted estimator's
            ``codebooks_`` (e.g. ``from_codes(dq, dq.codes_, y)`` for a
            :class:`~skdqn.DeepQuantizer`'s training set) become the index's
            ``codebooks`` array, so the index can be cloned.
        codes : array-like of shape (n_samples, M), integer in ``[0, K)``
            Used as they are (not copied) when already of the right dtype, so
            a :class:`numpy.memmap` stays on disk (an index with inverted
            lists stores a copy sorted by list).
        y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
            Labels of the items, for :meth:`score`.
        list_assignments : array-like of shape (n_samples,), int, default=None
            With inverted lists (``n_lists`` or ``coarse_centroids`` in
            ``params``): the list of each item, used as given. By default each
            item goes to the list nearest to its reconstruction ``C h``
            (decoded block by block); the coarse centroids, when not given,
            are learned by k-means on at most ``256 * n_lists``
            reconstructions, or, with ``list_assignments``, are the means of
            each list's reconstructions.
        vectors : array-like of shape (n_samples, M * ds), default=None
            The items' full-precision vectors (in the space of the queries,
            before any ``rotation``), for re-ranking (``refine_factor``): used
            as they are when float32 and C-ordered (a :class:`numpy.memmap`
            stays on disk), else copied so.
        **params
            Other parameters of the index (``n_neighbors``, ``metric``,
            ``n_lists``, ``coarse_centroids``, ...). ``rotation``: None, or
            the orthogonal rotation of shape ``(M * ds, M * ds)`` the codes
            were made with (queries are then rotated by it); ``"opq"`` is
            refused, there is no data to learn it from.

        Returns
        -------
        index : AQDNeighbors
            Fitted; ``n_features_in_ = M * ds``.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> C = np.arange(8, dtype=np.float32).reshape(1, 4, 2)
        >>> index = AQDNeighbors.from_codes(C, np.array([[3], [0]], dtype=np.uint8), n_neighbors=1)
        >>> index.kneighbors([[0.0, 1.0]])
        (array([[0.]], dtype=float32), array([[1]]))
        """
        index = cls(codebooks=codebooks, **params)
        index._validate_params()
        M_K_ds = np.shape(getattr(codebooks, "codebooks_", codebooks))
        if len(M_K_ds) != 3:
            raise ValueError(f"codebooks must have shape (M, K, ds); got shape {M_K_ds}.")
        M, K, ds = M_K_ds
        rotation = _given_rotation(index.rotation, M * ds)
        lent = hasattr(codebooks, "codebooks_")
        codebooks = check_codebooks(codebooks, M * ds)
        if lent:  # an estimator's codebooks are kept as the array parameter: clone refits with them
            index.codebooks = codebooks.copy()
        codes = check_codes(codes, M, K, copy=False)
        labels = None if y is None else check_y(y, codes.shape[0])
        if vectors is not None:
            vectors = check_vectors(vectors, codes.shape[0], M * ds)
        centroids, n_lists = check_n_lists(index.n_lists, index.coarse_centroids, M * ds)
        if list_assignments is not None and n_lists is None:
            raise ValueError("list_assignments needs n_lists or coarse_centroids in the parameters.")
        lists = None
        if n_lists is not None:
            metric = get_metric(index.metric)
            decoded = CodeQueries(codes, codebooks, metric.table)
            lists = make_lists(decoded, n_lists, centroids, metric.faiss, index.random_state, list_assignments)
            codes = codes[lists.ids]
            rows = _sample(codes.shape[0], check_random_state(index.random_state))
        index.n_features_in_ = M * ds
        index._set_fitted(codebooks, codes, labels, lists, rotation, vectors=vectors)
        if lists is not None and _is_auto(index.n_probe):
            index._choose_probe(CodeQueries(codes[rows], codebooks, metric.table))
        return index

    @classmethod
    def from_quantizer(cls, quantizer, **params):
        """An unfitted index over a fitted quantizer's codebooks, safe to clone.

        The index's ``codebooks`` parameter is a copy of the quantizer's
        ``codebooks_`` (an array, not the estimator), so
        :func:`~sklearn.base.clone`, :class:`~sklearn.model_selection.GridSearchCV`
        and ``cross_validate`` refit it with the same codebooks. Fit it on the
        quantizer's embeddings (``quantizer.transform(X)``); before querying
        it with another model at hand, :meth:`check_quantizer` tells whether
        that model's embeddings belong to this index.
        :class:`~skdqn.Retriever` does both steps (and the check) in one
        estimator, from raw inputs.

        Parameters
        ----------
        quantizer : DeepQuantizer or Pipeline
            Fitted; a :class:`~sklearn.pipeline.Pipeline` lends the codebooks
            of its last step (then fit the index on ``pipeline.transform(X)``).
            Any fitted object with a ``codebooks_`` attribute of shape
            ``(M, K, ds)`` works.
        **params
            Other parameters of the index (``n_neighbors``, ``metric``,
            ``n_lists``, ``n_probe``, ...); not ``codebooks``.

        Returns
        -------
        index : AQDNeighbors
            Unfitted; ``codebooks`` is a float32 array of shape ``(M, K, ds)``.

        Raises
        ------
        NotFittedError
            If ``quantizer`` has no ``codebooks_`` yet.
        TypeError
            If ``quantizer`` is not an estimator, or ``codebooks`` is in
            ``params``.
        ValueError
            For parameters the index refuses, e.g. ``rotation="opq"`` (which
            learns its own codebooks).

        Examples
        --------
        >>> from sklearn.base import clone
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import AQDNeighbors, DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=16, max_epochs=2, warmup_epochs=1, random_state=0)
        >>> dq = dq.fit(X[:500], y[:500])
        >>> index = AQDNeighbors.from_quantizer(dq, n_neighbors=3)
        >>> index
        AQDNeighbors(codebooks=array(shape=(2, 16, 8), dtype=float32), n_neighbors=3)
        >>> index = clone(index).fit(dq.transform(X[:500]), y[:500])  # clone-safe
        >>> index.check_quantizer(dq).kneighbors(dq.transform(X[500:502]))[1].shape
        (2, 3)
        """
        if "codebooks" in params:
            raise TypeError(
                "from_quantizer takes the codebooks from quantizer; pass the other parameters "
                "only (AQDNeighbors(codebooks=array) takes given codebooks)."
            )
        codebooks = _lent_codebooks(quantizer, "from_quantizer")
        index = cls(codebooks=codebooks, **params)
        index._validate_params()
        index._check_rotation(codebooks.shape[0] * codebooks.shape[2])  # "opq" is refused now, not at fit
        return index

    def check_quantizer(self, quantizer):
        """Raise unless ``quantizer`` has the codebooks this index was built with.

        An index holds codes of one model's embeddings; another model's
        embeddings (a model refitted, or another file) search it without
        error but give meaningless neighbours. Codebooks are compared by
        their fingerprint (a SHA-256 digest of the float32 numbers and the
        shape), as :class:`~skdqn.Retriever` and the command line do.

        Parameters
        ----------
        quantizer : DeepQuantizer or Pipeline
            The fitted model whose embeddings are to query the index (a
            Pipeline: its last step).

        Returns
        -------
        self : AQDNeighbors
            Unchanged, so that a search can follow:
            ``index.check_quantizer(dq).kneighbors(dq.transform(X))``.

        Raises
        ------
        ValueError
            If the codebooks differ (the message gives both fingerprints).
        NotFittedError
            If the index or ``quantizer`` is not fitted.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import AQDNeighbors, DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> model = DeepQuantizer(M=2, K=16, n_components=16, max_epochs=2, warmup_epochs=1, random_state=0)
        >>> dq = model.fit(X[:300], y[:300])
        >>> index = AQDNeighbors.from_quantizer(dq).fit(dq.transform(X[:300]))
        >>> index.check_quantizer(dq) is index
        True
        >>> other = model.set_params(random_state=1).fit(X[:300], y[:300])  # refitted: new codebooks
        >>> index.check_quantizer(other)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: This index was built with codebooks sha256:..., but the DeepQuantizer has codebooks ...
        """
        ours = codebooks_fingerprint(self._state().codebooks)
        theirs = codebooks_fingerprint(_lent_codebooks(quantizer, "check_quantizer"))
        if theirs != ours:
            raise ValueError(
                f"This index was built with codebooks {ours}, but the {type(quantizer).__name__} "
                f"has codebooks {theirs}: its embeddings are not what the index's codes quantize, "
                "and searching with them would give meaningless neighbours. Index that model's "
                "embeddings (AQDNeighbors.from_quantizer(model).fit(model.transform(X))), or use "
                "skdqn.Retriever, which keeps a model and its index together."
            )
        return self

    def to_faiss(self):
        """The index as a :class:`faiss.IndexPQ` with the same codebooks and codes.

        ``metric="euclidean"`` and ``"sqeuclidean"`` give ``METRIC_L2`` (faiss
        returns squared distances, as ``"sqeuclidean"`` does);
        ``"inner_product"`` gives ``METRIC_INNER_PRODUCT`` (faiss returns the
        inner products, largest first; this index returns their negation).
        With inverted lists, a :class:`faiss.IndexIVFPQ` (``by_residual =
        False``). With a rotation, that index behind a
        :class:`faiss.OPQMatrix` holding it (``A = rotation_.T``), in a
        :class:`faiss.IndexPreTransform`. Removed items (:meth:`remove`) are
        left out: inverted lists keep every item's index as its faiss id; an
        exhaustive index with removed items becomes a
        :class:`faiss.IndexIDMap2` around the ``IndexPQ`` of the others, its
        ids their indices (:meth:`from_faiss` does not read that one back).

        Returns
        -------
        index : faiss.IndexPQ, faiss.IndexIVFPQ, faiss.IndexIDMap2 or faiss.IndexPreTransform
            Trained, holding the items not removed (a copy of the codes).

        Raises
        ------
        ImportError
            If faiss is not installed.
        ValueError
            If ``K`` is not a power of two (faiss stores ``nbits`` per code).

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
        >>> index = AQDNeighbors(M=2, K=16, random_state=0).fit(X)
        >>> findex = index.to_faiss()  # doctest: +SKIP
        >>> findex.ntotal  # doctest: +SKIP
        500
        """
        state = self._state().compact()  # a copy without removed items: this index is unchanged
        lists = state.lists
        if lists is None:
            metric = get_metric(self.metric).faiss
            if state.removed is None:
                index = to_faiss_index(state.codebooks, state.codes, metric)
            else:
                index = to_faiss_idmap(state.codebooks, state.codes, state.row_items(), metric)
        else:
            index = to_faiss_ivf(
                state.codebooks, state.codes, lists.centroids, lists.offsets, lists.ids, lists.metric
            )
        return index if state.rotation is None else to_faiss_pretransform(state.rotation, index)

    @classmethod
    def from_faiss(cls, index, **params):
        """Build an index from a trained :class:`faiss.IndexPQ` (codebooks and codes).

        Parameters
        ----------
        index : faiss.IndexPQ, faiss.IndexIVFPQ or faiss.IndexPreTransform
            Trained, with ``METRIC_L2`` or ``METRIC_INNER_PRODUCT`` and
            ``nbits <= 16``; an ``IndexIVFPQ`` with ``by_residual = False``.
            An ``IndexPreTransform`` of one :class:`faiss.OPQMatrix` (or
            another square, bias-free, orthogonal ``LinearTransform``) in
            front of one of those gives an index with that rotation
            (``rotation = A.T``).
        **params
            Parameters of the new index. ``metric`` defaults to
            ``"sqeuclidean"`` for ``METRIC_L2`` (the distances faiss returns)
            and must be ``"inner_product"`` for ``METRIC_INNER_PRODUCT``.

        Returns
        -------
        aqd : AQDNeighbors
            Fitted, its ``codebooks`` parameter set to faiss' centroids.

        Examples
        --------
        >>> import faiss, numpy as np  # doctest: +SKIP
        >>> from skdqn import AQDNeighbors
        >>> findex = faiss.IndexPQ(8, 2, 4)  # doctest: +SKIP
        >>> X = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
        >>> findex.train(X); findex.add(X)  # doctest: +SKIP
        >>> AQDNeighbors.from_faiss(findex).codes_.shape  # doctest: +SKIP
        (500, 2)
        """
        if is_faiss_pretransform(index):
            if params.get("rotation") is not None:
                raise ValueError(
                    "rotation was given, but the faiss index holds its own (an IndexPreTransform); "
                    "leave rotation out."
                )
            rotation, index = from_faiss_pretransform(index)
            params["rotation"] = check_rotation(rotation, rotation.shape[0], name="the faiss OPQMatrix's A.T")
        if is_faiss_ivf(index):
            codebooks, codes, centroids, offsets, ids, faiss_metric = from_faiss_ivf(index)
            params["metric"] = metric_for_faiss(faiss_metric, params.get("metric"))
            params.setdefault("n_probe", min(int(index.nprobe), len(centroids)))
            params.update(n_lists=len(centroids), coarse_centroids=centroids)
            built = cls(codebooks=codebooks, **params)
            built._validate_params()
            built.n_features_in_ = codebooks.shape[0] * codebooks.shape[2]
            built._set_fitted(codebooks, codes, None, InvertedLists(centroids, offsets, ids, faiss_metric),
                              params.get("rotation"))
            if _is_auto(built.n_probe):
                rows = _sample(codes.shape[0], check_random_state(built.random_state))
                built._choose_probe(CodeQueries(codes[rows], codebooks, get_metric(built.metric).table))
            return built
        codebooks, codes, faiss_metric = from_faiss_index(index)
        params["metric"] = metric_for_faiss(faiss_metric, params.get("metric"))
        return cls.from_codes(codebooks, codes, **params)

    # --------------------------------------------------------------- search
    def _queries(self, state, X):
        """The query source: validated ``X``, or the stored items of ``state`` when X is None.

        Tables are computed block by block inside the search, never for all
        queries at once; the stored items are decoded a block at a time.
        """
        table = get_metric(self.metric).table
        if X is None:
            return CodeQueries(state.codes, state.codebooks, table)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return VectorQueries(_rotated(X, state.rotation), state.codebooks, table)

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True, *, filter=None):
        """Find the k nearest indexed items of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries. If None, the indexed items are the queries (each
            reconstructed from its code) and an item is not its own neighbour.
        n_neighbors : int, default=None
            Number of neighbours; ``self.n_neighbors`` when None.
        return_distance : bool, default=True
            Whether to return the distances.
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items (indices stay those of the whole index):
            a boolean mask of shape ``(n_samples_fit_,)`` or an array of item
            indices, for every query; a boolean array or scipy sparse matrix
            of shape ``(n_queries, n_samples_fit_)``, per query (with
            ``X=None``, row ``i`` is item ``i``); :class:`~skdqn.HasLabel` or
            :class:`~skdqn.SameLabel`, by the stored labels. A query with fewer
            than ``n_neighbors`` allowed items gets its row padded with index
            ``-1`` and distance ``inf``. See :ref:`filtered-search`.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors), float32
            Distances in ``metric`` units, ascending. Only with
            ``return_distance=True``.
        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the neighbours in the index; ties by smaller index.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.arange(16.0).reshape(8, 2)
        >>> index = AQDNeighbors(n_neighbors=2, M=1, K=8).fit(X)
        >>> index.kneighbors([[0.0, 1.0]], return_distance=False)
        array([[0, 1]])
        """
        state = self._state()
        n_neighbors = self._n_neighbors(n_neighbors)
        self._n_probe()
        return self._kneighbors(state, X, n_neighbors, return_distance, filter)

    def _n_neighbors(self, n_neighbors):
        """The ``n_neighbors`` of a search: the argument, or the parameter (maybe set after fit), checked.

        As :class:`~sklearn.neighbors.NearestNeighbors`: an argument must be
        positive; the parameter set to 0 after ``fit`` gives empty results.
        """
        if n_neighbors is not None:
            if isinstance(n_neighbors, Real) and not isinstance(n_neighbors, bool) and n_neighbors <= 0:
                raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
            if not isinstance(n_neighbors, Integral) or isinstance(n_neighbors, bool):
                raise TypeError(
                    f"n_neighbors does not take {type(n_neighbors)} value, enter integer value"
                )
            return int(n_neighbors)
        value = self.n_neighbors
        if not isinstance(value, Integral) or isinstance(value, bool):
            raise TypeError(
                f"The n_neighbors parameter must be an integer >= 0 at search time; got "
                f"{value!r} ({type(value).__name__}). Set it with set_params(n_neighbors=int)."
            )
        if value < 0:
            raise ValueError(f"The n_neighbors parameter must be >= 0 at search time; got {value}.")
        return int(value)

    def _n_probe(self, state=None):
        """The ``n_probe`` parameter (read at search time, maybe set after fit), checked: an integer >= 1 or "auto".

        Returns the lists to probe on ``state`` (``"auto"``: its measured
        choice), or None without a state or inverted lists.
        """
        value = self.n_probe
        if _is_auto(value):
            if state is None or state.lists is None:
                return None
            return state.auto_probe if state.auto_probe is not None else self._measure_probe(state)
        if not isinstance(value, Integral) or isinstance(value, bool):
            raise TypeError(
                f"The n_probe parameter must be an integer >= 1 or 'auto'; got {value!r} "
                f"({type(value).__name__}). Set it with set_params(n_probe=int)."
            )
        if value < 1:
            raise ValueError(f"The n_probe parameter must be an integer >= 1; got {value}.")
        return int(value)

    def _kneighbors(self, state, X, n_neighbors, return_distance, filter=None):
        """:meth:`kneighbors` on one published ``state`` (``n_neighbors`` checked, may be 0)."""
        query_is_train = X is None
        queries = self._queries(state, X)
        allowed = self._filter(state, filter, queries.n_queries)
        if n_neighbors == 0:  # the parameter set to 0 after fit: empty results, as scikit-learn's trees
            ind = np.empty((queries.n_queries, 0), dtype=np.intp)
            return (np.empty((queries.n_queries, 0), dtype=np.float32), ind) if return_distance else ind
        k = n_neighbors + 1 if query_is_train else n_neighbors
        n_items = state.n_samples - state.n_removed
        if k > n_items:
            inequality = "n_neighbors < n_samples_fit" if query_is_train else "n_neighbors <= n_samples_fit"
            fitted = f"{state.n_samples} ({state.n_removed} removed)" if state.n_removed else f"{n_items}"
            raise ValueError(
                f"Expected {inequality}, but n_neighbors = {n_neighbors}, "
                f"n_samples_fit = {fitted}, n_samples = {queries.n_queries}"
            )
        search = self._knn_leave_self_out if query_is_train else self._knn_refined
        dist, ind = search(state, queries, k, allowed)
        if not return_distance:
            return ind
        return get_metric(self.metric).to_user(dist), ind

    def _kernel(self):
        """The scan kernel of ``backend`` (and ``device``); a ValueError if unusable."""
        if self.backend == "numpy":
            return get_kernel("numpy")
        return get_kernel(self.backend, device=self.device)

    def _list_kernel(self):
        """The kernel that scans inverted lists: None for numpy's own list scan, else ``_kernel()``.

        numpy's list scan also serves ``backend="torch"`` on the CPU: the
        torch kernel, one call per probed list, measured 0.3-0.4x its
        throughput there (results are the same either way).
        """
        if self.backend == "numpy":
            return None
        kernel = self._kernel()
        return None if getattr(kernel, "device", "cpu") == "cpu" else kernel

    def _plan(self, state, n_probe=None):
        """The :class:`~skdqn.search._index.SearchPlan` of one call on ``state`` (parameters read and checked now)."""
        if state.lists is None:
            return SearchPlan(kernel=self._kernel(), n_jobs=self.n_jobs)
        n_probe = self._n_probe(state) if n_probe is None else n_probe
        return SearchPlan(kernel=self._kernel(), list_kernel=self._list_kernel(), n_jobs=self.n_jobs, n_probe=n_probe)

    def _knn(self, state, queries, k, allowed=None, query_ids=None):
        """Top-k of a query source over ``state``: exhaustive, or over the probed inverted lists.

        ``allowed`` (a resolved :class:`~skdqn.search._filters.ItemFilter`) splits
        the queries into groups sharing their allowed items, each searched
        over those only; ``query_ids`` are the queries' rows in the filter
        (default ``0 .. n_queries - 1``).
        """
        plan = self._plan(state)
        if allowed is None:
            return state.kneighbors(queries, k, plan)
        n = queries.n_queries
        dist, ind = np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.intp)
        for rows, items in allowed.groups(np.arange(n) if query_ids is None else query_ids):
            part = queries if rows.size == n else queries.block(rows)
            dist[rows], ind[rows] = state.kneighbors(part, k, replace(plan, allowed=items))
        return dist, ind

    def _radius(self, state, queries, threshold, allowed=None, query_ids=None):
        """Radius matches of a query source over ``state`` (item indices, increasing); ``allowed`` as in :meth:`_knn`."""
        plan = self._plan(state)
        if allowed is None:
            return state.radius_neighbors(queries, threshold, plan)
        n = queries.n_queries
        dists, inds = [None] * n, [None] * n
        for rows, items in allowed.groups(np.arange(n) if query_ids is None else query_ids):
            part = queries if rows.size == n else queries.block(rows)
            found = state.radius_neighbors(part, threshold, replace(plan, allowed=items))
            for j, d, i in zip(rows, *found):
                dists[j], inds[j] = d, i
        return dists, inds

    def _refine_factor(self, state):
        """The ``refine_factor`` parameter (read at search time), checked; None when not re-ranking."""
        factor = self.refine_factor
        if factor is None:
            return None
        if not isinstance(factor, Integral) or isinstance(factor, bool) or factor < 1:
            raise ValueError(f"The refine_factor parameter must be None or an integer >= 1; got {factor!r}.")
        if state.vectors is None:
            raise ValueError(
                "refine_factor re-ranks by the items' vectors, which this index does not hold: fit it "
                "with refine_factor set (it keeps them), or give them to from_codes(..., vectors=...)."
            )
        return int(factor)

    def _knn_refined(self, state, queries, k, allowed=None, query_ids=None, query_vectors=None):
        """:meth:`_knn`, re-ranked by exact distance when ``refine_factor`` is set (``refine_factor * k`` candidates)."""
        factor = self._refine_factor(state)
        if factor is None:
            return self._knn(state, queries, k, allowed, query_ids)
        candidates = min(state.n_samples - state.n_removed, factor * k)
        _, ind = self._knn(state, queries, candidates, allowed, query_ids)
        if query_vectors is None:  # the queries in the space of the vectors (before the rotation)
            query_vectors = queries.vectors()
            if state.rotation is not None:
                query_vectors = query_vectors @ state.rotation.T.astype(np.float64)
        return refine(query_vectors, state.vectors, ind, k, get_metric(self.metric).table)

    def _filter(self, state, filter, n_queries):
        """The ``filter`` argument resolved (:func:`~skdqn.search._filters.check_filter`) and without removed items, or None."""
        allowed = check_filter(filter, state.n_samples, n_queries, state.labels)
        if state.removed is None or (allowed is None and not state.holds_removed()):
            return allowed
        return only_items(allowed, ~state.removed)

    def _knn_leave_self_out(self, state, queries, k, allowed=None):
        """``X=None``: per item, the top ``k - 1`` of the others, in item order.

        The stored items are searched ``_tuning.SELF_CHUNK`` at a time (``k`` each,
        then the item itself dropped), and each chunk's result is written
        into the output, so beyond the output the memory stays bounded
        whatever the number of items. Query row ``j`` is the item
        ``items[j]`` (stored rows are in list order with inverted lists). A
        removed item's row is all padding ``(inf, -1)``.
        """
        items = state.row_items()
        out_d = np.full((state.n_samples, k - 1), np.inf, dtype=np.float32)
        out_i = np.full((state.n_samples, k - 1), -1, dtype=np.intp)
        n = queries.n_queries
        chunk = _tuning.SELF_CHUNK
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            refining = self._refine_factor(state) is not None
            dist, ind = self._knn_refined(state, queries.block(rows), k, allowed, items[rows],
                                          state.vectors[items[rows]] if refining else None)
            out_d[items[rows]], out_i[items[rows]] = _drop_self(dist, ind, items[rows])
        if state.removed is not None:
            out_d[state.removed], out_i[state.removed] = np.inf, -1
        return out_d, out_i

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=False, *, filter=None):
        """Find the indexed items within ``radius`` of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries. If None, the indexed items are the queries (each
            reconstructed from its code) and an item is not its own neighbour.
        radius : float, default=None
            Limit on the distance in ``metric`` units (``<=``); ``self.radius``
            when None.
        return_distance : bool, default=True
            Whether to return the distances.
        sort_results : bool, default=False
            Sort each query's neighbours by distance (ties by index).
            Requires ``return_distance=True``.
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items, as in :meth:`kneighbors`.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries,), dtype=object
            One float32 array of distances per query. Only with
            ``return_distance=True``.
        neigh_ind : ndarray of shape (n_queries,), dtype=object
            One array of indices per query, in index order unless sorted.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.arange(16.0).reshape(8, 2)
        >>> index = AQDNeighbors(M=1, K=8).fit(X)
        >>> dist, ind = index.radius_neighbors([[0.0, 1.0]], radius=3.0)
        >>> ind[0]
        array([0, 1])
        """
        state = self._state()
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True.")
        return self._radius_neighbors(state, X, radius, return_distance, sort_results, filter)

    def _radius_neighbors(self, state, X, radius, return_distance, sort_results, filter=None):
        """:meth:`radius_neighbors` on one published ``state``."""
        if radius is None:
            radius = self.radius
        self._n_probe()
        query_is_train = X is None
        metric = get_metric(self.metric)
        metric.check_radius(radius)
        threshold = metric.radius_threshold(radius)
        queries = self._queries(state, X)
        allowed = self._filter(state, filter, queries.n_queries)
        items = state.row_items() if query_is_train else None
        dists, inds = self._radius(state, queries, threshold, allowed, items)
        for q in range(len(inds)):
            d, i = dists[q], inds[q]
            if query_is_train:
                keep = i != items[q]
                d, i = d[keep], i[keep]
            if sort_results:
                order = np.argsort(d, kind="stable")
                d, i = d[order], i[order]
            dists[q], inds[q] = metric.to_user(d), i
        if query_is_train:  # rows in list order with inverted lists -> item order; removed items: none
            out_d = [np.empty(0, np.float32)] * state.n_samples
            out_i = [np.empty(0, np.intp)] * state.n_samples
            removed = np.zeros(state.n_samples, bool) if state.removed is None else state.removed
            for j, item in enumerate(items):
                if not removed[item]:
                    out_d[item], out_i[item] = dists[j], inds[j]
            dists, inds = out_d, out_i
        if return_distance:
            return _object_array(dists), _object_array(inds)
        return _object_array(inds)

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity", *, filter=None):
        """Sparse graph of the k nearest indexed items of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries; the indexed items (not their own neighbours) when None.
        n_neighbors : int, default=None
            Number of neighbours; ``self.n_neighbors`` when None.
        mode : {"connectivity", "distance"}, default="connectivity"
            Ones, or the distances in ``metric`` units, as edge weights.
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items, as in :meth:`kneighbors`.

        Returns
        -------
        A : sparse matrix of shape (n_queries, n_samples_fit), CSR
            ``A[i, j]`` is the weight of the edge from query ``i`` to item ``j``.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.arange(16.0).reshape(8, 2)
        >>> index = AQDNeighbors(n_neighbors=1, M=1, K=8).fit(X)
        >>> index.kneighbors_graph([[0.0, 1.0]]).toarray()
        array([[1., 0., 0., 0., 0., 0., 0., 0.]])
        """
        state = self._state()
        n_neighbors = self._n_neighbors(n_neighbors)
        self._n_probe()
        if mode == "connectivity":
            ind = self._kneighbors(state, X, n_neighbors, False, filter)
            data = np.ones(ind.size)
        elif mode == "distance":
            dist, ind = self._kneighbors(state, X, n_neighbors, True, filter)
            data = dist.ravel()
        else:
            raise ValueError(
                'Unsupported mode, must be one of "connectivity", '
                f'or "distance" but got "{mode}" instead'
            )
        found = ind.ravel() >= 0  # a filter may leave fewer than n_neighbors: no edge for padding
        indptr = np.concatenate([[0], np.cumsum((ind >= 0).sum(axis=1))])
        graph = sp.csr_matrix((data[found], ind.ravel()[found], indptr), shape=(ind.shape[0], state.n_samples))
        return _as_sparse_interface(graph)

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity", sort_results=False, *, filter=None):
        """Sparse graph of the indexed items within ``radius`` of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries; the indexed items (not their own neighbours) when None.
        radius : float, default=None
            Limit on the distance; ``self.radius`` when None.
        mode : {"connectivity", "distance"}, default="connectivity"
            Ones, or the distances in ``metric`` units, as edge weights.
        sort_results : bool, default=False
            Sort each row's entries by distance (only with ``mode="distance"``).
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items, as in :meth:`kneighbors`.

        Returns
        -------
        A : sparse matrix of shape (n_queries, n_samples_fit), CSR
            ``A[i, j]`` is the weight of the edge from query ``i`` to item ``j``
            (1 or the distance); items beyond ``radius`` have no entry.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.arange(16.0).reshape(8, 2)
        >>> index = AQDNeighbors(M=1, K=8).fit(X)
        >>> index.radius_neighbors_graph([[0.0, 1.0]], radius=3.0).toarray()[0, :3]
        array([1., 1., 0.])
        """
        state = self._state()
        if mode == "connectivity":
            ind = self._radius_neighbors(state, X, radius, False, False, filter)
            data = None
        elif mode == "distance":
            dist, ind = self._radius_neighbors(state, X, radius, True, sort_results, filter)
            data = np.concatenate(list(dist)) if len(dist) else np.empty(0)
        else:
            raise ValueError(
                'Unsupported mode, must be one of "connectivity", '
                f'or "distance" but got "{mode}" instead'
            )
        lengths = np.array([len(a) for a in ind], dtype=np.intp)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate(list(ind)) if len(ind) else np.empty(0, np.intp)
        if data is None:
            data = np.ones(indices.shape[0])
        graph = sp.csr_matrix((data, indices, indptr), shape=(len(ind), state.n_samples))
        return _as_sparse_interface(graph)

    # ---------------------------------------------------------------- score
    def score(self, X, y, top_k=None, normalize="retrieved", no_relevant="zero", verbose=0):
        """Mean average precision of ``X`` as queries against the index.

        An item is relevant to a query when they share at least one label.
        This makes the index usable as the last step of a
        :class:`~sklearn.pipeline.Pipeline` inside
        :class:`~sklearn.model_selection.GridSearchCV`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Their labels, in the layout given to :meth:`fit`.
        top_k : int, default=None
            Rank depth (MAP@top_k); the whole index when None.
        normalize : {"retrieved", "all"}, default="retrieved"
            Divide each query's sum of precisions by the relevant items
            retrieved in the top k (the deep-hashing convention) or by all
            relevant items in the index; see
            :func:`skdqn.metrics.mean_average_precision`.
        no_relevant : {"zero", "skip"}, default="zero"
            A query with no relevant item in its top k counts as 0 (skdqn)
            or is left out of the mean (DeepHash code base); see
            :func:`skdqn.metrics.mean_average_precision`.
        verbose : int, default=0
            ``1`` reports the queries ranked so far on stderr (a bar on a
            terminal, a line per tenth of the queries in a log file).

        Returns
        -------
        score : float
            MAP in [0, 1].

        Warns
        -----
        NoRelevantItemsWarning
            With ``no_relevant="zero"``, when some queries share no label
            with the index (they score 0 whatever the ranking); see
            :class:`skdqn.exceptions.NoRelevantItemsWarning`.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.r_[np.zeros((4, 2)), np.ones((4, 2))]
        >>> y = np.r_[np.zeros(4), np.ones(4)]
        >>> AQDNeighbors(M=1, K=2).fit(X, y).score(X, y)
        1.0
        """
        state = self._state()
        if state.labels is None:
            raise ValueError(
                "score needs the labels of the indexed items: call fit(X, y) with y."
            )
        self._n_probe()  # checked as in every search, though score ranks exhaustively
        codes, labels = _ranked_items(state)
        kernel = self._kernel()

        def search(queries, k):  # the exhaustive scan, also for inverted lists: the same number
            return aqd_kneighbors(queries, codes, k, n_jobs=self.n_jobs, kernel=kernel)

        return score_codes(
            self._queries(state, X), y, codes, labels,
            top_k=top_k, normalize=normalize, no_relevant=no_relevant, n_jobs=self.n_jobs,
            search=search, verbose=verbose,
        )
