"""Retrieval quality with many classes: DeepQuantizer's default against the paper's loss, a classifier + PQ, and PQ.

With about ten classes the paper's pairwise loss wins (``bench_baseline.py``);
with a hundred it falls behind a plain cross-entropy classifier whose
bottleneck is product-quantized. ``DeepQuantizer(loss="auto")`` (the default)
trains class proxies there instead. This benchmark compares, at 16 and 32 bits
(M = 2 and 4 subspaces of K = 256 codewords), MAP over the whole database with
queries ranked by AQD, mean and standard deviation over seeds 0-2, one torch
thread:

* ``DeepQuantizer(M, K=256)``, every parameter at its default (``loss="auto"``:
  the proxy loss on these sets);
* ``DeepQuantizer(M, K=256, loss="pairwise")``: the paper's loss;
* a cross-entropy classifier + PQ of its tanh bottleneck (R = 300 and 64), the
  same MLP, optimizer, schedule and epochs as DeepQuantizer's defaults
  (``bench_baseline.cross_entropy_embedder``), PQ by ``AQDNeighbors``' own
  k-means codebooks;
* PQ of the standardized inputs (the floor).

Many-class sets, made from what is installed (no download), each with 100
classes: two images side by side, labelled by the ordered pair of their
classes (:func:`skdqn.datasets.make_ordered_pairs`); the queries are made from
images that no training or database item uses.

* digits pairs: the digits split 70/30 by image (stratified, seed 0); 5,000
  training pairs (50 per class) from the first part, which are also the
  database; 1,000 query pairs (10 per class) from the second.
* Fashion-MNIST pairs (Debian package ``dataset-fashion-mnist``; skipped with
  a message when absent): 10,000 training pairs (100 per class) from 10,000
  training images (1,000 per class), a database of 20,000 other pairs from all
  60,000 training images, 1,000 query pairs from the test images.

``--rule`` measures what ``loss="auto"`` decides from: the pairwise and the
proxy loss at 32 bits on Fashion-MNIST (10 classes) and on Fashion-MNIST pairs
made from its first 4, 5 and 7 classes (16, 25 and 49 classes, about 10,000
training pairs each) and all 10 (100 classes).

``--time`` measures the fit time of the default against the paper's loss on
Fashion-MNIST (10,000 training images) and Fashion-MNIST pairs, interleaved,
best of ``--repeats``.

Usage::

    python benchmarks/bench_many_classes.py                      # both sets, seeds 0 1 2
    python benchmarks/bench_many_classes.py --sets digits --seeds 0
    python benchmarks/bench_many_classes.py --sets fashion --methods default pairwise classifier
    python benchmarks/bench_many_classes.py --sets fashion --methods pq --seeds 0
    python benchmarks/bench_many_classes.py --rule --seeds 0
    python benchmarks/bench_many_classes.py --time
"""

import argparse
import platform
import time

import numpy as np
import torch
from bench_baseline import cross_entropy_embedder
from bench_fit import database_map, fashion_protocol
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skdqn
from skdqn import AQDNeighbors, DeepQuantizer
from skdqn.datasets import load_fashion_mnist, make_ordered_pairs, retrieval_split

K = 256


# ------------------------------------------------------------------ data
def digits_pairs():
    """100 classes from the digits: 5,000 training/database pairs, 1,000 query pairs."""
    X, y = load_digits(return_X_y=True)
    X_a, X_b, y_a, y_b = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    X_tr, y_tr = make_ordered_pairs(X_a, y_a, 50, image_shape=(8, 8), random_state=0)
    X_q, y_q = make_ordered_pairs(X_b, y_b, 10, image_shape=(8, 8), random_state=1)
    X_tr, X_q = X_tr.astype(np.float32), X_q.astype(np.float32)
    return dict(name="digits pairs", X_train=X_tr, y_train=y_tr, X_db=X_tr, y_db=y_tr, X_q=X_q, y_q=y_q)


