"""KL of torch.distributions with the gradient: kldiv against torch.distributions.kl_divergence.

Run:  python benchmarks/bench_distributions_torch.py [--batch 256] [--dim 64] [--repeats 50]

Times forward and backward of the VAE term KL(N(μ, σ²) ‖ N(0, 1)) summed over a (batch, dim)
array of parameters, with ``torch.distributions.kl_divergence`` (the baseline) and with
``kldiv.distributions.kl_divergence``, on one CPU thread; and, for a pair torch has no closed
form for (StudentT‖Normal, batch of ``--batch``), kldiv's quadrature alone (torch raises
``NotImplementedError`` there). Prints the median time per call and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from kldiv.distributions import kl_divergence


def median_ms(step: Callable[[], None], repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    td = torch.distributions
    loc = torch.randn(args.batch, args.dim, requires_grad=True)
    log_scale = torch.randn(args.batch, args.dim, requires_grad=True)
    prior = td.Normal(torch.zeros(()), torch.ones(()))

    def with_torch() -> None:
        td.kl_divergence(td.Normal(loc, log_scale.exp()), prior).sum().backward()

    def with_kldiv() -> None:
        kl_divergence(td.Normal(loc, log_scale.exp()), prior).sum().backward()

    baseline = median_ms(with_torch, args.repeats)
    ours = median_ms(with_kldiv, args.repeats)
    print(f"Normal‖Normal, ({args.batch}, {args.dim}), forward + backward, 1 thread")
    print(f"  torch.distributions.kl_divergence  {baseline:8.3f} ms   1.00")
    print(f"  kldiv.distributions.kl_divergence  {ours:8.3f} ms   {ours / baseline:5.2f}")

    df = torch.linspace(3.0, 30.0, args.batch, dtype=torch.float64, requires_grad=True)
    normal = td.Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))

    def quadrature() -> None:
        kl_divergence(td.StudentT(df), normal).sum().backward()

    print(f"StudentT‖Normal, ({args.batch},), forward + backward (torch: NotImplementedError)")
    print(f"  kldiv quadrature                   {median_ms(quadrature, args.repeats):8.3f} ms")


if __name__ == "__main__":
    main()
