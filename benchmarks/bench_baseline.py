"""DQN against the obvious alternative: a cross-entropy classifier, then PQ of its bottleneck.

What a user would write instead of DQN: train the same network (MLP backbone,
``tanh`` bottleneck of ``R`` units) with a linear classifier on top and the
cross-entropy loss, throw the classifier away, and product-quantize the
bottleneck with :class:`~skdqn.AQDNeighbors`' own k-means codebooks. Compared
with ``make_pipeline(StandardScaler(), DeepQuantizer(M=4, K=256))`` (every
other parameter at its default) at the same code length (32 bits: M = 4
subspaces of K = 256 codewords), on the same splits and seeds:

* the classifier uses DeepQuantizer's defaults for everything they share:
  hidden layers (512,), dropout 0.2, ``R`` = 300 (and, as a second row, a
  small bottleneck ``R`` = 64), Adam with learning rate 0.005, weight decay
  1e-5, cosine schedule, 40 epochs, batches of 256, standardized inputs;
* the index is ``AQDNeighbors(M=4, K=256, random_state=seed)`` fitted on the
  database's bottleneck features;
* quality is MAP over the whole database, queries ranked by AQD (the
  ``score`` of both estimators), mean and standard deviation over the seeds.

PQ of the standardized inputs themselves is reported as a floor.

Data: digits (sklearn, embedded; 20 % of the images as queries, stratified,
seed 0; the other 80 % as training set and database), and Fashion-MNIST when
the Debian package ``dataset-fashion-mnist`` is installed (1,000 test images
as queries, the 60,000 training images as database, 10,000 of them as
training set; see :func:`skdqn.datasets.load_fashion_mnist`), and then its
multi-label set of ``reproduce_paper.py`` (two images side by side, labels =
the union of their classes; the classifier is then trained with one logistic
output per label, binary cross-entropy).

Usage::

    python benchmarks/bench_baseline.py                 # digits (+ Fashion-MNIST if installed), seeds 0 1 2
    python benchmarks/bench_baseline.py --quick         # digits only
    python benchmarks/bench_baseline.py --seeds 0 --threads 1
"""

import argparse
import platform
import time

import numpy as np
import torch
from bench_fit import digits_protocol, fashion_protocol
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skdqn
from skdqn import AQDNeighbors, DeepQuantizer
from skdqn.training._network import QuantizationNetwork, build_mlp

M, K = 4, 256  # 32-bit codes


