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
        problem: what is wrong, without the argument's name or the suggested ``kind``.
        suggested_kinds: the values of ``kind`` that the input looks like it holds, where the
            problem suggests a wrong ``kind`` (empty otherwise); the message names them.
    """

    def __init__(
        self, argument: str, message: str, *, suggested_kinds: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"{argument}: {message}{kind_hint(suggested_kinds, _KEYWORD)}")
        self.argument = argument
        self.problem = message
        self.suggested_kinds = suggested_kinds


_KEYWORD = 'kind="{}"'
_KIND_NAMES = {"logits": "logits", "log_probs": "log-probabilities", "probs": "probabilities"}


def kind_hint(kinds: tuple[str, ...], spelling: str) -> str:
    """``"; if they are logits, use kind="logits""`` for ``kinds``, each spelled by ``spelling``.

    Empty for no kinds. The command line spells them ``--kind {}``.
    """
    if not kinds:
        return ""
    names = " or ".join(_KIND_NAMES[kind] for kind in kinds)
    options = " or ".join(spelling.format(kind) for kind in kinds)
    return f"; if they are {names}, use {options}"


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
            if value < 0:
                raise InputError(
                    name,
                    f"entry {value:.6g} at index {_index(index)}; probabilities must be >= 0",
                    suggested_kinds=("logits", "log_probs"),
                )
            raise InputError(
                name, f"entry {value:.6g} at index {_index(index)}; entries must be finite"
            )
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


def undefined_rows(a: Any, b: Any) -> np.ndarray:
    """Rows (bool, shape (rows,)) where either side has a NaN or +inf entry.

    Their divergences are undefined: `compare` reports them as NaN and counts them.
    """
    bad = np.zeros(int(a.shape[0]), dtype=bool)
    for side in (a, b):
        values = to_numpy(side).astype(np.float64)
        bad |= (np.isnan(values) | (values == math.inf)).any(axis=-1)
    return bad


def normalization_tolerance(dtype: Any) -> float:
    """The tolerance on |Σ exp(log p) − 1| for log-probabilities stored as ``dtype``.

    The tolerance on probabilities' sums (`kldiv._array.sum_tolerance`): √eps of the dtype,
    so float16 3.1e-2 and bfloat16 8.8e-2 (``dtype`` may be a NumPy or torch dtype, or a name).
    """
    name = str(dtype).removeprefix("torch.")
    eps = _EPS.get(name)
    if eps is None:
        return sum_tolerance(np, np.float32)
    return max(1e-6, math.sqrt(eps))


_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def check_normalized(
    log_totals: np.ndarray,
    tolerances: tuple[float, float],
    dtypes: tuple[str, str],
    start: int,
    batch_shape: tuple[int, ...],
) -> None:
    r"""Raise InputError for the first row of log-probabilities that does not sum to 1.

    Args:
        log_totals: each row's $\log \sum_v e^{x_v}$, float64 of shape (rows, 2) for base
            and test; NaN for rows not checked here (they hold NaN or +inf entries).
        tolerances: the tolerance on |Σ e^x − 1| for base and test (`normalization_tolerance`).
        dtypes: the inputs' dtypes, for the message.
        start: the chunk's first row, and ``batch_shape`` the inputs' batch shape, to locate it.
    """
    with np.errstate(over="ignore"):
        totals = np.exp(log_totals)
    for column, name in enumerate(("base", "test")):
        off = np.abs(totals[:, column] - 1) > tolerances[column]  # False for NaN rows
        if not off.any():
            continue
        row = int(np.argmax(off))
        index = tuple(np.unravel_index(start + row, batch_shape))
        raise InputError(
            name,
            f"row at index {_index(index)} is not log-probabilities: its exponentials sum to "
            f"{totals[row, column]:.6g} (log-sum-exp {log_totals[row, column]:.6g}), not 1 "
            f"(tolerance {tolerances[column]:.1e} for {dtypes[column]})",
            suggested_kinds=("logits",),
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
            f"(expected {_shapes(batch_shape, n)})",
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


def _shapes(batch_shape: tuple[int, ...], n: int) -> str:
    """The label shapes `compare` accepts: the inputs' batch shape, or (n,) flattened."""
    if batch_shape == (n,):
        return str(batch_shape)
    return f"{batch_shape} or ({n},)"


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of ``x``, copied to the host for torch tensors on a device."""
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(x)
