r"""Closed forms of KL(P‖Q) between univariate continuous distributions, in float64.

Same-family pairs are the formulas that ``torch.distributions.kl`` registers (each is
E_P[log p − log q] in closed form), written with ``gammaln``/``digamma``/``ive`` in float64.
Cross-family pairs with Q normal, exponential or uniform use

.. math::
    \mathrm{KL}(P\,\|\,Q) = -H(P) - \mathbb{E}_P[\log q(X)],

where E_P[log q] needs only the mean, variance and entropy of P. Pairs whose supports leave
part of P's mass outside Q's support are +inf; ``kl`` applies that rule to every univariate pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from kldiv import gaussian_kl
from kldiv.distributions._registry import register_kl
from kldiv.distributions._types import (
    Beta,
    Cauchy,
    Exponential,
    Float64Array,
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


def _normal_kl(loc_p: Any, scale_p: Any, loc_q: Any, scale_q: Any) -> Float64Array:
    """Univariate normal KL through the core's diagonal Gaussian formula (one axis of length 1)."""
    arrays = np.broadcast_arrays(
        np.asarray(loc_p, dtype=np.float64),
        2 * np.log(scale_p),
        np.asarray(loc_q, dtype=np.float64),
        2 * np.log(scale_q),
    )
    return np.asarray(gaussian_kl(*(a[..., None] for a in arrays)), dtype=np.float64)


@register_kl(Normal, Normal)
def _kl_normal_normal(p: Normal, q: Normal) -> Float64Array:
    return _normal_kl(p.loc, p.scale, q.loc, q.scale)


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p: LogNormal, q: LogNormal) -> Float64Array:
    # KL is invariant under the common bijection exp(·).
    return _normal_kl(p.loc, p.scale, q.loc, q.scale)


@register_kl(HalfNormal, HalfNormal)
def _kl_halfnormal_halfnormal(p: HalfNormal, q: HalfNormal) -> Float64Array:
    # Folding both N(0, σ²) at zero doubles both densities on [0, ∞); the ratio is unchanged.
    return _normal_kl(0.0, p.scale, 0.0, q.scale)


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p: Exponential, q: Exponential) -> Float64Array:
    ratio = q.rate / p.rate
    return np.asarray(ratio - 1 - np.log(ratio))


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p: Gamma, q: Gamma) -> Float64Array:
    return np.asarray(
        (p.shape - q.shape) * special.digamma(p.shape)
        - special.gammaln(p.shape)
        + special.gammaln(q.shape)
        + q.shape * (np.log(p.rate) - np.log(q.rate))
        + p.shape * (q.rate / p.rate - 1)
    )


@register_kl(Beta, Beta)
def _kl_beta_beta(p: Beta, q: Beta) -> Float64Array:
    total_p = p.a + p.b
    return np.asarray(
        special.betaln(q.a, q.b)
        - special.betaln(p.a, p.b)
        + (p.a - q.a) * special.digamma(p.a)
        + (p.b - q.b) * special.digamma(p.b)
        + (q.a - p.a + q.b - p.b) * special.digamma(total_p)
    )


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p: Laplace, q: Laplace) -> Float64Array:
    distance = np.abs(p.loc - q.loc)
    return np.asarray(
        np.log(q.scale / p.scale)
        + distance / q.scale
        + (p.scale / q.scale) * np.exp(-distance / p.scale)
        - 1
    )


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p: Uniform, q: Uniform) -> Float64Array:
    inside = (q.low <= p.low) & (p.high <= q.high)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.log((q.high - q.low) / (p.high - p.low))
    return np.asarray(np.where(inside, value, np.inf))


@register_kl(Cauchy, Cauchy)
def _kl_cauchy_cauchy(p: Cauchy, q: Cauchy) -> Float64Array:
    # Chyzak & Nielsen (2019), "A closed-form formula for the Kullback-Leibler divergence
    # between Cauchy distributions", arXiv:1905.10965.
    numerator = (p.scale + q.scale) ** 2 + (p.loc - q.loc) ** 2
    return np.asarray(np.log(numerator) - np.log(4 * p.scale * q.scale))


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p: Gumbel, q: Gumbel) -> Float64Array:
    ratio = p.scale / q.scale
    shift = (p.loc - q.loc) / q.scale
    return np.asarray(
        -np.log(ratio)
        + shift
        + ratio * _EULER_GAMMA
        + np.exp(-shift + special.gammaln(1 + ratio))
        - (1 + _EULER_GAMMA)
    )


@register_kl(Pareto, Pareto)
def _kl_pareto_pareto(p: Pareto, q: Pareto) -> Float64Array:
    value = np.log(p.alpha / q.alpha) + q.alpha * np.log(p.scale / q.scale) + q.alpha / p.alpha - 1
    return np.asarray(np.where(p.scale >= q.scale, value, np.inf))


@register_kl(VonMises, VonMises)
def _kl_vonmises_vonmises(p: VonMises, q: VonMises) -> Float64Array:
    # log I0(κ) = log ive(0, κ) + κ keeps large concentrations finite.
    log_i0_p = np.log(special.ive(0, p.concentration)) + p.concentration
    log_i0_q = np.log(special.ive(0, q.concentration)) + q.concentration
    mean_resultant = special.ive(1, p.concentration) / special.ive(0, p.concentration)
    return np.asarray(
        log_i0_q
        - log_i0_p
        + mean_resultant * (p.concentration - q.concentration * np.cos(p.loc - q.loc))
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


def _moments(p: Any) -> tuple[Float64Array, Float64Array, Float64Array]:
    frozen = p.to_scipy()
    with np.errstate(all="ignore"):
        return (
            np.asarray(frozen.entropy(), dtype=np.float64),
            np.asarray(frozen.mean(), dtype=np.float64),
            np.asarray(frozen.var(), dtype=np.float64),
        )


def _kl_any_normal(p: Any, q: Normal) -> Float64Array:
    entropy, mean, variance = _moments(p)
    with np.errstate(invalid="ignore"):
        value = (
            -entropy
            + 0.5 * np.log(2 * np.pi * q.scale**2)
            + (variance + (mean - q.loc) ** 2) / (2 * q.scale**2)
        )
    # Infinite or undefined variance (Cauchy, heavy Pareto) makes E_P[log q] = −inf.
    return np.asarray(np.where(np.isfinite(value), value, np.inf))


def _kl_any_exponential(p: Any, q: Exponential) -> Float64Array:
    entropy, mean, _ = _moments(p)
    with np.errstate(invalid="ignore"):
        value = -entropy - np.log(q.rate) + q.rate * mean
    return np.asarray(np.where(np.isfinite(value), value, np.inf))


def _kl_any_uniform(p: Any, q: Uniform) -> Float64Array:
    entropy, _, _ = _moments(p)
    return np.asarray(-entropy + np.log(q.high - q.low))


for _family in _MOMENT_FAMILIES:
    register_kl(_family, Normal)(_kl_any_normal)
    if _family is not Exponential:
        register_kl(_family, Exponential)(_kl_any_exponential)
    if _family is not Uniform:
        register_kl(_family, Uniform)(_kl_any_uniform)
