"""FusedLinearKLDivLoss against plain torch (logits, log_softmax x2, F.kl_div, backward), CPU.

The student has hidden states (N, H) and an output layer (V, H) that both get gradients; the
teacher (same sizes) is frozen. ``torch`` and ``kldiv`` are timed as interleaved repetitions in
this process, ``kldiv KLDIV_NATIVE=0`` (the blocks through torch instead of the compiled kernel)
in a fresh subprocess; each line gives medians of wall time, user and system CPU time and minor
page faults. Each case's extra peak memory (above its inputs) is measured in a fresh subprocess
as the growth of the maximum resident set size across one forward + backward. The machine (CPU,
THP settings, load, versions) is printed first.

    python benchmarks/bench_fused_linear.py --rows 8192
    python benchmarks/bench_fused_linear.py --rows 1024
    python benchmarks/bench_fused_linear.py --direction reverse   # KL(Q||P), as in RL penalties
    python benchmarks/bench_fused_linear.py --smoke
"""

from __future__ import annotations

import argparse
import json
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
from kldiv.torch import FusedLinearKLDivLoss

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_inputs(rows: int, hidden: int, vocab: int, seed: int = 0) -> Inputs:
    generator = torch.Generator().manual_seed(seed)
    scale = hidden**-0.5

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    student_hidden = randn(rows, hidden).requires_grad_()
    student_weight = randn(vocab, hidden).mul_(scale).requires_grad_()
    return student_hidden, student_weight, randn(rows, hidden), randn(vocab, hidden).mul_(scale)


def baseline(inputs: Inputs, direction: str) -> torch.Tensor:
    h, w, th, tw = inputs
    with torch.no_grad():
        teacher = F.log_softmax(th @ tw.T, dim=-1)
    student = F.log_softmax(h @ w.T, dim=-1)
    # F.kl_div(a, b) is KL(b‖a): its arguments are swapped for the reverse KL(student‖teacher).
    pair = (student, teacher) if direction == "forward" else (teacher, student)
    return F.kl_div(*pair, log_target=True, reduction="batchmean")


def fused(inputs: Inputs, direction: str) -> torch.Tensor:
    return FusedLinearKLDivLoss(direction=direction, reduction="batchmean")(*inputs)


CASES: dict[str, Callable[..., torch.Tensor]] = {"torch": baseline, "kldiv": fused}


def step(case: str, inputs: Inputs, direction: str) -> Timing:
    inputs[0].grad = inputs[1].grad = None
    return timed(lambda: CASES[case](inputs, direction).backward())


def child_arguments(case: str, args: argparse.Namespace) -> list[str]:
    sizes = ["--rows", str(args.rows), "--hidden", str(args.hidden), "--vocab", str(args.vocab)]
    threads = ["--threads", str(args.threads)] if args.threads else []
    options = ["--repeats", str(args.repeats), "--direction", args.direction, *threads]
    return [__file__, "--case", case, *sizes, *options]


def child(case: str, args: argparse.Namespace) -> None:
    step(case, make_inputs(8, 16, 32), args.direction)  # load kernels first
    inputs = make_inputs(args.rows, args.hidden, args.vocab)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(case, inputs, args.direction)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result: dict[str, Any] = {"extra_peak_bytes": (after - before) * 1024}
    if args.timing:
        result["timing"] = timing_json(
            median([step(case, inputs, args.direction) for _ in range(args.repeats)])
        )
    print(json.dumps(result))


def in_child(case: str, args: argparse.Namespace, **options: Any) -> dict[str, Any]:
    """Run one case in this script's own subprocess: its extra peak bytes, and with
    ``timing=True`` also the median timing of ``--repeats`` further steps."""
    arguments = child_arguments(case, args) + (["--timing"] if options.get("timing") else [])
    return dict(json.loads(run_child(arguments, env=options.get("env"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--direction", choices=["forward", "reverse"], default="forward")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="N=64 H=32 V=500, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.hidden, args.vocab, args.repeats = 64, 32, 500, 1
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
    inputs = make_inputs(args.rows, args.hidden, args.vocab)
    runs: dict[str, list[Timing]] = {case: [] for case in CASES}
    for _ in range(args.repeats):
        for case in CASES:
            runs[case].append(step(case, inputs, args.direction))
    timings = {case: median(runs[case]) for case in CASES}
    timings[off] = timing_from_json(fallback["timing"])
    print(
        f"fused linear KL ({args.direction}), forward + backward, N={args.rows} H={args.hidden} V={args.vocab} "
        f"float32, torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (medians)"
    )
    base_peak = peaks["torch"]
    for case, timing in timings.items():
        print(
            f"{case:>20}: {format_timing(timing, timings['torch'])}  extra peak "
            f"{peaks[case] / 2**20:6.0f} MiB ({peaks[case] / base_peak:5.1%} of torch's)"
        )
    print_footer()


if __name__ == "__main__":
    main()
