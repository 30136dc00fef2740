"""
=======================================
Precision-recall and precision@k curves
=======================================

MAP summarises a ranking in one number; the curves show where the ranking is
good. For every query the whole database is ranked by Asymmetric Quantizer
Distance, and :func:`skdqn.metrics.precision_recall_curve` and
:func:`skdqn.metrics.precision_at_k` average precision and recall over the
queries at each depth of the ranking. DQN (:class:`~skdqn.DeepQuantizer`) is
compared with product quantization of the pixels, both with 32-bit codes.
"""

# %%
# Two indexes with 32-bit codes
# -----------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import AQDNeighbors, DeepQuantizer, Retriever
from skdqn.metrics import mean_average_precision, precision_at_k, precision_recall_curve

# Networks this small train fastest on one CPU thread: intra-op parallelism
# does not pay for such small matrices, and on a busy machine the threads
# mostly wait for each other. Leave the default for large networks or a GPU.
torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_db, X_q, y_db, y_q = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
n_db = len(X_db)

# A Retriever trains DQN and indexes the database's codes; it takes raw queries.
# Fewer epochs than the defaults, to keep the example fast.
dq = DeepQuantizer(M=4, K=256, max_epochs=15, warmup_epochs=6, random_state=0)
dqn = Retriever(dq).fit(X_db, y_db)
pq_index = AQDNeighbors(M=4, K=256, random_state=0).fit(X_db)

# %%
# Rank the whole database for every query
# ---------------------------------------
# ``kneighbors`` with ``n_neighbors`` equal to the database size returns full
# rankings (ties broken by database index), which all the metrics accept.
rankings = {
    "DQN": dqn.kneighbors(X_q, n_neighbors=n_db, return_distance=False),
    "PQ of the pixels": pq_index.kneighbors(X_q, n_neighbors=n_db, return_distance=False),
}
for name, ranking in rankings.items():
    print(
        f"{name:17s} MAP {mean_average_precision(y_q, y_db, ranking):.3f}   "
        f"precision@10 {precision_at_k(y_q, y_db, ranking, k=10):.3f}   "
        f"MAP@100 {mean_average_precision(y_q, y_db, ranking, top_k=100):.3f}"
    )

# %%
# Curves
# ------
# Each class holds about a tenth of the database, so recall reaches 1 near
# depth ``n_db / 10`` for a perfect ranking; precision@k stays at 1 up to
# there.
depths = np.unique(np.geomspace(1, n_db, 60).astype(int))
ks = np.arange(1, 301)

fig, (ax_pr, ax_pk) = plt.subplots(1, 2, figsize=(10, 4))
for name, ranking in rankings.items():
    precision, recall, _ = precision_recall_curve(y_q, y_db, ranking, depths=depths)
    ax_pr.plot(recall, precision, label=name)
    ax_pk.plot(ks, precision_at_k(y_q, y_db, ranking, k=ks), label=name)
ax_pr.set_xlabel("recall")
ax_pr.set_ylabel("precision")
ax_pr.set_title("Precision-recall (ranking depths 1 to %d)" % n_db)
ax_pk.axvline(n_db / 10, color="grey", linestyle=":", label="about one class")
ax_pk.set_xlabel("k (items retrieved)")
ax_pk.set_ylabel("precision@k")
ax_pk.set_title("Precision@k")
for ax in (ax_pr, ax_pk):
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
fig.tight_layout()
plt.show()
