"""Reading frozen ``scipy.stats`` distributions into kldiv's parametric types.

SciPy writes every univariate law as ``loc + scale · X`` around a standard form. Where kldiv's
type has its own location and scale (norm, laplace, cauchy, gumbel_r, uniform) both are read
into it. Elsewhere (expon, gamma, beta, halfnorm, pareto, lognorm, vonmises, the discrete laws)
the part of the affine map the type cannot hold is kept as ``shift`` and ``stretch``: KL is
invariant under one affine map applied to both P and Q, so a pair with equal shift and stretch
has the KL of its standard forms, and a pair with different ones is refused by the closed forms
(the numerical fallbacks then work on the SciPy objects themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from kldiv.distributions._types import (
    Beta,
    Cauchy,
    Distribution,
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
from kldiv.distributions._types_discrete import Bernoulli, Binomial, Geometric, Poisson
from kldiv.distributions._types_multivariate import (
    Categorical,
    Dirichlet,
    Multinomial,
    MultivariateNormal,
)

__all__ = ["Reading", "is_scipy", "read_scipy"]


@dataclass(frozen=True)
class Reading:
    """A distribution as ``shift + stretch · natural`` with ``natural`` one of kldiv's types."""

    natural: Distribution
    shift: Float64Array
    stretch: Float64Array
    table_values: Float64Array | None = None


def is_scipy(obj: Any) -> bool:
    """True for frozen scipy.stats distributions (univariate or multivariate)."""
    return isinstance(obj, (scipy.stats.rv_continuous, scipy.stats.rv_discrete)) or type(
        obj
    ).__module__.startswith("scipy.stats")


def _natural(
    name: str, shapes: tuple[Any, ...], loc: Any, scale: Any
) -> tuple[Distribution, Any, Any] | None:
    """The kldiv type for a scipy family, with the shift and stretch it leaves over."""
    if name == "norm":
        return Normal(loc, scale), 0.0, 1.0
    if name == "laplace":
        return Laplace(loc, scale), 0.0, 1.0
    if name == "cauchy":
        return Cauchy(loc, scale), 0.0, 1.0
    if name == "gumbel_r":
        return Gumbel(loc, scale), 0.0, 1.0
    if name == "uniform":
        return Uniform(loc, np.asarray(loc) + scale), 0.0, 1.0
    if name == "expon":
        return Exponential(1.0 / np.asarray(scale, dtype=np.float64)), loc, 1.0
    if name == "gamma":
        return Gamma(shapes[0], 1.0 / np.asarray(scale, dtype=np.float64)), loc, 1.0
    if name == "beta":
        return Beta(shapes[0], shapes[1]), loc, scale
    if name == "halfnorm":
        return HalfNormal(scale), loc, 1.0
    if name == "pareto":
        return Pareto(scale, shapes[0]), loc, 1.0
    if name == "lognorm":
        return LogNormal(np.log(scale), shapes[0]), loc, 1.0
    if name == "vonmises":
        return VonMises(np.asarray(loc) / scale, shapes[0]), 0.0, scale
    if name == "poisson":
        return Poisson(shapes[0]), loc, 1.0
    if name == "bernoulli":
        return Bernoulli(shapes[0]), loc, 1.0
    if name == "binom":
        return Binomial(shapes[0], shapes[1]), loc, 1.0
    if name == "geom":
        # scipy counts trials (support from 1); kldiv's Geometric counts failures (from 0).
        return Geometric(shapes[0]), np.asarray(loc) + 1.0, 1.0
    return None


def read_scipy(obj: Any) -> Reading | None:
    """Read a frozen scipy.stats distribution, or return ``None`` for a family without a type."""
    name = type(obj).__name__
    if name == "multivariate_normal_frozen":
        natural: Distribution = MultivariateNormal(obj.mean, obj.cov)
        return Reading(natural, np.zeros(()), np.ones(()))
    if name == "dirichlet_frozen":
        return Reading(Dirichlet(obj.alpha), np.zeros(()), np.ones(()))
    if name == "multinomial_frozen":
        return Reading(Multinomial(obj.n, obj.p), np.zeros(()), np.ones(()))
    if isinstance(obj, scipy.stats.rv_discrete) and hasattr(obj, "xk"):
        return _read_table(obj)
    dist = getattr(obj, "dist", None)
    if dist is None or not hasattr(dist, "_parse_args"):
        return None
    if hasattr(dist, "xk"):
        if obj.args or obj.kwds.get("loc", 0) != 0:
            return None
        return _read_table(dist)
    shapes, loc, scale = dist._parse_args(*obj.args, **obj.kwds)
    found = _natural(dist.name, tuple(shapes), loc, scale)
    if found is None:
        return None
    natural, shift, stretch = found
    return Reading(
        natural, np.asarray(shift, dtype=np.float64), np.asarray(stretch, dtype=np.float64)
    )


def _read_table(dist: Any) -> Reading:
    """A ``rv_discrete(values=(xk, pk))`` table, kept with its support values."""
    probs = Categorical(np.asarray(dist.pk, dtype=np.float64))
    values = np.asarray(dist.xk, dtype=np.float64)
    return Reading(probs, np.zeros(()), np.ones(()), table_values=values)


def align_tables(p: Reading, q: Reading) -> tuple[Categorical, Categorical]:
    """Put two discrete tables on the union of their support values (zeros where absent)."""
    if not (isinstance(p.natural, Categorical) and isinstance(q.natural, Categorical)):
        raise TypeError("align_tables takes two readings of rv_discrete(values=...) tables")
    if p.table_values is None or q.table_values is None:
        raise TypeError("align_tables takes two readings of rv_discrete(values=...) tables")
    values = np.union1d(p.table_values, q.table_values)
    probs_p = np.zeros(values.shape)
    probs_q = np.zeros(values.shape)
    np.add.at(probs_p, np.searchsorted(values, p.table_values), p.natural.probs)
    np.add.at(probs_q, np.searchsorted(values, q.table_values), q.natural.probs)
    return Categorical(probs_p), Categorical(probs_q)
