"""Training under ``torch.distributed``: the small pieces ``DeepQuantizer.fit`` uses.

When a process group is initialised (by ``torchrun`` or by the user, with
``torch.distributed.init_process_group``) and holds at least two processes,
:meth:`~skdqn.DeepQuantizer.fit` trains one model on all of them:

* :func:`world` says so (the rank and the number of processes), or returns
  None, and then every helper here is the identity: a fit without a process
  group takes exactly the steps it took before this module existed;
* every rank draws the same permutation of the items each epoch (the
  estimator's generator, seeded by ``random_state``, whose state
  :func:`shared_random_state` takes from rank 0), cuts it into the same
  *global* batches of ``batch_size`` items, and reads only its contiguous
  part of each (:func:`rank_batches`, :func:`split_counts`): a
  ``DistributedSampler`` that keeps the global batch of one process;
* the network is wrapped in ``DistributedDataParallel`` (:func:`wrap`); the
  embeddings of the global batch are gathered on every rank
  (:func:`gather_rows`, whose backward sums the gradient over the ranks and
  keeps the local rows), so the pairwise and proxy losses see every pair of
  the global batch, as one process does; the class proxies, a parameter
  outside the network, get their gradient averaged by
  :func:`average_gradients`;
* the codebook refreshes embed one contiguous share of the items per rank,
  gathered on every rank (:func:`embed_all`); every rank then fits the same
  codebooks, and rank 0's are broadcast (:func:`broadcast_arrays`) so that
  all ranks end with identical codebooks and codes even where their
  floating-point libraries differ; :func:`broadcast_module` does the same for
  the network's weights and buffers.

Collectives run on the CPU for ``gloo`` and on the current CUDA device for
``nccl`` (:func:`collective_device`).
"""

import os
import pickle
import zlib
from collections import namedtuple

import numpy as np
import torch
import torch.distributed as dist

from ._data import Batch

__all__ = [
    "World",
    "world",
    "is_main",
    "collective_device",
    "training_device",
    "split_counts",
    "rank_batches",
    "gather_rows",
    "average_gradients",
    "broadcast_module",
    "broadcast_arrays",
    "shared_random_state",
    "check_agreement",
    "embed_all",
    "wrap",
    "end_spawned",
    "spawn",
]

World = namedtuple("World", ["rank", "size"])
World.__doc__ = """This process's place in the process group: ``rank`` in ``[0, size)``, ``size`` >= 2."""


def world():
    """This process's rank and the number of processes, or None when training is not distributed.

    Returns
    -------
    World or None
        ``World(rank, size)`` when ``torch.distributed`` is available, a
        default process group is initialised and it holds at least two
        processes; None otherwise (a group of one process trains as without
        a group).

    Examples
    --------
    >>> from skdqn.training._distributed import world
    >>> world() is None  # no process group here
    True
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    size = dist.get_world_size()
    return World(dist.get_rank(), size) if size >= 2 else None


def is_main(where):
    """Whether this process prints and writes files: rank 0, or any process when ``where`` is None.

    Parameters
    ----------
    where : World or None
        From :func:`world`.

    Returns
    -------
    bool

    Examples
    --------
    >>> from skdqn.training._distributed import World, is_main
    >>> is_main(None), is_main(World(0, 2)), is_main(World(1, 2))
    (True, True, False)
    """
    return where is None or where.rank == 0


def collective_device():
    """Where the tensors of a collective must live: the current CUDA device for nccl, else the CPU.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> from skdqn.training._distributed import collective_device
    >>> collective_device()  # no process group: the CPU
    device(type='cpu')
    """
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def training_device(device, where):
    """The device a rank trains on: ``device``, checked against the backend.

    Under nccl the device must be CUDA; ``"cuda"`` without an index becomes
    the current CUDA device (set it per process with
    ``torch.cuda.set_device(local_rank)``).

    Parameters
    ----------
    device : torch.device
        From the ``device`` parameter.
    where : World or None
        From :func:`world`; None returns ``device`` as it is.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._distributed import training_device
    >>> training_device(torch.device("cpu"), None)
    device(type='cpu')
    """
    if where is None:
        return device
    if dist.get_backend() == "nccl":
        if device.type != "cuda":
            raise ValueError(
                f"device: the process group uses the nccl backend, which needs CUDA tensors, but "
                f"device={device!s}. Train on 'cuda' (after torch.cuda.set_device(local_rank)), or "
                "initialise the group with backend='gloo' for CPU training."
            )
        if device.index is None:
            return torch.device("cuda", torch.cuda.current_device())
    return device


def split_counts(n, size):
    """How many of ``n`` consecutive rows each of ``size`` ranks holds: contiguous, sizes differ by at most 1.

    Parameters
    ----------
    n : int
        Rows to share.
    size : int
        Number of ranks.

    Returns
    -------
    counts : list of int
        ``counts[r]`` rows for rank ``r``, which holds rows
        ``sum(counts[:r])`` to ``sum(counts[:r + 1])``; later ranks get the
        extra rows.

    Examples
    --------
    >>> from skdqn.training._distributed import split_counts
    >>> split_counts(10, 2), split_counts(7, 3)
    ([5, 5], [2, 2, 3])
    """
    return [n * (r + 1) // size - n * r // size for r in range(size)]


def _share(n, where):
    """``(start, stop)`` of this rank's contiguous share of ``n`` rows."""
    return n * where.rank // where.size, n * (where.rank + 1) // where.size


