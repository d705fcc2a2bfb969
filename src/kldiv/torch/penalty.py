r"""`kl_penalty`: the KL term of RL fine-tuning (PPO, GRPO, RLOO) from sampled tokens' log-probs.

An RL trainer only has the log-probabilities of the sampled tokens under the policy
$\pi_\theta$, the reference $\pi_{\mathrm{ref}}$ and, off-policy, the behaviour policy $\mu$ that
sampled them. From $d = \log\pi_\theta(a) - \log\pi_{\mathrm{ref}}(a)$ the estimators of
$\mathrm{KL}(\pi_\theta\,\|\,\pi_{\mathrm{ref}})$ are (Schulman, 2020)

$$
k_1 = d, \qquad k_2 = \tfrac12 d^2, \qquad k_3 = e^{-d} - 1 + d, \qquad \mathrm{abs} = |d|.
$$

Their *values* are what a trainer logs or subtracts from the reward; their *autograd gradients*
are another matter: on-policy, $\nabla k_1$ has expectation 0 and $\nabla k_3$ has expectation
$\nabla\mathrm{KL}(\pi_{\mathrm{ref}}\,\|\,\pi_\theta)$, the forward KL. `kl_penalty` keeps the
chosen estimator's value and, by default, attaches the score-function gradient whose
expectation is $\nabla\mathrm{KL}(\pi_\theta\,\|\,\pi_{\mathrm{ref}})$ (Tang & Munos, 2025).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from kldiv.torch._kernels import compute_dtype
from kldiv.torch._options import check_choice

Tensor = torch.Tensor

__all__ = ["kl_penalty"]

ESTIMATORS = ("k1", "k2", "k3", "abs")
ESTIMATOR_ALIASES = {"kl": "k1", "mse": "k2", "low_var_kl": "k3"}
GRADIENTS = ("reverse_kl", "estimator", "none")
LEVELS = ("token", "sequence")
PENALTY_REDUCTIONS = ("none", "sum", "token_mean", "seq_mean_token_mean", "seq_mean_token_sum")

# exp(60) ≈ 1.1e26 leaves a factor e^28 ≈ 1e12 below float32's largest value (≈ e^88.7), so
# that sums of clamped values over any realistic number of tokens stay finite.
MAX_LOG_RATIO_CLIP = 60.0

_FORMULAS: dict[str, Callable[[Tensor], Tensor]] = {
    "k1": lambda d: d,
    "k2": lambda d: 0.5 * d * d,
    "k3": lambda d: torch.expm1(-d) + d,
    "abs": torch.abs,
}


class _ScoreGradient(torch.autograd.Function):
    """Zero in forward; in backward, ``coefficient`` times the upstream gradient for log-probs.

    Adding it to a detached value leaves the value unchanged and gives ``logprobs`` the gradient
    ``coefficient · ∇ℓ``, without the ``ℓ − ℓ.detach()`` subtraction that is NaN for ``ℓ = −∞``.
    """

    @staticmethod
    def forward(logprobs: Tensor, coefficient: Tensor) -> Tensor:
        return torch.zeros_like(coefficient)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (coefficient,) = ctx.saved_tensors
        return grad * coefficient, None


def _estimator_name(estimator: str) -> str:
    if isinstance(estimator, str) and estimator in ESTIMATOR_ALIASES:
        return ESTIMATOR_ALIASES[estimator]
    return check_choice("estimator", estimator, ESTIMATORS + tuple(ESTIMATOR_ALIASES))


def _check_log_ratio_clip(log_ratio_clip: float) -> float:
    if (
        isinstance(log_ratio_clip, bool)
        or not isinstance(log_ratio_clip, int | float)
        or not 0.0 < log_ratio_clip <= MAX_LOG_RATIO_CLIP
    ):
        raise ValueError(
            f"log_ratio_clip must be a Python number in (0, {MAX_LOG_RATIO_CLIP:g}], got "
            f"{log_ratio_clip!r}; it bounds |log-ratio| before exp, so exp stays finite in "
            "float32 (the default 20 is verl's)"
        )
    return float(log_ratio_clip)


def _check_importance_clip(importance_clip: float | None, off_policy: bool) -> float | None:
    if importance_clip is None:
        return None
    if (
        isinstance(importance_clip, bool)
        or not isinstance(importance_clip, int | float)
        or not math.isfinite(importance_clip)
        or importance_clip <= 0
    ):
        raise ValueError(
            f"importance_clip must be a finite Python number > 0, got {importance_clip!r}; it is "
            "the upper clip of the importance weight w = π_θ/μ"
        )
    if not off_policy:
        raise ValueError(
            "importance_clip clips the importance weight w = π_θ/μ, which needs "
            "behavior_logprobs; pass behavior_logprobs=log μ(a), or drop importance_clip"
        )
    return float(importance_clip)


def _check_tensors(logprobs: Any, named: dict[str, Any], mask: Any) -> None:
    for name, tensor in {"logprobs": logprobs, **named}.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(
                f"{name} has dtype {tensor.dtype}; pass floating log-probabilities "
                f"(for example {name}.float())"
            )
        if tensor.shape != logprobs.shape:
            raise ValueError(
                f"logprobs has shape {tuple(logprobs.shape)} but {name} has shape "
                f"{tuple(tensor.shape)}; they must match, one entry per sampled token"
            )
    if logprobs.ndim == 0:
        raise ValueError("logprobs is a scalar; it needs a last axis of tokens")
    if mask is None:
        return
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask has dtype {mask.dtype}; it must be a bool tensor with True at real tokens "
            "(for example attention_mask.bool())"
        )
    if mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs has shape {tuple(logprobs.shape)} but mask has shape "
            f"{tuple(mask.shape)}; they must match, one entry per sampled token"
        )


def _check_num_items(num_items_in_batch: int | Tensor | None, reduction: str) -> None:
    if num_items_in_batch is None:
        return
    if reduction != "token_mean":
        raise ValueError(
            f"num_items_in_batch is the global number of real tokens that 'token_mean' divides "
            f"by, but reduction={reduction!r}; use reduction='token_mean' with it"
        )
    if isinstance(num_items_in_batch, Tensor):
        if num_items_in_batch.numel() != 1:
            raise ValueError(
                f"num_items_in_batch has shape {tuple(num_items_in_batch.shape)}; pass a "
                "one-element tensor (or an int) holding the number of real tokens"
            )
        return
    if isinstance(num_items_in_batch, bool) or not isinstance(num_items_in_batch, int):
        raise TypeError(
            f"num_items_in_batch must be an int or a one-element tensor, got "
            f"{type(num_items_in_batch).__name__}"
        )
    if num_items_in_batch < 1:
        raise ValueError(f"num_items_in_batch must be ≥ 1, got {num_items_in_batch}")


def _reduce(
    values: Tensor, reduction: str, mask: Tensor | None, num_items_in_batch: int | Tensor | None
) -> Tensor:
    """Reduce per-token values (0 at masked tokens) as verl's ``agg_loss`` modes do."""
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    if reduction == "token_mean":
        if isinstance(num_items_in_batch, Tensor):
            return values.sum() / num_items_in_batch.to(values.device, values.dtype).reshape(())
        if num_items_in_batch is not None:
            return values.sum() / num_items_in_batch
        if mask is None:
            return values.sum() / max(values.numel(), 1)
        return values.sum() / mask.sum().clamp_min(1).to(values.dtype)
    length = values.shape[-1]
    per_sequence = values.reshape(-1, length).sum(-1)
    if reduction == "seq_mean_token_mean":
        counts = (
            torch.full_like(per_sequence, max(length, 1))
            if mask is None
            else mask.reshape(-1, length).sum(-1).clamp_min(1).to(values.dtype)
        )
        per_sequence = per_sequence / counts
    return per_sequence.sum() / max(per_sequence.numel(), 1)


