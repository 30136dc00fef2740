"""Removing items: never returned again, stable numbering, compaction, persistence, faiss, CLI."""

import os

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn import AQDNeighbors
from skdqn.io._io import read_bundle, write_bundle

N = 300


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 6))
    X[:10] = 0.0  # zero rows
    X[10:20] = X[20:30]  # duplicates
    return X, rng.integers(0, 3, N), rng.normal(size=(8, 6)), rng.choice(N, 40, replace=False)


def _fitted(data, lists, backend="numpy"):
    X, y, _, _ = data
    extra = dict(n_lists=6, n_probe=6) if lists else {}  # every list probed: comparable to exhaustive
    return AQDNeighbors(M=2, K=8, random_state=0, backend=backend, device="cpu", **extra).fit(X, y)


def _rest(index, X, removed):
    """The reference: an exhaustive index of the remaining items' codes (same codebooks), and their numbers."""
    keep = np.setdiff1d(np.arange(N), removed)
    return AQDNeighbors.from_codes(index.codebooks_, index.encode(X[keep]), index._fit_labels[keep]), keep


@pytest.mark.parametrize("lists", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("compact", [False, True])
def test_search_after_removal_equals_an_index_of_the_rest(data, lists, backend, compact):
    X, y, Q, removed = data
    index = _fitted(data, lists, backend).remove(removed)
    if compact:
        index.compact()
        assert index.codes_.shape[0] == N - removed.size
    reference, keep = _rest(index, X, removed)
    dist, ind = index.kneighbors(Q, 7)
    ref_d, ref_i = reference.kneighbors(Q, 7)
    assert_array_equal(ind, keep[ref_i])
    assert np.allclose(dist, ref_d)
    radius = float(np.median(ref_d[:, -1]))
    for i, ri in zip(index.radius_neighbors(Q, radius)[1], reference.radius_neighbors(Q, radius)[1]):
        assert_array_equal(i, keep[ri])
    d_self, i_self = index.kneighbors(None, 3)
    assert d_self.shape == (N, 3) and (i_self[removed] == -1).all() and np.isinf(d_self[removed]).all()
    assert not np.isin(i_self, removed).any()
    assert all(len(i) == 0 for i in np.asarray(index.radius_neighbors(None, radius)[1], dtype=object)[removed])
    graph = index.kneighbors_graph(None, 3)
    assert graph.shape == (N, N) and graph[removed].nnz == 0 and graph[:, removed].nnz == 0
    assert index.score(Q[:6], y[:6]) == pytest.approx(reference.score(Q[:6], y[:6]))


@pytest.mark.parametrize("lists", [False, True])
def test_numbers_are_never_reused(data, lists):
    X, y, Q, removed = data
    index = _fitted(data, lists).remove(removed).compact()
    before = index.kneighbors(Q, 5)
    index.partial_fit(X[removed[:5]], y[removed[:5]])  # the removed items' vectors, added again
    assert index.n_samples_fit_ == N + 5 and index.codes_.shape[0] == N - removed.size + 5
    assert_array_equal(index.removed_, np.sort(removed))
    for j in range(5):  # item N + j exists under its new number only
        assert index.kneighbors(X[removed[j : j + 1]], 1, filter=[N + j], return_distance=False)[0, 0] == N + j
    found = index.kneighbors(X[removed[:5]], 3, return_distance=False)
    assert not np.isin(found, removed).any()  # ties (K = 8: many equal codes) go to smaller numbers
    new = index.kneighbors(None, 2, return_distance=False)
    assert new.shape == (N + 5, 2) and (new[removed] == -1).all() and (new[N:] >= 0).all()
    assert index.remove(np.arange(N, N + 5)).kneighbors(Q, 5)[1].tolist() == before[1].tolist()


@pytest.mark.parametrize("lists", [False, True])
@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("name, mmap", [("index.npz", None), ("index", "r")])
def test_save_and_load_keep_removals_and_numbers(data, tmp_path, lists, compact, name, mmap):
    _, _, Q, removed = data
    index = _fitted(data, lists).remove(removed)
    if compact:
        index.compact()
    loaded = AQDNeighbors.load(index.save(tmp_path / name), mmap_mode=mmap)
    assert_array_equal(loaded.removed_, index.removed_)
    assert loaded.n_samples_fit_ == N and loaded.codes_.shape == index.codes_.shape
    for a, b in zip(loaded.kneighbors(Q, 5), index.kneighbors(Q, 5)):
        assert_array_equal(a, b)
    assert_array_equal(loaded.compact().kneighbors(Q, 5)[1], index.kneighbors(Q, 5)[1])


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda a: a.update(removed=a["removed"][:-1]), "removed.npy must be bool of shape"),
        (lambda a: a.update(item_ids=a["item_ids"][::-1].copy()), "item_ids.npy must be int64"),
        (lambda a: a.update(removed=np.zeros_like(a["removed"])), "not removed are not stored"),
    ],
)
def test_a_damaged_removal_record_is_refused(data, tmp_path, damage, match):
    _, _, _, removed = data
    path = _fitted(data, False).remove(removed).compact().save(tmp_path / "index")
    header, arrays = read_bundle(path)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    damage(arrays)
    write_bundle(tmp_path / "damaged", header, arrays)
    with pytest.raises(ValueError, match=match):
        AQDNeighbors.load(tmp_path / "damaged")


