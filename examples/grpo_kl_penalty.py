"""A minimal GRPO loop with a KL penalty from `kldiv.torch.kl_penalty`, on a tiny policy.

The policy is a bigram model over 6 tokens (the next token's logits depend on the previous
token and the position); token 5 ends a sequence. The reward is the fraction of generated
tokens equal to 0, so the policy is pulled away from its frozen reference copy, and the KL
penalty pulls it back. Each step samples a group of completions per prompt, normalizes the
rewards within the group (GRPO's advantage) and minimizes

    policy-gradient loss + β · kl_penalty(logprobs, ref_logprobs, estimator="k3")

whose gradient is, by default, the unbiased gradient of KL(π_θ‖π_ref) (``--gradient estimator``
reproduces TRL's and verl's k3 loss, whose gradient is the forward KL's). Every few steps it
prints the mean reward, the k3 estimate of the KL from the sampled tokens and the exact per-token
KL at the same states from the full logits (`kldiv.torch.kl_div`, ``direction="reverse"``).

Run:  python examples/grpo_kl_penalty.py [--steps 150] [--gradient reverse_kl|estimator]
"""

from __future__ import annotations

import argparse
import copy

import torch

from kldiv.torch import kl_div, kl_penalty

VOCAB, LENGTH, EOS, TARGET = 6, 5, 5, 0


class Bigram(torch.nn.Module):
    """Next-token logits from the previous token plus a per-position bias."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(VOCAB, VOCAB, generator=generator))
        self.position = torch.nn.Parameter(torch.zeros(LENGTH, VOCAB))

    def forward(self, previous: torch.Tensor) -> torch.Tensor:
        """``(batch, length)`` previous tokens → ``(batch, length, vocab)`` logits."""
        return self.table[previous] + self.position[: previous.shape[1]]


@torch.no_grad()
def sample(
    policy: Bigram, prompts: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample completions; return (previous tokens, sampled tokens), both (batch, LENGTH)."""
    previous, tokens = [prompts], []
    for t in range(LENGTH):
        logits = policy.table[previous[-1]] + policy.position[t]
        tokens.append(torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0])
        previous.append(tokens[-1])
    return torch.stack(previous[:-1], 1), torch.stack(tokens, 1)


def completion_mask(tokens: torch.Tensor) -> torch.Tensor:
    """True up to and including the first EOS."""
    ended_before = (tokens == EOS).long().cumsum(-1) - (tokens == EOS).long()
    return ended_before == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--beta", type=float, default=0.1, help="KL coefficient")
    parser.add_argument("--gradient", choices=["reverse_kl", "estimator"], default="reverse_kl")
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    policy = Bigram(generator)
    reference = copy.deepcopy(policy).requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.05)
    first_reward = last_reward = 0.0

    for step in range(args.steps):
        prompts = torch.randint(0, EOS, (args.prompts,), generator=generator)
        previous, tokens = sample(policy, prompts.repeat_interleave(args.group), generator)
        mask = completion_mask(tokens)
        reward = ((tokens == TARGET) & mask).sum(-1) / mask.sum(-1)
        grouped = reward.view(args.prompts, args.group)
        advantage = (
            (grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + 1e-4)
        ).view(-1)

        logits = policy(previous)
        logprobs = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
        with torch.no_grad():
            ref_logits = reference(previous)
        ref_logprobs = ref_logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]

        # One update per batch: the ratio π_θ/π_old is 1 in value, ∇ log π_θ in gradient.
        ratio = torch.exp(logprobs - logprobs.detach())
        policy_loss = -(advantage[:, None] * ratio * mask).sum(-1) / mask.sum(-1)
        penalty = kl_penalty(
            logprobs,
            ref_logprobs,
            estimator="k3",
            gradient=args.gradient,
            mask=mask,
            reduction="seq_mean_token_mean",
        )
        loss = policy_loss.mean() + args.beta * penalty
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        mean_reward = float(reward.mean())
        first_reward = mean_reward if step == 0 else first_reward
        last_reward = mean_reward
        if step % args.log_every == 0 or step == args.steps - 1:
            labels = torch.where(mask, tokens, -100)
            exact = kl_div(
                logits.detach(),
                ref_logits,
                input_kind="logits",
                target_kind="logits",
                direction="reverse",
                labels=labels,
                reduction="token_mean",
            )
            estimate = kl_penalty(
                logprobs.detach(), ref_logprobs, mask=mask, gradient="none", reduction="token_mean"
            )
            print(
                f"step {step:4d}  reward {mean_reward:.3f}  KL k3 estimate {float(estimate):.4f}"
                f"  exact per-token KL {float(exact):.4f}"
            )
    print(f"reward first step {first_reward:.3f}, last step {last_reward:.3f}")


if __name__ == "__main__":
    main()