def kl_penalty(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    /,
    *,
    estimator: str = "k3",
    gradient: str = "reverse_kl",
    level: str = "token",
    behavior_logprobs: Tensor | None = None,
    importance_clip: float | None = None,
    log_ratio_clip: float = 20.0,
    mask: Tensor | None = None,
    reduction: str = "none",
    num_items_in_batch: int | Tensor | None = None,
) -> Tensor:
    r"""KL penalty against a reference policy from the sampled tokens' log-probabilities.

    Per sampled token $a$, with $\ell = \log\pi_\theta(a)$, $\ell_{\mathrm{ref}} =
    \log\pi_{\mathrm{ref}}(a)$ and the log-ratio $d = \ell - \ell_{\mathrm{ref}}$ clamped to
    $[-c, c]$ ($c$ = ``log_ratio_clip``), the value is the estimator

    $$
    k_1 = d, \qquad k_2 = \tfrac12 d^2, \qquad k_3 = e^{-d} - 1 + d, \qquad \mathrm{abs} = |d|,
    $$

    times $w = \min(\pi_\theta(a)/\mu(a),\ \text{importance\_clip})$ when the tokens were
    sampled from a behaviour policy $\mu$ (``behavior_logprobs``). With
    ``gradient="reverse_kl"`` the gradient with respect to ``logprobs`` is, whatever the
    estimator, the score-function form whose expectation over the sampled tokens is the gradient
    of the reverse KL:

    $$
    \text{token level: } \; w\,k_1 \,\nabla\ell_t, \qquad
    \text{sequence level: } \; \Big(\sum_{t' \ge t} k_{1,t'}\Big) \nabla\ell_t ,
    $$

    i.e. $\nabla \sum_t \mathrm{KL}(\pi_\theta(\cdot|s_t)\,\|\,\pi_{\mathrm{ref}}(\cdot|s_t))$
    with the states held fixed (token), or $\nabla\mathrm{KL}(\pi_\theta(y)\,\|\,
    \pi_{\mathrm{ref}}(y))$ of whole sequences along the last axis (sequence, on-policy only).

    Args:
        logprobs: ``(..., tokens)`` floating, $\log\pi_\theta$ of the sampled tokens, with
            gradient.
        ref_logprobs: same shape, $\log\pi_{\mathrm{ref}}$ of the same tokens (no gradient
            reaches it).
        estimator: ``"k1"``, ``"k2"``, ``"k3"`` or ``"abs"``; aliases ``"kl"`` (k1), ``"mse"``
            (k2) and ``"low_var_kl"`` (k3), verl's names.
        gradient: ``"reverse_kl"`` (above); ``"estimator"``: plain autograd of the value's
            formula ($w$ included), what TRL, verl and OpenRLHF compute; ``"none"``: a detached
            value, for KL-in-reward shaping.
        level: ``"token"`` or ``"sequence"``; changes only the ``"reverse_kl"`` gradient.
        behavior_logprobs: same shape, $\log\mu$ of the tokens when they were not sampled from
            $\pi_\theta$ (a rollout engine, $\pi_{\text{old}}$); no gradient reaches it.
        importance_clip: upper clip of $w$; a clipped token uses the clipped weight, which then
            carries no gradient. Requires ``behavior_logprobs``.
        log_ratio_clip: $c$ in (0, 60], the bound on $|d|$ and $|\log w|$ before any exp.
        mask: bool, same shape, True at real tokens. Masked tokens give exactly 0 and a zero
            gradient even where their log-probs are ``-inf`` or NaN.
        reduction: ``"none"``; ``"sum"``; ``"token_mean"`` (sum over real tokens / their
            number, or / ``num_items_in_batch``); ``"seq_mean_token_mean"`` (mean over
            sequences of each one's token mean; a sequence without real tokens counts 0);
            ``"seq_mean_token_sum"`` (mean over sequences of each one's token sum). A sequence
            is a row along the last axis.
        num_items_in_batch: the number ``"token_mean"`` divides by, e.g. the real tokens of
            all data-parallel ranks and accumulation steps; an int or a one-element tensor (used
            on its device, without a host synchronization).

    Returns:
        Per-token values of ``logprobs``' shape for ``reduction="none"``, else a scalar. The
        dtype is float32 for float16, bfloat16 and float32 inputs (computed in float32) and
        float64 when any input is float64.

    Raises:
        ValueError: an unknown estimator, gradient, level or reduction; shapes that differ;
            ``level="sequence"`` with ``behavior_logprobs``; a bad ``importance_clip``,
            ``log_ratio_clip`` or ``num_items_in_batch``.
        TypeError: a non-tensor or non-floating input, or a mask that is not bool.

    Notes:
        ``level="sequence"`` needs tokens sampled from $\pi_\theta$ itself: off-policy, the
        reward-to-go of token $t$ would need the product of the weights $\pi_\theta/\mu$ of
        all later tokens, whose variance grows with the length. At real tokens, $\pm\infty$
        log-ratios are clamped; a NaN log-prob at a real token propagates.

    Examples:
        >>> import torch
        >>> from kldiv.torch import kl_penalty
        >>> logprobs = torch.tensor([[-0.5, -1.0, -2.0]], requires_grad=True)
        >>> ref = torch.tensor([[-0.7, -1.0, -1.0]])
        >>> mask = torch.tensor([[True, True, False]])
        >>> penalty = kl_penalty(logprobs, ref, mask=mask)  # k3 values, reverse-KL gradient
        >>> penalty
        tensor([[0.0187, 0.0000, 0.0000]], grad_fn=<AddBackward0>)
        >>> penalty.sum().backward()
        >>> logprobs.grad  # k1 = d per real token
        tensor([[0.2000, 0.0000, 0.0000]])

    References:
        J. Schulman (2020), "Approximating KL divergence", http://joschu.net/blog/kl-approx.html.
        Y. Tang and R. Munos (2025), "On a few pitfalls in KL divergence gradient estimation
        for RL", arXiv:2506.09477.
    """
    name = _estimator_name(estimator)
    check_choice("gradient", gradient, GRADIENTS)
    check_choice("level", level, LEVELS)
    check_choice("reduction", reduction, PENALTY_REDUCTIONS)
    clip = _check_log_ratio_clip(log_ratio_clip)
    off_policy = behavior_logprobs is not None
    weight_clip = _check_importance_clip(importance_clip, off_policy)
    others = {"ref_logprobs": ref_logprobs}
    if behavior_logprobs is not None:
        others["behavior_logprobs"] = behavior_logprobs
    _check_tensors(logprobs, others, mask)
    if level == "sequence" and off_policy:
        raise ValueError(
            "level='sequence' is on-policy only: with tokens sampled from a behaviour policy, "
            "the reward-to-go of each token would need the product of the importance weights "
            "π_θ/μ of all later tokens, whose variance grows with the sequence length; use "
            "level='token' with behavior_logprobs, or pass log-probs of tokens sampled from π_θ"
        )
    _check_num_items(num_items_in_batch, reduction)

    dtype = compute_dtype(logprobs.dtype)
    for tensor in others.values():
        dtype = torch.promote_types(dtype, compute_dtype(tensor.dtype))

    def real(tensor: Tensor) -> Tensor:
        # The first half of the double where: masked entries (maybe -inf or NaN) become 0
        # before any arithmetic, so no NaN can reach a gradient through them.
        tensor = tensor.to(dtype)
        return tensor if mask is None else torch.where(mask, tensor, 0.0)

    policy = real(logprobs)
    log_ratio = (policy - real(ref_logprobs).detach()).clamp(-clip, clip)
    values = _FORMULAS[name](log_ratio)
    weight = None
    if behavior_logprobs is not None:
        log_weight = (policy - real(behavior_logprobs).detach()).clamp(-clip, clip)
        weight = log_weight.exp()
        if weight_clip is not None:
            weight = weight.clamp(max=weight_clip)
        values = weight * values
    if mask is not None:
        values = torch.where(mask, values, 0.0)

    if gradient == "none":
        values = values.detach()
    elif gradient == "reverse_kl":
        coefficient = log_ratio.detach()
        if weight is not None:
            coefficient = weight.detach() * coefficient
        if mask is not None:
            coefficient = torch.where(mask, coefficient, 0.0)
        if level == "sequence":
            coefficient = coefficient.flip(-1).cumsum(-1).flip(-1)
            if mask is not None:
                coefficient = torch.where(mask, coefficient, 0.0)
        score: Tensor = _ScoreGradient.apply(policy, coefficient)  # type: ignore[no-untyped-call]
        values = values.detach() + score
    return _reduce(values, reduction, mask, num_items_in_batch)
