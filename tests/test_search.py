"""Tests of the search engine (skdqn.search._search): tasks, blocks, shards, merging.

``aqd_kneighbors`` is compared with a stable argsort of all distances (same
order, same ties), ``aqd_radius_neighbors`` with a mask of all distances,
over block sizes, shards and workers; on integer data, where float32
arithmetic is exact, also with brute force over the decoded vectors in
float64. Query sources (vectors, codes) give the results of their tables.
"""

import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from conftest import integer_problem, kneighbors_reference, make_problem
from skdqn.search import _search
from skdqn.search._kernels import aqd_distances
from skdqn._pq import decode
from skdqn.search._search import (
    ScanBlocks,
    aqd_kneighbors,
    aqd_radius_neighbors,
    database_shards,
    merge_kneighbors,
    scan_blocks,
)
from skdqn.search._tables import CodeQueries, VectorQueries, distance_tables


# ----------------------------------------------------------- aqd_kneighbors
@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize(
    "n, k", [(n, k) for n in (1, 15, 16, 17, 100, 257, 700) for k in (1, 3, 10, 40) if k <= n]
)
def test_aqd_kneighbors_matches_stable_argsort(small_blocks, kind, n, k):
    # With 16-item blocks: k * 16 < n takes the running-threshold path, else
    # the full sort; both must give the reference exactly, ties included.
    tables, codes = make_problem(kind, nq=21, n=n, seed=n + k)
    dist, ind = aqd_kneighbors(tables, codes, k)
    ref_dist, ref_ind = kneighbors_reference(tables, codes, k)
    assert dist.dtype == np.float32 and ind.dtype == np.intp
    assert_array_equal(ind, ref_ind)
    assert_array_equal(dist, ref_dist)


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("k", [1, 5, 64])
def test_aqd_kneighbors_default_blocks(kind, k):
    # Default block sizes, several database blocks and query blocks.
    n = 3 * ScanBlocks().database + 5
    tables, codes = make_problem(kind, nq=ScanBlocks().query + 3, n=n, seed=k)
    dist, ind = aqd_kneighbors(tables, codes, k)
    ref_dist, ref_ind = kneighbors_reference(tables, codes, k)
    assert_array_equal(ind, ref_ind)
    assert_array_equal(dist, ref_dist)


