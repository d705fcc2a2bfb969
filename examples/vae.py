"""A small variational autoencoder whose KL term is `kldiv.gaussian_kl`.

The data are 16-dimensional points on a curved 2-D sheet (a random smooth map of a 2-D
latent plus noise). The encoder outputs a mean and a log-variance per latent dimension; the
loss is the reconstruction error plus KL(q(z|x) ‖ N(0, I)), computed from the log-variances
directly, which is stabler than building `torch.distributions` objects. At the end the KL
term is checked against `torch.distributions.kl_divergence` on a batch.

Run:  python examples/vae.py [--steps 600]
"""

from __future__ import annotations

import argparse

import torch

import kldiv

DATA, LATENT = 16, 2


def make_data(count: int, generator: torch.Generator) -> torch.Tensor:
    """Training and held-out points from one random map of a 2-D latent (first ``count``: train)."""
    mixing = torch.randn(2, DATA, generator=generator)
    phase = torch.rand(DATA, generator=generator) * 6.28
    latent = torch.randn(count, 2, generator=generator)
    return torch.sin(latent @ mixing + phase) + 0.05 * torch.randn(count, DATA, generator=generator)


class VAE(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(
            torch.nn.Linear(DATA, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2 * LATENT)
        )
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(LATENT, 64), torch.nn.SiLU(), torch.nn.Linear(64, DATA)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        return self.decoder(z), mean, logvar


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train, test = make_data(4096 + 1024, generator).split([4096, 1024])
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(args.steps):
        batch = train[torch.randint(0, len(train), (256,), generator=generator)]
        reconstruction, mean, logvar = model(batch)
        # Sum over data and latent dimensions, mean over the batch: the negative ELBO per point
        # for a unit-variance Gaussian decoder, up to a constant.
        error = 0.5 * ((reconstruction - batch) ** 2).sum(-1).mean()
        kl = kldiv.gaussian_kl(mean, logvar).mean()
        loss = error + kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  reconstruction {error.item():.3f}  KL {kl.item():.3f} nats")

    with torch.no_grad():
        _, mean, logvar = model(test)
        ours = kldiv.gaussian_kl(mean, logvar)
        posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
        prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
        reference = torch.distributions.kl_divergence(posterior, prior).sum(-1)
    largest = float((ours - reference).abs().max())
    print(f"held-out KL {float(ours.mean()):.4f} nats; largest difference from torch {largest:.2e}")
    return {"kl": float(ours.mean()), "difference": largest}


if __name__ == "__main__":
    main()
