"""Knowledge distillation of a small next-token model with `kldiv.torch.KLDivLoss` and `JSDLoss`.

A teacher MLP learns a synthetic language (a random second-order Markov chain over 48 tokens);
two students a quarter of its size are then trained on the same data, one on the hard labels
only, one by distillation: temperature-scaled forward KL to the teacher plus the
generalized JSD of on-policy distillation, mixed with the label loss. The distilled student
ends closer to the teacher, measured by `kldiv.kl_div` on held-out contexts.

The loss lives in a Hugging Face ``Trainer``-style ``compute_loss``: with ``transformers``
installed, ``class DistillationTrainer(DistillationMixin, transformers.Trainer)`` uses it as is;
here a plain loop calls it, so the example needs only PyTorch.

Run:  python examples/distillation.py [--steps 200]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

import kldiv
from kldiv.torch import JSDLoss, KLDivLoss

VOCAB, CONTEXT = 48, 2


def markov_chain(generator: torch.Generator) -> torch.Tensor:
    """Next-token probabilities given the last two tokens: sparse, peaked rows."""
    logits = 3.0 * torch.randn(VOCAB, VOCAB, VOCAB, generator=generator)
    return torch.softmax(logits, dim=-1)


def sample_batch(chain: torch.Tensor, size: int, generator: torch.Generator) -> dict[str, Any]:
    context = torch.randint(0, VOCAB, (size, CONTEXT), generator=generator)
    probs = chain[context[:, 0], context[:, 1]]
    labels = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return {"context": context, "labels": labels}


class NextToken(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(32 * CONTEXT, width), torch.nn.GELU(), torch.nn.Linear(width, VOCAB)
        )

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(context).flatten(1))


class DistillationMixin:
    """``compute_loss`` with the signature of ``transformers.Trainer.compute_loss``.

    The loss is ``alpha`` · cross-entropy on the labels + (1 − ``alpha``) · [τ² · KL(teacher ‖
    student at temperature τ) + JSD_β(teacher, student)].
    """

    def __init__(self, teacher: torch.nn.Module, *, alpha: float = 0.2, temperature: float = 2.0):
        self.teacher = teacher.eval()
        self.alpha = alpha
        self.kl = KLDivLoss(
            input_kind="logits",
            target_kind="logits",
            temperature=temperature,
            scale_by_temperature_squared=True,
            reduction="token_mean",
        )
        self.jsd = JSDLoss(beta=0.5, reduction="token_mean")

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: int | None = None,
    ) -> Any:
        student_logits = model(inputs["context"])
        with torch.no_grad():
            teacher_logits = self.teacher(inputs["context"])
        labels = inputs["labels"]
        hard = torch.nn.functional.cross_entropy(student_logits, labels)
        soft = self.kl(student_logits, teacher_logits, labels) + self.jsd(
            student_logits, teacher_logits, labels
        )
        loss = self.alpha * hard + (1 - self.alpha) * soft
        return (loss, student_logits) if return_outputs else loss


def train(model: torch.nn.Module, loss_fn: Any, chain: torch.Tensor, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = loss_fn(model, sample_batch(chain, 256, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def label_loss(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(model(inputs["context"]), inputs["labels"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    chain = markov_chain(torch.Generator().manual_seed(1))
    teacher = NextToken(width=512)
    train(teacher, label_loss, chain, 2 * args.steps, seed=2)

    plain, distilled = NextToken(width=128), NextToken(width=128)
    distilled.load_state_dict(plain.state_dict())
    train(plain, label_loss, chain, args.steps, seed=3)
    train(distilled, DistillationMixin(teacher).compute_loss, chain, args.steps, seed=3)

    held_out = sample_batch(chain, 4096, torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = teacher(held_out["context"])
        result = {
            name: float(kldiv.kl_div(reference, model(held_out["context"]), kind="logits").mean())
            for name, model in (("labels only", plain), ("distilled", distilled))
        }
    for name, value in result.items():
        print(f"KL(teacher ‖ student), {name:>11s}: {value:.4f} nats per position")
    return result


if __name__ == "__main__":
    main()
