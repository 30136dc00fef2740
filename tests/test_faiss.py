"""faiss interop (skdqn.io._faiss, AQDNeighbors.to_faiss / from_faiss).

The packing functions are pure numpy and always tested; the index
conversions run where faiss is installed (the ``test`` extra installs
faiss-cpu, so CI runs them).
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skdqn import AQDNeighbors
from skdqn.io._faiss import pack_codes, unpack_codes


def pack_reference(codes, nbits):
    n, M = codes.shape
    size = (M * nbits + 7) // 8
    out = np.zeros((n, size), np.uint8)
    for i in range(n):
        value = sum(int(codes[i, m]) << (m * nbits) for m in range(M))
        out[i] = np.frombuffer(value.to_bytes(size, "little"), np.uint8)
    return out


@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 5, 7, 8, 9, 12, 16])
@pytest.mark.parametrize("M", [1, 3, 8])
def test_pack_matches_reference_and_round_trips(nbits, M):
    rng = np.random.default_rng(nbits * 10 + M)
    dtype = np.uint8 if nbits <= 8 else np.uint16
    codes = rng.integers(0, 2**nbits, size=(40, M)).astype(dtype)
    codes[0] = 0
    codes[1] = 2**nbits - 1  # all bits set
    packed = pack_codes(codes, nbits)
    assert_array_equal(packed, pack_reference(codes, nbits))
    back = unpack_codes(packed, M, nbits)
    assert back.dtype == dtype
    assert_array_equal(back, codes)


# ------------------------------------------------------------ with faiss
faiss = pytest.importorskip("faiss")


def data(n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:5] = 0.0  # zero rows
    X[10:20] = X[30]  # duplicates
    return X


def assert_same_neighbours(d_a, i_a, d_b, i_b, rtol=1e-5):
    """Same distances to float32 precision; same items up to ties."""
    assert_allclose(d_a, d_b, rtol=rtol, atol=1e-5)
    for q in range(i_a.shape[0]):
        if not np.array_equal(i_a[q], i_b[q]):
            # Only the set of items strictly inside the k-th distance must agree.
            kth = d_a[q, -1]
            inside_a = set(i_a[q][d_a[q] < kth - 1e-4 * max(1.0, abs(kth))])
            inside_b = set(i_b[q][d_b[q] < kth - 1e-4 * max(1.0, abs(kth))])
            assert inside_a == inside_b, q


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "inner_product"])
@pytest.mark.parametrize("K", [16, 256])
def test_to_faiss_searches_like_the_index(metric, K):
    X = data()
    index = AQDNeighbors(n_neighbors=10, M=4, K=K, metric=metric, random_state=0).fit(X)
    findex = index.to_faiss()
    assert isinstance(findex, faiss.IndexPQ)
    assert findex.ntotal == len(X) and findex.pq.M == 4 and findex.pq.ksub == K
    D, I = findex.search(X[:100], 10)
    d, i = index.kneighbors(X[:100])
    if metric == "inner_product":
        D = -D  # faiss returns inner products, largest first
    elif metric == "euclidean":
        D = np.sqrt(np.maximum(D, 0))
    assert_same_neighbours(d, i, D, I)
    # The codes are the same, in faiss' packing.
    stored = faiss.vector_to_array(findex.codes).reshape(len(X), -1)
    assert_array_equal(unpack_codes(stored, 4, K.bit_length() - 1), index.codes_)


@pytest.mark.parametrize("nbits", [4, 6, 8, 10])
@pytest.mark.parametrize("faiss_metric", ["l2", "ip"])
def test_from_faiss_trained_index(nbits, faiss_metric):
    X = data(n=2000 if nbits < 10 else 1500, d=8, seed=nbits)
    metric = faiss.METRIC_L2 if faiss_metric == "l2" else faiss.METRIC_INNER_PRODUCT
    findex = faiss.IndexPQ(8, 2, nbits, metric)
    findex.pq.cp.min_points_per_centroid = 1  # tiny data: silence faiss' warning
    findex.train(X)
    findex.add(X)
    index = AQDNeighbors.from_faiss(findex, n_neighbors=7)
    assert index.metric == ("sqeuclidean" if faiss_metric == "l2" else "inner_product")
    assert index.codebooks_.shape == (2, 2**nbits, 4)
    assert index.n_samples_fit_ == len(X) and index.n_features_in_ == 8
    D, I = findex.search(X[:50], 7)
    d, i = index.kneighbors(X[:50])
    assert_same_neighbours(d, i, -D if faiss_metric == "ip" else D, I)
    # Our encoder gives faiss' codes (nearest codeword), up to exact ties.
    mism = (index.encode(X) != index.codes_).any(axis=1).mean()
    assert mism < 0.01
    # Round trip back to faiss: identical bytes.
    again = index.to_faiss()
    assert_array_equal(faiss.vector_to_array(again.codes), faiss.vector_to_array(findex.codes))


def test_from_faiss_metric_override_and_errors():
    X = data(n=1000, d=8)
    findex = faiss.IndexPQ(8, 2, 4)
    findex.train(X)
    findex.add(X)
    assert AQDNeighbors.from_faiss(findex, metric="euclidean").metric == "euclidean"
    with pytest.raises(ValueError, match="L2"):
        AQDNeighbors.from_faiss(findex, metric="inner_product")
    ip = faiss.IndexPQ(8, 2, 4, faiss.METRIC_INNER_PRODUCT)
    ip.train(X)
    with pytest.raises(ValueError, match="inner product"):
        AQDNeighbors.from_faiss(ip, metric="euclidean")
    with pytest.raises(ValueError, match="not trained"):
        AQDNeighbors.from_faiss(faiss.IndexPQ(8, 2, 4))
    with pytest.raises(TypeError, match="faiss.IndexPQ"):
        AQDNeighbors.from_faiss(faiss.IndexFlatL2(8))
    with pytest.raises(TypeError, match="faiss.IndexPQ"):
        AQDNeighbors.from_faiss(np.zeros(3))
    empty = AQDNeighbors.from_faiss(ip)  # trained, no items
    assert empty.n_samples_fit_ == 0


def test_to_faiss_needs_power_of_two_K():
    X = data(n=500, d=8)
    index = AQDNeighbors(M=2, K=12, random_state=0).fit(X)
    with pytest.raises(ValueError, match="power of two"):
        index.to_faiss()


# ------------------------------------------------------------ inverted lists
@pytest.mark.parametrize("metric", ["sqeuclidean", "inner_product"])
def test_ivf_to_faiss_searches_like_the_index(metric):
    X = data()
    index = AQDNeighbors(n_neighbors=10, M=4, K=16, metric=metric, n_lists=20, n_probe=3,
                         random_state=0).fit(X)
    findex = index.to_faiss()
    assert isinstance(findex, faiss.IndexIVFPQ) and not findex.by_residual
    assert findex.nlist == 20 and findex.ntotal == len(X)
    findex.nprobe = 3
    d, i = index.kneighbors(X[:100])
    f_d, f_i = findex.search(X[:100], 10)
    if metric == "inner_product":
        f_d = -f_d
    assert_same_neighbours(d, i, f_d, f_i)


def test_ivf_round_trip_through_faiss_is_exact():
    X = data()
    index = AQDNeighbors(n_neighbors=6, M=4, K=16, n_lists=12, n_probe=2, metric="sqeuclidean",
                         random_state=0).fit(X)
    back = AQDNeighbors.from_faiss(index.to_faiss(), n_neighbors=6, n_probe=2)
    for name in ("codebooks_", "codes_", "coarse_centroids_", "list_offsets_", "list_ids_"):
        assert_array_equal(getattr(back, name), getattr(index, name))
    d, i = back.kneighbors(X[:50])
    ref = index.kneighbors(X[:50])
    assert_array_equal(i, ref[1])
    assert_array_equal(d, ref[0])


def test_from_faiss_ivf_trained_by_faiss():
    X = data()
    quantizer = faiss.IndexFlatL2(16)
    findex = faiss.IndexIVFPQ(quantizer, 16, 8, 4, 4)
    findex.by_residual = False
    findex.train(X)
    findex.add(X)
    findex.nprobe = 3
    index = AQDNeighbors.from_faiss(findex, n_neighbors=5)
    assert index.n_probe == 3 and index.n_lists == 8 and index.metric == "sqeuclidean"
    d, i = index.kneighbors(X[:60])
    f_d, f_i = findex.search(X[:60], 5)
    assert_same_neighbours(d, i, f_d, f_i)


def test_from_faiss_ivf_refuses_residual_codes_and_foreign_ids():
    X = data()
    residual = faiss.IndexIVFPQ(faiss.IndexFlatL2(16), 16, 8, 4, 4)
    residual.train(X)
    residual.add(X)
    with pytest.raises(ValueError, match="by_residual=True"):
        AQDNeighbors.from_faiss(residual)
    with_ids = faiss.IndexIVFPQ(faiss.IndexFlatL2(16), 16, 8, 4, 4)
    with_ids.by_residual = False
    with_ids.train(X)
    with_ids.add_with_ids(X[:100], np.arange(100, dtype=np.int64) * 7)
    with pytest.raises(ValueError, match="ids are not 0 .. ntotal - 1"):
        AQDNeighbors.from_faiss(with_ids)
