"""An index built and searched as shards on a LocalCluster of 2 worker processes (skdqn.search._cluster)."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import clone

from skdqn import AQDNeighbors, ShardedIndex, build_shards, dask_encode, search_shards

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def data(n=2_000, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[10:20] = X[30]  # duplicates: ties broken by global index
    return X, rng.integers(0, 4, size=n)


def chunked(X, rows=(600, 400, 500, 500)):
    return da.from_array(X, chunks=(rows, X.shape[1]))


@pytest.mark.parametrize("lists", [False, True])
def test_sharded_build_and_search_equal_one_index(client, tmp_path, lists):
    X, y = data()
    extra = dict(n_lists=4, n_probe=2) if lists else {}
    template = AQDNeighbors(n_neighbors=7, M=4, K=16, random_state=0, **extra).fit(X[::4])
    shards = build_shards(client, template, chunked(X), tmp_path / "shards", y=y)
    assert shards.offsets == (0, 600, 1000, 1500) and shards.sizes == (600, 400, 500, 500)
    assert set(shards.workers) <= set(client.scheduler_info()["workers"])  # written by the workers
    # One index of all the items, with the same codebooks (and coarse centroids).
    params = dict(codebooks=template.codebooks_, n_neighbors=7)
    if lists:
        params.update(coarse_centroids=template.coarse_centroids_, n_probe=template.n_probe_)
    one = AQDNeighbors(**params).fit(X, y)
    loaded = [AQDNeighbors.load(p) for p in shards.paths]
    assert_array_equal(np.concatenate([s.encode(X[o:o + n]) for s, o, n in zip(loaded, shards.offsets, shards.sizes)]),
                       one.encode(X))
    assert_array_equal(np.concatenate([s._fit_labels for s in loaded]), y)
    queries = np.r_[X[:40], X[25:35] + 0.01]
    for k in (1, 7, 25):
        dist, ind = search_shards(client, shards, queries, n_neighbors=k)
        ref_dist, ref_ind = one.kneighbors(queries, n_neighbors=k)
        assert_array_equal(ind, ref_ind)
        assert_array_equal(dist, ref_dist)
    dist, ind = search_shards(client, shards, queries)  # the template's n_neighbors
    assert ind.shape == (50, 7)
    if lists:  # probing every list: the exhaustive search
        everything = AQDNeighbors.from_codes(template.codebooks_, one.encode(X), n_neighbors=7)
        ref_dist, ref_ind = everything.kneighbors(queries)
        dist, ind = search_shards(client, shards, queries, n_probe=4)
        assert_array_equal(ind, ref_ind)
        assert_array_equal(dist, ref_dist)


def test_exhaustive_shards_equal_from_codes_of_all_codes(client, tmp_path):
    X, _ = data(n=1_200, d=16, seed=1)
    template = AQDNeighbors(M=8, K=16, random_state=0).fit(X[:600])
    shards = build_shards(client, template, da.from_array(X, chunks=(300, 8)), tmp_path)  # column chunks joined
    one = AQDNeighbors.from_codes(template.codebooks_, template.encode(X))
    for got, ref in zip(search_shards(client, shards, X[:30], 10), one.kneighbors(X[:30], 10)):
        assert_array_equal(got, ref)


def test_dask_encode_equals_encode(client):
    X, _ = data(n=1_000)
    index = AQDNeighbors(M=4, K=16, random_state=0).fit(X[:500])
    codes = dask_encode(index, chunked(X, (250, 250, 300, 200)))
    assert codes.chunks == ((250, 250, 300, 200), (4,)) and codes.dtype == np.uint8
    assert_array_equal(client.compute(codes).result(), index.encode(X))


def test_dask_transform_of_a_deep_quantizer(client):
    from skdqn import DeepQuantizer

    X, y = data(n=300)
    dq = DeepQuantizer(M=2, K=8, n_components=8, hidden_layer_sizes=(16,), max_epochs=2, warmup_epochs=1,
                       random_state=0).fit(X, y)
    Xd = chunked(X, (100, 200))
    assert_array_equal(client.compute(dask_encode(dq, Xd, method="transform")).result(), dq.transform(X))
    assert_array_equal(dask_encode(dq, Xd).compute(scheduler="sync"), dq.encode(X))


def test_bad_inputs_are_refused(client, tmp_path):
    X, y = data(n=400)
    template = AQDNeighbors(M=4, K=16, random_state=0).fit(X)
    Xd = chunked(X, (200, 200))
    with pytest.raises(TypeError, match="must be a dask array"):
        build_shards(client, template, X, tmp_path / "a")
    with pytest.raises(ValueError, match="2-D"):
        build_shards(client, template, da.from_array(X[:, 0], chunks=100), tmp_path / "a")
    with pytest.raises(ValueError, match="X has 4 features but the template's codebooks quantize 8"):
        build_shards(client, template, Xd[:, :4], tmp_path / "a")
    with pytest.raises(ValueError, match="unknown size"):
        build_shards(client, template, Xd[Xd[:, 0] > 0], tmp_path / "a")
    with pytest.raises(ValueError, match="y has 3 rows for 400 items"):
        build_shards(client, template, Xd, tmp_path / "a", y=y[:3])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="new or empty directory"):
        build_shards(client, template, Xd, tmp_path / "full")
    with pytest.raises(TypeError, match="fitted AQDNeighbors"):
        build_shards(client, object(), Xd, tmp_path / "a")
    with pytest.raises(ValueError, match="not fitted|NotFitted|fit"):
        build_shards(client, clone(template), Xd, tmp_path / "a")
    shards = build_shards(client, template, Xd, tmp_path / "ok")
    assert isinstance(shards, ShardedIndex) and shards.n_samples == 400
    with pytest.raises(ValueError, match=r"shape \(n_queries, 8\)"):
        search_shards(client, shards, X[:3, :4])
    with pytest.raises(ValueError, match=r"n_neighbors must be an integer in \[1, 400\]"):
        search_shards(client, shards, X[:3], n_neighbors=401)
    with pytest.raises(ValueError, match="n_neighbors"):
        search_shards(client, shards, X[:3], n_neighbors=0)
    with pytest.raises(TypeError, match="ShardedIndex"):
        search_shards(client, list(shards.paths), X[:3])
    with pytest.raises(ValueError, match="method must be"):
        dask_encode(template, Xd, method="predict")
    with pytest.raises(TypeError, match="has no transform"):
        dask_encode(template, Xd, method="transform")
    with pytest.raises(ValueError):
        dask_encode(template, Xd[:, :4])
