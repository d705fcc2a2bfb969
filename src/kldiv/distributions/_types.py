"""kldiv's parametric distributions: small frozen records of float64 NumPy parameters.

SciPy and PyTorch objects are read into these types before dispatch, so that each closed form
is written once, against one parametrization. Parameters broadcast against each other; the
broadcast shape (without the event axis) is the batch shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from kldiv.distributions._ops import is_tensor

__all__ = [
    "Beta",
    "Cauchy",
    "Distribution",
    "Exponential",
    "Gamma",
    "Gumbel",
    "HalfNormal",
    "Laplace",
    "LogNormal",
    "Normal",
    "Pareto",
    "Uniform",
    "VonMises",
]

Float64Array = NDArray[np.float64]
# A parameter of kldiv's types: a float64 array, or a torch tensor read from torch.distributions.
Parameter = Any


def numpy_view(value: Any) -> Float64Array:
    """A float64 NumPy copy of an array or (detached) tensor, for checks and SciPy calls."""
    if is_tensor(value):
        return np.asarray(value.detach().cpu().double().numpy(), dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def as_float64(
    name: str, value: Any, *, positive: bool = False, nonnegative: bool = False, hint: str = ""
) -> Any:
    """Read a parameter, refusing NaN and (optionally) negative or zero entries.

    NumPy input and Python numbers become float64 arrays. A torch tensor is returned as it is
    (a floating tensor, still in the autograd graph), so that closed forms of torch inputs stay
    differentiable; only its values are checked.
    """
    if is_tensor(value):
        if not value.is_floating_point():
            import torch

            value = value.to(torch.get_default_dtype())
        array = numpy_view(value)
    else:
        value = array = np.asarray(value, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"parameter {name} contains NaN; parameters must be numbers")
    if positive and (array <= 0).any():
        bad = array[array <= 0].flat[0]
        raise ValueError(f"parameter {name} has the entry {bad}; it must be > 0{hint}")
    if nonnegative and (array < 0).any():
        bad = array[array < 0].flat[0]
        raise ValueError(f"parameter {name} has the entry {bad}; it must be >= 0")
    return value


def check_probability(name: str, value: Any) -> Any:
    """Refuse probabilities outside [0, 1]."""
    array = numpy_view(value)
    if ((array < 0) | (array > 1)).any():
        bad = array[(array < 0) | (array > 1)].flat[0]
        raise ValueError(f"parameter {name} has the entry {bad}; probabilities must lie in [0, 1]")
    return value


# Appended to the refusal of a zero scale: why the edge of the family is not accepted.
POINT_MASS = (
    " (a zero width is a point mass, which has no density; SciPy and torch refuse it too. "
    "KL from a point mass to any law with a density is +inf)"
)


class Distribution:
    """Base class of kldiv's parametric distributions.

    Subclasses are frozen dataclasses whose fields are float64 arrays. ``event_ndim`` is the
    number of trailing axes that make up one draw (0 for scalars, 1 for vectors).
    """

    event_ndim: ClassVar[int] = 0
    discrete: ClassVar[bool] = False

    def parameters(self) -> dict[str, Float64Array]:
        """Return the parameters by name."""
        return {item.name: getattr(self, item.name) for item in fields(self)}  # type: ignore[arg-type]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Broadcast shape of the parameters without the event axes."""
        shapes = [
            np.shape(value)[: np.ndim(value) - self.event_ndim]
            for value in self.parameters().values()
        ]
        return tuple(np.broadcast_shapes(*shapes))

    @property
    def holds_tensors(self) -> bool:
        """Whether the parameters are torch tensors (read from ``torch.distributions``)."""
        return any(is_tensor(value) for value in self.parameters().values())

    def detached(self) -> Distribution:
        """The same distribution with float64 NumPy parameters (itself when it has them)."""
        if not self.holds_tensors:
            return self
        arrays = {name: numpy_view(value) for name, value in self.parameters().items()}
        return dataclasses.replace(self, **arrays)  # type: ignore[type-var]

    def as_tensors(self, like: Any) -> Distribution:
        """The same distribution with tensor parameters of ``like``'s dtype and device."""
        import torch

        if all(is_tensor(value) for value in self.parameters().values()):
            return self
        tensors = {
            name: value
            if is_tensor(value)
            else torch.as_tensor(value, dtype=like.dtype, device=like.device)
            for name, value in self.parameters().items()
        }
        return dataclasses.replace(self, **tensors)  # type: ignore[type-var]

    def to_scipy(self) -> Any:
        """Return the equivalent frozen ``scipy.stats`` distribution (broadcasting parameters)."""
        raise TypeError(f"{type(self).__name__} has no scipy.stats equivalent")


@dataclass(frozen=True)
class _LocationScale(Distribution):
    """A family with a real ``loc`` and a positive ``scale``, checked and stored as float64."""

    loc: Parameter
    scale: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "loc", as_float64("loc", self.loc))
        object.__setattr__(
            self, "scale", as_float64("scale", self.scale, positive=True, hint=POINT_MASS)
        )


@dataclass(frozen=True)
class Normal(_LocationScale):
    """Normal distribution N(loc, scale²).

    Examples:
        >>> Normal(0.0, [1.0, 2.0]).batch_shape
        (2,)
    """

    def to_scipy(self) -> Any:
        return scipy.stats.norm(self.loc, self.scale)


