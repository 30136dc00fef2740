"""Moving product-quantization codebooks and codes to and from faiss.

faiss (optional; ``pip install faiss-cpu``, or the GPU build) is the usual
engine for billion-scale serving. Its :class:`faiss.IndexPQ` holds exactly
what an :class:`~skdqn.AQDNeighbors` index holds, in another layout:

* ``index.pq.centroids``: a flat float32 vector, ``(M, K, ds)`` in C order,
  ``K = 2 ** nbits``;
* ``index.codes``: ``code_size`` bytes per item, the ``M`` codes of
  ``nbits`` bits each packed least-significant bit first (one byte per code
  when ``nbits == 8``).

An index with inverted lists is a :class:`faiss.IndexIVFPQ` with
``by_residual = False`` (the codes are not residuals, so skdqn's codebooks and
every distance stay the same), a flat coarse quantizer (``IndexFlatL2`` or
``IndexFlatIP``) holding the coarse centroids, and one inverted list per list
holding the items' ids and packed codes.

:func:`pack_codes` and :func:`unpack_codes` convert between that packing and
skdqn's ``(n, M)`` code arrays; :func:`to_faiss_index` and
:func:`from_faiss_index` move whole indexes, :func:`to_faiss_ivf` and
:func:`from_faiss_ivf` indexes with inverted lists.

An index with a rotation (OPQ) is a :class:`faiss.IndexPreTransform` whose
one transform is a :class:`faiss.OPQMatrix` (any bias-free square
``LinearTransform`` is read) in front of the ``IndexPQ`` or ``IndexIVFPQ``:
faiss computes ``A x``, skdqn ``x @ rotation``, so ``A = rotation.T``
(:func:`to_faiss_pretransform`, :func:`from_faiss_pretransform`).
"""

import numpy as np

from .._pq import code_dtype

__all__ = [
    "import_faiss",
    "pack_codes",
    "unpack_codes",
    "to_faiss_index",
    "from_faiss_index",
    "to_faiss_ivf",
    "from_faiss_ivf",
    "is_faiss_ivf",
    "is_faiss_pretransform",
    "to_faiss_idmap",
    "to_faiss_pretransform",
    "from_faiss_pretransform",
]


def import_faiss():
    """Import faiss, or raise an ImportError that says how to install it.

    Returns
    -------
    faiss : module

    Examples
    --------
    >>> from skdqn.io._faiss import import_faiss
    >>> faiss = import_faiss()  # doctest: +SKIP
    """
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "faiss is needed for to_faiss/from_faiss: pip install faiss-cpu (or faiss-gpu), "
            'or pip install "skdqn[scale]".'
        ) from exc
    return faiss


def _nbits(K):
    nbits = int(K).bit_length() - 1
    if K < 2 or (1 << nbits) != K:
        raise ValueError(
            f"faiss.IndexPQ needs K = 2 ** nbits codewords per subspace; got K={K}. "
            "Use a power of two (256 is the usual choice)."
        )
    return nbits


def pack_codes(codes, nbits):
    """Pack ``(n, M)`` codes into faiss' ``nbits``-per-code byte layout.

    Parameters
    ----------
    codes : ndarray of shape (n, M), unsigned integer
        Values in ``[0, 2 ** nbits)``.
    nbits : int
        Bits per code, 1 to 16.

    Returns
    -------
    packed : ndarray of shape (n, ceil(M * nbits / 8)), uint8
        Code ``m`` of an item occupies bits ``m * nbits`` to
        ``(m + 1) * nbits - 1`` of its byte string, least significant first.

    Notes
    -----
    Reference loop (what faiss' ``BitstringWriter`` does)::

        for i in range(n):
            value = sum(int(codes[i, m]) << (m * nbits) for m in range(M))
            packed[i] = value.to_bytes(code_size, "little")

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import pack_codes
    >>> pack_codes(np.array([[1, 2]], dtype=np.uint8), 4)
    array([[33]], dtype=uint8)
    """
    codes = np.asarray(codes)
    n, M = codes.shape
    if nbits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    bits = (codes.astype(np.uint32)[:, :, None] >> np.arange(nbits, dtype=np.uint32)) & 1
    bits = bits.reshape(n, M * nbits).astype(np.uint8)
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_codes(packed, M, nbits):
    """Inverse of :func:`pack_codes`.

    Parameters
    ----------
    packed : ndarray of shape (n, code_size), uint8
    M : int
        Codes per item.
    nbits : int
        Bits per code.

    Returns
    -------
    codes : ndarray of shape (n, M), uint8 or uint16

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import unpack_codes
    >>> unpack_codes(np.array([[33]], dtype=np.uint8), 2, 4)
    array([[1, 2]], dtype=uint8)
    """
    packed = np.asarray(packed, dtype=np.uint8)
    dtype = code_dtype(1 << nbits)
    if nbits == 8:
        return np.array(packed[:, :M], dtype=dtype)
    n = packed.shape[0]
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : M * nbits]
    bits = bits.reshape(n, M, nbits).astype(np.uint32)
    return (bits << np.arange(nbits, dtype=np.uint32)).sum(axis=2).astype(dtype)


