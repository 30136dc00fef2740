"""Training progress for ``verbose``: a progress bar on a terminal, plain lines elsewhere.

On a terminal (or in a Jupyter notebook) :func:`epoch_progress` shows a
:mod:`tqdm` bar whose postfix gives the epoch's losses; the quantization loss
reads ``warm-up`` until the first codebooks exist (it is not computed before,
and a ``nan`` there looks like a bug). When the stream is not a terminal, e.g.
a log file or a pipe, a bar would be one long line joined by carriage
returns: one plain line per epoch is printed instead.
"""

import math
import sys

__all__ = ["epoch_progress", "count_progress"]


def _in_notebook():
    """Whether we run in a Jupyter kernel (whose streams are not terminals but show bars)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001 - any IPython oddity: not a notebook
        return False


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_losses(record):
    """The losses of an epoch's history record, by name; ``quant`` is ``"warm-up"`` before codebooks.

    The supervised term is named for the objective that trained: ``pair``
    (the paper's pairwise loss) or ``proxy`` (the class-proxy loss), the
    one of ``pair_loss`` and ``proxy_loss`` that is not NaN.

    >>> format_losses({"pair_loss": 0.5, "quantization_loss": float("nan")})
    {'pair': '0.5000', 'quant': 'warm-up'}
    >>> format_losses({"pair_loss": float("nan"), "proxy_loss": 1.25, "quantization_loss": 0.5})
    {'proxy': '1.2500', 'quant': '0.5000'}
    """
    quantization = record["quantization_loss"]
    quant = "warm-up" if quantization is None or math.isnan(quantization) else f"{quantization:.4f}"
    proxy = record.get("proxy_loss")
    if proxy is not None and not math.isnan(proxy):
        return {"proxy": f"{proxy:.4f}", "quant": quant}
    return {"pair": f"{record['pair_loss']:.4f}", "quant": quant}


class _Bar:
    """A tqdm bar over the epochs."""

    def __init__(self, n_epochs, desc, stream):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=n_epochs, desc=desc, unit="epoch", file=stream)

    def update(self, record):
        self._bar.set_postfix(format_losses(record), refresh=False)
        self._bar.update(1)

    def close(self):
        self._bar.close()


class _Lines:
    """One plain line per epoch, flushed at once (a log file shows training as it goes)."""

    def __init__(self, n_epochs, desc, stream):
        self._n_epochs, self._desc, self._stream = n_epochs, desc, stream
        self._width = len(str(n_epochs))

    def update(self, record):
        losses = format_losses(record)
        name, value = next(iter(losses.items()))  # the supervised loss, by name
        seconds = record.get("seconds")
        timing = f", {seconds:.2f} s" if seconds is not None else ""
        print(
            f"{self._desc} epoch {record['epoch']:>{self._width}}/{self._n_epochs}: "
            f"{name} loss {value}, quantization loss {losses['quant']}{timing}",
            file=self._stream,
            flush=True,
        )

    def close(self):
        pass


def epoch_progress(n_epochs, desc, stream=None):
    """A progress reporter for ``n_epochs`` epochs: ``update(record)`` after each, ``close()`` at the end.

    Parameters
    ----------
    n_epochs : int
        Number of epochs planned.
    desc : str
        The name shown, e.g. ``"DeepQuantizer"``.
    stream : file-like, default=None
        Where to write; ``sys.stderr`` (read when called) when None.

    Returns
    -------
    progress : object
        A tqdm bar on a terminal or in a notebook, else plain lines, one per
        epoch.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> progress = epoch_progress(2, "DeepQuantizer", stream=log)
    >>> progress.update({"epoch": 1, "pair_loss": 0.5, "quantization_loss": float("nan")})
    >>> progress.close()
    >>> print(log.getvalue(), end="")
    DeepQuantizer epoch 1/2: pair loss 0.5000, quantization loss warm-up
    """
    stream = sys.stderr if stream is None else stream
    if _isatty(stream) or (stream is sys.stderr and _in_notebook()):
        return _Bar(n_epochs, desc, stream)
    return _Lines(n_epochs, desc, stream)


class _CountBar:
    """A tqdm bar over a count of items (e.g. queries ranked)."""

    def __init__(self, total, desc, unit, stream):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, unit=unit, file=stream)

    def update(self, n):
        self._bar.update(n)

    def close(self):
        self._bar.close()


class _CountLines:
    """A plain line at each tenth of the work (and at the end), flushed at once."""

    def __init__(self, total, desc, unit, stream):
        self._total, self._desc, self._unit, self._stream = total, desc, unit, stream
        self._done = 0
        self._next = 1  # the next tenth to report

    def update(self, n):
        self._done += n
        tenth = 10 * self._done // max(self._total, 1)
        if tenth >= self._next:
            self._next = tenth + 1
            print(
                f"{self._desc}: {self._done}/{self._total} {self._unit} ({100 * self._done // max(self._total, 1)} %)",
                file=self._stream, flush=True,
            )

    def close(self):
        pass


class _Silent:
    def update(self, n):
        pass

    def close(self):
        pass


def count_progress(total, desc, *, unit="queries", verbose=1, stream=None):
    """A progress reporter over ``total`` items: ``update(n)`` after each ``n`` done, ``close()`` at the end.

    Parameters
    ----------
    total : int
        Number of items planned.
    desc : str
        The name shown, e.g. ``"MAP"``.
    unit : str, default="queries"
        What is counted.
    verbose : int, default=1
        0: report nothing (the reporter does nothing).
    stream : file-like, default=None
        Where to write; ``sys.stderr`` (read when called) when None.

    Returns
    -------
    progress : object
        A tqdm bar on a terminal or in a notebook, else a plain line at each
        tenth of the work (a log file stays short), or nothing with
        ``verbose=0``.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> progress = count_progress(400, "MAP", stream=log)
    >>> for _ in range(4):
    ...     progress.update(100)
    >>> progress.close()
    >>> print(log.getvalue(), end="")
    MAP: 100/400 queries (25 %)
    MAP: 200/400 queries (50 %)
    MAP: 300/400 queries (75 %)
    MAP: 400/400 queries (100 %)
    """
    if not verbose:
        return _Silent()
    stream = sys.stderr if stream is None else stream
    if _isatty(stream) or (stream is sys.stderr and _in_notebook()):
        return _CountBar(total, desc, unit, stream)
    return _CountLines(total, desc, unit, stream)
