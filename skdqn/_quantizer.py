"""DeepQuantizer: the Deep Quantization Network (DQN) as a scikit-learn estimator.

Training is a ladder of small steps (after skorch's ``fit -> fit_loop ->
run_single_epoch -> train_step``): :meth:`DeepQuantizer.fit` prepares the
inputs (:func:`skdqn.training._data.training_source`) and the network, then
``_fit_loop`` runs the epochs (``_run_single_epoch``), each a sequence of
``_train_step`` (forward, loss, backward, optimizer step), refreshing the
codebooks (``_refresh_codebooks``) whenever ``_codebook_refresh_due``; the
final codebooks are polished by ``_final_codebooks``, and every fitted
attribute is set at the end, in ``_set_fitted``.
"""

import contextlib
import copy
import io
import os
import math
import pathlib
import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from .training._data import (
    dataset_n_features,
    embed,
    is_dataset,
    prediction_source,
    scoring_data,
    split_item,
    training_source,
)
from .training._distributed import (
    average_gradients,
    broadcast_arrays,
    broadcast_module,
    check_agreement,
    embed_all,
    gather_rows,
    is_main,
    rank_batches,
    shared_random_state,
    split_counts,
    training_device,
    world,
    wrap,
)
from ._labels import label_indicator
from .training._losses import (
    choose_loss,
    pair_similarity,
    pairwise_loss,
    proxy_loss,
    quantization_loss,
)
from .io._index_io import make_estimator
from .io._model_io import check_quantization, load_weights, network_bytes, read_model, save_model
from .training._network import (
    InputStandardizer,
    QuantizationNetwork,
    build_mlp,
    describe_network,
    input_statistics,
    is_network_factory,
    module_device,
    rebuild_network,
)
from ._pq import decode, encode, refine_codebooks, train_codebooks, update_codebooks
from ._progress import epoch_progress
from .search._scoring import score_codes
from .search._tables import VectorQueries
from ._validation import check_codes, check_device, check_n_subspaces

__all__ = ["DeepQuantizer"]

_DEFAULT_N_COMPONENTS = 300  # the authors' R; divisible by M = 1, 2, 3, 4
# Lloyd iterations of the first codebook fit and of the final polish. Few are
# needed: every refresh in between is one more C-step / H-step alternation.
_CODEBOOK_ITER = 10
# Fitted attributes that scikit-learn's validate_data sets early in fit;
# restored when a fit fails (every other one is set only once fit succeeds).
_INPUT_ATTRIBUTES = ("n_features_in_", "feature_names_in_")


@dataclass
class _TrainingState:
    """Everything one ``fit`` works on: its inputs, the training machinery, and C and H.

    Attributes
    ----------
    source : skdqn.training._data.BatchSource
        The training items.
    labels : ndarray of shape (n,) or (n, n_labels)
        Their validated labels.
    classes : ndarray
        The future ``classes_``.
    device : torch.device
        Where the network trains.
    rng : numpy.random.RandomState
        The estimator's random state (the k-means draws).
    net : QuantizationNetwork
        The network being trained.
    optimizer : torch.optim.Optimizer
        Its optimizer.
    scheduler : torch.optim.lr_scheduler.LRScheduler or None
        The learning-rate schedule (stepped once per epoch), or None.
    generator : torch.Generator
        Draws each epoch's permutation of the items.
    codebooks : ndarray of shape (M, K, R / M), float32, or None
        ``C``; None until the first codebook fit.
    codes : ndarray of shape (n, M) or None
        ``H``, the codes of the items under ``codebooks``.
    C_t, H_t : torch.Tensor or None
        ``C`` (float32) and ``H`` (int64), on ``device``.
    history : list of dict
        One record per complete epoch.
    epoch : int
        The epoch running, from 0 (for messages).
    loss : {"pairwise", "proxy"}
        The objective (``loss`` with ``"auto"`` resolved).
    proxies : torch.nn.Parameter of shape (n_classes, R) or None
        The class proxies trained with ``loss="proxy"``; None otherwise.
    world : skdqn.training._distributed.World or None
        This process's rank and the number of processes under an
        initialised ``torch.distributed`` group; None otherwise.
    model : torch.nn.Module or None
        What a training step calls: ``net`` in ``DistributedDataParallel``
        under a process group, else ``net`` itself (``net`` stays the plain
        network, the one that is embedded and fitted).
    """

    source: object
    labels: np.ndarray
    classes: np.ndarray
    device: torch.device
    rng: np.random.RandomState
    net: QuantizationNetwork
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    codebooks: np.ndarray = None
    codes: np.ndarray = None
    C_t: torch.Tensor = None
    H_t: torch.Tensor = None
    history: list = field(default_factory=list)
    epoch: int = 0  # the epoch running (0-based)
    loss: str = "pairwise"
    proxies: torch.Tensor = None
    world: object = None
    model: torch.nn.Module = None

    def set_codebooks(self, codebooks, codes):
        """Replace ``C`` and ``H``, and their torch copies on the device."""
        self.codebooks, self.codes = codebooks, codes
        self.C_t = torch.from_numpy(codebooks).to(self.device)
        self.H_t = torch.from_numpy(codes.astype(np.int64)).to(self.device)


def _check_first_output(out, batch):
    """Raise a ValueError unless the backbone gave one finite row per item of ``batch``."""
    where = f"In the first forward pass (a batch of shape {tuple(batch.shape)}), the network"
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{where} returned a {type(out).__name__}; expected a tensor.")
    if out.ndim == 0 or out.shape[0] != batch.shape[0]:
        raise ValueError(
            f"{where} returned an output of shape {tuple(out.shape)}: its first dimension must "
            f"be the batch ({batch.shape[0]} items)."
        )
    if out.numel() == 0:
        raise ValueError(f"{where} returned an empty output of shape {tuple(out.shape)}.")
    for bad, what in ((torch.isnan(out), "NaN"), (torch.isinf(out), "infinity")):
        if bad.any():
            raise ValueError(f"{where} returned {what} (for finite inputs).")


