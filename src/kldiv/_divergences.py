"""Divergences between discrete distributions for any Array API library.

Each public function builds its inputs with `kldiv._sides.prepare` and sums one elementwise
formula along ``axis``. The formulas follow the conventions of information theory:
0·log(0/q) = 0 for q ≥ 0, p·log(p/0) = +inf for p > 0, and NaN in gives NaN out. Masks are
applied with the "double where" so that gradients are finite wherever the value is.
"""

from __future__ import annotations

import math
from typing import Any

from kldiv import _fast_numpy
from kldiv._array import KINDS, Array, Namespace, quiet
from kldiv._sides import Prepared, Side, logsumexp, prepare

_INF = float("inf")


def _kinds(kind: str, p_kind: str | None, q_kind: str | None) -> tuple[str, str]:
    return (kind if p_kind is None else p_kind), (kind if q_kind is None else q_kind)


def _log_ratio(xp: Namespace, p: Side, q: Side) -> Array:
    """log(p/q) on the support of p (0 elsewhere), +inf where q = 0 < p, NaN where q is NaN.

    For two probability inputs, log1p((p − q)/q) is used where p and q are close: it keeps
    KL(P‖Q) accurate to the last digits when P ≈ Q, where log(p/q) — and vectorized logs in
    particular — lose them. Elsewhere log p − log q, which cannot overflow for subnormal q.
    """
    both = p.support & q.support
    zeros = xp.zeros_like(p.log)
    log_p, log_q = xp.where(both, p.log, zeros), xp.where(both, q.log, zeros)
    finite = log_p - log_q
    if p.probs is not None and q.probs is not None:
        ones = xp.ones_like(p.probs)
        p_safe, q_safe = xp.where(both, p.probs, ones), xp.where(both, q.probs, ones)
        relative = (p_safe - q_safe) / q_safe
        near = xp.abs(relative) < 0.5
        finite = xp.where(near, xp.log1p(xp.where(near, relative, zeros)), finite)
    inside = xp.where(q.support, finite, xp.full_like(finite, _INF))
    return _keep_nan(xp, xp.where(p.support, inside, zeros), q)


def _keep_nan(xp: Namespace, terms: Array, q: Side) -> Array:
    """Put q's NaNs back where p's zeros masked them: NaN in gives NaN out."""
    return xp.where(xp.isnan(q.log), q.log, terms)


def _kl_terms(xp: Namespace, p: Side, q: Side) -> Array:
    return p.safe_probs(xp) * _log_ratio(xp, p, q)


