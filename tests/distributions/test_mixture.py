"""Mixtures: Monte Carlo against quadrature, and the Hershey–Olsen approximation and bound."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.stats as st

from kldiv.distributions import Mixture, MultivariateNormal, Normal, kl

MIX_P = Mixture([0.3, 0.7], [st.norm(-1.0, 0.8), st.norm(1.5, 0.6)])
MIX_Q = Mixture([0.5, 0.2, 0.3], [Normal(-0.5, 1.0), Normal(1.0, 0.5), Normal(3.0, 1.5)])


def _direct_quad(p: Mixture, q: Mixture) -> float:
    """KL by scipy.integrate.quad on the mixture densities written out with scipy.stats."""

    def density(mixture: Mixture, x: float) -> float:
        total = 0.0
        for weight, component in zip(mixture.weights, mixture.components, strict=True):
            frozen = component.to_scipy() if isinstance(component, Normal) else component
            total += weight * frozen.pdf(x)
        return total

    def integrand(x: float) -> float:
        p_x = density(p, x)
        return 0.0 if p_x == 0 else p_x * np.log(p_x / density(q, x))

    return scipy.integrate.quad(integrand, -30, 30, points=[-1.0, 1.5], limit=500, epsabs=1e-12)[0]


def test_univariate_mixture_quadrature_matches_direct_integration() -> None:
    result = kl(MIX_P, MIX_Q)
    assert result.method == "quadrature"
    np.testing.assert_allclose(float(result), _direct_quad(MIX_P, MIX_Q), rtol=1e-8)


def test_mixture_monte_carlo_matches_quadrature() -> None:
    result = kl(MIX_P, MIX_Q, method="monte_carlo", n_samples=1_000_000, seed=1)
    assert result.method == "monte_carlo"
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(float(result) - float(kl(MIX_P, MIX_Q))) < 5 * result.stderr


def test_upper_bound_is_above_and_variational_is_near() -> None:
    truth = float(kl(MIX_P, MIX_Q))
    bound = kl(MIX_P, MIX_Q, method="bound")
    assert bound.method == "bound"
    assert bound.stderr == 0.0
    assert float(bound) >= truth - 1e-10
    # The upper bound is no worse than the chain-rule bound at φ = ψ = π ⊗ ω it starts from.
    start = sum(
        wp * wq * float(kl(fp, fq))
        for wp, fp in zip(MIX_P.weights, MIX_P.components, strict=True)
        for wq, fq in zip(MIX_Q.weights, MIX_Q.components, strict=True)
    )
    assert float(bound) <= start
    variational = kl(MIX_P, MIX_Q, method="variational")
    assert variational.method == "variational"
    # Hershey–Olsen report D_var within a few tenths of a nat of the truth for such mixtures.
    assert abs(float(variational) - truth) < 0.3


def test_single_component_mixtures_reduce_to_the_closed_form() -> None:
    p, q = st.norm(0.0, 1.0), st.norm(1.0, 2.0)
    exact = float(kl(p, q))
    for method in ("variational", "bound"):
        np.testing.assert_allclose(
            float(kl(Mixture([1.0], [p]), Mixture([1.0], [q]), method=method)), exact, rtol=1e-12
        )
    np.testing.assert_allclose(float(kl(Mixture([1.0], [p]), q, method="bound")), exact, rtol=1e-12)


def test_identical_mixtures_have_zero_variational_value() -> None:
    assert float(kl(MIX_P, MIX_P, method="variational")) == pytest.approx(0.0, abs=1e-14)
    assert float(kl(MIX_P, MIX_P, method="bound")) >= -1e-14


def test_multivariate_gaussian_mixture_against_independent_monte_carlo() -> None:
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    p = Mixture(
        [0.4, 0.6], [MultivariateNormal([0.0, 0.0], cov), MultivariateNormal([2.0, 1.0], np.eye(2))]
    )
    q = Mixture(
        [0.5, 0.5], [MultivariateNormal([0.5, 0.0], np.eye(2)), MultivariateNormal([2.0, 2.0], cov)]
    )
    ours = kl(p, q, n_samples=400_000, seed=2)
    assert ours.method == "monte_carlo"
    # Independent reference: scipy.stats densities and sampler, k1 estimator.
    rng = np.random.default_rng(99)
    n = 400_000
    pick = rng.random(n) < 0.4
    x = np.where(
        pick[:, None],
        st.multivariate_normal([0.0, 0.0], cov).rvs(n, random_state=rng),
        st.multivariate_normal([2.0, 1.0], np.eye(2)).rvs(n, random_state=rng),
    )
    p_x = 0.4 * st.multivariate_normal([0.0, 0.0], cov).pdf(x) + 0.6 * st.multivariate_normal(
        [2.0, 1.0], np.eye(2)
    ).pdf(x)
    q_x = 0.5 * st.multivariate_normal([0.5, 0.0], np.eye(2)).pdf(x) + 0.5 * st.multivariate_normal(
        [2.0, 2.0], cov
    ).pdf(x)
    terms = np.log(p_x / q_x)
    reference, reference_se = terms.mean(), terms.std(ddof=1) / np.sqrt(n)
    # 5 combined standard errors: false-failure rate 5.7e-7.
    assert abs(float(ours) - reference) < 5 * np.hypot(ours.stderr, reference_se)
    assert float(kl(p, q, method="bound")) >= reference - 5 * reference_se
