"""A cache-blocked, multithreaded path for `kldiv.kl_div` on NumPy arrays.

The generic Array API path makes a dozen full passes over (rows × support) temporaries. For
the most common calls — two same-shape NumPy arrays of probabilities, log-probabilities or
logits — this path walks row blocks small enough to stay in cache, checks and reduces each
block while it is hot, and spreads blocks over threads (NumPy releases the GIL in its
ufuncs). Anything unusual — a row sum off 1, a negative entry, an infinite result or a NaN —
is handed to the generic path, which owns the conventions and the error messages, so both
paths give the same answers. Negative entries are looked for in every block of probabilities
(one ``min`` while the block is in cache), not only in rows whose result is not finite: a
negative entry can give a finite, wrong divergence.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kldiv._array import log_of_base, sum_tolerance

_BLOCK_BYTES = 1 << 17
_MIN_PARALLEL_ELEMENTS = 1 << 18
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

Generic = Callable[..., Any]


def applies(p: Any, q: Any, axis: Any, where: Any, normalize: Any) -> bool:
    """Whether `kl_div` can take this path: same-shape float16/32/64 NumPy arrays, no mask."""
    return (
        where is None
        and isinstance(normalize, bool)
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
    p_kind: str,
    q_kind: str,
    axis: int,
    base: float | None,
    keepdims: bool,
    normalize: bool,
    generic: Generic,
) -> Any:
    """KL(P‖Q) along ``axis``; ``generic`` is the Array API implementation used for unusual rows."""
    log_base = log_of_base(base)
    kinds = {"p_kind": p_kind, "q_kind": q_kind, "normalize": normalize}
    moved_p = np.moveaxis(p, axis, -1)
    batch_shape, size = moved_p.shape[:-1], moved_p.shape[-1]
    rows_p = moved_p.reshape(-1, size)
    rows_q = np.moveaxis(q, axis, -1).reshape(-1, size)
    # float16 blocks are widened to float32 one cache-sized block at a time.
    result = np.empty(rows_p.shape[0], dtype=np.promote_types(p.dtype, np.float32))
    invalid = _run_blocks(rows_p, rows_q, result, p_kind, q_kind, normalize)
    if invalid:
        # Invalid input: the generic path raises with the index of the first problem.
        return generic(p, q, **kinds, axis=axis, base=base, keepdims=keepdims)
    unusual = ~np.isfinite(result)
    if unusual.any():
        result[unusual] = generic(rows_p[unusual], rows_q[unusual], **kinds, axis=-1)
    if log_base is not None:
        result /= log_base
    out = result.reshape(batch_shape).astype(p.dtype, copy=False)
    return np.expand_dims(out, axis) if keepdims else out


def _run_blocks(
    rows_p: np.ndarray,
    rows_q: np.ndarray,
    result: np.ndarray,
    p_kind: str,
    q_kind: str,
    normalize: bool,
) -> bool:
    """Fill ``result`` with KL per row (NaN/inf for rows to redo).

    Returns True if a block of probabilities has a negative entry or a row off 1.
    """
    n_rows, size = rows_p.shape
    per_block = max(1, _BLOCK_BYTES // (size * result.itemsize))
    starts = list(range(0, n_rows, per_block))
    tolerance = sum_tolerance(np, rows_p.dtype)
    dtype = result.dtype
    both_probs = p_kind == q_kind == "probs"

    def work(chunk: list[int]) -> bool:
        scratch = np.empty((4, per_block, size), dtype=dtype)
        for start in chunk:
            stop = min(start + per_block, n_rows)
            rows = stop - start
            with np.errstate(all="ignore"):
                spare = scratch[2, :rows]
                p = _probs_or_log(
                    rows_p[start:stop], p_kind, normalize, tolerance, scratch[0, :rows], spare
                )
                q = _probs_or_log(
                    rows_q[start:stop], q_kind, normalize, tolerance, scratch[1, :rows], spare
                )
                if p is None or q is None:
                    return True
                terms = scratch[2, :rows]
                if both_probs:
                    _probs_terms(p, q, terms)
                else:
                    _log_terms(p, q, p_kind, q_kind, terms, scratch[3, :rows])
                result[start:stop] = terms.sum(axis=1)
        return False

    workers = min(os.cpu_count() or 1, len(starts))
    if workers < 2 or rows_p.size < _MIN_PARALLEL_ELEMENTS:
        return work(starts)
    chunks = [starts[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return any(list(pool.map(work, chunks)))


def _probs_or_log(
    block: np.ndarray,
    kind: str,
    normalize: bool,
    tolerance: float,
    out: np.ndarray,
    spare: np.ndarray,
) -> np.ndarray | None:
    """Probabilities (kind "probs", checked or normalized) or log-probabilities, per block.

    Returns None when a probability is negative or a row sum (of probabilities, or of the
    exponentials of log-probabilities) is off 1: the caller reports it. ``spare`` is a
    scratch buffer of the block's shape.
    """
    if block.dtype != out.dtype and kind != "logits":
        np.copyto(out, block)
        block = out
    if kind == "log_probs":
        # Raw logits passed as log-probabilities are the usual mistake; NaN rows pass. The
        # exponentials are taken in float32 (twice as fast as float64, relative error ~1e-7,
        # far below the tolerance of at least 1e-6) and summed in float64.
        check = spare.view(np.float32)[:, : block.shape[1]] if spare.itemsize == 8 else spare
        np.copyto(check, block, casting="same_kind")
        totals = np.exp(check, out=check).sum(axis=1, dtype=np.float64)
        return None if np.any(np.abs(totals - 1) > tolerance) else block
    if kind == "logits":
        np.subtract(block, block.max(axis=1, keepdims=True), out=out)
        total = np.exp(out).sum(axis=1, keepdims=True)
        out -= np.log(total)
        return out
    # fmin skips NaN, so a NaN in one row cannot hide a negative entry in another; the NaN row
    # itself goes on and is redone by the generic path, which propagates it.
    if np.fmin.reduce(block, axis=None) < 0:
        return None
    sums = block.sum(axis=1, keepdims=True)
    if normalize:
        np.divide(block, sums, out=out)  # in place when the block was widened into ``out``
        return out
    if np.any(np.abs(sums - 1) > tolerance):
        return None
    return block


def _probs_terms(p: np.ndarray, q: np.ndarray, terms: np.ndarray) -> None:
    """p·log1p((p − q)/q): exact near p = q, as in the generic path."""
    zero_p = None if p.all() else np.equal(p, 0)
    np.subtract(p, q, out=terms)
    np.divide(terms, q, out=terms)
    np.log1p(terms, out=terms)
    terms *= p
    if zero_p is not None:
        # 0·log(0/q) = 0; multiplying q's entries keeps a NaN there.
        terms[zero_p] = q[zero_p] * 0.0


def _log_terms(
    p: np.ndarray, q: np.ndarray, p_kind: str, q_kind: str, terms: np.ndarray, probs: np.ndarray
) -> None:
    """exp(log p)·(log p − log q), with either side given as probabilities or in log space."""
    log_p = np.log(p) if p_kind == "probs" else p
    log_q = np.log(q) if q_kind == "probs" else q
    probs_p = p if p_kind == "probs" else np.exp(p, out=probs)
    np.subtract(log_p, log_q, out=terms)
    terms *= probs_p
    zero_p = probs_p == 0
    if zero_p.any():
        # Outside the support of p the term is 0, unless q is NaN there.
        terms[zero_p] = np.where(np.isnan(log_q[zero_p]), np.nan, 0.0)
