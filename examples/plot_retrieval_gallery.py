"""
==================================
What the codes retrieve: a gallery
==================================

A few query digits and their ten nearest database images by Asymmetric
Quantizer Distance, for DQN (:class:`~skdqn.DeepQuantizer`) and for product
quantization of the pixels, both with 32-bit codes. A red frame marks a
neighbour of another class than the query.
"""

# %%
# Fit both indexes
# ----------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import AQDNeighbors, DeepQuantizer, Retriever

# Networks this small train fastest on one CPU thread: intra-op parallelism
# does not pay for such small matrices, and on a busy machine the threads
# mostly wait for each other. Leave the default for large networks or a GPU.
torch.set_num_threads(1)

digits = load_digits()
X, y = digits.data / 16.0, digits.target
X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

# A Retriever trains DQN and indexes the database's codes; it takes raw queries.
# Fewer epochs than the defaults, to keep the example fast.
dq = DeepQuantizer(M=4, K=256, max_epochs=15, warmup_epochs=6, random_state=0)
dqn = Retriever(dq, n_neighbors=10).fit(X_db, y_db)
pq_index = AQDNeighbors(n_neighbors=10, M=4, K=256, random_state=0).fit(X_db)

dqn_neighbors = dqn.kneighbors(X_q, return_distance=False)
pq_neighbors = pq_index.kneighbors(X_q, return_distance=False)
print(f"precision@10: DQN {(y_db[dqn_neighbors] == y_q[:, None]).mean():.3f}, "
      f"PQ of the pixels {(y_db[pq_neighbors] == y_q[:, None]).mean():.3f}")

# %%
# Pick queries
# ------------
# One query of each of five classes (the first in the query set), and the
# query on which PQ of the pixels makes the most mistakes.
queries = [int(np.flatnonzero(y_q == c)[0]) for c in (0, 3, 5, 8, 9)]
pq_errors = (y_db[pq_neighbors] != y_q[:, None]).sum(axis=1)
queries.append(int(np.argmax(pq_errors)))

# %%
# The gallery
# -----------
# Each query gets two rows: its neighbours under DQN, then under PQ of the
# pixels, best first.


def show(ax, image, frame=None):
    ax.imshow(image.reshape(8, 8), cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(3)


n_rows = 2 * len(queries)
fig, axes = plt.subplots(n_rows, 11, figsize=(8.5, 0.8 * n_rows))
for row, q in enumerate(np.repeat(queries, 2)):
    method, neighbors = ("DQN", dqn_neighbors) if row % 2 == 0 else ("PQ", pq_neighbors)
    show(axes[row, 0], X_q[q], frame="black")
    axes[row, 0].set_ylabel(f"{method}\nclass {y_q[q]}", rotation=0, ha="right", va="center", fontsize=8)
    for col, item in enumerate(neighbors[q], start=1):
        wrong = y_db[item] != y_q[q]
        show(axes[row, col], X_db[item], frame="red" if wrong else None)
axes[0, 0].set_title("query", fontsize=9)
for col in range(1, 11):
    axes[0, col].set_title(f"#{col}", fontsize=9)
fig.suptitle("Top-10 neighbours by AQD, 32-bit codes (red: another class)")
fig.tight_layout()
plt.show()
