"""The Triton kernels against float64 references, on the CPU in Triton's interpreter and on CUDA.

On the CPU every test sets ``TRITON_INTERPRET=1 KLDIV_TRITON=1``; the kernels are wrapped by
`triton.jit` at first use under the setting then in force, so no subprocess is needed. The
``cuda`` variants run the same cases compiled when a GPU is present. The interpreter runs one
program at a time in NumPy, so the shapes are small (a few rows for the large vocabularies).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

pytest.importorskip("triton")

from kldiv.torch import (
    FusedLinearJSDLoss,
    FusedLinearKLDivLoss,
    JSDLoss,
    KLDivLoss,
    _triton,
    js_div,
    kl_div,
)
from kldiv.torch._options import Divergence

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]
DIVERGENCES = [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.5), ("jsd", 0.2)]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The device, with the Triton kernels forced (run in Triton's interpreter on the CPU)."""
    monkeypatch.setenv("KLDIV_TRITON", "1")
    if request.param == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return request.param


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each call of the Triton executor ran its kernel (True) or declined (False)."""
    record: list[bool] = []
    original = _triton.triton_divergence_and_gradient

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        record.append(result is not None)
        return result

    monkeypatch.setattr(_triton, "triton_divergence_and_gradient", spy)
    return record


def _logits(shape: tuple[int, ...], seed: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=generator)).to(dtype).to(device)


def _reference_rows(
    student: torch.Tensor, teacher: torch.Tensor, name: str, beta: float, tau: float
) -> torch.Tensor:
    """Per-row divergences in float64 from torch's log_softmax, written out term by term."""
    log_q = torch.log_softmax(student.double() / tau, dim=-1)
    log_p = torch.log_softmax(teacher.double() / tau, dim=-1)
    q, p = log_q.exp(), log_p.exp()

    def terms(weight: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
        alive = weight > 0  # 0 log 0 = 0, with a zero derivative
        zero = torch.zeros((), dtype=weight.dtype, device=weight.device)
        difference = torch.where(alive, log_a, zero) - torch.where(alive, log_b, zero)
        return torch.where(alive, weight * difference, zero).sum(-1)

    if name == "forward":
        return terms(p, log_p, log_q)
    if name == "reverse":
        return terms(q, log_q, log_p)
    m = beta * p + (1 - beta) * q
    log_m = torch.log(torch.where(m > 0, m, 1.0))  # finite where m = 0, whose terms are 0
    return beta * terms(p, log_p, log_m) + (1 - beta) * terms(q, log_q, log_m)


def _reference_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    name: str,
    beta: float = 0.5,
    tau: float = 1.0,
    factor: float = 1.0,
    labels: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str,
) -> torch.Tensor:
    """The loss in float64 with torch's meaning of each reduction."""
    rows = _reference_rows(student, teacher, name, beta, tau) * factor
    keep = torch.ones(rows.shape, dtype=torch.bool) if labels is None else labels.cpu() != -100
    rows = torch.where(keep.to(rows.device), rows, 0.0)
    if weight is not None:
        rows = rows * weight.double()
    if reduction == "none":
        return rows
    total = rows.sum()
    divisors = {
        "sum": 1,
        "mean": student.numel(),
        "batchmean": student.shape[0],
        "token_mean": max(int(keep.sum()), 1),
    }
    return total / divisors[reduction]


# --- the executor itself: large vocabularies, both dtypes, mask and scales -------------------


