"""What each search metric means, in one place.

An :class:`~skdqn.AQDNeighbors` index ranks codes by the sum of lookup-table
entries (smaller is better). A metric decides these things, gathered in a
:class:`Metric`:

* which lookup table the scan sums (``table``: squared distances or negated
  inner products, see :func:`skdqn.search._tables.distance_tables`);
* which faiss metric holds the same ranking (``faiss``);
* how a summed table value becomes the distance the user sees
  (:meth:`Metric.to_user`) and how a user's radius becomes a bound on the
  summed value (:meth:`Metric.radius_threshold`), and which radii are valid
  (:meth:`Metric.check_radius`);
* which metric an index converted from faiss gets (:func:`metric_for_faiss`).

A new metric is one more entry of ``_METRICS``; the index and the kernels do
not change.
"""

from dataclasses import dataclass
from numbers import Real

import numpy as np

__all__ = ["Metric", "get_metric", "metric_for_faiss", "METRIC_NAMES"]


@dataclass(frozen=True)
class Metric:
    """The policy of one search metric.

    Parameters
    ----------
    name : str
        The user's name (the ``metric`` parameter).
    table : {"sqeuclidean", "inner_product"}
        The lookup tables summed by the scan.
    faiss : {"l2", "inner_product"}
        The faiss metric with the same ranking.
    squared : bool
        Whether the user's distances are the square roots of the summed
        squared distances (``"euclidean"``).

    Examples
    --------
    >>> import numpy as np
    >>> from skdqn.search._metric import get_metric
    >>> get_metric("euclidean").to_user(np.array([4.0], np.float32))
    array([2.], dtype=float32)
    """

    name: str
    table: str
    faiss: str
    squared: bool = False

    def to_user(self, dist):
        """Summed table values -> distances in the user's units (float32 kept)."""
        return np.sqrt(dist) if self.squared else dist

    def radius_threshold(self, radius):
        """A radius in the user's units -> the bound on the summed table value."""
        return radius * abs(radius) if self.squared else radius

    def check_radius(self, radius, name="radius"):
        """Raise a ValueError unless ``radius`` is a real, non-NaN radius for this metric.

        ``inf`` is allowed; a negative radius only for the inner product (a
        bound on ``-<q, C h>``): distances are never negative, and
        :class:`~sklearn.neighbors.NearestNeighbors` refuses it too.
        """
        if isinstance(radius, bool) or not isinstance(radius, Real) or np.isnan(radius):
            raise ValueError(f"{name} must be a real number (inf allowed), got {radius!r}.")
        if radius < 0 and self.table != "inner_product":
            raise ValueError(
                f"{name} must be >= 0 for metric={self.name!r} (distances are never negative); "
                f"got {radius!r}. Only metric='inner_product' takes a negative radius (a bound "
                "on -<q, C h>)."
            )


_METRICS = {
    "euclidean": Metric("euclidean", "sqeuclidean", "l2", squared=True),
    "sqeuclidean": Metric("sqeuclidean", "sqeuclidean", "l2"),
    "inner_product": Metric("inner_product", "inner_product", "inner_product"),
}
METRIC_NAMES = frozenset(_METRICS)


def get_metric(name):
    """The :class:`Metric` called ``name``.

    Parameters
    ----------
    name : {"euclidean", "sqeuclidean", "inner_product"}

    Returns
    -------
    metric : Metric

    Examples
    --------
    >>> from skdqn.search._metric import get_metric
    >>> get_metric("inner_product").faiss
    'inner_product'
    """
    try:
        return _METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"metric must be one of {sorted(_METRICS)}; got {name!r}.") from None


# faiss returns squared L2 distances: "sqeuclidean" is what it ranks by.
_FAISS_DEFAULT = {"l2": "sqeuclidean", "inner_product": "inner_product"}
_FAISS_RANKS_BY = {"l2": "L2 distance", "inner_product": "inner product"}


def metric_for_faiss(faiss_metric, name=None):
    """The metric of an index built from a faiss index of ``faiss_metric``.

    Parameters
    ----------
    faiss_metric : {"l2", "inner_product"}
        The faiss index's metric.
    name : str, default=None
        The metric asked for; None gives the one whose distances faiss
        returns (``"sqeuclidean"`` for L2).

    Returns
    -------
    name : str

    Raises
    ------
    ValueError
        If ``name`` ranks differently from ``faiss_metric``.

    Examples
    --------
    >>> from skdqn.search._metric import metric_for_faiss
    >>> metric_for_faiss("l2"), metric_for_faiss("l2", "euclidean")
    ('sqeuclidean', 'euclidean')
    """
    if name is None:
        return _FAISS_DEFAULT[faiss_metric]
    if name in _METRICS and _METRICS[name].faiss != faiss_metric:
        allowed = sorted(m.name for m in _METRICS.values() if m.faiss == faiss_metric)
        raise ValueError(
            f"the faiss index ranks by {_FAISS_RANKS_BY[faiss_metric]}; metric must be one of "
            f"{allowed}, got {name!r}."
        )
    return name
