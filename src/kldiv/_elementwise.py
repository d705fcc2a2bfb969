r"""Elementwise relative entropy and the generalized KL divergence of nonnegative measures.

The port path from `scipy.special.rel_entr` and `scipy.special.kl_div`: the same elementwise
values, SciPy's conventions at 0, ±inf, negative entries and NaN included, on any Array API
library. Unlike `kldiv.kl_div`, nothing is checked or normalized: the inputs are any
nonnegative measures, and an entry outside the domain gives +inf, as in SciPy.
"""

from __future__ import annotations

from typing import Any

from kldiv._array import (
    Array,
    Namespace,
    as_compute,
    broadcast_shapes,
    compute_dtype,
    log_of_base,
    namespace,
    normalize_axis,
    quiet,
)
from kldiv._sides import Prepared

_INF = float("inf")


def _inputs(p: Any, q: Any) -> tuple[Namespace, Array, Array, Any]:
    xp, (p, q) = namespace(p, q, names=("p", "q"))
    if type(p) in (int, float) and type(q) in (int, float):
        p = xp.asarray(float(p), dtype=xp.float64)
    named = [("p", p), ("q", q)]
    result_dtype, dtype = compute_dtype(xp, named)
    broadcast_shapes(named)
    like = q if type(p) in (int, float) else p
    return xp, as_compute(xp, p, dtype, like), as_compute(xp, q, dtype, like), result_dtype


def _terms(xp: Namespace, p: Array, q: Array, *, generalized: bool) -> Array:
    """p·log(p/q) (+ q − p if ``generalized``) for p, q > 0; SciPy's conventions elsewhere.

    Where p and q are within a factor 1.5, log(p/q) is log1p((p − q)/q), as in `kldiv.kl_div`.
    """
    both = (p > 0) & (q > 0)
    ones = xp.ones_like(p + q)
    p_safe, q_safe = xp.where(both, p, ones), xp.where(both, q, ones)
    relative = (p_safe - q_safe) / q_safe
    near = xp.abs(relative) < 0.5
    log_ratio = xp.where(
        near, xp.log1p(xp.where(near, relative, xp.zeros_like(relative))),
        xp.log(p_safe) - xp.log(q_safe),
    )  # fmt: skip
    inside = p_safe * log_ratio
    if generalized:
        inside = inside - p_safe + q_safe
    # 0·log(0/q) = 0 for q ≥ 0 (the generalized divergence keeps the + q); +inf elsewhere.
    zero_p = (p == 0) & (q >= 0)
    at_zero = (q * ones) if generalized else xp.zeros_like(ones)
    outside = xp.where(zero_p, at_zero, xp.full_like(ones, _INF))
    value = xp.where(both, inside, outside)
    return xp.where(xp.isnan(p) | xp.isnan(q), xp.full_like(value, float("nan")), value)


@quiet
def rel_entr(p: Any, q: Any, /) -> Any:
    r"""Elementwise relative entropy p log(p/q), as `scipy.special.rel_entr`.

    $$
    \mathrm{rel\_entr}(p, q) = \begin{cases} p \log(p/q) & p > 0,\ q > 0 \\
        0 & p = 0,\ q \ge 0 \\ +\infty & \text{otherwise} \end{cases}
    $$

    Summed along the support of two distributions it is `kldiv.kl_div`, which also checks
    and normalizes them; this function checks nothing and works entry by entry.

    Args:
        p: array (or Python number, or nested lists) of nonnegative values.
        q: array broadcastable against ``p``, from the same library.

    Returns:
        The broadcast array of terms in the inputs' promoted floating dtype (float16 and
        bfloat16 computed in float32); NaN where an input is NaN.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> kldiv.rel_entr(np.array([0.5, 0.0, 0.5, -1.0]), np.array([0.25, 0.5, 0.0, 0.5]))
        array([0.34657359, 0.        ,        inf,        inf])
    """
    xp, p, q, result_dtype = _inputs(p, q)
    out = _terms(xp, p, q, generalized=False)
    return out if out.dtype == result_dtype else xp.astype(out, result_dtype)


@quiet
def generalized_kl(
    p: Any,
    q: Any,
    /,
    *,
    axis: int | None = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
) -> Any:
    r"""Generalized KL divergence of nonnegative measures, Σ p log(p/q) − p + q.

    $$
    D(P \,\|\, Q) = \sum_x \left( p(x) \log \frac{p(x)}{q(x)} - p(x) + q(x) \right)
    $$

    Each term is `scipy.special.kl_div(p, q)` (q where p = 0 ≤ q, +inf outside the domain), so
    ``generalized_kl(p, q, axis=None)`` ports ``scipy.special.kl_div(p, q)`` unreduced. The
    measures need not sum to 1 and are not checked; for distributions the −p + q terms sum
    to 0 and the result is `kldiv.kl_div`. The divergence is ≥ 0 and 0 only where P = Q
    (it is the Bregman divergence of x log x).

    Args:
        p: array (or Python number, or nested lists) of nonnegative values.
        q: array broadcastable against ``p``, from the same library.
        axis: the axis to sum along, or None for the elementwise terms (no sum).
        base: logarithm base of the unit: None for nats, 2 for bits.
        keepdims: keep ``axis`` with size 1 in the result.
        where: boolean mask broadcastable to the inputs; False entries contribute 0.

    Returns:
        The divergence along ``axis`` (or the elementwise terms), in the inputs' promoted
        floating dtype.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> p, q = np.array([1.0, 2.0, 0.0]), np.array([1.0, 1.0, 3.0])
        >>> kldiv.generalized_kl(p, q, axis=None)  # scipy.special.kl_div(p, q)
        array([0.        , 0.38629436, 3.        ])
        >>> float(kldiv.generalized_kl(p, q))
        3.386294361119891
    """
    xp, p_c, q_c, result_dtype = _inputs(p, q)
    terms = _terms(xp, p_c, q_c, generalized=True)
    log_base = log_of_base(base)
    if axis is None:
        if where is not None:
            raise ValueError("where selects the entries of a sum; pass an axis to use it")
        return Prepared(xp, [], -1, None, result_dtype, log_base, keepdims).finish(terms)
    if where is not None:
        _, (mask,) = namespace(where, names=("where",))
        if not xp.isdtype(mask.dtype, "bool"):
            raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
        terms = xp.where(mask, terms, xp.zeros_like(terms))
    axis = normalize_axis(axis, terms.ndim)
    return Prepared(xp, [], axis, None, result_dtype, log_base, keepdims).reduce(terms)
