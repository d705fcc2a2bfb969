"""kl on torch.distributions against td.kl_divergence, on torch's own TestKL cases.

The pairs are those of TestKL in PyTorch's test/distributions/test_distributions.py: each
family built by ``pairwise`` as a 4×4 batch (P varies along columns, Q along rows), the
``finite_examples`` and the ``infinite_examples``. kldiv must return what torch returns (a
tensor, same batch shape and dtype, same value to rounding, same gradient) and both must
agree with Monte Carlo, as TestKL checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kldiv.distributions import kl, kl_divergence

torch = pytest.importorskip("torch")
td = torch.distributions

Pair = tuple[Any, Any, list[Any]]


def _leaf(values: Any, dtype: Any) -> Any:
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def pairwise(family: Callable[..., Any], *params: Any, dtype: Any = torch.float64) -> Pair:
    """torch's ``pairwise``: P's parameters vary column-wise and Q's row-wise (4×4 batches)."""
    first = [_leaf([p] * len(p), dtype) for p in params]
    second = [
        _leaf(np.transpose([p] * len(p), (1, 0, *range(2, np.ndim(p) + 1))), dtype) for p in params
    ]
    return family(*first), family(*second), [*first, *second]


class Binomial30(td.Binomial):
    """torch's TestKL subclass; kldiv does not read subclasses, so torch's formula answers."""

    def __init__(self, probs: Any) -> None:
        super().__init__(30, probs)


def _families(dtype: Any) -> dict[str, Callable[[], Pair]]:
    def pareto() -> Pair:
        leaves = [
            _leaf([2.5, 4.0, 2.5, 4.0], dtype),
            _leaf([2.25, 3.75, 2.25, 3.75], dtype),
            _leaf([2.25, 3.75, 2.25, 3.8], dtype),
            _leaf([2.25, 3.75, 2.25, 3.75], dtype),
        ]
        expanded = [leaf.expand(4, 4) for leaf in leaves]
        return td.Pareto(*expanded[:2]), td.Pareto(*expanded[2:]), leaves

    def binomial_vectorized_count() -> Pair:
        probs_p, probs_q = _leaf([0.4, 0.6], dtype), _leaf([0.5, 0.8], dtype)
        count = torch.tensor([3.0, 4.0], dtype=dtype)
        return td.Binomial(count, probs_p), td.Binomial(count, probs_q), [probs_p, probs_q]

    def independent() -> Pair:
        p, q, leaves = pairwise(
            td.Normal, [-2.0, 2.0, -3.0, 3.0], [1.0, 2.0, 1.0, 2.0], dtype=dtype
        )
        return td.Independent(p, 1), td.Independent(q, 1), leaves

    simplex = [[0.4, 0.3, 0.3], [0.2, 0.7, 0.1], [0.33, 0.33, 0.34], [0.2, 0.2, 0.6]]
    return {
        "bernoulli": lambda: pairwise(td.Bernoulli, [0.1, 0.2, 0.6, 0.9], dtype=dtype),
        "binomial30": lambda: pairwise(Binomial30, [0.1, 0.2, 0.6, 0.9], dtype=dtype),
        "binomial_vectorized_count": binomial_vectorized_count,
        "beta": lambda: pairwise(td.Beta, [1.0, 2.5, 1.0, 2.5], [1.5, 1.5, 3.5, 3.5], dtype=dtype),
        "categorical": lambda: pairwise(td.Categorical, simplex, dtype=dtype),
        "cauchy": lambda: pairwise(
            td.Cauchy, [-2.0, 2.0, -3.0, 3.0], [1.0, 2.0, 1.0, 2.0], dtype=dtype
        ),
        "chi2": lambda: pairwise(td.Chi2, [1.0, 2.0, 2.5, 5.0], dtype=dtype),
        "dirichlet": lambda: pairwise(
            td.Dirichlet,
            [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.33, 0.33, 0.34], [0.2, 0.2, 0.4]],
            dtype=dtype,
        ),
        "exponential": lambda: pairwise(td.Exponential, [1.0, 2.5, 5.0, 10.0], dtype=dtype),
        "gamma": lambda: pairwise(
            td.Gamma, [1.0, 2.5, 1.0, 2.5], [1.5, 1.5, 3.5, 3.5], dtype=dtype
        ),
        "gumbel": lambda: pairwise(
            td.Gumbel, [-2.0, 4.0, -3.0, 6.0], [1.0, 2.5, 1.0, 2.5], dtype=dtype
        ),
        "halfnormal": lambda: pairwise(td.HalfNormal, [1.0, 2.0, 1.0, 2.0], dtype=dtype),
        "independent": independent,
        "laplace": lambda: pairwise(
            td.Laplace, [-2.0, 4.0, -3.0, 6.0], [1.0, 2.5, 1.0, 2.5], dtype=dtype
        ),
        "lognormal": lambda: pairwise(
            td.LogNormal, [-2.0, 2.0, -3.0, 3.0], [1.0, 2.0, 1.0, 2.0], dtype=dtype
        ),
        "normal": lambda: pairwise(
            td.Normal, [-2.0, 2.0, -3.0, 3.0], [1.0, 2.0, 1.0, 2.0], dtype=dtype
        ),
        "onehotcategorical": lambda: pairwise(td.OneHotCategorical, simplex, dtype=dtype),
        "pareto": pareto,
        "poisson": lambda: pairwise(td.Poisson, [0.3, 1.0, 5.0, 10.0], dtype=dtype),
        "uniform_within_unit": lambda: pairwise(
            td.Uniform, [0.1, 0.9, 0.2, 0.75], [0.15, 0.95, 0.25, 0.8], dtype=dtype
        ),
        "uniform_positive": lambda: pairwise(
            td.Uniform, [1, 1.5, 2, 4], [1.2, 2.0, 3, 7], dtype=dtype
        ),
        "uniform_real": lambda: pairwise(
            td.Uniform, [-2.0, -1, 0, 2], [-1.0, 1, 1, 4], dtype=dtype
        ),
        "uniform_pareto": lambda: pairwise(
            td.Uniform, [6.5, 7.5, 6.5, 8.5], [7.5, 8.5, 9.5, 9.5], dtype=dtype
        ),
        "continuous_bernoulli": lambda: pairwise(
            td.ContinuousBernoulli, [0.1, 0.2, 0.5, 0.9], dtype=dtype
        ),
    }


