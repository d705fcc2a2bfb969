"""`kl_penalty` against the KL terms of TRL, verl and OpenRLHF, written here from their definitions.

The formulas below are restated independently from each project's public source:

- TRL ``GRPOTrainer``: ``per_token_kl = exp(ref − logp) − (ref − logp) − 1`` added as
  ``beta * per_token_kl`` to the per-token loss; aggregation ``"grpo"`` (per-sequence token
  mean, then mean), ``"bnpo"`` (sum / number of real tokens), ``"dr_grpo"`` (sum /
  (batch · max_completion_length)).
- verl ``kl_penalty_forward``: ``"kl"`` = logp − ref, ``"abs"`` = |logp − ref|, ``"mse"`` =
  ½(logp − ref)², ``"low_var_kl"``: kl = clamp(ref − logp, −20, 20), clamp(e^kl − kl − 1,
  −10, 10); a name with a ``"+"`` suffix keeps the value and takes the gradient of ½(logp −
  ref)² (straight-through). ``agg_loss``: ``"token-mean"``, ``"seq-mean-token-sum"``,
  ``"seq-mean-token-mean"``.
- OpenRLHF ``compute_approx_kl``: k1 = logp − ref, k2 = ½(logp − ref)², k3 = e^(ref − logp) − 1
  + (logp − ref); recent versions clamp the result to [−10, 10].
"""

from __future__ import annotations

import pytest
import torch

from kldiv.torch import kl_penalty

BATCH, LENGTH = 4, 6


def inputs(low: float = -2.5, high: float = 2.5) -> dict[str, torch.Tensor]:
    """Log-probs with log-ratios in [low, high] and a ragged right-padding mask."""
    generator = torch.Generator().manual_seed(3)
    ref = -torch.rand(BATCH, LENGTH, generator=generator, dtype=torch.float64) * 4
    shift = low + (high - low) * torch.rand(BATCH, LENGTH, generator=generator, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1, 5])
    mask = torch.arange(LENGTH) < lengths[:, None]
    return {"logprobs": (ref + shift).requires_grad_(), "ref": ref, "mask": mask}


def trl_per_token_kl(logp: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return torch.exp(ref - logp) - (ref - logp) - 1


def trl_aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    m = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token * m).sum() / m.sum().clamp(min=1.0)
    return (per_token * m).sum() / (per_token.shape[0] * per_token.shape[1])  # dr_grpo


