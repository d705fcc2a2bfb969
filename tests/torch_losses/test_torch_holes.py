"""JSD losses never negative, and the fused-linear losses' construction and shape errors."""

from __future__ import annotations

import re

import pytest
import torch

from kldiv.torch import FusedLinearJSDLoss, FusedLinearKLDivLoss, JSDLoss, js_div


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["none", "sum", "token_mean", "batchmean"])
@pytest.mark.parametrize("beta", [0.5, 0.3])
def test_jsd_of_identical_logits_is_never_negative(
    dtype: torch.dtype, reduction: str, beta: float
) -> None:
    logits = torch.randn(150, 40, dtype=torch.float64).to(dtype)
    student = logits.clone().requires_grad_()
    value = js_div(student, logits, beta=beta, reduction=reduction)
    assert (value >= 0).all()
    assert not torch.sqrt(value).isnan().any()
    # Rounding of log M leaves a few ulps of the log-probabilities (not exactly 0 as in the core).
    rows = 150 if reduction == "sum" else 1
    assert (value <= rows * (1e-14 if dtype == torch.float64 else 1e-6)).all()
    value.sum().backward()
    assert student.grad is not None
    assert student.grad.abs().max() <= (1e-12 if dtype == torch.float64 else 1e-6)


def test_jsd_clamp_keeps_the_gradient_of_near_equal_rows() -> None:
    # Rows a rounding error apart: the value may be clamped, the gradient must be the JSD's.
    logits = torch.randn(8, 30, dtype=torch.float64)
    student = (logits + 1e-9 * torch.randn_like(logits)).requires_grad_()
    reference = student.detach().clone().requires_grad_()
    js_div(student, logits, reduction="sum").backward()
    log_s, log_t = reference.log_softmax(-1), logits.log_softmax(-1)
    log_m = torch.logaddexp(log_s, log_t) - torch.log(torch.tensor(2.0, dtype=torch.float64))
    manual = (
        0.5 * (log_t.exp() * (log_t - log_m)).sum() + 0.5 * (log_s.exp() * (log_s - log_m)).sum()
    )
    manual.backward()
    assert student.grad is not None
    assert reference.grad is not None
    torch.testing.assert_close(student.grad, reference.grad, atol=1e-15, rtol=0)


def test_module_and_fused_jsd_of_identical_inputs() -> None:
    hidden, weight = torch.randn(6, 8), torch.randn(50, 8)
    assert FusedLinearJSDLoss()(hidden, weight, hidden, weight) >= 0
    logits = hidden @ weight.t()
    assert JSDLoss()(logits, logits) >= 0


@pytest.mark.parametrize("loss", [FusedLinearKLDivLoss, FusedLinearJSDLoss])
def test_fused_linear_refuses_reduction_none_at_construction(loss: type) -> None:
    with pytest.raises(ValueError, match=r"return a scalar; use reduction='sum'"):
        loss(reduction="none")


@pytest.mark.parametrize("who", ["student", "teacher"])
def test_a_wrong_sized_weight_is_named(who: str) -> None:
    hidden, weight = torch.randn(6, 8), torch.randn(50, 8)
    bad = torch.randn(50, 7)
    args = (hidden, bad, hidden, weight) if who == "student" else (hidden, weight, hidden, bad)
    message = (
        f"{who}_weight has shape (50, 7), expected (vocab, 8): its second dimension must be "
        f"the hidden size, the last dimension of {who}_hidden (shape (6, 8))"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        FusedLinearKLDivLoss()(*args)
