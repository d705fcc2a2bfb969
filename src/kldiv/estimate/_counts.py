r"""Plug-in KL from category counts, with pseudo-count smoothing.

With counts $c_P$, $c_Q$ over K categories and a pseudo-count a added to every category,

$$
\hat p_j = \frac{c_{P,j} + a}{N_P + K a}, \qquad \hat q_j = \frac{c_{Q,j} + a}{N_Q + K a},
\qquad \widehat{\mathrm{KL}} = \sum_j \hat p_j \log\frac{\hat p_j}{\hat q_j}.
$$

The default a = ½ (Jeffreys, ``prior="jeffreys"``, also the default of ``kldiv estimate``)
keeps the value finite when a category seen in P is missing from Q. With a = 0 such a
category gives +inf, the unsmoothed plug-in value; ``"laplace"`` (a = 1), ``"perks"``
(a = 1/K) or any a ≥ 0 can be passed. The standard error is the delta method under
multinomial sampling of both count vectors,

$$
\mathrm{Var} \approx \frac{1}{N_P}\operatorname{Var}_{\hat p}\!\left[\log\frac{\hat p}{\hat q}\right]
+ \frac{1}{N_Q}\left(\sum_j \frac{\hat p_j^2}{\hat q_j} - 1\right).
$$

**Bias.** With a = 0 and both samples from one distribution over K categories (all of
positive probability), the estimate is not 0 but on average

$$
\mathbb{E}\,\widehat{\mathrm{KL}} \approx \frac{K-1}{2N_P} + \frac{K-1}{2N_Q},
$$

because $2\,\widehat{\mathrm{KL}}$ is close to Pearson's $\chi^2$ statistic divided by
$N_P N_Q/(N_P + N_Q)$, which has K − 1 degrees of freedom: (K − 1)/N for two samples of size
N, not (K − 1)/(2N), which is the bias when Q is known exactly. In general the first-order
bias is $(K_P-1)/(2N_P) + (\sum_j p_j/q_j - 1)/(2N_Q)$, with $K_P$ the categories of positive
P-probability. The report gives the estimate as it is; `permutation_test` measures what
two samples of one distribution give, bias included.

The population stability index of the same frequencies,
$\mathrm{PSI} = \sum_j (\hat p_j - \hat q_j)\log(\hat p_j/\hat q_j)
= \mathrm{KL}(\hat p\,\|\,\hat q) + \mathrm{KL}(\hat q\,\|\,\hat p)$, the drift score of
credit-risk practice, comes in ``params["psi"]``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kldiv import kl_div
from kldiv._result import KLResult

__all__ = ["PRIORS", "categorical", "counts"]

IntArray = NDArray[np.int64]

PRIORS = {"laplace": 1.0, "jeffreys": 0.5}


def _read_counts(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values)
    if (
        array.dtype == object
        or not np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        raise TypeError(f"{name} must hold numbers (counts), got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of counts, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 0) | (array != np.round(array))
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"{name} has the entry {array[index]} at index {index}; counts must be non-negative integers"
        )
    if array.sum() == 0:
        raise ValueError(f"{name} has no observations (all counts are 0)")
    return array


def _pseudo_count(prior: float | str, categories: int) -> float:
    if isinstance(prior, str):
        if prior == "perks":
            return 1.0 / categories
        if prior not in PRIORS:
            raise ValueError(
                f"prior must be 'laplace', 'jeffreys', 'perks' or a number >= 0, got {prior!r}"
            )
        return PRIORS[prior]
    if not math.isfinite(prior) or prior < 0:
        raise ValueError(f"prior must be a finite number >= 0, got {prior}")
    return float(prior)


def counts(c_p: ArrayLike, c_q: ArrayLike, *, prior: float | str = 0.5) -> KLResult:
    """Plug-in KL(P‖Q) in nats from category counts of a sample of P and a sample of Q.

    Args:
        c_p: counts of each category in the sample of P, shape (K,), non-negative integers.
        c_q: counts in the sample of Q, shape (K,), same categories in the same order.
        prior: pseudo-count added to every category: "laplace" (1), "jeffreys" (0.5, the
            default), "perks" (1/K) or a number >= 0. With 0 (no smoothing), a category with
            P-count > 0 and Q-count 0 makes the result +inf.

    Returns:
        KLResult with ``method`` "counts", ``n`` = N_P, ``m`` = N_Q, the delta-method
        ``stderr`` (NaN when the value is infinite) and ``params`` (``prior``,
        ``pseudo_count``, ``categories``, ``psi``).

    Raises:
        ValueError: on negative, non-integer or NaN counts, shapes that differ, empty
            samples, or an unknown prior.

    Examples:
        >>> round(counts([3, 1], [2, 2], prior=0).value, 6)  # KL((3/4, 1/4) ‖ (1/2, 1/2))
        0.130812
        >>> counts([1, 1], [2, 0], prior=0).value
        inf
        >>> round(counts([1, 1], [2, 0]).value, 6)         # Jeffreys: (1/2, 1/2) ‖ (5/6, 1/6)
        0.293893
    """
    p_counts, q_counts = _read_counts("c_p", c_p), _read_counts("c_q", c_q)
    if p_counts.shape != q_counts.shape:
        raise ValueError(
            f"c_p has {p_counts.shape[0]} categories and c_q has {q_counts.shape[0]}; "
            "both must count the same categories in the same order"
        )
    categories = p_counts.shape[0]
    pseudo = _pseudo_count(prior, categories)
    n_p, n_q = float(p_counts.sum()), float(q_counts.sum())
    p_hat = (p_counts + pseudo) / (n_p + categories * pseudo)
    q_hat = (q_counts + pseudo) / (n_q + categories * pseudo)
    value = float(kl_div(p_hat, q_hat))
    psi = value + float(kl_div(q_hat, p_hat))
    stderr = _delta_stderr(p_hat, q_hat, n_p, n_q) if math.isfinite(value) else math.nan
    return KLResult(
        value=value,
        stderr=stderr,
        method="counts",
        n=int(n_p),
        m=int(n_q),
        params={"prior": prior, "pseudo_count": pseudo, "categories": categories, "psi": psi},
    )


def _delta_stderr(
    p_hat: NDArray[np.float64], q_hat: NDArray[np.float64], n_p: float, n_q: float
) -> float:
    support = p_hat > 0
    log_ratio = np.log(p_hat[support] / q_hat[support])
    weights = p_hat[support]
    variance_p = float(np.sum(weights * log_ratio**2) - np.sum(weights * log_ratio) ** 2)
    variance_q = float(np.sum(weights**2 / q_hat[support]) - 1.0)
    return math.sqrt(max(variance_p, 0.0) / n_p + max(variance_q, 0.0) / n_q)


def categorical(
    x: Iterable[Hashable] | ArrayLike,
    y: Iterable[Hashable] | ArrayLike,
    *,
    prior: float | str = 0.5,
) -> KLResult:
    """Plug-in KL(P‖Q) from raw label samples x ~ P and y ~ Q (any hashable labels).

    The categories are the union of the labels seen in x and y; the counts go to
    `counts`, whose ``prior`` (Jeffreys, ½, by default) smooths empty categories.
    Labels are compared as Python values: ``21 == 21.0``, but ``"21" != 21``.

    Args:
        x: labels sampled from P (a sequence or a 1-D array; strings, ints, tuples...).
        y: labels sampled from Q.
        prior: as in `counts`; 0 for the unsmoothed plug-in.

    Returns:
        KLResult as from `counts`, with ``method`` "categorical" and
        ``params["labels"]`` listing the categories in the order counted.

    Examples:
        >>> categorical(["a", "a", "a", "b"], ["a", "b", "b", "a"], prior=0).value
        0.130812
    """
    numeric = _numeric_codes(x, y)
    if numeric is not None:
        labels, codes_x, codes_y = numeric
    else:
        labels_x, labels_y = _labels("x", x), _labels("y", y)
        index: dict[Any, int] = {}
        for label in (*labels_x, *labels_y):
            index.setdefault(label, len(index))
        labels = list(index)
        codes_x = np.array([index[label] for label in labels_x], dtype=np.int64)
        codes_y = np.array([index[label] for label in labels_y], dtype=np.int64)
    c_p = np.bincount(codes_x, minlength=len(labels)).astype(np.float64)
    c_q = np.bincount(codes_y, minlength=len(labels)).astype(np.float64)
    result = counts(c_p, c_q, prior=prior)
    params = {**result.params, "labels": labels}
    return KLResult(
        value=result.value,
        stderr=result.stderr,
        method="categorical",
        units=result.units,
        n=result.n,
        m=result.m,
        params=params,
    )


def _numeric_codes(x: Any, y: Any) -> tuple[list[Any], IntArray, IntArray] | None:
    """Labels (in order of first appearance) and codes of two 1-D numeric arrays, or None.

    The vectorized path for arrays of integers, floats or booleans; other inputs go through
    the dictionary of `categorical`, which gives the same labels in the same order.
    """
    if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
        return None
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf" or x.ndim != 1 or y.ndim != 1:
        return None
    if x.size == 0 or y.size == 0 or (x.dtype.kind == "f") != (y.dtype.kind == "f"):
        return None  # empty samples get the error message; 1 and 1.0 mixed, the Python rule
    for name, values in (("x", x), ("y", y)):
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ValueError(
                f"{name} has a missing label (nan) at index {int(np.argmax(np.isnan(values)))}; "
                "drop those samples or give them a label"
            )
    pooled = np.concatenate([x, y])
    distinct, first, inverse = np.unique(pooled, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    codes = rank[inverse.reshape(-1)].astype(np.int64)
    return distinct[order].tolist(), codes[: x.size], codes[x.size :]


def _labels(name: str, values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one label per sample), got shape {values.shape}")
        values = values.tolist()
    labels = list(values)
    if not labels:
        raise ValueError(f"{name} has no samples")
    for index, label in enumerate(labels):
        # Missing values are refused whatever their spelling (float NaN, None, pandas.NA),
        # as for numbers: silently made a category, they would read as drift.
        if (
            (isinstance(label, float) and math.isnan(label))
            or label is None
            or type(label).__name__ == "NAType"
        ):
            raise ValueError(
                f"{name} has a missing label ({label!r}) at index {index}; "
                "drop those samples or give them a label"
            )
        try:
            hash(label)
        except TypeError:
            raise TypeError(
                f"{name} has the unhashable label {label!r}; labels must be hashable"
            ) from None
    return labels
