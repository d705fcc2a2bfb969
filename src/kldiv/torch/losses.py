r"""`KLDivLoss` and `JSDLoss`, with their functional twins `kl_div` and `js_div`.

``input`` is Q, the model being trained (the student), and ``target`` is P, the reference (the
teacher), as in `torch.nn.KLDivLoss`; ``direction="forward"`` is KL(P‖Q), torch's order. All
losses run on `kldiv.torch._chunked.ChunkedDivergence`, which computes value and gradient in one
pass over blocks of rows, so no ``(tokens, vocab)`` tensor beyond the gradient is kept.
"""

from __future__ import annotations

import torch

from kldiv.torch._chunked import ChunkedDivergence, default_chunk_rows, reference_terms
from kldiv.torch._kernels import compute_dtype
from kldiv.torch._kind_check import check_kinds
from kldiv.torch._options import (
    DIRECTIONS,
    INPUT_KINDS,
    TARGET_KINDS,
    Divergence,
    check_beta,
    check_choice,
    check_pair,
    check_positions,
    check_temperature,
    legacy_reduction,
    target_kind_from,
)
from kldiv.torch._reduce import (
    Reduction,
    check_num_items,
    divisor,
    nonnegative_jsd,
    position_mask,
    position_scale,
    reduce_positions,
)

Tensor = torch.Tensor

__all__ = ["JSDLoss", "KLDivLoss", "generalized_jsd_loss", "js_div", "kl_div"]


def _check_inplace(inplace_backward: bool) -> bool:
    if not isinstance(inplace_backward, bool):
        raise TypeError(f"inplace_backward must be True or False, got {inplace_backward!r}")
    return inplace_backward


def _check_chunk_size(chunk_size: int | None) -> int | None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int (rows per block), got {chunk_size!r}")
    return chunk_size


def _kl_options(
    *,
    size_average: bool | None,
    reduce: bool | None,
    reduction: str,
    log_target: bool,
    input_kind: str,
    target_kind: str | None,
    direction: str,
    temperature: float,
    scale_by_temperature_squared: bool,
    ignore_index: int,
) -> tuple[Divergence, Reduction]:
    check_choice("input_kind", input_kind, INPUT_KINDS)
    resolved_target = target_kind_from(target_kind, log_target=log_target)
    check_choice("direction", direction, DIRECTIONS)
    tau = check_temperature(temperature, input_kind=input_kind, target_kind=resolved_target)
    spec = Divergence(direction, input_kind, resolved_target, tau)
    name = legacy_reduction(size_average, reduce, reduction)
    factor = tau * tau if scale_by_temperature_squared else 1.0
    return spec, Reduction(name, ignore_index, factor)


