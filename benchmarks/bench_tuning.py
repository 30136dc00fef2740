"""Sweep the tuning values of skdqn.search._tuning and print the best value for this machine.

Every value of :mod:`skdqn.search._tuning` trades speed against memory and never
changes a result. For each value (or ``--only NAME``), this script sets it to
a few values around its default, times a representative workload with each
(one thread: threadpoolctl and ``torch.set_num_threads(1)``; the values
measured in turn within each repeat, best of ``--repeats``), checks that the
workload's result is the same for every value, and prints the seconds per
value, their ratio to the default and the fastest value. A value within a few
percent of the default is noise on a shared machine: change a default only
for a clear, repeated gain, and record the measurement in ``skdqn/search/_tuning.py``.

Workloads (M = 8, K = 256, top-10, uint8 codes drawn at random, codebooks
and queries Gaussian; ``--quick``: the sizes in brackets):

* ``flat_batch``: exhaustive k-NN, numpy kernel, 1,000 [200] queries against
  N = 10^6 [10^5] codes;
* ``flat_few``: calls of 1, 2, 4, 8 and 16 queries on N codes;
* ``flat_small``: one query, then 4 queries, against 1,000 ... 16,000 codes
  (where the pair scan starts to pay);
* ``flat_one``: one query against N codes;
* ``full_sort``: k = N/64 ... N/4 [N/4 only] of the database, 100 [20] queries;
* ``shards``: one query against N codes with ``n_jobs=2`` (not one thread:
  sharding is parallel);
* ``tables``: the lookup tables of 1,000 [200] queries, both metrics and layouts;
* ``torch_batch``: exhaustive k-NN, torch kernel on the CPU (``torch_cuda``:
  on CUDA, skipped without it);
* ``ivf``: inverted lists, 1,024 [256] lists of random assignment, N codes,
  ``n_probe`` 1, 8 and 32, 1,000 [200] queries;
* ``ranking``: :func:`skdqn.search._ranking.stable_smallest` of 1,000 x 1,024
  scores at depths 2, 4, 8, 16, 32 and 64 (``n_probe`` of the lists);
* ``score``: ``AQDNeighbors.score`` (MAP@10) of 2,000 [400] queries;
* ``metrics``: :func:`skdqn.metrics.average_precision_scores` of given
  rankings, 10^5 [2 x 10^4] queries x 100.

Usage::

    python benchmarks/bench_tuning.py                   # every value, full size (long: run per value)
    python benchmarks/bench_tuning.py --quick           # every value, small sizes
    python benchmarks/bench_tuning.py --only NARROW ROWS_MAX_WIDTH
    python benchmarks/bench_tuning.py --only QUERY_BLOCK --values 64 128 256 --repeats 7
"""

import argparse
import os
import sys
import time
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's skdqn
import torch  # noqa: E402

from skdqn import AQDNeighbors  # noqa: E402
from skdqn.search import _tuning  # noqa: E402
from skdqn.search._ranking import stable_smallest  # noqa: E402
from skdqn.search._tables import distance_tables  # noqa: E402
from skdqn.metrics import average_precision_scores  # noqa: E402

M, K, DS, TOP_K = 8, 256, 8, 10
HUGE = 10**9
NOISE = 0.05  # a gain below 5 % of the default's time is within the noise of a shared machine

# name -> (workload, values tried; the default is always added)
SWEEPS = {
    "QUERY_BLOCK": ("flat_batch", (32, 64, 128, 256, 512)),
    "DB_BLOCK": ("flat_batch", (1024, 2048, 4096, 8192, 16384)),
    "FULL_SORT_RATIO": ("full_sort", (4, 8, 16, 32, 64)),
    "FULL_SORT_BYTES_PER_ITEM": ("full_sort", (4, 8, 16, 32, 64)),
    "MIN_SHARD_BLOCKS": ("shards", (1, 4, 16, 64, HUGE)),
    "RANKING_CHUNK": ("score", (256, 1024, 4096, 16384)),
    "PAIR_QUERIES": ("flat_few", (0, 1, 2, 4, 8, 16)),
    "PAIR_MIN_ROWS": ("flat_small", (0, 1024, 2048, 4096, 8192, HUGE)),
    "PAIR_BLOCK_FACTOR": ("flat_one", (1, 4, 16, 64)),
    "ARGMIN_DEPTH": ("ranking", (1, 2, 4, 8, 16, 32, 64)),
    "TABLE_BLOCK_FLOATS": ("tables", (1 << 18, 1 << 20, 1 << 22, 1 << 24)),
    "TORCH_DEVICE_BYTES": ("torch_cuda", (16 * 2**20, 64 * 2**20, 256 * 2**20, 1024 * 2**20)),
    "TORCH_CPU_BYTES": ("torch_batch", (2**20, 4 * 2**20, 8 * 2**20, 32 * 2**20)),
    "TORCH_GROUP_ROWS": ("torch_batch", (16, 32, 64, 128, 256)),
    "IVF_BLOCK_FACTOR": ("ivf", (1, 2, 4, 8, 16)),
    "IVF_TABLE_FLOATS": ("ivf", (1 << 19, 1 << 20, 1 << 21, 1 << 22)),
    "PROBE_FLOATS": ("ivf", (1 << 16, 1 << 18, 1 << 20)),
    "BOUND_SAMPLE": ("ivf", (32, 64, 128, 256, 512, 1024)),
    "NARROW": ("ivf", (0, 2, 4, 8, 16, 32)),
    "ROWS_MAX_WIDTH": ("ivf", (0, 40, 80, 160, 320, HUGE)),
    "CALL_ENTRIES": ("ivf", (1 << 14, 1 << 16, 1 << 18, 1 << 20)),
    "METRICS_MEMORY_DIVISOR": ("metrics", (4, 16, 64, 256)),
    "METRICS_BYTES_PER_ITEM": ("metrics", (8, 32, 128)),
    "DUPLICATE_CHECK_ITEMS": ("metrics", (1 << 18, 1 << 20, 1 << 22, 1 << 24)),
    "SELF_CHUNK": ("items", (1 << 11, 1 << 13, 1 << 15, 1 << 17)),
    "REFINE_CANDIDATE_FLOATS": ("refine", (1 << 18, 1 << 20, 1 << 22, 1 << 24)),
}


