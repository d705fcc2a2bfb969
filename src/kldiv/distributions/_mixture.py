r"""Finite mixtures, and KL between Gaussian mixtures by the Hershey–Olsen approximations.

For mixtures f = Σ_a π_a f_a and g = Σ_b ω_b g_b, KL(f‖g) has no closed form. Besides Monte
Carlo, Hershey & Olsen (2007) give, from the component divergences D(f_a‖f_a') and D(f_a‖g_b):

$$
D_{\mathrm{var}} = \sum_a \pi_a \log
    \frac{\sum_{a'} \pi_{a'} e^{-D(f_a\|f_{a'})}}{\sum_b \omega_b e^{-D(f_a\|g_b)}}
$$

(the variational approximation, method "variational": neither a lower nor an upper bound) and

$$
D_{\mathrm{vub}} = \min_{\phi,\psi} \sum_{a,b} \phi_{ab}
    \left(\log\frac{\phi_{ab}}{\psi_{ab}} + D(f_a\|g_b)\right) \ \ge\ \mathrm{KL}(f\|g),
$$

over φ ≥ 0 with Σ_b φ_ab = π_a and ψ ≥ 0 with Σ_a ψ_ab = ω_b (the variational upper bound,
method "bound"), minimized by their alternating updates. Both need a closed form for every
component pair, which Gaussian components have.

Reference: J. R. Hershey and P. A. Olsen, "Approximating the Kullback Leibler divergence
between Gaussian mixture models", ICASSP 2007, doi:10.1109/ICASSP.2007.366913.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp

from kldiv.distributions._fallbacks import is_discrete, log_density, sample, support
from kldiv.distributions._types import Distribution, Float64Array

__all__ = ["Mixture", "upper_bound", "variational"]

_MAX_ITERATIONS = 10_000
_TOLERANCE = 1e-13


class Mixture:
    """A finite mixture Σ_i weights[i] · components[i] of distributions of one kind.

    Components may be kldiv types, frozen ``scipy.stats`` distributions or
    ``torch.distributions`` objects, each a single distribution (no batch) over the same space.

    Args:
        weights: non-negative mixing weights summing to 1, shape (K,).
        components: K distributions.

    Examples:
        >>> import scipy.stats
        >>> mixture = Mixture([0.3, 0.7], [scipy.stats.norm(-1, 1), scipy.stats.norm(2, 0.5)])
        >>> round(float(mixture.logpdf(0.0)), 4)   # log(0.3·0.24197 + 0.7·0.00027)
        -2.6203
    """

    draws_batch = True

    def __init__(self, weights: ArrayLike, components: Sequence[Any]) -> None:
        w = np.asarray(weights, dtype=np.float64)
        components = tuple(components)
        if w.ndim != 1 or w.shape[0] != len(components) or not components:
            raise ValueError(
                f"Mixture needs one weight per component: got weights of shape {w.shape} "
                f"and {len(components)} components"
            )
        if np.isnan(w).any() or (w < 0).any():
            raise ValueError(f"Mixture weights must be >= 0 and not NaN, got {w.tolist()}")
        if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-9):
            raise ValueError(
                f"Mixture weights sum to {w.sum()}; they must sum to 1 (divide by the sum)"
            )
        for index, component in enumerate(components):
            if _batch_shape(component):
                raise ValueError(
                    f"Mixture component {index} is a batch of shape {_batch_shape(component)}; "
                    "each component must be a single distribution"
                )
        if len({is_discrete(c) for c in components}) > 1:
            raise ValueError("Mixture components must be all discrete or all continuous")
        self.weights: Float64Array = w
        self.components = components
        self.discrete = is_discrete(components[0])

    def __repr__(self) -> str:
        return f"Mixture(weights={self.weights.tolist()}, components={list(self.components)!r})"

    def logpdf(self, x: ArrayLike) -> Float64Array:
        """log Σ_i w_i p_i(x), computed with logsumexp."""
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)
        parts = np.stack([log_density(c, x) for c in self.components], axis=0)
        shaped = log_weights.reshape((-1,) + (1,) * (parts.ndim - 1))
        return np.asarray(logsumexp(parts + shaped, axis=0))

    def logpmf(self, x: ArrayLike) -> Float64Array:
        """Same as `logpdf`, for discrete components."""
        return self.logpdf(x)

    def rvs(self, size: int = 1, random_state: Any = None) -> Any:
        """``size`` draws: a multinomial split over components, shuffled."""
        rng = np.random.default_rng(random_state)
        counts = rng.multinomial(int(size), self.weights)
        parts = [
            sample(c, int(n), rng, ())
            for c, n in zip(self.components, counts, strict=True)
            if n > 0
        ]
        draws = np.concatenate(parts, axis=0)
        return draws[rng.permutation(draws.shape[0])]

    def support(self) -> tuple[Float64Array, Float64Array]:
        """Smallest interval holding every component's support (univariate components)."""
        bounds = [support(c) for c in self.components]
        if any(b is None for b in bounds):
            raise TypeError("a component has no known support")
        lows = [b[0] for b in bounds if b is not None]
        highs = [b[1] for b in bounds if b is not None]
        return np.min(lows, axis=0), np.max(highs, axis=0)


