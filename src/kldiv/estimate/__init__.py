"""Estimators of KL(P‖Q) from samples: k-nearest neighbours, category counts, bins, log-ratios.

Each returns a `KLResult` (value, ``stderr``, ``method``, ``units``, ``n``, ``m``);
`bootstrap` gives a resampling standard error for any of them, and
`permutation_test` a p-value and the estimator's spread when P = Q.
"""

from kldiv._result import KLResult
from kldiv.estimate._binned import binned
from kldiv.estimate._bootstrap import bootstrap
from kldiv.estimate._counts import categorical, counts
from kldiv.estimate._knn import knn
from kldiv.estimate._log_ratio import log_ratio
from kldiv.estimate._permutation import permutation_test

__all__ = [
    "KLResult",
    "binned",
    "bootstrap",
    "categorical",
    "counts",
    "knn",
    "log_ratio",
    "permutation_test",
]
