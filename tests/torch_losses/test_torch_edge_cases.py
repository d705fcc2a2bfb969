"""Edge corpus (zeros, -inf, ignored positions, huge logits, half precision) and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kldiv.torch import FusedLinearJSDLoss, FusedLinearKLDivLoss, JSDLoss, KLDivLoss, TopK, kl_div

LOGITS = {"input_kind": "logits", "target_kind": "logits"}


def _reference_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-row KL(softmax(teacher)‖softmax(student)) in float64 from its definition."""
    log_q = student.double().log_softmax(-1)
    log_p = teacher.double().log_softmax(-1)
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - torch.where(p > 0, log_q, 0.0)), 0.0)
    return terms.sum(-1)


def _grads_finite(*tensors: torch.Tensor) -> bool:
    return all(t.grad is not None and bool(torch.isfinite(t.grad.float()).all()) for t in tensors)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_zero_target_probabilities(direction: str) -> None:
    student = torch.randn(4, 6, requires_grad=True)
    target = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0]] * 2, requires_grad=True)
    value = kl_div(student, target, input_kind="logits", target_kind="probs", direction=direction)
    value.backward()
    if direction == "forward":
        expected = (-(student.detach().double().log_softmax(-1) * target.double()).sum(-1)).mean()
        expected = (
            expected + (target.double() * target.double().clamp_min(1e-300).log()).sum(-1).mean()
        )
        torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-6)
        assert _grads_finite(student, target)
    else:  # KL(Q‖P) with zeros in P is +inf, and stays +inf rather than NaN
        assert value == math.inf


def test_masked_vocabulary_on_both_sides() -> None:
    student = torch.randn(3, 8)
    teacher = torch.randn(3, 8)
    student[:, 5:] = -math.inf
    teacher[:, 5:] = -math.inf
    student.requires_grad_()
    teacher.requires_grad_()
    value = kl_div(student, teacher, reduction="none", **LOGITS)
    # float32 against a float64 reference: float32 tolerances.
    torch.testing.assert_close(
        value.double(), _reference_kl(student[:, :5], teacher[:, :5]), rtol=1e-5, atol=1e-6
    )
    value.sum().backward()
    assert _grads_finite(student, teacher)
    assert student.grad is not None
    assert (student.grad[:, 5:] == 0).all()


def test_student_masking_teacher_mass_is_infinite_not_nan() -> None:
    student = torch.tensor([[0.0, -math.inf, 0.0]])
    teacher = torch.tensor([[0.0, 0.0, 0.0]])
    assert kl_div(student, teacher, **LOGITS) == math.inf


@pytest.mark.parametrize("reduction", ["token_mean", "sum", "batchmean", "none"])
def test_all_positions_ignored_gives_zero_and_zero_gradients(reduction: str) -> None:
    student = torch.full((2, 3, 5), math.nan).requires_grad_()  # padding may hold garbage
    teacher = torch.full((2, 3, 5), -math.inf)
    labels = torch.full((2, 3), -100)
    value = KLDivLoss(reduction=reduction, **LOGITS)(student, teacher, labels)
    assert (value == 0).all()
    value.sum().backward()
    assert student.grad is not None
    assert (student.grad == 0).all()


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_huge_logits(scale: float) -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 50, generator=generator)
    student = (base * scale).requires_grad_()
    teacher = base * scale + torch.randn(5, 50, generator=generator)
    value = kl_div(student, teacher, reduction="none", **LOGITS)
    # float32 logits of magnitude 1e4 carry an absolute rounding error of about 1e-3.
    torch.testing.assert_close(
        value.double(), _reference_kl(student, teacher), rtol=1e-4, atol=5e-3
    )
    value.sum().backward()
    assert _grads_finite(student)