class Sizes:
    """The workload sizes: full, or ``--quick``."""

    def __init__(self, quick):
        self.quick = quick
        self.n = 10**5 if quick else 10**6
        self.nq = 200 if quick else 1000
        self.n_lists = 256 if quick else 1024


@lru_cache(maxsize=None)
def _data(n, seed=0):
    """Gaussian codebooks, random uint8 codes of ``n`` items, Gaussian queries (float32)."""
    rng = np.random.default_rng(seed)
    codebooks = rng.normal(size=(M, K, DS)).astype(np.float32)
    codes = rng.integers(0, K, size=(n, M), dtype=np.uint8)
    queries = rng.normal(size=(2000, M * DS)).astype(np.float32)
    return codebooks, codes, queries


@lru_cache(maxsize=None)
def _flat(n, backend="numpy", device="cpu", n_jobs=1):
    codebooks, codes, _ = _data(n)
    labels = np.random.default_rng(1).integers(0, 10, size=n)
    return AQDNeighbors.from_codes(
        codebooks, codes, labels, n_neighbors=TOP_K, metric="sqeuclidean", backend=backend, device=device,
        n_jobs=n_jobs,
    )


@lru_cache(maxsize=None)
def _ivf(n, n_lists):
    codebooks, codes, _ = _data(n)
    rng = np.random.default_rng(2)
    centroids = rng.normal(size=(n_lists, M * DS)).astype(np.float32)
    assignments = rng.integers(0, n_lists, size=n)
    return AQDNeighbors.from_codes(
        codebooks, codes, n_neighbors=TOP_K, metric="sqeuclidean", coarse_centroids=centroids,
        list_assignments=assignments, n_jobs=1,
    )


