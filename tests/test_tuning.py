"""The tuning values (skdqn.search._tuning): each documented, and none changes a result.

Every value is set to extreme values (1, 0 where it turns a path off, far
more than the data) and the exhaustive, inverted-list, radius, ``X=None``,
several-worker, torch (CPU) searches and ``score`` of a small index with ties
and degenerate rows must return what the defaults return, bit for bit. The
index is built from hand-made codebooks and codes (no k-means).
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import skdqn.search._tuning as tuning
from skdqn import AQDNeighbors

ROOT = Path(__file__).resolve().parents[1]
SOURCE = (ROOT / "skdqn" / "search" / "_tuning.py").read_text()
HUGE = 10**9


def _constants():
    """``{name: (line, value node)}`` of the module-level assignments of ``_tuning``."""
    found = {}
    for node in ast.parse(SOURCE).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                found[target.id] = node.lineno
    return found


NAMES = sorted(_constants())


def _comment_above(line):
    """The ``#:`` comment block right above source line ``line`` (1-based), as one string."""
    lines = SOURCE.splitlines()[: line - 1]
    block = []
    while lines and lines[-1].startswith("#:"):
        block.insert(0, lines.pop()[2:].strip())
    return " ".join(block)


def test_the_module_holds_the_known_values():
    assert len(NAMES) >= 20
    assert {"QUERY_BLOCK", "DB_BLOCK", "PAIR_QUERIES", "PAIR_MIN_ROWS", "NARROW", "ROWS_MAX_WIDTH"} <= set(NAMES)
    assert "FLOAT16_MAX_SUM" not in NAMES  # a correctness bound stays in its module


@pytest.mark.parametrize("name", NAMES)
def test_every_value_is_documented_with_what_it_trades_and_the_command(name):
    comment = _comment_above(_constants()[name])
    assert "Trades:" in comment, f"{name}: no 'Trades:' line"
    assert re.search(r"Chosen: \S", comment), f"{name}: no 'Chosen:' line"
    assert f"python benchmarks/bench_tuning.py --only {name}" in comment, f"{name}: no command"


@pytest.mark.parametrize("name", NAMES)
def test_every_value_is_a_public_positive_integer(name):
    value = getattr(tuning, name)
    assert name.isupper() and not name.startswith("_")
    assert isinstance(value, int) and not isinstance(value, bool) and value > 0


def test_bench_tuning_sweeps_every_value():
    tree = ast.parse((ROOT / "benchmarks" / "bench_tuning.py").read_text())
    sweeps = next(
        node.value for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SWEEPS"
    )
    assert sorted(key.value for key in sweeps.keys) == NAMES


