"""Tests of the lookup tables and the query sources (skdqn.search._tables).

``distance_tables`` is compared with a plain loop; every query source gives,
block by block, exactly the tables of all its queries at once.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from conftest import integer_problem
from skdqn._pq import decode
from skdqn.search._tables import (
    CodeQueries,
    TableQueries,
    VectorQueries,
    as_query_source,
    distance_tables,
    flat_tables,
)


# ----------------------------------------------------------------- helpers
def tables_reference(Q, codebooks, metric):
    M, K, ds = codebooks.shape
    Q = np.asarray(Q, dtype=np.float32)
    out = np.empty((Q.shape[0], M, K), dtype=np.float32)
    for q in range(Q.shape[0]):
        for m in range(M):
            for k in range(K):
                x = Q[q, m * ds : (m + 1) * ds]
                c = codebooks[m, k]
                out[q, m, k] = ((x - c) ** 2).sum() if metric == "sqeuclidean" else -(x @ c)
    return out


# ---------------------------------------------------------- distance_tables
@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
@pytest.mark.parametrize("M, K, ds", [(1, 4, 3), (4, 16, 2), (2, 300, 3)])
def test_distance_tables_match_reference(metric, M, K, ds):
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    Q = rng.normal(size=(7, M * ds))
    Q[0] = 0.0
    Q[1] = decode(np.zeros((1, M), int), codebooks)  # a query equal to codewords
    tables = distance_tables(Q, codebooks, metric)
    assert tables.shape == (7, M, K) and tables.dtype == np.float32
    assert_allclose(tables, tables_reference(Q, codebooks, metric), rtol=1e-5, atol=1e-6)
    if metric == "sqeuclidean":
        assert (tables >= 0).all()
        assert_array_equal(tables[1, :, 0], 0.0)  # exact: differences, not expansion


def test_squared_tables_are_float64_sums_rounded_once():
    # The documented computation: float64 differences, squared and summed in
    # order, rounded once to float32 (not a float32 accumulation).
    rng = np.random.default_rng(5)
    codebooks = rng.normal(size=(3, 20, 5)).astype(np.float32)
    Q = (rng.normal(size=(9, 15)) * 3).astype(np.float32)
    expected = np.empty((9, 3, 20), dtype=np.float32)
    for q in range(9):
        for m in range(3):
            for k in range(20):
                acc = 0.0
                for d in range(5):
                    acc += (float(Q[q, m * 5 + d]) - float(codebooks[m, k, d])) ** 2
                expected[q, m, k] = acc
    for layout in ("scan", "query"):
        assert_array_equal(distance_tables(Q, codebooks, layout=layout), expected)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
@pytest.mark.parametrize("block_floats", [1, 50, 3000, 1 << 22])
def test_both_layouts_hold_the_same_floats(metric, block_floats):
    rng = np.random.default_rng(6)
    codebooks = rng.normal(size=(5, 40, 3)).astype(np.float32)
    Q = rng.normal(size=(70, 15)) * 10
    Q[3] = 0.0
    scan = distance_tables(Q, codebooks, metric)
    query = distance_tables(Q, codebooks, metric, layout="query", block_floats=block_floats)
    assert query.flags.c_contiguous and scan.base is not None and scan.transpose(1, 2, 0).flags.c_contiguous
    assert_array_equal(query, scan)
    assert_array_equal(np.signbit(query), np.signbit(scan))
    assert_array_equal(distance_tables(Q, codebooks, metric, block_floats=block_floats), scan)
    with pytest.raises(ValueError, match="layout"):
        distance_tables(Q, codebooks, metric, layout="rows")


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_distance_tables_exact_on_integer_data(metric):
    Q, codebooks, _ = integer_problem()
    # Several blocks of queries in the squared-distance table computation.
    tables = distance_tables(Q, codebooks, metric, block_floats=50)
    assert_array_equal(tables, tables_reference(Q, codebooks, metric))


def test_distance_tables_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        distance_tables(np.zeros((1, 2)), np.zeros((1, 2, 2), np.float32), "cosine")




# ------------------------------------------------------------ query sources
@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_a_query_table_does_not_depend_on_the_other_queries(metric):
    # Bit for bit: a query searched alone or in any batch gets the same table,
    # so results never depend on the query blocks of a search.
    rng = np.random.default_rng(1)
    codebooks = rng.normal(size=(4, 32, 3)).astype(np.float32)
    Q = rng.normal(size=(300, 12)) * 10
    full = distance_tables(Q, codebooks, metric)
    for layout in ("scan", "query"):
        for rows in (slice(0, 1), slice(5, 8), slice(0, 128), slice(200, 300), slice(1, 299)):
            assert_array_equal(distance_tables(Q[rows], codebooks, metric, layout=layout), full[rows])
        assert_array_equal(distance_tables(Q, codebooks, metric, block_floats=7, layout=layout), full)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_query_sources_give_their_tables_block_by_block(metric):
    rng = np.random.default_rng(2)
    codebooks = rng.normal(size=(3, 16, 2)).astype(np.float32)
    Q = rng.normal(size=(50, 6))
    codes = rng.integers(0, 16, size=(40, 3)).astype(np.uint8)
    codes[:5] = 0  # duplicates
    cases = [
        (VectorQueries(Q, codebooks, metric), distance_tables(Q, codebooks, metric)),
        (CodeQueries(codes, codebooks, metric), distance_tables(decode(codes, codebooks), codebooks, metric)),
    ]
    cases.append((TableQueries(cases[0][1]), cases[0][1]))
    for source, expected in cases:
        assert source.n_queries == expected.shape[0]
        assert_array_equal(source.tables(), expected)
        for rows in (slice(0, 1), slice(3, 17), slice(30, 60), slice(0, 0)):
            block = source.block(rows)
            assert block.n_queries == expected[rows].shape[0]
            assert_array_equal(block.tables(), expected[rows])


def test_query_blocks_hold_views_only():
    Q = np.zeros((20, 4))
    codes = np.zeros((20, 2), np.uint8)
    codebooks = np.zeros((2, 4, 2), np.float32)
    assert np.shares_memory(VectorQueries(Q, codebooks, "sqeuclidean").block(slice(2, 9)).X, Q)
    assert np.shares_memory(CodeQueries(codes, codebooks, "sqeuclidean").block(slice(2, 9)).codes, codes)


def test_code_queries_on_memmap(tmp_path):
    rng = np.random.default_rng(3)
    codebooks = rng.normal(size=(2, 8, 3)).astype(np.float32)
    codes = rng.integers(0, 8, size=(30, 2)).astype(np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    mm = np.load(tmp_path / "codes.npy", mmap_mode="r")
    got = CodeQueries(mm, codebooks, "sqeuclidean").block(slice(10, 20)).tables()
    assert_array_equal(got, CodeQueries(codes, codebooks, "sqeuclidean").tables()[10:20])


def test_as_query_source():
    tables = np.zeros((3, 2, 4), np.float32)
    assert isinstance(as_query_source(tables), TableQueries)
    source = VectorQueries(np.zeros((3, 4)), np.zeros((2, 4, 2), np.float32), "sqeuclidean")
    assert as_query_source(source) is source
    with pytest.raises(ValueError, match=r"\(n_queries, M, K\)"):
        as_query_source(np.zeros((3, 8), np.float32))


def test_flat_tables_layout():
    tables = np.random.default_rng(4).random((5, 3, 4), dtype=np.float32)
    flat = flat_tables(tables)
    assert flat.shape == (12, 5) and flat.flags.c_contiguous
    for q in range(5):
        for m in range(3):
            for k in range(4):
                assert flat[m * 4 + k, q] == tables[q, m, k]
