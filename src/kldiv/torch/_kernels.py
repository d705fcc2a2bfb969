r"""The chunk kernel: divergence and gradient of a block of rows, in one pass over the block.

Logits become log-probabilities with one fused ``log_softmax`` per block (max, sum of
exponentials and subtraction in one kernel, accurate for logits of any magnitude) and
probabilities with one ``exp``; the divergence step then works on log-probabilities only.

With ``g_q = ∂D/∂ log q`` and ``g_p = ∂D/∂ log p`` (log-probabilities as free variables),

$$
\begin{aligned}
    \text{forward } \mathrm{KL}(P\|Q):& \quad g_q = -p, \quad g_p = p(\log p - \log q + 1) \\
    \text{reverse } \mathrm{KL}(Q\|P):& \quad g_q = q(\log q - \log p + 1), \quad g_p = -q \\
    \text{JSD}_\beta:& \quad g_q = (1-\beta)\, q (\log q - \log m),
        \quad g_p = \beta\, p (\log p - \log m)
\end{aligned}
$$

and each is carried to its input through the log-softmax Jacobian, ``(g - softmax · Σ g) / τ``,
for logits, is kept as is for log-probabilities, and divided by ``p`` for probabilities.
Entries with zero probability contribute 0 to the value and to the gradient (0 · log 0 = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kldiv.torch._options import Divergence

Tensor = torch.Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return float64 for float64 inputs and float32 for all others (float16/bfloat16 too)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class Side:
    """One side of a chunk: its probabilities and log-probabilities.

    Attributes:
        probs: ``(rows, vocab)`` probabilities (for ``"log_probs"`` and ``"probs"``, as given).
        log_probs: ``(rows, vocab)`` log-probabilities.
        normalized: whether the rows of ``probs`` sum to 1 by construction (logits).
    """

    probs: Tensor
    log_probs: Tensor
    normalized: bool


class Workspace:
    """``(rows, vocab)`` buffers in the compute dtype, each allocated at its first use.

    A call allocates the workspace once and hands each block a `Block` of it, so a kernel path
    that needs three buffers holds three, not five.
    """

    def __init__(self, rows: int, vocab: int, *, dtype: torch.dtype, device: torch.device) -> None:
        self.rows, self.vocab, self.dtype, self.device = rows, vocab, dtype, device
        self.buffers: dict[int, Tensor] = {}

    def take(self, rows: int) -> Block:
        """Return the workspace cut to a block of ``rows`` rows."""
        return Block(self, rows)


class Block:
    """The `Workspace` of one block: ``block[i]`` is buffer ``i`` cut to the block's rows."""

    def __init__(self, workspace: Workspace, rows: int) -> None:
        self.workspace, self.rows = workspace, rows

    def __getitem__(self, index: int) -> Tensor:
        ws = self.workspace
        if index not in ws.buffers:
            ws.buffers[index] = torch.empty(ws.rows, ws.vocab, dtype=ws.dtype, device=ws.device)
        return ws.buffers[index][: self.rows]


LOG_Q, PROB_Q, LOG_P, PROB_P, SCRATCH = range(5)


def side_from(
    z: Tensor,
    kind: str,
    temperature: float,
    *,
    block: Block,
    logs: int,
    probs: int | Tensor,
) -> Side:
    """Turn a chunk of logits, log-probabilities or probabilities into a `Side`.

    Args:
        z: ``(rows, vocab)`` chunk of the input, any floating dtype.
        kind: ``"logits"``, ``"log_probs"`` or ``"probs"``.
        temperature: divides logits; ignored for the other kinds (checked to be 1 earlier).
        block: the block's workspace.
        logs: index of the workspace buffer for the log-probabilities.
        probs: index of the buffer for the probabilities, or a compute-dtype tensor to use.

    Returns:
        The side, whose tensors live in workspace buffers (or are ``z`` itself).
    """

    def probs_buffer() -> Tensor:
        return probs if isinstance(probs, Tensor) else block[probs]

    same = z.dtype == block.workspace.dtype
    if kind == "probs":
        # Probabilities and log-probabilities are used as given (torch's pointwise formula).
        given = z if same else probs_buffer().copy_(z)
        return Side(given, torch.log(given, out=block[logs]), normalized=False)
    if kind == "log_probs":
        given = z if same else block[logs].copy_(z)
        return Side(torch.exp(given, out=probs_buffer()), given, normalized=False)
    out = probs_buffer()
    if not same or temperature != 1.0:
        z = out.copy_(z)
        if temperature != 1.0:
            z.mul_(1.0 / temperature)
    log_probs = torch.log_softmax(z, dim=-1, out=block[logs])
    return Side(torch.exp(log_probs, out=out), log_probs, normalized=True)


def _times_prob(values: Tensor, probs: Tensor) -> Tensor:
    """Multiply in place by ``probs``, with 0 wherever the probability is 0 (0 · log 0 = 0)."""
    values.mul_(probs)
    # A NaN can only come from 0 · (±inf) here: NaN inputs are carried by a per-row witness.
    return values.nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf)


