r"""Closed forms of KL(P‖Q) between discrete distributions.

Every finite table goes through the core's :func:`kldiv.kl_div`, so that the conventions
0·log(0/q) = 0 and p·log(p/0) = +inf live in one place:

.. math::
    \mathrm{KL}(P\,\|\,Q) = \sum_x p(x) \log\frac{p(x)}{q(x)}.

Binomial and multinomial laws with the same number of trials are n independent draws, so their
KL is n times the KL of one draw. Poisson and geometric laws have infinite support and closed
forms of the series.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from kldiv import kl_div
from kldiv.distributions._registry import NoClosedForm, register_kl
from kldiv.distributions._types import Float64Array
from kldiv.distributions._types_discrete import Bernoulli, Binomial, Geometric, Poisson
from kldiv.distributions._types_multivariate import Categorical, Multinomial

__all__: list[str] = []


def _two_point_kl(p: Float64Array, q: Float64Array) -> Float64Array:
    p, q = np.broadcast_arrays(p, q)
    table_p = np.stack([p, 1 - p], axis=-1)
    table_q = np.stack([q, 1 - q], axis=-1)
    return np.asarray(kl_div(table_p, table_q), dtype=np.float64)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: Bernoulli, q: Bernoulli) -> Float64Array:
    return _two_point_kl(p.probs, q.probs)


@register_kl(Binomial, Binomial)
def _kl_binomial_binomial(p: Binomial, q: Binomial) -> Float64Array:
    if (p.total_count < q.total_count).any():
        raise NoClosedForm(
            "the closed form of KL between binomials needs total_count of P >= that of Q; "
            "for P with fewer trials use method='auto' (summation over the support)"
        )
    # More trials in P than in Q puts mass of P where Q has none.
    same = p.total_count * _two_point_kl(p.probs, q.probs)
    return np.asarray(np.where(p.total_count > q.total_count, np.inf, same))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: Categorical, q: Categorical) -> Float64Array:
    if p.probs.shape[-1] != q.probs.shape[-1]:
        raise ValueError(
            f"P has {p.probs.shape[-1]} categories and Q has {q.probs.shape[-1]}; pad the "
            "shorter table with zeros so that both index the same categories"
        )
    return np.asarray(kl_div(p.probs, q.probs), dtype=np.float64)


@register_kl(Multinomial, Multinomial)
def _kl_multinomial_multinomial(p: Multinomial, q: Multinomial) -> Float64Array:
    if not bool(np.all(p.total_count == q.total_count)):
        raise NoClosedForm(
            "KL between multinomials is implemented for the same total_count in P and Q only; "
            "use Categorical for one draw"
        )
    one_draw = _kl_categorical_categorical(Categorical(p.probs), Categorical(q.probs))
    return np.asarray(p.total_count * one_draw)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p: Poisson, q: Poisson) -> Float64Array:
    return np.asarray(special.xlogy(p.rate, p.rate / q.rate) - p.rate + q.rate)


@register_kl(Geometric, Geometric)
def _kl_geometric_geometric(p: Geometric, q: Geometric) -> Float64Array:
    # E_p[k] = (1 − p)/p failures before the first success.
    failures = (1 - p.probs) / p.probs
    with np.errstate(divide="ignore", invalid="ignore"):
        log_fail_ratio = np.log1p(-p.probs) - np.log1p(-q.probs)
        per_failure = np.where(p.probs == 1, 0.0, failures * log_fail_ratio)
    return np.asarray(np.log(p.probs / q.probs) + per_failure)


@register_kl(Bernoulli, Poisson)
def _kl_bernoulli_poisson(p: Bernoulli, q: Poisson) -> Float64Array:
    # Support {0, 1} lies inside Poisson's: −H(P) − (1 − p)·log q(0) − p·log q(1).
    negative_entropy = special.xlogy(p.probs, p.probs) + special.xlogy(1 - p.probs, 1 - p.probs)
    return np.asarray(negative_entropy + q.rate - p.probs * np.log(q.rate))
