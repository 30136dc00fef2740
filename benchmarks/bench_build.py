"""Building an index: codebooks, encoding and inverted lists, against faiss.

Setup
-----
* Data: the Gaussian mixture of ``bench_ivf.py`` (d = 64, 4,096 centres
  from N(0, I), noise ``sigma = 0.6``), ``--n`` items (10^6 by default).
* Codes: M = 8 subspaces, K = 256 codewords (64-bit codes).
* One thread everywhere: ``threadpool_limits(1)`` for numpy's BLAS,
  ``torch.set_num_threads(1)``, ``faiss.omp_set_num_threads(1)``.
* Each row is the best of ``--repeats`` calls, skdqn and faiss interleaved
  (skdqn, faiss, skdqn, faiss, ...) in the same process, so both see the
  same machine; the ratio is skdqn's seconds over faiss'.

Rows
----
* codebooks: :func:`skdqn._pq.train_codebooks` on the same 65,536 rows
  (``256 * K``, what ``AQDNeighbors`` trains on) against
  ``faiss.IndexPQ.train`` (faiss' defaults: 25 iterations, random start);
  both quantization errors on all ``n`` items are printed.
* encode: :func:`skdqn._pq.encode` of the ``n`` items with given codebooks
  against ``faiss.ProductQuantizer.compute_codes`` with the same codebooks;
  the share of equal codes is printed (faiss ranks in float32, skdqn
  re-checks close calls in float64, so a few codes may differ).
* AQDNeighbors fit: ``AQDNeighbors(M=8, K=256).fit(X)`` (codebooks on 256 *
  K rows, then codes) against ``faiss.IndexPQ`` train + add.
* IVF build: ``AQDNeighbors(codebooks=C, n_lists=1024).fit(X)`` (codes,
  coarse k-means on 256 * 1024 rows, lists) against ``faiss.IndexIVFPQ``
  (``by_residual=False``) train + add, whose train includes the codebooks.

Usage::

    python benchmarks/bench_build.py                 # 10^6 items, 3 repeats
    python benchmarks/bench_build.py --n 200000 --repeats 2
    python benchmarks/bench_build.py --out build.md
    python benchmarks/bench_build.py --n 200000 --sweep   # error and seconds of train_codebooks by n_iter, init

``--sweep`` measures what chose ``train_codebooks``' defaults: on the same
65,536 rows, for each start (``"k-means++"``, ``"random"``) and each
``n_iter``, the seconds (best of ``--repeats``) and the quantization error
on all ``--n`` items; the previous version's figure (k-means++ on all rows,
up to 20 iterations) is in ``train_codebooks``' Notes.
"""

import argparse
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from _measure import best_time  # benchmarks/_measure.py
from bench_ivf import Mixture  # the data of the inverted-list benchmark
from skdqn import AQDNeighbors
from skdqn._pq import decode, encode, quantization_error, train_codebooks

try:
    import faiss
except ImportError:  # pragma: no cover - the benchmark needs faiss
    sys.exit("This benchmark needs faiss: pip install faiss-cpu")

D, M, K, N_LISTS = 64, 8, 256, 1024


def interleaved(ours, theirs, repeats):
    """Best seconds of ``ours`` and of ``theirs``, calls alternated ``repeats`` times."""
    t_ours = t_theirs = np.inf
    for _ in range(repeats):
        t_ours = min(t_ours, best_time(ours, 1))
        t_theirs = min(t_theirs, best_time(theirs, 1))
    return t_ours, t_theirs


def faiss_pq(codebooks):
    """A ``faiss.ProductQuantizer`` holding the given codebooks."""
    pq = faiss.ProductQuantizer(D, M, int(np.log2(K)))
    faiss.copy_array_to_vector(np.ascontiguousarray(codebooks, dtype=np.float32).ravel(), pq.centroids)
    return pq


