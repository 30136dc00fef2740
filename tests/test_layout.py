"""The package's shape: no import circle between its modules, lazy imports included."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skdqn"


def _imports(path, modules):
    """The package modules ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            found.update(n if n in modules else "__init__" for n in names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "skdqn":
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("skdqn."))
    return found - {path.stem}


def _graph():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {name: _imports(PACKAGE / f"{name}.py", modules) & modules for name in modules}


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
    assert {"_kernels", "_torch_kernel", "_scan", "_topk", "_model_io", "_quantizer"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


@pytest.mark.parametrize(
    "module, never",
    [
        ("_topk", {"_kernels", "_torch_kernel", "_ivf", "_search", "_scan"}),  # what scans keep
        ("_scan", {"_kernels", "_torch_kernel", "_ivf", "_search"}),  # the contract kernels implement
        ("_kernels", {"_torch_kernel", "_search", "_ivf"}),
        ("_torch_kernel", {"_search", "_ivf"}),
        ("_model_io", {"_quantizer", "_neighbors"}),  # formats never build estimators' modules
        ("_index_io", {"_quantizer", "_neighbors"}),
        ("_index", {"_quantizer", "_neighbors"}),  # the fitted index knows no estimator
        ("_data", {"_quantizer", "_neighbors"}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(module, never):
    assert not _graph()[module] & never


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
    for module in ("_model_io", "_index_io", "_data", "cli", "_index", "_distributed", "_faiss"):
        assert _fitted_attributes_written(PACKAGE / f"{module}.py") == [], module


def test_the_fitted_state_check_finds_a_write(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f(dq):\n    dq.codes_, other = 1, 2\n    self.x_ = 3\n    dq.n_threads = 4\n")
    assert _fitted_attributes_written(path) == [(2, "dq.codes_")]
