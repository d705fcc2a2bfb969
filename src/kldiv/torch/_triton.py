"""The GPU executor: when the losses run Triton kernels, and the calls into them.

`wanted` is the one place that reads the two switches, ``KLDIV_TRITON`` (``"0"`` off, ``"1"``
forced, unset: on for CUDA tensors when `triton` imports) and ``TRITON_INTERPRET`` (Triton's
own: ``"1"`` runs kernels in its CPU interpreter). Nothing here imports `triton` until a CUDA
tensor or ``KLDIV_TRITON=1`` asks for it, so ``import kldiv.torch`` does not pay for it.

`triton_divergence_and_gradient` has the contract of the compiled CPU kernel's entry point
(`kldiv.torch._chunked.native_divergence_and_gradient`): the ``(rows,)`` float32 divergences
and the gradient with respect to the student's logits with the row scales and 1/τ applied,
or None where the kernel does not apply. No call reads a tensor's value on the host.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
from types import ModuleType

import torch

from kldiv.torch._options import Divergence

Tensor = torch.Tensor

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_DIVERGENCES = {"forward": 0, "reverse": 1, "jsd": 2}
# Elements per block of a row: a fixed block and the online softmax serve any vocabulary, and
# 4096 float32 values per side over 8 warps keep 16 per thread in registers (no spills).
_MAX_BLOCK = 4096


@functools.cache
def _import_kernels() -> ModuleType | None:
    try:
        return importlib.import_module("kldiv.torch._triton_kernels")
    except ImportError:
        return None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def wanted(device: torch.device) -> bool:
    """Whether tensors on ``device`` go to the Triton kernels, from ``KLDIV_TRITON``.

    Raises:
        ValueError: ``KLDIV_TRITON`` is set to something other than ``"0"`` or ``"1"``.
        RuntimeError: ``KLDIV_TRITON=1`` forces Triton where it cannot run: CPU tensors
            without ``TRITON_INTERPRET=1``, or no importable `triton`.
    """
    flag = os.environ.get("KLDIV_TRITON", "")
    if flag == "0":
        return False
    if flag == "1":
        if device.type == "cpu" and not _interpreting():
            raise RuntimeError(
                "KLDIV_TRITON=1 forces the Triton kernels, but the tensors are on the CPU and "
                "TRITON_INTERPRET is not 1: move the tensors to CUDA, set TRITON_INTERPRET=1 "
                "to run the kernels in Triton's (slow) interpreter, or unset KLDIV_TRITON"
            )
        if _import_kernels() is None:
            raise RuntimeError(
                "KLDIV_TRITON=1 forces the Triton kernels, but triton cannot be imported; "
                "install triton (pip install triton, Linux) or unset KLDIV_TRITON"
            )
        return True
    if flag != "":
        raise ValueError(
            f"KLDIV_TRITON={flag!r}; set it to '1' (force the Triton kernels), '0' (never use "
            "them) or leave it unset (use them for CUDA tensors when triton imports)"
        )
    return device.type == "cuda" and _import_kernels() is not None


def _block(vocab: int) -> tuple[int, int]:
    """Block width and warps for a row of ``vocab`` entries."""
    block = min(_MAX_BLOCK, max(16, 1 << max(vocab - 1, 0).bit_length()))
    return block, 8 if block >= 2048 else 4


def _usable(tensor: Tensor, device: torch.device) -> bool:
    # Fake and functional tensors (tracing) are subclasses: they have no data to hand over.
    return type(tensor) is Tensor and tensor.device == device


def triton_divergence_and_gradient(
    input: Tensor,
    target: Tensor,
    mask: Tensor | None,
    scale: Tensor | None,
    spec: Divergence,
    grad_input: Tensor | None = None,
) -> tuple[Tensor, Tensor] | None:
    """Run the Triton kernel over all rows, or return None where it does not apply.

    It computes the forward KL, the reverse KL and the JSD (0 < β < 1) between ``(rows,
    vocab)`` logits of float32, float16 or bfloat16 (each side in its own dtype and strides),
    for eager calls: `torch.compile` traces the torch path, whose operations it can see.

    Args:
        input: ``(rows, vocab)`` student logits.
        target: ``(rows, vocab)`` teacher logits.
        mask: ``(rows,)`` bool, False rows get value 0 and zero gradient; or None.
        scale: ``(rows,)`` float32 gradient factors (weights and reduction), or None for 1.
        spec: the divergence and the temperature.
        grad_input: where to write the gradient, any strides, ``input``'s shape and a
            float dtype; ``input`` itself for an in-place gradient. A fresh tensor if None.

    Returns:
        The ``(rows,)`` float32 divergences and the gradient, or None.
    """
    device = input.device
    if not (
        spec.name in _DIVERGENCES
        and (spec.name != "jsd" or 0.0 < spec.beta < 1.0)
        and spec.input_kind == spec.target_kind == "logits"
        and input.ndim == 2
        and input.dtype in _DTYPES
        and target.dtype in _DTYPES
        and _usable(input, device)
        and _usable(target, device)
        and (mask is None or (_usable(mask, device) and mask.dtype == torch.bool))
        and (scale is None or (_usable(scale, device) and scale.dtype == torch.float32))
        and (
            grad_input is None
            or (
                _usable(grad_input, device)
                and grad_input.shape == input.shape
                and grad_input.dtype in _DTYPES
            )
        )
        and not torch.compiler.is_compiling()
    ):
        return None
    module = _import_kernels()
    if module is None:
        return None
    rows, vocab = input.shape
    out = torch.empty(rows, dtype=torch.float32, device=device)
    if grad_input is None:
        grad_input = torch.empty_like(input, memory_format=torch.contiguous_format)
    if rows == 0 or vocab == 0:
        return out.fill_(0.0), grad_input
    divergence_rows, _ = module.kernels(_interpreting())
    block, warps = _block(vocab)
    beta = spec.beta if spec.name == "jsd" else 0.5
    with _on(device):
        divergence_rows[(rows,)](
            input, target, grad_input, out,
            mask if mask is not None else out,  # never read without HAS_MASK
            scale if scale is not None else out,
            vocab,
            input.stride(0), input.stride(1),
            target.stride(0), target.stride(1),
            grad_input.stride(0), grad_input.stride(1),
            1.0 / spec.temperature, beta, _log(beta), _log(1.0 - beta),
            DIVERGENCE=_DIVERGENCES[spec.name],
            HAS_MASK=mask is not None,
            HAS_SCALE=scale is not None,
            NARROW=grad_input.dtype != torch.float32,
            BLOCK=block,
            num_warps=warps,
        )  # fmt: skip
    return out, grad_input


def scale_unless_one_(gradient: Tensor, factor: Tensor) -> Tensor:
    """Multiply a ``(rows, vocab)`` gradient in place by a 0-dim ``factor`` read on the device.

    Where ``factor`` is exactly 1 the kernel's programs return after reading it, so the usual
    ``loss.backward()`` costs no pass over the gradient, and no call waits for the device.
    """
    module = _import_kernels()
    assert module is not None
    _, scale_kernel = module.kernels(_interpreting())
    rows, vocab = gradient.shape
    block, warps = _block(vocab)
    if rows and vocab:
        with _on(gradient.device):
            scale_kernel[(rows, -(-vocab // block))](
                gradient, factor, vocab, gradient.stride(0), gradient.stride(1),
                NARROW=gradient.dtype != torch.float32, BLOCK=block, num_warps=warps,
            )  # fmt: skip
    return gradient


def _log(value: float) -> float:
    return math.log(value) if value > 0.0 else float("-inf")


def _on(device: torch.device) -> contextlib.AbstractContextManager[object]:
    # Triton launches on the current CUDA device, which need not be the tensors'.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
