"""DQN's losses as small torch functions.

Shapes: ``z`` is a batch of embeddings ``(B, R)``; ``labels`` a float
multi-hot matrix ``(B, n_classes)`` (one-hot for single-label data).

* :func:`pair_similarity`: ``s_ij = +1`` if items i and j share a label, else -1.
* :func:`pairwise_loss`: ``(s_ij - cos(z_i, z_j))^2`` (the paper) or
  ``(s_ij - <z_i, z_j> / R)^2`` (its "DQNip" ablation), averaged over the
  ``B (B - 1)`` ordered pairs ``i != j`` -- or, with ``weighting="balanced"``,
  the average of the mean over similar pairs and the mean over dissimilar
  pairs (similar pairs are rare when there are many classes).
* :func:`proxy_loss`: a cross-entropy over scaled cosines between each
  embedding and one learned *proxy* per class, with an additive margin on the
  item's own classes (NormFace / CosFace; the class-target objective of
  ``DeepQuantizer(loss="proxy")``). Multi-label rows spread the target over
  their labels; rows with no label are left out.
* :func:`quantization_loss`: ``||z_i - C h_i||^2`` summed over the ``R``
  dimensions and averaged over the batch, as in the authors' code.
"""

import numpy as np
import torch
import torch.nn.functional as F

# Single-label data with at least this many classes trains with the proxy loss
# under loss="auto" (placeholder: set by measurement below).
AUTO_PROXY_MIN_CLASSES = 20

__all__ = ["choose_loss", "pair_similarity", "pairwise_loss", "proxy_loss", "quantization_loss"]