# TestKL.finite_examples, in torch's order.
FINITE = [
    ("bernoulli", "bernoulli"),
    ("bernoulli", "poisson"),
    ("beta", "beta"),
    ("beta", "chi2"),
    ("beta", "exponential"),
    ("beta", "gamma"),
    ("beta", "normal"),
    ("binomial30", "binomial30"),
    ("binomial_vectorized_count", "binomial_vectorized_count"),
    ("categorical", "categorical"),
    ("cauchy", "cauchy"),
    ("chi2", "chi2"),
    ("chi2", "exponential"),
    ("chi2", "gamma"),
    ("chi2", "normal"),
    ("dirichlet", "dirichlet"),
    ("exponential", "chi2"),
    ("exponential", "exponential"),
    ("exponential", "gamma"),
    ("exponential", "gumbel"),
    ("exponential", "normal"),
    ("gamma", "chi2"),
    ("gamma", "exponential"),
    ("gamma", "gamma"),
    ("gamma", "gumbel"),
    ("gamma", "normal"),
    ("gumbel", "gumbel"),
    ("gumbel", "normal"),
    ("halfnormal", "halfnormal"),
    ("independent", "independent"),
    ("laplace", "laplace"),
    ("lognormal", "lognormal"),
    ("laplace", "normal"),
    ("normal", "gumbel"),
    ("normal", "laplace"),
    ("normal", "normal"),
    ("onehotcategorical", "onehotcategorical"),
    ("pareto", "chi2"),
    ("pareto", "pareto"),
    ("pareto", "exponential"),
    ("pareto", "gamma"),
    ("poisson", "poisson"),
    ("uniform_within_unit", "beta"),
    ("uniform_positive", "chi2"),
    ("uniform_positive", "exponential"),
    ("uniform_positive", "gamma"),
    ("uniform_real", "gumbel"),
    ("uniform_real", "normal"),
    ("uniform_pareto", "pareto"),
    ("continuous_bernoulli", "continuous_bernoulli"),
    ("continuous_bernoulli", "exponential"),
    ("continuous_bernoulli", "normal"),
    ("beta", "continuous_bernoulli"),
]

