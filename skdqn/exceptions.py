"""Warnings raised by skdqn.

.. autosummary::

   NoRelevantItemsWarning
"""

__all__ = ["NoRelevantItemsWarning"]


class NoRelevantItemsWarning(UserWarning):
    """Some queries have no relevant item in the database: none of their labels is there.

    Raised by the ``score`` methods (and ``skdqn evaluate``) when queries are
    scored against a database that holds none of their labels: each such
    query gets an average precision of 0 (``no_relevant="zero"``), which
    lowers the mean without any ranking being wrong. It usually means that
    the query and database labels do not match (other names or types, e.g.
    ``"3"`` against ``3``, or classes missing from the database). Silence it
    with :func:`warnings.filterwarnings` where it is expected, or pass
    ``no_relevant="skip"`` to leave those queries out of the mean.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skdqn import AQDNeighbors
    >>> from skdqn.exceptions import NoRelevantItemsWarning
    >>> X = np.r_[np.zeros((4, 2)), np.ones((4, 2))]
    >>> index = AQDNeighbors(M=1, K=2).fit(X, np.r_[np.zeros(4), np.ones(4)])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     score = index.score(X[:2], [0, 7])
    >>> score, caught[0].category.__name__
    (0.5, 'NoRelevantItemsWarning')
    """