def test_shift_invariance_at_large_offsets() -> None:
    # softmax(z + c) = softmax(z): KL between a row and its shifted copy is 0 up to rounding.
    student = torch.randn(4, 100) * 5
    teacher = student + 1e4
    value = kl_div(student, teacher, reduction="none", **LOGITS)
    assert value.abs().max() < 1e-3  # the shift itself is rounded at ulp(1e4) ≈ 1e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    student = (torch.randn(6, 300, generator=generator) * 4).to(dtype).requires_grad_()
    teacher = (torch.randn(6, 300, generator=generator) * 4).to(dtype).requires_grad_()
    value = kl_div(student, teacher, reduction="none", **LOGITS)
    assert value.dtype == dtype
    # The inputs are exact in float64; only the result is rounded to the half-precision dtype.
    tolerance = 1e-3 if dtype == torch.float16 else 8e-3
    torch.testing.assert_close(
        value.double(), _reference_kl(student, teacher), rtol=tolerance, atol=tolerance
    )
    value.sum().backward()
    assert _grads_finite(student, teacher)
    assert student.grad is not None
    assert student.grad.dtype == dtype


def test_labels_and_weights_against_reference() -> None:
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(2, 4, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 4, 7, generator=generator, dtype=torch.float64)
    labels = torch.tensor([[1, -100, 2, 3], [-100, -100, 0, 1]])
    weight = torch.rand(2, 4, generator=generator, dtype=torch.float64)
    rows = _reference_kl(student, teacher)
    kept = (labels != -100).double()
    module = KLDivLoss(reduction="token_mean", **LOGITS)
    torch.testing.assert_close(
        module(student, teacher, labels, weight), (rows * weight * kept).sum() / 5
    )
    torch.testing.assert_close(
        module(student, teacher, labels, num_items_in_batch=torch.tensor(10)),
        (rows * kept).sum() / 10,
    )
    none = KLDivLoss(reduction="none", **LOGITS)(student, teacher, labels)
    torch.testing.assert_close(none, rows * kept)
    reverse = kl_div(student, teacher, reduction="sum", direction="reverse", **LOGITS)
    torch.testing.assert_close(reverse, _reference_kl(teacher, student).sum())


def test_temperature_matches_scaled_logits() -> None:
    student, teacher = (
        torch.randn(3, 9, dtype=torch.float64),
        torch.randn(3, 9, dtype=torch.float64),
    )
    scaled = kl_div(student, teacher, temperature=3.0, scale_by_temperature_squared=True, **LOGITS)
    expected = 9.0 * F.kl_div(
        (student / 3).log_softmax(-1),
        (teacher / 3).log_softmax(-1),
        reduction="batchmean",
        log_target=True,
    )
    torch.testing.assert_close(scaled, expected)


BAD_KL_CALLS = [
    (dict(input=torch.zeros(2, 3), target=torch.zeros(2, 4)), ValueError, "must match"),
    (dict(input=torch.zeros(()), target=torch.zeros(())), ValueError, "is a scalar"),
    (
        dict(input=torch.zeros(2, 3, dtype=torch.long), target=torch.zeros(2, 3)),
        TypeError,
        "pass a floating tensor",
    ),
    (dict(input=[[0.0]], target=torch.zeros(1, 1)), TypeError, "must be a torch.Tensor"),
    (dict(temperature=0.0, **LOGITS), ValueError, "temperature must be a finite Python number > 0"),
    (
        dict(temperature=-1.0, **LOGITS),
        ValueError,
        "temperature must be a finite Python number > 0",
    ),
    (dict(temperature=2.0), ValueError, "pass logits for both sides to use a temperature"),
    (dict(input_kind="probs"), ValueError, "unknown input_kind 'probs'"),
    (dict(target_kind="odds"), ValueError, "unknown target_kind 'odds'"),
    (dict(direction="backward"), ValueError, "unknown direction 'backward'"),
    (dict(reduction="average"), ValueError, "unknown reduction 'average'"),
    (dict(log_target=True, target_kind="probs"), ValueError, "log_target=True contradicts"),
    (
        dict(labels=torch.zeros(3, dtype=torch.long)),
        ValueError,
        r"labels has shape \(3,\), expected \(2,\)",
    ),
    (dict(labels=torch.zeros(2)), TypeError, "labels must be an integer tensor"),
    (dict(labels=[1, 2]), TypeError, "labels must be a torch.Tensor"),
    (dict(weight=torch.ones(2, 3)), ValueError, "weight has shape"),
    (dict(weight=torch.ones(2, dtype=torch.long)), TypeError, "pass a floating tensor of weights"),
    (
        dict(reduction="sum", num_items_in_batch=4),
        ValueError,
        "num_items_in_batch divides the summed loss",
    ),
    (dict(chunk_size=0), ValueError, "chunk_size must be a positive int"),
    (dict(ignore_index=1.5), TypeError, "ignore_index must be an int"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_KL_CALLS)
def test_bad_kl_input(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    arguments: dict[str, object] = {"input": torch.zeros(2, 3), "target": torch.full((2, 3), 1 / 3)}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        kl_div(arguments.pop("input"), arguments.pop("target"), **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(beta=1.5), r"beta must be a Python number in \[0, 1\]"),
        (dict(temperature=0.0), "temperature must be a finite Python number > 0"),
        (dict(reduction="mean_tokens"), "unknown reduction 'mean_tokens'"),
    ],
)
def test_bad_jsd_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JSDLoss(**kwargs)  # type: ignore[arg-type]


