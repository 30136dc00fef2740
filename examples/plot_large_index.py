"""
===================================================
A growing index, stored on disk, searched in shards
===================================================

An index over millions of items is rarely built in one call or kept in
memory. This example grows an :class:`~skdqn.AQDNeighbors` index chunk by
chunk with :meth:`~skdqn.AQDNeighbors.partial_fit`, saves it without pickle,
loads it back memory-mapped (the codes stay on disk and are streamed as the
search reads them), and checks that a search split into database shards,
whose top-k lists are merged with :func:`skdqn.merge_kneighbors`, returns
exactly what one search of the whole index returns.
"""

# %%
# Codebooks from a DeepQuantizer, items added in chunks
# -----------------------------------------------------
# A small DQN on digits provides the embedding and the codebooks (32-bit
# codes); the database is then added 300 items at a time, as if read from
# disk. Nothing is refitted: each chunk is encoded with the codebooks.
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import AQDNeighbors, DeepQuantizer, database_shards, merge_kneighbors

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=100, stratify=y, random_state=0)

dq = DeepQuantizer(M=4, K=64, n_components=64, max_epochs=15, warmup_epochs=5, random_state=0)
dq.fit(X_db, y_db)

index = AQDNeighbors.from_quantizer(dq, n_neighbors=10)
for start in range(0, len(X_db), 300):
    index.partial_fit(dq.transform(X_db[start : start + 300]), y_db[start : start + 300])
print(f"{index.n_samples_fit_} items, {index.codes_.nbytes} bytes of codes")
print(f"MAP of the queries: {index.score(dq.transform(X_q), y_q):.3f}")

# %%
# Saved without pickle, loaded memory-mapped
# ------------------------------------------
# ``save`` writes the codebooks, the codes and the labels as ``.npy`` arrays
# and the parameters as JSON, here in one uncompressed ``.npz`` file. With
# ``mmap_mode="r"`` the loaded index keeps its codes on disk.
folder = Path(tempfile.mkdtemp())
path = index.save(folder / "digits_index.npz")
print(f"{path.name}: {path.stat().st_size} bytes")

on_disk = AQDNeighbors.load(path, mmap_mode="r")
print(type(on_disk.codes_).__name__, on_disk.codes_.shape)
Z_q = dq.transform(X_q)
same = np.array_equal(on_disk.kneighbors(Z_q)[1], index.kneighbors(Z_q)[1])
print("same neighbours as the in-memory index:", same)

# %%
# Shards searched separately, merged
# ----------------------------------
# Each shard could live on another machine: search its codes on their own,
# then merge the per-shard top-10 lists. Shard ``s`` numbers its items from
# 0, so its first global index is passed as its offset.
shards = database_shards(index.n_samples_fit_, 4)
distances, indices = [], []
for shard in shards:
    part = AQDNeighbors.from_codes(dq, on_disk.codes_[shard], n_neighbors=10)
    d, i = part.kneighbors(Z_q)
    distances.append(d)
    indices.append(i)
dist, ind = merge_kneighbors(distances, indices, 10, offsets=[s.start for s in shards])

ref_dist, ref_ind = index.kneighbors(Z_q)
print("shards:", [f"{s.start}-{s.stop - 1}" for s in shards])
print("merged top-10 identical to one search:", np.array_equal(ind, ref_ind))

# %%
# The same in one call: ``n_jobs`` splits the work into query blocks and
# database shards and merges them, on threads, or on a dask cluster inside
# ``joblib.parallel_backend("dask")``.
parallel = AQDNeighbors.load(path, mmap_mode="r").set_params(n_jobs=2)
print("n_jobs=2 identical:", np.array_equal(parallel.kneighbors(Z_q)[1], ref_ind))

# %%
# What the neighbours look like
# -----------------------------
# The first queries and their five nearest database images, ranked by AQD.
import matplotlib.pyplot as plt

fig, axes = plt.subplots(4, 6, figsize=(6, 4.4))
for row in range(4):
    images = [X_q[row]] + [X_db[j] for j in ind[row, :5]]
    labels = [y_q[row]] + [y_db[j] for j in ind[row, :5]]
    for col, (image, label) in enumerate(zip(images, labels)):
        ax = axes[row, col]
        ax.imshow(image.reshape(8, 8), cmap="gray_r")
        ax.set_title("query" if col == 0 else str(label), fontsize=8)
        ax.axis("off")
fig.suptitle("Queries and their top-5 from the memory-mapped, sharded index", fontsize=9)
plt.show()