def kl_div(
    p: Any,
    q: Any,
    /,
    *,
    kind: str = "probs",
    p_kind: str | None = None,
    q_kind: str | None = None,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Kullback–Leibler divergence KL(P‖Q) along ``axis``.

    $$
    \mathrm{KL}(P \,\|\, Q) = \sum_x p(x) \left(\log p(x) - \log q(x)\right)
    $$

    Args:
        p: the reference distribution P, any Array API array (or nested lists, read by NumPy).
        q: the approximating distribution Q, broadcastable against ``p``.
        kind: what both inputs hold: ``"probs"``, ``"log_probs"`` or ``"logits"`` (unnormalized
            log-probabilities, normalized with a stable log-softmax).
        p_kind: overrides ``kind`` for ``p`` (e.g. teacher probabilities against student logits).
        q_kind: overrides ``kind`` for ``q``.
        axis: the axis holding the support of the distributions.
        base: logarithm base of the unit: None for nats, 2 for bits.
        keepdims: keep ``axis`` with size 1 in the result.
        where: boolean mask broadcastable to the inputs; entries where it is False are outside
            the support: they contribute nothing, logits there count as -inf, and probabilities
            are checked (or renormalized) over the selected entries only.
        normalize: renormalize probability inputs along ``axis`` first, as scipy.stats.entropy
            does. Without it, probabilities of eager arrays (NumPy, concrete JAX arrays, torch
            outside ``torch.compile``) are checked: a negative entry or a sum off 1 by more
            than √eps of the dtype raises ValueError. Log-probabilities of eager arrays are
            always checked to normalize (Σ exp(log p) within the same tolerance of 1), so that
            raw logits passed as ``"log_probs"`` raise a ValueError suggesting
            ``kind="logits"``. Lazy and traced arrays (Dask, JAX under ``jit``/``grad``/
            ``vmap``, ``torch.compile``) are not checked, so that nothing computes.

    Returns:
        An array of the inputs' library with the broadcast shape without ``axis`` (or with size 1
        there if ``keepdims``); the inputs' promoted floating dtype. float16 and bfloat16 inputs
        are computed in float32. +inf where q = 0 < p.

    Raises:
        ValueError: on invalid probabilities, unknown kinds, shapes that do not broadcast, a bad
            ``axis`` or ``base``.
        TypeError: on non-floating inputs or arrays from different libraries.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> p = np.array([0.5, 0.5, 0.0])
        >>> q = np.array([0.25, 0.25, 0.5])
        >>> float(kldiv.kl_div(p, q, base=2))
        1.0
        >>> float(kldiv.kl_div(q, p))
        inf
    """
    p_kind, q_kind = _kinds(kind, p_kind, q_kind)
    if _fast_numpy.applies(p, q, axis, where, normalize) and {p_kind, q_kind} <= set(KINDS):
        return _fast_numpy.kl_div(
            p, q, p_kind=p_kind, q_kind=q_kind, axis=axis, base=base, keepdims=keepdims,
            normalize=normalize, generic=_kl_div,
        )  # fmt: skip
    return _kl_div(
        p, q, p_kind=p_kind, q_kind=q_kind, axis=axis, base=base, keepdims=keepdims,
        where=where, normalize=normalize,
    )  # fmt: skip


@quiet
def _kl_div(
    p: Any,
    q: Any,
    /,
    *,
    p_kind: str = "probs",
    q_kind: str = "probs",
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    prepared = prepare(
        [("p", p, p_kind), ("q", q, q_kind)],
        axis=axis,
        where=where,
        normalize=normalize,
        base=base,
        keepdims=keepdims,
    )
    xp, (side_p, side_q) = prepared.xp, prepared.sides
    return prepared.reduce(_kl_terms(xp, side_p, side_q))


@quiet
def cross_entropy(
    p: Any,
    q: Any,
    /,
    *,
    kind: str = "probs",
    p_kind: str | None = None,
    q_kind: str | None = None,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Cross-entropy H(P, Q) = −Σ p log q along ``axis``; equals H(P) + KL(P‖Q).

    $$
    H(P, Q) = -\sum_x p(x) \log q(x)
    $$

    Args:
        p: the reference distribution P.
        q: the model distribution Q, broadcastable against ``p``.
        kind: see `kl_div`; also ``p_kind``, ``q_kind``, ``axis``, ``base``, ``keepdims``,
            ``where`` and ``normalize``.

    Returns:
        The cross-entropy, shaped and typed as for `kl_div`; +inf where q = 0 < p.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> float(kldiv.cross_entropy(np.array([0.5, 0.5]), np.array([0.5, 0.5]), base=2))
        1.0
    """
    p_kind, q_kind = _kinds(kind, p_kind, q_kind)
    prepared = prepare(
        [("p", p, p_kind), ("q", q, q_kind)],
        axis=axis,
        where=where,
        normalize=normalize,
        base=base,
        keepdims=keepdims,
    )
    xp, (side_p, side_q) = prepared.xp, prepared.sides
    neg_log_q = xp.where(side_q.support, -side_q.safe_log(xp), xp.full_like(side_q.log, _INF))
    neg_log_q = xp.where(side_p.support, neg_log_q, xp.zeros_like(neg_log_q))
    return prepared.reduce(_keep_nan(xp, side_p.safe_probs(xp) * neg_log_q, side_q))


