r"""Triton kernels of the logit divergences: one program per row, two or three sweeps over it.

With $a = x/\tau$ (student), $b = t/\tau$ (teacher), $q = \mathrm{softmax}(a)$,
$p = \mathrm{softmax}(b)$ and terms of zero weight counted as 0, the kernel mirrors the CPU
kernel (``_native/losses.c``):

$$
\begin{aligned}
\text{forward: } & D = \textstyle\sum p\,(\log p - \log q),
    & \partial D/\partial x &= (q - p)\,s/\tau \\
\text{reverse: } & D = \textstyle\sum q\,r,\ r = \log q - \log p,
    & \partial D/\partial x &= q\,(r - D)\,s/\tau \\
\text{JSD}_\beta: & D = \beta \textstyle\sum p (\log p - \log m) + (1 - \beta) \sum q\,r,\
    r = \log q - \log m, & \partial D/\partial x &= (1 - \beta)\,q\,(r - \textstyle\sum q r)\,s/\tau
\end{aligned}
$$

with $s$ the row's scale (weights and reduction folded in) and
$\log m = \mathrm{logaddexp}(\log\beta + \log p, \log(1-\beta) + \log q)$.

Sweep 1 keeps the running maxima and sums of exponentials of both sides, rescaled whenever a
block raises a maximum (online softmax), so a fixed block size serves any vocabulary; for the
reverse KL it also accumulates $\sum e^{a - \max a}(a - b)$ the same way, which gives $D$
before the gradient sweep. The forward KL's value is summed in its gradient sweep; the JSD
needs $\log m$, hence a sweep for its two sums and a third for the gradient. Every input is
read in its own dtype and strides, all arithmetic is float32, and the gradient is written once,
in the dtype of its buffer (which may be the input itself). A masked row is not read: its
gradient is zeroed and its value is 0. A row with a NaN or $+\infty$ logit, or with every
logit $-\infty$, gets a NaN value and gradient, as on the CPU.

The functions here are plain Python: `kernels` wraps them with `triton.jit` at first use, so
that the ``TRITON_INTERPRET`` setting in force at that moment (not at import) decides whether
they run compiled or in Triton's interpreter.
"""
# Triton kernels are untyped by nature (tl.constexpr parameters, traced, not called).
# mypy: disable-error-code="no-untyped-def,no-untyped-call,misc,name-defined"

from __future__ import annotations

import functools
from typing import Any

import triton
import triton.language as tl

# Reductions name triton's own combine functions: the interpreter recognizes these and reduces
# with NumPy, whereas tl.max and tl.sum are jitted when triton is imported, for one mode only.
_MAX = tl.standard._elementwise_max
_SUM = tl.standard._sum_combine