@contextlib.contextmanager
def _torch_threads(n_threads):
    """Run the block on ``n_threads`` torch threads (-1: every core; None: unchanged)."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    wanted = (os.cpu_count() or previous) if n_threads == -1 else n_threads
    if wanted != previous:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if wanted != previous:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def _frozen_backbone(net, freeze):
    """With ``freeze``, train without the backbone's parameters (``backbone_lr_factor=0``).

    They get ``requires_grad=False`` for the block, so no gradient is
    computed for them and the optimizer leaves them out; afterwards the
    fitted network's parameters are as they were built (a parameter the
    user froze in a given module stays frozen).
    """
    frozen = [p for p in net.backbone.parameters() if p.requires_grad] if freeze else []
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _backbone_from(network):
    """The backbone ``fit`` trains: a deep copy of a module, or what a factory returns.

    A module instance keeps its weights (e.g. pretrained ones); a factory
    (a class, or any callable without ``forward``) is called with no
    arguments, under torch's seed, so ``random_state`` seeds its
    initialisation.
    """
    if not is_network_factory(network):
        return copy.deepcopy(network)
    backbone = network()
    if not isinstance(backbone, torch.nn.Module):
        raise TypeError(
            f"network: the factory {network!r} returned a {type(backbone).__name__}; "
            "expected a torch.nn.Module."
        )
    return backbone


def _item_shape(X):
    """The shape of the items of ``X`` (an array-like or a Dataset), or None if unknown."""
    try:
        if is_dataset(X):
            if len(X) == 0:
                return None
            x, _ = split_item(X[0])
            return tuple(torch.as_tensor(x).shape)
        shape = getattr(X, "shape", None)
        shape = np.shape(X) if shape is None else shape
    except Exception:  # noqa: BLE001 - the input path gives its own, clearer message
        return None
    return tuple(int(s) for s in shape[1:]) if len(shape) >= 2 else None


def _check_finite_embeddings(Z, when):
    """Raise a ValueError naming ``when`` if the embeddings ``Z`` hold NaN (or infinity)."""
    bad = ~np.isfinite(Z).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(i) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(
            f"The network's output holds NaN or infinity {when}, for {len(rows)} of "
            f"{Z.shape[0]} items ({shown})."
        )


class DeepQuantizer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Deep Quantization Network: supervised deep product quantization.

    A torch network maps each input to an embedding ``z`` in ``[-1, 1]^R``
    (a backbone, then the bottleneck ``fcb``: Linear + tanh). It is trained
    so that the cosine between two embeddings matches their label similarity
    (``+1`` when the items share a label, ``-1`` otherwise), while staying
    close to its product quantization ``C h``: ``R`` splits into ``M``
    subspaces, each with its own codebook of ``K`` codewords, so an item is
    stored as ``M`` integers in ``[0, K)`` (``M * log2(K)`` bits). The
    objective ``L + lam * Q`` is minimised by alternating back-propagation
    (``C``, ``H`` fixed), the closed-form codebook update (``C``) and the
    nearest-codeword assignment (``H``), as in Cao et al. (AAAI 2016).

    Parameters
    ----------
    M : int, default=4
        Number of subspaces (codebooks).
    K : int, default=256
        Codewords per subspace; ``K = 256`` stores one byte per subspace, so
        ``M = 1..4`` gives the paper's 8 to 32 bits.
    n_components : int, default=None
        ``R``, the embedding dimension, divisible by ``M``. ``None`` uses 300
        (the authors' value) rounded up to a multiple of ``M``.
    lam : float, default=1e-4
        Weight of the quantization loss (the authors' value). It is 0 until
        the first codebook fit (after ``warmup_epochs``). Larger values lower
        the quantization error in absolute terms -- partly by shrinking the
        embeddings, which the cosine loss does not see -- at some cost in
        ranking quality; select it with
        :class:`~sklearn.model_selection.GridSearchCV` (``score`` is MAP).
    hidden_layer_sizes : tuple of int, default=(512,)
        Hidden layers of the default MLP backbone (ReLU). Ignored when
        ``network`` is given.
    dropout : float, default=0.2
        Dropout after each hidden layer of the default backbone.
    network : torch.nn.Module or callable, default=None
        A backbone to use instead of the MLP, for any input shape it accepts
        (e.g. a CNN over ``(n, channels, height, width)`` arrays); the fcb
        layer is added on top. Either a module instance, kept as given:
        ``fit`` trains a deep copy, never the module itself, starting from
        its weights (e.g. pretrained ones; ``random_state`` does not seed
        them, and ``clone`` stays safe); or a factory, a class or function
        that ``fit`` calls with no arguments (e.g. ``MyCNN`` or
        ``functools.partial(MyCNN, width=32)``): the module it returns is
        initialised under ``random_state``'s seed, so two fits with the same
        seed start from the same weights. Inputs reach a custom network as
        given: ``standardize`` applies to the default MLP only.
    standardize : bool, default=True
        Whether the default MLP standardizes its inputs: a per-feature mean
        and standard deviation learned by ``fit`` (a constant feature gets
        scale 1), stored in the network (saved, pickled and applied by
        ``transform``, ``encode`` and ``score``). The codes then do not
        depend on the scale of ``X``: standardized, ``[0, 1]`` and raw
        ``[0, 255]`` pixels give the same MAP (see the results page).
        ``False`` feeds the features as they are. Ignored when ``network``
        is given.
    backbone_lr_factor : float, default=1.0
        The backbone's learning rate is ``learning_rate *
        backbone_lr_factor``; the new ``fcb`` layer trains at
        ``learning_rate``. Below 1 fine-tunes a pretrained backbone gently
        (the paper trains the new layer ten times faster: ``0.1``); ``0``
        freezes it during ``fit`` (no gradient is computed for it; batch-norm
        statistics and dropout still run in training mode). Parameters of a
        given module with ``requires_grad=False`` are never trained.
    loss : {"auto", "pairwise", "proxy"}, default="auto"
        The label term of the objective (the quantization loss is added to
        either). ``"pairwise"``: the paper's loss on the pairs of each
        mini-batch (``pair_loss``, ``pair_weighting``). ``"proxy"``: one
        learned proxy vector per class, and a cross-entropy over the scaled
        cosines between each embedding and the proxies, with an additive
        margin on the item's own classes (NormFace / CosFace; multi-label
        items spread their target over their labels). ``"auto"``:
        ``"proxy"`` for single-label data with at least 20 classes,
        ``"pairwise"`` otherwise (fewer classes, or multi-label data), a rule
        measured in the user guide ("Objectives and many classes"). The
        objective used is ``loss_``.
    proxy_scale : float, default=8.0
        Inverse temperature of the proxy loss's softmax over cosines
        (chosen on a validation split of Fashion-MNIST pairs, 100 classes:
        5, 8, 11, 16 and 32 gave MAP 0.649, 0.663, 0.667, 0.635 and 0.579
        at margin 0.2).
    proxy_margin : float, default=0.05
        Cosine margin of the proxy loss: an item must be nearer its own
        class's proxy than the others' by this much (same split, scale 8:
        0, 0.05, 0.1, 0.2 and 0.35 gave 0.680, 0.680, 0.673, 0.663 and
        0.649).
    pair_loss : {"cosine", "inner_product"}, default="cosine"
        ``(s_ij - cos(z_i, z_j))^2`` as in the paper, or
        ``(s_ij - <z_i, z_j> / R)^2`` (the paper's "DQNip" ablation).
    pair_weighting : {"balanced", "uniform"}, default="balanced"
        How the pair loss of a mini-batch is normalised. ``"balanced"``:
        ``(mean over similar pairs + mean over dissimilar pairs) / 2``, over
        the ordered pairs ``i != j``, so the rare similar pairs (about one in
        ten with ten classes) weigh as much as the dissimilar ones.
        ``"uniform"``: the plain mean over all pairs, as in the authors'
        code. On a Fashion-MNIST validation split ``"balanced"`` scored about
        0.008 MAP higher at 8 and 32 bits (see the Notes).
    max_epochs : int, default=40
        Passes over the training data.
    batch_size : int, default=256
        Mini-batch size; the pair loss uses all pairs of a batch.
    predict_batch_size : int, default=None
        Items per batch when embedding: transform, encode, score and the
        codebook refreshes. None: 1024 rows for arrays, ``batch_size``
        items for a Dataset.
    learning_rate : float, default=5e-3
        Step size of the optimizer (the peak, with ``lr_schedule="cosine"``).
    lr_schedule : {"cosine", "constant"}, default="cosine"
        ``"cosine"`` anneals the learning rate from ``learning_rate`` to 0
        along a half cosine over ``max_epochs`` (updated every epoch);
        ``"constant"`` keeps it fixed.
    optimizer : {"adam", "sgd"}, default="adam"
        Adam, or SGD with ``momentum``.
    momentum : float, default=0.9
        Momentum of SGD; unused with Adam.
    weight_decay : float, default=1e-5
        L2 penalty of the optimizer.
    warmup_epochs : int, default=10
        Epochs trained on the pair loss alone before the first codebook fit
        (k-means++ then Lloyd iterations on the embeddings).
    codebook_update_every : int, default=2
        Epochs between two refreshes of the codebooks ``C`` (closed-form
        update) and codes ``H`` (nearest codeword) after the first fit.
    device : str or torch.device, default="auto"
        Where to train: ``"auto"`` uses CUDA when available, else the CPU.
    num_workers : int, default=0
        Worker processes loading the items when ``X`` is a
        :class:`torch.utils.data.Dataset` (see
        :class:`~torch.utils.data.DataLoader`); 0 loads them in the main
        process. Worth raising when items are read from disk or decoded.
        Ignored for arrays. Results do not depend on it (for a Dataset whose
        items do not depend on random draws).
    n_threads : int or None, default=1
        PyTorch's CPU threads (:func:`torch.set_num_threads`) while ``fit``,
        ``transform``, ``encode`` and ``score`` run; the previous setting is
        restored afterwards. One thread suits the default MLP and other
        small networks: on a busy 2-core machine a digits fit took 6-15 s on
        one thread and 93-155 s on two (see the user guide). ``-1`` uses
        every core (``os.cpu_count()``), worth it for a large CNN on an idle
        machine; None leaves torch's setting as it is. The setting is
        process-wide: estimators run concurrently in threads of one process
        should share one value (processes, as ``GridSearchCV(n_jobs=...)``
        uses, are independent).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation of the networks ``fit`` builds (the default
        MLP, the fcb layer, and the module a ``network`` factory returns),
        the mini-batch order, dropout and the k-means. It does not seed a
        ``network`` given as a module instance (its weights are used as
        they are), nor random draws made inside a Dataset's items. The same
        seed gives the same codes on the same machine (CPU; CUDA kernels
        may be non-deterministic).
    verbose : int, default=0
        ``1`` shows a progress bar over epochs with the current losses (on stderr;
        one plain line per epoch when stderr is not a terminal, e.g. a log file).

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained :class:`~skdqn.training._network.QuantizationNetwork`, in eval mode.
    codebooks_ : ndarray of shape (M, K, ``n_components_`` / M), float32
        The block-diagonal codebooks ``C``.
    codes_ : ndarray of shape (n_samples, M), uint8 or uint16
        Codes of the training set (the database used by :meth:`score`).
    n_components_ : int
        ``R``, the embedding dimension.
    classes_ : ndarray
        The class labels (1-D ``y``) or label column indices (multi-label).
    history_ : list of dict
        Per epoch: ``epoch``, ``pair_loss`` and ``proxy_loss`` (the one not
        trained is NaN), ``quantization_loss`` (NaN before the first
        codebook fit), ``loss`` (the label term ``+ lam *
        quantization_loss``), ``lam`` and ``seconds``.
    loss_ : {"pairwise", "proxy"}
        The objective that trained (``loss`` with ``"auto"`` resolved).
    n_iter_ : int
        Number of epochs run.
    device_ : torch.device
        The device the network lives on.
    n_features_in_ : int
        Number of features seen during :meth:`fit` (``X.shape[1]``; for a
        Dataset, ``x.shape[0]`` of its items).
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Feature names seen during :meth:`fit`, when ``X`` has string column names.

    See Also
    --------
    AQDNeighbors : Searches the codes by Asymmetric Quantizer Distance.

    Notes
    -----
    Loss normalisation: the pair loss is a mean over pairs, in ``[0, 4]``;
    the quantization loss is the squared residual summed over the ``R``
    dimensions and averaged over the batch (as in the authors' code).

    The defaults (learning rate, schedule, ``lam``, refresh interval, pair
    normalisation) were chosen on a validation split carved from the
    Fashion-MNIST training images (10,000 training items, 1,000 validation
    queries against the rest of the training set), never on a test set.

    ``X`` may be a :class:`torch.utils.data.Dataset` of ``(x, y)`` pairs
    for data that does not fit in memory (see :meth:`fit`). ``fit`` then
    reads every item once for the labels, once for the input statistics
    (``standardize``, default MLP only), once per epoch, and once per
    codebook fit or update (the embeddings, ``(n_samples, R)`` float32, are
    the only per-item data held besides the labels); a
    :class:`~torch.utils.data.TensorDataset` performs the same training
    steps as the arrays it holds.

    Training and embedding run on ``n_threads`` torch intra-op threads
    (1 by default: the default MLP's matrices are too small to gain from
    more, and extra threads wait for each other on a busy machine).

    A fitted model is saved by :meth:`save` and read by :meth:`load` without
    pickle (files safe to load from anyone). It also pickles: the default
    MLP as its weights (unpickled with ``torch.load(weights_only=True)``), a
    custom ``network`` as the module itself.

    A network that breaks is stopped with a ``ValueError``: an output holding
    NaN or infinity (in the first forward pass, or once training diverges,
    naming the epoch), or not one row per item. With a custom ``network``,
    inputs must have the item shape seen by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=2, K=16, max_epochs=3, warmup_epochs=1, random_state=0).fit(X / 16, y)
    >>> dq.encode(X[:3] / 16).shape
    (3, 2)
    >>> dq.transform(X[:3] / 16).shape
    (3, 300)

    The default network standardizes its inputs, so the scale of ``X`` does
    not matter:

    >>> raw = DeepQuantizer(M=2, K=16, max_epochs=3, warmup_epochs=1, random_state=0).fit(X, y)
    >>> bool((raw.encode(X[:50]) == dq.encode(X[:50] / 16)).all())
    True

    A custom backbone given as a factory (a class or a function) is built,
    and seeded, by ``fit``:

    >>> import torch
    >>> def backbone():
    ...     return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
    >>> a = DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, network=backbone, random_state=0).fit(X, y)
    >>> b = DeepQuantizer(M=2, K=16, max_epochs=2, warmup_epochs=1, network=backbone, random_state=0).fit(X, y)
    >>> bool((a.encode(X) == b.encode(X)).all())
    True
    """

    _parameter_constraints = {
        "M": [Interval(Integral, 1, None, closed="left")],
        "K": [Interval(Integral, 2, 2**16, closed="both")],
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "lam": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "network": [None, HasMethods(["forward", "parameters"]), callable],
        "standardize": ["boolean"],
        "backbone_lr_factor": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"auto", "pairwise", "proxy"})],
        "proxy_scale": [Interval(Real, 0, None, closed="neither")],
        "proxy_margin": [Interval(Real, 0, None, closed="left")],
        "pair_loss": [StrOptions({"cosine", "inner_product"})],
        "pair_weighting": [StrOptions({"uniform", "balanced"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "predict_batch_size": [None, Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        "optimizer": [StrOptions({"adam", "sgd"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "codebook_update_every": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "n_threads": [None, Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        M=4,
        K=256,
        *,
        n_components=None,
        lam=1e-4,
        hidden_layer_sizes=(512,),
        dropout=0.2,
        network=None,
        standardize=True,
        backbone_lr_factor=1.0,
        loss="auto",
        proxy_scale=8.0,
        proxy_margin=0.05,
        pair_loss="cosine",
        pair_weighting="balanced",
        max_epochs=40,
        batch_size=256,
        predict_batch_size=None,
        learning_rate=5e-3,
        lr_schedule="cosine",
        optimizer="adam",
        momentum=0.9,
        weight_decay=1e-5,
        warmup_epochs=10,
        codebook_update_every=2,
        device="auto",
        num_workers=0,
        n_threads=1,
        random_state=None,
        verbose=0,
    ):
        self.M = M
        self.K = K
        self.n_components = n_components
        self.lam = lam
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.network = network
        self.standardize = standardize
        self.backbone_lr_factor = backbone_lr_factor
        self.loss = loss
        self.proxy_scale = proxy_scale
        self.proxy_margin = proxy_margin
        self.pair_loss = pair_loss
        self.pair_weighting = pair_weighting
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.predict_batch_size = predict_batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.codebook_update_every = codebook_update_every
        self.device = device
        self.num_workers = num_workers
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32
        return tags

    # ------------------------------------------------------------ helpers
    def _resolve_n_components(self):
        if self.n_components is not None:
            R = self.n_components
            check_n_subspaces(R, self.M, what="n_components")
            return R
        return self.M * math.ceil(_DEFAULT_N_COMPONENTS / self.M)

    def _build_network(self, source, R):
        """The network for the items of ``source``, on the CPU.

        The backbone's first forward pass (eval mode, on up to two items)
        is checked: an error inside it is re-raised naming the input shape,
        and its output must hold one finite row per item. Called under
        torch's seed: a backbone built here (the default MLP, or one a
        ``network`` factory returns) and ``fcb`` are initialised by it.
        """
        sample = source.head(2)
        shape = (len(source),) + tuple(sample.shape[1:])
        standardizer = None
        if self.network is None:
            sizes = tuple(int(h) for h in np.atleast_1d(self.hidden_layer_sizes))
            if any(h < 1 for h in sizes):
                raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}.")
            backbone = build_mlp(shape[1], sizes, self.dropout)
            if self.standardize:
                mean, scale = input_statistics((batch.x for batch in source.chunks()), shape[1])
                standardizer = InputStandardizer(mean, scale).to(sample.device)
        else:
            backbone = _backbone_from(self.network)
        was_training = backbone.training
        backbone.eval()
        batch = sample[:2] if standardizer is None else standardizer(sample[:2])
        try:
            with torch.no_grad():
                out = backbone(batch.to(module_device(backbone)))
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"network could not process X of shape {shape}: its first forward pass, on a "
                f"batch of shape {tuple(batch.shape)}, raised {type(exc).__name__}: {exc}"
            ) from exc
        backbone.train(was_training)
        _check_first_output(out, batch)
        return QuantizationNetwork(backbone, int(torch.flatten(out, 1).shape[1]), R, standardizer)

    def _make_optimizer(self, net):
        """The optimizer, the backbone's learning rate scaled by ``backbone_lr_factor``.

        Two parameter groups: the backbone (``learning_rate *
        backbone_lr_factor``) and ``fcb`` (``learning_rate``). Backbone
        parameters with ``requires_grad=False`` are left out: those the user
        froze, and all of them with a factor of 0 (see :func:`_frozen_backbone`).
        """
        backbone = [p for p in net.backbone.parameters() if p.requires_grad]
        groups = [{"params": list(net.fcb.parameters()), "lr": self.learning_rate}]
        if backbone:
            groups.append({"params": backbone, "lr": self.learning_rate * self.backbone_lr_factor})
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.learning_rate, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            groups, lr=self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay
        )

    # --------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network and learn the codebooks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...), \
                or torch.utils.data.Dataset
            Training inputs; any shape the ``network`` accepts when one is
            given. Not modified. Or a map-style
            :class:`~torch.utils.data.Dataset` (``__len__`` and
            ``__getitem__``) of ``(x, y)`` pairs, for data that does not fit
            in memory: ``x`` an array or tensor of shape ``(n_features,)``
            (or any shape the ``network`` accepts, the same for every item),
            ``y`` a class label or a 1-D binary label indicator vector.
            Mini-batches are then read through a
            :class:`~torch.utils.data.DataLoader` (``num_workers``); the
            labels are read in one pass before training, and the inputs are
            checked batch by batch (same shape, no NaN or infinity). Only the
            labels and the ``(n_samples, n_components_)`` embeddings of the
            codebook updates are held in memory.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type, or a binary label indicator matrix
            (multi-label). Two items are similar when they share a label.
            Must be None when ``X`` is a Dataset (the labels are in its items).

        Returns
        -------
        self : DeepQuantizer
            The fitted estimator.

        Notes
        -----
        Every fitted attribute is set at the end, once training succeeded:
        a ``fit`` that raises leaves a previously fitted estimator as it
        was. A ``KeyboardInterrupt`` during the epochs is not a failure: the
        estimator is fitted with the network as it is then (with a warning),
        and ``history_`` holds the complete epochs.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> dq.codes_.shape, len(dq.history_)
        ((1797, 2), 2)

        From a Dataset of ``(x, y)`` pairs, here a
        :class:`~torch.utils.data.TensorDataset` (the same steps as the
        arrays it holds):

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y))
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(data)
        >>> dq.codes_.shape, dq.n_features_in_
        ((1797, 2), 64)
        """
        previous = {name: vars(self)[name] for name in _INPUT_ATTRIBUTES if name in vars(self)}
        try:
            with _torch_threads(self.n_threads):
                state, R = self._fit(X, y)
        except BaseException:
            for name in _INPUT_ATTRIBUTES:  # as validate_data found them
                vars(self).pop(name, None)
            vars(self).update(previous)
            raise
        self._set_fitted(state, R)
        return self

    def _fit(self, X, y):
        """Prepare the inputs and the network, train, and polish the codebooks.

        Sets no fitted attribute (but ``validate_data`` sets
        ``n_features_in_`` for arrays); returns the final training state and
        ``R``.
        """
        here = world()  # None unless a torch.distributed group of 2+ processes is initialised
        device = training_device(check_device(self.device), here)
        source, labels = training_source(self, X, y, device)
        R = self._resolve_n_components()
        if self.lam and not any(self._codebook_refresh_due(done) for done in range(1, self.max_epochs)):
            warnings.warn(
                f"No epoch trains the quantization loss with max_epochs={self.max_epochs} and "
                f"warmup_epochs={self.warmup_epochs}: the codebooks are first fitted after the warm-up "
                f"(then every codebook_update_every={self.codebook_update_every} epochs), so "
                f"lam={self.lam} has no effect. Set max_epochs above warmup_epochs (e.g. "
                "warmup_epochs=max_epochs // 4), or lam=0 to train without that loss.",
                UserWarning, stacklevel=4,  # the caller of fit (fit's _fit_context wrapper between)
            )
        classes = np.unique(labels) if labels.ndim == 1 else np.arange(labels.shape[1])
        check_agreement(
            here, labels, batch_size=self.batch_size, max_epochs=self.max_epochs,
            warmup_epochs=self.warmup_epochs, codebook_update_every=self.codebook_update_every,
        )
        rng = shared_random_state(check_random_state(self.random_state), here)
        torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        # The DataLoader's worker seeds (Datasets only), distinct on each rank.
        source.reseed(torch_seed if here is None else torch_seed + here.rank)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(torch_seed)
            net = self._build_network(source, R).to(device)
            with _frozen_backbone(net, self.backbone_lr_factor == 0):
                state = self._initial_state(net, source, labels, classes, rng, device, here)
                self._fit_loop(state)
            self._final_codebooks(state)
        return state, R

    def _initial_state(self, net, source, labels, classes, rng, device, where=None):
        """The training state before the first epoch: optimizer, schedule, batch-order generator.

        With the proxy loss, one proxy per class (normal draws under torch's
        seed), trained at ``learning_rate`` without weight decay (only their
        directions matter). Under a process group (``where``), the network
        is wrapped in ``DistributedDataParallel`` and ranks other than 0
        re-seed torch, so that their dropout masks differ from rank 0's.
        """
        loss = choose_loss(labels) if self.loss == "auto" else self.loss
        # The proxy loss trains directions: embed (and so quantize and search) on the unit sphere.
        net.normalize = loss == "proxy"
        optimizer = self._make_optimizer(net)
        proxies = None
        if loss == "proxy":
            n_classes = len(classes)
            proxies = torch.nn.Parameter(torch.randn(n_classes, net.fcb.out_features).to(device))
            optimizer.add_param_group({"params": [proxies], "lr": self.learning_rate, "weight_decay": 0.0})
        scheduler = None
        if self.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        model = wrap(net, device, where)
        if where is not None and where.rank:
            torch.manual_seed(torch.initial_seed() + where.rank)
        return _TrainingState(
            source=source, labels=labels, classes=classes, device=device, rng=rng,
            net=net, optimizer=optimizer, scheduler=scheduler, generator=generator,
            loss=loss, proxies=proxies, world=where, model=model,
        )

    def _fit_loop(self, state):
        """Run the epochs, refreshing the codebooks when due; Ctrl-C ends training early.

        Under a process group, only rank 0 shows progress, and Ctrl-C is
        re-raised (the ranks cannot agree on where training stopped).
        """
        show = self.verbose and is_main(state.world)
        progress = epoch_progress(self.max_epochs, type(self).__name__) if show else None
        try:
            for epoch in range(self.max_epochs):
                record = self._run_single_epoch(state, epoch)
                state.history.append(record)
                if progress is not None:
                    progress.update(record)
                if self._codebook_refresh_due(epoch + 1):
                    self._refresh_codebooks(state)
        except KeyboardInterrupt:
            if state.world is not None:
                raise
            warnings.warn(
                f"Training interrupted (KeyboardInterrupt) after {len(state.history)} complete "
                f"epoch(s) of {self.max_epochs}; the estimator is fitted with the network "
                "as it is now.",
                UserWarning,
                stacklevel=4,  # the frame that called fit, as before the ladder
            )
        finally:
            if progress is not None:
                progress.close()

    def _run_single_epoch(self, state, epoch):
        """One pass over the items in a fresh random order; returns the epoch's history record."""
        start = time.perf_counter()
        state.epoch = epoch
        quantizing = state.C_t is not None
        lam = self.lam if quantizing else 0.0
        state.net.train()
        n = len(state.source)
        perm = torch.randperm(n, generator=state.generator)
        index_batches = [perm[b : b + self.batch_size] for b in range(0, n, self.batch_size)]
        index_batches = [idx for idx in index_batches if idx.shape[0] >= 2]  # a pair loss needs a pair
        sums = np.zeros(2)
        n_batches = 0
        for batch in rank_batches(state.source, index_batches, state.world):
            s_loss, q_loss = self._train_step(state, batch, lam)
            if q_loss is not None:
                sums[1] += q_loss
            sums[0] += s_loss
            n_batches += 1
        if state.scheduler is not None:
            state.scheduler.step()
        s_mean = sums[0] / max(n_batches, 1)
        q_mean = sums[1] / max(n_batches, 1) if quantizing else float("nan")
        pairwise = state.loss == "pairwise"
        return {
            "epoch": epoch + 1,
            "pair_loss": s_mean if pairwise else float("nan"),
            "proxy_loss": float("nan") if pairwise else s_mean,
            "quantization_loss": q_mean,
            "loss": s_mean + (lam * q_mean if quantizing else 0.0),
            "lam": lam,
            "seconds": time.perf_counter() - start,
        }

    def _supervised_loss(self, state, z, Y_b):
        """The label term of the objective on one mini-batch: pairwise (the paper) or proxy."""
        if state.loss == "pairwise":
            return pairwise_loss(z, pair_similarity(Y_b), kind=self.pair_loss, weighting=self.pair_weighting)
        return proxy_loss(z, state.proxies, Y_b, scale=self.proxy_scale, margin=self.proxy_margin)

    def _train_step(self, state, batch, lam):
        """Forward, loss, backward and optimizer step on one mini-batch.

        The quantization loss (``C``, ``H`` fixed) is added once codebooks
        exist. Returns the supervised loss (pairwise or proxy) and the
        quantization loss (None before the first codebook fit) as floats.
        Under a process group, ``batch.index`` is the global batch and
        ``batch.x`` this rank's part of it: the losses are those of the
        global batch, on the embeddings gathered from every rank.
        """
        device = state.device
        idx = batch.index
        try:
            z = state.model(batch.x.to(device))
        except ValueError as exc:  # e.g. the wrong batch size (QuantizationNetwork.forward)
            raise ValueError(f"In epoch {state.epoch + 1}: {exc}") from exc
        if state.world is not None:
            z = gather_rows(z, state.world, split_counts(idx.shape[0], state.world.size))
        classes = state.classes if state.labels.ndim == 1 else None
        Y_b = torch.from_numpy(label_indicator(state.labels[idx.numpy()], classes))
        p_loss = self._supervised_loss(state, z, Y_b.to(device))
        loss = p_loss
        q_value = None
        if state.C_t is not None:
            q_loss = quantization_loss(z, state.C_t, state.H_t[idx.to(device)])
            loss = p_loss + lam * q_loss
            q_value = q_loss.item()
        p_value = p_loss.item()
        if not (math.isfinite(p_value) and (q_value is None or math.isfinite(q_value))):
            raise ValueError(
                f"Training diverged in epoch {state.epoch + 1} (mini-batch of items "
                f"{idx[:3].tolist()}...): the network's output holds NaN or infinity ({state.loss} loss "
                f"{p_value}, quantization loss {q_value}). Try a lower learning_rate, or check "
                "the network for operations that overflow."
            )
        state.optimizer.zero_grad()
        loss.backward()
        average_gradients([state.proxies], state.world)  # a parameter outside DDP's network
        state.optimizer.step()
        return p_value, q_value

    def _codebook_refresh_due(self, done):
        """Whether the codebooks are (re)fitted after ``done`` complete epochs.

        First after ``warmup_epochs``, then every ``codebook_update_every``
        epochs, never after the last epoch (:meth:`_final_codebooks` then
        takes over).
        """
        after_warmup = done - self.warmup_epochs
        return (
            after_warmup >= 0
            and after_warmup % self.codebook_update_every == 0
            and done < self.max_epochs
        )

    def _refresh_codebooks(self, state):
        """Refit ``C`` and ``H`` to the current embeddings of the training items.

        The first time: k-means (k-means++ then Lloyd iterations). Later: one
        alternation, the closed-form C-step (``H`` fixed), then the H-step
        (nearest codewords, ``C`` fixed).
        """
        Z = self._training_embeddings(state)
        _check_finite_embeddings(Z, f"after epoch {len(state.history)} (training diverged?)")
        if state.codebooks is None:
            codebooks = train_codebooks(Z, self.M, self.K, n_iter=_CODEBOOK_ITER, random_state=state.rng)
        else:
            codebooks, _ = update_codebooks(Z, state.codes, state.codebooks)
        state.set_codebooks(*broadcast_arrays([codebooks, encode(Z, codebooks)], state.world))

    @staticmethod
    def _training_embeddings(state):
        """The embeddings of all training items, for a codebook fit.

        Under a process group, rank 0's weights and buffers are copied to
        every rank first, each rank embeds its share of the items, and the
        shares are gathered: every rank fits its codebooks to the same ``Z``
        (rank 0's result is then broadcast, see :meth:`_refresh_codebooks`).
        """
        broadcast_module(state.net, state.world)
        return embed_all(state.net, state.source, state.world, embed)

    def _final_codebooks(self, state):
        """Final ``C`` and ``H``, consistent with the final network.

        k-means when no codebook was fitted yet; otherwise Lloyd iterations
        from the current codebooks (:func:`~skdqn._pq.refine_codebooks`).
        """
        Z = self._training_embeddings(state)
        _check_finite_embeddings(Z, f"after the last epoch ({len(state.history)}; training diverged?)")
        if state.codebooks is None:
            codebooks = train_codebooks(Z, self.M, self.K, n_iter=_CODEBOOK_ITER, random_state=state.rng)
            codes = encode(Z, codebooks)
        else:
            codes = encode(Z, state.codebooks)
            codebooks, codes = refine_codebooks(Z, state.codebooks, codes, n_iter=_CODEBOOK_ITER)
        state.codebooks, state.codes = broadcast_arrays([codebooks, codes], state.world)

    def _set_fitted(self, state, n_components):
        """Set every fitted attribute, from the final training state (the one place)."""
        n_features = dataset_n_features(state.source)
        if n_features is not None:  # arrays: validate_data set both
            self.n_features_in_ = n_features
            self.__dict__.pop("feature_names_in_", None)  # items of a Dataset have no column names
        self._input_shape = tuple(int(s) for s in state.source.head(2).shape[1:])
        self.classes_ = state.classes
        self.loss_ = state.loss
        self._fit_labels = state.labels
        self.n_components_ = n_components
        self.history_ = state.history
        self.n_iter_ = len(state.history)
        self.codebooks_ = state.codebooks
        self.codes_ = state.codes
        self.network_ = state.net.eval()  # the plain network, never the DDP wrapper (state.model)
        self.device_ = state.device

    # ---------------------------------------------------------- transform
    def transform(self, X):
        """Embed ``X``: the real-valued query side of AQD search.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...), \
                or torch.utils.data.Dataset
            Inputs; or a map-style :class:`~torch.utils.data.Dataset` whose
            items are ``(x, y)`` pairs, ``(x,)`` or ``x`` alone (labels are
            ignored), streamed in batches of ``batch_size``.

        Returns
        -------
        Z : ndarray of shape (n_samples, ``n_components_``), float32
            Embeddings in ``[-1, 1]``.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=1, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> dq.transform(X[:2]).shape
        (2, 8)
        """
        self._check_items(X)
        source = prediction_source(self, X)
        with _torch_threads(self.n_threads):
            Z = embed(self.network_, source)
        _check_finite_embeddings(Z, "for X")
        return Z

    def _check_items(self, X):
        """Raise a ValueError unless the items of ``X`` have the shape seen in ``fit``.

        For a custom ``network`` (any item shape): ``"expected items of shape
        (1, 8, 8), got (1, 16, 16)"``, before the network sees them. 1-D
        items of the default MLP are left to ``validate_data`` (its message
        speaks of features).
        """
        check_is_fitted(self)
        expected = getattr(self, "_input_shape", None)  # None: fitted by an older skdqn
        if expected is None or self.network is None:
            return
        got = _item_shape(X)
        if got is not None and got != tuple(expected):
            raise ValueError(f"X: expected items of shape {tuple(expected)}, got {got}.")

    def encode(self, X):
        """Product-quantization codes of ``X``: one codeword index per subspace.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, ...), \
                or torch.utils.data.Dataset
            Inputs; or a map-style :class:`~torch.utils.data.Dataset` whose
            items are ``(x, y)``, ``(x,)`` or ``x``, streamed in batches of
            ``batch_size`` (see :meth:`transform`).

        Returns
        -------
        codes : ndarray of shape (n_samples, M), uint8 (K <= 256) or uint16
            Index of the nearest codeword of each subspace of the embedding.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> dq.encode(X[:2]).dtype
        dtype('uint8')
        """
        return encode(self.transform(X), self.codebooks_)

    def decode(self, codes):
        """Reconstruct embeddings from codes: ``C h``.

        Parameters
        ----------
        codes : array-like of shape (n_samples, M), int
            Codeword indices in ``[0, K)``, e.g. from :meth:`encode`.

        Returns
        -------
        Z_hat : ndarray of shape (n_samples, ``n_components_``), float32
            The codewords of each subspace, concatenated (the reconstruction
            of the embedding).

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> dq.decode(dq.encode(X[:2])).shape
        (2, 8)
        """
        check_is_fitted(self)
        M, K, _ = self.codebooks_.shape
        return decode(check_codes(codes, M, K, copy=False), self.codebooks_)

    @property
    def _n_features_out(self):
        return self.n_components_

    # --------------------------------------------------------------- score
    def score(self, X, y=None, top_k=None, normalize="retrieved", no_relevant="zero", verbose=0):
        """Mean average precision of ``X`` as queries against the training set.

        The training set, stored as codes (``codes_``) with its labels, is the
        database; queries are embedded by :meth:`transform` and ranked by
        Asymmetric Quantizer Distance. An item is relevant when it shares a
        label with the query. Lets :class:`~sklearn.model_selection.GridSearchCV`
        select ``lam`` (or anything else) with no extra arguments.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features) or (n_queries, ...), \
                or torch.utils.data.Dataset
            Queries; or a map-style :class:`~torch.utils.data.Dataset` of
            ``(x, y)`` pairs, streamed in batches of ``batch_size`` (one pass
            reads both the inputs and the labels).
        y : array-like of shape (n_queries,) or (n_queries, n_labels)
            Their labels, in the layout used for :meth:`fit`. None when ``X``
            is a Dataset.
        top_k : int, default=None
            Rank depth (MAP@top_k); the whole database when None.
        normalize : {"retrieved", "all"}, default="retrieved"
            See :func:`skdqn.metrics.mean_average_precision`.
        no_relevant : {"zero", "skip"}, default="zero"
            A query with no relevant item in its top k counts as 0 (skdqn)
            or is left out of the mean (DeepHash code base); see
            :func:`skdqn.metrics.mean_average_precision`.
        verbose : int, default=0
            ``1`` reports the queries ranked so far on stderr (a bar on a
            terminal, a line per tenth of the queries in a log file), as
            :meth:`AQDNeighbors.score`.

        Returns
        -------
        score : float
            MAP in [0, 1].

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, max_epochs=3, warmup_epochs=1, random_state=0).fit(X[:1000], y[:1000])
        >>> 0.0 <= dq.score(X[1000:], y[1000:]) <= 1.0
        True
        """
        self._check_items(X)
        with _torch_threads(self.n_threads):
            Z, y = scoring_data(self, X, y)  # the queries' embeddings and labels
        _check_finite_embeddings(Z, "for X")
        queries = VectorQueries(Z, self.codebooks_, "sqeuclidean")
        return score_codes(
            queries, y, self.codes_, self._fit_labels, top_k=top_k, normalize=normalize,
            no_relevant=no_relevant, verbose=verbose,
        )

    # --------------------------------------------------------- persistence
    def save(self, path):
        """Write the fitted model to a directory or a single ``.npz`` file, without pickle.

        The parameters and the sizes go to a JSON header; the codebooks, the
        codes and labels of the training set, and the network's weights (a
        ``state_dict``, as the bytes :func:`torch.save` writes) to ``.npy``
        arrays, each with a checksum. :meth:`load` reads them back without
        unpickling anything, so a model file from someone else can be loaded
        safely (unlike a pickle). The new files are written beside the old
        ones and swapped in: an interrupted save leaves the old model intact.

        Parameters
        ----------
        path : str or path-like
            A name ending in ``.npz`` writes one file (an uncompressed ZIP
            archive); any other name a directory with ``header.json``,
            ``codebooks.npy``, ``codes.npy``, ``labels.npy``, ``classes.npy``
            and ``network.npy``. An existing directory is replaced whole
            only if it is a saved bundle or empty.

        Returns
        -------
        path : pathlib.Path

        Notes
        -----
        The default MLP is rebuilt from the header by :meth:`load`. A custom
        ``network`` is not stored as code: only its weights are, and
        :meth:`load` needs a module of the same architecture. A
        ``random_state`` given as a ``RandomState`` instance is stored as
        None; labels held as Python objects are stored as a numpy string or
        number array.

        Under an initialised ``torch.distributed`` group of several
        processes (a distributed ``fit``), only rank 0 writes: on the other
        ranks ``save`` writes nothing and returns the path, so every rank may
        call it (the model is the same on every rank) and no two processes
        write the same file. Rank 0 returns once the file is complete; other
        ranks that read it must wait for rank 0 (e.g.
        ``torch.distributed.barrier()`` after ``save``).

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> path = dq.save(os.path.join(tempfile.mkdtemp(), "model.npz"))
        >>> bool((DeepQuantizer.load(path).encode(X[:5]) == dq.encode(X[:5])).all())
        True
        """
        check_is_fitted(self)
        if not is_main(world()):
            return pathlib.Path(os.fspath(path))
        return save_model(self, path)

    @classmethod
    def load(cls, path, network=None):
        """Read a model written by :meth:`save`, never unpickling anything.

        Parameters
        ----------
        path : str or path-like
            The directory or ``.npz`` file given to :meth:`save`.
        network : torch.nn.Module or callable, default=None
            Needed for a model fitted with a custom ``network``: a module of
            the same architecture (e.g. a fresh instance of the same class),
            or a factory building one (e.g. the class, as given to ``fit``).
            It is not modified: a deep copy of the module, or the module the
            factory returns, receives the saved weights, and ``network``
            itself becomes the ``network`` parameter. Must be None
            for a model with the default MLP, which is rebuilt from the file.

        Returns
        -------
        dq : DeepQuantizer
            Fitted: ``transform``, ``encode``, ``decode`` and ``score`` give
            what the saved model gave, and it lends its codebooks to
            :class:`AQDNeighbors`. The network is on the device it was saved
            from when this machine has it, else on the CPU.

        Raises
        ------
        ValueError
            If the file is not an intact model written by skdqn (damaged or
            truncated, a header field of the wrong type or value, arrays that
            disagree with the header, a member replaced by a pickle); if a
            custom network is needed and not given; if the given network's
            weights do not have the saved names and shapes. The message names
            the file.

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, warmup_epochs=1, random_state=0).fit(X, y)
        >>> folder = dq.save(os.path.join(tempfile.mkdtemp(), "model"))
        >>> DeepQuantizer.load(folder).codes_.shape
        (1797, 2)
        """
        dq, scaler = cls._from_saved(read_model(path, network=network), network, path)
        if scaler is not None:
            raise ValueError(
                f"{path} holds a StandardScaler followed by a DeepQuantizer (a model written by "
                "'skdqn fit'); read it with skdqn.cli.load_model, which returns the Pipeline."
            )
        return dq

    @classmethod
    def _from_saved(cls, parts, network, path):
        """``(dq, scaler)``: a fitted estimator built from a saved model's validated parts.

        ``parts`` from :func:`skdqn.io._model_io.read_model`; ``network`` is the
        one given to :meth:`load` (it becomes the ``network`` parameter of a
        model with a custom backbone). The one place a loaded model's state
        is written.
        """
        fields = parts.fields
        dq = make_estimator(cls, parts.params, path)
        codebooks, codes, labels, classes = check_quantization(parts, dq, path)
        if fields["network_param"]:
            dq.network = network
        dq.n_features_in_ = fields["n_features_in"]
        if fields["feature_names_in"] is not None:
            dq.feature_names_in_ = np.array(fields["feature_names_in"], dtype=object)
        dq._input_shape = fields["input_shape"]
        dq.classes_, dq._fit_labels = classes, labels
        dq.loss_ = fields["loss"]
        dq.n_components_, dq.codebooks_, dq.codes_ = fields["n_components"], codebooks, codes
        dq.history_ = [dict(record) for record in fields["history"]]
        dq.n_iter_ = fields["n_iter"]
        dq.network_, dq.device_ = parts.network, parts.device
        return dq, parts.scaler

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        """The state to pickle: the network as its weights (default MLP) or as a module.

        The default MLP is stored as its architecture and the bytes of its
        ``state_dict``, unpickled with ``torch.load(weights_only=True)``. A
        custom network is stored whole (``torch.save`` of the module), so it
        comes back as the user's class with all its attributes; unpickling
        it runs that class's code, as unpickling anything does.
        """
        state = dict(super().__getstate__())  # a copy: never alter the live estimator
        net = state.get("network_")
        if net is not None:
            description = describe_network(net)
            if description["kind"] == "mlp":
                state["network_"] = {"architecture": description, "state_dict": network_bytes(net)}
            else:
                buffer = io.BytesIO()
                torch.save(net, buffer)
                state["network_"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        state = dict(state)
        # Pickles of older versions: their networks did not standardize.
        state.setdefault("standardize", False)
        state.setdefault("backbone_lr_factor", 1.0)
        state.setdefault("n_threads", None)  # older versions left torch's threads alone
        state.setdefault("loss", "pairwise")  # before the proxy loss: the paper's loss
        if "codebooks_" in state:
            state.setdefault("loss_", "pairwise")
        net = state.get("network_")
        if isinstance(net, (bytes, dict)):
            device = torch.device(state.get("device_", "cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            if isinstance(net, dict):  # the default MLP: weights only
                module = rebuild_network(net["architecture"])
                module.load_state_dict(load_weights(net["state_dict"], device, "the pickled network"))
                state["network_"] = module.to(device).eval()
            else:  # a custom module, pickled whole
                state["network_"] = torch.load(io.BytesIO(net), map_location=device, weights_only=False)
            state["device_"] = device
        super().__setstate__(state)
