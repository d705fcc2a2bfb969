"""kldiv's discrete parametric distributions on the integers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.stats

from kldiv.distributions._types import (
    Distribution,
    Parameter,
    as_float64,
    check_probability,
    numpy_view,
)

__all__ = ["Bernoulli", "Binomial", "Geometric", "Poisson"]


@dataclass(frozen=True)
class Poisson(Distribution):
    """Poisson distribution with mean ``rate``; rate 0 is the point mass at 0.

    Examples:
        >>> Poisson([0.0, 2.5]).batch_shape
        (2,)
    """

    discrete: ClassVar[bool] = True
    rate: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", as_float64("rate", self.rate, nonnegative=True))

    def to_scipy(self) -> Any:
        return scipy.stats.poisson(self.rate)


@dataclass(frozen=True)
class Bernoulli(Distribution):
    """Bernoulli distribution on {0, 1} with P(1) = ``probs`` (0 and 1 are point masses)."""

    discrete: ClassVar[bool] = True
    probs: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "probs", check_probability("probs", as_float64("probs", self.probs))
        )

    def to_scipy(self) -> Any:
        return scipy.stats.bernoulli(self.probs)


@dataclass(frozen=True)
class Binomial(Distribution):
    """Binomial distribution: successes in ``total_count`` trials of probability ``probs``.

    ``probs`` 0 or 1 and ``total_count`` 0 are point masses (at 0, at ``total_count``).
    """

    discrete: ClassVar[bool] = True
    total_count: Parameter
    probs: Parameter

    def __post_init__(self) -> None:
        count = as_float64("total_count", self.total_count)
        counts = numpy_view(count)
        if ((counts < 0) | (counts != np.round(counts))).any():
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

    ``probs`` 1 is the point mass at 0; ``probs`` 0 is no distribution and is refused.
    SciPy's ``geom`` counts trials instead (support starting at 1); it is read as this type
    shifted by one, so KL between two ``geom`` objects is the same number.
    """

    discrete: ClassVar[bool] = True
    probs: Parameter

    def __post_init__(self) -> None:
        probs = check_probability("probs", as_float64("probs", self.probs))
        if (numpy_view(probs) == 0).any():
            raise ValueError(
                "Geometric probs has the entry 0.0; it must be > 0 (with probs 0 no success "
                "ever comes, which is no distribution on the integers)"
            )
        object.__setattr__(self, "probs", probs)

    def to_scipy(self) -> Any:
        return scipy.stats.geom(self.probs, loc=-1)
