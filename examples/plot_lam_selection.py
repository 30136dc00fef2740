"""
======================================
Choosing ``lam`` with cross-validation
======================================

DQN minimises ``L + lam * Q``: the pairwise cosine loss ``L`` pulls items with
a shared label together, the quantization loss ``Q`` keeps the embeddings
close to their codes. ``lam = 0`` is the "two-step" variant (learn the
embedding, quantize afterwards); a large ``lam`` lets the quantization loss
outweigh the labels. :class:`~sklearn.model_selection.GridSearchCV`
picks ``lam`` like any other hyper-parameter: :meth:`DeepQuantizer.score
<skdqn.DeepQuantizer.score>` is the mean average precision (MAP) of the
validation fold as queries against the training fold as database, and
:func:`skdqn.metrics.map_scorer` makes that choice explicit (it also offers
``top_k``, for MAP@k).
"""

# %%
# Data and a small, fast model
# ----------------------------
# 8-bit codes (``M=2`` subspaces of ``K=16`` codewords) and a small network
# keep each of the fits below to about a second on a CPU.
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from skdqn import DeepQuantizer
from skdqn.metrics import map_scorer

# Networks this small train fastest on one CPU thread: intra-op parallelism
# does not pay for such small matrices, and on a busy machine the threads
# mostly wait for each other. Leave the default for large networks or a GPU.
torch.set_num_threads(1)

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
# Two more scores: how well the embeddings quantize
# -------------------------------------------------
# Besides MAP, each candidate reports the quantization error of the validation
# embeddings, ``mean ||z - C h||^2`` (the ``Q`` of the objective, per item),
# and the same error relative to ``mean ||z||^2``. Both matter: the cosine
# loss ignores the scale of ``z``, so the absolute error can fall simply
# because the embeddings shrink; the relative error tells whether they became
# easier to quantize. The selection itself uses MAP (``refit="MAP"``).
def quantization_error(estimator, X, y):
    Z = estimator.transform(X)
    return float(((Z - estimator.decode(estimator.encode(X))) ** 2).sum(axis=1).mean())


def relative_quantization_error(estimator, X, y):
    Z = estimator.transform(X)
    return quantization_error(estimator, X, y) / float((Z**2).sum(axis=1).mean())


# %%
# Grid search over ``lam``
# ------------------------
# Each candidate is trained on two thirds of the training set and scored on
# the remaining third (3-fold cross-validation); the best one is then refitted
# on the whole training set.
lams = [0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0]
search = GridSearchCV(
    base,
    {"lam": lams},
    cv=3,
    scoring={
        "MAP": map_scorer(),
        "Q": quantization_error,
        "relative Q": relative_quantization_error,
    },
    refit="MAP",
)
search.fit(X_train, y_train)

results = search.cv_results_
mean, std = results["mean_test_MAP"], results["std_test_MAP"]
error, relative = results["mean_test_Q"], results["mean_test_relative Q"]
for lam, m, s, e, r in zip(lams, mean, std, error, relative):
    print(f"lam = {lam:<6g}  validation MAP {m:.3f} +/- {s:.3f}   Q {e:.4f}   relative Q {r:.3f}")
best_lam = search.best_params_["lam"]
print(f"selected lam = {best_lam:g}; MAP of the test queries: {search.score(X_test, y_test):.3f}")

# %%
# Plot
# ----
# ``lam`` spans several orders of magnitude, so the x axis is logarithmic;
# ``lam = 0`` has no place on a log axis and is drawn as a horizontal line
# (with a band of one standard deviation over the folds) instead.
lams_arr = np.array(lams)
positive = lams_arr > 0
zero = ~positive

fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
ax.errorbar(lams_arr[positive], mean[positive], yerr=std[positive], fmt="o-", capsize=3,
            label="lam > 0")
ax_err.plot(lams_arr[positive], error[positive], "o-", color="C0", label="Q, lam > 0")
ax_err.plot(lams_arr[positive], relative[positive], "^-", color="C1", label="relative Q, lam > 0")
if zero.any():
    m0, s0 = mean[zero][0], std[zero][0]
    ax.axhline(m0, color="C2", linestyle="--", label="lam = 0 (two-step)")
    ax.axhspan(m0 - s0, m0 + s0, color="C2", alpha=0.15)
    ax_err.axhline(error[zero][0], color="C0", linestyle="--", label="Q, lam = 0")
    ax_err.axhline(relative[zero][0], color="C1", linestyle="--", label="relative Q, lam = 0")
if best_lam > 0:
    ax.plot(best_lam, search.best_score_, marker="*", markersize=18, color="C3",
            linestyle="none", label=f"selected: lam = {best_lam:g}")
else:
    ax.plot([], [], color="C3", linestyle="none", marker="*", markersize=18,
            label="selected: lam = 0")
for a in (ax, ax_err):
    a.set_xscale("log")
    a.set_xlabel("lam (weight of the quantization loss)")
ax.set_ylabel("mean validation MAP (3 folds)")
ax.set_title("Ranking quality")
ax.legend(loc="lower left")
ax_err.set_yscale("log")
ax_err.set_ylabel("validation quantization error")
ax_err.set_title("Quantization error")
ax_err.legend(loc="lower left", fontsize="small")
fig.suptitle("GridSearchCV over lam, 8-bit codes")
fig.tight_layout()
plt.show()
