r"""The chunked exact divergence: one `torch.autograd.Function` behind every loss of `kldiv.torch`.

Forward walks over blocks of rows once, and for each block computes the divergence of every row
*and* its gradient (`kldiv.torch._kernels`), writing the gradient into a buffer the size of the
input. For a scalar loss the reduction (position weights, τ², divisor) is folded into that
gradient while each block is still in cache; backward then hands the buffer back as it is when
the upstream gradient is 1 (``loss.backward()``) and rescales it in place otherwise. So the extra
memory is the gradient itself plus one block of ``(rows, vocab)`` temporaries, where
``log_softmax`` + ``kl_div`` + autograd keep several full ``(rows, vocab)`` tensors alive.

A second backward through the same graph (``retain_graph=True``) recomputes the gradient, and a
backward with ``create_graph=True`` differentiates `reference_terms`, the same formula written
with differentiable torch operations, so higher derivatives are exact too.
"""

from __future__ import annotations

from typing import Any

import torch

from kldiv import _native
from kldiv.torch import _triton
from kldiv.torch._kernels import Workspace, chunk_divergence, compute_dtype
from kldiv.torch._options import Divergence

Tensor = torch.Tensor

# On the CPU a block is about 2**18 elements (1 MiB per float32 buffer), so that the three to
# five workspace buffers of a block stay in the cores' L2 caches between the kernel's passes:
# at 4096 x 32000 float32 on 2 cores, 8-row blocks took 357 ms for forward + backward against
# 371 ms for 128-row blocks (16 MiB buffers), with a workspace of 3 MiB instead of 48. On an
# accelerator every block costs a dozen kernel launches instead, so there a block is at least
# 1/32 of the rows (a workspace of 3/32 to 5/32 of the input).
_BLOCK_ELEMENTS = 1 << 18
_ACCELERATOR_BLOCKS = 32


