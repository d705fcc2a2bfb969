r"""Closed forms of KL between multivariate Gaussians (full, diagonal and low-rank covariance).

$$
\mathrm{KL}(\mathcal N(\mu_p, \Sigma_p)\,\|\,\mathcal N(\mu_q, \Sigma_q)) = \tfrac12\left[
\operatorname{tr}(\Sigma_q^{-1}\Sigma_p) + (\mu_q-\mu_p)^\top\Sigma_q^{-1}(\mu_q-\mu_p) - d
+ \log\det\Sigma_q - \log\det\Sigma_p\right]
$$

Computed from Cholesky factors L (Σ = L Lᵀ): the trace is ‖L_q⁻¹ L_p‖²_F and the log-determinants
are sums of log-diagonals, which avoids forming inverses. Diagonal pairs use the core's
`kldiv.gaussian_kl`. Low-rank covariances are densified (O(d³)), exact but not memory-lean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kldiv import gaussian_kl
from kldiv.distributions._ops import broadcast, cholesky, digamma, gammaln, module
from kldiv.distributions._ops import solve_triangular as solve_lower
from kldiv.distributions._registry import register_kl
from kldiv.distributions._types_multivariate import DiagonalNormal, Dirichlet, _Gaussian

__all__: list[str] = []


def _cholesky(name: str, covariance: Any) -> Any:
    try:
        return cholesky(covariance)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the covariance of {name} is not positive definite (Cholesky failed); "
            "check for zero-variance directions or add a small diagonal term"
        ) from None


@register_kl(_Gaussian, _Gaussian)
def _kl_gaussian_gaussian(p: _Gaussian, q: _Gaussian) -> Any:
    if p.dim != q.dim:
        raise ValueError(f"P has dimension {p.dim} and Q has dimension {q.dim}; they must match")
    xp = module(p.loc, q.loc, p.covariance_matrix, q.covariance_matrix)
    chol_p = _cholesky("P", p.covariance_matrix)
    chol_q = _cholesky("Q", q.covariance_matrix)
    batch = tuple(
        np.broadcast_shapes(
            tuple(chol_p.shape[:-2]),
            tuple(chol_q.shape[:-2]),
            tuple(p.loc.shape[:-1]),
            tuple(q.loc.shape[:-1]),
        )
    )
    d = p.dim
    chol_p = xp.broadcast_to(chol_p, (*batch, d, d))
    chol_q = xp.broadcast_to(chol_q, (*batch, d, d))
    whitened_p = solve_lower(chol_q, chol_p)
    diff = xp.broadcast_to(q.loc - p.loc, (*batch, d))
    whitened_diff = solve_lower(chol_q, diff[..., None])[..., 0]
    log_det_q = 2 * xp.sum(xp.log(xp.diagonal(chol_q, 0, -2, -1)), axis=-1)
    log_det_p = 2 * xp.sum(xp.log(xp.diagonal(chol_p, 0, -2, -1)), axis=-1)
    trace = xp.sum(whitened_p**2, axis=(-2, -1))
    return 0.5 * (trace + xp.sum(whitened_diff**2, axis=-1) - d + log_det_q - log_det_p)


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_diagonal(p: DiagonalNormal, q: DiagonalNormal) -> Any:
    if p.dim != q.dim:
        raise ValueError(f"P has dimension {p.dim} and Q has dimension {q.dim}; they must match")
    xp = module(p.scale, q.scale)
    return gaussian_kl(*broadcast(p.loc, 2 * xp.log(p.scale), q.loc, 2 * xp.log(q.scale)))


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p: Dirichlet, q: Dirichlet) -> Any:
    alpha_p, alpha_q = broadcast(p.concentration, q.concentration)
    xp = module(alpha_p)
    total_p = xp.sum(alpha_p, axis=-1)
    return (
        gammaln(total_p)
        - gammaln(xp.sum(alpha_q, axis=-1))
        - xp.sum(gammaln(alpha_p) - gammaln(alpha_q), axis=-1)
        + xp.sum(
            (alpha_p - alpha_q) * (digamma(alpha_p) - digamma(total_p)[..., None]),
            axis=-1,
        )
    )