def fashion_pairs(n_base=10, n_train=10_000, n_db=20_000, n_queries=1_000):
    """Fashion-MNIST pairs of the first ``n_base`` classes (``n_base ** 2`` classes)."""
    X, y = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    keep, keep_test = np.flatnonzero(y < n_base), np.flatnonzero(y_test < n_base)
    X, y, X_test, y_test = X[keep] / 255.0, y[keep], X_test[keep_test] / 255.0, y_test[keep_test]
    train_images = retrieval_split(y, 1000, random_state=0)
    n_classes = n_base**2
    shape = (28, 28)
    X_tr, y_tr = make_ordered_pairs(X[train_images], y[train_images], max(n_train // n_classes, 1),
                                    image_shape=shape, random_state=0)
    X_db, y_db = make_ordered_pairs(X, y, max(n_db // n_classes, 1), image_shape=shape, random_state=1)
    X_q, y_q = make_ordered_pairs(X_test, y_test, max(n_queries // n_classes, 10), image_shape=shape,
                                  random_state=2)
    return dict(name=f"Fashion-MNIST pairs ({n_classes} classes)", X_train=X_tr.astype(np.float32),
                y_train=y_tr, X_db=X_db.astype(np.float32), y_db=y_db, X_q=X_q.astype(np.float32), y_q=y_q)


# --------------------------------------------------------------- methods
def dqn_map(data, M, seed, **params):
    """MAP of a DeepQuantizer over the set's database; also returns the objective it used."""
    dq = DeepQuantizer(M=M, K=K, random_state=seed, **params).fit(data["X_train"], data["y_train"])
    return database_map(dq, data), dq.loss_


def classifier_pq_maps(data, bits, seed, R):
    """MAP of a cross-entropy classifier's tanh(R) bottleneck, product-quantized, at each code length."""
    scaler = StandardScaler().fit(data["X_train"])
    embed = cross_entropy_embedder(scaler.transform(data["X_train"]), data["y_train"], R, seed,
                                   DeepQuantizer().get_params())
    Z_db, Z_q = embed(scaler.transform(data["X_db"])), embed(scaler.transform(data["X_q"]))
    return {b: AQDNeighbors(M=b // 8, K=K, random_state=seed).fit(Z_db, data["y_db"]).score(Z_q, data["y_q"])
            for b in bits}


def input_pq_maps(data, bits, seed):
    """MAP of PQ of the standardized inputs (no learning), at each code length."""
    scaler = StandardScaler().fit(data["X_train"])
    Z_db, Z_q = scaler.transform(data["X_db"]), scaler.transform(data["X_q"])
    return {b: AQDNeighbors(M=b // 8, K=K, random_state=seed).fit(Z_db, data["y_db"]).score(Z_q, data["y_q"])
            for b in bits}


METHODS = ("default", "pairwise", "classifier", "pq")


def compare(data, bits, seeds, methods=METHODS):
    """Rows (method, bits, scores over the seeds, seconds per seed) for one data set."""
    print(f"\n== {data['name']}: {len(data['y_train']):,} training, {len(data['y_db']):,} database, "
          f"{len(data['y_q']):,} queries", flush=True)
    scores, seconds = {}, {}

    def record(method, b, value, spent):
        scores.setdefault((method, b), []).append(value)
        seconds[(method, b)] = seconds.get((method, b), 0.0) + spent

    for seed in seeds:
        for b in bits:
            for method, params in (("DeepQuantizer default", {}), ("paper's pairwise loss", {"loss": "pairwise"})):
                if ("default" if params == {} else "pairwise") not in methods:
                    continue
                start = time.perf_counter()
                value, used = dqn_map(data, b // 8, seed, **params)
                record(f"{method} ({used})", b, value, time.perf_counter() - start)
        for R in (300, 64) if "classifier" in methods else ():
            start = time.perf_counter()
            maps = classifier_pq_maps(data, bits, seed, R)
            for b in bits:
                record(f"cross-entropy + tanh({R}) + PQ", b, maps[b], (time.perf_counter() - start) / len(bits))
        start = time.perf_counter()
        for b, value in (input_pq_maps(data, bits, seed) if "pq" in methods else {}).items():
            record("PQ of the standardized inputs", b, value, (time.perf_counter() - start) / len(bits))
        print(f"  seed {seed} done", flush=True)
    rows = [dict(data=data["name"], method=m, bits=b, scores=v, seconds=seconds[(m, b)] / len(seeds))
            for (m, b), v in scores.items()]
    for row in sorted(rows, key=lambda r: (r["bits"], -np.mean(r["scores"]))):
        print(f"  {row['bits']:>2} bits  {row['method']:<42} MAP {np.mean(row['scores']):.4f} +- "
              f"{np.std(row['scores']):.4f}  {row['seconds']:.1f} s", flush=True)
    return rows


def margins(rows):
    """Per set and code length: the default's MAP minus the best of classifier + PQ and PQ."""
    lines = []
    for name in dict.fromkeys(r["data"] for r in rows):
        for b in sorted({r["bits"] for r in rows if r["data"] == name}):
            here = [r for r in rows if r["data"] == name and r["bits"] == b]
            defaults = [np.mean(r["scores"]) for r in here if r["method"].startswith("DeepQuantizer default")]
            baselines = [(np.mean(r["scores"]), r["method"]) for r in here
                         if r["method"].startswith(("cross-entropy", "PQ of"))]
            if not (defaults and baselines):
                continue
            default, best = defaults[0], max(baselines)
            lines.append(f"{name}, {b} bits: default {default:.3f}, best baseline {best[0]:.3f} ({best[1]}): "
                         f"margin {default - best[0]:+.3f}")
    return lines


def rst_table(rows, seeds):
    header = ["data", "bits", "method", f"MAP, mean +- std over seeds {' '.join(map(str, seeds))}", "s per seed"]
    ordered = sorted(rows, key=lambda r: (r["data"], r["bits"], -np.mean(r["scores"])))
    body = [[r["data"], str(r["bits"]), r["method"], f"{np.mean(r['scores']):.3f} +- {np.std(r['scores']):.3f}",
             f"{r['seconds']:.1f}"] for r in ordered]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in body]
    return "\n".join(line.rstrip() for line in [*lines, rule])


# ----------------------------------------------------------- the auto rule
def rule(seeds):
    """Pairwise against proxy loss at 32 bits as the number of classes grows."""
    sets = [("Fashion-MNIST (10 classes)", fashion_protocol)]
    sets += [(None, lambda n=n: fashion_pairs(n_base=n)) for n in (4, 5, 7, 10)]
    print("\n== the auto rule: pairwise vs proxy loss, 32 bits, MAP over the database")
    for name, make in sets:
        data = make()
        name = name or data["name"]
        found = {loss: [dqn_map(data, 4, s, loss=loss)[0] for s in seeds] for loss in ("pairwise", "proxy")}
        print(f"  {name:<36} classes {len(np.unique(data['y_train'])):>3}: pairwise "
              f"{np.mean(found['pairwise']):.4f}, proxy {np.mean(found['proxy']):.4f}, proxy - pairwise "
              f"{np.mean(found['proxy']) - np.mean(found['pairwise']):+.4f}", flush=True)


def fit_times(repeats):
    """Fit seconds of the default and of the paper's loss, interleaved, best of ``repeats``."""
    print("\n== fit time (32 bits, one thread), best of", repeats)
    for data in (fashion_protocol(), fashion_pairs()):
        best = {}
        for _ in range(repeats):
            for loss in ("auto", "pairwise"):
                start = time.perf_counter()
                dq = DeepQuantizer(M=4, K=K, random_state=0, loss=loss).fit(data["X_train"], data["y_train"])
                spent = time.perf_counter() - start
                best[loss] = min(best.get(loss, np.inf), spent)
                best[f"{loss} uses"] = dq.loss_
        print(f"  {data['name']:<36} default ({best['auto uses']}) {best['auto']:.1f} s, paper's pairwise "
              f"{best['pairwise']:.1f} s: ratio {best['auto'] / best['pairwise']:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=("digits", "fashion"), default=["digits", "fashion"])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32], choices=(8, 16, 24, 32))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="a subset, e.g. to run the slow PQ of 1,568 features in another process")
    parser.add_argument("--rule", action="store_true", help="measure the auto rule instead")
    parser.add_argument("--time", action="store_true", help="measure fit times instead")
    parser.add_argument("--repeats", type=int, default=2, help="fit-time repeats (with --time)")
    parser.add_argument("--out", help="also write the table (reStructuredText) to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"skdqn {skdqn.__version__}, torch {torch.__version__} (1 thread), "
          f"{platform.processor() or platform.machine()}")
    if args.rule:
        return rule(args.seeds)
    if args.time:
        return fit_times(args.repeats)
    makers = {"digits": digits_pairs, "fashion": fashion_pairs}
    rows = []
    for key in args.sets:
        try:
            data = makers[key]()
        except FileNotFoundError as exc:
            print(f"\n{key} skipped: {exc}")
            continue
        rows += compare(data, args.bits, args.seeds, args.methods)
    table = rst_table(rows, args.seeds)
    print("\n" + table + "\n\n" + "\n".join(margins(rows)))
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n\n" + "\n".join(margins(rows)) + "\n")


if __name__ == "__main__":
    main()
