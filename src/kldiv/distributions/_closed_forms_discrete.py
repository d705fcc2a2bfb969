r"""Closed forms of KL(P‖Q) between discrete distributions.

Every finite table goes through the core's `kldiv.kl_div`, so that the conventions
0·log(0/q) = 0 and p·log(p/0) = +inf live in one place:

$$
\mathrm{KL}(P\,\|\,Q) = \sum_x p(x) \log\frac{p(x)}{q(x)}.
$$

Binomial and multinomial laws with the same number of trials are n independent draws, so their
KL is n times the KL of one draw. Poisson and geometric laws have infinite support and closed
forms of the series.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kldiv import kl_div
from kldiv.distributions._ops import broadcast, module, where, xlogy
from kldiv.distributions._registry import NoClosedForm, register_kl
from kldiv.distributions._types import numpy_view
from kldiv.distributions._types_discrete import Bernoulli, Binomial, Geometric, Poisson
from kldiv.distributions._types_multivariate import Categorical, Multinomial

__all__: list[str] = []


def _two_point_kl(p: Any, q: Any) -> Any:
    p, q = broadcast(p, q)
    xp = module(p, q)
    table_p = xp.stack([p, 1 - p], axis=-1)
    table_q = xp.stack([q, 1 - q], axis=-1)
    return kl_div(table_p, table_q)


def _log_prob_zero_binomial(count: Any, probs: Any) -> Any:
    """log of a binomial's probability of 0 successes, count·log(1 − probs) (0 when count = 0)."""
    return xlogy(count, 1 - probs)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p: Bernoulli, q: Bernoulli) -> Any:
    return _two_point_kl(p.probs, q.probs)


@register_kl(Binomial, Binomial)
def _kl_binomial_binomial(p: Binomial, q: Binomial) -> Any:
    if (numpy_view(p.total_count) < numpy_view(q.total_count)).any():
        raise NoClosedForm(
            "the closed form of KL between binomials needs total_count of P >= that of Q; "
            "for P with fewer trials use method='auto' (summation over the support)"
        )
    # n independent draws; n·KL of one draw, with 0·(+inf) = 0 for n = 0 (both point masses).
    one_draw = _two_point_kl(p.probs, q.probs)
    same = where(p.total_count == 0, 0.0, p.total_count * one_draw)
    # More trials in P than in Q puts mass of P where Q has none, unless P is the point mass
    # at 0 (probs 0), whose KL is −log q(0).
    at_zero = -_log_prob_zero_binomial(q.total_count, q.probs)
    more = where(p.probs == 0, at_zero, math.inf)
    return where(p.total_count > q.total_count, more, same)


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p: Categorical, q: Categorical) -> Any:
    if p.probs.shape[-1] != q.probs.shape[-1]:
        raise ValueError(
            f"P has {p.probs.shape[-1]} categories and Q has {q.probs.shape[-1]}; pad the "
            "shorter table with zeros so that both index the same categories"
        )
    return kl_div(*broadcast(p.probs, q.probs))


@register_kl(Multinomial, Multinomial)
def _kl_multinomial_multinomial(p: Multinomial, q: Multinomial) -> Any:
    if not bool(np.all(numpy_view(p.total_count) == numpy_view(q.total_count))):
        raise NoClosedForm(
            "KL between multinomials is implemented for the same total_count in P and Q only; "
            "use Categorical for one draw"
        )
    one_draw = _kl_categorical_categorical(Categorical(p.probs), Categorical(q.probs))
    return where(p.total_count == 0, 0.0, p.total_count * one_draw)


@register_kl(Poisson, Poisson)
def _kl_poisson_poisson(p: Poisson, q: Poisson) -> Any:
    # Rate 0 is the point mass at 0: KL(δ₀‖Poisson(μ)) = μ, and +inf from any rate > 0 to 0.
    # p·log(p/q) is written as xlogy(p, p) − xlogy(p, q), which is 0 at p = 0 whatever q.
    return xlogy(p.rate, p.rate) - xlogy(p.rate, q.rate) - p.rate + q.rate


@register_kl(Geometric, Geometric)
def _kl_geometric_geometric(p: Geometric, q: Geometric) -> Any:
    # E_p[k] = (1 − p)/p failures before the first success, each adding log((1 − p)/(1 − q)).
    # With probs 1 (the point mass at 0) there are no failures and that term is 0 whatever Q;
    # it is computed at a placeholder 1/2 there, so that no log(0) enters the gradient.
    xp = module(p.probs, q.probs)
    certain = p.probs == 1
    probs_p, probs_q = where(certain, 0.5, p.probs), where(certain, 0.5, q.probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        failures = (1 - probs_p) / probs_p * (xp.log1p(-probs_p) - xp.log1p(-probs_q))
    return xp.log(p.probs / q.probs) + where(certain, 0.0, failures)


@register_kl(Bernoulli, Poisson)
def _kl_bernoulli_poisson(p: Bernoulli, q: Poisson) -> Any:
    # Support {0, 1} lies inside Poisson's: −H(P) − (1 − p)·log q(0) − p·log q(1), with
    # log q(0) = −μ and log q(1) = log μ − μ (−inf for μ = 0 unless p = 0).
    negative_entropy = xlogy(p.probs, p.probs) + xlogy(1 - p.probs, 1 - p.probs)
    return negative_entropy + q.rate - xlogy(p.probs, q.rate)
