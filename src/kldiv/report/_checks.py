"""Checks of `compare`'s inputs that name the input, the place and the fix."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from kldiv._array import sum_tolerance


class InputError(ValueError):
    """Invalid values in one of `compare`'s inputs.

    Attributes:
        argument: which input holds the problem: ``"base"``, ``"test"`` or ``"labels"``.
    """

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.problem = message


def raise_first_problem(
    a: Any, b: Any, kind: str, start: int, batch_shape: tuple[int, ...]
) -> None:
    """Raise InputError for the first invalid entry of the chunk, if there is one."""
    for name, side in (("base", a), ("test", b)):
        values = to_numpy(side)
        wide = values.astype(np.float64)
        bad = np.isnan(wide) | (wide == math.inf)
        if kind == "probs":
            bad |= wide < 0
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            value = wide[row, column]
            index = (*np.unravel_index(start + row, batch_shape), column)
            rule = "probabilities must be >= 0" if value < 0 else "entries must be finite"
            raise InputError(name, f"entry {value:.6g} at index {_index(index)}; {rule}")
        if kind == "probs":
            tolerance = sum_tolerance(np, values.dtype)
            sums = wide.sum(axis=-1)
            off = np.abs(sums - 1) > tolerance
            if off.any():
                row = int(np.argmax(off))
                index = tuple(np.unravel_index(start + row, batch_shape))
                raise InputError(
                    name,
                    f"row at index {_index(index)} sums to {sums[row]:.6g}, not 1 (tolerance "
                    f"{tolerance:.1e} for {values.dtype}); probabilities must sum to 1 along "
                    "the last axis",
                )


def _index(index: tuple[Any, ...]) -> str:
    return str(tuple(int(i) for i in index))


def check_labels(
    labels: Any, batch_shape: tuple[int, ...], n: int, vocab: int
) -> np.ndarray | None:
    if labels is None:
        return None
    array = to_numpy(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError("labels", f"dtype is {array.dtype}; labels must be integer token ids")
    if array.shape not in (batch_shape, (n,)):
        raise InputError(
            "labels",
            f"shape {array.shape} does not match the {n} positions of the inputs "
            f"(expected {batch_shape} or ({n},))",
        )
    flat = array.reshape(-1).astype(np.int64)
    too_big = flat >= vocab
    if too_big.any():
        i = int(np.argmax(too_big))
        raise InputError(
            "labels",
            f"token id {flat[i]} at position {i} is outside the vocabulary of {vocab}; "
            "use a negative label to skip a position",
        )
    return flat


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x``, copied to the host for torch tensors on a device."""
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(x)
