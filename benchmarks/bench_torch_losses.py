"""KLDivLoss or JSDLoss from student and teacher logits, forward + backward, against plain torch.

Baseline: ``log_softmax`` of both sides + ``F.kl_div(log_target=True, reduction="batchmean")``
(its arguments swapped for the reverse KL) + backward; for the JSD, TRL's formula (the mixture's
log by ``logsumexp``, two ``F.kl_div``). Three cases in one run: ``torch`` (the baseline),
``kldiv`` (the compiled kernel where it applies) and ``kldiv KLDIV_NATIVE=0`` (kldiv's torch
path, timed in a fresh subprocess with the kernels off). ``torch`` and ``kldiv`` are timed as
interleaved repetitions in this process; every line gives the median wall time, its speed-up
over ``torch``, the median user and system CPU time and minor page faults of one step (system
time is mostly the first touch of fresh N x V buffers), and the extra peak memory (above the
inputs) measured in a fresh subprocess as the growth of its maximum resident set size across
one forward + backward. The machine (CPU, THP settings, load, versions) is printed first.

    python benchmarks/bench_torch_losses.py                   # KL(P||Q), 4096 x 32000 float32
    python benchmarks/bench_torch_losses.py --threads 1
    python benchmarks/bench_torch_losses.py --direction reverse
    python benchmarks/bench_torch_losses.py --loss jsd --beta 0.5
    python benchmarks/bench_torch_losses.py --smoke           # 64 x 1000, one repetition
"""

from __future__ import annotations

import argparse
import json
import math
import resource
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from _machine import (
    Timing,
    format_timing,
    median,
    native_off,
    print_footer,
    print_header,
    run_child,
    timed,
    timing_from_json,
    timing_json,
)
from kldiv.torch import JSDLoss, KLDivLoss


def make_inputs(rows: int, vocab: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, vocab, generator=generator).mul_(3).requires_grad_()
    teacher = torch.randn(rows, vocab, generator=generator).mul_(3)
    return student, teacher


def baseline(
    student: torch.Tensor, teacher: torch.Tensor, setup: argparse.Namespace
) -> torch.Tensor:
    log_q = F.log_softmax(student, dim=-1)
    log_p = F.log_softmax(teacher, dim=-1)
    if setup.loss == "jsd":
        beta = setup.beta
        log_m = torch.logsumexp(torch.stack([log_q + math.log1p(-beta), log_p + math.log(beta)]), 0)
        kl_teacher = F.kl_div(log_m, log_p, reduction="none", log_target=True)
        kl_student = F.kl_div(log_m, log_q, reduction="none", log_target=True)
        return (beta * kl_teacher + (1 - beta) * kl_student).sum() / student.shape[0]
    if setup.direction == "reverse":
        return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


def kldiv(student: torch.Tensor, teacher: torch.Tensor, setup: argparse.Namespace) -> torch.Tensor:
    if setup.loss == "jsd":
        loss: torch.nn.Module = JSDLoss(beta=setup.beta)  # "token_mean": batchmean here
    else:
        loss = KLDivLoss(input_kind="logits", target_kind="logits", direction=setup.direction)
    return loss(student, teacher)


CASES: dict[str, Callable[[torch.Tensor, torch.Tensor, argparse.Namespace], torch.Tensor]] = {
    "torch": baseline,
    "kldiv": kldiv,
}


def step(
    case: str, student: torch.Tensor, teacher: torch.Tensor, setup: argparse.Namespace
) -> Timing:
    student.grad = None
    return timed(lambda: CASES[case](student, teacher, setup).backward())


def child_arguments(case: str, setup: argparse.Namespace) -> list[str]:
    arguments = [__file__, "--case", case, "--rows", str(setup.rows), "--vocab", str(setup.vocab)]
    arguments += ["--loss", setup.loss, "--direction", setup.direction, "--beta", str(setup.beta)]
    arguments += ["--repeats", str(setup.repeats)]
    return arguments + (["--threads", str(setup.threads)] if setup.threads else [])


def in_child(case: str, setup: argparse.Namespace, **options: Any) -> dict[str, Any]:
    """Run one case in this script's own subprocess: its extra peak bytes, and with
    ``timing=True`` also the median timing of ``--repeats`` further steps."""
    arguments = child_arguments(case, setup) + (["--timing"] if options.get("timing") else [])
    return dict(json.loads(run_child(arguments, env=options.get("env"))))


def child(case: str, setup: argparse.Namespace) -> None:
    small_student, small_teacher = make_inputs(4, 64)
    step(case, small_student, small_teacher, setup)  # load kernels and allocator state first
    student, teacher = make_inputs(setup.rows, setup.vocab)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(case, student, teacher, setup)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, Any] = {"extra_peak_bytes": (after - before) * 1024}
    if setup.timing:
        timings = [step(case, student, teacher, setup) for _ in range(setup.repeats)]
        result["timing"] = timing_json(median(timings))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loss", choices=["kl", "jsd"], default="kl")
    parser.add_argument("--direction", choices=["forward", "reverse"], default="forward")
    parser.add_argument("--beta", type=float, default=0.5, help="the JSD's β (--loss jsd)")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="64 x 1000, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.vocab, args.repeats = 64, 1000, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        child(args.case, args)
        return
    print_header(["losses"])
    # Peaks first: a child's maximum resident set size starts from this process's at fork.
    off = "kldiv KLDIV_NATIVE=0"
    peaks = {case: in_child(case, args)["extra_peak_bytes"] for case in CASES}
    fallback = in_child("kldiv", args, env=native_off(), timing=True)  # KLDIV_NATIVE=0
    peaks[off] = fallback["extra_peak_bytes"]
    timings = {off: timing_from_json(fallback["timing"])}
    student, teacher = make_inputs(args.rows, args.vocab)
    runs: dict[str, list[Timing]] = {case: [] for case in CASES}
    for case in CASES:
        step(case, student, teacher, args)
    for _ in range(args.repeats):
        for case in CASES:
            runs[case].append(step(case, student, teacher, args))
    timings = {**{case: median(runs[case]) for case in CASES}, **timings}
    gradient_bytes = args.rows * args.vocab * 4
    name = f"JSDLoss(beta={args.beta})" if args.loss == "jsd" else f"KLDivLoss({args.direction})"
    print(f"{name} from logits, forward + backward, {args.rows} x {args.vocab} float32")
    print(f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (medians)")
    for case, timing in timings.items():
        peak = peaks[case]
        print(
            f"{case:>20}: {format_timing(timing, timings['torch'])}  "
            f"extra peak {peak / 2**20:6.0f} MiB = {peak / gradient_bytes:4.2f} x N x V"
        )
    print_footer()


if __name__ == "__main__":
    main()
