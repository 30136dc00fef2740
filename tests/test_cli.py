"""The command line, through main(argv) and as a subprocess."""

import os
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


@pytest.fixture(scope="module")
def pipeline_file(data):
    """A model file as the older ``skdqn fit`` wrote it: a StandardScaler, then the quantizer."""
    from sklearn.preprocessing import StandardScaler

    from skdqn._model_io import save_model

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
    assert "saved DeepQuantizer to" in capsys.readouterr().out
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
    names = {**files, **bad_files, "folder": str(folder), "model": model_file, "out": str(tmp_path / "out")}
    assert main([arg.format(**names) for arg in argv]) == status
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(f"skdqn {argv[0]}: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("command", ["fit", "encode", "search"])
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
