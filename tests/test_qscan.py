"""Tests of the integer scan (skdqn.search._qscan) and of the fast numpy kernel built on it.

The fast kernel (integer tables, candidates under a conservative bound, exact
float32 re-rank) must return exactly what the plain float32 scan and the
stable-argsort reference return: neighbours, tie order and distances, bit for
bit. Tested over metrics, M, K, block sizes and query counts (the one-query
pair path and the batch path), on data with exact ties and with near-ties
(sums a few ulps apart, where the order of the float32 additions matters).
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from conftest import kneighbors_reference, make_problem
from skdqn.search._kernels import NumpyKernel, _integer_scanner, _scan_below, _scan_block, aqd_distances
from skdqn.search._scan import IntegerScan
from skdqn.search._scan import table_offsets as _offsets
from skdqn.search._qscan import (
    exact_candidates,
    integer_threshold,
    pair_codes,
    pair_scan_below,
    pair_scan_block,
    pair_tables,
    quantize_tables,
    upper_bound,
)
from skdqn.search._tables import distance_tables, flat_tables


def near_tie_problem(nq, n, M, K, seed=0):
    """Tables whose sums are a few ulps apart: the float32 addition order decides ties."""
    rng = np.random.default_rng(seed)
    base = np.float32(1.0 + rng.random())
    ulp = np.spacing(base * M)
    tables = (base + ulp * rng.integers(0, 4, size=(nq, M, K))).astype(np.float32)
    tables[:, :, ::3] += np.float32(1e-3)  # a few clearly worse codewords
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8 if K <= 256 else np.uint16)
    return tables, codes


def vector_problem(metric, nq, n, M, K, seed=0, ds=3):
    """Tables of real queries (the metric's own table) and random codes."""
    rng = np.random.default_rng(seed)
    codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    Q = rng.normal(size=(nq, M * ds))
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8 if K <= 256 else np.uint16)
    codes[n // 2 : n // 2 + 4] = codes[1]  # duplicates: exact ties
    return distance_tables(Q, codebooks, metric), codes


@pytest.fixture(autouse=True)
def _pairs_everywhere(pairs_on_small_data):
    """The small problems here take the one-query pair path too (see test_pair_path_from_enough_codes)."""


def problem(kind, nq, n, M, K, seed):
    if kind in ("sqeuclidean", "inner_product"):
        return vector_problem(kind, nq, n, M, K, seed)
    if kind == "near_ties":
        return near_tie_problem(nq, n, M, K, seed)
    return make_problem(kind, nq, n, M=M, K=K, seed=seed)


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize("kind", ["sqeuclidean", "inner_product", "ties", "near_ties"])
@pytest.mark.parametrize("M", [1, 3, 8])
def test_integer_sums_bound_the_float32_sums(kind, M):
    tables, codes = problem(kind, nq=5, n=400, M=M, K=16, seed=M)
    qt = quantize_tables(tables)
    assert qt.q.dtype == np.uint16 and int(qt.q.max()) <= 65534 // M
    d32 = aqd_distances(tables, codes).astype(np.float64)  # (nq, n)
    qsum = _scan_block(flat_tables(qt.q), codes, _offsets(M, 16), 0, len(codes),
                       np.empty((len(codes), 5), np.uint16), np.empty((len(codes), 5), np.uint16)).T
    lower = qt.lo[:, None] + qt.delta[:, None] * qsum - qt.slack[:, None]
    assert (lower <= d32).all()
    assert (d32 <= upper_bound(qt, qsum.T).T).all()
    # integer_threshold keeps exactly what its contract needs, for any bound.
    for bound in np.quantile(d32, [0.0, 0.1, 0.5, 1.0], axis=1):
        thr = integer_threshold(qt, bound)
        kept = qsum < thr[:, None]
        assert kept[d32 <= bound[:, None]].all()


def test_quantize_refuses_non_finite_and_handles_constant_tables():
    tables = np.zeros((2, 3, 4), np.float32)
    tables[1, 0, 0] = np.inf
    assert quantize_tables(tables) is None
    qt = quantize_tables(np.ones((2, 3, 4), np.float32))
    assert (qt.q == 0).all() and (qt.delta > 0).all()
    thr = integer_threshold(qt, np.array([np.inf, -np.inf]))
    assert thr.tolist() == [65535, 0]


# ------------------------------------------------------------- pair look-ups
@pytest.mark.parametrize("M", [1, 2, 3, 8])
@pytest.mark.parametrize("K", [16, 256])
def test_pair_scan_equals_the_one_subspace_scan(M, K):
    tables, codes = make_problem("random", nq=1, n=300, M=M, K=K, seed=M + K)
    qt = quantize_tables(tables)
    pairs, last = pair_tables(qt.q[0])
    n = len(codes)
    got = pair_scan_block(pairs, last, codes, 5, n, np.empty(n - 5, np.uint16), np.empty(n - 5, np.uint16))
    ref = _scan_block(flat_tables(qt.q), codes, _offsets(M, K), 5, n,
                      np.empty((n - 5, 1), np.uint16), np.empty((n - 5, 1), np.uint16))[:, 0]
    assert_array_equal(got, ref)
    assert_array_equal(got, qt.q[0][np.arange(M), codes[5:].astype(np.intp)].sum(axis=1))


@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("K", [16, 256])
def test_pair_scan_below_is_the_full_compare(M, K):
    # The last pair (and odd subspace) added only to the survivors: the same rows.
    tables, codes = problem("sqeuclidean", nq=1, n=2000, M=M, K=K, seed=M * K)
    qt = quantize_tables(tables)
    pairs, last = pair_tables(qt.q[0])
    n = len(codes)
    scratch = np.empty(n - 3, np.uint16), np.empty(n - 3, np.uint16)
    sums = pair_scan_block(pairs, last, codes, 3, n, *scratch).astype(np.int64)
    for q in (0.0, 0.0005, 0.01, 0.5, 1.0):
        for thr in (int(np.quantile(sums, q)), int(np.quantile(sums, q)) + 1):
            got = pair_scan_below(pairs, last, codes, 3, n, np.array([thr], np.uint16), *scratch)
            assert_array_equal(got, np.flatnonzero(sums < thr))
    assert pair_scan_below(pairs, last, codes, 3, n, np.array([0], np.uint16), *scratch).size == 0


@pytest.mark.parametrize("M", [1, 2, 3, 8])
@pytest.mark.parametrize("nq", [1, 5])
def test_scan_below_is_the_full_compare(M, nq):
    tables, codes = problem("inner_product", nq=nq, n=700, M=M, K=16, seed=M + nq)
    qt = quantize_tables(tables)
    flat_q, offsets = flat_tables(qt.q), _offsets(M, 16)
    out, tmp = np.empty((690, nq), np.uint16), np.empty((690, nq), np.uint16)
    sums = _scan_block(flat_q, codes, offsets, 10, 700, out, tmp).copy()
    for q in (0.0, 0.001, 0.05, 1.0):
        thr = np.quantile(sums, q, axis=0).astype(np.uint16) + np.arange(nq, dtype=np.uint16) % 2
        got = _scan_below(flat_q, codes, offsets, 10, 700, thr, out, tmp)
        assert_array_equal(got, np.flatnonzero(sums < thr))
        scanner = _integer_scanner(qt, codes, offsets, 690)
        assert_array_equal(np.sort(scanner.below(10, 700, thr)), np.flatnonzero(sums < thr))


def test_integer_scan_below_defaults_to_the_compare():
    sums = np.array([[3, 0], [1, 5]], np.uint16)
    scanner = IntegerScan(lambda start, stop: sums[start:stop], 2)
    assert_array_equal(scanner.below(0, 2, np.array([2, 1], np.uint16)), [1, 2])


def test_pair_codes_is_the_little_endian_pair():
    codes = np.array([[1, 2, 3], [255, 0, 7]], np.uint8)
    assert_array_equal(pair_codes(codes), [[1 + 256 * 2], [255]])
    assert_array_equal(pair_codes(np.asfortranarray(codes[:, :2])), [[513], [255]])


def test_exact_candidates_equal_the_scan():
    tables, codes = near_tie_problem(nq=4, n=50, M=8, K=16)
    rows = np.repeat(np.arange(50), 4)
    cols = np.tile(np.arange(4), 50)
    got = exact_candidates(flat_tables(tables), codes, _offsets(8, 16), rows, cols)
    assert_array_equal(got.reshape(50, 4).T, aqd_distances(tables, codes))


# ------------------------------------------------------ the fast kernel, grid
@pytest.mark.parametrize("kind", ["sqeuclidean", "inner_product", "ties", "near_ties"])
@pytest.mark.parametrize("K", [16, 256, 2**12])
@pytest.mark.parametrize("M", [1, 3, 8])
@pytest.mark.parametrize("nq", [1, 3, 9])
def test_fast_kneighbors_match_the_reference(kind, K, M, nq):
    n = 150
    tables, codes = problem(kind, nq=nq, n=n, M=M, K=K, seed=M * K + nq)
    fast, plain = NumpyKernel(), NumpyKernel(fast=False)
    for k in (1, 7, n):
        ref_d, ref_i = kneighbors_reference(tables, codes, k)
        for db_block in (1, 7, 4096):
            d, i = fast.kneighbors(tables, codes, k, db_block=db_block)
            assert d.dtype == np.float32 and i.dtype == np.intp
            assert_array_equal(i, ref_i)
            assert_array_equal(d, ref_d)
        assert_array_equal(plain.kneighbors(tables, codes, k)[1], ref_i)


@pytest.mark.parametrize("kind", ["sqeuclidean", "inner_product", "ties", "near_ties"])
@pytest.mark.parametrize("K", [16, 2**12])
@pytest.mark.parametrize("nq", [1, 6])
def test_fast_radius_matches_the_mask(kind, K, nq):
    tables, codes = problem(kind, nq=nq, n=120, M=3, K=K, seed=K + nq)
    full = aqd_distances(tables, codes)
    for threshold in np.quantile(full, [0.0, 0.05, 0.5, 1.0]).astype(np.float32):
        for db_block in (1, 7, 4096):
            found = NumpyKernel().radius_neighbors(tables, codes, threshold, db_block=db_block)
            for q, (d, i) in enumerate(found):
                expected = np.flatnonzero(full[q] <= threshold)
                assert_array_equal(i, expected)
                assert_array_equal(d, full[q, expected])


def test_fast_kernel_on_odd_layouts():
    # Fortran-ordered and memory-mapped-like (non-contiguous) codes, one query and a batch.
    tables, codes = near_tie_problem(nq=5, n=200, M=4, K=256, seed=3)
    odd = np.asfortranarray(codes)
    for nq in (1, 5):
        ref = kneighbors_reference(tables[:nq], codes, 9)
        got = NumpyKernel().kneighbors(tables[:nq], odd, 9, db_block=3)
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])
    # Non-finite tables take the float32 scan, with the same results.
    tables[0, 0, 0] = np.inf
    assert_array_equal(NumpyKernel().kneighbors(tables, codes, 4)[1], kneighbors_reference(tables, codes, 4)[1])