def test_aqd_kneighbors_improving_database(small_blocks):
    # Adversarial for the running threshold: every block beats the previous
    # one, so every block has survivors and the lists are merged many times.
    # Also: k larger than a database block (k=20 > 16).
    n, M, K = 800, 2, 32
    codes = np.stack([np.arange(n) % K, np.arange(n) // K], axis=1).astype(np.uint8)
    table = np.stack([np.zeros(K), -np.arange(K, dtype=np.float32)])
    tables = np.stack([table, table[:, ::-1] * 0.5]).astype(np.float32)
    for k in (1, 20, 49):
        dist, ind = aqd_kneighbors(tables, codes, k)
        ref_dist, ref_ind = kneighbors_reference(tables, codes, k)
        assert_array_equal(ind, ref_ind)
        assert_array_equal(dist, ref_dist)


def test_aqd_kneighbors_all_ties(small_blocks):
    # Constant tables: every item at the same distance -> first k indices.
    tables = np.ones((9, 2, 4), dtype=np.float32)
    codes = np.random.default_rng(0).integers(0, 4, size=(500, 2)).astype(np.uint8)
    for k in (1, 7, 31, 32, 200):
        dist, ind = aqd_kneighbors(tables, codes, k)
        assert_array_equal(ind, np.tile(np.arange(k), (9, 1)))
        assert_array_equal(dist, 2.0)


def test_aqd_kneighbors_full_sort_small_working_memory(small_blocks):
    # A tiny working memory: the full-sort path searches one query at a time.
    tables, codes = make_problem("ties", nq=13, n=300, seed=3)
    dist, ind = aqd_kneighbors(tables, codes, 100, working_memory=1e-4)
    ref_dist, ref_ind = kneighbors_reference(tables, codes, 100)
    assert_array_equal(ind, ref_ind)
    assert_array_equal(dist, ref_dist)


def test_aqd_kneighbors_uint16_and_memmap(tmp_path, small_blocks):
    tables, codes = make_problem("ties", nq=10, n=400, K=300, seed=4)
    assert codes.dtype == np.uint16
    mm = np.lib.format.open_memmap(tmp_path / "codes.npy", mode="w+", dtype=codes.dtype, shape=codes.shape)
    mm[:] = codes
    mm.flush()
    mm = np.load(tmp_path / "codes.npy", mmap_mode="r")
    ref_dist, ref_ind = kneighbors_reference(tables, codes, 5)
    for c in (codes, mm):
        dist, ind = aqd_kneighbors(tables, c, 5)
        assert_array_equal(ind, ref_ind)
        assert_array_equal(dist, ref_dist)


def test_aqd_kneighbors_no_queries():
    tables, codes = make_problem("random", nq=0, n=50)
    dist, ind = aqd_kneighbors(tables, codes, 3)
    assert dist.shape == (0, 3) and ind.shape == (0, 3)


def test_aqd_kneighbors_does_not_modify_inputs(small_blocks):
    tables, codes = make_problem("random", nq=10, n=300)
    t0, c0 = tables.copy(), codes.copy()
    aqd_kneighbors(tables, codes, 4)
    aqd_kneighbors(tables, codes, 100)
    aqd_radius_neighbors(tables, codes, 1.0)
    assert_array_equal(tables, t0)
    assert_array_equal(codes, c0)


# ----------------------------------------------------- aqd_radius_neighbors
@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("n", [1, 16, 300])
@pytest.mark.parametrize("radius", [-1.0, 0.0, 1.5, 2.0, 4.0, 100.0])
def test_aqd_radius_neighbors_matches_reference(small_blocks, kind, n, radius):
    tables, codes = make_problem(kind, nq=19, n=n, seed=n)
    dists, inds = aqd_radius_neighbors(tables, codes, radius)
    full = aqd_distances(tables, codes)
    assert len(dists) == len(inds) == 19
    for q in range(19):
        expected = np.flatnonzero(full[q].astype(np.float64) <= radius)
        assert_array_equal(inds[q], expected)
        assert_array_equal(dists[q], full[q, expected])
        assert dists[q].dtype == np.float32


@pytest.mark.parametrize("as_type", [float, np.float64, np.float32])
def test_aqd_radius_neighbors_radius_not_rounded_up(as_type):
    # Regression: a Python float radius was rounded to the nearest float32
    # (NumPy 2 promotion), so just below 4 it became 4.0 and an item at
    # distance exactly 4 was returned.
    tables = np.array([[[0.0, 4.0, 0.1]]], dtype=np.float32)
    codes = np.array([[0], [1], [2]])
    below = as_type(np.nextafter(np.float32(4.0), np.float32(0)) if as_type is np.float32 else np.nextafter(4.0, 0.0))
    assert_array_equal(aqd_radius_neighbors(tables, codes, below)[1][0], [0, 2])
    assert_array_equal(aqd_radius_neighbors(tables, codes, as_type(4.0))[1][0], [0, 1, 2])
    # float32(0.1) = 0.10000000149... is above 0.1 (float64): excluded by a
    # float64 radius of 0.1, included by a radius equal to it.
    expected = [0, 2] if as_type is np.float32 else [0]
    assert_array_equal(aqd_radius_neighbors(tables, codes, as_type(0.1))[1][0], expected)
    assert_array_equal(aqd_radius_neighbors(tables, codes, float(np.float32(0.1)))[1][0], [0, 2])
    assert_array_equal(aqd_radius_neighbors(tables, codes, 1e300)[1][0], [0, 1, 2])
    assert_array_equal(aqd_radius_neighbors(tables, codes, -np.inf)[1][0], [])


def test_aqd_radius_neighbors_no_queries():
    tables, codes = make_problem("random", nq=0, n=50)
    assert aqd_radius_neighbors(tables, codes, 1.0) == ([], [])


# ------------------------------------------------------------------ n_jobs
def test_n_jobs_gives_identical_results(small_blocks):
    tables, codes = make_problem("ties", nq=50, n=500, seed=5)
    for k in (3, 200):
        d1, i1 = aqd_kneighbors(tables, codes, k, n_jobs=1)
        d2, i2 = aqd_kneighbors(tables, codes, k, n_jobs=2)
        assert_array_equal(i1, i2)
        assert_array_equal(d1, d2)
    r1 = aqd_radius_neighbors(tables, codes, 2.0, n_jobs=1)
    r2 = aqd_radius_neighbors(tables, codes, 2.0, n_jobs=2)
    for a, b in zip(r1[0] + r1[1], r2[0] + r2[1]):
        assert_array_equal(a, b)


# ---------------------------------------- brute force on the decoded vectors
@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
@pytest.mark.parametrize("k", [1, 6, 25, 150])
def test_brute_force_on_decoded_vectors(small_blocks, metric, k):
    # Integer data: AQD is exact, so it equals the exact float64 distance to
    # the reconstruction C h, and the ranking (ties by index) is identical.
    Q, codebooks, codes = integer_problem(seed=k)
    X_hat = decode(codes, codebooks).astype(np.float64)
    if metric == "sqeuclidean":
        exact = ((Q[:, None, :] - X_hat[None, :, :]) ** 2).sum(axis=2)
    else:
        exact = -(Q @ X_hat.T)
    tables = distance_tables(Q, codebooks, metric)
    dist, ind = aqd_kneighbors(tables, codes, k)
    ref_ind = np.argsort(exact, axis=1, kind="stable")[:, :k]
    assert_array_equal(ind, ref_ind)
    assert_array_equal(dist, np.take_along_axis(exact, ref_ind, axis=1))
    radius = 20.0 if metric == "sqeuclidean" else -5.0
    rd, ri = aqd_radius_neighbors(tables, codes, radius)
    for q in range(Q.shape[0]):
        expected = np.flatnonzero(exact[q] <= radius)
        assert_array_equal(ri[q], expected)
        assert_array_equal(rd[q], exact[q, expected])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120),
    nq=st.integers(0, 12),
    M=st.integers(1, 4),
    K=st.integers(2, 5),
    k=st.integers(1, 120),
    seed=st.integers(0, 2**32 - 1),
    db_block=st.sampled_from([1, 2, 3, 7, 16]),
)
def test_aqd_kneighbors_property(n, nq, M, K, k, seed, db_block):
    # Tiny integer tables (values 0..2): ties everywhere; any block size.
    k = min(k, n)
    rng = np.random.default_rng(seed)
    tables = rng.integers(0, 3, size=(nq, M, K)).astype(np.float32)
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8)
    with scan_blocks(query=5, database=db_block):
        dist, ind = aqd_kneighbors(tables, codes, k)
        radius = float(rng.integers(0, 2 * M + 1))
        rd, ri = aqd_radius_neighbors(tables, codes, radius)
    full = aqd_distances(tables, codes)
    ref_ind = np.argsort(full, axis=1, kind="stable")[:, :k]
    assert_array_equal(ind, ref_ind.reshape(nq, k))
    assert_array_equal(dist, np.take_along_axis(full, ref_ind, axis=1).reshape(nq, k))
    for q in range(nq):
        assert_array_equal(ri[q], np.flatnonzero(full[q] <= radius))


