"""Numerical KL when no closed form applies: quadrature (or summation) in 1-D, else Monte Carlo.

Both work on "densities": anything with ``logpdf``/``logpmf`` and ``rvs`` in the manner of a
frozen ``scipy.stats`` object. kldiv's types provide one through ``to_scipy()``; torch
distributions are wrapped so that their ``sample``/``log_prob`` run under a fixed seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import scipy.integrate

from kldiv._result import KLResult
from kldiv.distributions._types import Distribution, Float64Array
from kldiv.estimate._log_ratio import mean_and_stderr

__all__ = ["element", "log_density", "monte_carlo", "quadrature", "sample", "support"]

# Probability mass left in each tail when summing over an infinite discrete support.
_TAIL_MASS = 1e-16
_MAX_TERMS = 10_000_000
# Quantiles of P where the integral is split, so that quad sees where P's mass is.
_BREAKS = (1e-9, 1e-3, 0.05, 0.25, 0.5, 0.75, 0.95, 1 - 1e-3, 1 - 1e-9)


def scipy_like(obj: Any) -> Any:
    """kldiv types become their scipy equivalents; other objects are used as they are."""
    return obj.detached().to_scipy() if isinstance(obj, Distribution) else obj


def is_discrete(obj: Any) -> bool:
    density = scipy_like(obj)
    flag = getattr(density, "discrete", None)
    if isinstance(flag, bool):
        return flag
    return hasattr(density, "logpmf") and not hasattr(density, "logpdf")


def log_density(obj: Any, x: Any) -> Float64Array:
    """log p(x) for a scipy-like object or a torch distribution (in float64)."""
    density = scipy_like(obj)
    if hasattr(density, "log_prob"):
        import torch

        dtype = next((v.dtype for v in vars(density).values() if isinstance(v, torch.Tensor)), None)
        value = density.log_prob(torch.as_tensor(x, dtype=dtype))
        return np.asarray(value.detach().cpu().double().numpy())
    with np.errstate(divide="ignore"):
        if hasattr(density, "logpdf"):
            return np.asarray(density.logpdf(x), dtype=np.float64)
        return np.asarray(density.logpmf(x), dtype=np.float64)


def sample(obj: Any, n: int, rng: np.random.Generator, batch_shape: tuple[int, ...]) -> Any:
    """n draws of P, shape (n, *batch_shape, *event_shape)."""
    density = scipy_like(obj)
    if hasattr(density, "log_prob"):
        import torch

        generator_seed = int(rng.integers(2**63 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator_seed)
            return density.sample((n,)).detach().cpu().numpy()
    if getattr(density, "draws_batch", False) or not hasattr(density, "dist"):
        # kldiv's own densities and scipy's multivariate ones add the batch axes themselves.
        return density.rvs(size=n, random_state=rng)
    return density.rvs(size=(n, *batch_shape), random_state=rng)


def support(obj: Any) -> tuple[Float64Array, Float64Array] | None:
    """(low, high) of a univariate density, or ``None`` when unknown."""
    density = scipy_like(obj)
    if density is None or not hasattr(density, "support"):
        return None
    try:
        low, high = density.support()
    except TypeError:
        return None
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)


def element(obj: Any, index: tuple[int, ...], batch_shape: tuple[int, ...]) -> Any:
    """The distribution at one batch ``index`` of a batched kldiv type or frozen scipy object."""
    if not batch_shape:
        return obj
    if isinstance(obj, Distribution):
        picked = {
            name: np.broadcast_to(
                value, (*batch_shape, *np.shape(value)[np.ndim(value) - obj.event_ndim :])
            )[index]
            for name, value in obj.parameters().items()
        }
        return dataclasses.replace(obj, **picked)  # type: ignore[type-var]
    args = [np.broadcast_to(a, batch_shape)[index] for a in obj.args]
    kwds = {key: np.broadcast_to(value, batch_shape)[index] for key, value in obj.kwds.items()}
    return obj.dist(*args, **kwds)


def quadrature(p: Any, q: Any, batch_shape: tuple[int, ...]) -> KLResult:
    """KL(P‖Q) by adaptive quadrature (continuous) or summation (discrete) over P's support."""
    values = np.empty(batch_shape)
    bounds = np.empty(batch_shape)
    for index in np.ndindex(*batch_shape):
        p_i, q_i = element(p, index, batch_shape), element(q, index, batch_shape)
        integrate = _sum_discrete if is_discrete(p_i) else _integrate_continuous
        values[index], bounds[index] = integrate(scipy_like(p_i), scipy_like(q_i))
    value: Any = float(values) if not batch_shape else values
    bound: Any = float(bounds) if not batch_shape else bounds
    stderr: Any = 0.0 if not batch_shape else np.zeros(batch_shape)
    return KLResult(value=value, stderr=stderr, method="quadrature", error_bound=bound)


