"""torch pairs without a closed form: quadrature and Monte Carlo in the autograd graph.

References are independent of the code under test: ``scipy.integrate.quad`` on scipy.stats
densities, sums written out, derivatives of closed expressions of the moments, and central
finite differences of those references.
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.integrate
import scipy.stats as st

import kldiv.distributions as kd
from kldiv.distributions import kl, kl_divergence

torch = pytest.importorskip("torch")
td = torch.distributions


def _t(value: Any, grad: bool = False) -> Any:
    return torch.tensor(value, dtype=torch.float64, requires_grad=grad)


def _quad(
    log_p: Callable[[float], float],
    log_q: Callable[[float], float],
    low: float = -math.inf,
    high: float = math.inf,
) -> float:
    """KL(P‖Q) = ∫ p (log p − log q) by scipy's adaptive quadrature, split at 0."""

    def integrand(x: float) -> float:
        lp = log_p(x)
        return 0.0 if lp == -math.inf else math.exp(lp) * (lp - log_q(x))

    edges = [low, *([0.0] if low < 0.0 < high else []), high]
    return sum(
        scipy.integrate.quad(integrand, a, b, limit=400, epsabs=1e-14, epsrel=1e-13)[0]
        for a, b in itertools.pairwise(edges)
    )


def _log_t(df: float, loc: float = 0.0) -> Callable[[float], float]:
    const = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return lambda x: const - (df + 1) / 2 * math.log1p((x - loc) ** 2 / df)


def _log_normal_density(loc: float, scale: float) -> Callable[[float], float]:
    return lambda x: -0.5 * ((x - loc) / scale) ** 2 - math.log(scale * math.sqrt(2 * math.pi))


def _kl_t_normal(df: float, loc: float, scale: float) -> float:
    return _quad(_log_t(df), _log_normal_density(loc, scale))


def _kl_normal_t(loc: float, df: float) -> float:
    return _quad(_log_normal_density(loc, 1.0), _log_t(df))


@pytest.mark.parametrize(
    ("df", "loc_q", "scale_q"), [(3.0, 0.0, 1.0), (5.0, 0.4, 1.0), (30.0, -0.2, 0.8)]
)
def test_student_t_against_normal_is_quadrature_with_its_gradient(
    df: float, loc_q: float, scale_q: float
) -> None:
    df_t, loc_t, scale_t = _t(df, True), _t(loc_q, True), _t(scale_q, True)
    result = kl(td.StudentT(df_t), td.Normal(loc_t, scale_t))
    assert result.method == "quadrature"
    expected = _kl_t_normal(df, loc_q, scale_q)
    # The double-exponential rule at step 1/32 is exact to rounding for this analytic
    # integrand; its own error estimate (difference to step 1/16) is reported.
    assert float(result) == pytest.approx(expected, rel=1e-10)
    assert float(result.error_bound) < 1e-10
    grad_df, grad_loc, grad_scale = torch.autograd.grad(result.value, [df_t, loc_t, scale_t])
    # KL = −H(P) + log(σ√(2π)) + (E[x²] − 2mE[x] + m²)/(2σ²) with E[x] = 0, E[x²] = ν/(ν − 2).
    second_moment = df / (df - 2)
    assert float(grad_loc) == pytest.approx(loc_q / scale_q**2, rel=1e-9, abs=1e-12)
    expected_scale = 1 / scale_q - (second_moment + loc_q**2) / scale_q**3
    assert float(grad_scale) == pytest.approx(expected_scale, rel=1e-9)
    # d/dν by central differences of the scipy reference (step 1e-4: error ~1e-8 relative).
    h = 1e-4
    finite_difference = (
        _kl_t_normal(df + h, loc_q, scale_q) - _kl_t_normal(df - h, loc_q, scale_q)
    ) / (2 * h)
    assert float(grad_df) == pytest.approx(finite_difference, rel=1e-6, abs=1e-9)


