"""Training cost and retrieval quality of DeepQuantizer with its defaults.

Reports, for ``DeepQuantizer(M, K=256)`` (which standardizes its inputs) with
every other parameter left at its default:

* fit time per epoch against the same network (MLP backbone + fcb) trained
  with a plain cross-entropy loss (a linear classifier on top of the
  embedding) for the same epochs, batch size and optimizer, in the same
  process: the ratio is what this benchmark is about;
* MAP over the whole database at 8/16/24/32 bits (M = 1..4), queries ranked
  by AQD, on

  - digits (sklearn, embedded): 20% of the images as queries (stratified,
    seed 0), the other 80% as training set and database;
  - Fashion-MNIST from the Debian package ``dataset-fashion-mnist``:
    1,000 test images as queries (100 per class), the 60,000 training images
    as database, 10,000 of them (1,000 per class) as training set (seed 0).
    Skipped, with a message, when the package is absent.

Usage::

    python benchmarks/bench_fit.py            # digits and Fashion-MNIST
    python benchmarks/bench_fit.py --quick    # digits only
    python benchmarks/bench_fit.py --out results.md
    python benchmarks/bench_fit.py --bits 32 --set pair_weighting=uniform
"""

import argparse
import ast
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skdqn
from skdqn import DeepQuantizer
from skdqn.training._network import QuantizationNetwork, build_mlp
from skdqn.search._scoring import retrieval_average_precisions
from skdqn.search._tables import distance_tables
from skdqn.datasets import load_fashion_mnist, retrieval_split


def digits_protocol():
    X, y = load_digits(return_X_y=True)
    X_tr, X_q, y_tr, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    return dict(name="digits", X_train=X_tr, y_train=y_tr, X_db=X_tr, y_db=y_tr, X_q=X_q, y_q=y_q)


def fashion_protocol():
    X_db, y_db = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    q = retrieval_split(y_test, 100, random_state=0)
    tr = retrieval_split(y_db, 1000, random_state=0)
    return dict(
        name="Fashion-MNIST",
        X_train=X_db[tr].astype(np.float32),
        y_train=y_db[tr],
        X_db=X_db.astype(np.float32),
        y_db=y_db,
        X_q=X_test[q].astype(np.float32),
        y_q=y_test[q],
    )


def database_map(dq, data):
    codes = dq.encode(data["X_db"])
    tables = distance_tables(dq.transform(data["X_q"]), dq.codebooks_)
    return float(retrieval_average_precisions(tables, codes, data["y_q"], data["y_db"]).mean())


def cross_entropy_fit_seconds(X, y, dq):
    """Train the same architecture with cross-entropy for dq's epochs; return seconds."""
    torch.manual_seed(0)
    X_t = torch.from_numpy(np.asarray(X, dtype=np.float32))
    classes, y_idx = np.unique(y, return_inverse=True)
    y_t = torch.from_numpy(y_idx)
    hidden = dq.hidden_layer_sizes
    net = QuantizationNetwork(build_mlp(X_t.shape[1], hidden, dq.dropout), hidden[-1], dq.n_components_)
    model = torch.nn.Sequential(net, torch.nn.Linear(dq.n_components_, len(classes)))
    opt = torch.optim.Adam(model.parameters(), lr=dq.learning_rate, weight_decay=dq.weight_decay)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(dq.n_iter_):
        model.train()
        perm = torch.randperm(len(y_t), generator=generator)
        for b in range(0, len(y_t), dq.batch_size):
            idx = perm[b : b + dq.batch_size]
            loss = torch.nn.functional.cross_entropy(model(X_t[idx]), y_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def run(data, bits_list, rows, overrides=None):
    print(f"\n== {data['name']}: {len(data['y_train'])} training, {len(data['y_db'])} database, "
          f"{len(data['y_q'])} queries", flush=True)
    for bits in bits_list:
        M = bits // 8
        # n_threads=None: the torch threads of --threads, as the cross-entropy side.
        params = {"M": M, "K": 256, "random_state": 0, "n_threads": None, **(overrides or {})}
        start = time.perf_counter()
        dq = DeepQuantizer(**params).fit(data["X_train"], data["y_train"])  # standardizes its inputs
        fit_s = time.perf_counter() - start
        mAP = database_map(dq, data)
        # The cross-entropy network gets the same, standardized, inputs.
        X_std = StandardScaler().fit_transform(data["X_train"])
        ce_s = cross_entropy_fit_seconds(X_std, data["y_train"], dq)
        row = dict(
            data=data["name"], bits=bits, map=mAP, fit_s=fit_s, epochs=dq.n_iter_,
            per_epoch_s=fit_s / dq.n_iter_, ce_per_epoch_s=ce_s / dq.n_iter_, ratio=fit_s / ce_s,
        )
        rows.append(row)
        print(f"{bits:>3} bits  MAP {mAP:.4f}  fit {fit_s:6.1f} s ({row['per_epoch_s']:.3f} s/epoch)  "
              f"cross-entropy {row['ce_per_epoch_s']:.3f} s/epoch  ratio {row['ratio']:.2f}", flush=True)


def markdown(rows):
    lines = [
        "| data | bits | MAP (whole database) | fit (s) | s/epoch | cross-entropy s/epoch | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['bits']} | {r['map']:.4f} | {r['fit_s']:.1f} | {r['per_epoch_s']:.3f} | "
            f"{r['ce_per_epoch_s']:.3f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 16, 24, 32])
    parser.add_argument("--out", help="write the table as Markdown to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="NAME=VALUE",
        help="override DeepQuantizer defaults, e.g. --set pair_weighting=uniform lam=0",
    )
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    if overrides:
        print(f"DeepQuantizer overrides: {overrides}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"skdqn {skdqn.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{platform.processor() or platform.machine()}")
    # torch imports its optimizer machinery (dynamo) on first use: pay that
    # once here, so that neither timed side includes it.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    rows = []
    run(digits_protocol(), args.bits, rows, overrides)
    if not args.quick:
        try:
            data = fashion_protocol()
        except FileNotFoundError as exc:
            print(f"\nFashion-MNIST skipped: {exc}")
        else:
            run(data, args.bits, rows, overrides)
    table = markdown(rows)
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
