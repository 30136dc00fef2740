"""Sphinx configuration for the skdqn documentation.

Build (from the repository root)::

    pip install ".[docs]"
    python -m sphinx -W -b html docs docs/_build/html

The example gallery (``examples/plot_*.py``) is executed during the build by
sphinx-gallery; everything runs offline (the examples use scikit-learn's
embedded digits data set). Intersphinx is not enabled: the build must not
need the network.
"""

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

HERE = Path(__file__).resolve().parent
# Document the checkout the docs belong to, even if another skdqn is installed;
# _gallery.py (sphinx-gallery helpers) sits next to this file.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import skdqn  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "skdqn"
author = "the skdqn developers"
copyright = "the skdqn developers, BSD-3-Clause"  # noqa: A001 - Sphinx's name
release = skdqn.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax from the build itself (copied into _static/mathjax), not from a CDN:
    # the math renders offline. The package's name is its module's name.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
# docs/results/ holds fragments that results.rst includes; they are not pages.
exclude_patterns = ["_build", "results", "**.ipynb_checkpoints"]
root_doc = "index"
nitpicky = False
default_role = "literal"
pygments_style = "sphinx"

# -- autodoc / autosummary / numpydoc -------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
# numpydoc renders the Parameters/Returns sections; autosummary lists members.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False  # no intersphinx: nothing to link types to

# -- sphinx-gallery ----------------------------------------------------------------


sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "_gallery.ExampleOrder",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "download_all_examples": False,
    "doc_module": ("skdqn",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skdqn": None},
    # matplotlib's defaults, then readable figures (150 dpi, larger fonts), then one torch thread.
    "reset_modules": ("matplotlib", "_gallery.matplotlib_style", "_gallery.reset_torch_threads"),
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
}

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"skdqn {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# No primary sidebar on the top-level pages: it would be empty and narrow their code blocks.
html_sidebars = {
    page: []
    for page in ("install", "quickstart", "user_guide", "cli", "results", "architecture", "changelog")
}
html_show_sourcelink = False
html_copy_source = False

# -- Hooks -------------------------------------------------------------------

# scikit-learn adds set_{method}_request methods to estimators whose methods
# take extra arguments; their docstrings point into scikit-learn's own docs
# (glossary terms, user guide labels) that do not exist here.
_SKIP = re.compile(r"^set_\w+_request$")


def _skip_member(app, what, name, obj, skip, options):
    if _SKIP.match(name):
        return True
    return skip


# docutils turns "word@word" into an e-mail address (a mailto: link): "MAP@k" in a
# docstring would become one. Outside literals, the "@" is escaped.
_EMAIL_LIKE = re.compile(r"(?<=\w)@(?=\w)")
_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_email_like(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")):
            continue
        parts = _LITERAL.split(line)
        parts[::2] = [_EMAIL_LIKE.sub(r"\\@", part) for part in parts[::2]]
        lines[i] = "".join(parts)


def _refuse_mailto(app, doctree, docname):
    """Warn (an error with -W) on any mailto: link: skdqn's docs have no e-mail addresses."""
    from docutils import nodes
    from sphinx.util import logging

    for node in doctree.findall(nodes.reference):
        if node.get("refuri", "").startswith("mailto:"):
            logging.getLogger(__name__).warning(
                f"{node.astext()!r} became a mailto: link; write it as a literal (``...``) or escape "
                "the @ (\\@)", location=node,
            )


def _check_built_html(app, exc):
    """Fail the build on HTML that loads math from the network or shows raw reST markup.

    See ``_htmlcheck.py``; docutils warns about none of these. Runs after the
    other ``build-finished`` handlers (MathJax is copied by one of them).
    """
    if exc is not None or app.builder.format != "html":
        return
    from sphinx.errors import ExtensionError
    from sphinx.util import logging

    import _htmlcheck

    problems = _htmlcheck.check_build(app.outdir)
    for problem in problems:
        logging.getLogger(__name__).warning(problem)
    if problems:
        raise ExtensionError(f"the built HTML has {len(problems)} problem(s); see the warnings above")


def setup(app):
    app.connect("build-finished", _check_built_html, priority=900)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _escape_email_like, priority=600)  # after numpydoc
    app.connect("doctree-resolved", _refuse_mailto)
