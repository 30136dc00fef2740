"""AQDNeighbors: a NearestNeighbors-style index over product-quantization codes."""

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._labels import check_labels
from ._pq import decode, encode, train_codebooks
from ._search import (
    aqd_kneighbors,
    aqd_radius_neighbors,
    distance_tables,
    retrieval_average_precisions,
)
from ._validation import check_codebooks, check_n_subspaces

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


class AQDNeighbors(BaseEstimator):
    """Nearest neighbours over product-quantization codes, searched by AQD.

    A compressed, drop-in replacement for
    :class:`sklearn.neighbors.NearestNeighbors`: ``fit`` stores each item as
    ``M`` codeword indices (``M`` bytes per item with ``K = 256``), and queries
    stay real-valued. For each query an ``(M, K)`` lookup table of distances
    between its subvectors and the codewords is computed once; the distance to
    an item is the sum of ``M`` table entries (Asymmetric Quantizer Distance,
    AQD). The scan is pure numpy, works in blocks of bounded size, and breaks
    ties by database index.

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
        array is used as given. A fitted estimator with a ``codebooks_``
        attribute (such as :class:`~skdqn.DeepQuantizer`) lends its codebooks;
        ``fit`` then expects the estimator's embeddings, e.g.
        ``AQDNeighbors(codebooks=dq).fit(dq.transform(X))``.
    metric : {"euclidean", "sqeuclidean", "inner_product"}, default="euclidean"
        ``"euclidean"``: square root of the AQD, as
        :class:`~sklearn.neighbors.NearestNeighbors` would return.
        ``"sqeuclidean"``: the AQD itself, as in the paper.
        ``"inner_product"``: ranks by ``<q, C h>``, largest first, as the
        authors' released evaluation code does; distances are returned as the
        negated inner products, so that ascending order still means best
        first, and ``radius`` bounds ``-<q, C h>``.
    n_jobs : int, default=None
        Number of threads searching blocks of queries in parallel. ``None``
        means 1 unless in a :func:`joblib.parallel_backend` context; ``-1``
        uses all processors. Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds codebook learning (when ``codebooks`` is None). The same seed
        gives the same codes.

    Attributes
    ----------
    codebooks_ : ndarray of shape (M, K, n_features / M), float32
        The codebooks used to encode and search.
    codes_ : ndarray of shape (n_samples_fit, M), uint8 or uint16
        The stored items.
    n_samples_fit_ : int
        Number of items in the index.
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
    :class:`~sklearn.neighbors.NearestNeighbors`.

    Distances are float32, the precision of the codebooks and tables.

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
        "radius": [Interval(Real, None, None, closed="neither")],
        "M": [Interval(Integral, 1, None, closed="left")],
        "K": [Interval(Integral, 2, 2**16, closed="both")],
        "codebooks": "no_validation",
        "metric": [StrOptions({"euclidean", "sqeuclidean", "inner_product"})],
        "n_jobs": [None, Integral],
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
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.M = M
        self.K = K
        self.codebooks = codebooks
        self.metric = metric
        self.n_jobs = n_jobs
        self.random_state = random_state

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
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_samples, n_features = X.shape
        if self.codebooks is None:
            check_n_subspaces(n_features, self.M)
            if n_samples < self.K:
                raise ValueError(
                    f"{type(self).__name__} needs n_samples >= K to learn K={self.K} "
                    f"codewords per subspace; got n_samples={n_samples}. Lower K or "
                    "index more samples."
                )
            self.codebooks_ = train_codebooks(
                X, self.M, self.K, max_samples=256 * self.K, random_state=self.random_state
            )
        else:
            self.codebooks_ = check_codebooks(self.codebooks, n_features)
        self.codes_ = encode(X, self.codebooks_)
        self.n_samples_fit_ = n_samples
        if y is not None:
            labels = check_labels(y)
            # labels.shape[0], not len(y): len() is undefined for sparse y.
            if labels.shape[0] != n_samples:
                raise ValueError(
                    f"y has {labels.shape[0]} entries but X has n_samples={n_samples}."
                )
            self._fit_labels = labels
        else:
            self._fit_labels = None
        return self

    # --------------------------------------------------------------- search
    def _tables(self, X):
        """Validate queries (or take the stored items when X is None); return tables."""
        if X is None:
            queries = decode(self.codes_, self.codebooks_)
        else:
            queries = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        table_metric = "inner_product" if self.metric == "inner_product" else "sqeuclidean"
        return distance_tables(queries, self.codebooks_, table_metric)

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
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
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        elif n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
        elif not isinstance(n_neighbors, Integral):
            raise TypeError(
                f"n_neighbors does not take {type(n_neighbors)} value, enter integer value"
            )
        query_is_train = X is None
        tables = self._tables(X)
        k = n_neighbors + 1 if query_is_train else n_neighbors
        if k > self.n_samples_fit_:
            inequality = "n_neighbors < n_samples_fit" if query_is_train else "n_neighbors <= n_samples_fit"
            raise ValueError(
                f"Expected {inequality}, but n_neighbors = {n_neighbors}, "
                f"n_samples_fit = {self.n_samples_fit_}, n_samples = {tables.shape[0]}"
            )
        dist, ind = aqd_kneighbors(tables, self.codes_, k, n_jobs=self.n_jobs)
        if query_is_train:
            dist, ind = self._drop_self(dist, ind)
        if not return_distance:
            return ind
        return self._to_metric(dist), ind

    def _drop_self(self, dist, ind):
        """Remove each item from its own (k + 1)-list, as NearestNeighbors does."""
        n_queries, k = ind.shape
        keep = ind != np.arange(n_queries)[:, None]
        missing = keep.all(axis=1)
        # The item is absent when more than k items tie with it at a smaller
        # index. For distances NearestNeighbors then drops the first of those
        # duplicates; for inner products, where an item needs not be its own
        # best match, the last (worst) entry goes.
        column = 0 if self.metric != "inner_product" else k - 1
        keep[missing, column] = False
        shape = (n_queries, k - 1)
        return dist[keep].reshape(shape), ind[keep].reshape(shape)

    def _to_metric(self, dist):
        return np.sqrt(dist) if self.metric == "euclidean" else dist

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=False):
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
        check_is_fitted(self)
        if sort_results and not return_distance:
            raise ValueError("return_distance must be True if sort_results is True.")
        if radius is None:
            radius = self.radius
        query_is_train = X is None
        tables = self._tables(X)
        threshold = radius * abs(radius) if self.metric == "euclidean" else radius
        dists, inds = aqd_radius_neighbors(tables, self.codes_, threshold, n_jobs=self.n_jobs)
        for q in range(len(inds)):
            d, i = dists[q], inds[q]
            if query_is_train:
                keep = i != q
                d, i = d[keep], i[keep]
            if sort_results:
                order = np.argsort(d, kind="stable")
                d, i = d[order], i[order]
            dists[q], inds[q] = self._to_metric(d), i
        if return_distance:
            return _object_array(dists), _object_array(inds)
        return _object_array(inds)

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of the k nearest indexed items of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Queries; the indexed items (not their own neighbours) when None.
        n_neighbors : int, default=None
            Number of neighbours; ``self.n_neighbors`` when None.
        mode : {"connectivity", "distance"}, default="connectivity"
            Ones, or the distances in ``metric`` units, as edge weights.

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
        check_is_fitted(self)
        if n_neighbors is None:
            n_neighbors = self.n_neighbors
        if mode == "connectivity":
            ind = self.kneighbors(X, n_neighbors, return_distance=False)
            data = np.ones(ind.size)
        elif mode == "distance":
            dist, ind = self.kneighbors(X, n_neighbors, return_distance=True)
            data = dist.ravel()
        else:
            raise ValueError(
                'Unsupported mode, must be one of "connectivity", '
                f'or "distance" but got "{mode}" instead'
            )
        n_queries, k = ind.shape
        indptr = np.arange(0, n_queries * k + 1, k)
        graph = sp.csr_matrix((data, ind.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))
        return _as_sparse_interface(graph)

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity", sort_results=False):
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
        check_is_fitted(self)
        if mode == "connectivity":
            ind = self.radius_neighbors(X, radius, return_distance=False)
            data = None
        elif mode == "distance":
            dist, ind = self.radius_neighbors(X, radius, return_distance=True, sort_results=sort_results)
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
        graph = sp.csr_matrix((data, indices, indptr), shape=(len(ind), self.n_samples_fit_))
        return _as_sparse_interface(graph)

    # ---------------------------------------------------------------- score
    def score(self, X, y, top_k=None, normalize="retrieved"):
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

        Returns
        -------
        score : float
            MAP in [0, 1]; a query with no relevant item in its top k counts 0.

        Examples
        --------
        >>> import numpy as np
        >>> from skdqn import AQDNeighbors
        >>> X = np.r_[np.zeros((4, 2)), np.ones((4, 2))]
        >>> y = np.r_[np.zeros(4), np.ones(4)]
        >>> AQDNeighbors(M=1, K=2).fit(X, y).score(X, y)
        1.0
        """
        check_is_fitted(self)
        if self._fit_labels is None:
            raise ValueError(
                "score needs the labels of the indexed items: call fit(X, y) with y."
            )
        tables = self._tables(X)
        y = check_labels(y)
        if len(y) != tables.shape[0]:
            raise ValueError(f"y has {len(y)} entries but X has n_samples={tables.shape[0]}.")
        ap = retrieval_average_precisions(
            tables, self.codes_, y, self._fit_labels, top_k=top_k, normalize=normalize, n_jobs=self.n_jobs
        )
        return float(ap.mean())
