"""FusedLinearKLDivLoss against plain torch (logits, log_softmax x2, F.kl_div, backward), CPU.

The student has hidden states (N, H) and an output layer (V, H) that both get gradients; the
teacher (same sizes) is frozen. Times are medians of interleaved repetitions in this process;
each case's extra peak memory (above its inputs) is measured in a fresh subprocess as the growth
of the maximum resident set size across one forward + backward.

    python benchmarks/bench_fused_linear.py --rows 8192
    python benchmarks/bench_fused_linear.py --rows 1024
    python benchmarks/bench_fused_linear.py --direction reverse   # KL(Q||P), as in RL penalties
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def step(case: str, inputs: Inputs, direction: str) -> float:
    inputs[0].grad = inputs[1].grad = None
    start = time.perf_counter()
    CASES[case](inputs, direction).backward()
    return time.perf_counter() - start


def child(case: str, rows: int, hidden: int, vocab: int, direction: str) -> None:
    step(case, make_inputs(8, 16, 32), direction)  # load kernels first
    inputs = make_inputs(rows, hidden, vocab)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step(case, inputs, direction)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_peak_bytes": (after - before) * 1024}))


def peak_in_child(case: str, rows: int, hidden: int, vocab: int, direction: str) -> int:
    """Run one case in this script's own subprocess and return its extra peak bytes."""
    sizes = ["--rows", str(rows), "--hidden", str(hidden), "--vocab", str(vocab)]
    sizes += ["--direction", direction]
    command = [sys.executable, __file__, "--case", case, *sizes]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(json.loads(result.stdout)["extra_peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--direction", choices=["forward", "reverse"], default="forward")
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case:
        child(args.case, args.rows, args.hidden, args.vocab, args.direction)
        return
    # Peaks first: a child's maximum resident set size starts from this process's at fork.
    sizes = (args.rows, args.hidden, args.vocab, args.direction)
    peaks = {case: peak_in_child(case, *sizes) for case in CASES}
    inputs = make_inputs(args.rows, args.hidden, args.vocab)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(args.repeats):
        for case in CASES:
            times[case].append(step(case, inputs, args.direction))
    print(
        f"fused linear KL ({args.direction}), forward + backward, N={args.rows} H={args.hidden} V={args.vocab} "
        f"float32, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}"
    )
    base_time, base_peak = statistics.median(times["torch"]), peaks["torch"]
    for case in CASES:
        median = statistics.median(times[case])
        print(
            f"{case:>6}: {median:7.2f} s ({median / base_time:4.2f}x torch's time), extra peak "
            f"{peaks[case] / 2**20:7.0f} MiB ({peaks[case] / base_peak:5.1%} of torch's)"
        )


if __name__ == "__main__":
    main()
