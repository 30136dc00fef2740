"""The DQN network: a backbone followed by the bottleneck layer ``fcb`` (Linear + tanh)."""

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "build_mlp",
    "InputStandardizer",
    "input_statistics",
    "QuantizationNetwork",
    "module_device",
    "is_network_factory",
    "describe_network",
    "rebuild_network",
]


def build_mlp(n_features, hidden_layer_sizes, dropout=0.0):
    """A ReLU multi-layer perceptron, the default backbone.

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_layer_sizes : sequence of int
        Width of each hidden layer; empty for no hidden layer (the bottleneck
        then acts on the inputs directly).
    dropout : float, default=0.0
        Dropout probability after each hidden layer.

    Returns
    -------
    backbone : torch.nn.Sequential
        Maps ``(B, n_features)`` to ``(B, hidden_layer_sizes[-1])`` (or the
        identity when there is no hidden layer).

    Examples
    --------
    >>> from skdqn.training._network import build_mlp
    >>> build_mlp(64, (32,), dropout=0.1)
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Dropout(p=0.1, inplace=False)
    )
    """
    layers = []
    n_in = n_features
    for width in hidden_layer_sizes:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    return nn.Sequential(*layers)


class InputStandardizer(nn.Module):
    """Per-feature standardization ``(x - mean) / scale``, the statistics held as buffers.

    The buffers belong to the ``state_dict`` (saved, pickled and moved with
    the network) but are no parameters: the optimizer never changes them.

    Parameters
    ----------
    mean : torch.Tensor of shape (n_features,)
        The per-feature mean.
    scale : torch.Tensor of shape (n_features,)
        The per-feature standard deviation, positive (1 for a constant
        feature, see :func:`input_statistics`).

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._network import InputStandardizer
    >>> InputStandardizer(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]))(torch.tensor([[3.0, 5.0]]))
    tensor([[1., 5.]])
    """

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())

    def forward(self, x):
        """Standardize a batch ``(B, n_features)``."""
        return (x - self.mean) / self.scale

    def extra_repr(self):
        return f"n_features={self.mean.shape[0]}"


def input_statistics(chunks, n_features):
    """Per-feature mean and scale (standard deviation) of the inputs, in float64.

    Sums are taken around the first chunk's mean, so that features far from
    zero (raw pixels in ``[0, 255]``) lose no precision. A feature whose
    standard deviation is below ``1e-8 * max(1, |mean|)`` (constant, up to
    rounding) gets scale 1, so that it is centred and never divided by 0.

    Parameters
    ----------
    chunks : iterable of torch.Tensor of shape (B, n_features)
        The inputs, in any number of batches (streamed: one at a time).
    n_features : int
        Width of each batch.

    Returns
    -------
    mean, scale : torch.Tensor of shape (n_features,), float32

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._network import input_statistics
    >>> mean, scale = input_statistics([torch.tensor([[0.0, 5.0], [2.0, 5.0]])], 2)
    >>> mean.tolist(), scale.tolist()
    ([1.0, 5.0], [1.0, 1.0])
    """
    shift = None
    n, total, squares = 0, torch.zeros(n_features, dtype=torch.float64), torch.zeros(n_features, dtype=torch.float64)
    for x in chunks:
        x = x.detach().to("cpu", torch.float64).reshape(x.shape[0], n_features)
        if shift is None:
            shift = x.mean(0)
        x = x - shift
        n += x.shape[0]
        total += x.sum(0)
        squares += (x * x).sum(0)
    mean_shifted = total / max(n, 1)
    var = (squares / max(n, 1) - mean_shifted**2).clamp_min(0)
    mean = mean_shifted + (shift if shift is not None else 0)
    scale = var.sqrt()
    scale = torch.where(scale < 1e-8 * mean.abs().clamp_min(1), torch.ones_like(scale), scale)
    return mean.float(), scale.float()


