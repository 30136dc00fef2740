"""Tests of skdqn.search._csr: list sums by scipy's CSR products against a plain loop and the numpy sum."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import skdqn.search._csr as csr
from skdqn.search import _tuning
from skdqn.search._csr import list_aqd, row_index
from skdqn.search._kernels import _scan_block
from skdqn.search._scan import table_offsets as _offsets


def reference_sums(tables, codes):
    """``out[r, ...] = sum_m tables[m * K + codes[r, m], ...]``, summed in subspace order by a loop."""
    n, M = codes.shape
    K = tables.shape[0] // M
    out = np.empty((n,) + tables.shape[1:], dtype=np.float32)
    for r in range(n):
        acc = tables[codes[r, 0]].copy()
        for m in range(1, M):
            acc += tables[m * K + int(codes[r, m])]
        out[r] = acc
    return out


def test_the_compiled_products_are_used():
    # scipy >= 1.8 has them and they pass the check at import: the numpy
    # sum is only a fallback.
    assert csr.BACKEND == "scipy"


def test_row_index():
    codes = np.array([[1, 0, 2], [3, 3, 0]], np.uint8)
    assert row_index(codes, 4).tolist() == [1, 4, 10, 3, 7, 8]
    assert row_index(codes[:0], 4).dtype == np.int32 and row_index(codes[:0], 4).size == 0


@pytest.mark.parametrize("backend", ["scipy", "numpy"])
@pytest.mark.parametrize("M, K, dtype", [(1, 4, np.uint8), (3, 16, np.uint8), (8, 256, np.uint8), (2, 300, np.uint16)])
@pytest.mark.parametrize("width", [None, 1, 3, 17])
@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_list_aqd_matches_the_loop(monkeypatch, backend, M, K, dtype, width, n):
    monkeypatch.setattr(csr, "BACKEND", backend)
    rng = np.random.default_rng(M * 7 + n)
    shape = (M * K,) if width is None else (M * K, width)
    tables = rng.normal(size=shape).astype(np.float32)
    codes = rng.integers(0, K, size=(n, M)).astype(dtype)
    codes[: n // 3] = K - 1  # duplicates, the last codeword
    out = np.empty((n,) + shape[1:], dtype=np.float32)
    got = list_aqd(tables, row_index(codes, K), out)
    assert got is out
    assert_array_equal(got, reference_sums(tables, codes))


@pytest.mark.parametrize("layout", ["fortran", "strided", "memmap"])
def test_row_index_of_any_layout(tmp_path, layout):
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, size=(30, 4)).astype(np.uint8)
    expected = row_index(codes, 16)
    if layout == "fortran":
        other = np.asfortranarray(codes)
    elif layout == "strided":
        other = np.repeat(codes, 2, axis=0)[::2]
    else:
        np.save(tmp_path / "c.npy", codes)
        other = np.load(tmp_path / "c.npy", mmap_mode="r")
    assert_array_equal(row_index(other, 16), expected)


@pytest.mark.parametrize("width", [None, 4])
def test_scipy_and_numpy_give_the_numpy_scan_bit_for_bit(width):
    # Signed zeros included: the products start from -0.0, so a row of -0.0
    # entries sums to -0.0 as numpy's does; other values to the last bit.
    rng = np.random.default_rng(2)
    M, K, n = 4, 8, 300
    tables = rng.normal(size=(M * K, width or 1)).astype(np.float32) * 1e3
    tables[::5] = -0.0
    tables[1::7] = 1e-30
    codes = rng.integers(0, K, size=(n, M)).astype(np.uint8)
    codes[:10] = 0  # rows of -0.0 entries only
    scan = _scan_block(tables, codes, _offsets(M, K), 0, n, np.empty((n, width or 1), np.float32),
                       np.empty((n, width or 1), np.float32))
    x = tables[:, 0].copy() if width is None else tables
    index = row_index(codes, K)
    shape = (n,) if width is None else (n, width)
    for got in (csr._scipy_aqd(x, index, n, M, np.empty(shape, np.float32)),
                csr._numpy_aqd(x, index, n, M, np.empty(shape, np.float32))):
        expected = scan[:, 0] if width is None else scan
        assert_array_equal(got, expected)
        assert_array_equal(np.signbit(got), np.signbit(expected))


def test_a_failing_check_falls_back_to_numpy(monkeypatch):
    class Broken:
        def csr_matvec(self, *args):
            raise ValueError("changed")

    monkeypatch.setattr(csr, "_sparsetools", Broken())
    assert csr._check_scipy() == "numpy"


def test_cached_constants_grow_for_long_lists(monkeypatch):
    monkeypatch.setattr(_tuning, "CALL_ENTRIES", 12)  # 4 rows of 3 cached at first
    monkeypatch.setattr(csr, "_offsets", {})
    monkeypatch.setattr(csr, "_rows", {})
    rng = np.random.default_rng(3)
    tables = rng.normal(size=12).astype(np.float32)
    for n in (3, 10, 50):
        codes = rng.integers(0, 4, size=(n, 3)).astype(np.uint8)
        assert_array_equal(list_aqd(tables, row_index(codes, 4), np.empty(n, np.float32)),
                           reference_sums(tables, codes))
    assert csr.rows_per_call(3) == 4 and csr._rows[3][0].size == 51  # grown to the longest list only