# ------------------------------------------------- shards and their merging
@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_sharded_search_identical_to_serial(small_blocks, n_shards, k):
    tables, codes = make_problem("ties", nq=20, n=400, seed=n_shards)
    ref_d, ref_i = kneighbors_reference(tables, codes, k)
    d, i = aqd_kneighbors(tables, codes, k, n_shards=n_shards)
    assert_array_equal(i, ref_i)
    assert_array_equal(d, ref_d)
    r_ref = aqd_radius_neighbors(tables, codes, 3.0, n_shards=1)
    r = aqd_radius_neighbors(tables, codes, 3.0, n_shards=n_shards)
    for a, b in zip(r_ref[0] + r_ref[1], r[0] + r[1]):
        assert_array_equal(a, b)


def test_auto_shards_with_few_queries(small_blocks):
    # One query block, two workers: the database is split (shards of at
    # least 16 blocks of 16 items), and the result is the serial one.
    tables, codes = make_problem("ties", nq=3, n=2000, seed=3)
    assert _search._auto_shards(2, 1, 2000) == 2
    assert _search._auto_shards(1, 1, 2000) == 1
    assert _search._auto_shards(4, 4, 2000) == 1  # enough query blocks already
    assert _search._auto_shards(8, 1, 300) == 1  # database too small to split
    ref = kneighbors_reference(tables, codes, 7)
    for n_jobs in (1, 2, 3):
        d, i = aqd_kneighbors(tables, codes, 7, n_jobs=n_jobs)
        assert_array_equal(i, ref[1])
        assert_array_equal(d, ref[0])


