r"""Permutation test: how large an estimate two samples of one distribution give.

Under the hypothesis P = Q the pooled sample is exchangeable: any split of it into n and m
points is as likely as the observed one. The estimator is re-run on B random splits, and

$$
p = \frac{1 + \#\{b : \widehat{D}^{*b} \ge \widehat{D}\}}{B + 1}
$$

is an exact p-value of the observed estimate (Phipson & Smyth, "Permutation p-values should
never be zero", Stat. Appl. Genet. Mol. Biol. 9(1), 2010). The mean and spread of the
$\widehat{D}^{*b}$ are the estimator's null distribution at these sample sizes: its bias
(a plug-in estimate over K categories averages about (K − 1)/(2N) + (K − 1)/(2M) without
drift) and its noise, the reference against which a drift estimate is read.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from kldiv._result import KLResult
from kldiv.estimate._bootstrap import _restore

__all__ = ["permutation_test"]


def permutation_test(
    estimator: Callable[..., KLResult],
    x: Any,
    y: Any,
    /,
    *,
    n_permutations: int = 200,
    seed: int | np.random.Generator | None = None,
    **options: Any,
) -> KLResult:
    """Run ``estimator`` on x, y and on B random re-splits of the pooled sample.

    The formula and its reference are in the module docstring. Warnings the estimator gives
    on the re-splits (duplicate points of `knn`, for example) are not repeated.

    Args:
        estimator: `binned`, `categorical`, `knn` or any function of two
            samples (sample axis first) returning a `KLResult`.
        x: the sample of P: an array (n, ...) or a sequence of labels.
        y: the sample of Q, with the same trailing shape.
        n_permutations: B, the number of re-splits (≥ 1); the smallest p-value is 1/(B + 1).
        seed: seed or ``numpy.random.Generator`` for reproducible splits.
        **options: keyword options of ``estimator`` (``k``, ``bins``, ``prior``...).

    Returns:
        The estimator's result on x and y, with ``params`` extended by ``p_value``,
        ``null_mean``, ``null_sd`` and ``null_q95`` (mean, standard deviation and 95th
        percentile of the B re-split estimates), ``n_permutations`` and ``seed``.

    Raises:
        ValueError: if n_permutations < 1.

    Examples:
        >>> import numpy as np
        >>> from kldiv.estimate import binned, permutation_test
        >>> rng = np.random.default_rng(3)
        >>> same = permutation_test(binned, rng.normal(size=500), rng.normal(size=500), seed=0)
        >>> round(same.params["p_value"], 3)           # no drift: an unremarkable value
        0.667
        >>> drift = permutation_test(binned, rng.normal(size=500), rng.normal(0.5, size=500), seed=0)
        >>> drift.params["p_value"]                    # no re-split reached the observed value
        0.004975
    """
    if (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, (int, np.integer))
        or n_permutations < 1
    ):
        raise ValueError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    observed = estimator(x, y, **options)
    samples = (x, y)
    arrays = [
        s if isinstance(s, np.ndarray) else np.asarray(list(s), dtype=object) for s in samples
    ]
    n = arrays[0].shape[0]
    pooled = np.concatenate(arrays)
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(n_permutations):
            order = rng.permutation(pooled.shape[0])
            drawn = [pooled[order[:n]], pooled[order[n:]]]
            null[b] = float(estimator(*_restore(drawn, samples), **options))
    value = float(observed)
    exceed = int(np.count_nonzero(null >= value)) if not math.isnan(value) else n_permutations
    params = {
        **observed.params,
        "p_value": (1 + exceed) / (n_permutations + 1),
        "null_mean": float(np.mean(null)),
        "null_sd": float(np.std(null, ddof=1)) if n_permutations > 1 else math.nan,
        "null_q95": float(np.quantile(null, 0.95)),
        "n_permutations": int(n_permutations),
        "seed": seed if isinstance(seed, int) else None,
    }
    return dataclasses.replace(observed, params=params)
