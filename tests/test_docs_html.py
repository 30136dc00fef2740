"""The documentation build's check of its HTML (docs/_htmlcheck.py, run by docs/conf.py).

The reST inputs below are the two mistakes docs/cli.rst once had, which
docutils renders without a warning.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

UNCLOSED = """\
An option left out keeps its default. ``--seed defaults to 0, so that two runs
give the same model. ``--device`` is ``auto`` (CUDA when available).
"""
CLOSED = UNCLOSED.replace("``--seed defaults", "``--seed`` defaults")
SWALLOWED = """\
Title
=====

Model files of older versions are still read by ``load_model``.
``skdqn encode``
----------------

Writes the codes.
"""
SEPARATE = SWALLOWED.replace("``load_model``.\n", "``load_model``.\n\n")


def _module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def htmlcheck():
    return _module("skdqn_docs_htmlcheck", DOCS / "_htmlcheck.py")


def _render(rst):
    from docutils.core import publish_string
    from docutils.writers.html5_polyglot import Writer

    return publish_string(rst, writer=Writer(), settings_overrides={"report_level": 5}).decode()


def test_an_unclosed_literal_is_refused(htmlcheck):
    problems = htmlcheck.check_html(_render(UNCLOSED), "cli.html")
    assert len(problems) == 1 and "raw markup (two backquotes)" in problems[0]
    assert "``--device" in problems[0] and problems[0].startswith("cli.html: ")
    assert htmlcheck.check_html(_render(CLOSED), "cli.html") == []


def test_a_heading_swallowed_into_a_paragraph_is_refused(htmlcheck):
    problems = htmlcheck.check_html(_render(SWALLOWED), "cli.html")
    assert len(problems) == 1 and "section title swallowed" in problems[0]
    assert "skdqn encode ----" in problems[0]
    html = _render(SEPARATE)
    assert "<h2" in html or "<h1" in html  # a real section now
    assert htmlcheck.check_html(html, "cli.html") == []


def test_backquotes_in_code_blocks_and_rules_outside_paragraphs_are_allowed(htmlcheck):
    html = (
        "<pre>x = '``'  # ----</pre><script>var a = '``';</script>"
        "<table><tr><td>----</td></tr></table><p>a - b -- c --- d</p>"
    )
    assert htmlcheck.check_html(html) == []


def test_math_from_the_network_is_refused(htmlcheck):
    cdn = '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    protocol_relative = '<script src="//cdnjs.cloudflare.com/ajax/libs/KaTeX/0.16.9/katex.min.js"></script>'
    math = '<div class="math notranslate nohighlight">\\[x^2\\]</div>'
    assert htmlcheck.check_html(cdn + math, "ug.html") == [
        "ug.html: loads math from the network: https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    ]
    assert len(htmlcheck.check_html(protocol_relative)) == 1
    # Other remote scripts (sphinx-gallery's table sorter) are not math.
    assert htmlcheck.check_html('<script src="https://code.jquery.com/jquery-3.7.0.js"></script>') == []


def test_math_needs_its_local_script(htmlcheck):
    local = '<script defer src="_static/mathjax/tex-chtml.js?v=1"></script>'
    math = '<span class="math notranslate nohighlight">\\(x\\)</span>'
    seen = []

    def exists(src):
        seen.append(src)
        return src == "_static/mathjax/tex-chtml.js"

    assert htmlcheck.check_html(local + math, "ug.html", exists) == []
    assert seen == ["_static/mathjax/tex-chtml.js"]  # the query string is not part of the file name
    missing = htmlcheck.check_html(local + math, "ug.html", lambda src: False)
    assert len(missing) == 1 and "shows math but no MathJax script" in missing[0]
    assert len(htmlcheck.check_html(math, "ug.html", exists)) == 1  # no script at all
    assert htmlcheck.check_html(local, "ug.html", lambda src: False) == []  # no math: nothing needed


def test_the_build_fails_on_a_bad_page_and_passes_a_good_one(tmp_path, monkeypatch):
    pytest.importorskip("sphinx")
    from sphinx.errors import ExtensionError

    monkeypatch.syspath_prepend(str(DOCS))
    conf = _module("skdqn_docs_conf_html", DOCS / "conf.py")
    assert "sphinx-mathjax-offline" in conf.extensions  # MathJax shipped with the build

    class App:
        outdir = tmp_path

        class builder:  # noqa: N801 - the attribute Sphinx's app has
            format = "html"

    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "good.html").write_text("<p>Fine <code>fit</code>.</p>", encoding="utf-8")
    conf._check_built_html(App, None)
    (tmp_path / "api" / "bad.html").write_text(_render(UNCLOSED), encoding="utf-8")
    with pytest.raises(ExtensionError, match="1 problem"):
        conf._check_built_html(App, None)
    conf._check_built_html(App, RuntimeError("the build failed already"))  # nothing to check then
    sys.modules.pop("_htmlcheck", None)


def test_the_docs_extra_installs_offline_math():
    setup = (DOCS.parent / "setup.py").read_text(encoding="utf-8")
    docs_extra = setup[setup.index('"docs": ['):]
    assert '"sphinx-mathjax-offline' in docs_extra[: docs_extra.index("]")]