def to_faiss_index(codebooks, codes, metric="l2"):
    """A :class:`faiss.IndexPQ` holding these codebooks and codes.

    Parameters
    ----------
    codebooks : ndarray of shape (M, K, ds), float32
        ``K`` must be a power of two.
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    metric : {"l2", "inner_product"}, default="l2"
        faiss' ``METRIC_L2`` (squared distances) or ``METRIC_INNER_PRODUCT``.

    Returns
    -------
    index : faiss.IndexPQ
        Trained, with ``ntotal = n``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import to_faiss_index
    >>> C = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    >>> index = to_faiss_index(C, np.array([[0, 1], [3, 2]], dtype=np.uint8))  # doctest: +SKIP
    >>> index.ntotal, index.pq.M, index.pq.nbits  # doctest: +SKIP
    (2, 2, 2)
    """
    faiss = import_faiss()
    M, K, ds = codebooks.shape
    nbits = _nbits(K)
    faiss_metric = {"l2": faiss.METRIC_L2, "inner_product": faiss.METRIC_INNER_PRODUCT}[metric]
    index = faiss.IndexPQ(M * ds, M, nbits, faiss_metric)
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks, dtype=np.float32).ravel(), index.pq.centroids)
    index.is_trained = True
    packed = pack_codes(codes, nbits)
    if packed.shape[1] != index.code_size:  # pragma: no cover - a faiss layout change
        raise RuntimeError(f"faiss expects {index.code_size} bytes per code, packed {packed.shape[1]}.")
    faiss.copy_array_to_vector(packed.ravel(), index.codes)
    index.ntotal = codes.shape[0]
    return index


def from_faiss_index(index):
    """Codebooks, codes and metric of a trained :class:`faiss.IndexPQ`.

    Parameters
    ----------
    index : faiss.IndexPQ
        Trained; any ``nbits`` from 1 to 16.

    Returns
    -------
    codebooks : ndarray of shape (M, 2 ** nbits, d / M), float32
    codes : ndarray of shape (index.ntotal, M), uint8 or uint16
    metric : {"l2", "inner_product"}

    Examples
    --------
    >>> from skdqn.io._faiss import from_faiss_index
    >>> codebooks, codes, metric = from_faiss_index(index)  # doctest: +SKIP
    """
    faiss = import_faiss()
    if not isinstance(index, faiss.IndexPQ):
        raise TypeError(
            f"expected a faiss.IndexPQ or IndexIVFPQ (alone or behind an OPQMatrix in an "
            f"IndexPreTransform); got {type(index).__module__}.{type(index).__name__}. Other faiss "
            "indexes (ID maps, other transforms) hold other data; unwrap to the IndexPQ or "
            "IndexIVFPQ first."
        )
    if not index.is_trained:
        raise ValueError("the faiss.IndexPQ is not trained: train it (or add codebooks) first.")
    metric = {faiss.METRIC_L2: "l2", faiss.METRIC_INNER_PRODUCT: "inner_product"}.get(index.metric_type)
    if metric is None:
        raise ValueError(
            f"faiss metric_type={index.metric_type} is not supported; expected METRIC_L2 or "
            "METRIC_INNER_PRODUCT."
        )
    pq = index.pq
    M, nbits, ds = int(pq.M), int(pq.nbits), int(pq.dsub)
    if nbits > 16:
        raise ValueError(f"faiss.IndexPQ has nbits={nbits}; skdqn stores codes of at most 16 bits.")
    codebooks = faiss.vector_to_array(pq.centroids).reshape(M, 1 << nbits, ds).astype(np.float32)
    packed = faiss.vector_to_array(index.codes).reshape(int(index.ntotal), int(index.code_size))
    return codebooks, unpack_codes(packed, M, nbits), metric


