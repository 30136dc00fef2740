"""Tests of the packed sort keys and the stable selection (skdqn.search._ranking)."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skdqn.search._ranking import PAD_KEY, order_bits, pack_keys, stable_smallest, unpack_keys


def tie_heavy(shape, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(-3, 4, size=shape).astype(np.float32)
    values[rng.random(shape) < 0.1] = -0.0
    values[rng.random(shape) < 0.05] = np.inf
    return values


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8, 9, 17, 40])
def test_stable_smallest_equals_a_stable_argsort(depth):
    # depth <= 8: one argmin per rank; deeper: packed keys; ties, -0.0 and inf.
    values = tie_heavy((30, 40), depth)
    expected = np.argsort(values + np.float32(0.0), axis=1, kind="stable")[:, :depth]
    assert_array_equal(stable_smallest(values, depth), expected)


@pytest.mark.parametrize("depth", [2, 3, 8])
def test_stable_smallest_when_the_ranks_reach_inf(depth):
    # A row whose depth smallest include inf values takes the packed-key path:
    # masking a found value with inf could not tell it from a real inf.
    values = tie_heavy((6, 12), 1)
    values[2] = np.inf
    values[4, 5:] = np.inf
    values[4, :5] = -0.0
    expected = np.argsort(values + np.float32(0.0), axis=1, kind="stable")[:, :depth]
    assert_array_equal(stable_smallest(values, depth), expected)
    assert_array_equal(values[2], np.inf)  # the input is not changed


def test_order_bits_orders_like_floats_and_zeros_tie():
    values = np.array([np.inf, 1.5, -0.0, 0.0, -2.0, -np.inf, 3e-45], np.float32)
    bits = order_bits(values)
    assert_array_equal(np.argsort(bits, kind="stable"), np.argsort(values, kind="stable"))
    assert bits[2] == bits[3]


def test_keys_round_trip_and_padding():
    values = tie_heavy((200,), 0)
    values[values == -0.0] = 0.0
    indices = np.random.default_rng(0).integers(0, 2**32 - 1, 200)
    keys = pack_keys(values, indices)
    back_v, back_i = unpack_keys(keys)
    assert_array_equal(back_v, values)
    assert_array_equal(back_i, indices)
    order = np.argsort(keys)
    assert_array_equal(order, np.lexsort((indices, values)))
    pad_v, pad_i = unpack_keys(np.array([PAD_KEY], np.uint64))
    assert np.isinf(pad_v[0]) and pad_i[0] == -1