@dataclass(frozen=True)
class LogNormal(_LocationScale):
    """Distribution of exp(X) for X ~ N(loc, scale²) (scipy: ``lognorm(scale, scale=exp(loc))``)."""

    def to_scipy(self) -> Any:
        return scipy.stats.lognorm(self.scale, scale=np.exp(self.loc))


@dataclass(frozen=True)
class HalfNormal(Distribution):
    """Distribution of |X| for X ~ N(0, scale²)."""

    scale: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "scale", as_float64("scale", self.scale, positive=True, hint=POINT_MASS)
        )

    def to_scipy(self) -> Any:
        return scipy.stats.halfnorm(scale=self.scale)


@dataclass(frozen=True)
class Laplace(_LocationScale):
    """Laplace distribution with density exp(−|x − loc| / scale) / (2 scale)."""

    def to_scipy(self) -> Any:
        return scipy.stats.laplace(self.loc, self.scale)


@dataclass(frozen=True)
class Cauchy(_LocationScale):
    """Cauchy distribution with median ``loc`` and half-width ``scale``."""

    def to_scipy(self) -> Any:
        return scipy.stats.cauchy(self.loc, self.scale)


@dataclass(frozen=True)
class Gumbel(_LocationScale):
    """Gumbel (maximum) distribution, scipy's ``gumbel_r(loc, scale)``."""

    def to_scipy(self) -> Any:
        return scipy.stats.gumbel_r(self.loc, self.scale)


@dataclass(frozen=True)
class Uniform(Distribution):
    """Uniform distribution on [low, high]."""

    low: Parameter
    high: Parameter

    def __post_init__(self) -> None:
        low, high = as_float64("low", self.low), as_float64("high", self.high)
        if (numpy_view(high) <= numpy_view(low)).any():
            raise ValueError(f"Uniform needs low < high in every entry{POINT_MASS}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def to_scipy(self) -> Any:
        return scipy.stats.uniform(self.low, self.high - self.low)


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential distribution with density rate·exp(−rate·x) on x ≥ 0."""

    rate: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", as_float64("rate", self.rate, positive=True))

    def to_scipy(self) -> Any:
        return scipy.stats.expon(scale=1.0 / self.rate)


@dataclass(frozen=True)
class Gamma(Distribution):
    """Gamma distribution with shape α and rate β: density β^α x^(α−1) e^(−βx) / Γ(α)."""

    shape: Parameter
    rate: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", as_float64("shape", self.shape, positive=True))
        object.__setattr__(self, "rate", as_float64("rate", self.rate, positive=True))

    def to_scipy(self) -> Any:
        return scipy.stats.gamma(self.shape, scale=1.0 / self.rate)


@dataclass(frozen=True)
class Beta(Distribution):
    """Beta distribution on [0, 1] with density x^(a−1) (1−x)^(b−1) / B(a, b)."""

    a: Parameter
    b: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", as_float64("a", self.a, positive=True))
        object.__setattr__(self, "b", as_float64("b", self.b, positive=True))

    def to_scipy(self) -> Any:
        return scipy.stats.beta(self.a, self.b)


@dataclass(frozen=True)
class Pareto(Distribution):
    """Pareto distribution with density α·scale^α / x^(α+1) on x ≥ scale."""

    scale: Parameter
    alpha: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", as_float64("scale", self.scale, positive=True))
        object.__setattr__(self, "alpha", as_float64("alpha", self.alpha, positive=True))

    def to_scipy(self) -> Any:
        return scipy.stats.pareto(self.alpha, scale=self.scale)


@dataclass(frozen=True)
class VonMises(Distribution):
    """Von Mises distribution on the circle, density exp(κ cos(x − loc)) / (2π I₀(κ)).

    Concentration κ = 0 is the uniform law on the circle (SciPy accepts it; torch does not).
    """

    loc: Parameter
    concentration: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "loc", as_float64("loc", self.loc))
        object.__setattr__(
            self,
            "concentration",
            as_float64("concentration", self.concentration, nonnegative=True),
        )

    def to_scipy(self) -> Any:
        # Centred on [-π, π] and rotated, so that two von Mises laws share one support.
        return _CircularVonMises(self.loc, self.concentration)


class _CircularVonMises:
    """A von Mises law on the fixed interval [−π, π], whatever its mean direction."""

    def __init__(self, loc: Float64Array, concentration: Float64Array) -> None:
        self.loc, self.concentration = loc, concentration
        self._centred = scipy.stats.vonmises(concentration)

    def logpdf(self, x: ArrayLike) -> Float64Array:
        wrapped = np.angle(np.exp(1j * (np.asarray(x) - self.loc)))
        return np.asarray(self._centred.logpdf(wrapped), dtype=np.float64)

    draws_batch = True

    def rvs(self, size: Any = None, random_state: Any = None) -> Float64Array:
        batch = np.broadcast_shapes(np.shape(self.loc), np.shape(self.concentration))
        shape = (size,) if isinstance(size, int) else tuple(size or ())
        draws = self._centred.rvs(size=(*shape, *batch), random_state=random_state) + self.loc
        return np.asarray(np.angle(np.exp(1j * draws)), dtype=np.float64)

    def support(self) -> tuple[Float64Array, Float64Array]:
        shape = np.broadcast_shapes(np.shape(self.loc), np.shape(self.concentration))
        return np.full(shape, -np.pi), np.full(shape, np.pi)