@pytest.mark.parametrize("n", [0, 1, 2, 5, 10, 11])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 4])
def test_database_shards_partition(n, n_shards):
    shards = database_shards(n, n_shards)
    covered = np.concatenate([np.arange(n)[s] for s in shards]) if shards else np.empty(0)
    assert_array_equal(covered, np.arange(n))
    sizes = [s.stop - s.start for s in shards]
    assert len(shards) == max(1, min(n_shards, n))
    assert max(sizes) - min(sizes) <= 1


def merge_reference(distances, indices, offsets, k):
    """Loop per query: all (distance, global index) pairs, sorted, first k."""
    out_d, out_i = [], []
    for q in range(distances[0].shape[0]):
        pairs = sorted(
            (float(d[q, j]), int(ind[q, j]) + o)
            for d, ind, o in zip(distances, indices, offsets)
            for j in range(d.shape[1])
            if ind[q, j] >= 0
        )[:k]
        out_d.append([p[0] for p in pairs])
        out_i.append([p[1] for p in pairs])
    return np.array(out_d), np.array(out_i)


@pytest.mark.parametrize("seed", range(6))
def test_merge_kneighbors_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n_shards = rng.integers(1, 5)
    sizes = rng.integers(3, 9, size=n_shards)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * 10
    # Few distinct values: ties within and across shards.
    distances = [np.sort(rng.integers(0, 4, size=(7, s)).astype(np.float32), axis=1) for s in sizes]
    indices = [np.tile(np.arange(s), (7, 1)) for s in sizes]
    indices[0][0, -1] = -1  # a padding entry is ignored
    k = int(min(sizes.sum() - 1, 6))
    d, i = merge_kneighbors(distances, indices, k, offsets=offsets)
    ref_d, ref_i = merge_reference(distances, indices, offsets, k)
    assert_array_equal(i, ref_i)
    assert_array_equal(d, ref_d)
    # Global indices given directly: same answer.
    d2, i2 = merge_kneighbors(distances, [ind + o for ind, o in zip(indices, offsets)], k)
    assert_array_equal(i2[i2 >= 0], i[i >= 0])


def test_merge_kneighbors_exact_ties_by_global_index():
    d = [np.array([[1.0, 1.0]]), np.array([[1.0, 0.5]])]
    ind = [np.array([[5, 9]]), np.array([[0, 3]])]
    # Global entries: (1.0, 5), (1.0, 9), (1.0, 2), (0.5, 5); sorted by distance,
    # then global index: (0.5, 5), (1.0, 2), (1.0, 5), (1.0, 9).
    out_d, out_i = merge_kneighbors(d, ind, 3, offsets=[0, 2])
    assert_array_equal(out_i, [[5, 2, 5]])
    assert_array_equal(out_d, [[0.5, 1.0, 1.0]])
    out_d, out_i = merge_kneighbors(d, ind, offsets=[0, 2])
    assert_array_equal(out_i, [[5, 2, 5, 9]])
    assert_array_equal(out_d, [[0.5, 1.0, 1.0, 1.0]])


def test_merge_kneighbors_errors():
    d = [np.zeros((2, 3))]
    with pytest.raises(ValueError, match="same length"):
        merge_kneighbors(d, [])
    with pytest.raises(ValueError, match="same shape"):
        merge_kneighbors(d, [np.zeros((2, 2), int)])
    with pytest.raises(TypeError, match="integer"):
        merge_kneighbors(d, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="n_neighbors=4"):
        merge_kneighbors(d, [np.zeros((2, 3), int)], 4)
    with pytest.raises(ValueError, match="offsets"):
        merge_kneighbors(d, [np.zeros((2, 3), int)], offsets=[0, 1])


def test_sharded_search_on_memmap(tmp_path, small_blocks):
    tables, codes = make_problem("random", nq=5, n=1000, seed=11)
    path = tmp_path / "codes.npy"
    np.save(path, codes)
    mm = np.load(path, mmap_mode="r")
    ref = kneighbors_reference(tables, codes, 4)
    d, i = aqd_kneighbors(tables, mm, 4, n_shards=4)
    assert_array_equal(i, ref[1])
    assert_array_equal(d, ref[0])


