"""DeepQuantizer: the Deep Quantization Network (DQN) as a scikit-learn estimator."""

import copy
import io
import math
import time
import warnings
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
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._data import ArrayBatches, DatasetBatches, concatenate_labels, is_dataset
from ._labels import check_labels, label_indicator
from ._losses import pair_similarity, pairwise_loss, quantization_loss
from ._network import QuantizationNetwork, build_mlp
from ._pq import code_dtype, decode, encode, train_codebooks, update_codebooks
from ._search import distance_tables, retrieval_average_precisions
from ._validation import check_n_subspaces

__all__ = ["DeepQuantizer"]

_DEFAULT_N_COMPONENTS = 300  # the authors' R; divisible by M = 1, 2, 3, 4
_INFERENCE_BATCH = 1024
# Lloyd iterations of the first codebook fit and of the final polish. Few are
# needed: every refresh in between is one more C-step / H-step alternation.
_CODEBOOK_ITER = 10


def _resolve_device(device):
    """torch.device for the ``device`` parameter, with a clear error if unusable."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; use device='auto' "
            "(CUDA when present, else CPU) or device='cpu'."
        )
    return resolved


def _module_device(module):
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


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
    network : torch.nn.Module, default=None
        A backbone to use instead of the MLP, for any input shape it accepts
        (e.g. a CNN over ``(n, channels, height, width)`` arrays). The fcb
        layer is added on top. The module given here is never trained in
        place: ``fit`` trains a deep copy (so a pretrained backbone keeps its
        weights as starting point, and ``clone`` stays safe).
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
    random_state : int, RandomState instance or None, default=None
        Seeds the network's initialisation, the mini-batch order, dropout and
        the k-means. The same seed gives the same codes on the same machine
        (CPU; CUDA kernels may be non-deterministic).
    verbose : int, default=0
        ``1`` shows a progress bar over epochs with the current losses.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained :class:`~skdqn._network.QuantizationNetwork`, in eval mode.
    codebooks_ : ndarray of shape (M, K, ``n_components_`` / M), float32
        The block-diagonal codebooks ``C``.
    codes_ : ndarray of shape (n_samples, M), uint8 or uint16
        Codes of the training set (the database used by :meth:`score`).
    n_components_ : int
        ``R``, the embedding dimension.
    classes_ : ndarray
        The class labels (1-D ``y``) or label column indices (multi-label).
    history_ : list of dict
        Per epoch: ``epoch``, ``pair_loss``, ``quantization_loss`` (NaN before
        the first codebook fit), ``loss`` (``pair_loss + lam *
        quantization_loss``), ``lam`` and ``seconds``.
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
    reads every item once for the labels, once per epoch, and once per
    codebook fit or update (the embeddings, ``(n_samples, R)`` float32, are
    the only per-item data held besides the labels); a
    :class:`~torch.utils.data.TensorDataset` performs the same training
    steps as the arrays it holds.

    Training uses torch's intra-op threads (all cores by default). The
    default MLP's matrices are small: on a busy machine
    ``torch.set_num_threads(1)`` can make ``fit`` several times faster.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skdqn import DeepQuantizer
    >>> X, y = load_digits(return_X_y=True)
    >>> dq = DeepQuantizer(M=2, K=16, max_epochs=3, random_state=0).fit(X / 16, y)
    >>> dq.encode(X[:3] / 16).shape
    (3, 2)
    >>> dq.transform(X[:3] / 16).shape
    (3, 300)
    """

    _parameter_constraints = {
        "M": [Interval(Integral, 1, None, closed="left")],
        "K": [Interval(Integral, 2, 2**16, closed="both")],
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "lam": [Interval(Real, 0, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "network": [None, HasMethods(["forward", "parameters"])],
        "pair_loss": [StrOptions({"cosine", "inner_product"})],
        "pair_weighting": [StrOptions({"uniform", "balanced"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "lr_schedule": [StrOptions({"constant", "cosine"})],
        "optimizer": [StrOptions({"adam", "sgd"})],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
        "codebook_update_every": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
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
        pair_loss="cosine",
        pair_weighting="balanced",
        max_epochs=40,
        batch_size=256,
        learning_rate=5e-3,
        lr_schedule="cosine",
        optimizer="adam",
        momentum=0.9,
        weight_decay=1e-5,
        warmup_epochs=10,
        codebook_update_every=2,
        device="auto",
        num_workers=0,
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
        self.pair_loss = pair_loss
        self.pair_weighting = pair_weighting
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.codebook_update_every = codebook_update_every
        self.device = device
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]  # embeddings are float32
        return tags

    # ------------------------------------------------------------ helpers
    def _validate_X(self, X, reset):
        allow_nd = self.network is not None
        return validate_data(
            self, X, reset=reset, dtype=np.float32, allow_nd=allow_nd, ensure_min_samples=1
        )

    def _resolve_n_components(self):
        if self.n_components is not None:
            R = self.n_components
            check_n_subspaces(R, self.M, what="n_components")
            return R
        return self.M * math.ceil(_DEFAULT_N_COMPONENTS / self.M)

    def _build_network(self, sample, n_samples, R):
        """The network for inputs like ``sample`` (a batch of the first items)."""
        shape = (n_samples,) + tuple(sample.shape[1:])
        if self.network is None:
            sizes = tuple(int(h) for h in np.atleast_1d(self.hidden_layer_sizes))
            if any(h < 1 for h in sizes):
                raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}.")
            backbone = build_mlp(shape[1], sizes, self.dropout)
            n_out = sizes[-1] if sizes else shape[1]
        else:
            backbone = copy.deepcopy(self.network)
            backbone.eval()
            try:
                with torch.no_grad():
                    out = backbone(sample[:2].to(_module_device(backbone)))
            except Exception as exc:  # noqa: BLE001 - re-raised with context
                raise ValueError(
                    f"network could not process X of shape {shape} (a batch of 2 "
                    f"was tried): {type(exc).__name__}: {exc}"
                ) from exc
            n_out = int(torch.flatten(out, 1).shape[1])
        return QuantizationNetwork(backbone, n_out, R)

    def _make_optimizer(self, params):
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.learning_rate, weight_decay=self.weight_decay)
        return torch.optim.SGD(
            params, lr=self.learning_rate, momentum=self.momentum, weight_decay=self.weight_decay
        )

    @staticmethod
    def _embed(net, source, with_labels=False):
        """Embeddings of all items of a batch source, in eval mode (no dropout).

        Streams ``source.chunks()``: only the ``(n, R)`` float32 result (and,
        with ``with_labels``, the labels) is held, never all the inputs.
        """
        was_training = net.training
        net.eval()
        device = _module_device(net)
        Z = np.empty((len(source), net.fcb.out_features), dtype=np.float32)
        labels = []
        start = 0
        with torch.no_grad():
            for batch in source.chunks(with_labels=with_labels):
                stop = start + batch.x.shape[0]
                Z[start:stop] = net(batch.x.to(device)).cpu().numpy()
                labels.append(batch.y)
                start = stop
        net.train(was_training)
        if with_labels:
            return Z, concatenate_labels(labels)
        return Z

    def _check_item_shape(self, item_shape, reset):
        """Check the shape of one x of a Dataset, as validate_data does for arrays."""
        if len(item_shape) == 0:
            raise ValueError(
                "Each x of the Dataset must be an array of shape (n_features,) (or any shape "
                "the network accepts); got scalars."
            )
        if self.network is None and len(item_shape) != 1:
            raise ValueError(
                f"Each x of the Dataset must be 1-D, of shape (n_features,), for the default "
                f"MLP backbone; got x of shape {item_shape}. Give a network (e.g. a CNN) for "
                "other input shapes."
            )
        if reset:
            self.n_features_in_ = int(item_shape[0])
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif item_shape[0] != self.n_features_in_:
            raise ValueError(
                f"X has {item_shape[0]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _dataset_source(self, dataset, *, require_pair, device):
        return DatasetBatches(
            dataset,
            self.batch_size,
            require_pair=require_pair,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
        )

    def _fit_dataset(self, dataset, device):
        """Batch source and labels (one pass over the items) for ``fit`` on a Dataset."""
        source = self._dataset_source(dataset, require_pair=True, device=device)
        n_samples = len(source)
        if n_samples < self.K:
            raise ValueError(
                f"{type(self).__name__} needs n_samples >= K to learn K={self.K} codewords "
                f"per subspace; got n_samples={n_samples}. Lower K or train on more samples."
            )
        source.head(2)  # early errors: item structure, conversion, shape
        self._check_item_shape(source.item_shape, reset=True)
        # One pass reads the labels and checks every x (shape, NaN), so bad data
        # fails before any training. A Dataset may speed up all passes by
        # defining __getitems__(indices) (one read per batch).
        with torch.random.fork_rng(devices=[]):  # leave the global RNG alone
            labels = concatenate_labels([batch.y for batch in source.chunks(with_labels=True)])
        return source, check_labels(labels, allow_single_class=False)

    def _predict_source(self, X, *, require_pair=False):
        """Batch source for transform/encode/score: a Dataset, or a validated array."""
        if not is_dataset(X):
            X = self._validate_X(X, reset=False)
            return ArrayBatches(torch.from_numpy(X), _INFERENCE_BATCH)
        source = self._dataset_source(X, require_pair=require_pair, device=self.device_)
        if len(source) == 0:
            raise ValueError("X is an empty Dataset: at least one item is required.")
        source.head(1)
        self._check_item_shape(source.item_shape, reset=False)
        return source

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

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, random_state=0).fit(X, y)
        >>> dq.codes_.shape, len(dq.history_)
        ((1797, 2), 2)

        From a Dataset of ``(x, y)`` pairs, here a
        :class:`~torch.utils.data.TensorDataset` (the same steps as the
        arrays it holds):

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y))
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, random_state=0).fit(data)
        >>> dq.codes_.shape, dq.n_features_in_
        ((1797, 2), 64)
        """
        device = None
        if is_dataset(X):
            if y is not None:
                raise ValueError(
                    "X is a torch Dataset, whose items are (x, y) pairs: y must be None, got "
                    f"{type(y).__name__}. Put the labels in the Dataset's items."
                )
            device = _resolve_device(self.device)
            source, labels = self._fit_dataset(X, device)
        else:
            X = self._validate_X(X, reset=True)
            if y is None:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y is None: "
                    "the labels define which items are similar."
                )
            n_samples = X.shape[0]
            if n_samples < self.K:
                raise ValueError(
                    f"{type(self).__name__} needs n_samples >= K to learn K={self.K} codewords "
                    f"per subspace; got n_samples={n_samples}. Lower K or train on more samples."
                )
            labels = check_labels(y, allow_single_class=False)
            if labels.shape[0] != n_samples:
                raise ValueError(f"y has {labels.shape[0]} entries but X has n_samples={n_samples}.")
            source = ArrayBatches(torch.from_numpy(X), _INFERENCE_BATCH)
        R = self._resolve_n_components()
        if labels.ndim == 1:
            self.classes_ = np.unique(labels)
        else:
            self.classes_ = np.arange(labels.shape[1])
        self._fit_labels = labels
        self.n_components_ = R

        rng = check_random_state(self.random_state)
        torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        if device is None:
            device = _resolve_device(self.device)
        cuda_devices = [device.index or 0] if device.type == "cuda" else []
        source.reseed(torch_seed)  # the DataLoader's worker seeds (Datasets only)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(torch_seed)
            net = self._build_network(source.head(2), len(source), R).to(device)
            self._train(net, source, labels, rng, device)
        self.network_ = net.eval()
        self.device_ = device
        return self

    def _train(self, net, source, labels, rng, device):
        """Mini-batch training from a batch source (see :mod:`skdqn._data`)."""
        n = len(source)
        classes = self.classes_ if labels.ndim == 1 else None
        optimizer = self._make_optimizer(net.parameters())
        scheduler = None
        if self.lr_schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        codebooks = codes = None  # C and H, numpy
        C_t = H_t = None  # their torch copies on the device
        self.history_ = []
        self.n_iter_ = 0

        def refresh(first_fit):
            nonlocal codebooks, codes, C_t, H_t
            Z = self._embed(net, source)
            if first_fit:
                codebooks = train_codebooks(Z, self.M, self.K, n_iter=_CODEBOOK_ITER, random_state=rng)
                codes = encode(Z, codebooks)
            else:  # one alternation: C-step (H fixed), then H-step (C fixed)
                codebooks, _ = update_codebooks(Z, codes, codebooks)
                codes = encode(Z, codebooks)
            C_t = torch.from_numpy(codebooks).to(device)
            H_t = torch.from_numpy(codes.astype(np.int64)).to(device)

        epochs = range(self.max_epochs)
        if self.verbose:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        try:
            for epoch in epochs:
                start = time.perf_counter()
                lam = self.lam if C_t is not None else 0.0
                net.train()
                perm = torch.randperm(n, generator=generator)
                sums = np.zeros(2)
                n_batches = 0
                index_batches = [perm[b : b + self.batch_size] for b in range(0, n, self.batch_size)]
                index_batches = [idx for idx in index_batches if idx.shape[0] >= 2]  # a pair loss needs a pair
                for batch in source.batches(index_batches):
                    idx = batch.index
                    z = net(batch.x.to(device))
                    Y_b = torch.from_numpy(label_indicator(labels[idx.numpy()], classes))
                    p_loss = pairwise_loss(
                        z,
                        pair_similarity(Y_b.to(device)),
                        kind=self.pair_loss,
                        weighting=self.pair_weighting,
                    )
                    loss = p_loss
                    if C_t is not None:
                        q_loss = quantization_loss(z, C_t, H_t[idx.to(device)])
                        loss = p_loss + lam * q_loss
                        sums[1] += q_loss.item()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    sums[0] += p_loss.item()
                    n_batches += 1
                if scheduler is not None:
                    scheduler.step()
                p_mean = sums[0] / max(n_batches, 1)
                q_mean = sums[1] / max(n_batches, 1) if C_t is not None else float("nan")
                self.history_.append(
                    {
                        "epoch": epoch + 1,
                        "pair_loss": p_mean,
                        "quantization_loss": q_mean,
                        "loss": p_mean + (lam * q_mean if C_t is not None else 0.0),
                        "lam": lam,
                        "seconds": time.perf_counter() - start,
                    }
                )
                self.n_iter_ = epoch + 1
                if self.verbose:
                    epochs.set_postfix(pair=f"{p_mean:.4f}", quant=f"{q_mean:.4f}")
                done = epoch + 1
                if done >= self.warmup_epochs and (done - self.warmup_epochs) % self.codebook_update_every == 0:
                    if done < self.max_epochs:
                        refresh(first_fit=C_t is None)
        except KeyboardInterrupt:
            warnings.warn(
                f"Training interrupted (KeyboardInterrupt) after {self.n_iter_} complete "
                f"epoch(s) of {self.max_epochs}; the estimator is fitted with the network "
                "as it is now.",
                UserWarning,
                stacklevel=3,
            )
        finally:
            if self.verbose:
                epochs.close()

        # Final codebooks and codes, consistent with the final network.
        Z = self._embed(net, source)
        if codebooks is None:
            codebooks = train_codebooks(Z, self.M, self.K, n_iter=_CODEBOOK_ITER, random_state=rng)
            codes = encode(Z, codebooks)
        else:
            codes = encode(Z, codebooks)
            for _ in range(_CODEBOOK_ITER):
                codebooks, _ = update_codebooks(Z, codes, codebooks)
                new_codes = encode(Z, codebooks)
                if np.array_equal(new_codes, codes):
                    break
                codes = new_codes
        self.codebooks_ = codebooks
        self.codes_ = codes

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
        >>> dq = DeepQuantizer(M=1, K=16, n_components=8, max_epochs=2, random_state=0).fit(X, y)
        >>> dq.transform(X[:2]).shape
        (2, 8)
        """
        check_is_fitted(self)
        return self._embed(self.network_, self._predict_source(X))

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
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, random_state=0).fit(X, y)
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
        >>> dq = DeepQuantizer(M=2, K=16, n_components=8, max_epochs=2, random_state=0).fit(X, y)
        >>> dq.decode(dq.encode(X[:2])).shape
        (2, 8)
        """
        check_is_fitted(self)
        M, K, _ = self.codebooks_.shape
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != M:
            raise ValueError(f"codes must have shape (n_samples, M={M}); got shape {codes.shape}.")
        if codes.dtype.kind not in "iu":
            raise TypeError(f"codes must be integers; got dtype {codes.dtype}.")
        if codes.size and (codes.min() < 0 or codes.max() >= K):
            raise ValueError(f"codes must lie in [0, K={K}); got values in [{codes.min()}, {codes.max()}].")
        return decode(codes.astype(code_dtype(K), copy=False), self.codebooks_)

    @property
    def _n_features_out(self):
        return self.n_components_

    # --------------------------------------------------------------- score
    def score(self, X, y=None, top_k=None, normalize="retrieved"):
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

        Returns
        -------
        score : float
            MAP in [0, 1].

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from skdqn import DeepQuantizer
        >>> X, y = load_digits(return_X_y=True)
        >>> dq = DeepQuantizer(M=2, K=16, max_epochs=3, random_state=0).fit(X[:1000], y[:1000])
        >>> 0.0 <= dq.score(X[1000:], y[1000:]) <= 1.0
        True
        """
        if is_dataset(X):
            if y is not None:
                raise ValueError(
                    "X is a torch Dataset, whose items are (x, y) pairs: y must be None, got "
                    f"{type(y).__name__}."
                )
            check_is_fitted(self)
            Z, y = self._embed(self.network_, self._predict_source(X, require_pair=True), with_labels=True)
        else:
            Z = self.transform(X)
        y = check_labels(y)
        if len(y) != Z.shape[0]:
            raise ValueError(f"y has {len(y)} entries but X has n_samples={Z.shape[0]}.")
        tables = distance_tables(Z, self.codebooks_, "sqeuclidean")
        ap = retrieval_average_precisions(
            tables, self.codes_, y, self._fit_labels, top_k=top_k, normalize=normalize
        )
        return float(ap.mean())

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: never alter the live estimator
        net = state.get("network_")
        if net is not None:
            buffer = io.BytesIO()
            torch.save(net, buffer)
            state["network_"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        net = state.get("network_")
        if isinstance(net, bytes):
            device = torch.device(state.get("device_", "cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            state["network_"] = torch.load(io.BytesIO(net), map_location=device, weights_only=False)
            state["device_"] = device
        super().__setstate__(state)
