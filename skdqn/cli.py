"""Command line: ``skdqn demo|fit|encode|search`` (also ``python -m skdqn ...``).

* ``skdqn demo``: DQN against product quantization on the embedded digits.
* ``skdqn fit X y -o model.skdqn``: train a :class:`~skdqn.DeepQuantizer`
  (which standardizes its inputs unless ``--no-standardize``) and save it in skdqn's model format: arrays, a JSON
  header and the network's weights, read back without unpickling anything
  (:func:`load_model`), so a model file from someone else is safe to load.
* ``skdqn encode model.skdqn X -o codes.npy``: the ``(n, M)`` codes.
* ``skdqn search model.skdqn database queries -k 10 -o neighbors.npy``:
  top-k by Asymmetric Quantizer Distance with an :class:`~skdqn.AQDNeighbors`.

Arrays are read from ``.npy``, ``.npz`` (the first array, or ``--key NAME``)
and ``.csv`` files (numbers separated by commas, no header) and written as
``.npy`` (or ``.csv`` when the output name ends with ``.csv``).

Exit status: 0 on success; 2 for a usage error or an unusable input (missing
file, wrong shape, mismatched lengths, not a model); 1 when the estimator
rejects the data while fitting or searching (e.g. fewer samples than ``K``).
Errors are one line on stderr, ``skdqn <command>: error: ...``, no traceback.
"""

import argparse
import os
import sys
import time

from ._validation import check_codes, check_device, check_positive_int

__all__ = ["main", "load_model"]

_EPILOG_FORMATS = (
    "Arrays: .npy, .npz (first array, or --key NAME) or .csv (comma-separated numbers, "
    "no header). Outputs are written as .npy, or as .csv when the name ends with .csv."
)


class _InputError(Exception):
    """An unusable input: reported on stderr, exit status 2."""


class _RunError(Exception):
    """The estimator rejected the data: reported on stderr, exit status 1."""


# --------------------------------------------------------------------------
# Reading and writing arrays and models
# --------------------------------------------------------------------------


