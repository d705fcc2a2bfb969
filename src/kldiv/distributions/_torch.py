"""Reading ``torch.distributions`` objects into kldiv's types, and back (torch imported lazily).

The types keep the tensors themselves, so that a closed form evaluated on them is a tensor in
the autograd graph, batched and typed as ``torch.distributions.kl_divergence`` would return it.
"""

from __future__ import annotations

import sys
from typing import Any

from kldiv.distributions._types import (
    Beta,
    Cauchy,
    Distribution,
    Exponential,
    Gamma,
    Gumbel,
    HalfNormal,
    Laplace,
    LogNormal,
    Normal,
    Pareto,
    Uniform,
    VonMises,
)
from kldiv.distributions._types_discrete import Bernoulli, Binomial, Geometric, Poisson
from kldiv.distributions._types_multivariate import (
    Categorical,
    DiagonalNormal,
    Dirichlet,
    LowRankNormal,
    Multinomial,
    MultivariateNormal,
)

__all__ = ["is_torch", "read_torch", "to_torch"]


def is_torch(obj: Any) -> bool:
    """True for ``torch.distributions.Distribution`` objects; never imports torch itself."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.distributions.Distribution)


def read_torch(obj: Any) -> Distribution | None:
    """Read a torch distribution into kldiv's type (with its tensors), or ``None``."""
    import torch.distributions as td

    p = _parameters(obj)
    readers: list[tuple[type, Any]] = [
        (td.Normal, lambda: Normal(p["loc"], p["scale"])),
        (td.LogNormal, lambda: LogNormal(p["loc"], p["scale"])),
        (td.HalfNormal, lambda: HalfNormal(p["scale"])),
        (td.Laplace, lambda: Laplace(p["loc"], p["scale"])),
        (td.Cauchy, lambda: Cauchy(p["loc"], p["scale"])),
        (td.Gumbel, lambda: Gumbel(p["loc"], p["scale"])),
        (td.Uniform, lambda: Uniform(p["low"], p["high"])),
        (td.Exponential, lambda: Exponential(p["rate"])),
        (td.Gamma, lambda: Gamma(p["concentration"], p["rate"])),
        (td.Beta, lambda: Beta(p["concentration1"], p["concentration0"])),
        (td.Pareto, lambda: Pareto(p["scale"], p["alpha"])),
        (td.VonMises, lambda: VonMises(p["loc"], p["concentration"])),
        (td.Poisson, lambda: Poisson(p["rate"])),
        (td.Bernoulli, lambda: Bernoulli(p["probs"])),
        (td.Binomial, lambda: Binomial(p["total_count"], p["probs"])),
        (td.Geometric, lambda: Geometric(p["probs"])),
        (td.Categorical, lambda: Categorical(p["probs"])),
        (td.OneHotCategorical, lambda: Categorical(p["probs"])),
        (td.Multinomial, lambda: Multinomial(p["total_count"], p["probs"])),
        (td.Dirichlet, lambda: Dirichlet(p["concentration"])),
        (
            td.LowRankMultivariateNormal,
            lambda: LowRankNormal(p["loc"], p["cov_factor"], p["cov_diag"]),
        ),
        (td.MultivariateNormal, lambda: MultivariateNormal(p["loc"], p["covariance_matrix"])),
    ]
    for torch_type, reader in readers:
        if type(obj) is torch_type:
            return reader()  # type: ignore[no-any-return]
    if (
        type(obj) is td.Independent
        and type(obj.base_dist) is td.Normal
        and obj.reinterpreted_batch_ndims == 1
    ):
        return DiagonalNormal(obj.base_dist.loc, obj.base_dist.scale)
    return None


def to_torch(dist: Distribution) -> Any:
    """The ``torch.distributions`` object of a univariate kldiv type with tensor parameters."""
    import torch.distributions as td

    writers: dict[type, Any] = {
        Normal: lambda d: td.Normal(d.loc, d.scale),
        LogNormal: lambda d: td.LogNormal(d.loc, d.scale),
        HalfNormal: lambda d: td.HalfNormal(d.scale),
        Laplace: lambda d: td.Laplace(d.loc, d.scale),
        Cauchy: lambda d: td.Cauchy(d.loc, d.scale),
        Gumbel: lambda d: td.Gumbel(d.loc, d.scale),
        Uniform: lambda d: td.Uniform(d.low, d.high),
        Exponential: lambda d: td.Exponential(d.rate),
        Gamma: lambda d: td.Gamma(d.shape, d.rate),
        Beta: lambda d: td.Beta(d.a, d.b),
        Pareto: lambda d: td.Pareto(d.scale, d.alpha),
    }
    writer = writers.get(type(dist))
    if writer is None:
        raise TypeError(f"{type(dist).__name__} has no torch.distributions counterpart here")
    return writer(dist)


def _parameters(obj: Any) -> dict[str, Any]:
    """The tensors a reader may need (lazily computed properties such as ``probs`` included)."""
    import torch
    import torch.distributions as td

    found = {name: getattr(obj, name) for name in obj.arg_constraints}
    if type(obj) is td.MultivariateNormal:
        found["covariance_matrix"] = obj.covariance_matrix
    if type(obj) is td.Multinomial:
        found["total_count"] = torch.tensor(
            float(obj.total_count), dtype=obj.probs.dtype, device=obj.probs.device
        )
    return {name: value for name, value in found.items() if hasattr(value, "detach")}