def _loss(
    input: Tensor,
    target: Tensor,
    spec: Divergence,
    reduction: Reduction,
    *,
    labels: Tensor | None,
    weight: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    chunk_size: int | None,
    inplace_backward: bool = False,
) -> Tensor:
    check_pair(input, target)
    check_positions(labels, name="labels", input=input, integer=True)
    check_positions(weight, name="weight", input=input, integer=False)
    check_num_items(num_items_in_batch, reduction)
    out_dtype = torch.promote_types(input.dtype, target.dtype)
    pointwise = spec.input_kind == "log_probs" and spec.target_kind != "logits"
    if (
        reduction.name == "none"
        and pointwise
        and spec.name == "forward"
        and labels is None
        and weight is None
    ):
        # torch's own options only: torch's elementwise result, with finite target gradients.
        return (reference_terms(input, target, spec) * reduction.factor).to(out_dtype)
    vocab = input.shape[-1]
    flat_input, flat_target = input.reshape(-1, vocab), target.reshape(-1, vocab)
    mask = position_mask(labels, reduction)
    rows = chunk_size or default_chunk_rows(flat_input.shape[0], vocab, input.device)
    if reduction.name == "none":
        values: Tensor = ChunkedDivergence.apply(  # type: ignore[no-untyped-call]
            flat_input, flat_target, mask, None, spec, rows, inplace_backward
        )
        return reduce_positions(
            nonnegative_jsd(values, spec),
            reduction=reduction,
            mask=mask,
            weight=weight,
            num_items_in_batch=num_items_in_batch,
            input_shape=input.shape,
            out_dtype=out_dtype,
        )
    scale = position_scale(
        reduction,
        mask=mask,
        weight=weight,
        num_items_in_batch=num_items_in_batch,
        input_shape=input.shape,
        dtype=compute_dtype(input.dtype),
        device=input.device,
    )
    total: Tensor = ChunkedDivergence.apply(  # type: ignore[no-untyped-call]
        flat_input, flat_target, mask, scale, spec, rows, inplace_backward
    )
    by = divisor(reduction, mask, num_items_in_batch, input.shape, total)
    if isinstance(by, int) and by == 0:
        # An empty batch: torch's mean of nothing is 0/0 = NaN, not the 0 of an empty dot.
        total = total / 0.0
    return nonnegative_jsd(total, spec).to(out_dtype)


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "batchmean",
    log_target: bool = False,
    *,
    labels: Tensor | None = None,
    weight: Tensor | None = None,
    num_items_in_batch: int | Tensor | None = None,
    input_kind: str = "log_probs",
    target_kind: str | None = None,
    direction: str = "forward",
    temperature: float = 1.0,
    scale_by_temperature_squared: bool = False,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    inplace_backward: bool = False,
) -> Tensor:
    r"""KL divergence between a target P and the input Q over the last axis; see `KLDivLoss`.

    $$
    \mathrm{KL}(P \,\|\, Q) = \sum_v p_v \,(\log p_v - \log q_v)
    $$

    ``size_average``, ``reduce``, ``reduction`` and ``log_target`` may be passed by position,
    in the order of `torch.nn.functional.kl_div`; every kldiv option is keyword-only.

    Args:
        input: ``(..., vocab)`` floating tensor, Q (the model being trained) in ``input_kind``.
        target: ``(..., vocab)`` floating tensor, P (the reference) in ``target_kind``.
        size_average: deprecated torch option, mapped onto ``reduction`` as torch does, with
            torch's UserWarning.
        reduce: deprecated torch option, mapped onto ``reduction`` as torch does.
        reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        log_target: torch's flag: the target holds log-probabilities (``target_kind`` default).
        labels: ``(...)`` integer tensor; positions equal to ``ignore_index`` are left out.
        weight: ``(...)`` floating tensor weighting each position.
        num_items_in_batch: divisor of an averaging reduction, replacing its own.
        input_kind: ``"logits"`` or ``"log_probs"``.
        target_kind: ``"logits"``, ``"log_probs"`` or ``"probs"``.
        direction: ``"forward"`` for KL(P‖Q), ``"reverse"`` for KL(Q‖P).
        temperature: τ > 0 dividing both sides' logits.
        scale_by_temperature_squared: multiply the loss by τ².
        ignore_index: the label value marking positions to leave out.
        chunk_size: rows per block of the chunked kernel; chosen from the vocabulary by default.
        inplace_backward: on the Triton (GPU) path, write the gradient over ``input``
            during forward instead of into a new tensor (one ``(tokens, vocab)`` tensor less);
            ``input`` must not be needed afterwards. Other paths ignore it.

    Returns:
        A scalar of the inputs' promoted dtype, or per-position values for ``"none"``.

    Examples:
        >>> import torch
        >>> from kldiv.torch import kl_div
        >>> student = torch.tensor([[0.0, 1.0, 2.0]], requires_grad=True)
        >>> teacher = torch.tensor([[0.0, 1.0, 2.0]])
        >>> kl_div(student, teacher, input_kind="logits", target_kind="logits")
        tensor(0., grad_fn=<ChunkedDivergenceBackward>)
    """
    spec, reduction_spec = _kl_options(
        size_average=size_average,
        reduce=reduce,
        reduction=reduction,
        log_target=log_target,
        input_kind=input_kind,
        target_kind=target_kind,
        direction=direction,
        temperature=temperature,
        scale_by_temperature_squared=scale_by_temperature_squared,
        ignore_index=ignore_index,
    )
    return _loss(
        input,
        target,
        spec,
        reduction_spec,
        labels=labels,
        weight=weight,
        num_items_in_batch=num_items_in_batch,
        chunk_size=_check_chunk_size(chunk_size),
        inplace_backward=_check_inplace(inplace_backward),
    )