def _integrand(p: Any, q: Any, x: float) -> float:
    log_p = float(log_density(p, x))
    if log_p == -math.inf:
        return 0.0
    log_q = float(log_density(q, x))
    return math.exp(log_p) * (log_p - log_q)


def _integrate_continuous(p: Any, q: Any) -> tuple[float, float]:
    low, high = (float(v) for v in support(p) or (-math.inf, math.inf))
    if hasattr(p, "ppf"):
        inner = [float(b) for b in np.unique(p.ppf(_BREAKS)) if low < b < high]
    else:
        inner = [0.0] if low < 0.0 < high else []
    edges = [low, *inner, high]
    total, error = 0.0, 0.0
    for left, right in itertools.pairwise(edges):
        piece, piece_error = scipy.integrate.quad(
            lambda x: _integrand(p, q, x), left, right, limit=200, epsabs=1e-13, epsrel=1e-12
        )
        total += piece
        error += piece_error
    if not math.isfinite(total):
        return math.inf, 0.0
    return total, error


def _sum_discrete(p: Any, q: Any) -> tuple[float, float]:
    low, high = (float(v) for v in support(p) or (0.0, math.inf))
    left_out = 0.0
    with np.errstate(all="ignore"):
        if not math.isfinite(low):
            low = float(p.ppf(_TAIL_MASS))
            left_out += float(p.cdf(low - 1))
        if not math.isfinite(high):
            high = float(p.isf(_TAIL_MASS))
            if not math.isfinite(high):
                # isf can fail far in the tail; widen until the tail mass is small enough.
                high = low + 64.0
                while p.sf(high) > _TAIL_MASS and high - low <= _MAX_TERMS:
                    high = low + 2 * (high - low)
            left_out += float(p.sf(high))
    if high - low > _MAX_TERMS:
        raise ValueError(
            f"P's support has {high - low:.3g} points of non-negligible mass, too many to sum; "
            "use method='monte_carlo'"
        )
    points = np.arange(low, high + 1)
    log_p = log_density(p, points)
    log_q = log_density(q, points)
    mass = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(mass > 0, mass * (log_p - log_q), 0.0)
    return float(np.sum(terms)), left_out


def monte_carlo(
    p: Any,
    q: Any,
    batch_shape: tuple[int, ...],
    *,
    n_samples: int,
    seed: Any,
    k3_applies: bool,
) -> KLResult:
    """KL(P‖Q) as a sample mean over draws of P, with its standard error.

    Uses k3 = (r − 1) − log r when Q's support lies inside P's (so that E_P[r] = 1) and the
    k3 terms have the smaller sample variance, and k1 = −log r otherwise; see
    `kldiv.estimate.log_ratio`.
    """
    rng = np.random.default_rng(seed)
    draws = sample(p, n_samples, rng, batch_shape)
    log_r = log_density(q, draws) - log_density(p, draws)
    estimator = "k1"
    value, stderr = mean_and_stderr(log_r, "k1")
    if k3_applies:
        value_k3, stderr_k3 = mean_and_stderr(log_r, "k3")
        if np.all(np.asarray(stderr_k3) <= np.asarray(stderr)):
            estimator, value, stderr = "k3", value_k3, stderr_k3
    return KLResult(
        value=value,
        stderr=stderr,
        method="monte_carlo",
        n=n_samples,
        params={"estimator": estimator, "seed": seed if isinstance(seed, int) else None},
    )
