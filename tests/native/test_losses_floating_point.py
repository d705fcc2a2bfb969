"""The compiled logits kernel's floating-point state and memory hint, against float64 torch.

The kernel computes its float32 sweeps with flush-to-zero on (x86-64) and must restore the
caller's state; the huge-page hint (``KLDIV_HUGE_PAGES=1``) may change where the gradient's
pages come from, never its values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kldiv import _native
from kldiv.torch import KLDivLoss

pytestmark = pytest.mark.skipif(_native.load("losses") is None, reason="compiled kernels not built")


def _loss_and_gradient(student: torch.Tensor, teacher: torch.Tensor) -> tuple[float, torch.Tensor]:
    student = student.detach().clone().requires_grad_()
    loss = KLDivLoss(input_kind="logits", target_kind="logits", reduction="sum")(student, teacher)
    loss.backward()
    assert student.grad is not None
    return float(loss.detach()), student.grad


def _reference(student: torch.Tensor, teacher: torch.Tensor) -> tuple[float, torch.Tensor]:
    log_q = F.log_softmax(student.double(), dim=-1)
    log_p = F.log_softmax(teacher.double(), dim=-1)
    value = float((log_p.exp() * (log_p - log_q)).sum())
    return value, log_q.exp() - log_p.exp()


def test_rows_whose_probabilities_underflow_to_subnormals() -> None:
    # Logits spread over [-85, 0]: exp(a - max a) is normal, but q = that / (sum ≈ 24) falls
    # below 1.2e-38 for a few percent of the entries, where the kernel flushes it to 0.
    generator = torch.Generator().manual_seed(0)
    student = torch.rand(8, 2048, generator=generator) * -85.0
    teacher = torch.rand(8, 2048, generator=generator) * -85.0
    assert (F.softmax(student, dim=-1) < torch.finfo(torch.float32).tiny).float().mean() > 0.01
    value, gradient = _loss_and_gradient(student, teacher)
    ref_value, ref_gradient = _reference(student, teacher)
    assert value == pytest.approx(ref_value, rel=1e-5)
    # Flushed entries differ from the reference by less than the smallest normal float32.
    torch.testing.assert_close(gradient.double(), ref_gradient, rtol=1e-5, atol=1e-7)


def test_the_callers_floating_point_state_is_restored() -> None:
    tiny = np.float32(1e-20)
    assert tiny * tiny > 0  # subnormal results are kept before the call ...
    generator = torch.Generator().manual_seed(1)
    student, teacher = (
        torch.randn(4, 512, generator=generator),
        torch.randn(4, 512, generator=generator),
    )
    _loss_and_gradient(student, teacher)
    assert tiny * tiny > 0  # ... and after it, in the thread that called the kernel
    assert torch.tensor(1e-20) * torch.tensor(1e-20) > 0


def test_huge_page_hint_leaves_the_values_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # 64 x 65536 float32 is a 16 MiB gradient: large enough for the hint to be given.
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(64, 65536, generator=generator) * 3
    teacher = torch.randn(64, 65536, generator=generator) * 3
    monkeypatch.delenv("KLDIV_HUGE_PAGES", raising=False)
    plain = _loss_and_gradient(student, teacher)
    monkeypatch.setenv("KLDIV_HUGE_PAGES", "1")
    hinted = _loss_and_gradient(student, teacher)
    assert plain[0] == hinted[0]
    assert torch.equal(plain[1], hinted[1])
