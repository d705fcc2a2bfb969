"""The losses under torch.compile(fullgraph=True): traced without a graph break, forward and backward.

``backend="aot_eager"`` traces forward and backward through AOTAutograd like the default
backend but skips code generation, so the check costs seconds, not a compile.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kldiv.torch import JSDLoss, KLDivLoss

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, Loss] = {
    "kl_logits_token_mean": KLDivLoss(
        input_kind="logits", target_kind="logits", temperature=2.0, reduction="token_mean"
    ),
    "kl_reverse_probs_batchmean": KLDivLoss(
        input_kind="logits", target_kind="probs", direction="reverse"
    ),
    "jsd": JSDLoss(beta=0.3),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fullgraph_compile_matches_eager(name: str) -> None:
    torch._dynamo.reset()
    loss = LOSSES[name]
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(12, 37, generator=generator, dtype=torch.float64)
    teacher = torch.randn(12, 37, generator=generator, dtype=torch.float64)
    if name.endswith("probs_batchmean"):
        teacher = teacher.softmax(-1)
    labels = torch.randint(0, 37, (12,), generator=generator)
    labels[::4] = -100

    def step(fn: Loss) -> tuple[torch.Tensor, torch.Tensor]:
        x = student.clone().requires_grad_()
        value = fn(x, teacher, labels)
        value.backward()
        assert x.grad is not None
        return value.detach(), x.grad

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    value, grad = step(compiled)
    expected_value, expected_grad = step(loss)
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-14)