def verl_kl_penalty_forward(logp: torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    if name in ("kl", "k1"):
        return logp - ref
    if name == "abs":
        return (logp - ref).abs()
    if name in ("mse", "k2"):
        return 0.5 * (logp - ref).square()
    kl = torch.clamp(ref - logp, min=-20, max=20)
    return torch.clamp(torch.exp(kl) - kl - 1, min=-10, max=10)


def verl_kl_penalty(logp: torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    forward = verl_kl_penalty_forward(logp, ref, name.rstrip("+"))
    if not name.endswith("+"):
        return forward
    backward = 0.5 * (logp - ref).square()
    return backward - backward.detach() + forward.detach()


def verl_agg_loss(loss: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    m = mask.to(loss.dtype)
    if mode == "token-mean":
        return (loss * m).sum() / m.sum()
    if mode == "seq-mean-token-sum":
        return (loss * m).sum(-1).mean()
    return ((loss * m).sum(-1) / m.sum(-1)).mean()  # seq-mean-token-mean


def openrlhf_approx_kl(logp: torch.Tensor, ref: torch.Tensor, estimator: str) -> torch.Tensor:
    log_ratio = logp - ref
    if estimator == "k2":
        log_ratio = log_ratio**2 / 2.0
    elif estimator == "k3":
        log_ratio = (-log_ratio).exp() - 1 + log_ratio
    return log_ratio.clamp(min=-10, max=10)


def value_and_grad(loss: torch.Tensor, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    (grad,) = torch.autograd.grad(loss, logprobs)
    return loss.detach(), grad


@pytest.mark.parametrize(
    ("loss_type", "reduction", "divisor"),
    [
        ("grpo", "seq_mean_token_mean", None),
        ("bnpo", "token_mean", None),
        ("dr_grpo", "token_mean", BATCH * LENGTH),
    ],
)
def test_trl_grpo_beta_term(loss_type, reduction, divisor):
    x = inputs()
    beta = 0.04
    trl = value_and_grad(
        beta * trl_aggregate(trl_per_token_kl(x["logprobs"], x["ref"]), x["mask"], loss_type),
        x["logprobs"],
    )
    ours = value_and_grad(
        beta
        * kl_penalty(
            x["logprobs"],
            x["ref"],
            estimator="k3",
            gradient="estimator",
            mask=x["mask"],
            reduction=reduction,
            num_items_in_batch=divisor,
        ),
        x["logprobs"],
    )
    torch.testing.assert_close(ours, trl)


@pytest.mark.parametrize(
    ("name", "estimator"), [("kl", "k1"), ("abs", "abs"), ("mse", "k2"), ("low_var_kl", "k3")]
)
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_verl_kl_loss_type(name, estimator, mode):
    x = inputs()  # |log-ratio| ≤ 2.5: verl's clamp of k3 at 10 is not reached
    reduction = mode.replace("-", "_")
    verl = value_and_grad(
        verl_agg_loss(verl_kl_penalty(x["logprobs"], x["ref"], name), x["mask"], mode),
        x["logprobs"],
    )
    for alias in (name, estimator):
        ours = value_and_grad(
            kl_penalty(
                x["logprobs"],
                x["ref"],
                estimator=alias,
                gradient="estimator",
                mask=x["mask"],
                reduction=reduction,
            ),
            x["logprobs"],
        )
        torch.testing.assert_close(ours, verl)


@pytest.mark.parametrize("name", ["k1+", "k3+", "low_var_kl+", "abs+"])
def test_verl_straight_through_names_are_the_on_policy_reverse_kl_gradient(name):
    x = inputs()
    verl = value_and_grad(
        verl_agg_loss(verl_kl_penalty(x["logprobs"], x["ref"], name), x["mask"], "token-mean"),
        x["logprobs"],
    )
    estimator = {"k1+": "k1", "k3+": "k3", "low_var_kl+": "low_var_kl", "abs+": "abs"}[name]
    ours = value_and_grad(
        kl_penalty(
            x["logprobs"], x["ref"], estimator=estimator, mask=x["mask"], reduction="token_mean"
        ),
        x["logprobs"],
    )
    torch.testing.assert_close(ours, verl)


def test_verl_low_var_kl_clamps_the_value_at_10_and_kl_penalty_does_not():
    # Where π_θ(a) ≪ π_ref(a) (d ≤ −2.6), verl's k3 stops at 10 and its gradient vanishes.
    logp = torch.tensor([-8.0, -4.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    verl = verl_kl_penalty(logp, ref, "low_var_kl")
    ours = kl_penalty(logp, ref, estimator="low_var_kl", gradient="estimator")
    assert torch.equal(verl.detach(), torch.tensor([10.0, 10.0], dtype=torch.float64))
    d = logp.detach() - ref
    torch.testing.assert_close(ours.detach(), torch.exp(-d) - 1 + d)
    assert torch.equal(
        torch.autograd.grad(verl.sum(), logp)[0], torch.zeros(2, dtype=torch.float64)
    )
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), logp)[0], 1 - torch.exp(-d))


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_openrlhf_compute_approx_kl(estimator):
    x = inputs(-2.0, 2.0)  # inside OpenRLHF's clamp of [−10, 10]
    reference = value_and_grad(
        openrlhf_approx_kl(x["logprobs"], x["ref"], estimator)[x["mask"]].mean(), x["logprobs"]
    )
    ours = value_and_grad(
        kl_penalty(
            x["logprobs"],
            x["ref"],
            estimator=estimator,
            gradient="estimator",
            mask=x["mask"],
            reduction="token_mean",
        ),
        x["logprobs"],
    )
    torch.testing.assert_close(ours, reference)


def test_verl_kl_in_reward_is_the_detached_k1_of_the_rollout_policy():
    # use_kl_in_reward: token_level_rewards = scores − β · kl_penalty(old_log_prob, ref, "kl").
    x = inputs()
    old = x["logprobs"].detach()
    reward = verl_kl_penalty(old, x["ref"], "kl") * x["mask"]
    ours = kl_penalty(old, x["ref"], estimator="kl", gradient="none", mask=x["mask"])
    torch.testing.assert_close(ours, reward)
