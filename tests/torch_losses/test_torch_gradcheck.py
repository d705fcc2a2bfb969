"""gradcheck and gradgradcheck in float64 for every loss and option of kldiv.torch."""

from __future__ import annotations

import itertools

import pytest
import torch

from kldiv.torch import JSDLoss, KLDivLoss, js_div, kl_div

ROWS, VOCAB = 7, 4


def _side(kind: str, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(ROWS, VOCAB, generator=generator, dtype=torch.float64)
    if kind == "log_probs":
        logits = logits.log_softmax(-1)
    elif kind == "probs":
        logits = logits.softmax(-1)
    return logits.requires_grad_()


def _positions() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.tensor([3, -100, 0, 1, -100, 2, 4])
    weight = torch.linspace(0.5, 2.0, ROWS, dtype=torch.float64)
    return labels, weight


KINDS = [
    (input_kind, target_kind)
    for input_kind, target_kind in itertools.product(
        ["logits", "log_probs"], ["logits", "log_probs", "probs"]
    )
]


@pytest.mark.parametrize(("input_kind", "target_kind"), KINDS)
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_kinds_and_directions(input_kind: str, target_kind: str, direction: str) -> None:
    inputs = (_side(input_kind, 0), _side(target_kind, 1))

    def loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return kl_div(
            q, p, input_kind=input_kind, target_kind=target_kind, direction=direction, chunk_size=3
        )

    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("reduction", ["none", "sum", "token_mean", "batchmean"])
def test_kl_temperature_labels_weights(direction: str, reduction: str) -> None:
    labels, weight = _positions()
    module = KLDivLoss(
        reduction=reduction,
        input_kind="logits",
        target_kind="logits",
        direction=direction,
        temperature=1.7,
        scale_by_temperature_squared=True,
        chunk_size=4,
    )
    inputs = (_side("logits", 2), _side("logits", 3))

    def loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return module(q, p, labels, weight)

    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


def test_kl_elementwise_drop_in() -> None:
    inputs = (_side("log_probs", 4), _side("probs", 5))

    def loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return KLDivLoss(reduction="none")(q, p)

    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_jsd(beta: float) -> None:
    labels, _ = _positions()
    inputs = (_side("logits", 6), _side("logits", 7))

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return JSDLoss(beta=beta, temperature=0.8, chunk_size=2)(student, teacher, labels)

    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


def test_jsd_functional_per_position() -> None:
    inputs = (_side("logits", 8), _side("logits", 9))

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return js_div(student, teacher, beta=0.3, reduction="none")

    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


def test_retained_graph_backward_twice() -> None:
    student, teacher = _side("logits", 10), _side("logits", 11)
    value = kl_div(student, teacher, input_kind="logits", target_kind="logits")
    first = torch.autograd.grad(value, (student, teacher), retain_graph=True)
    second = torch.autograd.grad(value, (student, teacher))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0.0, atol=0.0)


@pytest.mark.parametrize("temperature", [1.0, 1.7])
@pytest.mark.parametrize("reduction", ["sum", "token_mean", "batchmean"])
def test_kl_logits_against_a_constant_teacher(temperature: float, reduction: str) -> None:
    # A teacher without gradient takes the kernel's dedicated logits path.
    labels, weight = _positions()
    teacher = _side("logits", 12).detach()

    def loss(q: torch.Tensor) -> torch.Tensor:
        return kl_div(
            q,
            teacher,
            labels=labels,
            weight=weight,
            input_kind="logits",
            target_kind="logits",
            temperature=temperature,
            reduction=reduction,
            chunk_size=3,
        )

    assert torch.autograd.gradcheck(loss, (_side("logits", 13),), fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, (_side("logits", 13),), fast_mode=True)


@pytest.mark.parametrize("reduction", ["sum", "token_mean", "batchmean"])
def test_position_weights_get_gradients(reduction: str) -> None:
    # The reduction, weights included, is folded into the kernel: d loss / d weight must survive.
    labels, weight = _positions()
    teacher = _side("logits", 14).detach()

    def loss(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return kl_div(
            q, teacher, labels=labels, weight=w, input_kind="logits", target_kind="logits",
            reduction=reduction, chunk_size=2,
        )  # fmt: skip

    inputs = (_side("logits", 15), weight.clone().requires_grad_())
    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


@pytest.mark.parametrize("upstream", [1.0, 3.0, -0.5])
def test_upstream_gradient_scales_the_stored_gradient(upstream: float) -> None:
    student, teacher = _side("logits", 16), _side("logits", 17).detach()
    reference = student.detach().clone().requires_grad_()
    value = kl_div(student, teacher, input_kind="logits", target_kind="logits")
    (value * upstream).backward()
    expected = torch.nn.functional.kl_div(
        reference.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    (expected * upstream).backward()
    assert student.grad is not None
    assert reference.grad is not None
    torch.testing.assert_close(student.grad, reference.grad, rtol=1e-12, atol=1e-15)
