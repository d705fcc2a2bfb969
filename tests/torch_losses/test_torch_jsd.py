"""JSDLoss against an independent implementation of TRL's GKDTrainer.generalized_jsd_loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import JSDLoss, js_div


def trl_generalized_jsd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """TRL's formula (GKDTrainer.generalized_jsd_loss, reduction="batchmean"), written anew."""
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        mixture_log_probs = torch.logsumexp(
            torch.stack(
                [student_log_probs + math.log(1 - beta), teacher_log_probs + math.log(beta)]
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
        return jsd.sum() / mask.sum()
    return jsd.sum() / (jsd.size(0) * jsd.size(1))


def _batch(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(3, 9, 50, generator=generator, dtype=torch.float64).mul_(2)
    teacher = torch.randn(3, 9, 50, generator=generator, dtype=torch.float64).mul_(2)
    labels = torch.randint(0, 50, (3, 9), generator=generator)
    labels[0, :4] = -100
    labels[2, 7:] = -100
    return student.to(dtype), teacher.to(dtype), labels


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("with_labels", [True, False])
def test_matches_trl(beta: float, temperature: float, with_labels: bool) -> None:
    student, teacher, labels = _batch(torch.float64)
    student.requires_grad_()
    teacher.requires_grad_()
    used_labels = labels if with_labels else None
    ours = JSDLoss(beta=beta, temperature=temperature, chunk_size=5)(student, teacher, used_labels)
    ref_student = student.detach().clone().requires_grad_()
    ref_teacher = teacher.detach().clone().requires_grad_()
    reference = trl_generalized_jsd_loss(ref_student, ref_teacher, used_labels, beta, temperature)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)
    ours.backward()
    reference.backward()
    for grad, expected in [(student.grad, ref_student.grad), (teacher.grad, ref_teacher.grad)]:
        assert grad is not None
        assert expected is not None
        torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-14)


def test_float32_matches_trl_in_float64() -> None:
    student, teacher, labels = _batch(torch.float32)
    ours = js_div(student, teacher, labels=labels, beta=0.4)
    reference = trl_generalized_jsd_loss(student.double(), teacher.double(), labels, 0.4, 1.0)
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-7)


def test_disjoint_supports_give_log_two() -> None:
    student = torch.tensor([[0.0, -math.inf, -math.inf], [-math.inf, 0.0, -math.inf]])
    teacher = torch.tensor([[-math.inf, 0.0, -math.inf], [0.0, -math.inf, -math.inf]])
    value = js_div(student.requires_grad_(), teacher)
    torch.testing.assert_close(value, torch.tensor(math.log(2.0)))
    value.backward()
    assert student.grad is not None
    assert torch.isfinite(student.grad).all()
