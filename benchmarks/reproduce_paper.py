"""Reproduce the protocol of Table 1 and the ablations of the DQN paper on data we can ship.

Cao, Long, Wang, Zhu and Wen, *Deep Quantization Network for Efficient Image
Retrieval*, AAAI 2016. Five methods at 8/16/24/32 bits (K = 256 codewords per
subspace, M = 1..4 subspaces):

* ``PQ``: ``faiss.IndexPQ(d, M, 8)`` on the standardised raw features;
* ``OPQ``: skdqn's own OPQ on the same features, what
  ``AQDNeighbors(M=M, K=256, rotation="opq", random_state=0)`` learns
  (``skdqn._opq.train_opq``: faiss' iterations and random start), the database
  indexed by ``AQDNeighbors(codebooks=..., rotation=...)``;
  ``--faiss-opq`` uses faiss' instead,
  ``faiss.IndexPreTransform(faiss.OPQMatrix(d, M), faiss.IndexPQ(d, M, 8))``;
  both rank the whole database by ADC (AQD) distances. When ``d`` is not
  a multiple of ``M`` (M = 3 with 64 or 784 features) the features are
  zero-padded to the next multiple, which changes no distance;
* ``Two-step`` (the paper's "DQN2"): ``DeepQuantizer(M, K=256, lam=0.0)``, the
  same network trained without the quantization loss, its embeddings
  quantized afterwards (the codebooks are k-means of the embeddings and never
  act on the network);
* ``DQNip``: ``DeepQuantizer(M, K=256, pair_loss="inner_product")``;
* ``DQN``: ``DeepQuantizer(M, K=256)`` with the library defaults.

Every DQN variant trains with the paper's pairwise loss, ``loss="pairwise"``
(on these three sets, ten classes or multi-label, the default
``loss="auto"`` picks it too, so the numbers are those of the defaults).

Every DQN variant is ``make_pipeline(StandardScaler(), DeepQuantizer(...))``
with ``random_state=0`` and ranks the database by Asymmetric Quantizer
Distance. Ties are broken by database index for every method. Each cell
reports the MAP over the whole database and MAP@1000 (``skdqn.metrics``,
``normalize="retrieved"``); the figures show precision@k (k <= 1000) and
precision-recall curves at 32 bits.

Data sets (an item is relevant to a query when they share a label):

* ``digits`` (``sklearn.datasets.load_digits``, embedded): 20% of the images
  as queries (stratified, seed 0), the rest as training set and database;
* ``fashion`` (Fashion-MNIST from the Debian package ``dataset-fashion-mnist``):
  1,000 test images as queries (100 per class), the 60,000 training images
  as database, 10,000 of them (1,000 per class) as training set (seed 0);
* ``fashion-multilabel``: two Fashion-MNIST images side by side (28 x 56,
  1,568 features) labelled by the union of their two classes (a 10-column
  indicator); 10,000 training pairs drawn from the training images, 20,000
  database pairs from the database images, 1,000 query pairs from the
  queries (pairs of distinct images, drawn with one ``RandomState(0)`` in
  that order).

Outputs (default folder ``docs/results/``): ``paper_table.md``,
``paper_table.rst``, ``paper_<data set>.png`` and ``paper_run.json`` (seeds,
versions, machine, wall time per cell and in total). ``--quick`` runs a small
version in minutes (Fashion with 2,000 training / 10,000 database / 200
queries and 2,000 / 4,000 / 200 pairs, 8 and 32 bits only, OPQ trained with
5 iterations instead of 50) and writes the same files with a ``_quick``
suffix, so it never overwrites the full results. torch, faiss and BLAS run on
one thread by default (``--threads``): on a shared machine more threads
oversubscribe the cores and DeepQuantizer fits run several times slower.
Most of the full run's time goes to OPQ on the 1,568 features of the
multi-label set (50 SVDs of 1,568 x 1,568 per bit length).

Usage::

    python benchmarks/reproduce_paper.py                     # everything (about 1.5 h on 2 cores)
    python benchmarks/reproduce_paper.py --quick             # about 10 minutes
    python benchmarks/reproduce_paper.py --datasets digits fashion
    python benchmarks/reproduce_paper.py --out-dir /tmp/results --threads 4
"""

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import faiss
import matplotlib
import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

