"""`kl_penalty`: reductions, masks, extreme inputs, dtypes, gradcheck, Monte Carlo and errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from kldiv.estimate._log_ratio import log_ratio_terms
from kldiv.torch import kl_penalty

ESTIMATORS = ("k1", "k2", "k3", "abs")
GRADIENTS = ("reverse_kl", "estimator", "none")


def batch(dtype: torch.dtype = torch.float64, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (3, 5)
    ref = -3 * torch.rand(shape, generator=generator, dtype=torch.float64)
    logprobs = ref + torch.randn(shape, generator=generator, dtype=torch.float64)
    behavior = ref + 0.5 * torch.randn(shape, generator=generator, dtype=torch.float64)
    mask = torch.tensor(
        [[True, True, True, False, False], [True, True, True, True, True], [False] * 5]
    )
    return {
        "logprobs": logprobs.to(dtype).requires_grad_(),
        "ref": ref.to(dtype),
        "behavior": behavior.to(dtype),
        "mask": mask,
    }


def numpy_values(x: dict[str, torch.Tensor], estimator: str) -> np.ndarray:
    d = x["logprobs"].detach().double().numpy() - x["ref"].double().numpy()
    values = {"k1": d, "k2": 0.5 * d**2, "k3": np.exp(-d) - 1 + d, "abs": np.abs(d)}[estimator]
    return np.where(x["mask"].numpy(), values, 0.0)


# ---- values, masks and reductions ----------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("gradient", GRADIENTS)
def test_values_against_numpy_masked_exactly_zero(estimator, gradient):
    x = batch()
    out = kl_penalty(
        x["logprobs"], x["ref"], estimator=estimator, gradient=gradient, mask=x["mask"]
    )
    np.testing.assert_allclose(
        out.detach().numpy(), numpy_values(x, estimator), rtol=1e-13, atol=1e-15
    )
    assert torch.equal(
        out.detach()[~x["mask"]], torch.zeros(int((~x["mask"]).sum()), dtype=out.dtype)
    )


@pytest.mark.parametrize(
    "reduction", ["sum", "token_mean", "seq_mean_token_mean", "seq_mean_token_sum"]
)
@pytest.mark.parametrize("gradient", GRADIENTS)
def test_reductions_against_numpy(reduction, gradient):
    x = batch()
    values = numpy_values(x, "k3")
    real = x["mask"].numpy()
    counts = real.sum(-1)
    expected = {
        "sum": values.sum(),
        "token_mean": values.sum() / real.sum(),
        # a sequence without real tokens counts 0 and still counts as a sequence
        "seq_mean_token_mean": np.mean(values.sum(-1) / np.maximum(counts, 1)),
        "seq_mean_token_sum": np.mean(values.sum(-1)),
    }[reduction]
    out = kl_penalty(
        x["logprobs"], x["ref"], mask=x["mask"], reduction=reduction, gradient=gradient
    )
    assert out.shape == ()
    np.testing.assert_allclose(out.item(), expected, rtol=1e-13)


@pytest.mark.parametrize("reduction", ["token_mean", "seq_mean_token_mean"])
def test_reductions_without_mask(reduction):
    x = batch()
    values = numpy_values({**x, "mask": torch.ones_like(x["mask"])}, "k2")
    out = kl_penalty(x["logprobs"], x["ref"], estimator="k2", reduction=reduction)
    np.testing.assert_allclose(out.item(), values.mean(), rtol=1e-13)


@pytest.mark.parametrize("divisor", [7, torch.tensor(7.0), torch.tensor([7])])
def test_token_mean_with_num_items_in_batch(divisor):
    x = batch()
    out = kl_penalty(
        x["logprobs"], x["ref"], mask=x["mask"], reduction="token_mean", num_items_in_batch=divisor
    )
    np.testing.assert_allclose(out.item(), numpy_values(x, "k3").sum() / 7, rtol=1e-13)
    assert out.shape == ()


def test_reduced_gradient_is_the_sum_of_per_token_gradients():
    x = batch()
    for reduction, scale in (("sum", 1.0), ("token_mean", 1 / 8)):
        out = kl_penalty(x["logprobs"], x["ref"], mask=x["mask"], reduction=reduction)
        (grad,) = torch.autograd.grad(out, x["logprobs"])
        d = (x["logprobs"] - x["ref"]).detach()
        torch.testing.assert_close(grad, scale * torch.where(x["mask"], d, 0.0))


def test_sequence_level_coefficient_is_the_masked_reward_to_go():
    x = batch()
    out = kl_penalty(x["logprobs"], x["ref"], mask=x["mask"], level="sequence", reduction="sum")
    (grad,) = torch.autograd.grad(out, x["logprobs"])
    d = np.where(x["mask"].numpy(), (x["logprobs"] - x["ref"]).detach().numpy(), 0.0)
    to_go = np.flip(np.cumsum(np.flip(d, -1), -1), -1)
    np.testing.assert_allclose(grad.numpy(), np.where(x["mask"].numpy(), to_go, 0.0), rtol=1e-13)


def test_inputs_are_not_modified_and_ref_gets_no_gradient():
    x = batch()
    ref = x["ref"].clone().requires_grad_()
    behavior = x["behavior"].clone().requires_grad_()
    before = [t.detach().clone() for t in (x["logprobs"], ref, behavior)]
    for gradient in ("reverse_kl", "estimator"):
        out = kl_penalty(
            x["logprobs"], ref, behavior_logprobs=behavior, gradient=gradient, reduction="sum"
        )
        grads = torch.autograd.grad(out, (x["logprobs"], ref, behavior), allow_unused=True)
        assert grads[1] is None
        assert grads[2] is None
    for tensor, copy in zip((x["logprobs"], ref, behavior), before, strict=True):
        assert torch.equal(tensor.detach(), copy)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_values_agree_with_kldiv_estimate_log_ratio_terms(estimator):
    # The same estimators of kldiv.estimate, where log r = log q − log p = −d.
    x = batch()
    out = kl_penalty(x["logprobs"], x["ref"], estimator=estimator, gradient="none")
    log_r = (x["ref"] - x["logprobs"]).detach().numpy()
    np.testing.assert_allclose(out.numpy(), log_ratio_terms(log_r, estimator), rtol=1e-12)


# ---- extreme inputs, dtypes ----------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("gradient", ["reverse_kl", "estimator"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_log_ratios_stay_finite(estimator, gradient, level, dtype):
    inf, nan = math.inf, math.nan
    logprobs = torch.tensor([[-80.0, 0.0, -inf, -1.0, -inf, nan]], dtype=dtype, requires_grad=True)
    ref = torch.tensor([[0.0, -80.0, -1.0, -inf, nan, -inf]], dtype=dtype)
    mask = torch.tensor([[True, True, True, True, False, False]])
    behavior = torch.tensor([[-1.0, -80.0, 0.0, -inf, nan, nan]], dtype=dtype)
    out = kl_penalty(
        logprobs,
        ref,
        estimator=estimator,
        gradient=gradient,
        level=level,
        mask=mask,
        behavior_logprobs=behavior if level == "token" else None,
        reduction="sum",
    )
    (grad,) = torch.autograd.grad(out, logprobs)
    assert torch.isfinite(out)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[~mask], torch.zeros(2, dtype=dtype))


def test_nan_at_a_real_token_propagates():
    # A NaN log-prob of a real token is an upstream error; it is not hidden.
    logprobs = torch.tensor([math.nan, -1.0])
    out = kl_penalty(logprobs, torch.tensor([-1.0, -1.0]))
    assert torch.isnan(out[0])
    assert out[1] == 0


def test_clamped_log_ratio_values():
    logprobs = torch.tensor([-80.0, 0.0], dtype=torch.float64)
    ref = torch.tensor([0.0, -80.0], dtype=torch.float64)
    out = kl_penalty(logprobs, ref, log_ratio_clip=20.0)
    d = torch.tensor([-20.0, 20.0], dtype=torch.float64)
    torch.testing.assert_close(out, torch.expm1(-d) + d)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_computed_in_float32(dtype):
    x = batch(dtype)
    out = kl_penalty(x["logprobs"], x["ref"], mask=x["mask"], behavior_logprobs=x["behavior"])
    assert out.dtype == torch.float32
    rounded = {k: v.detach().double() if v.is_floating_point() else v for k, v in x.items()}
    reference = kl_penalty(
        rounded["logprobs"], rounded["ref"], mask=x["mask"], behavior_logprobs=rounded["behavior"]
    )
    torch.testing.assert_close(out.double(), reference, rtol=2e-6, atol=1e-7)
    (grad,) = torch.autograd.grad(out.sum(), x["logprobs"])
    assert grad.dtype == dtype


def test_float64_wins():
    x = batch(torch.float32)
    out = kl_penalty(x["logprobs"], x["ref"].double())
    assert out.dtype == torch.float64


# ---- gradcheck -----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("off_policy", [False, True])
@pytest.mark.parametrize("reduction", ["none", "token_mean", "seq_mean_token_mean"])
def test_gradcheck_estimator_mode(estimator, off_policy, reduction):
    x = batch()
    behavior = x["behavior"] if off_policy else None

    def f(logprobs: torch.Tensor) -> torch.Tensor:
        return kl_penalty(
            logprobs,
            x["ref"],
            estimator=estimator,
            gradient="estimator",
            mask=x["mask"],
            behavior_logprobs=behavior,
            importance_clip=1.5 if off_policy else None,
            reduction=reduction,
        )

    assert torch.autograd.gradcheck(f, (x["logprobs"],))
    assert torch.autograd.gradgradcheck(f, (x["logprobs"],))


def test_gradcheck_reverse_kl_mode_where_it_equals_autograd_of_k2():
    # On-policy token level, ∇k2 = d·∇ℓ is the reverse-KL surrogate itself.
    x = batch()

    def f(logprobs: torch.Tensor) -> torch.Tensor:
        return kl_penalty(logprobs, x["ref"], estimator="k2", mask=x["mask"], reduction="sum")

    assert torch.autograd.gradcheck(f, (x["logprobs"],))


# ---- Monte Carlo ---------------------------------------------------------------------------


def test_on_policy_k3_value_is_unbiased_monte_carlo():
    generator = torch.Generator().manual_seed(1234)
    log_p = (2 * torch.randn(10, generator=generator, dtype=torch.float64)).log_softmax(-1)
    log_r = (2 * torch.randn(10, generator=generator, dtype=torch.float64)).log_softmax(-1)
    p = log_p.exp()
    exact_kl = float((p * (log_p - log_r)).sum())
    d = log_p - log_r
    k3 = torch.expm1(-d) + d
    sigma = float(((p * k3**2).sum() - exact_kl**2).sqrt())  # exact std of one k3 sample
    n = 200_000
    tokens = torch.multinomial(p, n, replacement=True, generator=generator)
    mean = float(kl_penalty(log_p[tokens], log_r[tokens], gradient="none", reduction="token_mean"))
    # 5 standard errors: a false failure (two-sided, CLT) has probability ≈ 5.7e-7.
    assert abs(mean - exact_kl) < 5 * sigma / math.sqrt(n)


# ---- errors --------------------------------------------------------------------------------


def error(match: str) -> object:
    return pytest.raises((ValueError, TypeError), match=re.escape(match))


def test_unknown_choices_list_them():
    x = batch()
    lp, ref = x["logprobs"], x["ref"]
    with error(
        "unknown estimator 'k4'; expected one of 'k1', 'k2', 'k3', 'abs', 'kl', 'mse', 'low_var_kl'"
    ):
        kl_penalty(lp, ref, estimator="k4")
    with error("unknown gradient 'forward_kl'; expected one of 'reverse_kl', 'estimator', 'none'"):
        kl_penalty(lp, ref, gradient="forward_kl")
    with error("unknown level 'batch'; expected one of 'token', 'sequence'"):
        kl_penalty(lp, ref, level="batch")
    with error(
        "unknown reduction 'mean'; expected one of 'none', 'sum', 'token_mean', "
        "'seq_mean_token_mean', 'seq_mean_token_sum'"
    ):
        kl_penalty(lp, ref, reduction="mean")


def test_shape_and_type_errors():
    x = batch()
    lp, ref = x["logprobs"], x["ref"]
    with error("logprobs has shape (3, 5) but ref_logprobs has shape (3, 4); they must match"):
        kl_penalty(lp, ref[:, :4])
    with error("logprobs has shape (3, 5) but behavior_logprobs has shape (5,); they must match"):
        kl_penalty(lp, ref, behavior_logprobs=ref[0])
    with error("logprobs has shape (3, 5) but mask has shape (3, 1); they must match"):
        kl_penalty(lp, ref, mask=x["mask"][:, :1])
    with error("mask has dtype torch.int64; it must be a bool tensor with True at real tokens"):
        kl_penalty(lp, ref, mask=x["mask"].long())
    with error("mask must be a torch.Tensor, got list"):
        kl_penalty(lp, ref, mask=[[True]])
    with error("ref_logprobs must be a torch.Tensor, got ndarray"):
        kl_penalty(lp, ref.numpy())
    with error("ref_logprobs has dtype torch.int64; pass floating log-probabilities"):
        kl_penalty(lp, ref.long())
    with error("logprobs is a scalar; it needs a last axis of tokens"):
        kl_penalty(lp[0, 0], ref[0, 0])


def test_off_policy_sequence_level_explains_why():
    x = batch()
    with error("level='sequence' is on-policy only"):
        kl_penalty(x["logprobs"], x["ref"], level="sequence", behavior_logprobs=x["behavior"])
    with error("product of the importance weights π_θ/μ of all later tokens"):
        kl_penalty(x["logprobs"], x["ref"], level="sequence", behavior_logprobs=x["behavior"])


@pytest.mark.parametrize("clip", [0, -1.0, math.inf, math.nan, True])
def test_bad_importance_clip(clip):
    x = batch()
    with error(f"importance_clip must be a finite Python number > 0, got {clip!r}"):
        kl_penalty(x["logprobs"], x["ref"], behavior_logprobs=x["behavior"], importance_clip=clip)


def test_importance_clip_needs_behavior_logprobs():
    x = batch()
    with error(
        "importance_clip clips the importance weight w = π_θ/μ, which needs behavior_logprobs"
    ):
        kl_penalty(x["logprobs"], x["ref"], importance_clip=2.0)


@pytest.mark.parametrize("clip", [0.0, -5, 61.0, math.inf, math.nan, None, "20", False])
def test_bad_log_ratio_clip(clip):
    x = batch()
    with error(f"log_ratio_clip must be a Python number in (0, 60], got {clip!r}"):
        kl_penalty(x["logprobs"], x["ref"], log_ratio_clip=clip)


def test_num_items_in_batch_errors():
    x = batch()
    lp, ref = x["logprobs"], x["ref"]
    with error(
        "num_items_in_batch is the global number of real tokens that 'token_mean' divides by, but reduction='seq_mean_token_mean'"
    ):
        kl_penalty(lp, ref, reduction="seq_mean_token_mean", num_items_in_batch=4)
    with error("num_items_in_batch must be ≥ 1, got 0"):
        kl_penalty(lp, ref, reduction="token_mean", num_items_in_batch=0)
    with error("num_items_in_batch must be an int or a one-element tensor, got float"):
        kl_penalty(lp, ref, reduction="token_mean", num_items_in_batch=4.0)
    with error("num_items_in_batch has shape (2,); pass a one-element tensor"):
        kl_penalty(lp, ref, reduction="token_mean", num_items_in_batch=torch.tensor([1, 2]))


def test_fullgraph_compile_matches_eager():
    # aot_eager traces forward and backward (the custom gradient included) without codegen.
    torch._dynamo.reset()
    x = batch()

    def penalty(logprobs: torch.Tensor) -> torch.Tensor:
        token = kl_penalty(
            logprobs,
            x["ref"],
            behavior_logprobs=x["behavior"],
            mask=x["mask"],
            importance_clip=2.0,
            reduction="token_mean",
            num_items_in_batch=torch.tensor(6.0),
        )
        sequence = kl_penalty(
            logprobs, x["ref"], level="sequence", mask=x["mask"], reduction="seq_mean_token_mean"
        )
        return token + sequence

    compiled = torch.compile(penalty, fullgraph=True, backend="aot_eager")
    value = compiled(x["logprobs"])
    (grad,) = torch.autograd.grad(value, x["logprobs"])
    eager = penalty(x["logprobs"])
    (eager_grad,) = torch.autograd.grad(eager, x["logprobs"])
    torch.testing.assert_close(value, eager)
    torch.testing.assert_close(grad, eager_grad)
