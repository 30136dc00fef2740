"""DeepQuantizer on torch Datasets: data that does not fit in memory.

``fit`` accepts a map-style Dataset of ``(x, y)`` pairs; ``transform``,
``encode`` and ``score`` stream Datasets in batches. A TensorDataset performs
the same training steps as the arrays it holds, so most checks compare the
two paths exactly.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from skdqn import DeepQuantizer
from skdqn._labels import label_indicator
from skdqn._pq import encode

FAST = dict(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1, batch_size=64)


@pytest.fixture
def same_chunks():
    """Parameters that embed arrays in chunks of ``batch_size`` rows, as Datasets are.

    Training steps are the same for an array and a TensorDataset; only the
    embedding passes chunk differently by default (1024 rows vs
    ``batch_size`` items), which some BLAS builds round differently. Given
    to the array-side estimators, these make the two paths run exactly the
    same operations.
    """
    return {"predict_batch_size": FAST["batch_size"]}


def tensor_dataset(X, y=None):
    tensors = [torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))]
    if y is not None:
        tensors.append(torch.as_tensor(np.asarray(y)))
    return TensorDataset(*tensors)


class ListDataset(Dataset):
    """Items given as a list (any structure: lets the tests build bad items)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class NpyFiles(Dataset):
    """Images read lazily from one .npy file each: x is loaded by __getitem__."""

    def __init__(self, paths, labels):
        self.paths = list(paths)
        self.labels = list(labels)
        self.reads = 0

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        self.reads += 1
        return np.load(self.paths[i]), self.labels[i]


def write_npy(directory, X, y):
    directory.mkdir()
    paths = []
    for i, x in enumerate(X):
        path = directory / f"{i:05d}.npy"
        np.save(path, x)
        paths.append(str(path))
    return NpyFiles(paths, [int(v) for v in y])


def history(dq):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in dq.history_]


def assert_same_history(a, b):
    assert len(a.history_) == len(b.history_)
    for ha, hb in zip(history(a), history(b)):
        assert ha.keys() == hb.keys()
        for key in ha:
            np.testing.assert_array_equal(ha[key], hb[key])


# ---------------------------------------------------------------- same as arrays
def test_tensor_dataset_fit_equals_array_fit(small, same_chunks):
    X, X_q, y, _ = small
    a = DeepQuantizer(random_state=0, **FAST, **same_chunks).fit(X, y)
    b = DeepQuantizer(random_state=0, **FAST).fit(tensor_dataset(X, y))
    np.testing.assert_array_equal(b.codes_, a.codes_)
    np.testing.assert_array_equal(b.codebooks_, a.codebooks_)
    assert b.codes_.dtype == a.codes_.dtype == np.uint8
    np.testing.assert_array_equal(b.classes_, a.classes_)
    np.testing.assert_array_equal(b._fit_labels, a._fit_labels)
    assert (b.n_features_in_, b.n_components_, b.n_iter_) == (64, 16, 3)
    assert not hasattr(b, "feature_names_in_")
    assert_same_history(a, b)
    assert not b.network_.training
    np.testing.assert_array_equal(b.transform(X_q), a.transform(X_q))
    np.testing.assert_array_equal(b.get_feature_names_out(), a.get_feature_names_out())


def test_dataset_fit_is_reproducible_and_leaves_global_rng_alone(small):
    X, X_q, y, _ = small
    data = tensor_dataset(X, y)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = DeepQuantizer(random_state=3, **FAST).fit(data)
    np.testing.assert_array_equal(torch.rand(3), expected)
    b = DeepQuantizer(random_state=3, **FAST).fit(data)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    np.testing.assert_array_equal(a.codebooks_, b.codebooks_)
    c = DeepQuantizer(random_state=4, **FAST).fit(data)
    assert not np.array_equal(a.transform(X_q), c.transform(X_q))