def _divergence_rows(
    x_ptr,
    t_ptr,
    g_ptr,
    out_ptr,
    mask_ptr,
    scale_ptr,
    vocab,
    x_row_stride,
    x_col_stride,
    t_row_stride,
    t_col_stride,
    g_row_stride,
    g_col_stride,
    inv_tau,
    beta,
    log_beta,
    log_complement,
    DIVERGENCE: tl.constexpr,
    HAS_MASK: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    NARROW: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    t_row = t_ptr + row * t_row_stride
    g_row = g_ptr + row * g_row_stride
    columns = tl.arange(0, BLOCK)
    keep = True
    if HAS_MASK:
        keep = tl.load(mask_ptr + row) != 0
    if keep:
        factor = inv_tau
        if HAS_SCALE:
            factor = inv_tau * tl.load(scale_ptr + row).to(tl.float32)
        # Sweep 1: maxima and sums of exponentials, rescaled as the maxima grow.
        max_a = float("-inf")
        max_b = float("-inf")
        sum_a = 0.0
        sum_b = 0.0
        reverse_acc = 0.0
        for start in range(0, vocab, BLOCK):
            cols = start + columns
            valid = cols < vocab
            x = tl.load(x_row + cols * x_col_stride, mask=valid, other=float("-inf"))
            t = tl.load(t_row + cols * t_col_stride, mask=valid, other=float("-inf"))
            a = x.to(tl.float32) * inv_tau
            b = t.to(tl.float32) * inv_tau
            new_a = tl.maximum(max_a, tl.reduce(a, 0, _MAX))
            new_b = tl.maximum(max_b, tl.reduce(b, 0, _MAX))
            # A finite stand-in for a maximum still at -inf keeps exp(-inf - -inf) out.
            ref_a = tl.where(new_a == float("-inf"), 0.0, new_a)
            ref_b = tl.where(new_b == float("-inf"), 0.0, new_b)
            rescale_a = tl.exp(max_a - ref_a)
            e_a = tl.exp(a - ref_a)
            sum_a = sum_a * rescale_a + tl.reduce(e_a, 0, _SUM)
            sum_b = sum_b * tl.exp(max_b - ref_b) + tl.reduce(tl.exp(b - ref_b), 0, _SUM)
            if DIVERGENCE == 1:
                # Both selected before subtracting: a padding lane is -inf on both sides.
                alive = e_a > 0.0
                terms = e_a * (tl.where(alive, a, 0.0) - tl.where(alive, b, 0.0))
                reverse_acc = reverse_acc * rescale_a + tl.reduce(terms, 0, _SUM)
            max_a = new_a
            max_b = new_b
        log_sum_a = tl.log(sum_a)
        log_sum_b = tl.log(sum_b)
        inv_sum_a = 1.0 / sum_a
        inv_sum_b = 1.0 / sum_b
        nan_row = (sum_a != sum_a) | (sum_b != sum_b)
        # log p - log q = (b - a) - shift
        shift = (max_b + log_sum_b) - (max_a + log_sum_a)
        if DIVERGENCE == 0:
            value = 0.0
            for start in range(0, vocab, BLOCK):
                cols = start + columns
                valid = cols < vocab
                x = tl.load(x_row + cols * x_col_stride, mask=valid, other=0.0)
                t = tl.load(t_row + cols * t_col_stride, mask=valid, other=0.0)
                a = x.to(tl.float32) * inv_tau
                b = t.to(tl.float32) * inv_tau
                q = tl.exp(a - max_a) * inv_sum_a
                p = tl.exp(b - max_b) * inv_sum_b
                terms = tl.where(valid & (p > 0.0), p * ((b - a) - shift), 0.0)
                value += tl.reduce(terms, 0, _SUM)
                grad = (q - p) * factor
                if NARROW:  # round to nearest (the interpreter's plain cast truncates)
                    grad = grad.to(g_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
                tl.store(g_row + cols * g_col_stride, grad, mask=valid)
        elif DIVERGENCE == 1:
            value = reverse_acc * inv_sum_a + shift
            for start in range(0, vocab, BLOCK):
                cols = start + columns
                valid = cols < vocab
                x = tl.load(x_row + cols * x_col_stride, mask=valid, other=0.0)
                t = tl.load(t_row + cols * t_col_stride, mask=valid, other=0.0)
                a = x.to(tl.float32) * inv_tau
                b = t.to(tl.float32) * inv_tau
                q = tl.exp(a - max_a) * inv_sum_a
                ratio = (a - b) + shift
                grad = tl.where(q > 0.0, q * (ratio - value), 0.0)
                grad = tl.where(nan_row, float("nan"), grad) * factor
                if NARROW:  # round to nearest (the interpreter's plain cast truncates)
                    grad = grad.to(g_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
                tl.store(g_row + cols * g_col_stride, grad, mask=valid)
        else:
            weight = 1.0 - beta
            sum_q_terms = 0.0
            sum_p_terms = 0.0
            for start in range(0, vocab, BLOCK):
                cols = start + columns
                valid = cols < vocab
                x = tl.load(x_row + cols * x_col_stride, mask=valid, other=0.0)
                t = tl.load(t_row + cols * t_col_stride, mask=valid, other=0.0)
                log_q = (x.to(tl.float32) * inv_tau - max_a) - log_sum_a
                log_p = (t.to(tl.float32) * inv_tau - max_b) - log_sum_b
                q = tl.exp(log_q)
                p = tl.exp(log_p)
                # log m = logaddexp(log p + log beta, log q + log(1 - beta)), as max +
                # log1p(exp(-|u - v|)) with Goldberg's log1p; NaN where p = q = 0 (masked).
                u = log_p + log_beta
                v = log_q + log_complement
                high = tl.maximum(u, v)
                e = tl.exp(tl.minimum(u, v) - high)
                w = 1.0 + e
                log_m = high + tl.where(
                    w == 1.0, e, tl.log(w) * (e / tl.where(w == 1.0, 1.0, w - 1.0))
                )
                sum_q_terms += tl.reduce(
                    tl.where(valid & (q > 0.0), q * (log_q - log_m), 0.0), 0, _SUM
                )
                sum_p_terms += tl.reduce(
                    tl.where(valid & (p > 0.0), p * (log_p - log_m), 0.0), 0, _SUM
                )
            total = tl.where(nan_row, float("nan"), sum_q_terms)
            value = weight * total + beta * sum_p_terms
            for start in range(0, vocab, BLOCK):
                cols = start + columns
                valid = cols < vocab
                x = tl.load(x_row + cols * x_col_stride, mask=valid, other=0.0)
                t = tl.load(t_row + cols * t_col_stride, mask=valid, other=0.0)
                log_q = (x.to(tl.float32) * inv_tau - max_a) - log_sum_a
                log_p = (t.to(tl.float32) * inv_tau - max_b) - log_sum_b
                q = tl.exp(log_q)
                u = log_p + log_beta
                v = log_q + log_complement
                high = tl.maximum(u, v)
                e = tl.exp(tl.minimum(u, v) - high)
                w = 1.0 + e
                log_m = high + tl.where(
                    w == 1.0, e, tl.log(w) * (e / tl.where(w == 1.0, 1.0, w - 1.0))
                )
                term = tl.where(q > 0.0, q * (log_q - log_m), 0.0)
                grad = weight * (term - q * total) * factor
                if NARROW:  # round to nearest (the interpreter's plain cast truncates)
                    grad = grad.to(g_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
                tl.store(g_row + cols * g_col_stride, grad, mask=valid)
        value = tl.where(nan_row, float("nan"), value)
        tl.store(out_ptr + row, value)
    else:
        for start in range(0, vocab, BLOCK):
            cols = start + columns
            zeros = tl.full([BLOCK], 0.0, g_ptr.dtype.element_ty)
            tl.store(g_row + cols * g_col_stride, zeros, mask=cols < vocab)
        tl.store(out_ptr + row, 0.0)


def _scale_unless_one(
    g_ptr, factor_ptr, vocab, row_stride, col_stride, NARROW: tl.constexpr, BLOCK: tl.constexpr
):
    # Multiplies a block of a gradient by the upstream scalar gradient read on the device;
    # when it is exactly 1 (loss.backward()) nothing is read or written.
    factor = tl.load(factor_ptr).to(tl.float32)
    if factor != 1.0:
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        valid = cols < vocab
        pointers = g_ptr + row * row_stride + cols * col_stride
        g = tl.load(pointers, mask=valid, other=0.0).to(tl.float32)
        g = g * factor
        if NARROW:
            g = g.to(g_ptr.dtype.element_ty, fp_downcast_rounding="rtne")
        tl.store(pointers, g, mask=valid)


@functools.cache
def kernels(interpret: bool) -> tuple[Any, Any]:
    """Return the jitted ``(divergence_rows, scale_unless_one)`` for the interpreter or not.

    ``interpret`` is the ``TRITON_INTERPRET`` setting the caller saw; `triton.jit` reads the
    same setting while wrapping, so one wrapping is kept per setting.
    """
    del interpret  # the cache key: triton.jit itself reads the setting
    return triton.jit(_divergence_rows), triton.jit(_scale_unless_one)
