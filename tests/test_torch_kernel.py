"""Tests of the torch scan kernel (skdqn.search._torch_kernel) and of ``AQDNeighbors(backend="torch")``.

On the CPU the torch kernel must return exactly what the numpy kernel and the
stable-argsort reference return (neighbours, tie order, float32 distances
bit for bit). The CUDA tests run only on a machine with CUDA and are skipped
otherwise (they say so): without a GPU, the CUDA path is not tested here.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

import skdqn.search._torch_kernel as torch_kernel
import skdqn.search._tuning
from conftest import assert_same_search, kneighbors_reference
from skdqn import AQDNeighbors
from skdqn.search._kernels import NumpyKernel, aqd_distances
from skdqn.search._search import get_kernel
from skdqn.search._search import aqd_kneighbors, aqd_radius_neighbors
from skdqn.search._torch_kernel import TorchKernel, resolve_device
from test_qscan import problem

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine: CUDA path not tested")
no_cuda = pytest.mark.skipif(CUDA, reason="this machine has CUDA")


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of ``db_block`` codes, so that small problems cross chunk boundaries."""
    monkeypatch.setattr(skdqn.search._tuning, "TORCH_CPU_BYTES", 0)
    monkeypatch.setattr(skdqn.search._tuning, "TORCH_DEVICE_BYTES", 0)


# ------------------------------------------------------------ kernel, grid
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("kind", ["sqeuclidean", "inner_product", "ties", "near_ties"])
@pytest.mark.parametrize("K", [16, 256, 2**12])
@pytest.mark.parametrize("M", [1, 3, 8])
def test_torch_kneighbors_match_the_reference(kind, K, M, fast, tiny_chunks):
    # fast: the float16 integer scan and the exact re-rank; else the float32 sums.
    n = 120
    tables, codes = problem(kind, nq=5, n=n, M=M, K=K, seed=M + K)
    kernel = TorchKernel("cpu", fast=fast)
    for k in (1, 6, n):
        ref_d, ref_i = kneighbors_reference(tables, codes, k)
        for db_block in (1, 7, 4096):
            for method in ("threshold", "full_sort"):
                d, i = kernel.kneighbors(tables, codes, k, method=method, db_block=db_block)
                assert d.dtype == np.float32 and i.dtype == np.intp
                assert_array_equal(i, ref_i)
                assert_array_equal(d, ref_d)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("kind", ["sqeuclidean", "ties", "near_ties"])
@pytest.mark.parametrize("K", [16, 2**12])
def test_torch_radius_matches_the_mask(kind, K, fast, tiny_chunks):
    tables, codes = problem(kind, nq=4, n=100, M=3, K=K, seed=K)
    full = aqd_distances(tables, codes)
    for threshold in np.quantile(full, [0.0, 0.1, 1.0]).astype(np.float32):
        for db_block in (1, 9, 4096):
            found = TorchKernel("cpu", fast=fast).radius_neighbors(tables, codes, threshold, db_block=db_block)
            assert len(found) == 4
            for q, (d, i) in enumerate(found):
                expected = np.flatnonzero(full[q] <= threshold)
                assert_array_equal(i, expected)
                assert_array_equal(d, full[q, expected])
    empty = TorchKernel("cpu", fast=fast).radius_neighbors(tables, codes[:0], np.float32(1.0))
    assert [len(i) for _, i in empty] == [0] * 4


def test_torch_kernel_in_the_engine_with_shards_and_workers():
    tables, codes = problem("ties", nq=40, n=3000, M=4, K=16, seed=7)
    ref = aqd_kneighbors(tables, codes, 9)
    for n_shards, n_jobs in ((1, 1), (3, 2)):
        got = aqd_kneighbors(tables, codes, 9, n_shards=n_shards, n_jobs=n_jobs, kernel="torch")
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])
        r_ref = aqd_radius_neighbors(tables, codes, 2.0)
        r_got = aqd_radius_neighbors(tables, codes, 2.0, n_shards=n_shards, n_jobs=n_jobs, kernel="torch")
        for a, b in zip(r_got[1] + r_got[0], r_ref[1] + r_ref[0]):
            assert_array_equal(a, b)


