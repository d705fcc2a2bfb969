"""kldiv's discrete parametric distributions on the integers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.stats

from kldiv.distributions._types import Distribution, Float64Array, as_float64, check_probability

__all__ = ["Bernoulli", "Binomial", "Geometric", "Poisson"]


@dataclass(frozen=True)
class Poisson(Distribution):
    """Poisson distribution with mean ``rate``."""

    discrete: ClassVar[bool] = True
    rate: Float64Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", as_float64("rate", self.rate, positive=True))

    def to_scipy(self) -> Any:
        return scipy.stats.poisson(self.rate)


@dataclass(frozen=True)
class Bernoulli(Distribution):
    """Bernoulli distribution on {0, 1} with P(1) = ``probs``."""

    discrete: ClassVar[bool] = True
    probs: Float64Array

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "probs", check_probability("probs", as_float64("probs", self.probs))
        )

    def to_scipy(self) -> Any:
        return scipy.stats.bernoulli(self.probs)


@dataclass(frozen=True)
class Binomial(Distribution):
    """Binomial distribution: successes in ``total_count`` trials of probability ``probs``."""

    discrete: ClassVar[bool] = True
    total_count: Float64Array
    probs: Float64Array

    def __post_init__(self) -> None:
        count = as_float64("total_count", self.total_count)
        if ((count < 0) | (count != np.round(count))).any():
            raise ValueError("Binomial total_count must hold non-negative integers")
        object.__setattr__(self, "total_count", count)
        object.__setattr__(
            self, "probs", check_probability("probs", as_float64("probs", self.probs))
        )

    def to_scipy(self) -> Any:
        return scipy.stats.binom(self.total_count, self.probs)


@dataclass(frozen=True)
class Geometric(Distribution):
    """Number of failures before the first success, P(k) = (1 − probs)^k · probs for k ≥ 0.

    SciPy's ``geom`` counts trials instead (support starting at 1); it is read as this type
    shifted by one, so KL between two ``geom`` objects is the same number.
    """

    discrete: ClassVar[bool] = True
    probs: Float64Array

    def __post_init__(self) -> None:
        probs = check_probability("probs", as_float64("probs", self.probs))
        if (probs == 0).any():
            raise ValueError("Geometric probs must be > 0")
        object.__setattr__(self, "probs", probs)

    def to_scipy(self) -> Any:
        return scipy.stats.geom(self.probs, loc=-1)
