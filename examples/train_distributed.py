"""
Training on several processes or GPUs (torch.distributed)
=========================================================

``DeepQuantizer.fit`` trains on every process of an initialised
``torch.distributed`` process group: the network in
``DistributedDataParallel``, each process reading its part of every global
mini-batch of ``batch_size`` items, the losses on the whole global batch, and
the codebooks fitted to every process's embeddings. Every process ends with
the same fitted estimator (codebooks, codes, weights), a plain
``DeepQuantizer`` that pickles, saves and searches like any other.

Start it with ``torchrun``, which runs this script once per process::

    torchrun --standalone --nproc_per_node=2 examples/train_distributed.py   # 2 CPU processes (gloo)
    torchrun --standalone --nproc_per_node=4 examples/train_distributed.py   # 4 GPUs (nccl)

Every process passes the same data and parameters to ``fit`` (checked: a
mismatch raises a ``ValueError`` on every process). Only rank 0 prints the
progress; ``save`` writes on rank 0 only (the other ranks return the path
without writing).

What does not work: a ``KeyboardInterrupt`` stops training on every process
(no early, partially fitted estimator as with one process); sampling is
skdqn's (no custom ``Sampler``: every process draws the same permutation from
``random_state`` and reads its contiguous part of each global batch); one
estimator per process group (independent fits on each rank need no group);
results match a one-process fit up to floating-point summation order
and dropout, whose masks each process draws for its own rows.

This file is not in the gallery (it needs a launcher); the test suite runs
it with two CPU processes.
"""

import argparse
import os
import zlib

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import DeepQuantizer


def main(argv=None):
    parser = argparse.ArgumentParser(description="DeepQuantizer under torchrun")
    parser.add_argument("--output", default="dq_model.npz", help="where rank 0 saves the model")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)

    # %%
    # One process per GPU with nccl, or CPU processes with gloo. torchrun sets
    # RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address.
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)
    rank, size = dist.get_rank(), dist.get_world_size()

    # %%
    # Every process loads the same data (here: small enough for memory; a
    # map-style torch Dataset works the same way, each process reading only
    # the items of its part of each batch).
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)

    # %%
    # ``batch_size`` is the global mini-batch: 256 items in all, 256 / size
    # per process. The same ``random_state`` on every process.
    dq = DeepQuantizer(M=2, K=16, max_epochs=args.epochs, warmup_epochs=args.epochs // 2,
                       random_state=0, verbose=1)
    dq.fit(X_train, y_train)

    # %%
    # Every process holds the same model; rank 0 reports and saves it.
    checksum = zlib.crc32(dq.codes_.tobytes()) ^ zlib.crc32(dq.codebooks_.tobytes())
    print(f"rank {rank} of {size}: codes and codebooks checksum {checksum:08x}", flush=True)
    path = dq.save(args.output)  # writes on rank 0 only
    if rank == 0:
        print(f"MAP of {len(X_test)} test queries: {dq.score(X_test, y_test):.3f}; saved to {path}")
    dist.barrier()  # every rank done before the group goes: gloo may abort a rank that leaves early
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
