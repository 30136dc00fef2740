"""Inverted lists: recall@10 and queries/s of AQDNeighbors(n_lists=...) against
the exhaustive search of the same codes and against faiss.IndexIVFPQ.

Setup
-----
* Data: a Gaussian mixture in d = 64 whose clusters overlap: 4,096 centres
  drawn from N(0, I), each item a centre plus N(0, sigma^2 I) noise with
  ``sigma = 0.6`` (``--sigma``): the distance from an item to its centre
  (about 4.8) is comparable to the distance between nearby centres, so a
  query's true neighbours are spread over several lists. Queries are drawn
  from the same mixture (1,000 by default).
* Codes: M = 8, K = 256 (64-bit codes), codebooks learned with
  :func:`skdqn._pq.train_codebooks` on 50,000 items. N = 10^5 and 10^6:
  ``AQDNeighbors(codebooks=C, n_lists=L).fit(X)``, which encodes the items and
  builds the lists (coarse k-means on at most 256 * L items, as faiss does).
  N = 10^7 (``--large``): generated and encoded 10^6 items at a time into a
  memory-mapped code file, lists assigned from the vectors with coarse
  centroids trained on a 256 * L sample, the index built with
  ``AQDNeighbors.from_codes(..., list_assignments=...)``, saved, and searched
  loaded with ``mmap_mode="r"``.
* n_lists: 256, 1024 and 4096 for N = 10^5, 10^6 and 10^7 (about sqrt(N);
  ``--n-lists`` overrides).
* Recall@10: the share of the exhaustive AQD top-10 of the same codes (an
  index without lists, same codebooks and codes) found by the inverted-list
  search; every distance returned is the exhaustive one (the same codes), so
  the recall only measures the pruning.
* faiss: ``index.to_faiss()``, a ``faiss.IndexIVFPQ`` with
  ``by_residual=False`` holding the same coarse centroids, lists, codebooks
  and codes; ``nprobe`` set to the same ``n_probe``. faiss pads a query with
  (-1) when its probed lists hold fewer than 10 items; AQDNeighbors probes
  further lists instead (at these sizes, lists hold far more than 10 items).
* Threads: one (threadpoolctl, ``faiss.omp_set_num_threads(1)``,
  ``n_jobs=1``) and two (``n_jobs=2``; faiss with 2 OpenMP threads).
  Throughput: best of ``--repeats`` calls, AQDNeighbors and faiss interleaved
  in the same process.
* ``--torch``: also the torch kernel scanning each probed list on the CPU
  (one torch thread; what ``backend="torch"`` does on CUDA, while on the
  CPU it uses numpy's list scan) against numpy's list scan on the same
  index, interleaved, for the same n_probe values; the script stops if the
  results differ.
* Memory: peak extra memory (tracemalloc) of one untimed ``kneighbors`` call
  (1,000 queries, one thread), the output included.
* Build: seconds to fit the index with lists, and to fit it without lists
  (same codebooks): the difference is the cost of the lists. At 10^7: the
  seconds spent on the lists (coarse k-means, assignment, sorting) and on
  encoding, separately.

Usage::

    python benchmarks/bench_ivf.py               # N = 1e5 and 1e6
    python benchmarks/bench_ivf.py --large       # N = 1e5, 1e6 and 1e7 (about 2 GB of RAM, 1 GB of disk)
    python benchmarks/bench_ivf.py --quick       # N = 1e5, 300 queries
    python benchmarks/bench_ivf.py --out ivf.md
    python benchmarks/bench_ivf.py --sizes 1e6 --n-probes 1 4 16 --torch   # the per-list torch kernel too
"""

import argparse
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from _measure import best_time, peak_extra_mib  # benchmarks/_measure.py
from skdqn import AQDNeighbors
from skdqn.search._ivf import assign_lists, train_coarse
from skdqn._pq import encode, train_codebooks

try:
    import faiss
except ImportError:  # pragma: no cover - the benchmark needs faiss
    sys.exit("This benchmark needs faiss: pip install faiss-cpu")

D, M, K, N_CENTRES = 64, 8, 256, 4096
N_PROBES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_LISTS = {10**5: 256, 10**6: 1024, 10**7: 4096}


class Mixture:
    """The Gaussian mixture of the benchmark: fixed centres, items drawn block by block."""

    def __init__(self, sigma, seed=0):
        self.centres = np.random.default_rng(seed).normal(size=(N_CENTRES, D)).astype(np.float32)
        self.sigma = np.float32(sigma)

    def sample(self, n, seed):
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(size=(n, D), dtype=np.float32) * self.sigma
        return self.centres[rng.integers(0, N_CENTRES, n)] + noise


def recall(found, truth):
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    return float(np.mean([np.intersect1d(a, b).size / b.size for a, b in zip(found, truth)]))


