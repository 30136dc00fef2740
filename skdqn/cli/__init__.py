"""Command line: ``skdqn demo|fit|encode|index|search|evaluate`` (also ``python -m skdqn ...``).

* ``skdqn demo``: DQN against product quantization on the embedded digits.
* ``skdqn fit X y -o model.skdqn``: train a :class:`~skdqn.DeepQuantizer`
  (which standardizes its inputs unless ``--no-standardize``) and save it in
  skdqn's model format: arrays, a JSON header and the network's weights, read
  back without unpickling anything (:func:`load_model`), so a model file from
  someone else is safe to load.
* ``skdqn encode model.skdqn X -o codes.npy``: the ``(n, M)`` codes.
* ``skdqn index model.skdqn database -o index.npz``: build an
  :class:`~skdqn.AQDNeighbors` over the database and save it
  (:meth:`~skdqn.AQDNeighbors.save`, no pickle).
* ``skdqn search model.skdqn database queries -k 10 -o neighbors.npy`` (or
  ``search model.skdqn --index index.npz queries ...``): top-k by Asymmetric
  Quantizer Distance; with ``--ids``, a CSV table that names the items.
* ``skdqn evaluate model.skdqn database queries --database-labels y.npy
  --query-labels yq.npy`` (or with ``--index``): MAP, MAP@k, precision@k.

Arrays are read from ``.npy``, ``.npz`` (the first array, or ``--key NAME``),
``.csv`` (numbers separated by commas, no header) and ``.txt`` files (numbers
separated by white space) and written as the output name's suffix says:
``.npy``, ``.csv`` or ``.txt``; any other suffix is refused before any work.

Exit status: 0 on success; 2 for a usage error or an unusable input (missing
file, wrong shape, mismatched lengths, not a model); 1 when the estimator
rejects the data while fitting or searching (e.g. fewer samples than ``K``).
Errors are one line on stderr, ``skdqn <command>: error: ...``, no traceback.
"""

import argparse
import os
import sys
import time

from .._progress import _isatty
from .._validation import check_codes, check_device, check_positive_int
from .._version import __version__

__all__ = ["main", "load_model"]

_EPILOG_FORMATS = (
    "Arrays: .npy, .npz (first array, or --key NAME), .csv (comma-separated numbers, no header) "
    "or .txt (numbers separated by white space). Outputs are written as their suffix says: "
    ".npy, .csv or .txt; any other suffix is an error."
)
# Suffixes of the array files the commands write, and how.
_ARRAY_SUFFIXES = (".npy", ".csv", ".txt")
# Suffixes of the text files read as tables of numbers, and their delimiter.
_TEXT_DELIMITERS = {".csv": ",", ".txt": None}


class _InputError(Exception):
    """An unusable input: reported on stderr, exit status 2."""


class _RunError(Exception):
    """The estimator rejected the data: reported on stderr, exit status 1."""


# --------------------------------------------------------------------------
# Reading and writing arrays and models
# --------------------------------------------------------------------------


def _load_text(path, suffix, *, labels=False, integers=False):
    """Read a .csv or .txt table of numbers (labels may be words); reader errors propagate."""
    import numpy as np

    delimiter = _TEXT_DELIMITERS[suffix]
    ndmin = 1 if labels else 2
    if integers:
        return np.loadtxt(path, delimiter=delimiter, ndmin=ndmin, dtype=np.int64)
    try:
        return np.loadtxt(path, delimiter=delimiter, ndmin=ndmin)
    except ValueError:
        if not labels:
            raise
        # Class labels may be words: keep them as strings.
        return np.loadtxt(path, delimiter=delimiter, ndmin=1, dtype=str)


def _load_array(path, *, key=None, what="array", labels=False, strict_key=True, integers=False):
    """Read one array from a .npy, .npz, .csv or .txt file, or raise _InputError.

    ``key`` names the array of an .npz file (default: its first array); with
    ``strict_key`` it is an error to give one for another kind of file.
    ``integers`` reads text files as integers (codes), refusing other numbers.
    """
    import numpy as np

    if not os.path.exists(path):
        raise _InputError(f"{what} file not found: {path}")
    if os.path.isdir(path):
        raise _InputError(f"{what} path is a directory, not a file: {path}")
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix in _TEXT_DELIMITERS:
            return _load_text(path, suffix, labels=labels, integers=integers)
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any reader failure is an input error
        kind = (
            f"a {suffix} file of {'integers' if integers else 'numbers'}"
            if suffix in _TEXT_DELIMITERS else "a .npy, .npz, .csv or .txt array file"
        )
        raise _InputError(f"could not read {what} {path} as {kind}: {exc}") from None
    if not isinstance(loaded, np.ndarray):  # an .npz archive
        with loaded:
            names = list(loaded.files)
            if not names:
                raise _InputError(f"{what} file {path} holds no array")
            if key is not None and key not in names:
                raise _InputError(
                    f"{what} file {path} has no array named {key!r}; it holds: {', '.join(names)}"
                )
            name = names[0] if key is None else key
            try:  # members are read lazily: an object array or a damaged member fails here
                return loaded[name]
            except Exception as exc:  # noqa: BLE001 - any reader failure is an input error
                raise _InputError(f"could not read array {name!r} of {what} {path}: {exc}") from None
    if key is not None and strict_key:
        raise _InputError(f"--key applies to .npz files only, but {what} is {path}")
    return loaded