class QuantizationNetwork(nn.Module):
    """Backbone, flatten, then ``fcb``: ``z = tanh(W f(x) + b)`` in ``[-1, 1]^R`` (or its direction).

    Parameters
    ----------
    backbone : torch.nn.Module
        Any module mapping a batch of inputs to features (flattened if not 2-D).
    n_backbone_features : int
        Number of features the backbone outputs per item (after flattening).
    n_components : int
        ``R``, the dimension of the embedding.
    standardizer : InputStandardizer, default=None
        Applied to the inputs before the backbone (the default MLP's
        ``standardize=True``); None feeds them as they are. Registered
        only when given, so that a network without it has the
        ``state_dict`` keys of older versions.
    normalize : bool, default=False
        Divide ``z`` by its Euclidean norm: the embeddings lie on the unit
        sphere, so that Euclidean distances (AQD) rank as cosines do (the
        geometry the proxy loss trains).

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._network import QuantizationNetwork, build_mlp
    >>> net = QuantizationNetwork(build_mlp(8, (16,)), 16, 4)
    >>> net(torch.zeros(2, 8)).shape
    torch.Size([2, 4])
    """

    normalize = False  # networks pickled before the attribute existed did not normalize

    def __init__(self, backbone, n_backbone_features, n_components, standardizer=None, normalize=False):
        super().__init__()
        self.normalize = bool(normalize)
        if standardizer is not None:
            self.standardizer = standardizer
        self.backbone = backbone
        self.fcb = nn.Linear(n_backbone_features, n_components)

    @property
    def standardizes(self):
        """Whether the inputs are standardized before the backbone."""
        return "standardizer" in self._modules

    def forward(self, x):
        """Embed a batch: ``(B, ...)`` -> ``(B, n_components)``.

        Raises a ``ValueError`` when the backbone's output is not one row of
        ``n_backbone_features`` per item of the batch.
        """
        if self.standardizes:
            x = self.standardizer(x)
        features = self.backbone(x)
        if features.ndim == 0 or features.shape[0] != x.shape[0]:
            raise ValueError(
                f"the network returned an output of shape {tuple(features.shape)} for a batch "
                f"of {x.shape[0]} items of shape {tuple(x.shape[1:])}; its first dimension "
                "must be the batch (one row per item)."
            )
        features = torch.flatten(features, 1)
        if features.shape[1] != self.fcb.in_features:
            raise ValueError(
                f"the network returned {features.shape[1]} features per item for a batch of "
                f"shape {tuple(x.shape)}, but {self.fcb.in_features} when it was built "
                "(inputs of another shape?)."
            )
        z = torch.tanh(self.fcb(features))
        return F.normalize(z, dim=1, eps=1e-12) if self.normalize else z


def is_network_factory(network):
    """Whether ``network`` builds a backbone when called, rather than being one.

    A class, or any callable without ``forward`` and ``parameters`` methods
    (a function, a :func:`functools.partial`), is a factory; a
    :class:`torch.nn.Module` instance is not.

    Parameters
    ----------
    network : object
        The ``network`` parameter of :class:`~skdqn.DeepQuantizer`.

    Returns
    -------
    is_factory : bool

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._network import is_network_factory
    >>> is_network_factory(torch.nn.ReLU), is_network_factory(torch.nn.ReLU())
    (True, False)
    """
    if isinstance(network, type):
        return True
    is_module_like = all(callable(getattr(network, name, None)) for name in ("forward", "parameters"))
    return callable(network) and not is_module_like


