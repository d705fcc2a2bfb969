"""The vocabulary-parallel divergence kernel: one `torch.autograd.Function` over vocabulary shards.

Each rank of a process group holds the columns ``v0:v1`` of a ``(rows, vocab)`` pair of inputs.
The kernel turns its shard into log-probabilities with row statistics that are all-reduced over
the group, sums its shard's divergence terms and all-reduces those too, so every rank ends with
the same per-row divergence while holding only its shard plus ``O(rows)`` statistics.

Forward makes three collectives over ``(sides, rows)`` tensors: the row max (``MAX``), the sum of
exponentials below it (``SUM``), then the partial divergences (``SUM``), joined for the JSD by
the row sums that the softmax Jacobian needs (for KL they are known: Σ p = 1). The gradient is
computed in the same pass, as Liger-Kernel and Megatron-LM's vocabulary-parallel cross entropy
do, so backward only rescales it and makes no collective at all. As in `kldiv.torch._kernels`,
log-probabilities are kept as centred logits and a log-normalizer, and differences of
log-probabilities subtract the centred parts first, which halves the float32 rounding error.

Gradient convention (Megatron-LM's): the per-row result is replicated on the ranks of the group
and each rank differentiates the same loss, so a rank's gradient is the derivative of that loss
with respect to its own shard — not a sum over ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from kldiv.torch._kernels import compute_dtype
from kldiv.torch._options import Divergence

Tensor = torch.Tensor


@dataclass
class _Side:
    """A shard of one side as ``log x = centred − log_norm``, the two kept apart for accuracy."""

    centred: Tensor
    log_norm: Tensor
    normalized: bool

    def log_probs(self) -> Tensor:
        return self.centred - self.log_norm


def _sides(
    shards: tuple[Tensor, Tensor], divergence: Divergence, group: dist.ProcessGroup | None
) -> tuple[_Side, _Side]:
    """Turn the input and target shards into sides, normalizing logits with two collectives."""
    dtype = compute_dtype(shards[0].dtype)
    kinds = (divergence.input_kind, divergence.target_kind)
    values = [x.to(dtype) for x in shards]
    zero = values[0].new_zeros(())
    sides = [_Side(z, zero, normalized=False) for z in values]
    logits = [index for index, kind in enumerate(kinds) if kind == "logits"]
    if not logits:
        return sides[0], sides[1]
    if divergence.temperature != 1.0:
        for index in logits:
            values[index] = values[index] / divergence.temperature
    rows = values[0].shape[0]
    top = torch.stack(
        [
            values[i].amax(dim=-1)
            if values[i].shape[-1]
            else values[i].new_full((rows,), -math.inf)
            for i in logits
        ]
    )
    dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    # A row that is -inf on every rank has no mass; shifting it by 0 keeps it -inf, not NaN.
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    centred = [values[i] - m[:, None] for i, m in zip(logits, top, strict=True)]
    total = torch.stack([torch.exp(c).sum(dim=-1) for c in centred])
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    log_total = torch.log(torch.where(total > 0, total, torch.ones_like(total)))
    for i, c, n in zip(logits, centred, log_total, strict=True):
        sides[i] = _Side(c, n[:, None], normalized=True)
    return sides[0], sides[1]


def _log_ratio(a: _Side, b: _Side, a_probs: Tensor) -> Tensor:
    """log a − log b where a > 0, else 0 (0 · log 0 = 0); centred parts subtracted first."""
    ratio = (a.centred - b.centred) - (a.log_norm - b.log_norm)
    return torch.where(a_probs > 0, ratio, torch.zeros_like(ratio))


def _kl(
    a: _Side,
    b: _Side,
    temperature: float,
    group: dist.ProcessGroup | None,
    needs: tuple[bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """KL(A‖B) per row and its gradients with respect to the shards of A and B.

    With d = log a − log b and D = Σ a d: ∂D/∂log a = a (d + 1) and ∂D/∂log b = −a. Through a
    log-softmax these become a (d − D) (as Σ a = 1) and b Σa − a, divided by τ.
    """
    probs_a = torch.exp(a.log_probs())
    terms = probs_a * _log_ratio(a, b, probs_a)
    # Σ a over the full vocabulary is 1 when A is normalized here; otherwise it is summed too.
    extra = needs[1] and b.normalized and not a.normalized
    sums = torch.stack([terms.sum(dim=-1), probs_a.sum(dim=-1)] if extra else [terms.sum(dim=-1)])
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    rows = sums[0]
    grad_a = grad_b = None
    if needs[0]:
        difference = _log_ratio(a, b, probs_a)
        if a.normalized:
            grad_a = probs_a * (difference - rows[:, None]) / temperature
        else:
            grad_a = probs_a * (difference + 1)
    if needs[1]:
        if b.normalized:
            mass = sums[1][:, None] if extra else 1.0
            grad_b = (torch.exp(b.log_probs()) * mass - probs_a) / temperature
        else:
            grad_b = -probs_a
    return rows, grad_a, grad_b


def _jsd(
    q: _Side,
    p: _Side,
    divergence: Divergence,
    group: dist.ProcessGroup | None,
    needs: tuple[bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """β KL(P‖M) + (1−β) KL(Q‖M), M = βP + (1−β)Q, per row, and its shard gradients.

    Differentiating through M cancels the terms ±βp (and ±(1−β)q), leaving
    g_p = ∂/∂log p = β p (log p − log m) and g_q = (1−β) q (log q − log m); through a
    log-softmax, g − softmax · Σ g, whose row sums Σ g join the collective of the values.
    """
    beta = divergence.beta
    log_p, log_q = p.log_probs(), q.log_probs()
    probs_p, probs_q = torch.exp(log_p), torch.exp(log_q)
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
    g_p = beta * torch.where(probs_p > 0, probs_p * (log_p - log_m), torch.zeros_like(log_p))
    g_q = (1 - beta) * torch.where(probs_q > 0, probs_q * (log_q - log_m), torch.zeros_like(log_q))
    normalized = [
        (index, g)
        for index, side, g in ((0, q, g_q), (1, p, g_p))
        if needs[index] and side.normalized
    ]
    sums = torch.stack([(g_p + g_q).sum(dim=-1)] + [g.sum(dim=-1) for _, g in normalized])
    dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
    grads: list[Tensor | None] = [g_q if needs[0] else None, g_p if needs[1] else None]
    for (index, g), row_sum in zip(normalized, sums[1:], strict=True):
        probs = probs_q if index == 0 else probs_p
        grads[index] = (g - probs * row_sum[:, None]) / divergence.temperature
    return sums[0], grads[0], grads[1]


def shard_divergence(
    input_shard: Tensor,
    target_shard: Tensor,
    divergence: Divergence,
    group: dist.ProcessGroup | None,
    *,
    needs: tuple[bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-row divergence of ``(rows, shard)`` inputs and its gradients, three collectives.

    Args:
        input_shard: ``(rows, shard)`` Q, this rank's columns, any floating dtype.
        target_shard: ``(rows, shard)`` P, the same columns.
        divergence: the divergence, the kinds and the temperature.
        group: the process group over which the vocabulary is sharded.
        needs: whether the gradient with respect to the input and to the target is wanted.

    Returns:
        ``(rows,)`` divergences of the full vocabulary, identical on every rank, and the
        ``(rows, shard)`` derivatives of each row's divergence with respect to the two shards
        (None where not needed), all in the compute dtype.
    """
    q, p = _sides((input_shard, target_shard), divergence, group)
    tau = divergence.temperature
    if divergence.name == "forward":
        rows, grad_target, grad_input = _kl(p, q, tau, group, (needs[1], needs[0]))
        return rows, grad_input, grad_target
    if divergence.name == "reverse":
        return _kl(q, p, tau, group, needs)
    return _jsd(q, p, divergence, group, needs)


