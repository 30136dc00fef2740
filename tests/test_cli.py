"""The command line, through main(argv) and as a subprocess."""

import os
import re
import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import Pipeline

from skdqn import AQDNeighbors, DeepQuantizer
from skdqn.cli import load_model, main

# Small, fast settings: 16 codewords, 2 epochs, a small network.
FAST = ["--M", "2", "--K", "16", "--epochs", "2", "--n-components", "16", "--hidden-layer-sizes", "32"]


def test_python_m_skdqn_runs_the_cli_main():
    import skdqn.__main__

    assert skdqn.__main__.main is main


def test_demo_through_main(capsys):
    assert main(["demo", "--epochs", "2", "--M", "1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "8-bit codes" in out
    assert "PQ of the pixels" in out and "DQN (DeepQuantizer)" in out and "queries/s" in out


def test_unknown_command_and_bad_option_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["demo", "--M", "3"])
    assert "invalid choice" in capsys.readouterr().err


# --------------------------------------------------------------------------
# fit / encode / search
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Digits-derived files: a 500-item training/database set and 30 queries."""
    folder = tmp_path_factory.mktemp("cli")
    X, y = load_digits(return_X_y=True)
    files = {
        "X": folder / "X.npy",
        "y": folder / "y.npy",
        "Q": folder / "queries.npy",
        "yq": folder / "y_queries.npy",
    }
    np.save(files["X"], X[:500])
    np.save(files["y"], y[:500])
    np.save(files["Q"], X[500:530])
    np.save(files["yq"], y[500:530])
    arrays = {"X": X[:500], "y": y[:500], "Q": X[500:530]}
    return folder, {k: str(v) for k, v in files.items()}, arrays


@pytest.fixture(scope="module")
def model_file(data):
    folder, files, _ = data
    path = str(folder / "model.skdqn")
    assert main(["fit", files["X"], files["y"], "-o", path, *FAST]) == 0
    return path


def test_fit_saves_a_standardizing_quantizer(model_file, data, capsys):
    _, _, arrays = data
    dq = load_model(model_file)
    assert isinstance(dq, DeepQuantizer) and dq.standardize
    assert dq.codebooks_.shape == (2, 16, 8)
    assert dq.n_iter_ == 2 and dq.random_state == 0
    # Options not given keep the estimator's defaults.
    assert dq.lam == DeepQuantizer().lam
    assert dq.learning_rate == DeepQuantizer().learning_rate
    assert dq.n_threads == DeepQuantizer().n_threads
    mean = dq.network_.standardizer.mean.numpy()
    np.testing.assert_allclose(mean, arrays["X"].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_fit_loss_option(data, tmp_path, capsys):
    _, files, arrays = data
    path = str(tmp_path / "proxy.skdqn")
    assert main(["fit", files["X"], files["y"], "-o", path, *FAST, "--loss", "proxy"]) == 0
    out = capsys.readouterr().out
    assert "proxy loss" in out and "last epoch: proxy loss" in out
    dq = load_model(path)
    assert dq.loss == "proxy" and dq.loss_ == "proxy"
    with pytest.raises(SystemExit) as exc:
        main(["fit", files["X"], files["y"], "-o", str(tmp_path / "x.skdqn"), "--loss", "hinge"])
    assert exc.value.code == 2 and "--loss" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pipeline_file(data):
    """A model file as the older ``skdqn fit`` wrote it: a StandardScaler, then the quantizer."""
    from sklearn.preprocessing import StandardScaler

    from skdqn.io._model_io import save_model

    folder, _, arrays = data
    scaler = StandardScaler().fit(arrays["X"])
    dq = DeepQuantizer(M=2, K=16, max_epochs=2, n_components=16, hidden_layer_sizes=(32,),
                       standardize=False, random_state=0).fit(scaler.transform(arrays["X"]), arrays["y"])
    path = str(folder / "pipeline.skdqn")
    save_model(dq, path, scaler=scaler, single_file=True)
    return path


def test_model_file_is_the_pickle_free_format(model_file, pipeline_file, data, tmp_path, capsys):
    """The file holds arrays, a JSON header and a state_dict; it is read without unpickling."""
    import zipfile

    _, files, arrays = data
    with zipfile.ZipFile(model_file) as zf:
        assert {"header.json", "network.npy", "codes.npy"} <= set(zf.namelist())
        assert "scaler_mean.npy" not in zf.namelist()  # the network standardizes itself
    # Files of the older 'skdqn fit' (a StandardScaler first) are still read, as a Pipeline.
    model = load_model(pipeline_file)
    assert isinstance(model, Pipeline)
    with zipfile.ZipFile(pipeline_file) as zf:
        assert "scaler_mean.npy" in zf.namelist()
    model_file = pipeline_file
    with pytest.raises(ValueError, match="StandardScaler followed by a DeepQuantizer.*skdqn.cli.load_model"):
        DeepQuantizer.load(model_file)
    np.testing.assert_array_equal(model[0].scale_, np.sqrt(model[0].var_) + (model[0].var_ == 0))
    # A plain model (--no-standardize) is a DeepQuantizer file, and a
    # DeepQuantizer saved from Python (a directory here) serves the commands.
    folder = model[-1].save(tmp_path / "plain-model")
    codes = str(tmp_path / "codes.npy")
    assert main(["encode", str(folder), files["Q"], "-o", codes]) == 0
    np.testing.assert_array_equal(np.load(codes), model[-1].encode(arrays["Q"]))
    # A damaged model file is one clear line, exit status 2.
    damaged = tmp_path / "damaged.skdqn"
    blob = bytearray(open(model_file, "rb").read())
    blob[len(blob) // 2] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    capsys.readouterr()
    assert main(["encode", str(damaged), files["Q"], "-o", codes]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and str(damaged) in err and "\n" not in err.strip()


def test_fit_encode_search_through_main(model_file, data, capsys):
    folder, files, arrays = data
    model = load_model(model_file)
    capsys.readouterr()

    codes_path = str(folder / "codes.npy")
    assert main(["encode", model_file, files["X"], "-o", codes_path]) == 0
    assert "encoded 500 items" in capsys.readouterr().out
    codes = np.load(codes_path)
    assert codes.shape == (500, 2) and codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, model.encode(arrays["X"]))

    nn_path, dist_path = str(folder / "nn.npy"), str(folder / "dist.npy")
    argv = ["search", model_file, files["X"], files["Q"], "-k", "7", "-o", nn_path]
    assert main([*argv, "--distances", dist_path]) == 0
    assert "searched 30 queries against 500 items" in capsys.readouterr().out
    ind, dist = np.load(nn_path), np.load(dist_path)
    assert ind.shape == (30, 7) and ind.dtype == np.int64
    assert dist.shape == (30, 7) and dist.dtype == np.float32
    assert (np.diff(dist, axis=1) >= 0).all()

    index = AQDNeighbors(n_neighbors=7, codebooks=model).fit(model.transform(arrays["X"]))
    ref_dist, ref_ind = index.kneighbors(model.transform(arrays["Q"]))
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6)

    # The codes written by `encode` serve as the database just as well.
    nn_codes = str(folder / "nn_codes.npy")
    assert main(["search", model_file, codes_path, files["Q"], "-k", "7", "-o", nn_codes, "--database-codes"]) == 0
    np.testing.assert_array_equal(np.load(nn_codes), ind)


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_database_codes_search_is_an_index_over_the_encoded_codes(metric, model_file, data, tmp_path, capsys):
    _, files, arrays = data
    model = load_model(model_file)
    codes_path, nn, dist = (str(tmp_path / name) for name in ("codes.npy", "nn.npy", "dist.npy"))
    assert main(["encode", model_file, files["X"], "-o", codes_path]) == 0
    argv = ["search", model_file, codes_path, files["Q"], "-k", "9", "--metric", metric, "--database-codes"]
    assert main([*argv, "-o", nn, "--distances", dist]) == 0
    assert "searched 30 queries against 500 items (2 bytes per item)" in capsys.readouterr().out

    # The same as an index built from those codes...
    index = AQDNeighbors.from_codes(model.codebooks_, np.load(codes_path), n_neighbors=9, metric=metric)
    ref_dist, ref_ind = index.kneighbors(model.transform(arrays["Q"]))
    np.testing.assert_array_equal(np.load(nn), ref_ind)
    np.testing.assert_array_equal(np.load(dist), ref_dist)

    # ... and as the search over the embedded database.
    nn_embedded, dist_embedded = str(tmp_path / "nn_embedded.npy"), str(tmp_path / "dist_embedded.npy")
    argv = ["search", model_file, files["X"], files["Q"], "-k", "9", "--metric", metric]
    assert main([*argv, "-o", nn_embedded, "--distances", dist_embedded]) == 0
    np.testing.assert_array_equal(np.load(nn), np.load(nn_embedded))
    np.testing.assert_allclose(np.load(dist), np.load(dist_embedded), rtol=1e-6)


def test_csv_and_npz_inputs_and_csv_output(model_file, data, tmp_path, capsys):
    _, files, arrays = data
    X_csv, npz = tmp_path / "X.csv", tmp_path / "data.npz"
    np.savetxt(X_csv, arrays["X"], delimiter=",")
    np.savez(npz, features=arrays["X"][:, :3], labels=arrays["y"])
    model_csv = str(tmp_path / "m.skdqn")
    assert main(["fit", str(X_csv), str(npz), "--y-key", "labels", "-o", model_csv, *FAST]) == 0
    fitted = load_model(model_csv)
    assert fitted.codes_.shape == (500, 2)
    np.testing.assert_allclose(fitted.network_.standardizer.mean.numpy(), arrays["X"].mean(axis=0), rtol=1e-5, atol=1e-5)

    # Labels as a CSV column.
    y_csv = tmp_path / "y.csv"
    np.savetxt(y_csv, arrays["y"], delimiter=",", fmt="%d")
    out = tmp_path / "short.npy"
    np.save(out, arrays["X"][:10])
    assert main(["fit", str(out), str(y_csv), "-o", model_csv]) == 2
    assert "10 rows in" in capsys.readouterr().err

    # .npz without --key: its first array; a .csv output of integer codes.
    first = tmp_path / "queries.npz"
    np.savez(first, arrays["Q"], arrays["X"])
    out = tmp_path / "codes.csv"
    assert main(["encode", model_file, str(first), "-o", str(out)]) == 0
    written = np.loadtxt(out, delimiter=",", dtype=np.int64)
    model = load_model(model_file)
    np.testing.assert_array_equal(written, model.encode(arrays["Q"]))


def test_no_standardize_saves_a_plain_quantizer(data, tmp_path, capsys):
    _, files, arrays = data
    path = str(tmp_path / "plain.skdqn")
    argv = ["fit", files["X"], files["y"], "-o", path, "--no-standardize", *FAST, "--lam", "0.5", "--threads", "1"]
    assert main(argv) == 0
    model = load_model(path)
    assert isinstance(model, DeepQuantizer) and model.lam == 0.5
    assert model.standardize is False and not model.network_.standardizes
    assert "saved DeepQuantizer to" in capsys.readouterr().out
    # --threads of the other commands replaces the model's n_threads.
    from skdqn.cli import _load_model

    assert model.n_threads == 1 and _load_model(path, 3)[1].n_threads == 3
    codes = str(tmp_path / "codes.npy")
    assert main(["encode", path, files["Q"], "-o", codes]) == 0
    np.testing.assert_array_equal(np.load(codes), model.encode(arrays["Q"]))


def _start(*args):
    """``python -m skdqn ARGS`` in the background (each start pays for importing torch)."""
    # One thread, as the in-process tests (conftest.py): the tiny networks
    # gain nothing from more, and a busy machine makes them much slower.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "skdqn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(process):
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_end_to_end_as_subprocess(data, tmp_path):
    _, files, _ = data
    model, codes, nn = (str(tmp_path / name) for name in ("model.skdqn", "codes.npy", "nn.npy"))
    # Each `python -m skdqn` pays for importing torch, so independent commands
    # run side by side: fit, an error case that must print one line and no
    # traceback, and the help of the demo.
    fit = _start("fit", files["X"], files["y"], "-o", model, *FAST)
    error = _start("encode", files["X"], files["Q"], "-o", os.devnull)
    demo_help = _start("demo", "--help")
    status, out, err = _finish(demo_help)
    assert status == 0, err
    assert "digits" in out and "--epochs" in out
    status, out, err = _finish(fit)
    assert status == 0, err
    assert "fitted DeepQuantizer on 500 items" in out
    status, out, err = _finish(error)
    assert status == 2 and out == ""
    assert err.startswith("skdqn encode: error: ") and "Traceback" not in err

    encode = _start("encode", model, files["Q"], "-o", codes)
    search = _start("search", model, files["X"], files["Q"], "-k", "10", "-o", nn)
    for process in (encode, search):
        status, _, err = _finish(process)
        assert status == 0, err
    assert np.load(codes).shape == (30, 2)
    ind = np.load(nn)
    assert ind.shape == (30, 10) and ind.min() >= 0 and ind.max() < 500


# --------------------------------------------------------------------------
# Errors: one line on stderr, no traceback, exit status 2 (input) or 1 (fit)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(data):
    folder, files, arrays = data
    bad = {
        "X3d": folder / "X3d.npy",
        "y_short": folder / "y_short.npy",
        "garbage": folder / "garbage.skdqn",
        "dict": folder / "dict.skdqn",
        "Q10": folder / "Q10.npy",
        "npz": folder / "two.npz",
        "codes_big": folder / "codes_big.npy",
    }
    np.save(bad["X3d"], arrays["X"].reshape(-1, 8, 8))
    np.save(bad["y_short"], arrays["y"][:-1])
    bad["garbage"].write_text("not a model\n")
    joblib.dump({"model": None}, bad["dict"])
    np.save(bad["Q10"], arrays["Q"][:, :10])
    np.savez(bad["npz"], a=arrays["X"], b=arrays["y"])
    np.save(bad["codes_big"], np.full((5, 2), 16, dtype=np.uint8))  # K=16: codes in [0, 16)
    bad["index"] = AQDNeighbors(M=2, K=16, random_state=0).fit(arrays["X"]).save(folder / "index.npz")
    return {k: str(v) for k, v in bad.items()}


ERROR_CASES = [
    ("missing X", ["fit", "{folder}/nope.npy", "{y}", "-o", "{out}"], 2, "X file not found"),
    ("missing y", ["fit", "{X}", "{folder}/nope.npy", "-o", "{out}"], 2, "y file not found"),
    ("3-D X", ["fit", "{X3d}", "{y}", "-o", "{out}"], 2, "X must be a 2-D array"),
    ("lengths", ["fit", "{X}", "{y_short}", "-o", "{out}"], 2, "different lengths: 500 rows"),
    ("npz key", ["fit", "{npz}", "{y}", "--key", "c", "-o", "{out}"], 2, "no array named 'c'"),
    ("bad K", ["fit", "{X}", "{y}", "--K", "1", "-o", "{out}"], 2, "'K' parameter"),
    ("no dir", ["fit", "{X}", "{y}", "-o", "{folder}/no/dir/m.skdqn"], 2, "does not exist"),
    ("K > n", ["fit", "{X}", "{y}", "--K", "1024", "--epochs", "1", "-o", "{out}"], 1, "n_samples >= K"),
    ("npy model", ["encode", "{X}", "{Q}", "-o", "{out}"], 2, "is a NumPy array file, not a model"),
    ("garbage", ["encode", "{garbage}", "{Q}", "-o", "{out}"], 2, "not a model written by 'skdqn fit', or damaged"),
    ("pickle", ["encode", "{dict}", "{Q}", "-o", "{out}"], 2, "is a pickle, not a model written by"),
    ("index", ["encode", "{index}", "{Q}", "-o", "{out}"], 2, "does not hold a DeepQuantizer model"),
    ("missing model", ["encode", "{folder}/nope.skdqn", "{Q}", "-o", "{out}"], 2, "model file not found"),
    ("features", ["encode", "{model}", "{Q10}", "-o", "{out}"], 2, "10 features per row"),
    ("3-D encode", ["encode", "{model}", "{X3d}", "-o", "{out}"], 2, "X must be a 2-D array"),
    ("k too big", ["search", "{model}", "{Q}", "{Q}", "-k", "31", "-o", "{out}"], 2, "larger than"),
    ("codes", ["search", "{model}", "{X}", "{Q}", "--database-codes", "-o", "{out}"], 2, "(n, M=2)"),
    ("codes file", ["search", "{model}", "{X}", "{Q}", "--database-codes", "-o", "{out}"], 2, "X.npy does not hold"),
    ("codes range", ["search", "{model}", "{codes_big}", "{Q}", "--database-codes", "-o", "{out}"], 2, "[0, K=16)"),
    ("k zero", ["search", "{model}", "{X}", "{Q}", "-k", "0", "-o", "{out}"], 2, "-k must be a positive integer"),
    ("bad device", ["fit", "{X}", "{y}", "--device", "gpu", "-o", "{out}"], 2, "--device must be 'auto'"),
]


@pytest.mark.parametrize("case, argv, status, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_are_one_clear_line(case, argv, status, message, data, bad_files, model_file, tmp_path, capsys):
    folder, files, _ = data
    names = {**files, **bad_files, "folder": str(folder), "model": model_file, "out": str(tmp_path / "out.npy")}
    assert main([arg.format(**names) for arg in argv]) == status
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"skdqn {argv[0]}: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out.npy")


@pytest.mark.parametrize("command", ["fit", "encode", "index", "search", "evaluate"])
def test_help_of_each_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: skdqn {command}" in out and ".npz" in out


def test_cuda_device_without_cuda_fails_before_fitting(data, tmp_path, monkeypatch, capsys):
    import torch

    _, files, _ = data
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "m.skdqn"
    assert main(["fit", files["X"], files["y"], "-o", str(out), "--device", "cuda", *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.startswith("skdqn fit: error: --device='cuda'") and "CUDA is not available" in captured.err


@pytest.mark.parametrize("value, message", [("0", "must be a positive integer, got 0"), ("x", "invalid positive integer")])
def test_non_positive_integer_option_is_a_usage_error(value, message, data, tmp_path, capsys):
    _, files, _ = data
    with pytest.raises(SystemExit) as exc:
        main(["fit", files["X"], files["y"], "-o", str(tmp_path / "m.skdqn"), "--K", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --K:" in err and message in err


def test_missing_required_output_is_a_usage_error(data, capsys):
    _, files, _ = data
    with pytest.raises(SystemExit) as exc:
        main(["fit", files["X"], files["y"]])
    assert exc.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


# --------------------------------------------------------------------------
# --version, fit --help defaults, output formats by suffix, text codes
# --------------------------------------------------------------------------


def test_version(capsys):
    import skdqn

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"skdqn {skdqn.__version__}"


def test_fit_help_shows_the_estimators_actual_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # no usage, no wrapping
    assert "DeepQuantizer's default)" not in out
    defaults = DeepQuantizer().get_params()
    for option, param in [("--M M", "M"), ("--K K", "K"), ("--lam LAM", "lam"), ("--epochs EPOCHS", "max_epochs"),
                          ("--batch-size BATCH_SIZE", "batch_size"), ("--learning-rate LEARNING_RATE", "learning_rate"),
                          ("--warmup-epochs WARMUP_EPOCHS", "warmup_epochs"), ("--device DEVICE", "device")]:
        text = out.split(option, 1)[1].split(" --", 1)[0]
        assert f"(default: {defaults[param]}" in text, (option, text)
    hidden = " ".join(map(str, defaults["hidden_layer_sizes"]))
    assert f"(default: {hidden})" in out.split("--hidden-layer-sizes H [H ...]", 1)[1].split(" --", 1)[0]


def test_outputs_are_written_as_their_suffix_says(model_file, data, tmp_path, capsys):
    _, files, _ = data
    model = load_model(model_file)
    expected = model.encode(np.load(files["Q"]))
    txt = tmp_path / "c.txt"
    assert main(["encode", model_file, files["Q"], "-o", str(txt)]) == 0
    assert not txt.read_bytes().startswith(b"\x93NUMPY")
    np.testing.assert_array_equal(np.loadtxt(txt, dtype=np.int64), expected)
    for name in ("c.dat", "codes"):
        capsys.readouterr()
        assert main(["encode", model_file, files["Q"], "-o", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "is not a format it is written as" in err and ".npy, .csv or .txt" in err
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_database_codes_from_text_files(suffix, model_file, data, tmp_path, capsys):
    _, files, _ = data
    codes_npy, codes_text = str(tmp_path / "codes.npy"), str(tmp_path / f"codes{suffix}")
    for path in (codes_npy, codes_text):
        assert main(["encode", model_file, files["X"], "-o", path]) == 0
    results = []
    for path in (codes_npy, codes_text):
        out = str(tmp_path / "nn.npy")
        assert main(["search", model_file, path, files["Q"], "--database-codes", "-k", "5", "-o", out]) == 0
        results.append(np.load(out))
    np.testing.assert_array_equal(results[0], results[1])
    # Numbers that are not integers are no codes.
    floats = tmp_path / f"floats{suffix}"
    np.savetxt(floats, np.full((4, 2), 1.5), delimiter="," if suffix == ".csv" else " ")
    capsys.readouterr()
    argv = ["search", model_file, str(floats), files["Q"], "--database-codes", "-o", str(tmp_path / "x.npy")]
    assert main(argv) == 2
    assert f"as a {suffix} file of integers" in capsys.readouterr().err


# --------------------------------------------------------------------------
# index, search --index, --ids, evaluate
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index_file(model_file, data):
    folder, files, _ = data
    path = str(folder / "index.npz")
    assert main(["index", model_file, files["X"], "-o", path, "--labels", files["y"]]) == 0
    return path


def test_search_with_a_saved_index_finds_what_a_rebuilt_one_finds(index_file, model_file, data, tmp_path, capsys):
    _, files, _ = data
    loaded = AQDNeighbors.load(index_file)
    assert loaded.n_samples_fit_ == 500 and loaded.codes_.shape == (500, 2)
    rebuilt, saved = str(tmp_path / "rebuilt.npy"), str(tmp_path / "saved.npy")
    d_rebuilt, d_saved = str(tmp_path / "d1.npy"), str(tmp_path / "d2.npy")
    assert main(["search", model_file, files["X"], files["Q"], "-k", "6", "-o", rebuilt, "--distances", d_rebuilt]) == 0
    # QUERIES may follow options; --index replaces DATABASE.
    assert main(["search", model_file, "--index", index_file, "-k", "6", files["Q"], "-o", saved, "--distances", d_saved]) == 0
    assert "searched 30 queries against 500 items" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(saved), np.load(rebuilt))
    np.testing.assert_array_equal(np.load(d_saved), np.load(d_rebuilt))
    # Options between DATABASE and QUERIES.
    between = str(tmp_path / "between.npy")
    assert main(["search", model_file, files["X"], "-k", "6", files["Q"], "-o", between]) == 0
    np.testing.assert_array_equal(np.load(between), np.load(rebuilt))


def test_index_as_a_directory_with_inverted_lists(model_file, data, tmp_path, capsys):
    _, files, _ = data
    folder = str(tmp_path / "ivf")
    assert main(["index", model_file, files["X"], "-o", folder, "--n-lists", "4"]) == 0
    assert "4 inverted lists" in capsys.readouterr().out
    assert AQDNeighbors.load(folder).coarse_centroids_.shape[0] == 4
    every, exhaustive = str(tmp_path / "every.npy"), str(tmp_path / "exhaustive.npy")
    assert main(["search", model_file, files["Q"], "--index", folder, "--n-probe", "4", "-o", every]) == 0
    assert main(["search", model_file, files["X"], files["Q"], "-o", exhaustive]) == 0
    np.testing.assert_array_equal(np.load(every), np.load(exhaustive))  # every list probed: exhaustive


def test_index_n_probe_is_saved_and_the_summaries_say_what_is_probed(model_file, data, tmp_path, capsys):
    _, files, _ = data
    folder = str(tmp_path / "ivf2")
    assert main(["index", model_file, files["X"], "-o", folder, "--n-lists", "8", "--n-probe", "3"]) == 0
    assert "8 inverted lists, probing 3 of 8 lists" in capsys.readouterr().out
    assert AQDNeighbors.load(folder).n_probe == 3
    out = str(tmp_path / "n.npy")
    assert main(["search", model_file, files["Q"], "--index", folder, "-o", out]) == 0
    line = capsys.readouterr().out
    share = float(re.search(r"probing 3 of 8 lists, ([0-9.]+)% of the items per query", line).group(1))
    assert 0 < share < 100
    assert main(["search", model_file, files["Q"], "--index", folder, "--n-probe", "auto", "-o", out]) == 0
    assert "(n_probe auto: recall@10 >= 0.95)" in capsys.readouterr().out
    assert main(["index", model_file, files["X"], "-o", str(tmp_path / "x"), "--n-probe", "3"]) == 2
    assert "--n-probe needs --n-lists" in capsys.readouterr().err


def test_refine_factor_keeps_the_embeddings_and_reranks(model_file, data, tmp_path, capsys):
    _, files, _ = data
    folder = str(tmp_path / "refined")
    assert main(["index", model_file, files["X"], "-o", folder, "--refine-factor", "3"]) == 0
    index = AQDNeighbors.load(folder)
    assert index.refine_factor == 3 and index._state().vectors is not None
    saved, built = str(tmp_path / "a.npy"), str(tmp_path / "b.npy")
    assert main(["search", model_file, files["Q"], "--index", folder, "-o", saved]) == 0
    assert main(["search", model_file, files["X"], files["Q"], "--refine-factor", "3", "-o", built]) == 0
    np.testing.assert_array_equal(np.load(saved), np.load(built))
    plain = str(tmp_path / "plain")
    assert main(["index", model_file, files["X"], "-o", plain]) == 0
    capsys.readouterr()
    assert main(["search", model_file, files["Q"], "--index", plain, "--refine-factor", "2", "-o", saved]) == 2
    assert "does not hold" in capsys.readouterr().err


def test_search_filter_labels(model_file, index_file, data, tmp_path, capsys):
    _, files, arrays = data
    y = np.asarray(arrays["y"])
    out = str(tmp_path / "f.npy")
    assert main(["search", model_file, files["Q"], "--index", index_file, "--filter-labels", "3", "7", "-o", out]) == 0
    found = np.load(out)
    assert np.isin(y[found], [3, 7]).all()
    built = str(tmp_path / "g.npy")
    assert main(["search", model_file, files["X"], files["Q"], "--database-labels", files["y"],
                 "--filter-labels", "3", "7", "-o", built]) == 0
    np.testing.assert_array_equal(np.load(built), found)
    capsys.readouterr()
    assert main(["search", model_file, files["X"], files["Q"], "--filter-labels", "3", "-o", built]) == 2
    assert "--filter-labels needs the database's labels" in capsys.readouterr().err


INDEX_ERRORS = [
    ("both", ["search", "{model}", "{X}", "{Q}", "--index", "{index}", "-o", "{out}"], "not both"),
    ("no queries", ["search", "{model}", "{X}", "-o", "{out}"], "give a DATABASE and a QUERIES file"),
    ("missing index", ["search", "{model}", "{Q}", "--index", "{folder}/nope.npz", "-o", "{out}"], "index not found"),
    ("not an index", ["search", "{model}", "{Q}", "--index", "{X}", "-o", "{out}"], "is not an index written by"),
    ("other model", ["search", "{other}", "{Q}", "--index", "{index}", "-o", "{out}"], "not built with the codebooks"),
    ("codes + index", ["search", "{model}", "{Q}", "--index", "{index}", "--database-codes", "-o", "{out}"],
     "does not apply to --index"),
    ("index suffix", ["index", "{model}", "{X}", "-o", "{folder}/index.npy"], "one .npz file or as a directory"),
    ("ids + npy", ["search", "{model}", "{X}", "{Q}", "--ids", "{names}", "-o", "{out}"], "'.npy' is not a format"),
    ("ids count", ["search", "{model}", "{Q}", "{Q}", "--ids", "{names}", "-o", "{table}"], "names 500 items, but there are 30"),
    ("no db labels", ["evaluate", "{model}", "{X}", "{Q}", "--query-labels", "{yq}"], "--database-labels is required"),
    ("unlabelled index", ["evaluate", "{model}", "{Q}", "--index", "{bare}", "--query-labels", "{yq}"], "holds no labels"),
    ("query labels", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{y}"], "500 labels in"),
    ("depth", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{yq}", "-k", "501"], "larger than"),
    ("results suffix", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{yq}", "-o", "{out}"],
     "use a name ending in .json or .csv"),
]


@pytest.fixture(scope="module")
def other_files(model_file, data):
    """A model with other codebooks, an index without labels, 500 item names."""
    folder, files, _ = data
    other, bare, names = folder / "other.skdqn", folder / "bare.npz", folder / "names.txt"
    assert main(["fit", files["X"], files["y"], "-o", str(other), *FAST, "--seed", "1"]) == 0
    assert main(["index", model_file, files["X"], "-o", str(bare)]) == 0
    names.write_text("".join(f"img_{i:03d}.png\n" for i in range(500)))
    return {"other": str(other), "bare": str(bare), "names": str(names)}


@pytest.mark.parametrize("case, argv, message", INDEX_ERRORS, ids=[c[0] for c in INDEX_ERRORS])
def test_index_search_evaluate_errors(case, argv, message, data, model_file, index_file, other_files, tmp_path, capsys):
    folder, files, _ = data
    names = {**files, **other_files, "folder": str(folder), "model": model_file, "index": index_file,
             "out": str(tmp_path / "out.npy"), "table": str(tmp_path / "table.csv")}
    capsys.readouterr()
    assert main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"skdqn {argv[0]}: error: ") and message in err, err
    assert "\n" not in err
    assert not os.listdir(tmp_path)


def test_search_ids_write_a_table_naming_items(model_file, index_file, other_files, data, tmp_path):
    import csv

    _, files, _ = data
    query_names = tmp_path / "queries.txt"
    query_names.write_text("".join(f"query, {i}\n" for i in range(30)))  # a comma, quoted in the CSV
    table, nn, dist = str(tmp_path / "results.csv"), str(tmp_path / "nn.npy"), str(tmp_path / "dist.npy")
    argv = ["search", model_file, "--index", index_file, files["Q"], "-k", "3"]
    assert main([*argv, "--ids", other_files["names"], "--query-ids", str(query_names), "-o", table]) == 0
    assert main([*argv, "-o", nn, "--distances", dist]) == 0
    ind, distances = np.load(nn), np.load(dist)
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["query", "rank", "id", "distance"] and len(rows) == 1 + 30 * 3
    for q, rank, name, d in rows[1:]:
        i, r = int(q.split(", ")[1]), int(rank)
        assert name == f"img_{ind[i, r - 1]:03d}.png"
        assert float(d) == pytest.approx(distances[i, r - 1], rel=1e-5)
    # Without names for the queries, the query column holds their row numbers; .txt is tab-separated.
    txt = tmp_path / "results.txt"
    assert main([*argv, "--database-ids", other_files["names"], "-o", str(txt)]) == 0
    first = txt.read_text().splitlines()[1].split("\t")
    assert first[:3] == ["0", "1", f"img_{ind[0, 0]:03d}.png"]


def test_evaluate_reports_map_map_at_k_and_precision_at_k(model_file, index_file, data, tmp_path, capsys):
    import json

    from skdqn.metrics import precision_at_k

    _, files, arrays = data
    model = load_model(model_file)
    y_q = np.load(files["yq"])
    reference = AQDNeighbors(codebooks=model).fit(model.transform(arrays["X"]), arrays["y"])
    Z_q = model.transform(arrays["Q"])
    out = tmp_path / "results.json"
    argv = ["evaluate", model_file, files["X"], files["Q"], "--database-labels", files["y"],
            "--query-labels", files["yq"], "-k", "5", "20", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "evaluated 30 queries against 500 items" in printed and "precision@20" in printed
    results = json.loads(out.read_text())
    assert results["n_queries"] == 30 and results["n_database"] == 500
    assert results["MAP"] == pytest.approx(reference.score(Z_q, y_q))
    assert results["MAP@5"] == pytest.approx(reference.score(Z_q, y_q, top_k=5))
    ranking = reference.kneighbors(Z_q, n_neighbors=20, return_distance=False)
    assert results["precision@20"] == pytest.approx(precision_at_k(y_q, arrays["y"], ranking, k=20))
    assert results["MAP"] != results["MAP@5"]  # the depths are really used
    # The saved index (labels saved with it) gives the same numbers; CSV output.
    csv_out = tmp_path / "results.csv"
    argv = ["evaluate", model_file, "--index", index_file, files["Q"], "--query-labels", files["yq"],
            "-k", "5", "20", "-o", str(csv_out)]
    assert main(argv) == 0
    rows = dict(line.split(",") for line in csv_out.read_text().splitlines()[1:])
    assert float(rows["MAP"]) == pytest.approx(results["MAP"])
    assert float(rows["precision@5"]) == pytest.approx(results["precision@5"])


def test_evaluate_default_depths_and_labels_for_an_unlabelled_index(model_file, other_files, data, capsys):
    _, files, _ = data
    argv = ["evaluate", model_file, "--index", other_files["bare"], files["Q"],
            "--query-labels", files["yq"], "--database-labels", files["y"]]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        "MAP", "MAP@10", "MAP@100", "precision@10", "precision@100"
    ]


def test_an_extra_argument_is_a_usage_error_of_the_command(data, capsys):
    _, files, _ = data
    with pytest.raises(SystemExit) as exc:
        main(["search", "model.skdqn", files["X"], files["Q"], "surplus.npy", "-o", "out.npy"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: skdqn search" in err and "unrecognized arguments: surplus.npy" in err


def test_evaluate_normalize_all_divides_by_every_relevant_item(model_file, index_file, data, capsys):
    _, files, arrays = data
    model = load_model(model_file)
    index = AQDNeighbors.load(index_file)
    Z_q, y_q = model.transform(arrays["Q"]), np.load(files["yq"])
    argv = ["evaluate", model_file, "--index", index_file, files["Q"], "--query-labels", files["yq"], "-k", "5"]
    assert main([*argv, "--normalize", "all"]) == 0
    values = dict(line.split() for line in capsys.readouterr().out.splitlines()[1:])
    assert float(values["MAP@5"]) == pytest.approx(index.score(Z_q, y_q, top_k=5, normalize="all"), abs=1e-4)
    assert float(values["MAP@5"]) < index.score(Z_q, y_q, top_k=5) - 0.1  # 5 of ~50 relevant items