@pytest.mark.parametrize(("vocab", "rows"), [(1271, 4), (4099, 3), (32001, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("name", "beta"), [("forward", 0.5), ("reverse", 0.5), ("jsd", 0.3)])
def test_rows_and_gradient(
    device: str, vocab: int, rows: int, dtype: torch.dtype, name: str, beta: float
) -> None:
    student = _logits((rows, vocab), 1, dtype, device)
    teacher = _logits((rows, vocab), 2, dtype, device)
    tau = 2.0 if vocab == 4099 else 1.0
    mask = torch.ones(rows, dtype=torch.bool, device=device)
    mask[1] = False
    scale = torch.linspace(0.5, 2.0, rows, device=device)
    spec = Divergence(name, "logits", "logits", tau, beta)
    result = _triton.triton_divergence_and_gradient(student, teacher, mask, scale, spec)
    assert result is not None
    values, gradient = result
    assert values.dtype == torch.float32
    assert gradient.dtype == dtype

    x = student.double().requires_grad_()
    expected = torch.where(mask, _reference_rows(x, teacher, name, beta, tau), 0.0)
    (expected @ scale.double()).backward()
    assert x.grad is not None
    # The values to float32 rounding over a row of up to 32001 terms; each gradient entry to
    # float32 rounding of q, p and the log-ratios (entries up to ~0.1), or to the final
    # bfloat16 rounding (relative 2^-8).
    torch.testing.assert_close(values.double(), expected.detach(), rtol=2e-5, atol=2e-6)
    rtol, atol = (1e-5, 1e-7) if dtype == torch.float32 else (8e-3, 1e-7)
    torch.testing.assert_close(gradient.double(), x.grad, rtol=rtol, atol=atol)
    assert torch.all(gradient[1] == 0)


def test_strided_inputs_and_gradient_buffer(device: str) -> None:
    # Columns 0, 2, 4, ... of wider tensors, a float16 teacher, a transposed gradient buffer.
    student = _logits((3, 2 * 777), 3, torch.float32, device)[:, ::2]
    teacher = _logits((3, 777), 4, torch.float16, device)
    grad = torch.empty(777, 3, device=device).t()
    spec = Divergence("reverse", "logits", "logits", 1.5)
    result = _triton.triton_divergence_and_gradient(student, teacher, None, None, spec, grad)
    assert result is not None
    assert result[1] is grad
    x = student.double().requires_grad_()
    expected = _reference_rows(x, teacher, "reverse", 0.5, 1.5)
    expected.sum().backward()
    torch.testing.assert_close(result[0].double(), expected.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.double(), x.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["forward", "reverse", "jsd"])
def test_nan_and_infinite_logits(device: str, name: str) -> None:
    student = _logits((4, 300), 5, torch.float32, device)
    teacher = _logits((4, 300), 6, torch.float32, device)
    student[0, 7] = float("nan")
    teacher[1, 3] = float("inf")
    # Row 2: -inf logits on both sides (zero probabilities, 0 log 0 = 0); row 3 plain.
    student[2, :150] = float("-inf")
    teacher[2, :150] = float("-inf")
    spec = Divergence(name, "logits", "logits")
    result = _triton.triton_divergence_and_gradient(student, teacher, None, None, spec)
    assert result is not None
    values, gradient = result
    assert values[:2].isnan().all()
    assert gradient[:2].isnan().all()
    x = student[2:].double().requires_grad_()
    expected = _reference_rows(x, teacher[2:], name, 0.5, 1.0)
    torch.testing.assert_close(values[2:].double(), expected.detach(), rtol=1e-5, atol=1e-6)
    expected.sum().backward()
    torch.testing.assert_close(gradient[2:].double(), x.grad, rtol=1e-5, atol=1e-7)


# --- through the losses: every option --------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean", "token_mean"])
@pytest.mark.parametrize(("name", "beta"), DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.filterwarnings("ignore:reduction='mean'")
def test_losses_every_option(
    device: str, calls: list[bool], reduction: str, name: str, beta: float, dtype: torch.dtype
) -> None:
    shape = (2, 3, 1271)
    student = _logits(shape, 7, dtype, device).requires_grad_()
    teacher = _logits(shape, 8, dtype, device)
    labels = torch.tensor([[5, -100, 2], [-100, 1, 1]], device=device)
    weight = torch.tensor([[0.5, 1.0, 2.0], [1.5, 0.25, 1.0]], device=device)
    tau = 2.0
    if name == "jsd":
        loss = js_div(
            student, teacher, labels=labels, beta=beta, temperature=tau, reduction=reduction
        )
        weight, factor = None, 1.0
    else:
        loss = kl_div(
            student, teacher, labels=labels, weight=weight, input_kind="logits",
            target_kind="logits", direction=name, temperature=tau,
            scale_by_temperature_squared=True, reduction=reduction,
        )  # fmt: skip
        factor = tau * tau
    assert calls == [True]
    x = student.detach().double().requires_grad_()
    expected = _reference_loss(
        x, teacher, name=name, beta=beta, tau=tau, factor=factor, labels=labels,
        weight=weight, reduction=reduction,
    )  # fmt: skip
    upstream = torch.rand(loss.shape, generator=torch.Generator().manual_seed(9)) + 0.5
    loss.backward(upstream.to(device=device, dtype=loss.dtype))
    expected.backward(upstream.double().to(device))
    value_tol = 1e-5 if dtype == torch.float32 else 4e-3  # bfloat16 loss: its own rounding
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=value_tol, atol=1e-6)
    # bfloat16: the upstream gradient, the kernel's gradient and its product with the
    # upstream are each rounded (half an ulp is up to 2^-8 relative).
    rtol = 1e-5 if dtype == torch.float32 else 1.6e-2
    assert student.grad is not None
    assert x.grad is not None
    torch.testing.assert_close(student.grad.double(), x.grad, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("upstream", [1.0, 3.0])
def test_backward_scale_without_host_read(device: str, upstream: float) -> None:
    student = _logits((5, 1000), 10, torch.float32, device).requires_grad_()
    teacher = _logits((5, 1000), 11, torch.float32, device)
    loss = JSDLoss(beta=0.4)(student, teacher)
    (loss * upstream).backward()
    x = student.detach().double().requires_grad_()
    expected = _reference_loss(x, teacher, name="jsd", beta=0.4, reduction="token_mean")
    (expected * upstream).backward()
    torch.testing.assert_close(student.grad.double(), x.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", ["forward", "reverse"])
def test_inplace_backward(device: str, calls: list[bool], name: str) -> None:
    hidden = _logits((4, 2, 2000), 12, torch.bfloat16, device).requires_grad_()
    teacher = _logits((4, 2, 2000), 13, torch.bfloat16, device)
    logits = hidden * 2  # an activation the loss may overwrite: Mul keeps no copy of it
    labels = torch.tensor([[1, 2], [-100, 3], [4, -100], [5, 6]], device=device)
    loss_fn = KLDivLoss(
        input_kind="logits", target_kind="logits", direction=name, temperature=1.5,
        reduction="token_mean", inplace_backward=True,
    )  # fmt: skip
    loss = loss_fn(logits, teacher, labels)
    assert calls == [True]
    loss.backward()
    assert hidden.grad is not None
    x = hidden.detach().double().requires_grad_()
    expected = _reference_loss(
        2 * x, teacher, name=name, tau=1.5, labels=labels, reduction="token_mean"
    )
    expected.backward()
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=4e-3, atol=1e-6)
    torch.testing.assert_close(hidden.grad.double(), x.grad, rtol=1.6e-2, atol=1e-7)
    # The logits now hold their gradient (d loss / d logits = hidden.grad / 2).
    torch.testing.assert_close(logits.detach().double() * 2, hidden.grad.double())


def test_inplace_backward_refuses_a_second_backward(device: str) -> None:
    student = _logits((3, 500), 14, torch.float32, device).requires_grad_()
    logits = student * 1.0
    teacher = _logits((3, 500), 15, torch.float32, device)
    loss = js_div(logits, teacher, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace_backward=True wrote the gradient"):
        loss.backward()


def test_inplace_backward_is_a_bool() -> None:
    with pytest.raises(TypeError, match="inplace_backward must be True or False, got 1"):
        KLDivLoss(inplace_backward=1)  # type: ignore[arg-type]


# --- fused-linear: float32 logits of the matrix product into the kernel ----------------------


@pytest.mark.parametrize("loss_name", ["kl_reverse", "jsd"])
def test_fused_linear(device: str, calls: list[bool], loss_name: str) -> None:
    generator = torch.Generator().manual_seed(16)
    hidden = torch.randn(12, 32, generator=generator).to(torch.bfloat16).to(device)
    weight = (torch.randn(1271, 32, generator=generator) / 2).to(torch.bfloat16).to(device)
    teacher_hidden = torch.randn(12, 24, generator=generator).to(torch.bfloat16).to(device)
    teacher_weight = (torch.randn(1280, 24, generator=generator) / 2).to(torch.bfloat16)
    labels = torch.tensor([1, -100, 3, 4, 5, 6, -100, 8, 9, 10, 11, 12], device=device)
    hidden.requires_grad_()
    weight.requires_grad_()
    if loss_name == "jsd":
        loss_fn: torch.nn.Module = FusedLinearJSDLoss(beta=0.3, temperature=1.5, chunk_size=5)
        name, beta = "jsd", 0.3
    else:
        loss_fn = FusedLinearKLDivLoss(direction="reverse", temperature=1.5, chunk_size=5)
        name, beta = "reverse", 0.5
    loss = loss_fn(hidden, weight, teacher_hidden, teacher_weight.to(device), labels)
    loss.backward()
    assert calls
    assert all(calls)
    h, w = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    teacher = (teacher_hidden.double() @ teacher_weight.double().to(device).t())[:, :1271]
    reduction = "token_mean" if loss_name == "jsd" else "batchmean"
    expected = _reference_loss(
        h @ w.t(), teacher, name=name, beta=beta, tau=1.5, labels=labels, reduction=reduction
    )
    expected.backward()
    # Logits are float32 products of bfloat16 factors (exact in float64 up to the float32
    # accumulation), so the value is to float32 accuracy; the gradients end in bfloat16.
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=8e-3, atol=1e-5)
    torch.testing.assert_close(hidden.grad.double(), h.grad, rtol=1.6e-2, atol=1e-4)
    torch.testing.assert_close(weight.grad.double(), w.grad, rtol=1.6e-2, atol=1e-4)


# --- dispatch: switches and errors -----------------------------------------------------------


def test_forced_without_interpreter_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_TRITON", "1")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    student = torch.randn(2, 10, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"TRITON_INTERPRET.*CUDA|CUDA.*TRITON_INTERPRET"):
        kl_div(student, torch.randn(2, 10), input_kind="logits", target_kind="logits")


def test_unknown_switch_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_TRITON", "yes")
    with pytest.raises(ValueError, match="KLDIV_TRITON='yes'"):
        js_div(torch.randn(2, 10), torch.randn(2, 10))


@pytest.mark.parametrize("flag", ["0", None])
def test_cpu_tensors_skip_triton_unless_forced(
    monkeypatch: pytest.MonkeyPatch, calls: list[bool], flag: str | None
) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if flag is None:
        monkeypatch.delenv("KLDIV_TRITON", raising=False)
    else:
        monkeypatch.setenv("KLDIV_TRITON", flag)
    value = js_div(torch.zeros(1, 2), torch.tensor([[0.0, 30.0]]))
    assert calls == []
    torch.testing.assert_close(value, _reference_loss(
        torch.zeros(1, 2), torch.tensor([[0.0, 30.0]]), name="jsd", reduction="token_mean"
    ).float())  # fmt: skip


def test_kernel_declines_what_it_does_not_compute(device: str) -> None:
    x = torch.randn(2, 10, device=device)
    log_probs = Divergence("forward", "log_probs", "probs")
    assert _triton.triton_divergence_and_gradient(x, x, None, None, log_probs) is None
    logits = Divergence("forward", "logits", "logits")
    assert _triton.triton_divergence_and_gradient(x.double(), x, None, None, logits) is None


def test_import_does_not_load_triton() -> None:
    code = "import sys, kldiv.torch; print('triton' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_host_sync_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLDIV_TRITON", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    student = _logits((8, 4099), 17, torch.bfloat16, "cuda").requires_grad_()
    teacher = _logits((8, 4099), 18, torch.bfloat16, "cuda")
    labels = torch.randint(-1, 4099, (8,), device="cuda").masked_fill_(
        torch.arange(8, device="cuda") % 3 == 0, -100
    )
    js_div(student, teacher, labels=labels)  # compile the kernels outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for loss_fn in (
            JSDLoss(beta=0.5),
            KLDivLoss(input_kind="logits", target_kind="logits", reduction="token_mean"),
        ):
            (loss_fn(student, teacher, labels) * 2).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


# --- the compiled kernels: lowered for an H100/H200 without one ------------------------------


def test_kernels_compile_for_sm90(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter runs Python; the compiler's type rules are checked by compiling.

    Triton lowers a kernel to PTX and a cubin (its own ptxas) without a GPU, so each
    divergence's kernel, as launched for bfloat16 logits with a mask and scales, and the
    backward scale kernel, must compile for sm_90.
    """
    compiler = pytest.importorskip("triton.compiler")
    backends = pytest.importorskip("triton.backends.compiler")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    from kldiv.torch import _triton_kernels

    divergence_rows, scale_unless_one = _triton_kernels.kernels(False)
    strides = {f"{side}_col_stride": 1 for side in "xtg"}
    signature = {name: "*bf16" for name in ("x_ptr", "t_ptr", "g_ptr")}
    signature |= {"out_ptr": "*fp32", "mask_ptr": "*i1", "scale_ptr": "*fp32", "vocab": "i32"}
    signature |= {f"{side}_row_stride": "i64" for side in "xtg"}
    signature |= dict.fromkeys(strides, "constexpr")
    signature |= dict.fromkeys(("inv_tau", "beta", "log_beta", "log_complement"), "fp32")
    flags = {"HAS_MASK": True, "HAS_SCALE": True, "NARROW": True, "BLOCK": 4096}
    signature |= dict.fromkeys(("DIVERGENCE", *flags), "constexpr")
    target = backends.GPUTarget("cuda", 90, 32)
    for divergence in (0, 1, 2):
        source = compiler.ASTSource(
            divergence_rows, signature, constexprs={**strides, **flags, "DIVERGENCE": divergence}
        )
        kernel = compiler.compile(source, target=target, options={"num_warps": 8})
        assert kernel.asm["cubin"]
    scale_signature = {"g_ptr": "*bf16", "factor_ptr": "*fp32", "vocab": "i32"}
    scale_signature |= {"row_stride": "i64", "col_stride": "i32"}
    scale_signature |= dict.fromkeys(("NARROW", "BLOCK"), "constexpr")
    source = compiler.ASTSource(
        scale_unless_one, scale_signature, constexprs={"NARROW": True, "BLOCK": 4096}
    )
    assert compiler.compile(source, target=target, options={"num_warps": 8}).asm["cubin"]