def _is_faiss(index, kind):
    """Whether ``index`` is a faiss object of class ``kind`` (faiss is imported only for faiss objects)."""
    if type(index).__module__.split(".")[0] != "faiss":
        return False
    return isinstance(index, getattr(import_faiss(), kind))


def is_faiss_ivf(index):
    """Whether ``index`` is a :class:`faiss.IndexIVFPQ` (faiss imported only if installed).

    Parameters
    ----------
    index : object

    Returns
    -------
    bool

    Examples
    --------
    >>> from skdqn.io._faiss import is_faiss_ivf
    >>> is_faiss_ivf(object())
    False
    """
    return _is_faiss(index, "IndexIVFPQ")


def _faiss_metric(faiss, metric):
    return {"l2": faiss.METRIC_L2, "inner_product": faiss.METRIC_INNER_PRODUCT}[metric]


def to_faiss_ivf(codebooks, codes, centroids, offsets, ids, metric="l2"):
    """A :class:`faiss.IndexIVFPQ` (``by_residual=False``) holding these lists and codes.

    Parameters
    ----------
    codebooks : ndarray of shape (M, K, ds), float32
        ``K`` must be a power of two.
    codes : ndarray of shape (n, M), sorted by list
    centroids : ndarray of shape (n_lists, M * ds), float32
        The coarse quantizer (an ``IndexFlatL2``, or ``IndexFlatIP`` for
        ``metric="inner_product"``).
    offsets : ndarray of shape (n_lists + 1,), int
        List ``l`` is rows ``offsets[l]:offsets[l + 1]`` of ``codes``.
    ids : ndarray of shape (n,), int
        The item index of each row (faiss' ids).
    metric : {"l2", "inner_product"}, default="l2"

    Returns
    -------
    index : faiss.IndexIVFPQ
        Trained, ``nprobe = 1``, ``ntotal = n``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import to_faiss_ivf
    >>> C = np.zeros((1, 2, 2), np.float32)
    >>> index = to_faiss_ivf(C, np.zeros((3, 1), np.uint8), np.zeros((2, 2), np.float32),
    ...                      np.array([0, 2, 3]), np.array([0, 2, 1]))  # doctest: +SKIP
    >>> index.nlist, index.ntotal  # doctest: +SKIP
    (2, 3)
    """
    faiss = import_faiss()
    M, K, ds = codebooks.shape
    nbits = _nbits(K)
    d = M * ds
    quantizer = (faiss.IndexFlatIP if metric == "inner_product" else faiss.IndexFlatL2)(d)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFPQ(quantizer, d, int(centroids.shape[0]), M, nbits, _faiss_metric(faiss, metric))
    index.by_residual = False
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks, dtype=np.float32).ravel(), index.pq.centroids)
    index.is_trained = True
    packed = pack_codes(np.asarray(codes), nbits)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    for list_no in range(centroids.shape[0]):
        a, b = int(offsets[list_no]), int(offsets[list_no + 1])
        if b > a:
            chunk = np.ascontiguousarray(packed[a:b])
            index.invlists.add_entries(list_no, b - a, faiss.swig_ptr(ids[a:b]), faiss.swig_ptr(chunk))
    index.ntotal = int(codes.shape[0])
    return index


