"""
==========
Quickstart
==========

Train a :class:`~skdqn.DeepQuantizer` on the digits, turn every image into a
32-bit code, search the codes with :class:`~skdqn.AQDNeighbors`, and compare
the mean average precision (MAP) with plain product quantization (PQ) of the
pixels, which stores the same 4 bytes per image but ignores the labels.
"""

# %%
# Data: a database and some queries
# ---------------------------------
# The 1,797 digits are split into a database (which is also the training set,
# as in the deep hashing literature) and held-out queries. Pixels are scaled
# to ``[0, 1]``; any scale gives the same codes, as the default network
# standardizes its inputs with statistics learned in ``fit``.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import AQDNeighbors, DeepQuantizer

# Networks this small train fastest on one CPU thread: intra-op parallelism
# does not pay for such small matrices, and on a busy machine the threads
# mostly wait for each other. Leave the default for large networks or a GPU.
torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
print(f"{len(X_db)} database items, {len(X_q)} queries, {X.shape[1]} pixels each")

# %%
# Train DQN
# ---------
# ``M=4`` subspaces of ``K=256`` codewords give 32-bit codes (one byte per
# subspace). The network is the default MLP; we train for fewer epochs than
# the defaults to keep the example fast.
dq = DeepQuantizer(M=4, K=256, max_epochs=20, warmup_epochs=8, random_state=0)
dq.fit(X_db, y_db)
print(f"{dq.n_iter_} epochs, embedding dimension R = {dq.n_components_}")
print("codebooks_:", dq.codebooks_.shape, dq.codebooks_.dtype)

# %%
# Encode
# ------
# :meth:`~skdqn.DeepQuantizer.encode` maps each image to ``M`` codeword
# indices; :meth:`~skdqn.DeepQuantizer.transform` gives the real-valued
# embedding that queries use.
codes = dq.encode(X_db)
print("codes:", codes.shape, codes.dtype, f"{codes.nbytes / len(codes):.0f} bytes per item")
print(codes[:3])

# %%
# Search
# ------
# :class:`~skdqn.AQDNeighbors` built from the fitted
# :class:`~skdqn.DeepQuantizer` (:meth:`~skdqn.AQDNeighbors.from_quantizer`:
# a copy of its codebooks, so the index can be cloned) indexes the database
# embeddings, which it stores as the same codes. A query stays real-valued:
# its distances to the codewords are tabulated once, then every item costs
# ``M`` table look-ups (Asymmetric Quantizer Distance).
# :class:`~skdqn.Retriever` does both steps in one estimator, from raw queries.
index = AQDNeighbors.from_quantizer(dq, n_neighbors=10).fit(dq.transform(X_db), y_db)
print("same codes as dq.encode:", np.array_equal(index.codes_, codes))
dist, ind = index.kneighbors(dq.transform(X_q))
precision_at_10 = (y_db[ind] == y_q[:, None]).mean()
print(f"precision@10 over {len(X_q)} queries: {precision_at_10:.3f}")

# %%
# Mean average precision against PQ of the pixels
# -----------------------------------------------
# :meth:`~skdqn.DeepQuantizer.score` ranks the whole database (its training
# codes) for each query and returns the MAP; the index's
# :meth:`~skdqn.AQDNeighbors.score` does the same with its stored labels. The
# baseline is unsupervised PQ of the 64 pixels with the same code length
# (``M=4``, ``K=256``: k-means in each subspace of 16 pixels).
# MAP is the mean, over the queries, of the average precision of the whole
# ranked database (1 when every image of the query's digit comes first); both
# methods store 4 bytes per item, one byte (a codeword index) per subspace.
dqn_map = dq.score(X_q, y_q)
pq = AQDNeighbors(M=4, K=256, random_state=0).fit(X_db, y_db)
pq_map = pq.score(X_q, y_q)
print(f"MAP, 32-bit codes: DQN {dqn_map:.3f}  (index: {index.score(dq.transform(X_q), y_q):.3f})")
print(f"MAP, 32-bit codes: PQ of the pixels {pq_map:.3f}")

# %%
# Training curves and results
# ---------------------------
# ``history_`` records the pairwise cosine loss and the quantization loss of
# every epoch; the quantization loss only starts after the warm-up epochs,
# when the codebooks are first fitted.
history = dq.history_
epochs = [h["epoch"] for h in history]

fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(9, 3.5), width_ratios=[2, 1])
ax_loss.plot(epochs, [h["pair_loss"] for h in history], "o-", label="pairwise cosine loss")
ax_loss.set_xlabel("epoch")
ax_loss.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
ax_loss.set_ylabel("pair loss")
ax_q = ax_loss.twinx()
ax_q.plot(epochs, [h["quantization_loss"] for h in history], "s--", color="C1", label="quantization loss")
ax_q.set_ylabel("quantization loss")
lines = ax_loss.get_lines() + ax_q.get_lines()
ax_loss.legend(lines, [line.get_label() for line in lines], loc="upper right")
ax_loss.set_title("DeepQuantizer training")

ax_map.bar(["PQ\n(pixels)", "DQN"], [pq_map, dqn_map], color=["C7", "C0"])
for i, value in enumerate([pq_map, dqn_map]):
    ax_map.text(i, value + 0.01, f"{value:.3f}", ha="center")
ax_map.set_ylim(0, 1.05)
ax_map.set_ylabel("MAP")
ax_map.set_title("32-bit codes")
fig.tight_layout()
plt.show()
