"""The check that each side holds what its kind says, run on a loss module's first call.

Reading tensor values costs a host synchronization on an accelerator, so the losses do not do
it on every call: a module checks the first positions of the first batch it sees (eagerly,
not while ``torch.compile`` traces), where a wrong ``input_kind``/``target_kind`` shows at
once, and never again. The functional forms check nothing.
"""

from __future__ import annotations

import warnings

import torch

from kldiv._array import sum_tolerance
from kldiv.torch._options import Divergence

Tensor = torch.Tensor


# A wrong kind shows in every row: a few rows tell, at no cost next to the loss itself (the
# whole batch took extra passes and three (tokens, vocab) temporaries on the first call).
CHECKED_ROWS = 64


def _rows(z: Tensor, labels: Tensor | None, ignore_index: int) -> tuple[Tensor, Tensor]:
    """The first `CHECKED_ROWS` positions of ``z`` that ``labels`` keep, in float32 or float64,
    and their indices among the flattened positions."""
    rows = z.detach().reshape(-1, z.shape[-1])
    if labels is None:
        kept = torch.arange(min(CHECKED_ROWS, rows.shape[0]), device=rows.device)
    else:
        kept = torch.nonzero((labels != ignore_index).reshape(-1)).squeeze(-1)[:CHECKED_ROWS]
    rows = rows.index_select(0, kept)
    return (rows.float() if rows.dtype != torch.float64 else rows), kept


def check_kinds(
    input: Tensor,
    target: Tensor,
    spec: Divergence,
    *,
    labels: Tensor | None,
    ignore_index: int,
    names: tuple[str, str] = ("input", "target"),
) -> None:
    """Raise if a ``"log_probs"`` side does not normalize; warn if ``"logits"`` look like probabilities.

    The first `CHECKED_ROWS` positions that ``labels`` keep are looked at. Log-probabilities
    whose exponentials sum to 1 ± √eps of the dtype pass (NaN rows compare False). Logits whose rows are all in [0, 1]
    and sum to 1 are almost surely probabilities given as logits, which the loss would
    softmax a second time: a UserWarning says so.

    Raises:
        ValueError: naming the side, the row sum and the option to change.
    """
    if torch.compiler.is_compiling() or input.device.type == "meta" or input.numel() == 0:
        return
    for (name, kind_name), z, kind in (
        ((names[0], "input_kind"), input, spec.input_kind),
        ((names[1], "target_kind"), target, spec.target_kind),
    ):
        rows, positions = _rows(z, labels, ignore_index)
        if rows.shape[0] == 0:
            continue
        tolerance = sum_tolerance(torch, z.dtype)
        if kind == "log_probs":
            totals = torch.logsumexp(rows, dim=-1).exp()
            bad = (totals - 1).abs() > tolerance  # NaN rows compare False
            if bool(bad.any()):
                first = int(bad.to(torch.int8).argmax())
                row, total = int(positions[first]), float(totals[first])
                raise ValueError(
                    f"{name} was declared {kind_name}='log_probs', but the exponentials of row "
                    f"{row} sum to {total:.6g}, not 1; if it holds raw scores, "
                    f"pass {kind_name}='logits' (a log-softmax is then applied). This is "
                    "checked on the module's first call only."
                )
        elif kind == "logits":
            looks_like_probs = (
                bool(((rows >= 0) & (rows <= 1)).all())
                and bool(((rows.sum(dim=-1) - 1).abs() <= tolerance).all())
                and rows.shape[-1] > 1
            )
            if looks_like_probs:
                fix = (
                    f"{kind_name}='probs'"
                    if kind_name == "target_kind"
                    else f"{name}.log() with {kind_name}='log_probs'"
                )
                warnings.warn(
                    f"{name} was declared {kind_name}='logits', but its rows are in [0, 1] and "
                    f"sum to 1: probabilities given as logits are softmaxed a second time; "
                    f"pass {fix}. This is checked on the module's first call only.",
                    UserWarning,
                    stacklevel=5,  # the line calling the module (through nn.Module.__call__)
                )
