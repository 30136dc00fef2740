"""Moving product-quantization codebooks and codes to and from faiss.

faiss (optional; ``pip install faiss-cpu``, or the GPU build) is the usual
engine for billion-scale serving. Its :class:`faiss.IndexPQ` holds exactly
what an :class:`~skdqn.AQDNeighbors` index holds, in another layout:

* ``index.pq.centroids``: a flat float32 vector, ``(M, K, ds)`` in C order,
  ``K = 2 ** nbits``;
* ``index.codes``: ``code_size`` bytes per item, the ``M`` codes of
  ``nbits`` bits each packed least-significant bit first (one byte per code
  when ``nbits == 8``).

:func:`pack_codes` and :func:`unpack_codes` convert between that packing and
skdqn's ``(n, M)`` code arrays; :func:`to_faiss_index` and
:func:`from_faiss_index` move whole indexes.
"""

import numpy as np

from ._pq import code_dtype

__all__ = ["import_faiss", "pack_codes", "unpack_codes", "to_faiss_index", "from_faiss_index"]


def import_faiss():
    """Import faiss, or raise an ImportError that says how to install it.

    Returns
    -------
    faiss : module

    Examples
    --------
    >>> from skdqn._faiss import import_faiss
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
    >>> from skdqn._faiss import pack_codes
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
    >>> from skdqn._faiss import unpack_codes
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
    >>> from skdqn._faiss import to_faiss_index
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
    >>> from skdqn._faiss import from_faiss_index
    >>> codebooks, codes, metric = from_faiss_index(index)  # doctest: +SKIP
    """
    faiss = import_faiss()
    if not isinstance(index, faiss.IndexPQ):
        raise TypeError(
            f"expected a faiss.IndexPQ; got {type(index).__module__}.{type(index).__name__}. "
            "Other faiss indexes (IVF, OPQ pre-transforms, ID maps) hold other data; "
            "unwrap to the IndexPQ first."
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
