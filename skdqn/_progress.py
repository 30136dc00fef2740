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

__all__ = ["epoch_progress"]


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
    """``{"pair": ..., "quant": ...}`` for an epoch's history record; ``quant`` is ``"warm-up"`` before codebooks.

    >>> format_losses({"pair_loss": 0.5, "quantization_loss": float("nan")})
    {'pair': '0.5000', 'quant': 'warm-up'}
    """
    quantization = record["quantization_loss"]
    quant = "warm-up" if quantization is None or math.isnan(quantization) else f"{quantization:.4f}"
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
        seconds = record.get("seconds")
        timing = f", {seconds:.2f} s" if seconds is not None else ""
        print(
            f"{self._desc} epoch {record['epoch']:>{self._width}}/{self._n_epochs}: "
            f"pair loss {losses['pair']}, quantization loss {losses['quant']}{timing}",
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
