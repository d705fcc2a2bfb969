"""Every closed form against torch.distributions.kl.kl_divergence and against Monte Carlo.

Each pair is written twice, as scipy.stats and as torch.distributions objects. Parameters are arbitrary but fixed, chosen so that every pair has a finite KL unless named
"_inf". Batched cases use broadcasting parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.stats as st

from kldiv.distributions import kl


@dataclass(frozen=True)
class Case:
    name: str
    scipy_p: Any
    scipy_q: Any
    torch_pair: Callable[[], tuple[Any, Any]] | None


def _t(value: Any) -> Any:
    import torch

    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _torch(name: str, *p_args: Any, q_args: tuple[Any, ...]) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        import torch.distributions as td

        family = getattr(td, name)
        return family(*map(_t, p_args)), family(*map(_t, q_args))

    return build


def _cross(
    p: tuple[str, tuple[Any, ...]], q: tuple[str, tuple[Any, ...]]
) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        import torch.distributions as td

        return getattr(td, p[0])(*map(_t, p[1])), getattr(td, q[0])(*map(_t, q[1]))

    return build


COV_P = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
COV_Q = np.array([[1.0, -0.1, 0.0], [-0.1, 1.5, 0.4], [0.0, 0.4, 0.8]])
MEAN_P = np.array([0.1, -0.3, 0.5])
MEAN_Q = np.array([-0.2, 0.4, 0.0])


def _mvn() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.MultivariateNormal(_t(MEAN_P), _t(COV_P)), td.MultivariateNormal(
        _t(MEAN_Q), _t(COV_Q)
    )


def _dirichlet() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Dirichlet(_t([1.5, 2.0, 0.7])), td.Dirichlet(_t([1.0, 3.0, 2.0]))


def _categorical() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Categorical(probs=_t([0.2, 0.5, 0.3])), td.Categorical(probs=_t([0.4, 0.4, 0.2]))


def _bernoulli() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Bernoulli(probs=_t([0.3, 0.9])), td.Bernoulli(probs=_t(0.6))


def _binomial() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Binomial(10, probs=_t(0.3)), td.Binomial(10, probs=_t(0.45))


def _geometric() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Geometric(probs=_t(0.3)), td.Geometric(probs=_t(0.55))


def _lognormal() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.LogNormal(_t(0.2), _t(0.7)), td.LogNormal(_t(-0.1), _t(1.1))


def _pareto() -> tuple[Any, Any]:
    import torch.distributions as td

    return td.Pareto(_t(2.0), _t(3.0)), td.Pareto(_t(1.5), _t(2.5))


SAME_FAMILY = [
    Case(
        "norm",
        st.norm([0.0, 1.0], [1.0, 2.0]),
        st.norm(0.5, 1.5),
        _torch("Normal", [0.0, 1.0], [1.0, 2.0], q_args=(0.5, 1.5)),
    ),
    Case(
        "multivariate_normal",
        st.multivariate_normal(MEAN_P, COV_P),
        st.multivariate_normal(MEAN_Q, COV_Q),
        _mvn,
    ),
    Case(
        "expon",
        st.expon(scale=[0.5, 2.0]),
        st.expon(scale=1.3),
        _torch("Exponential", [2.0, 0.5], q_args=(1 / 1.3,)),
    ),
    Case(
        "gamma",
        st.gamma(2.5, scale=1 / 1.5),
        st.gamma(1.2, scale=1 / 0.7),
        _torch("Gamma", 2.5, 1.5, q_args=(1.2, 0.7)),
    ),
    Case("beta", st.beta(2.0, 3.5), st.beta(0.8, 1.6), _torch("Beta", 2.0, 3.5, q_args=(0.8, 1.6))),
    Case("dirichlet", st.dirichlet([1.5, 2.0, 0.7]), st.dirichlet([1.0, 3.0, 2.0]), _dirichlet),
    Case(
        "laplace",
        st.laplace(0.3, 1.2),
        st.laplace(-0.4, 0.8),
        _torch("Laplace", 0.3, 1.2, q_args=(-0.4, 0.8)),
    ),
    Case(
        "uniform",
        st.uniform(0.5, 1.5),
        st.uniform(0.0, 3.0),
        _torch("Uniform", 0.5, 2.0, q_args=(0.0, 3.0)),
    ),
    Case(
        "cauchy",
        st.cauchy(0.2, 0.9),
        st.cauchy(-1.0, 2.0),
        _torch("Cauchy", 0.2, 0.9, q_args=(-1.0, 2.0)),
    ),
    Case(
        "poisson",
        st.poisson([2.5, 0.4]),
        st.poisson(1.7),
        _torch("Poisson", [2.5, 0.4], q_args=(1.7,)),
    ),
    Case("bernoulli", st.bernoulli([0.3, 0.9]), st.bernoulli(0.6), _bernoulli),
    Case("binom", st.binom(10, 0.3), st.binom(10, 0.45), _binomial),
    Case("geom", st.geom(0.3), st.geom(0.55), _geometric),
    Case(
        "gumbel_r",
        st.gumbel_r(0.5, 1.3),
        st.gumbel_r(-0.2, 0.9),
        _torch("Gumbel", 0.5, 1.3, q_args=(-0.2, 0.9)),
    ),
    Case(
        "halfnorm",
        st.halfnorm(scale=1.4),
        st.halfnorm(scale=0.8),
        _torch("HalfNormal", 1.4, q_args=(0.8,)),
    ),
    Case("pareto", st.pareto(3.0, scale=2.0), st.pareto(2.5, scale=1.5), _pareto),
    Case(
        "lognorm",
        st.lognorm(0.7, scale=np.exp(0.2)),
        st.lognorm(1.1, scale=np.exp(-0.1)),
        _lognormal,
    ),
    Case(
        "categorical",
        st.rv_discrete(values=([0, 1, 2], [0.2, 0.5, 0.3])),
        st.rv_discrete(values=([0, 1, 2], [0.4, 0.4, 0.2])),
        _categorical,
    ),
]

CROSS_FAMILY = [
    Case(
        "beta_norm",
        st.beta(2.0, 3.0),
        st.norm(0.3, 0.5),
        _cross(("Beta", (2.0, 3.0)), ("Normal", (0.3, 0.5))),
    ),
    Case(
        "expon_norm",
        st.expon(scale=0.5),
        st.norm(1.0, 2.0),
        _cross(("Exponential", (2.0,)), ("Normal", (1.0, 2.0))),
    ),
    Case(
        "gamma_norm",
        st.gamma(2.5, scale=0.5),
        st.norm(1.0, 1.5),
        _cross(("Gamma", (2.5, 2.0)), ("Normal", (1.0, 1.5))),
    ),
    Case(
        "gumbel_norm",
        st.gumbel_r(0.5, 1.3),
        st.norm(0.0, 2.0),
        _cross(("Gumbel", (0.5, 1.3)), ("Normal", (0.0, 2.0))),
    ),
    Case(
        "laplace_norm",
        st.laplace(0.3, 1.2),
        st.norm(0.0, 1.5),
        _cross(("Laplace", (0.3, 1.2)), ("Normal", (0.0, 1.5))),
    ),
    Case(
        "uniform_norm",
        st.uniform(-1.0, 3.0),
        st.norm(0.0, 1.5),
        _cross(("Uniform", (-1.0, 2.0)), ("Normal", (0.0, 1.5))),
    ),
    Case(
        "pareto_norm",
        st.pareto(3.5, scale=1.0),
        st.norm(1.0, 1.5),
        _cross(("Pareto", (1.0, 3.5)), ("Normal", (1.0, 1.5))),
    ),
    Case(
        "beta_expon",
        st.beta(2.0, 3.0),
        st.expon(scale=0.5),
        _cross(("Beta", (2.0, 3.0)), ("Exponential", (2.0,))),
    ),
    Case(
        "gamma_expon",
        st.gamma(2.5, scale=0.5),
        st.expon(scale=2.0),
        _cross(("Gamma", (2.5, 2.0)), ("Exponential", (0.5,))),
    ),
    Case(
        "pareto_expon",
        st.pareto(3.0, scale=1.0),
        st.expon(scale=2.0),
        _cross(("Pareto", (1.0, 3.0)), ("Exponential", (0.5,))),
    ),
    Case(
        "uniform_expon",
        st.uniform(0.5, 2.0),
        st.expon(scale=2.0),
        _cross(("Uniform", (0.5, 2.5)), ("Exponential", (0.5,))),
    ),
    Case(
        "beta_uniform",
        st.beta(2.0, 3.0),
        st.uniform(-0.5, 2.0),
        _cross(("Beta", (2.0, 3.0)), ("Uniform", (-0.5, 1.5))),
    ),
]

INFINITE = [
    Case(
        "norm_expon_inf",
        st.norm(0.0, 1.0),
        st.expon(),
        _cross(("Normal", (0.0, 1.0)), ("Exponential", (1.0,))),
    ),
    Case(
        "norm_beta_inf",
        st.norm(0.0, 1.0),
        st.beta(2.0, 2.0),
        _cross(("Normal", (0.0, 1.0)), ("Beta", (2.0, 2.0))),
    ),
    Case(
        "laplace_expon_inf",
        st.laplace(0.0, 1.0),
        st.expon(),
        _cross(("Laplace", (0.0, 1.0)), ("Exponential", (1.0,))),
    ),
    Case(
        "uniform_uniform_inf",
        st.uniform(0.0, 2.0),
        st.uniform(0.5, 3.0),
        _torch("Uniform", 0.0, 2.0, q_args=(0.5, 3.5)),
    ),
    Case(
        "pareto_pareto_inf",
        st.pareto(3.0, scale=1.0),
        st.pareto(2.0, scale=1.5),
        _cross(("Pareto", (1.0, 3.0)), ("Pareto", (1.5, 2.0))),
    ),
    Case(
        "gamma_uniform_inf",
        st.gamma(2.0),
        st.uniform(0.0, 5.0),
        _cross(("Gamma", (2.0, 1.0)), ("Uniform", (0.0, 5.0))),
    ),
]

torch = pytest.importorskip("torch")

# torch computes these in float64 with the same formulas; only rounding separates the two.
RTOL = 1e-10


def _torch_value(case: Case) -> np.ndarray:
    assert case.torch_pair is not None
    torch_p, torch_q = case.torch_pair()
    return torch.distributions.kl_divergence(torch_p, torch_q).numpy()


@pytest.mark.parametrize("case", SAME_FAMILY + CROSS_FAMILY, ids=lambda c: c.name)
def test_scipy_pair_matches_torch(case: Case) -> None:
    result = kl(case.scipy_p, case.scipy_q, method="exact")
    assert result.method == "exact"
    np.testing.assert_allclose(np.asarray(result), _torch_value(case), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(result.stderr, 0.0)


@pytest.mark.parametrize("case", SAME_FAMILY + CROSS_FAMILY, ids=lambda c: c.name)
def test_torch_pair_matches_torch(case: Case) -> None:
    assert case.torch_pair is not None
    torch_p, torch_q = case.torch_pair()
    result = kl(torch_p, torch_q, method="exact")
    np.testing.assert_allclose(np.asarray(result), _torch_value(case), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", INFINITE, ids=lambda c: c.name)
def test_support_mismatch_is_infinite_as_in_torch(case: Case) -> None:
    assert np.all(np.isinf(_torch_value(case)))
    assert float(kl(case.scipy_p, case.scipy_q)) == np.inf
    assert kl(case.scipy_p, case.scipy_q).method == "exact"


def test_low_rank_and_diagonal_match_torch() -> None:
    from kldiv.distributions import DiagonalNormal, LowRankNormal

    td = torch.distributions
    rng = np.random.default_rng(0)
    loc_p, loc_q = rng.normal(size=(2, 4)), rng.normal(size=4)
    factor_p, factor_q = rng.normal(size=(4, 2)), rng.normal(size=(4, 1))
    diag_p, diag_q = rng.uniform(0.5, 2.0, size=4), rng.uniform(0.5, 2.0, size=4)
    t = torch.as_tensor
    expected = td.kl_divergence(
        td.LowRankMultivariateNormal(t(loc_p), t(factor_p), t(diag_p)),
        td.LowRankMultivariateNormal(t(loc_q), t(factor_q), t(diag_q)),
    ).numpy()
    ours = kl(LowRankNormal(loc_p, factor_p, diag_p), LowRankNormal(loc_q, factor_q, diag_q))
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-9)
    independent = td.kl_divergence(
        td.Independent(td.Normal(t(loc_p), t(diag_p)), 1),
        td.Independent(td.Normal(t(loc_q), t(diag_q)), 1),
    ).numpy()
    diagonal = kl(DiagonalNormal(loc_p, diag_p), DiagonalNormal(loc_q, diag_q))
    np.testing.assert_allclose(np.asarray(diagonal), independent, rtol=RTOL)
    from_torch = kl(
        td.Independent(td.Normal(t(loc_p), t(diag_p)), 1),
        td.Independent(td.Normal(t(loc_q), t(diag_q)), 1),
    )
    np.testing.assert_allclose(np.asarray(from_torch), independent, rtol=RTOL)


def test_one_hot_categorical_reads_like_categorical() -> None:
    td = torch.distributions
    p = td.OneHotCategorical(probs=torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    q = td.OneHotCategorical(probs=torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64))
    np.testing.assert_allclose(float(kl(p, q)), td.kl_divergence(p, q).item(), rtol=RTOL)


def test_torch_pair_kldiv_cannot_read_uses_torch_closed_form() -> None:
    td = torch.distributions
    p = td.ContinuousBernoulli(probs=torch.tensor(0.3, dtype=torch.float64))
    q = td.ContinuousBernoulli(probs=torch.tensor(0.6, dtype=torch.float64))
    result = kl(p, q)
    assert result.method == "exact"
    np.testing.assert_allclose(float(result), td.kl_divergence(p, q).item(), rtol=RTOL)


MONTE_CARLO_ONLY = [
    # torch has no von Mises KL; scipy's density is periodic, so the reference sees the circle.
    Case("vonmises", st.vonmises(2.0, loc=0.3), st.vonmises(0.7, loc=-1.0), None),
    Case(
        "multinomial", st.multinomial(5, [0.2, 0.5, 0.3]), st.multinomial(5, [0.4, 0.4, 0.2]), None
    ),
    Case("expon_common_shift", st.expon(loc=1.0, scale=0.5), st.expon(loc=1.0, scale=2.0), None),
    Case(
        "beta_common_loc_scale",
        st.beta(2.0, 3.0, loc=-1.0, scale=4.0),
        st.beta(1.5, 1.5, loc=-1.0, scale=4.0),
        None,
    ),
    Case("geom_shifted_same", st.geom(0.3, loc=2), st.geom(0.5, loc=2), None),
]

N_MONTE_CARLO = 1_000_000


def _log_density(frozen: Any, x: np.ndarray) -> np.ndarray:
    name = type(frozen).__name__
    if name == "dirichlet_frozen":
        return frozen.logpdf(x.T)
    if hasattr(frozen, "logpdf"):
        return frozen.logpdf(x)
    return frozen.logpmf(x)


def _draws(frozen: Any, rng: np.random.Generator, batch_shape: tuple[int, ...]) -> np.ndarray:
    if hasattr(frozen, "dist") and batch_shape:
        return frozen.rvs(size=(N_MONTE_CARLO, *batch_shape), random_state=rng)
    return frozen.rvs(size=N_MONTE_CARLO, random_state=rng)


@pytest.mark.parametrize(
    "case", SAME_FAMILY + CROSS_FAMILY + MONTE_CARLO_ONLY, ids=lambda c: c.name
)
def test_closed_form_matches_monte_carlo(case: Case) -> None:
    exact = np.asarray(kl(case.scipy_p, case.scipy_q, method="exact"))
    rng = np.random.default_rng(12345)
    x = _draws(case.scipy_p, rng, exact.shape)
    terms = _log_density(case.scipy_p, x) - _log_density(case.scipy_q, x)
    estimate = terms.mean(axis=0)
    stderr = terms.std(axis=0, ddof=1) / np.sqrt(N_MONTE_CARLO)
    # 5 standard errors: false-failure rate 5.7e-7 per entry (normal approximation, n = 1e6).
    # The 1e-12 floor covers pairs whose log-ratio is constant (stderr 0).
    assert np.all(np.abs(estimate - exact) < 5 * stderr + 1e-12), (estimate, exact, stderr)
