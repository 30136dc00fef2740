"""Command line: ``skdqn demo`` (also ``python -m skdqn demo``)."""

import argparse
import sys
import time

__all__ = ["main"]


def _demo(args):
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from . import AQDNeighbors, DeepQuantizer

    X, y = load_digits(return_X_y=True)
    X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    scaler = StandardScaler().fit(X_db)
    X_db, X_q = scaler.transform(X_db), scaler.transform(X_q)
    M, K = args.M, 256
    bits = M * int(np.log2(K))
    print(
        f"digits: {len(X_db)} database/training items, {len(X_q)} queries, "
        f"{bits}-bit codes (M={M}, K={K})"
    )

    start = time.perf_counter()
    pq = AQDNeighbors(M=M, K=K, random_state=args.seed).fit(X_db, y_db)
    pq_map = pq.score(X_q, y_q)
    print(f"  PQ of the pixels              MAP {pq_map:.3f}   ({time.perf_counter() - start:.1f} s)")

    start = time.perf_counter()
    dq = DeepQuantizer(M=M, K=K, max_epochs=args.epochs, random_state=args.seed, verbose=args.verbose)
    dq.fit(X_db, y_db)
    fit_s = time.perf_counter() - start
    print(f"  DQN (DeepQuantizer)           MAP {dq.score(X_q, y_q):.3f}   (fit {fit_s:.1f} s)")

    index = AQDNeighbors(n_neighbors=10, codebooks=dq).fit(dq.transform(X_db), y_db)
    Z_q = dq.transform(X_q)
    start = time.perf_counter()
    _, ind = index.kneighbors(Z_q)
    search_s = time.perf_counter() - start
    precision = float((y_db[ind] == y_q[:, None]).mean())
    print(
        f"  AQD search: top-10 for {len(Z_q)} queries in {search_s * 1e3:.1f} ms "
        f"({len(Z_q) / search_s:,.0f} queries/s), precision@10 {precision:.3f}, "
        f"{index.codes_.nbytes / len(X_db):.0f} bytes per item"
    )
    return 0


def main(argv=None):
    """Run the ``skdqn`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> from skdqn.__main__ import main
    >>> main(["demo", "--epochs", "2", "--M", "1", "--verbose", "0"])  # doctest: +ELLIPSIS
    digits: ...
    0
    """
    parser = argparse.ArgumentParser(prog="skdqn", description="Supervised deep product quantization.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="train DQN on the digits data set and compare it with PQ", description=(
            "Train a DeepQuantizer on sklearn's digits (embedded, no download), print its MAP "
            "against product quantization of the pixels, and time an AQD search."
        )
    )
    demo.add_argument("--M", type=int, default=4, choices=(1, 2, 4), help="subspaces: bits = 8 * M (default 4)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--verbose", type=int, default=1, help="1 shows a progress bar (default 1)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
