"""The torch scan kernel: the same AQD, top-k and radius matches on CPU or CUDA.

Same interface and results as :class:`skdqn.search._kernels.NumpyKernel`: the
``(M * K, nq)`` float32 table (:func:`skdqn.search._tables.flat_tables`) is moved to
the device, and for each chunk of codes the rows its codes pick are gathered
and added in subspace order, ``m = 0, 1, ...``, in float32, the additions of
the numpy scan (:func:`chunk_distances`: ``embedding_bag`` on the CPU,
``index_select`` and ``+=`` on CUDA), so the distances are the same floats on
the CPU (and on CUDA, whose float32 additions are IEEE-rounded too; the tests
allow a float32 rounding there). Per chunk, ``torch.topk`` gives each query's
k-th distance; every item at or below it (ties included) and strictly below
the running k-th is a candidate, copied to the host and merged exactly as the
numpy kernel merges (by distance, then row), so the neighbours and their
order are those of the stable-argsort reference.

On the CPU (``fast=True``, the default) the kernel runs the integer scan of
:mod:`skdqn.search._qscan` instead, with torch doing the sums: tables quantized to
integers whose sums stay ``<= 2047`` (exact in float16), summed by a float16
``embedding_bag`` (2 bytes per look-up, and torch's bag kernel is faster than
a numpy row gather), the candidates under the conservative bound re-ranked
with their exact float32 AQD, so the results are again those of the float32
scan, bit for bit (:func:`float16_scanner`). Once the running k-th is tight,
the candidates are found from the minima of groups of rows
(:func:`_below_by_groups`), not by comparing every sum. Calls of at most
``PAIR_QUERIES`` queries (:mod:`skdqn.search._tuning`) on enough uint8 codes go to numpy's one-query pair scan,
which is faster there (a torch bag of ``M`` scalars per item is its slowest
case).

Memory on the device: the codes are moved a chunk at a time (never the whole
array), ``chunk`` rows with ``chunk * (M * 8 + 2 * nq * 4)`` bytes for their
int64 indices and their distances, plus the table (``M * K * nq * 4``). The
chunk is as many rows as fit :data:`skdqn.search._tuning.TORCH_DEVICE_BYTES` (256 MiB
on CUDA; on the CPU :data:`skdqn.search._tuning.TORCH_CPU_BYTES`, 8 MiB, so the
working set stays in cache), and at least ``db_block``.

torch is imported when a kernel is made, never at ``import skdqn``.
"""

import numpy as np

from . import _tuning
from ._kernels import NumpyKernel
from ._qscan import quantize_tables
from ._scan import FloatScan, IntegerScan, radius_float, radius_integer, table_offsets, topk_float, topk_integer, uses_pairs
from ._tables import flat_tables

__all__ = ["TorchKernel", "resolve_device", "float16_scanner"]

FLOAT16_MAX_SUM = 2047  # integer sums up to this are exact in float16 (the CPU integer scan)