import skdqn  # noqa: E402
from skdqn import AQDNeighbors, DeepQuantizer  # noqa: E402
from skdqn._opq import train_opq  # noqa: E402
from skdqn.search._search import aqd_kneighbors  # noqa: E402
from skdqn.search._tables import distance_tables  # noqa: E402
from skdqn.datasets import load_fashion_mnist, retrieval_split  # noqa: E402
from skdqn.metrics import (  # noqa: E402
    average_precision_scores,
    precision_at_k,
    precision_recall_curve,
)

SEED = 0
K = 256  # codewords per subspace: one byte per subspace
BITS = (8, 16, 24, 32)
QUICK_BITS = (8, 32)
QUICK_OPQ_ITERATIONS = 5  # the OPQ default is 50 (faiss'): an SVD of d x d each (minutes at d = 1,568)
OPQ_ITERATIONS = 50  # what AQDNeighbors(rotation="opq") runs
TOP_K = 1000  # MAP@1000 and the precision@k curve
QUERY_CHUNK = 100  # queries ranked at once (a chunk x n_database ranking)
DATASETS = ("digits", "fashion", "fashion-multilabel")
METHODS = ("PQ", "OPQ", "Two-step", "DQNip", "DQN")
DQN_PARAMS = {  # DeepQuantizer arguments of each DQN variant, besides M, K, random_state
    "Two-step": {"lam": 0.0, "loss": "pairwise"},
    "DQNip": {"pair_loss": "inner_product", "loss": "pairwise"},
    "DQN": {"loss": "pairwise"},  # the paper's loss (loss="auto" picks it on these sets too)
}
FASHION_SIZES = {  # per class: training, database (None: all 60,000), queries; pairs
    False: dict(train=1000, database=None, queries=100, pairs=(10000, 20000, 1000)),
    True: dict(train=200, database=1000, queries=20, pairs=(2000, 4000, 200)),
}
LINE_STYLES = {  # the DQN variants often overlap: tell them apart by the dashes too
    "PQ": dict(color="tab:blue", linestyle="-"),
    "OPQ": dict(color="tab:orange", linestyle="--"),
    "Two-step": dict(color="tab:green", linestyle="-."),
    "DQNip": dict(color="tab:red", linestyle=":"),
    "DQN": dict(color="tab:purple", linestyle="-"),
}
PAPER_CLAIMS = {
    "two_step": "DQN beats the two-step variant (DQN2) by 1.8-3.7% MAP",
    "inner_product": "the cosine loss beats the inner-product loss (DQNip) by about 9% MAP",
}
PREVIOUS = "the run recorded in the output folder"
INSTALL_HINT = "install with apt-get install dataset-fashion-mnist"
FAISS_OPQ = False  # --faiss-opq: faiss' OPQMatrix instead of skdqn's OPQ


# --------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------


def _dataset(key, name, train, database, queries, note):
    (X_tr, y_tr), (X_db, y_db), (X_q, y_q) = train, database, queries
    return dict(key=key, name=name, note=note, X_train=X_tr, y_train=y_tr,
                X_db=X_db, y_db=y_db, X_q=X_q, y_q=y_q)


def digits_data():
    X, y = load_digits(return_X_y=True)
    X_tr, X_q, y_tr, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=SEED)
    note = "20% stratified queries (seed 0); training set = database = the rest"
    return _dataset("digits", "digits", (X_tr, y_tr), (X_tr, y_tr), (X_q, y_q), note)


def _fashion_indices(quick):
    """Images of Fashion-MNIST and the indices of the training set, database and queries."""
    X_all, y_all = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    sizes = FASHION_SIZES[quick]
    queries = retrieval_split(y_test, sizes["queries"], random_state=SEED)
    if sizes["database"] is None:
        database = np.arange(len(y_all))
    else:
        database = retrieval_split(y_all, sizes["database"], random_state=SEED)
    train = database[retrieval_split(y_all[database], sizes["train"], random_state=SEED)]
    return X_all, y_all, X_test, y_test, train, database, queries


