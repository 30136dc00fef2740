"""What an index tells its user: a short repr, a warning for labels the database lacks, progress."""

import io
import warnings

import numpy as np
import pytest

from skdqn import AQDNeighbors
from skdqn._progress import count_progress
from skdqn.cli import main
from skdqn.exceptions import NoRelevantItemsWarning


@pytest.fixture(scope="module")
def labelled():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8)).astype(np.float32)
    return X, np.arange(120) % 3


def test_repr_of_a_loaded_index_summarises_its_arrays(tmp_path, labelled):
    X, y = labelled
    codebooks = AQDNeighbors(M=2, K=16, random_state=0).fit(X).codebooks_
    index = AQDNeighbors(codebooks=codebooks, n_lists=3, n_neighbors=4, random_state=0).fit(X, y)
    loaded = AQDNeighbors.load(index.save(tmp_path / "index.npz"))
    assert isinstance(loaded.codebooks, np.ndarray)  # the array is a parameter...
    text = repr(loaded)  # ...but its numbers are not printed
    assert text == "AQDNeighbors(codebooks=array(shape=(2, 16, 4), dtype=float32), n_lists=3, n_neighbors=4, random_state=0)"
    with_centroids = AQDNeighbors(coarse_centroids=np.zeros((3, 8), np.float64), codebooks=codebooks)
    assert "coarse_centroids=array(shape=(3, 8), dtype=float64)" in repr(with_centroids)
    assert repr(AQDNeighbors(M=2)) == "AQDNeighbors(M=2)"  # no arrays: scikit-learn's repr
    assert loaded.get_params()["codebooks"] is loaded.codebooks  # nothing changed by the repr
    assert "\n" not in repr(AQDNeighbors(codebooks=codebooks))


def test_queries_whose_labels_the_database_lacks_are_warned_about(labelled):
    X, y = labelled
    index = AQDNeighbors(M=2, K=16, random_state=0).fit(X, y)
    y_q = y[:10].copy()
    y_q[[2, 5, 7]] = 9  # no database item has the label 9
    with pytest.warns(NoRelevantItemsWarning, match="3 of 10 queries have no relevant item") as record:
        score = index.score(X[:10], y_q)
    assert record[0].filename == __file__  # points at the call of score
    assert score == pytest.approx(index.score(X[:10][y_q != 9], y_q[y_q != 9]) * 7 / 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.score(X[:10], y[:10])  # every label present: silent
        skipped = index.score(X[:10], y_q, no_relevant="skip")  # asked for: silent too
    assert skipped == pytest.approx(index.score(X[:10][y_q != 9], y_q[y_q != 9]))
    # Indicator labels: a query whose only label no item has.
    Y = np.zeros((120, 3), dtype=int)
    Y[np.arange(120), y] = 1
    Y_q = np.zeros((4, 3), dtype=int)
    Y_q[:, 0] = [1, 1, 0, 0]
    Y_q[2, 1] = 1
    Y[:, 2] = 0  # label 2 is nowhere in the database
    Y_q[3, 2] = 1
    multi = AQDNeighbors(M=2, K=16, random_state=0).fit(X, Y)
    with pytest.warns(NoRelevantItemsWarning, match="1 of 4 queries"):
        multi.score(X[:4], Y_q)


def test_score_reports_progress_when_verbose(labelled, capsys):
    X, y = labelled
    index = AQDNeighbors(M=2, K=16, random_state=0).fit(X, y)
    assert index.score(X, y, verbose=1) == index.score(X, y)
    err = capsys.readouterr().err
    assert "MAP: 120/120 queries (100 %)" in err  # stderr is not a terminal here: plain lines
    index.score(X, y, top_k=5, verbose=1)
    assert "MAP@5: 120/120 queries" in capsys.readouterr().err
    index.score(X, y)
    assert capsys.readouterr().err == ""


def test_count_progress_lines_and_bar():
    log = io.StringIO()
    progress = count_progress(1000, "MAP", stream=log)
    for _ in range(100):
        progress.update(10)
    progress.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[0] == "MAP: 100/1000 queries (10 %)" and lines[-1].endswith("(100 %)")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    bar = count_progress(50, "MAP@10", stream=term)
    bar.update(50)
    bar.close()
    assert "MAP@10" in term.getvalue() and "50/50" in term.getvalue()
    silent = io.StringIO()
    count_progress(5, "MAP", verbose=0, stream=silent).update(5)
    assert silent.getvalue() == ""


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, labelled):
    X, y = labelled
    folder = tmp_path_factory.mktemp("cli")
    files = {name: str(folder / f"{name}.npy") for name in ("X", "y", "Q", "yq", "ybad")}
    np.save(files["X"], X)
    np.save(files["y"], y)
    np.save(files["Q"], X[:20])
    np.save(files["yq"], y[:20])
    np.save(files["ybad"], np.r_[y[:18], [7, 7]])
    files["model"] = str(folder / "model.skdqn")
    assert main(["fit", files["X"], files["y"], "-o", files["model"], "--M", "2", "--K", "4", "--epochs", "1"]) == 0
    files["index"] = str(folder / "index.npz")
    assert main(["index", files["model"], files["X"], "-o", files["index"], "--labels", files["y"]]) == 0
    return files


def test_cli_evaluate_shows_progress_on_a_terminal_and_warns_once(cli_files, capsys, monkeypatch):
    import skdqn.cli

    f = cli_files
    argv = ["evaluate", f["model"], "--index", f["index"], f["Q"], "--query-labels", f["yq"], "-k", "5"]
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # not a terminal: quiet by default
    monkeypatch.setattr(skdqn.cli, "_isatty", lambda stream: True)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "MAP: 20/20 queries" in err and "MAP@5: 20/20 queries" in err
    assert main([*argv, "--verbose", "0"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(skdqn.cli, "_isatty", lambda stream: False)
    bad = ["evaluate", f["model"], "--index", f["index"], f["Q"], "--query-labels", f["ybad"], "-k", "5"]
    assert main(bad) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1  # MAP and MAP@5 both rank: one line
    assert "skdqn evaluate: warning: 2 of 20 queries have no relevant item" in err
