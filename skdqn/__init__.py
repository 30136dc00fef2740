"""skdqn: supervised deep product quantization for scikit-learn.

An implementation of Deep Quantization Network (DQN; Cao, Long, Wang, Zhu and
Wen, AAAI 2016): a torch network learns embeddings whose product-quantization
codes retrieve items that share labels, and an index searches those codes by
Asymmetric Quantizer Distance with lookup tables.

* :class:`DeepQuantizer`: the DQN estimator (fit/transform/encode).
* :class:`AQDNeighbors`: a compressed, :class:`~sklearn.neighbors.NearestNeighbors`-style
  index over product-quantization codes.
* :class:`Retriever`: a DeepQuantizer and the index of its codes in one
  estimator, from raw queries to neighbours.
* :mod:`skdqn.metrics`: retrieval metrics (MAP, precision@k, ...).
* :func:`merge_kneighbors`, :func:`database_shards`: search a database in
  shards (threads, processes, a cluster) and merge the per-shard top-k.
* :func:`build_shards`, :func:`search_shards`, :func:`dask_encode`: build an
  index as shards on a dask.distributed cluster's workers, search them where
  they live, encode a dask array block by block.
* :class:`HasLabel`, :class:`SameLabel`: filters of a search by the stored
  labels (``kneighbors(..., filter=...)``).
"""

from .search._filters import HasLabel, SameLabel
from ._neighbors import AQDNeighbors
from ._retriever import Retriever
from .search._search import database_shards, merge_kneighbors
from .search._cluster import ShardedIndex, build_shards, dask_encode, search_shards
from ._version import __version__

__all__ = [
    "AQDNeighbors",
    "DeepQuantizer",
    "HasLabel",
    "Retriever",
    "SameLabel",
    "ShardedIndex",
    "build_shards",
    "dask_encode",
    "database_shards",
    "merge_kneighbors",
    "search_shards",
    "__version__",
]


def __getattr__(name):
    # DeepQuantizer needs torch, whose import takes seconds: it is imported on
    # first use, so that search-only uses (AQDNeighbors, the metrics, the CLI's
    # --help, dask workers unpickling a search task) do not pay for it.
    if name == "DeepQuantizer":
        from ._quantizer import DeepQuantizer

        return DeepQuantizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"DeepQuantizer"})
