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
    ],
)
def test_lower_layers_do_not_import_upper_ones(module, never):
    assert not _graph()[module] & never