def _workload(kind, s):
    """A callable running workload ``kind`` at sizes ``s`` and returning its result, or None if unavailable."""
    Q = _data(s.n)[2]
    if kind in ("flat_batch", "flat_few", "flat_one", "full_sort", "shards", "score"):
        index = _flat(s.n, n_jobs=2 if kind == "shards" else 1)
    if kind == "flat_batch":
        return lambda: index.kneighbors(Q[: s.nq])
    if kind == "flat_few":
        return lambda: [index.kneighbors(Q[:c]) for c in (1, 2, 4, 8, 16)]
    if kind == "flat_one" or kind == "shards":
        return lambda: [index.kneighbors(Q[i : i + 1]) for i in range(5)]
    if kind == "full_sort":
        ks = (s.n // 4,) if s.quick else (s.n // 64, s.n // 32, s.n // 16, s.n // 8, s.n // 4)
        nq = 20 if s.quick else 100
        return lambda: [index.kneighbors(Q[:nq], n_neighbors=k)[1][:, -1] for k in ks]
    if kind == "flat_small":
        small = [_flat(n) for n in (1000, 2000, 4000, 8000, 16000)]
        return lambda: [(i.kneighbors(Q[:1]), i.kneighbors(Q[1:5])) for i in small]
    if kind == "score":
        y = np.random.default_rng(3).integers(0, 10, size=2 * s.nq)
        return lambda: index.score(Q[: 2 * s.nq], y, top_k=TOP_K)
    if kind == "tables":
        codebooks = _data(s.n)[0]
        return lambda: [
            distance_tables(Q[: s.nq], codebooks, metric, layout=layout)
            for metric in ("sqeuclidean", "inner_product") for layout in ("scan", "query")
        ]
    if kind in ("torch_batch", "torch_cuda"):
        if kind == "torch_cuda" and not torch.cuda.is_available():
            return None
        index = _flat(s.n, backend="torch", device="cuda" if kind == "torch_cuda" else "cpu")
        return lambda: index.kneighbors(Q[: s.nq])
    if kind == "ivf":
        index = _ivf(s.n, s.n_lists)
        return lambda: [index.set_params(n_probe=p).kneighbors(Q[: s.nq]) for p in (1, 8, 32)]
    if kind == "ranking":
        scores = np.random.default_rng(4).random((1000, 1024), dtype=np.float32)
        return lambda: [stable_smallest(scores, depth) for depth in (2, 4, 8, 16, 32, 64)]
    if kind == "items":  # kneighbors(X=None) of a tenth of the items
        index = _flat(s.n // 10)
        return lambda: index.kneighbors(n_neighbors=TOP_K)
    if kind == "refine":
        codebooks, codes, _ = _data(s.n)
        vectors = np.random.default_rng(6).normal(size=(s.n, M * DS)).astype(np.float32)
        index = AQDNeighbors.from_codes(codebooks, codes, vectors=vectors, metric="sqeuclidean", refine_factor=10)
        return lambda: index.kneighbors(Q[: s.nq], n_neighbors=TOP_K)
    if kind == "metrics":
        rng = np.random.default_rng(5)
        nq = 20_000 if s.quick else 100_000
        ranking = np.argsort(rng.random((nq, 1000)), axis=1)[:, :100]
        yq, yd = rng.integers(0, 10, size=nq), rng.integers(0, 10, size=1000)
        return lambda: average_precision_scores(yq, yd, ranking)
    raise ValueError(kind)


def _same(a, b):
    """Whether two workload results are equal, bit for bit."""
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


def sweep(name, values, fn, repeats):
    """Best seconds of ``fn`` for each value of ``_tuning.<name>``, values measured in turn; results checked."""
    default = getattr(_tuning, name)
    best, results = dict.fromkeys(values, np.inf), {}
    try:
        for value in values:  # warm-up, and the result of each value
            setattr(_tuning, name, value)
            results[value] = fn()
        for _ in range(repeats):
            for value in values:
                setattr(_tuning, name, value)
                start = time.perf_counter()
                fn()
                best[value] = min(best[value], time.perf_counter() - start)
    finally:
        setattr(_tuning, name, default)
    same = all(_same(results[v], results[default]) for v in values)
    return best, same


def report(name, kind, best, same):
    """Print one value's table and its best value; return the best value."""
    default = getattr(_tuning, name)
    print(f"\n{name} (default {default}, workload {kind}; results identical for every value: {same})")
    print(f"  {'value':>12}  {'seconds':>9}  {'/ default':>9}")
    for value, seconds in best.items():
        mark = " *" if value == default else ""
        shown = "huge" if value == HUGE else value
        print(f"  {shown:>12}  {seconds:9.4f}  {seconds / best[default]:9.3f}{mark}")
    fastest = min(best, key=best.get)
    ratio = best[fastest] / best[default]
    verdict = "within noise: keep the default" if ratio > 1 - NOISE else "faster: repeat before changing the default"
    print(f"  best on this machine: {name} = {fastest} ({ratio:.3f} of the default's time; {verdict})")
    return fastest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="the values to sweep (default: all)")
    parser.add_argument("--values", nargs="+", type=int, help="values to try (with one --only NAME)")
    parser.add_argument("--quick", action="store_true", help="small workloads")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per value (default 5)")
    args = parser.parse_args(argv)
    names = args.only or list(SWEEPS)
    unknown = sorted(set(names) - set(SWEEPS))
    if unknown:
        parser.error(f"unknown tuning values {unknown}; known: {sorted(SWEEPS)}")
    if args.values and len(names) != 1:
        parser.error("--values needs exactly one --only NAME")
    sizes = Sizes(args.quick)
    repeats = args.repeats or 5
    print(f"N = {sizes.n:,}, queries = {sizes.nq}, M = {M}, K = {K}, repeats = {repeats}, one thread")
    torch.set_num_threads(1)
    summary = {}
    with threadpool_limits(limits=1):
        for name in names:
            kind, values = SWEEPS[name]
            values = sorted(set(args.values or values) | {getattr(_tuning, name)})
            fn = _workload(kind, sizes)
            if fn is None:
                print(f"\n{name}: skipped (workload {kind} needs CUDA)")
                continue
            best, same = sweep(name, values, fn, repeats)
            summary[name] = report(name, kind, best, same)
    print("\nbest values on this machine:", ", ".join(f"{n}={v}" for n, v in summary.items()))


if __name__ == "__main__":
    main()
