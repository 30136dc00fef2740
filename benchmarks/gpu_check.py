"""GPU proof in one short run (under 5 minutes on a CUDA machine).

1. Fits a :class:`~skdqn.DeepQuantizer` on ``--device`` (``cuda`` by default),
   pickles it, and loads the pickle in a CPU-only subprocess
   (``CUDA_VISIBLE_DEVICES=""``): ``transform`` there must equal ``transform``
   here within float tolerance. When ``DeepQuantizer.save`` exists (the
   pickle-free format), the same round trip through ``save`` / ``load``.
2. Runs the torch kernel on the device at ``--sizes`` codes (10^6 and 10^7 by
   default, M = 8, K = 256, top-10): the same neighbours as the numpy kernel on
   a sample of queries, and queries per second for batches of ``--batch``.
3. Searches inverted lists (``AQDNeighbors.from_codes`` with 1,024 lists of
   the first size's codes, ``n_probe=4``) with ``backend="torch"`` on the
   device: the same neighbours as numpy on the sample, and queries per second
   of both.
4. Fits the same :class:`~skdqn.DeepQuantizer` on two processes
   (``torch.distributed``, started by :func:`torch.multiprocessing.spawn`):
   nccl with one GPU per process when at least two are visible, else gloo
   (both processes on ``--device``): both ranks must end with identical
   codebooks, codes and weights, and agree with a one-process fit (``dropout=0``:
   codes equal on at least 90% of the items, MAP within 0.005); wall times of
   both fits.

Without CUDA the CUDA parts are skipped with a printed message, unless
``--device cpu`` is given (then everything runs on the CPU, e.g. with small
``--sizes``; this is what the test suite does). Exit status 1 if a check fails.

Usage::

    python benchmarks/gpu_check.py                       # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --sizes 20000 --n-train 300 --epochs 1
"""

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout's skdqn, also in the child process


def _torch():
    import torch

    return torch


def describe(device):
    torch = _torch()
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU (torch {torch.__version__}, {torch.get_num_threads()} threads)"


_CHILD = """
import pickle, sys, numpy as np, torch
assert not torch.cuda.is_available(), "the child process must not see CUDA"
with open(sys.argv[1], "rb") as f:
    dq = pickle.load(f)
X = np.load(sys.argv[2])
np.save(sys.argv[3], dq.transform(X))
if len(sys.argv) > 4:
    from skdqn import DeepQuantizer
    np.save(sys.argv[5], DeepQuantizer.load(sys.argv[4]).transform(X))
"""


def check_quantizer(device, n_train, epochs, tol=1e-4):
    """Fit on ``device``, reload in a CPU-only process; True when transforms agree."""
    from skdqn import DeepQuantizer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_train, 32)).astype(np.float32)
    y = rng.integers(0, 5, n_train)
    X += 2.0 * np.eye(5, 32, dtype=np.float32)[y]
    start = time.perf_counter()
    dq = DeepQuantizer(M=4, K=16, n_components=16, hidden_layer_sizes=(64,), max_epochs=epochs,
                       warmup_epochs=0, device=device, random_state=0).fit(X, y)
    print(f"fit on {dq.device_}: {time.perf_counter() - start:.1f} s")
    here = dq.transform(X)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, name) for name in ("dq.pkl", "X.npy", "pickled.npy", "saved", "saved.npy")]
        with open(paths[0], "wb") as f:
            pickle.dump(dq, f)
        np.save(paths[1], X)
        args = paths[:3]
        if hasattr(dq, "save"):
            dq.save(paths[3])
            args = paths
        else:
            print("DeepQuantizer.save does not exist yet: pickle round trip only")
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
        subprocess.run([sys.executable, "-c", _CHILD, *args], check=True, env=env)
        ok = True
        checks = [("pickle", paths[2])] + ([("save/load", paths[4])] if len(args) > 3 else [])
        for label, path in checks:
            there = np.load(path)
            diff = float(np.max(np.abs(there - here)))
            good = diff <= tol * max(1.0, float(np.max(np.abs(here))))
            ok &= good
            print(f"{label} on a CPU-only process: max |transform difference| {diff:.2e} -> {'OK' if good else 'FAIL'}")
    return ok