def module_device(module):
    """The device of a module's first parameter (the CPU when it has none).

    Parameters
    ----------
    module : torch.nn.Module
        Any module.

    Returns
    -------
    device : torch.device

    Examples
    --------
    >>> import torch
    >>> from skdqn.training._network import module_device
    >>> module_device(torch.nn.Linear(2, 3)), module_device(torch.nn.ReLU())
    (device(type='cpu'), device(type='cpu'))
    """
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def _mlp_layers(backbone):
    """``(n_features, hidden_layer_sizes, dropout)`` of a :func:`build_mlp` backbone, or None.

    Only a backbone that :func:`build_mlp` would build again, module for
    module, qualifies (so that its ``state_dict`` keys match).
    """
    if type(backbone) is not nn.Sequential:
        return None
    layers = list(backbone)
    sizes, n_features, dropouts, i = [], None, [], 0
    while i < len(layers):
        linear = layers[i]
        if type(linear) is not nn.Linear or linear.bias is None or i + 1 >= len(layers):
            return None
        if type(layers[i + 1]) is not nn.ReLU or (sizes and linear.in_features != sizes[-1]):
            return None
        n_features = linear.in_features if n_features is None else n_features
        sizes.append(linear.out_features)
        i += 2
        has_dropout = i < len(layers) and type(layers[i]) is nn.Dropout
        dropouts.append(layers[i].p if has_dropout else 0.0)
        i += has_dropout
    if len(set(dropouts)) > 1 or (dropouts and dropouts[0] == 0.0 and len(layers) != 2 * len(sizes)):
        return None  # build_mlp puts the same Dropout (p > 0) after every layer, or none
    return n_features, sizes, dropouts[0] if dropouts else 0.0


def describe_network(net):
    """A JSON-able description of a network's architecture, without its weights.

    Parameters
    ----------
    net : QuantizationNetwork
        A network as :class:`~skdqn.DeepQuantizer` builds it.

    Returns
    -------
    description : dict
        ``kind`` (``"mlp"`` for a :func:`build_mlp` backbone, else
        ``"custom"``), ``n_backbone_features``, ``n_components`` and
        ``normalize``; for an
        MLP also ``n_features``, ``hidden_layer_sizes``, ``dropout`` and
        ``standardize`` (whether an :class:`InputStandardizer` comes
        first); for a custom backbone its ``class``
        (``module.QualifiedName``, for messages only: nothing is imported
        from it).

    Examples
    --------
    >>> from skdqn.training._network import QuantizationNetwork, build_mlp, describe_network
    >>> describe_network(QuantizationNetwork(build_mlp(8, (16,), 0.1), 16, 4))["hidden_layer_sizes"]
    [16]
    """
    common = {"n_backbone_features": int(net.fcb.in_features), "n_components": int(net.fcb.out_features),
              "normalize": bool(net.normalize)}
    mlp = _mlp_layers(net.backbone)
    if mlp is None:
        cls = type(net.backbone)
        return {"kind": "custom", "class": f"{cls.__module__}.{cls.__qualname__}", **common}
    n_features, sizes, dropout = mlp
    if n_features is None:  # no hidden layer: the bottleneck acts on the inputs
        n_features = common["n_backbone_features"]
    return {"kind": "mlp", "n_features": int(n_features), "hidden_layer_sizes": [int(h) for h in sizes],
            "dropout": float(dropout), "standardize": bool(net.standardizes), **common}


def rebuild_network(description, backbone=None):
    """A network of the described architecture, freshly initialised (weights to be loaded).

    Parameters
    ----------
    description : dict
        As returned by :func:`describe_network` (already validated).
    backbone : torch.nn.Module, default=None
        The backbone, used as it is (not copied); required for a
        ``"custom"`` network. None builds the described MLP.

    Returns
    -------
    net : QuantizationNetwork

    Examples
    --------
    >>> from skdqn.training._network import QuantizationNetwork, build_mlp, describe_network, rebuild_network
    >>> net = QuantizationNetwork(build_mlp(8, (16,)), 16, 4)
    >>> rebuilt = rebuild_network(describe_network(net))
    >>> sorted(rebuilt.state_dict()) == sorted(net.state_dict())
    True
    """
    standardizer = None
    if backbone is None:
        n_features = description["n_features"]
        backbone = build_mlp(n_features, description["hidden_layer_sizes"], description["dropout"])
        if description.get("standardize", False):  # absent before model format 2: none
            standardizer = InputStandardizer(torch.zeros(n_features), torch.ones(n_features))
    return QuantizationNetwork(
        backbone, description["n_backbone_features"], description["n_components"], standardizer,
        normalize=description.get("normalize", False),  # absent before model format 3: no
    )
