"""32-bit MAP of the default DeepQuantizer on inputs of three scales.

``DeepQuantizer(M=4, K=256, random_state=0)``, every other parameter at its
default, is fitted on the same images given

* standardized (a ``StandardScaler`` fitted on the training set),
* in ``[0, 1]`` (divided by the maximum intensity, 16 or 255),
* raw (``0..16`` for digits, ``0..255`` for Fashion-MNIST),

and scored as :meth:`DeepQuantizer.score` does: MAP of the queries against
the training set (the database), ranked by AQD. With ``standardize=True``
(the default) the three must agree within 0.01; ``standardize=False`` (the
network fed the features as they are, as before) is shown for contrast.

Data:

* digits (sklearn, embedded): 20% of the images as queries (stratified,
  seed 0), the other 80% as training set and database;
* Fashion-MNIST from the Debian package ``dataset-fashion-mnist``: 5,000
  training images (500 per class, seed 0) as training set and database,
  1,000 test images (100 per class) as queries. Skipped, with a message,
  when the package is absent.

Usage::

    python benchmarks/bench_scale_robust.py                  # both data sets
    python benchmarks/bench_scale_robust.py --quick          # digits only
    python benchmarks/bench_scale_robust.py --no-contrast    # standardize=True only
    python benchmarks/bench_scale_robust.py --out table.rst
"""

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skdqn
from skdqn import DeepQuantizer
from skdqn.datasets import load_fashion_mnist, retrieval_split

SCALINGS = ("standardized", "[0, 1]", "raw")


def digits_data():
    X, y = load_digits(return_X_y=True)
    X_tr, X_q, y_tr, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    return dict(name="digits", X=X_tr, y=y_tr, X_q=X_q, y_q=y_q, max_value=16.0)


def fashion_data(n_per_class=500):
    X, y = load_fashion_mnist("train")
    X_test, y_test = load_fashion_mnist("test")
    tr = retrieval_split(y, n_per_class, random_state=0)
    q = retrieval_split(y_test, 100, random_state=0)
    return dict(name="Fashion-MNIST", X=X[tr].astype(np.float64), y=y[tr],
                X_q=X_test[q].astype(np.float64), y_q=y_test[q], max_value=255.0)


def scaled(data, scaling):
    """``(X, X_q)`` of ``data`` in the given scaling."""
    if scaling == "standardized":
        scaler = StandardScaler().fit(data["X"])
        return scaler.transform(data["X"]), scaler.transform(data["X_q"])
    if scaling == "[0, 1]":
        return data["X"] / data["max_value"], data["X_q"] / data["max_value"]
    return data["X"], data["X_q"]


def run(data, standardize):
    """``{scaling: (MAP, fit seconds)}`` for one data set and one ``standardize``."""
    results = {}
    for scaling in SCALINGS:
        X, X_q = scaled(data, scaling)
        start = time.perf_counter()
        dq = DeepQuantizer(M=4, K=256, standardize=standardize, random_state=0).fit(X, data["y"])
        seconds = time.perf_counter() - start
        results[scaling] = (dq.score(X_q, data["y_q"]), seconds)
        print(f"  {data['name']:14s} standardize={standardize!s:5s} {scaling:12s} "
              f"MAP {results[scaling][0]:.3f}  (fit {seconds:.0f} s)", flush=True)
    return results


def table(rows):
    """An RST grid of ``rows``: (data set, standardize, {scaling: (MAP, s)})."""
    header = ["data set", "standardize"] + [f"MAP, {s}" for s in SCALINGS] + ["spread"]
    lines = []
    for name, standardize, results in rows:
        maps = [results[s][0] for s in SCALINGS]
        lines.append([name, str(standardize)] + [f"{m:.3f}" for m in maps] + [f"{max(maps) - min(maps):.3f}"])
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    out = [sep, fmt(header), sep.replace("-", "=")]
    for r in lines:
        out += [fmt(r), sep]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    parser.add_argument("--no-contrast", action="store_true", help="skip standardize=False")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    print(f"skdqn {skdqn.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads available (fits use n_threads=1)")
    datasets = [digits_data()]
    if not args.quick:
        try:
            datasets.append(fashion_data())
        except (FileNotFoundError, OSError) as exc:
            print(f"Fashion-MNIST skipped: {exc}")
    rows = []
    for data in datasets:
        for standardize in (True,) if args.no_contrast else (True, False):
            rows.append((data["name"], standardize, run(data, standardize)))
    text = table(rows)
    print(text)
    failed = [name for name, standardize, r in rows
              if standardize and max(v[0] for v in r.values()) - min(v[0] for v in r.values()) > 0.01]
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if failed:
        print(f"FAILED: MAP spread above 0.01 with standardize=True on {failed}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
