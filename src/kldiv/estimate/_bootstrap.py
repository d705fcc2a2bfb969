"""Bootstrap standard errors for any of the sample estimators."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kldiv._result import KLResult

__all__ = ["bootstrap"]


def bootstrap(
    estimator: Callable[..., KLResult],
    /,
    *samples: Any,
    n_boot: int = 200,
    seed: int | np.random.Generator | None = None,
    paired: bool = False,
    **options: Any,
) -> KLResult:
    r"""Re-run ``estimator`` on resampled data and report the spread as its standard error.

    $$
    \mathrm{se}_{\mathrm{boot}} = \operatorname{sd}\big(\widehat{D}^{*1}, \dots,
    \widehat{D}^{*B}\big)
    $$

    where each replicate draws every sample with replacement (Efron & Tibshirani, *An
    Introduction to the Bootstrap*, 1993, ch. 6). The value returned is the estimate on the
    original data; only ``stderr`` comes from the replicates.

    Args:
        estimator: one of `categorical`, `log_ratio`, `knn` (or any
            function of samples returning a `KLResult`). With `knn`, resampling
            creates exact copies, which its duplicate rule skips; the spread is then only
            indicative.
        *samples: the arrays or label sequences the estimator takes, sample axis first.
        n_boot: number of replicates B (>= 2).
        seed: seed or ``numpy.random.Generator`` for reproducible replicates.
        paired: resample all ``samples`` with the same indices (for `log_ratio`, whose
            ``log_p`` and ``log_q`` are evaluated at the same draws).
        **options: keyword options passed to ``estimator`` (``k``, ``prior``, ``estimator``...).

    Returns:
        The estimator's result with ``stderr`` replaced by the bootstrap standard error and
        ``params`` extended by ``stderr_method="bootstrap"``, ``n_boot`` and ``seed``.

    Examples:
        >>> from kldiv.estimate import bootstrap, categorical
        >>> result = bootstrap(categorical, list("aaab" * 50), list("abba" * 50), prior=0.5, seed=0)
        >>> result.params["n_boot"], round(result.value, 4)
        (200, 0.1294)
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    if not samples:
        raise ValueError("bootstrap needs the estimator's samples after the estimator")
    arrays = [
        s if isinstance(s, np.ndarray) else np.asarray(list(s), dtype=object) for s in samples
    ]
    lengths = [a.shape[0] for a in arrays]
    if paired and len(set(lengths)) != 1:
        raise ValueError(f"paired resampling needs samples of one length, got {lengths}")
    full = estimator(*samples, **options)
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        if paired:
            index = rng.integers(0, lengths[0], lengths[0])
            drawn = [a[index] for a in arrays]
        else:
            drawn = [a[rng.integers(0, n, n)] for a, n in zip(arrays, lengths, strict=True)]
        replicates[b] = float(estimator(*_restore(drawn, samples), **options))
    finite = replicates[np.isfinite(replicates)]
    stderr = (
        float(np.std(finite, ddof=1)) if finite.size >= 2 and finite.size == n_boot else math.nan
    )
    params = {
        **full.params,
        "stderr_method": "bootstrap",
        "n_boot": int(n_boot),
        "seed": seed if isinstance(seed, int) else None,
    }
    return dataclasses.replace(full, stderr=stderr, params=params)


def _restore(drawn: list[np.ndarray[Any, Any]], samples: tuple[Any, ...]) -> list[Any]:
    """Give object arrays of labels back as lists, so estimators see what the caller passed."""
    return [
        d.tolist() if not isinstance(s, np.ndarray) else d
        for d, s in zip(drawn, samples, strict=True)
    ]