def rank_batches(source, index_batches, where):
    """This rank's part of each global mini-batch, as :class:`~skdqn.training._data.Batch` es.

    Without a process group, the batches of ``source.batches(index_batches)``
    themselves. Otherwise global batches with fewer items than ranks are
    skipped (at most the last one of an epoch), each rank reads its
    contiguous part of every other batch (:func:`split_counts`), and the
    batches it yields carry the indices of the whole global batch: ``index``
    is the global batch (for its labels and codes), ``x`` this rank's inputs.

    Parameters
    ----------
    source : skdqn.training._data.BatchSource
        The training items.
    index_batches : list of torch.Tensor
        The global mini-batches of item indices, the same on every rank.
    where : World or None
        From :func:`world`.

    Returns
    -------
    iterator of Batch

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._data import ArrayBatches
    >>> from skdqn.training._distributed import World, rank_batches
    >>> source = ArrayBatches(torch.arange(6.0).reshape(6, 1))
    >>> batch = next(rank_batches(source, [torch.tensor([5, 0, 3, 1])], World(1, 2)))
    >>> batch.index.tolist(), batch.x.flatten().tolist()
    ([5, 0, 3, 1], [3.0, 1.0])
    """
    if where is None:
        return source.batches(index_batches)
    kept = [idx for idx in index_batches if idx.shape[0] >= where.size]
    parts = [idx[slice(*_share(idx.shape[0], where))] for idx in kept]
    return (Batch(idx, batch.x, batch.y) for idx, batch in zip(kept, source.batches(parts)))


