"""Tests of the numpy scan kernel (skdqn.search._kernels).

``aqd_distances`` is compared with a plain float32 loop; the kernel's two
top-k methods and its radius scan with a stable argsort / a mask of all
distances, over a grid of block sizes with many ties.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from conftest import kneighbors_reference, make_problem
from skdqn.search._kernels import NumpyKernel, aqd_distances
from skdqn.search._search import get_kernel


# ----------------------------------------------------------------- helpers
def distances_reference(tables, codes):
    nq, M, K = tables.shape
    out = np.empty((nq, codes.shape[0]), dtype=np.float32)
    for q in range(nq):
        for i in range(codes.shape[0]):
            acc = np.float32(0.0)
            for m in range(M):
                acc = np.float32(acc + tables[q, m, codes[i, m]])
            out[q, i] = acc
    return out


# ------------------------------------------------------------ aqd_distances
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_aqd_distances_match_reference_loop(kind):
    tables, codes = make_problem(kind, nq=5, n=60)
    assert_array_equal(aqd_distances(tables, codes), distances_reference(tables, codes))




# ----------------------------------------------------------- NumpyKernel
@pytest.mark.parametrize("K", [16, 256, 2**12])
@pytest.mark.parametrize("M", [1, 3, 8])
@pytest.mark.parametrize("db_block", [1, 7, 4096])
def test_both_topk_methods_match_the_reference(M, K, db_block):
    # Small integer tables: many exact ties, broken by row.
    tables, codes = make_problem("ties", nq=6, n=90, M=M, K=K, seed=M * K + db_block)
    kernel = NumpyKernel()
    for k in (1, 5, 90):
        ref_d, ref_i = kneighbors_reference(tables, codes, k)
        for method in ("threshold", "full_sort"):
            d, i = kernel.kneighbors(tables, codes, k, method=method, db_block=db_block)
            assert d.dtype == np.float32 and i.dtype == np.intp
            assert_array_equal(i, ref_i)
            assert_array_equal(d, ref_d)


@pytest.mark.parametrize("db_block", [1, 5, 4096])
@pytest.mark.parametrize("threshold", [-1.0, 0.0, 2.0, 5.0, 100.0])
def test_radius_scan_matches_the_mask(db_block, threshold):
    tables, codes = make_problem("ties", nq=7, n=60, seed=int(threshold) + db_block)
    full = aqd_distances(tables, codes)
    found = NumpyKernel().radius_neighbors(tables, codes, np.float32(threshold), db_block=db_block)
    assert len(found) == 7
    for q, (d, i) in enumerate(found):
        expected = np.flatnonzero(full[q] <= threshold)
        assert_array_equal(i, expected)
        assert_array_equal(d, full[q, expected])


def test_kernel_edge_cases():
    kernel = NumpyKernel()
    tables = np.array([[[0.0, 1.0]], [[2.0, 0.0]]], dtype=np.float32)  # two queries, M=1, K=2
    one = np.array([[1]], dtype=np.uint8)
    for method in ("threshold", "full_sort"):
        d, i = kernel.kneighbors(tables, one, 1, method=method)
        assert_array_equal(i, [[0], [0]])
        assert_array_equal(d, [[1.0], [0.0]])
        same = np.zeros((5, 1), np.uint8)  # all items equal: the first k rows, in order
        d, i = kernel.kneighbors(tables, same, 3, method=method, db_block=2)
        assert_array_equal(i, [[0, 1, 2], [0, 1, 2]])
        assert_array_equal(d, [[0.0] * 3, [2.0] * 3])
    empty = kernel.radius_neighbors(tables, np.zeros((0, 1), np.uint8), np.float32(10.0))
    assert [len(i) for _, i in empty] == [0, 0]


def test_get_kernel():
    assert isinstance(get_kernel("numpy"), NumpyKernel)
    with pytest.raises(ValueError, match="kernel must be one of"):
        get_kernel("cuda-magic")
