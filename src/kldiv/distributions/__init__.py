"""Analytic KL between distributions, with a registry of closed forms and numerical fallbacks.

``kl(p, q)`` accepts frozen ``scipy.stats`` distributions, ``torch.distributions`` objects
(torch is imported only when one is passed), kldiv's own parametric types and mixtures.
"""

from kldiv._result import KLResult
from kldiv.distributions import (
    _closed_forms_continuous,  # noqa: F401  (registers closed forms)
    _closed_forms_discrete,  # noqa: F401
    _closed_forms_gaussian,  # noqa: F401
)
from kldiv.distributions._kl import METHODS, kl, kl_divergence
from kldiv.distributions._mixture import Mixture
from kldiv.distributions._registry import NoClosedForm, register_kl, registered_pairs
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

__all__ = [
    "METHODS",
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Cauchy",
    "DiagonalNormal",
    "Dirichlet",
    "Distribution",
    "Exponential",
    "Gamma",
    "Geometric",
    "Gumbel",
    "HalfNormal",
    "KLResult",
    "Laplace",
    "LogNormal",
    "LowRankNormal",
    "Mixture",
    "Multinomial",
    "MultivariateNormal",
    "NoClosedForm",
    "Normal",
    "Pareto",
    "Poisson",
    "Uniform",
    "VonMises",
    "kl",
    "kl_divergence",
    "register_kl",
    "registered_pairs",
]
