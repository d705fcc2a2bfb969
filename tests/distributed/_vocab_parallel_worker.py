"""Runs every vocabulary-parallel case on W spawned gloo processes and writes one verdict per case.

Usage: ``python _vocab_parallel_worker.py WORLD_SIZE RESULTS.json``. Spawning costs seconds while a
case costs milliseconds, so one spawn per world size runs all cases; the pytest module turns the
verdicts back into one test per case.

Each rank builds the same full-vocabulary inputs from a seed, keeps its columns, and compares its
value and shard gradients with an independent float64 computation on the full vocabulary
(torch.nn.functional, TRL's generalized JSD formula) sliced to the same columns.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

VOCAB = 37
# Uneven on purpose: no split divides the vocabulary evenly, and "empty" gives ranks no columns.
SPLITS = {
    "uneven": {1: [37], 2: [25, 12], 4: [11, 3, 14, 9]},
    "empty": {1: [37], 2: [0, 37], 4: [0, 20, 0, 17]},
}


@dataclass(frozen=True)
class Case:
    name: str
    loss: str = "kl"
    direction: str = "forward"
    beta: float = 0.5
    dtype: str = "float64"
    temperature: float = 1.0
    scale_by_temperature_squared: bool = False
    input_kind: str = "logits"
    target_kind: str = "logits"
    labels: str = "none"  # "none" | "some" | "all" ignored
    weight: bool = False
    reduction: str = "batchmean"
    num_items_in_batch: int | None = None
    target_requires_grad: bool = True
    masked_vocab: bool = False
    split: str = "uneven"
    shape: tuple[int, ...] = field(default=(3, 5))
    scale: float = 3.0


def _cases() -> list[Case]:
    cases = []
    for dtype in ("float64", "float32"):
        for reduction in ("none", "sum", "mean", "batchmean", "token_mean"):
            for direction in ("forward", "reverse"):
                cases.append(
                    Case(
                        f"kl-{direction}-{reduction}-{dtype}",
                        direction=direction,
                        reduction=reduction,
                        dtype=dtype,
                    )
                )
        for beta in (0.0, 0.5, 1.0, 0.2):
            cases.append(
                Case(
                    f"jsd-beta{beta}-{dtype}",
                    loss="jsd",
                    beta=beta,
                    dtype=dtype,
                    reduction="token_mean",
                    labels="some",
                )
            )
        base = Case("", dtype=dtype)
        cases += [
            replace(base, name=f"temperature-{dtype}", temperature=2.5),
            replace(
                base,
                name=f"temperature-squared-reverse-{dtype}",
                temperature=0.7,
                scale_by_temperature_squared=True,
                direction="reverse",
            ),
            replace(
                base,
                name=f"jsd-temperature-{dtype}",
                loss="jsd",
                beta=0.3,
                temperature=2.0,
                reduction="sum",
            ),
            replace(base, name=f"labels-ignore-{dtype}", labels="some", reduction="token_mean"),
            replace(
                base,
                name=f"labels-weight-none-{dtype}",
                labels="some",
                weight=True,
                reduction="none",
            ),
            replace(
                base,
                name=f"weight-sum-reverse-{dtype}",
                weight=True,
                reduction="sum",
                direction="reverse",
            ),
            replace(base, name=f"all-ignored-{dtype}", labels="all", reduction="token_mean"),
            replace(base, name=f"jsd-all-ignored-{dtype}", loss="jsd", labels="all"),
            replace(
                base,
                name=f"num-items-{dtype}",
                labels="some",
                reduction="token_mean",
                num_items_in_batch=11,
            ),
            replace(
                base,
                name=f"num-items-batchmean-{dtype}",
                reduction="batchmean",
                num_items_in_batch=4,
            ),
            replace(
                base,
                name=f"log-probs-{dtype}",
                input_kind="log_probs",
                target_kind="log_probs",
                direction="reverse",
            ),
            replace(
                base, name=f"mixed-kinds-{dtype}", input_kind="logits", target_kind="log_probs"
            ),
            replace(base, name=f"target-no-grad-{dtype}", target_requires_grad=False),
            replace(
                base,
                name=f"masked-vocab-{dtype}",
                masked_vocab=True,
                labels="some",
                reduction="token_mean",
            ),
            replace(base, name=f"masked-vocab-jsd-{dtype}", loss="jsd", masked_vocab=True),
            replace(base, name=f"empty-shard-{dtype}", split="empty", direction="reverse"),
            replace(base, name=f"empty-shard-jsd-{dtype}", split="empty", loss="jsd"),
            replace(base, name=f"two-dimensional-{dtype}", shape=(7,)),
            replace(base, name=f"large-logits-{dtype}", scale=1e4, direction="reverse"),
        ]
    return cases


CASES = {case.name: case for case in _cases()}


def _inputs(case: Case, seed: int) -> dict[str, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(seed)
    shape = (*case.shape, VOCAB)
    student = torch.randn(shape, generator=generator, dtype=torch.float64) * case.scale
    teacher = torch.randn(shape, generator=generator, dtype=torch.float64) * case.scale
    if case.masked_vocab:
        # Padding columns of the vocabulary, spread over several shards.
        for column in (0, 12, 30, 36):
            student[..., column] = -math.inf
            teacher[..., column] = -math.inf
    if case.input_kind == "log_probs":
        student = F.log_softmax(student, dim=-1)
    if case.target_kind == "log_probs":
        teacher = F.log_softmax(teacher, dim=-1)
    labels = None
    if case.labels != "none":
        labels = torch.randint(0, VOCAB, case.shape, generator=generator)
        ignored = torch.rand(case.shape, generator=generator) < 0.4
        labels[ignored if case.labels == "some" else torch.ones_like(ignored)] = -100
    weight = torch.rand(case.shape, generator=generator, dtype=torch.float64) + 0.5
    upstream = torch.randn(case.shape, generator=generator, dtype=torch.float64)
    dtype = getattr(torch, case.dtype)
    return {
        "student": student.to(dtype),
        "teacher": teacher.to(dtype),
        "labels": labels,
        "weight": weight.to(dtype) if case.weight else None,
        "upstream": upstream.to(dtype),
    }


def _safe(log_x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(log_x), log_x, torch.zeros_like(log_x))


def _reference_rows(case: Case, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    tau = case.temperature
    log_q = F.log_softmax(student / tau, dim=-1) if case.input_kind == "logits" else student
    log_p = F.log_softmax(teacher / tau, dim=-1) if case.target_kind == "logits" else teacher
    if case.loss == "kl":
        if case.direction == "reverse":
            log_p, log_q = log_q, log_p
        # Σ p (log p − log q) with 0·log 0 = 0 at masked columns (masked on both sides).
        rows = (log_p.exp() * (_safe(log_p) - _safe(log_q))).sum(-1)
        return rows * tau**2 if case.scale_by_temperature_squared else rows
    # TRL GKDTrainer.generalized_jsd_loss, summed over the vocabulary.
    if case.beta == 0:
        return F.kl_div(log_q, log_p, reduction="none", log_target=True).nan_to_num().sum(-1)
    if case.beta == 1:
        return F.kl_div(log_p, log_q, reduction="none", log_target=True).nan_to_num().sum(-1)
    mixture = torch.logsumexp(
        torch.stack([log_q + math.log(1 - case.beta), log_p + math.log(case.beta)]), dim=0
    )
    if case.masked_vocab:
        # logsumexp of two -inf has a NaN gradient; the same mixture, differentiable at 0.
        m = case.beta * log_p.exp() + (1 - case.beta) * log_q.exp()
        mixture = torch.log(torch.where(m > 0, m, torch.ones_like(m)))
    kl_teacher = (log_p.exp() * (_safe(log_p) - _safe(mixture))).sum(-1)
    kl_student = (log_q.exp() * (_safe(log_q) - _safe(mixture))).sum(-1)
    return case.beta * kl_teacher + (1 - case.beta) * kl_student


def _reference_reduce(case: Case, rows: torch.Tensor, data: dict[str, Any]) -> torch.Tensor:
    labels, weight = data["labels"], data["weight"]
    if labels is not None:
        rows = torch.where(labels != -100, rows, torch.zeros_like(rows))
    if weight is not None:
        rows = rows * weight.double()
    if case.reduction == "none":
        return rows
    if case.reduction == "sum":
        return rows.sum()
    if case.num_items_in_batch is not None:
        return rows.sum() / max(case.num_items_in_batch, 1)
    divisor = {
        "mean": rows.numel() * VOCAB,
        "batchmean": rows.shape[0],
        "token_mean": max(int((labels != -100).sum()), 1) if labels is not None else rows.numel(),
    }[case.reduction]
    return rows.sum() / divisor


def _options(case: Case) -> dict[str, Any]:
    options: dict[str, Any] = {
        "input_kind": case.input_kind,
        "target_kind": case.target_kind,
        "temperature": case.temperature,
        "reduction": case.reduction,
        "num_items_in_batch": case.num_items_in_batch,
    }
    if case.loss == "kl":
        options["direction"] = case.direction
        options["scale_by_temperature_squared"] = case.scale_by_temperature_squared
    else:
        options["beta"] = case.beta
    return options


def _tolerances(dtype: str) -> dict[str, float]:
    # float32 against a float64 reference: rounding of log-softmax over 37 columns, plus
    # summation order across shards.
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-5, "atol": 1e-5}


def run_case(case: Case, rank: int, world_size: int) -> None:
    from kldiv.torch.distributed import vocab_parallel_js_div, vocab_parallel_kl_div

    data = _inputs(case, seed=sum(map(ord, case.name)))
    sizes = SPLITS[case.split][world_size]
    start = sum(sizes[:rank])
    columns = slice(start, start + sizes[rank])
    student = data["student"][..., columns].clone().requires_grad_(True)
    teacher = data["teacher"][..., columns].clone().requires_grad_(case.target_requires_grad)
    function = vocab_parallel_kl_div if case.loss == "kl" else vocab_parallel_js_div
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = function(
            student, teacher, labels=data["labels"], weight=data["weight"], **_options(case)
        )
    warned = [w for w in caught if "reduction='mean'" in str(w.message)]
    assert bool(warned) == (case.reduction == "mean"), f"warnings: {[str(w) for w in caught]}"
    upstream = data["upstream"] if case.reduction == "none" else data["upstream"].flatten()[0]
    (value * upstream).sum().backward()

    full_student = data["student"].double().requires_grad_(True)
    full_teacher = data["teacher"].double().requires_grad_(True)
    reference = _reference_reduce(case, _reference_rows(case, full_student, full_teacher), data)
    (reference * upstream.double()).sum().backward()
    assert full_student.grad is not None
    assert full_teacher.grad is not None

    tolerances = _tolerances(case.dtype)
    assert value.dtype == student.dtype, f"value dtype {value.dtype}"
    torch.testing.assert_close(
        value.double(), reference.detach(), **tolerances, msg=lambda m: f"value: {m}"
    )
    assert student.grad is not None
    torch.testing.assert_close(
        student.grad.double(),
        full_student.grad[..., columns],
        **tolerances,
        equal_nan=False,
        msg=lambda m: f"input gradient: {m}",
    )
    if case.target_requires_grad:
        assert teacher.grad is not None
        torch.testing.assert_close(
            teacher.grad.double(),
            full_teacher.grad[..., columns],
            **tolerances,
            msg=lambda m: f"target gradient: {m}",
        )
    else:
        assert teacher.grad is None
    if case.dtype == "float32":
        _compare_with_single_process(case, data, columns, value, student, teacher, upstream)


def _compare_with_single_process(
    case: Case,
    data: dict[str, Any],
    columns: slice,
    value: torch.Tensor,
    student: torch.Tensor,
    teacher: torch.Tensor,
    upstream: torch.Tensor,
) -> None:
    """float32 against kldiv.torch on the gathered vocabulary: 1e-6 relative to the scale."""
    from kldiv.torch import js_div, kl_div

    full_student = data["student"].clone().requires_grad_(True)
    full_teacher = data["teacher"].clone().requires_grad_(case.target_requires_grad)
    options = _options(case)
    common = {"labels": data["labels"], "num_items_in_batch": options.pop("num_items_in_batch")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if case.loss == "kl":
            single = kl_div(full_student, full_teacher, weight=data["weight"], **common, **options)
        elif data["weight"] is None and (case.input_kind, case.target_kind) == ("logits", "logits"):
            single = js_div(
                full_student,
                full_teacher,
                beta=case.beta,
                temperature=case.temperature,
                reduction=case.reduction,
                **common,
            )
        else:
            return  # kldiv.torch.js_div takes logits and no weights
    if single.shape != value.shape:
        single = single.sum(-1)  # torch's elementwise "none" without labels or weights
    (single * upstream).sum().backward()
    pairs = [
        ("value", value.detach(), single.detach()),
        ("input gradient", student.grad, full_student.grad[..., columns]),
    ]
    if case.target_requires_grad:
        pairs.append(("target gradient", teacher.grad, full_teacher.grad[..., columns]))
    name, actual, expected = pairs[0]
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7, msg=lambda m: f"{name}: {m}")
    for name, actual, expected in pairs[1:]:
        assert actual is not None
        # Gradients relative in norm, within 5e-6: each float32 computation is within about
        # 1e-6 of the float64 truth (the float64 cases check the algebra to 1e-10), but the two
        # sum in different orders, so they differ by up to a few times that.
        error = float((actual.double() - expected.double()).norm())
        size = float(expected.double().norm())
        assert error <= 5e-6 * size, (
            f"{name}: relative error {error / size:.2e} against kldiv.torch"
        )


def run_data_parallel(rank: int, world_size: int, *, accumulation_steps: int) -> None:
    """Tensor × data parallel training step against one process on the whole batch.

    Ranks form a grid of ``dp`` data-parallel replicas × ``tp`` vocabulary shards (4 = 2 × 2,
    2 = 2 × 1, 1 = 1 × 1). A head weight sharded by vocabulary rows produces the student logits;
    gradients accumulate over micro-batches and are averaged over replicas as DDP does. The last
    replica's positions are all ignored. The averaged weight gradient and the loss summed over
    replicas and micro-batches must equal those of one process on the whole batch.
    """
    from kldiv.torch.distributed import global_num_items_in_batch, vocab_parallel_kl_div

    tp = 2 if world_size == 4 else 1
    dp = world_size // tp
    replica, tp_rank = divmod(rank, tp)
    tp_groups = [dist.new_group(list(range(r * tp, (r + 1) * tp))) for r in range(dp)]
    dp_groups = [dist.new_group(list(range(t, world_size, tp))) for t in range(tp)]
    tp_group, dp_group = tp_groups[replica], dp_groups[tp_rank]

    generator = torch.Generator().manual_seed(7)
    hidden, positions = 6, (2, 3)
    weight = torch.randn(VOCAB, hidden, generator=generator, dtype=torch.float64)
    features = torch.randn(
        dp, accumulation_steps, *positions, hidden, generator=generator, dtype=torch.float64
    )
    teacher = 2 * torch.randn(
        dp, accumulation_steps, *positions, VOCAB, generator=generator, dtype=torch.float64
    )
    labels = torch.randint(0, VOCAB, (dp, accumulation_steps, *positions), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < 0.3] = -100
    if dp > 1:
        labels[-1] = -100

    sizes = SPLITS["uneven"][tp]
    start = sum(sizes[:tp_rank])
    rows = slice(start, start + sizes[tp_rank])
    weight_shard = weight[rows].clone().requires_grad_(True)
    count = global_num_items_in_batch(list(labels[replica]), group=dp_group)
    total_loss = torch.zeros((), dtype=torch.float64)
    for step in range(accumulation_steps):
        student_shard = features[replica, step] @ weight_shard.T
        loss = vocab_parallel_kl_div(
            student_shard,
            teacher[replica, step, ..., rows],
            group=tp_group,
            labels=labels[replica, step],
            reduction="token_mean",
            num_items_in_batch=count,
        )
        # DDP averages gradients over replicas; scaling by their number makes it a sum.
        (loss * dp).backward()
        total_loss += loss.detach()
    assert weight_shard.grad is not None
    dist.all_reduce(weight_shard.grad, group=dp_group)
    weight_shard.grad /= dp
    dist.all_reduce(total_loss, group=dp_group)

    full_weight = weight.clone().requires_grad_(True)
    log_q = F.log_softmax(features @ full_weight.T, dim=-1)
    log_p = F.log_softmax(teacher, dim=-1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1)
    kept = labels != -100
    reference = torch.where(kept, per_position, torch.zeros_like(per_position)).sum() / kept.sum()
    reference.backward()
    assert full_weight.grad is not None
    assert int(count) == int(kept.sum()), f"global count {int(count)}"
    tolerances = _tolerances("float64")
    torch.testing.assert_close(total_loss, reference.detach(), **tolerances)
    torch.testing.assert_close(weight_shard.grad, full_weight.grad[rows], **tolerances)


@dataclass(frozen=True)
class FusedCase:
    loss: str = "kl"
    teacher: str = "layer"  # "layer": hidden states and weight shard; "logits": logit shard
    bias: bool = True
    labels: bool = True
    options: tuple[tuple[str, Any], ...] = ()
    num_items_in_batch: int | None = None
    split: str = "uneven"


FUSED_CASES = {
    "fused-kl-forward-layer": FusedCase(options=(("reduction", "token_mean"),)),
    "fused-kl-reverse-temperature-logits": FusedCase(
        teacher="logits",
        options=(
            ("direction", "reverse"),
            ("temperature", 2.0),
            ("scale_by_temperature_squared", True),
            ("chunk_size", 3),
        ),
    ),
    "fused-kl-mean-no-bias": FusedCase(bias=False, labels=False, options=(("reduction", "mean"),)),
    "fused-kl-sum-empty-shard": FusedCase(split="empty", options=(("reduction", "sum"),)),
    "fused-kl-num-items": FusedCase(num_items_in_batch=5, options=(("chunk_size", 4),)),
    "fused-jsd-beta0.5": FusedCase(loss="jsd", options=(("chunk_size", 4),)),
    "fused-jsd-beta0": FusedCase(loss="jsd", teacher="logits", options=(("beta", 0.0),)),
    "fused-jsd-beta1-temperature": FusedCase(
        loss="jsd", options=(("beta", 1.0), ("temperature", 0.5))
    ),
}


def run_fused(case: FusedCase, rank: int, world_size: int) -> None:
    """The sharded fused-linear losses against a float64 torch.nn.functional reference."""
    from kldiv.torch.distributed import (
        VocabParallelFusedLinearJSDLoss,
        VocabParallelFusedLinearKLDivLoss,
    )

    generator = torch.Generator().manual_seed(11)
    positions, hidden_size, teacher_size = (2, 5), 6, 4
    hidden = torch.randn(*positions, hidden_size, generator=generator, dtype=torch.float64)
    weight = torch.randn(VOCAB, hidden_size, generator=generator, dtype=torch.float64)
    bias = torch.randn(VOCAB, generator=generator, dtype=torch.float64)
    teacher_hidden = torch.randn(*positions, teacher_size, generator=generator, dtype=torch.float64)
    teacher_weight = torch.randn(VOCAB, teacher_size, generator=generator, dtype=torch.float64)
    teacher_bias = torch.randn(VOCAB, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, positions, generator=generator)
    labels[torch.rand(positions, generator=generator) < 0.3] = -100
    labels = labels if case.labels else None
    options = dict(case.options)
    sizes = SPLITS[case.split][world_size]
    start = sum(sizes[:rank])
    rows = slice(start, start + sizes[rank])

    hidden_local = hidden.clone().requires_grad_(True)
    weight_shard = weight[rows].clone().requires_grad_(True)
    bias_shard = bias[rows].clone().requires_grad_(True) if case.bias else None
    teacher_logits = teacher_hidden @ teacher_weight.T + teacher_bias
    if case.teacher == "layer":
        teacher_arguments: dict[str, Any] = {
            "teacher_hidden": teacher_hidden,
            "teacher_weight": teacher_weight[rows],
            "teacher_bias": teacher_bias[rows],
        }
    else:
        teacher_arguments = {"teacher_logits": teacher_logits[..., rows]}
    module = (
        VocabParallelFusedLinearKLDivLoss if case.loss == "kl" else VocabParallelFusedLinearJSDLoss
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reduction="mean" warns, as torch does
        loss = module(**options)(
            hidden_local,
            weight_shard,
            labels=labels,
            student_bias=bias_shard,
            num_items_in_batch=case.num_items_in_batch,
            **teacher_arguments,
        )
    upstream = 0.7
    (loss * upstream).backward()

    full_hidden = hidden.clone().requires_grad_(True)
    full_weight = weight.clone().requires_grad_(True)
    full_bias = bias.clone().requires_grad_(True)
    logits = full_hidden @ full_weight.T + (full_bias if case.bias else 0.0)
    reference_case = Case(
        "fused",
        loss=case.loss,
        direction=options.get("direction", "forward"),
        beta=options.get("beta", 0.5),
        temperature=options.get("temperature", 1.0),
        scale_by_temperature_squared=options.get("scale_by_temperature_squared", False),
        reduction=options.get("reduction", "batchmean" if case.loss == "kl" else "token_mean"),
        num_items_in_batch=case.num_items_in_batch,
        shape=positions,
    )
    per_position = _reference_rows(reference_case, logits, teacher_logits)
    reference = _reference_reduce(reference_case, per_position, {"labels": labels, "weight": None})
    (reference * upstream).backward()

    tolerances = _tolerances("float64")
    torch.testing.assert_close(loss.detach(), reference.detach(), **tolerances)
    assert hidden_local.grad is not None
    assert full_hidden.grad is not None
    torch.testing.assert_close(hidden_local.grad, full_hidden.grad, **tolerances)
    assert weight_shard.grad is not None
    assert full_weight.grad is not None
    torch.testing.assert_close(weight_shard.grad, full_weight.grad[rows], **tolerances)
    if bias_shard is not None:
        assert bias_shard.grad is not None
        assert full_bias.grad is not None
        torch.testing.assert_close(bias_shard.grad, full_bias.grad[rows], **tolerances)


SCENARIOS = {
    "data-parallel-accumulation": lambda rank, world: run_data_parallel(
        rank, world, accumulation_steps=3
    ),
    "data-parallel-single-step": lambda rank, world: run_data_parallel(
        rank, world, accumulation_steps=1
    ),
    **{
        name: (lambda rank, world, case=case: run_fused(case, rank, world))
        for name, case in FUSED_CASES.items()
    },
}


def _worker(rank: int, world_size: int, store: str, results: str) -> None:
    # Up to four processes share two cores; intra-op threads would only contend, and waking
    # them costs more than these tiny tensors take to compute.
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    verdicts: dict[str, str | None] = {}
    for name, case in CASES.items():
        try:
            run_case(case, rank, world_size)
            verdicts[name] = None
        except Exception:
            verdicts[name] = f"rank {rank}: {traceback.format_exc()}"
    for name, scenario in SCENARIOS.items():
        try:
            scenario(rank, world_size)
            verdicts[name] = None
        except Exception:
            verdicts[name] = f"rank {rank}: {traceback.format_exc()}"
    gathered: list[dict[str, str | None]] = [{} for _ in range(world_size)]
    dist.all_gather_object(gathered, verdicts)
    if rank == 0:
        merged = {name: next((v[name] for v in gathered if v[name]), None) for name in verdicts}
        with open(results, "w") as out:
            json.dump(merged, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    world, results_path = int(sys.argv[1]), sys.argv[2]
    store_path = Path(results_path + ".store")
    # A store left by an earlier run would hand the new processes its stale rendezvous.
    store_path.unlink(missing_ok=True)
    mp.start_processes(
        _worker, args=(world, str(store_path), results_path), nprocs=world, start_method="spawn"
    )
