"""kldiv: Kullback-Leibler divergence done right."""

__version__ = "0.1.0"

from kldiv._divergences import (
    cross_entropy,
    entropy,
    jeffreys,
    js_div,
    kl_div,
    renyi_div,
)
from kldiv._elementwise import generalized_kl, rel_entr
from kldiv._gaussian import gaussian_kl
from kldiv.report import Report, compare

__all__ = [
    "Report",
    "__version__",
    "compare",
    "cross_entropy",
    "entropy",
    "gaussian_kl",
    "generalized_kl",
    "jeffreys",
    "js_div",
    "kl_div",
    "rel_entr",
    "renyi_div",
]