def fashion_data(quick):
    X_all, y_all, X_test, y_test, train, database, queries = _fashion_indices(quick)
    X_all, X_test = X_all.astype(np.float32), X_test.astype(np.float32)
    note = (f"queries: {len(queries):,} test images ({len(queries) // 10} per class); database: "
            f"{len(database):,} training images; training set: {len(train):,} of them "
            f"({len(train) // 10} per class); seed 0")
    return _dataset("fashion", "Fashion-MNIST", (X_all[train], y_all[train]),
                    (X_all[database], y_all[database]), (X_test[queries], y_test[queries]), note)


def pair_images(X, y, n_pairs, rng, n_classes=10):
    """Two distinct images side by side (28 x 56) labelled by the union of their classes."""
    first = rng.randint(len(y), size=n_pairs)
    second = (first + rng.randint(1, len(y), size=n_pairs)) % len(y)  # never the same image
    images = np.concatenate([X[first].reshape(-1, 28, 28), X[second].reshape(-1, 28, 28)], axis=2)
    Y = np.zeros((n_pairs, n_classes), dtype=np.int64)
    Y[np.arange(n_pairs), y[first]] = 1
    Y[np.arange(n_pairs), y[second]] = 1
    return images.reshape(n_pairs, -1).astype(np.float32), Y


def fashion_multilabel_data(quick):
    X_all, y_all, X_test, y_test, train, database, queries = _fashion_indices(quick)
    n_train, n_db, n_q = FASHION_SIZES[quick]["pairs"]
    rng = np.random.RandomState(SEED)  # drawn in this order: training, database, queries
    tr = pair_images(X_all[train], y_all[train], n_train, rng)
    db = pair_images(X_all[database], y_all[database], n_db, rng)
    q = pair_images(X_test[queries], y_test[queries], n_q, rng)
    note = (f"pairs of distinct images side by side (1,568 features), labels = union of the two "
            f"classes; {n_train:,} training pairs from the {len(train):,} training images, "
            f"{n_db:,} database pairs from the {len(database):,} database images, {n_q:,} query "
            f"pairs from the {len(queries):,} query images; RandomState(0)")
    return _dataset("fashion-multilabel", "Fashion-MNIST multi-label", tr, db, q, note)


def load_datasets(keys, quick):
    """The requested data sets; Fashion-MNIST ones are skipped with a message when absent."""
    loaders = {"digits": lambda: digits_data(), "fashion": lambda: fashion_data(quick),
               "fashion-multilabel": lambda: fashion_multilabel_data(quick)}
    for key in keys:
        try:
            yield loaders[key]()
        except FileNotFoundError as exc:
            print(f"\n== {key} SKIPPED: Fashion-MNIST not found ({INSTALL_HINT}).\n   {exc}",
                  flush=True)


# --------------------------------------------------------------------------
# Methods: each returns a ranker, rank(rows) -> (len(rows), n_database) indices,
# best first, ties by database index
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stderr():
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


def _pad(X, d):
    X = np.asarray(X, dtype=np.float32)
    return X if X.shape[1] == d else np.pad(X, ((0, 0), (0, d - X.shape[1])))


