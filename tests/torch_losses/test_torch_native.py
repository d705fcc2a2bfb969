"""The compiled divergence-from-logits kernel against the torch path and float64 references.

Every case runs the loss twice, once on the compiled kernel and once with ``KLDIV_NATIVE=0``
(the torch block kernels), and compares both with ``log_softmax`` + ``F.kl_div`` (+
``logsumexp`` for the JSD's mixture) in float64, for each divergence the kernel computes: the
forward KL, the reverse KL and the generalized JSD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from kldiv import _native
from kldiv.torch import (
    FusedLinearJSDLoss,
    FusedLinearKLDivLoss,
    JSDLoss,
    KLDivLoss,
    js_div,
    kl_div,
)
from kldiv.torch._chunked import native_divergence_and_gradient
from kldiv.torch._options import Divergence

pytestmark = pytest.mark.skipif(_native.load("losses") is None, reason="compiled kernels not built")

REDUCTIONS = ("none", "sum", "mean", "batchmean", "token_mean")
# float32 against float64: per-row sums of up to 1271 terms and a softmax of logits ~3·N(0, 1).
FLOAT32 = {"rtol": 2e-5, "atol": 1e-6}


@dataclass(frozen=True)
class Case:
    """A divergence the kernel computes: its spec name and, for the JSD, β."""

    name: str
    beta: float = 0.5

    def __str__(self) -> str:
        return self.name if self.name != "jsd" else f"jsd-{self.beta}"

    @property
    def spec(self) -> Divergence:
        return Divergence(self.name, "logits", "logits", 1.0, self.beta)

    def loss(self, student: torch.Tensor, teacher: torch.Tensor, **options: Any) -> torch.Tensor:
        """The public loss of this divergence (``weight`` and τ² are KLDivLoss options only)."""
        if self.name == "jsd":
            return js_div(student, teacher, beta=self.beta, **options)
        return kl_div(
            student, teacher, input_kind="logits", target_kind="logits", direction=self.name,
            **options,
        )  # fmt: skip

    def module(self, **options: Any) -> torch.nn.Module:
        if self.name == "jsd":
            return JSDLoss(beta=self.beta, **options)
        return KLDivLoss(input_kind="logits", target_kind="logits", direction=self.name, **options)

    def rows(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        """The divergence of each row from float64 log-probabilities, with torch's own ops."""

        def kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:  # KL(A‖B)
            # F.kl_div's a·(log a − log b), with 0 where a = 0 (where F.kl_div gives NaN) and
            # no NaN in the gradient from there.
            alive = log_a > -math.inf
            safe_a, safe_b = torch.where(alive, log_a, 0.0), torch.where(alive, log_b, 0.0)
            terms = F.kl_div(safe_b, safe_a, log_target=True, reduction="none")
            return torch.where(alive, terms, 0.0).sum(-1)

        if self.name == "forward":
            return kl(log_p, log_q)
        if self.name == "reverse":
            return kl(log_q, log_p)
        mixture = [log_p + math.log(self.beta), log_q + math.log1p(-self.beta)]
        log_m = torch.logsumexp(torch.stack(mixture), dim=0)
        return self.beta * kl(log_p, log_m) + (1 - self.beta) * kl(log_q, log_m)


