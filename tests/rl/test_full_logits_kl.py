"""The exact per-token reverse KL from full logits (the guide's recipe) against float64 NumPy.

When both policies' logits are at hand, ``kl_div(..., direction="reverse")`` and
``FusedLinearKLDivLoss(direction="reverse")`` give KL(π_θ(·|s_t)‖π_ref(·|s_t)) at every position
exactly; its gradient is the expectation of `kl_penalty`'s token-level ``"reverse_kl"`` gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kldiv.torch import FusedLinearKLDivLoss, kl_div, kl_penalty

TOKENS, HIDDEN, VOCAB = 6, 8, 11


def numpy_log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def numpy_reverse_kl(policy_logits: np.ndarray, ref_logits: np.ndarray) -> np.ndarray:
    log_p, log_r = numpy_log_softmax(policy_logits), numpy_log_softmax(ref_logits)
    return (np.exp(log_p) * (log_p - log_r)).sum(-1)


def numpy_reverse_kl_grad(policy_logits: np.ndarray, ref_logits: np.ndarray) -> np.ndarray:
    """d KL(p‖r) / d logits = p ⊙ (log p − log r − KL), per row."""
    log_p, log_r = numpy_log_softmax(policy_logits), numpy_log_softmax(ref_logits)
    kl = numpy_reverse_kl(policy_logits, ref_logits)[:, None]
    return np.exp(log_p) * (log_p - log_r - kl)


@pytest.fixture
def model() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    return {
        "hidden": randn(TOKENS, HIDDEN),
        "weight": randn(VOCAB, HIDDEN),
        "ref_hidden": randn(TOKENS, HIDDEN),
        "ref_weight": randn(VOCAB, HIDDEN),
        "labels": torch.tensor([1, 4, -100, 0, 7, -100]),
    }


def test_kl_div_reverse_from_logits(model):
    policy_logits = (model["hidden"] @ model["weight"].T).requires_grad_()
    ref_logits = model["ref_hidden"] @ model["ref_weight"].T
    per_token = kl_div(
        policy_logits,
        ref_logits,
        input_kind="logits",
        target_kind="logits",
        direction="reverse",
        reduction="none",
    )
    expected = numpy_reverse_kl(policy_logits.detach().numpy(), ref_logits.numpy())
    np.testing.assert_allclose(per_token.detach().numpy(), expected, rtol=1e-10, atol=1e-13)
    real = model["labels"] != -100
    loss = kl_div(
        policy_logits,
        ref_logits,
        input_kind="logits",
        target_kind="logits",
        direction="reverse",
        labels=model["labels"],
        reduction="token_mean",
    )
    np.testing.assert_allclose(loss.item(), expected[real.numpy()].mean(), rtol=1e-10)
    (grad,) = torch.autograd.grad(loss, policy_logits)
    grad_expected = numpy_reverse_kl_grad(policy_logits.detach().numpy(), ref_logits.numpy())
    grad_expected = np.where(real.numpy()[:, None], grad_expected, 0.0) / int(real.sum())
    np.testing.assert_allclose(grad.numpy(), grad_expected, rtol=1e-9, atol=1e-13)


def test_fused_linear_reverse_from_hidden_states(model):
    hidden = model["hidden"].clone().requires_grad_()
    loss = FusedLinearKLDivLoss(direction="reverse", reduction="token_mean")(
        hidden, model["weight"], model["ref_hidden"], model["ref_weight"], model["labels"]
    )
    policy_logits = model["hidden"].numpy() @ model["weight"].numpy().T
    ref_logits = model["ref_hidden"].numpy() @ model["ref_weight"].numpy().T
    real = (model["labels"] != -100).numpy()
    np.testing.assert_allclose(
        loss.item(), numpy_reverse_kl(policy_logits, ref_logits)[real].mean(), rtol=1e-10
    )
    (grad,) = torch.autograd.grad(loss, hidden)
    grad_logits = np.where(real[:, None], numpy_reverse_kl_grad(policy_logits, ref_logits), 0.0)
    np.testing.assert_allclose(
        grad.numpy(), grad_logits @ model["weight"].numpy() / real.sum(), rtol=1e-9, atol=1e-13
    )


def test_exact_kl_gradient_is_the_expectation_of_the_sampled_penalty(model):
    # Σ_a π(a|s_t)·∇kl_penalty(token a) = ∇KL(π(·|s_t)‖π_ref(·|s_t)), row by row.
    policy_logits = (model["hidden"] @ model["weight"].T).requires_grad_()
    ref_logits = model["ref_hidden"] @ model["ref_weight"].T
    log_p, log_r = policy_logits.log_softmax(-1), ref_logits.log_softmax(-1)
    expected_penalty = (log_p.detach().exp() * kl_penalty(log_p, log_r, estimator="k3")).sum()
    exact = kl_div(
        policy_logits,
        ref_logits,
        input_kind="logits",
        target_kind="logits",
        direction="reverse",
        reduction="sum",
    )
    sampled = torch.autograd.grad(expected_penalty, policy_logits, retain_graph=True)[0]
    torch.testing.assert_close(sampled, torch.autograd.grad(exact, policy_logits)[0])
