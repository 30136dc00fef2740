"""
====================================================
Images end to end: from PNG files to search by name
====================================================

The path a practitioner takes with an image collection: image files in a
folder, read through a :class:`torch.utils.data.Dataset` with transforms, a
CNN backbone trained by :class:`~skdqn.DeepQuantizer`, then re-used frozen
for a shorter code, the model and the index saved, loaded back, and a query
given by file name answered with file names.

So that nothing is downloaded, the folder is written here from scikit-learn's
digits (8x8 images, upscaled to 16x16 PNG files). With torchvision installed,
its transforms and architectures slot in where this example writes its own
(see the comments).
"""

# %%
# An image folder
# ---------------
# One sub-folder per class, as :class:`torchvision.datasets.ImageFolder`
# expects; a file name is all a caller needs to know about an image.
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from skdqn import AQDNeighbors, DeepQuantizer

root = Path(tempfile.mkdtemp()) / "digits-png"
X, y = load_digits(return_X_y=True)
for i, (pixels, label) in enumerate(zip(X, y)):
    folder = root / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray((pixels.reshape(8, 8) * 255 / 16).astype(np.uint8))
    image.resize((16, 16), Image.BILINEAR).save(folder / f"{i:04d}.png")

files = sorted(root.glob("*/*.png"))
rng = np.random.default_rng(0)
is_query = rng.random(len(files)) < 0.1  # 10% of the files are held out as queries
database_files = [f for f, q in zip(files, is_query) if not q]
query_files = [f for f, q in zip(files, is_query) if q]
print(f"{len(files)} PNG files in {root}: {len(database_files)} database, {len(query_files)} queries")


# %%
# A Dataset with transforms
# -------------------------
# Items are ``(image tensor, label)`` pairs, decoded only when their
# mini-batch is needed, so the collection need not fit in memory. The
# transform converts to a ``(1, 16, 16)`` float tensor in ``[0, 1]`` and
# normalizes it; with torchvision it would be
# ``transforms.Compose([transforms.Grayscale(), transforms.ToTensor(),
# transforms.Normalize([0.5], [0.5])])``. Keep random augmentations out of
# the items ``fit`` also embeds for the codebooks (or use a second Dataset):
# the stored codes should describe the images as they are.
def to_tensor(image):
    return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[None]


def normalize(tensor, mean=0.5, std=0.5):
    return (tensor - mean) / std


class ImageFiles(Dataset):
    """PNG files, labelled by their folder name."""

    def __init__(self, paths, transforms=(to_tensor, normalize)):
        self.paths, self.transforms = list(paths), transforms
        self.labels = np.array([int(p.parent.name) for p in self.paths])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        x = Image.open(self.paths[i])
        for transform in self.transforms:
            x = transform(x)
        return x, self.labels[i]


database, queries = ImageFiles(database_files), ImageFiles(query_files)
print("one item:", tuple(database[0][0].shape), database[0][1])


# %%
# A CNN backbone, seeded by ``random_state``
# ------------------------------------------
# ``network`` is given as a class (a factory): ``fit`` builds the module under
# its ``random_state`` seed, so two fits with the same seed give the same
# codes. (A module *instance* is used with its weights as they are.) With
# torchvision, a pretrained architecture would be given the same way, its
# classifier removed, and fine-tuned at a tenth of the new layer's learning
# rate, as in the paper::
#
#     from functools import partial
#     import torchvision
#
#     def resnet18_features():
#         net = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.DEFAULT)
#         net.fc = torch.nn.Identity()  # 512 features per image
#         return net
#
#     dq = DeepQuantizer(network=resnet18_features, backbone_lr_factor=0.1, device="cuda")
#
# (on a machine without internet access, ``torchvision.models.resnet18()``
# then ``net.load_state_dict(torch.load("resnet18.pth"))`` reads weights from a
# local file).
class SmallCNN(torch.nn.Module):
    """Two 3x3 convolutions with max pooling: (1, 16, 16) -> 32 x 4 x 4 features."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )

    def forward(self, x):
        return self.features(x)


start = time.perf_counter()
dq = DeepQuantizer(M=4, K=256, network=SmallCNN, max_epochs=12, warmup_epochs=5, random_state=0)
dq.fit(database)  # no y: the labels are in the items
print(f"32-bit CNN model: MAP {dq.score(queries):.3f} (fit {time.perf_counter() - start:.0f} s)")

# %%
# MAP is the mean, over the queries, of the average precision of the whole
# ranked database (1 when every image of the query's digit comes first); a
# 32-bit code is 4 bytes per image.
#
# A frozen backbone for another code length
# -----------------------------------------
# ``backbone_lr_factor`` scales the backbone's learning rate against the new
# ``fcb`` layer's; ``0`` freezes it. Re-using the trained backbone (a module
# instance, so its weights are kept) for 16-bit codes trains only ``fcb`` and
# the codebooks: no gradient is computed for the convolutions.
backbone = dq.network_.backbone
start = time.perf_counter()
dq16 = DeepQuantizer(M=2, K=256, network=backbone, backbone_lr_factor=0, max_epochs=8,
                     warmup_epochs=3, random_state=0).fit(database)
print(f"16-bit model, frozen backbone: MAP {dq16.score(queries):.3f} "
      f"(fit {time.perf_counter() - start:.0f} s)")
assert torch.equal(dq16.network_.backbone.features[0].weight, backbone.features[0].weight)

# %%
# Save the model and the index, load them back
# --------------------------------------------
# :meth:`DeepQuantizer.save <skdqn.DeepQuantizer.save>` and
# :meth:`AQDNeighbors.save <skdqn.AQDNeighbors.save>` write files that load
# without unpickling anything. The index is built from the codes of the
# database (the training set, ``codes_``); the file names are kept beside it,
# in the same order.
store = Path(tempfile.mkdtemp())
dq.save(store / "model.npz")
AQDNeighbors.from_codes(dq, dq.codes_, n_neighbors=6).save(store / "index.npz")
(store / "files.txt").write_text("\n".join(str(f.relative_to(root)) for f in database_files))

model = DeepQuantizer.load(store / "model.npz", network=SmallCNN)  # the weights go into a fresh SmallCNN
index = AQDNeighbors.load(store / "index.npz")
names = (store / "files.txt").read_text().splitlines()

# %%
# A query by file name
# --------------------
# The query image is read and transformed as the database was, embedded, and
# ranked against the stored codes by Asymmetric Quantizer Distance; the
# answer is file names.
def search(path, k=6):
    x, _ = ImageFiles([path])[0]
    _, ind = index.kneighbors(model.transform(x[None].numpy()), n_neighbors=k)
    return [names[i] for i in ind[0]]


query = query_files[0]
found = search(query)
print("query:", query.relative_to(root))
print("found:", found)

# %%
# Plot
# ----
fig, axes = plt.subplots(1, len(found) + 1, figsize=(8, 1.9), dpi=150)
axes[0].imshow(Image.open(query), cmap="gray_r")
axes[0].set_title(f"query\n{query.relative_to(root)}", fontsize=9)
for ax, name in zip(axes[1:], found):
    ax.imshow(Image.open(root / name), cmap="gray_r")
    ax.set_title(name, fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
