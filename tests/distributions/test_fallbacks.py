"""Quadrature, summation and Monte Carlo fallbacks, and the loc/scale reading of scipy objects."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.stats as st

from kldiv.distributions import Normal, kl

QUADRATURE_PAIRS = [
    ("norm", st.norm(0.3, 1.2), st.norm(-0.5, 0.7)),
    ("gamma", st.gamma(2.5, scale=0.4), st.gamma(1.2, scale=1.5)),
    ("beta", st.beta(2.0, 3.5), st.beta(0.8, 1.6)),
    ("laplace", st.laplace(0.3, 1.2), st.laplace(-0.4, 0.8)),
    ("gumbel_r", st.gumbel_r(0.5, 1.3), st.gumbel_r(-0.2, 0.9)),
    ("cauchy", st.cauchy(0.2, 0.9), st.cauchy(-1.0, 2.0)),
    ("poisson", st.poisson(2.5), st.poisson(1.7)),
    ("binom", st.binom(10, 0.3), st.binom(10, 0.45)),
    ("geom", st.geom(0.3), st.geom(0.55)),
]


@pytest.mark.parametrize(("name", "p", "q"), QUADRATURE_PAIRS, ids=[c[0] for c in QUADRATURE_PAIRS])
def test_quadrature_matches_closed_form(name: str, p: object, q: object) -> None:
    exact = float(kl(p, q, method="exact"))
    numeric = kl(p, q, method="quadrature")
    assert numeric.method == "quadrature"
    assert numeric.error_bound is not None
    assert abs(float(numeric) - exact) <= 1e-8 * max(1.0, exact) + float(numeric.error_bound)


def _kl_t_normal_mpmath(df: float, scale_q: float) -> float:
    """KL(t_df ‖ N(0, scale_q²)) by mpmath at 30 digits, from the densities written out."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    df_m, s = mpmath.mpf(df), mpmath.mpf(scale_q)
    log_norm_t = (
        mpmath.loggamma((df_m + 1) / 2)
        - mpmath.loggamma(df_m / 2)
        - mpmath.log(mpmath.sqrt(df_m * mpmath.pi))
    )

    def integrand(x: object) -> object:
        log_p = log_norm_t - (df_m + 1) / 2 * mpmath.log(1 + x**2 / df_m)
        log_q = -mpmath.log(s * mpmath.sqrt(2 * mpmath.pi)) - x**2 / (2 * s**2)
        return mpmath.exp(log_p) * (log_p - log_q)

    return float(mpmath.quad(integrand, [-mpmath.inf, -10, 0, 10, mpmath.inf]))


@pytest.mark.parametrize(("df", "scale_q"), [(5.0, 1.0), (3.0, 2.0), (30.0, 0.8)])
def test_student_t_against_normal_by_quadrature(df: float, scale_q: float) -> None:
    result = kl(st.t(df), st.norm(0.0, scale_q))
    assert result.method == "quadrature"
    np.testing.assert_allclose(float(result), _kl_t_normal_mpmath(df, scale_q), rtol=1e-9)


def test_discrete_sum_without_closed_form_matches_direct_sum() -> None:
    p, q = st.binom(8, 0.3), st.binom(12, 0.4)  # different n: no closed form
    k = np.arange(0, 9)
    expected = np.sum(p.pmf(k) * (p.logpmf(k) - q.logpmf(k)))
    result = kl(p, q)
    assert result.method == "quadrature"
    np.testing.assert_allclose(float(result), expected, rtol=1e-12)
    p2, q2 = st.poisson(3.0), st.nbinom(4, 0.5)
    k2 = np.arange(0, 200)
    expected2 = np.sum(p2.pmf(k2) * (p2.logpmf(k2) - q2.logpmf(k2)))
    np.testing.assert_allclose(float(kl(p2, q2)), expected2, rtol=1e-12)


def test_shifted_exponential_is_read_not_guessed() -> None:
    # p = expon(loc=1), q = expon(loc=0): KL = log(λp/λq) − 1 + λq(a − b + 1/λp) = 1.
    p, q = st.expon(loc=1.0), st.expon()
    with pytest.raises(ValueError, match=r"shifted by loc=1\.0.*method='auto'"):
        kl(p, q, method="exact")
    result = kl(p, q)
    assert result.method == "quadrature"
    np.testing.assert_allclose(float(result), 1.0, rtol=1e-9)
    assert float(kl(q, p)) == np.inf  # q puts mass on [0, 1) where p has none


def test_common_shift_keeps_the_closed_form() -> None:
    shifted = kl(st.gamma(2.0, loc=3.0, scale=0.5), st.gamma(3.0, loc=3.0, scale=0.7))
    plain = kl(st.gamma(2.0, scale=0.5), st.gamma(3.0, scale=0.7))
    assert shifted.method == "exact"
    assert float(shifted) == float(plain)


