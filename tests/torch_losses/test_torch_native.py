"""The compiled KL(P‖Q)-from-logits kernel against the torch path and float64 references.

Every case runs the loss twice, once on the compiled kernel and once with ``KLDIV_NATIVE=0``
(the torch block kernels), and compares both with ``log_softmax`` + ``F.kl_div`` in float64.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from kldiv import _native
from kldiv.torch import KLDivLoss, kl_div
from kldiv.torch._chunked import _native_divergence_and_gradient
from kldiv.torch._options import Divergence

pytestmark = pytest.mark.skipif(_native.load("losses") is None, reason="compiled kernels not built")

REDUCTIONS = ("none", "sum", "mean", "batchmean", "token_mean")
# float32 against float64: per-row sums of up to 1271 terms and a softmax of logits ~3·N(0, 1).
FLOAT32 = {"rtol": 2e-5, "atol": 1e-6}


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _logits(
    shape: tuple[int, ...], *, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).mul_(3).to(dtype)


def _reference(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    reduction: str,
    temperature: float = 1.0,
    labels: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    squared: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and student gradient from log_softmax + F.kl_div in float64."""
    x = student.detach().double().requires_grad_()
    log_q = F.log_softmax(x / temperature, dim=-1)
    log_p = F.log_softmax(teacher.double() / temperature, dim=-1)
    rows = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)
    keep = torch.ones_like(rows, dtype=torch.bool) if labels is None else labels != -100
    rows = torch.where(keep, rows, 0.0)
    if weight is not None:
        rows = rows * weight.double()
    if squared:
        rows = rows * temperature**2
    if reduction == "none":
        value = rows
    elif reduction == "sum":
        value = rows.sum()
    elif reduction == "mean":
        value = rows.sum() / student.numel()
    elif reduction == "batchmean":
        value = rows.sum() / student.shape[0]
    else:
        value = rows.sum() / keep.sum().clamp_min(1)
    value.backward(torch.ones_like(value))
    assert x.grad is not None
    return value.detach(), x.grad


