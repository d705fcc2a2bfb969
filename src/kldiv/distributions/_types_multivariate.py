"""kldiv's vector-valued distributions: Gaussians (full, diagonal, low-rank), Dirichlet, categorical."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from kldiv.distributions._ops import eye, module
from kldiv.distributions._types import Distribution, Float64Array, Parameter, as_float64, numpy_view

__all__ = [
    "Categorical",
    "DiagonalNormal",
    "Dirichlet",
    "LowRankNormal",
    "Multinomial",
    "MultivariateNormal",
]


def check_simplex(name: str, value: Any) -> Any:
    """Refuse probability vectors with negative entries or that do not sum to 1."""
    probs = numpy_view(value)
    if probs.ndim < 1:
        raise ValueError(f"{name} must have a last axis of categories")
    if (probs < 0).any():
        raise ValueError(
            f"{name} has a negative entry {probs[probs < 0].flat[0]}; probabilities must be >= 0"
        )
    total = probs.sum(axis=-1)
    if not np.allclose(total, 1.0, rtol=0, atol=1e-6 * probs.shape[-1]):
        bad = total.flat[int(np.argmax(np.abs(total - 1.0)))]
        raise ValueError(f"{name} has a row summing to {bad}; each row must sum to 1")
    return value


class _Gaussian(Distribution, ABC):
    """Shared sampling and density code of the three Gaussian parametrizations."""

    event_ndim: ClassVar[int] = 1
    loc: Parameter

    @property
    @abstractmethod
    def covariance_matrix(self) -> Parameter:
        """Dense covariance, shape (..., d, d)."""

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(self.loc.shape[:-1], self.covariance_matrix.shape[:-2]))

    @property
    def dim(self) -> int:
        """Dimension d of one draw."""
        return int(self.loc.shape[-1])

    def to_scipy(self) -> Any:
        detached = self.detached()
        assert isinstance(detached, _Gaussian)
        return _GaussianDensity(detached.loc, detached.covariance_matrix)


class _GaussianDensity:
    """logpdf and rvs of a batch of multivariate normals, in the style of a frozen scipy object."""

    draws_batch = True

    def __init__(self, loc: Float64Array, covariance: Float64Array) -> None:
        batch = np.broadcast_shapes(loc.shape[:-1], covariance.shape[:-2])
        d = loc.shape[-1]
        self.loc = np.broadcast_to(loc, (*batch, d))
        self.cholesky = np.linalg.cholesky(np.broadcast_to(covariance, (*batch, d, d)))

    def logpdf(self, x: ArrayLike) -> Float64Array:
        diff = np.asarray(x, dtype=np.float64) - self.loc
        # Triangular solve by broadcasting L against the sample axes.
        cholesky = np.broadcast_to(self.cholesky, (*diff.shape[:-1], *self.cholesky.shape[-2:]))
        white = np.linalg.solve(cholesky, diff[..., None])[..., 0]
        half_log_det = np.log(np.diagonal(self.cholesky, axis1=-2, axis2=-1)).sum(axis=-1)
        d = diff.shape[-1]
        return np.asarray(
            -0.5 * np.sum(white**2, axis=-1) - half_log_det - 0.5 * d * np.log(2 * np.pi),
            dtype=np.float64,
        )

    def rvs(self, size: Any = None, random_state: Any = None) -> Float64Array:
        rng = np.random.default_rng(random_state)
        shape = (size,) if isinstance(size, int) else tuple(size or ())
        noise = rng.standard_normal((*shape, *self.loc.shape))
        return np.asarray(self.loc + np.einsum("...ij,...j->...i", self.cholesky, noise))


@dataclass(frozen=True)
class MultivariateNormal(_Gaussian):
    """Multivariate normal N(loc, covariance) with a full covariance matrix.

    Examples:
        >>> MultivariateNormal([0.0, 0.0], [[2.0, 0.5], [0.5, 1.0]]).dim
        2
    """

    loc: Parameter
    covariance: Parameter

    def __post_init__(self) -> None:
        loc, cov = as_float64("loc", self.loc), as_float64("covariance", self.covariance)
        if loc.ndim < 1 or cov.ndim < 2 or tuple(cov.shape[-2:]) != (loc.shape[-1],) * 2:
            raise ValueError(
                f"covariance of shape {cov.shape} does not match loc of shape {loc.shape}; "
                "it must be (..., d, d) for loc (..., d)"
            )
        matrix = numpy_view(cov)
        if not np.allclose(matrix, np.swapaxes(matrix, -1, -2), rtol=1e-10, atol=0):
            raise ValueError("covariance must be symmetric")
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "covariance", cov)

    @property
    def covariance_matrix(self) -> Parameter:
        return self.covariance


@dataclass(frozen=True)
class DiagonalNormal(_Gaussian):
    """Multivariate normal with independent coordinates: N(loc, diag(scale²)).

    Examples:
        >>> DiagonalNormal([0.0, 1.0], [1.0, 2.0]).covariance_matrix
        array([[1., 0.], [0., 4.]])
    """

    loc: Parameter
    scale: Parameter

    def __post_init__(self) -> None:
        loc, scale = as_float64("loc", self.loc), as_float64("scale", self.scale, positive=True)
        if loc.ndim < 1:
            loc = loc[None]
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "scale", scale)

    @property
    def covariance_matrix(self) -> Parameter:
        xp = module(self.loc, self.scale)
        shape = tuple(np.broadcast_shapes(tuple(self.loc.shape), tuple(self.scale.shape)))
        variance = xp.broadcast_to(self.scale**2, shape)
        return variance[..., :, None] * eye(shape[-1], like=variance)


@dataclass(frozen=True)
class LowRankNormal(_Gaussian):
    """Multivariate normal with covariance ``cov_factor @ cov_factor.T + diag(cov_diag)``.

    ``cov_factor`` has shape (..., d, r) with rank r, usually r ≪ d.
    """

    loc: Parameter
    cov_factor: Parameter
    cov_diag: Parameter

    def __post_init__(self) -> None:
        loc = as_float64("loc", self.loc)
        factor = as_float64("cov_factor", self.cov_factor)
        diag = as_float64("cov_diag", self.cov_diag, positive=True)
        if factor.ndim < 2 or factor.shape[-2] != loc.shape[-1]:
            raise ValueError(
                f"cov_factor of shape {factor.shape} does not match loc of shape {loc.shape}; "
                "it must be (..., d, r)"
            )
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "cov_factor", factor)
        object.__setattr__(self, "cov_diag", diag)

    @property
    def covariance_matrix(self) -> Parameter:
        xp = module(self.cov_factor, self.cov_diag)
        low_rank = self.cov_factor @ xp.swapaxes(self.cov_factor, -1, -2)
        return low_rank + self.cov_diag[..., :, None] * eye(low_rank.shape[-1], like=low_rank)


@dataclass(frozen=True)
class Dirichlet(Distribution):
    """Dirichlet distribution on the probability simplex with the given concentration."""

    event_ndim: ClassVar[int] = 1
    concentration: Parameter

    def __post_init__(self) -> None:
        alpha = as_float64("concentration", self.concentration, positive=True)
        if alpha.ndim < 1:
            raise ValueError("Dirichlet concentration must have a last axis of categories")
        object.__setattr__(self, "concentration", alpha)

    def to_scipy(self) -> Any:
        if self.concentration.ndim != 1:
            raise TypeError("scipy.stats.dirichlet takes one parameter vector, not a batch")
        return scipy.stats.dirichlet(self.concentration)


@dataclass(frozen=True)
class Categorical(Distribution):
    """Distribution over categories 0..K−1 with probabilities ``probs`` (last axis K).

    Examples:
        >>> Categorical([0.2, 0.8]).batch_shape
        ()
    """

    event_ndim: ClassVar[int] = 1
    discrete: ClassVar[bool] = True
    probs: Parameter

    def __post_init__(self) -> None:
        object.__setattr__(self, "probs", check_simplex("probs", as_float64("probs", self.probs)))

    def to_scipy(self) -> Any:
        return _CategoricalDensity(self.probs)


class _CategoricalDensity:
    """logpmf and rvs of a batch of categorical laws over the integers 0..K−1."""

    draws_batch = True

    def __init__(self, probs: Float64Array) -> None:
        self.probs = probs

    def logpmf(self, x: ArrayLike) -> Float64Array:
        index = np.asarray(x).astype(np.int64)
        probs = np.broadcast_to(self.probs, (*index.shape, self.probs.shape[-1]))
        with np.errstate(divide="ignore"):
            return np.asarray(np.log(np.take_along_axis(probs, index[..., None], axis=-1)[..., 0]))

    def rvs(self, size: Any = None, random_state: Any = None) -> NDArray[np.int64]:
        rng = np.random.default_rng(random_state)
        shape = (size,) if isinstance(size, int) else tuple(size or ())
        cumulative = np.cumsum(self.probs, axis=-1)
        uniform = rng.random((*shape, *self.probs.shape[:-1], 1)) * cumulative[..., -1:]
        return np.asarray((uniform > cumulative).sum(axis=-1), dtype=np.int64)

    def support(self) -> tuple[Float64Array, Float64Array]:
        shape = self.probs.shape[:-1]
        return np.zeros(shape), np.full(shape, float(self.probs.shape[-1] - 1))


@dataclass(frozen=True)
class Multinomial(Distribution):
    """Counts of ``total_count`` independent draws from categorical ``probs``."""

    event_ndim: ClassVar[int] = 1
    discrete: ClassVar[bool] = True
    total_count: Parameter
    probs: Parameter

    def __post_init__(self) -> None:
        count = as_float64("total_count", self.total_count)
        counts = numpy_view(count)
        if ((counts < 0) | (counts != np.round(counts))).any():
            raise ValueError("Multinomial total_count must hold non-negative integers")
        object.__setattr__(self, "total_count", count)
        object.__setattr__(self, "probs", check_simplex("probs", as_float64("probs", self.probs)))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.broadcast_shapes(self.total_count.shape, self.probs.shape[:-1]))

    def to_scipy(self) -> Any:
        if self.batch_shape:
            raise TypeError("scipy.stats.multinomial takes one parameter vector, not a batch")
        return scipy.stats.multinomial(int(self.total_count), self.probs)
