"""The one running top-k and radius collector (skdqn.search._topk), against plain sorts."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn.search._ranking import PAD_KEY, pack_keys
from skdqn.search._topk import RadiusCollector, RunningTopK, merge_keys, pool_topk


def test_pool_topk_takes_the_smallest_keys_of_uneven_runs():
    rng = np.random.default_rng(0)
    query = np.r_[np.zeros(50, int), np.full(3, 2), np.full(7, 3)]
    keys = rng.integers(0, 2**40, query.size).astype(np.uint64)
    perm = rng.permutation(query.size)
    got = pool_topk(query[perm], keys[perm], 5, 4)
    for q in range(5):
        expected = np.sort(keys[query == q])[:4]
        assert_array_equal(got[q, : expected.size], expected)
        assert (got[q, expected.size :] == PAD_KEY).all()


def test_merge_keys_keeps_the_k_smallest_of_both():
    best = np.array([[1, 4, PAD_KEY]], dtype=np.uint64)
    new = np.array([[2, 3, 9]], dtype=np.uint64)
    assert_array_equal(merge_keys(best, new, 3), [[1, 2, 3]])


@pytest.mark.parametrize("limit", [None, 1, 5, 10**6])
def test_running_topk_equals_a_stable_sort_however_often_it_folds(limit):
    rng = np.random.default_rng(1)
    nq, k = 4, 3
    top = RunningTopK(nq, k, limit=limit)
    assert np.isinf(top.kth).all() and not top.full
    everything = []
    for step in range(20):
        q = rng.integers(0, nq, 4)
        d = rng.integers(0, 5, 4).astype(np.float32)  # many ties: broken by id
        d[0] = -0.0 if step == 3 else d[0]  # -0.0 ties +0.0
        i = rng.integers(0, 1000, 4)
        everything.append((q, d, i))
        merged = top.add(q, d, i)
        assert merged == (not top._pool)
    dist, ind = top.result()
    assert top.full
    q, d, i = (np.concatenate(p) for p in zip(*everything))
    for row in range(nq):
        order = np.lexsort((i[q == row], d[q == row]))[:k]
        assert_array_equal(ind[row], i[q == row][order])
        assert_array_equal(dist[row], d[q == row][order])
    assert_array_equal(top.kth, dist[:, -1])


def test_running_topk_pads_queries_with_fewer_items_and_keeps_infinite_distances():
    top = RunningTopK(3, 2)
    top.add(np.array([0, 2, 2]), np.array([np.inf, 1.0, 0.5], np.float32), np.array([4, 7, 8]))
    dist, ind = top.result()
    assert_array_equal(ind, [[4, -1], [-1, -1], [8, 7]])  # an infinite distance is an item, padding is not
    assert_array_equal(dist, [[np.inf, np.inf], [np.inf, np.inf], [0.5, 1.0]])
    assert not top.full


def test_running_topk_add_keys_is_add():
    a, b = RunningTopK(2, 2), RunningTopK(2, 2)
    q, d, i = np.array([0, 1, 0]), np.array([3.0, 1.0, 2.0], np.float32), np.array([1, 2, 3])
    a.add(q, d, i)
    b.add_keys(q, pack_keys(d, i))
    assert_array_equal(a.result_keys(), b.result_keys())


@pytest.mark.parametrize("ascending", [True, False])
def test_radius_collector_returns_each_querys_matches_by_id(ascending):
    rng = np.random.default_rng(2)
    q = rng.integers(0, 5, 200)
    i = rng.permutation(1000)[:200]
    if ascending:  # a scan of increasing rows
        order = np.argsort(i)
        q, i = q[order], i[order]
    d = rng.random(200).astype(np.float32)
    found = RadiusCollector(6)
    found.add(q[:120], d[:120], i[:120])
    found.add(q[120:120], d[120:120], i[120:120])  # nothing: ignored
    found.add(q[120:], d[120:], i[120:])
    per_query = found.per_query(ids_ascending=ascending)
    assert len(per_query) == 6 and per_query[5][0].size == 0
    for row, (dist, ind) in enumerate(per_query):
        mine = np.flatnonzero(q == row)
        order = mine[np.argsort(i[mine])]
        assert_array_equal(ind, i[order])
        assert_array_equal(dist, d[order])
        assert ind.dtype == np.intp


def test_radius_collector_with_nothing_found():
    per_query = RadiusCollector(2).per_query()
    assert [(d.dtype, i.dtype, d.size) for d, i in per_query] == [(np.float32, np.intp, 0)] * 2
