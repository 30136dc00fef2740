"""Checks of the built HTML: math rendered offline, and no reST markup shown raw.

The documentation build runs :func:`check_build` when it finishes (a
``build-finished`` hook in ``conf.py``): a problem fails the build, with the
page and the offending text. It can also be run on a built tree::

    python docs/_htmlcheck.py docs/_build/html

What is refused, on every page:

* **math from the network**: a MathJax or KaTeX ``<script>`` whose ``src``
  is a URL (``http://``, ``https://`` or ``//``), e.g. from a CDN, which an
  offline reader (an air-gapped site) never gets, and then reads raw LaTeX;
  and a page holding math whose MathJax/KaTeX script is missing from the
  build (other scripts are not checked: sphinx-gallery's timing pages load
  their table sorter from a CDN and show the table without it);
* **raw markup**: two backquotes in the rendered text (outside code
  blocks), which is what an unclosed inline literal (a whole sentence
  rendered as code), or a literal docutils did not recognise, leaves;
* **a swallowed heading**: a paragraph holding a section underline (a run
  of ``=``, ``-``, ``~``, ... ), which is what a title without a blank line
  before it becomes: the text of the paragraph, missing from the page's
  contents.

Docutils warns about none of these (each is valid reST), hence this check.
"""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["check_html", "check_build"]

_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_MATH_SCRIPT = re.compile(r"mathjax|katex|tex-(?:chtml|svg|mml)", re.IGNORECASE)
# A reST section adornment: four or more of one punctuation character, alone between
# spaces ("." and ":" left out: an ellipsis before a full stop is prose).
_UNDERLINE = re.compile(r"(?:^|\s)([=\-~^\"'`*+#_])\1{3,}(?=\s|$)")
_RAW_TEXT = ("pre", "script", "style", "textarea")  # text that is shown (or run) as written


class _Page(HTMLParser):
    """Collects a page's scripts, its math markers, and its text with the elements around it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts = []  # src of every <script src=...>
        self.has_math = False
        self.text = []  # text shown as prose, a text node at a time
        self.paragraphs = []  # the whole text of each <p>
        self._stack = []
        self._paragraph = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if "math" in (attrs.get("class") or "").split():
            self.has_math = True
        if tag == "p" and self._paragraph is None:
            self._paragraph = []
        if tag not in ("br", "img", "meta", "link", "input", "hr", "source", "wbr"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if self._paragraph is not None and "p" not in self._stack:
            self.paragraphs.append("".join(self._paragraph))
            self._paragraph = None

    def handle_data(self, data):
        if any(tag in _RAW_TEXT for tag in self._stack):
            return
        if data.strip():
            self.text.append(data)
        if self._paragraph is not None:
            self._paragraph.append(data)


def check_html(html, name="page", exists=None):
    """Problems of one built HTML page, as ``["name: ...", ...]`` (empty when none).

    Parameters
    ----------
    html : str
        The page.
    name : str, default="page"
        Its name in the messages.
    exists : callable, default=None
        ``exists(src) -> bool`` for a local script's ``src`` (relative to the
        page); None skips the check that a page with math has its MathJax
        script.

    Returns
    -------
    problems : list of str

    Examples
    --------
    >>> check_html('<p>Use <code>``fit``</code> first.</p>', "cli.html")
    ['cli.html: raw markup (two backquotes) in the text: "``fit``"']
    >>> check_html('<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>', "a.html")
    ['a.html: loads math from the network: https://cdn.example.org/mathjax/tex-chtml.js']
    """
    page = _Page()
    page.feed(html)
    page.close()
    problems = [
        f"{name}: loads math from the network: {src}"
        for src in page.scripts if _REMOTE.match(src) and _MATH_SCRIPT.search(src)
    ]
    if page.has_math and exists is not None:
        local = [src for src in page.scripts if _MATH_SCRIPT.search(src) and not _REMOTE.match(src)]
        if not any(exists(src.split("?")[0].split("#")[0]) for src in local):
            problems.append(f"{name}: shows math but no MathJax script of the build loads it (found {local})")
    for text in page.text:
        if "``" in text:
            problems.append(f'{name}: raw markup (two backquotes) in the text: "{" ".join(text.split())[:80]}"')
    for text in page.paragraphs:
        if _UNDERLINE.search(text):
            problems.append(
                f'{name}: a section title swallowed into a paragraph: "{" ".join(text.split())[-80:]}"'
            )
    return problems


def check_build(outdir):
    """Problems of every ``.html`` page under ``outdir`` (see :func:`check_html`).

    Examples
    --------
    >>> import tempfile
    >>> check_build(tempfile.mkdtemp())
    []
    """
    outdir = Path(outdir)
    problems = []
    for path in sorted(outdir.rglob("*.html")):
        folder = path.parent

        def exists(src, folder=folder):
            return (folder / src).resolve().is_file()

        problems += check_html(path.read_text(encoding="utf-8"), str(path.relative_to(outdir)), exists)
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/_htmlcheck.py BUILT_HTML_DIR")
    found = check_build(sys.argv[1])
    print("\n".join(found) or "no problems")
    sys.exit(1 if found else 0)
