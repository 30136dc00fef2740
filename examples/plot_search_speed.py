"""
===================================
Search time and memory against size
===================================

How long does it take to find the 10 nearest items of a query, as the
database grows, when each item is stored as ``M`` one-byte codes and searched
by Asymmetric Quantizer Distance (AQD, :class:`~skdqn.AQDNeighbors`), and when
the embeddings are kept as floats and searched exactly
(:class:`sklearn.neighbors.NearestNeighbors` with ``algorithm="brute"``)?

The data is synthetic (random embeddings and random codebooks): search time
does not depend on what the vectors mean, only on their number, their
dimension ``R`` and the code size ``M``. Both searches run on one thread, and
each timing is the best of a few runs on the machine that built this page.
"""

# %%
# A synthetic database
# --------------------
# ``R = 128`` dimensions, ``M = 4`` subspaces of ``K = 256`` codewords: 32-bit
# codes, as in the other examples.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from skdqn import AQDNeighbors

rng = np.random.default_rng(0)
R, M, K = 128, 4, 256
sizes = [1_000, 3_000, 10_000, 30_000, 100_000]
n_queries = 100

embeddings = rng.standard_normal((sizes[-1], R), dtype=np.float32)
queries = rng.standard_normal((n_queries, R), dtype=np.float32)
codebooks = rng.standard_normal((M, K, R // M), dtype=np.float32)


def best_time(search, repeats=5):
    """Best wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        search()
        times.append(time.perf_counter() - start)
    return min(times)


# %%
# Time both searches
# ------------------
# ``fit`` encodes the items (AQD) or stores them (exact); only the search of
# the ``n_queries`` queries is timed, with numpy's BLAS limited to one thread
# (``threadpoolctl``) so that both methods get the same hardware.
aqd_ms, exact_ms = [], []
for n in sizes:
    aqd = AQDNeighbors(n_neighbors=10, codebooks=codebooks, n_jobs=1).fit(embeddings[:n])
    exact = NearestNeighbors(n_neighbors=10, algorithm="brute", n_jobs=1).fit(embeddings[:n])
    with threadpool_limits(limits=1):
        aqd_ms.append(1e3 * best_time(lambda: aqd.kneighbors(queries)) / n_queries)
        exact_ms.append(1e3 * best_time(lambda: exact.kneighbors(queries)) / n_queries)
    print(f"N = {n:>7,}: AQD {aqd_ms[-1]:.3f} ms/query, exact {exact_ms[-1]:.3f} ms/query")

aqd_bytes = aqd.codes_.nbytes / aqd.n_samples_fit_
float_bytes = embeddings.dtype.itemsize * R
print(f"memory per item: {aqd_bytes:.0f} bytes of codes vs {float_bytes} bytes of float32")
print(f"memory for N = {sizes[-1]:,}: {aqd.codes_.nbytes / 2**20:.2f} MiB of codes "
      f"(+ {codebooks.nbytes / 2**10:.0f} KiB of codebooks) vs {embeddings.nbytes / 2**20:.1f} MiB")

# %%
# Plot
# ----
# Both searches scan every item, so their time grows linearly with ``N``;
# AQD does ``M`` table look-ups per item where the exact search does ``R``
# multiply-adds, and reads ``M`` bytes where the exact search reads ``4 R``.
# For small databases the fixed cost of each query (building its lookup
# tables, selecting its top 10) dominates, and the exact search of a few
# thousand float vectors, one matrix product, can be faster; the codes win as
# the database grows, and in memory at every size.
fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4), width_ratios=[3, 2])
ax_time.loglog(sizes, aqd_ms, "o-", label=f"AQD on codes ({M} bytes/item)")
ax_time.loglog(sizes, exact_ms, "s-", label=f"exact, float32 ({float_bytes} bytes/item)")
ax_time.set_xlabel("database size N")
ax_time.set_ylabel("search time per query (ms), top-10")
ax_time.set_title("Search time")
ax_time.legend()

ax_mem.bar(["codes\n(AQD)", "float32\n(exact)"], [aqd_bytes, float_bytes], color=["C0", "C1"])
ax_mem.set_yscale("log")
ax_mem.set_ylabel("bytes per item")
ax_mem.set_title(f"Memory per item\n(R = {R}, M = {M}, K = {K})")
for i, value in enumerate([aqd_bytes, float_bytes]):
    ax_mem.text(i, value * 1.1, f"{value:.0f}", ha="center")
fig.tight_layout()
plt.show()
