"""Exact, stable selection of the smallest values per row, with packed sort keys.

A float32 value and an index up to ``2**32 - 1`` pack into one ``uint64`` whose
integer order is the order "by value, then by index": the value's bits are
mapped so that unsigned order equals float order (:func:`order_bits`), shifted
into the high half, and the index fills the low half. Sorting or
partitioning such keys with numpy's fast (unstable) sorts gives the stable
order exactly, several times faster than a stable argsort; the value comes
back from the key unchanged (:func:`unpack_keys`).
"""

import numpy as np

from . import _tuning

__all__ = ["order_bits", "pack_keys", "unpack_keys", "stable_smallest", "PAD_KEY", "MAX_KEY_INDEX"]

PAD_KEY = np.uint64(np.iinfo(np.uint64).max)  # sorts after every real key (value +inf included)
MAX_KEY_INDEX = 2**32 - 1  # an index must fit the low 32 bits (PAD_KEY's is excluded)

_SIGN = np.uint32(0x80000000)


def order_bits(values):
    """uint32 whose unsigned order is the order of float32 ``values`` (-0.0 == +0.0).

    Parameters
    ----------
    values : ndarray of float32 (or exactly representable in float32), no NaN

    Returns
    -------
    bits : ndarray of uint32, the shape of ``values``

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ranking import order_bits
    >>> v = np.array([1.0, -2.0, 0.0, -0.0, np.inf], np.float32)
    >>> np.argsort(order_bits(v), kind="stable").tolist()
    [1, 2, 3, 0, 4]
    """
    # Adding 0 turns -0.0 into +0.0, so that the two zeros tie.
    u = np.add(values, np.float32(0.0), dtype=np.float32).view(np.uint32)
    negative = (u & _SIGN) != 0
    return np.where(negative, ~u, u | _SIGN)


def pack_keys(values, indices):
    """uint64 keys ordered by (value, index).

    Parameters
    ----------
    values : ndarray of float32, no NaN
    indices : ndarray of int, same shape, in ``[0, 2**32 - 1)``

    Returns
    -------
    keys : ndarray of uint64

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ranking import pack_keys, unpack_keys
    >>> keys = pack_keys(np.array([0.5, 0.5, -1.0], np.float32), np.array([7, 3, 9]))
    >>> unpack_keys(np.sort(keys))
    (array([-1. ,  0.5,  0.5], dtype=float32), array([9, 3, 7]))
    """
    keys = order_bits(values).astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= np.asarray(indices).astype(np.uint64)
    return keys


def unpack_keys(keys):
    """``(values, indices)`` of keys from :func:`pack_keys`; :data:`PAD_KEY` gives (inf, -1).

    Parameters
    ----------
    keys : ndarray of uint64

    Returns
    -------
    values : ndarray of float32
    indices : ndarray of intp
    """
    high = (keys >> np.uint64(32)).astype(np.uint32)
    u = np.where((high & _SIGN) != 0, high ^ _SIGN, ~high)
    values = u.view(np.float32)
    indices = (keys & np.uint64(MAX_KEY_INDEX)).astype(np.intp)
    pad = keys == PAD_KEY
    if pad.any():
        values = np.where(pad, np.float32(np.inf), values)
        indices[pad] = -1
    return values, indices


def _smallest_by_argmin(values, depth):
    """:func:`stable_smallest` by ``depth`` argmins, each found value masked with ``inf``.

    ``argmin`` returns the first of equal minima, so rank by rank this is
    the stable order; masking cannot tell an ``inf`` value from a masked
    one, so when a found value is ``inf`` this returns None and the caller
    takes the general path. Measured on 1,000 x 1,024 coarse scores: 0.23,
    0.41 and 0.84 ms at depth 2, 4 and 8, against 10.7 ms for the packed-key
    partition.
    """
    work = np.array(values, dtype=values.dtype, copy=True)
    rows = np.arange(values.shape[0])
    found = np.empty((values.shape[0], depth), dtype=np.intp)
    for rank in range(depth):
        col = np.argmin(work, axis=1)
        if np.isposinf(work[rows, col]).any():
            return None
        found[:, rank] = col
        work[rows, col] = np.inf
    return found


def stable_smallest(values, depth):
    """Column indices of the ``depth`` smallest values of each row, ties by column.

    Parameters
    ----------
    values : ndarray of shape (n_rows, n_cols), float32, no NaN
        ``n_cols < 2**32``.
    depth : int
        ``1 <= depth <= n_cols``.

    Returns
    -------
    indices : ndarray of shape (n_rows, depth), intp
        Equal to ``np.argsort(values, axis=1, kind="stable")[:, :depth]``.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._ranking import stable_smallest
    >>> stable_smallest(np.array([[3.0, 1.0, 1.0, 0.0]], np.float32), 3)
    array([[3, 1, 2]])
    """
    n_rows, n_cols = values.shape
    if depth == 1:  # argmin returns the first smallest: ties by column already
        return np.argmin(values, axis=1)[:, None].astype(np.intp)
    if depth <= _tuning.ARGMIN_DEPTH:  # one argmin per rank
        found = _smallest_by_argmin(values, depth)
        if found is not None:
            return found
    keys = pack_keys(values, np.broadcast_to(np.arange(n_cols), values.shape))
    if depth < n_cols // 2:  # keys are distinct: the partition keeps the right ones
        keys = np.partition(keys, depth - 1, axis=1)[:, :depth]
    keys.sort(axis=1)
    return (keys[:, :depth] & np.uint64(MAX_KEY_INDEX)).astype(np.intp)
