"""KL divergence between diagonal Gaussians: the VAE regularizer."""

from __future__ import annotations

from typing import Any

from kldiv._array import (
    as_compute,
    broadcast_shapes,
    compute_dtype,
    namespace,
    normalize_axis,
    quiet,
)


@quiet
def gaussian_kl(
    mean_p: Any,
    logvar_p: Any,
    mean_q: Any = 0.0,
    logvar_q: Any = 0.0,
    /,
    *,
    axis: int = -1,
    keepdims: bool = False,
) -> Any:
    r"""KL(N(μ_p, diag σ_p²) ‖ N(μ_q, diag σ_q²)) from means and log-variances, summed over ``axis``.

    $$
    \mathrm{KL} = \frac{1}{2} \sum_i \left( e^{d_i} - 1 - d_i
        + \frac{(\mu_{p,i} - \mu_{q,i})^2}{\sigma_{q,i}^2} \right),
    \qquad d_i = \log\sigma_{p,i}^2 - \log\sigma_{q,i}^2
    $$

    With the defaults μ_q = 0 and log σ_q² = 0 this is the regularizer of a VAE with a standard
    normal prior (Kingma and Welling 2014, appendix B). e^d − 1 − d is computed as expm1(d) − d,
    which stays accurate when the variances are close.

    Args:
        mean_p: means of P, shape (..., d).
        logvar_p: log-variances of P, broadcastable against ``mean_p``.
        mean_q: means of Q (array or Python number), default 0.
        logvar_q: log-variances of Q (array or Python number), default 0.
        axis: the axis of the latent dimensions to sum over.
        keepdims: keep ``axis`` with size 1.

    Returns:
        KL in nats, shape of the broadcast inputs without ``axis``, in their floating dtype
        (float16 and bfloat16 are computed in float32).

    Examples:
        >>> import numpy as np
        >>> import kldiv
        >>> mean, logvar = np.zeros((2, 3)), np.zeros((2, 3))
        >>> kldiv.gaussian_kl(mean, logvar)
        array([0., 0.])
        >>> float(kldiv.gaussian_kl(np.array([1.0]), np.array([0.0])))
        0.5
    """
    names = ["mean_p", "logvar_p", "mean_q", "logvar_q"]
    xp, arrays = namespace(mean_p, logvar_p, mean_q, logvar_q, names=names)
    named = list(zip(names, arrays, strict=True))
    result_dtype, dtype = compute_dtype(xp, named)
    shape = broadcast_shapes(named)
    axis = normalize_axis(axis, len(shape))
    like = next(a for a in arrays if hasattr(a, "dtype"))
    m_p, lv_p, m_q, lv_q = (as_compute(xp, a, dtype, like=like) for a in arrays)
    log_ratio = lv_p - lv_q
    terms = xp.expm1(log_ratio) - log_ratio + (m_p - m_q) ** 2 * xp.exp(-lv_q)
    terms = xp.broadcast_to(terms, shape)
    total = 0.5 * xp.sum(terms, axis=axis, keepdims=keepdims)
    return total if total.dtype == result_dtype else xp.astype(total, result_dtype)
