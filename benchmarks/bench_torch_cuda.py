"""CUDA: kldiv.torch against plain torch and Liger-Kernel (when installed), bfloat16.

Two families, forward + backward, at BT = 8192 and BT = 1024 tokens, V = 128256:

* KL from logits: ``KLDivLoss(input_kind="logits", target_kind="logits")`` against torch's
  ``log_softmax`` x2 + ``F.kl_div(log_target=True)`` and ``LigerKLDIVLoss`` (fed log-softmaxes).
* Fused linear JSD (β = 0.5), H = 4096: ``FusedLinearJSDLoss`` against torch (logits, then the
  GKD formula) and ``LigerFusedLinearJSD``.

Times are medians of repetitions after a warm-up, synchronized; peak memory is
``torch.cuda.max_memory_allocated`` above the inputs, per case in a fresh subprocess. Each
case also reports its loss, and the table its relative difference from torch's, so a run shows
that the three compute the same number. Without a CUDA device the script says so and exits
with status 0.

    python benchmarks/bench_torch_cuda.py

``--device cpu`` with small ``--vocab``/``--hidden``/``--rows`` runs the same code on the CPU
(no memory figures there); the test suite does that to keep the script working between GPU runs.
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
from typing import Any

import torch
import torch.nn.functional as F

from kldiv.torch import FusedLinearJSDLoss, KLDivLoss

BETA = 0.5
HAS_LIGER = importlib.util.find_spec("liger_kernel") is not None
Inputs = tuple[torch.Tensor, ...]


def kl_inputs(rows: int, vocab: int, hidden: int, device: str) -> Inputs:
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (rows, vocab)
    student = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16)
    teacher = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16)
    return student.requires_grad_(), teacher


def jsd_inputs(rows: int, vocab: int, hidden: int, device: str) -> Inputs:
    generator = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        x = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16)
        return x.mul_(scale)

    scale = hidden**-0.5
    return (
        randn(rows, hidden).requires_grad_(),
        randn(vocab, hidden, scale=scale).requires_grad_(),
        randn(rows, hidden),
        randn(vocab, hidden, scale=scale),
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


FAMILIES: dict[
    str, tuple[Callable[[int, int, int, str], Inputs], dict[str, Callable[..., torch.Tensor]]]
] = {
    "kl": (kl_inputs, {"torch": torch_kl, "kldiv": kldiv_kl, "liger": liger_kl}),
    "fused_jsd": (jsd_inputs, {"torch": torch_jsd, "kldiv": kldiv_jsd, "liger": liger_jsd}),
}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step(loss: Callable[..., torch.Tensor], inputs: Inputs, device: str) -> tuple[float, float]:
    """One forward + backward: its wall time and the loss."""
    for tensor in inputs:
        tensor.grad = None
    synchronize(device)
    start = time.perf_counter()
    value = loss(*inputs)
    value.backward()
    synchronize(device)
    return time.perf_counter() - start, float(value)


def child(args: argparse.Namespace) -> None:
    make, cases = FAMILIES[args.family]
    inputs = make(args.rows[0], args.vocab, args.hidden, args.device)
    loss = cases[args.case]
    try:
        _, value = step(loss, inputs, args.device)  # warm-up: kernel compilation and autotuning
    except torch.OutOfMemoryError:
        print(json.dumps({"error": "out of memory"}))
        return
    times = [step(loss, inputs, args.device)[0] for _ in range(args.repeats)]
    result: dict[str, float | None] = {"median_s": statistics.median(times), "loss": value}
    result["extra_peak_bytes"] = None
    if args.device == "cuda":
        for tensor in inputs:
            tensor.grad = None
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(loss, inputs, args.device)
        result["extra_peak_bytes"] = torch.cuda.max_memory_allocated() - before
    print(json.dumps(result))


def run_case(args: argparse.Namespace, family: str, case: str, rows: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--family", family, "--case", case, "--rows", str(rows)]
    for option in ("repeats", "vocab", "hidden", "device"):
        command += [f"--{option}", str(getattr(args, option))]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def describe(result: dict[str, Any], base: dict[str, Any]) -> str:
    """One case's line: time, speed against torch, peak memory, loss against torch's."""
    if "error" in result:
        return str(result["error"])
    text = f"{result['median_s'] * 1e3:8.1f} ms"
    if "median_s" in base:
        text += f" ({base['median_s'] / result['median_s']:4.2f}x torch's speed)"
    if result["extra_peak_bytes"] is not None:
        text += f", extra peak {result['extra_peak_bytes'] / 2**30:6.2f} GiB"
    text += f", loss {result['loss']:.6g}"
    if "loss" in base and base["loss"] != 0:
        text += f" (rel. diff. from torch {abs(result['loss'] / base['loss'] - 1):.1e})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[8192, 1024])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--family", choices=sorted(FAMILIES))
    parser.add_argument("--case")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    if args.family:
        child(args)
        return
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device: {name}, bfloat16, V={args.vocab}, H={args.hidden}")
    # Liger-Kernel's kernels are Triton GPU kernels: its cases run on CUDA only.
    with_liger = HAS_LIGER and args.device == "cuda"
    if not with_liger:
        print("liger-kernel is not installed or the device is not CUDA: its cases are skipped")
    for family, (_, cases) in FAMILIES.items():
        for rows in args.rows:
            results = {
                case: run_case(args, family, case, rows)
                for case in cases
                if case != "liger" or with_liger
            }
            for case, result in results.items():
                print(f"{family:>9} BT={rows:5d} {case:>6}: {describe(result, results['torch'])}")


if __name__ == "__main__":
    main()
