r"""Binned KL (and PSI) of a numeric variable, with quantile bins of the reference sample.

The bin edges are the $j/B$ quantiles of x ($j = 1, \dots, B-1$); the outer bins are open, so
values of y beyond the range of x fall into the first or last bin. A value equal to an edge
goes into the bin above it. Where x has ties, quantiles coincide and the bins merge, so a
column with few distinct values has fewer than B bins. The counts per bin then go to
`counts`:

$$
\widehat{\mathrm{KL}} = \sum_{j=1}^{B} \hat p_j \log\frac{\hat p_j}{\hat q_j}, \qquad
\mathrm{PSI} = \sum_{j=1}^{B} (\hat p_j - \hat q_j) \log\frac{\hat p_j}{\hat q_j},
$$

with the pseudo-count of ``prior`` in every bin. This is the divergence of the two samples'
histograms, not of their densities: it is at most the KL of the underlying distributions
(the data-processing inequality) and does not depend on the units of the variable or on any
monotone transformation of it. Quantile bins of the reference with B = 10 are the usual
choice of drift monitors (PSI with deciles in credit scoring; Evidently, NannyML).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kldiv._result import KLResult
from kldiv.estimate._counts import counts

__all__ = ["binned", "quantile_edges"]

FloatArray = NDArray[np.float64]


def _read_values(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} has no samples")
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"{name} has the entry {array[index]} at index {index}; drop missing and infinite "
            "values first"
        )
    return array


def quantile_edges(reference: ArrayLike, bins: int) -> FloatArray:
    """Inner edges of ``bins`` quantile bins of ``reference`` (fewer where quantiles tie).

    Args:
        reference: the sample whose quantiles cut the bins, shape (n,), finite.
        bins: the number of bins wanted, ≥ 2.

    Returns:
        The distinct j/bins quantiles (j = 1, …, bins − 1) in increasing order, float64;
        ``numpy.searchsorted(edges, v, side="right")`` is then the bin of v.

    Examples:
        >>> quantile_edges([1.0, 2.0, 3.0, 4.0, 5.0], 4).tolist()
        [2.0, 3.0, 4.0]
        >>> quantile_edges([0, 0, 0, 0, 1], 4).tolist()
        [0.0]
    """
    _check_bins(bins)
    return _edges(_read_values("reference", reference), bins)


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")


def _edges(values: FloatArray, bins: int) -> FloatArray:
    edges: FloatArray = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    return edges


def binned(x: ArrayLike, y: ArrayLike, *, bins: int = 10, prior: float | str = 0.5) -> KLResult:
    """KL(P‖Q) between the histograms of x ~ P and y ~ Q over quantile bins of x.

    The bins and the formula are in the module docstring; the population stability index of
    the same bins is in ``params["psi"]``.

    Args:
        x: the reference sample, shape (n,), finite numbers; its quantiles cut the bins.
        y: the sample compared with it, shape (m,), finite numbers.
        bins: the number of quantile bins, ≥ 2 (10 by default).
        prior: pseudo-count added to every bin, as in `counts` (Jeffreys, ½, by
            default: a bin that y leaves empty gives a large finite value, not +inf).

    Returns:
        KLResult with ``method`` "binned", ``n``, ``m``, the delta-method ``stderr`` of
        `counts`, and ``params``: ``bins`` (the number used, fewer than asked where
        quantiles of x tie), ``edges`` (the inner edges), ``prior``, ``pseudo_count``,
        ``psi``.

    Raises:
        ValueError: on NaN or infinite values, empty or non-1-D samples, or bins < 2.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)
        >>> result = binned(x, y, bins=10)
        >>> round(result.value, 2), round(result.params["psi"], 2)
        (0.49, 0.95)

        The KL of the two normals is 0.5; over their deciles, 0.479 (PSI 0.926).
    """
    _check_bins(bins)
    x_values, y_values = _read_values("x", x), _read_values("y", y)
    edges = _edges(x_values, bins)
    cells = edges.size + 1
    c_p = np.bincount(np.searchsorted(edges, x_values, side="right"), minlength=cells)
    c_q = np.bincount(np.searchsorted(edges, y_values, side="right"), minlength=cells)
    result = counts(c_p, c_q, prior=prior)
    params = {**result.params, "bins": cells, "edges": edges.tolist()}
    del params["categories"]
    return KLResult(
        value=result.value,
        stderr=result.stderr if math.isfinite(result.value) else math.nan,
        method="binned",
        units=result.units,
        n=result.n,
        m=result.m,
        params=params,
    )