def cross_entropy_embedder(X, y, R, seed, defaults):
    """Train backbone + tanh(R) bottleneck + linear classifier with cross-entropy; return the embedder."""
    torch.manual_seed(seed)
    X_t = torch.from_numpy(np.asarray(X, dtype=np.float32))
    y = np.asarray(y)
    if y.ndim == 2:  # multi-label indicator matrix: one logistic output per label
        y_t, n_out = torch.from_numpy(y.astype(np.float32)), y.shape[1]
        criterion = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        classes, y_idx = np.unique(y, return_inverse=True)
        y_t, n_out = torch.from_numpy(y_idx), len(classes)
        criterion = torch.nn.functional.cross_entropy
    hidden = defaults["hidden_layer_sizes"]
    net = QuantizationNetwork(build_mlp(X_t.shape[1], hidden, defaults["dropout"]), hidden[-1], R)
    model = torch.nn.Sequential(net, torch.nn.Linear(R, n_out))
    opt = torch.optim.Adam(model.parameters(), lr=defaults["learning_rate"], weight_decay=defaults["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=defaults["max_epochs"])
    generator = torch.Generator().manual_seed(seed)
    batch = defaults["batch_size"]
    model.train()
    for _ in range(defaults["max_epochs"]):
        perm = torch.randperm(len(y_t), generator=generator)
        for b in range(0, len(y_t), batch):
            idx = perm[b : b + batch]
            if len(idx) < 2:
                continue
            loss = criterion(model(X_t[idx]), y_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        schedule.step()
    net.eval()

    def embed(X_new):
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(X_new, dtype=np.float32))).numpy()

    return embed


def cross_entropy_pq_map(data, scaler, R, seed, defaults):
    """MAP of the classifier's bottleneck, product-quantized with k-means codebooks."""
    embed = cross_entropy_embedder(scaler.transform(data["X_train"]), data["y_train"], R, seed, defaults)
    index = AQDNeighbors(M=M, K=K, random_state=seed).fit(embed(scaler.transform(data["X_db"])), data["y_db"])
    return index.score(embed(scaler.transform(data["X_q"])), data["y_q"])


def dqn_map(data, seed):
    """MAP of DeepQuantizer with its defaults, codes of the database by its own codebooks."""
    pipe = make_pipeline(StandardScaler(), DeepQuantizer(M=M, K=K, random_state=seed, n_threads=None))
    pipe.fit(data["X_train"], data["y_train"])
    scaler, dq = pipe
    index = AQDNeighbors.from_quantizer(dq).fit(pipe.transform(data["X_db"]), data["y_db"])
    return index.score(pipe.transform(data["X_q"]), data["y_q"])


def input_pq_map(data, scaler, seed):
    """MAP of PQ of the standardized inputs (no learning): the floor."""
    index = AQDNeighbors(M=M, K=K, random_state=seed).fit(scaler.transform(data["X_db"]), data["y_db"])
    return index.score(scaler.transform(data["X_q"]), data["y_q"])


def run(data, seeds, rows):
    print(f"\n== {data['name']}: {len(data['y_train'])} training, {len(data['y_db'])} database, "
          f"{len(data['y_q'])} queries, {M * 8}-bit codes", flush=True)
    defaults = DeepQuantizer().get_params()
    scaler = StandardScaler().fit(data["X_train"])
    methods = {
        f"DQN (DeepQuantizer defaults, R={defaults['n_components'] or 300})": lambda s: dqn_map(data, s),
        "cross-entropy + tanh(300) + PQ": lambda s: cross_entropy_pq_map(data, scaler, 300, s, defaults),
        "cross-entropy + tanh(64) + PQ": lambda s: cross_entropy_pq_map(data, scaler, 64, s, defaults),
        "PQ of the standardized inputs": lambda s: input_pq_map(data, scaler, s),
    }
    for name, method in methods.items():
        start = time.perf_counter()
        scores = [method(seed) for seed in seeds]
        seconds = (time.perf_counter() - start) / len(seeds)
        rows.append(dict(data=data["name"], method=name, mean=np.mean(scores), std=np.std(scores),
                         scores=scores, seconds=seconds))
        print(f"  {name:<42} MAP {np.mean(scores):.4f} +- {np.std(scores):.4f} "
              f"({', '.join(f'{v:.4f}' for v in scores)})  {seconds:.1f} s per seed", flush=True)


def rst_table(rows, seeds):
    header = ["data", "method (32 bits)", f"MAP, mean +- std over seeds {' '.join(map(str, seeds))}", "s per seed"]
    body = [[r["data"], r["method"], f"{r['mean']:.3f} +- {r['std']:.3f}", f"{r['seconds']:.1f}"] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in body]
    return "\n".join(line.rstrip() for line in [*lines, rule])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", help="also write the table (reStructuredText) to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"skdqn {skdqn.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{platform.processor() or platform.machine()}")
    rows = []
    run(digits_protocol(), args.seeds, rows)
    if not args.quick:
        try:
            data = fashion_protocol()
        except FileNotFoundError as exc:
            print(f"\nFashion-MNIST skipped: {exc}")
        else:
            run(data, args.seeds, rows)
            from reproduce_paper import fashion_multilabel_data

            run(fashion_multilabel_data(quick=False), args.seeds, rows)
    table = rst_table(rows, args.seeds)
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
