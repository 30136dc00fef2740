"""Training progress: a bar on a terminal, one plain line per epoch in a log file, no 'nan'."""

import io

import numpy as np

from skdqn import DeepQuantizer
from skdqn._progress import _Bar, _Lines, epoch_progress, format_losses

FAST = dict(M=2, K=16, n_components=8, hidden_layer_sizes=(16,), batch_size=64)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_warm_up_epochs_show_warm_up_not_nan():
    assert format_losses({"pair_loss": 0.25, "quantization_loss": float("nan")}) == {
        "pair": "0.2500", "quant": "warm-up",
    }
    assert format_losses({"pair_loss": 0.25, "quantization_loss": 0.125})["quant"] == "0.1250"


def test_a_terminal_gets_a_bar_and_a_log_file_plain_lines():
    assert isinstance(epoch_progress(3, "X", stream=io.StringIO()), _Lines)
    bar = epoch_progress(3, "X", stream=_Terminal())
    assert isinstance(bar, _Bar)
    bar.close()


def test_bar_postfix_says_warm_up():
    stream = _Terminal()
    bar = epoch_progress(2, "DeepQuantizer", stream=stream)
    bar.update({"epoch": 1, "pair_loss": 0.5, "quantization_loss": float("nan"), "seconds": 0.1})
    assert bar._bar.postfix == "pair=0.5000, quant=warm-up"  # tqdm may not redraw it in time
    bar.update({"epoch": 2, "pair_loss": 0.4, "quantization_loss": 0.03, "seconds": 0.1})
    bar.close()
    text = stream.getvalue()
    assert "quant=0.0300" in text and "nan" not in text


def test_fit_into_a_log_file_writes_one_line_per_epoch(capsys):
    X, y = np.random.default_rng(0).normal(size=(200, 8)), np.arange(200) % 4
    dq = DeepQuantizer(max_epochs=4, warmup_epochs=2, verbose=1, random_state=0, **FAST).fit(X, y)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    lines = err.strip().splitlines()
    assert "\r" not in err and "nan" not in err
    assert len(lines) == 4 == dq.n_iter_
    assert lines[0].startswith("DeepQuantizer epoch 1/4: pair loss ")
    assert lines[0].endswith(" s") and "quantization loss warm-up" in lines[1]
    quant = dq.history_[-1]["quantization_loss"]
    assert f"quantization loss {quant:.4f}" in lines[3]


def test_silent_without_verbose(capsys):
    X, y = np.random.default_rng(0).normal(size=(100, 8)), np.arange(100) % 4
    DeepQuantizer(max_epochs=1, verbose=0, random_state=0, **FAST).fit(X, y)
    assert capsys.readouterr().err == ""


def test_model_selection_shows_each_epoch_of_each_fit(capsys):
    # GridSearchCV clones the estimator with its verbose parameter: every fit
    # of the search reports its epochs (plain lines: stderr is not a terminal).
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from skdqn import DeepQuantizer

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    GridSearchCV(
        DeepQuantizer(M=2, K=8, max_epochs=2, warmup_epochs=1, verbose=1, random_state=0),
        {"lam": [0.0, 0.1]},
        cv=2,
    ).fit(X, y)
    err = capsys.readouterr().err
    assert err.count("DeepQuantizer epoch 2/2") == 2 * 2 + 1  # 2 values x 2 folds, and the refit
    assert "quant=nan" not in err and "\r" not in err
