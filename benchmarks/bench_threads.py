"""Fit and transform time of the default DeepQuantizer on 1 and 2 torch threads.

``DeepQuantizer(M=4, K=256, random_state=0)`` on the standardized digits
(1,797 items, 40 epochs), ``n_threads`` 1 then 2, alternating, ``--repeats``
times. On a busy machine the difference is large: the default MLP's matrices
are too small for intra-op parallelism, and idle threads spin.

Usage::

    python benchmarks/bench_threads.py
    python benchmarks/bench_threads.py --threads 1 2 4 --repeats 3
"""

import argparse
import os
import time

from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from skdqn import DeepQuantizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for rep in range(args.repeats):
        for n_threads in args.threads:
            start = time.perf_counter()
            dq = DeepQuantizer(M=4, K=256, n_threads=n_threads, random_state=0).fit(X, y)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            dq.transform(X)
            print(f"run {rep + 1}: n_threads={n_threads}  fit {fit_s:6.1f} s  "
                  f"transform {time.perf_counter() - start:.3f} s", flush=True)


if __name__ == "__main__":
    main()
