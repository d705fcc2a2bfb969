"""From per-position divergences to a loss: masking, weighting and the reductions.

Shared by the logit losses (`kldiv.torch.losses`) and the fused-linear losses
(`kldiv.torch.fused_linear`) so that both reduce in exactly the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from kldiv.torch._options import MEAN_WARNING, REDUCTIONS, Divergence, check_choice

Tensor = torch.Tensor


@dataclass(frozen=True)
class Reduction:
    """How per-position divergences become the loss.

    Attributes:
        name: ``"none"``, ``"sum"``, ``"mean"`` (sum / number of input elements, torch's
            meaning), ``"batchmean"`` (sum / size of the leading dimension, torch's rule) or
            ``"token_mean"`` (sum / number of unmasked positions, at least 1).
        ignore_index: the label value marking positions to leave out.
        factor: a constant multiplying every position (τ² for temperature scaling).
    """

    name: str
    ignore_index: int = -100
    factor: float = 1.0

    def __post_init__(self) -> None:
        check_choice("reduction", self.name, REDUCTIONS)
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {self.ignore_index!r}")


def position_mask(labels: Tensor | None, reduction: Reduction) -> Tensor | None:
    """Return the flat boolean mask of kept positions, or None without labels."""
    return None if labels is None else (labels != reduction.ignore_index).reshape(-1)


def check_num_items(num_items_in_batch: int | Tensor | None, reduction: Reduction) -> None:
    """Check that ``num_items_in_batch`` is only given to an averaging reduction."""
    if num_items_in_batch is not None and reduction.name in ("none", "sum"):
        raise ValueError(
            f"num_items_in_batch divides the summed loss, but reduction={reduction.name!r} does "
            "not divide; use reduction='token_mean' (or 'batchmean') with num_items_in_batch"
        )
    if reduction.name == "mean":
        warnings.warn(MEAN_WARNING, UserWarning, stacklevel=4)


def reduce_positions(
    values: Tensor,
    *,
    reduction: Reduction,
    mask: Tensor | None,
    weight: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    input_shape: torch.Size,
    out_dtype: torch.dtype,
) -> Tensor:
    """Weight, scale and reduce ``(positions,)`` divergences (masked positions already 0).

    Args:
        values: flat ``(positions,)`` divergences, float32 or float64.
        reduction: the reduction and its options.
        mask: flat boolean mask of kept positions, or None.
        weight: per-position weights of the input's shape without the vocabulary axis, or None.
        num_items_in_batch: the divisor of an averaging reduction, overriding its own.
        input_shape: shape of the input, vocabulary axis included.
        out_dtype: dtype of the returned loss.

    Returns:
        A scalar, or the per-position values of shape ``input_shape[:-1]`` for ``"none"``.
    """
    if weight is not None:
        values = values * weight.reshape(-1)
    if reduction.factor != 1.0:
        values = values * reduction.factor
    if reduction.name == "none":
        return values.reshape(input_shape[:-1]).to(out_dtype)
    total = values.sum()
    if reduction.name == "sum":
        return total.to(out_dtype)
    return (total / divisor(reduction, mask, num_items_in_batch, input_shape, total)).to(out_dtype)


def position_scale(
    reduction: Reduction,
    *,
    mask: Tensor | None,
    weight: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    input_shape: torch.Size,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Return the ``(positions,)`` factors whose dot product with the divergences is the loss.

    For every reduction but ``"none"``, the loss is ``Σ_r scale_r · D_r`` with
    ``scale_r = weight_r · factor / divisor``, which lets a kernel fold the whole reduction
    into the gradients it computes during forward.

    Args:
        reduction: an averaging or summing reduction (not ``"none"``).
        mask: flat boolean mask of kept positions, or None.
        weight: per-position weights of the input's shape without the vocabulary axis, or None.
        num_items_in_batch: the divisor of an averaging reduction, overriding its own.
        input_shape: shape of the input, vocabulary axis included.
        dtype: the compute dtype of the divergences.
        device: their device.

    Returns:
        A ``(positions,)`` tensor of ``dtype`` (differentiable with respect to ``weight``).
    """
    positions = input_shape[:-1].numel()
    scale = torch.full((positions,), reduction.factor, dtype=dtype, device=device)
    if weight is not None:
        scale = scale * weight.reshape(-1).to(dtype)
    return scale / divisor(reduction, mask, num_items_in_batch, input_shape, scale)


def divisor(
    reduction: Reduction,
    mask: Tensor | None,
    num_items_in_batch: int | Tensor | None,
    input_shape: torch.Size,
    like: Tensor,
) -> int | Tensor:
    """Return what an averaging reduction divides the summed loss by (1 for ``"sum"``).

    Args:
        reduction: the reduction.
        mask: flat boolean mask of kept positions, or None.
        num_items_in_batch: an explicit divisor, which wins.
        input_shape: shape of the (logit) input, vocabulary axis included.
        like: a tensor whose device and dtype a tensor divisor takes.

    Returns:
        A Python int, or a 0-dim tensor when the divisor depends on tensor values, so that no
        host synchronization is needed.
    """
    if reduction.name in ("none", "sum"):
        return 1
    if num_items_in_batch is not None:
        if isinstance(num_items_in_batch, Tensor):
            return num_items_in_batch.to(device=like.device, dtype=like.dtype)
        return num_items_in_batch
    if reduction.name == "mean":
        return input_shape.numel()
    if reduction.name == "batchmean":
        return input_shape[0]
    if mask is not None:
        return mask.sum().clamp_min(1).to(like.dtype)
    return max(input_shape[:-1].numel(), 1)


def nonnegative_jsd(value: Tensor, spec: Divergence) -> Tensor:
    """The JSD's value raised to 0 where rounding made it negative, its gradient untouched.

    JSD ≥ 0, but a sum of terms of both signs rounds to -4e-8 (float32) for identical rows, and
    the Jensen–Shannon distance √JSD would be NaN. Other divergences are returned as they are.
    """
    if spec.name == "jsd":
        # In place without recording: the autograd functions never read their own output back.
        with torch.no_grad():
            value.clamp_min_(0.0)
    return value
