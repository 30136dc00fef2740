"""Throughput of AQDNeighbors.kneighbors against faiss.IndexPQ on the same codes.

Both indexes hold exactly the same PQ codebooks and database codes, so they
compute the same Asymmetric Quantizer Distances; the benchmark compares the
search (lookup tables + scan + top-k), queries per second, top-10.

Setup
-----
* Gaussian data. For each (M, d), codebooks (K = 256) are learned with
  :func:`skdqn._pq.train_codebooks` on a 20k-sample Gaussian training set.
* The database codes are drawn uniformly at random (uint8), not encoded:
  encoding 10^6 Gaussian vectors costs far more than the search being measured
  and gives the scan the same work (every item costs M table look-ups).
  AQDNeighbors is fitted on the 20k training vectors (which encodes them) and
  its ``codes_`` / ``n_samples_fit_`` are then replaced by the random codes.
* faiss: ``faiss.IndexPQ(d, M, 8)``, our codebooks copied into
  ``index.pq.centroids`` (layout M x K x ds, the same as ours),
  ``is_trained = True``, our codes copied into ``index.codes`` and
  ``ntotal`` set. Default search type (ST_PQ: ADC with lookup tables).
  Both use squared Euclidean distances (AQDNeighbors ``metric="sqeuclidean"``).
* Threads: "1 thread" limits numpy/BLAS (threadpoolctl) and faiss/OpenMP to
  one thread, AQDNeighbors ``n_jobs=1``; "2 threads": ``n_jobs=2`` (joblib
  threads over query blocks, BLAS still limited to 1 thread per worker) and
  faiss with 2 OpenMP threads.
* Throughput: best of ``--repeats`` runs (the machine may be shared).
* Memory: peak of the Python-tracked allocations (tracemalloc; numpy buffers
  are tracked) during one ``kneighbors`` call, minus what was allocated before
  it; measured in a separate, untimed call (tracemalloc slows allocations).
* ``--memory``: the peak extra memory of ``kneighbors`` (M=8, d=64, one
  thread, top-10) for 10^3, 10^4 and 10^5 queries and for ``X=None`` (every
  item queried against the others), at N = 10^5 and 10^6 items; the output
  (``n_queries x 10`` distances and indices) is counted in. The last column is
  what the tables of all queries alone took before the search computed them
  block by block (``n_queries x M x K`` float32, twice: the tables and their
  transposed copy). ``X=None`` at 10^6 items scans 10^12 codes: about half an
  hour on one core.

Usage::

    python benchmarks/bench_search.py            # N = 1e5 and 1e6, nq = 1000
    python benchmarks/bench_search.py --quick    # N = 1e5, nq = 200
    python benchmarks/bench_search.py --out bench.md
    python benchmarks/bench_search.py --memory --out memory.md
"""

import argparse
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from _measure import best_time, peak_extra_mib  # benchmarks/_measure.py
from skdqn import AQDNeighbors
from skdqn._pq import train_codebooks

try:
    import faiss
except ImportError:  # pragma: no cover - the benchmark needs faiss
    sys.exit("This benchmark needs faiss: pip install faiss-cpu")

K = 256
TOP_K = 10
N_TRAIN = 20_000


def make_setup(M, d, N, seed=0):
    """Codebooks learned on Gaussian data, random database codes, AQD index, faiss index."""
    rng = np.random.default_rng(seed)
    X_train = rng.normal(size=(N_TRAIN, d)).astype(np.float32)
    codebooks = train_codebooks(X_train, M, K, random_state=seed)
    codes = rng.integers(0, K, size=(N, M), dtype=np.uint8)

    index = AQDNeighbors(n_neighbors=TOP_K, codebooks=codebooks, metric="sqeuclidean", n_jobs=1)
    index.fit(X_train)
    index.codes_ = codes
    index.n_samples_fit_ = N

    fidx = faiss.IndexPQ(d, M, 8)
    faiss.copy_array_to_vector(codebooks.ravel(), fidx.pq.centroids)
    fidx.is_trained = True
    faiss.copy_array_to_vector(codes.ravel(), fidx.codes)
    fidx.ntotal = N
    return index, fidx


def check_agreement(M=8, d=64, N=20_000, nq=100, seed=1):
    """faiss and AQDNeighbors return the same neighbours (up to ties) and distances."""
    index, fidx = make_setup(M, d, N, seed)
    Q = np.random.default_rng(seed + 1).normal(size=(nq, d)).astype(np.float32)
    dist, ind = index.kneighbors(Q)
    f_dist, f_ind = fidx.search(Q, TOP_K)
    same_lists = float((ind == f_ind).all(axis=1).mean())
    # Where the lists differ, the items must be tied (equal AQD to float32).
    differ = ind != f_ind
    max_rel = float(np.max(np.abs(dist - f_dist) / np.maximum(np.abs(f_dist), 1e-12)))
    ok = max_rel < 1e-4
    print(
        f"check (M={M}, d={d}, N={N}, nq={nq}): identical top-{TOP_K} lists for "
        f"{same_lists:.1%} of queries, {int(differ.sum())} differing entries; "
        f"max relative distance difference {max_rel:.2e} -> {'OK' if ok else 'MISMATCH'}"
    )
    if not ok:
        raise SystemExit("faiss and AQDNeighbors disagree")
    return same_lists, max_rel


