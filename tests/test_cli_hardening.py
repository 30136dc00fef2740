"""The command line never overwrites its inputs, and every error is one line without a traceback."""

import hashlib
import os

import numpy as np
import pytest

from skdqn.cli import main

FAST = ["--M", "2", "--K", "16", "--epochs", "1", "--n-components", "8", "--hidden-layer-sizes", "16"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Small valid files: X, y, queries and their labels, a model, an index with labels."""
    folder = tmp_path_factory.mktemp("cli_good")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 12))
    files = {name: str(folder / f"{name}.npy") for name in ("X", "y", "Q", "yq")}
    np.save(files["X"], X)
    np.save(files["y"], np.arange(120) % 3)
    np.save(files["Q"], X[:7])
    np.save(files["yq"], np.arange(7) % 3)
    (folder / "yq.csv").write_text("".join(f"{i % 3}\n" for i in range(7)))
    files["yq_csv"] = str(folder / "yq.csv")
    files["model"] = str(folder / "model.skdqn")
    assert main(["fit", files["X"], files["y"], "-o", files["model"], *FAST]) == 0
    files["index"] = str(folder / "index.npz")
    assert main(["index", files["model"], files["X"], "-o", files["index"], "--labels", files["y"]]) == 0
    files["index_dir"] = str(folder / "index_dir")
    assert main(["index", files["model"], files["X"], "-o", files["index_dir"]]) == 0
    os.symlink(files["X"], folder / "link_to_X.npy")
    files["link"] = str(folder / "link_to_X.npy")
    files["folder"] = str(folder)
    return files


def _digests(files):
    out = {}
    for name, path in files.items():
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


ALIASES = [
    ("fit -o X", ["fit", "{X}", "{y}", "-o", "{X}"], "is the input X"),
    ("fit -o y", ["fit", "{X}", "{y}", "-o", "{y}"], "is the input Y"),
    ("fit -o link to X", ["fit", "{X}", "{y}", "-o", "{link}"], "is the input X"),
    ("index -o model", ["index", "{model}", "{X}", "-o", "{model}"], "is the input MODEL"),
    ("index -o index dir holding the model", ["index", "{model}", "{X}", "-o", "{folder}"], "is the input MODEL"),
    ("encode -o X", ["encode", "{model}", "{Q}", "-o", "{Q}"], "is the input X"),
    ("search -o queries", ["search", "{model}", "{X}", "{Q}", "-o", "{Q}"], "is the input QUERIES"),
    ("search --distances database", ["search", "{model}", "{X}", "{Q}", "-o", "{out}", "--distances", "{X}"],
     "is the input DATABASE"),
    ("search -o = --distances", ["search", "{model}", "{X}", "{Q}", "-o", "{out}", "--distances", "{out}"],
     "are the same file"),
    ("search --index -o index", ["search", "{model}", "{Q}", "--index", "{index}", "-o", "{index}"],
     "is the input INDEX"),
    ("search -o inside a directory index", ["search", "{model}", "{Q}", "--index", "{index_dir}", "-o",
                                            "{index_dir}/out.npy"], "is the input INDEX"),
    ("evaluate -o labels", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{yq_csv}",
                            "-o", "{yq_csv}"], "is the input QUERY-LABELS"),
]


@pytest.mark.parametrize("case, argv, message", ALIASES, ids=[c[0] for c in ALIASES])
def test_an_output_that_is_an_input_or_another_output_is_refused_first(case, argv, message, good, tmp_path, capsys):
    before = _digests(good)
    out = str(tmp_path / "out.npy")
    capsys.readouterr()
    assert main([arg.format(**good, out=out) for arg in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"skdqn {argv[0]}: error: ") and message in err, err
    assert "\n" not in err
    assert _digests(good) == before  # no input touched
    assert not os.listdir(tmp_path)  # refused before any work: nothing written


# ------------------------------------------------------- bad input files, every slot of every command
def _write_bad(folder, kind):
    """A bad input file of ``kind``; returns its path."""
    path = folder / f"{kind}.npy"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(64))
    elif kind == "object npz":
        path = folder / "object.npz"
        np.savez(path, a=np.array([{"x": 1}, None], dtype=object))
    elif kind == "nan":
        np.save(path, np.full((120, 12), np.nan))
    elif kind == "continuous":
        np.save(path, np.linspace(0, 1, 120))
    elif kind == "3-D":
        np.save(path, np.zeros((120, 3, 4)))
    elif kind == "words":
        path = folder / "words.csv"
        path.write_text("a,b,c\nd,e,f\n")
    elif kind == "forged shape":
        np.save(path, np.zeros(4))
        data = path.read_bytes().replace(b"(4,)", b"(4000000000000,)".ljust(4))
        path.write_bytes(data)
    elif kind == "directory":
        path = folder / "adir"
        path.mkdir()
    return str(path)


BAD_KINDS = ["empty", "garbage", "object npz", "nan", "continuous", "3-D", "words", "forged shape", "directory"]
SLOTS = [
    ("fit", "X", ["fit", "{X}", "{y}", "-o", "{out_model}", *FAST]),
    ("fit", "y", ["fit", "{X}", "{y}", "-o", "{out_model}", *FAST]),
    ("encode", "model", ["encode", "{model}", "{Q}", "-o", "{out}"]),
    ("encode", "X", ["encode", "{model}", "{Q}", "-o", "{out}"]),
    ("index", "model", ["index", "{model}", "{X}", "-o", "{out_index}"]),
    ("index", "database", ["index", "{model}", "{X}", "-o", "{out_index}"]),
    ("index", "labels", ["index", "{model}", "{X}", "--labels", "{y}", "-o", "{out_index}"]),
    ("search", "database", ["search", "{model}", "{X}", "{Q}", "-o", "{out}"]),
    ("search", "queries", ["search", "{model}", "{X}", "{Q}", "-o", "{out}"]),
    ("search", "index", ["search", "{model}", "{Q}", "--index", "{index}", "-o", "{out}"]),
    ("evaluate", "query labels", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{yq}"]),
    ("evaluate", "database labels", ["evaluate", "{model}", "{Q}", "--index", "{index}", "--query-labels", "{yq}",
                                     "--database-labels", "{y}"]),
]
_SLOT_KEY = {"X": "X", "y": "y", "model": "model", "database": "X", "labels": "y", "queries": "Q",
             "index": "index", "query labels": "yq", "database labels": "y"}


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("command, slot, argv", SLOTS, ids=[f"{c}-{s}" for c, s, _ in SLOTS])
def test_every_bad_input_file_is_one_line_without_traceback(command, slot, argv, kind, good, tmp_path, capsys):
    files = dict(good)
    key = _SLOT_KEY[slot]
    if command == "encode" and slot == "X":
        key = "Q"
    files[key] = _write_bad(tmp_path, kind)
    outs = {"out": str(tmp_path / "out.npy"), "out_model": str(tmp_path / "m.skdqn"),
            "out_index": str(tmp_path / "i.npz")}
    capsys.readouterr()
    status = main([arg.format(**files, **outs) for arg in argv])
    err = capsys.readouterr().err.strip()
    if kind == "continuous" and slot in ("y", "labels", "query labels"):
        return  # numbers are valid class labels there (one class each): nothing to refuse
    assert status in (1, 2), (status, err)
    assert err.startswith(f"skdqn {command}: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    assert not any(os.path.exists(p) for p in outs.values())