def _load_array(path, *, key=None, what="array", labels=False, strict_key=True):
    """Read one array from a .npy, .npz or .csv file, or raise _InputError.

    ``key`` names the array of an .npz file (default: its first array); with
    ``strict_key`` it is an error to give one for another kind of file.
    """
    import numpy as np

    if not os.path.exists(path):
        raise _InputError(f"{what} file not found: {path}")
    if os.path.isdir(path):
        raise _InputError(f"{what} path is a directory, not a file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".csv":
            try:
                return np.loadtxt(path, delimiter=",", ndmin=1 if labels else 2)
            except ValueError:
                if not labels:
                    raise
                # Class labels may be words: keep them as strings.
                return np.loadtxt(path, delimiter=",", ndmin=1, dtype=str)
        loaded = np.load(path, allow_pickle=False)
    except _InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is an input error
        kind = "a CSV file of numbers" if suffix == ".csv" else "a .npy, .npz or .csv array file"
        raise _InputError(f"could not read {what} {path} as {kind}: {exc}") from None
    if not isinstance(loaded, np.ndarray):  # an .npz archive
        with loaded:
            names = list(loaded.files)
            if not names:
                raise _InputError(f"{what} file {path} holds no array")
            if key is None:
                return loaded[names[0]]
            if key not in names:
                raise _InputError(
                    f"{what} file {path} has no array named {key!r}; it holds: {', '.join(names)}"
                )
            return loaded[key]
    if key is not None and strict_key:
        raise _InputError(f"--key applies to .npz files only, but {what} is {path}")
    return loaded


def _check_2d(X, path, what="X"):
    """Return ``X`` if it is a non-empty, finite, numeric 2-D array, else raise _InputError."""
    import numpy as np

    if X.ndim != 2:
        raise _InputError(
            f"{what} must be a 2-D array (n_samples, n_features); {path} holds an array of "
            f"shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise _InputError(f"{what} in {path} has no rows")
    if X.dtype.kind not in "biuf":
        raise _InputError(f"{what} in {path} must be numeric; got dtype {X.dtype}")
    if not np.isfinite(X).all():
        raise _InputError(f"{what} in {path} contains NaN or infinite values")
    return X


def _check_output(path, what):
    """Raise _InputError, before any work, if ``path`` cannot be written (no directory, or a directory)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _InputError(f"cannot write the {what} to {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise _InputError(f"cannot write the {what} to {path}: it is a directory")


def _save_array(path, array):
    """Write ``array`` to ``path``: CSV when the name ends with ``.csv``, else ``.npy``."""
    import numpy as np

    if path.lower().endswith(".csv"):
        fmt = "%d" if array.dtype.kind in "iu" else "%.8g"
        np.savetxt(path, np.atleast_2d(array) if array.ndim == 1 else array, fmt=fmt, delimiter=",")
    else:
        with open(path, "wb") as f:  # np.save(path) would append ".npy" to other names
            np.save(f, array)


def load_model(path):
    """Read a model file written by ``skdqn fit``, never unpickling anything.

    Parameters
    ----------
    path : str or path-like
        The file written by ``skdqn fit -o`` (or a model saved by
        :meth:`skdqn.DeepQuantizer.save`).

    Returns
    -------
    model : DeepQuantizer or sklearn.pipeline.Pipeline
        The fitted :class:`~skdqn.DeepQuantizer` (which standardizes its
        inputs itself unless fitted with ``--no-standardize``); for a file
        written by an older ``skdqn fit``, which standardized with a
        separate scaler, the fitted ``make_pipeline(StandardScaler(),
        DeepQuantizer(...))``.

    Raises
    ------
    ValueError
        If the file is not an intact model (see
        :meth:`skdqn.DeepQuantizer.load`).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skdqn.cli import load_model, main
    >>> folder = tempfile.mkdtemp()
    >>> X, y = os.path.join(folder, "X.npy"), os.path.join(folder, "y.npy")
    >>> np.save(X, np.random.default_rng(0).normal(size=(40, 4))); np.save(y, np.arange(40) % 2)
    >>> model = os.path.join(folder, "model.skdqn")
    >>> main(["fit", X, y, "-o", model, "--M", "1", "--K", "4", "--epochs", "1"])  # doctest: +ELLIPSIS
    fitted DeepQuantizer on 40 items x 4 features ...
    0
    >>> load_model(model).standardize
    True
    """
    from sklearn.pipeline import make_pipeline

    from ._model_io import load_model as read_model

    dq, scaler = read_model(path)
    return dq if scaler is None else make_pipeline(scaler, dq)


def _load_model(path, threads=None):
    """``(model, quantizer)`` from a model file written by ``skdqn fit``, or raise _InputError.

    ``threads`` (``--threads``), when given, replaces the model's ``n_threads``.
    """
    if not os.path.exists(path):
        raise _InputError(f"model file not found: {path}")
    magic = b""
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise _InputError(f"{path} is a NumPy array file, not a model written by 'skdqn fit'")
    if magic[:1] == b"\x80":
        raise _InputError(
            f"{path} is a pickle, not a model written by 'skdqn fit': model files are no longer "
            "pickles, as loading a pickle runs code. Fit the model again or, if you trust the "
            "file, load it in Python and write it with DeepQuantizer.save"
        )
    try:
        model = load_model(path)
    except ValueError as exc:
        raise _InputError(f"not a model written by 'skdqn fit', or damaged: {exc}") from None
    dq = model[-1] if hasattr(model, "steps") else model
    if threads is not None:
        dq.n_threads = threads
    return model, dq


def _embed(parts, X, path):
    """Embeddings of ``X`` by a loaded model; input problems become _InputError."""
    model, dq = parts
    if dq.network is None:  # the MLP backbone: a 2-D table of features
        _check_2d(X, path)
        n_expected = getattr(model, "n_features_in_", None)
        if n_expected is not None and X.shape[1] != n_expected:
            raise _InputError(
                f"{path} has {X.shape[1]} features per row but the model was fitted on {n_expected}"
            )
    elif X.ndim < 2 or X.shape[0] == 0:
        raise _InputError(f"{path} must hold an array with one row per item; got shape {X.shape}")
    try:
        return model.transform(X)
    except ValueError as exc:
        raise _InputError(f"the model cannot embed {path}: {exc}") from None


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _demo(args):
    """``skdqn demo``: DQN against PQ on the digits, and an AQD search."""
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
    print(
        "  (MAP: mean over queries of the average precision of the whole ranked database, "
        "1 = every same-digit item first; bytes per item: the size of one stored code)"
    )
    return 0


# Command-line option -> DeepQuantizer parameter; None (not given) keeps the
# estimator's default.
_FIT_PARAMS = {
    "M": "M",
    "K": "K",
    "n_components": "n_components",
    "lam": "lam",
    "epochs": "max_epochs",
    "warmup_epochs": "warmup_epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "hidden_layer_sizes": "hidden_layer_sizes",
    "device": "device",
    "seed": "random_state",
    "verbose": "verbose",
}


def _check_device(device):
    """Fail early, with exit status 2, on a device torch cannot use (``--device``)."""
    if device is None:  # not given: DeepQuantizer's default
        return
    try:
        check_device(device, name="--device")
    except ValueError as exc:
        raise _InputError(str(exc)) from None


def _fit(args):
    """``skdqn fit``: train a DeepQuantizer (standardizing its inputs by default) and save it."""
    import numpy as np
    from sklearn.utils._param_validation import InvalidParameterError

    from ._model_io import save_model
    from ._quantizer import DeepQuantizer

    X = _check_2d(_load_array(args.X, key=args.key, what="X"), args.X)
    y = _load_array(args.y, key=args.y_key, what="y", labels=True)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise _InputError(
            f"y must be 1-D class labels or a 2-D label indicator matrix; {args.y} holds an "
            f"array of shape {y.shape}"
        )
    if y.shape[0] != X.shape[0]:
        raise _InputError(
            f"X and y have different lengths: {X.shape[0]} rows in {args.X} but "
            f"{y.shape[0]} labels in {args.y}"
        )
    _check_output(args.output, "model")
    _check_device(args.device)

    params = {
        name: getattr(args, option)
        for option, name in _FIT_PARAMS.items()
        if getattr(args, option) is not None
    }
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if args.threads is not None:
        params["n_threads"] = args.threads
    dq = DeepQuantizer(standardize=args.standardize, **params)
    try:
        start = time.perf_counter()
        dq.fit(X, y)
        seconds = time.perf_counter() - start
    except InvalidParameterError as exc:  # an option out of range, e.g. --K 1
        raise _InputError(str(exc)) from None
    except ValueError as exc:
        raise _RunError(f"fitting failed: {exc}") from None
    save_model(dq, args.output, single_file=True)

    M, K, _ = dq.codebooks_.shape
    bits = M * int(np.ceil(np.log2(K)))
    kind = "classes" if y.ndim == 1 else "labels"
    print(
        f"fitted DeepQuantizer on {X.shape[0]} items x {X.shape[1]} features "
        f"({len(dq.classes_)} {kind}): M={M}, K={K} ({bits}-bit codes), "
        f"R={dq.n_components_}, {dq.n_iter_} epoch{'s' if dq.n_iter_ != 1 else ''} "
        f"in {seconds:.1f} s on {dq.device_}"
    )
    if dq.history_:
        last = dq.history_[-1]
        quantization = last["quantization_loss"]
        print(
            f"  last epoch: pair loss {last['pair_loss']:.4f}, "
            + (
                f"quantization loss {quantization:.4f}"
                if np.isfinite(quantization)
                else "no quantization loss yet (all epochs were warm-up epochs)"
            )
        )
    print(f"saved DeepQuantizer to {args.output}")
    return 0


def _encode(args):
    """``skdqn encode``: write the codes of X under a saved model."""
    from ._pq import encode

    parts = _load_model(args.model, args.threads)
    X = _load_array(args.X, key=args.key, what="X")
    _check_output(args.output, "codes")
    codes = encode(_embed(parts, X, args.X), parts[1].codebooks_)
    _save_array(args.output, codes)
    M = codes.shape[1]
    print(
        f"encoded {codes.shape[0]} items: {M} codes of {codes.dtype} each "
        f"({codes.dtype.itemsize * M} bytes per item) -> {args.output}"
    )
    return 0


def _database_codes(database, codebooks, path):
    """The ``--database-codes`` array as codes for ``codebooks``, or raise _InputError naming ``path``."""
    M, K, _ = codebooks.shape
    try:
        return check_codes(database, M, K, copy=False, name="--database-codes")
    except (TypeError, ValueError) as exc:
        raise _InputError(
            f"--database-codes expects an (n, M={M}) array of codes in [0, K={K}) as written by "
            f"'skdqn encode', but {path} does not hold one: {exc}"
        ) from None


def _search(args):
    """``skdqn search``: write the top-k database items of each query by AQD."""
    import numpy as np

    from ._neighbors import AQDNeighbors

    parts = _load_model(args.model, args.threads)
    dq = parts[1]
    database = _load_array(args.database, key=args.key, what="database", strict_key=False)
    queries = _load_array(args.queries, key=args.key, what="queries", strict_key=False)
    _check_output(args.output, "neighbors")
    if args.distances is not None:
        _check_output(args.distances, "distances")
    try:
        check_positive_int(args.k, "-k")
    except ValueError as exc:
        raise _InputError(str(exc)) from None

    if args.database_codes:
        codes = _database_codes(database, dq.codebooks_, args.database)
        n_database = codes.shape[0]
    else:
        Z_db = _embed(parts, database, args.database)
        n_database = Z_db.shape[0]
    Z_q = _embed(parts, queries, args.queries)
    if args.k > n_database:
        raise _InputError(f"-k {args.k} is larger than the database ({n_database} items)")

    params = {"n_neighbors": args.k, "metric": args.metric, "n_jobs": args.n_jobs}
    try:
        if args.database_codes:  # the index holds the codes as they are
            index = AQDNeighbors.from_codes(dq.codebooks_, codes, **params)
        else:
            index = AQDNeighbors(codebooks=dq, **params).fit(Z_db)
        start = time.perf_counter()
        dist, ind = index.kneighbors(Z_q)
        seconds = time.perf_counter() - start
    except ValueError as exc:
        raise _RunError(f"search failed: {exc}") from None
    _save_array(args.output, ind.astype(np.int64, copy=False))
    if args.distances is not None:
        _save_array(args.distances, dist)
    rate = f" ({Z_q.shape[0] / seconds:,.0f} queries/s)" if seconds > 0 else ""
    print(
        f"searched {Z_q.shape[0]} queries against {n_database} items "
        f"({index.codes_.shape[1] * index.codes_.dtype.itemsize} bytes per item), top-{args.k} "
        f"by {args.metric} AQD in {seconds * 1e3:.1f} ms{rate} -> {args.output}"
        + (f", distances -> {args.distances}" if args.distances is not None else "")
    )
    return 0


# --------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------


def _positive_int(text):
    """Argparse type: a positive integer (see :func:`~skdqn._validation.check_positive_int`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid positive integer: {text!r}") from None
    try:
        return check_positive_int(value, "value")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_threads(parser):
    """Add the ``--threads`` option (PyTorch CPU threads) to a sub-parser."""
    parser.add_argument(
        "--threads", type=_positive_int, default=None,
        help="CPU threads for PyTorch (default: DeepQuantizer's n_threads, 1, the fastest for "
        "small networks and much faster on a busy machine)",
    )


def _build_parser():
    """The ``skdqn`` parser: one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="skdqn",
        description=(
            "Supervised deep product quantization (Deep Quantization Network): train a "
            "DeepQuantizer, encode items to compact codes, and search them by Asymmetric "
            "Quantizer Distance."
        ),
        epilog="Run 'skdqn COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_fit(sub)
    _add_encode(sub)
    _add_search(sub)
    return parser


def _add_demo(sub):
    """The ``skdqn demo`` sub-parser."""
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
    demo.add_argument(
        "--threads", type=_positive_int, default=1,
        help="CPU threads for PyTorch (default 1: the digits network is too small to gain from more, "
        "and extra threads slow it down on a busy machine)",
    )


def _add_fit(sub):
    """The ``skdqn fit`` sub-parser: one option per DeepQuantizer parameter in _FIT_PARAMS."""
    default = "default: DeepQuantizer's default"
    fit = sub.add_parser(
        "fit",
        help="train a DeepQuantizer on labelled data and save it",
        description=(
            "Train a DeepQuantizer on X (n_samples, n_features) with labels y (class labels, "
            "or a 0/1 label indicator matrix for multi-label data: two items are similar when "
            "they share a label) and save it. The network standardizes the features itself "
            "(DeepQuantizer's standardize=True: mean and scale learned by fit, saved in the "
            "model and applied to every later input) unless --no-standardize is given. "
            "Options left out keep "
            "DeepQuantizer's defaults. The model file holds arrays, a JSON header and the "
            "network's weights, and is read without unpickling anything: a model file from "
            "someone else is safe to load (DeepQuantizer.load, skdqn.cli.load_model)."
        ),
        epilog=_EPILOG_FORMATS,
    )
    fit.add_argument("X", help="training inputs, shape (n_samples, n_features)")
    fit.add_argument("y", help="labels, shape (n_samples,) or (n_samples, n_labels)")
    fit.add_argument("-o", "--output", required=True, help="where to save the model (e.g. model.skdqn)")
    fit.add_argument("--M", type=_positive_int, help=f"number of subspaces ({default})")
    fit.add_argument("--K", type=_positive_int, help=f"codewords per subspace; bits = M * log2(K) ({default})")
    fit.add_argument("--n-components", type=_positive_int, help=f"embedding dimension R, divisible by M ({default})")
    fit.add_argument("--lam", type=float, help=f"weight of the quantization loss ({default})")
    fit.add_argument("--epochs", type=_positive_int, help=f"training epochs, max_epochs ({default})")
    fit.add_argument("--warmup-epochs", type=int, help=f"epochs before the first codebook fit ({default})")
    fit.add_argument("--batch-size", type=_positive_int, help=f"mini-batch size ({default})")
    fit.add_argument("--learning-rate", type=float, help=f"optimizer step size ({default})")
    fit.add_argument(
        "--hidden-layer-sizes", type=_positive_int, nargs="+", metavar="H",
        help=f"hidden layers of the MLP backbone, e.g. 512 256 ({default})",
    )
    fit.add_argument("--device", help=f"'cpu', 'cuda', 'cuda:1' or 'auto' ({default})")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.add_argument("--verbose", type=int, default=0, help="1 shows a progress bar on stderr (default 0)")
    fit.add_argument(
        "--standardize", action=argparse.BooleanOptionalAction, default=True,
        help="the network standardizes the features, with statistics saved in the model "
        "(DeepQuantizer's standardize; default: yes)",
    )
    _add_threads(fit)
    fit.add_argument("--key", help="array name inside X when it is an .npz file")
    fit.add_argument("--y-key", help="array name inside y when it is an .npz file")


def _add_encode(sub):
    """The ``skdqn encode`` sub-parser."""
    encode = sub.add_parser(
        "encode",
        help="write the product-quantization codes of X",
        description=(
            "Embed X with a model saved by 'skdqn fit' and write its codes: an (n, M) array of "
            "uint8 (K <= 256) or uint16, one codeword index per subspace."
        ),
        epilog=_EPILOG_FORMATS,
    )
    encode.add_argument("model", help="model file written by 'skdqn fit'")
    encode.add_argument("X", help="inputs, shape (n_samples, n_features)")
    encode.add_argument("-o", "--output", required=True, help="where to write the codes (.npy or .csv)")
    _add_threads(encode)
    encode.add_argument("--key", help="array name inside X when it is an .npz file")


def _add_search(sub):
    """The ``skdqn search`` sub-parser."""
    search = sub.add_parser(
        "search",
        help="find the k nearest database items of each query by AQD",
        description=(
            "Build an AQDNeighbors index with the model's codebooks over the database (its "
            "embeddings are encoded: M bytes per item with K = 256), embed the queries, and "
            "write the indices (database rows, 0-based) of their k nearest items by Asymmetric "
            "Quantizer Distance, best first, as an (n_queries, k) int64 array."
        ),
        epilog=_EPILOG_FORMATS,
    )
    search.add_argument("model", help="model file written by 'skdqn fit'")
    search.add_argument("database", help="database inputs (or codes, with --database-codes)")
    search.add_argument("queries", help="query inputs, shape (n_queries, n_features)")
    search.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    search.add_argument("-o", "--output", required=True, help="where to write the neighbour indices")
    search.add_argument("--distances", help="also write the (n_queries, k) float32 distances to this file")
    search.add_argument(
        "--metric", choices=("euclidean", "sqeuclidean", "inner_product"), default="euclidean",
        help="AQD ranking, as in AQDNeighbors (default euclidean)",
    )
    search.add_argument(
        "--database-codes", action="store_true",
        help="the database file holds codes written by 'skdqn encode', not inputs",
    )
    search.add_argument("--n-jobs", type=int, default=None, help="threads for the search (default 1)")
    _add_threads(search)
    search.add_argument("--key", help="array name inside the database and queries files that are .npz")


_COMMANDS = {"demo": _demo, "fit": _fit, "encode": _encode, "search": _search}


def main(argv=None):
    """Run the ``skdqn`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success, 2 for an unusable input (missing file, wrong shape,
        mismatched lengths, not a model), 1 when fitting or searching fails.
        Usage errors exit through :class:`SystemExit` with status 2, as
        :mod:`argparse` does.

    Examples
    --------
    >>> from skdqn.cli import main
    >>> main(["demo", "--epochs", "2", "--M", "1", "--verbose", "0"])  # doctest: +SKIP
    digits: 1437 database/training items, 360 queries, 8-bit codes (M=1, K=256)
    ...
    0
    """
    args = _build_parser().parse_args(argv)
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return _COMMANDS[args.command](args)
    except _InputError as exc:
        print(f"skdqn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except _RunError as exc:
        print(f"skdqn {args.command}: error: {exc}", file=sys.stderr)
        return 1