# ------------------------------------------------------------ query sources
@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_query_sources_give_the_results_of_their_tables(small_blocks, metric):
    # Tables computed per block inside the tasks: the same results as the
    # tables of all queries computed at once.
    Q, codebooks, codes = integer_problem(seed=7)
    Q = Q + np.random.default_rng(7).normal(size=Q.shape)  # not exact: rounding must agree too
    for source, tables in (
        (VectorQueries(Q, codebooks, metric), distance_tables(Q, codebooks, metric)),
        (CodeQueries(codes, codebooks, metric), distance_tables(decode(codes, codebooks), codebooks, metric)),
    ):
        for k in (1, 9, 200):
            for n_shards in (1, 3):
                got = aqd_kneighbors(source, codes, k, n_shards=n_shards)
                ref = aqd_kneighbors(tables, codes, k)
                assert_array_equal(got[1], ref[1])
                assert_array_equal(got[0], ref[0])
        got = aqd_radius_neighbors(source, codes, 10.0 if metric == "sqeuclidean" else -3.0, n_shards=2)
        ref = aqd_radius_neighbors(tables, codes, 10.0 if metric == "sqeuclidean" else -3.0)
        for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
            assert_array_equal(a, b)


@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_a_query_alone_gets_the_results_it_gets_in_a_batch(metric):
    rng = np.random.default_rng(8)
    codebooks = rng.normal(size=(4, 16, 2)).astype(np.float32)
    codes = rng.integers(0, 16, size=(500, 4)).astype(np.uint8)
    Q = rng.normal(size=(300, 8))
    batch = aqd_kneighbors(VectorQueries(Q, codebooks, metric), codes, 7)
    for q in (0, 129, 299):
        alone = aqd_kneighbors(VectorQueries(Q[q : q + 1], codebooks, metric), codes, 7)
        assert_array_equal(alone[1][0], batch[1][q])
        assert_array_equal(alone[0][0], batch[0][q])


# --------------------------------------------------------------- scan_blocks
def test_scan_blocks_context():
    default = _search.get_scan_blocks()
    assert default == ScanBlocks(128, 4096)
    with scan_blocks(query=3, database=5) as blocks:
        assert blocks == ScanBlocks(3, 5) == _search.get_scan_blocks()
        with scan_blocks(query=1):
            assert _search.get_scan_blocks() == ScanBlocks(1, 4096)
        assert _search.get_scan_blocks() == ScanBlocks(3, 5)
    assert _search.get_scan_blocks() == default
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            ScanBlocks(query=bad)
    with pytest.raises(ValueError, match="ScanBlocks.database"):
        with scan_blocks(database=0):
            pass  # pragma: no cover


def test_full_sort_block_follows_working_memory():
    assert _search.full_sort_block(1000, working_memory=1) == 16  # 256 KiB / (16 B * 1000)
    assert _search.full_sort_block(10**9, working_memory=1) == 1  # at least one query
    assert _search.full_sort_block(10, working_memory=1024) == 128  # at most a query block
    assert _search.full_sort_block(10, working_memory=1024, max_block=5) == 5