class _GatherRows(torch.autograd.Function):
    """All-gather of rows (ranks may hold different numbers), gradient summed back to each rank's rows."""

    @staticmethod
    def forward(ctx, x, counts, rank):
        ctx.counts, ctx.rank = counts, rank
        width = max(counts)
        padded = x.new_zeros((width,) + tuple(x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded)
        return torch.cat([part[:count] for part, count in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's gradient of the gathered rows, summed
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None, None


def gather_rows(x, where, counts=None):
    """All ranks' rows of ``x``, in rank order, on every rank; gradients flow to the local rows.

    The backward sums the gradient of the gathered rows over the ranks
    (all-reduce) and returns this rank's slice of it. Each rank computes the
    loss of the whole global batch, so the sum is ``size`` times the
    gradient of one loss; ``DistributedDataParallel`` divides the
    parameters' gradients by ``size``, so the step is that of one process
    on the global batch.

    Parameters
    ----------
    x : torch.Tensor of shape (B_r, ...)
        This rank's rows; the ranks' ``B_r`` may differ.
    where : World or None
        From :func:`world`; None returns ``x`` itself.
    counts : list of int, default=None
        Every rank's ``B_r``, when known (the training step knows them from
        the global batch); None gathers them first (one more collective).

    Returns
    -------
    torch.Tensor of shape (sum of B_r, ...)

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._distributed import gather_rows
    >>> x = torch.ones(2, 3)
    >>> gather_rows(x, None) is x
    True
    """
    if where is None:
        return x
    if counts is None:
        mine = torch.tensor([x.shape[0]], device=x.device)
        every = [torch.empty_like(mine) for _ in range(where.size)]
        dist.all_gather(every, mine)
        counts = [int(c) for c in every]
    if counts[where.rank] != x.shape[0]:
        raise ValueError(f"gather_rows: this rank holds {x.shape[0]} rows, counts say {counts[where.rank]}.")
    return _GatherRows.apply(x, list(counts), where.rank)


def average_gradients(params, where):
    """Average the gradients of parameters outside the DDP-wrapped network (the class proxies) over the ranks.

    Parameters
    ----------
    params : iterable of torch.Tensor
        Parameters whose ``.grad`` is replaced by its mean over the ranks;
        those without a gradient are skipped.
    where : World or None
        From :func:`world`; None leaves the gradients as they are.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._distributed import average_gradients
    >>> p = torch.nn.Parameter(torch.ones(2))
    >>> p.grad = torch.full((2,), 3.0)
    >>> average_gradients([p], None)
    >>> p.grad.tolist()
    [3.0, 3.0]
    """
    if where is None:
        return
    for p in params:
        if p is not None and p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(where.size)


def broadcast_module(module, where):
    """Copy rank 0's parameters and buffers (e.g. batch-norm statistics) to every rank, in place.

    Parameters
    ----------
    module : torch.nn.Module
        The same architecture on every rank.
    where : World or None
        From :func:`world`; None does nothing.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._distributed import broadcast_module
    >>> broadcast_module(torch.nn.Linear(2, 2), None)
    """
    if where is None:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.device.type == collective_device().type:
                dist.broadcast(tensor.data, src=0)
            else:
                copy = tensor.data.to(collective_device())
                dist.broadcast(copy, src=0)
                tensor.data.copy_(copy)


def broadcast_arrays(arrays, where):
    """Rank 0's numpy arrays on every rank (same shapes on every rank; dtypes kept).

    Parameters
    ----------
    arrays : list of ndarray
        Numeric arrays (float32, or integers that fit in int64).
    where : World or None
        From :func:`world`; None returns ``arrays`` as they are.

    Returns
    -------
    list of ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.training._distributed import broadcast_arrays
    >>> broadcast_arrays([np.arange(3)], None)[0].tolist()
    [0, 1, 2]
    """
    if where is None:
        return arrays
    out = []
    for a in arrays:
        wide = a.astype(np.int64) if a.dtype.kind in "iub" else a
        t = torch.from_numpy(np.ascontiguousarray(wide)).to(collective_device())
        dist.broadcast(t, src=0)
        out.append(t.cpu().numpy().astype(a.dtype, copy=False))
    return out


def _broadcast_object(obj):
    """Rank 0's picklable ``obj`` on every rank."""
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=collective_device())
    return holder[0]


def shared_random_state(rng, where):
    """A RandomState with rank 0's state on every rank (``random_state=None`` differs across processes).

    Parameters
    ----------
    rng : numpy.random.RandomState
        This process's random state (from ``check_random_state``).
    where : World or None
        From :func:`world`; None returns ``rng`` itself.

    Returns
    -------
    numpy.random.RandomState
        ``rng`` itself on rank 0 (it advances as in one process); a new
        RandomState in rank 0's state elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.training._distributed import shared_random_state
    >>> rng = np.random.RandomState(0)
    >>> shared_random_state(rng, None) is rng
    True
    """
    if where is None:
        return rng
    state = _broadcast_object(rng.get_state())
    if where.rank == 0:
        return rng
    shared = np.random.RandomState()
    shared.set_state(state)
    return shared


def _fingerprint(labels):
    """A checksum of the labels, equal on every rank that holds the same labels."""
    labels = np.ascontiguousarray(labels)
    data = pickle.dumps(labels.tolist()) if labels.dtype == object else labels.tobytes()
    return (labels.shape, str(labels.dtype), zlib.crc32(data))


def check_agreement(where, labels, **settings):
    """Raise a ValueError on every rank unless all ranks fit the same data with the same settings.

    Ranks that disagree on the number of items, the labels or a setting
    that fixes the number of collective calls (epochs, batches) would wait
    for each other forever; this check gathers each rank's values once and
    names the first that differs.

    Parameters
    ----------
    where : World or None
        From :func:`world`; None checks nothing.
    labels : ndarray
        This rank's training labels (their shape and a checksum are compared).
    **settings
        Named values that must be equal on every rank (e.g. ``batch_size``).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.training._distributed import check_agreement
    >>> check_agreement(None, np.arange(3), batch_size=256)
    """
    if where is None:
        return
    mine = {"X (number of items and labels)": _fingerprint(labels), **settings}
    every = [None] * where.size
    dist.all_gather_object(every, mine)
    for name, value in mine.items():
        values = [theirs[name] for theirs in every]
        if any(v != values[0] for v in values):
            shown = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise ValueError(
                f"{name} differs between the processes of the torch.distributed group ({shown}); "
                "every process must call fit with the same data and parameters."
            )


def embed_all(net, source, where, embed):
    """The embeddings of all items: each rank embeds its contiguous share, gathered on every rank.

    Parameters
    ----------
    net : skdqn.training._network.QuantizationNetwork
        The plain network (not the DDP wrapper), the same weights on every rank.
    source : skdqn.training._data.BatchSource
        The training items.
    where : World or None
        From :func:`world`; None returns ``embed(net, source)``.
    embed : callable
        :func:`skdqn.training._data.embed` (passed in, so that this module does not
        decide how a source is embedded).

    Returns
    -------
    Z : ndarray of shape (n, R), float32

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._data import ArrayBatches, embed
    >>> from skdqn.training._distributed import embed_all
    >>> from skdqn.training._network import QuantizationNetwork, build_mlp
    >>> net = QuantizationNetwork(build_mlp(2, ()), 2, 3)
    >>> embed_all(net, ArrayBatches(torch.zeros(5, 2)), None, embed).shape
    (5, 3)
    """
    if where is None:
        return embed(net, source)
    start, stop = _share(len(source), where)
    Z = embed(net, _Share(source, start, stop))
    with torch.no_grad():
        gathered = gather_rows(torch.from_numpy(Z).to(collective_device()), where)
    return gathered.cpu().numpy()


class _Share:
    """The items ``start..stop`` of a batch source, read in its own embedding batches (``chunks``)."""

    def __init__(self, source, start, stop):
        self.source, self.start, self.stop = source, start, stop
        self.size = getattr(source, "chunk_size", None) or getattr(source, "batch_size", 1024)

    def __len__(self):
        return self.stop - self.start

    def chunks(self):
        bounds = range(self.start, self.stop, self.size)
        return self.source.batches([torch.arange(b, min(b + self.size, self.stop)) for b in bounds])


def wrap(net, device, where):
    """The module a training step calls: ``net`` in ``DistributedDataParallel``, or ``net`` itself.

    Parameters
    ----------
    net : torch.nn.Module
        The network, on ``device``; its frozen parameters
        (``requires_grad=False``) are left out of the gradient reduction.
        Buffers (batch-norm statistics) are rank 0's, as DDP's default
        makes them (no ``SyncBatchNorm``); :func:`broadcast_module` copies
        them again before every embedding pass.
    device : torch.device
        The rank's training device.
    where : World or None
        From :func:`world`; None returns ``net``.

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._distributed import wrap
    >>> net = torch.nn.Linear(2, 2)
    >>> wrap(net, torch.device("cpu"), None) is net
    True
    """
    if where is None:
        return net
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)


def end_spawned(folder):
    """Last step of a worker started by :func:`spawn`: barrier, ``done{rank}`` marker, group destroyed.

    Parameters
    ----------
    folder : str or path
        The folder :func:`spawn` gave the worker. The marker is written after
        a barrier, so once every rank's marker exists, every rank has done all
        it did before calling this.

    Examples
    --------
    >>> import torch.distributed as dist
    >>> def worker(rank, size, folder):  # doctest: +SKIP
    ...     dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous",
    ...                             rank=rank, world_size=size)
    ...     ...  # the work, its results written under folder
    ...     end_spawned(folder)
    """
    dist.barrier()
    open(os.path.join(folder, f"done{dist.get_rank()}"), "w").close()
    dist.destroy_process_group()


def spawn(worker, size, make_folder, *args, attempts=3):
    """Run ``worker(rank, size, folder, *args)`` in ``size`` processes; the folder of the run that counted.

    Parameters
    ----------
    worker : callable
        A picklable function that ends with :func:`end_spawned` ``(folder)``.
    size : int
        Number of processes.
    make_folder : callable
        Returns a new, empty folder (a path) for one attempt.
    *args
        More arguments for ``worker``.
    attempts : int, default=3
        How many times a run killed by a signal before every rank was done is
        started again, in a fresh folder.

    Returns
    -------
    folder : path
        Where the successful attempt's workers wrote.

    Notes
    -----
    torch 2.13 (CPU build) now and then aborts a gloo process (SIGABRT,
    "terminate called without an active exception") in its C++ teardown, in
    ``destroy_process_group`` or at interpreter exit, after all its work: seen
    once in CI in the test suite's 2-process fit, and once in 60 runs of it on
    the development machine; ``torchrun`` meets the same. A rank killed by a
    signal once every rank wrote its ``done`` marker is therefore accepted,
    one killed earlier is run again; an exception raised in a worker
    (``torch.multiprocessing.ProcessRaisedException``) is never retried.

    Examples
    --------
    >>> import tempfile
    >>> folder = spawn(worker, 2, tempfile.mkdtemp)  # doctest: +SKIP
    """
    import torch.multiprocessing as mp

    for attempt in range(attempts):
        folder = make_folder()
        try:
            mp.spawn(worker, args=(size, str(folder), *args), nprocs=size)
            return folder
        except mp.ProcessExitedException as exc:
            done = all(os.path.exists(os.path.join(folder, f"done{rank}")) for rank in range(size))
            if exc.signal_name is None or (not done and attempt == attempts - 1):
                raise
            if done:
                return folder