def _load_labels(path, n_rows, rows_path, *, key=None, what="y", rows_what="X"):
    """Labels for ``n_rows`` items: 1-D class labels or a 2-D indicator matrix, or raise _InputError."""
    y = _load_array(path, key=key, what=what, labels=True)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise _InputError(
            f"{what} must be 1-D class labels or a 2-D label indicator matrix; {path} holds an "
            f"array of shape {y.shape}"
        )
    if y.shape[0] != n_rows:
        raise _InputError(
            f"{rows_what} and {what} have different lengths: {n_rows} rows in {rows_path} but "
            f"{y.shape[0]} labels in {path}"
        )
    return y


def _load_ids(path, n_rows, what):
    """Names of ``n_rows`` items, one per line of a text file (or a 1-D .npy array), or raise _InputError."""
    import numpy as np

    if not os.path.exists(path):
        raise _InputError(f"{what} file not found: {path}")
    if not os.path.isfile(path):
        raise _InputError(f"{what} path is not a regular file: {path}")
    if path.lower().endswith(".npy"):
        ids = _load_array(path, what=what)
        if ids.ndim != 1:
            raise _InputError(f"{what} in {path} must be a 1-D array of names; got shape {ids.shape}")
        ids = [str(name) for name in ids.tolist()]
    else:
        try:
            with open(path, encoding="utf-8") as f:
                ids = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise _InputError(f"could not read {what} {path} as UTF-8 text: {exc}") from None
        empty = [i + 1 for i, name in enumerate(ids) if not name.strip()]
        if empty:
            raise _InputError(f"{what} file {path}: line {empty[0]} is empty (one name per line)")
    if len(ids) != n_rows:
        raise _InputError(f"{what} file {path} names {len(ids)} items, but there are {n_rows}")
    return np.asarray(ids, dtype=object)


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


# The arguments that name files a command reads, and those it writes.
_INPUT_ARGS = ("X", "y", "model", "database", "queries", "index", "labels", "database_labels",
               "query_labels", "ids", "query_ids", "items")