def resolve_device(device="auto"):
    """The :class:`torch.device` of a ``device`` parameter, or a ValueError naming it.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        ``"auto"``: CUDA when available, else the CPU.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        An unknown device, CUDA on a machine without it, or ``cuda:N`` with
        fewer than ``N + 1`` GPUs.

    Examples
    --------
    >>> from skdqn.search._torch_kernel import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    from .._validation import check_device

    resolved = check_device(device)
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)."
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    return resolved


def _chunk_rows(nq, M, device, db_block):
    """Codes per chunk: what ``TORCH_DEVICE_BYTES`` (CUDA) or ``TORCH_CPU_BYTES`` (:mod:`skdqn.search._tuning`) hold.

    At least ``db_block``.
    """
    budget = _tuning.TORCH_DEVICE_BYTES if device.type == "cuda" else _tuning.TORCH_CPU_BYTES
    return max(int(db_block), budget // (M * 8 + 2 * nq * 4))


def chunk_distances(table, codes, offsets, bags=None):
    """AQD of a chunk of codes to the queries of ``table``, on ``table``'s device.

    Parameters
    ----------
    table : torch.Tensor of shape (M * K, nq), float32
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    offsets : torch.Tensor of shape (M,), int64, on the same device
        ``m * K``.
    bags : bool, default=None
        ``True``: ``embedding_bag(mode="sum")``, one bag of ``M`` rows per
        item, summed in bag order (the faster on the CPU); ``False``:
        ``index_select`` of each subspace's rows, added one after the other.
        ``None``: bags on the CPU only (the order of the CUDA
        ``embedding_bag`` reduction is not documented).

    Returns
    -------
    distances : torch.Tensor of shape (n, nq), float32
        ``sum_m table[offsets[m] + codes[i, m], j]``, added in the order
        ``m = 0, 1, ...`` (the numpy scan's order).
    """
    import torch

    idx = torch.from_numpy(np.ascontiguousarray(codes)).to(table.device, torch.int64) + offsets
    if table.device.type == "cpu" if bags is None else bags:
        flat = idx.reshape(-1)
        bags = torch.arange(0, flat.numel(), idx.shape[1], device=table.device)
        return torch.nn.functional.embedding_bag(flat, table, bags, mode="sum")
    idx = idx.T.contiguous()
    out = torch.index_select(table, 0, idx[0])
    tmp = torch.empty_like(out)
    for m in range(1, idx.shape[0]):
        torch.index_select(table, 0, idx[m], out=tmp)
        out += tmp
    return out


def _device_table(tables, device):
    import torch

    nq, M, K = tables.shape
    flat = flat_tables(np.asarray(tables, dtype=np.float32)).ravel()
    # Through a 1-D view: numpy may give an (M * K, 1) array odd strides, on
    # which embedding_bag takes a path ~20x slower.
    table = torch.from_numpy(flat).view(M * K, nq).to(device)
    return table, torch.arange(M, dtype=torch.int64, device=device) * K


def _candidates_to_host(dist, mask, start):
    """(distances, rows, queries) of the ``True`` entries of ``mask``, as numpy arrays.

    On the CPU through numpy on the same memory (``np.flatnonzero`` is
    several times faster than ``torch.nonzero``); on CUDA only the entries
    found are copied.
    """
    import torch

    if dist.device.type == "cpu":
        d = dist.numpy()
        flat_hit = np.flatnonzero(mask.numpy() if isinstance(mask, torch.Tensor) else mask)
        rows, cols = np.divmod(flat_hit, d.shape[1])
        return d.ravel()[flat_hit], rows + start, cols
    rows, cols = torch.nonzero(mask, as_tuple=True)
    d = dist[rows, cols].cpu().numpy()
    return d, rows.cpu().numpy().astype(np.intp) + start, cols.cpu().numpy().astype(np.intp)


def _float_scanner(table, offsets, codes, chunk):
    """The torch :class:`~skdqn.search._scan.FloatScan`: :func:`chunk_distances` on the device, candidates to the host.

    On the CPU the comparisons run in numpy on the same memory; on CUDA in
    torch, and only the entries found are copied.
    """
    import torch

    def scan(start, stop):
        return chunk_distances(table, codes[start:stop], offsets)

    def own_kth(dist, k):
        if dist.device.type == "cpu":
            return np.partition(dist.numpy(), k - 1, axis=0)[k - 1]
        return torch.topk(dist, k, dim=0, largest=False).values[-1].cpu().numpy()

    def select(dist, start, bound, strict):
        if dist.device.type == "cpu":
            d = dist.numpy()
            mask = d < bound if strict else d <= bound
        else:
            limit = torch.from_numpy(np.ascontiguousarray(bound)).to(dist.device)
            mask = dist < limit if strict else dist <= limit
        return _candidates_to_host(dist, mask, start)

    return FloatScan(scan, chunk, own_kth, select)


def _below_by_groups(sums, thr):
    """Flat indices of the entries of ``sums`` below their column's ``thr``; rows ascending per column.

    ``sums`` is a CPU tensor of shape (n, nq); ``thr`` an ndarray (nq,) of
    its dtype. The minimum of each column over each group of
    :data:`skdqn.search._tuning.TORCH_GROUP_ROWS` rows (one read of the chunk: torch's vectorised
    reduction) tells which groups hold a hit; only those are compared. Once
    the running k-th is tight, a chunk of thousands of rows has a few dozen
    hits, and this is several times faster than comparing every entry
    (numpy's compare and ``flatnonzero``), which it falls back to when the
    hits are dense.
    """
    values = sums.numpy()
    n, nq = values.shape
    group = _tuning.TORCH_GROUP_ROWS
    n_groups = n // group
    head = n_groups * group
    mins = sums[:head].view(n_groups, group, nq).amin(dim=1).numpy()
    g, c = np.nonzero(mins < thr)
    if 8 * g.size > mins.size:  # dense hits: compare everything
        return np.flatnonzero(values < thr)
    segments = values[:head].reshape(n_groups, group, nq)[g, :, c]  # (n_hot, group)
    hit, j = np.nonzero(segments < thr[c][:, None])
    found = (g[hit] * group + j) * nq + c[hit]
    if head < n:
        found = np.concatenate([found, np.flatnonzero(values[head:] < thr) + head * nq])
    return found


def float16_scanner(qt, codes, chunk):
    """The CPU :class:`~skdqn.search._scan.IntegerScan` of torch: float16 ``embedding_bag`` of integer tables.

    Parameters
    ----------
    qt : QuantizedTables
        From ``quantize_tables(tables, max_sum=2047)``: every partial sum is
        an integer ``<= 2047``, exact in float16.
    codes : ndarray of shape (n, M), integer in ``[0, K)``
    chunk : int
        Items per call of ``scan``.

    Returns
    -------
    scanner : IntegerScan
        ``scan`` returns the float16 sums' bits as int16 (for non-negative
        float16 values the bit patterns sort as the values), ``encode`` and
        ``decode`` convert integer thresholds and sums; ``below`` compares
        only the groups of rows whose minimum is below their threshold
        (:func:`_below_by_groups`).
    """
    import torch

    nq, M, K = qt.q.shape
    table = torch.from_numpy(flat_tables(qt.q).astype(np.float16).ravel()).view(M * K, nq)
    # int32 indices (M * K < 2**31): measured 10-30% faster than int64 here.
    offsets = torch.arange(M, dtype=torch.int32) * K

    def sums(start, stop):
        idx = (torch.from_numpy(np.ascontiguousarray(codes[start:stop])).to(torch.int32) + offsets).reshape(-1)
        bags = torch.arange(0, idx.numel(), M, dtype=torch.int32)
        return torch.nn.functional.embedding_bag(idx, table, bags, mode="sum").view(torch.int16)

    def scan(start, stop):
        return sums(start, stop).numpy()

    def below(start, stop, thr):
        return _below_by_groups(sums(start, stop), thr)

    def encode(thr):  # thresholds above every sum stay above it
        return np.minimum(thr, FLOAT16_MAX_SUM + 1).astype(np.float16).view(np.int16)

    def decode(values):
        return values.view(np.float16).astype(np.int64)

    return IntegerScan(scan, chunk, encode, decode, below)


class TorchKernel:
    """The scan in torch, on the CPU or a CUDA device; results as :class:`~skdqn.search._kernels.NumpyKernel`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Checked when the kernel is made (:func:`resolve_device`): CUDA on a
        machine without it is a ValueError.
    fast : bool, default=True
        On the CPU, the integer scan of :mod:`skdqn.search._qscan` with float16
        sums (:func:`float16_scanner`) and the exact float32 re-rank; the
        same results. Calls of at most ``PAIR_QUERIES`` (4) queries on at
        least ``PAIR_MIN_ROWS`` (:mod:`skdqn.search._tuning`) uint8 codes take
        numpy's one-query pair scan there (faster than a torch bag of ``M``
        scalars per item; same results). ``False`` (and always
        on CUDA): the float32 sums.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._torch_kernel import TorchKernel
    >>> tables = np.array([[[0.0, 1.0], [0.0, 4.0]]], dtype=np.float32)
    >>> codes = np.array([[1, 1], [1, 0], [0, 0]], dtype=np.uint8)
    >>> TorchKernel("cpu").kneighbors(tables, codes, 2)
    (array([[0., 1.]], dtype=float32), array([[2, 1]]))
    """

    name = "torch"

    def __init__(self, device="auto", fast=True):
        self.device = str(resolve_device(device))
        self.fast = fast

    def _numpy_pairs(self, tables, codes, device, method):
        """Whether numpy's one-query pair scan serves this call (CPU, fast, at most PAIR_QUERIES queries, uses_pairs).

        A bag of ``M`` scalars per item is torch's slowest case (one query at
        a time on 10^6 codes: 25 ms against numpy's 5.7 ms, measured), and
        the pair scan returns the same results.
        """
        nq, M, K = tables.shape
        cpu = self.fast and device.type == "cpu" and method != "full_sort"
        return cpu and nq <= _tuning.PAIR_QUERIES and uses_pairs(codes, K, M)

    def _quantized(self, tables, device, method):
        """Integer tables for the CPU integer scan, or None (CUDA, full sort, not fast, non-finite)."""
        if not self.fast or device.type != "cpu" or method == "full_sort":
            return None
        return quantize_tables(tables, max_sum=FLOAT16_MAX_SUM)

    def kneighbors(self, tables, codes, k, *, method="threshold", db_block=None):
        """The ``k`` smallest AQDs of each query over ``codes``, local row indices.

        Parameters
        ----------
        tables : ndarray of shape (nq, M, K), float32
        codes : ndarray of shape (n, M), integer in ``[0, K)``, ``k <= n``
        k : int
        method : {"threshold", "full_sort"}, default="threshold"
            ``"full_sort"``: every distance to the host, then a stable sort.
        db_block : int, default=None
            Lower bound on the codes of a chunk; :data:`skdqn.search._tuning.DB_BLOCK`
            (4096) when None.

        Returns
        -------
        distances : ndarray of shape (nq, k), float32
            Ascending; ties by row.
        indices : ndarray of shape (nq, k), intp
        """
        import torch

        device = torch.device(self.device)
        nq, M, K = tables.shape
        db_block = _tuning.DB_BLOCK if db_block is None else db_block
        if self._numpy_pairs(tables, codes, device, method):
            return NumpyKernel().kneighbors(tables, codes, k, db_block=db_block)
        chunk = _chunk_rows(nq, M, device, db_block)
        qt = self._quantized(tables, device, method)
        if qt is not None:
            scanner = float16_scanner(qt, codes, chunk)
            return topk_integer(flat_tables(tables), codes, k, table_offsets(M, K), qt, scanner)
        table, offsets = _device_table(tables, device)
        if method != "full_sort":
            return topk_float(codes.shape[0], nq, k, _float_scanner(table, offsets, codes, chunk))
        dist = np.empty((nq, codes.shape[0]), dtype=np.float32)
        for start in range(0, codes.shape[0], chunk):
            part = chunk_distances(table, codes[start : start + chunk], offsets)
            dist[:, start : start + part.shape[0]] = part.T.cpu().numpy()
        ind = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, ind, axis=1), ind

    def radius_neighbors(self, tables, codes, threshold, *, db_block=None):
        """Rows of ``codes`` whose AQD is ``<= threshold``, per query, in row order.

        Parameters
        ----------
        tables : ndarray of shape (nq, M, K), float32
        codes : ndarray of shape (n, M), integer in ``[0, K)``
        threshold : numpy.float32
        db_block : int, default=None
            As in :meth:`kneighbors`.

        Returns
        -------
        found : list of (distances, indices) tuples, one per query
        """
        import torch

        device = torch.device(self.device)
        nq, M, K = tables.shape
        db_block = _tuning.DB_BLOCK if db_block is None else db_block
        method = "radius" if np.isfinite(threshold) else "full_sort"
        if nq == 1 and self._numpy_pairs(tables, codes, device, method):
            return NumpyKernel().radius_neighbors(tables, codes, threshold, db_block=db_block)
        chunk = _chunk_rows(nq, M, device, db_block)
        qt = self._quantized(tables, device, method)
        if qt is not None:
            scanner = float16_scanner(qt, codes, chunk)
            return radius_integer(flat_tables(tables), codes, threshold, table_offsets(M, K), qt, scanner)
        table, offsets = _device_table(tables, device)
        return radius_float(codes.shape[0], nq, threshold, _float_scanner(table, offsets, codes, chunk))
