r"""Monte Carlo KL from log-densities at samples of P: Schulman's k1, k2 and k3 estimators.

With x ~ P and r = q(x)/p(x),

$$
k_1 = -\log r, \qquad k_2 = \tfrac12 (\log r)^2, \qquad k_3 = (r - 1) - \log r .
$$

k1 and k3 are unbiased for KL(P‖Q) (k3 because E_P[r] = 1 when Q's support lies inside P's);
k3 ≥ 0 for every sample and usually has the smaller variance when P ≈ Q. k2 is biased (its
mean is a second-order approximation of KL) but has low variance; it is what RLHF libraries
call the "squared" penalty. Reference: J. Schulman, "Approximating KL divergence" (2020),
http://joschu.net/blog/kl-approx.html.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kldiv._result import KLResult

__all__ = ["ESTIMATORS", "log_ratio", "log_ratio_terms"]

ESTIMATORS = ("k1", "k2", "k3")

# Below this |log r| the difference expm1(t) − t loses digits to cancellation (relative error
# ~2ε/|t|), so the Taylor series Σ_{j≥2} t^j/j! is summed instead; 17 terms reach ε at |t| = ½.
_SERIES_BELOW = 0.5
_SERIES = [1.0 / math.factorial(j) for j in range(2, 19)]


def log_ratio_terms(log_r: NDArray[np.float64], estimator: str) -> NDArray[np.float64]:
    """Per-sample terms of estimator k1, k2 or k3, given log r = log q − log p at samples of P.

    Args:
        log_r: float64 array of log q(x) − log p(x), any shape.
        estimator: "k1", "k2" or "k3".

    Returns:
        Array of the same shape whose mean estimates KL(P‖Q) (biased for "k2").

    Examples:
        >>> log_ratio_terms(np.array([0.0, np.log(2.0)]), "k3")
        array([0.        , 0.30685282])
    """
    if estimator == "k1":
        return np.asarray(-log_r)
    if estimator == "k2":
        return np.asarray(0.5 * log_r**2)
    if estimator == "k3":
        small = np.abs(log_r) < _SERIES_BELOW
        t = np.where(small, log_r, 0.0)
        series = np.zeros_like(t)
        for coefficient in reversed(_SERIES):
            series = series * t + coefficient
        series = series * t * t
        with np.errstate(over="ignore"):
            direct = np.expm1(np.where(small, 0.0, log_r)) - np.where(small, 0.0, log_r)
        return np.asarray(np.where(small, series, direct))
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def _read_samples(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(f"{name} must be a 1-D array of samples (sample axis first), got a scalar")
    if np.isnan(array).any():
        index = tuple(int(i) for i in np.argwhere(np.isnan(array))[0])
        raise ValueError(f"{name} has NaN at index {index}; remove or impute those samples")
    return array


def log_ratio(log_p: ArrayLike, log_q: ArrayLike, *, estimator: str = "k3") -> KLResult:
    r"""Estimate KL(P‖Q) from log p and log q evaluated at samples of P.

    $$
    \widehat{\mathrm{KL}} = \frac1n \sum_{i=1}^n k(r_i), \qquad r_i = q(x_i)/p(x_i),\ x_i \sim P,
    $$

    with k one of Schulman's k1, k2, k3 (module docstring). The standard error is the sample
    standard deviation of the terms over √n (analytic; the samples are independent).

    Args:
        log_p: log p(x_i), shape (n, ...) with the sample axis first; float64 is used.
        log_q: log q(x_i), same shape.
        estimator: "k1" (unbiased), "k2" (biased, low variance) or "k3" (unbiased, ≥ 0).

    Returns:
        KLResult in nats with ``stderr``, ``method`` equal to the estimator and ``n``; the
        value has the shape of the trailing axes (a float for 1-D input).

    Raises:
        ValueError: on NaN, mismatched shapes, fewer than 2 samples or an unknown estimator.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).standard_normal(100_000)
        >>> log_p = -0.5 * x**2                     # N(0, 1), constants cancel
        >>> log_q = -0.5 * (x - 0.1) ** 2           # N(0.1, 1): KL = 0.005
        >>> result = log_ratio(log_p, log_q)
        >>> abs(float(result) - 0.005) < 5 * result.stderr
        True
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    lp, lq = _read_samples("log_p", log_p), _read_samples("log_q", log_q)
    if lp.shape != lq.shape:
        raise ValueError(
            f"log_p has shape {lp.shape} and log_q has shape {lq.shape}; they must match"
        )
    n = lp.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples for a standard error, got {n}")
    value, stderr = mean_and_stderr(lq - lp, estimator)
    return KLResult(
        value=value, stderr=stderr, method=estimator, n=n, params={"estimator": estimator}
    )


def mean_and_stderr(log_r: NDArray[np.float64], estimator: str) -> tuple[Any, Any]:
    """Mean of the estimator's terms over axis 0 and its standard error (floats for 1-D)."""
    with np.errstate(invalid="ignore"):
        terms = log_ratio_terms(log_r, estimator)
        n = terms.shape[0]
        value = terms.mean(axis=0)
        stderr = terms.std(axis=0, ddof=1) / math.sqrt(n)
    stderr = np.where(np.isfinite(value), stderr, np.nan)
    if np.ndim(value) == 0:
        return float(value), float(stderr)
    return np.asarray(value), np.asarray(stderr)
