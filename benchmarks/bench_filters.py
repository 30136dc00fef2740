"""Filtered search, deletion and re-ranking: AQDNeighbors against itself and faiss on the same codes.

Setup
-----
* Data: the Gaussian mixture of ``bench_ivf.py`` (d = 64, 4,096 overlapping
  centres, sigma 0.6); N = 10^6 items (``--n``), 1,000 queries from the same
  mixture; M = 8, K = 256 codebooks learned on 50,000 items; ``metric =
  "sqeuclidean"`` (what faiss returns). An exhaustive index and one with
  1,024 inverted lists (``n_probe=16``, faiss ``nprobe=16``), both exported to
  faiss with ``to_faiss()`` (the same codebooks, codes and lists).
* Filtered search: a random subset of 1 %, 10 % and 50 % of the items,
  the same for every query: ``kneighbors(Q, 10, filter=mask)`` against the
  unfiltered search of the same index, and against faiss with
  ``SearchParameters(sel=IDSelectorBitmap)`` (exhaustive: ``IndexPQ``; lists:
  ``SearchParametersIVF(nprobe=16, sel=...)``). Results are checked equal to
  a search over only the allowed items.
* Deletion: 10 % of the items removed, then searched (tombstones, then after
  ``compact()``), against a fresh index of the remaining items' codes; the
  neighbours are checked equal (mapped to the original numbers).
* Re-ranking: ``refine_factor`` 1, 2, 4 and 10 on the exhaustive index
  holding the vectors: recall@10 against the exact float neighbours
  (``faiss.IndexFlatL2``), queries/s, against faiss' ``IndexRefineFlat``
  around the same ``IndexPQ`` with the same ``k_factor``.
* One thread (threadpoolctl, ``faiss.omp_set_num_threads(1)``); every
  throughput is the best of ``--repeats`` calls, skdqn and its reference
  interleaved in the same process.

Usage::

    python benchmarks/bench_filters.py             # N = 10^6 (a few minutes)
    python benchmarks/bench_filters.py --quick     # N = 10^5, 300 queries
"""

import argparse
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from _measure import best_time  # benchmarks/_measure.py
from bench_ivf import Mixture, recall  # benchmarks/bench_ivf.py (exits without faiss)
from skdqn import AQDNeighbors
from skdqn.io._faiss import pack_codes, to_faiss_index
from skdqn._pq import train_codebooks

import faiss  # noqa: E402 - present: bench_ivf exits otherwise

SHARES = (0.01, 0.1, 0.5)
FACTORS = (1, 2, 4, 10)
N_PROBE = 16


def interleaved(fns, repeats):
    """Best seconds of each callable, called in turn ``repeats`` times."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            best[j] = min(best[j], best_time(fn, 1))
    return best


def faiss_selected(fidx, Q, k, mask, ivf):
    """faiss' search of ``Q`` restricted to ``mask`` by an IDSelectorBitmap, or None where unsupported."""
    bitmap = np.packbits(mask, bitorder="little")
    sel = faiss.IDSelectorBitmap(mask.size, faiss.swig_ptr(bitmap))
    params = faiss.SearchParametersIVF(nprobe=N_PROBE, sel=sel) if ivf else faiss.SearchParametersPQ(sel=sel)
    try:
        fidx.search(Q[:1], k, params=params)
    except RuntimeError:
        return None
    return lambda: (fidx.search(Q, k, params=params), bitmap)  # keep the bitmap alive


def filtered_rows(index, fidx, Q, repeats, ivf):
    """Rows: share, q/s unfiltered and filtered (skdqn), faiss filtered; results checked."""
    rng = np.random.default_rng(5)
    rows = []
    for share in SHARES:
        mask = rng.random(index.n_samples_fit_) < share
        keep = np.flatnonzero(mask)
        reference = AQDNeighbors.from_codes(index.codebooks_, _item_codes(index)[keep], metric="sqeuclidean")
        expected = keep[reference.kneighbors(Q, 10)[1]]
        if not ivf:
            assert np.array_equal(index.kneighbors(Q, 10, filter=mask)[1], expected), "filtered != allowed only"
        theirs = faiss_selected(fidx, Q, 10, mask, ivf)
        fns = [lambda: index.kneighbors(Q, 10), lambda: index.kneighbors(Q, 10, filter=mask)]
        times = interleaved(fns + ([theirs] if theirs else []), repeats)
        nq = len(Q)
        rows.append(dict(share=share, plain=nq / times[0], filtered=nq / times[1],
                         faiss=nq / times[2] if theirs else float("nan"),
                         recall=recall(index.kneighbors(Q, 10, filter=mask)[1], expected)))
    return rows


def _item_codes(index):
    """The codes in item order (inverted lists store them in list order)."""
    if index.list_ids_ is None:
        return np.asarray(index.codes_)
    codes = np.empty_like(index.codes_)
    codes[index.list_ids_] = index.codes_
    return codes