class _Gram(torch.autograd.Function):
    """``x @ x.T`` with a one-product backward: ``(G + G^T) @ x``.

    Autograd would treat the two operands separately (two products); the
    result is the same.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x @ x.T

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return (grad + grad.T) @ x


def pair_similarity(labels):
    """Pairwise similarity ``S`` of a batch: +1 for a shared label, else -1.

    Parameters
    ----------
    labels : torch.Tensor of shape (B, n_classes)
        Multi-hot (or one-hot) float labels.

    Returns
    -------
    S : torch.Tensor of shape (B, B)
        ``S[i, j] = 2 * [labels_i . labels_j > 0] - 1``, same dtype as ``labels``.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._losses import pair_similarity
    >>> pair_similarity(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    tensor([[ 1.,  1., -1.],
            [ 1.,  1.,  1.],
            [-1.,  1.,  1.]])
    """
    return 2.0 * (labels @ labels.T > 0).to(labels.dtype) - 1.0


def pairwise_loss(z, S, *, kind="cosine", weighting="uniform"):
    """Pairwise loss between the similarities of embeddings and labels.

    Parameters
    ----------
    z : torch.Tensor of shape (B, R)
        Embeddings.
    S : torch.Tensor of shape (B, B)
        From :func:`pair_similarity`.
    kind : {"cosine", "inner_product"}, default="cosine"
        ``"cosine"``: ``(S_ij - cos(z_i, z_j))^2`` (DQN).
        ``"inner_product"``: ``(S_ij - <z_i, z_j> / R)^2`` (DQNip; with
        ``z`` in ``[-1, 1]^R`` the scaled inner product lies in ``[-1, 1]``).
    weighting : {"uniform", "balanced"}, default="uniform"
        ``"uniform"``: mean over the ordered pairs ``i != j``.
        ``"balanced"``: ``0.5 * (mean over similar pairs + mean over
        dissimilar pairs)``; a kind with no pair in the batch is left out.

    Returns
    -------
    loss : torch.Tensor, scalar

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._losses import pairwise_loss
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> S = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    >>> pairwise_loss(z, S)  # cos = 0 for the pair, target 1
    tensor(1.)
    """
    B, R = z.shape
    if kind == "cosine":
        zn = F.normalize(z, dim=1, eps=1e-12)
        sim = _Gram.apply(zn)
    elif kind == "inner_product":
        sim = _Gram.apply(z) / R
    else:
        raise ValueError(f"kind must be 'cosine' or 'inner_product', got {kind!r}.")
    # Sums over the whole matrix minus its diagonal: the same means as
    # indexing the off-diagonal entries, without materialising them.
    err = (S - sim) ** 2
    if weighting == "uniform":
        return (err.sum() - err.diagonal().sum()) / (B * (B - 1))
    if weighting != "balanced":
        raise ValueError(f"weighting must be 'uniform' or 'balanced', got {weighting!r}.")
    # One weight per pair: 1 / (number of pairs of its kind), halved when
    # both kinds occur; 0 on the diagonal. No host synchronisation.
    with torch.no_grad():
        off_diagonal = ~torch.eye(B, dtype=torch.bool, device=z.device)
        similar = ((S > 0) & off_diagonal).to(err.dtype)
        dissimilar = ((S < 0) & off_diagonal).to(err.dtype)
        n_similar, n_dissimilar = similar.sum(), dissimilar.sum()
        kinds = (n_similar > 0).to(err.dtype) + (n_dissimilar > 0).to(err.dtype)
        weights = (similar / n_similar.clamp(min=1) + dissimilar / n_dissimilar.clamp(min=1)) / kinds
    return (err * weights).sum()


def quantization_loss(z, codebooks, codes):
    """Product-quantization loss ``mean_i ||z_i - C h_i||^2``.

    Parameters
    ----------
    z : torch.Tensor of shape (B, R)
        Embeddings, ``R = M * ds``.
    codebooks : torch.Tensor of shape (M, K, ds)
        The block-diagonal ``C`` stored block by block.
    codes : torch.Tensor of shape (B, M), int64
        ``h_i`` as one codeword index per subspace.

    Returns
    -------
    loss : torch.Tensor, scalar
        Squared residual summed over the ``R`` dimensions, averaged over the
        batch.

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._losses import quantization_loss
    >>> C = torch.tensor([[[0.0], [1.0]], [[0.0], [2.0]]])
    >>> quantization_loss(torch.tensor([[1.0, 1.0]]), C, torch.tensor([[1, 1]]))
    tensor(1.)
    """
    M = codebooks.shape[0]
    recon = codebooks[torch.arange(M, device=codes.device), codes]  # (B, M, ds)
    return ((z - recon.reshape(z.shape)) ** 2).sum(dim=1).mean()


def proxy_loss(z, proxies, labels, *, scale=8.0, margin=0.05):
    """Cross-entropy over scaled cosines to one proxy per class (NormFace / CosFace).

    The logit of item ``i`` for class ``c`` is ``scale * (cos(z_i, p_c) -
    margin * y_ic)``; the target distribution is the item's label row
    divided by its number of labels (one-hot rows: the usual cross-entropy).

    Parameters
    ----------
    z : torch.Tensor of shape (B, R)
        Embeddings.
    proxies : torch.Tensor of shape (n_classes, R)
        One vector per class (learned, or fixed class codes); only their
        directions matter.
    labels : torch.Tensor of shape (B, n_classes)
        Multi-hot (or one-hot) float labels. Rows without a label carry no
        target and are left out of the mean.
    scale : float, default=8.0
        Inverse temperature of the softmax over cosines.
    margin : float, default=0.05
        Subtracted from the cosine of each of the item's own classes: the
        item must be closer to its proxies by at least this much.

    Returns
    -------
    loss : torch.Tensor, scalar
        Mean cross-entropy over the labelled rows (0 when none is labelled).

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._losses import proxy_loss
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> P = torch.eye(2)
    >>> Y = torch.eye(2)
    >>> bool(proxy_loss(z, P, Y) < proxy_loss(z, P, Y.flip(0)))
    True
    """
    cos = F.normalize(z, dim=1, eps=1e-12) @ F.normalize(proxies, dim=1, eps=1e-12).T
    logits = scale * (cos - margin * labels)
    n_labels = labels.sum(dim=1)
    target = labels / n_labels.clamp(min=1).unsqueeze(1)
    per_item = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
    labelled = (n_labels > 0).to(per_item.dtype)
    return (per_item * labelled).sum() / labelled.sum().clamp(min=1)


def choose_loss(labels):
    """The objective ``loss="auto"`` picks from the labels: ``"pairwise"`` or ``"proxy"``.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,) or (n_samples, n_labels)
        Canonical labels (:func:`skdqn._labels.check_labels`).

    Returns
    -------
    loss : {"pairwise", "proxy"}

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.training._losses import choose_loss
    >>> choose_loss(np.arange(1000) % 10), choose_loss(np.arange(1000) % 100)
    ('pairwise', 'proxy')
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return "pairwise"
    return "proxy" if np.unique(labels).shape[0] >= AUTO_PROXY_MIN_CLASSES else "pairwise"