def fit_faiss(method, data, M, opq_iterations=None):
    """PQ or OPQ on the standardised raw features; returns (ranker, info).

    ``opq_iterations`` overrides faiss' number of OPQ iterations (``OPQMatrix.niter``).
    """
    scaler = StandardScaler().fit(data["X_train"])
    d_in = scaler.n_features_in_
    d = M * -(-d_in // M)  # zero-pad to the next multiple of M
    pq = faiss.IndexPQ(d, M, 8)
    if method == "PQ":
        index = pq
    else:
        opq = faiss.OPQMatrix(d, M)
        if opq_iterations is not None:
            opq.niter = opq_iterations
        index = faiss.IndexPreTransform(opq, pq)
    with _quiet_stderr():
        index.train(_pad(scaler.transform(data["X_train"]), d))
    index.add(_pad(scaler.transform(data["X_db"]), d))
    X_q = _pad(scaler.transform(data["X_q"]), d)
    n_db = index.ntotal

    def rank(rows):
        dist, ind = index.search(X_q[rows], n_db)  # ADC distances to every item
        order = np.lexsort((ind, dist))  # by distance, then database index
        return np.take_along_axis(ind, order, axis=1)

    return rank, {"n_features": d_in, "padded_to": d if d != d_in else None}


def fit_opq(data, M, opq_iterations=None):
    """skdqn's OPQ on the standardised raw features, ranked by AQD; returns (ranker, info).

    ``AQDNeighbors(M=M, K=K, rotation="opq", random_state=SEED).fit(X_train)``
    learns the same rotation and codebooks; ``train_opq`` is called here to
    train on the training set, index the database, and set the iterations.
    """
    scaler = StandardScaler().fit(data["X_train"])
    d_in = scaler.n_features_in_
    d = M * -(-d_in // M)  # zero-pad to the next multiple of M
    rotation, codebooks = train_opq(_pad(scaler.transform(data["X_train"]), d), M, K,
                                    n_iter=opq_iterations or OPQ_ITERATIONS, max_samples=256 * K,
                                    random_state=SEED)
    index = AQDNeighbors(codebooks=codebooks, rotation=rotation, metric="sqeuclidean")
    index.fit(_pad(scaler.transform(data["X_db"]), d))
    X_q = _pad(scaler.transform(data["X_q"]), d)
    n_db = index.n_samples_fit_

    def rank(rows):
        return index.kneighbors(X_q[rows], n_db, return_distance=False)  # ties by database index

    return rank, {"n_features": d_in, "padded_to": d if d != d_in else None}


def fit_dqn(method, data, M):
    """A DeepQuantizer variant in a pipeline; ranks by AQD. Returns (ranker, info)."""
    dq = DeepQuantizer(M=M, K=K, random_state=SEED, n_threads=None, **DQN_PARAMS[method])  # --threads
    pipe = make_pipeline(StandardScaler(), dq).fit(data["X_train"], data["y_train"])
    codes = dq.encode(pipe[0].transform(data["X_db"]))
    tables = distance_tables(pipe.transform(data["X_q"]), dq.codebooks_)
    n_db = codes.shape[0]

    def rank(rows):
        return aqd_kneighbors(tables[rows], codes, n_db)[1]

    return rank, {"epochs": dq.n_iter_, "final_pair_loss": dq.history_[-1]["pair_loss"]}


def fit_method(method, data, M, opq_iterations=None):
    if method == "OPQ" and not FAISS_OPQ:
        return fit_opq(data, M, opq_iterations)
    if method in ("PQ", "OPQ"):
        return fit_faiss(method, data, M, opq_iterations)
    return fit_dqn(method, data, M)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def curve_depths(n_db):
    pk = np.arange(1, min(TOP_K, n_db) + 1)
    pr = np.unique(np.concatenate([np.geomspace(1, n_db, 120), np.linspace(1, n_db, 120)]).astype(np.intp))
    return pk, pr


def evaluate(rank, data, curves):
    """MAP (whole database), MAP@1000 and, if asked, precision@k and precision-recall curves."""
    y_q, y_db = data["y_q"], data["y_db"]
    n_q, n_db = len(y_q), len(y_db)
    pk_depths, pr_depths = curve_depths(n_db)
    ap, ap_top = np.empty(n_q), np.empty(n_q)
    pk, pr_p, pr_r = np.zeros(len(pk_depths)), np.zeros(len(pr_depths)), np.zeros(len(pr_depths))
    for start in range(0, n_q, QUERY_CHUNK):
        rows = slice(start, min(n_q, start + QUERY_CHUNK))
        ranking = rank(rows)
        ap[rows] = average_precision_scores(y_q[rows], y_db, ranking)
        ap_top[rows] = average_precision_scores(y_q[rows], y_db, ranking, top_k=TOP_K)
        if curves:  # the metrics are means over the chunk: weight by its size
            weight = (rows.stop - rows.start) / n_q
            pk += weight * precision_at_k(y_q[rows], y_db, ranking, k=pk_depths)
            p, r, _ = precision_recall_curve(y_q[rows], y_db, ranking, depths=pr_depths)
            pr_p += weight * p
            pr_r += weight * r
    result = {"map": float(ap.mean()), "map_at_1000": float(ap_top.mean())}
    if curves:
        result["curves"] = {"k": pk_depths.tolist(), "precision_at_k": pk.tolist(),
                            "pr_depths": pr_depths.tolist(), "pr_precision": pr_p.tolist(),
                            "pr_recall": pr_r.tolist()}
    return result


def run_dataset(data, bits_list, opq_iterations=None, done=None, checkpoint=None):
    """Every method at every bit length on one data set: a list of cells.

    ``done`` maps ``(data set, method, bits)`` to cells of an earlier run to reuse
    (``--resume``); ``checkpoint(cells)`` is called after every bit length.
    """
    done = done or {}
    print(f"\n== {data['name']}: {len(data['y_train']):,} training, {len(data['y_db']):,} database, "
          f"{len(data['y_q']):,} queries, {data['X_train'].shape[1]} features\n   {data['note']}",
          flush=True)
    cells = []
    for bits in bits_list:
        M = bits // 8
        for method in METHODS:
            if (data["key"], method, bits) in done:
                cells.append(done[(data["key"], method, bits)])
                print(f"{bits:>3} bits  {method:<8}  MAP {cells[-1]['map']:.4f}  (reused from {PREVIOUS})",
                      flush=True)
                continue
            start = time.perf_counter()
            rank, info = fit_method(method, data, M, opq_iterations)
            fit_s = time.perf_counter() - start
            result = evaluate(rank, data, curves=bits == max(bits_list))
            eval_s = time.perf_counter() - start - fit_s
            cell = dict(dataset=data["key"], method=method, bits=bits, M=M, K=K, **result, **info,
                        fit_seconds=fit_s, eval_seconds=eval_s, wall_seconds=fit_s + eval_s)
            cells.append(cell)
            pad = f"  (zero-padded {info['n_features']} -> {info['padded_to']})" if info.get("padded_to") else ""
            print(f"{bits:>3} bits  {method:<8}  MAP {cell['map']:.4f}  MAP@1000 {cell['map_at_1000']:.4f}  "
                  f"fit {fit_s:7.1f} s  eval {eval_s:5.1f} s{pad}", flush=True)
        if checkpoint is not None:
            checkpoint(cells)
    return cells


# --------------------------------------------------------------------------
# Claims: DQN - two-step and DQN - DQNip, absolute and relative
# --------------------------------------------------------------------------


def claims(cells):
    """Per data set and bit length, DQN's MAP gain over Two-step and over DQNip."""
    by_key = {(c["dataset"], c["method"], c["bits"]): c["map"] for c in cells}
    rows = []
    for (dataset, method, bits), dqn in by_key.items():
        if method != "DQN":
            continue
        row = dict(dataset=dataset, bits=bits, dqn=dqn)
        for other, name in (("Two-step", "two_step"), ("DQNip", "inner_product")):
            base = by_key[(dataset, other, bits)]
            row[name] = base
            row[name + "_abs"] = dqn - base
            row[name + "_rel"] = (dqn - base) / base if base > 0 else float("nan")
        rows.append(row)
    return rows


def claims_summary(rows):
    """One line per claim: the paper's words and what we measured."""
    lines = []
    for name, text in PAPER_CLAIMS.items():
        if not rows:
            break
        ab = np.array([r[name + "_abs"] for r in rows]) * 100
        rel = np.array([r[name + "_rel"] for r in rows]) * 100
        wins = int((ab > 0).sum())
        lines.append(
            f"Paper: {text}. Measured: DQN ahead in {wins} of {len(rows)} cells; difference "
            f"{ab.min():+.2f} to {ab.max():+.2f} MAP points (mean {ab.mean():+.2f}), "
            f"{rel.min():+.2f}% to {rel.max():+.2f}% relative (mean {rel.mean():+.2f}%)."
        )
    return lines


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


def _table_rows(cells, dataset, bits_list):
    """Header and rows (lists of strings) of one data set's table; best of a column in bold."""
    header = ["Method"] + [f"MAP {b} bits" for b in bits_list] + [f"MAP@1000 {b} bits" for b in bits_list]
    value = {(c["method"], c["bits"], m): c[m] for c in cells if c["dataset"] == dataset
             for m in ("map", "map_at_1000")}
    columns = [(b, "map") for b in bits_list] + [(b, "map_at_1000") for b in bits_list]
    best = {col: max(value[(m, *col)] for m in METHODS) for col in columns}
    rows = []
    for method in METHODS:
        row = [method]
        for col in columns:
            v = value[(method, *col)]
            row.append(f"**{v:.4f}**" if v == best[col] else f"{v:.4f}")
        rows.append(row)
    return header, rows


def _claim_rows(rows):
    header = ["Data set", "Bits", "DQN", "Two-step", "DQN - Two-step", "DQNip", "DQN - DQNip"]
    body = [[r["dataset"], str(r["bits"]), f"{r['dqn']:.4f}", f"{r['two_step']:.4f}",
             f"{100 * r['two_step_abs']:+.2f} pts ({100 * r['two_step_rel']:+.1f}%)",
             f"{r['inner_product']:.4f}",
             f"{100 * r['inner_product_abs']:+.2f} pts ({100 * r['inner_product_rel']:+.1f}%)"]
            for r in rows]
    return header, body


def _notes(data, cells, opq_iterations):
    notes = [data["note"] + "."]
    if opq_iterations is not None:
        notes.append(f"OPQ trained with {opq_iterations} iterations instead of the default 50.")
    padded = sorted({(c["n_features"], c["padded_to"]) for c in cells
                     if c["dataset"] == data["key"] and c.get("padded_to")})
    for d_in, d in padded:
        notes.append(f"PQ/OPQ at 24 bits (M = 3): the {d_in} standardised features are zero-padded "
                     f"to {d} (a multiple of M); zero columns change no distance.")
    if len(data["y_train"]) < 39 * K:
        notes.append(f"PQ/OPQ k-means run on {len(data['y_train']):,} training points, fewer than the "
                     f"39 x {K} faiss recommends.")
    return notes


def _intro(ctx):
    scope = "QUICK run (small sizes, 8 and 32 bits); not the full protocol. " if ctx["quick"] else ""
    if not ctx["complete"]:
        scope = "PARTIAL results, written while the run goes on. " + scope
    if ctx["reused"]:
        scope += (f"{ctx['reused']} of the cells were computed by an earlier invocation "
                  "with the same settings (--resume). ")
    opq = "faiss" if FAISS_OPQ else "skdqn (AQDNeighbors(rotation='opq'))"
    return (f"{scope}MAP over the whole database and MAP@1000 (skdqn.metrics, "
            "normalize=\"retrieved\", ties by database index); K = 256, M = bits / 8. "
            f"PQ: faiss, OPQ: {opq}, "
            "on the standardised features, ADC ranking. Two-step, DQNip, DQN: "
            "make_pipeline(StandardScaler(), DeepQuantizer(M, K=256, ...)), random_state=0, "
            "AQD ranking, the paper's loss (loss=\"pairwise\"); Two-step = lam=0.0, "
            "DQNip = pair_loss=\"inner_product\". "
            "Best of each column in bold. Produced by benchmarks/reproduce_paper.py.")


def markdown(datasets, cells, claim_rows, ctx):
    def table(header, rows):
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]

    title = "DQN paper, Table 1 protocol and ablations" + (" (quick run)" if ctx["quick"] else "")
    out = ["# " + title, "", _intro(ctx)]
    for data in datasets:
        out += ["", f"## {data['name']}", ""]
        out += table(*_table_rows(cells, data["key"], ctx["bits"]))
        out += [""] + [f"- {n}" for n in _notes(data, cells, ctx["opq_iterations"])]
    out += ["", "## The paper's claims and what we measured", ""]
    out += table(*_claim_rows(claim_rows))
    out += [""] + [f"- {line}" for line in claims_summary(claim_rows)]
    return "\n".join(out) + "\n"


def rst(datasets, cells, claim_rows, ctx):
    def list_table(header, rows):
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for row in [header] + rows:
            lines.append("   * - " + row[0])
            lines += ["     - " + v for v in row[1:]]
        return lines

    def heading(text, char):
        return [text, char * len(text)]

    title = "DQN paper, Table 1 protocol and ablations" + (" (quick run)" if ctx["quick"] else "")
    # :orphan: keeps Sphinx quiet whether or not a toctree lists this page.
    out = [":orphan:", ""] + heading(title, "=") + ["", _intro(ctx)]
    for data in datasets:
        out += [""] + heading(data["name"], "-") + [""]
        out += list_table(*_table_rows(cells, data["key"], ctx["bits"]))
        out += [""] + [f"* {n}" for n in _notes(data, cells, ctx["opq_iterations"])]
    out += [""] + heading("The paper's claims and what we measured", "-") + [""]
    out += list_table(*_claim_rows(claim_rows))
    out += [""] + [f"* {line}" for line in claims_summary(claim_rows)]
    # "MAP@1000" would be an e-mail address to docutils (a mailto: link): escape the @.
    return re.sub(r"(?<=\w)@(?=\w)", r"\\@", "\n".join(out)) + "\n"


def plot_curves(data, cells, bits, path):
    """Precision@k and precision-recall at ``bits`` bits, every method, one PNG."""
    fig, (ax_k, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.5))
    for c in cells:
        if c["dataset"] != data["key"] or c["bits"] != bits:
            continue
        curves = c["curves"]
        style = dict(label=c["method"], **LINE_STYLES[c["method"]])
        ax_k.plot(curves["k"], curves["precision_at_k"], **style)
        ax_pr.plot(curves["pr_recall"], curves["pr_precision"], **style)
    ax_k.set(xlabel="k (items retrieved)", ylabel="precision@k", title=f"{data['name']}: precision@k, {bits} bits")
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"{data['name']}: precision-recall, {bits} bits")
    for ax in (ax_k, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_record(ctx, datasets, cells, claim_rows, total_s):
    return {
        "script": "benchmarks/reproduce_paper.py",
        "complete": ctx["complete"],
        "quick": ctx["quick"],
        "datasets": {d["key"]: {"n_train": len(d["y_train"]), "n_database": len(d["y_db"]),
                                "n_queries": len(d["y_q"]), "n_features": int(d["X_train"].shape[1]),
                                "protocol": d["note"]} for d in datasets},
        "bits": list(ctx["bits"]),
        "opq_iterations": ctx["opq_iterations"] or "default (50)",
        "opq": "faiss" if FAISS_OPQ else "skdqn",
        "seeds": {"splits": SEED, "pairs": SEED, "random_state": SEED, "faiss": "library defaults"},
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                     "sklearn": sklearn.__version__, "faiss": faiss.__version__, "skdqn": skdqn.__version__},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "faiss_threads": faiss.omp_get_max_threads(),
                    "blas_threads": ctx["threads"],
                    "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "cells": cells,
        "cells_reused": ctx["reused"],
        "cells_wall_seconds": sum(c["wall_seconds"] for c in cells),
        "claims": {"paper": PAPER_CLAIMS, "measured": claim_rows, "summary": claims_summary(claim_rows)},
        "total_wall_seconds": total_s,  # this invocation; with --resume, reused cells ran before
    }


