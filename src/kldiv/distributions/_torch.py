"""Reading ``torch.distributions`` objects into kldiv's types (torch is imported only here, lazily)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from kldiv.distributions._types import (
    Beta,
    Cauchy,
    Distribution,
    Exponential,
    Float64Array,
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

__all__ = ["is_torch", "read_torch"]


def is_torch(obj: Any) -> bool:
    """True for ``torch.distributions.Distribution`` objects; never imports torch itself."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.distributions.Distribution)


def _numpy(tensor: Any) -> Float64Array:
    return np.asarray(tensor.detach().cpu().double().numpy(), dtype=np.float64)


def read_torch(obj: Any) -> Distribution | None:
    """Read a torch distribution into kldiv's type, or ``None`` when it has no counterpart."""
    import torch.distributions as td

    p = {name: _numpy(value) for name, value in _parameters(obj).items()}
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
        return DiagonalNormal(_numpy(obj.base_dist.loc), _numpy(obj.base_dist.scale))
    return None


def _parameters(obj: Any) -> dict[str, Any]:
    """The tensors a reader may need (lazily computed properties such as ``probs`` included)."""
    import torch
    import torch.distributions as td

    found = {name: getattr(obj, name) for name in obj.arg_constraints}
    if type(obj) is td.MultivariateNormal:
        found["covariance_matrix"] = obj.covariance_matrix
    if type(obj) is td.Multinomial:
        found["total_count"] = torch.tensor(float(obj.total_count))
    return {name: value for name, value in found.items() if hasattr(value, "detach")}
