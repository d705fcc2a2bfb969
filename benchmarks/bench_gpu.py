"""GPU: kldiv's Triton kernels against its PyTorch block path, Liger-Kernel, torch eager and compile.

Logit losses, forward + backward, bfloat16 logits ``randn * 3``: forward KL, reverse KL and
JSD (β = 0.5) at V = 128256 with N ∈ {1024, 4096, 8192} and at (8192, 151936), with 0 % and
10 % of positions ignored and τ ∈ {1, 2}. Fused-linear JSD at H = 4096, V = 128256,
BT ∈ {1024, 8192}. Providers:

* ``kldiv-triton`` (the default on CUDA), ``kldiv-triton-inplace`` (``inplace_backward=True``,
  on an activation ``base * 1`` whose making is timed too) and ``kldiv-torch``
  (``KLDIV_TRITON=0``: the PyTorch block path on CUDA, the compiled kernel on the CPU);
* ``liger``: ``log_softmax`` x2 + ``LigerKLDIVLoss(log_target=True)`` (forward KL, nothing
  ignored: it has no ignore_index), ``log_softmax`` x2 + ``LigerJSD``, and
  ``LigerFusedLinearJSDLoss`` (soft loss only), when ``liger_kernel`` imports;
* ``torch``: the same loss written with torch operations in float32; ``torch-compile``: that
  function under `torch.compile`, on one shape.

Every case first passes a correctness gate against a float32 torch reference (loss within 1e-3
relative, plus 2^-8 for a loss returned in bfloat16 as kldiv's is for bfloat16 logits;
gradients allclose; no NaN); a case that fails is recorded with its numbers and not
timed. Times are `triton.testing.do_bench` medians of forward + backward; memory is the peak
allocated during one step minus what was allocated before it (inputs); bandwidth counts the
6·N·V bytes a fused kernel must move (read both logits, write the gradient, 2 bytes each),
also as a fraction of the card's HBM peak. Each case's result is written at once to
``--out``/``<case>.json`` and appended to ``--out``/``results.jsonl``.

    python benchmarks/bench_gpu.py --out results/gpu        # about 5-8 minutes on one H200
    python benchmarks/bench_gpu.py --device cpu --out /tmp/x  # tiny shapes, the smoke test

On the CPU the Triton providers run in Triton's interpreter (``TRITON_INTERPRET=1`` is set
before triton is imported) and `do_bench` is replaced by a wall clock: the figures mean nothing
there; the run checks that every provider computes the right loss.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # read by triton when it is imported

import torch
import torch.nn.functional as F

from kldiv.torch import FusedLinearJSDLoss, JSDLoss, KLDivLoss

Tensor = torch.Tensor
HAS_LIGER = importlib.util.find_spec("liger_kernel") is not None
BETA = 0.5
# HBM peak bandwidth in TB/s by device name (the SXM parts; PCIe H100 has 2.0).
HBM_TBS = {"H200": 4.8, "H100 PCIe": 2.0, "H100": 3.35, "A100": 2.0, "L40S": 0.864}
GPU_SHAPES = [(1024, 128256), (4096, 128256), (8192, 128256), (8192, 151936)]
GPU_FUSED = [(1024, 4096, 128256), (8192, 4096, 128256)]
CPU_SHAPES = [(8, 1000)]
CPU_FUSED = [(16, 32, 1000)]


# --- losses: each takes (student, teacher, labels, tau) and returns a scalar ----------------


def _mask_mean(rows: Tensor, labels: Tensor) -> Tensor:
    keep = labels != -100
    return torch.where(keep, rows, 0.0).sum() / keep.sum().clamp_min(1)


def torch_rows(student: Tensor, teacher: Tensor, divergence: str, tau: float) -> Tensor:
    """Per-row divergences in float32, written with torch operations."""
    log_q = F.log_softmax(student.float() / tau, dim=-1)
    log_p = F.log_softmax(teacher.float() / tau, dim=-1)
    if divergence == "forward":
        return F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)
    if divergence == "reverse":
        return F.kl_div(log_p, log_q, log_target=True, reduction="none").sum(-1)
    log_m = torch.logaddexp(log_p + math.log(BETA), log_q + math.log(1 - BETA))
    kl_p = F.kl_div(log_m, log_p, log_target=True, reduction="none").sum(-1)
    kl_q = F.kl_div(log_m, log_q, log_target=True, reduction="none").sum(-1)
    return BETA * kl_p + (1 - BETA) * kl_q


def torch_loss(divergence: str) -> Callable[..., Tensor]:
    def loss(student: Tensor, teacher: Tensor, labels: Tensor, tau: float) -> Tensor:
        return _mask_mean(torch_rows(student, teacher, divergence, tau), labels)

    return loss


def kldiv_loss(divergence: str, *, inplace: bool = False) -> Callable[..., Tensor]:
    def loss(student: Tensor, teacher: Tensor, labels: Tensor, tau: float) -> Tensor:
        if divergence == "jsd":
            fn: torch.nn.Module = JSDLoss(beta=BETA, temperature=tau, inplace_backward=inplace)
        else:
            fn = KLDivLoss(
                input_kind="logits", target_kind="logits", direction=divergence,
                temperature=tau, reduction="token_mean", inplace_backward=inplace,
            )  # fmt: skip
        return fn(student, teacher, labels)  # type: ignore[no-any-return]

    return loss


def liger_loss(divergence: str) -> Callable[..., Tensor] | None:
    if divergence == "reverse":
        return None  # LigerKLDIVLoss has no target gradient, so no reverse KL

    def loss(student: Tensor, teacher: Tensor, labels: Tensor, tau: float) -> Tensor:
        # Liger's kernels take log-probabilities; float32 ones, as its own benchmarks do.
        log_q = F.log_softmax(student.float() / tau, dim=-1)
        log_p = F.log_softmax(teacher.float() / tau, dim=-1)
        if divergence == "forward":
            from liger_kernel.transformers import LigerKLDIVLoss

            return LigerKLDIVLoss(reduction="batchmean", log_target=True)(log_q, log_p)
        from liger_kernel.transformers import LigerJSD

        return LigerJSD(beta=BETA)(log_q, log_p, labels)

    return loss


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# --- measurement ------------------------------------------------------------------------------


def bench(step: Callable[[], None], device: str) -> float:
    """Median milliseconds of one step."""
    if device == "cuda":
        from triton.testing import do_bench

        return float(do_bench(step, warmup=25, rep=100, return_mode="median"))
    step()
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e3


def extra_memory(step: Callable[[], None], device: str) -> int | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - before)


def gate(
    value: Tensor, grads: list[Tensor | None], ref_value: Tensor, ref_grads: list[Tensor]
) -> str | None:
    """Why a result fails the correctness gate, or None when it passes."""
    if not torch.isfinite(value):
        return f"loss {float(value)} is not finite"
    # 1e-3 relative, plus the rounding of a loss returned in bfloat16 (2^-8 relative).
    tolerance = 1e-3 + (2.0**-8 if value.dtype == torch.bfloat16 else 0.0)
    if abs(float(value) - float(ref_value)) > tolerance * max(1.0, abs(float(ref_value))):
        return f"loss {float(value):.6g} against the float32 reference {float(ref_value):.6g}"
    for index, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        if grad is None:
            return f"gradient {index} missing"
        grad = grad.float()
        if not torch.isfinite(grad).all():
            return f"gradient {index} has NaN or inf"
        scale = float(ref.abs().max())
        if not torch.allclose(grad, ref, rtol=2e-2, atol=2e-2 * scale):
            error = float((grad - ref).abs().max())
            return f"gradient {index}: max error {error:.3g} against entries up to {scale:.3g}"
    return None


class Recorder:
    """Writes each result as it comes, and prints a line for it."""

    def __init__(self, out: Path, device: str, hbm_tbs: float | None) -> None:
        self.out, self.device, self.hbm = out, device, hbm_tbs
        out.mkdir(parents=True, exist_ok=True)
        self.lines = out / "results.jsonl"
        self.lines.write_text("")

    def write(self, result: dict[str, Any]) -> None:
        result["device"] = self.device
        (self.out / f"{result['case']}.json").write_text(json.dumps(result, indent=1))
        with self.lines.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        text = f"{result['case']:<58}"
        if "ms" in result:
            text += f" {result['ms']:9.3f} ms"
            if result.get("tb_s") is not None:
                text += f" {result['tb_s']:6.2f} TB/s"
            if result.get("hbm_fraction") is not None:
                text += f" ({100 * result['hbm_fraction']:4.1f} % of HBM)"
            if result.get("extra_bytes") is not None:
                text += f", extra {result['extra_bytes'] / 2**30:6.2f} GiB"
            if result.get("vs_liger") is not None:
                text += f", {result['vs_liger']:.2f}x Liger's speed"
        else:
            text += f" {result.get('error', 'skipped')}"
        print(text, flush=True)


def run_case(
    recorder: Recorder,
    case: str,
    loss: Callable[[], Tensor],
    inputs: list[Tensor],
    reference: tuple[Tensor, list[Tensor]],
    moved_bytes: int | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    result: dict[str, Any] = {"case": case}
    try:
        for tensor in inputs:
            tensor.grad = None
        value = loss()
        value.backward()
        value = value.detach()
        reason = gate(value, [t.grad for t in inputs], *reference)
        result["loss"], result["reference_loss"] = float(value), float(reference[0])
        if reason is not None and not args.time_failed:
            result["error"] = f"correctness gate failed: {reason}"
            recorder.write(result)
            return result
        result["gate"] = reason or "passed"

        def step() -> None:
            for tensor in inputs:
                tensor.grad = None
            loss().backward()

        result["ms"] = bench(step, args.device)
        result["extra_bytes"] = extra_memory(step, args.device)
        if moved_bytes is not None:
            result["tb_s"] = moved_bytes / (result["ms"] * 1e-3) / 1e12
            if recorder.hbm is not None:
                result["hbm_fraction"] = result["tb_s"] / recorder.hbm
    except torch.OutOfMemoryError:
        result["error"] = "out of memory"
    except Exception as error:  # a provider that cannot run a case is reported, not fatal
        result["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    finally:
        for tensor in inputs:
            tensor.grad = None
        if args.device == "cuda":
            torch.cuda.empty_cache()
    recorder.write(result)
    return result


# --- the two families -------------------------------------------------------------------------


def logit_cases(recorder: Recorder, args: argparse.Namespace, deadline: float) -> None:
    shapes = CPU_SHAPES if args.device == "cpu" else GPU_SHAPES
    compiled_shape = shapes[min(1, len(shapes) - 1)]
    for rows, vocab in shapes:
        generator = torch.Generator(device=args.device).manual_seed(0)
        student = 3 * torch.randn(rows, vocab, generator=generator, device=args.device)
        teacher = 3 * torch.randn(rows, vocab, generator=generator, device=args.device)
        student = student.to(torch.bfloat16).requires_grad_()
        teacher = teacher.to(torch.bfloat16)
        for ignored in (0.0, 0.1):
            labels = torch.randint(0, vocab, (rows,), generator=generator, device=args.device)
            drop = torch.rand(rows, generator=generator, device=args.device) < ignored
            labels = labels.masked_fill(drop, -100)
            for tau in (1.0, 2.0):
                for divergence in ("forward", "reverse", "jsd"):
                    if time.monotonic() > deadline:
                        recorder.write({"case": f"{divergence}-{rows}x{vocab}", "error": "time"})
                        return
                    name = f"{divergence}-N{rows}-V{vocab}-ign{int(ignored * 100)}-tau{tau:g}"
                    ref_input = student.detach().float().requires_grad_()
                    ref_value = torch_loss(divergence)(ref_input, teacher, labels, tau)
                    ref_value.backward()
                    assert ref_input.grad is not None
                    reference = (ref_value.detach(), [ref_input.grad])
                    del ref_input
                    providers: dict[str, Callable[..., Tensor] | None] = {
                        "kldiv-triton": kldiv_loss(divergence),
                        "kldiv-triton-inplace": kldiv_loss(divergence, inplace=True),
                        "kldiv-torch": kldiv_loss(divergence),
                        "liger": liger_loss(divergence) if HAS_LIGER else None,
                        "torch": torch_loss(divergence),
                    }
                    if args.device == "cpu" or (divergence == "forward" and ignored > 0):
                        providers["liger"] = None  # GPU kernels; no ignore_index in its KL
                    first = (rows, vocab) == compiled_shape and ignored == 0 and tau == 1.0
                    if first and divergence == "forward" and args.device == "cuda":
                        providers["torch-compile"] = torch.compile(torch_loss(divergence))
                    results = {}
                    for provider, fn in providers.items():
                        case = f"{name}-{provider}"
                        if fn is None:
                            continue
                        flag = {"kldiv-torch": "0", "torch": None, "liger": None}.get(provider, "1")
                        with environment("KLDIV_TRITON", flag):
                            results[provider] = _logit_provider(
                                recorder, case, fn, provider, student, teacher, labels, tau,
                                reference, 6 * rows * vocab, args,
                            )  # fmt: skip
                    _summary(recorder, name, results)


def _logit_provider(
    recorder: Recorder,
    case: str,
    fn: Callable[..., Tensor],
    provider: str,
    student: Tensor,
    teacher: Tensor,
    labels: Tensor,
    tau: float,
    reference: tuple[Tensor, list[Tensor]],
    moved: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    if provider != "kldiv-triton-inplace":
        return run_case(
            recorder, case, lambda: fn(student, teacher, labels, tau), [student], reference,
            moved, args,
        )  # fmt: skip
    # In place: the loss overwrites its logits, an activation (a non-leaf) in training.
    # Its time and memory include making that activation (base * 1, one N x V write).
    base = student.detach().clone().requires_grad_()

    def loss() -> Tensor:
        return fn(base * 1.0, teacher, labels, tau)

    return run_case(recorder, case, loss, [base], reference, moved, args)


def _summary(recorder: Recorder, name: str, results: dict[str, dict[str, Any]]) -> None:
    ours, liger = results.get("kldiv-triton", {}), results.get("liger", {})
    if "ms" in ours and "ms" in liger:
        print(f"{name:<58} kldiv-triton {liger['ms'] / ours['ms']:.2f}x Liger's speed")


def fused_cases(recorder: Recorder, args: argparse.Namespace, deadline: float) -> None:
    for rows, hidden, vocab in CPU_FUSED if args.device == "cpu" else GPU_FUSED:
        if time.monotonic() > deadline:
            recorder.write({"case": f"fused-jsd-BT{rows}", "error": "time"})
            return
        _fused_shape(recorder, args, rows, hidden, vocab)


def _fused_shape(
    recorder: Recorder, args: argparse.Namespace, rows: int, hidden: int, vocab: int
) -> None:
    generator = torch.Generator(device=args.device).manual_seed(1)

    def randn(*shape: int, scale: float = 1.0) -> Tensor:
        x = torch.randn(shape, generator=generator, device=args.device)
        return (x * scale).to(torch.bfloat16)

    h = randn(rows, hidden).requires_grad_()
    w = randn(vocab, hidden, scale=hidden**-0.5 * 3).requires_grad_()
    th, tw = randn(rows, hidden), randn(vocab, hidden, scale=hidden**-0.5 * 3)
    labels = torch.randint(0, vocab, (rows,), generator=generator, device=args.device)

    def torch_fused(h_: Tensor, w_: Tensor) -> Tensor:
        student = h_ @ w_.t()  # bfloat16 logits for torch, float32 for the reference
        with torch.no_grad():
            teacher = th.to(h_.dtype) @ tw.to(h_.dtype).t()
        return _mask_mean(torch_rows(student, teacher, "jsd", 1.0), labels)

    ref_h = h.detach().float().requires_grad_()
    ref_w = w.detach().float().requires_grad_()
    ref_value = torch_fused(ref_h, ref_w)
    ref_value.backward()
    assert ref_h.grad is not None
    assert ref_w.grad is not None
    reference = (ref_value.detach(), [ref_h.grad, ref_w.grad])
    del ref_h, ref_w
    ours = FusedLinearJSDLoss(beta=BETA)
    providers: dict[str, Callable[[], Tensor]] = {
        "kldiv-triton": lambda: ours(h, w, th, tw, labels),
        "kldiv-torch": lambda: ours(h, w, th, tw, labels),
        "torch": lambda: torch_fused(h, w),
    }
    if HAS_LIGER and args.device == "cuda":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        liger = LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=BETA)
        providers["liger"] = lambda: liger(h, w, th, tw, labels)
    results = {}
    for provider, fn in providers.items():
        flag = {"kldiv-torch": "0", "kldiv-triton": "1"}.get(provider)
        with environment("KLDIV_TRITON", flag):
            case = f"fused-jsd-BT{rows}-H{hidden}-V{vocab}-{provider}"
            results[provider] = run_case(recorder, case, fn, [h, w], reference, None, args)
    _summary(recorder, f"fused-jsd-BT{rows}", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON results")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--hbm-tbs", type=float, help="the card's HBM peak in TB/s")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no case after")
    parser.add_argument("--time-failed", action="store_true", help="time gate failures too")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    deadline = time.monotonic() + args.budget_s
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu (Triton interpreter)"
    hbm = args.hbm_tbs
    if hbm is None and args.device == "cuda":
        hbm = next((tbs for key, tbs in HBM_TBS.items() if key in name), None)
    print(f"device: {name}, HBM peak {hbm} TB/s, liger-kernel: {HAS_LIGER}, bfloat16 logits")
    if not HAS_LIGER:
        print("liger-kernel is not installed: its cases are skipped")
    recorder = Recorder(args.out, name, hbm)
    logit_cases(recorder, args, deadline)
    fused_cases(recorder, args, deadline)


if __name__ == "__main__":
    main()
