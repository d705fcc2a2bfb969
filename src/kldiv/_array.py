"""Array API plumbing shared by the core: namespaces, dtypes, axes, broadcasting and validation.

Everything here works on any Array API library through ``array_api_compat``; nothing converts
to NumPy, and nothing branches in Python on array *values* except the eager validation, which
is skipped for lazy or traced arrays (Dask, JAX tracers, ``torch.compile``).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, ParamSpec, TypeAlias, TypeVar

import array_api_compat
import numpy as np

Array: TypeAlias = Any
Namespace: TypeAlias = Any
Kind: TypeAlias = Literal["probs", "log_probs", "logits"]

KINDS: tuple[str, ...] = ("probs", "log_probs", "logits")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def quiet(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Silence NumPy's floating-point warnings inside ``function``.

    The divergences handle 0, ±inf and NaN explicitly, so a warning about log(0) or an
    overflowing ratio in a branch that is masked out would only be noise. Other libraries
    do not warn, and ``torch.compile`` cannot trace ``np.errstate``, so it is entered only
    when an argument is NumPy data.
    """

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if any(isinstance(a, (np.ndarray, np.generic, list, tuple)) for a in args):
            with np.errstate(all="ignore"):
                return function(*args, **kwargs)
        return function(*args, **kwargs)

    return wrapper


def namespace(*arrays: Any, names: Sequence[str]) -> tuple[Namespace, list[Array]]:
    """Return the common Array API namespace of ``arrays`` and the arrays themselves.

    Python scalars are allowed alongside arrays. Nested lists and tuples (no array at all) are
    read as NumPy arrays, as SciPy does.
    """
    found = [a for a in arrays if array_api_compat.is_array_api_obj(a)]
    if not found:
        return array_api_compat.array_namespace(np.empty(0)), [
            a if _is_scalar(a) else np.asarray(a, dtype=np.float64) for a in arrays
        ]
    converted = [
        np.asarray(a, dtype=np.float64) if isinstance(a, (list, tuple)) else a for a in arrays
    ]
    try:
        xp = array_api_compat.array_namespace(*[a for a in converted if not _is_scalar(a)])
    except TypeError:
        libraries = ", ".join(
            f"{name} is {type(a).__module__}.{type(a).__name__}"
            for name, a in zip(names, converted, strict=True)
            if not _is_scalar(a)
        )
        raise TypeError(
            f"inputs come from different array libraries ({libraries}); "
            "convert them to one library first"
        ) from None
    return xp, converted


def _is_scalar(a: Any) -> bool:
    """A Python number (not a NumPy scalar, which is an array of its library)."""
    return type(a) in (int, float)


def compute_dtype(xp: Namespace, arrays: Sequence[tuple[str, Array]]) -> tuple[Any, Any]:
    """Return ``(result_dtype, compute_dtype)`` for floating inputs; half precision computes in float32.

    Raises:
        TypeError: if an input does not have a real floating dtype.
    """
    dtypes = []
    for name, a in arrays:
        if _is_scalar(a):
            continue
        if not xp.isdtype(a.dtype, "real floating"):
            raise TypeError(
                f"{name} has dtype {a.dtype}; kldiv needs real floating-point arrays "
                f"(convert with {name}.astype(float) or an equivalent)"
            )
        dtypes.append(a.dtype)
    result = xp.result_type(*dtypes)
    # float16 and bfloat16 cannot hold log-probabilities of large supports precisely.
    wide = result if result in (xp.float32, xp.float64) else xp.float32
    return result, wide


def as_compute(xp: Namespace, a: Array, dtype: Any, like: Array) -> Array:
    """Cast ``a`` (array or Python scalar) to ``dtype`` on the device of ``like``."""
    if _is_scalar(a):
        return xp.asarray(float(a), dtype=dtype, device=array_api_compat.device(like))
    return a if a.dtype == dtype else xp.astype(a, dtype)