def default_chunk_rows(rows: int, vocab: int, device: torch.device) -> int:
    """Return the number of rows per block for a ``(rows, vocab)`` input on ``device``."""
    by_cache = _BLOCK_ELEMENTS // max(vocab, 1)
    if device.type != "cpu":
        by_cache = max(by_cache, -(-rows // _ACCELERATOR_BLOCKS))
    return max(1, min(rows, by_cache))


def _safe(condition: Tensor, value: Tensor) -> Tensor:
    # The double `where` keeps the discarded branch finite, so that its zero gradient is not
    # multiplied by an infinite derivative into NaN.
    return torch.where(condition, value, torch.zeros((), dtype=value.dtype, device=value.device))


def _log_side(z: Tensor, kind: str, temperature: float) -> tuple[Tensor, Tensor]:
    if kind == "logits":
        log_probs = torch.log_softmax(z / temperature if temperature != 1.0 else z, dim=-1)
        return log_probs, log_probs.exp()
    if kind == "log_probs":
        return z, z.exp()
    positive = z > 0
    # log(0) = -inf is the right value (a reverse KL against a zero is infinite), but its
    # derivative must not meet the zero gradient of a masked term. A negative or NaN
    # probability has a NaN logarithm, as in torch, so that its terms are NaN.
    safe_log = torch.log(torch.where(positive, z, torch.ones((), dtype=z.dtype, device=z.device)))
    return torch.where(positive, safe_log, torch.where(z == 0, -torch.inf, torch.nan)), z


def reference_terms(input: Tensor, target: Tensor, spec: Divergence) -> Tensor:
    """Return the elementwise terms of the divergence, written with differentiable torch ops.

    Summing the terms over the last axis gives the divergence of each row. Entries with zero
    probability contribute 0, with a zero (not NaN) derivative.

    Args:
        input: ``(..., vocab)`` Q in ``spec.input_kind``.
        target: ``(..., vocab)`` P in ``spec.target_kind``.
        spec: the divergence and the kinds of both sides.

    Returns:
        ``(..., vocab)`` terms in the dtype of the inputs.
    """
    log_q, q = _log_side(input, spec.input_kind, spec.temperature)
    log_p, p = _log_side(target, spec.target_kind, spec.temperature)

    def weighted(prob: Tensor, log_a: Tensor, log_b: Tensor) -> Tensor:
        # Only a zero probability drops its term: NaN and negative ones give NaN, as in torch.
        alive = prob != 0
        return _safe(alive, prob * (_safe(alive, log_a) - _safe(alive, log_b)))

    if spec.name == "forward":
        return weighted(p, log_p, log_q)
    if spec.name == "reverse":
        return weighted(q, log_q, log_p)
    beta = torch.tensor(spec.beta, dtype=log_p.dtype, device=log_p.device)
    alive = (p > 0) | (q > 0)
    log_m = torch.logaddexp(
        _safe(alive, log_p) + beta.log(), _safe(alive, log_q) + torch.log1p(-beta)
    )
    log_m = torch.where(alive, log_m, -torch.inf)
    return beta * weighted(p, log_p, log_m) + (1 - beta) * weighted(q, log_q, log_m)


def _reference_rows(input: Tensor, target: Tensor, mask: Tensor | None, spec: Divergence) -> Tensor:
    if mask is not None:
        keep = mask.unsqueeze(-1)
        input = _safe(keep, input)
        target = torch.where(keep, target, torch.ones((), dtype=target.dtype, device=target.device))
    rows = reference_terms(input, target, spec).sum(dim=-1, dtype=compute_dtype(input.dtype))
    return rows if mask is None else _safe(mask, rows)


# Element types the compiled kernel reads and writes, and its divergences, by their codes there.
_NATIVE_DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_NATIVE_DIVERGENCES = {"forward": 0, "reverse": 1, "jsd": 2}


def native_divergence_and_gradient(
    input: Tensor,
    target: Tensor,
    mask: Tensor | None,
    scale: Tensor | None,
    spec: Divergence,
    grad_input: Tensor | None = None,
) -> tuple[Tensor, Tensor] | None:
    """Run the compiled kernel over all rows, or return None where it does not apply.

    It computes the forward KL, the reverse KL and the JSD between logits, and applies to eager
    CPU calls with contiguous float32, float16 or bfloat16 logits on both sides (of one dtype)
    and no target gradient; `torch.compile` traces the torch path, whose operations it can see.
    Returns the ``(rows,)`` float32 divergences (0 where ``mask`` is False) and the gradient
    with respect to ``input``, already multiplied by ``scale`` (when given) and 1/τ, written into
    ``grad_input`` when given (a contiguous buffer of ``input``'s shape and dtype, reused across
    calls), else into a fresh tensor.
    """
    if not (
        spec.name in _NATIVE_DIVERGENCES
        and (spec.name != "jsd" or 0.0 < spec.beta < 1.0)
        and spec.input_kind == spec.target_kind == "logits"
        and input.device.type == "cpu"
        and target.device.type == "cpu"
        and input.dtype in _NATIVE_DTYPES
        and target.dtype == input.dtype
        # Fake and functional tensors (tracing) are subclasses: they have no data to hand over.
        and type(input) is Tensor
        and type(target) is Tensor
        and not torch.compiler.is_compiling()
        and input.is_contiguous()
        and target.is_contiguous()
        and (mask is None or (mask.dtype == torch.bool and mask.is_contiguous()))
        and (scale is None or (scale.dtype == torch.float32 and scale.is_contiguous()))
        and (
            grad_input is None
            or (
                grad_input.dtype == input.dtype
                and grad_input.shape == input.shape
                and grad_input.is_contiguous()
            )
        )
    ):
        return None
    kernels = _native.load("losses")
    if kernels is None:
        return None
    rows, vocab = input.shape
    out = torch.empty(rows, dtype=torch.float32)
    fresh = grad_input is None
    if grad_input is None:
        grad_input = torch.empty_like(input, memory_format=torch.contiguous_format)
    if rows == 0 or vocab == 0:
        return out.fill_(0.0), grad_input
    kernels.logits_divergence(
        _NATIVE_DIVERGENCES[spec.name],
        spec.beta,
        input.data_ptr(),
        target.data_ptr(),
        grad_input.data_ptr(),
        out.data_ptr(),
        0 if mask is None else mask.data_ptr(),
        0 if scale is None else scale.data_ptr(),
        rows,
        vocab,
        _NATIVE_DTYPES[input.dtype],
        1.0 / spec.temperature,
        torch.get_num_threads(),
        fresh,  # huge pages are worth asking for only before a buffer's first touch
    )
    return out, grad_input


def logits_divergence_and_gradient(
    input: Tensor,
    target: Tensor,
    mask: Tensor | None,
    scale: Tensor | None,
    spec: Divergence,
    grad_input: Tensor | None = None,
    *,
    inplace: bool = False,
) -> tuple[Tensor, Tensor] | None:
    """Choose the row executor: the Triton kernels, the compiled CPU kernel, or None (torch).

    The one place where an executor is chosen; each returns the ``(rows,)`` divergences and
    the scaled gradient with respect to ``input`` (see `native_divergence_and_gradient`), or
    None where it does not apply, which leaves the rows to the torch block path. CUDA tensors
    go to Triton unless ``KLDIV_TRITON=0``; ``KLDIV_TRITON=1`` sends every call there (see
    `kldiv.torch._triton.wanted`). With ``inplace=True`` the Triton kernel writes the gradient
    over ``input``; the other executors ignore it.
    """
    if _triton.wanted(input.device):
        if inplace and grad_input is None:
            grad_input = input
        return _triton.triton_divergence_and_gradient(input, target, mask, scale, spec, grad_input)
    return native_divergence_and_gradient(input, target, mask, scale, spec, grad_input)


def _divergence_and_gradients(
    input: Tensor,
    target: Tensor,
    mask: Tensor | None,
    scale: Tensor | None,
    spec: Divergence,
    chunk_rows: int,
    *,
    target_grad: bool,
    inplace: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    if not target_grad:
        fast = logits_divergence_and_gradient(input, target, mask, scale, spec, inplace=inplace)
        if fast is not None:
            return fast[0], fast[1], None
    rows, vocab = input.shape
    dtype = compute_dtype(input.dtype)
    out = torch.empty(rows, dtype=dtype, device=input.device)
    grad_input = torch.empty_like(input, memory_format=torch.contiguous_format)
    grad_target = (
        torch.empty_like(target, memory_format=torch.contiguous_format) if target_grad else None
    )
    workspace = Workspace(min(chunk_rows, rows), vocab, dtype=dtype, device=input.device)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        block = slice(start, stop)
        grad_t = None if grad_target is None else grad_target[block]
        values = chunk_divergence(
            input[block],
            target[block],
            spec,
            grad_input=grad_input[block],
            grad_target=grad_t,
            workspace=workspace.take(stop - start),
            # Scaled while the block is in cache: backward needs no pass over the gradient.
            grad_scale=None if scale is None else scale[block].unsqueeze(-1),
        )
        if mask is not None:
            keep = mask[block]
            values = torch.where(keep, values, 0.0)
            grad_input[block].masked_fill_(~keep.unsqueeze(-1), 0.0)
            if grad_t is not None:
                grad_t.masked_fill_(~keep.unsqueeze(-1), 0.0)
        out[block] = values
    return out, grad_input, grad_target


def _is_one(grad_total: Tensor) -> bool:
    """Whether the upstream gradient of a scalar loss is exactly 1 (``loss.backward()``).

    Only asked on the CPU, where reading the value costs nothing; elsewhere, or while
    ``torch.compile`` traces, the answer is False and backward multiplies (on the Triton
    path with a kernel that skips the work when the value, read on the device, is 1).
    """
    if grad_total.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    return bool(grad_total == 1)


class ChunkedDivergence(torch.autograd.Function):
    """Divergences of ``(rows, vocab)`` inputs; gradients computed in the forward pass.

    ``apply(input, target, mask, scale, spec, chunk_rows, inplace)`` returns, for
    ``scale=None``, the ``(rows,)`` divergences in float32 (float64 for float64 input), and
    otherwise the scalar ``Σ_r scale_r · D_r``, the reduction folded into the gradients during
    forward. Rows where ``mask`` is False count 0 and get zero gradient. With ``inplace`` the
    Triton executor writes the input gradient over ``input`` itself.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        target: Tensor,
        mask: Tensor | None,
        scale: Tensor | None,
        spec: Divergence,
        chunk_rows: int,
        inplace: bool = False,
    ) -> Tensor:
        target_grad = bool(ctx.needs_input_grad[1])
        out, grad_input, grad_target = _divergence_and_gradients(
            input, target, mask, scale, spec, chunk_rows, target_grad=target_grad, inplace=inplace
        )
        ctx.save_for_backward(input, target, mask, scale, out if scale is not None else None)
        ctx.spec, ctx.chunk_rows = spec, chunk_rows
        ctx.gradients = (grad_input, grad_target)
        # Whether the logits now hold their gradient (inplace_backward on the Triton path).
        ctx.overwritten = grad_input is input
        # Whether backward may scale the gradient with the Triton kernel (not while tracing).
        ctx.triton = (
            not target_grad
            and type(grad_input) is Tensor
            and grad_input.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and not torch.compiler.is_compiling()
            and _triton.wanted(input.device)
        )
        return out if scale is None else out @ scale.to(out.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        input, target, mask, scale, rows = ctx.saved_tensors
        needs = ctx.needs_input_grad[:2]
        need_scale = scale is not None and ctx.needs_input_grad[3]
        if ctx.overwritten and (torch.is_grad_enabled() or ctx.gradients is None):
            raise RuntimeError(
                "inplace_backward=True wrote the gradient over the input logits, so they "
                "cannot be differentiated again (create_graph=True) or a second time "
                "(retain_graph=True); pass inplace_backward=False for that"
            )
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the reference formula, so that a gradient
            # penalty or a Hessian-vector product sees an exact, differentiable gradient.
            inputs = (input, target, scale)
            wanted = (*needs, need_scale)
            wrt = [tensor for tensor, need in zip(inputs, wanted, strict=True) if need]
            values = _reference_rows(input, target, mask, ctx.spec)
            if scale is not None:
                values = values @ scale.to(values.dtype)
            grads = iter(torch.autograd.grad(values, wrt, grad_out, create_graph=True))
            return (*(next(grads) if need else None for need in wanted[:2]), None,
                    next(grads) if need_scale else None, None, None, None)  # fmt: skip
        if ctx.gradients is None:
            # A second backward through a retained graph: the stored gradient was consumed.
            _, grad_input, grad_target = _divergence_and_gradients(
                input, target, mask, scale, ctx.spec, ctx.chunk_rows, target_grad=bool(needs[1])
            )
        else:
            grad_input, grad_target = ctx.gradients
            ctx.gradients = None
        grad_scale = (rows * grad_out).to(scale.dtype) if need_scale else None
        if scale is not None and _is_one(grad_out):
            # loss.backward(): the stored gradients, already scaled, are the answer.
            return grad_input if needs[0] else None, grad_target, None, grad_scale, None, None, None
        if (
            scale is not None
            and grad_target is None
            and ctx.triton
            and needs[0]
            and not torch.compiler.is_compiling()
        ):
            # No host read of grad_out: the kernel skips the pass when it is 1.
            scaled = _triton.scale_unless_one_(grad_input, grad_out)
            return scaled, None, None, grad_scale, None, None, None
        factor = grad_out if scale is not None else grad_out.unsqueeze(-1)
        scaled_input = grad_input.mul_(factor) if needs[0] else None
        scaled_target = grad_target.mul_(factor) if grad_target is not None else None
        return scaled_input, scaled_target, None, grad_scale, None, None, None
