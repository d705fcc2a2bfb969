"""Fused-linear losses against the unfused loss written with plain torch on the same logits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import FusedLinearJSDLoss, FusedLinearKLDivLoss, TopK

B, T, H, H_TEACHER, V, V_TEACHER, K = 2, 11, 6, 9, 37, 40, 5


def _reference_divergence(
    log_q: torch.Tensor, log_p: torch.Tensor, name: str, beta: float
) -> torch.Tensor:
    """Per-position divergence from log-probabilities, with torch's F.kl_div (KL(target‖input))."""

    def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:  # KL(a‖b)
        return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)

    if name == "forward":
        return kl(log_p, log_q)
    if name == "reverse":
        return kl(log_q, log_p)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log1p(-beta)]), dim=0)
    return beta * kl(log_p, log_m) + (1 - beta) * kl(log_q, log_m)


def _tensors(dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(11)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    labels = torch.randint(0, V, (B, T), generator=generator)
    labels[0, :3] = -100
    indices = torch.stack([torch.randperm(V, generator=generator)[:K] for _ in range(B * T)])
    top_log_probs = torch.randn(B * T, K + 1, generator=generator, dtype=torch.float64).log_softmax(
        -1
    )
    return {
        "hidden": randn(B, T, H).requires_grad_(),
        "weight": randn(V, H).requires_grad_(),
        "bias": randn(V).requires_grad_(),
        "teacher_hidden": randn(B, T, H_TEACHER),
        "teacher_weight": randn(V_TEACHER, H_TEACHER),
        "teacher_bias": randn(V_TEACHER),
        "labels": labels,
        "indices": indices.reshape(B, T, K),
        "top_log_probs": top_log_probs[:, :K].reshape(B, T, K).to(dtype),
    }


def _student_logits(x: dict[str, torch.Tensor]) -> torch.Tensor:
    return x["hidden"] @ x["weight"].T + x["bias"]


def _coarse(
    log_q: torch.Tensor, indices: torch.Tensor, log_p_top: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    top = log_q.gather(-1, indices)
    student_tail = torch.log1p(-top.exp().sum(-1, keepdim=True))
    teacher_tail = torch.log1p(-log_p_top.exp().sum(-1, keepdim=True))
    return torch.cat([top, student_tail], -1), torch.cat([log_p_top, teacher_tail], -1)


def _reference_loss(
    x: dict[str, torch.Tensor], teacher: str, name: str, beta: float, tau: float
) -> torch.Tensor:
    log_q = F.log_softmax(_student_logits(x) / tau, dim=-1)
    if teacher == "topk":
        log_q, log_p = _coarse(log_q, x["indices"], x["top_log_probs"].double())
    else:
        teacher_logits = x["teacher_hidden"] @ x["teacher_weight"].T + x["teacher_bias"]
        log_p = F.log_softmax(teacher_logits[..., :V] / tau, dim=-1)
    per_position = _reference_divergence(log_q, log_p, name, beta)
    mask = x["labels"] != -100
    return per_position[mask].sum() / mask.sum()


def _ours(module: torch.nn.Module, x: dict[str, torch.Tensor], teacher: str) -> torch.Tensor:
    kwargs: dict[str, object] = {"student_bias": x["bias"]}
    args: list[object] = [x["hidden"], x["weight"]]
    if teacher == "linear":
        args += [x["teacher_hidden"], x["teacher_weight"]]
        kwargs["teacher_bias"] = x["teacher_bias"]
    elif teacher == "logits":
        args += [None, None]
        kwargs["teacher_logits"] = x["teacher_hidden"] @ x["teacher_weight"].T + x["teacher_bias"]
    else:
        args += [None, None]
        kwargs["teacher_topk"] = TopK(x["indices"], x["top_log_probs"])
    return module(*args, x["labels"], **kwargs)


CASES = [
    ("forward", 0.5, "FusedLinearKLDivLoss"),
    ("reverse", 0.5, "FusedLinearKLDivLoss"),
    ("jsd", 0.3, "FusedLinearJSDLoss"),
    ("forward", 0.0, "FusedLinearJSDLoss"),
    ("reverse", 1.0, "FusedLinearJSDLoss"),
]


def _module(kind: str, name: str, beta: float, tau: float, chunk_size: int) -> torch.nn.Module:
    if kind == "FusedLinearKLDivLoss":
        return FusedLinearKLDivLoss(
            direction=name, temperature=tau, reduction="token_mean", chunk_size=chunk_size
        )
    return FusedLinearJSDLoss(beta=beta, temperature=tau, chunk_size=chunk_size)


@pytest.mark.parametrize(("name", "beta", "kind"), CASES)
@pytest.mark.parametrize("teacher", ["linear", "logits", "topk"])
@pytest.mark.parametrize("chunk_size", [4, 64])
def test_matches_unfused_values_and_gradients(
    name: str, beta: float, kind: str, teacher: str, chunk_size: int
) -> None:
    tau = 1.0 if teacher == "topk" else 1.5
    ours_inputs, ref_inputs = _tensors(), _tensors()
    value = _ours(_module(kind, name, beta, tau, chunk_size), ours_inputs, teacher)
    expected = _reference_loss(ref_inputs, teacher, name, beta, tau)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    (value * 0.7).backward()
    (expected * 0.7).backward()
    for key in ("hidden", "weight", "bias"):
        grad, expected_grad = ours_inputs[key].grad, ref_inputs[key].grad
        assert grad is not None
        assert expected_grad is not None
        torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("teacher", ["linear", "topk"])
def test_gradcheck_and_gradgradcheck(teacher: str) -> None:
    x = _tensors()
    module = FusedLinearKLDivLoss(reduction="token_mean", chunk_size=5)

    def loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return _ours(module, {**x, "hidden": hidden, "weight": weight, "bias": bias}, teacher)

    inputs = (x["hidden"], x["weight"], x["bias"])
    assert torch.autograd.gradcheck(loss, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(loss, inputs, fast_mode=True)


def test_float32_against_float64_reference_with_batchmean_and_num_items() -> None:
    x32, x64 = _tensors(torch.float32), _tensors()
    module = FusedLinearKLDivLoss(
        reduction="batchmean", scale_by_temperature_squared=True, temperature=2.0
    )
    value = module(
        x32["hidden"], x32["weight"], x32["teacher_hidden"], x32["teacher_weight"], x32["labels"],
        student_bias=x32["bias"], teacher_bias=x32["teacher_bias"], num_items_in_batch=7,
    )  # fmt: skip
    log_q = F.log_softmax(_student_logits(x64) / 2.0, dim=-1)
    teacher_logits = x64["teacher_hidden"] @ x64["teacher_weight"].T + x64["teacher_bias"]
    per_position = _reference_divergence(
        log_q, F.log_softmax(teacher_logits[..., :V] / 2.0, -1), "forward", 0.5
    )
    expected = 4.0 * per_position[x64["labels"] != -100].sum() / 7
    assert value.dtype == torch.float32
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    value.backward()
    expected.backward()
    assert x32["weight"].grad is not None
    assert x64["weight"].grad is not None
    assert x32["weight"].grad.dtype == torch.float32
    torch.testing.assert_close(
        x32["weight"].grad.double(), x64["weight"].grad, rtol=1e-4, atol=1e-6
    )


def test_bfloat16_student_accumulates_weight_gradient_in_float32() -> None:
    x = _tensors(torch.bfloat16)
    ref = _tensors()
    for key in ("hidden", "weight", "bias"):
        # Start the float64 reference from the same (bfloat16-rounded) values.
        ref[key] = x[key].detach().double().requires_grad_()
    value = _ours(FusedLinearKLDivLoss(reduction="token_mean"), x, "logits")
    expected = _reference_loss(ref, "logits", "forward", 0.5, 1.0)
    assert value.dtype == torch.bfloat16
    # Logits are computed in bfloat16 (8-bit mantissa) before the float32 kernel: about 1%.
    torch.testing.assert_close(value.double(), expected, rtol=3e-2, atol=3e-2)
    value.backward()
    expected.backward()
    assert x["weight"].grad is not None
    assert ref["weight"].grad is not None
    assert torch.isfinite(x["weight"].grad.float()).all()
    torch.testing.assert_close(x["weight"].grad.double(), ref["weight"].grad, rtol=5e-2, atol=2e-2)
