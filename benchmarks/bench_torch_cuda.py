"""CUDA: kldiv.torch against plain torch and Liger-Kernel (when installed), bfloat16.

Two families, forward + backward, at BT = 8192 and BT = 1024 tokens, V = 128256:

* KL from logits: ``KLDivLoss(input_kind="logits", target_kind="logits")`` against torch's
  ``log_softmax`` x2 + ``F.kl_div(log_target=True)`` and ``LigerKLDIVLoss`` (fed log-softmaxes).
* Fused linear JSD (β = 0.5), H = 4096: ``FusedLinearJSDLoss`` against torch (logits, then the
  GKD formula) and ``LigerFusedLinearJSD``.

Times are medians of repetitions after a warm-up, synchronized; peak memory is
``torch.cuda.max_memory_allocated`` above the inputs, per case in a fresh subprocess. Without
a CUDA device the script says so and exits with status 0.

    python benchmarks/bench_torch_cuda.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kldiv.torch import FusedLinearJSDLoss, KLDivLoss

VOCAB, HIDDEN, BETA = 128256, 4096, 0.5
HAS_LIGER = importlib.util.find_spec("liger_kernel") is not None
Inputs = tuple[torch.Tensor, ...]


def kl_inputs(rows: int) -> Inputs:
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape = (rows, VOCAB)
    student = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
    teacher = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
    return student.requires_grad_(), teacher


def jsd_inputs(rows: int) -> Inputs:
    generator = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        x = torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16)
        return x.mul_(scale)

    scale = HIDDEN**-0.5
    return (
        randn(rows, HIDDEN).requires_grad_(),
        randn(VOCAB, HIDDEN, scale=scale).requires_grad_(),
        randn(rows, HIDDEN),
        randn(VOCAB, HIDDEN, scale=scale),
    )


def torch_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    log_q, log_p = F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1)
    return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


_KL = KLDivLoss(input_kind="logits", target_kind="logits")


def kldiv_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return _KL(student, teacher)


def liger_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    from liger_kernel.transformers import LigerKLDIVLoss

    loss = LigerKLDIVLoss(reduction="batchmean", log_target=True)
    return loss(F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1))


def torch_jsd(h: torch.Tensor, w: torch.Tensor, th: torch.Tensor, tw: torch.Tensor) -> torch.Tensor:
    log_s = F.log_softmax((h @ w.T).float(), dim=-1)
    with torch.no_grad():
        log_t = F.log_softmax((th @ tw.T).float(), dim=-1)
    log_m = torch.logsumexp(torch.stack([log_s + math.log(1 - BETA), log_t + math.log(BETA)]), 0)
    kl_t = F.kl_div(log_m, log_t, reduction="none", log_target=True)
    kl_s = F.kl_div(log_m, log_s, reduction="none", log_target=True)
    return (BETA * kl_t + (1 - BETA) * kl_s).sum() / h.shape[0]


_JSD = FusedLinearJSDLoss(beta=BETA)


def kldiv_jsd(h: torch.Tensor, w: torch.Tensor, th: torch.Tensor, tw: torch.Tensor) -> torch.Tensor:
    return _JSD(h, w, th, tw)


def liger_jsd(h: torch.Tensor, w: torch.Tensor, th: torch.Tensor, tw: torch.Tensor) -> torch.Tensor:
    from liger_kernel.transformers import LigerFusedLinearJSD

    return LigerFusedLinearJSD(jsd_beta=BETA)(h, w, th, tw)


FAMILIES: dict[str, tuple[Callable[[int], Inputs], dict[str, Callable[..., torch.Tensor]]]] = {
    "kl": (kl_inputs, {"torch": torch_kl, "kldiv": kldiv_kl, "liger": liger_kl}),
    "fused_jsd": (jsd_inputs, {"torch": torch_jsd, "kldiv": kldiv_jsd, "liger": liger_jsd}),
}


def step(loss: Callable[..., torch.Tensor], inputs: Inputs) -> float:
    for tensor in inputs:
        tensor.grad = None
    torch.cuda.synchronize()
    start = time.perf_counter()
    loss(*inputs).backward()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def child(family: str, case: str, rows: int, repeats: int) -> None:
    make, cases = FAMILIES[family]
    inputs = make(rows)
    try:
        step(cases[case], inputs)  # warm-up: kernel compilation and autotuning
    except torch.OutOfMemoryError:
        print(json.dumps({"error": "out of memory"}))
        return
    times = [step(cases[case], inputs) for _ in range(repeats)]
    for tensor in inputs:
        tensor.grad = None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(cases[case], inputs)
    peak = torch.cuda.max_memory_allocated() - before
    print(json.dumps({"median_s": statistics.median(times), "extra_peak_bytes": peak}))


def run_case(family: str, case: str, rows: int, repeats: int) -> dict[str, float | str]:
    command = [sys.executable, __file__, "--family", family, "--case", case]
    command += ["--rows", str(rows), "--repeats", str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    parsed: dict[str, float | str] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[8192, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--family", choices=sorted(FAMILIES))
    parser.add_argument("--case")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    if args.family:
        child(args.family, args.case, args.rows[0], args.repeats)
        return
    print(f"device: {torch.cuda.get_device_name()}, bfloat16, V={VOCAB}, H={HIDDEN}")
    if not HAS_LIGER:
        print("liger-kernel is not installed: its cases are skipped")
    for family, (_, cases) in FAMILIES.items():
        for rows in args.rows:
            results = {
                case: run_case(family, case, rows, args.repeats)
                for case in cases
                if case != "liger" or HAS_LIGER
            }
            base = results["torch"]
            for case, result in results.items():
                if "error" in result:
                    print(f"{family:>9} BT={rows:5d} {case:>6}: {result['error']}")
                    continue
                time_ratio = ""
                if "median_s" in base:
                    time_ratio = f" ({float(base['median_s']) / float(result['median_s']):4.2f}x torch's speed)"
                print(
                    f"{family:>9} BT={rows:5d} {case:>6}: {float(result['median_s']) * 1e3:8.1f} ms"
                    f"{time_ratio}, extra peak {float(result['extra_peak_bytes']) / 2**30:6.2f} GiB"
                )


if __name__ == "__main__":
    main()