class KLDivLoss(torch.nn.Module):
    r"""A drop-in `torch.nn.KLDivLoss` that is correct by construction, chunked and lean.

    With ``input`` the model being trained (Q) and ``target`` the reference (P), as in torch,

    $$
    \mathrm{KL}(P \,\|\, Q) = \sum_v p_v \,(\log p_v - \log q_v)
    \quad\text{(forward)}, \qquad
    \mathrm{KL}(Q \,\|\, P) \quad\text{(reverse)},
    $$

    with ``log q = log_softmax(input / τ)`` for logits and the input itself for log-probabilities
    (likewise for the target). Built with torch's arguments only, it returns torch's values and
    input gradients for every reduction and ``log_target`` (NaN for NaN or negative targets,
    NaN for the mean of an empty batch, as in torch), except that the default reduction is
    ``"batchmean"`` and that the target gradient is finite (0) where the target is 0.

    Args:
        size_average: deprecated torch option, mapped onto ``reduction`` as torch does.
        reduce: deprecated torch option, mapped onto ``reduction`` as torch does.
        reduction: ``"none"`` (torch's elementwise result with torch's options only, else one
            value per position), ``"sum"``, ``"mean"`` (sum / number of input elements, torch's
            meaning, with its warning), ``"batchmean"`` (sum / size of the leading dimension)
            or ``"token_mean"`` (sum / number of unmasked positions, at least 1).
        log_target: the target holds log-probabilities; sets the default ``target_kind``.
        input_kind: ``"logits"`` or ``"log_probs"`` (torch's).
        target_kind: ``"logits"``, ``"log_probs"`` or ``"probs"``; from ``log_target`` if None.
        direction: ``"forward"`` for KL(P‖Q) (torch's) or ``"reverse"`` for KL(Q‖P).
        temperature: τ > 0 dividing the logits of both sides; needs logits on both sides.
        scale_by_temperature_squared: multiply by τ², which keeps gradient magnitudes
            independent of τ in distillation (Hinton et al., 2015).
        ignore_index: the label value marking positions to leave out.
        chunk_size: rows per block of the kernel; chosen so that a block fits in cache if None.
        inplace_backward: on the Triton (GPU) path, write the gradient over ``input``
            during forward instead of into a new tensor (one ``(tokens, vocab)`` tensor less);
            ``input`` must not be needed afterwards. Other paths ignore it.

    On its first call the module looks at the values of the first 64 kept positions once (one
    host synchronization, skipped under ``torch.compile``): a side declared ``"log_probs"`` whose exponentials do not sum to 1
    raises a ValueError that suggests ``"logits"`` (raw logits as log-probabilities give a
    negative "KL"), and a side declared ``"logits"`` whose rows are probabilities warns. Later
    calls and the functional `kl_div` check only shapes, dtypes and options, never values.

    Shape:
        ``input`` and ``target``: ``(..., vocab)``; ``labels`` and ``weight``: ``(...)``.

    Examples:
        >>> import torch
        >>> from kldiv.torch import KLDivLoss
        >>> loss = KLDivLoss(input_kind="logits", target_kind="probs")
        >>> student = torch.zeros(2, 4, requires_grad=True)  # uniform over 4 tokens
        >>> teacher = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
        >>> value = loss(student, teacher)  # (log 4 + log 2) / 2, finite despite the zeros
        >>> value
        tensor(1.0397, grad_fn=<ChunkedDivergenceBackward>)
        >>> value.backward()
        >>> student.grad[1]  # (softmax(input) - target) / batch size
        tensor([-0.1250, -0.1250,  0.1250,  0.1250])

    References:
        Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural Network",
        arXiv:1503.02531.
    """

    def __init__(
        self,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "batchmean",
        log_target: bool = False,
        *,
        input_kind: str = "log_probs",
        target_kind: str | None = None,
        direction: str = "forward",
        temperature: float = 1.0,
        scale_by_temperature_squared: bool = False,
        ignore_index: int = -100,
        chunk_size: int | None = None,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        self.spec, self.reduction_spec = _kl_options(
            size_average=size_average,
            reduce=reduce,
            reduction=reduction,
            log_target=log_target,
            input_kind=input_kind,
            target_kind=target_kind,
            direction=direction,
            temperature=temperature,
            scale_by_temperature_squared=scale_by_temperature_squared,
            ignore_index=ignore_index,
        )
        self.reduction = self.reduction_spec.name
        self.log_target = log_target
        self.chunk_size = _check_chunk_size(chunk_size)
        self.inplace_backward = _check_inplace(inplace_backward)
        # The kinds are checked against the values of the first batch only (one host sync).
        self.kinds_checked = False

    def forward(
        self,
        input: Tensor,
        target: Tensor,
        labels: Tensor | None = None,
        weight: Tensor | None = None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        """Return the loss of ``input`` (Q) against ``target`` (P); see the class docstring."""
        if not self.kinds_checked and not torch.compiler.is_compiling():
            check_kinds(
                input,
                target,
                self.spec,
                labels=labels,
                ignore_index=self.reduction_spec.ignore_index,
            )
            self.kinds_checked = True
        return _loss(
            input,
            target,
            self.spec,
            self.reduction_spec,
            labels=labels,
            weight=weight,
            num_items_in_batch=num_items_in_batch,
            chunk_size=self.chunk_size,
            inplace_backward=self.inplace_backward,
        )

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, direction={self.spec.name!r}, "
            f"input_kind={self.spec.input_kind!r}, target_kind={self.spec.target_kind!r}, "
            f"temperature={self.spec.temperature}"
        )


def _jsd_spec(
    beta: float, temperature: float, input_kind: str = "logits", target_kind: str = "logits"
) -> Divergence:
    beta = check_beta(beta)
    check_choice("input_kind", input_kind, INPUT_KINDS)
    check_choice("target_kind", target_kind, TARGET_KINDS)
    tau = check_temperature(temperature, input_kind=input_kind, target_kind=target_kind)
    # TRL's GKD treats the end points as the two KL divergences, not as the (vanishing) limits.
    name = "forward" if beta == 0.0 else "reverse" if beta == 1.0 else "jsd"
    return Divergence(name, input_kind, target_kind, tau, beta)


def js_div(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    labels: Tensor | None = None,
    num_items_in_batch: int | Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "token_mean",
    input_kind: str = "logits",
    target_kind: str = "logits",
    chunk_size: int | None = None,
    inplace_backward: bool = False,
) -> Tensor:
    r"""Generalized Jensen–Shannon loss of GKD between student and teacher logits; see `JSDLoss`.

    $$
    \mathrm{JSD}_\beta(T \,\|\, S) = \beta\,\mathrm{KL}(T \,\|\, M)
        + (1 - \beta)\,\mathrm{KL}(S \,\|\, M), \qquad M = \beta T + (1 - \beta) S
    $$

    Args:
        student_logits: ``(..., vocab)`` floating tensor, the model being trained.
        teacher_logits: ``(..., vocab)`` floating tensor, the reference.
        labels: ``(...)`` integer tensor; positions equal to ``ignore_index`` are left out.
        num_items_in_batch: divisor of an averaging reduction, replacing its own.
        beta: β in [0, 1]; 0 gives KL(T‖S), 1 gives KL(S‖T).
        temperature: τ > 0 dividing both sides' logits.
        ignore_index: the label value marking positions to leave out.
        reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        input_kind: what the student holds: ``"logits"`` or ``"log_probs"``.
        target_kind: what the teacher holds: ``"logits"``, ``"log_probs"`` or ``"probs"``.
        chunk_size: rows per block of the chunked kernel.
        inplace_backward: on the Triton (GPU) path, write the gradient over ``student_logits``
            during forward instead of into a new tensor (one ``(tokens, vocab)`` tensor less);
            ``student_logits`` must not be needed afterwards. Other paths ignore it.

    Returns:
        A scalar of the inputs' promoted dtype, or per-position values for ``"none"``.

    Examples:
        >>> import torch
        >>> from kldiv.torch import js_div
        >>> student = torch.tensor([[0.0, 30.0]])  # all mass on token 1
        >>> teacher = torch.tensor([[30.0, 0.0]])  # all mass on token 0
        >>> js_div(student, teacher)  # disjoint supports: log 2
        tensor(0.6931)
    """
    reduction_spec = Reduction(reduction, ignore_index)
    return _loss(
        student_logits,
        teacher_logits,
        _jsd_spec(beta, temperature, input_kind, target_kind),
        reduction_spec,
        labels=labels,
        weight=None,
        num_items_in_batch=num_items_in_batch,
        chunk_size=_check_chunk_size(chunk_size),
        inplace_backward=_check_inplace(inplace_backward),
    )


class JSDLoss(torch.nn.Module):
    r"""The generalized Jensen–Shannon loss of on-policy distillation (GKD).

    $$
    \mathrm{JSD}_\beta(T \,\|\, S) = \beta\,\mathrm{KL}(T \,\|\, M)
        + (1 - \beta)\,\mathrm{KL}(S \,\|\, M), \qquad M = \beta T + (1 - \beta) S,
    $$

    with S = softmax(student_logits / τ) and T = softmax(teacher_logits / τ). As in TRL's
    ``GKDTrainer.generalized_jsd_loss``, β = 0 gives KL(T‖S) and β = 1 gives KL(S‖T).

    The reductions do not have TRL's meanings. From TRL's to this loss's, with labels:
    TRL ``"batchmean"`` (sum / unmasked tokens) is ``"token_mean"`` here (which gives 0, not
    NaN, when every position is masked); TRL ``"mean"`` (sum / (unmasked tokens × vocab)) has
    no twin here; ``"sum"`` is ``"sum"``. Without labels, TRL ``"batchmean"`` (sum / batch size)
    is ``"batchmean"`` here, and TRL ``"mean"`` (sum / all elements) is ``"mean"``. TRL's
    ``"none"`` returns vocabulary-wide terms, this ``"none"`` one value per position. To port
    a GKD trainer unchanged, use `kldiv.torch.generalized_jsd_loss`, which has TRL's signature
    and reductions.

    Args:
        beta: β in [0, 1], the teacher's weight in the mixture.
        temperature: τ > 0 dividing both sides' logits.
        ignore_index: the label value marking positions to leave out.
        reduction: ``"none"``, ``"sum"``, ``"mean"``, ``"batchmean"`` or ``"token_mean"``.
        input_kind: what the student holds: ``"logits"`` (default) or ``"log_probs"``.
        target_kind: what the teacher holds: ``"logits"`` (default), ``"log_probs"`` or
            ``"probs"``. A temperature needs logits on both sides.
        chunk_size: rows per block of the chunked kernel.
        inplace_backward: on the Triton (GPU) path, write the gradient over ``student_logits``
            during forward instead of into a new tensor (one ``(tokens, vocab)`` tensor less);
            ``student_logits`` must not be needed afterwards. Other paths ignore it.

    On its first call the module looks at the values of the first 64 kept positions once (one
    host synchronization, skipped under ``torch.compile``): ``"log_probs"`` that do not normalize raise a ValueError that
    suggests ``"logits"``, and logits whose rows are probabilities warn. Later calls and the
    functional `js_div` check only shapes and dtypes.

    Examples:
        >>> import torch
        >>> from kldiv.torch import JSDLoss
        >>> student = torch.tensor([[0.0, 30.0], [1.0, 1.0]], requires_grad=True)
        >>> teacher = torch.tensor([[30.0, 0.0], [5.0, 5.0]])
        >>> labels = torch.tensor([7, -100])  # the second position is padding
        >>> JSDLoss(beta=0.5)(student, teacher, labels)
        tensor(0.6931, grad_fn=<ChunkedDivergenceBackward>)

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
        input_kind: str = "logits",
        target_kind: str = "logits",
        chunk_size: int | None = None,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        self.spec = _jsd_spec(beta, temperature, input_kind, target_kind)
        self.reduction_spec = Reduction(reduction, ignore_index)
        self.beta, self.temperature, self.reduction = beta, temperature, reduction
        self.chunk_size = _check_chunk_size(chunk_size)
        self.inplace_backward = _check_inplace(inplace_backward)
        self.kinds_checked = False

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        labels: Tensor | None = None,
        num_items_in_batch: int | Tensor | None = None,
    ) -> Tensor:
        """Return the loss of the student against the teacher; see the class docstring."""
        if not self.kinds_checked and not torch.compiler.is_compiling():
            check_kinds(
                student_logits,
                teacher_logits,
                self.spec,
                labels=labels,
                ignore_index=self.reduction_spec.ignore_index,
                names=("student_logits", "teacher_logits"),
            )
            self.kinds_checked = True
        return _loss(
            student_logits,
            teacher_logits,
            self.spec,
            self.reduction_spec,
            labels=labels,
            weight=None,
            num_items_in_batch=num_items_in_batch,
            chunk_size=self.chunk_size,
            inplace_backward=self.inplace_backward,
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}, temperature={self.temperature}, reduction={self.reduction!r}"


TRL_REDUCTIONS = ("batchmean", "sum", "mean", "none")


def generalized_jsd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> Tensor:
    r"""TRL's ``GKDTrainer.generalized_jsd_loss``, same arguments and reductions, on kldiv's kernels.

    The port path from TRL: values and gradients are those of TRL's formula,

    $$
    \mathrm{JSD}_\beta = \beta\,\mathrm{KL}(T \,\|\, M) + (1 - \beta)\,\mathrm{KL}(S \,\|\, M),
    \qquad M = \beta T + (1 - \beta) S,
    $$

    with T and S the softmax of the teacher's and student's logits divided by τ, β = 0 giving
    KL(T‖S) and β = 1 giving KL(S‖T). Positions whose label is -100 are left out. TRL's
    reductions, which differ from `JSDLoss`'s:

    - ``"batchmean"``: the sum over kept positions divided by their number when ``labels`` are
      given (NaN if none is kept, as in TRL), else by ``student_logits.shape[0]`` (the batch);
    - ``"sum"``: the sum;
    - ``"mean"``: the sum divided by the number of kept *elements* (positions × vocabulary);
    - ``"none"``: the elementwise terms, ``(kept positions, vocab)`` with ``labels``, else the
      inputs' shape (computed with torch operations, not the chunked kernel).

    Args:
        student_logits: ``(..., vocab)`` floating tensor, the model being trained.
        teacher_logits: ``(..., vocab)`` floating tensor, the reference.
        labels: ``(...)`` integer tensor, -100 where a position is left out, or None.
        beta: β in [0, 1], the teacher's weight in the mixture.
        temperature: τ > 0 dividing both sides' logits.
        reduction: ``"batchmean"``, ``"sum"``, ``"mean"`` or ``"none"``.

    Returns:
        A scalar of the inputs' promoted dtype, or the elementwise terms for ``"none"``.

    Examples:
        >>> import torch
        >>> from kldiv.torch import generalized_jsd_loss
        >>> student = torch.tensor([[[0.0, 30.0], [1.0, 1.0]]])  # (batch 1, 2 positions, vocab 2)
        >>> teacher = torch.tensor([[[30.0, 0.0], [5.0, 5.0]]])
        >>> generalized_jsd_loss(student, teacher)  # (log 2 + 0) / batch size 1
        tensor(0.6931)
        >>> generalized_jsd_loss(student, teacher, labels=torch.tensor([[7, 8]]))  # / 2 tokens
        tensor(0.3466)

    References:
        Agarwal et al. (2024), "On-Policy Distillation of Language Models: Learning from
        Self-Generated Mistakes", ICLR, arXiv:2306.13649, Eq. (1); TRL's ``GKDTrainer``.
    """
    check_choice("reduction", reduction, TRL_REDUCTIONS)
    spec = _jsd_spec(beta, temperature)
    check_pair(student_logits, teacher_logits)
    check_positions(labels, name="labels", input=student_logits, integer=True)
    if reduction == "none":
        terms = reference_terms(student_logits, teacher_logits, spec)
        return terms if labels is None else terms[labels != -100]
    total = _loss(
        student_logits,
        teacher_logits,
        spec,
        Reduction("sum", -100),
        labels=labels,
        weight=None,
        num_items_in_batch=None,
        chunk_size=None,
    )
    if reduction == "sum":
        return total
    vocab = student_logits.shape[-1]
    if labels is None:
        count = student_logits.shape[0] if reduction == "batchmean" else student_logits.numel()
        return total / count
    kept = (labels != -100).sum().to(total.dtype)
    return total / (kept if reduction == "batchmean" else kept * vocab)