# --------------------------------------------------------------- estimator
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "inner_product"])
def test_backend_torch_gives_the_numpy_results(metric, small_blocks):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12))
    X[50:60] = X[3]  # duplicates: ties
    params = dict(n_neighbors=6, M=3, K=16, metric=metric, random_state=0)
    ref = AQDNeighbors(**params).fit(X)
    for n_jobs in (None, 2):
        got = AQDNeighbors(**params, backend="torch", device="cpu", n_jobs=n_jobs).fit(X)
        radius = -1.0 if metric == "inner_product" else 2.0
        assert_same_search(got, ref, X[:30], radius=radius)
        assert_same_search(got, ref, None, radius=radius)
        for a, b in ((got.kneighbors_graph(X[:20]), ref.kneighbors_graph(X[:20])),
                     (got.radius_neighbors_graph(None, radius, mode="distance"),
                      ref.radius_neighbors_graph(None, radius, mode="distance"))):
            assert (a != b).nnz == 0


@no_cuda
def test_cuda_without_cuda_is_a_clear_error():
    X = np.random.default_rng(0).normal(size=(100, 4))
    with pytest.raises(ValueError, match="CUDA is not available"):
        AQDNeighbors(M=2, K=8, backend="torch", device="cuda").fit(X)
    index = AQDNeighbors(M=2, K=8, backend="torch", device="cpu").fit(X)
    index.set_params(device="cuda:1")
    with pytest.raises(ValueError, match="CUDA is not available"):
        index.kneighbors(X[:2])
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_kernel("torch", device="cuda")


def test_device_and_backend_errors():
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu:0")
    with pytest.raises(ValueError, match="backend"):
        AQDNeighbors(backend="jax").fit(np.zeros((300, 4)))
    # numpy ignores the device: an unusable one does not matter there.
    AQDNeighbors(M=2, K=8, device="cuda:7").fit(np.random.default_rng(0).normal(size=(50, 4)))


