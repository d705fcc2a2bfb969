"""Turning user inputs into distributions: one `Side` per argument, in log space and, when given, as probabilities.

A `Side` is what every divergence in `kldiv._divergences` consumes. Building it is the only
place where kinds, dtypes, broadcasting, masks, normalization and validation are handled, so
every divergence treats its inputs identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kldiv._array import (
    Array,
    Namespace,
    as_compute,
    broadcast_shapes,
    check_kind,
    compute_dtype,
    first_row_off_one,
    is_eager,
    log_of_base,
    namespace,
    normalize_axis,
    sum_tolerance,
    validate_probs,
)


@dataclass(frozen=True)
class Side:
    """One distribution along ``axis``.

    Attributes:
        log: log-probabilities; ``-inf`` where the probability is 0.
        probs: the probabilities exactly as given (kind "probs"), otherwise None.
        support: True where the probability may be nonzero (NaN entries included, so NaN
            propagates) and the entry is selected by ``where``.
    """

    log: Array
    probs: Array | None
    support: Array

    def safe_log(self, xp: Namespace) -> Array:
        """``log`` with 0 outside the support, so that no -inf reaches an arithmetic op or its gradient."""
        return xp.where(self.support, self.log, xp.zeros_like(self.log))

    def safe_probs(self, xp: Namespace) -> Array:
        """Probabilities with 0 outside the support, computed from ``log`` unless given."""
        if self.probs is not None:
            return xp.where(self.support, self.probs, xp.zeros_like(self.probs))
        return xp.where(self.support, xp.exp(self.safe_log(xp)), xp.zeros_like(self.log))


@dataclass(frozen=True)
class Prepared:
    """Inputs made ready for a divergence: namespace, sides, axis, mask and output conventions."""

    xp: Namespace
    sides: list[Side]
    axis: int
    where: Array | None
    result_dtype: Any
    log_base: float | None
    keepdims: bool

    def reduce(self, terms: Array) -> Array:
        """Sum elementwise terms along the axis, convert units and return in the result dtype."""
        xp = self.xp
        if self.where is not None:
            terms = xp.where(self.where, terms, xp.zeros_like(terms))
        return self.finish(xp.sum(terms, axis=self.axis, keepdims=self.keepdims))

    def finish(self, total: Array) -> Array:
        """Convert a reduced result to the requested base and the inputs' floating dtype."""
        xp = self.xp
        if self.log_base is not None:
            total = total / self.log_base
        return total if total.dtype == self.result_dtype else xp.astype(total, self.result_dtype)