def test_a_query_alone_gets_its_batch_result():
    # The one-query pair path (nq <= PAIR_QUERIES) against the batch path.
    tables, codes = near_tie_problem(nq=12, n=700, M=6, K=256, seed=11)
    kernel = NumpyKernel()
    batch = kernel.kneighbors(tables, codes, 8, db_block=50)
    for q in range(12):
        alone = kernel.kneighbors(tables[q : q + 1], codes, 8, db_block=50)
        assert_array_equal(alone[1], batch[1][q : q + 1])
        assert_array_equal(alone[0], batch[0][q : q + 1])
    found = kernel.radius_neighbors(tables, codes, np.float32(np.median(aqd_distances(tables, codes))))
    for q in range(12):
        (d, i), = kernel.radius_neighbors(tables[q : q + 1], codes, np.float32(np.median(aqd_distances(tables, codes))))
        assert_array_equal(i, found[q][1])
        assert_array_equal(d, found[q][0])


def test_pair_path_from_enough_codes(monkeypatch):
    import skdqn.search._scan as scan
    import skdqn.search._tuning

    monkeypatch.setattr(skdqn.search._tuning, "PAIR_MIN_ROWS", 4096)
    codes = np.zeros((4096, 4), np.uint8)
    assert scan.uses_pairs(codes, 256, 4)
    assert not scan.uses_pairs(codes[:4095], 256, 4)
    assert not scan.uses_pairs(codes.astype(np.uint16), 256, 4)
    assert not scan.uses_pairs(codes[:, :1], 256, 1)
    # Both sides of the limit give the reference's results.
    tables, codes = near_tie_problem(nq=2, n=5000, M=4, K=256, seed=4)
    for n in (4095, 4096):
        ref = kneighbors_reference(tables, codes[:n], 6)
        got = NumpyKernel().kneighbors(tables, codes[:n], 6)
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])