_OUTPUT_ARGS = {"output": "-o/--output", "distances": "--distances"}


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` are one file (symbolic and hard links resolved), or ``a`` lies inside ``b``."""
    real_a, real_b = os.path.realpath(a), os.path.realpath(b)
    if real_a == real_b or real_a.startswith(real_b.rstrip(os.sep) + os.sep):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def _check_distinct_paths(args):
    """Raise _InputError, before any work, if an output is an input or another output.

    Writing it would destroy the input (``skdqn fit X.npy y.npy -o X.npy``)
    or keep only the last of two outputs (``-o out.npy --distances
    out.npy``). An input inside an output directory (an index saved as a
    directory), or an output inside an input directory (a saved model or
    index), counts as the same file.
    """
    inputs = [(name, getattr(args, name)) for name in _INPUT_ARGS if getattr(args, name, None)]
    outputs = [(name, getattr(args, name)) for name in _OUTPUT_ARGS if getattr(args, name, None)]
    for i, (name, path) in enumerate(outputs):
        flag = _OUTPUT_ARGS[name]
        for other, input_path in inputs:
            if _same_file(input_path, path) or _same_file(path, input_path):
                raise _InputError(
                    f"{flag} {path} is the input {other.upper().replace('_', '-')} ({input_path}); "
                    "refusing to overwrite an input: choose another output name"
                )
        for other, other_path in outputs[i + 1:]:
            if _same_file(other_path, path) or _same_file(path, other_path):
                raise _InputError(
                    f"{flag} {path} and {_OUTPUT_ARGS[other]} {other_path} are the same file; "
                    "give each output its own name"
                )


def _check_output(path, what, suffixes=None):
    """Raise _InputError, before any work, if ``path`` cannot be written.

    Cannot: no such directory, a directory, or (with ``suffixes``) a name
    whose suffix is not one of those this output is written as.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _InputError(f"cannot write the {what} to {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise _InputError(f"cannot write the {what} to {path}: it is a directory")
    if suffixes is not None and os.path.splitext(path)[1].lower() not in suffixes:
        suffix = os.path.splitext(path)[1] or "no suffix"
        raise _InputError(
            f"cannot write the {what} to {path}: {suffix!r} is not a format it is written as; "
            f"use a name ending in {', '.join(suffixes[:-1])} or {suffixes[-1]}"
        )


def _save_array(path, array):
    """Write ``array`` as the suffix of ``path`` says: ``.csv`` (commas), ``.txt`` (spaces) or ``.npy``."""
    import numpy as np

    suffix = os.path.splitext(path)[1].lower()
    if suffix in _TEXT_DELIMITERS:
        fmt = "%d" if array.dtype.kind in "iu" else "%.8g"
        delimiter = _TEXT_DELIMITERS[suffix] or " "
        np.savetxt(path, np.atleast_2d(array) if array.ndim == 1 else array, fmt=fmt, delimiter=delimiter)
    else:
        with open(path, "wb") as f:  # np.save(path) would append ".npy" to other names
            np.save(f, array)


def _save_table(path, ind, dist, ids=None, query_ids=None):
    """Write the results as a table, one row per (query, rank): ``query,rank,id,distance``.

    ``.csv`` is comma-separated (names quoted where needed), ``.txt``
    tab-separated; ``query`` and ``id`` are names where given, else row
    numbers (0-based); ``rank`` starts at 1.
    """
    import csv

    delimiter = "," if path.lower().endswith(".csv") else "\t"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["query", "rank", "id", "distance"])
        for q in range(ind.shape[0]):
            query = q if query_ids is None else query_ids[q]
            for rank, (j, d) in enumerate(zip(ind[q].tolist(), dist[q].tolist()), start=1):
                writer.writerow([query, rank, j if ids is None else ids[j], f"{d:.6g}"])


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

    from ..io._model_io import read_model
    from .._quantizer import DeepQuantizer

    dq, scaler = DeepQuantizer._from_saved(read_model(path), None, path)
    return dq if scaler is None else make_pipeline(scaler, dq)


def _load_model(path, threads=None):
    """``(model, quantizer)`` from a model file written by ``skdqn fit``, or raise _InputError.

    ``threads`` (``--threads``), when given, replaces the model's ``n_threads``.
    """
    if not os.path.exists(path):
        raise _InputError(f"model file not found: {path}")
    if os.path.isfile(os.path.join(path, "retriever.json")):  # a saved skdqn.Retriever: its model
        path = os.path.join(path, "model.npz")
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

    from .. import AQDNeighbors, DeepQuantizer

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

    index = AQDNeighbors.from_quantizer(dq, n_neighbors=10).fit(dq.transform(X_db), y_db)
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
    "loss": "loss",
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

    from ..io._model_io import save_model
    from .._quantizer import DeepQuantizer

    X = _check_2d(_load_array(args.X, key=args.key, what="X"), args.X)
    y = _load_labels(args.y, X.shape[0], args.X, key=args.y_key)
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
        f"in {seconds:.1f} s on {dq.device_}, {dq.loss_} loss"
    )
    if dq.history_:
        last = dq.history_[-1]
        quantization = last["quantization_loss"]
        name = "pair" if dq.loss_ == "pairwise" else dq.loss_
        print(
            f"  last epoch: {name} loss {last[name + '_loss']:.4f}, "
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
    from .._pq import encode

    parts = _load_model(args.model, args.threads)
    X = _load_array(args.X, key=args.key, what="X")
    _check_output(args.output, "codes", _ARRAY_SUFFIXES)
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


def _check_k(value, name):
    """Raise _InputError unless ``value`` is a positive integer."""
    try:
        check_positive_int(value, name)
    except ValueError as exc:
        raise _InputError(str(exc)) from None


def _positional_inputs(args):
    """Sort out ``MODEL DATABASE QUERIES`` against ``MODEL --index INDEX QUERIES``.

    Argparse fills ``database`` first, so with ``--index`` the one file given
    is the queries.
    """
    if args.index is None:
        if args.queries is None:
            raise _InputError("give a DATABASE and a QUERIES file, or --index INDEX and a QUERIES file")
        return
    if args.queries is not None:
        raise _InputError(
            f"give either a DATABASE file ({args.database}) or --index {args.index}, not both"
        )
    if args.database_codes:
        raise _InputError("--database-codes describes a DATABASE file; it does not apply to --index")
    args.queries, args.database = args.database, None


def _build_index(args, parts, labels_path=None):
    """An AQDNeighbors with the model's codebooks over DATABASE (inputs, or codes with --database-codes)."""
    from .._neighbors import AQDNeighbors

    dq = parts[1]
    n_lists = getattr(args, "n_lists", None)
    if args.database_codes:
        if n_lists is not None:
            raise _InputError("--n-lists needs the database's inputs (to learn the lists), not its codes")
        database = _load_array(
            args.database, key=args.key, what="database", strict_key=False, integers=True
        )
        codes = _database_codes(database, dq.codebooks_, args.database)
        n_database = codes.shape[0]
    else:
        database = _load_array(args.database, key=args.key, what="database", strict_key=False)
        Z_db = _embed(parts, database, args.database)
        n_database = Z_db.shape[0]
    labels = None
    if labels_path is not None:
        labels = _load_labels(labels_path, n_database, args.database, what="database labels",
                              rows_what="the database")
    params = {"metric": args.metric or "euclidean", "n_jobs": args.n_jobs}
    if getattr(args, "refine_factor", None) is not None:
        if args.database_codes:
            raise _InputError("--refine-factor re-ranks by the database's embeddings: give its inputs, not its codes")
        params["refine_factor"] = args.refine_factor  # the index keeps the embeddings
    try:
        if args.database_codes:  # the index holds the codes as they are
            return AQDNeighbors.from_codes(dq.codebooks_, codes, labels, **params)
        if n_lists is not None:
            params.update(n_lists=n_lists, random_state=args.seed)
            if getattr(args, "n_probe", None) is not None:
                params["n_probe"] = args.n_probe
        return AQDNeighbors.from_quantizer(dq, **params).fit(Z_db, labels)
    except ValueError as exc:
        raise _RunError(f"building the index failed: {exc}") from None


def _open_index(args, dq):
    """The index saved at ``--index``, checked against the model, with this run's search options."""
    import numpy as np

    from .._neighbors import AQDNeighbors

    path = args.index
    if not os.path.exists(path):
        raise _InputError(f"index not found: {path}")
    if os.path.isfile(os.path.join(path, "retriever.json")):  # a saved skdqn.Retriever: its index
        path = os.path.join(path, "index")
    try:
        index = AQDNeighbors.load(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        raise _InputError(f"{path} is not an index written by 'skdqn index': {exc}") from None
    same = index.codebooks_.shape == dq.codebooks_.shape and np.array_equal(
        index.codebooks_, np.asarray(dq.codebooks_, dtype=index.codebooks_.dtype)
    )
    if not same:
        raise _InputError(
            f"the index {path} was not built with the codebooks of {args.model}: build it with "
            f"'skdqn index {args.model} DATABASE -o {path}'"
        )
    params = {"n_jobs": args.n_jobs}
    if args.metric is not None:
        params["metric"] = args.metric
    if args.n_probe is not None:
        params["n_probe"] = args.n_probe
    if getattr(args, "refine_factor", None) is not None:
        if index._state().vectors is None:
            raise _InputError(
                f"--refine-factor needs the items' embeddings, which the index {path} does not hold: "
                "build it with 'skdqn index ... --refine-factor F'"
            )
        params["refine_factor"] = args.refine_factor
    return index.set_params(**params)


def _search_index(args, parts):
    """The index to search: the saved one (``--index``) or one built over DATABASE."""
    if args.index is not None:
        return _open_index(args, parts[1])
    return _build_index(args, parts, labels_path=getattr(args, "database_labels", None))


def _queries(args, parts):
    """The embedded QUERIES."""
    queries = _load_array(args.queries, key=args.key, what="queries", strict_key=False)
    return _embed(parts, queries, args.queries)


def _probe_summary(index, Z_q=None, k=0):
    """``", probing P of L lists (...)"`` for an index with inverted lists, else ``""``.

    With the queries ``Z_q``, also the share of the items the probed lists
    hold, on average over the queries (more lists are probed when those hold
    fewer than ``k`` items).
    """
    import numpy as np

    from ..search._ivf import coarse_scores, probe_lists

    if index.coarse_centroids_ is None:
        return ""
    n_lists, n_probe = index.coarse_centroids_.shape[0], index.n_probe_
    text = f", probing {n_probe} of {n_lists} lists" + (" (n_probe auto: recall@10 >= 0.95)" if index.n_probe == "auto" else "")
    if Z_q is not None and len(Z_q):
        state = index._state()
        vectors = index._queries(state, Z_q).vectors()
        sizes = np.diff(index.list_offsets_)
        query, lists = probe_lists(coarse_scores(vectors, index.coarse_centroids_, state.lists.metric), sizes, n_probe, k)
        share = np.bincount(query, weights=sizes[lists], minlength=len(Z_q)) / max(1, index.codes_.shape[0])
        text += f", {share.mean():.1%} of the items per query"
    return text


def _label_filter(args, index):
    """The ``filter`` of ``--filter-labels``: HasLabel of the values, typed as the index's labels; or None."""
    import numpy as np

    from ..search._filters import HasLabel

    if args.filter_labels is None:
        return None
    labels = index._fit_labels
    if labels is None:
        raise _InputError(
            "--filter-labels needs the database's labels: an --index built with --labels, or "
            "--database-labels FILE with DATABASE"
        )
    kind = "iu" if labels.ndim == 2 else labels.dtype.kind
    try:
        values = np.asarray(args.filter_labels).astype(labels.dtype if kind in "iufb" else str)
    except ValueError:
        raise _InputError(f"--filter-labels {' '.join(args.filter_labels)}: not labels of the database's kind ({labels.dtype})") from None
    return HasLabel(values)


def _search(args):
    """``skdqn search``: write the top-k database items of each query by AQD."""
    import numpy as np

    parts = _load_model(args.model, getattr(args, "threads", None))
    _positional_inputs(args)
    table = args.ids is not None or args.query_ids is not None
    _check_output(args.output, "neighbors", (".csv", ".txt") if table else _ARRAY_SUFFIXES)
    if args.distances is not None:
        _check_output(args.distances, "distances", _ARRAY_SUFFIXES)
    _check_k(args.k, "-k")
    if args.database_labels is not None and args.index is not None:
        raise _InputError("--database-labels describes a DATABASE file; an --index keeps the labels it was built with")
    index = _search_index(args, parts)
    label_filter = _label_filter(args, index)
    Z_q = _queries(args, parts)
    n_database = index.n_samples_fit_
    if args.k > n_database:
        raise _InputError(f"-k {args.k} is larger than the database ({n_database} items)")
    ids = None if args.ids is None else _load_ids(args.ids, n_database, "--ids")
    query_ids = None if args.query_ids is None else _load_ids(args.query_ids, Z_q.shape[0], "--query-ids")
    try:
        start = time.perf_counter()
        dist, ind = index.kneighbors(Z_q, n_neighbors=args.k, filter=label_filter)
        seconds = time.perf_counter() - start
    except ValueError as exc:
        raise _RunError(f"search failed: {exc}") from None
    if table:
        _save_table(args.output, ind, dist, ids, query_ids)
    else:
        _save_array(args.output, ind.astype(np.int64, copy=False))
    if args.distances is not None:
        _save_array(args.distances, dist)
    rate = f" ({Z_q.shape[0] / seconds:,.0f} queries/s)" if seconds > 0 else ""
    print(
        f"searched {Z_q.shape[0]} queries against {n_database} items "
        f"({index.codes_.shape[1] * index.codes_.dtype.itemsize} bytes per item{_probe_summary(index, Z_q, args.k)}), "
        f"top-{args.k} by {index.metric} AQD in {seconds * 1e3:.1f} ms{rate} -> {args.output}"
        + (f", distances -> {args.distances}" if args.distances is not None else "")
    )
    return 0


def _check_index_output(path):
    """Raise _InputError unless ``path`` names an ``.npz`` file or a directory to save an index to."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise _InputError(f"cannot write the index to {path}: directory {directory} does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in ("", ".npz"):
        raise _InputError(
            f"cannot write the index to {path}: an index is saved as one .npz file or as a "
            f"directory (a name without suffix), not as {suffix!r}"
        )
    if suffix == ".npz" and os.path.isdir(path):
        raise _InputError(f"cannot write the index to {path}: it is a directory")


def _index(args):
    """``skdqn index``: build an AQDNeighbors over a database with the model's codebooks and save it."""
    parts = _load_model(args.model, getattr(args, "threads", None))
    _check_index_output(args.output)
    if args.n_probe is not None and args.n_lists is None:
        raise _InputError("--n-probe needs --n-lists (an index without inverted lists scans every item)")
    index = _build_index(args, parts, labels_path=args.labels)
    try:
        path = index.save(args.output)
    except (OSError, ValueError) as exc:
        raise _InputError(f"cannot write the index to {args.output}: {exc}") from None
    details = [f"{index.codes_.shape[1] * index.codes_.dtype.itemsize} bytes per item", index.metric]
    if index.coarse_centroids_ is not None:
        details.append(f"{index.coarse_centroids_.shape[0]} inverted lists{_probe_summary(index)}")
    details.append("with labels" if args.labels is not None else "no labels")
    print(f"indexed {index.n_samples_fit_} items ({', '.join(details)}) -> {path}")
    return 0


def _evaluation_index(args, parts):
    """The labelled index to evaluate: the saved one or one built over DATABASE."""
    from .._validation import check_y

    if args.index is None:
        if args.database_labels is None:
            raise _InputError("--database-labels is required with a DATABASE file")
        return _build_index(args, parts, labels_path=args.database_labels)
    index = _open_index(args, parts[1])
    if args.database_labels is not None:  # given labels replace those saved with the index
        labels = _load_labels(args.database_labels, index.n_samples_fit_, args.index,
                              what="database labels", rows_what="the index")
        try:
            index._with_labels(check_y(labels, index.n_samples_fit_))
        except (TypeError, ValueError) as exc:
            raise _InputError(f"database labels {args.database_labels}: {exc}") from None
    if index._fit_labels is None:
        raise _InputError(
            f"the index {args.index} holds no labels: give --database-labels, or build it "
            "with 'skdqn index ... --labels FILE'"
        )
    return index


def _depths(requested, n_database):
    """The MAP@k and precision@k depths: those asked for, else 10 and 100 where the database has as many."""
    if requested is None:
        return [k for k in (10, 100) if k <= n_database]
    for k in requested:
        _check_k(k, "-k")
        if k > n_database:
            raise _InputError(f"-k {k} is larger than the database ({n_database} items)")
    return sorted(set(requested))


def _retrieval_metrics(index, Z_q, y_q, depths, normalize="retrieved", verbose=0):
    """``{name: value}``: MAP over the whole index, then MAP@k and precision@k at each depth.

    ``verbose=1`` reports each ranking's progress on stderr; queries sharing
    no label with the index are reported once, as a warning line.
    """
    import warnings

    from ..exceptions import NoRelevantItemsWarning
    from ..metrics import precision_at_k

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoRelevantItemsWarning)
        results = {"MAP": index.score(Z_q, y_q, normalize=normalize, verbose=verbose)}
    absent = [w for w in caught if issubclass(w.category, NoRelevantItemsWarning)]
    for warning in absent[:1]:
        print(f"skdqn evaluate: warning: {warning.message}", file=sys.stderr)
    for warning in caught:
        if not issubclass(warning.category, NoRelevantItemsWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    for k in depths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoRelevantItemsWarning)  # reported once, above
            results[f"MAP@{k}"] = index.score(Z_q, y_q, top_k=k, normalize=normalize, verbose=verbose)
    if depths:
        ind = index.kneighbors(Z_q, n_neighbors=max(depths), return_distance=False)
        precision = precision_at_k(y_q, index._fit_labels, ranking=ind, k=depths)
        for k, value in zip(depths, precision):
            results[f"precision@{k}"] = float(value)
    return results


def _save_results(path, results):
    """Write the metrics as JSON (``.json``) or as ``metric,value`` rows (``.csv``)."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        if path.lower().endswith(".json"):
            json.dump(results, f, indent=2)
            f.write("\n")
        else:
            f.write("metric,value\n")
            f.writelines(f"{name},{value}\n" for name, value in results.items())


def _evaluate(args):
    """``skdqn evaluate``: MAP, MAP@k and precision@k of labelled queries against a labelled database."""
    parts = _load_model(args.model, getattr(args, "threads", None))
    _positional_inputs(args)
    if args.output is not None:
        _check_output(args.output, "results", (".json", ".csv"))
    index = _evaluation_index(args, parts)
    Z_q = _queries(args, parts)
    y_q = _load_labels(args.query_labels, Z_q.shape[0], args.queries, what="query labels",
                       rows_what="the queries")
    depths = _depths(args.k, index.n_samples_fit_)
    start = time.perf_counter()
    verbose = args.verbose if args.verbose is not None else int(_isatty(sys.stderr))
    try:
        results = _retrieval_metrics(index, Z_q, y_q, depths, args.normalize, verbose)
    except ValueError as exc:
        raise _RunError(f"evaluation failed: {exc}") from None
    seconds = time.perf_counter() - start
    print(
        f"evaluated {Z_q.shape[0]} queries against {index.n_samples_fit_} items "
        f"({index.codes_.shape[1] * index.codes_.dtype.itemsize} bytes per item{_probe_summary(index, Z_q, 10)}) by "
        f"{index.metric} AQD in {seconds:.1f} s (MAP ranks every item; precision@k searches the probed lists)"
    )
    for name, value in results.items():
        print(f"  {name:<15} {value:.4f}")
    if args.output is not None:
        _save_results(args.output, {"n_queries": int(Z_q.shape[0]),
                                    "n_database": int(index.n_samples_fit_), **results})
        print(f"results -> {args.output}")
    return 0


def _read_index(path):
    """The AQDNeighbors saved at ``path`` (by 'skdqn index', or a Retriever's), or raise _InputError."""
    from .._neighbors import AQDNeighbors

    if not os.path.exists(path):
        raise _InputError(f"index not found: {path}")
    if os.path.isfile(os.path.join(path, "retriever.json")):
        raise _InputError(f"{path} is a saved Retriever: remove items from its index with Python")
    try:
        return AQDNeighbors.load(path)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        raise _InputError(f"{path} is not an index written by 'skdqn index': {exc}") from None


def _remove(args):
    """``skdqn remove``: remove items from a saved index (their numbers are never reused) and save it."""
    import numpy as np

    _check_index_output(args.output)
    index = _read_index(args.index)
    items = _load_array(args.items, what="items", integers=True)
    if items.ndim != 1:
        raise _InputError(f"items {args.items}: expected a 1-D list of item indices; got shape {items.shape}")
    try:
        index.remove(items.astype(np.int64))
        if args.compact:
            index.compact()
        path = index.save(args.output)
    except (OSError, TypeError, ValueError) as exc:
        raise _InputError(f"items {args.items}: {exc}") from None
    stored = "compacted" if args.compact else "rows kept until --compact"
    print(
        f"removed {np.unique(items).size} items: {index.n_samples_fit_ - index.removed_.size} of "
        f"{index.n_samples_fit_} remain ({index.removed_.size} removed in all, {stored}) -> {path}"
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


def _add_refine(parser, saved):
    """Add ``--refine-factor`` (re-ranking by exact distance to the items' embeddings)."""
    parser.add_argument(
        "--refine-factor", type=_positive_int, default=None, metavar="F",
        help=("keep the database's embeddings (4 bytes per dimension and item) and re-rank F * k "
              "AQD candidates by exact distance; searches of the saved index then re-rank"
              if saved else
              "re-rank F * k AQD candidates by exact distance to the items' embeddings (DATABASE "
              "inputs, or an --index built with --refine-factor)"),
    )


def _n_probe_value(text):
    """Argparse type of ``--n-probe``: a positive integer or ``auto``."""
    return "auto" if text == "auto" else _positive_int(text)


def _add_threads(parser):
    """Add the ``--threads`` option (PyTorch CPU threads) to a sub-parser."""
    parser.add_argument(
        "--threads", type=_positive_int, default=None,
        help="CPU threads for PyTorch (default: the model's n_threads, DeepQuantizer's default 1: "
        "the fastest for small networks, and much faster on a busy machine)",
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
    parser.add_argument("--version", action="version", version=f"skdqn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # command name -> its parser
    _add_demo(sub)
    _add_fit(sub)
    _add_encode(sub)
    _add_index(sub)
    _add_search(sub)
    _add_evaluate(sub)
    _add_remove(sub)
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


# Notes shown after a default value in ``fit --help``.
_DEFAULT_NOTES = {"n_components": "300 rounded up to a multiple of M", "device": "CUDA when available"}


def _format_default(name, value):
    """A DeepQuantizer default as ``fit --help`` shows it, e.g. ``512 256`` for a tuple."""
    text = " ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
    note = _DEFAULT_NOTES.get(name)
    return f"{text} ({note})" if note else text


class _FitHelpFormatter(argparse.HelpFormatter):
    """Appends DeepQuantizer's actual default to the help of each option that maps to a parameter.

    The defaults come from ``DeepQuantizer().get_params()`` when the help is
    shown, so that they cannot drift from the estimator's, and importing torch
    is only paid for ``fit --help``.
    """

    _defaults = None

    def _get_help_string(self, action):
        help_text = super()._get_help_string(action)
        name = _FIT_PARAMS.get(action.dest)
        if name is None or action.default is not None:  # CLI defaults (--seed) say so themselves
            return help_text
        if _FitHelpFormatter._defaults is None:
            from .._quantizer import DeepQuantizer

            _FitHelpFormatter._defaults = DeepQuantizer().get_params()
        return f"{help_text} (default: {_format_default(name, _FitHelpFormatter._defaults[name])})"


def _add_fit(sub):
    """The ``skdqn fit`` sub-parser: one option per DeepQuantizer parameter in _FIT_PARAMS."""
    fit = sub.add_parser(
        "fit",
        help="train a DeepQuantizer on labelled data and save it",
        description=(
            "Train a DeepQuantizer on X (n_samples, n_features) with labels y (class labels, "
            "or a 0/1 label indicator matrix for multi-label data: two items are similar when "
            "they share a label) and save it. The network standardizes the features itself "
            "(DeepQuantizer's standardize=True: mean and scale learned by fit, saved in the "
            "model and applied to every later input) unless --no-standardize is given. "
            "Options left out keep DeepQuantizer's defaults, shown below. The model file holds "
            "arrays, a JSON header and the network's weights, and is read without unpickling "
            "anything: a model file from "
            "someone else is safe to load (DeepQuantizer.load, skdqn.cli.load_model)."
        ),
        epilog=_EPILOG_FORMATS,
        formatter_class=_FitHelpFormatter,
    )
    fit.add_argument("X", help="training inputs, shape (n_samples, n_features)")
    fit.add_argument("y", help="labels, shape (n_samples,) or (n_samples, n_labels)")
    fit.add_argument("-o", "--output", required=True, help="where to save the model (e.g. model.skdqn)")
    fit.add_argument("--M", type=_positive_int, help="number of subspaces")
    fit.add_argument("--K", type=_positive_int, help="codewords per subspace; bits = M * log2(K)")
    fit.add_argument("--n-components", type=_positive_int, help="embedding dimension R, divisible by M")
    fit.add_argument("--lam", type=float, help="weight of the quantization loss")
    fit.add_argument(
        "--loss", choices=("auto", "pairwise", "proxy"),
        help="the label term: the paper's pairwise loss, class proxies, or 'auto' (proxies for "
        "single-label data with 20 classes or more, else pairwise)",
    )
    fit.add_argument("--epochs", type=_positive_int, help="training epochs, max_epochs")
    fit.add_argument("--warmup-epochs", type=int, help="epochs before the first codebook fit")
    fit.add_argument("--batch-size", type=_positive_int, help="mini-batch size")
    fit.add_argument("--learning-rate", type=float, help="optimizer step size")
    fit.add_argument(
        "--hidden-layer-sizes", type=_positive_int, nargs="+", metavar="H",
        help="hidden layers of the MLP backbone, e.g. 512 256",
    )
    fit.add_argument("--device", help="'cpu', 'cuda', 'cuda:1' or 'auto'")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fit.add_argument(
        "--verbose", type=int, default=0,
        help="1 shows progress on stderr: a bar on a terminal, else a line per epoch (default 0)",
    )
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


def _add_database_options(parser, what="DATABASE"):
    """Options about the database: --database-codes, --metric, --n-jobs, --key."""
    parser.add_argument(
        "--database-codes", action="store_true",
        help=f"{what} holds integer codes written by 'skdqn encode' (.npy, .csv or .txt), not inputs",
    )
    parser.add_argument("--n-jobs", type=int, default=None, help="threads for the search (default 1)")
    parser.add_argument("--key", help="array name inside the input files that are .npz")
    _add_threads(parser)


def _add_metric(parser, saved=True):
    """The ``--metric`` option; for commands that take --index, a saved index keeps its own."""
    parser.add_argument(
        "--metric", choices=("euclidean", "sqeuclidean", "inner_product"), default=None,
        help="AQD ranking, as in AQDNeighbors (default euclidean"
        + ("; a saved --index keeps its own)" if saved else ")"),
    )


def _add_index(sub):
    """The ``skdqn index`` sub-parser."""
    index = sub.add_parser(
        "index",
        help="build an AQDNeighbors index over a database and save it",
        description=(
            "Embed the database with a model saved by 'skdqn fit', encode it with the model's "
            "codebooks into an AQDNeighbors index, and save the index (numpy arrays and a JSON "
            "header, no pickle) for 'skdqn search --index' and 'skdqn evaluate --index', which "
            "then need not embed the database again."
        ),
        epilog=_EPILOG_FORMATS,
    )
    index.add_argument("model", help="model file written by 'skdqn fit'")
    index.add_argument("database", help="database inputs (or codes, with --database-codes)")
    index.add_argument(
        "-o", "--output", required=True,
        help="where to save the index: a .npz file, or a directory (a name without suffix)",
    )
    index.add_argument("--labels", help="labels of the database items, saved with the index (for evaluate)")
    index.add_argument(
        "--n-lists", type=_positive_int, default=None,
        help="inverted lists (IVF): a query then scans only the --n-probe nearest lists (default: none, "
        "every query scans every item)",
    )
    index.add_argument(
        "--n-probe", type=_n_probe_value, default=None,
        help="lists a search scans per query, saved with the index: a number, or 'auto' (default): the "
        "fewest lists whose recall@10 against scanning every item reaches 0.95 on 256 sampled items",
    )
    index.add_argument("--seed", type=int, default=0, help="seed of the inverted lists' k-means (default 0)")
    _add_refine(index, saved=True)
    _add_metric(index, saved=False)
    _add_database_options(index)


def _add_remove(sub):
    """The ``skdqn remove`` sub-parser."""
    remove = sub.add_parser(
        "remove",
        help="remove items from a saved index",
        description=(
            "Remove items from an index saved by 'skdqn index': searches never return them again, "
            "and every other item keeps its number (new items never reuse a removed number). "
            "Their rows stay stored until --compact reclaims them."
        ),
        epilog=_EPILOG_FORMATS,
    )
    remove.add_argument("index", metavar="INDEX", help="an index saved by 'skdqn index'")
    remove.add_argument("items", metavar="ITEMS", help="indices of the items to remove (a 1-D integer array file)")
    remove.add_argument("-o", "--output", required=True, help="where to save the index (.npz file or directory)")
    remove.add_argument("--compact", action="store_true", help="also drop the removed items' rows from storage")


def _add_query_inputs(parser):
    """Positionals MODEL [DATABASE] QUERIES and --index (which replaces DATABASE)."""
    parser.add_argument("model", metavar="MODEL", help="model file written by 'skdqn fit'")
    parser.add_argument(
        "database", metavar="DATABASE",
        help="database inputs (or codes, with --database-codes); left out with --index",
    )
    parser.add_argument("queries", metavar="QUERIES", nargs="?", help="query inputs, shape (n_queries, n_features)")
    parser.add_argument("--index", metavar="INDEX", help="an index saved by 'skdqn index', instead of DATABASE")
    parser.add_argument(
        "--n-probe", type=_n_probe_value, default=None,
        help="inverted lists scanned per query, for an --index with lists: a number or 'auto' (default: as saved)",
    )


def _add_search(sub):
    """The ``skdqn search`` sub-parser."""
    search = sub.add_parser(
        "search",
        usage=(
            "skdqn search MODEL DATABASE QUERIES -o OUTPUT [options]\n"
            "       skdqn search MODEL --index INDEX QUERIES -o OUTPUT [options]"
        ),
        help="find the k nearest database items of each query by AQD",
        description=(
            "Build an AQDNeighbors index with the model's codebooks over the database (its "
            "embeddings are encoded: M bytes per item with K = 256), or load one saved by "
            "'skdqn index', embed the queries, and write the indices (database rows, 0-based) "
            "of their k nearest items by Asymmetric Quantizer Distance, best first, as an "
            "(n_queries, k) int64 array. With --ids (or --query-ids) the output is instead a "
            "table (.csv, or tab-separated .txt) of query, rank, id and distance, one row per "
            "neighbour, naming the items."
        ),
        epilog=_EPILOG_FORMATS,
    )
    _add_query_inputs(search)
    search.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    search.add_argument("-o", "--output", required=True, help="where to write the neighbours")
    search.add_argument("--distances", help="also write the (n_queries, k) float32 distances to this file")
    search.add_argument(
        "--ids", "--database-ids", dest="ids", metavar="FILE",
        help="names of the database items (e.g. file names), one per line, in database order; "
        "the output is then a query,rank,id,distance table",
    )
    search.add_argument("--query-ids", metavar="FILE", help="names of the queries, one per line, for the table")
    _add_refine(search, saved=False)
    search.add_argument(
        "--filter-labels", nargs="+", metavar="LABEL", default=None,
        help="return only database items with one of these labels (the labels saved with --index, or "
        "--database-labels FILE with DATABASE)",
    )
    search.add_argument("--database-labels", help="labels of the DATABASE items, for --filter-labels")
    _add_metric(search)
    _add_database_options(search)


def _add_evaluate(sub):
    """The ``skdqn evaluate`` sub-parser."""
    evaluate = sub.add_parser(
        "evaluate",
        usage=(
            "skdqn evaluate MODEL DATABASE QUERIES --database-labels FILE --query-labels FILE [options]\n"
            "       skdqn evaluate MODEL --index INDEX QUERIES --query-labels FILE [options]"
        ),
        help="mean average precision and precision@k of labelled queries",
        description=(
            "Rank the database (built with the model's codebooks, or a saved --index) for each "
            "labelled query by AQD and print the mean average precision over the whole database "
            "(MAP), MAP@k and precision@k; an item is relevant to a query when they share a label."
        ),
        epilog=_EPILOG_FORMATS,
    )
    _add_query_inputs(evaluate)
    evaluate.add_argument("--query-labels", required=True, help="labels of the queries")
    evaluate.add_argument(
        "--database-labels",
        help="labels of the database items (required with DATABASE; with --index they replace saved ones)",
    )
    evaluate.add_argument(
        "-k", type=int, nargs="+", default=None, metavar="K",
        help="depths of MAP@k and precision@k (default 10 100, those the database has)",
    )
    evaluate.add_argument(
        "--normalize", choices=("retrieved", "all"), default="retrieved",
        help="MAP@k divides by the relevant items retrieved in the top k (deep-hashing papers) or by "
        "all relevant items (textbook average precision); see skdqn.metrics (default retrieved)",
    )
    evaluate.add_argument("-o", "--output", help="also write the results to a .json or .csv file")
    evaluate.add_argument(
        "--verbose", type=int, choices=(0, 1), default=None,
        help="1 shows the progress of each ranking on stderr (default: 1 when stderr is a terminal)",
    )
    _add_metric(evaluate)
    _add_database_options(evaluate)


_COMMANDS = {
    "demo": _demo, "fit": _fit, "encode": _encode, "index": _index, "search": _search, "evaluate": _evaluate,
    "remove": _remove,
}


def _parse(argv):
    """Parse ``argv``; a QUERIES file given after options lands in ``queries``.

    Argparse fills an optional positional (QUERIES) with nothing when an
    option separates it from the others (``MODEL DATABASE -k 5 QUERIES``):
    such a left-over file name is taken as QUERIES here.
    """
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "queries", False) is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.queries, extra = extra[0], []
    if extra:  # reported by the command's parser, with its usage, as parse_args would
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


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
    args = _parse(argv)
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        _check_distinct_paths(args)
        return _COMMANDS[args.command](args)
    except _InputError as exc:
        print(f"skdqn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except _RunError as exc:
        print(f"skdqn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"skdqn {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        print(f"skdqn {args.command}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc):
    """The message of ``exc`` on one line (a multi-line message is joined with '; ')."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())

