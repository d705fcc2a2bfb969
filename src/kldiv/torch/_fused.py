r"""The fused-linear autograd function: logits, divergence and gradients block by block.

For each block of tokens it computes the block's logits ``hidden @ weightᵀ + bias``, the
divergence and its gradient with respect to those logits (the chunk kernels of
`kldiv.torch._kernels` and `kldiv.torch._topk`), and folds that gradient at once into
``grad_hidden`` and the float32 ``grad_weight`` and ``grad_bias``. Backward only rescales them.
A second backward through a retained graph repeats the pass; ``create_graph=True``
differentiates the same loss written with torch operations.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from kldiv.torch import _triton
from kldiv.torch._chunked import logits_divergence_and_gradient, reference_terms
from kldiv.torch._kernels import Workspace, chunk_divergence, compute_dtype
from kldiv.torch._options import Divergence
from kldiv.torch._topk import reference_topk_rows, topk_chunk_divergence

Tensor = torch.Tensor


def default_fused_chunk_rows(rows: int, hidden: int, vocab: int) -> int:
    """Rows per block: a block of logits about the size of all hidden states, at least 512 rows."""
    # Liger-Kernel's rule keeps the logits block near the memory of the hidden states. The floor
    # keeps the matrix products efficient, since each block re-reads the whole (V, H) weight
    # and grad_weight: on 2 cores at H=1024, V=32000, N=1024, blocks of 64 rows were 1.4x slower
    # than plain torch, blocks of 256 to 1024 rows on a par with it (512 the fastest).
    by_memory = math.ceil(rows / math.ceil(vocab / max(hidden, 1)))
    return max(1, min(rows, max(by_memory, 512)))


def _linear(h: Tensor, weight: Tensor, bias: Tensor | None, *, float32: bool) -> Tensor:
    """``h @ weightᵀ + bias``; with ``float32``, logits kept in float32 for half-precision inputs.

    cuBLAS accumulates half-precision products in float32 anyway; asking for a float32 result
    keeps those digits, which rounding the logits to bfloat16 first would lose (up to a few
    percent of the divergence's gradient where the logits are large).
    """
    if not float32 or weight.dtype in (torch.float32, torch.float64):
        return h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
    logits = _float32_mm(h, weight.t())
    return logits if bias is None else logits.add_(bias)


def _float32_mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of half-precision matrices as a float32 result (float32 accumulation)."""
    # torch.mm(..., out_dtype=) came with torch 2.8 (CUDA); older versions upcast instead.
    if a.device.type == "cuda" and hasattr(torch.ops.aten.mm, "dtype"):
        return torch.mm(a, b, out_dtype=torch.float32)
    return a.float() @ b.float()  # the interpreter's CPU tensors: the same result by upcasting


def _teacher_block(
    teacher: tuple[Tensor | None, ...], block: slice, vocab: int, *, float32: bool = False
) -> Tensor:
    hidden, weight, bias, logits = teacher[:4]
    if logits is None:
        assert hidden is not None
        assert weight is not None
        logits = _linear(hidden[block], weight, bias, float32=float32)
    else:
        logits = logits[block]
    # A teacher vocabulary padded beyond the student's: its extra columns are not tokens.
    return logits[:, :vocab]


def _fused_pass(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    teacher: tuple[Any, ...],
    mask: Tensor | None,
    scale: Tensor,
    spec: Divergence,
    chunk_rows: int,
    needs: tuple[bool, ...],
) -> tuple[Tensor, tuple[Tensor | None, Tensor | None, Tensor | None]]:
    """One pass over blocks of tokens: the scaled total and its (unscaled-upstream) gradients."""
    rows, vocab = hidden.shape[0], weight.shape[0]
    dtype = compute_dtype(weight.dtype)
    grad_hidden = torch.empty_like(hidden) if needs[0] else None
    grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if needs[1] else None
    grad_bias = None
    if bias is not None and needs[2]:
        grad_bias = torch.zeros(vocab, dtype=dtype, device=weight.device)
    total = torch.zeros((), dtype=dtype, device=hidden.device)
    block_rows = min(chunk_rows, rows)
    workspace = Workspace(block_rows, vocab, dtype=dtype, device=hidden.device)
    # On the Triton path the kernel reads float32 logits straight from the matrix product and
    # writes the logits' gradient once in the weight's dtype, so that the two gradient products
    # run on half-precision inputs (float32 accumulation), as the forward product does.
    float32 = (
        teacher[4] is None and not torch.compiler.is_compiling() and _triton.wanted(hidden.device)
    )
    grad_dtype = weight.dtype if float32 else dtype
    grad_buffer = torch.empty(block_rows, vocab, dtype=grad_dtype, device=hidden.device)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        block, n = slice(start, stop), stop - start
        h = hidden[block]
        logits = _linear(h, weight, bias, float32=float32)
        g = grad_buffer[:n]
        s = scale[block].to(dtype)
        keep = None if mask is None else mask[block]
        native = None
        if teacher[4] is not None:
            values = topk_chunk_divergence(
                logits, teacher[4][block], teacher[5][block], spec,
                grad_input=g, workspace=workspace.take(n),
            )  # fmt: skip
        else:
            teacher_logits = _teacher_block(teacher, block, vocab, float32=float32)
            # The Triton or compiled CPU kernel masks and scales the gradient in the same pass.
            native = logits_divergence_and_gradient(logits, teacher_logits, keep, s, spec, g)
            if native is None:
                values = chunk_divergence(
                    logits, teacher_logits, spec,
                    grad_input=g, grad_target=None, workspace=workspace.take(n),
                )  # fmt: skip
        if native is not None:
            total += native[0] @ s
        else:
            if keep is not None:
                values = torch.where(keep, values, 0.0)
                g.masked_fill_(~keep.unsqueeze(-1), 0.0)
            total += values @ s
            g.mul_(s.unsqueeze(-1))
        if grad_hidden is not None:
            torch.mm(g.to(weight.dtype), weight, out=grad_hidden[block])
        if grad_weight is not None and g.dtype != dtype:
            grad_weight += _float32_mm(g.t(), h)
        elif grad_weight is not None:
            grad_weight.addmm_(g.t(), h.to(dtype))
        if grad_bias is not None:
            grad_bias += g.sum(dim=0, dtype=dtype)
    return total, (grad_hidden, grad_weight, grad_bias)


class FusedLinearDivergence(torch.autograd.Function):
    """Scalar Σ_r scale_r · D_r of ``softmax(hidden @ weightᵀ + bias)`` against a teacher.

    ``apply(hidden, weight, bias, teacher_hidden, teacher_weight, teacher_bias, teacher_logits,
    topk_indices, topk_log_probs, mask, scale, spec, chunk_rows)``; teacher arguments not used
    are None, and ``scale`` is a ``(rows,)`` float tensor folding weights and the divisor.
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, *rest: Any
    ) -> Tensor:
        teacher, (mask, scale, spec, chunk_rows) = rest[:6], rest[6:]
        needs = tuple(ctx.needs_input_grad[:3])
        total, gradients = _fused_pass(
            hidden, weight, bias, teacher, mask, scale, spec, chunk_rows, needs
        )
        ctx.chunk_rows = chunk_rows
        ctx.save_for_backward(hidden, weight, bias, *teacher, mask, scale)
        ctx.spec = spec
        ctx.gradients = gradients
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the same loss written with torch operations.
            hidden, weight, bias, *teacher, mask, scale = ctx.saved_tensors
            inputs = (hidden, weight, bias)
            needs = ctx.needs_input_grad[:3]
            wrt = [tensor for tensor, need in zip(inputs, needs, strict=True) if need]
            total = _reference_total(hidden, weight, bias, tuple(teacher), (mask, scale, ctx.spec))
            grads = iter(torch.autograd.grad(total, wrt, grad_total, create_graph=True))
            return (*(next(grads) if need else None for need in needs), *([None] * 10))
        if ctx.gradients is None:
            # A second backward through a retained graph: the stored gradients were consumed.
            hidden, weight, bias, *teacher, mask, scale = ctx.saved_tensors
            _, ctx.gradients = _fused_pass(
                hidden, weight, bias, tuple(teacher), mask, scale, ctx.spec, ctx.chunk_rows,
                tuple(ctx.needs_input_grad[:3]),
            )  # fmt: skip
        grad_hidden, grad_weight, grad_bias = ctx.gradients
        ctx.gradients = None
        weight_dtype, bias_dtype = ctx.dtypes
        if grad_hidden is not None:
            grad_hidden.mul_(grad_total)
        if grad_weight is not None:
            grad_weight = grad_weight.mul_(grad_total).to(weight_dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.mul_(grad_total).to(bias_dtype)
        return (grad_hidden, grad_weight, grad_bias, *([None] * 10))


def _reference_total(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    teacher: tuple[Any, ...],
    rest: tuple[Any, ...],
) -> Tensor:
    """The fused loss written with differentiable torch operations (for create_graph=True)."""
    mask, scale, spec = rest
    vocab = weight.shape[0]
    logits = hidden @ weight.t() if bias is None else torch.addmm(bias, hidden, weight.t())
    dtype = compute_dtype(weight.dtype)
    if teacher[4] is not None:
        values = reference_topk_rows(logits.to(dtype), teacher[4], teacher[5], spec)
    else:
        target = _teacher_block(teacher, slice(None), vocab).to(dtype)
        values = reference_terms(logits.to(dtype), target, spec).sum(dim=-1)
    if mask is not None:
        values = torch.where(mask, values, 0.0)
    total: Tensor = values @ scale.to(dtype)
    return total
