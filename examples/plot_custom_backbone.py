"""
======================================
A custom backbone: a CNN on the images
======================================

:class:`~skdqn.DeepQuantizer` trains any :class:`torch.nn.Module` given as
``network``: here a small convolutional network that reads the digits as
``(n, 1, 8, 8)`` images instead of 64-pixel rows. The quantization layer
(``fcb``: Linear + tanh to ``n_components`` dimensions) is added on top of the
backbone's flattened output. The same code trains on a GPU with
``device="cuda"`` (or the default ``device="auto"``, which picks CUDA when
available).
"""

# %%
# Images as 4-D arrays
# --------------------
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdqn import DeepQuantizer

# Networks this small train fastest on one CPU thread: intra-op parallelism
# does not pay for such small matrices, and on a busy machine the threads
# mostly wait for each other. Leave the default for large networks or a GPU.
torch.set_num_threads(1)

X, y = load_digits(return_X_y=True)
images = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)  # (n, channels, height, width)
img_db, img_q, y_db, y_q = train_test_split(images, y, test_size=0.2, stratify=y, random_state=0)
print("images:", img_db.shape)

# %%
# The backbone
# ------------
# Two 3x3 convolutions with max pooling: 8x8 -> 4x4 -> 2x2, 32 channels, so
# the backbone's output has 128 features. ``DeepQuantizer`` never trains the
# module in place: ``fit`` trains a deep copy, so ``cnn`` keeps its initial
# weights (useful for a pretrained backbone) and the estimator can be cloned.
torch.manual_seed(0)
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, kernel_size=3, padding=1),
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(16, 32, kernel_size=3, padding=1),
    torch.nn.ReLU(),
    torch.nn.MaxPool2d(2),
    torch.nn.Flatten(),
)

# %%
# Train both networks with the same settings
# ------------------------------------------
# 32-bit codes; fewer epochs than the defaults, to keep the example fast. The
# MLP reads the same pixels as 64-feature rows.
settings = dict(M=4, K=256, max_epochs=15, warmup_epochs=6, random_state=0)
results = {}
for name, network, X_train, X_test in [
    ("CNN", cnn, img_db, img_q),
    ("default MLP", None, img_db.reshape(len(img_db), -1), img_q.reshape(len(img_q), -1)),
]:
    start = time.perf_counter()
    dq = DeepQuantizer(network=network, **settings).fit(X_train, y_db)
    seconds = time.perf_counter() - start
    results[name] = dq.score(X_test, y_q)
    n_params = sum(p.numel() for p in dq.network_.parameters())
    print(f"{name:12s} MAP {results[name]:.3f}  ({n_params:,} parameters, fit {seconds:.1f} s "
          f"on {dq.device_})")
    if network is not None:
        cnn_model = dq

print("CNN embeddings:", cnn_model.transform(img_q[:5]).shape)
print("CNN codes:", cnn_model.encode(img_q[:5]).shape)

# %%
# On 8x8 digits a CNN has little spatial structure to exploit, and the MLP,
# with more parameters, may well do as well or better; convolutional (or
# pretrained) backbones pay off on larger images.

# %%
# On a GPU
# --------
# ``DeepQuantizer(network=cnn, device="cuda")`` trains on the GPU (the inputs
# stay numpy arrays; mini-batches are moved to the device). A model fitted on
# a GPU pickles (``joblib.dump``) with its network, and loads back on a machine
# without CUDA with the network on the CPU.

# %%
# Plot
# ----
fig, ax = plt.subplots(figsize=(4.5, 3.5))
names = list(results)
ax.bar(names, [results[n] for n in names], color=["C0", "C7"])
for i, name in enumerate(names):
    ax.text(i, results[name] + 0.01, f"{results[name]:.3f}", ha="center")
ax.set_ylim(0, 1.05)
ax.set_ylabel("MAP (32-bit codes)")
ax.set_title("Backbones on the digits")
fig.tight_layout()
plt.show()
