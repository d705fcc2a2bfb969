"""The few operations the closed forms need, on NumPy arrays or on torch tensors.

Every closed form is written once, against these functions, so that the same formula gives a
float64 NumPy value for SciPy and kldiv inputs and a tensor in the autograd graph for
``torch.distributions`` inputs. torch is imported only when a tensor is passed.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "as_array",
    "betaln",
    "broadcast",
    "cholesky",
    "digamma",
    "eye",
    "full",
    "gammaln",
    "i1_over_i0",
    "is_tensor",
    "log_i0",
    "module",
    "solve_triangular",
    "where",
    "xlogy",
]


def is_tensor(value: Any) -> bool:
    """True for a ``torch.Tensor``; never imports torch itself."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def module(*values: Any) -> Any:
    """``torch`` when any value is a tensor, else ``numpy``: both spell log, exp, ... alike."""
    if any(is_tensor(v) for v in values):
        import torch

        return torch
    return np


def _like(values: tuple[Any, ...]) -> Any:
    return next((v for v in values if is_tensor(v)), None)


def as_array(value: Any, like: Any = None) -> Any:
    """``value`` as a tensor of ``like``'s dtype and device when ``like`` is one, else float64."""
    if is_tensor(like):
        import torch

        if is_tensor(value):
            return value
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)
    return np.asarray(value, dtype=np.float64)


def broadcast(*values: Any) -> list[Any]:
    """The values broadcast against each other (tensors if any is one)."""
    like = _like(values)
    arrays = [as_array(v, like) for v in values]
    if like is not None:
        import torch

        return list(torch.broadcast_tensors(*arrays))  # type: ignore[no-untyped-call]
    return list(np.broadcast_arrays(*arrays))


def full(shape: tuple[int, ...], fill: float, like: Any) -> Any:
    """An array of ``shape`` filled with ``fill``, on ``like``'s backend."""
    if is_tensor(like):
        import torch

        return torch.full(shape, fill, dtype=like.dtype, device=like.device)
    return np.full(shape, fill, dtype=np.float64)


def eye(size: int, like: Any) -> Any:
    """The identity matrix of ``size``, on ``like``'s backend."""
    if is_tensor(like):
        import torch

        return torch.eye(size, dtype=like.dtype, device=like.device)
    return np.eye(size)


def where(condition: Any, a: Any, b: Any) -> Any:
    """Elementwise ``a`` where ``condition`` else ``b`` (float scalars allowed)."""
    like = _like((a, b, condition))
    if like is not None:
        import torch

        condition = torch.as_tensor(condition, device=like.device)
        return torch.where(condition, as_array(a, like), as_array(b, like))
    return np.where(condition, a, b)


def xlogy(x: Any, y: Any) -> Any:
    """x·log(y), 0 where x = 0 (also when y = 0)."""
    like = _like((x, y))
    if like is not None:
        import torch

        return torch.special.xlogy(as_array(x, like), as_array(y, like))
    return special.xlogy(x, y)


def gammaln(x: Any) -> Any:
    """log Γ(x)."""
    return x.lgamma() if is_tensor(x) else special.gammaln(x)


def digamma(x: Any) -> Any:
    """ψ(x) = d log Γ(x) / dx."""
    return x.digamma() if is_tensor(x) else special.digamma(x)


def betaln(a: Any, b: Any) -> Any:
    """log B(a, b)."""
    if is_tensor(a) or is_tensor(b):
        return gammaln(a) + gammaln(b) - gammaln(a + b)
    return special.betaln(a, b)


def log_i0(x: Any) -> Any:
    """log I₀(x) for x ≥ 0, as log of the scaled function plus x (finite for large x)."""
    if is_tensor(x):
        import torch

        return torch.log(torch.special.i0e(x)) + x
    return np.log(special.ive(0, x)) + x


def i1_over_i0(x: Any) -> Any:
    """I₁(x) / I₀(x), the mean resultant length of a von Mises law of concentration x."""
    if is_tensor(x):
        import torch

        return torch.special.i1e(x) / torch.special.i0e(x)
    return special.ive(1, x) / special.ive(0, x)


def cholesky(matrix: Any) -> Any:
    """Lower Cholesky factor; ``numpy.linalg.LinAlgError`` (or torch's error) when not PD."""
    if is_tensor(matrix):
        import torch

        factor, info = torch.linalg.cholesky_ex(matrix)
        if bool((info != 0).any()):
            raise np.linalg.LinAlgError("matrix is not positive definite")
        return factor
    return np.linalg.cholesky(matrix)


def solve_triangular(lower: Any, rhs: Any) -> Any:
    """Solve L X = rhs for lower-triangular L (batched)."""
    if is_tensor(lower):
        import torch

        return torch.linalg.solve_triangular(lower, rhs, upper=False)
    return np.linalg.solve(lower, rhs)