def _batch_shape(component: Any) -> tuple[int, ...]:
    if isinstance(component, Distribution):
        return component.batch_shape
    if hasattr(component, "batch_shape"):  # torch
        return tuple(component.batch_shape)
    if hasattr(component, "args") and hasattr(component, "kwds"):  # frozen scipy
        return tuple(
            np.broadcast_shapes(*(np.shape(a) for a in (*component.args, *component.kwds.values())))
        )
    return ()


def variational(
    weights_p: Float64Array,
    weights_q: Float64Array,
    kl_pp: Float64Array,
    kl_pq: Float64Array,
) -> float:
    """Hershey–Olsen variational approximation from component weights and divergences.

    Args:
        weights_p: π, shape (A,).
        weights_q: ω, shape (B,).
        kl_pp: D(f_a‖f_a'), shape (A, A).
        kl_pq: D(f_a‖g_b), shape (A, B).
    """
    with np.errstate(divide="ignore"):
        log_pi, log_omega = np.log(weights_p), np.log(weights_q)
    numerator = logsumexp(log_pi[None, :] - kl_pp, axis=1)
    denominator = logsumexp(log_omega[None, :] - kl_pq, axis=1)
    mask = weights_p > 0
    return float(np.sum(weights_p[mask] * (numerator - denominator)[mask]))


def upper_bound(weights_p: Float64Array, weights_q: Float64Array, kl_pq: Float64Array) -> float:
    """Hershey–Olsen variational upper bound, by their alternating φ/ψ updates (in log space)."""
    with np.errstate(divide="ignore"):
        log_pi, log_omega = np.log(weights_p), np.log(weights_q)
    log_psi = log_pi[:, None] + log_omega[None, :]
    previous = np.inf
    bound = np.inf
    for _ in range(_MAX_ITERATIONS):
        # φ_ab ∝ ψ_ab e^{−D_ab}, rows summing to π_a.
        scores = log_psi - kl_pq
        log_phi = log_pi[:, None] + scores - logsumexp(scores, axis=1, keepdims=True)
        # ψ_ab ∝ φ_ab, columns summing to ω_b.
        log_psi = log_omega[None, :] + log_phi - logsumexp(log_phi, axis=0, keepdims=True)
        phi = np.exp(log_phi)
        with np.errstate(invalid="ignore"):
            terms = np.where(phi > 0, phi * (log_phi - log_psi + kl_pq), 0.0)
        bound = float(np.sum(terms))
        if abs(previous - bound) <= _TOLERANCE * max(1.0, abs(bound)):
            break
        previous = bound
    return bound
