"""Timing and memory helpers shared by the benchmark scripts."""

import time
import tracemalloc

import numpy as np


def best_time(fn, repeats):
    """Best wall time of ``repeats`` calls of ``fn``, in seconds."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_extra_mib(fn):
    """Peak of the traced allocations (numpy buffers included) during ``fn()``, in MiB.

    Measured from what was allocated before the call; tracemalloc slows
    allocations, so time the function in separate, untraced calls.
    """
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20
