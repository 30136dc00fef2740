"""The documentation's code runs as written, and the install page matches setup.py.

Every ``.. code-block:: python`` of the user guide runs alone, in a fresh
namespace and an empty working directory: it defines every name it uses. The
quickstart is one walk-through: a block whose first line is
``# continues the block above`` runs after the blocks before it, in their
namespace, as a reader pasting them in order would; any other block runs
alone too.
"""

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONTINUES = "# continues the block above"


def python_blocks(path):
    """``[(line, code), ...]``: the ``.. code-block:: python`` directives of an RST file, dedented."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != ".. code-block:: python":
            i += 1
            continue
        start, i = i + 1, i + 1
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(":")):
            i += 1  # the directive's options and the blank line
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
            body.append(lines[i][4:])
            i += 1
        blocks.append((start, "\n".join(body).strip("\n") + "\n"))
    return blocks


PAGES = {"user_guide": python_blocks(DOCS / "user_guide.rst"), "quickstart": python_blocks(DOCS / "quickstart.rst")}
CASES = [(page, k) for page, blocks in PAGES.items() for k in range(len(blocks))]


@lru_cache(maxsize=None)
def _namespace(page, k):
    """Run block ``k`` of ``page`` (after the blocks it continues) and return its namespace."""
    line, code = PAGES[page][k]
    namespace = dict(_namespace(page, k - 1)) if code.startswith(CONTINUES) and k > 0 else {"__name__": "__main__"}
    exec(compile(code, f"docs/{page}.rst, block at line {line}", "exec"), namespace)  # noqa: S102 - our docs
    return namespace


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One empty working directory for the blocks (they write index.npz, images/ ...)."""
    return tmp_path_factory.mktemp("snippets")


def test_the_pages_have_blocks():
    assert len(PAGES["user_guide"]) >= 10 and len(PAGES["quickstart"]) >= 5
    for page, blocks in PAGES.items():
        for line, code in blocks:
            ast.parse(code)  # a block cut short by the extraction would not parse


def test_user_guide_blocks_continue_none():
    assert not [line for line, code in PAGES["user_guide"] if code.startswith(CONTINUES)]


@pytest.mark.parametrize("page, k", CASES, ids=[f"{page}-{k}" for page, k in CASES])
def test_block_runs_as_pasted(page, k, workdir, monkeypatch):
    try:  # no snippet draws; should one, it must not open a window
        import matplotlib
    except ImportError:
        pass
    else:
        matplotlib.use("Agg")
    monkeypatch.chdir(workdir)
    _namespace(page, k)


def _extras_from_setup():
    """``{extra: {package name, ...}}`` as setup.py's extras_require lists them."""
    tree = ast.parse((DOCS.parent / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            extras = ast.literal_eval(node.value)
            return {name: {re.split(r"[<>=!~ ;]", req)[0] for req in reqs} for name, reqs in extras.items()}
    raise AssertionError("no extras_require in setup.py")


def _extras_from_install_page():
    """``{extra: text of its Installs cell}`` from the list-table of docs/install.rst."""
    text = (DOCS / "install.rst").read_text(encoding="utf-8")
    rows = re.findall(r"\* - ``(\w+)``\n\s+- (.+(?:\n\s{7}(?!- ).+)*)", text)
    return {name: " ".join(cell.split()) for name, cell in rows}


def test_install_page_lists_every_extra_and_what_it_installs():
    from_setup, from_page = _extras_from_setup(), _extras_from_install_page()
    assert set(from_page) == set(from_setup)
    for name, packages in from_setup.items():
        listed = {p.strip(" .") for p in re.split(r",| and ", from_page[name])}
        assert listed == packages, (name, listed, packages)


def _conf():
    """docs/conf.py as a module (it imports skdqn and matplotlib, nothing else of note)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("skdqn_docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstrings_lose_their_email_addresses_and_the_build_refuses_mailto(monkeypatch):
    from docutils.core import publish_doctree
    from sphinx.util import logging

    conf = _conf()
    lines = ["Rank depth (MAP@top_k), ``MAP@k`` and `a@b` stay literal", ">>> a @ b, x@y"]
    conf._escape_email_like(None, "method", "score", None, {}, lines)
    assert lines == ["Rank depth (MAP\\@top_k), ``MAP@k`` and `a@b` stay literal", ">>> a @ b, x@y"]
    assert "mailto:" not in str(publish_doctree(lines[0]))

    warnings = []

    class Logger:
        def warning(self, message, location=None):
            warnings.append(message)

    monkeypatch.setattr(logging, "getLogger", lambda name: Logger())
    conf._refuse_mailto(None, publish_doctree("MAP@1000 of the table"), "results")
    assert len(warnings) == 1 and "'MAP@1000' became a mailto: link" in warnings[0]
    conf._refuse_mailto(None, publish_doctree("MAP\\@1000 of the table"), "results")
    assert len(warnings) == 1
