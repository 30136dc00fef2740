"""AQDNeighbors beyond one fit: partial_fit, encode/decode, save/load (memory-mapped),
from_codes, and parallel search (threads, database shards, a dask cluster)."""

import pickle

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import assert_same_search
from skdqn import AQDNeighbors
from skdqn._pq import decode


def data(n=1200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:4] = 0.0  # zero rows
    X[10:20] = X[30]  # duplicates
    y = rng.integers(0, 4, size=n)
    return X, y


# -------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("metric", ["euclidean", "inner_product"])
def test_partial_fit_equals_fit_with_the_same_codebooks(metric):
    X, y = data()
    grown = AQDNeighbors(n_neighbors=6, M=4, K=16, metric=metric, random_state=0)
    grown.partial_fit(X[:500], y[:500])  # first call: learns codebooks on these
    grown.partial_fit(X[500:900], y[500:900]).partial_fit(X[900:], y[900:])
    assert grown.n_samples_fit_ == len(X)
    once = AQDNeighbors(n_neighbors=6, M=4, K=16, metric=metric, codebooks=grown.codebooks_).fit(X, y)
    assert_array_equal(grown.codes_, once.codes_)
    assert_same_search(grown, once, X[:50])
    assert grown.score(X[:100], y[:100]) == once.score(X[:100], y[:100])
    # Added items get the indices after the existing ones.
    _, ind = grown.kneighbors(X[900:905], n_neighbors=1)
    assert (ind.ravel() >= 900).all() or metric == "inner_product"


def test_partial_fit_first_call_is_fit():
    X, _ = data()
    a = AQDNeighbors(M=2, K=8, random_state=3).partial_fit(X)
    b = AQDNeighbors(M=2, K=8, random_state=3).fit(X)
    assert_array_equal(a.codebooks_, b.codebooks_)
    assert_array_equal(a.codes_, b.codes_)


def test_partial_fit_keeps_codebooks():
    X, _ = data()
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:300])
    before = index.codebooks_.copy()
    index.partial_fit(X[300:] * 10)  # very different data: still only encoded
    assert_array_equal(index.codebooks_, before)


def test_partial_fit_errors():
    X, y = data()
    with_labels = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:300], y[:300])
    with pytest.raises(ValueError, match="y is required"):
        with_labels.partial_fit(X[300:400])
    with pytest.raises(ValueError, match="entries but X has n_samples"):
        with_labels.partial_fit(X[300:400], y[:5])
    with pytest.raises(ValueError, match="label layout"):
        with_labels.partial_fit(X[300:302], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="features"):
        with_labels.partial_fit(X[300:400, :4], y[300:400])
    no_labels = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:300])
    with pytest.raises(ValueError, match="without labels"):
        no_labels.partial_fit(X[300:400], y[300:400])
    with pytest.raises(ValueError, match="NaN|infinity"):
        no_labels.partial_fit(np.full((2, 8), np.nan))
    assert no_labels.n_samples_fit_ == 300  # failed calls change nothing


def test_partial_fit_multilabel():
    X, y = data()
    Y = np.eye(4, dtype=int)[y]
    Y[::3, 0] = 1
    grown = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:600], Y[:600]).partial_fit(X[600:], Y[600:])
    once = AQDNeighbors(M=2, K=8, codebooks=grown.codebooks_).fit(X, Y)
    assert grown.score(X[:50], Y[:50]) == once.score(X[:50], Y[:50])


# ----------------------------------------------------------- encode/decode
def test_encode_decode():
    X, _ = data()
    index = AQDNeighbors(M=4, K=16, random_state=0).fit(X)
    assert_array_equal(index.encode(X), index.codes_)
    rec = index.decode(index.codes_)
    assert rec.dtype == np.float32 and rec.shape == X.shape
    assert_array_equal(rec, decode(index.codes_, index.codebooks_))
    # Reconstructions are their own codes' nearest codewords: distance 0.
    d, _ = index.kneighbors(rec[:5], n_neighbors=1)
    assert_allclose(d, 0.0, atol=1e-3)
    with pytest.raises(ValueError, match=r"\[0, K=16\)"):
        index.decode([[0, 0, 0, 16]])
    with pytest.raises(ValueError, match="shape"):
        index.decode([[0, 0]])
    with pytest.raises(TypeError, match="integer"):
        index.decode([[0.5, 0, 0, 0]])
    with pytest.raises(NotFittedError):
        AQDNeighbors().encode(X)
    with pytest.raises(NotFittedError):
        AQDNeighbors().decode([[0]])