IDS = [f"{a}-{b}" for a, b in FINITE]


def _pair(names: tuple[str, str], dtype: Any = torch.float64) -> tuple[Any, Any, list[Any]]:
    families = _families(dtype)
    p, _, leaves_p = families[names[0]]()
    _, q, leaves_q = families[names[1]]()
    return p, q, [*leaves_p[: len(leaves_p) // 2], *leaves_q[len(leaves_q) // 2 :]]


@pytest.mark.parametrize("names", FINITE, ids=IDS)
def test_value_shape_dtype_and_gradient_match_td_kl_divergence(names: tuple[str, str]) -> None:
    p, q, leaves = _pair(names)
    expected = td.kl_divergence(p, q)
    result = kl(p, q)
    assert isinstance(result.value, torch.Tensor)
    assert result.method == "exact"
    assert result.value.shape == expected.shape
    assert result.value.dtype == expected.dtype
    # Same formulas in float64 (kldiv's own for the families it reads); rounding only.
    torch.testing.assert_close(result.value, expected, rtol=1e-10, atol=1e-12)
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    # Parameters torch derives at construction (Chi2, Categorical) share graph nodes.
    ours = torch.autograd.grad(result.value.sum(), wanted, allow_unused=True, retain_graph=True)
    theirs = torch.autograd.grad(expected.sum(), wanted, allow_unused=True)
    for mine, reference in zip(ours, theirs, strict=True):
        if reference is None:
            assert mine is None or bool((mine == 0).all())
        else:
            torch.testing.assert_close(mine, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("names", FINITE, ids=IDS)
def test_float32_inputs_give_float32_like_torch(names: tuple[str, str]) -> None:
    p, q, _ = _pair(names, dtype=torch.float32)
    expected = td.kl_divergence(p, q)
    value = kl_divergence(p, q)
    assert value.dtype == torch.float32
    # float32 rounding of different but equivalent expressions: a few ulps of the terms.
    torch.testing.assert_close(value, expected, rtol=2e-5, atol=2e-5)


N_MONTE_CARLO = 20_000


@pytest.mark.parametrize("names", FINITE, ids=IDS)
def test_matches_monte_carlo_like_torch_testkl(names: tuple[str, str]) -> None:
    # TestKL's check with a fixed seed: the mean of log p − log q over draws of P.
    p, q, _ = _pair(names)
    generator_state = torch.random.fork_rng(devices=[])
    with generator_state:
        torch.manual_seed(0)
        x = p.sample((N_MONTE_CARLO,))
    terms = (p.log_prob(x) - q.log_prob(x)).detach()
    estimate = terms.mean(0)
    stderr = terms.std(0) / math.sqrt(N_MONTE_CARLO)
    value = kl(p, q).value.detach()
    # 6 standard errors per entry: false-failure rate 2e-9 each, < 2e-6 over all entries.
    # The 1e-9 floor covers entries whose log-ratio is constant (stderr 0).
    assert bool(((value - estimate).abs() <= 6 * stderr + 1e-9).all()), (value, estimate, stderr)


def _infinite_examples() -> list[tuple[Any, Any]]:
    def t(value: Any) -> Any:
        return torch.tensor(value, dtype=torch.float64)

    return [
        (td.Bernoulli(t(0.0)), td.Bernoulli(t(1.0))),
        (td.Bernoulli(t(1.0)), td.Bernoulli(t(0.0))),
        (td.Categorical(t([0.9, 0.1])), td.Categorical(t([1.0, 0.0]))),
        (td.Categorical(t([[0.9, 0.1], [0.9, 0.1]])), td.Categorical(t([1.0, 0.0]))),
        (td.Beta(t(1.0), t(2.0)), td.Uniform(t(0.25), t(1.0))),
        (td.Beta(t(1.0), t(2.0)), td.Uniform(t(0.0), t(0.75))),
        (td.Beta(t(1.0), t(2.0)), td.Uniform(t(0.25), t(0.75))),
        (td.Beta(t(1.0), t(2.0)), td.Pareto(t(1.0), t(2.0))),
        (td.Binomial(31, t(0.7)), td.Binomial(30, t(0.3))),
        (td.Binomial(t([3.0, 4.0]), t([0.4, 0.6])), td.Binomial(t([2.0, 3.0]), t([0.5, 0.8]))),
        (td.Chi2(t(1.0)), td.Beta(t(2.0), t(3.0))),
        (td.Chi2(t(1.0)), td.Pareto(t(2.0), t(3.0))),
        (td.Chi2(t(1.0)), td.Uniform(t(-2.0), t(3.0))),
        (td.Exponential(t(1.0)), td.Beta(t(2.0), t(3.0))),
        (td.Exponential(t(1.0)), td.Pareto(t(2.0), t(3.0))),
        (td.Exponential(t(1.0)), td.Uniform(t(-2.0), t(3.0))),
        (td.Gamma(t(1.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Gamma(t(1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.Gamma(t(1.0), t(2.0)), td.Uniform(t(-3.0), t(4.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Chi2(t(3.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Exponential(t(3.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Gamma(t(3.0), t(4.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.Gumbel(t(-1.0), t(2.0)), td.Uniform(t(-3.0), t(4.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Chi2(t(3.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Exponential(t(3.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Gamma(t(3.0), t(4.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.Laplace(t(-1.0), t(2.0)), td.Uniform(t(-3.0), t(4.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Chi2(t(3.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Exponential(t(3.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Gamma(t(3.0), t(4.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.Normal(t(-1.0), t(2.0)), td.Uniform(t(-3.0), t(4.0))),
        (td.Pareto(t(2.0), t(1.0)), td.Chi2(t(3.0))),
        (td.Pareto(t(2.0), t(1.0)), td.Exponential(t(3.0))),
        (td.Pareto(t(2.0), t(1.0)), td.Gamma(t(3.0), t(4.0))),
        (td.Pareto(t(1.0), t(2.0)), td.Normal(t(-3.0), t(4.0))),
        (td.Pareto(t(1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.Poisson(t(2.0)), td.Bernoulli(t(0.5))),
        (td.Poisson(t(2.3)), td.Binomial(10, t(0.2))),
        (td.Uniform(t(-1.0), t(1.0)), td.Beta(t(2.0), t(2.0))),
        (td.Uniform(t(0.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Uniform(t(-1.0), t(2.0)), td.Beta(t(3.0), t(4.0))),
        (td.Uniform(t(-1.0), t(2.0)), td.Chi2(t(3.0))),
        (td.Uniform(t(-1.0), t(2.0)), td.Exponential(t(3.0))),
        (td.Uniform(t(-1.0), t(2.0)), td.Gamma(t(3.0), t(4.0))),
        (td.Uniform(t(-1.0), t(2.0)), td.Pareto(t(3.0), t(4.0))),
        (td.ContinuousBernoulli(t(0.25)), td.Uniform(t(0.25), t(1.0))),
        (td.ContinuousBernoulli(t(0.25)), td.Uniform(t(0.0), t(0.75))),
        (td.ContinuousBernoulli(t(0.25)), td.Uniform(t(0.25), t(0.75))),
        (td.ContinuousBernoulli(t(0.25)), td.Pareto(t(1.0), t(2.0))),
        (td.Exponential(t(1.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Gamma(t(1.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Gumbel(t(-1.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Laplace(t(-1.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Normal(t(-1.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Uniform(t(-1.0), t(1.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Uniform(t(0.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
        (td.Uniform(t(-1.0), t(2.0)), td.ContinuousBernoulli(t(0.75))),
    ]


INFINITE = _infinite_examples()


@pytest.mark.parametrize(
    ("p", "q"),
    INFINITE,
    ids=[f"{type(p).__name__}-{type(q).__name__}-{i}" for i, (p, q) in enumerate(INFINITE)],
)
def test_infinite_examples_are_infinite_like_torch(p: Any, q: Any) -> None:
    # Every entry of P puts mass where Q has none; torch answers +inf too.
    assert bool(torch.isinf(td.kl_divergence(p, q)).all())
    value = kl_divergence(p, q)
    assert value.shape == td.kl_divergence(p, q).shape
    assert bool((value == math.inf).all()), value
