r"""Plug-in KL from category counts, with pseudo-count smoothing.

With counts c_P, c_Q over K categories and a pseudo-count a added to every category,

.. math::
    \hat p_j = \frac{c_{P,j} + a}{N_P + K a}, \qquad \hat q_j = \frac{c_{Q,j} + a}{N_Q + K a},
    \qquad \widehat{\mathrm{KL}} = \sum_j \hat p_j \log\frac{\hat p_j}{\hat q_j}.

With a = 0 (the default) a category seen in P but never in Q gives +inf, which is the plug-in
value but rarely what one wants: pass ``prior="laplace"`` (a = 1), ``"jeffreys"`` (a = ½),
``"perks"`` (a = 1/K) or any a > 0 to smooth. The standard error is the delta method under
multinomial sampling of both count vectors,

.. math::
    \mathrm{Var} \approx \frac{1}{N_P}\operatorname{Var}_{\hat p}\!\left[\log\frac{\hat p}{\hat q}\right]
    + \frac{1}{N_Q}\left(\sum_j \frac{\hat p_j^2}{\hat q_j} - 1\right).
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


def counts(c_p: ArrayLike, c_q: ArrayLike, *, prior: float | str = 0.0) -> KLResult:
    """Plug-in KL(P‖Q) in nats from category counts of a sample of P and a sample of Q.

    Args:
        c_p: counts of each category in the sample of P, shape (K,), non-negative integers.
        c_q: counts in the sample of Q, shape (K,), same categories in the same order.
        prior: pseudo-count added to every category: "laplace" (1), "jeffreys" (0.5),
            "perks" (1/K) or a number >= 0. With 0, a category with P-count > 0 and Q-count 0
            makes the result +inf; smooth with one of the priors to get a finite value.

    Returns:
        KLResult with ``method`` "counts", ``n`` = N_P, ``m`` = N_Q, the delta-method
        ``stderr`` (NaN when the value is infinite) and ``params`` (``prior``,
        ``pseudo_count``, ``categories``).

    Raises:
        ValueError: on negative, non-integer or NaN counts, shapes that differ, empty
            samples, or an unknown prior.

    Example:
        >>> counts([3, 1], [2, 2]).value                  # KL((3/4, 1/4) ‖ (1/2, 1/2))
        0.130812
        >>> counts([1, 1], [2, 0]).value
        inf
        >>> round(counts([1, 1], [2, 0], prior="laplace").value, 6)
        0.143841
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
    stderr = _delta_stderr(p_hat, q_hat, n_p, n_q) if math.isfinite(value) else math.nan
    return KLResult(
        value=value,
        stderr=stderr,
        method="counts",
        n=int(n_p),
        m=int(n_q),
        params={"prior": prior, "pseudo_count": pseudo, "categories": categories},
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
    prior: float | str = 0.0,
) -> KLResult:
    """Plug-in KL(P‖Q) from raw label samples x ~ P and y ~ Q (any hashable labels).

    The categories are the union of the labels seen in x and y; the counts go to
    :func:`counts`, whose ``prior`` smooths empty categories.

    Args:
        x: labels sampled from P (a sequence or a 1-D array; strings, ints, tuples...).
        y: labels sampled from Q.
        prior: as in :func:`counts`.

    Returns:
        KLResult as from :func:`counts`, with ``method`` "categorical" and
        ``params["labels"]`` listing the categories in the order counted.

    Example:
        >>> categorical(["a", "a", "a", "b"], ["a", "b", "b", "a"]).value
        0.130812
    """
    labels_x, labels_y = _labels("x", x), _labels("y", y)
    index: dict[Any, int] = {}
    for label in (*labels_x, *labels_y):
        index.setdefault(label, len(index))
    c_p = np.zeros(len(index))
    c_q = np.zeros(len(index))
    np.add.at(c_p, [index[label] for label in labels_x], 1)
    np.add.at(c_q, [index[label] for label in labels_y], 1)
    result = counts(c_p, c_q, prior=prior)
    params = {**result.params, "labels": list(index)}
    return KLResult(
        value=result.value,
        stderr=result.stderr,
        method="categorical",
        units=result.units,
        n=result.n,
        m=result.m,
        params=params,
    )


def _labels(name: str, values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one label per sample), got shape {values.shape}")
        if values.dtype.kind == "f" and np.isnan(values).any():
            raise ValueError(f"{name} has NaN labels; drop those samples or give them a label")
        values = values.tolist()
    labels = list(values)
    if not labels:
        raise ValueError(f"{name} has no samples")
    for label in labels:
        if isinstance(label, float) and math.isnan(label):
            raise ValueError(f"{name} has NaN labels; drop those samples or give them a label")
        try:
            hash(label)
        except TypeError:
            raise TypeError(
                f"{name} has the unhashable label {label!r}; labels must be hashable"
            ) from None
    return labels
