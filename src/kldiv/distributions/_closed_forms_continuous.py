r"""Closed forms of KL(P‖Q) between univariate continuous distributions, in float64.

Same-family pairs are the formulas that ``torch.distributions.kl`` registers (each is
E_P[log p − log q] in closed form), written once for NumPy (float64) and torch tensors (in the autograd graph) alike.
Cross-family pairs with Q normal, exponential or uniform use

$$
\mathrm{KL}(P\,\|\,Q) = -H(P) - \mathbb{E}_P[\log q(X)],
$$

where E_P[log q] needs only the mean, variance and entropy of P. Pairs whose supports leave
part of P's mass outside Q's support are +inf; ``kl`` applies that rule to every univariate pair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kldiv import gaussian_kl
from kldiv.distributions._ops import (
    betaln,
    broadcast,
    digamma,
    gammaln,
    i1_over_i0,
    log_i0,
    module,
    where,
)
from kldiv.distributions._registry import register_kl
from kldiv.distributions._types import (
    Beta,
    Cauchy,
    Exponential,
    Gamma,
    Gumbel,
    HalfNormal,
    Laplace,
    LogNormal,
    Normal,
    Pareto,
    Uniform,
    VonMises,
)

__all__: list[str] = []

_EULER_GAMMA = float(np.euler_gamma)


def _normal_kl(loc_p: Any, scale_p: Any, loc_q: Any, scale_q: Any) -> Any:
    """Univariate normal KL through the core's diagonal Gaussian formula (one axis of length 1)."""
    xp = module(loc_p, scale_p, loc_q, scale_q)
    arrays = broadcast(loc_p, 2 * xp.log(scale_p), loc_q, 2 * xp.log(scale_q))
    return gaussian_kl(*(a[..., None] for a in arrays))


@register_kl(Normal, Normal)
def _kl_normal_normal(p: Normal, q: Normal) -> Any:
    return _normal_kl(p.loc, p.scale, q.loc, q.scale)


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p: LogNormal, q: LogNormal) -> Any:
    # KL is invariant under the common bijection exp(·).
    return _normal_kl(p.loc, p.scale, q.loc, q.scale)


@register_kl(HalfNormal, HalfNormal)
def _kl_halfnormal_halfnormal(p: HalfNormal, q: HalfNormal) -> Any:
    # Folding both N(0, σ²) at zero doubles both densities on [0, ∞); the ratio is unchanged.
    return _normal_kl(0.0 * p.scale, p.scale, 0.0 * q.scale, q.scale)


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p: Exponential, q: Exponential) -> Any:
    xp = module(p.rate, q.rate)
    ratio = q.rate / p.rate
    return ratio - 1 - xp.log(ratio)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p: Gamma, q: Gamma) -> Any:
    xp = module(p.rate, q.rate)
    return (
        (p.shape - q.shape) * digamma(p.shape)
        - gammaln(p.shape)
        + gammaln(q.shape)
        + q.shape * (xp.log(p.rate) - xp.log(q.rate))
        + p.shape * (q.rate / p.rate - 1)
    )


@register_kl(Beta, Beta)
def _kl_beta_beta(p: Beta, q: Beta) -> Any:
    total_p = p.a + p.b
    return (
        betaln(q.a, q.b)
        - betaln(p.a, p.b)
        + (p.a - q.a) * digamma(p.a)
        + (p.b - q.b) * digamma(p.b)
        + (q.a - p.a + q.b - p.b) * digamma(total_p)
    )


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p: Laplace, q: Laplace) -> Any:
    xp = module(p.loc, q.loc, p.scale, q.scale)
    distance = xp.abs(p.loc - q.loc)
    return (
        xp.log(q.scale / p.scale)
        + distance / q.scale
        + (p.scale / q.scale) * xp.exp(-distance / p.scale)
        - 1
    )


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p: Uniform, q: Uniform) -> Any:
    xp = module(p.low, q.low)
    inside = (q.low <= p.low) & (p.high <= q.high)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = xp.log((q.high - q.low) / (p.high - p.low))
    return where(inside, value, math.inf)


