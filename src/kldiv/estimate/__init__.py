"""Estimators of KL(P‖Q) from samples: k-nearest neighbours, category counts, log-ratios.

Each returns a :class:`KLResult` (value, ``stderr``, ``method``, ``units``, ``n``, ``m``);
:func:`bootstrap` gives a resampling standard error for any of them.
"""

from kldiv._result import KLResult
from kldiv.estimate._bootstrap import bootstrap
from kldiv.estimate._counts import categorical, counts
from kldiv.estimate._knn import knn
from kldiv.estimate._log_ratio import log_ratio

__all__ = ["KLResult", "bootstrap", "categorical", "counts", "knn", "log_ratio"]
