"""OPQ: the training kernel (skdqn._opq) and AQDNeighbors(rotation=...).

An index with a rotation must give exactly what an index without one gives
for the rotated queries, on every search path; the kernel is checked
against plain PQ and, where faiss is installed, against faiss' OPQMatrix.
"""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from conftest import assert_same_search
from skdqn import AQDNeighbors
from skdqn._opq import eigen_allocation, procrustes, random_rotation, rotate, train_opq
from skdqn._pq import decode, quantization_error, train_codebooks


def correlated(n=600, d=16, seed=0):
    """A random rotation of Gaussian data with variances spread over two decades."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, d)) * np.geomspace(5.0, 0.05, d)
    return (Z @ random_rotation(d, seed + 1) + 3.0).astype(np.float32)


def orthogonality(R):
    R = np.asarray(R, dtype=np.float64)
    return np.abs(R.T @ R - np.eye(R.shape[0])).max()


@pytest.fixture(scope="module")
def opq_index():
    X = correlated()
    return AQDNeighbors(n_neighbors=5, M=4, K=16, rotation="opq", random_state=0).fit(X), X


# ------------------------------------------------------------------ kernel
def test_small_kernels():
    R = random_rotation(6, random_state=0)
    assert orthogonality(R) < 1e-12
    assert_array_equal(R, random_rotation(6, random_state=0))
    X = np.random.default_rng(0).normal(size=(50, 6))
    assert_allclose(procrustes(X, X @ R), R, atol=1e-10)  # recovers an exact rotation
    assert orthogonality(eigen_allocation(X, 3)) < 1e-12


def test_rotate_is_row_independent():
    rng = np.random.default_rng(0)
    R = random_rotation(12, 0).astype(np.float32)
    X = rng.normal(size=(2100, 12)).astype(np.float32)  # three blocks, the last one partial
    batch = rotate(X, R)
    assert batch.dtype == np.float32
    assert_allclose(batch, X.astype(np.float64) @ R.astype(np.float64), rtol=1e-6, atol=1e-6)
    for i in (0, 1023, 1024, 2099):
        assert_array_equal(rotate(X[i : i + 1], R), batch[i : i + 1])
    R = random_rotation(300, 1)  # blocks of 32 rows
    X = rng.normal(size=(70, 300))
    batch = rotate(X, R)
    for i in (0, 31, 32, 69):
        assert_array_equal(rotate(X[i : i + 1], R), batch[i : i + 1])


def test_train_opq_is_orthogonal_seeded_and_beats_pq():
    X = correlated()
    R, C = train_opq(X, 4, 16, n_iter=10, random_state=0)
    assert R.dtype == np.float32 and C.shape == (4, 16, 4)
    assert orthogonality(R) < 1e-5
    R2, C2 = train_opq(X, 4, 16, n_iter=10, random_state=0)
    assert_array_equal(R, R2)
    assert_array_equal(C, C2)
    pq = quantization_error(X, train_codebooks(X, 4, 16, random_state=0))
    assert quantization_error(rotate(X, R), C) < 0.8 * pq
    with pytest.raises(ValueError, match="init must be"):
        train_opq(X, 4, 16, init="pca")


@pytest.mark.parametrize("init", ["identity", "eigen", ("identity", "eigen")])
def test_other_starts(init):
    X = correlated()
    pq = quantization_error(X, train_codebooks(X, 4, 16, random_state=0))
    R, C = train_opq(X, 4, 16, n_iter=5, init=init, random_state=0)
    assert orthogonality(R) < 1e-5
    assert quantization_error(rotate(X, R), C) < pq


def faiss_opq_error(faiss, X, M, nbits, n_iter, seed):
    """Training error of faiss' OPQ started from the random rotation ``seed`` (A preset, as faiss allows)."""
    d = X.shape[1]
    opq = faiss.OPQMatrix(d, M)
    opq.niter = n_iter
    pq = faiss.ProductQuantizer(d, M, nbits)  # else faiss trains its rotation for K = 256
    pq.cp.seed = 1234 + seed
    opq.pq = pq
    faiss.copy_array_to_vector(random_rotation(d, 100 + seed).T.astype(np.float32).ravel(), opq.A)
    inner = faiss.IndexPQ(d, M, nbits)
    inner.pq.cp.seed = 1234 + seed
    index = faiss.IndexPreTransform(opq, inner)
    index.train(X)
    return float(((X - index.sa_decode(index.sa_encode(X))) ** 2).sum(axis=1).mean())


