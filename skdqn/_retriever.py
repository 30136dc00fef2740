"""Retriever: a DeepQuantizer and the index of its training codes, from raw queries to neighbours.

The retriever trains a clone of its ``quantizer`` on labelled data and
indexes the training items' codes (those computed at the end of ``fit``, not
embedded again) with an :class:`~skdqn.AQDNeighbors` built from the
quantizer's codebooks. Queries are raw inputs: the retriever embeds them
with the same quantizer, so an index is never searched with another model's
embeddings. It remembers a fingerprint of the codebooks the index was built
with and refuses a model and an index that do not belong together.

On disk a retriever is a directory: ``retriever.json`` (format, parameters,
fingerprint), ``model.npz`` (:meth:`DeepQuantizer.save`) and ``index`` (an
:meth:`AQDNeighbors.save` directory, memory-mappable). Nothing is pickled.
"""

import json
import os
import shutil
import uuid
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .io._io import check_header, format_header
from .search._metric import METRIC_NAMES, get_metric
from ._neighbors import AQDNeighbors
from ._validation import codebooks_fingerprint

__all__ = ["Retriever", "codebooks_fingerprint"]

FORMAT = "skdqn.Retriever"
FORMAT_VERSION = 1
_HEADER, _MODEL, _INDEX = "retriever.json", "model.npz", "index"
# Parameters of the index, passed through; those read at search time are synced before each search.
_INDEX_PARAMS = ("n_neighbors", "radius", "metric", "n_jobs", "backend", "device", "n_lists", "n_probe",
                 "random_state")
_SEARCH_PARAMS = ("n_neighbors", "radius", "n_jobs", "n_probe")


