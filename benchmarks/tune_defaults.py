"""Validation runs used to choose DeepQuantizer's defaults (never the test set).

The split is carved from the Fashion-MNIST *training* images only: 1,000
validation queries (100 per class, seed 1), a training set of 10,000 other
images (1,000 per class, seed 2), and every training image except the queries
as database. Prints one JSON line per code length: MAP over the database (AQD
ranking), fit time, quantization error of the training embeddings, last pair
loss.

Usage::

    python benchmarks/tune_defaults.py '{}'                              # the defaults
    python benchmarks/tune_defaults.py '{"learning_rate": 3e-3, "Ms": [1, 4]}'
    python benchmarks/tune_defaults.py '{"lam": 0.0, "seed": 1}' --threads 1

``Ms`` (code lengths as numbers of subspaces, default ``[4]``) and ``seed``
(``random_state``, default 0) are read from the JSON; every other key is a
DeepQuantizer parameter.
"""

import argparse
import json
import time

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from skdqn import DeepQuantizer
from skdqn._pq import quantization_error
from skdqn.search._scoring import retrieval_average_precisions
from skdqn.search._tables import distance_tables
from skdqn.datasets import load_fashion_mnist, retrieval_split


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params", nargs="?", default="{}", help="JSON object of DeepQuantizer parameters")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = json.loads(args.params)
    Ms = params.pop("Ms", [4])
    seed = params.pop("seed", 0)

    X, y = load_fashion_mnist("train")
    X = X.astype(np.float32)
    queries = retrieval_split(y, 100, random_state=1)
    train = retrieval_split(y, 1000, exclude=queries, random_state=2)
    database = np.setdiff1d(np.arange(len(y)), queries)
    scaler = StandardScaler().fit(X[train])

    for M in Ms:
        start = time.time()
        dq = DeepQuantizer(M=M, K=256, random_state=seed, **params).fit(scaler.transform(X[train]), y[train])
        fit_s = time.time() - start
        tables = distance_tables(dq.transform(scaler.transform(X[queries])), dq.codebooks_)
        codes = dq.encode(scaler.transform(X[database]))
        ap = retrieval_average_precisions(tables, codes, y[queries], y[database])
        Z_train = dq.transform(scaler.transform(X[train]))
        print(
            json.dumps(
                {
                    "params": params,
                    "seed": seed,
                    "M": M,
                    "map": round(float(ap.mean()), 4),
                    "fit_s": round(fit_s, 1),
                    "quantization_error": round(quantization_error(Z_train, dq.codebooks_), 3),
                    "last_pair_loss": round(dq.history_[-1]["pair_loss"], 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