# ------------------------------------------------------------- save/load
@pytest.mark.parametrize("name", ["index.npz", "index_dir"])
@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_save_load_round_trip(tmp_path, name, mmap_mode):
    X, y = data()
    labels = np.array(["a", "b", "c", "d"])[y]
    index = AQDNeighbors(n_neighbors=4, M=4, K=16, metric="sqeuclidean", n_jobs=1, random_state=7)
    index.fit(X, labels)
    path = index.save(tmp_path / name)
    loaded = AQDNeighbors.load(path, mmap_mode=mmap_mode)
    assert loaded.get_params() == index.get_params()
    assert isinstance(loaded.codes_, np.memmap) == (mmap_mode is not None)
    assert_array_equal(loaded.codebooks_, index.codebooks_)
    assert_array_equal(loaded.codes_, index.codes_)
    assert_same_search(loaded, index, X[:40])
    assert loaded.score(X[:60], labels[:60]) == index.score(X[:60], labels[:60])
    assert loaded.radius_neighbors(X[:3], radius=1.0)[1][2].tolist() == (
        index.radius_neighbors(X[:3], radius=1.0)[1][2].tolist()
    )
    # A memory-mapped index grows in memory.
    loaded.partial_fit(X[:10], labels[:10])
    assert loaded.n_samples_fit_ == len(X) + 10 and not isinstance(loaded.codes_, np.memmap)
    # Nothing was pickled: the files are .npy arrays and JSON.
    assert not list(tmp_path.rglob("*.pkl"))


def test_save_load_given_codebooks(tmp_path):
    X, _ = data()
    C = AQDNeighbors(M=2, K=8, random_state=0).fit(X).codebooks_
    index = AQDNeighbors(M=2, K=8, codebooks=C).fit(X)
    loaded = AQDNeighbors.load(index.save(tmp_path / "i"))
    assert_array_equal(loaded.codebooks, C)
    assert not hasattr(loaded, "feature_names_in_")


def test_save_load_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")  # installed by the test extra
    X, _ = data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(frame)
    loaded = AQDNeighbors.load(index.save(tmp_path / "i"))
    assert_array_equal(loaded.feature_names_in_, index.feature_names_in_)
    assert_same_search(loaded, index, frame.iloc[:5])
    with pytest.warns(UserWarning, match="feature names"):
        loaded.kneighbors(X[:2])


def test_saved_index_with_lent_codebooks_refits_with_them(tmp_path):
    X, _ = data()
    lender = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    index = AQDNeighbors(M=2, K=8, codebooks=lender).fit(X[:100])  # estimator as codebooks
    loaded = AQDNeighbors.load(index.save(tmp_path / "i.npz"))
    refit = clone(loaded).fit(X[:100])
    assert_array_equal(refit.codebooks_, lender.codebooks_)
    learned = AQDNeighbors.load(AQDNeighbors(M=2, K=8, random_state=0).fit(X).save(tmp_path / "l"))
    assert learned.codebooks is None


def test_load_errors(tmp_path):
    X, y = data()
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X, y)
    folder = index.save(tmp_path / "i")
    with pytest.raises(ValueError, match="mmap_mode"):
        AQDNeighbors.load(folder, mmap_mode="r+")
    # Corrupt codes: out of range for K=8 (uint8 could hold them). The
    # checksums catch any edit; without them (verify=False), the checks of
    # the content still do.
    codes = np.load(folder / "codes.npy")
    codes[5, 0] = 9
    np.save(folder / "codes.npy", codes)
    with pytest.raises(ValueError, match="codes.npy is damaged"):
        AQDNeighbors.load(folder)
    with pytest.raises(ValueError, match=r"\[0, K=8\)"):
        AQDNeighbors.load(folder, mmap_mode="r", verify=False)
    np.save(folder / "codes.npy", codes[:10])
    with pytest.raises(ValueError, match="shape"):
        AQDNeighbors.load(folder, verify=False)
    other = tmp_path / "other"
    from skdqn.io._io import write_bundle

    write_bundle(other, {"format": "something.else"}, {"x": np.zeros(2)})
    with pytest.raises(ValueError, match="does not hold an AQDNeighbors"):
        AQDNeighbors.load(other)
    newer = tmp_path / "newer"
    write_bundle(newer, {"format": "skdqn.AQDNeighbors", "format_version": 99}, {})
    with pytest.raises(ValueError, match="newer skdqn"):
        AQDNeighbors.load(newer)
    with pytest.raises(NotFittedError):
        AQDNeighbors().save(tmp_path / "unfitted")


def test_object_labels_are_saved_without_pickle(tmp_path):
    X, y = data()
    labels = np.array(["cat", "dog", "fish", "bird"], dtype=object)[y]
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X, labels)
    loaded = AQDNeighbors.load(index.save(tmp_path / "objects.npz"))
    assert loaded._fit_labels.dtype.kind == "U"
    assert loaded.score(X[:50], labels[:50]) == index.score(X[:50], labels[:50])


