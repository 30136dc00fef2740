"""Quantization error of plain PQ, skdqn's OPQ and faiss' OPQ at the same M, K and iterations.

Data with correlated dimensions: the digits (1,797 x 64 pixels) and a random
rotation of anisotropic Gaussian data (4,000 x 32, standard deviations from
10 to 0.1). Errors are ``mean_i ||x_i - x_hat_i||^2`` on the training data.

* PQ: ``skdqn._pq.train_codebooks`` (what ``AQDNeighbors(rotation=None)`` learns);
* skdqn OPQ: ``skdqn._opq.train_opq`` (what ``AQDNeighbors(rotation="opq")``
  learns; ``random_state`` 0 to ``--seeds - 1``);
* faiss OPQ: ``IndexPreTransform(OPQMatrix(d, M), IndexPQ(d, M, log2 K))`` with
  ``OPQMatrix.pq`` set to a ``ProductQuantizer`` of the same ``K`` (by default
  faiss trains its rotation with ``K = 256`` whatever the index's ``K``), its
  own random start (seed 1234), then further random starts.

Both OPQs reach a local minimum that depends on the random start, so the
means over ``--seeds`` starts are compared. Usage::

    python benchmarks/bench_opq.py              # about a minute on 2 cores
    python benchmarks/bench_opq.py --seeds 1 --iterations 20
"""

import argparse
import contextlib
import os
import sys

import faiss
import numpy as np
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from skdqn._opq import random_rotation, rotate, train_opq
from skdqn._pq import quantization_error, train_codebooks


@contextlib.contextmanager
def quiet_stderr():
    """Silence faiss' C++ warnings (k-means with fewer than 39 * K training points)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def faiss_opq(X, M, K, n_iter, seed):
    d, nbits = X.shape[1], int(np.log2(K))
    opq = faiss.OPQMatrix(d, M)
    opq.niter = n_iter
    pq = faiss.ProductQuantizer(d, M, nbits)
    opq.pq = pq
    if seed:  # seed 0: faiss' own start
        pq.cp.seed = 1234 + seed
        faiss.copy_array_to_vector(random_rotation(d, 100 + seed).T.astype(np.float32).ravel(), opq.A)
    index = faiss.IndexPreTransform(opq, faiss.IndexPQ(d, M, nbits))
    with quiet_stderr():
        index.train(X)
    return float(((X.astype(np.float64) - index.sa_decode(index.sa_encode(X))) ** 2).sum(axis=1).mean())


def problems():
    rng = np.random.default_rng(0)
    gauss = (rng.normal(size=(4000, 32)) * np.geomspace(10, 0.1, 32)) @ random_rotation(32, 1)
    yield "digits 1797 x 64", load_digits().data.astype(np.float32), ((8, 16), (16, 16))
    yield "rotated anisotropic Gaussian 4000 x 32", gauss.astype(np.float32), ((4, 16), (8, 16))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=50, help="OPQ alternations (faiss' default 50)")
    parser.add_argument("--seeds", type=int, default=3, help="random starts per OPQ")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    threadpool_limits(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"{args.iterations} OPQ iterations, means over {args.seeds} random starts")
    for name, X, settings in problems():
        for M, K in settings:
            pq = quantization_error(X, train_codebooks(X, M, K, max_samples=256 * K, random_state=0))
            ours = [quantization_error(rotate(X, R), C) for R, C in (
                train_opq(X, M, K, n_iter=args.iterations, max_samples=256 * K, random_state=s)
                for s in range(args.seeds))]
            theirs = [faiss_opq(X, M, K, args.iterations, s) for s in range(args.seeds)]
            print(f"{name}, M={M}, K={K}: PQ {pq:.2f}  skdqn OPQ {np.mean(ours):.2f} "
                  f"({min(ours):.2f}-{max(ours):.2f})  faiss OPQ {np.mean(theirs):.2f} "
                  f"({min(theirs):.2f}-{max(theirs):.2f})  skdqn / faiss {np.mean(ours) / np.mean(theirs):.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
