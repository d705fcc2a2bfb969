"""Fused-linear KL and JSD with a tensor-parallel output layer: each rank holds rows v0:v1 of it.

The single-process `kldiv.torch.fused_linear` losses walk over blocks of tokens and never
materialize the ``(tokens, vocab)`` logits. Here each rank does the same with its shard of the
output layer, so a block's logits are ``(block, shard)``; the block's divergence and its
gradient with respect to those logits come from the vocabulary-parallel kernel
(`kldiv.torch._vocab_parallel.shard_divergence`, three all-reduces of ``O(block)`` values).
The weight (and bias) gradient of a shard is local. The hidden states feed every shard, so
their gradient is the sum of the ranks' contributions: one all-reduce of ``(tokens, hidden)``
at the end of the pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kldiv.torch._kernels import compute_dtype
from kldiv.torch._options import Divergence
from kldiv.torch._reduce import Reduction, nonnegative_jsd, position_mask, position_scale
from kldiv.torch._vocab_parallel import shard_divergence
from kldiv.torch.fused_linear import _check_leading, _check_matrix

Tensor = torch.Tensor


def _teacher_block(teacher: tuple[Tensor | None, ...], block: slice) -> Tensor:
    """This rank's columns of the teacher's logits for a block of tokens."""
    hidden, weight, bias, logits = teacher
    if logits is not None:
        return logits[block]
    assert hidden is not None
    assert weight is not None
    h = hidden[block]
    return h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())


def _sharded_pass(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    teacher: tuple[Tensor | None, ...],
    mask: Tensor | None,
    scale: Tensor,
    spec: Divergence,
    chunk_rows: int,
    needs: tuple[bool, bool, bool],
    group: dist.ProcessGroup | None,
) -> tuple[Tensor, tuple[Tensor | None, Tensor | None, Tensor | None]]:
    """One pass over blocks of tokens: the scaled total and its gradients for a unit upstream."""
    rows, shard = hidden.shape[0], weight.shape[0]
    dtype = compute_dtype(weight.dtype)
    device = hidden.device
    grad_hidden = torch.zeros(hidden.shape, dtype=dtype, device=device) if needs[0] else None
    grad_weight = torch.zeros(weight.shape, dtype=dtype, device=device) if needs[1] else None
    grad_bias = None
    if bias is not None and needs[2]:
        grad_bias = torch.zeros(shard, dtype=dtype, device=device)
    wants_logit_grad = any(needs)
    total = torch.zeros((), dtype=dtype, device=device)
    for start in range(0, rows, chunk_rows):
        block = slice(start, min(start + chunk_rows, rows))
        h = hidden[block]
        logits = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())
        target = _teacher_block(teacher, block)
        values, g, _ = shard_divergence(
            logits, target, spec, group, needs=(wants_logit_grad, False)
        )
        s = scale[block].to(dtype)
        if mask is not None:
            keep = mask[block]
            values = torch.where(keep, values, 0.0)
            if g is not None:
                g = torch.where(keep.unsqueeze(-1), g, 0.0)
        total += values @ s
        if g is None:
            continue
        g = g * s.unsqueeze(-1)
        if grad_hidden is not None:
            grad_hidden[block] = g @ weight.to(dtype)
        if grad_weight is not None:
            grad_weight.addmm_(g.t(), h.to(dtype))
        if grad_bias is not None:
            grad_bias += g.sum(dim=0)
    if grad_hidden is not None:
        dist.all_reduce(grad_hidden, op=dist.ReduceOp.SUM, group=group)
    return total, (grad_hidden, grad_weight, grad_bias)


class VocabParallelFusedLinear(torch.autograd.Function):
    """Scalar Σ_r scale_r · D_r of ``softmax(hidden @ weightᵀ + bias)`` over a sharded vocabulary.

    ``apply(hidden, weight, bias, teacher_hidden, teacher_weight, teacher_bias, teacher_logits,
    mask, scale, spec, chunk_rows, group)``; the weight, bias and teacher arguments are this
    rank's vocabulary rows, unused teacher arguments None. Every rank returns the same total.
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, *rest: Any
    ) -> Tensor:
        teacher, (mask, scale, spec, chunk_rows, group) = rest[:4], rest[4:]
        needs = (
            bool(ctx.needs_input_grad[0]),
            bool(ctx.needs_input_grad[1]),
            bool(ctx.needs_input_grad[2]),
        )
        total, gradients = _sharded_pass(
            hidden, weight, bias, tuple(teacher), mask, scale, spec, chunk_rows, needs, group
        )
        ctx.gradients = gradients
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_total: Tensor) -> tuple[Tensor | None, ...]:
        scaled = [
            None if grad is None else (grad * grad_total).to(dtype)
            for grad, dtype in zip(ctx.gradients, ctx.dtypes, strict=True)
        ]
        return (*scaled, *([None] * 9))