@quiet
def entropy(
    p: Any,
    /,
    *,
    kind: str = "probs",
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Shannon entropy H(P) = −Σ p log p along ``axis``.

    $$
    H(P) = -\sum_x p(x) \log p(x)
    $$

    Args:
        p: the distribution; see `kl_div` for ``kind``, ``axis``, ``base``, ``keepdims``,
            ``where`` and ``normalize``.

    Returns:
        The entropy, shaped and typed as for `kl_div`.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> float(kldiv.entropy(np.array([0.25, 0.25, 0.5, 0.0]), base=2))
        1.5
    """
    prepared = prepare(
        [("p", p, kind)], axis=axis, where=where, normalize=normalize, base=base, keepdims=keepdims
    )
    xp, (side,) = prepared.xp, prepared.sides
    return prepared.reduce(-side.safe_probs(xp) * side.safe_log(xp))


@quiet
def jeffreys(
    p: Any,
    q: Any,
    /,
    *,
    kind: str = "probs",
    p_kind: str | None = None,
    q_kind: str | None = None,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Jeffreys divergence KL(P‖Q) + KL(Q‖P), the symmetrized KL.

    $$
    J(P, Q) = \sum_x \left(p(x) - q(x)\right) \left(\log p(x) - \log q(x)\right)
    $$

    Args:
        p: first distribution; see `kl_div` for every option.
        q: second distribution, broadcastable against ``p``.

    Returns:
        The divergence, shaped and typed as for `kl_div`; +inf unless the supports are equal.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
        >>> bool(np.isclose(kldiv.jeffreys(p, q), kldiv.kl_div(p, q) + kldiv.kl_div(q, p)))
        True
    """
    p_kind, q_kind = _kinds(kind, p_kind, q_kind)
    prepared = prepare(
        [("p", p, p_kind), ("q", q, q_kind)],
        axis=axis,
        where=where,
        normalize=normalize,
        base=base,
        keepdims=keepdims,
    )
    xp, (side_p, side_q) = prepared.xp, prepared.sides
    return prepared.reduce(_kl_terms(xp, side_p, side_q) + _kl_terms(xp, side_q, side_p))


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


@quiet
def js_div(
    p: Any,
    q: Any,
    /,
    *,
    beta: float = 0.5,
    kind: str = "probs",
    p_kind: str | None = None,
    q_kind: str | None = None,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Generalized Jensen–Shannon divergence with mixture weight ``beta``.

    $$
    \mathrm{JS}_\beta(P, Q) = \beta\,\mathrm{KL}(P \,\|\, M) + (1-\beta)\,\mathrm{KL}(Q \,\|\, M),
    \qquad M = \beta P + (1-\beta) Q
    $$

    The mixture is formed in log space, log M = logaddexp(log β + log P, log(1−β) + log Q),
    so the result is finite for disjoint supports and bounded by the binary entropy of β
    (log 2 at β = 0.5, where it is the usual symmetric JSD). β = 0 and β = 1 give 0.

    Args:
        p: first distribution P.
        q: second distribution Q, broadcastable against ``p``.
        beta: the weight of P in the mixture, in [0, 1].
        kind: see `kl_div` for this and every other option.

    Returns:
        The divergence, shaped and typed as for `kl_div`.

    References:
        Lin (1991), "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory.

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> float(kldiv.js_div(np.array([1.0, 0.0]), np.array([0.0, 1.0]), base=2))
        1.0
    """
    beta = _check_fraction("beta", beta)
    p_kind, q_kind = _kinds(kind, p_kind, q_kind)
    prepared = prepare(
        [("p", p, p_kind), ("q", q, q_kind)],
        axis=axis,
        where=where,
        normalize=normalize,
        base=base,
        keepdims=keepdims,
    )
    total = prepared.reduce(js_terms(prepared, beta))
    # The divergence is >= 0; rounding in a sum of terms of both signs may not be (-1e-17 for
    # near-equal rows), and its square root, the Jensen–Shannon distance, must not be NaN.
    xp = prepared.xp
    return xp.where(total < 0, xp.zeros_like(total), total)


def js_terms(prepared: Prepared, beta: float) -> Array:
    """Elementwise terms of the generalized JSD of the two prepared sides (0 at β ∈ {0, 1}).

    Where p and q are within a factor e of each other, log(p/m) and log(q/m) are taken as
    −log1p((1−β)·expm1(log q − log p)) and −log1p(β·expm1(log p − log q)): exactly 0 where
    p = q (so JS(P, P) = 0 exactly), and accurate where the logaddexp form would cancel.
    """
    xp, (p, q) = prepared.xp, prepared.sides
    if beta in (0.0, 1.0):
        # M equals one of the inputs and its weight is 0: each term is exactly 0 (NaN stays NaN).
        return p.safe_probs(xp) * 0 + q.safe_probs(xp) * 0
    either = p.support | q.support
    zeros = xp.zeros_like(p.log)
    # Zeroed where neither side has mass, so logaddexp never sees (-inf, -inf) in a gradient.
    log_p = xp.where(either, p.log, zeros)
    log_q = xp.where(either, q.log, zeros)
    log_m = xp.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
    log_m = xp.where(either, log_m, zeros)
    ratio_p = p.safe_log(xp) - xp.where(p.support, log_m, zeros)
    ratio_q = q.safe_log(xp) - xp.where(q.support, log_m, zeros)
    both = p.support & q.support
    difference = xp.where(both, log_q - log_p, zeros)
    near = both & (xp.abs(difference) < 1.0)
    d = xp.where(near, difference, zeros)
    ratio_p = xp.where(near, -xp.log1p((1.0 - beta) * xp.expm1(d)), ratio_p)
    ratio_q = xp.where(near, -xp.log1p(beta * xp.expm1(-d)), ratio_q)
    terms_p = p.safe_probs(xp) * ratio_p
    terms_q = q.safe_probs(xp) * ratio_q
    return beta * terms_p + (1.0 - beta) * terms_q


@quiet
def renyi_div(
    p: Any,
    q: Any,
    /,
    *,
    alpha: float,
    kind: str = "probs",
    p_kind: str | None = None,
    q_kind: str | None = None,
    axis: int = -1,
    base: float | None = None,
    keepdims: bool = False,
    where: Any = None,
    normalize: bool = False,
) -> Any:
    r"""Rényi divergence of order ``alpha``.

    $$
    D_\alpha(P \,\|\, Q) = \frac{1}{\alpha - 1} \log \sum_x p(x)^\alpha q(x)^{1-\alpha}
    $$

    computed in log space as a logsumexp of α log p + (1 − α) log q over the support of p.
    α = 1 is exactly `kl_div` (the limit), α = ∞ is log max p/q. The divergence is
    nondecreasing in α.

    Args:
        p: first distribution P.
        q: second distribution Q, broadcastable against ``p``.
        alpha: the order, > 0; ``math.inf`` for the max-divergence.
        kind: see `kl_div` for this and every other option.

    Returns:
        The divergence, shaped and typed as for `kl_div`.

    References:
        van Erven and Harremoës (2014), "Rényi divergence and Kullback-Leibler divergence",
        IEEE Trans. Inf. Theory 60(7).

    Examples:
        >>> import math
        >>> import numpy as np
        >>> import kldiv
        >>> p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
        >>> float(kldiv.renyi_div(p, q, alpha=math.inf, base=2))
        1.0
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a positive number, got {alpha!r}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if alpha == 1:
        return kl_div(
            p, q, kind=kind, p_kind=p_kind, q_kind=q_kind, axis=axis, base=base,
            keepdims=keepdims, where=where, normalize=normalize,
        )  # fmt: skip
    p_kind, q_kind = _kinds(kind, p_kind, q_kind)
    prepared = prepare(
        [("p", p, p_kind), ("q", q, q_kind)],
        axis=axis,
        where=where,
        normalize=normalize,
        base=base,
        keepdims=keepdims,
    )
    xp, (side_p, side_q) = prepared.xp, prepared.sides
    minus_inf = xp.full_like(side_p.log, -_INF)
    if math.isinf(alpha):
        log_ratio = _log_ratio(xp, side_p, side_q)
        log_ratio = _keep_nan(xp, xp.where(side_p.support, log_ratio, minus_inf), side_q)
        return prepared.finish(xp.max(log_ratio, axis=prepared.axis, keepdims=keepdims))
    if abs(alpha - 1) < 0.5:
        # log Σ p^α q^(1−α) is ≈ (α − 1)·KL: as log1p(Σ p·expm1((α − 1)·log(p/q))) it keeps
        # its digits as α → 1, where the logsumexp below would lose all of them. (This takes
        # Σp = 1; a rounding error in Σp divided by α − 1 would otherwise swamp the result.)
        terms = side_p.safe_probs(xp) * xp.expm1((alpha - 1) * _log_ratio(xp, side_p, side_q))
        total = xp.sum(terms, axis=prepared.axis, keepdims=keepdims)
        return prepared.finish(xp.log1p(total) / (alpha - 1))
    # Outside the support of q the term is q^(1-α) · p^α: 0 for α < 1, +inf for α > 1.
    outside_q = xp.full_like(side_p.log, -_INF if alpha < 1 else _INF)
    inside = alpha * side_p.safe_log(xp) + (1 - alpha) * xp.where(
        side_q.support & side_p.support, side_q.log, xp.zeros_like(side_q.log)
    )
    exponent = xp.where(side_q.support, inside, outside_q)
    exponent = _keep_nan(xp, xp.where(side_p.support, exponent, minus_inf), side_q)
    total = logsumexp(xp, exponent, prepared.axis, keepdims=keepdims)
    return prepared.finish(total / (alpha - 1))