class VocabParallelDivergence(torch.autograd.Function):
    """Per-row divergence of vocabulary-sharded inputs, replicated on every rank of ``group``.

    The rows come in the compute dtype (float32 for half-precision inputs); the gradients in the
    dtype of each input.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_shard: Tensor,
        target_shard: Tensor,
        divergence: Divergence,
        group: dist.ProcessGroup | None,
    ) -> Tensor:
        needs = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        rows, grad_input, grad_target = shard_divergence(
            input_shard, target_shard, divergence, group, needs=needs
        )
        ctx.save_for_backward(*(g for g in (grad_input, grad_target) if g is not None))
        ctx.saved_layout = needs
        ctx.dtypes = (input_shard.dtype, target_shard.dtype)
        return rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_rows: Tensor) -> tuple[Tensor | None, ...]:
        saved = iter(ctx.saved_tensors)
        scale = grad_rows[:, None]
        # A row that reaches the loss with weight 0 (an ignored position) gets a zero gradient
        # even when its own inputs are garbage (NaN or inf), not 0 · NaN.
        dropped = scale == 0
        out: list[Tensor | None] = []
        for present, dtype in zip(ctx.saved_layout, ctx.dtypes, strict=True):
            if present:
                out.append(torch.where(dropped, 0.0, next(saved) * scale).to(dtype))
            else:
                out.append(None)
        return out[0], out[1], None, None


def vocab_parallel_rows(
    input_shard: Tensor,
    target_shard: Tensor,
    divergence: Divergence,
    group: dist.ProcessGroup | None,
) -> Tensor:
    """Per-row divergence of ``(rows, shard)`` inputs; a typed entry to the autograd function."""
    rows: Tensor = VocabParallelDivergence.apply(  # type: ignore[no-untyped-call]
        input_shard, target_shard, divergence, group
    )
    return rows