def from_faiss_ivf(index):
    """Codebooks, sorted codes, coarse centroids, offsets, ids and metric of a faiss IVF-PQ index.

    Parameters
    ----------
    index : faiss.IndexIVFPQ
        Trained, ``by_residual = False``, a coarse quantizer that can
        reconstruct its centroids (e.g. a flat index), ids ``0 .. ntotal - 1``.

    Returns
    -------
    codebooks : ndarray of shape (M, 2 ** nbits, d / M), float32
    codes : ndarray of shape (ntotal, M), sorted by list, items ascending within a list
    centroids : ndarray of shape (nlist, d), float32
    offsets : ndarray of shape (nlist + 1,), int64
    ids : ndarray of shape (ntotal,), int64
    metric : {"l2", "inner_product"}

    Raises
    ------
    ValueError
        For residual codes (``by_residual = True``): their codes encode
        ``x - centroid``, so no global codebook reproduces their distances;
        re-encoding them would lose accuracy. Build the faiss index with
        ``by_residual = False``, or convert the vectors themselves.

    Examples
    --------
    >>> from skdqn.io._faiss import from_faiss_ivf
    >>> codebooks, codes, centroids, offsets, ids, metric = from_faiss_ivf(index)  # doctest: +SKIP
    """
    faiss = import_faiss()
    if not index.is_trained:
        raise ValueError("the faiss index is not trained: train it first.")
    if index.by_residual:
        raise ValueError(
            "the faiss.IndexIVFPQ encodes residuals (by_residual=True): its codes are relative to "
            "each list's centroid, so skdqn's global codebooks cannot reproduce its distances. "
            "Build it with index.by_residual = False before training, or convert the vectors."
        )
    metric = {faiss.METRIC_L2: "l2", faiss.METRIC_INNER_PRODUCT: "inner_product"}.get(index.metric_type)
    if metric is None:
        raise ValueError(f"faiss metric_type={index.metric_type} is not supported; expected L2 or inner product.")
    pq = index.pq
    M, nbits, ds = int(pq.M), int(pq.nbits), int(pq.dsub)
    if nbits > 16:
        raise ValueError(f"faiss.IndexIVFPQ has nbits={nbits}; skdqn stores codes of at most 16 bits.")
    codebooks = faiss.vector_to_array(pq.centroids).reshape(M, 1 << nbits, ds).astype(np.float32)
    centroids = index.quantizer.reconstruct_n(0, int(index.nlist)).astype(np.float32)
    lists, ids, packed = _read_invlists(faiss, index)
    order = np.lexsort((ids, lists))  # by list, items ascending within a list
    ids, lists = ids[order], lists[order]
    if not np.array_equal(np.sort(ids), np.arange(ids.size)):
        raise ValueError(
            "the faiss index's ids are not 0 .. ntotal - 1 (added with add_with_ids?); skdqn "
            "numbers items by their position."
        )
    offsets = np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=int(index.nlist)))])
    return codebooks, unpack_codes(packed[order], M, nbits), centroids, offsets.astype(np.int64), ids, metric


def _read_invlists(faiss, index):
    """(list, id, packed code) of every item of a faiss IVF index, list by list."""
    invlists, code_size = index.invlists, int(index.code_size)
    lists, ids, codes = [], [], []
    for list_no in range(int(index.nlist)):
        size = int(invlists.list_size(list_no))
        if size == 0:
            continue
        ids.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
        codes.append(faiss.rev_swig_ptr(invlists.get_codes(list_no), size * code_size).copy())
        lists.append(np.full(size, list_no, dtype=np.int64))
    if not ids:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, code_size), np.uint8)
    packed = np.concatenate(codes).reshape(-1, code_size)
    return np.concatenate(lists), np.concatenate(ids).astype(np.int64), packed


def is_faiss_pretransform(index):
    """Whether ``index`` is a :class:`faiss.IndexPreTransform` (faiss imported only if installed).

    Parameters
    ----------
    index : object

    Returns
    -------
    bool

    Examples
    --------
    >>> from skdqn.io._faiss import is_faiss_pretransform
    >>> is_faiss_pretransform(object())
    False
    """
    return _is_faiss(index, "IndexPreTransform")


def to_faiss_idmap(codebooks, codes, ids, metric="l2"):
    """A :class:`faiss.IndexIDMap2` around the :class:`faiss.IndexPQ` of ``codes``, row ``j`` with the id ``ids[j]``.

    Parameters
    ----------
    codebooks : ndarray of shape (M, K, ds), float32
    codes : ndarray of shape (n, M), integer
    ids : ndarray of shape (n,), int
        The id of each row (skdqn's item indices).
    metric : {"l2", "inner_product"}, default="l2"

    Returns
    -------
    index : faiss.IndexIDMap2
        Trained, ``ntotal = n``; searches return ``ids``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import to_faiss_idmap
    >>> C = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    >>> index = to_faiss_idmap(C, np.array([[1], [0]], np.uint8), np.array([3, 7]))  # doctest: +SKIP
    >>> index.search(np.zeros((1, 2), np.float32), 1)[1]  # doctest: +SKIP
    array([[7]])
    """
    faiss = import_faiss()
    inner = to_faiss_index(codebooks, codes[:0], metric)  # faiss wraps only an empty index
    mapped = faiss.IndexIDMap2(inner)
    faiss.copy_array_to_vector(pack_codes(codes, inner.pq.nbits).ravel(), inner.codes)
    inner.ntotal = mapped.ntotal = codes.shape[0]
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), mapped.id_map)
    mapped.construct_rev_map()
    return mapped


