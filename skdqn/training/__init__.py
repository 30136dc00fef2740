"""Training DeepQuantizer: the network, the losses, batch sources and torch.distributed (see
docs/architecture.rst)."""
