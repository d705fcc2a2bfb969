r"""One fused pass over a chunk of logits for every statistic `compare` reports.

The core computes KL, reverse KL and JSD one at a time, each with its own log-softmax, support
masks and checks. For two chunks of logits that is a few dozen passes over the rows; this
kernel makes about a dozen cheap ones, a single ``exp`` per entry and a single ``log`` per pair,
with the entries widened once to float32 (float64 stays float64):

$$
\log p = a - \max a - \log \textstyle\sum e^{a - \max a}, \qquad d = \log p - \log q,
$$

$$
\mathrm{KL}(p\|q) = \sum_v p\,d, \qquad \mathrm{KL}(q\|p) = -\sum_v q\,d,
$$

$$
\mathrm{JSD} = \log 2 + \tfrac12 \sum_v p \log\tfrac{p}{p+q} + q \log\tfrac{q}{p+q}.
$$

Each sum is of small terms (d, or logarithms of ratios at most 1), so float32 loses nothing
to cancellation against large log-probabilities. A -inf logit makes its row non-finite here
(0 · log 0 needs the core's masks), as does p + q underflowing to 0 (logits more than about
100 apart); such rows, and rows with NaN or +inf, are flagged for the caller to recompute with
`kldiv.kl_div` and `kldiv.js_div`, which handle them exactly or report them. Matrix products
compute the row sums: they read both sides at once at the speed of the machine's BLAS.

The kernel is NumPy (its ``argmax`` and BLAS row sums are faster than PyTorch's on the CPU);
widening float16 is several times faster in PyTorch than in NumPy, and PyTorch's ``exp`` and
``log`` are about 1.5x NumPy's on an AVX-512 machine, so PyTorch does those steps when it is
available.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import warnings
from typing import Any

import array_api_compat
import numpy as np

# PyTorch is imported for widening only from this many entries per input on (it takes about
# a second to import); below, or when it is missing, NumPy widens.
TORCH_WIDENING_ENTRIES = 1 << 26

_LOG_2 = math.log(2.0)
_workspaces = threading.local()


def fused_applies(a: Any, b: Any, kind: str) -> bool:
    """Whether `fused_logits` handles these rows: logits in NumPy or in CPU PyTorch tensors."""
    if kind != "logits" or type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return bool(a.dtype.kind == "f" and b.dtype.kind == "f")
    return (
        array_api_compat.is_torch_array(a)
        and a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.is_floating_point()
        and b.is_floating_point()
    )


def torch_for_widening(entries: int) -> Any:
    """PyTorch if it is loaded already, or installed and the input is large; else None."""
    if "torch" in sys.modules:
        return sys.modules["torch"]
    if entries >= TORCH_WIDENING_ENTRIES and importlib.util.find_spec("torch") is not None:
        import torch

        return torch
    return None


# Non-finite rows are expected here: they are flagged, not warned about.
@np.errstate(all="ignore")
def fused_logits(
    a: Any,
    b: Any,
    index: np.ndarray | None,
    *,
    torch: Any = None,
    log_totals: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    r"""KL(a‖b), KL(b‖a), JSD, top-1 agreement and label log-probabilities of rows of logits.

    $$
    \mathrm{JSD} = \tfrac12 \mathrm{KL}(p\|m) + \tfrac12 \mathrm{KL}(q\|m),
    \quad m = \tfrac12 (p + q)
    $$

    Args:
        a: base logits, shape (rows, V), a NumPy array or CPU torch tensor of float16,
            bfloat16, float32 or float64.
        b: test logits, the same shape and library.
        index: label token ids, shape (rows, 1), int64 in [0, V), or None.
        torch: the torch module to widen with, or None to widen with NumPy.
        log_totals: where to write each row's $\log \sum_v e^{x_v}$ for a and b, float64 of
            shape (rows, 2), or None; it comes from the sums computed anyway.

    Returns:
        ``(values, exact)``: ``values`` holds float64 arrays of shape (rows,) for the three
        divergences (nats), a bool agreement of the two argmaxes, and with labels log p(label)
        and log q(label); ``exact`` (bool, shape (rows,)) marks the rows whose values are not
        finite here (-inf, +inf or NaN entries, or an infinite KL) and must be recomputed.

    Examples:
        >>> import numpy as np
        >>> values, exact = fused_logits(np.zeros((1, 2)), np.log([[1.0, 3.0]]), None)
        >>> [float(v[0]) for v in values[:3]], bool(values[3][0]), exact
        ([0.143841, 0.130812, 0.0338221], False, array([False]))
    """
    rows, vocab = (int(n) for n in a.shape)
    wide = np.float64 if np.float64 in (_numpy_dtype(a), _numpy_dtype(b)) else np.float32
    x, e, pair = _workspace(rows, vocab, wide)
    _widen(x[:, 0], a, torch)
    _widen(x[:, 1], b, torch)
    top1 = x.argmax(axis=-1)
    # The maximum read at the argmax: one pass fewer than x.max (NaN rows stay NaN).
    top = np.take_along_axis(x, top1[..., None], axis=-1)
    x -= top
    _exp(x, e, torch)
    # Row sums and dot products as matrix products: BLAS reads both sides in one pass.
    totals = np.matmul(e, np.ones((vocab, 1), dtype=wide))  # (rows, 2, 1)
    if log_totals is not None:
        np.add(top[..., 0], np.log(totals[..., 0]), out=log_totals, casting="unsafe")
    x -= np.log(totals)  # log p and log q
    np.subtract(x[:, 0], x[:, 1], out=pair)
    signed = np.matmul(e, pair[:, :, None])[:, :, 0] / totals[:, :, 0]
    kld, reverse = signed[:, 0], -signed[:, 1]
    labels = None if index is None else np.take_along_axis(x, index[:, None, :], axis=-1)[..., 0]
    np.matmul(e.transpose(0, 2, 1), 1 / totals, out=pair[:, :, None])  # p + q
    # Where p + q underflows to 0 its log is -inf and the row turns NaN: the core redoes it.
    _log(pair, torch)
    x -= pair[:, None, :]  # log(p / (p + q)) and log(q / (p + q))
    gram = np.matmul(e, x.transpose(0, 2, 1))
    jsd = _LOG_2 + 0.5 * (gram[:, 0, 0] / totals[:, 0, 0] + gram[:, 1, 1] / totals[:, 1, 0])
    values = [kld, reverse, jsd]
    if labels is not None:
        values += [labels[:, 0], labels[:, 1]]
    out = [v.astype(np.float64) for v in values]
    exact = ~(np.isfinite(out[0]) & np.isfinite(out[1]) & np.isfinite(out[2]))
    agree = top1[:, 0] == top1[:, 1]
    return (*out[:3], agree, *out[3:]), exact


def _exp(x: np.ndarray, out: np.ndarray, torch: Any) -> None:
    """``out = exp(x)``; PyTorch's vectorized float32 ``exp`` is about 1.5x NumPy's where loaded."""
    if torch is None:
        np.exp(x, out=out)
    else:
        torch.exp(torch.from_numpy(x), out=torch.from_numpy(out))


def _log(x: np.ndarray, torch: Any) -> None:
    """``x = log(x)`` in place, with PyTorch's ``log`` where loaded (about 1.4x NumPy's)."""
    if torch is None:
        np.log(x, out=x)
    else:
        torch.log_(torch.from_numpy(x))


def _numpy_dtype(rows: Any) -> Any:
    if isinstance(rows, np.ndarray):
        return rows.dtype.type
    return np.float64 if rows.dtype.itemsize == 8 else np.float32


def _workspace(rows: int, vocab: int, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buffers reused by a thread across chunks of the same shape: no page faults per chunk."""
    key = (rows, vocab, dtype)
    if getattr(_workspaces, "key", None) != key:
        _workspaces.key = key
        _workspaces.buffers = (
            np.empty((rows, 2, vocab), dtype=dtype),
            np.empty((rows, 2, vocab), dtype=dtype),
            np.empty((rows, vocab), dtype=dtype),
        )
    return _workspaces.buffers  # type: ignore[no-any-return]


def _widen(out: np.ndarray, rows: Any, torch: Any) -> None:
    """Copy ``rows`` into the float32 or float64 buffer ``out``."""
    if isinstance(rows, np.ndarray) and (torch is None or rows.dtype == out.dtype):
        out[...] = rows
        return
    with warnings.catch_warnings():
        # A read-only memory map makes torch warn about writes; this only reads it.
        warnings.simplefilter("ignore")
        source = torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows.detach()
        torch.from_numpy(out).copy_(source)