def deletion_row(index, Q, repeats):
    """Remove 10 %, search (tombstones, then compacted) against a fresh index of the rest."""
    rng = np.random.default_rng(6)
    n = index.n_samples_fit_
    removed = rng.choice(n, n // 10, replace=False)
    keep = np.setdiff1d(np.arange(n), removed)
    fresh = AQDNeighbors.from_codes(index.codebooks_, _item_codes(index)[keep], metric="sqeuclidean", n_jobs=1)
    index.remove(removed)
    assert np.array_equal(index.kneighbors(Q, 10)[1], keep[fresh.kneighbors(Q, 10)[1]]), "removal != rest"
    t_tomb, t_fresh = interleaved([lambda: index.kneighbors(Q, 10), lambda: fresh.kneighbors(Q, 10)], repeats)
    index.compact()
    assert np.array_equal(index.kneighbors(Q, 10)[1], keep[fresh.kneighbors(Q, 10)[1]]), "compact != rest"
    t_compact, t_fresh2 = interleaved([lambda: index.kneighbors(Q, 10), lambda: fresh.kneighbors(Q, 10)], repeats)
    nq = len(Q)
    return dict(tombstones=nq / t_tomb, compacted=nq / t_compact, fresh=nq / min(t_fresh, t_fresh2))


def refine_rows(X, codebooks, Q, repeats):
    """Rows: factor, skdqn recall@10 and q/s, faiss IndexRefineFlat recall@10 and q/s."""
    exact = faiss.IndexFlatL2(X.shape[1])
    exact.add(X)
    truth = exact.search(Q, 10)[1]
    index = AQDNeighbors(codebooks=codebooks, metric="sqeuclidean", refine_factor=1, n_jobs=1).fit(X)
    base = to_faiss_index(codebooks, index.codes_[:0])  # faiss wraps only an empty base index
    refined = faiss.IndexRefineFlat(base)
    faiss.copy_array_to_vector(pack_codes(index.codes_, 8).ravel(), base.codes)  # the same codes
    base.ntotal = X.shape[0]
    refined.refine_index.add(X)
    refined.ntotal = X.shape[0]
    rows = []
    for factor in FACTORS:
        index.set_params(refine_factor=factor)
        params = faiss.IndexRefineSearchParameters(k_factor=factor)
        t_ours, t_faiss = interleaved([lambda: index.kneighbors(Q, 10), lambda: refined.search(Q, 10, params=params)],
                                      repeats)
        rows.append(dict(factor=factor, recall=recall(index.kneighbors(Q, 10)[1], truth), qps=len(Q) / t_ours,
                         faiss_recall=recall(refined.search(Q, 10, params=params)[1], truth),
                         faiss_qps=len(Q) / t_faiss))
    return rows


def report(n, filtered, deletion, refined):
    out = [f"N = {n:,}, one thread; queries/s, best of the repeats, interleaved", "",
           "Filtered search (same mask for every query): queries/s",
           "| index | allowed | unfiltered | filtered | filtered / unfiltered | recall@10 | "
           "faiss IDSelectorBitmap | ours / faiss |",
           "|---|---|---|---|---|---|---|---|"]
    for kind, rows in filtered:
        for r in rows:
            faiss_cells = ("refused (IndexPQ takes no selector)", "-") if np.isnan(r["faiss"]) else (
                f"{r['faiss']:,.0f}", f"{r['filtered'] / r['faiss']:.2f}")
            out.append(f"| {kind} | {r['share']:.0%} | {r['plain']:,.0f} | {r['filtered']:,.0f} | "
                       f"{r['filtered'] / r['plain']:.1f}x | {r['recall']:.3f} | {faiss_cells[0]} | {faiss_cells[1]} |")
    out.append("(recall@10: against the exhaustive search of the allowed items only)")
    out += ["", "Deletion of 10 % (exhaustive): queries/s",
            "| tombstones | after compact() | fresh index of the rest |", "|---|---|---|",
            f"| {deletion['tombstones']:,.0f} | {deletion['compacted']:,.0f} | {deletion['fresh']:,.0f} |", "",
            "Re-ranking (exhaustive, vectors held): recall@10 against exact float neighbours",
            "| refine_factor | skdqn recall@10 | skdqn q/s | faiss IndexRefineFlat recall@10 | faiss q/s |",
            "|---|---|---|---|---|"]
    for r in refined:
        out.append(f"| {r['factor']} | {r['recall']:.3f} | {r['qps']:,.0f} | {r['faiss_recall']:.3f} | "
                   f"{r['faiss_qps']:,.0f} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=float, default=1e6, help="items (default 1e6)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N = 1e5, 300 queries, 2 repeats")
    args = parser.parse_args(argv)
    n, nq, repeats = (10**5, 300, 2) if args.quick else (int(args.n), args.queries, args.repeats)
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        mixture = Mixture(0.6)
        X, Q = mixture.sample(n, seed=1), mixture.sample(nq, seed=2)
        codebooks = train_codebooks(mixture.sample(50_000, seed=3), 8, 256, random_state=0)
        flat = AQDNeighbors(codebooks=codebooks, metric="sqeuclidean", n_jobs=1).fit(X)
        ivf = AQDNeighbors(codebooks=codebooks, metric="sqeuclidean", n_jobs=1, n_lists=1024 if n >= 10**6 else 256,
                           n_probe=N_PROBE, random_state=0).fit(X)
        fivf = ivf.to_faiss()
        fivf.nprobe = N_PROBE
        filtered = [("exhaustive", filtered_rows(flat, flat.to_faiss(), Q, repeats, False)),
                    (f"IVF, n_probe={N_PROBE}", filtered_rows(ivf, fivf, Q, repeats, True))]
        deletion = deletion_row(flat, Q, repeats)
        refined = refine_rows(X, codebooks, Q, repeats)
    print(report(n, filtered, deletion, refined))
    return 0


if __name__ == "__main__":
    sys.exit(main())