def test_bad_indices_are_refused_and_leave_the_index_as_it_was(data):
    index = _fitted(data, False).remove([3])
    for bad, error in (([N], ValueError), ([-1], ValueError), ([0.5], TypeError), (np.ones((2, 2), int), ValueError)):
        with pytest.raises(error):
            index.remove(bad)
        assert_array_equal(index.removed_, [3])
    with pytest.raises(ValueError, match=r"n_samples_fit = 300 \(298 removed\)"):
        index.remove(np.arange(2, N)).kneighbors(None, 2)


def test_an_index_never_removed_from_saves_the_old_format(data, tmp_path):
    path = _fitted(data, False).save(tmp_path / "index")
    header, arrays = read_bundle(path)
    assert header["format_version"] == 1 and "removed" not in arrays


@pytest.mark.parametrize("lists", [False, True])
def test_to_faiss_leaves_removed_items_out(data, lists):
    faiss = pytest.importorskip("faiss")
    X, _, Q, removed = data
    index = _fitted(data, lists).set_params(metric="sqeuclidean").remove(removed)
    exported = index.to_faiss()
    if lists:
        exported.nprobe = 6
    assert exported.ntotal == N - removed.size
    D, I = exported.search(Q.astype(np.float32), 5)
    dist, ind = index.kneighbors(Q, 5)
    assert not np.isin(I, removed).any() and np.allclose(D, dist, atol=1e-4)
    assert isinstance(exported, faiss.IndexIDMap2) != lists


def test_cli_remove(data, tmp_path):
    from skdqn.cli import main

    _, _, Q, removed = data
    _fitted(data, True).save(tmp_path / "index.npz")
    np.save(tmp_path / "items.npy", removed)
    assert main(["remove", str(tmp_path / "index.npz"), str(tmp_path / "items.npy"), "-o",
                 str(tmp_path / "out.npz"), "--compact"]) == 0
    out = AQDNeighbors.load(tmp_path / "out.npz")
    assert_array_equal(out.removed_, np.sort(removed)) and out.codes_.shape[0] == N - removed.size
    assert main(["remove", str(tmp_path / "index.npz"), str(tmp_path / "items.npy"), "-o",
                 str(tmp_path / "index.npz")]) == 2  # never its own input
    np.save(tmp_path / "bad.npy", np.array([N + 1]))
    assert main(["remove", str(tmp_path / "index.npz"), str(tmp_path / "bad.npy"), "-o",
                 str(tmp_path / "o2.npz")]) == 2
    assert not os.path.exists(tmp_path / "o2.npz")
