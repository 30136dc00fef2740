"""The example gallery: format checks always, execution on request.

The documentation build (``python -m sphinx -W -b html docs docs/_build/html``)
executes every example with sphinx-gallery. Running them all here as well
would take a few minutes on a small CPU, so by default this file only checks
what the gallery build needs (a title, ``# %%`` cells, valid Python, no
network access). Set ``SKDQN_RUN_EXAMPLES=1`` to also run each example as a
plain script, as a user would (``python examples/plot_x.py``).
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("plot_*.py"))
EXPECTED = {
    "plot_quickstart.py",
    "plot_lam_selection.py",
    "plot_code_length.py",
    "plot_precision_recall.py",
    "plot_retrieval_gallery.py",
    "plot_search_speed.py",
    "plot_custom_backbone.py",
    "plot_large_index.py",
    "plot_images_end_to_end.py",
    "plot_ivf_recall.py",
}
RUN = os.environ.get("SKDQN_RUN_EXAMPLES", "") not in ("", "0")

pytestmark = pytest.mark.skipif(not EXAMPLES_DIR.is_dir(), reason="no examples/ folder")


def test_the_gallery_is_complete():
    assert {p.name for p in EXAMPLES} >= EXPECTED
    assert (EXAMPLES_DIR / "README.txt").is_file()  # the gallery header sphinx-gallery needs
    header = (EXAMPLES_DIR / "README.txt").read_text()
    assert re.search(r"^Examples\n=+\n", header, re.MULTILINE)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_format(path):
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    doc = ast.get_docstring(tree, clean=False)
    assert doc, "a sphinx-gallery example starts with a docstring"
    lines = doc.strip("\n").splitlines()
    # Title over- and underlined with "=", at least as long as the title.
    if set(lines[0]) == {"="}:
        lines = lines[1:]
    title, underline = lines[0], lines[1]
    assert title.strip() and set(underline) == {"="} and len(underline) >= len(title)
    assert "# %%" in source, "cells are separated by '# %%' lines"
    # Offline only: scikit-learn's embedded digits, no downloads.
    assert not re.search(r"\bfetch_|urlopen|urlretrieve|requests\.|load_fashion_mnist", source)
    assert "plt.show()" in source


@pytest.mark.skipif(not RUN, reason="set SKDQN_RUN_EXAMPLES=1 to run the examples")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_as_a_script(path, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