def test_search_side_does_not_import_torch():
    code = (
        "import sys, numpy as np; from skdqn import AQDNeighbors; "
        "X = np.random.default_rng(0).normal(size=(200, 4)); "
        "AQDNeighbors(M=2, K=8).fit(X).kneighbors(X[:3]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -------------------------------------------------------------------- CUDA
@needs_cuda
@pytest.mark.parametrize("kind", ["sqeuclidean", "ties", "near_ties"])
def test_cuda_kernel_matches_numpy(kind, tiny_chunks):
    tables, codes = problem(kind, nq=7, n=500, M=8, K=256, seed=1)
    ref_d, ref_i = NumpyKernel().kneighbors(tables, codes, 10)
    for db_block in (7, 4096):
        d, i = TorchKernel("cuda").kneighbors(tables, codes, 10, db_block=db_block)
        assert_array_equal(i, ref_i)
        assert_allclose(d, ref_d, rtol=1e-6, atol=1e-6)
    full = aqd_distances(tables, codes)
    threshold = np.float32(np.quantile(full, 0.1))
    for q, (d, i) in enumerate(TorchKernel("cuda").radius_neighbors(tables, codes, threshold)):
        assert_array_equal(i, np.flatnonzero(full[q] <= threshold))


@needs_cuda
def test_backend_torch_on_cuda(small_blocks):
    X = np.random.default_rng(1).normal(size=(300, 8))
    ref = AQDNeighbors(n_neighbors=4, M=2, K=16, random_state=0).fit(X)
    got = AQDNeighbors(n_neighbors=4, M=2, K=16, random_state=0, backend="torch", device="cuda").fit(X)
    assert_array_equal(got.kneighbors(X[:20])[1], ref.kneighbors(X[:20])[1])


@pytest.mark.parametrize("bags", [True, False])
@pytest.mark.parametrize("kind", ["near_ties", "inner_product"])
def test_both_ways_of_summing_give_the_numpy_floats(bags, kind):
    # index_select + add is the CUDA path: checked here on the CPU.
    tables, codes = problem(kind, nq=6, n=300, M=8, K=256, seed=2)
    table, offsets = torch_kernel._device_table(tables, torch.device("cpu"))
    got = torch_kernel.chunk_distances(table, codes, offsets, bags=bags).numpy().T
    assert_array_equal(got, aqd_distances(tables, codes))


def test_kernel_through_the_cuda_way_of_summing(monkeypatch, tiny_chunks):
    original = torch_kernel.chunk_distances
    monkeypatch.setattr(torch_kernel, "chunk_distances", lambda *a: original(*a, bags=False))
    tables, codes = problem("ties", nq=5, n=200, M=4, K=16, seed=4)
    ref_d, ref_i = kneighbors_reference(tables, codes, 9)
    d, i = TorchKernel("cpu", fast=False).kneighbors(tables, codes, 9, db_block=13)
    assert_array_equal(i, ref_i)
    assert_array_equal(d, ref_d)


@pytest.mark.parametrize("M", [1, 5, 8])
def test_float16_sums_are_the_integer_sums(M):
    tables, codes = problem("sqeuclidean", nq=4, n=500, M=M, K=256, seed=M)
    qt = torch_kernel.quantize_tables(tables, max_sum=torch_kernel.FLOAT16_MAX_SUM)
    assert int(qt.q.max()) * M <= 2047
    scanner = torch_kernel.float16_scanner(qt, codes, 500)
    got = scanner.decode(scanner.scan(0, 500))
    ref = qt.q[:, np.arange(M), codes.astype(np.intp)].sum(axis=2).T  # (n, nq)
    assert_array_equal(got, ref)
    thr = np.array([0, 7, 2047, 65535], np.uint16)
    encoded = scanner.scan(0, 500)[:, :, None] < scanner.encode(thr)[None, None, :]
    assert_array_equal(encoded, ref[:, :, None] < thr.astype(np.int64)[None, None, :])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
@pytest.mark.parametrize("nq", [1, 7])
def test_below_by_groups_is_the_full_compare(n, nq):
    # Sparse hits (a few groups), dense hits (the fallback), none, all; a tail
    # shorter than a group. Same entries as comparing everything, rows in
    # ascending order within each query.
    rng = np.random.default_rng(n + nq)
    values = rng.integers(0, 2000, size=(n, nq)).astype(np.int16)
    for q in np.linspace(0, 1, 6):
        thr = np.quantile(values, q, axis=0).astype(np.int16)
        thr[::2] = 0  # some queries without any hit
        got = torch_kernel._below_by_groups(torch.from_numpy(values), thr)
        expected = np.flatnonzero(values < thr)
        assert_array_equal(np.sort(got), expected)
        rows, cols = np.divmod(got, nq)
        for c in range(nq):
            assert (np.diff(rows[cols == c]) > 0).all()


def test_float16_scanner_below_is_its_scan_compared():
    tables, codes = problem("sqeuclidean", nq=5, n=3000, M=8, K=256, seed=3)
    qt = torch_kernel.quantize_tables(tables, max_sum=torch_kernel.FLOAT16_MAX_SUM)
    scanner = torch_kernel.float16_scanner(qt, codes, 3000)
    sums = scanner.decode(scanner.scan(0, 3000))
    for q in (0.0, 0.001, 0.3):
        thr = np.quantile(sums, q, axis=0).astype(np.uint16)
        got = scanner.below(10, 3000, scanner.encode(thr))
        assert_array_equal(np.sort(got), np.flatnonzero(sums[10:] < thr))


def test_few_queries_on_the_cpu_take_the_numpy_pair_scan(monkeypatch, pairs_on_small_data):
    # At most PAIR_QUERIES queries of uint8 codes: numpy's pair scan, same results;
    # more queries, or uint16 codes: torch's own scan.
    tables, codes = problem("near_ties", nq=6, n=300, M=4, K=256, seed=2)
    expected = kneighbors_reference(tables, codes, 5)

    def refuse(*args, **kwargs):
        raise AssertionError("the torch scan ran")

    monkeypatch.setattr(torch_kernel, "float16_scanner", refuse)
    kernel = TorchKernel("cpu")
    for nq in (1, 4):
        d, i = kernel.kneighbors(tables[:nq], codes, 5)
        assert_array_equal(i, expected[1][:nq])
        assert_array_equal(d, expected[0][:nq])
    threshold = np.float32(np.median(aqd_distances(tables[:1], codes)))
    (d, i), = kernel.radius_neighbors(tables[:1], codes, threshold)
    assert_array_equal(i, np.flatnonzero(aqd_distances(tables[:1], codes)[0] <= threshold))
    with pytest.raises(AssertionError, match="the torch scan ran"):
        kernel.kneighbors(tables, codes, 5)
    with pytest.raises(AssertionError, match="the torch scan ran"):
        kernel.kneighbors(tables[:1], codes.astype(np.uint16), 5)
    monkeypatch.setattr("skdqn.search._tuning.PAIR_MIN_ROWS", 301)  # too few codes for pairs
    with pytest.raises(AssertionError, match="the torch scan ran"):
        kernel.kneighbors(tables[:1], codes, 5)