def test_close_to_faiss_opq():
    # Both start from a random rotation, and the local minimum reached varies with it (by
    # up to 30 % here), so the mean errors over three starts are compared.
    faiss = pytest.importorskip("faiss")
    X = correlated(n=1000)
    M, nbits, n_iter = 4, 4, 20
    theirs = np.mean([faiss_opq_error(faiss, X, M, nbits, n_iter, seed) for seed in range(3)])
    ours = np.mean([quantization_error(rotate(X, R), C)
                    for R, C in (train_opq(X, M, 1 << nbits, n_iter=n_iter, random_state=s) for s in range(3))])
    assert ours <= 1.02 * theirs
    assert ours < 0.5 * quantization_error(X, train_codebooks(X, M, 1 << nbits, random_state=0))


# -------------------------------------------------------------- estimator
def test_fit_rotation_and_round_trip(opq_index):
    index, X = opq_index
    assert orthogonality(index.rotation_) < 1e-5
    assert_array_equal(index.encode(X), index.codes_)
    decoded = index.decode(index.codes_)  # in the original space
    assert_allclose(decoded, decode(index.codes_, index.codebooks_) @ index.rotation_.T.astype(np.float64),
                    rtol=1e-5, atol=1e-4)
    assert_array_equal(index.encode(decoded), index.codes_)
    plain = AQDNeighbors(M=4, K=16, random_state=0).fit(X)
    opq_error = ((X - decoded) ** 2).sum(axis=1).mean()
    assert opq_error < ((X - plain.decode(plain.codes_)) ** 2).sum(axis=1).mean()
    again = AQDNeighbors(n_neighbors=5, M=4, K=16, rotation="opq", random_state=0).fit(X)
    assert_array_equal(again.rotation_, index.rotation_)
    assert_array_equal(again.codes_, index.codes_)


def brute_force_aqd(index, Q, k):
    """Stable-argsort top-k of the squared AQD of the rotated queries (float64 tables)."""
    Qr = Q.astype(np.float64) @ index.rotation_.astype(np.float64)
    M, K, ds = index.codebooks_.shape
    tables = ((Qr.reshape(-1, M, 1, ds) - index.codebooks_.astype(np.float64)) ** 2).sum(axis=3)
    dist = tables[:, np.arange(M), index.codes_.astype(np.intp)].sum(axis=2)  # (nq, n)
    return np.argsort(dist, axis=1, kind="stable")[:, :k], np.sort(dist, axis=1)[:, :k]


def test_search_is_brute_force_aqd_over_rotated_codes(opq_index):
    index, X = opq_index
    Q = np.random.default_rng(1).normal(size=(25, X.shape[1])).astype(np.float32) * 2 + 3
    dist, ind = index.set_params(metric="sqeuclidean").kneighbors(Q)
    ref_ind, ref_dist = brute_force_aqd(index, Q, 5)
    assert_allclose(dist, ref_dist, rtol=1e-5)
    assert (ind == ref_ind).mean() > 0.95  # up to float32 near-ties
    index.set_params(metric="euclidean")


def unrotated(index, **params):
    """The same codes without a rotation: the reference, searched with rotated queries."""
    return AQDNeighbors.from_codes(index.codebooks_, index.codes_, **params)


@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_every_search_path_equals_the_rotated_reference(opq_index, metric, small_blocks):
    index, X = opq_index
    Q = np.random.default_rng(2).normal(size=(30, X.shape[1])).astype(np.float32) + 3
    index = AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation=index.rotation_,
                                    n_neighbors=4, metric=metric)
    ref = unrotated(index, n_neighbors=4, metric=metric)
    radius = float(np.median(ref.kneighbors(rotate(Q, index.rotation_))[0][:, -1]))
    assert_same_search(index, ref, X=None, radius=radius)  # X=None: stored items, no rotation needed
    Qr = rotate(Q, index.rotation_)
    for got, want in [(index.kneighbors(Q), ref.kneighbors(Qr)),
                      (index.radius_neighbors(Q, radius), ref.radius_neighbors(Qr, radius))]:
        for a, b in zip(got, want):
            for row_a, row_b in zip(a, b):
                assert_array_equal(row_a, row_b)
    # Inverted lists: coarse centroids in the rotated space, the same lists in both.
    lists = AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation=index.rotation_, n_lists=6,
                                    n_probe=2, n_neighbors=4, metric=metric, random_state=0)
    ref_lists = AQDNeighbors.from_codes(index.codebooks_, index.codes_, n_lists=6, n_probe=2,
                                        coarse_centroids=lists.coarse_centroids_, n_neighbors=4, metric=metric)
    assert_array_equal(lists.list_ids_, ref_lists.list_ids_)
    assert_array_equal(lists.kneighbors(Q)[1], ref_lists.kneighbors(Qr)[1])
    assert_array_equal(lists.kneighbors(Q)[0], ref_lists.kneighbors(Qr)[0])
    assert_same_search(lists, ref_lists, X=None, radius=radius)
    assert_same_search(lists.set_params(n_probe=6), index, Q)  # every list probed: exhaustive