def _nan_witness(z: Tensor, side: Side, *, probabilities: bool = False) -> Tensor:
    """Return a per-row 0, or NaN where a row of ``z`` is no distribution to work with.

    A NaN or +inf logit, or a row of -inf logits, makes the whole softmax row NaN, so the
    first column of a normalized side carries it at no cost; otherwise a NaN entry of ``z``.
    """
    if side.normalized:
        return side.probs[:, 0] * 0.0
    # A negative probability is no distribution either: torch's log of it is NaN, and the row
    # must say so rather than drop the term as 0 · log 0.
    invalid = torch.isnan(z) | (z < 0) if probabilities else torch.isnan(z)
    return torch.where(invalid.any(dim=-1), math.nan, 0.0)


def _to_input(g: Tensor, side: Side, temperature: float, g_sum: Tensor | None) -> Tensor:
    """Carry ``g = ∂D/∂ log p`` (in place) to the side's own input kind."""
    if side.normalized:
        total = g.sum(dim=-1, keepdim=True) if g_sum is None else g_sum
        g.sub_(side.probs * total)
        if temperature != 1.0:
            g.mul_(1.0 / temperature)
        return g
    return g


def chunk_divergence(
    x: Tensor,
    t: Tensor,
    spec: Divergence,
    *,
    grad_input: Tensor,
    grad_target: Tensor | None,
    workspace: Block,
    grad_scale: Tensor | None = None,
) -> Tensor:
    """Return the per-row divergence of a chunk and write its gradients.

    Args:
        x: ``(rows, vocab)`` input chunk (Q, the model being trained).
        t: ``(rows, vocab)`` target chunk (P, the reference).
        spec: the divergence and the kinds of both sides.
        grad_input: ``(rows, vocab)`` slice receiving ∂D_row/∂x, any floating dtype.
        grad_target: ``(rows, vocab)`` slice receiving ∂D_row/∂t, or None when not needed.
        workspace: the block's workspace, whose buffers are in the compute dtype.
        grad_scale: ``(rows, 1)`` factors multiplying both gradients (a folded reduction),
            or None.

    Returns:
        ``(rows,)`` divergences in the compute dtype (not scaled).
    """
    if (
        spec.name == "forward"
        and spec.input_kind == spec.target_kind == "logits"
        and grad_target is None
        and x.dtype == t.dtype == grad_input.dtype == workspace.workspace.dtype
    ):
        return forward_logits_block(
            x, t, spec.temperature, grad_input=grad_input, workspace=workspace,
            grad_scale=grad_scale,
        )  # fmt: skip
    q_buf: int | Tensor = PROB_Q
    if spec.input_kind == "logits" and grad_input.dtype == workspace.workspace.dtype:
        # The softmax is written straight into the gradient slice, which it becomes.
        q_buf = grad_input
    tau = spec.temperature
    q = side_from(x, spec.input_kind, tau, block=workspace, logs=LOG_Q, probs=q_buf)
    p = side_from(t, spec.target_kind, tau, block=workspace, logs=LOG_P, probs=PROB_P)
    # Taken before q's probabilities, which may live in grad_input, are overwritten.
    witness = _nan_witness(x, q) + _nan_witness(t, p, probabilities=spec.target_kind == "probs")
    if spec.name == "forward":
        rows = _forward(q, p, spec, workspace, grad_input, grad_target) + witness
    elif spec.name == "reverse":
        rows = _reverse(q, p, spec, workspace[SCRATCH], grad_input, grad_target, witness)
    else:
        rows = _jsd(q, p, spec, workspace[SCRATCH], grad_input, grad_target, witness)
    if grad_scale is not None:
        grad_input.mul_(grad_scale)
        if grad_target is not None:
            grad_target.mul_(grad_scale)
    return rows


def forward_logits_block(
    x: Tensor,
    t: Tensor,
    temperature: float,
    *,
    grad_input: Tensor,
    workspace: Block,
    grad_scale: Tensor | None = None,
) -> Tensor:
    """`chunk_divergence` for KL(P‖Q) between logits without a target gradient, the common case.

    The general path's passes with a third of its Python work per block: with ``log q`` and
    ``log p`` from ``log_softmax`` and ``p = exp(log p)``, the rows are ``Σ p (log p − log q)``
    and the gradient ``(softmax(x) − p) / τ``.

    Args:
        x: ``(rows, vocab)`` input logits in the compute dtype.
        t: ``(rows, vocab)`` target logits in the compute dtype.
        temperature: τ dividing both sides.
        grad_input: ``(rows, vocab)`` slice of the compute dtype receiving ∂D_row/∂x.
        workspace: the block's workspace.
        grad_scale: ``(rows, 1)`` factors multiplying the gradient, or None.

    Returns:
        ``(rows,)`` divergences (not scaled).
    """
    log_q, log_p, p = workspace[LOG_Q], workspace[LOG_P], workspace[PROB_P]
    if temperature != 1.0:
        x = torch.mul(x, 1.0 / temperature, out=p)
    torch.log_softmax(x, dim=-1, out=log_q)
    if temperature != 1.0:
        t = torch.mul(t, 1.0 / temperature, out=p)
    torch.log_softmax(t, dim=-1, out=log_p)
    torch.exp(log_q, out=grad_input)
    torch.exp(log_p, out=p)
    # 0 · log 0 = 0: a NaN in the products can only be 0 · (±inf), which nansum drops; NaN
    # inputs reach the row through the gradient below.
    rows = torch.sub(log_p, log_q, out=log_q).mul_(p).nansum(dim=-1)
    grad_input.sub_(p)
    # softmax(x) − p is finite, so its first column carries a NaN row (0 · NaN) at no cost.
    rows.add_(grad_input[:, 0], alpha=0.0)
    # 1/τ and the folded reduction in one pass.
    if grad_scale is not None:
        grad_input.mul_(grad_scale if temperature == 1.0 else grad_scale / temperature)
    elif temperature != 1.0:
        grad_input.mul_(1.0 / temperature)
    return rows


