r"""The divergence to a teacher known only by its top-k log-probabilities plus a tail bucket.

An offline teacher (an inference server's top-k logprobs, say) gives, per position, k distinct
token ids ``i_1..i_k`` and their log-probabilities. Both distributions are coarsened onto the
k + 1 outcomes {i_1}, …, {i_k} and "every other token":

$$
\tilde P = (p_{i_1}, \dots, p_{i_k}, 1 - \textstyle\sum_j p_{i_j}), \qquad
\tilde Q = (q_{i_1}, \dots, q_{i_k}, 1 - \textstyle\sum_j q_{i_j}),
$$

and the loss is the divergence between P̃ and Q̃. By the data-processing inequality it is at
most the divergence of the full distributions, with equality when both are proportional on the
tail. The student's tail log-mass is a log-sum-exp over the tail logits, never ``log(1 - Σ q)``,
so it stays accurate when the top-k tokens carry nearly all the mass.
"""

from __future__ import annotations

import math

import torch

from kldiv.torch._chunked import reference_terms
from kldiv.torch._kernels import (
    LOG_Q,
    PROB_Q,
    SCRATCH,
    Block,
    Workspace,
    chunk_divergence,
    side_from,
)
from kldiv.torch._options import Divergence

Tensor = torch.Tensor


def log1mexp(x: Tensor) -> Tensor:
    """Return log(1 − eˣ) for x ≤ 0 accurately, and −inf for x ≥ 0 (no mass left)."""
    # Mächler (2012), "Accurately Computing log(1 − exp(−|a|))", the switch at −log 2.
    x = x.clamp_max(0.0)
    near_zero = torch.log(-torch.expm1(x))
    far = torch.log1p(-torch.exp(x))
    return torch.where(x > -math.log(2.0), near_zero, far)


def coarse_teacher(log_probs: Tensor) -> Tensor:
    """Return the teacher's ``(rows, k + 1)`` coarse log-probabilities: top-k, then the tail."""
    log_probs = log_probs.to(torch.float64 if log_probs.dtype == torch.float64 else torch.float32)
    tail = log1mexp(torch.logsumexp(log_probs, dim=-1, keepdim=True))
    return torch.cat([log_probs, tail], dim=-1)


def topk_chunk_divergence(
    logits: Tensor,
    indices: Tensor,
    teacher_log_probs: Tensor,
    spec: Divergence,
    *,
    grad_input: Tensor,
    workspace: Block,
) -> Tensor:
    """Return the per-row coarse divergence of a chunk and write ∂D/∂logits into ``grad_input``.

    Args:
        logits: ``(rows, vocab)`` student logits.
        indices: ``(rows, k)`` distinct int64 token ids of the teacher's top-k.
        teacher_log_probs: ``(rows, k)`` the teacher's log-probabilities of those tokens.
        spec: the divergence; its kinds are ignored (student logits, teacher top-k).
        grad_input: ``(rows, vocab)`` buffer receiving the gradient with respect to ``logits``.
        workspace: the block's workspace, whose buffers are in the compute dtype.

    Returns:
        ``(rows,)`` divergences between the coarse distributions.
    """
    scratch = workspace[SCRATCH]
    student = side_from(
        logits, "logits", spec.temperature, block=workspace, logs=LOG_Q, probs=PROB_Q
    )
    top = student.log_probs.gather(-1, indices)
    tail = scratch.copy_(student.log_probs).scatter_(-1, indices, -math.inf)
    log_tail = torch.logsumexp(tail, dim=-1, keepdim=True)
    log_q = torch.cat([top, log_tail], dim=-1)
    log_p = coarse_teacher(teacher_log_probs)

    coarse = Divergence(spec.name, "log_probs", "log_probs", 1.0, spec.beta)
    g_coarse = torch.empty_like(log_q)
    small = Workspace(log_q.shape[0], log_q.shape[1], dtype=log_q.dtype, device=log_q.device)
    rows = chunk_divergence(
        log_q,
        log_p,
        coarse,
        grad_input=g_coarse,
        grad_target=None,
        workspace=small.take(log_q.shape[0]),
    )
    # ∂ log q̃_b / ∂z_j = [j ∈ b] q_j / q̃_b − q_j: a tail token gets g̃_tail · q_j / q̃_tail,
    # computed as exp(log q_j − log q̃_tail) ≤ 1 so that a tiny tail cannot overflow.
    total = g_coarse.sum(dim=-1, keepdim=True)
    g = torch.sub(student.log_probs, log_tail, out=scratch).exp_().mul_(g_coarse[:, -1:])
    g.nan_to_num_(nan=0.0).addcmul_(student.probs, total, value=-1.0)
    top_grad = g_coarse[:, :-1] - log_q[:, :-1].exp() * total
    g.scatter_(-1, indices, top_grad)
    if spec.temperature != 1.0:
        g.mul_(1.0 / spec.temperature)
    grad_input.copy_(g)
    return rows


def reference_topk_rows(
    logits: Tensor, indices: Tensor, log_probs: Tensor, spec: Divergence
) -> Tensor:
    """`topk_chunk_divergence`'s value written with differentiable torch operations."""
    log_q = torch.log_softmax(logits / spec.temperature, dim=-1)
    top = log_q.gather(-1, indices)
    tail = torch.logsumexp(log_q.scatter(-1, indices, -math.inf), dim=-1, keepdim=True)
    coarse = Divergence(spec.name, "log_probs", "log_probs", 1.0, spec.beta)
    terms = reference_terms(torch.cat([top, tail], dim=-1), coarse_teacher(log_probs), coarse)
    return terms.sum(dim=-1)
