"""An index built and searched as shards on a dask.distributed cluster.

Each worker encodes its rows of a dask array with one shared set of codebooks
(and coarse centroids, for inverted lists), learned beforehand on a sample,
and saves its shard with :meth:`AQDNeighbors.save <skdqn.AQDNeighbors.save>`;
a search loads each shard where it lives (memory-mapped) and the caller
merges the per-shard top-k with :func:`~skdqn.merge_kneighbors`. Blocks of a
dask array are encoded or transformed with :meth:`dask.array.Array.map_blocks`.

The functions take the estimator (a fitted :class:`~skdqn.AQDNeighbors`, the
"template") rather than importing it: the search engine knows no estimator
(see the architecture page), and any estimator with the same ``fit``,
``save``, ``load`` and ``kneighbors`` serves.
"""

import copy
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._search import merge_kneighbors

__all__ = ["ShardedIndex", "build_shards", "search_shards", "dask_encode"]

_OPENED = {}  # (path, header mtime) -> memory-mapped shard, per worker process
_MAX_OPENED = 256  # the oldest is dropped beyond this many
_OPENED_LOCK = threading.Lock()  # a worker's threads share the cache


@dataclass(frozen=True)
class ShardedIndex:
    """Where the shards of an index live: what :func:`build_shards` returns and :func:`search_shards` reads.

    Attributes
    ----------
    estimator : type
        The class of the shards (e.g. :class:`~skdqn.AQDNeighbors`), whose
        ``load`` opens them.
    paths : tuple of str
        Each shard's saved bundle, in item order.
    offsets : tuple of int
        The global index of each shard's first item.
    sizes : tuple of int
        Items per shard.
    workers : tuple of str
        The address of the worker that wrote each shard (where its search
        runs when that worker is still there).
    n_features : int
        Width of the vectors (and queries).
    n_neighbors : int
        The template's ``n_neighbors``: the default of :func:`search_shards`.
    """

    estimator: type
    paths: tuple
    offsets: tuple
    sizes: tuple
    workers: tuple
    n_features: int
    n_neighbors: int

    @property
    def n_samples(self):
        """Items in all the shards."""
        return int(sum(self.sizes))


def _shard_params(template):
    """The template's parameters with its fitted codebooks, rotation, coarse centroids and ``n_probe`` fixed."""
    params = template.get_params(deep=False)
    params.update(codebooks=template.codebooks_, rotation=template.rotation_)
    if template.coarse_centroids_ is not None:
        params.update(coarse_centroids=template.coarse_centroids_, n_lists=None, n_probe=int(template.n_probe_))
    return params


def _check_template(template, n_features):
    """A fitted template whose width is the data's, or raise."""
    if not all(hasattr(template, name) for name in ("fit", "save", "load", "kneighbors", "get_params")):
        raise TypeError(
            f"the template must be a fitted AQDNeighbors (fit, save, load, kneighbors); got {type(template).__name__}."
        )
    check_is_fitted(template)
    if template.n_features_in_ != n_features:
        raise ValueError(
            f"X has {n_features} features but the template's codebooks quantize {template.n_features_in_}; "
            "fit the template on a sample of the same vectors."
        )


