"""Throughput of AQDNeighbors.kneighbors (numpy and torch kernels) against faiss.

``AQDNeighbors`` (``backend="numpy"``, the default, and ``backend="torch"``,
``device="cpu"``) and ``faiss.IndexPQ`` hold exactly the same PQ codebooks
and database codes, so they compute the same Asymmetric Quantizer Distances;
``faiss.IndexPQFastScan`` (16 subspaces x 4 bits: the same 64-bit code size
as M = 8, K = 256) is trained and filled with the same Gaussian data. The
benchmark compares the search (lookup tables + scan + top-k), queries per
second, top-10, for 1, 10, 100 and 1,000 queries per call (a call of ``c``
queries is repeated on other queries up to at least 20 queries), N = 10^5 and
10^6, 1 and 2 threads, every side measured in turn within each repeat.

Setup
-----
* Gaussian data. For each (M, d), codebooks (K = 256) are learned with
  :func:`skdqn._pq.train_codebooks` on a 20k-sample Gaussian training set.
* The database codes are drawn uniformly at random (uint8), not encoded:
  encoding 10^6 Gaussian vectors costs far more than the search being measured
  and gives the scan the same work (every item costs M table look-ups).
  AQDNeighbors is built over them with ``AQDNeighbors.from_codes`` (the same
  codebooks and codes).
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

* Kernels table (the default): M = 8, d = 64. "threads" is ``n_jobs`` for
  both backends (torch with one intra-op thread per worker) and the OpenMP
  threads of faiss. Peak extra memory (tracemalloc) is measured for the numpy
  backend and for the host side of the torch backend (torch's own CPU
  allocations are not traced), at 1,000 queries per call.

Usage::

    python benchmarks/bench_search.py            # kernels table, N = 1e5 and 1e6
    python benchmarks/bench_search.py --quick    # N = 1e5 only
    python benchmarks/bench_search.py --sizes 1000000 --threads 1 --calls 1 1000
    python benchmarks/bench_search.py --out bench.md
    python benchmarks/bench_search.py --memory --out memory.md
"""

import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's skdqn
from _measure import best_time, peak_extra_mib  # noqa: E402  (benchmarks/_measure.py)
import torch  # noqa: E402

from skdqn import AQDNeighbors  # noqa: E402
from skdqn._pq import train_codebooks  # noqa: E402

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

    index = AQDNeighbors.from_codes(codebooks, codes, n_neighbors=TOP_K, metric="sqeuclidean", n_jobs=1)

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


def make_fastscan(d, N, seed=0):
    """faiss.IndexPQFastScan, 16 x 4 bits (64-bit codes), on Gaussian data of the same kind."""
    rng = np.random.default_rng(seed)
    fs = faiss.IndexPQFastScan(d, 16, 4)
    fs.train(rng.normal(size=(N_TRAIN, d)).astype(np.float32))
    for start in range(0, N, 100_000):
        fs.add(rng.normal(size=(min(N, start + 100_000) - start, d)).astype(np.float32))
    return fs


def _calls(search, Q, per_call):
    """Search ``Q`` in calls of ``per_call`` queries (at least 20 queries in all)."""
    n = max(per_call, 20)
    for start in range(0, n, per_call):
        search(Q[start : start + per_call])
    return n


def _time_sides(sides, Q, per_call, repeats):
    """Best queries/s of each side, the sides measured in turn within each repeat."""
    best = dict.fromkeys(sides, np.inf)
    for _ in range(repeats):
        for name, search in sides.items():
            start = time.perf_counter()
            n = _calls(search, Q, per_call)
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return {name: 1.0 / t for name, t in best.items()}


SIDES = ("numpy", "torch", "IndexPQ", "FastScan")


def run_kernels(Ns, calls, repeats, thread_counts, M=8, d=64):
    """Queries/s of the four sides per (N, threads, queries per call), and peak memory."""
    rows = []
    Q = np.random.default_rng(123).normal(size=(max(max(calls), 20), d)).astype(np.float32)
    for N in Ns:
        index, fidx = make_setup(M, d, N)
        fast = make_fastscan(d, N)
        torch_index = AQDNeighbors.from_codes(index.codebooks_, index.codes_, n_neighbors=TOP_K,
                                              metric="sqeuclidean", backend="torch", device="cpu")
        sides = {
            "numpy": index.kneighbors,
            "torch": torch_index.kneighbors,
            "IndexPQ": lambda q: fidx.search(q, TOP_K),
            "FastScan": lambda q: fast.search(q, TOP_K),
        }
        for threads in thread_counts:
            index.n_jobs = torch_index.n_jobs = threads
            faiss.omp_set_num_threads(threads)
            torch.set_num_threads(1)
            with threadpool_limits(limits=1):
                for search in sides.values():
                    search(Q[:2])  # warm-up
                for per_call in calls:
                    qps = _time_sides(sides, Q, per_call, repeats)
                    row = {"N": N, "threads": threads, "calls": per_call, **qps}
                    if per_call == max(calls):
                        row["mem_numpy"] = peak_extra_mib(lambda: index.kneighbors(Q[:per_call]))
                        row["mem_torch"] = peak_extra_mib(lambda: torch_index.kneighbors(Q[:per_call]))
                    rows.append(row)
                    print(format_row(row), flush=True)
        del index, fidx, fast, torch_index
    return rows


HEADER = (
    "| N | threads | queries per call | numpy (q/s) | torch (q/s) | IndexPQ (q/s) | FastScan (q/s) "
    "| numpy / IndexPQ | numpy / FastScan | torch / FastScan | peak extra MiB numpy / torch |"
)
RULE = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def format_row(r):
    mem = f"{r['mem_numpy']:.1f} / {r['mem_torch']:.1f}" if "mem_numpy" in r else ""
    return (
        f"| {r['N']:.0e} | {r['threads']} | {r['calls']} | "
        + " | ".join(f"{r[s]:,.0f}" for s in SIDES)
        + f" | {r['numpy'] / r['IndexPQ']:.2f}x | {r['numpy'] / r['FastScan']:.2f}x "
        f"| {r['torch'] / r['FastScan']:.2f}x | {mem} |"
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
    parser.add_argument("--quick", action="store_true", help="N=1e5 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="database sizes (default 1e5 1e6)")
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10, 100, 1000], help="queries per call")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    parser.add_argument("--out", help="write the table as Markdown to this file")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept")
    parser.add_argument("--memory", action="store_true", help="peak extra memory table (see above)")
    args = parser.parse_args(argv)
    if args.memory:
        return main_memory(args)

    Ns = args.sizes or ([10**5] if args.quick else [10**5, 10**6])
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, torch {torch.__version__}; M=8, K={K}, "
          f"d=64, top-{TOP_K}, database codes drawn at random (uint8), best of {args.repeats}")
    with threadpool_limits(limits=1):
        faiss.omp_set_num_threads(1)
        check_agreement()
    print(HEADER)
    print(RULE)
    rows = run_kernels(Ns, args.calls, args.repeats, args.threads)
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                f"AQDNeighbors.kneighbors (numpy, torch) vs faiss.IndexPQ and IndexPQFastScan, "
                f"top-{TOP_K}, M=8, K={K}, d=64, best of {args.repeats}; faiss {faiss.__version__}, "
                f"numpy {np.__version__}, torch {torch.__version__}.\n\n"
            )
            f.write(HEADER + "\n" + RULE + "\n")
            f.write("\n".join(format_row(r) for r in rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
