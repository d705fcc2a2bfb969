"""`kl_penalty` by exact enumeration in float64: expected values and gradients, no sampling noise.

Every token of a small vocabulary is one "sample"; weighting each token's penalty by its
sampling probability (detached) and back-propagating gives Σ_a p(a)·∇penalty(a), the exact
expectation of the gradient, which is compared with autograd of the exact divergences.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from kldiv.torch import kl_penalty

VOCAB = 5
ESTIMATORS = ("k1", "k2", "k3", "abs")
DTYPE = torch.float64


def logits(seed: int, size: int = VOCAB, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(size, generator=generator, dtype=DTYPE)


@pytest.fixture
def policies() -> dict[str, torch.Tensor]:
    theta = logits(0).requires_grad_()
    return {"theta": theta, "ref": logits(1).log_softmax(-1), "behavior": logits(2).log_softmax(-1)}


def reverse_kl(log_p: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_r)).sum()


def forward_kl(log_p: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    return (log_r.exp() * (log_r - log_p)).sum()


def exact_gradient(theta: torch.Tensor, divergence: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(divergence, theta, retain_graph=True)
    return grad


def expected_penalty(
    theta: torch.Tensor, sampling: torch.Tensor, **options: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (Σ_a p(a)·penalty(a), Σ_a p(a)·∇penalty(a)) with p = exp(sampling) detached."""
    log_p = theta.log_softmax(-1)
    penalty = kl_penalty(log_p, options.pop("ref"), **options)  # type: ignore[arg-type]
    expectation = (sampling.detach().exp() * penalty).sum()
    if not expectation.requires_grad:
        return expectation, torch.zeros_like(theta)
    return expectation.detach(), exact_gradient(theta, expectation)


# ---- values --------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_on_policy_k1_k3_values_are_unbiased(policies, estimator):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    value, _ = expected_penalty(theta, log_p, ref=ref, estimator=estimator, gradient="none")
    torch.testing.assert_close(value, reverse_kl(log_p, ref).detach(), rtol=1e-12, atol=1e-14)


def test_on_policy_k2_value_is_biased(policies):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    value, _ = expected_penalty(theta, log_p, ref=ref, estimator="k2", gradient="none")
    exact = reverse_kl(log_p, ref).detach()
    # ½ E[d²] is a second-order approximation only: off by more than 5 % here.
    assert abs(value - exact) > 0.05 * exact


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_off_policy_weighted_values_are_unbiased(policies, estimator):
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    value, _ = expected_penalty(
        theta, behavior, ref=ref, estimator=estimator, gradient="none", behavior_logprobs=behavior
    )
    torch.testing.assert_close(value, reverse_kl(log_p, ref).detach(), rtol=1e-12, atol=1e-14)


# ---- gradients, on-policy ------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_on_policy_reverse_kl_gradient_whatever_the_estimator(policies, estimator):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(theta, log_p, ref=ref, estimator=estimator)
    torch.testing.assert_close(grad, exact_gradient(theta, reverse_kl(log_p, ref)))


def test_on_policy_autograd_of_k1_has_zero_expectation(policies):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(theta, log_p, ref=ref, estimator="k1", gradient="estimator")
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-15)


def test_on_policy_autograd_of_k2_is_the_reverse_kl_gradient(policies):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(theta, log_p, ref=ref, estimator="k2", gradient="estimator")
    torch.testing.assert_close(grad, exact_gradient(theta, reverse_kl(log_p, ref)))


def test_on_policy_autograd_of_k3_is_the_forward_kl_gradient(policies):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(theta, log_p, ref=ref, estimator="k3", gradient="estimator")
    torch.testing.assert_close(grad, exact_gradient(theta, forward_kl(log_p, ref)))
    wrong = exact_gradient(theta, reverse_kl(log_p, ref))
    assert (grad - wrong).abs().max() > 0.05 * wrong.abs().max()


def test_on_policy_autograd_of_abs_is_twice_the_total_variation_gradient(policies):
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(theta, log_p, ref=ref, estimator="abs", gradient="estimator")
    total_variation = 0.5 * (log_p.exp() - ref.exp()).abs().sum()
    torch.testing.assert_close(grad, 2 * exact_gradient(theta, total_variation))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_gradient_none_is_detached(policies, estimator):
    theta, ref = policies["theta"], policies["ref"]
    penalty = kl_penalty(theta.log_softmax(-1), ref, estimator=estimator, gradient="none")
    assert not penalty.requires_grad