def check_kernel(device, sizes, batch, sample, repeats=3, M=8, K=256, d=64):
    """Torch kernel on ``device`` against numpy on a sample; queries/s per size."""
    from skdqn.search._kernels import NumpyKernel
    from skdqn._pq import train_codebooks
    from skdqn.search._tables import distance_tables
    from skdqn.search._torch_kernel import TorchKernel

    rng = np.random.default_rng(1)
    codebooks = train_codebooks(rng.normal(size=(5000, d)).astype(np.float32), M, K, random_state=0)
    tables = distance_tables(rng.normal(size=(batch, d)), codebooks)
    kernel, ok = TorchKernel(device), True
    for n in sizes:
        codes = rng.integers(0, K, size=(n, M), dtype=np.uint8)
        d_t, i_t = kernel.kneighbors(tables, codes, 10)  # warm-up, and the result checked
        d_n, i_n = NumpyKernel().kneighbors(tables[:sample], codes, 10)
        same = bool((i_t[:sample] == i_n).all())
        close = bool(np.allclose(d_t[:sample], d_n, rtol=1e-5, atol=1e-5))
        ok &= same and close
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            kernel.kneighbors(tables, codes, 10)
            best = min(best, time.perf_counter() - start)
        print(f"torch kernel, {n:.0e} codes, batch of {batch}: {batch / best:,.0f} queries/s; "
              f"same neighbours as numpy on {sample} queries: {'OK' if same and close else 'FAIL'}")
        del codes
    return ok


def check_lists(device, n, batch, sample, n_lists=1024, n_probe=4, repeats=3, M=8, K=256, d=64):
    """Inverted lists scanned by the torch kernel on ``device`` against numpy: neighbours and queries/s.

    On the CPU ``backend="torch"`` hands inverted lists to numpy's list scan,
    so there (``--device cpu``) both sides run numpy's scan.
    """
    from skdqn import AQDNeighbors
    from skdqn._pq import train_codebooks

    rng = np.random.default_rng(2)
    codebooks = train_codebooks(rng.normal(size=(5000, d)).astype(np.float32), M, K, random_state=0)
    n_lists = min(n_lists, n)
    codes = rng.integers(0, K, size=(n, M), dtype=np.uint8)  # random lists: only the scan is checked
    assignments = rng.integers(0, n_lists, n)
    params = dict(n_lists=n_lists, n_probe=n_probe, n_neighbors=10, n_jobs=1)
    index = AQDNeighbors.from_codes(codebooks, codes, list_assignments=assignments, **params)
    Q = rng.normal(size=(batch, d)).astype(np.float32)
    d_n, i_n = index.kneighbors(Q[:sample])
    index.set_params(backend="torch", device=device)
    d_t, i_t = index.kneighbors(Q[:sample])
    ok = bool((i_t == i_n).all()) and bool(np.allclose(d_t, d_n, rtol=1e-5, atol=1e-5))
    qps = {}
    for backend in ("torch", "numpy"):
        index.set_params(backend=backend)
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            index.kneighbors(Q)
            best = min(best, time.perf_counter() - start)
        qps[backend] = batch / best
    print(f"inverted lists, {n:.0e} codes, {n_lists} lists, n_probe={n_probe}, batch of {batch}: torch "
          f"{qps['torch']:,.0f} queries/s, numpy (CPU, n_jobs=1) {qps['numpy']:,.0f}; "
          f"same neighbours as numpy on {sample} queries: {'OK' if ok else 'FAIL'}")
    return ok


