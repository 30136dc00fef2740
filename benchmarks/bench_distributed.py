"""Wall time of a DeepQuantizer fit on 1 and on N processes (torch.distributed, gloo on the CPU).

Fashion-MNIST (Debian package ``dataset-fashion-mnist``): the first
``--n-train`` training images (10,000 by default) train ``DeepQuantizer``
with its defaults (``M=4, K=256``, 40 epochs, global batch 256, one torch
thread per process) and ``random_state=0``; 1,000 test images are the queries
of the MAP (``score``). For each number of processes in ``--procs`` the fit
runs in that many processes started by :func:`torch.multiprocessing.spawn`
(a gloo group initialised through a file; 1 runs in a plain process, no
group), in turn, best of ``--repeats``; rank 0 reports the fit's wall time
(data loading and process start excluded) and the MAP, and the codes are
compared with those of the first setting (the fraction of items whose codes
are all equal).

``--dropout 0`` removes the only intended difference between the settings
(each rank draws its own dropout masks), so the codes then differ only by
floating-point reduction order.

Usage::

    python benchmarks/bench_distributed.py                       # 1 and 2 processes
    python benchmarks/bench_distributed.py --procs 1 2 --dropout 0 --repeats 2
"""

import argparse
import os
import pickle
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _data(n_train, n_queries=1000):
    from skdqn.datasets import load_fashion_mnist

    X, y = load_fashion_mnist("train")
    Xq, yq = load_fashion_mnist("test")
    return X[:n_train], y[:n_train], Xq[:n_queries], yq[:n_queries]


def _fit(rank, size, folder, args):
    """One process: fit, and (rank 0) write the seconds, the MAP and the codes."""
    import torch
    import torch.distributed as dist

    from skdqn import DeepQuantizer
    from skdqn.training._distributed import end_spawned

    torch.set_num_threads(1)
    if size > 1:
        dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=size)
    X, y, Xq, yq = _data(args.n_train)
    dq = DeepQuantizer(M=4, K=256, dropout=args.dropout, max_epochs=args.epochs, random_state=0)
    start = time.perf_counter()
    dq.fit(X, y)
    seconds = time.perf_counter() - start
    if rank == 0:
        with open(os.path.join(folder, "result.pkl"), "wb") as f:
            pickle.dump({"seconds": seconds, "map": dq.score(Xq, yq), "codes": dq.codes_}, f)
    if size > 1:
        end_spawned(folder)


def run(size, args):
    """Fit on ``size`` processes; the result of rank 0."""
    from skdqn.training._distributed import spawn

    with tempfile.TemporaryDirectory() as parent:
        if size == 1:
            folder = parent
            _fit(0, 1, folder, args)
        else:
            folder = spawn(_fit, size, lambda: tempfile.mkdtemp(dir=parent), args)
        with open(os.path.join(folder, "result.pkl"), "rb") as f:
            return pickle.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="numbers of processes")
    parser.add_argument("--n-train", type=int, default=10000, help="training images")
    parser.add_argument("--epochs", type=int, default=40, help="max_epochs")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout (0: no per-rank randomness)")
    parser.add_argument("--repeats", type=int, default=1, help="fits per setting (the best time is kept)")
    args = parser.parse_args(argv)
    print(f"Fashion-MNIST, {args.n_train} training images, DeepQuantizer(M=4, K=256, dropout={args.dropout}, "
          f"max_epochs={args.epochs}, random_state=0), {os.cpu_count()} cores, one torch thread per process")
    reference = None
    for _ in range(args.repeats):
        for size in args.procs:
            result = run(size, args)
            if reference is None:
                reference = result
            same = float((result["codes"] == reference["codes"]).all(axis=1).mean())
            print(f"{size} process(es): fit {result['seconds']:.1f} s, MAP {result['map']:.4f}, "
                  f"codes equal to the first run's on {same:.1%} of the items", flush=True)


if __name__ == "__main__":
    main()
