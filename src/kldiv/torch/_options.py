"""Validation of the options and tensors the PyTorch losses accept.

Every check here looks at Python values, shapes and dtypes only, never at tensor values, so
validation costs no host synchronization and no graph break under ``torch.compile``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

INPUT_KINDS = ("logits", "log_probs")
TARGET_KINDS = ("logits", "log_probs", "probs")
DIRECTIONS = ("forward", "reverse")
REDUCTIONS = ("none", "sum", "mean", "batchmean", "token_mean")

MEAN_WARNING = (
    "reduction='mean' divides the total loss by both the batch size and the support size, as "
    "torch.nn.KLDivLoss does; use reduction='batchmean' (sum over the vocabulary, mean over the "
    "leading dimension) or 'token_mean' (mean over unmasked positions) for the KL divergence."
)


@dataclass(frozen=True)
class Divergence:
    """Which divergence a kernel computes and how each side becomes log-probabilities.

    Attributes:
        name: ``"forward"`` for KL(P‖Q), ``"reverse"`` for KL(Q‖P), ``"jsd"`` for the generalized
            Jensen–Shannon divergence β·KL(P‖M) + (1−β)·KL(Q‖M), M = βP + (1−β)Q.
        input_kind: ``"logits"`` or ``"log_probs"``; the input is Q, the model being trained.
        target_kind: ``"logits"``, ``"log_probs"`` or ``"probs"``; the target is P.
        temperature: divides logits on both sides; 1 unless both sides are logits.
        beta: the weight of P in the mixture, used by ``"jsd"`` only, strictly inside (0, 1).
    """

    name: str
    input_kind: str
    target_kind: str
    temperature: float = 1.0
    beta: float = 0.5


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    if value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}"
        )
    return value


def legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """Map torch's deprecated ``size_average``/``reduce`` pair onto a reduction, as torch does."""
    if size_average is None and reduce is None:
        return check_choice("reduction", reduction, REDUCTIONS)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    name = "none" if not reduce else "mean" if size_average else "sum"
    # torch's own message and category (a UserWarning, shown by default).
    warnings.warn(
        f"size_average and reduce args will be deprecated, please use reduction='{name}' instead.",
        UserWarning,
        stacklevel=4,  # the caller of KLDivLoss(...) or kl_div(...)
    )
    return name


def target_kind_from(target_kind: str | None, *, log_target: bool) -> str:
    """Resolve ``target_kind``, defaulting from torch's ``log_target`` flag."""
    if target_kind is None:
        return "log_probs" if log_target else "probs"
    check_choice("target_kind", target_kind, TARGET_KINDS)
    expected = "log_probs" if log_target else "probs"
    if log_target and target_kind != expected:
        raise ValueError(
            f"log_target=True contradicts target_kind={target_kind!r}; pass only one of them"
        )
    return target_kind


def check_temperature(temperature: float, *, input_kind: str, target_kind: str) -> float:
    """Return ``temperature`` as a float after checking it is usable with the kinds."""
    if isinstance(temperature, Tensor) or not math.isfinite(float(temperature)) or temperature <= 0:
        raise ValueError(
            f"temperature must be a finite Python number > 0, got {temperature!r}; "
            "temperature divides logits, so it cannot be zero, negative or a tensor"
        )
    if temperature != 1.0 and (input_kind != "logits" or target_kind != "logits"):
        raise ValueError(
            f"temperature={temperature} divides logits, but input_kind={input_kind!r} and "
            f"target_kind={target_kind!r}; pass logits for both sides to use a temperature"
        )
    return float(temperature)


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float after checking it lies in [0, 1]."""
    if isinstance(beta, Tensor) or not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be a Python number in [0, 1], got {beta!r}")
    return float(beta)


def check_pair(
    input: Tensor, target: Tensor, *, names: tuple[str, str] = ("input", "target")
) -> None:
    """Check that ``input`` and ``target`` are floating tensors of one shape with a vocabulary axis."""
    for name, tensor in zip(names, (input, target), strict=True):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(
                f"{name} has dtype {tensor.dtype}; pass a floating tensor (for example "
                f"{name}.float()), since it holds logits or (log-)probabilities"
            )
        if tensor.ndim == 0:
            raise ValueError(f"{name} is a scalar; it needs a last (vocabulary) axis")
    if input.shape != target.shape:
        raise ValueError(
            f"{names[0]} has shape {tuple(input.shape)} but {names[1]} has shape "
            f"{tuple(target.shape)}; they must match (the last axis is the vocabulary)"
        )


def check_positions(
    tensor: Tensor | None, *, name: str, input: Tensor, integer: bool
) -> Tensor | None:
    """Check that labels or weights have the input's shape without its vocabulary axis."""
    if tensor is None:
        return None
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    expected = tuple(input.shape[:-1])
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}, expected {expected}: the input's shape "
            "without its last (vocabulary) axis, one entry per position"
        )
    if integer and (
        tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool
    ):
        raise TypeError(f"{name} has dtype {tensor.dtype}; labels must be an integer tensor")
    if not integer and not tensor.is_floating_point():
        raise TypeError(f"{name} has dtype {tensor.dtype}; pass a floating tensor of weights")
    return tensor
