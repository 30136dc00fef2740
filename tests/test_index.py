"""The fitted index objects behind AQDNeighbors (skdqn.search._index): flat and inverted-file, one plan."""

from dataclasses import replace

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn import AQDNeighbors
from skdqn.search._index import FlatIndex, IVFIndex, SearchPlan, build_index, choose_n_probe, recall_at_k
from skdqn.search._ivf import make_lists
from skdqn._pq import decode
from skdqn.search._search import get_kernel
from skdqn.search._tables import VectorQueries


@pytest.fixture
def parts():
    rng = np.random.default_rng(0)
    codebooks = rng.normal(size=(2, 8, 3)).astype(np.float32)
    codes = rng.integers(0, 8, size=(60, 2)).astype(np.uint8)
    codes[:10] = codes[10:20]  # tied items
    return codebooks, codes, rng.normal(size=(5, 6))


def test_build_index_is_flat_without_lists_and_ivf_with(parts):
    codebooks, codes, _ = parts
    flat = build_index(codebooks, codes)
    assert type(flat) is FlatIndex and flat.lists is None and flat.n_samples == 60
    assert_array_equal(flat.row_items(), np.arange(60))
    lists = make_lists(decode(codes, codebooks), 4, None, "l2", random_state=0)
    ivf = build_index(codebooks, codes[lists.ids], lists=lists)
    assert type(ivf) is IVFIndex and not isinstance(ivf, FlatIndex)
    assert_array_equal(ivf.row_items(), lists.ids)


def test_an_ivf_index_probing_every_list_equals_the_flat_index(parts):
    codebooks, codes, Q = parts
    lists = make_lists(decode(codes, codebooks), 4, None, "l2", random_state=0)
    flat, ivf = build_index(codebooks, codes), build_index(codebooks, codes[lists.ids], lists=lists)
    queries = VectorQueries(Q, codebooks, "sqeuclidean")
    plan = SearchPlan(kernel=get_kernel("numpy"), n_probe=4)
    for got, expected in zip(ivf.kneighbors(queries, 7, plan), flat.kneighbors(queries, 7, plan)):
        assert_array_equal(got, expected)
    threshold = np.float32(np.median(flat.kneighbors(queries, 20, plan)[0]))
    (d1, i1), (d2, i2) = ivf.radius_neighbors(queries, threshold, plan), flat.radius_neighbors(queries, threshold, plan)
    assert sum(len(i) for i in i1) > 5
    for a, b in zip(i1 + d1, i2 + d2):
        assert_array_equal(a, b)
    one = SearchPlan(kernel=get_kernel("numpy"), n_probe=1)  # the plan's n_probe is what is probed
    assert not np.array_equal(ivf.kneighbors(queries, 7, one)[1], flat.kneighbors(queries, 7, one)[1])


def test_extend_returns_a_new_index_and_leaves_the_old_one(parts):
    codebooks, codes, _ = parts
    flat = build_index(codebooks, codes[:40], labels=np.zeros(40))
    grown = flat.extend(codes[40:], None, np.zeros(60))
    assert flat.n_samples == 40 and grown.n_samples == 60
    assert_array_equal(grown.codes, codes)
    with pytest.raises(AttributeError):  # frozen: published states never change
        grown.codes = codes


def test_the_estimator_holds_one_index_object():
    X = np.random.default_rng(1).normal(size=(200, 4))
    flat = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    ivf = AQDNeighbors(M=2, K=8, n_lists=4, random_state=0).fit(X)
    assert type(flat._state()) is FlatIndex and type(ivf._state()) is IVFIndex
    assert ivf.partial_fit(X[:10])._state().n_samples == 210


# ------------------------------------------------------------ n_probe="auto"
@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(3)
    centres = 3 * rng.normal(size=(40, 8))
    X = centres[rng.integers(0, 40, 6000)] + rng.normal(size=(6000, 8))
    return X, X[:200] + 0.05 * rng.normal(size=(200, 8))


def test_auto_n_probe_is_the_fewest_lists_reaching_the_recall_target(clustered):
    X, Q = clustered
    index = AQDNeighbors(M=2, K=32, n_lists=64, random_state=0).fit(X)
    assert index.n_probe == "auto" and 1 <= index.n_probe_ <= 64
    chosen = index.n_probe_
    recalls = {p: index.set_params(n_probe=p).measure_recall(X[::30]) for p in (1, 2, 4, 8, 16, 32, 64)}
    assert recalls[64] == 1.0
    assert all(recalls[a] <= recalls[b] + 1e-9 for a, b in zip((1, 2, 4, 8, 16, 32), (2, 4, 8, 16, 32, 64)))
    # the choice was measured on the fitted vectors: on a sample of the same data it reaches the target
    assert recalls[chosen] >= 0.9 and (chosen == 1 or recalls[chosen // 2] < 0.97)
    index.set_params(n_probe="auto")
    assert index.n_probe_ == chosen and index.measure_recall(Q) >= 0.9


def test_choose_n_probe_and_recall_at_k_against_the_exhaustive_search(clustered):
    X, Q = clustered
    index = AQDNeighbors(M=2, K=32, n_lists=32, n_probe=32, random_state=0).fit(X)
    state, plan = index._state(), SearchPlan(kernel=get_kernel("numpy"))
    queries = VectorQueries(Q, state.codebooks, "sqeuclidean")
    assert recall_at_k(state, queries, 10, replace(plan, n_probe=32)) == 1.0
    low = recall_at_k(state, queries, 10, replace(plan, n_probe=1))
    assert 0 < low < 1
    for target in (0.5, 0.9, 0.99, 1.0):
        chosen = choose_n_probe(state, queries, plan, target=target)
        assert recall_at_k(state, queries, 10, replace(plan, n_probe=chosen)) >= target
        assert chosen == 1 or recall_at_k(state, queries, 10, replace(plan, n_probe=chosen // 2)) < target


def test_auto_n_probe_survives_save_load_pickle_and_partial_fit(clustered, tmp_path):
    import pickle

    X, _ = clustered
    index = AQDNeighbors(M=2, K=16, n_lists=16, random_state=0).fit(X[:3000])
    chosen = index.n_probe_
    assert AQDNeighbors.load(index.save(tmp_path / "i.npz")).n_probe_ == chosen
    assert pickle.loads(pickle.dumps(index)).n_probe_ == chosen
    assert index.partial_fit(X[3000:]).n_probe_ == chosen
    assert AQDNeighbors(M=2, K=16).fit(X[:500]).n_probe_ is None  # exhaustive: nothing probed
    assert AQDNeighbors(M=2, K=16).fit(X[:500]).measure_recall() == 1.0


def test_an_integer_n_probe_measures_nothing_until_auto_is_asked(clustered, tmp_path):
    X, Q = clustered
    index = AQDNeighbors(M=2, K=16, n_lists=16, n_probe=2, random_state=0).fit(X[:3000])
    assert index._state().auto_probe is None and index.n_probe_ == 2  # the build skipped the measurement
    saved = index.save(tmp_path / "i.npz")
    index.set_params(n_probe="auto")
    chosen = index.n_probe_  # measured now, on stored items, and kept
    assert 1 <= chosen <= 16 and index._state().auto_probe == chosen
    again = AQDNeighbors.load(saved).set_params(n_probe="auto")
    assert again.n_probe_ == chosen  # the same sample (random_state), the same choice
    for a, b in zip(again.kneighbors(Q, 5), index.kneighbors(Q, 5)):
        np.testing.assert_array_equal(a, b)