@pytest.mark.parametrize("n_shards, n_jobs", [(1, None), (3, 2)])
def test_engine_results_do_not_depend_on_the_fast_path(n_shards, n_jobs, small_blocks):
    # X=None-style queries (the items decoded), shards and workers, k-NN and radius.
    from skdqn.search._search import aqd_kneighbors, aqd_radius_neighbors
    from skdqn.search._tables import CodeQueries

    rng = np.random.default_rng(5)
    codebooks = rng.integers(-2, 3, size=(4, 16, 2)).astype(np.float32)  # integer: exact ties
    codes = rng.integers(0, 16, size=(500, 4)).astype(np.uint8)
    for metric in ("sqeuclidean", "inner_product"):
        queries = CodeQueries(codes[:37], codebooks, metric)
        plain = NumpyKernel(fast=False)
        for kernel in (NumpyKernel(), "numpy"):
            got = aqd_kneighbors(queries, codes, 11, n_shards=n_shards, n_jobs=n_jobs, kernel=kernel)
            ref = aqd_kneighbors(queries, codes, 11, n_shards=n_shards, n_jobs=n_jobs, kernel=plain)
            assert_array_equal(got[1], ref[1])
            assert_array_equal(got[0], ref[0])
            r_got = aqd_radius_neighbors(queries, codes, 3.0, n_shards=n_shards, n_jobs=n_jobs, kernel=kernel)
            r_ref = aqd_radius_neighbors(queries, codes, 3.0, n_shards=n_shards, n_jobs=n_jobs, kernel=plain)
            for a, b in zip(r_got[0] + r_got[1], r_ref[0] + r_ref[1]):
                assert_array_equal(a, b)
