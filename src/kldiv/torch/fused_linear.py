r"""Fused-linear KL and JSD losses: the divergence of ``softmax(hidden @ weightᵀ + bias)``.

The ``(tokens, vocab)`` logits are never materialized: the tokens are cut into blocks, and each
block's logits, divergence and gradient are computed and folded at once into ``grad_hidden``
and a float32 ``grad_weight`` (and ``grad_bias``) during the forward pass; backward only scales
them by the upstream gradient. The teacher comes as its own hidden states and output layer
(its hidden size may differ from the student's, and a vocabulary padded beyond the student's
is cut to the student's first ``vocab`` columns), as full logits, or as a sparse `TopK`.

The teacher is a constant: no gradient reaches its hidden states, weights or logits. The
output layer is touched only by `kldiv.torch._fused`, block by block, so a vocabulary shard of
it needs only the block's row statistics combined across shards (not done here).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from kldiv.torch._fused import FusedLinearDivergence, default_fused_chunk_rows
from kldiv.torch._kernels import compute_dtype
from kldiv.torch._options import DIRECTIONS, Divergence, check_beta, check_choice, check_temperature
from kldiv.torch._reduce import Reduction, nonnegative_jsd, position_mask, position_scale

Tensor = torch.Tensor

__all__ = ["FusedLinearJSDLoss", "FusedLinearKLDivLoss", "TopK"]


class TopK(NamedTuple):
    """A teacher known by its top-k tokens per position, e.g. from an inference server.

    Attributes:
        indices: ``(..., k)`` int64 distinct token ids.
        log_probs: ``(..., k)`` floating log-probabilities of those tokens (full-vocabulary
            log-softmax values, so their exponentials sum to at most 1).
    """

    indices: Tensor
    log_probs: Tensor


def _check_matrix(tensor: Any, name: str, ndim: int | None = None) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} has dtype {tensor.dtype}; pass a floating tensor")
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name} has {tensor.ndim} dimensions, expected {ndim}")
    return tensor


def _check_leading(tensor: Tensor, name: str, positions: torch.Size, last: int | None) -> Tensor:
    if (
        tensor.ndim == 0
        or tensor.shape[:-1] != positions
        or (last is not None and tensor.shape[-1] != last)
    ):
        expected = (*positions, "…" if last is None else last)
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}, expected {expected}: one row per position "
            "of student_hidden"
        )
    return tensor.reshape(-1, tensor.shape[-1])


def _check_layer(hidden: Tensor, weight: Tensor, who: str) -> None:
    """A wrong-sized output layer is named as such, not reported as a wrong hidden state."""
    if hidden.ndim >= 1 and weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"{who}_weight has shape {tuple(weight.shape)}, expected (vocab, {hidden.shape[-1]}): "
            f"its second dimension must be the hidden size, the last dimension of {who}_hidden "
            f"(shape {tuple(hidden.shape)}); pass the output layer's weight (lm_head.weight)"
        )


def _scalar_reduction(reduction: str, ignore_index: int, factor: float = 1.0) -> Reduction:
    """The reduction of a fused-linear loss, refused at construction if it is ``"none"``."""
    if reduction == "none":
        raise ValueError(
            "the fused-linear losses fold the gradient into grad_weight during forward, so they "
            "return a scalar; use reduction='sum', 'batchmean', 'token_mean' or 'mean'"
        )
    return Reduction(reduction, ignore_index, factor)


def _fused_loss(
    spec: Divergence,
    reduction: Reduction,
    chunk_size: int | None,
    student_hidden: Tensor,
    student_weight: Tensor,
    teacher_hidden: Tensor | None,
    teacher_weight: Tensor | None,
    labels: Tensor | None,
    *,
    student_bias: Tensor | None,
    teacher_bias: Tensor | None,
    teacher_logits: Tensor | None,
    teacher_topk: TopK | None,
    num_items_in_batch: int | Tensor | None,
) -> Tensor:
    _check_matrix(student_hidden, "student_hidden")
    _check_matrix(student_weight, "student_weight", 2)
    positions, vocab = student_hidden.shape[:-1], student_weight.shape[0]
    _check_layer(student_hidden, student_weight, "student")
    hidden = _check_leading(student_hidden, "student_hidden", positions, student_weight.shape[1])
    bias = None
    if student_bias is not None:
        bias = _check_matrix(student_bias, "student_bias", 1)
        if bias.shape[0] != vocab:
            raise ValueError(f"student_bias has {bias.shape[0]} entries, expected vocab = {vocab}")
    sources = sum(x is not None for x in (teacher_hidden, teacher_logits, teacher_topk))
    if sources != 1 or (teacher_hidden is None) != (teacher_weight is None):
        raise ValueError(
            "pass exactly one teacher: teacher_hidden with teacher_weight, teacher_logits, or "
            "teacher_topk"
        )
    teacher: list[Tensor | None] = [None] * 6
    if teacher_hidden is not None and teacher_weight is not None:
        _check_matrix(teacher_weight, "teacher_weight", 2)
        _check_matrix(teacher_hidden, "teacher_hidden")
        _check_layer(teacher_hidden, teacher_weight, "teacher")
        teacher[0] = _check_leading(
            teacher_hidden, "teacher_hidden", positions, teacher_weight.shape[1]
        )
        teacher[1], teacher_vocab = teacher_weight, teacher_weight.shape[0]
        if teacher_bias is not None:
            teacher[2] = _check_matrix(teacher_bias, "teacher_bias", 1)
    elif teacher_logits is not None:
        _check_matrix(teacher_logits, "teacher_logits")
        teacher[3] = _check_leading(teacher_logits, "teacher_logits", positions, None)
        teacher_vocab = teacher_logits.shape[-1]
    elif teacher_topk is not None:
        if spec.temperature != 1.0:
            raise ValueError(
                "temperature divides logits, but teacher_topk holds log-probabilities; pass them "
                "already at the temperature you want and leave temperature=1"
            )
        indices, log_probs = teacher_topk
        if not isinstance(indices, Tensor) or indices.dtype != torch.int64:
            raise TypeError("teacher_topk.indices must be an int64 tensor of token ids")
        _check_matrix(log_probs, "teacher_topk.log_probs")
        teacher[4] = _check_leading(indices, "teacher_topk.indices", positions, None)
        teacher[5] = _check_leading(
            log_probs, "teacher_topk.log_probs", positions, indices.shape[-1]
        )
        teacher_vocab = vocab
    if teacher_vocab < vocab:
        raise ValueError(
            f"the teacher's vocabulary has {teacher_vocab} entries, fewer than the student's "
            f"{vocab}; a teacher may pad its vocabulary beyond the student's, not cut it"
        )
    if labels is not None:
        _check_leading(labels.unsqueeze(-1), "labels", positions, 1)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels has dtype {labels.dtype}; labels must be an integer tensor")
    if num_items_in_batch is not None and reduction.name == "sum":
        raise ValueError("num_items_in_batch divides the loss; use reduction='token_mean'")
    mask = position_mask(labels, reduction)
    dtype = compute_dtype(student_weight.dtype)
    scale = position_scale(
        reduction,
        mask=mask,
        weight=None,
        num_items_in_batch=num_items_in_batch,
        input_shape=torch.Size((*positions, vocab)),
        dtype=dtype,
        device=hidden.device,
    )
    rows = chunk_size or default_fused_chunk_rows(hidden.shape[0], hidden.shape[1], vocab)
    total: Tensor = FusedLinearDivergence.apply(  # type: ignore[no-untyped-call]
        hidden, student_weight, bias, *teacher, mask, scale, spec, rows
    )
    return nonnegative_jsd(total, spec).to(student_hidden.dtype)


class _FusedLinearLoss(torch.nn.Module):
    spec: Divergence
    reduction_spec: Reduction
    chunk_size: int | None

    def forward(
        self,
        student_hidden: Tensor,
        student_weight: Tensor,
        teacher_hidden: Tensor | None = None,
        teacher_weight: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        student_bias: Tensor | None = None,
        teacher_bias: Tensor | None = None,
        teacher_logits: Tensor | None = None,
        teacher_topk: TopK | None = None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        """Return the loss of the student's output layer against the teacher.

        Args:
            student_hidden: ``(..., hidden)`` the student's last hidden states.
            student_weight: ``(vocab, hidden)`` the student's output layer (``lm_head.weight``).
            teacher_hidden: ``(..., teacher_hidden)`` the teacher's last hidden states.
            teacher_weight: ``(teacher_vocab, teacher_hidden)``, teacher_vocab ≥ vocab.
            labels: ``(...)`` integer tensor; positions equal to ``ignore_index`` are left out.
            student_bias: ``(vocab,)`` optional bias of the student's output layer.
            teacher_bias: ``(teacher_vocab,)`` optional bias of the teacher's output layer.
            teacher_logits: ``(..., teacher_vocab)`` the teacher's logits instead of its layer.
            teacher_topk: a `TopK` teacher instead; see the class docstring.
            num_items_in_batch: divisor of an averaging reduction, replacing its own.

        Returns:
            A scalar in the dtype of ``student_hidden``.
        """
        return _fused_loss(
            self.spec,
            self.reduction_spec,
            self.chunk_size,
            student_hidden,
            student_weight,
            teacher_hidden,
            teacher_weight,
            labels,
            student_bias=student_bias,
            teacher_bias=teacher_bias,
            teacher_logits=teacher_logits,
            teacher_topk=teacher_topk,
            num_items_in_batch=num_items_in_batch,
        )


def _chunk(chunk_size: int | None) -> int | None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int (rows per block), got {chunk_size!r}")
    return chunk_size


class FusedLinearKLDivLoss(_FusedLinearLoss):
    r"""KL divergence of the student's output layer against a teacher, without the logits.

    With ``log q = log_softmax((hidden @ weightᵀ + bias) / τ)`` and P the teacher,

    $$
    \mathrm{KL}(P \,\|\, Q) = \sum_v p_v (\log p_v - \log q_v) \quad\text{(forward)},
    \qquad \mathrm{KL}(Q \,\|\, P) \quad\text{(reverse)}.
    $$

    With ``teacher_topk`` the divergence is between the distributions coarsened onto the k
    top-k tokens and one tail bucket holding all other tokens: P̃ = (p_{i_1}, …, p_{i_k},
    1 − Σ p_{i_j}) and Q̃ likewise from the student (a lower bound of the full divergence, by
    the data-processing inequality).

    Args:
        direction: ``"forward"`` for KL(P‖Q) or ``"reverse"`` for KL(Q‖P).
        temperature: τ > 0 dividing both sides' logits (1 with ``teacher_topk``).
        scale_by_temperature_squared: multiply by τ² (Hinton et al., 2015).
        ignore_index: the label value marking positions to leave out.
        reduction: ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        chunk_size: tokens per block; by default a block of logits is about the size of the
            hidden states, and at least 512 tokens.

    Examples:
        >>> import torch
        >>> from kldiv.torch import FusedLinearKLDivLoss
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> hidden, weight = torch.randn(6, 8, requires_grad=True), torch.randn(50, 8, requires_grad=True)
        >>> loss = FusedLinearKLDivLoss(reduction="token_mean")
        >>> value = loss(hidden, weight, hidden.detach(), weight.detach())
        >>> value  # the teacher is the student itself
        tensor(0., grad_fn=<FusedLinearDivergenceBackward>)
        >>> value.backward()
        >>> weight.grad.abs().max().item()
        0.0
    """

    def __init__(
        self,
        *,
        direction: str = "forward",
        temperature: float = 1.0,
        scale_by_temperature_squared: bool = False,
        ignore_index: int = -100,
        reduction: str = "batchmean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("direction", direction, DIRECTIONS)
        tau = check_temperature(temperature, input_kind="logits", target_kind="logits")
        self.spec = Divergence(direction, "logits", "logits", tau)
        factor = tau * tau if scale_by_temperature_squared else 1.0
        self.reduction_spec = _scalar_reduction(reduction, ignore_index, factor)
        self.chunk_size = _chunk(chunk_size)


class FusedLinearJSDLoss(_FusedLinearLoss):
    r"""Generalized Jensen–Shannon loss (GKD) of the student's output layer, without the logits.

    $$
    \mathrm{JSD}_\beta(T \,\|\, S) = \beta\,\mathrm{KL}(T \,\|\, M)
        + (1 - \beta)\,\mathrm{KL}(S \,\|\, M), \qquad M = \beta T + (1 - \beta) S,
    $$

    with β = 0 giving KL(T‖S) and β = 1 giving KL(S‖T), as `kldiv.torch.JSDLoss`. With
    ``teacher_topk`` the same divergence is taken between the top-k-plus-tail coarsenings.

    Args:
        beta: β in [0, 1], the teacher's weight in the mixture.
        temperature: τ > 0 dividing both sides' logits (1 with ``teacher_topk``).
        ignore_index: the label value marking positions to leave out.
        reduction: ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        chunk_size: tokens per block.

    Examples:
        >>> import torch
        >>> from kldiv.torch import FusedLinearJSDLoss
        >>> hidden = torch.tensor([[1.0], [0.0]])
        >>> weight = torch.tensor([[30.0], [0.0]], requires_grad=True)  # row 0 puts all mass on token 0
        >>> teacher = torch.tensor([[0.0, 30.0], [0.0, 0.0]])
        >>> FusedLinearJSDLoss()(hidden, weight, teacher_logits=teacher, labels=torch.tensor([1, -100]))
        tensor(0.6931, grad_fn=<FusedLinearDivergenceBackward>)

    References:
        Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from
        Self-Generated Mistakes", ICLR, arXiv:2306.13649.
    """

    def __init__(
        self,
        *,
        beta: float = 0.5,
        temperature: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "token_mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        beta = check_beta(beta)
        tau = check_temperature(temperature, input_kind="logits", target_kind="logits")
        name = "forward" if beta == 0.0 else "reverse" if beta == 1.0 else "jsd"
        self.spec = Divergence(name, "logits", "logits", tau, beta)
        self.reduction_spec = _scalar_reduction(reduction, ignore_index)
        self.chunk_size = _chunk(chunk_size)
