"""The fused-linear loss modules for an output layer sharded by vocabulary rows.

They take the options of `kldiv.torch.FusedLinearKLDivLoss` and `FusedLinearJSDLoss` (whose
constructors validate them) plus the tensor-parallel ``group``; the computation is
`kldiv.torch._vocab_parallel_fused`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from kldiv.torch._options import Divergence
from kldiv.torch._reduce import Reduction
from kldiv.torch._vocab_parallel_fused import sharded_fused_loss
from kldiv.torch.fused_linear import FusedLinearJSDLoss, FusedLinearKLDivLoss, TopK

Tensor = torch.Tensor


class _VocabParallelForward:
    """The forward shared by both losses: the fused-linear arguments, this rank's rows of them."""

    spec: Divergence
    reduction_spec: Reduction
    chunk_size: int | None
    group: dist.ProcessGroup | None

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
        """Return the loss of the full vocabulary, identical on every rank of the group.

        Args:
            student_hidden: ``(..., hidden)`` the student's last hidden states (replicated).
            student_weight: ``(shard, hidden)`` this rank's rows of the student's output layer.
            teacher_hidden: ``(..., teacher_hidden)`` the teacher's last hidden states.
            teacher_weight: ``(shard, teacher_hidden)`` the same rows of the teacher's layer.
            labels: ``(...)`` integer tensor; positions equal to ``ignore_index`` are left out.
            student_bias: ``(shard,)`` this rank's entries of the student's bias.
            teacher_bias: ``(shard,)`` this rank's entries of the teacher's bias.
            teacher_logits: ``(..., shard)`` this rank's columns of the teacher's logits,
                instead of its layer.
            teacher_topk: not supported with a sharded vocabulary (a ValueError).
            num_items_in_batch: divisor of an averaging reduction, replacing its own.

        Returns:
            A scalar in the dtype of ``student_hidden``.
        """
        if teacher_topk is not None:
            raise ValueError(
                "teacher_topk holds token ids of the whole vocabulary, which a sharded loss "
                "does not see; gather the top-k teacher into teacher_logits of this rank's "
                "columns, or use kldiv.torch.FusedLinearKLDivLoss"
            )
        return sharded_fused_loss(
            self.spec,
            self.reduction_spec,
            self.chunk_size,
            self.group,
            student_hidden,
            student_weight,
            teacher_hidden,
            teacher_weight,
            labels,
            student_bias=student_bias,
            teacher_bias=teacher_bias,
            teacher_logits=teacher_logits,
            num_items_in_batch=num_items_in_batch,
        )


class VocabParallelFusedLinearKLDivLoss(_VocabParallelForward, FusedLinearKLDivLoss):
    r"""`kldiv.torch.FusedLinearKLDivLoss` for an output layer sharded by vocabulary rows.

    $$
    \mathrm{KL}(P \,\|\, Q), \qquad
    \log q = \mathrm{log\_softmax}\big((h W^\top + b) / \tau\big),
    $$

    where each rank of ``group`` holds rows ``v0:v1`` of ``W`` and ``b`` (and of the teacher's
    layer), and the softmax runs over the full vocabulary through all-reduced row statistics.
    Values and gradients (hidden states, weight and bias shards) equal those of
    `kldiv.torch.FusedLinearKLDivLoss` on the gathered layer. No ``teacher_topk``.

    Args:
        group: the tensor-parallel process group; ``None`` is the default group.
        direction: ``"forward"`` for KL(P‖Q) or ``"reverse"`` for KL(Q‖P).
        temperature: τ > 0 dividing both sides' logits.
        scale_by_temperature_squared: multiply by τ² (Hinton et al., 2015).
        ignore_index: the label value marking positions to leave out.
        reduction: ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        chunk_size: tokens per block, the same on every rank; by default Liger-Kernel's rule
            with the largest shard (which costs one host synchronization).

    Examples:
        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from kldiv.torch import FusedLinearKLDivLoss
        >>> from kldiv.torch.distributed import VocabParallelFusedLinearKLDivLoss
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> generator = torch.Generator().manual_seed(0)
        >>> hidden = torch.randn(4, 8, generator=generator)
        >>> student, teacher = torch.randn(2, 50, 8, generator=generator)
        >>> sharded = VocabParallelFusedLinearKLDivLoss(reduction="token_mean")(
        ...     hidden, student, hidden, teacher)
        >>> single = FusedLinearKLDivLoss(reduction="token_mean")(hidden, student, hidden, teacher)
        >>> torch.allclose(sharded, single)
        True
        >>> dist.destroy_process_group()
    """

    def __init__(
        self,
        *,
        group: dist.ProcessGroup | None = None,
        direction: str = "forward",
        temperature: float = 1.0,
        scale_by_temperature_squared: bool = False,
        ignore_index: int = -100,
        reduction: str = "batchmean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            direction=direction,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
            ignore_index=ignore_index,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self.group = group


class VocabParallelFusedLinearJSDLoss(_VocabParallelForward, FusedLinearJSDLoss):
    r"""`kldiv.torch.FusedLinearJSDLoss` for an output layer sharded by vocabulary rows.

    $$
    \mathrm{JSD}_\beta(T \,\|\, S) = \beta\,\mathrm{KL}(T \,\|\, M)
        + (1 - \beta)\,\mathrm{KL}(S \,\|\, M), \qquad M = \beta T + (1 - \beta) S,
    $$

    with β = 0 giving KL(T‖S) and β = 1 giving KL(S‖T); each rank of ``group`` holds its rows
    of the output layers. Values and gradients equal those of `kldiv.torch.FusedLinearJSDLoss`
    on the gathered layer.

    Args:
        group: the tensor-parallel process group; ``None`` is the default group.
        beta: β in [0, 1], the teacher's weight in the mixture.
        temperature: τ > 0 dividing both sides' logits.
        ignore_index: the label value marking positions to leave out.
        reduction: ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        chunk_size: tokens per block, the same on every rank.

    Examples:
        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from kldiv.torch.distributed import VocabParallelFusedLinearJSDLoss
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> hidden = torch.tensor([[1.0], [0.0]])
        >>> weight = torch.tensor([[30.0], [0.0]])  # row 0 puts all mass on token 0
        >>> teacher = torch.tensor([[0.0, 30.0], [0.0, 0.0]])
        >>> VocabParallelFusedLinearJSDLoss()(
        ...     hidden, weight, teacher_logits=teacher, labels=torch.tensor([1, -100]))
        tensor(0.6931)
        >>> dist.destroy_process_group()

    References:
        Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from
        Self-Generated Mistakes", ICLR, arXiv:2306.13649.
    """

    def __init__(
        self,
        *,
        group: dist.ProcessGroup | None = None,
        beta: float = 0.5,
        temperature: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "token_mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            beta=beta,
            temperature=temperature,
            ignore_index=ignore_index,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self.group = group