def _ours(
    student: torch.Tensor,
    teacher: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    *,
    native: bool,
    upstream: float = 1.0,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    monkeypatch.setenv("KLDIV_NATIVE", "1" if native else "0")
    x = student.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 'mean' warning
        value = kl_div(x, teacher, input_kind="logits", target_kind="logits", **options)  # type: ignore[arg-type]
    value.backward(torch.full_like(value, upstream))
    assert x.grad is not None
    return value.detach(), x.grad


def _both(
    student: torch.Tensor, teacher: torch.Tensor, monkeypatch: pytest.MonkeyPatch, **options: object
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return (
        _ours(student, teacher, monkeypatch, native=True, **options),
        _ours(student, teacher, monkeypatch, native=False, **options),
    )


def _close(
    ours: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    **tol: float,
) -> None:
    torch.testing.assert_close(ours[0].double(), reference[0].double(), **tol)
    torch.testing.assert_close(ours[1].double(), reference[1].double(), **tol)


def test_native_kernel_applies_only_where_valid() -> None:
    spec = Divergence("forward", "logits", "logits", 1.0)
    x, t = _logits((4, 33), seed=0), _logits((4, 33), seed=1)
    assert _native_divergence_and_gradient(x, t, None, None, spec) is not None
    assert _native_divergence_and_gradient(x.T.contiguous().T, t, None, None, spec) is None
    assert _native_divergence_and_gradient(x.double(), t.double(), None, None, spec) is None
    assert _native_divergence_and_gradient(x, t.half(), None, None, spec) is None
    for other in (
        Divergence("reverse", "logits", "logits", 1.0),
        Divergence("forward", "logits", "log_probs", 1.0),
    ):
        assert _native_divergence_and_gradient(x, t, None, None, other) is None


def test_native_kernel_is_off_with_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    spec = Divergence("forward", "logits", "logits", 1.0)
    x, t = _logits((4, 33), seed=0), _logits((4, 33), seed=1)
    assert _native_divergence_and_gradient(x, t, None, None, spec) is None


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 37), (5, 16), (3, 7, 100), (2, 3, 1271)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_matches_torch_and_fallback(
    reduction: str, shape: tuple[int, ...], temperature: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits(shape, seed=1), _logits(shape, seed=2)
    reference = _reference(student, teacher, reduction=reduction, temperature=temperature)
    native, fallback = _both(
        student, teacher, monkeypatch, reduction=reduction, temperature=temperature
    )
    _close(native, reference, **FLOAT32)
    _close(fallback, reference, **FLOAT32)
    _close(native, fallback, **FLOAT32)


def test_odd_large_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (41, 401, 1271)
    student, teacher = _logits(shape, seed=3), _logits(shape, seed=4)
    reference = _reference(student, teacher, reduction="batchmean")
    native, fallback = _both(student, teacher, monkeypatch, reduction="batchmean")
    # The value to torch's 1e-6; a gradient entry q − p (times 1/41) to float32 rounding of q and p.
    for ours in (native, fallback):
        torch.testing.assert_close(ours[0].double(), reference[0], rtol=1e-6, atol=0.0)
        torch.testing.assert_close(ours[1].double(), reference[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_labels_weights_and_temperature(reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (6, 9, 203)
    student, teacher = _logits(shape, seed=5), _logits(shape, seed=6)
    generator = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 203, shape[:-1], generator=generator)
    labels[::2, ::3] = -100
    weight = torch.rand(shape[:-1], generator=generator) + 0.25
    options = {"temperature": 1.7, "labels": labels, "weight": weight}
    reference = _reference(student, teacher, reduction=reduction, squared=True, **options)  # type: ignore[arg-type]
    native, fallback = _both(
        student, teacher, monkeypatch, reduction=reduction, scale_by_temperature_squared=True,
        **options,
    )  # fmt: skip
    _close(native, reference, **FLOAT32)
    _close(native, fallback, **FLOAT32)


@pytest.mark.parametrize("upstream", [1.0, -0.5, 3.25])
def test_upstream_gradient_scales_the_gradient(
    upstream: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits((8, 300), seed=8), _logits((8, 300), seed=9)
    _, reference = _reference(student, teacher, reduction="batchmean")
    (_, native), (_, fallback) = (
        _ours(student, teacher, monkeypatch, native=flag, upstream=upstream)
        for flag in (True, False)
    )
    torch.testing.assert_close(native.double(), reference * upstream, **FLOAT32)
    torch.testing.assert_close(native, fallback, **FLOAT32)


def test_per_position_upstream_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((8, 300), seed=10), _logits((8, 300), seed=11)
    upstream = torch.linspace(-1.0, 2.0, 8)
    monkeypatch.setenv("KLDIV_NATIVE", "1")
    x = student.clone().requires_grad_()
    kl_div(x, teacher, input_kind="logits", target_kind="logits", reduction="none").backward(
        upstream
    )
    ref_x = student.double().requires_grad_()
    log_q, log_p = F.log_softmax(ref_x, -1), F.log_softmax(teacher.double(), -1)
    F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).backward(upstream.double())
    assert x.grad is not None
    assert ref_x.grad is not None
    torch.testing.assert_close(x.grad.double(), ref_x.grad, **FLOAT32)


def test_masked_vocabulary_and_student_without_teacher_mass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    student, teacher = _logits((4, 50), seed=12), _logits((4, 50), seed=13)
    student[:, 40:] = -math.inf
    teacher[:, 40:] = -math.inf  # a vocabulary masked on both sides: finite, as if cut to 40
    reference = _reference(student[:, :40], teacher[:, :40], reduction="none")
    native, fallback = _both(student, teacher, monkeypatch, reduction="none")
    for ours in (native, fallback):
        torch.testing.assert_close(ours[0].double(), reference[0], **FLOAT32)
        torch.testing.assert_close(ours[1][:, :40].double(), reference[1], **FLOAT32)
        assert torch.all(ours[1][:, 40:] == 0)
    student[1, 3] = -math.inf  # the teacher has mass where the student has none
    value, grad = _ours(student, teacher, monkeypatch, native=True, reduction="none")
    assert value[1] == math.inf
    assert torch.isfinite(value[[0, 2, 3]]).all()
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_huge_logits(magnitude: float, monkeypatch: pytest.MonkeyPatch) -> None:
    student = _logits((6, 257), seed=14).add_(magnitude)
    teacher = _logits((6, 257), seed=15).add_(magnitude)
    student[0, :] = 0.0
    student[0, 5] = magnitude  # one dominant logit against a spread teacher
    reference = _reference(student, teacher, reduction="none")
    native, fallback = _both(student, teacher, monkeypatch, reduction="none")
    # Logits of 1e4 carry float32 rounding of 1e-3 each, which the log-ratios inherit.
    _close(native, reference, rtol=1e-3, atol=2e-3)
    _close(native, fallback, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("reduction", ["sum", "batchmean", "token_mean"])
def test_all_positions_ignored(reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((5, 64), seed=16), _logits((5, 64), seed=17)
    student[2, 7] = math.nan  # ignored rows contribute nothing, not even their NaN
    labels = torch.full((5,), -100)
    for native in (True, False):
        value, grad = _ours(
            student, teacher, monkeypatch, native=native, reduction=reduction, labels=labels
        )
        assert value.item() == 0.0
        assert torch.all(grad == 0)


@pytest.mark.parametrize("side", ["student", "teacher"])
def test_nan_rows_stay_in_their_row(side: str, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((5, 64), seed=18), _logits((5, 64), seed=19)
    (student if side == "student" else teacher)[3, 10] = math.nan
    native, fallback = _both(student, teacher, monkeypatch, reduction="none")
    for value, grad in (native, fallback):
        assert torch.isnan(value[3])
        assert torch.isfinite(value[[0, 1, 2, 4]]).all()
        assert torch.isnan(grad[3]).all()
        assert torch.isfinite(grad[[0, 1, 2, 4]]).all()
    reference = _reference(student[[0, 1, 2, 4]], teacher[[0, 1, 2, 4]], reduction="none")
    _close((native[0][[0, 1, 2, 4]], native[1][[0, 1, 2, 4]]), reference, **FLOAT32)
    value, _ = _ours(student, teacher, monkeypatch, native=True, reduction="batchmean")
    assert torch.isnan(value)


# Inputs rounded to the half type are the reference's inputs too; the gradient is rounded once
# to the half type (its ulp is 2^-11 relative for float16, 2^-8 for bfloat16).
HALF_TOLERANCES = {
    torch.float16: {"rtol": 1e-3, "atol": 1e-6},
    torch.bfloat16: {"rtol": 8e-3, "atol": 1e-5},
}


@pytest.mark.parametrize("dtype", list(HALF_TOLERANCES))
@pytest.mark.parametrize("reduction", ["none", "batchmean"])
def test_half_precision(
    dtype: torch.dtype, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = (
        _logits((7, 333), seed=20, dtype=dtype),
        _logits((7, 333), seed=21, dtype=dtype),
    )
    value_ref, grad_ref = _reference(student, teacher, reduction=reduction, temperature=1.5)
    native, fallback = _both(student, teacher, monkeypatch, reduction=reduction, temperature=1.5)
    for value, grad in (native, fallback):
        assert value.dtype == dtype
        assert grad.dtype == dtype
        torch.testing.assert_close(
            grad.double(), grad_ref.to(dtype).double(), **HALF_TOLERANCES[dtype]
        )
    # The value is rounded to the half type at the end only.
    torch.testing.assert_close(
        native[0].double(), value_ref.to(dtype).double(), **HALF_TOLERANCES[dtype]
    )


def test_half_precision_special_values(monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = (
        _logits((3, 40), seed=22, dtype=torch.float16),
        _logits((3, 40), seed=23, dtype=torch.float16),
    )
    student[0, :20] = -math.inf
    teacher[0, :20] = -math.inf
    teacher[2, 4] = math.nan
    native, fallback = _both(student, teacher, monkeypatch, reduction="none")
    torch.testing.assert_close(native[0], fallback[0], equal_nan=True, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(native[1], fallback[1], equal_nan=True, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.usefixtures("threads")
def test_thread_count_does_not_change_the_result(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits((13, 517), seed=24), _logits((13, 517), seed=25)
    labels = torch.arange(13)
    labels[4] = -100
    torch.set_num_threads(1)
    single = _ours(student, teacher, monkeypatch, native=True, reduction="none", labels=labels)
    torch.set_num_threads(count)
    several = _ours(student, teacher, monkeypatch, native=True, reduction="none", labels=labels)
    # Every row is computed by one thread in the same order: the results are bitwise equal.
    assert torch.equal(single[0], several[0])
    assert torch.equal(single[1], several[1])
    _close(several, _reference(student, teacher, reduction="none", labels=labels), **FLOAT32)


def test_retained_graph_and_create_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "1")
    student, teacher = _logits((4, 70), seed=26), _logits((4, 70), seed=27)
    _, reference = _reference(student, teacher, reduction="batchmean")
    x = student.clone().requires_grad_()
    value = KLDivLoss(input_kind="logits", target_kind="logits")(x, teacher)
    (first,) = torch.autograd.grad(value, x, retain_graph=True)
    (second,) = torch.autograd.grad(value, x, retain_graph=True)
    (differentiable,) = torch.autograd.grad(value, x, create_graph=True)
    for grad in (first, second, differentiable):
        torch.testing.assert_close(grad.double(), reference, **FLOAT32)
    assert differentiable.requires_grad


def test_compiled_loss_takes_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "1")
    torch._dynamo.reset()
    loss = KLDivLoss(input_kind="logits", target_kind="logits", temperature=2.0)
    student, teacher = _logits((6, 45), seed=28), _logits((6, 45), seed=29)
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x = student.clone().requires_grad_()
    value = compiled(x, teacher)
    value.backward()
    assert x.grad is not None
    reference = _reference(student, teacher, reduction="batchmean", temperature=2.0)
    _close((value.detach(), x.grad), reference, **FLOAT32)