def _distributed_worker(rank, size, folder, backend, device, n_train, epochs):
    """One rank of :func:`check_distributed`: fit, pickle the estimator and the wall time."""
    torch = _torch()
    import torch.distributed as dist

    from skdqn import DeepQuantizer
    from skdqn.training._distributed import end_spawned

    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"file://{folder}/rendezvous", rank=rank, world_size=size)
    X, y = _distributed_data(n_train)
    start = time.perf_counter()
    dq = DeepQuantizer(**_distributed_params(epochs), device=device).fit(X, y)
    seconds = time.perf_counter() - start
    with open(os.path.join(folder, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump((dq, seconds), f)
    end_spawned(folder)


def _importable_by_name():
    """Let spawned processes import this module by name (the test suite loads it from its path)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)  # the children start with this sys.path
    if sys.modules.get(__name__) is None:  # pickling the worker looks it up here
        module = types.ModuleType(__name__)
        module.__dict__.update(globals())
        sys.modules[__name__] = module


def _distributed_data(n_train):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n_train, 32)).astype(np.float32)
    y = rng.integers(0, 5, n_train)
    return X + 2.0 * np.eye(5, 32, dtype=np.float32)[y], y


def _distributed_params(epochs):
    return dict(M=4, K=16, n_components=16, hidden_layer_sizes=(64,), dropout=0.0, batch_size=128,
                max_epochs=max(epochs, 2), warmup_epochs=1, random_state=0)


def check_distributed(device, n_train, epochs, min_agree=0.9, map_tol=0.005):
    """Two processes against one: identical ranks, codes and MAP close to a one-process fit."""
    torch = _torch()
    from skdqn import DeepQuantizer
    from skdqn.training._distributed import spawn

    _importable_by_name()
    cuda = device.startswith("cuda")
    backend = "nccl" if cuda and torch.cuda.device_count() >= 2 else "gloo"
    with tempfile.TemporaryDirectory() as parent:
        start = time.perf_counter()
        folder = spawn(_distributed_worker, 2, lambda: tempfile.mkdtemp(dir=parent),
                       backend, device, n_train, epochs)
        spawned = time.perf_counter() - start
        ranks = []
        for rank in range(2):
            with open(os.path.join(folder, f"rank{rank}.pkl"), "rb") as f:
                ranks.append(pickle.load(f))
    (a, seconds), (b, _) = ranks
    X, y = _distributed_data(n_train)
    start = time.perf_counter()
    one = DeepQuantizer(**_distributed_params(epochs), device=device).fit(X, y)
    alone = time.perf_counter() - start
    same_ranks = bool((a.codebooks_ == b.codebooks_).all() and (a.codes_ == b.codes_).all()) and all(
        torch.equal(u.cpu(), v.cpu()) for u, v in zip(a.network_.state_dict().values(), b.network_.state_dict().values())
    )
    agree = float((a.codes_ == one.codes_).all(axis=1).mean())
    gap = abs(a.score(X, y) - one.score(X, y))
    ok = same_ranks and agree >= min_agree and gap <= map_tol
    print(f"distributed fit ({backend}, 2 processes on {device if backend == 'gloo' else 'cuda:0, cuda:1'}): "
          f"{seconds:.1f} s (spawn included: {spawned:.1f} s), one process {alone:.1f} s; ranks identical: "
          f"{same_ranks}; codes equal to one process on {agree:.1%} of the items, MAP difference {gap:.4f} "
          f"-> {'OK' if ok else 'FAIL'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**6, 10**7], help="numbers of codes")
    parser.add_argument("--batch", type=int, default=1000, help="queries per kneighbors call")
    parser.add_argument("--sample", type=int, default=50, help="queries compared with numpy")
    parser.add_argument("--n-train", type=int, default=4000, help="DeepQuantizer training samples")
    parser.add_argument("--epochs", type=int, default=5, help="DeepQuantizer epochs")
    args = parser.parse_args(argv)
    torch = _torch()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"SKIPPED: --device {args.device} but CUDA is not available on this machine "
              "(run with --device cpu to exercise the same steps on the CPU).")
        return 0
    print(f"device: {describe(args.device)}")
    ok = check_quantizer(args.device, args.n_train, args.epochs)
    ok &= check_kernel(args.device, args.sizes, args.batch, min(args.sample, args.batch))
    ok &= check_lists(args.device, args.sizes[0], args.batch, min(args.sample, args.batch))
    ok &= check_distributed(args.device, args.n_train, args.epochs)
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
