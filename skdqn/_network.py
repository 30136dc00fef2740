"""The DQN network: a backbone followed by the bottleneck layer ``fcb`` (Linear + tanh)."""

import torch
from torch import nn

__all__ = [
    "build_mlp",
    "QuantizationNetwork",
    "module_device",
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
    >>> from skdqn._network import build_mlp
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


class QuantizationNetwork(nn.Module):
    """Backbone, flatten, then ``fcb``: ``z = tanh(W f(x) + b)`` in ``[-1, 1]^R``.

    Parameters
    ----------
    backbone : torch.nn.Module
        Any module mapping a batch of inputs to features (flattened if not 2-D).
    n_backbone_features : int
        Number of features the backbone outputs per item (after flattening).
    n_components : int
        ``R``, the dimension of the embedding.

    Examples
    --------
    >>> import torch
    >>> from skdqn._network import QuantizationNetwork, build_mlp
    >>> net = QuantizationNetwork(build_mlp(8, (16,)), 16, 4)
    >>> net(torch.zeros(2, 8)).shape
    torch.Size([2, 4])
    """

    def __init__(self, backbone, n_backbone_features, n_components):
        super().__init__()
        self.backbone = backbone
        self.fcb = nn.Linear(n_backbone_features, n_components)

    def forward(self, x):
        """Embed a batch: ``(B, ...)`` -> ``(B, n_components)``.

        Raises a ``ValueError`` when the backbone's output is not one row of
        ``n_backbone_features`` per item of the batch.
        """
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
        return torch.tanh(self.fcb(features))


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
    >>> from skdqn._network import module_device
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
        ``"custom"``), ``n_backbone_features`` and ``n_components``; for an
        MLP also ``hidden_layer_sizes`` and ``dropout`` (and ``n_features``
        when it has hidden layers); for a custom backbone its ``class``
        (``module.QualifiedName``, for messages only: nothing is imported
        from it).

    Examples
    --------
    >>> from skdqn._network import QuantizationNetwork, build_mlp, describe_network
    >>> describe_network(QuantizationNetwork(build_mlp(8, (16,), 0.1), 16, 4))["hidden_layer_sizes"]
    [16]
    """
    common = {"n_backbone_features": int(net.fcb.in_features), "n_components": int(net.fcb.out_features)}
    mlp = _mlp_layers(net.backbone)
    if mlp is None:
        cls = type(net.backbone)
        return {"kind": "custom", "class": f"{cls.__module__}.{cls.__qualname__}", **common}
    n_features, sizes, dropout = mlp
    if n_features is None:  # no hidden layer: the bottleneck acts on the inputs
        n_features = common["n_backbone_features"]
    return {"kind": "mlp", "n_features": int(n_features), "hidden_layer_sizes": [int(h) for h in sizes],
            "dropout": float(dropout), **common}


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
    >>> from skdqn._network import QuantizationNetwork, build_mlp, describe_network, rebuild_network
    >>> net = QuantizationNetwork(build_mlp(8, (16,)), 16, 4)
    >>> rebuilt = rebuild_network(describe_network(net))
    >>> sorted(rebuilt.state_dict()) == sorted(net.state_dict())
    True
    """
    if backbone is None:
        backbone = build_mlp(description["n_features"], description["hidden_layer_sizes"], description["dropout"])
    return QuantizationNetwork(backbone, description["n_backbone_features"], description["n_components"])