def test_the_module_imports_nothing_of_the_package():
    imports = [n for n in ast.walk(ast.parse(SOURCE)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == []


# ------------------------------------------------------------ results never change
def _problem():
    """Hand-made codebooks and codes with exact ties, duplicate and all-zero rows; lists given."""
    rng = np.random.default_rng(0)
    M, K, ds, n = 4, 16, 2, 700
    codebooks = rng.integers(0, 3, size=(M, K, ds)).astype(np.float32)  # repeated codewords: ties
    codebooks[:, 0] = 0.0
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8)
    codes[::7] = codes[3]  # duplicates of one item
    codes[5::50] = 0  # all-zero rows
    codes[-40:] = codes[:40]  # a repeated block, far from its original
    reconstructions = codebooks[np.arange(M), codes].reshape(n, M * ds)
    n_lists = 9
    centroids = rng.integers(0, 3, size=(n_lists, M * ds)).astype(np.float32)
    assignments = rng.integers(0, n_lists - 1, size=n)  # the last list stays empty
    queries = np.concatenate([reconstructions[:6], rng.integers(0, 3, size=(19, M * ds)) + 0.5]).astype(np.float32)
    labels = rng.integers(0, 4, size=n)
    return codebooks, codes, centroids, assignments, queries, labels


PROBLEM = _problem()


def _index(**params):
    codebooks, codes, centroids, assignments, _, labels = PROBLEM
    lists = {}
    if params.pop("lists", False):
        lists = dict(coarse_centroids=centroids, list_assignments=assignments, n_probe=3)
    if params.pop("refine", False):  # re-ranking by vectors near the reconstructions
        vectors = codebooks[np.arange(codes.shape[1]), codes].reshape(len(codes), -1)
        lists = dict(vectors=vectors + np.float32(0.01) * (np.arange(vectors.size) % 7).reshape(vectors.shape),
                     refine_factor=3)
    return AQDNeighbors.from_codes(codebooks, codes, labels, n_neighbors=7, **lists, **params)


def _results():
    """Every result a tuning value might touch, as a flat list of arrays and floats."""
    queries, labels = PROBLEM[4], PROBLEM[5]
    out = []
    for params, radius in (
        (dict(metric="sqeuclidean"), 9.0),
        (dict(metric="inner_product"), -12.0),
        (dict(metric="sqeuclidean", n_jobs=2), 9.0),
        (dict(metric="sqeuclidean", backend="torch", device="cpu"), 9.0),
        (dict(metric="sqeuclidean", lists=True), 9.0),
        (dict(metric="inner_product", lists=True), -12.0),
        (dict(metric="sqeuclidean", lists=True, backend="torch", device="cpu"), 9.0),
        (dict(metric="sqeuclidean", refine=True), 9.0),
    ):
        index = _index(**params)
        for X in (queries, queries[:1], queries[:3]):
            out.extend(index.kneighbors(X))
        out.extend(index.kneighbors(queries, n_neighbors=60))  # k a large part: the full sort
        out.extend(index.kneighbors(n_neighbors=4))  # X=None
        dist, ind = index.radius_neighbors(queries, radius=radius)
        out.extend(list(dist) + list(ind))
        out.append(index.score(queries, labels[: len(queries)]))
        out.append(index.score(queries, labels[: len(queries)], top_k=5))
    return out


@pytest.fixture(scope="module")
def default_results():
    return _results()


def _cases():
    """(overrides) per case: every value at 1 and far above the data, 0 where 0 turns a path off."""
    cases = []
    for name in NAMES:
        cases += [{name: 1}, {name: HUGE}]
    cases += [{"NARROW": 0}, {"ROWS_MAX_WIDTH": 0}, {"ARGMIN_DEPTH": 0}, {"PAIR_MIN_ROWS": 0}]
    cases += [  # values that only act with another one
        {"PAIR_MIN_ROWS": 0, "PAIR_QUERIES": HUGE},
        {"PAIR_MIN_ROWS": 0, "PAIR_QUERIES": 1},
        {"PAIR_MIN_ROWS": 0, "DB_BLOCK": 1, "PAIR_BLOCK_FACTOR": 1},
        {"PAIR_MIN_ROWS": 0, "DB_BLOCK": 3, "PAIR_BLOCK_FACTOR": 7},
        {"DB_BLOCK": 5, "MIN_SHARD_BLOCKS": 1},
        {"NARROW": 0, "ROWS_MAX_WIDTH": 0, "CALL_ENTRIES": 1, "BOUND_SAMPLE": 1},
        {"NARROW": HUGE, "CALL_ENTRIES": 1, "PROBE_FLOATS": 1, "IVF_BLOCK_FACTOR": 1, "QUERY_BLOCK": 2},
        {"TORCH_CPU_BYTES": 1, "DB_BLOCK": 7, "TORCH_GROUP_ROWS": 3},
        {"TORCH_CPU_BYTES": 1, "DB_BLOCK": 100, "TORCH_GROUP_ROWS": 1},
    ]
    return cases


def _case_id(case):
    return ",".join(f"{k}={'huge' if v == HUGE else v}" for k, v in case.items())


_BOUNDED = {  # values that size an allocation: "huge" is far above the data, not 10**9
    "BOUND_SAMPLE": 5000,  # a (pairs, BOUND_SAMPLE) sample
    "PAIR_BLOCK_FACTOR": 1000,  # buffers of DB_BLOCK * PAIR_BLOCK_FACTOR
    "DB_BLOCK": 5000,  # (DB_BLOCK, queries) buffers
    "QUERY_BLOCK": 5000,
    "TORCH_GROUP_ROWS": 5000,
}


@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_no_value_changes_a_result(monkeypatch, default_results, case):
    for name, value in case.items():
        if value == HUGE:
            value = _BOUNDED.get(name, HUGE)
        monkeypatch.setattr(tuning, name, value)
    got = _results()
    assert len(got) == len(default_results)
    for a, b in zip(got, default_results):
        assert_array_equal(a, b)