def _last_step(model):
    """The quantizer inside ``model`` (the last step of a Pipeline, or the model)."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


class Retriever(BaseEstimator):
    """A trained :class:`~skdqn.DeepQuantizer` and the index of its codes: raw queries in, neighbours out.

    ``fit(X, y)`` trains a clone of ``quantizer`` and indexes the training
    items by their codes (an :class:`~skdqn.AQDNeighbors` over the
    quantizer's codebooks and the codes it computed at the end of training:
    nothing is embedded twice). :meth:`kneighbors`, :meth:`radius_neighbors`
    and :meth:`score` take raw queries (the inputs ``fit`` took), embed
    them with that quantizer and search the index; :meth:`add` grows the
    index. :meth:`save` and :meth:`load` keep both in one directory without
    pickle, and the index is never searched with another model's embeddings:
    the retriever keeps a fingerprint of the codebooks the index was built
    with and refuses a model and an index that disagree.

    It only stores its parameters until ``fit``, so :func:`~sklearn.base.clone`
    and :class:`~sklearn.model_selection.GridSearchCV` work, including over
    the quantizer's parameters (``quantizer__lam``).

    Parameters
    ----------
    quantizer : DeepQuantizer or Pipeline, default=None
        The model to train, unfitted (``fit`` trains a clone); a Pipeline
        must end with the quantizer (e.g. ``make_pipeline(PCA(32),
        DeepQuantizer())``; :meth:`save` needs a DeepQuantizer alone). None
        means ``DeepQuantizer()``.
    n_neighbors : int, default=5
        Neighbours returned by :meth:`kneighbors`.
    radius : float, default=1.0
        Range of :meth:`radius_neighbors`, in the units of ``metric``.
    metric : {"euclidean", "sqeuclidean", "inner_product"}, default="euclidean"
        The index's AQD metric (see :class:`~skdqn.AQDNeighbors`).
    n_lists : int, default=None
        None: exhaustive search. An integer builds inverted lists (each code
        in the list of the coarse centroid nearest to its reconstruction).
    n_probe : int or "auto", default="auto"
        Lists scanned per query (inverted lists only), read at search time;
        ``"auto"`` as :class:`~skdqn.AQDNeighbors` (recall@10 of 0.95).
    backend : {"numpy", "torch"}, default="numpy"
        The scan kernel of the index.
    device : str, default="auto"
        Device of the torch kernel (``backend="torch"`` only).
    n_jobs : int, default=None
        Parallel workers of the search.
    random_state : int, RandomState instance or None, default=None
        Seeds the coarse k-means of the inverted lists (the quantizer has
        its own ``random_state``).

    Attributes
    ----------
    quantizer_ : DeepQuantizer or Pipeline
        The fitted clone of ``quantizer``.
    index_ : AQDNeighbors
        The index of the training codes (and of those added), with their
        labels.
    fingerprint_ : str
        Fingerprint of the codebooks the index was built with
        (:func:`codebooks_fingerprint`).
    n_samples_fit_ : int
        Items in the index.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.

    See Also
    --------
    DeepQuantizer : The model trained.
    AQDNeighbors : The index searched.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer, Retriever
    >>> X, y = load_digits(return_X_y=True)
    >>> quantizer = DeepQuantizer(M=2, K=16, max_epochs=3, warmup_epochs=1, random_state=0)
    >>> retriever = Retriever(quantizer, n_neighbors=5).fit(X[:1000], y[:1000])
    >>> dist, ind = retriever.kneighbors(X[1500:1503])   # raw queries
    >>> ind.shape, retriever.n_samples_fit_
    ((3, 5), 1000)
    >>> 0.0 <= retriever.score(X[1500:], y[1500:]) <= 1.0
    True
    """

    _parameter_constraints = {
        "quantizer": [None, HasMethods(["fit", "transform"])],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, None, None, closed="both")],
        "metric": [StrOptions(set(METRIC_NAMES))],
        "n_lists": [None, Interval(Integral, 1, None, closed="left")],
        "n_probe": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "backend": [StrOptions({"numpy", "torch"})],
        "device": [str],
        "n_jobs": [None, Integral],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        quantizer=None,
        *,
        n_neighbors=5,
        radius=1.0,
        metric="euclidean",
        n_lists=None,
        n_probe="auto",
        backend="numpy",
        device="auto",
        n_jobs=None,
        random_state=None,
    ):
        self.quantizer = quantizer
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.metric = metric
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.backend = backend
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # the quantizer learns from labels
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train a clone of ``quantizer`` on ``(X, y)`` and index the training codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or torch Dataset
            Training items, which become the database; anything the
            quantizer's ``fit`` takes.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
            Their labels (class labels or an indicator matrix); None only
            when ``X`` is a Dataset of ``(x, y)`` pairs.

        Returns
        -------
        self : Retriever

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> quantizer = DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)
        >>> Retriever(quantizer).fit(X[:500], y[:500]).index_.codes_.shape
        (500, 2)
        """
        self._validate_params()
        index = AQDNeighbors(**self._index_params())
        index._validate_params()  # everything the index would refuse, before the training:
        get_metric(self.metric).check_radius(self.radius)  # a radius the metric refuses,
        index._kernel()  # a device this machine lacks
        quantizer = self._new_quantizer().fit(X, y)
        dq = _last_step(quantizer)
        for name in ("codebooks_", "codes_", "_fit_labels"):
            if not hasattr(dq, name):
                raise TypeError(
                    f"quantizer must be a DeepQuantizer or a Pipeline ending with one; its last step "
                    f"{type(dq).__name__} has no {name.strip('_')} after fit."
                )
        index = AQDNeighbors.from_codes(dq.codebooks_, dq.codes_, dq._fit_labels, **self._index_params())
        self._set_fitted(quantizer, index, codebooks_fingerprint(dq.codebooks_))
        return self

    def _new_quantizer(self):
        if self.quantizer is None:
            from ._quantizer import DeepQuantizer

            return DeepQuantizer()
        return clone(self.quantizer)

    def _index_params(self):
        return {name: getattr(self, name) for name in _INDEX_PARAMS}

    def _set_fitted(self, quantizer, index, fingerprint):
        self.quantizer_ = quantizer
        self.index_ = index
        self.fingerprint_ = fingerprint
        self.n_features_in_ = quantizer.n_features_in_
        if hasattr(quantizer, "feature_names_in_"):
            self.feature_names_in_ = quantizer.feature_names_in_

    @property
    def n_samples_fit_(self):
        """Items in the index."""
        check_is_fitted(self)
        return self.index_.n_samples_fit_

    # --------------------------------------------------------------- guard
    def _checked_index(self):
        """The index, its search parameters synced, after checking it belongs to the model."""
        check_is_fitted(self)
        self._validate_params()
        _check_pair(self.fingerprint_, _last_step(self.quantizer_).codebooks_, self.index_.codebooks_)
        self.index_.set_params(**{name: getattr(self, name) for name in _SEARCH_PARAMS})
        return self.index_

    def _embed(self, X):
        """Embeddings of raw queries by the fitted quantizer (None stays None: the indexed items)."""
        return None if X is None else self.quantizer_.transform(X)

    # --------------------------------------------------------------- search
    def kneighbors(self, X=None, n_neighbors=None, return_distance=True, *, filter=None):
        """The ``n_neighbors`` nearest indexed items of each raw query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Raw queries, as given to :meth:`fit` (embedded by the quantizer).
            None: the indexed items are the queries, each left out of its
            own list (see :meth:`AQDNeighbors.kneighbors`).
        n_neighbors : int, default=None
            Defaults to the ``n_neighbors`` parameter.
        return_distance : bool, default=True
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items, as in :meth:`AQDNeighbors.kneighbors`.

        Returns
        -------
        dist : ndarray of shape (n_queries, n_neighbors), float32
            AQD in the units of ``metric``; only if ``return_distance``.
        ind : ndarray of shape (n_queries, n_neighbors), int
            Indices of the items (training items first, then those added).

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:500], y[:500])
        >>> r.kneighbors(X[:2], n_neighbors=3, return_distance=False).shape
        (2, 3)
        """
        index = self._checked_index()
        return index.kneighbors(self._embed(X), n_neighbors=n_neighbors, return_distance=return_distance,
                                filter=filter)

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=False, *, filter=None):
        """The indexed items within ``radius`` of each raw query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Raw queries; None: the indexed items, each left out of its own list.
        radius : float, default=None
            Defaults to the ``radius`` parameter, in the units of ``metric``.
        return_distance : bool, default=True
        sort_results : bool, default=False
            Sort each query's matches by distance.
        filter : None, array-like, sparse matrix, HasLabel or SameLabel, default=None
            Search only some items, as in :meth:`AQDNeighbors.kneighbors`.

        Returns
        -------
        dist : ndarray of shape (n_queries,) of arrays
            Only if ``return_distance``.
        ind : ndarray of shape (n_queries,) of arrays

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:500], y[:500])
        >>> ind = r.radius_neighbors(X[:2], radius=1e9, return_distance=False)
        >>> [len(i) for i in ind]
        [500, 500]
        """
        index = self._checked_index()
        return index.radius_neighbors(
            self._embed(X), radius=radius, return_distance=return_distance, sort_results=sort_results,
            filter=filter,
        )

    def score(self, X, y, top_k=None, normalize="retrieved", no_relevant="zero", verbose=0):
        """Mean average precision of raw labelled queries against the index.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Raw queries.
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Their labels, in the layout given to :meth:`fit`.
        top_k : int, default=None
            Rank depth (MAP@top_k); the whole index when None.
        normalize : {"retrieved", "all"}, default="retrieved"
            See :func:`skdqn.metrics.mean_average_precision`.
        no_relevant : {"zero", "skip"}, default="zero"
            See :func:`skdqn.metrics.mean_average_precision`.
        verbose : int, default=0
            ``1`` reports the queries ranked so far on stderr.

        Returns
        -------
        score : float
            MAP in [0, 1]; with the training set as the index, what the
            quantizer's own ``score`` gives.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:500], y[:500])
        >>> bool(r.score(X[500:600], y[500:600]) == r.quantizer_.score(X[500:600], y[500:600]))
        True
        """
        index = self._checked_index()
        return index.score(self._embed(X), y, top_k=top_k, normalize=normalize, no_relevant=no_relevant,
                           verbose=verbose)

    def add(self, X, y=None):
        """Embed, encode and append items to the index (the quantizer is not retrained).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Raw items; they get the indices ``n_samples_fit_, ...``.
        y : array-like of shape (n_samples,) or (n_samples, n_labels), default=None
            Their labels: required, since the index holds the training labels.

        Returns
        -------
        self : Retriever

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:400], y[:400])
        >>> r.add(X[400:500], y[400:500]).n_samples_fit_
        500
        """
        index = self._checked_index()
        index.partial_fit(self._embed(X), y)  # checks y before changing anything
        return self

    # ------------------------------------------------------------- storage
    def save(self, path):
        """Write the retriever to a directory, without pickle.

        The directory holds ``model.npz`` (:meth:`DeepQuantizer.save`),
        ``index`` (:meth:`AQDNeighbors.save`, a directory that :meth:`load`
        can memory-map) and ``retriever.json`` (the parameters and the
        codebooks' fingerprint). It is written beside ``path`` and swapped
        in; an existing ``path`` is replaced only if it is a saved retriever
        or an empty directory.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        path : pathlib.Path

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:500], y[:500])
        >>> path = r.save(os.path.join(tempfile.mkdtemp(), "retriever"))
        >>> sorted(os.listdir(path))
        ['index', 'model.npz', 'retriever.json']
        """
        check_is_fitted(self)
        if hasattr(self.quantizer_, "steps"):
            raise TypeError(
                "save needs the quantizer to be a DeepQuantizer alone; a Pipeline's other steps have "
                "no pickle-free format (save it with joblib, a pickle, if you trust the file)."
            )
        _check_pair(self.fingerprint_, self.quantizer_.codebooks_, self.index_.codebooks_)
        path = Path(path)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / _HEADER).is_file())):
            raise ValueError(f"path {str(path)!r} exists and is not a saved retriever or an empty directory.")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True)
        try:
            self.quantizer_.save(tmp / _MODEL)
            self.index_.save(tmp / _INDEX)
            params = {k: v for k, v in self.get_params(deep=False).items() if k != "quantizer"}
            if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
                params["random_state"] = None  # a RandomState instance is not stored
            header = {**format_header(FORMAT, FORMAT_VERSION), "params": params, "fingerprint": self.fingerprint_}
            (tmp / _HEADER).write_text(json.dumps(header, indent=2, default=int) + "\n", encoding="utf-8")
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return path

    @classmethod
    def load(cls, path, mmap_mode=None, *, network=None):
        """Read a retriever written by :meth:`save`, refusing a model and index that do not match.

        Parameters
        ----------
        path : str or path-like
            The directory given to :meth:`save`.
        mmap_mode : {None, "r", "c"}, default=None
            Memory-map the index's codes (see :meth:`AQDNeighbors.load`).
        network : torch.nn.Module or callable, default=None
            For a quantizer with a custom network (see :meth:`DeepQuantizer.load`).

        Returns
        -------
        retriever : Retriever
            Fitted; its ``quantizer`` parameter is an unfitted copy of the
            saved quantizer's parameters.

        Raises
        ------
        ValueError
            If a file is missing or damaged, or if the model's or the
            index's codebooks are not those the index was built with (e.g.
            ``model.npz`` replaced by another model's): their fingerprints
            are compared.

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer, Retriever
        >>> X, y = load_digits(return_X_y=True)
        >>> r = Retriever(DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, random_state=0)).fit(X[:500], y[:500])
        >>> loaded = Retriever.load(r.save(os.path.join(tempfile.mkdtemp(), "retriever")))
        >>> bool((loaded.kneighbors(X[:5])[1] == r.kneighbors(X[:5])[1]).all())
        True
        """
        from ._quantizer import DeepQuantizer

        path = Path(path)
        header = _read_header(path)
        quantizer = DeepQuantizer.load(path / _MODEL, network=network)
        index = AQDNeighbors.load(path / _INDEX, mmap_mode=mmap_mode)
        try:
            _check_pair(header["fingerprint"], quantizer.codebooks_, index.codebooks_)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        try:
            retriever = cls(quantizer=clone(quantizer), **header["params"])
            retriever._validate_params()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path / _HEADER}: header field 'params' is invalid: {exc}") from None
        retriever._set_fitted(quantizer, index, header["fingerprint"])
        return retriever


