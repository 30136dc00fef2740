"""Tests of the product-quantization core (skdqn._pq)."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.utils import check_random_state

from skdqn._pq import (
    _first_minima,
    check_magnitude,
    code_dtype,
    decode,
    encode,
    kmeans_plusplus,
    max_magnitude,
    quantization_error,
    split_subspaces,
    train_codebooks,
    update_codebooks,
)


# ----------------------------------------------------------------- helpers
def encode_reference(X, codebooks):
    """The reference loop of the ``encode`` docstring: exact float64 differences of X as given."""
    M, K, ds = codebooks.shape
    X = np.asarray(X)
    codes = np.empty((X.shape[0], M), dtype=np.int64)
    for i in range(X.shape[0]):
        for m in range(M):
            x = X[i, m * ds : (m + 1) * ds].astype(np.float64)
            codes[i, m] = np.argmin(((codebooks[m].astype(np.float64) - x) ** 2).sum(axis=1))
    return codes


def decode_reference(codes, codebooks):
    M, K, ds = codebooks.shape
    out = np.empty((codes.shape[0], M * ds), dtype=codebooks.dtype)
    for i in range(codes.shape[0]):
        for m in range(M):
            out[i, m * ds : (m + 1) * ds] = codebooks[m, codes[i, m]]
    return out


def with_degenerate_rows(X, rng):
    """Append all-zero rows and duplicates of existing rows."""
    n, d = X.shape
    dup = X[rng.integers(0, n, size=max(2, n // 10))]
    return np.vstack([X, np.zeros((3, d), X.dtype), dup, dup[:1]])


# ------------------------------------------------------------------ encode
@pytest.mark.parametrize(
    "M, K, ds, seed",
    [
        (1, 2, 1, 0),
        (1, 4, 3, 1),
        (2, 16, 2, 2),
        (3, 17, 5, 3),
        (4, 64, 4, 4),
        (8, 256, 2, 5),
        (2, 300, 3, 6),  # K > 256: uint16 codes
    ],
)
def test_encode_matches_reference_loop(M, K, ds, seed):
    rng = np.random.default_rng(seed)
    codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    X = with_degenerate_rows(rng.normal(size=(150, M * ds)), rng)
    # Rows that are exactly codewords, too.
    X = np.vstack([X, decode(rng.integers(0, K, size=(5, M)), codebooks)])
    codes = encode(X, codebooks)
    assert codes.shape == (X.shape[0], M)
    assert codes.dtype == code_dtype(K)
    assert codes.dtype == (np.uint8 if K <= 256 else np.uint16)
    assert_array_equal(codes, encode_reference(X, codebooks))


def test_encode_ties_go_to_smallest_codeword():
    # Integer data and codebooks: many exact ties, exact arithmetic.
    rng = np.random.default_rng(0)
    codebooks = rng.integers(-2, 3, size=(3, 12, 2)).astype(np.float32)
    codebooks[:, 5] = codebooks[:, 2]  # duplicated codewords: index 2 must win
    X = rng.integers(-3, 4, size=(300, 6)).astype(np.float64)
    X[::7] = 0.0
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))
    assert not np.any(encode(decode(np.full((1, 3), 5), codebooks), codebooks) == 5)


def test_encode_data_far_from_origin():
    # Regression: the ||c||^2 - 2<x, c> expansion lost precision in float32
    # for data far from the origin (17% of the codes differed at offset 1000).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8)) + 1000.0
    codebooks = (rng.normal(size=(2, 32, 4)) + 1000.0).astype(np.float32)
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))


def test_encode_close_codewords_far_apart():
    # Issue 11: codewords closer than ~3e-4 of the spread were confused.
    codebooks = np.array([[[0.0], [1000.0], [1000.1]]], dtype=np.float32)
    assert_array_equal(encode(codebooks[0], codebooks).ravel(), [0, 1, 2])
    assert_array_equal(encode(np.array([[1000.04], [1000.06]]), codebooks).ravel(), [1, 2])


def test_encode_is_exact_in_the_precision_of_X():
    # float64 data between two float32 codewords: decided on the float64 value,
    # not on its float32 rounding (which lands on the midpoint's other side).
    c0 = np.float32(1.0)
    c1 = np.nextafter(c0, np.float32(2))
    codebooks = np.array([[[0.0], [c0], [c1]]], dtype=np.float32)
    mid = (float(c0) + float(c1)) / 2
    X = np.array([[mid - 1e-12], [mid + 1e-12]])
    assert_array_equal(encode(X, codebooks).ravel(), [1, 2])
    assert_array_equal(encode(X, codebooks).ravel(), encode_reference(X, codebooks).ravel())


def test_encode_near_duplicate_codewords_everywhere():
    # Every row has several candidates within the float32 error: all re-checked.
    rng = np.random.default_rng(3)
    base = rng.normal(size=(2, 16, 4)) + 500.0
    codebooks = np.concatenate([base, base + 1e-4, base - 1e-4], axis=1).astype(np.float32)
    X = np.vstack([rng.normal(size=(300, 8)) + 500.0, decode(rng.integers(0, 48, (40, 2)), codebooks)])
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))


@pytest.mark.parametrize("pair_elements", [1, 7, 64, 1 << 22])
def test_encode_recheck_in_bounded_blocks(monkeypatch, pair_elements):
    """The exact re-check of near-tied rows gives the same codes in blocks of any size."""
    import skdqn._pq as pq

    rng = np.random.default_rng(3)
    base = rng.normal(size=(2, 16, 4)) + 500.0
    codebooks = np.concatenate([base, base + 1e-4, base - 1e-4], axis=1).astype(np.float32)
    X = np.vstack([rng.normal(size=(300, 8)) + 500.0, decode(rng.integers(0, 48, (40, 2)), codebooks)])
    monkeypatch.setattr(pq, "_PAIR_ELEMENTS", pair_elements)
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))


@settings(max_examples=50, deadline=None)
@given(
    offset=st.sampled_from([0.0, 1.0, 1000.0, -3e4]),
    spread=st.sampled_from([1.0, 1e3, 1e5]),
    gap=st.sampled_from([1e-1, 1e-3, 1e-5]),
    data=st.data(),
)
def test_encode_equals_the_reference_loop_property(offset, spread, gap, data):
    # Clusters of close codewords, far apart: the hard case for the expansion.
    ds = data.draw(st.integers(1, 3))
    n_centres = data.draw(st.integers(1, 4))
    centres = data.draw(hnp.arrays(np.float64, (n_centres, ds), elements=st.floats(-1, 1)))
    jitter = data.draw(hnp.arrays(np.int64, (n_centres, 3, ds), elements=st.integers(-2, 2)))
    words = offset + spread * centres[:, None, :] + gap * jitter
    codebooks = words.reshape(1, -1, ds).astype(np.float32)
    picks = data.draw(hnp.arrays(np.int64, 6, elements=st.integers(0, codebooks.shape[1] - 1)))
    noise = data.draw(hnp.arrays(np.float64, (6, ds), elements=st.floats(-2, 2)))
    X = np.vstack([codebooks[0][picks].astype(np.float64) + gap * noise, codebooks[0]])
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))


def test_first_minima_ties_go_to_the_first_candidate():
    rows = np.array([0, 0, 0, 2, 2, 5])
    cands = np.array([1, 4, 7, 0, 3, 9])
    dist = np.array([2.0, 1.0, 1.0, 0.5, 0.5, 3.0])
    ids, best = _first_minima(rows, cands, dist)
    assert_array_equal(ids, [0, 2, 5])
    assert_array_equal(best, [4, 0, 9])


def test_max_magnitude_keeps_float32_distances_finite():
    for d in (1, 3, 64, 4096):
        limit = max_magnitude(d)
        assert np.float32(limit) == limit  # a float32 value
        a = np.full(d, limit, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isfinite(((a - (-a)) ** 2).sum(dtype=np.float32))
        assert d * (4.0 * limit) ** 2 > float(np.finfo(np.float32).max)  # a margin of 2, not more


@pytest.mark.parametrize("value", [1e19, -1e20, 1e30, np.inf])
def test_check_magnitude_refuses_overflowing_values(value):
    X = np.zeros((3, 2))
    X[1, 1] = value
    with pytest.raises(ValueError, match=r"Q has values of magnitude .*2 features overflow float32"):
        check_magnitude(X, name="Q")
    check_magnitude(X[[0, 2]], name="Q")
    check_magnitude(np.empty((0, 2)))


@pytest.mark.parametrize("scale", [1e19, 1e20, 1e30])
def test_encode_and_train_refuse_overflowing_values(scale):
    X = np.random.default_rng(0).normal(size=(50, 4)) * scale
    codebooks = np.zeros((2, 4, 2), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither OverflowError nor RuntimeWarning from numpy
        with pytest.raises(ValueError, match="Rescale X"):
            train_codebooks(X, 2, 4, random_state=0)
        with pytest.raises(ValueError, match="Rescale X"):
            encode(X, codebooks)
        C = train_codebooks(X / scale * max_magnitude(4) / 10, 2, 4, random_state=0)
    assert np.isfinite(C).all()


def test_encode_codewords_are_their_own_codes():
    rng = np.random.default_rng(1)
    codebooks = rng.normal(size=(4, 20, 3)).astype(np.float32)
    codes = rng.integers(0, 20, size=(50, 4))
    assert_array_equal(encode(decode(codes, codebooks), codebooks), codes)


def test_encode_does_not_modify_inputs():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 6))
    codebooks = rng.normal(size=(2, 8, 3)).astype(np.float32)
    X0, C0 = X.copy(), codebooks.copy()
    encode(X, codebooks)
    assert_array_equal(X, X0)
    assert_array_equal(codebooks, C0)


def test_code_dtype():
    assert code_dtype(2) == np.uint8
    assert code_dtype(256) == np.uint8
    assert code_dtype(257) == np.uint16
    assert code_dtype(2**16) == np.uint16
    assert code_dtype(2**16 + 1) == np.uint32


def test_split_subspaces_is_a_view_and_checks_divisibility():
    X = np.arange(24.0).reshape(3, 8)
    blocks = split_subspaces(X, 4)
    assert blocks.shape == (4, 3, 2)
    assert np.shares_memory(blocks, X)
    assert_array_equal(blocks[2], X[:, 4:6])
    with pytest.raises(ValueError, match="not divisible by M=3"):
        split_subspaces(X, 3)


# ------------------------------------------------------------------ decode
@pytest.mark.parametrize("K, dtype", [(16, np.uint8), (300, np.uint16)])
def test_decode_shapes_dtypes_and_reference(K, dtype):
    rng = np.random.default_rng(3)
    M, ds = 3, 4
    codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    X = with_degenerate_rows(rng.normal(size=(60, M * ds)), rng)
    codes = encode(X, codebooks)
    assert codes.dtype == dtype
    X_hat = decode(codes, codebooks)
    assert X_hat.shape == X.shape
    assert X_hat.dtype == np.float32
    assert_array_equal(X_hat, decode_reference(codes, codebooks))
    # Decoding is a projection: re-encoding the reconstruction changes nothing.
    assert_array_equal(encode(X_hat, codebooks), codes)
    # Empty input.
    assert decode(codes[:0], codebooks).shape == (0, M * ds)
    assert encode(X[:0], codebooks).shape == (0, M)


def test_quantization_error_matches_definition():
    rng = np.random.default_rng(4)
    codebooks = rng.normal(size=(2, 8, 3)).astype(np.float32)
    X = rng.normal(size=(100, 6)).astype(np.float32)
    codes = encode(X, codebooks)
    expected = ((X - decode(codes, codebooks)).astype(np.float64) ** 2).sum(axis=1).mean()
    assert_allclose(quantization_error(X, codebooks), expected)
    assert_allclose(quantization_error(X, codebooks, codes), expected)
    assert quantization_error(decode(codes, codebooks), codebooks) == 0.0


# -------------------------------------------------------- update_codebooks
def test_update_codebooks_is_least_squares_solution():
    rng = np.random.default_rng(5)
    M, K, ds, n = 3, 6, 2, 80
    X = with_degenerate_rows(rng.normal(size=(n, M * ds)), rng)
    n = X.shape[0]
    codes = np.tile(np.arange(K), n // K + 1)[:n]
    codes = np.stack([rng.permutation(codes) for _ in range(M)], axis=1).astype(np.uint8)
    start = rng.normal(size=(M, K, ds)).astype(np.float32)
    new, n_reseeded = update_codebooks(X, codes, start)
    assert n_reseeded == 0
    assert new.dtype == np.float32 and new.shape == (M, K, ds)
    blocks = split_subspaces(X, M)
    for m in range(M):
        H = np.zeros((n, K))
        H[np.arange(n), codes[:, m]] = 1.0
        # min_C ||Z_m - H C||^2  <=>  C_m = (H^T H)^{-1} H^T Z_m
        expected, *_ = np.linalg.lstsq(H, blocks[m], rcond=None)
        assert_allclose(new[m], expected, rtol=1e-5, atol=1e-6)
    assert_array_equal(start, start.copy())  # returned, not in place


def test_update_codebooks_reseeds_empty_codewords():
    # Codeword 2 of subspace 0 is used by nobody: re-seeded on the point with
    # the largest quantization error in that subspace (row 3 here).
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 2.0], [9.0, 3.0], [0.0, 0.0]])
    codes = np.array([[0, 0], [1, 1], [1, 2], [1, 2], [0, 0]], dtype=np.uint8)
    codebooks = np.array(
        [[[0.0], [1.0], [5.0]], [[0.0], [1.0], [2.5]]], dtype=np.float32
    )
    X0, C0 = X.copy(), codebooks.copy()
    new, n_reseeded = update_codebooks(X, codes, codebooks)
    assert n_reseeded == 1
    assert_allclose(new[0].ravel(), [0.0, (1.0 + 0.5 + 9.0) / 3, 9.0])
    assert_allclose(new[1].ravel(), [0.0, 1.0, 2.5])
    assert_array_equal(X, X0)
    assert_array_equal(codebooks, C0)


def test_update_codebooks_several_empty_codewords_get_distinct_points():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(20, 2))
    codes = np.zeros((20, 1), dtype=np.uint8)  # codewords 1..4 all empty
    codebooks = np.zeros((1, 5, 2), dtype=np.float32)
    new, n_reseeded = update_codebooks(X, codes, codebooks)
    assert n_reseeded == 4
    # Errors measured with the current codebooks (all zeros): ||x||^2.
    far = np.argsort(-(X**2).sum(axis=1), kind="stable")[:4]
    assert_allclose(new[0, 0], X.mean(axis=0), rtol=1e-6)
    assert_allclose(new[0, 1:], X[far].astype(np.float32))


# --------------------------------------------------------- kmeans_plusplus
def test_kmeans_plusplus_seeded_and_reproducible():
    rng = np.random.default_rng(7)
    X = with_degenerate_rows(rng.normal(size=(200, 3)).astype(np.float32), rng)
    a = kmeans_plusplus(X, 10, random_state=0)
    b = kmeans_plusplus(X, 10, random_state=0)
    c = kmeans_plusplus(X, 10, random_state=1)
    assert a.shape == (10, 3) and a.dtype == np.float32
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Centroids are rows of X, all distinct on continuous data.
    assert all((X == row).all(axis=1).any() for row in a)
    assert np.unique(a, axis=0).shape[0] == 10


def test_kmeans_plusplus_finds_every_distinct_point():
    # As many distinct points as centroids (plus duplicates): points already
    # chosen have zero weight, so every distinct point is picked once.
    base = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [5.0, 5.0], [2.0, 2.0]])
    X = np.vstack([base, base[[0, 0, 3, 1]], np.zeros((4, 2))])
    for seed in range(20):
        C = kmeans_plusplus(X, 5, random_state=seed)
        assert np.unique(C, axis=0).shape[0] == 5


def test_kmeans_plusplus_fewer_distinct_points_than_k():
    X = np.vstack([np.zeros((6, 2)), np.ones((6, 2))])
    C = kmeans_plusplus(X, 5, random_state=0)
    assert C.shape == (5, 2)
    assert {tuple(row) for row in C} == {(0.0, 0.0), (1.0, 1.0)}


# ---------------------------------------------------------- train_codebooks
def test_train_codebooks_reproducible():
    rng = np.random.default_rng(8)
    X = with_degenerate_rows(rng.normal(size=(300, 8)), rng)
    a = train_codebooks(X, 2, 16, random_state=0)
    b = train_codebooks(X, 2, 16, random_state=0)
    c = train_codebooks(X, 2, 16, random_state=1)
    assert a.shape == (2, 16, 4) and a.dtype == np.float32
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # A RandomState instance is consumed the same way as its seed.
    assert_array_equal(train_codebooks(X, 2, 16, random_state=np.random.RandomState(0)), a)


def test_train_codebooks_lowers_error_vs_kmeanspp_start():
    rng = np.random.default_rng(9)
    X = with_degenerate_rows(rng.normal(size=(400, 8)), rng).astype(np.float32)
    M, K = 4, 16
    # The start train_codebooks uses: k-means++ per subspace, same generator.
    start_rng = check_random_state(0)
    blocks = split_subspaces(X, M)
    start = np.stack([kmeans_plusplus(blocks[m], K, start_rng) for m in range(M)])
    trained = train_codebooks(X, M, K, random_state=0)
    assert quantization_error(X, trained) < quantization_error(X, start)
    # Lloyd iterations never increase the error.
    one = train_codebooks(X, M, K, n_iter=1, random_state=0)
    assert quantization_error(X, trained) <= quantization_error(X, one) + 1e-6
    assert quantization_error(X, one) <= quantization_error(X, start) + 1e-6


def test_train_codebooks_max_samples():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(500, 4))
    C = train_codebooks(X, 2, 8, max_samples=50, random_state=0)
    assert C.shape == (2, 8, 2)
    assert_array_equal(C, train_codebooks(X, 2, 8, max_samples=50, random_state=0))
    assert np.isfinite(C).all()


def test_reconstruction_error_shrinks_as_M_grows():
    rng = np.random.default_rng(11)
    X = with_degenerate_rows(rng.normal(size=(1000, 16)), rng)
    errors = [
        quantization_error(X, train_codebooks(X, M, 16, random_state=0)) for M in (1, 2, 4, 8, 16)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize(
    "X",
    [
        np.zeros((20, 4)),  # one distinct point
        np.repeat(np.eye(4)[:3], 7, axis=0),  # 3 distinct points, K=8
        np.vstack([np.zeros((5, 4)), np.ones((5, 4)), np.zeros((5, 4))]),
    ],
    ids=["all-zero", "few-distinct", "zeros-and-ones"],
)
def test_degenerate_data_does_not_crash(X):
    X0 = X.copy()
    C = train_codebooks(X, 2, 8, random_state=0)
    assert C.shape == (2, 8, 2)
    assert np.isfinite(C).all()
    codes = encode(X, C)
    assert codes.max() < 8
    # Fewer distinct points than codewords: quantization is lossless.
    assert quantization_error(X, C, codes) == 0.0
    assert_array_equal(X, X0)


# ------------------------------------------- the kernel, in blocks (issue 28)
def midpoint_rows(codebooks, rng, n):
    """Rows exactly halfway between two codewords of each subspace (exact ties when representable)."""
    M, K, ds = codebooks.shape
    a, b = rng.integers(0, K, size=(2, n, M))
    return ((decode(a, codebooks).astype(np.float64) + decode(b, codebooks)) / 2).astype(np.float32)


@pytest.mark.parametrize("score_floats", [1, 257, 1 << 12, 1 << 20])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encode_in_blocks_of_any_size_equals_the_reference_loop(monkeypatch, score_floats, dtype):
    """Blocks of one row to all rows (a partial last block too): the codes of the reference loop."""
    import skdqn._pq as pq

    rng = np.random.default_rng(21)
    M, K, ds = 3, 24, 4
    codebooks = rng.integers(-3, 4, size=(M, K, ds)).astype(np.float32)  # integers: exact midpoints
    codebooks[:, 7] = codebooks[:, 3]  # a duplicated codeword: 3 must win
    codebooks[:, 9] = codebooks[:, 8] + np.float32(1e-6)  # near-duplicates
    X = np.vstack([
        with_degenerate_rows(rng.normal(size=(97, M * ds)) * 2, rng),
        midpoint_rows(codebooks, rng, 40),
        decode(rng.integers(0, K, size=(9, M)), codebooks),
    ]).astype(dtype)
    X0 = X.copy()
    monkeypatch.setattr(pq, "_SCORE_FLOATS", score_floats)
    codes = encode(X, codebooks)
    assert_array_equal(codes, encode_reference(X, codebooks))
    assert_array_equal(X, X0)


def test_encode_wide_subspaces_equals_the_reference_loop():
    # ds in the hundreds: the re-check window is wide; still the reference codes.
    rng = np.random.default_rng(22)
    M, K, ds = 2, 20, 300
    codebooks = rng.normal(size=(M, K, ds)).astype(np.float32)
    codebooks[:, 5] = codebooks[:, 4] + np.float32(1e-5)
    X = np.vstack([rng.normal(size=(60, M * ds)), midpoint_rows(codebooks, rng, 10), np.zeros((2, M * ds))])
    assert_array_equal(encode(X, codebooks), encode_reference(X, codebooks))


def test_float32_winners_of_the_kernel_without_the_recheck():
    # exact=False (the k-means iterations): the float32 argmin, equal to the
    # exact codes wherever the nearest codeword is clearly nearest.
    from skdqn._pq import _nearest_codewords

    rng = np.random.default_rng(23)
    codebooks = rng.normal(size=(4, 32, 3)).astype(np.float32)
    X = rng.normal(size=(500, 12)).astype(np.float32)
    fast = np.empty((500, 4), np.intp)
    _nearest_codewords(split_subspaces(X, 4).transpose(1, 0, 2), codebooks, fast, exact=False)
    exact = encode_reference(X, codebooks)
    d = ((split_subspaces(X, 4)[:, :, None, :].astype(np.float64) - codebooks[:, None].astype(np.float64)) ** 2).sum(-1)
    gap = np.sort(d, axis=2)[:, :, 1] - np.sort(d, axis=2)[:, :, 0]  # (M, n)
    clear = gap.T > 1e-3
    assert clear.mean() > 0.9
    assert_array_equal(fast[clear], exact[clear])


# ------------------------------------------------------ the one Lloyd loop
def reference_lloyd(X, codebooks, n_iter):
    """The previous refine_codebooks: all subspaces together, until no code changes."""
    codes = encode_reference(X, codebooks)
    for _ in range(n_iter):
        codebooks, _ = update_codebooks(X, codes, codebooks)
        new = encode_reference(X, codebooks)
        if np.array_equal(new, codes):
            break
        codes = new
    return codebooks, codes


def test_lloyd_equals_the_joint_reference_loop():
    # Each subspace stops on its own; a converged one would not change anyway.
    from skdqn._pq import lloyd, refine_codebooks

    rng = np.random.default_rng(24)
    M, K = 3, 8
    X = rng.normal(size=(300, M * 2)).astype(np.float32)
    start = np.stack([kmeans_plusplus(X[:, 2 * m : 2 * m + 2], K, random_state=m) for m in range(M)])
    for n_iter in (0, 1, 3, 50):
        C_ref, codes_ref = reference_lloyd(X, start, n_iter)
        C, codes = refine_codebooks(X, start, n_iter=n_iter)
        assert_allclose(C, C_ref, rtol=1e-6, atol=1e-6)
        assert_array_equal(codes, codes_ref)
        C3, labels = lloyd(split_subspaces(X, M).transpose(1, 0, 2), start, n_iter=n_iter)
        assert_array_equal(C3, C)
        assert_array_equal(labels, codes)


def test_lloyd_does_not_modify_its_inputs_and_checks_init():
    from skdqn._pq import lloyd

    rng = np.random.default_rng(25)
    X3 = rng.normal(size=(100, 2, 3))
    start = X3[:6].transpose(1, 0, 2).astype(np.float32)
    labels = np.zeros((100, 2), np.uint8)
    copies = X3.copy(), start.copy(), labels.copy()
    lloyd(X3, start, labels, n_iter=5)
    for a, b in zip((X3, start, labels), copies):
        assert_array_equal(a, b)
    with pytest.raises(ValueError, match="init must be"):
        train_codebooks(X3.reshape(100, 6), 2, 4, init="kmeans")
    with pytest.raises(ValueError, match="at least K rows"):
        train_codebooks(X3.reshape(100, 6)[:3], 2, 4)


def previous_train_codebooks(X, M, K, seed, n_iter=20):
    """The previous train_codebooks: k-means++ on all rows, then up to n_iter joint iterations."""
    rng = check_random_state(seed)
    X = np.asarray(X, dtype=np.float32)
    blocks = split_subspaces(X, M)
    start = np.stack([kmeans_plusplus(blocks[m], K, rng) for m in range(M)])
    codes = encode(X, start)
    for _ in range(n_iter):
        start, _ = update_codebooks(X, codes, start)
        new = encode(X, start)
        if np.array_equal(new, codes):
            break
        codes = new
    return start


@pytest.mark.parametrize("standardize, M, K", [(False, 8, 16), (True, 16, 16), (True, 8, 32)])
def test_train_codebooks_as_good_as_the_previous_version_on_digits(standardize, M, K):
    """Quantization error within 1 % of the previous k-means (k-means++, 20 iterations), mean of 3 seeds."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:900].astype(np.float32)
    if standardize:  # many repeated values, rare large ones: where a poor start shows
        X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-6)
    new = np.mean([quantization_error(X, train_codebooks(X, M, K, random_state=s)) for s in range(3)])
    old = np.mean([quantization_error(X, previous_train_codebooks(X, M, K, s)) for s in range(3)])
    assert new <= 1.01 * old, (new, old)
