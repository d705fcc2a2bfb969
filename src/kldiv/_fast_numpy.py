"""A cache-blocked, multithreaded path for `kldiv.kl_div` on NumPy probabilities.

The generic Array API path makes several full passes over (rows × support) temporaries. For
the most common call — two NumPy arrays of probabilities — this path walks row blocks small
enough to stay in cache, checks row sums and reduces each block while it is hot, and spreads
blocks over threads (NumPy releases the GIL in its ufuncs). Anything unusual — a row sum off
1, a negative entry, a zero, an infinity or a NaN — is handed to the generic path, which owns
the conventions and the error messages, so both paths agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kldiv._array import log_of_base, sum_tolerance

_BLOCK_BYTES = 1 << 18
_MIN_PARALLEL_ELEMENTS = 1 << 18
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

Generic = Callable[..., Any]


def applies(p: Any, q: Any, p_kind: str, q_kind: str, axis: Any, where: Any) -> bool:
    """Whether `kl_div` can take this path: same-shape float32/float64 NumPy probabilities."""
    return (
        p_kind == "probs"
        and q_kind == "probs"
        and where is None
        and isinstance(p, np.ndarray)
        and isinstance(q, np.ndarray)
        and p.dtype == q.dtype
        and p.dtype in _FLOATS
        and p.shape == q.shape
        and p.size > 0
        and isinstance(axis, int)
        and not isinstance(axis, bool)
        and -p.ndim <= axis < p.ndim
    )


def kl_div(
    p: np.ndarray,
    q: np.ndarray,
    *,
    axis: int,
    base: float | None,
    keepdims: bool,
    normalize: bool,
    generic: Generic,
) -> Any:
    """KL(P‖Q) along ``axis``; ``generic`` is the Array API implementation used for unusual rows."""
    log_base = log_of_base(base)
    moved_p = np.moveaxis(p, axis, -1)
    batch_shape, size = moved_p.shape[:-1], moved_p.shape[-1]
    rows_p = moved_p.reshape(-1, size)
    rows_q = np.moveaxis(q, axis, -1).reshape(-1, size)
    result = np.empty(rows_p.shape[0], dtype=p.dtype)
    off_one = _run_blocks(rows_p, rows_q, result, normalize=normalize)
    unusual = ~np.isfinite(result)
    if off_one or (unusual.any() and (np.any(rows_p < 0) or np.any(rows_q < 0))):
        # Invalid input: the generic path raises with the index of the first problem.
        return generic(p, q, axis=axis, base=base, keepdims=keepdims, normalize=normalize)
    if unusual.any():
        result[unusual] = generic(rows_p[unusual], rows_q[unusual], axis=-1, normalize=normalize)
    if log_base is not None:
        result /= log_base
    out = result.reshape(batch_shape)
    return np.expand_dims(out, axis) if keepdims else out


def _run_blocks(
    rows_p: np.ndarray, rows_q: np.ndarray, result: np.ndarray, *, normalize: bool
) -> bool:
    """Fill ``result`` with Σ p·log(p/q) per row; return True if a row sum is off 1."""
    n_rows, size = rows_p.shape
    per_block = max(1, _BLOCK_BYTES // (size * rows_p.itemsize))
    starts = list(range(0, n_rows, per_block))
    tolerance = sum_tolerance(np, rows_p.dtype)

    def work(chunk: list[int]) -> bool:
        buffer = np.empty((per_block, size), dtype=rows_p.dtype)
        for start in chunk:
            stop = min(start + per_block, n_rows)
            block_p, block_q, out = rows_p[start:stop], rows_q[start:stop], buffer[: stop - start]
            sums_p = block_p.sum(axis=1)
            sums_q = block_q.sum(axis=1)
            if not normalize and (
                np.any(np.abs(sums_p - 1) > tolerance) or np.any(np.abs(sums_q - 1) > tolerance)
            ):
                return True
            with np.errstate(all="ignore"):
                np.divide(block_p, block_q, out=out)
                if normalize:
                    # p/Σp over q/Σq, and the outer weight p/Σp applied after the row sum.
                    out *= (sums_q / sums_p)[:, None]
                np.log(out, out=out)
                np.multiply(out, block_p, out=out)
                totals = out.sum(axis=1)
                result[start:stop] = totals / sums_p if normalize else totals
        return False

    workers = min(os.cpu_count() or 1, len(starts))
    if workers < 2 or rows_p.size < _MIN_PARALLEL_ELEMENTS:
        return work(starts)
    chunks = [starts[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return any(list(pool.map(work, chunks)))