def _check_pair(fingerprint, model_codebooks, index_codebooks):
    """Raise a ValueError unless the model's and the index's codebooks are those of ``fingerprint``."""
    model, index = codebooks_fingerprint(model_codebooks), codebooks_fingerprint(index_codebooks)
    if model != fingerprint or index != fingerprint:
        raise ValueError(
            "the model and the index do not belong together: the index was built with the "
            f"codebooks {fingerprint}, the model has {model} and the index {index}. Searching an "
            "index with another model's embeddings gives meaningless neighbours; refit, or keep "
            "the model and the index that were saved together."
        )


def _read_header(path):
    """The parsed, checked ``retriever.json`` of a saved retriever."""
    file = path / _HEADER
    if not file.is_file():
        raise ValueError(f"{path} is not a saved Retriever: no {_HEADER} in it.")
    try:
        header = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: not a readable header: {exc}") from None
    check_header(header, file, FORMAT, FORMAT_VERSION, what="a Retriever")
    if not isinstance(header.get("fingerprint"), str) or not isinstance(header.get("params"), dict):
        raise ValueError(f"{file}: header fields 'fingerprint' (a string) and 'params' (an object) are required.")
    unknown = sorted(set(header["params"]) - set(_INDEX_PARAMS))
    if unknown:
        raise ValueError(f"{file}: header field 'params' has unknown parameters {unknown}.")
    return header