def test_student_t_quadrature_is_reproducible_and_batched_like_torch() -> None:
    # The reported symptom: three calls gave 0.117, 0.122, 0.129 (unseeded Monte Carlo).
    df = _t([[3.0], [5.0], [30.0]])
    p, q = td.StudentT(df), td.Normal(_t([0.0, 0.5]), _t(1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quadrature is deterministic: no seed warning
        values = [kl_divergence(p, q) for _ in range(3)]
    assert values[0].shape == torch.broadcast_shapes(p.batch_shape, q.batch_shape) == (3, 2)
    assert all(torch.equal(values[0], v) for v in values[1:])
    for i, d in enumerate([3.0, 5.0, 30.0]):
        for j, m in enumerate([0.0, 0.5]):
            assert float(values[0][i, j]) == pytest.approx(_kl_t_normal(d, m, 1.0), rel=1e-10)


def test_half_line_pair_with_bound_depending_on_parameters() -> None:
    # Gamma‖LogNormal (torch has no closed form); both on (0, ∞).
    shape, rate = _t(2.0, True), _t(1.5, True)
    result = kl(td.Gamma(shape, rate), td.LogNormal(_t(0.1), _t(0.9)))
    assert result.method == "quadrature"

    def reference(a: float, b: float) -> float:
        const = a * math.log(b) - math.lgamma(a)

        def log_gamma(x: float) -> float:
            return const + (a - 1) * math.log(x) - b * x

        def log_lognormal(x: float) -> float:
            return _log_normal_density(0.1, 0.9)(math.log(x)) - math.log(x)

        return _quad(log_gamma, log_lognormal, 0.0, math.inf)

    assert float(result) == pytest.approx(reference(2.0, 1.5), rel=1e-9)
    grad_shape, grad_rate = torch.autograd.grad(result.value, [shape, rate])
    h = 1e-4
    assert float(grad_shape) == pytest.approx(
        (reference(2.0 + h, 1.5) - reference(2.0 - h, 1.5)) / (2 * h), rel=1e-6
    )
    assert float(grad_rate) == pytest.approx(
        (reference(2.0, 1.5 + h) - reference(2.0, 1.5 - h)) / (2 * h), rel=1e-6
    )


def test_finite_support_pair_and_support_mismatch() -> None:
    # Kumaraswamy‖Beta on [0, 1]: no closed form in torch or kldiv.
    p, q = td.Kumaraswamy(_t(2.0), _t(3.0)), td.Beta(_t(2.0), _t(2.5))

    def kumaraswamy_pdf(x: float) -> float:
        return 6.0 * x * (1 - x**2) ** 2

    expected = scipy.integrate.quad(
        lambda x: kumaraswamy_pdf(x) * (math.log(kumaraswamy_pdf(x)) - st.beta(2.0, 2.5).logpdf(x)),
        0.0,
        1.0,
        epsabs=1e-14,
        epsrel=1e-13,
    )[0]
    result = kl(p, q)
    assert result.method == "quadrature"
    assert float(result) == pytest.approx(expected, rel=1e-9)
    # StudentT's mass reaches outside Exponential's support.
    assert float(kl(td.StudentT(_t(3.0)), td.Exponential(_t(1.0)))) == math.inf


def test_discrete_pair_is_summed_with_its_gradient() -> None:
    # Poisson‖Geometric: KL = −H(Poisson(λ)) − log p − λ log(1 − p).
    rate, probs = _t([1.5, 7.0], True), _t(0.3, True)
    result = kl(td.Poisson(rate), td.Geometric(probs))
    assert result.method == "quadrature"
    lam = np.array([1.5, 7.0])
    expected = -st.poisson(lam).entropy() - np.log(0.3) - lam * np.log(0.7)
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-12)
    assert bool((result.error_bound <= 1e-15).all())
    grad_rate, grad_probs = torch.autograd.grad(result.value.sum(), [rate, probs])
    np.testing.assert_allclose(float(grad_probs), np.sum(-1 / 0.3 + lam / 0.7), rtol=1e-12)
    h = 1e-5
    derivative = (-st.poisson(lam + h).entropy() + st.poisson(lam - h).entropy()) / (
        2 * h
    ) - np.log(0.7)
    np.testing.assert_allclose(grad_rate.numpy(), derivative, rtol=1e-6)


def test_monte_carlo_with_rsample_keeps_the_pathwise_gradient() -> None:
    # N(m, I₂)‖StudentT(3)² (independent coordinates): no closed form, not univariate.
    loc = _t([0.3, 0.3], True)
    p = td.MultivariateNormal(loc, torch.eye(2, dtype=torch.float64))
    q = td.Independent(td.StudentT(_t([3.0, 3.0])), 1)
    result = kl(p, q, seed=11, n_samples=200_000)
    assert result.method == "monte_carlo"
    assert result.params == {"estimator": "k1", "seed": 11}
    one = _kl_normal_t(0.3, 3.0)
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(float(result) - 2 * one) < 5 * float(result.stderr)
    (gradient,) = torch.autograd.grad(result.value, [loc])
    h = 1e-4
    derivative = (_kl_normal_t(0.3 + h, 3.0) - _kl_normal_t(0.3 - h, 3.0)) / (2 * h)
    # Per-draw gradient (ν+1)x/(ν+x²) is bounded by 2/√3, so its standard error is below
    # 1.16/√200000 = 0.0026; 5 of those: false-failure rate below 5.7e-7 per coordinate.
    np.testing.assert_allclose(gradient.numpy(), derivative, atol=5 * 0.0026)


def test_monte_carlo_without_rsample_adds_the_score_function_gradient() -> None:
    rate, probs = _t([1.5, 3.0], True), _t([0.4, 0.3], True)
    p = td.Independent(td.Poisson(rate), 1)
    q = td.Independent(td.Geometric(probs), 1)
    result = kl(p, q, seed=5, n_samples=100_000)
    assert result.method == "monte_carlo"
    lam, pr = np.array([1.5, 3.0]), np.array([0.4, 0.3])

    def reference(lam: Any) -> Any:
        return -st.poisson(lam).entropy() - np.log(pr) - lam * np.log1p(-pr)

    assert abs(float(result) - reference(lam).sum()) < 5 * float(result.stderr)
    grad_rate, grad_probs = torch.autograd.grad(result.value, [rate, probs])
    h = 1e-5
    expected_rate = (reference(lam + h) - reference(lam - h)) / (2 * h)
    expected_probs = -1 / pr + lam / (1 - pr)
    # Spread of these gradients over 12 seeds at n = 1e5: 0.0025, 0.0014 (rate) and 0.0063,
    # 0.0066 (probs); 6 times that: false-failure rate about 2e-9 per entry.
    np.testing.assert_allclose(grad_rate.numpy(), expected_rate, atol=6 * 0.0025)
    np.testing.assert_allclose(grad_probs.numpy(), expected_probs, atol=6 * 0.0066)


@pytest.mark.parametrize("source", ["torch", "scipy"])
def test_unseeded_monte_carlo_warns_and_names_the_seed(source: str) -> None:
    if source == "torch":
        p = td.MultivariateNormal(_t([0.0, 0.0]), torch.eye(2, dtype=torch.float64))
        q = td.Independent(td.StudentT(_t([4.0, 4.0])), 1)
    else:
        p, q = st.norm(0.0, 1.0), st.t(4.0)
    with pytest.warns(
        UserWarning, match=r"without a seed, so the value changes from call to call; pass seed=\d+"
    ) as caught:
        result = kl(p, q, method="monte_carlo", n_samples=1000)
    seed = int(re.search(r"seed=(\d+)", str(caught[0].message)).group(1))  # type: ignore[union-attr]
    assert result.params["seed"] == seed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = kl(p, q, method="monte_carlo", n_samples=1000, seed=seed)
    assert float(again) == float(result)


def test_result_of_torch_inputs_reads_like_the_others() -> None:
    loc = _t([0.0, 1.0], True)
    result = kl(td.Normal(loc, _t(1.0)), td.Normal(_t(0.0), _t(1.0)))
    np.testing.assert_allclose(np.asarray(result), [0.0, 0.5], rtol=1e-15)
    assert result.shape == (2,)
    assert result.to_dict()["value"] == [0.0, 0.5]
    assert "values [0.  0.5]" in str(result)
    single = kl(td.Normal(_t(1.0, True), _t(1.0)), td.Normal(_t(0.0), _t(1.0)))
    assert float(single) == 0.5
    assert str(single) == "0.5 ± 0 nats (exact)"


def test_errors_name_the_problem_and_the_fix() -> None:
    with pytest.raises(
        TypeError,
        match=r"kl_divergence takes torch\.distributions objects, got scipy\.stats\.norm and scipy\.stats\.norm; use kldiv\.distributions\.kl",
    ):
        kl_divergence(st.norm(), st.norm())
    with pytest.raises(
        TypeError,
        match=r"KL\(StudentT‖scipy\.stats\.norm\) has no closed form, and the numerical methods need both sides as torch\.distributions objects",
    ):
        kl(td.StudentT(_t(3.0)), st.norm())
    p = td.MultivariateNormal(_t([0.0, 0.0]), torch.eye(2, dtype=torch.float64))
    q = td.Independent(td.StudentT(_t([4.0, 4.0])), 1)
    with pytest.raises(
        ValueError,
        match=r"method='quadrature' needs univariate P and Q with supports torch names; got event shapes \(2,\) and \(2,\)",
    ):
        kl(p, q, method="quadrature")
    with pytest.raises(TypeError, match=r"no closed form is registered for KL\(StudentT‖Normal\)"):
        kl(td.StudentT(_t(3.0)), td.Normal(_t(0.0), _t(1.0)), method="exact")
    with pytest.raises(
        ValueError,
        match=r"more than 8388608 points of non-negligible mass, too many to sum; use method='monte_carlo'",
    ):
        kl(td.Poisson(_t(1e8)), td.Geometric(_t(0.5)))


@pytest.mark.parametrize(
    "make_q", [lambda: kd.Normal(0.0, 2.0), lambda: st.norm(0.0, 2.0)], ids=["kldiv", "scipy"]
)
def test_torch_against_a_non_torch_closed_form_keeps_the_graph(make_q: Callable[[], Any]) -> None:
    loc = _t(0.5, True)
    result = kl(td.Normal(loc, _t(1.0)), make_q())
    # log(2/1) + (1 + 0.5²)/(2·4) − 1/2; d/dμ = μ/σ_q².
    assert float(result) == pytest.approx(math.log(2.0) + 1.25 / 8 - 0.5, rel=1e-14)
    (gradient,) = torch.autograd.grad(result.value, [loc])
    assert float(gradient) == pytest.approx(0.5 / 4.0, rel=1e-14)


def test_discrete_against_continuous_torch_is_infinite_in_both_orders() -> None:
    discrete, continuous = td.NegativeBinomial(_t(3.0), _t(0.4)), td.Normal(_t(0.0), _t(1.0))
    for method in ("auto", "quadrature"):
        assert float(kl(discrete, continuous, method=method)) == math.inf
        assert float(kl(continuous, discrete, method=method)) == math.inf


def test_discrete_pair_torch_cannot_read_is_summed_like_scipy() -> None:
    # torch's NegativeBinomial(r, p) counts successes of probability p before r failures:
    # scipy's nbinom(r, 1 − p). Reference: the sum written out over 0..400.
    result = kl(td.NegativeBinomial(_t(3.0), _t(0.4)), td.Poisson(_t(2.0)))
    assert result.method == "quadrature"
    k = np.arange(0, 400)
    p, q = st.nbinom(3, 0.6), st.poisson(2.0)
    expected = np.sum(p.pmf(k) * (p.logpmf(k) - q.logpmf(k)))
    assert float(result) == pytest.approx(expected, rel=1e-12)


def test_seeded_monte_carlo_leaves_the_callers_random_state_alone() -> None:
    p = td.MultivariateNormal(_t([0.0, 0.0]), torch.eye(2, dtype=torch.float64))
    q = td.Independent(td.StudentT(_t([4.0, 4.0])), 1)
    before = torch.get_rng_state()
    kl(p, q, n_samples=100, seed=1)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("loc_q", [1.0, -2.0])
def test_kink_of_q_away_from_p_centre_is_a_split_point(loc_q: float) -> None:
    # Laplace's log-density has a kink at its location; without a split there the rule is
    # off by ~6e-5 (StudentT(4)‖Laplace(1, 1.5)). Reference split at 0 and at the kink.
    result = kl(td.StudentT(_t(4.0)), td.Laplace(_t(loc_q), _t(1.5)))
    log_p = _log_t(4.0)

    def log_q(x: float) -> float:
        return -abs(x - loc_q) / 1.5 - math.log(3.0)

    def integrand(x: float) -> float:
        return math.exp(log_p(x)) * (log_p(x) - log_q(x))

    edges = [-math.inf, *sorted({0.0, loc_q}), math.inf]
    expected = sum(
        scipy.integrate.quad(integrand, a, b, limit=400, epsabs=1e-14, epsrel=1e-13)[0]
        for a, b in itertools.pairwise(edges)
    )
    assert float(result) == pytest.approx(expected, rel=1e-10)
    assert float(result.error_bound) < 1e-10


def test_tensor_parameters_in_kldiv_types_give_the_same_errors() -> None:
    from kldiv.distributions._torch import to_torch

    singular = kd.MultivariateNormal(_t([0.0, 0.0]), _t([[1.0, 1.0], [1.0, 1.0]]))
    regular = kd.MultivariateNormal(_t([0.0, 0.0]), torch.eye(2, dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"the covariance of P is not positive definite \(Cholesky failed\)"
    ):
        kl(singular, regular)
    with pytest.raises(TypeError, match=r"Poisson has no torch\.distributions counterpart here"):
        to_torch(kd.Poisson(_t(1.0)))


def test_kldiv_types_with_tensor_parameters_give_a_tensor_in_the_graph() -> None:
    loc = _t([0.0, 1.0], True)
    result = kl(kd.Normal(loc, 1.0), kd.Normal(0.0, 1.0))
    assert isinstance(result.value, torch.Tensor)
    (gradient,) = torch.autograd.grad(result.value.sum(), [loc])
    torch.testing.assert_close(gradient, _t([0.0, 1.0]), rtol=1e-15, atol=0)
    mixed = kl(kd.Normal(loc, 1.0), st.norm(0.0, 1.0))
    (gradient,) = torch.autograd.grad(mixed.value.sum(), [loc])
    torch.testing.assert_close(gradient, _t([0.0, 1.0]), rtol=1e-15, atol=0)
