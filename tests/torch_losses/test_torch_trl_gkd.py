"""`kldiv.torch.generalized_jsd_loss` against TRL's ``GKDTrainer.generalized_jsd_loss``.

The reference below is TRL's formula as published in trl/trainer/gkd_trainer.py (F.kl_div with
log targets, a logsumexp mixture, boolean-mask indexing and TRL's reductions), written here
with torch operations only, independently of kldiv's kernels.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import JSDLoss, generalized_jsd_loss


def trl_generalized_jsd_loss(  # type: ignore[no-untyped-def]
    student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0, reduction="batchmean"
):
    student_logits = student_logits / temperature
    teacher_logits = teacher_logits / temperature
    student_log_probs = F.log_softmax(student_logits, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits, dim=-1)
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        beta = torch.tensor(beta, dtype=student_log_probs.dtype)
        mixture_log_probs = torch.logsumexp(
            torch.stack(
                [student_log_probs + torch.log(1 - beta), teacher_log_probs + torch.log(beta)]
            ),
            dim=0,
        )
        kl_teacher = F.kl_div(
            mixture_log_probs, teacher_log_probs, reduction="none", log_target=True
        )
        kl_student = F.kl_div(
            mixture_log_probs, student_log_probs, reduction="none", log_target=True
        )
        jsd = beta * kl_teacher + (1 - beta) * kl_student
    if labels is not None:
        mask = labels != -100
        jsd = jsd[mask]
    if reduction == "batchmean":
        return jsd.sum() / mask.sum() if labels is not None else jsd.sum() / jsd.size(0)
    if reduction == "sum":
        return jsd.sum()
    if reduction == "mean":
        return jsd.mean()
    return jsd


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, 11, (3, 5), generator=generator)
    labels[0, :2] = -100
    labels[2, 4] = -100
    return student, teacher, labels


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_values_and_gradients_equal_trl(
    beta: float, reduction: str, with_labels: bool, temperature: float
) -> None:
    student, teacher, labels = _inputs(0)
    ours_s, theirs_s = student.clone().requires_grad_(), student.clone().requires_grad_()
    lab = labels if with_labels else None
    ours = generalized_jsd_loss(ours_s, teacher, lab, beta, temperature, reduction)
    theirs = trl_generalized_jsd_loss(theirs_s, teacher, lab, beta, temperature, reduction)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    upstream = torch.randn_like(theirs)
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours_s.grad, theirs_s.grad, rtol=1e-10, atol=1e-13)


def test_float32_logits_agree_to_float32_precision() -> None:
    student, teacher, labels = (t.float() if t.is_floating_point() else t for t in _inputs(1))
    torch.testing.assert_close(
        generalized_jsd_loss(student, teacher, labels),
        trl_generalized_jsd_loss(student, teacher, labels),
        rtol=1e-5,
        atol=1e-6,
    )


def test_all_positions_masked_is_nan_as_in_trl() -> None:
    student, teacher, _ = _inputs(2)
    labels = torch.full((3, 5), -100)
    assert torch.isnan(generalized_jsd_loss(student, teacher, labels))
    assert torch.isnan(trl_generalized_jsd_loss(student, teacher, labels))


def test_jsdloss_token_mean_is_trls_batchmean_with_labels() -> None:
    student, teacher, labels = _inputs(3)
    torch.testing.assert_close(
        JSDLoss(beta=0.3, reduction="token_mean")(student, teacher, labels),
        trl_generalized_jsd_loss(student, teacher, labels, beta=0.3),
        rtol=1e-12,
        atol=1e-14,
    )


def test_bad_reduction() -> None:
    student, teacher, _ = _inputs(4)
    with pytest.raises(ValueError, match="unknown reduction 'token_mean'; expected one of"):
        generalized_jsd_loss(student, teacher, reduction="token_mean")


@pytest.mark.parametrize("reduction", ["batchmean", "mean"])
def test_jsdloss_reductions_without_labels_are_trls(reduction: str) -> None:
    student, teacher, _ = _inputs(5)
    with (
        pytest.warns(UserWarning, match="divides the total loss")
        if reduction == "mean"
        else _nothing()
    ):
        ours = JSDLoss(beta=0.7, reduction=reduction)(student, teacher)
    torch.testing.assert_close(
        ours,
        trl_generalized_jsd_loss(student, teacher, beta=0.7, reduction=reduction),
        rtol=1e-12,
        atol=1e-14,
    )


def _nothing():  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.nullcontext()
