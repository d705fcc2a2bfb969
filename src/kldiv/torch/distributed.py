"""KL and Jensen–Shannon losses over a vocabulary sharded across ranks, and data-parallel normalization.

Tensor (vocabulary) parallel: each rank of ``group`` holds the columns ``v0:v1`` of the student's
and the teacher's logits, as a tensor-parallel output layer produces them. The losses here give
every rank the loss of the full vocabulary without gathering it: only ``O(rows)`` statistics
cross the network (see `kldiv.torch._vocab_parallel`). Shards may have any sizes, including
vocabularies not divisible by the world size. `VocabParallelFusedLinearKLDivLoss` and
`VocabParallelFusedLinearJSDLoss` take the rank's rows of the output layer instead of logits.

Data parallel: `global_num_items_in_batch` counts the unmasked positions of all ranks (and of all
accumulation micro-batches) with one all-reduce, to pass as ``num_items_in_batch``.

Importing this module needs no initialized process group; calling a function does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from kldiv.torch._options import (
    DIRECTIONS,
    INPUT_KINDS,
    Divergence,
    check_beta,
    check_choice,
    check_pair,
    check_positions,
    check_temperature,
)
from kldiv.torch._reduce import Reduction, check_num_items, position_mask, reduce_positions
from kldiv.torch._vocab_parallel import vocab_parallel_rows
from kldiv.torch._vocab_parallel_losses import (
    VocabParallelFusedLinearJSDLoss,
    VocabParallelFusedLinearKLDivLoss,
)

Tensor = torch.Tensor

__all__ = [
    "VocabParallelFusedLinearJSDLoss",
    "VocabParallelFusedLinearKLDivLoss",
    "global_num_items_in_batch",
    "vocab_parallel_js_div",
    "vocab_parallel_kl_div",
]


def vocab_parallel_kl_div(
    input_shard: Tensor,
    target_shard: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    input_kind: str = "logits",
    target_kind: str = "logits",
    direction: str = "forward",
    temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
    labels: Tensor | None = None,
    ignore_index: int = -100,
    weight: Tensor | None = None,
    reduction: str = "batchmean",
    num_items_in_batch: int | Tensor | None = None,
) -> Tensor:
    r"""KL divergence between a student and a teacher whose vocabulary is sharded over ``group``.

    With Q the student (``input``) and P the teacher (``target``), each a softmax over the full
    vocabulary of ``V`` entries split across the ranks,

    $$
    \mathrm{KL}(P \,\|\, Q) = \sum_{v=1}^{V} p_v \,(\log p_v - \log q_v),
    \qquad \log q_v = z_v / \tau - \log \sum_{u=1}^{V} e^{z_u / \tau},
    $$

    for ``direction="forward"`` (``"reverse"`` swaps P and Q). The row max and the sum of
    exponentials are all-reduced (the max without gradient, as in any log-softmax), so the value
    and the gradients equal those of `kldiv.torch.kl_div` on the gathered vocabulary.

    The options mean what they mean in `kldiv.torch.kl_div`; ``reduction="none"`` returns one
    value per position. Every rank of ``group`` must call with the same positions (rows), labels
    and options, and its own columns of the vocabulary.

    Args:
        input_shard: student logits or log-probabilities, ``(..., V_rank)``, floating; at least
            two dimensions (positions, vocabulary shard). Half precision computes in float32.
        target_shard: teacher values of the same shape and kind ``target_kind``.
        group: the tensor-parallel process group; ``None`` is the default group.
        input_kind: ``"logits"`` or ``"log_probs"`` (log-probabilities of the full vocabulary).
        target_kind: ``"logits"`` or ``"log_probs"``.
        direction: ``"forward"`` for KL(P‖Q) (torch's order), ``"reverse"`` for KL(Q‖P).
        temperature: τ > 0 dividing the logits of both sides; needs both kinds ``"logits"``.
        scale_by_temperature_squared: multiply the loss by τ² (Hinton et al., 2015).
        labels: integer tensor of the positions' shape ``input_shard.shape[:-1]``; positions
            equal to ``ignore_index`` are masked.
        ignore_index: the label value of masked positions.
        weight: floating tensor of the positions' shape weighting each position.
        reduction: ``"none"``, ``"sum"``, ``"mean"`` (sum over positions × V, torch's rule),
            ``"batchmean"`` (sum / ``input_shard.shape[0]``) or ``"token_mean"`` (sum / number of
            unmasked positions, at least 1).
        num_items_in_batch: overrides the divisor of ``"mean"``, ``"batchmean"`` and
            ``"token_mean"`` (an error with ``"none"`` and ``"sum"``), e.g. the result of
            `global_num_items_in_batch` in data-parallel training.

    Returns:
        A 0-d tensor, or one value per position for ``reduction="none"``, in the promoted dtype
        of the inputs; identical on every rank of ``group``.

    Examples:
        A world of one process holds the whole vocabulary:

        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from kldiv.torch.distributed import vocab_parallel_kl_div
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> student = torch.tensor([[1.0, 2.0, 3.0]])
        >>> teacher = torch.tensor([[3.0, 2.0, 1.0]])
        >>> vocab_parallel_kl_div(student, teacher)
        tensor(1.1504)
        >>> dist.destroy_process_group()

    References:
        Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using
        Model Parallelism", 2019 (vocabulary-parallel softmax). Hinton et al., "Distilling the
        Knowledge in a Neural Network", 2015 (temperature).
    """
    check_choice("direction", direction, DIRECTIONS)
    divergence = _divergence(direction, 0.5, input_kind, target_kind, temperature)
    factor = temperature * temperature if scale_by_temperature_squared else 1.0
    spec = Reduction(reduction, ignore_index, factor)
    return _loss(
        input_shard, target_shard, divergence, spec, labels, weight, num_items_in_batch, group
    )


def vocab_parallel_js_div(
    input_shard: Tensor,
    target_shard: Tensor,
    *,
    beta: float = 0.5,
    group: dist.ProcessGroup | None = None,
    input_kind: str = "logits",
    target_kind: str = "logits",
    temperature: float = 1.0,
    labels: Tensor | None = None,
    ignore_index: int = -100,
    weight: Tensor | None = None,
    reduction: str = "token_mean",
    num_items_in_batch: int | Tensor | None = None,
) -> Tensor:
    r"""Generalized Jensen–Shannon divergence of GKD between vocabulary-sharded student and teacher.

    With S the student (``input``), T the teacher (``target``) and M = βT + (1−β)S,

    $$
    \mathrm{JSD}_\beta = \beta\,\mathrm{KL}(T \,\|\, M) + (1-\beta)\,\mathrm{KL}(S \,\|\, M),
    $$

    with the limits used by TRL's ``generalized_jsd_loss`` at the ends: β = 0 is KL(T‖S) and
    β = 1 is KL(S‖T). Values and gradients equal `kldiv.torch.JSDLoss` on the gathered vocabulary.

    Args:
        input_shard: student logits ``(..., V_rank)``, floating, at least two dimensions.
        target_shard: teacher logits of the same shape.
        beta: β in [0, 1], the teacher's weight in the mixture.
        group: the tensor-parallel process group; ``None`` is the default group.
        input_kind: ``"logits"`` or ``"log_probs"``.
        target_kind: ``"logits"`` or ``"log_probs"``.
        temperature: τ > 0 dividing the logits of both sides; needs both kinds ``"logits"``.
        labels: integer tensor of the positions' shape; ``ignore_index`` masks a position.
        ignore_index: the label value of masked positions.
        weight: floating tensor of the positions' shape weighting each position.
        reduction: as in `vocab_parallel_kl_div`; ``"token_mean"`` is TRL's ``"batchmean"``
            with labels.
        num_items_in_batch: overrides the divisor of ``"mean"``, ``"batchmean"`` and
            ``"token_mean"``.

    Returns:
        A 0-d tensor, or one value per position for ``reduction="none"``; identical on every
        rank of ``group``.

    Examples:
        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from kldiv.torch.distributed import vocab_parallel_js_div
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> student = torch.tensor([[1.0, 2.0, 3.0]])
        >>> teacher = torch.tensor([[3.0, 2.0, 1.0]])
        >>> vocab_parallel_js_div(student, teacher, beta=0.5)
        tensor(0.2476)
        >>> dist.destroy_process_group()

    References:
        Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
        Mistakes", ICLR 2024, Eq. (1).
    """
    beta = check_beta(beta)
    name = "forward" if beta == 0 else "reverse" if beta == 1 else "jsd"
    divergence = _divergence(name, beta, input_kind, target_kind, temperature)
    spec = Reduction(reduction, ignore_index)
    return _loss(
        input_shard, target_shard, divergence, spec, labels, weight, num_items_in_batch, group
    )


def global_num_items_in_batch(
    labels: Tensor | Sequence[Tensor],
    *,
    ignore_index: int = -100,
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    """Number of unmasked positions over all ranks of ``group``, with one all-reduce.

    Pass the labels of every micro-batch of a gradient-accumulation step to count them all. With
    ``num_items_in_batch`` set to the result, ``reduction="token_mean"`` divides each rank's sum
    by the global count, so the losses summed over ranks and micro-batches equal the
    single-process loss of the whole batch. Data-parallel wrappers (DDP, FSDP) *average*
    gradients over ranks, so multiply each rank's loss by the world size of ``group`` before
    ``backward`` — as Hugging Face Trainer does when ``average_tokens_across_devices`` is set.

    Args:
        labels: one integer tensor of labels, or a sequence of them (micro-batches); all on the
            device that the backend communicates from (CUDA for NCCL).
        ignore_index: the label value of masked positions.
        group: the data-parallel process group; ``None`` is the default group.

    Returns:
        A 0-d int64 tensor on the labels' device, identical on every rank and at least 1 (a
        step with every position ignored then has loss 0, not NaN); no host synchronization
        happens.

    Examples:
        >>> import os, tempfile, torch, torch.distributed as dist
        >>> from kldiv.torch.distributed import global_num_items_in_batch
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        >>> global_num_items_in_batch([torch.tensor([5, -100, 7]), torch.tensor([-100, 1])])
        tensor(3)
        >>> dist.destroy_process_group()
    """
    batches = [labels] if isinstance(labels, Tensor) else list(labels)
    if not batches:
        raise ValueError("labels is an empty sequence; pass at least one tensor of labels")
    for index, batch in enumerate(batches):
        if not isinstance(batch, Tensor) or batch.is_floating_point() or batch.is_complex():
            described = type(batch).__name__ if not isinstance(batch, Tensor) else batch.dtype
            raise TypeError(
                f"labels[{index}] is {described}; labels must be integer tensors "
                "(cast with .long())"
            )
    _require_initialized()
    count = torch.stack([(batch != ignore_index).sum() for batch in batches]).sum()
    dist.all_reduce(count, op=dist.ReduceOp.SUM, group=group)
    # A step whose positions are all ignored everywhere then has loss 0 / 1 = 0, not NaN.
    return count.clamp(min=1)


def _require_initialized() -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialized; call torch.distributed.init_process_group "
            "first (torchrun sets its environment), or use kldiv.torch for an unsharded vocabulary"
        )


def _divergence(
    name: str, beta: float, input_kind: str, target_kind: str, temperature: float
) -> Divergence:
    # A sharded target in probabilities would need no normalization, but no tensor-parallel
    # head produces one; the kinds are those a head shard or a sharded log-softmax gives.
    check_choice("input_kind", input_kind, INPUT_KINDS)
    check_choice("target_kind", target_kind, INPUT_KINDS)
    temperature = check_temperature(temperature, input_kind=input_kind, target_kind=target_kind)
    return Divergence(name, input_kind, target_kind, temperature, beta)


def _loss(
    input_shard: Tensor,
    target_shard: Tensor,
    divergence: Divergence,
    reduction: Reduction,
    labels: Tensor | None,
    weight: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    group: dist.ProcessGroup | None,
) -> Tensor:
    # Every check comes before the first collective, so that bad input fails on every rank
    # alike instead of leaving the others waiting in an all-reduce.
    check_pair(input_shard, target_shard, names=("input_shard", "target_shard"))
    if input_shard.ndim < 2:
        raise ValueError(
            f"input_shard has {input_shard.ndim} dimension; pass (positions, vocabulary shard) "
            "or more, e.g. input_shard[None] for a single position"
        )
    check_positions(labels, name="labels", input=input_shard, integer=True)
    check_positions(weight, name="weight", input=input_shard, integer=False)
    check_num_items(num_items_in_batch, reduction)
    _require_initialized()
    # Explicit sizes: a rank may hold no column at all, and -1 cannot be inferred from 0 elements.
    flat = (math.prod(input_shard.shape[:-1]), input_shard.shape[-1])
    values = vocab_parallel_rows(
        input_shard.reshape(flat), target_shard.reshape(flat), divergence, group
    )
    mask = position_mask(labels, reduction)
    if mask is not None:
        # where(), not a product: an ignored position may hold garbage that is inf or NaN.
        values = torch.where(mask, values, torch.zeros_like(values))
    if reduction.name == "mean" and num_items_in_batch is None:
        # torch's "mean" divides by the number of input elements: the full vocabulary counts.
        num_items_in_batch = flat[0] * _global_vocabulary_size(input_shard, group)
    return reduce_positions(
        values,
        reduction=reduction,
        mask=mask,
        weight=weight,
        num_items_in_batch=num_items_in_batch,
        input_shape=input_shard.shape,
        out_dtype=torch.promote_types(input_shard.dtype, target_shard.dtype),
    )


def _global_vocabulary_size(input_shard: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    size = torch.tensor(input_shard.shape[-1], dtype=torch.int64, device=input_shard.device)
    dist.all_reduce(size, op=dist.ReduceOp.SUM, group=group)
    return size