def faiss_codebooks(index):
    """The codebooks of a trained faiss index, shape (M, K, ds)."""
    return faiss.vector_to_array(index.pq.centroids).reshape(M, K, D // M)


def measure_codebooks(X, train, repeats):
    """Codebook training on ``train`` (65,536 rows); errors on ``X``."""
    found = {}

    def ours():
        found["ours"] = train_codebooks(train, M, K, random_state=0)

    def theirs():
        index = faiss.IndexPQ(D, M, int(np.log2(K)))
        index.train(train)
        found["faiss"] = faiss_codebooks(index)

    t_ours, t_faiss = interleaved(ours, theirs, repeats)
    errors = {key: quantization_error(X, C) for key, C in found.items()}
    note = f"quantization error: skdqn {errors['ours']:.4f}, faiss {errors['faiss']:.4f}"
    return dict(step="PQ codebooks, 65,536 rows", ours=t_ours, faiss=t_faiss, note=note), found["ours"]


def measure_encode(X, codebooks, repeats):
    """Encoding all of ``X`` with the same codebooks; the share of equal codes."""
    pq = faiss_pq(codebooks)
    t_ours, t_faiss = interleaved(lambda: encode(X, codebooks), lambda: pq.compute_codes(X), repeats)
    ours, theirs = encode(X, codebooks), pq.compute_codes(X)
    equal = float(np.mean(ours == theirs))
    # Where they differ, skdqn's codeword must be at least as near in float64 (exactly the nearest).
    rows = np.flatnonzero((ours != theirs).any(axis=1))
    if rows.size:
        X64 = X[rows].astype(np.float64)
        worse = ((X64 - decode(ours[rows], codebooks)) ** 2).reshape(rows.size, M, -1).sum(axis=2) > (
            (X64 - decode(theirs[rows], codebooks)) ** 2
        ).reshape(rows.size, M, -1).sum(axis=2)
        if worse.any():
            raise AssertionError("skdqn chose a farther codeword than faiss")
    note = f"codes equal to faiss': {100 * equal:.4f} % (where not, skdqn's is nearer in float64)"
    return dict(step=f"encode {X.shape[0]:,} (codebooks given)", ours=t_ours, faiss=t_faiss, note=note)


def measure_fit(X, repeats):
    """AQDNeighbors(M=8, K=256).fit against IndexPQ train + add."""

    def theirs():
        index = faiss.IndexPQ(D, M, int(np.log2(K)))
        index.train(X)  # faiss samples 256 * K rows itself
        index.add(X)

    def ours():
        AQDNeighbors(M=M, K=K, metric="sqeuclidean", n_jobs=1, random_state=0).fit(X)

    t_ours, t_faiss = interleaved(ours, theirs, repeats)
    return dict(step="AQDNeighbors(M=8, K=256).fit", ours=t_ours, faiss=t_faiss, note="faiss: IndexPQ train + add")


def measure_ivf(X, codebooks, repeats):
    """Inverted lists with given codebooks against IndexIVFPQ train + add (codebooks included)."""

    def theirs():
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(D), D, N_LISTS, M, int(np.log2(K)))
        index.by_residual = False
        index.train(X)
        index.add(X)

    def ours():
        AQDNeighbors(codebooks=codebooks, n_lists=N_LISTS, metric="sqeuclidean", n_jobs=1, random_state=0).fit(X)

    t_ours, t_faiss = interleaved(ours, theirs, repeats)
    note = "faiss: IndexIVFPQ(by_residual=False) train + add, its codebooks included"
    return dict(step=f"IVF build, {N_LISTS:,} lists (codebooks given)", ours=t_ours, faiss=t_faiss, note=note)


def sweep(X, train, repeats, n_iters=(10, 12, 15, 20, 25)):
    """Seconds and quantization error of train_codebooks by start and n_iter (what chose the defaults)."""
    lines = ["| init | n_iter | seconds | quantization error |", "|---|---:|---:|---:|"]
    for init in ("k-means++", "random"):
        for n_iter in n_iters:
            found = {}

            def fit():
                found["C"] = train_codebooks(train, M, K, n_iter=n_iter, init=init, random_state=0)

            seconds = best_time(fit, repeats)
            lines.append(f"| {init} | {n_iter} | {seconds:.2f} | {quantization_error(X, found['C']):.4f} |")
    return "\n".join(lines) + "\n"


def report(rows, n, repeats):
    lines = [
        f"bench_build: n={n:,}, d={D}, M={M}, K={K}, one thread, best of {repeats}, interleaved with faiss",
        "",
        "| step | skdqn (s) | faiss (s) | skdqn / faiss |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['step']} | {r['ours']:.2f} | {r['faiss']:.2f} | {r['ours'] / r['faiss']:.2f} |")
    lines += [""] + [f"* {r['step']}: {r['note']}" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e6, help="items (default 10^6)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sigma", type=float, default=0.6, help="noise of the mixture (default 0.6)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["codebooks", "encode", "fit", "ivf"])
    parser.add_argument("--sweep", action="store_true", help="only train_codebooks by n_iter and init")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    n = int(args.n)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    mixture = Mixture(args.sigma)
    X = mixture.sample(n, seed=1)
    train = X[np.sort(np.random.default_rng(5).choice(n, min(n, 256 * K), replace=False))]
    rows = []
    start = time.perf_counter()
    if args.sweep:
        with threadpool_limits(1):
            print(sweep(X, train, args.repeats), flush=True)
        return
    with threadpool_limits(1):
        row, codebooks = measure_codebooks(X, train, args.repeats)
        if "codebooks" not in args.skip:
            rows.append(row)
        if "encode" not in args.skip:
            rows.append(measure_encode(X, codebooks, args.repeats))
        if "fit" not in args.skip:
            rows.append(measure_fit(X, args.repeats))
        if "ivf" not in args.skip:
            rows.append(measure_ivf(X, codebooks, args.repeats))
    text = report(rows, n, args.repeats)
    print(text + f"\n({time.perf_counter() - start:.0f} s in all)", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