def test_torch_backend_with_a_rotation(opq_index):
    pytest.importorskip("torch")
    index, X = opq_index
    Q = X[:20] + 0.1
    torch_index = AQDNeighbors(n_neighbors=5, M=4, K=16, rotation="opq", random_state=0, backend="torch",
                               device="cpu").fit(X)
    assert_same_search(torch_index, index, Q)


def test_fit_with_lists_and_partial_fit():
    X = correlated()
    full = AQDNeighbors(M=4, K=16, rotation="opq", n_lists=6, n_probe=2, random_state=0).fit(X[:400])
    grown = AQDNeighbors(M=4, K=16, rotation="opq", n_lists=6, n_probe=2, random_state=0).partial_fit(X[:400])
    grown.partial_fit(X[400:])
    assert_array_equal(grown.rotation_, full.rotation_)
    assert grown.n_samples_fit_ == 600
    codes = np.empty_like(grown.codes_)
    codes[grown.list_ids_] = grown.codes_  # item order
    assignments = np.repeat(np.arange(6), np.diff(grown.list_offsets_))[np.argsort(grown.list_ids_)]
    ref = AQDNeighbors.from_codes(grown.codebooks_, codes, n_lists=6, n_probe=2, list_assignments=assignments,
                                  coarse_centroids=grown.coarse_centroids_)
    assert_array_equal(codes, grown.encode(X))
    Q = X[:15] + 0.2
    assert_array_equal(grown.kneighbors(Q)[1], ref.kneighbors(rotate(Q, grown.rotation_))[1])


def test_given_rotation_and_codebooks():
    X = correlated()
    R = random_rotation(16, 5)
    index = AQDNeighbors(M=4, K=16, rotation=R, random_state=0).fit(X)
    assert_allclose(index.rotation_, R, atol=1e-7)
    assert_array_equal(index.codes_, AQDNeighbors(M=4, K=16, random_state=0).fit(rotate(X, index.rotation_)).codes_)
    lent = AQDNeighbors(M=4, K=16, rotation=index.rotation_, codebooks=index.codebooks_).fit(X)
    assert_array_equal(lent.codes_, index.codes_)


@pytest.mark.parametrize(
    "rotation, error, match",
    [
        ("pca", ValueError, "'rotation' parameter"),
        (np.eye(15), ValueError, r"rotation must have shape \(n_features, n_features\) = \(16, 16\)"),
        (np.eye(16)[:, :8], ValueError, "rotation must have shape"),
        (2 * np.eye(16), ValueError, "rotation is not orthogonal"),
        (np.eye(16) + 1e-3, ValueError, "rotation is not orthogonal"),
        (np.full((16, 16), np.nan), ValueError, "rotation contains NaN"),
        ([["a"] * 16] * 16, TypeError, "rotation must be None, 'opq' or an orthogonal array"),
    ],
)
def test_bad_rotations_are_refused_and_leave_the_index(opq_index, rotation, error, match):
    index, X = opq_index
    before = (index.rotation_.copy(), index.codes_.copy())
    with pytest.raises(error, match=match):
        AQDNeighbors(M=4, K=16, rotation=rotation).fit(X)
    with pytest.raises(error, match=match):
        AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation=rotation)
    failed = AQDNeighbors(**{**index.get_params(), "rotation": rotation})
    failed.__dict__.update({k: v for k, v in index.__dict__.items() if k.endswith("_") or k == "_fitted"})
    with pytest.raises(error, match=match):
        failed.fit(X)
    assert_array_equal(failed.rotation_, before[0])  # a failed fit leaves the fitted index as it was
    assert_array_equal(failed.codes_, before[1])


def test_opq_needs_data_and_free_codebooks(opq_index):
    index, X = opq_index
    with pytest.raises(ValueError, match="rotation='opq' learns the rotation together with the codebooks"):
        AQDNeighbors(M=4, K=16, rotation="opq", codebooks=index.codebooks_).fit(X)
    with pytest.raises(ValueError, match="rotation='opq' learns a rotation from data"):
        AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation="opq")