# ------------------------------------------------------------ memory bound
def _peak_mib(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20, result


def test_search_memory_does_not_grow_with_the_queries():
    # 6,000 items (M=8, K=256): the tables of every query at once would take
    # 6,000 * 8 KiB = 47 MiB (twice that with their flat copy). One task at
    # a time holds the tables of 128 queries (1 MiB) and 4096 x 128 distances.
    rng = np.random.default_rng(9)
    codebooks = rng.normal(size=(8, 256, 2)).astype(np.float32)
    codes = rng.integers(0, 256, size=(6_000, 8)).astype(np.uint8)
    for source in (
        CodeQueries(codes, codebooks, "sqeuclidean"),
        VectorQueries(rng.normal(size=(6_000, 16)).astype(np.float32), codebooks, "sqeuclidean"),
    ):
        peak, (dist, ind) = _peak_mib(lambda: aqd_kneighbors(source, codes, 5, n_jobs=1))
        output = (dist.nbytes + ind.nbytes) / 2**20
        assert peak < 16 + 2 * output, (type(source).__name__, peak)
        rows = slice(1000, 1010)
        ref = aqd_kneighbors(source.block(rows).tables(), codes, 5)
        assert_array_equal(ind[rows], ref[1])


# ------------------------------------------------------------ running tasks
def _task_report(i):
    from sklearn import get_config

    return i, threading.current_thread().name, get_config()["working_memory"]


def test_tasks_run_on_the_process_thread_pool_in_order_with_the_callers_config():
    from sklearn import config_context

    tasks = [(_task_report, (i,)) for i in range(23)]  # more tasks than the window in flight
    with config_context(working_memory=77):
        results = list(_search._run_tasks(tasks, n_jobs=2))
    assert [r[0] for r in results] == list(range(23))
    assert all(r[1].startswith("skdqn-search") for r in results)
    assert all(r[2] == 77 for r in results)
    pool = _search._thread_pool(2)
    assert _search._thread_pool(2) is pool  # made once, reused by every search
    inline = list(_search._run_tasks(tasks, n_jobs=1))
    assert [r[0] for r in inline] == list(range(23)) and not inline[0][1].startswith("skdqn-search")


def _failing_task(i):
    if i == 3:
        raise ValueError("task 3 failed")
    return i


def test_a_task_error_reaches_the_caller():
    with pytest.raises(ValueError, match="task 3 failed"):
        list(_search._run_tasks([(_failing_task, (i,)) for i in range(6)], n_jobs=2))


def _task_pid(i):
    return os.getpid()


def test_a_joblib_context_for_processes_is_respected():
    from joblib import parallel_backend

    tasks = [(_task_report, (i,)) for i in range(4)]
    with parallel_backend("loky", n_jobs=2):
        assert not _search._default_threads()
        results = list(_search._run_tasks(tasks, n_jobs=2))
        one = list(_search._run_tasks([(_task_pid, (0,))], n_jobs=2))
    assert [r[0] for r in results] == list(range(4))
    assert not any(r[1].startswith("skdqn-search") for r in results)  # run by joblib's workers
    assert one == [os.getpid()]  # a single task stays in the caller's process: its codes are not shipped
    assert _search._default_threads()


def test_a_threading_context_sets_the_pool_size():
    from joblib import parallel_backend

    with parallel_backend("threading", n_jobs=3):
        results = list(_search._run_tasks([(_task_report, (i,)) for i in range(7)], n_jobs=None))
    assert [r[0] for r in results] == list(range(7))
    assert {r[1].rsplit("_", 1)[0] for r in results} == {"skdqn-search"}
    assert (os.getpid(), 3) in _search._POOLS


def _nested_task(i):
    inner = list(_search._run_tasks([(_task_report, (j,)) for j in range(4)], n_jobs=2))
    assert [r[0] for r in inner] == [0, 1, 2, 3]
    return i


def test_a_task_that_searches_again_runs_it_inline_not_on_the_busy_pool():
    out = []
    runner = threading.Thread(
        target=lambda: out.extend(_search._run_tasks([(_nested_task, (i,)) for i in range(4)], n_jobs=2)), daemon=True
    )
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "nested search deadlocked on the shared pool"
    assert out == [0, 1, 2, 3]


def test_one_pool_per_worker_count_whatever_the_number_of_tasks():
    before = set(_search._POOLS)
    for n in range(2, 9):
        list(_search._run_tasks([(_task_report, (i,)) for i in range(n)], n_jobs=5))
    assert set(_search._POOLS) - before <= {(os.getpid(), 5)}  # not one pool per number of tasks
    assert _search._thread_pool(5) is _search._POOLS[(os.getpid(), 5)]
    names = [t.name for t in threading.enumerate() if t.name.startswith("skdqn-search")]
    assert len(names) <= sum(key[1] for key in _search._POOLS if key[0] == os.getpid())


_RAN = []


def _slow_or_failing(i):
    if i == 0:
        raise ValueError("first task failed")
    time.sleep(0.2)
    _RAN.append(i)
    return i


def test_tasks_not_started_are_cancelled_when_one_fails():
    _RAN.clear()
    with pytest.raises(ValueError, match="first task failed"):
        list(_search._run_tasks([(_slow_or_failing, (i,)) for i in range(12)], n_jobs=2))
    time.sleep(0.6)
    assert set(_RAN) <= {1, 2}  # at most the tasks already running on the two threads