def _log_ratio(a: Side, b: Side, out: Tensor) -> Tensor:
    """Write log a − log b into ``out``."""
    return torch.sub(a.log_probs, b.log_probs, out=out)


def _write(grad: Tensor, value: Tensor) -> None:
    if grad is not value:
        grad.copy_(value)


def _forward(
    q: Side, p: Side, spec: Divergence, block: Block, gx: Tensor, gt: Tensor | None
) -> Tensor:
    # log q is not needed after the ratio unless the target wants a gradient: reuse its buffer.
    reuse = gt is None and q.normalized
    scratch = q.log_probs if reuse else block[SCRATCH]
    rows = _times_prob(_log_ratio(p, q, scratch), p.probs).sum(dim=-1)
    if gt is not None:
        if spec.target_kind == "probs":
            # 0 where the target is 0 (kldiv's finite choice); NaN where it is NaN or negative.
            value = torch.where(p.probs != 0, _log_ratio(p, q, scratch).add_(1.0), 0.0)
        else:
            value = _times_prob(_log_ratio(p, q, scratch).add_(1.0), p.probs)
            # g_p summed over the row is D + Σp, which the softmax Jacobian subtracts.
            value = _to_input(value, p, spec.temperature, (rows + 1.0).unsqueeze(-1))
        _write(gt, value)
    if q.normalized:
        # ∂/∂z of −Σ p log softmax(z) is softmax(z)·Σp − p.
        g = q.probs
        if not p.normalized:
            g.mul_(p.probs.sum(dim=-1, keepdim=True))
        g.sub_(p.probs)
        if spec.temperature != 1.0:
            g.mul_(1.0 / spec.temperature)
        _write(gx, g)
    else:
        _write(gx, p.probs.neg())
    return rows


def _reverse(
    q: Side,
    p: Side,
    spec: Divergence,
    scratch: Tensor,
    gx: Tensor,
    gt: Tensor | None,
    witness: Tensor,
) -> Tensor:
    # The witness makes a NaN row's sum, and through it the row's gradient, NaN.
    rows = _times_prob(_log_ratio(q, p, scratch), q.probs).sum(dim=-1) + witness
    if gt is not None:
        if spec.target_kind == "probs":
            value = torch.where(q.probs > 0, -q.probs / p.probs, 0.0)
        elif p.normalized:
            total = q.probs.sum(dim=-1, keepdim=True) if not q.normalized else None
            value = p.probs * (1.0 if total is None else total) - q.probs
            if spec.temperature != 1.0:
                value.mul_(1.0 / spec.temperature)
        else:
            value = q.probs.neg()
        _write(gt, value)
    g = _times_prob(_log_ratio(q, p, scratch).add_(1.0), q.probs)
    _write(gx, _to_input(g, q, spec.temperature, (rows + 1.0).unsqueeze(-1)))
    return rows


def _jsd(
    q: Side,
    p: Side,
    spec: Divergence,
    scratch: Tensor,
    gx: Tensor,
    gt: Tensor | None,
    witness: Tensor,
) -> Tensor:
    beta = spec.beta
    log_q, log_p = q.log_probs, p.log_probs
    log_m = torch.logaddexp(log_p + math.log(beta), log_q + math.log1p(-beta))
    g_p = _times_prob(log_p - log_m, p.probs).mul_(beta)
    g_q = _times_prob(torch.sub(log_q, log_m, out=scratch), q.probs).mul_(1.0 - beta)
    # The witness makes a NaN row's sums, and through them the row's gradients, NaN.
    nan_row = witness.unsqueeze(-1)
    sum_p, sum_q = g_p.sum(dim=-1, keepdim=True) + nan_row, g_q.sum(dim=-1, keepdim=True) + nan_row
    if gt is not None:
        if spec.target_kind == "probs":
            value = torch.where(p.probs > 0, (log_p - log_m).mul_(beta), 0.0)
        else:
            value = _to_input(g_p, p, spec.temperature, sum_p)
        _write(gt, value)
    _write(gx, _to_input(g_q, q, spec.temperature, sum_q))
    return (sum_p + sum_q).squeeze(-1)