def sharded_fused_loss(
    spec: Divergence,
    reduction: Reduction,
    chunk_size: int | None,
    group: dist.ProcessGroup | None,
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor | None,
    teacher_weight: Tensor | None,
    labels: Tensor | None,
    *,
    student_bias: Tensor | None,
    teacher_bias: Tensor | None,
    teacher_logits: Tensor | None,
    num_items_in_batch: int | Tensor | None,
) -> Tensor:
    """Validate the inputs of a vocabulary-parallel fused-linear loss and compute it."""
    _check_matrix(student_hidden, "student_hidden")
    _check_matrix(student_weight, "student_weight", 2)
    positions, shard = student_hidden.shape[:-1], student_weight.shape[0]
    hidden = _check_leading(student_hidden, "student_hidden", positions, student_weight.shape[1])
    if (
        student_bias is not None
        and _check_matrix(student_bias, "student_bias", 1).shape[0] != shard
    ):
        raise ValueError(
            f"student_bias has {student_bias.shape[0]} entries, expected the shard's {shard}"
        )
    if (teacher_logits is None) == (teacher_hidden is None) or (teacher_hidden is None) != (
        teacher_weight is None
    ):
        raise ValueError(
            "pass exactly one teacher: teacher_hidden with teacher_weight (this rank's rows), "
            "or teacher_logits (this rank's columns)"
        )
    teacher: list[Tensor | None] = [None] * 4
    if teacher_hidden is not None and teacher_weight is not None:
        _check_matrix(teacher_weight, "teacher_weight", 2)
        _check_matrix(teacher_hidden, "teacher_hidden")
        teacher[0] = _check_leading(
            teacher_hidden, "teacher_hidden", positions, teacher_weight.shape[1]
        )
        teacher[1], teacher_shard = teacher_weight, teacher_weight.shape[0]
        if teacher_bias is not None:
            teacher[2] = _check_matrix(teacher_bias, "teacher_bias", 1)
    elif teacher_logits is not None:
        _check_matrix(teacher_logits, "teacher_logits")
        teacher[3] = _check_leading(teacher_logits, "teacher_logits", positions, None)
        teacher_shard = teacher_logits.shape[-1]
    if teacher_shard != shard:
        raise ValueError(
            f"the teacher's shard has {teacher_shard} vocabulary entries but the student's has "
            f"{shard}; both must hold the same rows of the vocabulary"
        )
    if labels is not None:
        _check_leading(labels.unsqueeze(-1), "labels", positions, 1)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels has dtype {labels.dtype}; labels must be an integer tensor")
    if reduction.name == "none":
        raise ValueError(
            "the fused-linear losses fold the gradient into grad_weight during forward, so they "
            "return a scalar; use reduction='sum', 'batchmean', 'token_mean' or 'mean'"
        )
    if num_items_in_batch is not None and reduction.name == "sum":
        raise ValueError("num_items_in_batch divides the loss; use reduction='token_mean'")
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialized; call torch.distributed.init_process_group "
            "first, or use kldiv.torch.FusedLinearKLDivLoss for an unsharded output layer"
        )
    mask = position_mask(labels, reduction)
    dtype = compute_dtype(student_weight.dtype)
    rows = hidden.shape[0]
    needs_mean = reduction.name == "mean" and num_items_in_batch is None
    if needs_mean or chunk_size is None:
        # The full vocabulary (for "mean") and a block size equal on every rank (the blocks'
        # collectives must pair up) depend on every rank's shard size.
        sizes = _shard_sizes(shard, hidden.device, group)
        if needs_mean:
            num_items_in_batch = rows * sizes.sum()
        if chunk_size is None:
            # Liger-Kernel's rule, as in FusedLinearKLDivLoss, with the largest shard: a block
            # of logits about the size of the hidden states, at least 64 tokens. Reading the
            # size is the one host synchronization; pass chunk_size to avoid it.
            largest = int(sizes.max())
            by_memory = -(-rows // max(1, -(-largest // max(hidden.shape[1], 1))))
            chunk_size = max(1, min(rows, max(by_memory, 64)))
    scale = position_scale(
        reduction,
        mask=mask,
        weight=None,
        num_items_in_batch=num_items_in_batch,
        input_shape=student_hidden.shape,
        dtype=dtype,
        device=hidden.device,
    )
    total: Tensor = VocabParallelFusedLinear.apply(  # type: ignore[no-untyped-call]
        hidden, student_weight, student_bias, *teacher, mask, scale, spec, chunk_size, group
    )
    # As the unsharded fused loss: a JSD that rounding made negative is 0 (√JSD stays finite).
    return nonnegative_jsd(total, spec).to(student_hidden.dtype)


def _shard_sizes(shard: int, device: torch.device, group: dist.ProcessGroup | None) -> Tensor:
    """Every rank's number of vocabulary rows, as a ``(world,)`` int64 tensor."""
    world = dist.get_world_size(group)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([shard], dtype=torch.int64, device=device), group=group)
    return torch.cat(sizes)