# ------------------------------------------------------------ from_codes
def test_from_codes_on_a_memmap_built_in_chunks(tmp_path):
    X, y = data(n=2000)
    trained = AQDNeighbors(n_neighbors=5, M=4, K=16, random_state=0).fit(X[:500])
    # Encode a "large" database chunk by chunk straight into a file.
    codes = np.lib.format.open_memmap(tmp_path / "codes.npy", mode="w+", dtype=np.uint8, shape=(2000, 4))
    for start in range(0, 2000, 300):
        codes[start : start + 300] = trained.encode(X[start : start + 300])
    codes.flush()
    on_disk = np.load(tmp_path / "codes.npy", mmap_mode="r")
    index = AQDNeighbors.from_codes(trained.codebooks_, on_disk, y, n_neighbors=5)
    assert index.codes_ is on_disk  # searched where it lies
    in_memory = AQDNeighbors(n_neighbors=5, codebooks=trained.codebooks_).fit(X, y)
    assert_same_search(index, in_memory, X[:30])
    assert index.score(X[:30], y[:30]) == in_memory.score(X[:30], y[:30])
    path = index.save(tmp_path / "copied.npz")  # memmap copied in blocks
    assert_same_search(AQDNeighbors.load(path, mmap_mode="r"), in_memory, X[:30])


def test_from_codes_errors():
    C = np.zeros((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match=r"\[0, K=4\)"):
        AQDNeighbors.from_codes(C, [[0, 4]])
    with pytest.raises(ValueError, match="shape"):
        AQDNeighbors.from_codes(C, [[0, 1, 2]])
    with pytest.raises(ValueError, match="shape"):
        AQDNeighbors.from_codes(np.zeros((4, 3)), [[0]])
    with pytest.raises(ValueError, match="entries"):
        AQDNeighbors.from_codes(C, [[0, 1]], y=[0, 1])
    with pytest.raises(ValueError, match="metric"):
        AQDNeighbors.from_codes(C, [[0, 1]], metric="cosine")


# -------------------------------------------------------------- parallel
@pytest.mark.parametrize("n_jobs", [1, 2, -1])
def test_parallel_search_identical_to_serial(small_blocks, n_jobs):
    X, y = data(n=3000)
    serial = AQDNeighbors(n_neighbors=8, M=4, K=16, random_state=0).fit(X, y)
    parallel = clone(serial).set_params(n_jobs=n_jobs).fit(X, y)
    for queries in (X[:3], X[:100]):  # few queries: database shards; many: query blocks
        assert_same_search(serial, parallel, queries, radius=1.5)
    assert serial.score(X[:50], y[:50]) == parallel.score(X[:50], y[:50])


def test_pickle_of_a_memmapped_index(tmp_path):
    X, _ = data()
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X)
    loaded = AQDNeighbors.load(index.save(tmp_path / "i"), mmap_mode="r")
    back = pickle.loads(pickle.dumps(loaded))
    assert_same_search(back, index, X[:10])


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_backend_gives_serial_results(dask_client, small_blocks):
    from distributed import get_task_stream

    X, y = data(n=3000)
    index = AQDNeighbors(n_neighbors=6, M=4, K=16, random_state=0).fit(X, y)
    ref_few, ref_many = index.kneighbors(X[:3]), index.kneighbors(X[:60])
    ref_score = index.score(X[:40], y[:40])
    with get_task_stream(dask_client) as stream, joblib.parallel_backend("dask"):
        index.set_params(n_jobs=2)
        few = index.kneighbors(X[:3])  # database shards, merged
        many = index.kneighbors(X[:60])  # query blocks
        score = index.score(X[:40], y[:40])
    assert len(stream.data) > 0  # the work ran on the cluster's workers
    for got, ref in ((few, ref_few), (many, ref_many)):
        assert_array_equal(got[1], ref[1])
        assert_array_equal(got[0], ref[0])
    assert score == ref_score


def test_partial_fit_refuses_labels_of_another_type():
    # Regression: strings appended to integer labels silently turned every
    # stored label into a string, and a later score with integers failed.
    X, y = data()
    index = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:300], y[:300])
    before = index._fit_labels.copy()
    with pytest.raises(TypeError, match="text labels .* but the index holds number labels"):
        index.partial_fit(X[300:310], y[300:310].astype(str))
    assert index.n_samples_fit_ == 300 and index.codes_.shape[0] == 300
    assert_array_equal(index._fit_labels, before)
    assert 0.0 <= index.score(X[:20], y[:20]) <= 1.0
    words = AQDNeighbors(M=2, K=8, random_state=0).fit(X[:300], y[:300].astype(str))
    with pytest.raises(TypeError, match="number labels"):
        words.partial_fit(X[300:310], y[300:310])
    words.partial_fit(X[300:310], y[300:310].astype(str))  # same kind: fine
    assert words.n_samples_fit_ == 310