def normalize_axis(axis: int, ndim: int) -> int:
    """Return ``axis`` as a negative index into an ``ndim``-dimensional shape, or raise."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if ndim == 0:
        raise ValueError("the inputs are 0-dimensional; a distribution needs at least one axis")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for inputs with {ndim} dimensions")
    return axis - ndim if axis >= 0 else axis


def broadcast_shapes(named: Sequence[tuple[str, Array]]) -> tuple[int, ...]:
    """Broadcast the shapes of named arrays, raising a ValueError that names them on failure."""
    shapes = [(name, tuple(a.shape)) for name, a in named if not _is_scalar(a)]
    ndim = max(len(s) for _, s in shapes)
    out: list[int] = []
    for i in range(-ndim, 0):
        sizes = {s[i] for _, s in shapes if len(s) >= -i and s[i] != 1}
        if len(sizes) > 1:
            described = " and ".join(f"{name} with shape {shape}" for name, shape in shapes)
            raise ValueError(f"{described} do not broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def check_kind(kind: str, *, name: str = "kind", allowed: Sequence[str] = KINDS) -> None:
    if kind not in allowed:
        choices = ", ".join(repr(k) for k in allowed)
        raise ValueError(f"unknown {name} {kind!r}; expected one of {choices}")


def log_of_base(base: float | None) -> float | None:
    """Return log(base) for unit conversion, or None for nats; reject bases that define no unit."""
    if base is None:
        return None
    if isinstance(base, bool) or not isinstance(base, (int, float)):
        raise TypeError(f"base must be a positive number or None, got {base!r}")
    if not base > 0 or base == 1 or math.isinf(base):
        raise ValueError(f"base must be positive, finite and not 1 (got {base}); use 2 for bits")
    return math.log(base)


def is_eager(x: Array) -> bool:
    """True when reading values of ``x`` is cheap and allowed (not Dask, JAX tracer or compiling).

    ``array_api_compat.is_lazy_array`` answers True for every JAX array, concrete or not, so
    JAX arrays are told apart here: a concrete ``jax.Array`` is eager, a tracer (under ``jit``,
    ``grad``, ``vmap``) is not. JAX is looked up only if it is already imported.
    """
    jax = sys.modules.get("jax")
    if jax is not None and array_api_compat.is_jax_array(x):
        tracer = getattr(getattr(jax, "core", None), "Tracer", None)
        return tracer is not None and not isinstance(x, tracer)
    if array_api_compat.is_lazy_array(x):
        return False
    torch = sys.modules.get("torch")
    if torch is not None and array_api_compat.is_torch_array(x):
        return not (torch.compiler.is_compiling() or x.device.type == "meta")
    return True


def unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(out))


def sum_tolerance(xp: Namespace, dtype: Any) -> float:
    """Tolerance on |Σp − 1|: √eps of the input dtype, at least 1e-6.

    float64 → 1e-6, float32 → 3.5e-4, float16 → 3.1e-2, bfloat16 → 8.8e-2: loose enough for
    probabilities computed in that precision, tight enough to catch unnormalized rows.
    """
    return max(1e-6, math.sqrt(float(xp.finfo(dtype).eps)))


def validate_probs(
    xp: Namespace,
    p: Array,
    *,
    name: str,
    axis: int,
    where: Array | None,
    input_dtype: Any,
    given_axis: int | None = None,
) -> None:
    """Raise ValueError if eager ``p`` has a negative entry or a row off 1 beyond the tolerance.

    ``given_axis`` is the axis as the caller wrote it (``axis`` is normalized to a negative
    index): messages name the former, so that ``axis=0`` is not reported as ``axis -2``.
    """
    if not is_eager(p):
        return
    negative = p < 0
    if where is not None:
        negative = negative & where
    if bool(xp.any(negative)):
        # The first negative entry (argmin would pick a NaN elsewhere in the array).
        i = int(xp.argmax(xp.astype(xp.reshape(negative, (-1,)), xp.int8)))
        flat = xp.reshape(p, (-1,))
        index = unravel(i, tuple(p.shape))
        raise ValueError(
            f"{name} has a negative entry {float(flat[i]):.6g} at index {index}; "
            "probabilities must be >= 0"
        )
    kept = p if where is None else xp.where(where, p, xp.zeros_like(p))
    total = xp.sum(kept, axis=axis)
    tolerance = sum_tolerance(xp, input_dtype)
    found = first_row_off_one(xp, total, where=where, axis=axis, tolerance=tolerance)
    if found is not None:
        index, value = found
        raise ValueError(
            f"{name} sums to {value:.6g} along axis {axis if given_axis is None else given_axis} "
            f"at index {index}, not 1 "
            f"(tolerance {tolerance:.1e} for {input_dtype}); pass normalize=True to renormalize "
            "as scipy.stats.entropy does"
        )


def first_row_off_one(
    xp: Namespace, total: Array, *, where: Array | None, axis: int, tolerance: float
) -> tuple[tuple[int, ...], float] | None:
    """Return the index and value of the first row total off 1 by more than ``tolerance``.

    NaN totals are not off (NaN in gives NaN out), nor are rows that ``where`` leaves empty.
    """
    bad = xp.abs(total - 1) > tolerance
    if where is not None:
        # A row with nothing selected is an empty distribution, not an unnormalized one.
        bad = bad & xp.any(where, axis=axis)
    if not bool(xp.any(bad)):
        return None
    flat_bad = xp.reshape(bad, (-1,))
    i = int(xp.argmax(xp.astype(flat_bad, xp.int8)))
    return unravel(i, tuple(bad.shape)), float(xp.reshape(total, (-1,))[i])