def record_path(out_dir, quick):
    return Path(out_dir) / ("paper_run_quick.json" if quick else "paper_run.json")


def write_outputs(out_dir, ctx, datasets, cells, total_s, tables=True):
    """Tables, figures (unless ``tables`` is False) and the JSON record.

    ``ctx``: bits, quick, opq_iterations, threads, reused, complete. Returns the
    Markdown table (None without tables) and the paths written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if ctx["quick"] else ""
    claim_rows = claims(cells)
    md, paths = None, []
    if tables:
        md = markdown(datasets, cells, claim_rows, ctx)
        written = {out_dir / f"paper_table{suffix}.md": md,
                   out_dir / f"paper_table{suffix}.rst": rst(datasets, cells, claim_rows, ctx)}
        for path, text in written.items():
            path.write_text(text)
        paths += list(written)
        for data in datasets:
            path = out_dir / f"paper_{data['key']}{suffix}.png"
            plot_curves(data, cells, max(ctx["bits"]), path)
            paths.append(path)
    path = record_path(out_dir, ctx["quick"])
    text = json.dumps(run_record(ctx, datasets, cells, claim_rows, total_s), indent=1)
    # One line per list of numbers (the curves), not one line per number.
    text = re.sub(r"\[[-+0-9.eE,\s]*\]", lambda m: " ".join(m.group(0).split()), text)
    path.write_text(text + "\n")
    return md, paths + [path]


def previous_cells(out_dir, ctx):
    """Cells of the earlier run recorded in ``out_dir`` (``--resume``), if its settings match."""
    path = record_path(out_dir, ctx["quick"])
    if not path.exists():
        print(f"--resume: no {path}; starting afresh.")
        return {}
    record = json.loads(path.read_text())
    same = (record["bits"] == list(ctx["bits"]) and record["machine"]["torch_threads"] == ctx["threads"]
            and record["opq_iterations"] == (ctx["opq_iterations"] or "default (50)")
            and record.get("opq", "faiss") == ("faiss" if FAISS_OPQ else "skdqn")
            and record["versions"]["skdqn"] == skdqn.__version__)
    if not same:
        raise SystemExit(f"--resume: {path} was written with other settings (bits, threads, OPQ "
                         "iterations or implementation, skdqn version); run without --resume.")
    return {(c["dataset"], c["method"], c["bits"]): c for c in record["cells"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, 8 and 32 bits; writes files with a _quick suffix")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--out-dir", default="docs/results")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for torch, faiss and BLAS (default 1: on a shared machine more "
                             "threads oversubscribe the cores and run several times slower)")
    parser.add_argument("--opq-iterations", type=int, default=None,
                        help=f"OPQ training iterations (default: 50; {QUICK_OPQ_ITERATIONS} with --quick)")
    parser.add_argument("--faiss-opq", action="store_true",
                        help="OPQ by faiss' OPQMatrix instead of skdqn's (to compare the two)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the cells of the run recorded in the output folder (same settings); "
                             "only the missing ones are computed")
    args = parser.parse_args(argv)
    global FAISS_OPQ
    FAISS_OPQ = args.faiss_opq
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    if args.quick and args.opq_iterations is None:
        args.opq_iterations = QUICK_OPQ_ITERATIONS
    bits_list = QUICK_BITS if args.quick else BITS
    print(f"skdqn {skdqn.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"faiss {faiss.__version__}, sklearn {sklearn.__version__}, {platform.platform()}", flush=True)
    ctx = dict(bits=bits_list, quick=args.quick, opq_iterations=args.opq_iterations,
               threads=args.threads, reused=0, complete=False)
    done = previous_cells(args.out_dir, ctx) if args.resume else {}
    start = time.perf_counter()
    datasets, cells = [], []
    for data in load_datasets(args.datasets, args.quick):
        # Partial outputs as the run goes (the JSON after every bit length, the tables and
        # figures after every data set), so a long run that stops keeps what it did.
        def checkpoint(new, data=data):
            write_outputs(args.out_dir, ctx, datasets + [data], cells + new,
                          time.perf_counter() - start, tables=False)

        cells += run_dataset(data, bits_list, args.opq_iterations, done, checkpoint)
        datasets.append(data)
        ctx["reused"] = sum(1 for c in cells if (c["dataset"], c["method"], c["bits"]) in done)
        write_outputs(args.out_dir, ctx, datasets, cells, time.perf_counter() - start)
    if not datasets:
        print("Nothing to run.")
        return
    total_s = time.perf_counter() - start
    ctx["complete"] = True
    md, paths = write_outputs(args.out_dir, ctx, datasets, cells, total_s)
    print("\n" + md)
    print(f"Total wall time: {total_s / 60:.1f} min. Written: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
