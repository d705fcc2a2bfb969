r"""Closed forms of KL between multivariate Gaussians (full, diagonal and low-rank covariance).

.. math::
    \mathrm{KL}(\mathcal N(\mu_p, \Sigma_p)\,\|\,\mathcal N(\mu_q, \Sigma_q)) = \tfrac12\left[
    \operatorname{tr}(\Sigma_q^{-1}\Sigma_p) + (\mu_q-\mu_p)^\top\Sigma_q^{-1}(\mu_q-\mu_p)
    - d + \log\det\Sigma_q - \log\det\Sigma_p\right]

Computed from Cholesky factors L (Σ = L Lᵀ): the trace is ‖L_q⁻¹ L_p‖²_F and the log-determinants
are sums of log-diagonals, which avoids forming inverses. Diagonal pairs use the core's
:func:`kldiv.gaussian_kl`. Low-rank covariances are densified (O(d³)), exact but not memory-lean.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from kldiv import gaussian_kl
from kldiv.distributions._registry import register_kl
from kldiv.distributions._types import Float64Array
from kldiv.distributions._types_multivariate import DiagonalNormal, Dirichlet, _Gaussian

__all__: list[str] = []


def _cholesky(name: str, covariance: Float64Array) -> Float64Array:
    try:
        return np.asarray(np.linalg.cholesky(covariance), dtype=np.float64)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the covariance of {name} is not positive definite (Cholesky failed); "
            "check for zero-variance directions or add a small diagonal term"
        ) from None


@register_kl(_Gaussian, _Gaussian)
def _kl_gaussian_gaussian(p: _Gaussian, q: _Gaussian) -> Float64Array:
    if p.dim != q.dim:
        raise ValueError(f"P has dimension {p.dim} and Q has dimension {q.dim}; they must match")
    chol_p = _cholesky("P", p.covariance_matrix)
    chol_q = _cholesky("Q", q.covariance_matrix)
    batch = np.broadcast_shapes(
        chol_p.shape[:-2], chol_q.shape[:-2], p.loc.shape[:-1], q.loc.shape[:-1]
    )
    d = p.dim
    chol_p = np.broadcast_to(chol_p, (*batch, d, d))
    chol_q = np.broadcast_to(chol_q, (*batch, d, d))
    whitened_p = np.linalg.solve(chol_q, chol_p)
    diff = np.broadcast_to(q.loc - p.loc, (*batch, d))
    whitened_diff = np.linalg.solve(chol_q, diff[..., None])[..., 0]
    log_det_q = 2 * np.log(np.diagonal(chol_q, axis1=-2, axis2=-1)).sum(axis=-1)
    log_det_p = 2 * np.log(np.diagonal(chol_p, axis1=-2, axis2=-1)).sum(axis=-1)
    trace = np.sum(whitened_p**2, axis=(-2, -1))
    return np.asarray(0.5 * (trace + np.sum(whitened_diff**2, axis=-1) - d + log_det_q - log_det_p))


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_diagonal(p: DiagonalNormal, q: DiagonalNormal) -> Float64Array:
    if p.dim != q.dim:
        raise ValueError(f"P has dimension {p.dim} and Q has dimension {q.dim}; they must match")
    arrays = np.broadcast_arrays(p.loc, 2 * np.log(p.scale), q.loc, 2 * np.log(q.scale))
    return np.asarray(gaussian_kl(*arrays), dtype=np.float64)


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p: Dirichlet, q: Dirichlet) -> Float64Array:
    alpha_p, alpha_q = np.broadcast_arrays(p.concentration, q.concentration)
    total_p = alpha_p.sum(axis=-1)
    return np.asarray(
        special.gammaln(total_p)
        - special.gammaln(alpha_q.sum(axis=-1))
        - np.sum(special.gammaln(alpha_p) - special.gammaln(alpha_q), axis=-1)
        + np.sum(
            (alpha_p - alpha_q) * (special.digamma(alpha_p) - special.digamma(total_p)[..., None]),
            axis=-1,
        )
    )