def test_worker_processes_give_the_same_codes(small):
    X, _, y, _ = small
    data = tensor_dataset(X, y)
    a = DeepQuantizer(random_state=0, **{**FAST, "max_epochs": 2}).fit(data)
    b = DeepQuantizer(random_state=0, num_workers=2, **{**FAST, "max_epochs": 2}).fit(data)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    np.testing.assert_array_equal(b.encode(data), a.codes_)


def test_transform_encode_score_of_a_dataset_equal_the_stacked_array(small):
    X, X_q, y, y_q = small
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, y)  # fitted on arrays
    Z = dq.transform(X_q)
    codes = dq.encode(X_q)
    forms = {
        "pairs": tensor_dataset(X_q, y_q),
        "x only (1-tuples)": tensor_dataset(X_q),
        "bare x": ListDataset(list(X_q.astype(np.float64))),  # float64 arrays, converted
    }
    for name, data in forms.items():
        Z_ds = dq.transform(data)
        assert Z_ds.shape == (60, 16) and Z_ds.dtype == np.float32, name
        # Same network, batches of 64 instead of 1024 rows: equal up to rounding.
        np.testing.assert_allclose(Z_ds, Z, rtol=0, atol=1e-6, err_msg=name)
        codes_ds = dq.encode(data)
        assert codes_ds.dtype == np.uint8
        np.testing.assert_array_equal(codes_ds, encode(Z_ds, dq.codebooks_))
        assert (codes_ds == codes).all(axis=1).mean() >= 0.95, name
    assert dq.score(tensor_dataset(X_q, y_q)) == pytest.approx(dq.score(X_q, y_q), abs=0.01)
    # A model fitted from a Dataset transforms arrays too.
    dq_ds = DeepQuantizer(random_state=0, **FAST).fit(tensor_dataset(X, y))
    assert dq_ds.transform(X_q).shape == (60, 16)


def test_fit_transform_on_a_dataset(small):
    X, _, y, _ = small
    data = tensor_dataset(X, y)
    Z = DeepQuantizer(random_state=0, **FAST).fit_transform(data)
    np.testing.assert_array_equal(Z, DeepQuantizer(random_state=0, **FAST).fit(data).transform(data))


def test_string_and_multilabel_items(small, same_chunks):
    X, X_q, y, y_q = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    dq = DeepQuantizer(random_state=0, **FAST).fit(ListDataset(list(zip(X, names[y]))))
    np.testing.assert_array_equal(dq.classes_, np.sort(names))
    assert 0 <= dq.score(ListDataset(list(zip(X_q, names[y_q])))) <= 1

    def multi(y):  # the class, "is even" and "is at least 5"
        return np.column_stack([label_indicator(y, np.arange(10)), y % 2 == 0, y >= 5]).astype(int)

    Y, Y_q = multi(y), multi(y_q)
    a = DeepQuantizer(random_state=0, **FAST, **same_chunks).fit(X, Y)
    # Items with indicator vectors: numpy rows, or tensors.
    for items in (list(zip(X, Y)), [(torch.from_numpy(x), torch.from_numpy(v)) for x, v in zip(X, Y)]):
        b = DeepQuantizer(random_state=0, **FAST).fit(ListDataset(items))
        np.testing.assert_array_equal(b.classes_, np.arange(12))
        assert b._fit_labels.dtype == bool and b._fit_labels.shape == (300, 12)
        np.testing.assert_array_equal(b.codes_, a.codes_)
    score = b.score(ListDataset(list(zip(X_q, Y_q))))
    assert score == pytest.approx(a.score(X_q, Y_q), abs=0.01)


def test_custom_cnn_on_image_items(small, same_chunks, small_cnn):
    X, X_q, y, _ = small
    images, images_q = X.reshape(-1, 1, 8, 8), X_q.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    cnn = small_cnn()
    a = DeepQuantizer(network=cnn, random_state=0, **FAST, **same_chunks).fit(images, y)
    b = DeepQuantizer(network=cnn, random_state=0, **FAST).fit(tensor_dataset(images, y))
    assert b.n_features_in_ == a.n_features_in_ == 1  # as for n-D arrays: shape[1]
    np.testing.assert_array_equal(b.codes_, a.codes_)
    Z = b.transform(tensor_dataset(images_q))
    assert Z.shape == (60, 16)
    np.testing.assert_array_equal(Z, a.transform(images_q))


