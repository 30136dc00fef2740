"""The DQN network: a backbone followed by the bottleneck layer ``fcb`` (Linear + tanh)."""

import torch
from torch import nn

__all__ = ["build_mlp", "QuantizationNetwork", "module_device"]


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
        """Embed a batch: ``(B, ...)`` -> ``(B, n_components)``."""
        return torch.tanh(self.fcb(torch.flatten(self.backbone(x), 1)))


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