def test_beta_with_different_scales_is_refused_for_exact() -> None:
    with pytest.raises(ValueError, match=r"loc=.*scale.*common to both"):
        kl(st.beta(2, 2, scale=2.0), st.beta(2, 2, scale=3.0), method="exact")
    assert float(kl(st.beta(2, 2, scale=2.0), st.beta(2, 2, scale=3.0))) > 0


def test_monte_carlo_matches_closed_form_and_is_reproducible() -> None:
    p, q = st.norm(0.0, 1.0), st.norm(0.5, 0.8)
    exact = float(kl(p, q))
    first = kl(p, q, method="monte_carlo", n_samples=200_000, seed=7)
    second = kl(p, q, method="monte_carlo", n_samples=200_000, seed=7)
    assert first.method == "monte_carlo"
    assert first.n == 200_000
    assert float(first) == float(second)
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(float(first) - exact) < 5 * first.stderr
    assert first.params["estimator"] == "k3"  # Q inside P's support and k3 has lower variance


def test_monte_carlo_uses_k1_when_q_reaches_beyond_p() -> None:
    result = kl(st.uniform(0, 1), st.norm(0.5, 1.0), method="monte_carlo", seed=0)
    assert result.params["estimator"] == "k1"
    exact = float(kl(st.uniform(0, 1), st.norm(0.5, 1.0)))
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(float(result) - exact) < 5 * result.stderr


def test_monte_carlo_on_batches_and_torch_objects() -> None:
    torch = pytest.importorskip("torch")
    td = torch.distributions
    p = td.StudentT(torch.tensor([4.0, 8.0], dtype=torch.float64))
    q = td.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    result = kl(p, q, method="monte_carlo", seed=3)
    assert result.method == "monte_carlo"
    assert result.params["seed"] == 3
    reference = np.array([float(kl(st.t(4.0), st.norm())), float(kl(st.t(8.0), st.norm()))])
    # 5 standard errors per entry: false-failure rate 1.1e-6 for the pair.
    assert np.all(np.abs(np.asarray(result) - reference) < 5 * np.asarray(result.stderr))


def test_batched_parameters_broadcast() -> None:
    result = kl(st.norm([0.0, 1.0, 2.0], 1.0), st.norm(0.0, [[1.0], [2.0]]))
    assert result.shape == (2, 3)
    for i, scale in enumerate([1.0, 2.0]):
        for j, loc in enumerate([0.0, 1.0, 2.0]):
            expected = np.log(scale) + (1 + loc**2) / (2 * scale**2) - 0.5
            np.testing.assert_allclose(np.asarray(result)[i, j], expected, rtol=1e-13)
    quadrature = kl(Normal([0.0, 1.0], 1.0), Normal(0.0, 2.0), method="quadrature")
    np.testing.assert_allclose(
        np.asarray(quadrature), np.asarray(kl(Normal([0.0, 1.0], 1.0), Normal(0.0, 2.0))), rtol=1e-9
    )


def test_discrete_against_continuous_is_infinite() -> None:
    assert float(kl(st.poisson(2.0), st.norm(2.0, 1.0))) == np.inf
    assert float(kl(st.norm(2.0, 1.0), st.poisson(2.0))) == np.inf


def test_tables_on_different_values_are_aligned() -> None:
    p = st.rv_discrete(values=([1, 5], [0.3, 0.7]))
    q = st.rv_discrete(values=([1, 2, 5], [0.2, 0.3, 0.5]))
    expected = 0.3 * np.log(0.3 / 0.2) + 0.7 * np.log(0.7 / 0.5)
    np.testing.assert_allclose(float(kl(p, q)), expected, rtol=1e-14)
    assert float(kl(q, p)) == np.inf


def test_torch_pair_without_closed_form_uses_quadrature_like_scipy() -> None:
    torch = pytest.importorskip("torch")
    td = torch.distributions

    def t(value: float) -> object:
        return torch.tensor(value, dtype=torch.float64)

    result = kl(td.Gamma(t(2.0), t(1.5)), td.LogNormal(t(0.1), t(0.9)))
    assert result.method == "quadrature"
    # Independent reference: scipy.integrate.quad on scipy.stats densities.
    p, q = st.gamma(2.0, scale=1 / 1.5), st.lognorm(0.9, scale=np.exp(0.1))
    expected = scipy.integrate.quad(
        lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), 0, np.inf, limit=200
    )[0]
    np.testing.assert_allclose(float(result), expected, rtol=1e-8)