def test_images_read_lazily_from_npy_files(digits, tmp_path):
    """The out-of-memory case: each item is a file, loaded when the batch needs it."""
    X_db, X_q, y_db, y_q = digits
    train = write_npy(tmp_path / "train", X_db, y_db)
    queries = write_npy(tmp_path / "queries", X_q, y_q)
    params = dict(M=2, K=16, hidden_layer_sizes=(128,), max_epochs=8, warmup_epochs=2, batch_size=128)
    dq = DeepQuantizer(random_state=0, **params).fit(train)
    # Labels: one pass; probe: 2 items; the input statistics (standardize): one
    # pass; 8 epochs; codebook fit + refreshes at the ends of epochs 2, 4 and 6,
    # and the final codes: 4 embedding passes.
    n = len(train)
    assert n % 128 > 1 and train.reads == 2 + n * (1 + 1 + 8 + 4)
    assert dq.codes_.shape == (n, 2)
    map_disk = dq.score(queries)
    map_array = DeepQuantizer(random_state=0, **params).fit(X_db, y_db).score(X_q, y_q)
    assert map_disk > 0.85 and abs(map_disk - map_array) <= 0.02, (map_disk, map_array)
    # Pickles without the Dataset (nothing of the files is kept).
    blob = pickle.dumps(dq)
    assert str(tmp_path).encode() not in blob
    loaded = pickle.loads(blob)
    np.testing.assert_array_equal(loaded.codes_, dq.codes_)
    np.testing.assert_array_equal(loaded.encode(queries), dq.encode(queries))
    assert loaded.score(queries) == map_disk


class BatchReads(TensorDataset):
    """A Dataset that loads whole batches at once through __getitems__."""

    calls = 0

    def __getitems__(self, indices):
        type(self).calls += 1
        return [self[i] for i in indices]


def test_getitems_fast_path_is_used(small, same_chunks):
    X, _, y, _ = small
    data = BatchReads(torch.from_numpy(X), torch.from_numpy(y))
    b = DeepQuantizer(random_state=0, **FAST).fit(data)
    assert BatchReads.calls > 0
    np.testing.assert_array_equal(b.codes_, DeepQuantizer(random_state=0, **FAST, **same_chunks).fit(X, y).codes_)


def test_num_workers_parameter(small):
    X, _, y, _ = small
    dq = DeepQuantizer(num_workers=2)
    assert dq.get_params()["num_workers"] == 2 and clone(dq).num_workers == 2
    assert DeepQuantizer().num_workers == 0
    with pytest.raises(ValueError, match="num_workers"):
        DeepQuantizer(num_workers=-1, **FAST).fit(tensor_dataset(X, y))


# ---------------------------------------------------------------- errors
class Stream(IterableDataset):
    def __iter__(self):
        yield from ((np.zeros(4, np.float32), 0) for _ in range(50))


class NoLen(Dataset):
    def __getitem__(self, i):
        return np.zeros(4, np.float32), i % 2


def test_dataset_type_errors(small):
    X, _, y, _ = small
    with pytest.raises(TypeError, match="IterableDataset.*map-style"):
        DeepQuantizer(**FAST).fit(Stream())
    with pytest.raises(TypeError, match="has no __len__.*map-style"):
        DeepQuantizer(**FAST).fit(NoLen())
    with pytest.raises(ValueError, match="y must be None"):
        DeepQuantizer(**FAST).fit(tensor_dataset(X, y), y)


def with_item(X, y, index, x_bad=None, y_bad=None):
    items = list(zip(X, y))
    items[index] = (items[index][0] if x_bad is None else x_bad, items[index][1] if y_bad is None else y_bad)
    return ListDataset(items)


