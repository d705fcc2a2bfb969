r"""The compiled logits kernel of `compare`: every statistic in one pass per row, in C.

``kldiv._native.compare`` reads each row of both inputs as stored (float16, bfloat16 or
float32), widens it on the fly and makes three passes over it while it sits in the core's
cache: the maxima, $e^{x - \max x}$ with its sum, and the sums

$$
\mathrm{KL}(p\|q) = \sum_v p\,d, \qquad \mathrm{KL}(q\|p) = -\sum_v q\,d, \qquad
\mathrm{JSD} = \log 2 + \tfrac12 \sum_v p \log\tfrac{p}{p+q} + q \log\tfrac{q}{p+q},
$$

with $d = \log p - \log q$. It returns what `kldiv.report._fused.fused_logits` returns
and flags the same rows (inf or NaN entries, results that are not finite) for the caller to
recompute with the core's divergences. Where it is not built, or ``KLDIV_NATIVE=0``,
`compare` takes the NumPy/PyTorch kernel instead.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from kldiv._native import load, thread_count

# The kernel's codes for the element types it reads.
FLOAT32, FLOAT16, BFLOAT16 = 0, 1, 2
_NUMPY_CODES = {np.dtype(np.float32): FLOAT32, np.dtype(np.float16): FLOAT16}


def compiled_kernel() -> ModuleType | None:
    """``kldiv._native.compare``, or None where it is not built or turned off."""
    return load("compare")


def storage(rows: Any) -> tuple[np.ndarray, int] | None:
    """The rows' stored bits as a C-contiguous NumPy array and the kernel's dtype code.

    None for what the kernel does not read (float64, other libraries, GPU tensors): those
    take the NumPy/PyTorch kernel.
    """
    if isinstance(rows, np.ndarray):
        code = _NUMPY_CODES.get(rows.dtype)
        if code is None or not rows.flags.c_contiguous:
            return None
        return rows, code
    return _torch_storage(rows)


def _torch_storage(rows: Any) -> tuple[np.ndarray, int] | None:
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(rows, torch.Tensor) or rows.device.type != "cpu":
        return None
    codes = {torch.float32: FLOAT32, torch.float16: FLOAT16, torch.bfloat16: BFLOAT16}
    code = codes.get(rows.dtype)
    if code is None:
        return None
    rows = rows.detach().contiguous()
    if code == FLOAT32:
        return rows.numpy(), code
    return rows.view(torch.int16).numpy().view(np.uint16), code


def compiled_logits(
    kernel: ModuleType,
    a: tuple[np.ndarray, int],
    b: tuple[np.ndarray, int],
    index: np.ndarray | None,
    *,
    log_totals: np.ndarray | None = None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    r"""KL(a‖b), KL(b‖a), JSD, top-1 agreement and label log-probabilities, as `fused_logits`.

    Args:
        kernel: the compiled module (`compiled_kernel`).
        a: base rows, shape (rows, V), as `storage` gives them.
        b: test rows, the same shape and dtype code.
        index: label token ids, shape (rows, 1), in [0, V), or None.
        log_totals: where to write each row's $\log \sum_v e^{x_v}$ for base and test,
            float64 of shape (rows, 2), C-contiguous (NaN in the rows marked ``exact``); the
            kernel computes it anyway, so checking that log-probabilities normalize is free.

    Returns:
        ``(values, exact)``: float64 KL(a‖b), KL(b‖a) and JSD of shape (rows,), a bool
        agreement of the argmaxes, with labels log p(label) and log q(label); ``exact`` marks
        the rows to recompute (their values here are meaningless).
    """
    (a_bits, code), (b_bits, _) = a, b
    rows, vocab = a_bits.shape
    kld, reverse, jsd, label_base, label_test = (np.empty(rows) for _ in range(5))
    agree, exact = np.empty(rows, dtype=np.uint8), np.empty(rows, dtype=np.uint8)
    labels = None if index is None else np.ascontiguousarray(index[:, 0], dtype=np.int64)
    if log_totals is None:
        log_totals = np.empty((rows, 2))
    kernel.logits(
        a_bits,
        b_bits,
        vocab,
        code,
        labels,
        thread_count(),
        kld,
        reverse,
        jsd,
        agree,
        label_base,
        label_test,
        exact,
        log_totals,
    )
    values: tuple[np.ndarray, ...] = (kld, reverse, jsd, agree.view(np.bool_))
    if labels is not None:
        values += (label_base, label_test)
    return values, exact.view(np.bool_)