FORWARD, REVERSE, JSD = Case("forward"), Case("reverse"), Case("jsd", 0.5)
CODES = {"forward": 0, "reverse": 1, "jsd": 2}  # the kernel's divergence codes
CASES = [FORWARD, REVERSE, JSD]


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
    case: Case = FORWARD,
    *,
    reduction: str,
    temperature: float = 1.0,
    labels: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    squared: bool = False,
    upstream: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and student gradient from log_softmax + F.kl_div in float64."""
    x = student.detach().double().requires_grad_()
    log_q = F.log_softmax(x / temperature, dim=-1)
    log_p = F.log_softmax(teacher.double() / temperature, dim=-1)
    rows = case.rows(log_q, log_p)
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
    value.backward(torch.ones_like(value) * upstream)
    assert x.grad is not None
    return value.detach(), x.grad


def _ours(
    student: torch.Tensor,
    teacher: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    case: Case = FORWARD,
    *,
    native: bool,
    upstream: float | torch.Tensor = 1.0,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    monkeypatch.setenv("KLDIV_NATIVE", "1" if native else "0")
    x = student.detach().clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 'mean' warning
        value = case.loss(x, teacher, **options)
    value.backward(torch.ones_like(value) * upstream)
    assert x.grad is not None
    return value.detach(), x.grad


def _both(
    student: torch.Tensor,
    teacher: torch.Tensor,
    monkeypatch: pytest.MonkeyPatch,
    case: Case = FORWARD,
    **options: Any,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return (
        _ours(student, teacher, monkeypatch, case, native=True, **options),
        _ours(student, teacher, monkeypatch, case, native=False, **options),
    )


def _close(
    ours: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
    **tol: float,
) -> None:
    torch.testing.assert_close(ours[0].double(), reference[0].double(), **tol)
    torch.testing.assert_close(ours[1].double(), reference[1].double(), **tol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_native_kernel_applies_only_where_valid(case: Case) -> None:
    spec = case.spec
    x, t = _logits((4, 33), seed=0), _logits((4, 33), seed=1)
    assert native_divergence_and_gradient(x, t, None, None, spec) is not None
    assert native_divergence_and_gradient(x.T.contiguous().T, t, None, None, spec) is None
    assert native_divergence_and_gradient(x.double(), t.double(), None, None, spec) is None
    assert native_divergence_and_gradient(x, t.half(), None, None, spec) is None
    for other in (
        Divergence(case.name, "logits", "log_probs", 1.0, case.beta),
        Divergence(case.name, "log_probs", "logits", 1.0, case.beta),
    ):
        assert native_divergence_and_gradient(x, t, None, None, other) is None


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_jsd_spec_outside_the_open_interval_takes_the_torch_path(beta: float) -> None:
    spec = Divergence("jsd", "logits", "logits", 1.0, beta)
    x, t = _logits((4, 33), seed=0), _logits((4, 33), seed=1)
    assert native_divergence_and_gradient(x, t, None, None, spec) is None


def test_kernel_rejects_an_unknown_divergence_or_beta() -> None:
    kernels = _native.load("losses")
    assert kernels is not None
    x, t = _logits((2, 8), seed=0), _logits((2, 8), seed=1)
    grad, out = torch.empty_like(x), torch.empty(2)
    pointers = (x.data_ptr(), t.data_ptr(), grad.data_ptr(), out.data_ptr(), 0, 0, 2, 8, 0)
    for divergence, beta in ((3, 0.5), (-1, 0.5), (2, 0.0), (2, 1.0), (2, math.nan)):
        with pytest.raises(ValueError, match=r"divergence 0 \(forward KL\), 1 \(reverse KL\)"):
            kernels.logits_divergence(divergence, beta, *pointers, 1.0, 1, False)


def test_native_kernel_is_off_with_the_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    spec = Divergence("forward", "logits", "logits", 1.0)
    x, t = _logits((4, 33), seed=0), _logits((4, 33), seed=1)
    assert native_divergence_and_gradient(x, t, None, None, spec) is None


def _spy_on_kernel(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    """Record the (divergence, beta) of every call of the compiled kernel."""
    kernels = _native.load("losses")
    assert kernels is not None
    calls: list[tuple[int, float]] = []
    real: Callable[..., None] = kernels.logits_divergence

    def spy(divergence: int, beta: float, *rest: object) -> None:
        calls.append((divergence, beta))
        real(divergence, beta, *rest)

    monkeypatch.setattr(kernels, "logits_divergence", spy)
    return calls


@pytest.mark.parametrize(("case", "code"), [(FORWARD, 0), (REVERSE, 1), (JSD, 2)], ids=str)
def test_losses_call_the_kernel_with_their_divergence(
    case: Case, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _spy_on_kernel(monkeypatch)
    student, teacher = _logits((3, 5, 40), seed=1), _logits((3, 5, 40), seed=2)
    native = _ours(student, teacher, monkeypatch, case, native=True, reduction="sum")
    assert calls == [(code, case.beta)]
    fallback = _ours(student, teacher, monkeypatch, case, native=False, reduction="sum")
    assert len(calls) == 1
    _close(native, fallback, **FLOAT32)


@pytest.mark.parametrize(("beta", "direction", "code"), [(0.0, "forward", 0), (1.0, "reverse", 1)])
def test_jsd_end_points_are_the_two_kl_divergences_in_the_kernel_too(
    beta: float, direction: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in the torch path (and TRL), β = 0 is KL(T‖S) and β = 1 is KL(S‖T), not the limits.
    calls = _spy_on_kernel(monkeypatch)
    student, teacher = _logits((6, 70), seed=3), _logits((6, 70), seed=4)
    options = {"reduction": "batchmean", "temperature": 1.5}
    jsd = _ours(student, teacher, monkeypatch, Case("jsd", beta), native=True, **options)
    kl = _ours(student, teacher, monkeypatch, Case(direction), native=True, **options)
    assert [divergence for divergence, _ in calls] == [code, code]
    assert torch.equal(jsd[0], kl[0])
    assert torch.equal(jsd[1], kl[1])
    fallback = _ours(student, teacher, monkeypatch, Case("jsd", beta), native=False, **options)
    _close(jsd, fallback, **FLOAT32)
    _close(jsd, _reference(student, teacher, Case(direction), **options), **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 37), (5, 16), (3, 7, 100), (2, 3, 1271)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_matches_torch_and_fallback(
    case: Case,
    reduction: str,
    shape: tuple[int, ...],
    temperature: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    student, teacher = _logits(shape, seed=1), _logits(shape, seed=2)
    reference = _reference(student, teacher, case, reduction=reduction, temperature=temperature)
    native, fallback = _both(
        student, teacher, monkeypatch, case, reduction=reduction, temperature=temperature
    )
    _close(native, reference, **FLOAT32)
    _close(fallback, reference, **FLOAT32)
    _close(native, fallback, **FLOAT32)


@pytest.mark.parametrize("beta", [0.01, 0.2, 0.8, 0.99])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_jsd_over_beta(beta: float, temperature: float, monkeypatch: pytest.MonkeyPatch) -> None:
    case = Case("jsd", beta)
    student, teacher = _logits((4, 6, 300), seed=5), _logits((4, 6, 300), seed=6)
    options = {"reduction": "none", "temperature": temperature}
    reference = _reference(student, teacher, case, **options)
    native, fallback = _both(student, teacher, monkeypatch, case, **options)
    _close(native, reference, **FLOAT32)
    _close(native, fallback, **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_odd_large_shape(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (41, 401, 1271)
    student, teacher = _logits(shape, seed=3), _logits(shape, seed=4)
    reference = _reference(student, teacher, case, reduction="batchmean")
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="batchmean")
    # The value to torch's 1e-6; a gradient entry (times 1/41) to float32 rounding of q and p,
    # and for the reverse KL's q (log q − log p − D) also of log-ratios up to about 30 in size,
    # whose float32 ulp is 1.9e-6: q · 8 ulp / 41 ≈ 4e-7 for q near 1. The torch path's error
    # depends on which of its vectorized exp/log the CPU runs (3.0e-7 with AVX-512, 4.0e-7 on
    # an AVX2-only CPU), so the bound is 12 ulp: 6e-7 against entries up to 0.085.
    atol = 6e-7 if case.name == "reverse" else 1e-8
    for ours in (native, fallback):
        torch.testing.assert_close(ours[0].double(), reference[0], rtol=1e-6, atol=0.0)
        torch.testing.assert_close(ours[1].double(), reference[1], rtol=1e-6, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_labels_weights_and_temperature(
    case: Case, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shape = (6, 9, 203)
    student, teacher = _logits(shape, seed=5), _logits(shape, seed=6)
    generator = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 203, shape[:-1], generator=generator)
    labels[::2, ::3] = -100
    weight = torch.rand(shape[:-1], generator=generator) + 0.25
    options: dict[str, Any] = {"temperature": 1.7, "labels": labels}
    extra: dict[str, Any] = {}
    if case.name != "jsd":  # position weights and τ² are options of KLDivLoss
        options["weight"] = weight
        extra["scale_by_temperature_squared"] = True
    reference = _reference(
        student, teacher, case, reduction=reduction, squared=bool(extra), **options
    )
    native, fallback = _both(
        student, teacher, monkeypatch, case, reduction=reduction, **options, **extra
    )
    _close(native, reference, **FLOAT32)
    _close(native, fallback, **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("upstream", [1.0, -0.5, 3.25])
def test_upstream_gradient_scales_the_gradient(
    case: Case, upstream: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits((8, 300), seed=8), _logits((8, 300), seed=9)
    _, reference = _reference(student, teacher, case, reduction="batchmean")
    (_, native), (_, fallback) = (
        _ours(student, teacher, monkeypatch, case, native=flag, upstream=upstream,
              reduction="batchmean")
        for flag in (True, False)
    )  # fmt: skip
    torch.testing.assert_close(native.double(), reference * upstream, **FLOAT32)
    torch.testing.assert_close(native, fallback, **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_per_position_upstream_gradient(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((8, 300), seed=10), _logits((8, 300), seed=11)
    upstream = torch.linspace(-1.0, 2.0, 8)
    ours = _ours(student, teacher, monkeypatch, case, native=True, upstream=upstream,
                 reduction="none")  # fmt: skip
    reference = _reference(student, teacher, case, reduction="none", upstream=upstream.double())
    _close(ours, reference, **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_masked_vocabulary(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((4, 50), seed=12), _logits((4, 50), seed=13)
    student[:, 40:] = -math.inf
    teacher[:, 40:] = -math.inf  # a vocabulary masked on both sides: finite, as if cut to 40
    reference = _reference(student[:, :40], teacher[:, :40], case, reduction="none")
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="none")
    for ours in (native, fallback):
        torch.testing.assert_close(ours[0].double(), reference[0], **FLOAT32)
        torch.testing.assert_close(ours[1][:, :40].double(), reference[1], **FLOAT32)
        assert torch.all(ours[1][:, 40:] == 0)


# Which side's zero probability makes the divergence infinite: where the other has mass.
INFINITE_WITH = {"forward": "student", "reverse": "teacher", "jsd": None}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("side", ["student", "teacher"])
def test_zero_probability_where_the_other_side_has_mass(
    case: Case, side: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits((4, 50), seed=12), _logits((4, 50), seed=13)
    (student if side == "student" else teacher)[1, 3] = -math.inf
    reference = _reference(student, teacher, case, reduction="none")
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="none")
    if INFINITE_WITH[case.name] == side:
        assert native[0][1] == math.inf
        finite = [0, 2, 3]
        _close((native[0][finite], native[1][finite]),
               (reference[0][finite], reference[1][finite]), **FLOAT32)  # fmt: skip
        if case.name == "forward":  # its gradient q - p stays finite
            assert torch.isfinite(native[1]).all()
    else:  # the other entries' log-ratios, and the JSD's (its mixture has mass), are finite
        assert torch.isfinite(native[0]).all()
        assert torch.isfinite(native[1]).all()
        _close(native, reference, **FLOAT32)
    # Infinite values, and the NaN or infinite gradients of the reverse KL, are the torch path's.
    torch.testing.assert_close(native[0], fallback[0], **FLOAT32)
    torch.testing.assert_close(native[1], fallback[1], equal_nan=True, **FLOAT32)


@pytest.mark.parametrize("beta", [0.5, 0.1, 0.9])
def test_jsd_of_disjoint_supports(beta: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # P(M) = β on P's support, so the JSD is −β log β − (1−β) log(1−β), whatever the logits,
    # and its gradient with respect to the student vanishes.
    student, teacher = _logits((3, 64), seed=30), _logits((3, 64), seed=31)
    student[:, ::2] = -math.inf
    teacher[:, 1::2] = -math.inf
    native, fallback = _both(student, teacher, monkeypatch, Case("jsd", beta), reduction="none")
    expected = -beta * math.log(beta) - (1 - beta) * math.log1p(-beta)
    for value, grad in (native, fallback):
        torch.testing.assert_close(value.double(), torch.full((3,), expected, dtype=torch.float64))
        torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-7, rtol=0.0)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_huge_logits(case: Case, magnitude: float, monkeypatch: pytest.MonkeyPatch) -> None:
    student = _logits((6, 257), seed=14).add_(magnitude)
    teacher = _logits((6, 257), seed=15).add_(magnitude)
    student[0, :] = 0.0
    student[0, 5] = magnitude  # one dominant logit against a spread teacher
    reference = _reference(student, teacher, case, reduction="none")
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="none")
    # Logits of 1e4 carry float32 rounding of 1e-3 each, which the log-ratios inherit.
    _close(native, reference, rtol=1e-3, atol=2e-3)
    _close(native, fallback, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("reduction", ["sum", "batchmean", "token_mean"])
def test_all_positions_ignored(case: Case, reduction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _logits((5, 64), seed=16), _logits((5, 64), seed=17)
    student[2, 7] = math.nan  # ignored rows contribute nothing, not even their NaN
    labels = torch.full((5,), -100)
    for native in (True, False):
        value, grad = _ours(
            student, teacher, monkeypatch, case, native=native, reduction=reduction,
            labels=labels,
        )  # fmt: skip
        assert value.item() == 0.0
        assert torch.all(grad == 0)


def _spoil(logits: torch.Tensor, how: str) -> None:
    if how == "row of -inf":
        logits[3] = -math.inf
    else:
        logits[3, 10] = math.nan if how == "nan" else math.inf


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("side", ["student", "teacher"])
@pytest.mark.parametrize("how", ["nan", "inf", "row of -inf"])
def test_nan_rows_stay_in_their_row(
    case: Case, side: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A NaN or +inf logit, or a row without any finite logit, has no softmax: NaN value and
    # gradient in that row, on both paths, and nowhere else.
    student, teacher = _logits((5, 64), seed=18), _logits((5, 64), seed=19)
    _spoil(student if side == "student" else teacher, how)
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="none")
    for value, grad in (native, fallback):
        assert torch.isnan(value[3])
        assert torch.isfinite(value[[0, 1, 2, 4]]).all()
        assert torch.isnan(grad[3]).all()
        assert torch.isfinite(grad[[0, 1, 2, 4]]).all()
    kept = [0, 1, 2, 4]
    reference = _reference(student[kept], teacher[kept], case, reduction="none")
    _close((native[0][kept], native[1][kept]), reference, **FLOAT32)
    value, _ = _ours(student, teacher, monkeypatch, case, native=True, reduction="batchmean")
    assert torch.isnan(value)


# Inputs rounded to the half type are the reference's inputs too; the gradient is rounded once
# to the half type (its ulp is 2^-11 relative for float16, 2^-8 for bfloat16).
HALF_TOLERANCES = {
    torch.float16: {"rtol": 1e-3, "atol": 1e-6},
    torch.bfloat16: {"rtol": 8e-3, "atol": 1e-5},
}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", list(HALF_TOLERANCES))
@pytest.mark.parametrize("reduction", ["none", "batchmean"])
def test_half_precision(
    case: Case, dtype: torch.dtype, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = (
        _logits((7, 333), seed=20, dtype=dtype),
        _logits((7, 333), seed=21, dtype=dtype),
    )
    value_ref, grad_ref = _reference(student, teacher, case, reduction=reduction, temperature=1.5)
    native, fallback = _both(
        student, teacher, monkeypatch, case, reduction=reduction, temperature=1.5
    )
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


@pytest.mark.parametrize("case", CASES, ids=str)
def test_half_precision_special_values(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = (
        _logits((4, 40), seed=22, dtype=torch.float16),
        _logits((4, 40), seed=23, dtype=torch.float16),
    )
    student[0, :20] = -math.inf
    teacher[0, :20] = -math.inf
    student[1, 3] = -math.inf
    teacher[1, 5] = -math.inf
    teacher[2, 4] = math.nan
    native, fallback = _both(student, teacher, monkeypatch, case, reduction="none")
    torch.testing.assert_close(native[0], fallback[0], equal_nan=True, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(native[1], fallback[1], equal_nan=True, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.usefixtures("threads")
def test_thread_count_does_not_change_the_result(
    case: Case, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    student, teacher = _logits((13, 517), seed=24), _logits((13, 517), seed=25)
    labels = torch.arange(13)
    labels[4] = -100
    options: dict[str, Any] = {"reduction": "none", "labels": labels}
    torch.set_num_threads(1)
    single = _ours(student, teacher, monkeypatch, case, native=True, **options)
    torch.set_num_threads(count)
    several = _ours(student, teacher, monkeypatch, case, native=True, **options)
    # Every row is computed by one thread in the same order: the results are bitwise equal.
    assert torch.equal(single[0], several[0])
    assert torch.equal(single[1], several[1])
    _close(several, _reference(student, teacher, case, **options), **FLOAT32)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_retained_graph_and_create_graph(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "1")
    student, teacher = _logits((4, 70), seed=26), _logits((4, 70), seed=27)
    _, reference = _reference(student, teacher, case, reduction="batchmean")
    x = student.clone().requires_grad_()
    value = case.module(reduction="batchmean")(x, teacher)
    (first,) = torch.autograd.grad(value, x, retain_graph=True)
    (second,) = torch.autograd.grad(value, x, retain_graph=True)
    (differentiable,) = torch.autograd.grad(value, x, create_graph=True)
    for grad in (first, second, differentiable):
        torch.testing.assert_close(grad.double(), reference, **FLOAT32)
    assert differentiable.requires_grad


@pytest.mark.parametrize("case", CASES, ids=str)
def test_compiled_loss_takes_the_torch_path(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "1")
    calls = _spy_on_kernel(monkeypatch)
    torch._dynamo.reset()
    loss = case.module(temperature=2.0, reduction="batchmean")
    student, teacher = _logits((6, 45), seed=28), _logits((6, 45), seed=29)
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    x = student.clone().requires_grad_()
    value = compiled(x, teacher)
    value.backward()
    assert x.grad is not None
    assert calls == []
    reference = _reference(student, teacher, case, reduction="batchmean", temperature=2.0)
    _close((value.detach(), x.grad), reference, **FLOAT32)


@pytest.mark.parametrize("case", [FORWARD, REVERSE, JSD], ids=str)
@pytest.mark.parametrize("teacher", ["linear", "logits"])
def test_fused_linear_blocks_use_the_kernel(
    case: Case, teacher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block of the fused-linear loss goes through the kernel, with the block's mask and
    scale; values and the hidden, weight and bias gradients equal the torch block path's."""
    generator = torch.Generator().manual_seed(5)
    rows, hidden, vocab = 45, 16, 301

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    h, w, b = randn(rows, hidden), randn(vocab, hidden) / 4, randn(vocab)
    th, tw = randn(rows, hidden), randn(vocab, hidden) / 4
    labels = torch.randint(0, vocab, (rows,), generator=generator)
    labels[::7] = -100
    if case.name == "jsd":
        module: torch.nn.Module = FusedLinearJSDLoss(beta=case.beta, temperature=1.5, chunk_size=8)
    else:
        module = FusedLinearKLDivLoss(
            direction=case.name, temperature=1.5, reduction="token_mean", chunk_size=8
        )
    calls = _spy_on_kernel(monkeypatch)

    def run(native: bool) -> tuple[torch.Tensor, ...]:
        monkeypatch.setenv("KLDIV_NATIVE", "1" if native else "0")
        student = [x.clone().requires_grad_() for x in (h, w, b)]
        if teacher == "linear":
            value = module(student[0], student[1], th, tw, labels, student_bias=student[2])
        else:
            value = module(
                student[0], student[1], None, None, labels, student_bias=student[2],
                teacher_logits=th @ tw.T,
            )  # fmt: skip
        (value * 0.7).backward()
        return (value.detach(), *(x.grad for x in student if x.grad is not None))

    native, fallback = run(True), run(False)
    assert calls == [(CODES[case.name], case.beta)] * math.ceil(rows / 8)
    assert len(native) == len(fallback) == 4
    for ours, theirs in zip(native, fallback, strict=True):
        torch.testing.assert_close(ours, theirs, **FLOAT32)
