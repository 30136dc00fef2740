"""
========================================
Choosing ``lam`` with cross-validation
========================================

DQN minimises ``L + lam * Q``: the pairwise cosine loss ``L`` pulls items with
a shared label together, the quantization loss ``Q`` keeps the embeddings
close to their codes. ``lam = 0`` is the "two-step" variant (learn the
embedding, quantize afterwards); a very large ``lam`` lets the quantization
loss dominate the labels. :class:`~sklearn.model_selection.GridSearchCV`
picks ``lam`` like any other hyper-parameter: :meth:`DeepQuantizer.score
<skdqn.DeepQuantizer.score>` is the mean average precision (MAP) of the
validation fold as queries against the training fold as database, and
:func:`skdqn.metrics.map_scorer` makes the choice explicit (and offers
``top_k``).
"""

# %%
# Data and a small, fast model
# ----------------------------
# 8-bit codes (``M=2`` subspaces of ``K=16`` codewords) and a small network
# keep each of the fits below under a second or two on a CPU.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from skdqn import DeepQuantizer
from skdqn.metrics import map_scorer

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.2, stratify=y, random_state=0
)

base = DeepQuantizer(
    M=2,
    K=16,
    n_components=32,
    hidden_layer_sizes=(128,),
    max_epochs=12,
    warmup_epochs=4,
    random_state=0,
)

# %%
# Grid search over ``lam``
# ------------------------
# Each candidate is trained on two thirds of the training set and scored on
# the remaining third (3-fold cross-validation); the best one is then refitted
# on the whole training set.
lams = [0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
search = GridSearchCV(base, {"lam": lams}, cv=3, scoring=map_scorer())
search.fit(X_train, y_train)

mean = search.cv_results_["mean_test_score"]
std = search.cv_results_["std_test_score"]
for lam, m, s in zip(lams, mean, std):
    print(f"lam = {lam:<6g}  validation MAP {m:.3f} +/- {s:.3f}")
best_lam = search.best_params_["lam"]
print(f"selected lam = {best_lam:g}; MAP of the test queries: {search.score(X_test, y_test):.3f}")

# %%
# Plot
# ----
# ``lam`` spans several orders of magnitude, so the x axis is logarithmic;
# ``lam = 0`` has no place on a log axis and is drawn as a horizontal band
# (mean +/- one standard deviation over the folds) instead.
lams_arr = np.array(lams)
positive = lams_arr > 0
zero = ~positive

fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(lams_arr[positive], mean[positive], yerr=std[positive], fmt="o-", capsize=3,
            label="lam > 0")
if zero.any():
    m0, s0 = mean[zero][0], std[zero][0]
    ax.axhline(m0, color="C2", linestyle="--", label="lam = 0 (two-step)")
    ax.axhspan(m0 - s0, m0 + s0, color="C2", alpha=0.15)
if best_lam > 0:
    ax.plot(best_lam, search.best_score_, marker="*", markersize=18, color="C3",
            linestyle="none", label=f"selected: lam = {best_lam:g}")
else:
    ax.plot([], [], color="C3", linestyle="none", marker="*", markersize=18,
            label="selected: lam = 0")
ax.set_xscale("log")
ax.set_xlabel("lam (weight of the quantization loss)")
ax.set_ylabel("mean validation MAP (3 folds)")
ax.set_title("GridSearchCV over lam, 8-bit codes")
ax.legend(loc="lower left")
fig.tight_layout()
plt.show()