def log_softmax(xp: Namespace, x: Array, axis: int) -> Array:
    """Stable log-softmax: x − max − log Σ exp(x − max); rows of all -inf give all -inf, not NaN."""
    top = xp.max(x, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    shifted = x - top
    total = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
    # An empty row (all -inf) has total 0: its log-probabilities stay -inf rather than NaN.
    return shifted - xp.log(xp.where(total == 0, xp.ones_like(total), total))


def logsumexp(xp: Namespace, x: Array, axis: int, *, keepdims: bool = False) -> Array:
    """Stable log Σ exp(x) along ``axis``: -inf for rows of all -inf, +inf if an entry is +inf."""
    top = xp.max(x, axis=axis, keepdims=True)
    top = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    total = xp.sum(xp.exp(x - top), axis=axis, keepdims=True)
    empty = total == 0
    out = xp.where(
        empty,
        xp.full_like(total, -float("inf")),
        xp.log(xp.where(empty, xp.ones_like(total), total)) + top,
    )
    return out if keepdims else xp.squeeze(out, axis=axis)


def prepare(
    inputs: Sequence[tuple[str, Any, str]],
    *,
    axis: int,
    where: Any,
    normalize: bool,
    base: float | None,
    keepdims: bool,
) -> Prepared:
    """Validate and convert ``(name, array, kind)`` inputs into `Side`s on a common shape and dtype."""
    for name, _, kind in inputs:
        check_kind(kind, name=f"kind of {name}")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    log_base = log_of_base(base)
    names = [name for name, _, _ in inputs]
    arrays = [a for _, a, _ in inputs]
    if where is not None:
        names.append("where")
        arrays.append(where)
    xp, arrays = namespace(*arrays, names=names)
    named = list(zip(names, arrays, strict=True))
    mask = None
    if where is not None:
        mask = arrays.pop()
        named.pop()
        if not xp.isdtype(mask.dtype, "bool"):
            raise TypeError(f"where must be a boolean array, got dtype {mask.dtype}")
    result_dtype, dtype = compute_dtype(xp, named)
    shape = broadcast_shapes(named + ([("where", mask)] if mask is not None else []))
    given_axis, axis = axis, normalize_axis(axis, len(shape))
    if mask is not None and tuple(mask.shape) != shape:
        mask = xp.broadcast_to(mask, shape)
    sides = []
    for (name, array, kind), converted in zip(inputs, arrays, strict=True):
        x = as_compute(xp, converted, dtype, like=converted)
        if tuple(x.shape) != shape:
            x = xp.broadcast_to(x, shape)
        input_dtype = array.dtype if hasattr(array, "dtype") else result_dtype
        sides.append(_side(xp, x, kind, name, (axis, given_axis), mask, normalize, input_dtype))
    return Prepared(xp, sides, axis, mask, result_dtype, log_base, keepdims)


def _side(
    xp: Namespace,
    x: Array,
    kind: str,
    name: str,
    axes: tuple[int, int],
    mask: Array | None,
    normalize: bool,
    input_dtype: Any,
) -> Side:
    axis, given_axis = axes  # normalized (negative) and as the caller wrote it, for messages
    if kind == "logits":
        if mask is not None:
            x = xp.where(mask, x, xp.full_like(x, -float("inf")))
        log = log_softmax(xp, x, axis)
        support = log != -float("inf")
        return Side(log, None, support)
    if kind == "log_probs":
        support = x != -float("inf")
        if mask is not None:
            support = support & mask
            x = xp.where(mask, x, xp.full_like(x, -float("inf")))
        validate_log_probs(
            xp, x, name=name, axis=axis, where=mask, input_dtype=input_dtype, given_axis=given_axis
        )
        return Side(x, None, support)
    if normalize:
        kept = x if mask is None else xp.where(mask, x, xp.zeros_like(x))
        x = x / xp.sum(kept, axis=axis, keepdims=True)
    validate_probs(
        xp, x, name=name, axis=axis, where=mask, input_dtype=input_dtype, given_axis=given_axis
    )
    support = x != 0
    if mask is not None:
        support = support & mask
    log = xp.where(
        support, xp.log(xp.where(support, x, xp.ones_like(x))), xp.full_like(x, -float("inf"))
    )
    return Side(log, x, support)


def validate_log_probs(
    xp: Namespace,
    log_p: Array,
    *,
    name: str,
    axis: int,
    where: Array | None,
    input_dtype: Any,
    given_axis: int,
) -> None:
    """Raise ValueError if eager log-probabilities do not normalize: Σ exp(log p) off 1.

    Raw logits passed as ``kind="log_probs"`` are the usual cause, so the message suggests
    ``kind="logits"``. Entries outside ``where`` must already be -inf. NaN rows pass.
    """
    if not is_eager(log_p):
        return
    total = xp.exp(logsumexp(xp, log_p, axis))
    tolerance = sum_tolerance(xp, input_dtype)
    found = first_row_off_one(xp, total, where=where, axis=axis, tolerance=tolerance)
    if found is not None:
        index, value = found
        raise ValueError(
            f"{name} holds log-probabilities whose exponentials sum to {value:.6g} along axis "
            f"{given_axis} at index {index}, not 1 (tolerance {tolerance:.1e} for "
            f"{input_dtype}); if these are unnormalized scores, pass kind='logits' (or "
            f"{name}_kind='logits'), which applies a log-softmax"
        )