def _check_dask_array(X, name="X"):
    """``X`` as a dask array of known row chunks, one chunk across the columns."""
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is a test dependency
        raise ImportError(f"{name} must be a dask array: install dask[distributed].") from exc
    if not isinstance(X, da.Array):
        raise TypeError(
            f"{name} must be a dask array (rows in chunks, e.g. dask.array.from_array(X, chunks=(100_000, -1))); "
            f"got {type(X).__name__}."
        )
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got {X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name} has rows chunks of unknown size: call {name}.compute_chunk_sizes() first.")
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def _shard_folder(folder):
    """The folder of the shards, created; refuse one that holds anything."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"folder {str(folder)!r} must be a new or empty directory; it holds files or is a file.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _build_shard(estimator, params, X, y, path):
    """On a worker: encode (and list) one block of rows, save it as a bundle; return its size and the worker."""
    from distributed import get_worker

    estimator(**params).fit(X, y).save(path)
    try:
        where = get_worker().address
    except ValueError:  # run outside a worker (e.g. dask's synchronous scheduler)
        where = ""
    return X.shape[0], where


def _label_blocks(y, X):
    """The labels of each row block of ``X``: None, slices of an array, or the blocks of a dask array."""
    if y is None:
        return [None] * len(X.chunks[0])
    if hasattr(y, "to_delayed"):
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} rows for {X.shape[0]} items.")
        y = y.rechunk((X.chunks[0],) + tuple((s,) for s in y.shape[1:]))
        return list(y.to_delayed().ravel())
    y = np.asarray(y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows for {X.shape[0]} items.")
    bounds = np.cumsum((0,) + X.chunks[0])
    return [y[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def build_shards(client, template, X, folder, y=None):
    """Encode a dask array on a cluster's workers, one saved shard per block of rows.

    Each row block of ``X`` is computed, encoded (and assigned to inverted
    lists) and saved on a worker, as one bundle written by
    :meth:`AQDNeighbors.save <skdqn.AQDNeighbors.save>`; every shard shares
    the template's codebooks, rotation and coarse centroids, so the shards
    together are the index that the template's settings would build of all
    the rows, split by item ranges.

    Parameters
    ----------
    client : distributed.Client
        The cluster. The folder must be reachable at the same path by the
        workers (a shared file system), or each shard stays on the disk of
        the worker that wrote it, where :func:`search_shards` searches it.
    template : AQDNeighbors
        Fitted, e.g. on a sample of ``X``: its ``codebooks_``, ``rotation_``,
        ``coarse_centroids_`` and ``n_probe_`` are given to every shard, with
        its other parameters (``metric``, ``n_neighbors``, ``refine_factor``...).
    X : dask.array.Array of shape (n_samples, n_features)
        The vectors (or embeddings), in chunks of rows of known sizes: one
        shard per chunk. Chunks across the columns are joined first.
    folder : str or path-like
        A new or empty directory; shard ``i`` is written to
        ``folder/shard_{i:05d}``.
    y : array-like or dask.array.Array of shape (n_samples,) or (n_samples, n_labels), default=None
        Labels of the items, stored with each shard.

    Returns
    -------
    shards : ShardedIndex
        Paths, global offsets, sizes and writing worker of each shard.

    See Also
    --------
    search_shards : Search the shards where they live and merge.
    dask_encode : Codes of a dask array, block by block.

    Examples
    --------
    >>> import dask.array as da, numpy as np, tempfile
    >>> from distributed import Client
    >>> from skdqn import AQDNeighbors, build_shards, search_shards
    >>> X = da.random.default_rng(0).normal(size=(40_000, 16), chunks=(10_000, 16))
    >>> template = AQDNeighbors(M=4, K=16, random_state=0).fit(X[:5_000].compute())
    >>> client = Client(processes=False)  # doctest: +SKIP
    >>> shards = build_shards(client, template, X, tempfile.mkdtemp())  # doctest: +SKIP
    >>> shards.offsets  # doctest: +SKIP
    (0, 10000, 20000, 30000)
    """
    import dask

    X = _check_dask_array(X)
    _check_template(template, X.shape[1])
    folder = _shard_folder(folder)
    params, estimator = _shard_params(template), type(template)
    paths = [str(folder / f"shard_{i:05d}") for i in range(len(X.chunks[0]))]
    tasks = [
        dask.delayed(_build_shard, pure=False)(estimator, params, block, labels, path)
        for block, labels, path in zip(X.to_delayed().ravel(), _label_blocks(y, X), paths)
    ]
    built = client.gather(client.compute(tasks))
    sizes = tuple(int(n) for n, _ in built)
    offsets = tuple(int(o) for o in np.cumsum((0,) + sizes[:-1]))
    return ShardedIndex(estimator, tuple(paths), offsets, sizes, tuple(w for _, w in built), X.shape[1],
                        int(template.n_neighbors))


def _opened(estimator, path):
    """The shard at ``path``, memory-mapped, opened once per worker process (again when it is saved anew)."""
    header = Path(path) / "header.json"
    key = (str(path), os.stat(header).st_mtime_ns if header.exists() else None)
    with _OPENED_LOCK:
        shard = _OPENED.get(key)
    if shard is None:
        shard = estimator.load(path, mmap_mode="r")  # outside the lock: shards open in parallel
        with _OPENED_LOCK:
            _OPENED[key] = shard
            while len(_OPENED) > _MAX_OPENED:
                del _OPENED[next(iter(_OPENED))]
    return shard


def _search_shard(estimator, path, queries, n_neighbors, n_probe):
    """On a worker: the local top-k of one shard (a shallow copy, so that ``n_probe`` is this call's own)."""
    shard = copy.copy(_opened(estimator, path))
    if n_probe is not None and shard.coarse_centroids_ is not None:
        shard.set_params(n_probe=n_probe)
    return shard.kneighbors(queries, n_neighbors=n_neighbors)


def _check_queries(queries, n_features):
    queries = np.asarray(queries)
    if queries.ndim != 2 or queries.shape[1] != n_features:
        raise ValueError(f"queries must have shape (n_queries, {n_features}); got shape {queries.shape}.")
    return queries


def search_shards(client, shards, queries, n_neighbors=None, *, n_probe=None):
    """Search every shard on the worker that holds it and merge: the top-k of all the items.

    Each shard is opened memory-mapped (once per worker process) and searched
    by its own ``kneighbors``; the per-shard top-k lists are merged by
    :func:`~skdqn.merge_kneighbors` with the shards' offsets, ties by global
    index.

    Parameters
    ----------
    client : distributed.Client
        The cluster. A shard's search runs on the worker that wrote it, or on
        another one if that worker has left (the file must then be reachable
        there).
    shards : ShardedIndex
        From :func:`build_shards`.
    queries : array-like of shape (n_queries, n_features)
        Sent once to the cluster.
    n_neighbors : int, default=None
        Neighbours per query; the template's ``n_neighbors`` when None. At
        most the number of items.
    n_probe : int, default=None
        Lists probed per query (shards with inverted lists); the template's
        ``n_probe_`` when None.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float32
    indices : ndarray of shape (n_queries, n_neighbors), intp
        Global item indices.

    Notes
    -----
    An exhaustive index gives exactly the results of one index of all the
    items (:meth:`AQDNeighbors.from_codes <skdqn.AQDNeighbors.from_codes>`
    on the concatenated codes): distances and indices, tie order included.
    With inverted lists, every shard probes the same lists for a query (the
    centroids are shared), so the results are again identical, unless a
    shard's probed lists hold fewer than ``n_neighbors`` of its items: that
    shard then scans the next lists too (as any index does), and the merged
    neighbours can only be nearer than one index's.

    Examples
    --------
    >>> dist, ind = search_shards(client, shards, X[:5].compute(), n_neighbors=3)  # doctest: +SKIP
    >>> ind.shape  # doctest: +SKIP
    (5, 3)
    """
    if not isinstance(shards, ShardedIndex):
        raise TypeError(f"shards must be the ShardedIndex that build_shards returns; got {type(shards).__name__}.")
    queries = _check_queries(queries, shards.n_features)
    k = shards.n_neighbors if n_neighbors is None else n_neighbors
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= shards.n_samples:
        raise ValueError(f"n_neighbors must be an integer in [1, {shards.n_samples}] (the items); got {k!r}.")
    sent = client.scatter(queries, broadcast=len(shards.paths) > 1, hash=False)
    futures = [
        client.submit(_search_shard, shards.estimator, path, sent, min(int(k), size), n_probe,
                      workers=[where] if where else None, allow_other_workers=True, pure=False)
        for path, size, where in zip(shards.paths, shards.sizes, shards.workers)
    ]
    found = client.gather(futures)
    return merge_kneighbors([d for d, _ in found], [i for _, i in found], int(k), offsets=list(shards.offsets))


def _block_method(X, estimator, method):
    return getattr(estimator, method)(X)


def dask_encode(estimator, X, method="encode"):
    """Codes (or embeddings) of a dask array, block by block, with :meth:`dask.array.Array.map_blocks`.

    Lazy: returns a dask array with ``X``'s row chunks, computed on the
    cluster (or any dask scheduler). Each block is ``estimator.<method>``
    of the same block of ``X``, so the result equals the method on the whole
    array computed at once.

    Parameters
    ----------
    estimator : fitted estimator
        A fitted :class:`~skdqn.AQDNeighbors` (``encode``) or
        :class:`~skdqn.DeepQuantizer` (``encode`` or ``transform``): sent
        once with the graph, so encode with a small index (fitted on a
        sample), not one holding millions of codes.
    X : dask.array.Array of shape (n_samples, n_features)
        In chunks of rows of known sizes (chunks across the columns are
        joined first).
    method : {"encode", "transform"}, default="encode"

    Returns
    -------
    Y : dask.array.Array of shape (n_samples, M) or (n_samples, n_components)
        The codes (uint8 or uint16) or the embeddings.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from skdqn import AQDNeighbors, dask_encode
    >>> X = da.random.default_rng(0).normal(size=(1_000, 8), chunks=(250, 8))
    >>> index = AQDNeighbors(M=2, K=16, random_state=0).fit(X[:500].compute())
    >>> codes = dask_encode(index, X)
    >>> codes.shape, codes.chunks[0]
    ((1000, 2), (250, 250, 250, 250))
    >>> bool((codes.compute() == index.encode(X.compute())).all())
    True
    """
    if method not in ("encode", "transform"):
        raise ValueError(f"method must be 'encode' or 'transform'; got {method!r}.")
    X = _check_dask_array(X)
    if not hasattr(estimator, method):
        raise TypeError(f"{type(estimator).__name__} has no {method} method.")
    check_is_fitted(estimator)
    probe = getattr(estimator, method)(np.zeros((1, X.shape[1]), dtype=X.dtype))  # width, dtype; wrong width raises
    return X.map_blocks(_block_method, estimator, method, dtype=probe.dtype,
                        chunks=(X.chunks[0], (probe.shape[1],)), meta=probe[:0])