FIT_ERRORS = [
    ("bare x", ValueError, r"\(x, y\) pairs .*; X\[0\] is a ndarray"),
    ("triples", ValueError, r"\(x, y\) pairs .*; X\[0\] is a tuple of length 3"),
    ("shape in batch", ValueError, r"item 5 has shape \(63,\) but earlier items have shape \(64,\)"),
    ("shape across batches", ValueError, r"item 192 has shape \(63,\) but earlier items have shape \(64,\)"),
    ("nan", ValueError, r"contains NaN: item\(s\) 137 \(in a batch of items 128\.\.191\)"),
    ("inf", ValueError, r"contains infinity: item\(s\) 3"),
    ("continuous", ValueError, "continuous"),
    ("single class", ValueError, "single class"),
    ("mixed labels", ValueError, "same kind"),
    ("too few", ValueError, r"n_samples >= K.*n_samples=10"),
    ("images for MLP", ValueError, "must be 1-D"),
    ("scalars", ValueError, r"X\[0\] is a tuple of length 2 whose first element \(x\) is a scalar float"),
    ("strings", TypeError, r"X\[0\]: x \(ndarray\) could not be converted"),
]


@pytest.mark.parametrize("case, error, match", FIT_ERRORS, ids=[case for case, _, _ in FIT_ERRORS])
def test_dataset_fit_errors(small, case, error, match):
    X, _, y, _ = small
    X63 = X[0, :63]
    data = {
        "bare x": lambda: ListDataset(list(X)),
        "triples": lambda: ListDataset([(x, v, 1.0) for x, v in zip(X, y)]),
        "shape in batch": lambda: with_item(X, y, 5, x_bad=X63),
        "shape across batches": lambda: with_item(X, y, 192, x_bad=X63),  # batches of 64
        "nan": lambda: with_item(X, y, 137, x_bad=np.where(np.arange(64) == 9, np.nan, X[137])),
        "inf": lambda: with_item(X, y, 3, x_bad=np.full(64, np.inf)),
        "continuous": lambda: ListDataset(list(zip(X, np.linspace(0, 1, len(y))))),
        "single class": lambda: ListDataset([(x, 1) for x in X]),
        "mixed labels": lambda: with_item(X, y, 250, y_bad=np.array([0, 1])),
        "too few": lambda: tensor_dataset(X[:10], y[:10]),
        "images for MLP": lambda: tensor_dataset(X.reshape(-1, 1, 8, 8), y),
        "scalars": lambda: ListDataset([(float(x[0]), v) for x, v in zip(X, y)]),
        "strings": lambda: ListDataset([(np.array(["a", "b"]), v) for v in y]),
    }[case]()
    with pytest.raises(error, match=match):
        DeepQuantizer(**FAST).fit(data)


def test_errors_are_raised_before_training(small):
    """The label pass checks every item, so a bad one fails fast (no epoch run)."""
    X, _, y, _ = small
    dq = DeepQuantizer(**FAST)
    with pytest.raises(ValueError, match="NaN"):
        dq.fit(with_item(X, y, 299, x_bad=np.full(64, np.nan)))
    assert not hasattr(dq, "history_")


def test_dataset_transform_and_score_errors(small):
    X, X_q, y, y_q = small
    dq = DeepQuantizer(random_state=0, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="X has 10 features, but DeepQuantizer is expecting 64"):
        dq.transform(tensor_dataset(X_q[:, :10]))
    with pytest.raises(ValueError, match="empty Dataset"):
        dq.encode(tensor_dataset(X_q[:0]))
    with pytest.raises(ValueError, match=r"contains NaN: item\(s\) 70"):
        dq.transform(with_item(X, y, 70, x_bad=np.full(64, np.nan)))
    with pytest.raises(TypeError, match="map-style"):
        dq.transform(Stream())
    with pytest.raises(ValueError, match="y must be None"):
        dq.score(tensor_dataset(X_q, y_q), y_q)
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        dq.score(tensor_dataset(X_q))
