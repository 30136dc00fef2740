"""What DeepQuantizer tells its user: a warning when lam cannot act, progress of score."""

import warnings

import numpy as np
import pytest

from skdqn import DeepQuantizer

SMALL = dict(M=2, K=16, n_components=8, hidden_layer_sizes=(32,), max_epochs=3, warmup_epochs=1)


@pytest.fixture(scope="module")
def digits(scaled_digits_300):
    return scaled_digits_300


@pytest.fixture(scope="module")
def dq(small_quantizer):
    return small_quantizer


@pytest.mark.parametrize("max_epochs, warmup_epochs, every", [(2, 2, 1), (3, 10, 2), (2, 0, 2)])
def test_warning_when_no_epoch_trains_the_quantization_loss(digits, max_epochs, warmup_epochs, every):
    X, y, _, _ = digits
    params = {**SMALL, "max_epochs": max_epochs, "warmup_epochs": warmup_epochs, "codebook_update_every": every}
    with pytest.warns(UserWarning, match=f"max_epochs={max_epochs} and warmup_epochs={warmup_epochs}.*"
                                         "lam=0.001 has no effect") as record:
        dq = DeepQuantizer(random_state=0, lam=1e-3, **params).fit(X[:100], y[:100])
    assert record[0].filename == __file__  # points at the call of fit
    assert np.isnan([h["quantization_loss"] for h in dq.history_]).all()  # indeed never trained


def test_no_warning_when_the_quantization_loss_trains_or_lam_is_zero(digits):
    X, y, _, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dq = DeepQuantizer(random_state=0, **{**SMALL, "max_epochs": 2, "warmup_epochs": 1}).fit(X[:100], y[:100])
        assert np.isfinite(dq.history_[-1]["quantization_loss"])  # the last epoch trains it
        DeepQuantizer(random_state=0, lam=0.0, **{**SMALL, "max_epochs": 1, "warmup_epochs": 5}).fit(X[:100], y[:100])


def test_deep_quantizer_score_reports_progress_when_verbose(dq, digits, capsys):
    _, _, Q, yq = digits
    assert dq.score(Q, yq, verbose=1) == dq.score(Q, yq)
    assert f"MAP: {len(Q)}/{len(Q)} queries (100 %)" in capsys.readouterr().err
    dq.score(Q, yq, top_k=5, verbose=1)
    assert f"MAP@5: {len(Q)}/{len(Q)} queries" in capsys.readouterr().err
    dq.score(Q, yq)
    assert capsys.readouterr().err == ""