# ---- gradients, off-policy -----------------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_off_policy_reverse_kl_gradient_with_weights(policies, estimator):
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(
        theta, behavior, ref=ref, estimator=estimator, behavior_logprobs=behavior
    )
    torch.testing.assert_close(grad, exact_gradient(theta, reverse_kl(log_p, ref)))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_off_policy_autograd_through_weight_is_the_reverse_kl_gradient(policies, estimator):
    # w·k with w = π/μ in the graph: E_μ[∇(w k)] = ∇E_π[k] = ∇KL(π‖π_ref) for k1 and k3.
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(
        theta,
        behavior,
        ref=ref,
        estimator=estimator,
        gradient="estimator",
        behavior_logprobs=behavior,
    )
    torch.testing.assert_close(grad, exact_gradient(theta, reverse_kl(log_p, ref)))


@pytest.mark.parametrize("estimator", ["k2", "abs"])
def test_off_policy_autograd_through_weight_of_k2_abs(policies, estimator):
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    _, grad = expected_penalty(
        theta,
        behavior,
        ref=ref,
        estimator=estimator,
        gradient="estimator",
        behavior_logprobs=behavior,
    )
    d = log_p - ref
    formula = 0.5 * d * d if estimator == "k2" else d.abs()
    torch.testing.assert_close(grad, exact_gradient(theta, (log_p.exp() * formula).sum()))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_on_policy_weight_in_graph_from_detached_logprobs(policies, estimator):
    # behavior_logprobs = logprobs.detach(): w = 1 in value, ∇w = ∇ℓ in the graph.
    theta, ref = policies["theta"], policies["ref"]
    log_p = theta.log_softmax(-1)
    penalty = kl_penalty(
        log_p, ref, estimator=estimator, gradient="estimator", behavior_logprobs=log_p.detach()
    )
    torch.testing.assert_close(
        penalty, kl_penalty(log_p, ref, estimator=estimator, gradient="none")
    )
    grad = exact_gradient(theta, (log_p.detach().exp() * penalty).sum())
    torch.testing.assert_close(grad, exact_gradient(theta, reverse_kl(log_p, ref)))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_off_policy_without_weights_is_biased(policies, estimator):
    # Tokens from μ, but no behavior_logprobs: neither KL's gradient, for every estimator.
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    reverse = exact_gradient(theta, reverse_kl(log_p, ref))
    forward = exact_gradient(theta, forward_kl(log_p, ref))
    for gradient in ("reverse_kl", "estimator"):
        _, grad = expected_penalty(theta, behavior, ref=ref, estimator=estimator, gradient=gradient)
        for exact in (reverse, forward):
            assert (grad - exact).abs().max() > 0.05 * exact.abs().max()


def test_importance_clip_uses_clipped_detached_weight(policies):
    theta, ref, behavior = policies["theta"], policies["ref"], policies["behavior"]
    log_p = theta.log_softmax(-1)
    weight = (log_p - behavior).exp().detach()
    clip = float(weight.median())
    clipped = weight.clamp(max=clip)
    d = (log_p - ref).detach()
    k3 = torch.expm1(-d) + d
    for gradient in ("reverse_kl", "estimator"):
        penalty = kl_penalty(
            log_p, ref, behavior_logprobs=behavior, importance_clip=clip, gradient=gradient
        )
        torch.testing.assert_close(penalty.detach(), clipped * k3)
        grads = [exact_gradient(theta, penalty[a]) for a in range(VOCAB)]
        for a in range(VOCAB):
            score = exact_gradient(theta, log_p[a])
            if gradient == "reverse_kl":
                expected = clipped[a] * d[a] * score
            elif weight[a] > clip:  # the clipped weight is a constant: only ∇k3 remains
                expected = clipped[a] * (1 - torch.exp(-d[a])) * score
            else:
                expected = weight[a] * (k3[a] + 1 - torch.exp(-d[a])) * score
            torch.testing.assert_close(grads[a], expected)
    huge = kl_penalty(log_p, ref, behavior_logprobs=behavior, importance_clip=1e30)
    torch.testing.assert_close(huge, kl_penalty(log_p, ref, behavior_logprobs=behavior))


# ---- sequence level: 2-token sequences -----------------------------------------------------

SEQ_VOCAB = 3


