"""AQDNeighbors under threads: every call sees one published state, old or new, never a mix."""

import sys
import threading
import time

import numpy as np
import pytest

from skdqn import AQDNeighbors

_BATCH = 4
_STAGES = 80
_SECONDS = 3.0  # the readers stop at the latest after this, whatever happens


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160 + _BATCH * _STAGES, 8)).astype(np.float32)
    return X, np.arange(X.shape[0]) % 5, rng.normal(size=(6, 8)).astype(np.float32)


def _make(X, y, **params):
    return AQDNeighbors(n_neighbors=4, M=2, K=16, random_state=0, **params).fit(X[:160], y[:160])


def _expected(X, y, Q, params):
    """Per stage (number of items): the search of Q, the X=None search and the codes."""
    index, out = _make(X, y, **params), {}
    for stage in range(_STAGES + 1):
        if stage:
            rows = slice(160 + _BATCH * (stage - 1), 160 + _BATCH * stage)
            index.partial_fit(X[rows], y[rows])
        out[index.n_samples_fit_] = (index.kneighbors(Q), index.kneighbors(), index.codes_.copy())
    return out


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def _check_search(index, Q, expected, path):
    result = index.kneighbors(Q)
    if not any(_same(result, exp[0]) for exp in expected.values()):
        return "kneighbors(Q) matches no stage"
    return None


def _check_self_search(index, Q, expected, path):
    result = index.kneighbors()
    stage = expected.get(result[1].shape[0])
    if stage is None or not _same(result, stage[1]):
        return f"kneighbors() of {result[1].shape[0]} rows matches no stage"
    return None


def _check_save(index, Q, expected, path):
    loaded = AQDNeighbors.load(index.save(path))
    stage = expected.get(loaded.n_samples_fit_)
    if stage is None or not np.array_equal(loaded.codes_, stage[2]):
        return f"a saved bundle of {loaded.n_samples_fit_} items matches no stage"
    return None


def _reader(check, args, stop, failures, counts):
    """Run ``check(*args)`` until ``stop``; record anything no stage explains (errors included)."""
    while not stop.is_set():
        try:
            failure = check(*args)
        except Exception as exc:  # noqa: BLE001 - any error breaks the contract
            failure = f"{check.__name__}: {type(exc).__name__}: {exc}"
        if failure:
            failures.append(failure)
        counts.append(check.__name__)


@pytest.mark.parametrize("params", [{"n_lists": 6, "n_probe": 2}, {}], ids=["ivf", "exhaustive"])
def test_searches_and_saves_during_partial_fit_see_one_state(params, tmp_path):
    X, y, Q = _data()
    expected = _expected(X, y, Q, params)
    index = _make(X, y, **params)
    stop, failures, counts = threading.Event(), [], []
    checks = (_check_search, _check_search, _check_self_search, _check_save)
    readers = [
        threading.Thread(target=_reader, args=(check, (index, Q, expected, tmp_path / f"r{i}.npz"),
                                               stop, failures, counts))
        for i, check in enumerate(checks)
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show in few iterations
    try:
        for thread in readers:
            thread.start()
        deadline = time.monotonic() + _SECONDS
        for stage in range(1, _STAGES + 1):
            rows = slice(160 + _BATCH * (stage - 1), 160 + _BATCH * stage)
            index.partial_fit(X[rows], y[rows])
            time.sleep(0.001)
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        sys.setswitchinterval(interval)
    assert not failures, failures[:5]
    assert set(counts) == {check.__name__ for check in checks}  # every reader did run
    assert _same(index.kneighbors(Q), expected[index.n_samples_fit_][0])


def test_failed_partial_fit_leaves_the_published_state():
    X, y, Q = _data()
    index = _make(X, y, n_lists=4)
    before = index._state()
    with pytest.raises(ValueError, match="y is required"):
        index.partial_fit(X[200:210])
    with pytest.raises(ValueError):
        index.partial_fit(X[200:210, :3], y[200:210])
    assert index._state() is before