@register_kl(Cauchy, Cauchy)
def _kl_cauchy_cauchy(p: Cauchy, q: Cauchy) -> Any:
    # Chyzak & Nielsen (2019), "A closed-form formula for the Kullback-Leibler divergence
    # between Cauchy distributions", arXiv:1905.10965.
    xp = module(p.loc, q.loc, p.scale, q.scale)
    numerator = (p.scale + q.scale) ** 2 + (p.loc - q.loc) ** 2
    return xp.log(numerator) - xp.log(4 * p.scale * q.scale)


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p: Gumbel, q: Gumbel) -> Any:
    xp = module(p.loc, q.loc, p.scale, q.scale)
    ratio = p.scale / q.scale
    shift = (p.loc - q.loc) / q.scale
    return (
        -xp.log(ratio)
        + shift
        + ratio * _EULER_GAMMA
        + xp.exp(-shift + gammaln(1 + ratio))
        - (1 + _EULER_GAMMA)
    )


@register_kl(Pareto, Pareto)
def _kl_pareto_pareto(p: Pareto, q: Pareto) -> Any:
    xp = module(p.scale, q.scale, p.alpha, q.alpha)
    value = xp.log(p.alpha / q.alpha) + q.alpha * xp.log(p.scale / q.scale) + q.alpha / p.alpha - 1
    return where(p.scale >= q.scale, value, math.inf)


@register_kl(VonMises, VonMises)
def _kl_vonmises_vonmises(p: VonMises, q: VonMises) -> Any:
    # At concentration 0 (the circular uniform) I₁/I₀ = 0 and log I₀ = 0: the formula holds.
    xp = module(p.loc, q.loc, p.concentration, q.concentration)
    return (
        log_i0(q.concentration)
        - log_i0(p.concentration)
        + i1_over_i0(p.concentration) * (p.concentration - q.concentration * xp.cos(p.loc - q.loc))
    )


_MOMENT_FAMILIES = (
    Beta,
    Cauchy,
    Exponential,
    Gamma,
    Gumbel,
    HalfNormal,
    Laplace,
    LogNormal,
    Pareto,
    Uniform,
)


def _moments(p: Any) -> tuple[Any, Any, Any]:
    """Entropy, mean and variance of P: torch's own for tensor parameters, else SciPy's."""
    if p.holds_tensors:
        from kldiv.distributions._torch import to_torch

        law = to_torch(p)
        return law.entropy(), law.mean, law.variance
    frozen = p.to_scipy()
    with np.errstate(all="ignore"):
        return (
            np.asarray(frozen.entropy(), dtype=np.float64),
            np.asarray(frozen.mean(), dtype=np.float64),
            np.asarray(frozen.var(), dtype=np.float64),
        )


def _finite_or_inf(value: Any) -> Any:
    # Infinite or undefined moments (Cauchy, heavy Pareto) make E_P[log q] = −inf.
    xp = module(value)
    return where(xp.isfinite(value), value, math.inf)


def _kl_any_normal(p: Any, q: Normal) -> Any:
    entropy, mean, variance = _moments(p)
    xp = module(entropy, q.scale)
    with np.errstate(invalid="ignore"):
        value = (
            -entropy
            + 0.5 * xp.log(2 * math.pi * q.scale**2)
            + (variance + (mean - q.loc) ** 2) / (2 * q.scale**2)
        )
    return _finite_or_inf(value)


def _kl_any_exponential(p: Any, q: Exponential) -> Any:
    entropy, mean, _ = _moments(p)
    xp = module(entropy, q.rate)
    with np.errstate(invalid="ignore"):
        value = -entropy - xp.log(q.rate) + q.rate * mean
    return _finite_or_inf(value)


def _kl_any_uniform(p: Any, q: Uniform) -> Any:
    entropy, _, _ = _moments(p)
    xp = module(entropy, q.low)
    return -entropy + xp.log(q.high - q.low)


for _family in _MOMENT_FAMILIES:
    register_kl(_family, Normal)(_kl_any_normal)
    if _family is not Exponential:
        register_kl(_family, Exponential)(_kl_any_exponential)
    if _family is not Uniform:
        register_kl(_family, Uniform)(_kl_any_uniform)