def to_faiss_pretransform(rotation, index):
    """``index`` behind a :class:`faiss.OPQMatrix` holding ``rotation``.

    Parameters
    ----------
    rotation : ndarray of shape (d, d), float
        Orthogonal; skdqn rotates ``x @ rotation``, so the OPQMatrix holds
        ``A = rotation.T`` (faiss computes ``A x``).
    index : faiss.Index
        Trained, of dimension ``d`` (an ``IndexPQ`` or ``IndexIVFPQ``).

    Returns
    -------
    pretransform : faiss.IndexPreTransform
        Trained, with the ``ntotal`` of ``index``; it keeps ``index`` alive.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.io._faiss import to_faiss_index, to_faiss_pretransform
    >>> C = np.zeros((2, 4, 2), np.float32)
    >>> pq = to_faiss_index(C, np.zeros((3, 2), np.uint8))  # doctest: +SKIP
    >>> to_faiss_pretransform(np.eye(4), pq).ntotal  # doctest: +SKIP
    3
    """
    faiss = import_faiss()
    d = rotation.shape[0]
    opq = faiss.OPQMatrix(d, 1)  # M only matters for training, which is not done here
    faiss.copy_array_to_vector(np.ascontiguousarray(rotation.T, dtype=np.float32).ravel(), opq.A)
    opq.is_trained = True
    opq.is_orthonormal = True
    return faiss.IndexPreTransform(opq, index)


def from_faiss_pretransform(index):
    """The rotation and the wrapped index of a :class:`faiss.IndexPreTransform`.

    Parameters
    ----------
    index : faiss.IndexPreTransform
        Trained, with exactly one transform: an ``OPQMatrix`` or another
        square ``LinearTransform`` without bias (e.g. a
        ``RandomRotationMatrix``).

    Returns
    -------
    rotation : ndarray of shape (d, d), float32
        ``A.T`` of the transform (not checked for orthogonality here).
    inner : faiss.Index
        The wrapped index, downcast to its class (e.g. ``IndexPQ``).

    Raises
    ------
    ValueError
        For several transforms, one that is not a square linear map, or one
        with a bias (skdqn's rotation has no offset).

    Examples
    --------
    >>> from skdqn.io._faiss import from_faiss_pretransform
    >>> rotation, inner = from_faiss_pretransform(index)  # doctest: +SKIP
    """
    faiss = import_faiss()
    if not index.is_trained:
        raise ValueError("the faiss.IndexPreTransform is not trained: train it first.")
    if index.chain.size() != 1:
        raise ValueError(
            f"the faiss.IndexPreTransform has {index.chain.size()} transforms; skdqn reads one "
            "rotation (an OPQMatrix) in front of an IndexPQ or IndexIVFPQ."
        )
    transform = faiss.downcast_VectorTransform(index.chain.at(0))
    if not isinstance(transform, faiss.LinearTransform) or transform.d_in != transform.d_out:
        raise ValueError(
            f"the faiss.IndexPreTransform's transform is a {type(transform).__name__} from "
            f"{transform.d_in} to {transform.d_out} dimensions; skdqn reads a square linear "
            "rotation (OPQMatrix, RandomRotationMatrix)."
        )
    if transform.have_bias:
        raise ValueError(
            "the faiss.IndexPreTransform's linear transform has a bias; skdqn's rotation has no "
            "offset (subtract it from the data, or use an OPQMatrix)."
        )
    d = int(transform.d_in)
    A = faiss.vector_to_array(transform.A).reshape(d, d)
    return np.ascontiguousarray(A.T, dtype=np.float32), faiss.downcast_index(index.index)