def build_in_memory(mixture, n, n_lists, codebooks):
    """(ivf index, exhaustive index, build seconds with and without lists)."""
    X = mixture.sample(n, seed=1)
    start = time.perf_counter()
    flat = AQDNeighbors(n_neighbors=10, codebooks=codebooks, metric="sqeuclidean", n_jobs=1).fit(X)
    flat_s = time.perf_counter() - start
    start = time.perf_counter()
    ivf = AQDNeighbors(
        n_neighbors=10, codebooks=codebooks, metric="sqeuclidean", n_jobs=1, n_lists=n_lists, random_state=0
    ).fit(X)
    return ivf, flat, time.perf_counter() - start, flat_s


def build_memmapped(mixture, n, n_lists, codebooks, folder, block=10**6):
    """The 10^7 case: codes written block by block to disk, lists from the vectors.

    Returns (ivf index, exhaustive index, seconds spent on the lists: coarse
    k-means and assignment, seconds spent encoding).
    """
    start = time.perf_counter()
    centroids = train_coarse(mixture.sample(256 * n_lists, seed=99), n_lists, random_state=0)
    lists_s, encode_s = time.perf_counter() - start, 0.0
    codes = np.lib.format.open_memmap(f"{folder}/codes.npy", mode="w+", dtype=np.uint8, shape=(n, M))
    assignments = np.empty(n, dtype=np.intp)
    for first in range(0, n, block):
        X = mixture.sample(min(block, n - first), seed=1000 + first // block)
        start = time.perf_counter()
        codes[first : first + X.shape[0]] = encode(X, codebooks)
        encode_s += time.perf_counter() - start
        start = time.perf_counter()
        assignments[first : first + X.shape[0]] = assign_lists(X, centroids)
        lists_s += time.perf_counter() - start
    codes.flush()
    params = dict(n_neighbors=10, metric="sqeuclidean", n_jobs=1)
    codes = np.load(f"{folder}/codes.npy", mmap_mode="r")
    flat = AQDNeighbors.from_codes(codebooks, codes, **params)
    start = time.perf_counter()
    ivf = AQDNeighbors.from_codes(
        codebooks, codes, list_assignments=assignments, coarse_centroids=centroids, **params
    )
    lists_s += time.perf_counter() - start
    ivf.save(f"{folder}/ivf")
    ivf = AQDNeighbors.load(f"{folder}/ivf", mmap_mode="r")
    return ivf, flat, lists_s, encode_s


def measure_n_probe(ivf, fidx, Q, truth, n_probe, repeats):
    """One row: q/s of skdqn (1 and 2 threads) and faiss (1 and 2), recalls."""
    ivf.set_params(n_probe=n_probe)
    fidx.nprobe = n_probe
    t1 = t2 = f1 = f2 = np.inf
    for _ in range(repeats):  # interleaved, so both see the same machine
        faiss.omp_set_num_threads(1)
        t1 = min(t1, best_time(lambda: ivf.set_params(n_jobs=1).kneighbors(Q), 1))
        f1 = min(f1, best_time(lambda: fidx.search(Q, 10), 1))
        faiss.omp_set_num_threads(2)
        t2 = min(t2, best_time(lambda: ivf.set_params(n_jobs=2).kneighbors(Q), 1))
        f2 = min(f2, best_time(lambda: fidx.search(Q, 10), 1))
    faiss.omp_set_num_threads(1)
    ours = ivf.set_params(n_jobs=1).kneighbors(Q)[1]
    theirs = fidx.search(Q, 10)[1]
    nq = Q.shape[0]
    return dict(
        n_probe=n_probe, recall=recall(ours, truth), faiss_recall=recall(theirs, truth),
        qps1=nq / t1, qps2=nq / t2, faiss1=nq / f1, faiss2=nq / f2,
    )


def measure_torch(ivf, Q, n_probes, repeats):
    """The per-list torch kernel (CPU, one thread) against numpy's list scan on the same index, interleaved.

    ``AQDNeighbors(backend="torch")`` on the CPU uses numpy's list scan (this
    measurement is why), so the torch kernel is passed to the search
    function directly; same results asserted.
    """
    import torch

    from skdqn.search._ivf import ivf_kneighbors
    from skdqn.search._torch_kernel import TorchKernel

    torch.set_num_threads(1)
    kernel, queries, lists = TorchKernel("cpu"), ivf._queries(ivf._state(), Q), ivf._lists()
    rows = []
    for p in n_probes:
        def run(k):
            return ivf_kneighbors(queries, ivf.codes_, lists, 10, n_probe=p, n_jobs=1, kernel=k)

        t_numpy = t_torch = np.inf
        for _ in range(repeats):
            t_numpy = min(t_numpy, best_time(lambda: run(None), 1))
            t_torch = min(t_torch, best_time(lambda: run(kernel), 1))
        if not all(np.array_equal(a, b) for a, b in zip(run(kernel), run(None))):
            raise AssertionError(f"the torch kernel and numpy's list scan differ at n_probe={p}")
        rows.append(dict(n_probe=p, numpy=Q.shape[0] / t_numpy, torch=Q.shape[0] / t_torch))
    return rows


def run_size(mixture, n, n_lists, codebooks, Q, repeats, folder, n_probes=N_PROBES, torch_cpu=False):
    """Build the indexes for ``n`` items and measure every n_probe; returns (summary, rows)."""
    if n <= 10**6:
        ivf, flat, build_s, flat_s = build_in_memory(mixture, n, n_lists, codebooks)
    else:
        ivf, flat, build_s, flat_s = build_memmapped(mixture, n, n_lists, codebooks, folder)
    exhaustive_s = best_time(lambda: flat.kneighbors(Q), 1 if n > 10**6 else repeats)
    truth = flat.kneighbors(Q)[1]
    fidx = ivf.to_faiss()
    n_probes = [p for p in n_probes if p <= n_lists]
    rows = [measure_n_probe(ivf, fidx, Q, truth, p, repeats) for p in n_probes]
    memory = {p: peak_extra_mib(lambda: ivf.set_params(n_probe=p, n_jobs=1).kneighbors(Q)) for p in (1, 64)}
    sizes = ivf._lists().sizes
    summary = dict(
        n=n, n_lists=n_lists, build_s=build_s, flat_s=flat_s, exhaustive_qps=Q.shape[0] / exhaustive_s,
        memory=memory, min_list=int(sizes.min()), max_list=int(sizes.max()), n_queries=Q.shape[0],
        torch=measure_torch(ivf, Q, n_probes, repeats) if torch_cpu else [],
    )
    return summary, rows


def report(summary, rows):
    s = summary
    lines = [
        f"### N = {s['n']:.0e}, n_lists = {s['n_lists']} (list sizes {s['min_list']} to {s['max_list']})",
        "",
        f"Exhaustive search (same codes): {s['exhaustive_qps']:,.0f} queries/s, one thread. "
        + (
            f"Fit with lists: {s['build_s']:.1f} s; without lists: {s['flat_s']:.1f} s. "
            if s["n"] <= 10**6
            else f"Lists (coarse k-means, assignment, sorting): {s['build_s']:.0f} s; encoding: {s['flat_s']:.0f} s. "
        )
        + f"Peak extra memory of kneighbors ({s['n_queries']:,} queries): {s['memory'][1]:.1f}"
        + f" MiB at n_probe=1, {s['memory'][64]:.1f} MiB at n_probe=64.",
        "",
        "| n_probe | recall@10 | q/s, 1 thread | x exhaustive | faiss IVFPQ q/s, 1 thread | ratio to faiss "
        "| q/s, 2 threads | faiss, 2 threads | faiss recall@10 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_probe']} | {r['recall']:.3f} | {r['qps1']:,.0f} | {r['qps1'] / s['exhaustive_qps']:.1f} "
            f"| {r['faiss1']:,.0f} | {r['qps1'] / r['faiss1']:.2f} | {r['qps2']:,.0f} | {r['faiss2']:,.0f} "
            f"| {r['faiss_recall']:.3f} |"
        )
    if s["torch"]:
        lines += [
            "",
            "the per-list torch kernel on the CPU (one thread) and numpy's list scan, same index, interleaved"
            " (same results asserted):",
            "",
            "| n_probe | numpy q/s | torch q/s | torch / numpy |",
            "|---:|---:|---:|---:|",
        ]
        for r in s["torch"]:
            lines.append(f"| {r['n_probe']} | {r['numpy']:,.0f} | {r['torch']:,.0f} | {r['torch'] / r['numpy']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e5 only, 300 queries")
    parser.add_argument("--large", action="store_true", help="also N = 1e7 (memory-mapped)")
    parser.add_argument("--sizes", type=float, nargs="*", help="item counts (overrides --quick/--large)")
    parser.add_argument("--n-lists", type=int, help="lists for every size (default: about sqrt(N))")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--sigma", type=float, default=0.6, help="noise of the mixture (default 0.6)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-probes", type=int, nargs="*", help=f"n_probe values (default: {N_PROBES})")
    parser.add_argument("--torch", action="store_true", help="also backend='torch' on the CPU against numpy")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    sizes = [10**5] if args.quick else [10**5, 10**6] + ([10**7] if args.large else [])
    sizes = [int(s) for s in args.sizes] if args.sizes else sizes
    n_queries = 300 if args.quick else args.queries
    mixture = Mixture(args.sigma)
    Q = mixture.sample(n_queries, seed=2)
    text = [f"bench_ivf: M={M}, K={K}, d={D}, {n_queries} queries, top-10, sigma={args.sigma}\n"]
    with threadpool_limits(1), tempfile.TemporaryDirectory() as folder:
        codebooks = train_codebooks(mixture.sample(50_000, seed=3), M, K, random_state=0)
        for n in sizes:
            n_lists = args.n_lists or DEFAULT_LISTS.get(n, int(2 ** round(np.log2(np.sqrt(n)))))
            n_probes = args.n_probes or N_PROBES
            text.append(report(*run_size(mixture, n, n_lists, codebooks, Q, args.repeats, folder, n_probes, args.torch)))
            print(text[-1], flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(text))


if __name__ == "__main__":
    main()
