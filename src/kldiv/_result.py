"""The result of a KL computation or estimate: a value with its uncertainty and provenance."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

__all__ = ["KLResult", "units_for_base"]

FloatOrArray = float | NDArray[np.float64]


def units_for_base(base: float | None) -> str:
    """Name the unit of an information quantity measured with logarithms to ``base``.

    Args:
        base: Logarithm base; ``None`` means the natural logarithm.

    Returns:
        ``"nats"`` for ``None`` or e, ``"bits"`` for 2, ``"bans"`` for 10, otherwise
        ``"log-base-<base> units"``.

    Examples:
        >>> units_for_base(2)
        'bits'
    """
    if base is None or base == math.e:
        return "nats"
    if base == 2:
        return "bits"
    if base == 10:
        return "bans"
    return f"log-base-{base:g} units"


def _numpy(value: Any) -> Any:
    """A torch tensor as a float64 NumPy array (detached, on the CPU); anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return np.asarray(value.detach().cpu().double().numpy())
    return value


def _plain(value: Any) -> Any:
    """Turn NumPy scalars and arrays into Python floats and nested lists, for JSON."""
    value = _numpy(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class KLResult:
    """A KL divergence with its standard error, the method that produced it and its units.

    ``float(result)`` and ``numpy.asarray(result)`` give the value; ``result.to_dict()`` gives
    plain Python types ready for ``json.dumps``. For ``torch.distributions`` inputs,
    `kldiv.distributions.kl` puts a tensor in the autograd graph in ``value`` (and a
    detached one in ``stderr``); ``float``, ``numpy.asarray``, ``str`` and ``to_dict`` read it
    detached.

    Attributes:
        value: KL(P‖Q): a float, a float64 array over a batch of parameter pairs, or a
            torch tensor (torch inputs).
        stderr: Standard error of ``value`` (same shape). 0.0 for deterministic methods
            ("exact", "quadrature", "variational", "bound"); NaN where ``value`` is infinite.
        method: How the value was obtained: "exact", "quadrature", "monte_carlo",
            "variational", "bound", or the estimator's name ("knn", "knn_adaptive",
            "counts", "k1", "k2", "k3", ...).
        units: "nats" unless a logarithm base was given.
        n: Number of samples of P used (Monte Carlo, estimators), if any.
        m: Number of samples of Q used (two-sample estimators), if any.
        error_bound: For "quadrature", the absolute error bound reported by the integrator
            (or, for sums over infinite discrete support, the probability mass left out).
        params: Further settings that determine the value (``k``, ``prior``, ``estimator``, ``seed``...).

    Examples:
        >>> r = KLResult(value=0.5, stderr=0.01, method="monte_carlo", n=10_000)
        >>> float(r)
        0.5
        >>> print(r)
        0.5 ± 0.01 nats (monte_carlo, n=10000)
    """

    value: FloatOrArray | torch.Tensor
    stderr: FloatOrArray | torch.Tensor
    method: str
    units: str = "nats"
    n: int | None = None
    m: int | None = None
    error_bound: FloatOrArray | torch.Tensor | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        array = np.asarray(_numpy(self.value), dtype=np.float64)
        if array.size != 1:
            raise TypeError(
                f"float() needs a single value but this result holds shape {array.shape}; "
                "use numpy.asarray(result) for a batch"
            )
        return float(array.reshape(()))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        return np.asarray(_numpy(self.value), dtype=np.float64 if dtype is None else dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        """Batch shape of the value (``()`` for a single pair)."""
        return tuple(np.shape(_numpy(self.value)))

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain Python types (floats, lists, str, int) for JSON.

        Infinite or NaN values stay Python floats; ``json.dumps`` writes them as
        ``Infinity``/``NaN`` unless called with ``allow_nan=False``.
        """
        out: dict[str, Any] = {
            "value": _plain(self.value),
            "stderr": _plain(self.stderr),
            "method": self.method,
            "units": self.units,
        }
        for name in ("n", "m", "error_bound"):
            item = getattr(self, name)
            if item is not None:
                out[name] = _plain(item)
        if self.params:
            out["params"] = _plain(self.params)
        return out

    def __str__(self) -> str:
        if self.shape:
            return (
                f"KL of shape {self.shape} in {self.units} ({self.method}); "
                f"values {np.asarray(_numpy(self.value))!s}"
            )
        extras = [self.method]
        if self.n is not None:
            extras.append(f"n={self.n}")
        if self.m is not None:
            extras.append(f"m={self.m}")
        if self.error_bound is not None:
            extras.append(f"error bound {float(np.asarray(_numpy(self.error_bound))):.3g}")
        value = float(np.asarray(_numpy(self.value)))
        stderr = float(np.asarray(_numpy(self.stderr)))
        return f"{value:.6g} ± {stderr:.3g} {self.units} ({', '.join(extras)})"
