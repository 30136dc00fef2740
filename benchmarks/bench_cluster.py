"""An index built as shards on a dask LocalCluster against one process (issue 28).

The vectors (Gaussian, float32) are generated on the workers and kept there
(``client.persist``); a template ``AQDNeighbors`` is fitted once on a sample
(codebooks, and coarse centroids with ``--n-lists``). Then, with the same
template:

* one process, one thread: ``fit`` of all the items with the template's
  codebooks (encode, lists) and ``save``;
* the cluster (``--workers`` processes, one thread each): ``build_shards``,
  one shard per block of rows (``--shards``), each encoded and saved by a
  worker.

Then ``--queries`` queries are searched: the single index loaded
memory-mapped, and ``search_shards`` (first call, which opens the shards on
the workers, and a second one). The merged results are checked equal to the
single index's.

Run::

    python benchmarks/bench_cluster.py                      # 10^6 items, 4 shards, 2 workers
    python benchmarks/bench_cluster.py --no-malloc-trim     # the same, workers without dask's malloc setting
    python benchmarks/bench_cluster.py --n 100000 --n-lists 256
"""

import argparse
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait
from threadpoolctl import threadpool_limits

from skdqn import AQDNeighbors, build_shards, search_shards


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--M", type=int, default=8)
    parser.add_argument("--K", type=int, default=256)
    parser.add_argument("--n-lists", type=int, default=0, help="0: exhaustive index")
    parser.add_argument("--n-probe", type=int, default=16)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--sample", type=int, default=65_536)
    parser.add_argument("--no-malloc-trim", action="store_true", help="unset MALLOC_TRIM_THRESHOLD_ on the workers")
    args = parser.parse_args()
    if args.no_malloc_trim:
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    rows = -(-args.n // args.shards)
    X = da.random.default_rng(0).normal(size=(args.n, args.d), chunks=(rows, args.d)).astype(np.float32)
    X = client.persist(X)
    wait(X)
    local = X.compute()
    queries = local[:: max(1, args.n // args.queries)][: args.queries] + np.float32(0.01)
    lists = dict(n_lists=args.n_lists, n_probe=args.n_probe) if args.n_lists else {}
    with threadpool_limits(1):
        t_template, template = _timed(lambda: AQDNeighbors(
            n_neighbors=10, M=args.M, K=args.K, random_state=0, **lists).fit(local[: args.sample]))
        params = dict(n_neighbors=10, codebooks=template.codebooks_)
        if args.n_lists:
            params.update(coarse_centroids=template.coarse_centroids_, n_probe=template.n_probe_)
        folder = Path(tempfile.mkdtemp())
        t_one, _ = _timed(lambda: AQDNeighbors(**params).fit(local).save(folder / "one"))
        one = AQDNeighbors.load(folder / "one", mmap_mode="r")
        t_search_one, (ref_d, ref_i) = _timed(lambda: one.kneighbors(queries))
    t_shards, shards = _timed(lambda: build_shards(client, template, X, folder / "shards"))
    t_first, _ = _timed(lambda: search_shards(client, shards, queries))
    t_again, (dist, ind) = _timed(lambda: search_shards(client, shards, queries))
    same = bool((ind == ref_i).all() and (dist == ref_d).all())
    kind = f"{args.n_lists} lists, n_probe={template.n_probe_}" if args.n_lists else "exhaustive"
    kind += ", workers without MALLOC_TRIM_THRESHOLD_" if args.no_malloc_trim else ""
    print(f"n={args.n:,} d={args.d} M={args.M} K={args.K}, {kind}; template on {args.sample:,} rows: "
          f"{t_template:.1f} s")
    print(f"build, one process, one thread (fit + save):      {t_one:6.1f} s")
    print(f"build, {args.shards} shards on {args.workers} workers (build_shards):    {t_shards:6.1f} s")
    print(f"search {args.queries} queries, one index (memory-mapped): {t_search_one:6.2f} s")
    print(f"search_shards, first call (opens the shards):     {t_first:6.2f} s")
    print(f"search_shards, again:                             {t_again:6.2f} s")
    print(f"merged results identical to the single index: {same}")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
