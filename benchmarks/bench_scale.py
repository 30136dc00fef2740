"""How AQD search scales with the database: time, memory, workers, disk, faiss.

For N from 10^4 to 10^7 database items (synthetic codes), measures one
``AQDNeighbors.kneighbors`` call of ``--nq`` queries, top-10:

* search time (best of ``--repeats``) and milliseconds per query, in memory
  and with the codes memory-mapped from a ``save``-d index (``load(...,
  mmap_mode="r")``; the file is in the page cache after the first run, so this
  measures the streaming code path, not the disk);
* peak extra memory during the call (tracemalloc: numpy buffers are traced),
  beside the codes themselves (``M`` bytes per item);
* ``n_jobs=2`` against ``n_jobs=1``, on threads (the default) and on two
  processes (``joblib.parallel_backend("loky")``, which memory-maps the codes
  to its workers); database shards when the queries fit in one block, as here
  with ``--nq`` <= 128, query blocks otherwise;
* the same search through ``faiss.IndexPQ`` holding the same codes
  (``AQDNeighbors.to_faiss()``), one and two threads, when faiss is installed.

The time per query is then fitted as ``a + b * N`` (least squares over the
sizes measured) and extrapolated to 10^8 items: the model is checked by how
well it fits the measured points (the table gives the fit's prediction beside
each measurement).

Setup: M = 8, K = 256 (64-bit codes), d = 64; codebooks learned by k-means on
20,000 Gaussian vectors; database codes drawn uniformly at random (encoding
10^7 vectors would cost far more than the search being measured and gives the
scan the same work); queries Gaussian. numpy/BLAS limited to one thread per
worker (threadpoolctl), faiss OpenMP threads set to the worker count.

Usage::

    python benchmarks/bench_scale.py                 # N = 1e4 .. 1e7
    python benchmarks/bench_scale.py --quick         # N = 1e4 .. 1e6, fewer repeats
    python benchmarks/bench_scale.py --out-dir docs/results   # writes scale_table.{md,rst}
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from joblib import parallel_backend
from threadpoolctl import threadpool_limits

import skdqn
from _measure import best_time, peak_extra_mib  # benchmarks/_measure.py
from skdqn import AQDNeighbors
from skdqn._pq import train_codebooks

try:
    import faiss
except ImportError:  # faiss is optional here
    faiss = None

M, K, D = 8, 256, 64
TOP_K = 10


def measure(N, codebooks, Q, repeats, workdir):
    rng = np.random.default_rng(N)
    codes = rng.integers(0, K, size=(N, M), dtype=np.uint8)
    index = AQDNeighbors.from_codes(codebooks, codes, n_neighbors=TOP_K, metric="sqeuclidean")
    row = {"N": N, "nq": len(Q), "codes_mib": codes.nbytes / 2**20}

    def search(ix=index, n_jobs=1):
        ix.set_params(n_jobs=n_jobs)
        return ix.kneighbors(Q)

    ref_d, ref_i = search()
    # Timed runs interleave the variants, so a load change on the shared
    # machine hits them alike.
    folder = index.save(Path(workdir) / f"index_{N}")
    mapped = AQDNeighbors.load(folder, mmap_mode="r")
    d_m, i_m = search(mapped)
    assert np.array_equal(i_m, ref_i) and np.array_equal(d_m, ref_d)
    d_2, i_2 = search(index, 2)
    assert np.array_equal(i_2, ref_i) and np.array_equal(d_2, ref_d)

    def search_processes():
        with parallel_backend("loky", inner_max_num_threads=1):
            return search(index, 2)

    d_p, i_p = search_processes()  # also starts the worker processes, untimed
    assert np.array_equal(i_p, ref_i) and np.array_equal(d_p, ref_d)
    variants = {"aqd_1": lambda: search(index, 1), "aqd_mmap": lambda: search(mapped, 1),
                "aqd_2": lambda: search(index, 2), "aqd_2p": search_processes}
    findex = None
    if faiss is not None:
        findex = index.to_faiss()

        def faiss_search(threads):
            faiss.omp_set_num_threads(threads)
            return findex.search(Q, TOP_K)

        D_f, I_f = faiss_search(1)
        row["faiss_same_top10"] = float((np.sort(I_f, 1) == np.sort(ref_i, 1)).all(1).mean())
        variants["faiss_1"] = lambda: faiss_search(1)
        variants["faiss_2"] = lambda: faiss_search(2)
    times = {name: np.inf for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name] = min(times[name], best_time(fn, 1))
    row.update({f"{name}_s": t for name, t in times.items()})
    row["peak_extra_mib"] = peak_extra_mib(lambda: search(index, 1))
    row["peak_extra_mib_mmap"] = peak_extra_mib(lambda: search(mapped, 1))
    del mapped
    shutil.rmtree(folder, ignore_errors=True)
    return row


def _sci(n):
    return f"{n:.0e}".replace("e+0", "e")


def fit_linear(rows, key):
    """Least-squares a + b * N of seconds per query; returns (a, b)."""
    N = np.array([r["N"] for r in rows], dtype=float)
    t = np.array([r[key] / r["nq"] for r in rows])
    A = np.stack([np.ones_like(N), N], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    return a, b


def table_rows(rows, a, b):
    out = []
    for r in rows:
        ms = 1e3 * r["aqd_1_s"] / r["nq"]
        pred = 1e3 * (a + b * r["N"])
        line = {
            "N": _sci(r["N"]),
            "ms / query, 1 worker": f"{ms:.3f}",
            "linear fit": f"{pred:.3f}",
            "memory-mapped": f"{1e3 * r['aqd_mmap_s'] / r['nq']:.3f}",
            "2 threads: speed-up": f"{r['aqd_1_s'] / r['aqd_2_s']:.2f}x",
            "2 processes: speed-up": f"{r['aqd_1_s'] / r['aqd_2p_s']:.2f}x",
            "codes (MiB)": f"{r['codes_mib']:.1f}",
            "peak extra (MiB)": f"{r['peak_extra_mib']:.1f}",
        }
        if "faiss_1_s" in r:
            line["faiss ms / query (1 / 2 threads)"] = (
                f"{1e3 * r['faiss_1_s'] / r['nq']:.3f} / {1e3 * r['faiss_2_s'] / r['nq']:.3f}"
            )
            line["AQD / faiss time, 1 thread"] = f"{r['aqd_1_s'] / r['faiss_1_s']:.2f}"
        out.append(line)
    return out


def markdown(lines):
    head = list(lines[0])
    text = "| " + " | ".join(head) + " |\n|" + "---:|" * len(head) + "\n"
    for line in lines:
        text += "| " + " | ".join(line[h] for h in head) + " |\n"
    return text


def rst(lines):
    head = list(lines[0])
    text = ".. list-table::\n   :header-rows: 1\n\n"
    for row in [dict(zip(head, head))] + lines:
        cells = [row[h] for h in head]
        text += "   * - " + cells[0] + "\n" + "".join(f"     - {c}\n" for c in cells[1:])
    return text


def summary(rows, a, b):
    ms_1e8 = 1e3 * (a + b * 1e8)
    largest = rows[-1]
    sizes = ", ".join(_sci(r["N"]) for r in rows)
    return (
        f"Linear model of the time per query (least squares over N = "
        f"{sizes}): {1e3 * a:.3f} ms + {1e9 * b:.2f} ms per "
        f"million items; extrapolated to N = 1e8: {ms_1e8:.0f} ms per query on one worker "
        f"({M * 1e8 / 2**30:.2f} GiB of codes). Peak extra memory of a search stays "
        f"{min(r['peak_extra_mib'] for r in rows):.1f}-{max(r['peak_extra_mib'] for r in rows):.1f} MiB "
        f"whatever N (memory-mapped: up to {max(r['peak_extra_mib_mmap'] for r in rows):.1f} MiB), "
        f"beside M = {M} bytes per item of codes."
        + (f" faiss returned the same top-10 sets for {100 * largest['faiss_same_top10']:.0f}% of the "
           f"queries at N = {_sci(largest['N'])}." if "faiss_same_top10" in largest else "")
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N up to 1e6, 2 repeats")
    parser.add_argument("--sizes", type=float, nargs="+", default=None, help="database sizes")
    parser.add_argument("--nq", type=int, default=100, help="queries per search (default 100)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per variant (default 3)")
    parser.add_argument("--out-dir", default=None, help="write scale_table.md/.rst and scale_run.json here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ([1e4, 1e5, 1e6] if args.quick else [1e4, 1e5, 1e6, 1e7]))]
    repeats = args.repeats or (2 if args.quick else 3)
    print(f"skdqn {skdqn.__version__}, numpy {np.__version__}, "
          f"faiss {faiss.__version__ if faiss else 'absent'}, {platform.platform()}, "
          f"{os.cpu_count()} CPUs; M={M}, K={K}, d={D}, nq={args.nq}, top-{TOP_K}", flush=True)
    rng = np.random.default_rng(0)
    codebooks = train_codebooks(rng.normal(size=(20_000, D)).astype(np.float32), M, K, random_state=0)
    Q = rng.normal(size=(args.nq, D)).astype(np.float32)
    rows = []
    start = time.perf_counter()
    with threadpool_limits(1), tempfile.TemporaryDirectory() as workdir:
        for N in sizes:
            rows.append(measure(N, codebooks, Q, repeats, workdir))
            r = rows[-1]
            print(f"N={N:>10,}  {1e3 * r['aqd_1_s'] / r['nq']:8.3f} ms/query  mmap "
                  f"{1e3 * r['aqd_mmap_s'] / r['nq']:8.3f}  2 threads x{r['aqd_1_s'] / r['aqd_2_s']:.2f}  "
                  f"2 processes x{r['aqd_1_s'] / r['aqd_2p_s']:.2f}  "
                  f"peak {r['peak_extra_mib']:.1f} MiB"
                  + (f"  faiss {1e3 * r['faiss_1_s'] / r['nq']:8.3f}" if "faiss_1_s" in r else ""),
                  flush=True)
    a, b = fit_linear(rows, "aqd_1_s")
    lines = table_rows(rows, a, b)
    text = summary(rows, a, b)
    md = markdown(lines) + "\n" + text + "\n"
    print("\n" + md)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        intro = (f"M = {M}, K = {K} (64-bit codes), d = {D}, {args.nq} queries, top-{TOP_K}, "
                 f"synthetic codes; best of {repeats} interleaved runs; "
                 f"{os.cpu_count()}-core machine, numpy {np.__version__}"
                 + (f", faiss {faiss.__version__}" if faiss else "") + ". "
                 "Produced by ``python benchmarks/bench_scale.py --out-dir docs/results``.")
        (out / "scale_table.md").write_text(intro.replace("``", "`") + "\n\n" + md)
        (out / "scale_table.rst").write_text(intro + "\n\n" + rst(lines) + "\n" + text + "\n")
        record = {"rows": rows, "fit_seconds_per_query": {"a": a, "b_per_item": b},
                  "versions": {"skdqn": skdqn.__version__, "numpy": np.__version__,
                               "faiss": faiss.__version__ if faiss else None},
                  "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
                  "wall_seconds": time.perf_counter() - start}
        (out / "scale_run.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {out / 'scale_table.md'}, {out / 'scale_table.rst'}, {out / 'scale_run.json'}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
