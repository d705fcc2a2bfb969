"""Vocabulary-parallel losses and the data-parallel count in a world of one process.

Bad input, gradcheck in float64, and `global_num_items_in_batch` need no spawned processes: a
world of one holds the whole vocabulary, so the references are plain torch.nn.functional.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
F = pytest.importorskip("torch.nn.functional")
from kldiv.torch import distributed  # noqa: E402


@pytest.fixture
def world_of_one() -> Iterator[None]:
    with tempfile.TemporaryDirectory() as directory:
        store = Path(directory) / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def _pair(*shape: int, dtype: Any = None) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(0)
    dtype = dtype or torch.float64
    return (
        torch.randn(shape, generator=generator, dtype=dtype),
        torch.randn(shape, generator=generator, dtype=dtype),
    )


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"direction": "backward"}, ValueError, "unknown direction 'backward'"),
        ({"input_kind": "probs"}, ValueError, "unknown input_kind 'probs'"),
        ({"target_kind": "probs"}, ValueError, "unknown target_kind 'probs'"),
        ({"temperature": 0.0}, ValueError, "temperature must be a finite Python number > 0"),
        (
            {"temperature": 2.0, "input_kind": "log_probs"},
            ValueError,
            "pass logits for both sides to use a temperature",
        ),
        ({"reduction": "average"}, ValueError, "unknown reduction 'average'"),
        ({"reduction": "sum", "num_items_in_batch": 4}, ValueError, "does not divide"),
        ({"labels": torch.zeros(3, dtype=torch.long)}, ValueError, r"labels has shape \(3,\)"),
        ({"labels": torch.zeros(2, 3)}, TypeError, "labels must be an integer tensor"),
        ({"weight": torch.ones(2)}, ValueError, r"weight has shape \(2,\)"),
        ({"weight": torch.ones(2, 3, dtype=torch.long)}, TypeError, "floating tensor of weights"),
    ],
)
def test_kl_div_rejects_bad_options(options: dict[str, Any], error: type, match: str) -> None:
    student, teacher = _pair(2, 3, 5)
    with pytest.raises(error, match=match):
        distributed.vocab_parallel_kl_div(student, teacher, **options)


@pytest.mark.parametrize(
    ("student", "teacher", "error", "match"),
    [
        ([[1.0, 2.0]], torch.zeros(1, 2), TypeError, "input_shard must be a torch.Tensor"),
        (torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2), TypeError, "torch.int64"),
        (torch.zeros(2, 3), torch.zeros(2, 4), ValueError, "they must match"),
        (torch.zeros(4), torch.zeros(4), ValueError, r"input_shard\[None\]"),
    ],
)
def test_rejects_bad_tensors(student: Any, teacher: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        distributed.vocab_parallel_kl_div(student, teacher)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_js_div_rejects_beta_outside_unit_interval(beta: float) -> None:
    student, teacher = _pair(2, 5)
    with pytest.raises(ValueError, match=r"beta must be a Python number in \[0, 1\]"):
        distributed.vocab_parallel_js_div(student, teacher, beta=beta)


@pytest.mark.parametrize(
    "call",
    [
        lambda s, t: distributed.vocab_parallel_kl_div(s, t),
        lambda s, t: distributed.vocab_parallel_js_div(s, t),
        lambda s, t: distributed.global_num_items_in_batch(torch.zeros(3, dtype=torch.long)),
    ],
    ids=["kl", "jsd", "num-items"],
)
def test_uninitialized_process_group_is_named(call: Any) -> None:
    assert not dist.is_initialized()
    student, teacher = _pair(2, 5)
    with pytest.raises(RuntimeError, match=r"call torch\.distributed\.init_process_group first"):
        call(student, teacher)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        ([], ValueError, "labels is an empty sequence"),
        ([torch.zeros(2)], TypeError, r"labels\[0\] is torch.float32"),
        ([torch.zeros(2, dtype=torch.long), [1, 2]], TypeError, r"labels\[1\] is list"),
    ],
)
def test_num_items_rejects_bad_labels(labels: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        distributed.global_num_items_in_batch(labels)


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (torch.tensor([[0, -100, 3], [-100, -100, 9]]), 3),
        ([torch.tensor([1, 2, -100]), torch.tensor([[5, -100]])], 3),
        # Every position ignored: 1, so that the loss is 0 / 1 rather than 0 / 0.
        (torch.full((4,), -100), 1),
    ],
    ids=["one-batch", "micro-batches", "all-ignored"],
)
def test_num_items_counts_unmasked_positions(labels: Any, expected: int) -> None:
    count = distributed.global_num_items_in_batch(labels)
    assert count.dtype == torch.int64
    assert count.shape == ()
    assert int(count) == expected


@pytest.mark.usefixtures("world_of_one")
def test_num_items_honours_ignore_index() -> None:
    labels = torch.tensor([0, 7, 7, -100])
    assert int(distributed.global_num_items_in_batch(labels, ignore_index=7)) == 2


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize(
    "options",
    [
        {"loss": "kl", "direction": "forward"},
        {"loss": "kl", "direction": "reverse", "temperature": 1.7},
        {"loss": "kl", "input_kind": "log_probs", "target_kind": "logits"},
        {"loss": "kl", "input_kind": "logits", "target_kind": "log_probs"},
        {"loss": "jsd", "beta": 0.0},
        {"loss": "jsd", "beta": 0.4, "temperature": 0.8},
        {"loss": "jsd", "beta": 1.0},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_gradcheck_float64(options: dict[str, Any]) -> None:
    options = dict(options)
    loss = options.pop("loss")
    function = (
        distributed.vocab_parallel_kl_div if loss == "kl" else distributed.vocab_parallel_js_div
    )
    student, teacher = _pair(3, 6)
    if options.get("input_kind") == "log_probs":
        student = F.log_softmax(student, dim=-1)
    if options.get("target_kind") == "log_probs":
        teacher = F.log_softmax(teacher, dim=-1)
    labels = torch.tensor([1, -100, 4])
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda s, t: function(s, t, labels=labels, reduction="none", **options),
        (student, teacher),
    )


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32(dtype: Any) -> None:
    student, teacher = _pair(4, 50, dtype=torch.float32)
    student, teacher = (8 * student).to(dtype), (8 * teacher).to(dtype)
    student.requires_grad_(True)
    loss = distributed.vocab_parallel_kl_div(student, teacher, reduction="sum")
    loss.backward()
    log_q = F.log_softmax(student.detach().double(), dim=-1)
    log_p = F.log_softmax(teacher.double(), dim=-1)
    expected = F.kl_div(log_q, log_p, log_target=True, reduction="sum")
    assert loss.dtype == dtype
    assert student.grad is not None
    assert student.grad.dtype == dtype
    # The only rounding is the final cast of the float32 result to the half dtype.
    torch.testing.assert_close(loss.double(), expected, rtol=float(torch.finfo(dtype).eps), atol=0)
    expected_grad = (log_q.exp() - log_p.exp()).to(dtype)
    torch.testing.assert_close(
        student.grad, expected_grad, rtol=0, atol=float(torch.finfo(dtype).eps)
    )


def _layer(shard: int = 5, hidden: int = 3) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    return {
        "student_hidden": torch.randn(2, hidden, generator=generator),
        "student_weight": torch.randn(shard, hidden, generator=generator),
        "teacher_hidden": torch.randn(2, hidden, generator=generator),
        "teacher_weight": torch.randn(shard, hidden, generator=generator),
    }


@pytest.mark.parametrize(
    ("change", "options", "error", "match"),
    [
        ({"teacher_weight": torch.zeros(4, 3)}, {}, ValueError, "both must hold the same rows"),
        ({"teacher_logits": torch.zeros(2, 5)}, {}, ValueError, "pass exactly one teacher"),
        ({"student_bias": torch.zeros(4)}, {}, ValueError, "expected the shard's 5"),
        ({"labels": torch.zeros(2)}, {}, TypeError, "labels must be an integer tensor"),
        ({"num_items_in_batch": 3}, {"reduction": "sum"}, ValueError, "use reduction='token_mean'"),
        ({}, {"reduction": "none"}, ValueError, "return a scalar"),
        (
            {"teacher_topk": ("indices", "log_probs")},
            {},
            ValueError,
            "teacher_topk holds token ids of the whole vocabulary",
        ),
    ],
)
def test_fused_loss_rejects_bad_input(
    change: dict[str, Any], options: dict[str, Any], error: type, match: str
) -> None:
    arguments = {**_layer(), **change}
    with pytest.raises(error, match=match):
        distributed.VocabParallelFusedLinearKLDivLoss(**options)(**arguments)


def test_fused_loss_names_uninitialized_process_group() -> None:
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match=r"use kldiv\.torch\.FusedLinearKLDivLoss"):
        distributed.VocabParallelFusedLinearJSDLoss()(**_layer())


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize("module", ["kl", "jsd"])
def test_fused_loss_equals_single_process_module(module: str) -> None:
    from kldiv.torch import FusedLinearJSDLoss, FusedLinearKLDivLoss

    arguments = _layer(shard=40, hidden=8)
    labels = torch.tensor([3, -100])
    if module == "kl":
        options: dict[str, Any] = {"direction": "reverse", "temperature": 1.5}
        sharded = distributed.VocabParallelFusedLinearKLDivLoss(**options)
        single: Any = FusedLinearKLDivLoss(**options)
    else:
        options = {"beta": 0.3, "reduction": "sum"}
        sharded = distributed.VocabParallelFusedLinearJSDLoss(**options)
        single = FusedLinearJSDLoss(**options)
    weights = [arguments["student_weight"].clone().requires_grad_(True) for _ in range(2)]
    values = []
    for loss, weight in zip((sharded, single), weights, strict=True):
        value = loss(**{**arguments, "student_weight": weight}, labels=labels)
        value.backward()
        values.append(value.detach())
    # Both in float32; they differ only in summation order.
    torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(weights[0].grad, weights[1].grad, rtol=1e-6, atol=1e-7)


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize("garbage", [float("nan"), float("inf")])
def test_ignored_positions_with_garbage_get_zero_gradient(garbage: float) -> None:
    student, teacher = _pair(3, 7)
    student[1] = garbage  # a padding position whose logits were never computed
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    labels = torch.tensor([2, -100, 5])
    loss = distributed.vocab_parallel_kl_div(student, teacher, labels=labels, reduction="sum")
    loss.backward()
    kept = [0, 2]
    clean_student = student.detach()[kept].requires_grad_(True)
    clean_teacher = teacher.detach()[kept].requires_grad_(True)
    expected = F.kl_div(
        F.log_softmax(clean_student, dim=-1),
        F.log_softmax(clean_teacher, dim=-1),
        log_target=True,
        reduction="sum",
    )
    expected.backward()
    torch.testing.assert_close(loss, expected.detach())
    assert student.grad is not None
    assert teacher.grad is not None
    assert torch.equal(student.grad[1], torch.zeros(7, dtype=torch.float64))
    assert torch.equal(teacher.grad[1], torch.zeros(7, dtype=torch.float64))
    torch.testing.assert_close(student.grad[kept], clean_student.grad)
    torch.testing.assert_close(teacher.grad[kept], clean_teacher.grad)


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("kl", {"direction": "forward", "chunk_size": 2}),
        ("kl", {"direction": "reverse", "temperature": 1.3, "reduction": "token_mean"}),
        ("jsd", {"beta": 0.25, "chunk_size": 3}),
    ],
)
def test_fused_loss_gradcheck_float64(module: str, options: dict[str, Any]) -> None:
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    labels = torch.tensor([1, -100, 2, 3, -100])
    loss = (
        distributed.VocabParallelFusedLinearKLDivLoss(**options)
        if module == "kl"
        else distributed.VocabParallelFusedLinearJSDLoss(**options)
    )
    assert torch.autograd.gradcheck(
        lambda h, w, b: loss(h, w, labels=labels, student_bias=b, teacher_logits=teacher),
        (hidden, weight, bias),
    )


@pytest.mark.usefixtures("world_of_one")
@pytest.mark.parametrize("seed", range(8))
def test_fused_jsd_of_identical_models_is_not_negative(seed: int) -> None:
    # JSD ≥ 0; for identical sides a float32 sum of terms of both signs may round below 0,
    # and the Jensen–Shannon distance √JSD would then be NaN.
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(16, 8, generator=generator)
    weight = (3.0 * torch.randn(64, 8, generator=generator)).requires_grad_(True)
    loss = distributed.VocabParallelFusedLinearJSDLoss(reduction="sum")
    value = loss(hidden, weight, hidden, weight.detach())
    assert value.item() >= 0.0
    assert torch.sqrt(value).isfinite()
    value.backward()
    assert weight.grad is not None
    torch.testing.assert_close(weight.grad, torch.zeros_like(weight), rtol=0, atol=1e-5)