def _fused_args() -> dict[str, object]:
    return {
        "student_hidden": torch.zeros(4, 3),
        "student_weight": torch.zeros(10, 3),
        "teacher_hidden": torch.zeros(4, 2),
        "teacher_weight": torch.zeros(12, 2),
    }


BAD_FUSED_CALLS = [
    (dict(teacher_hidden=None, teacher_weight=None), ValueError, "pass exactly one teacher"),
    (dict(teacher_logits=torch.zeros(4, 10)), ValueError, "pass exactly one teacher"),
    (dict(teacher_weight=torch.zeros(8, 2)), ValueError, "fewer than the student's 10"),
    (
        dict(student_hidden=torch.zeros(4, 5)),
        ValueError,
        r"student_weight has shape \(10, 3\), expected \(vocab, 5\).*student_hidden \(shape \(4, 5\)\)",
    ),
    (dict(teacher_hidden=torch.zeros(5, 2)), ValueError, r"teacher_hidden has shape \(5, 2\)"),
    (
        dict(student_bias=torch.zeros(9)),
        ValueError,
        "student_bias has 9 entries, expected vocab = 10",
    ),
    (dict(labels=torch.zeros(3, dtype=torch.long)), ValueError, r"labels has shape \(3, 1\)"),
    (dict(labels=torch.zeros(4)), TypeError, "labels must be an integer tensor"),
    (
        dict(student_weight=torch.zeros(10, 3, dtype=torch.long)),
        TypeError,
        "student_weight has dtype",
    ),
    (
        dict(
            teacher_hidden=None,
            teacher_weight=None,
            teacher_topk=TopK(torch.zeros(4, 2, dtype=torch.int32), torch.zeros(4, 2)),
        ),
        TypeError,
        "indices must be an int64 tensor",
    ),
    (
        dict(
            teacher_hidden=None,
            teacher_weight=None,
            teacher_topk=TopK(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 3)),
        ),
        ValueError,
        r"teacher_topk.log_probs has shape \(4, 3\)",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_FUSED_CALLS)
def test_bad_fused_input(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    arguments = _fused_args()
    arguments.update(kwargs)
    positional = [
        arguments.pop(k)
        for k in ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight")
    ]
    with pytest.raises(error, match=message):
        FusedLinearKLDivLoss()(*positional, **arguments)  # type: ignore[arg-type]


def test_fused_rejects_per_position_output_and_topk_temperature() -> None:
    args = _fused_args()
    with pytest.raises(ValueError, match="return a scalar"):
        FusedLinearJSDLoss(reduction="none")(*args.values())  # type: ignore[arg-type]
    topk = TopK(torch.zeros(4, 2, dtype=torch.long), torch.full((4, 2), -1.0))
    with pytest.raises(ValueError, match="teacher_topk holds log-probabilities"):
        FusedLinearKLDivLoss(temperature=2.0)(
            args["student_hidden"], args["student_weight"], teacher_topk=topk
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use reduction='token_mean'"):
        FusedLinearKLDivLoss(reduction="sum")(*args.values(), num_items_in_batch=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        FusedLinearKLDivLoss(chunk_size=-1)
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        FusedLinearKLDivLoss(direction="sideways")