def run(Ns, Ms, ds, nq, repeats, thread_counts):
    rows = []
    for N in Ns:
        for M in Ms:
            for d in ds:
                index, fidx = make_setup(M, d, N)
                Q = np.random.default_rng(123).normal(size=(nq, d)).astype(np.float32)
                for threads in thread_counts:
                    index.n_jobs = threads
                    faiss.omp_set_num_threads(threads)
                    with threadpool_limits(limits=1):
                        index.kneighbors(Q[:10])  # warm-up
                        fidx.search(Q[:10], TOP_K)
                        # Interleaved, so that a change in the machine's load during the
                        # run affects both sides alike.
                        t_ours = t_faiss = np.inf
                        for _ in range(repeats):
                            t_ours = min(t_ours, best_time(lambda: index.kneighbors(Q), 1))
                            t_faiss = min(t_faiss, best_time(lambda: fidx.search(Q, TOP_K), 1))
                        mem = peak_extra_mib(lambda: index.kneighbors(Q))
                    row = {
                        "N": N,
                        "M": M,
                        "d": d,
                        "threads": threads,
                        "ours_qps": nq / t_ours,
                        "faiss_qps": nq / t_faiss,
                        "ratio": t_faiss / t_ours,
                        "mem_mib": mem,
                    }
                    rows.append(row)
                    print(format_row(row), flush=True)
                del index, fidx
    return rows


HEADER = (
    "| N | M | d | threads | AQDNeighbors (q/s) | faiss.IndexPQ (q/s) | ratio to faiss "
    "| peak extra memory (MiB) |"
)
RULE = "|---:|---:|---:|---:|---:|---:|---:|---:|"


def format_row(r):
    return (
        f"| {r['N']:.0e} | {r['M']} | {r['d']} | {r['threads']} | {r['ours_qps']:,.0f} "
        f"| {r['faiss_qps']:,.0f} | {r['ratio']:.2f}x | {r['mem_mib']:.1f} |"
    )


MEMORY_HEADER = (
    "| N | queries | peak extra memory (MiB) | of which output (MiB) | seconds "
    "| all tables at once, before (MiB) |"
)
MEMORY_RULE = "|---:|---:|---:|---:|---:|---:|"


def run_memory(Ns, query_counts, M=8, d=64):
    """Peak extra memory of one kneighbors call per (N, number of queries); X=None last."""
    rows = []
    for N in Ns:
        index, _ = make_setup(M, d, N)
        for nq in list(query_counts) + [None]:
            Q = None if nq is None else np.random.default_rng(5).normal(size=(nq, d)).astype(np.float32)
            n_queries = N if nq is None else nq
            with threadpool_limits(limits=1):
                start = time.perf_counter()
                holder = {}
                mem = peak_extra_mib(lambda: holder.setdefault("out", index.kneighbors(Q)))
                seconds = time.perf_counter() - start
            output = sum(a.nbytes for a in holder.pop("out")) / 2**20
            row = {
                "N": N,
                "queries": "X=None" if nq is None else f"{nq:.0e}",
                "mem_mib": mem,
                "output_mib": output,
                "seconds": seconds,
                "before_mib": 2 * n_queries * M * K * 4 / 2**20,
            }
            rows.append(row)
            print(format_memory_row(row), flush=True)
        del index
    return rows


def format_memory_row(r):
    return (
        f"| {r['N']:.0e} | {r['queries']} | {r['mem_mib']:.1f} | {r['output_mib']:.1f} "
        f"| {r['seconds']:.0f} | {r['before_mib']:,.0f} |"
    )


def main_memory(args):
    Ns = [10**5] if args.quick else [10**5, 10**6]
    counts = [10**3, 10**4] if args.quick else [10**3, 10**4, 10**5]
    print(f"numpy {np.__version__}; M=8, d=64, K={K}, top-{TOP_K}, one thread, tracemalloc")
    print(MEMORY_HEADER)
    print(MEMORY_RULE)
    rows = run_memory(Ns, counts)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"AQDNeighbors.kneighbors peak extra memory, M=8, d=64, K={K}, top-{TOP_K}, one thread.\n\n")
            f.write(MEMORY_HEADER + "\n" + MEMORY_RULE + "\n")
            f.write("\n".join(format_memory_row(r) for r in rows) + "\n")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=1e5 only, nq=200")
    parser.add_argument("--out", help="write the table as Markdown to this file")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept")
    parser.add_argument("--memory", action="store_true", help="peak extra memory table (see above)")
    args = parser.parse_args(argv)
    if args.memory:
        return main_memory(args)

    Ns = [10**5] if args.quick else [10**5, 10**6]
    nq = 200 if args.quick else 1000
    print(f"faiss {faiss.__version__}, numpy {np.__version__}; K={K}, top-{TOP_K}, nq={nq}, "
          "database codes drawn at random (uint8)")
    with threadpool_limits(limits=1):
        faiss.omp_set_num_threads(1)
        check_agreement()
    print(HEADER)
    print(RULE)
    rows = run(Ns, [4, 8], [64, 128], nq, args.repeats, [1, 2])
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                f"AQDNeighbors.kneighbors vs faiss.IndexPQ, top-{TOP_K}, K={K}, nq={nq}, "
                f"best of {args.repeats}; faiss {faiss.__version__}, numpy {np.__version__}.\n\n"
            )
            f.write(HEADER + "\n" + RULE + "\n")
            f.write("\n".join(format_row(r) for r in rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
