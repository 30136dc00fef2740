"""The package's shape: no import circle between its modules, lazy imports included."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skdqn"


def _name(path):
    """Dotted module name below skdqn: ``_pq``, ``search._kernels``, ``cli`` (a package's ``__init__``)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or ["__init__"]
    return ".".join(parts)


def _imports(path, modules):
    """The package modules ``path`` imports, at module level or inside a function (relative imports resolved)."""
    name = _name(path)
    package = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            stem = base + (node.module.split(".") if node.module else [])
            candidates = [".".join(stem + [a.name]) for a in node.names] if not node.module else []
            hits = [c for c in candidates if c in modules]
            found.update(hits or [".".join(stem) if stem else "__init__"])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "skdqn":
            found.add(".".join(node.module.split(".")[1:]) or "__init__")
        elif isinstance(node, ast.Import):
            found.update(".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("skdqn."))
    return found - {name}


def _graph():
    modules = {_name(p) for p in PACKAGE.rglob("*.py")}
    return {_name(p): _imports(p, modules) & modules for p in PACKAGE.rglob("*.py")}


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_modules():
    graph = _graph()
    assert {"search._kernels", "search._torch_kernel", "search._scan", "search._topk", "io._model_io", "_quantizer"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize(
    "module, never",
    [
        ("search._topk", {"search._kernels", "search._torch_kernel", "search._ivf", "search._search",
                          "search._scan"}),  # what scans keep
        ("search._scan", {"search._kernels", "search._torch_kernel", "search._ivf", "search._search"}),
        ("search._kernels", {"search._torch_kernel", "search._search", "search._ivf"}),
        ("search._torch_kernel", {"search._search", "search._ivf"}),
        ("io._model_io", {"_quantizer", "_neighbors"}),  # formats never build estimators' modules
        ("io._index_io", {"_quantizer", "_neighbors"}),
        ("search._index", {"_quantizer", "_neighbors"}),  # the fitted index knows no estimator
        ("training._data", {"_quantizer", "_neighbors"}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(module, never):
    assert not _graph()[module] & never



def test_the_layout_shows_the_layers():
    """Core modules (``_pq``, ``_validation``, ...) import no sub-package; sub-packages import no estimator or CLI."""
    graph = _graph()
    estimators = {"_neighbors", "_quantizer", "_retriever", "cli", "__init__", "__main__"}
    for module, imported in graph.items():
        package = module.split(".")[0] if "." in module else ""
        if package in ("search", "io", "training"):
            assert not imported & estimators, (module, imported & estimators)
        elif module not in estimators | {"metrics", "datasets"}:  # a core module
            assert not {m for m in imported if "." in m}, (module, imported)


def _fitted_attributes_written(path, allowed=("self", "scaler")):
    """``(line, target)`` of assignments to a fitted attribute (``x.name_``) of anything but ``allowed``.

    ``scaler``: the model format rebuilds scikit-learn's fitted StandardScaler
    (one of the parts it returns), not one of skdqn's estimators.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                if (isinstance(item, ast.Attribute) and item.attr.endswith("_") and not item.attr.endswith("__")
                        and not (isinstance(item.value, ast.Name) and item.value.id in allowed)):
                    found.append((node.lineno, ast.unparse(item)))
    return found


def test_only_estimators_write_their_fitted_state():
    """Formats, data sources and the CLI return parts; the estimator sets its own attributes."""
    for module in ("io/_model_io", "io/_index_io", "training/_data", "cli/__init__", "search/_index",
                   "training/_distributed", "io/_faiss"):
        assert _fitted_attributes_written(PACKAGE / f"{module}.py") == [], module


def test_the_fitted_state_check_finds_a_write(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f(dq):\n    dq.codes_, other = 1, 2\n    self.x_ = 3\n    dq.n_threads = 4\n")
    assert _fitted_attributes_written(path) == [(2, "dq.codes_")]