def sequence_model(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First-token logits (V,) and second-token logits given the first (V, V)."""
    return logits(seed, SEQ_VOCAB, 1.5), logits(seed + 100, SEQ_VOCAB * SEQ_VOCAB, 1.5).reshape(
        SEQ_VOCAB, SEQ_VOCAB
    )


def sequence_logprobs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(V², 2) log-probs of every sequence (y1, y2): [log π(y1), log π(y2 | y1)]."""
    log_first, log_second = first.log_softmax(-1), second.log_softmax(-1)
    rows = [
        torch.stack([log_first[y1], log_second[y1, y2]])
        for y1, y2 in itertools.product(range(SEQ_VOCAB), repeat=2)
    ]
    return torch.stack(rows)


@pytest.fixture
def sequences() -> dict[str, torch.Tensor]:
    first, second = sequence_model(0)
    first.requires_grad_()
    second.requires_grad_()
    ref_first, ref_second = sequence_model(7)
    return {
        "first": first,
        "second": second,
        "logprobs": sequence_logprobs(first, second),
        "ref": sequence_logprobs(ref_first, ref_second),
    }


def sequence_gradient(sequences, penalty_per_token: torch.Tensor) -> tuple[torch.Tensor, ...]:
    prob = sequences["logprobs"].detach().sum(-1).exp()  # π(y), the sampling probability
    objective = (prob * penalty_per_token.sum(-1)).sum()
    return torch.autograd.grad(
        objective, (sequences["first"], sequences["second"]), retain_graph=True
    )


def sequence_kl(sequences) -> torch.Tensor:
    log_p, log_r = sequences["logprobs"].sum(-1), sequences["ref"].sum(-1)
    return (log_p.exp() * (log_p - log_r)).sum()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_sequence_level_reward_to_go_is_the_sequence_kl_gradient(sequences, estimator):
    penalty = kl_penalty(
        sequences["logprobs"], sequences["ref"], estimator=estimator, level="sequence"
    )
    grads = sequence_gradient(sequences, penalty)
    exact = torch.autograd.grad(
        sequence_kl(sequences), (sequences["first"], sequences["second"]), retain_graph=True
    )
    for grad, reference in zip(grads, exact, strict=True):
        torch.testing.assert_close(grad, reference)


def test_token_level_is_the_gradient_with_states_held_fixed(sequences):
    penalty = kl_penalty(sequences["logprobs"], sequences["ref"], level="token")
    grads = sequence_gradient(sequences, penalty)
    first, second = sequences["first"], sequences["second"]
    ref_first, ref_second = sequence_model(7)
    log_first, ref_log_first = first.log_softmax(-1), ref_first.log_softmax(-1)
    log_second, ref_log_second = second.log_softmax(-1), ref_second.log_softmax(-1)
    per_state = (log_second.exp() * (log_second - ref_log_second)).sum(-1)
    # Σ_t KL(π(·|s_t)‖π_ref(·|s_t)) with the distribution of s_2 = y1 held fixed.
    fixed_states = (
        reverse_kl(log_first, ref_log_first) + (log_first.exp().detach() * per_state).sum()
    )
    exact = torch.autograd.grad(fixed_states, (first, second), retain_graph=True)
    for grad, reference in zip(grads, exact, strict=True):
        torch.testing.assert_close(grad, reference)
    sequence = torch.autograd.grad(sequence_kl(sequences), (first,), retain_graph=True)[0]
    assert (grads[0] - sequence).abs().max() > 0.05 * sequence.abs().max()


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_sequence_level_values_sum_to_an_unbiased_sequence_kl(sequences, estimator):
    penalty = kl_penalty(
        sequences["logprobs"],
        sequences["ref"],
        estimator=estimator,
        level="sequence",
        gradient="none",
    )
    prob = sequences["logprobs"].detach().sum(-1).exp()
    torch.testing.assert_close((prob * penalty.sum(-1)).sum(), sequence_kl(sequences).detach())


def test_sequence_level_mask_leaves_out_padding(sequences):
    # A padded third position (−inf log-probs) changes nothing, value or gradient.
    logprobs, ref = sequences["logprobs"], sequences["ref"]
    pad = torch.full((logprobs.shape[0], 1), -torch.inf, dtype=DTYPE)
    mask = torch.ones(logprobs.shape[0], 3, dtype=torch.bool)
    mask[:, 2] = False
    padded = kl_penalty(
        torch.cat([logprobs, pad], -1), torch.cat([ref, pad.neg()], -1), level="sequence", mask=mask
    )
    assert torch.equal(padded[:, 2], torch.zeros_like(padded[:, 2]))
    grads = sequence_gradient(sequences, padded)
    exact = torch.autograd.grad(
        sequence_kl(sequences), (sequences["first"], sequences["second"]), retain_graph=True
    )
    for grad, reference in zip(grads, exact, strict=True):
        torch.testing.assert_close(grad, reference)