# ------------------------------------------------------------ save and load
@pytest.mark.parametrize("name", ["i", "i.npz"])
def test_save_load_carries_the_rotation(tmp_path, opq_index, name):
    index, X = opq_index
    loaded = AQDNeighbors.load(index.save(tmp_path / name), mmap_mode="r")
    assert loaded.rotation == "opq"
    assert_array_equal(loaded.rotation_, index.rotation_)
    assert_same_search(loaded, index, X[:20] + 0.1, radius=2.0)
    given = AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation=index.rotation_, n_lists=4,
                                    random_state=0)
    loaded = AQDNeighbors.load(given.save(tmp_path / ("g" + name)))
    assert_array_equal(loaded.rotation, index.rotation_)
    assert_same_search(loaded, given, X[:20])


def test_version_3_only_with_a_rotation_and_damage_refused(tmp_path, opq_index):
    index, X = opq_index
    folder = index.save(tmp_path / "r")
    header = json.loads((folder / "header.json").read_text())
    assert header["format_version"] == 3 and header["rotation"] == "opq"
    plain = AQDNeighbors(M=4, K=16, random_state=0).fit(X).save(tmp_path / "p")
    assert json.loads((plain / "header.json").read_text())["format_version"] == 1  # older readers read it
    np.save(folder / "rotation.npy", 2 * index.rotation_)
    with pytest.raises(ValueError, match="rotation.npy does not fit the header: rotation is not orthogonal"):
        AQDNeighbors.load(folder, verify=False)
    (folder / "rotation.npy").unlink()
    with pytest.raises(ValueError, match="rotation.npy is missing"):
        AQDNeighbors.load(folder, verify=False)


# ------------------------------------------------------------------ faiss
@pytest.mark.parametrize("lists", [False, True])
def test_faiss_round_trip(opq_index, lists):
    faiss = pytest.importorskip("faiss")
    index, X = opq_index
    params = dict(n_lists=4, n_probe=2, random_state=0) if lists else {}
    index = AQDNeighbors.from_codes(index.codebooks_, index.codes_, rotation=index.rotation_,
                                    metric="sqeuclidean", n_neighbors=5, **params)
    findex = index.to_faiss()
    assert isinstance(findex, faiss.IndexPreTransform)
    opq = faiss.downcast_VectorTransform(findex.chain.at(0))
    assert isinstance(opq, faiss.OPQMatrix)
    inner = faiss.downcast_index(findex.index)
    assert isinstance(inner, faiss.IndexIVFPQ if lists else faiss.IndexPQ)
    if lists:
        inner.nprobe = 2
    Q = X[:20] + 0.1
    D, I = findex.search(Q, 5)
    dist, ind = index.kneighbors(Q)
    assert_allclose(D, dist, rtol=1e-5, atol=1e-5)
    assert (I == ind).mean() > 0.95  # faiss rotates in float32: near-ties may swap
    back = AQDNeighbors.from_faiss(findex)
    assert_array_equal(back.rotation_, index.rotation_)
    assert_array_equal(back.codes_, index.codes_)
    assert_same_search(back, index, Q)
    if not lists:
        from skdqn.io._faiss import unpack_codes

        assert (unpack_codes(findex.sa_encode(X), 4, 4) == index.encode(X)).mean() > 0.99


def test_from_faiss_refuses_other_transforms():
    faiss = pytest.importorskip("faiss")
    X = correlated(n=300)
    pq = faiss.IndexPQ(16, 4, 4)
    pq.train(X)
    biased = faiss.LinearTransform(16, 16, True)
    faiss.copy_array_to_vector(np.eye(16, dtype=np.float32).ravel(), biased.A)
    faiss.copy_array_to_vector(np.ones(16, dtype=np.float32), biased.b)
    biased.is_trained = True
    with pytest.raises(ValueError, match="has a bias"):
        AQDNeighbors.from_faiss(faiss.IndexPreTransform(biased, pq))
    scaled = faiss.LinearTransform(16, 16, False)
    faiss.copy_array_to_vector((2 * np.eye(16, dtype=np.float32)).ravel(), scaled.A)
    scaled.is_trained = True
    with pytest.raises(ValueError, match="the faiss OPQMatrix's A.T is not orthogonal"):
        AQDNeighbors.from_faiss(faiss.IndexPreTransform(scaled, pq))
    with pytest.raises(ValueError, match="holds its own"):
        AQDNeighbors.from_faiss(AQDNeighbors(M=4, K=16, rotation="opq", random_state=0).fit(X).to_faiss(),
                                rotation=np.eye(16))
