"""skdqn.training._data: the batch sources and the one input path of DeepQuantizer."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from skdqn import DeepQuantizer
from skdqn.training._data import (
    ArrayBatches,
    BatchSource,
    DatasetBatches,
    embed,
    prediction_source,
    scoring_data,
    training_source,
)

FAST = dict(M=2, K=16, n_components=16, hidden_layer_sizes=(32,), max_epochs=2, warmup_epochs=1, batch_size=64)
CPU = torch.device("cpu")


def tensor_dataset(X, y=None):
    tensors = [torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))]
    if y is not None:
        tensors.append(torch.as_tensor(np.asarray(y)))
    return TensorDataset(*tensors)


@pytest.fixture(scope="module")
def fitted(small):
    X, _, y, _ = small
    return DeepQuantizer(random_state=0, **FAST).fit(X, y)


def test_both_sources_follow_the_protocol(small):
    X, _, y, _ = small
    for source in (ArrayBatches(torch.from_numpy(X)), DatasetBatches(tensor_dataset(X, y), 64)):
        assert isinstance(source, BatchSource)
        assert len(source) == 300 and tuple(source.head(2).shape) == (2, 64)
        batch = next(source.batches([torch.tensor([5, 1, 7])]))
        assert batch.index.tolist() == [5, 1, 7] and batch.y is None
        np.testing.assert_array_equal(batch.x.numpy(), X[[5, 1, 7]])
        assert all(b.y is None for b in source.chunks())
    assert not isinstance(object(), BatchSource)


def test_training_source_is_the_same_for_an_array_and_a_dataset(small):
    X, _, y, _ = small
    dq = DeepQuantizer(**FAST)
    a, labels_a = training_source(dq, X, y, CPU)
    assert dq.n_features_in_ == 64  # validate_data(reset=True)
    b, labels_b = training_source(DeepQuantizer(**FAST), tensor_dataset(X, y), None, CPU)
    assert isinstance(a, ArrayBatches) and isinstance(b, DatasetBatches)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert a.chunk_size == 1024 and b.batch_size == 64
    a, _ = training_source(DeepQuantizer(predict_batch_size=10, **FAST), X, y, CPU)
    b, _ = training_source(DeepQuantizer(predict_batch_size=10, **FAST), tensor_dataset(X, y), None, CPU)
    assert a.chunk_size == b.batch_size == 10


def test_training_source_errors(small):
    X, _, y, _ = small
    with pytest.raises(ValueError, match="requires y"):
        training_source(DeepQuantizer(**FAST), X, None, CPU)
    with pytest.raises(ValueError, match="y must be None.*Put the labels"):
        training_source(DeepQuantizer(**FAST), tensor_dataset(X, y), y, CPU)
    for data in (X[:10], tensor_dataset(X[:10], y[:10])):
        args = (data, y[:10]) if isinstance(data, np.ndarray) else (data, None)
        with pytest.raises(ValueError, match=r"DeepQuantizer needs n_samples >= K.*train on more"):
            training_source(DeepQuantizer(**FAST), *args, CPU)
    with pytest.raises(ValueError, match="y has 299 entries but X has n_samples=300"):
        training_source(DeepQuantizer(**FAST), X, y[:-1], CPU)


def test_prediction_source_and_embed(fitted, small):
    _, X_q, _, y_q = small
    Z = fitted.transform(X_q)
    for data in (X_q, tensor_dataset(X_q, y_q), tensor_dataset(X_q)):
        source = prediction_source(fitted, data)
        np.testing.assert_allclose(embed(fitted.network_, source), Z, rtol=0, atol=1e-6)
    assert fitted.network_.training is False
    with pytest.raises(ValueError, match=r"\(x, y\) pairs"):
        prediction_source(fitted, tensor_dataset(X_q), require_pair=True)
    with pytest.raises(ValueError, match="empty Dataset"):
        prediction_source(fitted, tensor_dataset(X_q[:0]))


def test_scoring_data(fitted, small):
    _, X_q, _, y_q = small
    Z, labels = scoring_data(fitted, X_q, y_q)
    Z_ds, labels_ds = scoring_data(fitted, tensor_dataset(X_q, y_q))
    np.testing.assert_allclose(Z_ds, Z, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(labels_ds, labels)
    with pytest.raises(ValueError, match="y has 59 entries but X has n_samples=60"):
        fitted.score(X_q, y_q[:-1])  # score checks the labels it is given
    with pytest.raises(ValueError, match="y must be None"):
        scoring_data(fitted, tensor_dataset(X_q, y_q), y_q)
