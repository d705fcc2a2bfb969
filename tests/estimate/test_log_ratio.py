"""Schulman's k1, k2, k3 estimators from log-densities at samples of P."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kldiv.estimate import log_ratio
from kldiv.estimate._log_ratio import log_ratio_terms


def _normal_log_pdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


# KL(N(0, 1) ‖ N(0.3, 1.2)) in closed form.
LOC_Q, SCALE_Q = 0.3, 1.2
TRUTH = np.log(SCALE_Q) + (1 + LOC_Q**2) / (2 * SCALE_Q**2) - 0.5


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_estimators_within_5_stderr(estimator: str) -> None:
    x = np.random.default_rng(8).standard_normal(1_000_000)
    result = log_ratio(
        _normal_log_pdf(x, 0, 1), _normal_log_pdf(x, LOC_Q, SCALE_Q), estimator=estimator
    )
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(result.value - TRUTH) < 5 * result.stderr
    assert result.method == estimator
    assert result.n == 1_000_000


def test_k3_has_lower_variance_than_k1_for_close_distributions() -> None:
    x = np.random.default_rng(9).standard_normal(100_000)
    log_p, log_q = _normal_log_pdf(x, 0, 1), _normal_log_pdf(x, 0.1, 1.0)
    assert (
        log_ratio(log_p, log_q, estimator="k3").stderr
        < log_ratio(log_p, log_q, estimator="k1").stderr
    )


def test_k2_is_the_second_order_approximation() -> None:
    # For N(0,1) vs N(δ,1), k2 = δ²(x − δ/2)²/2 has mean δ²/2 + δ⁴/8: biased by δ⁴/8.
    delta = 0.5
    x = np.random.default_rng(10).standard_normal(1_000_000)
    result = log_ratio(_normal_log_pdf(x, 0, 1), _normal_log_pdf(x, delta, 1.0), estimator="k2")
    # 5 standard errors: false-failure rate 5.7e-7.
    assert abs(result.value - (delta**2 / 2 + delta**4 / 8)) < 5 * result.stderr


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-700, 700)))
def test_k3_is_never_negative(log_r: np.ndarray) -> None:
    assert np.all(log_ratio_terms(log_r, "k3") >= 0)


@given(st.floats(-2.0, 2.0))
def test_k3_series_matches_high_precision(t: float) -> None:
    mpmath = pytest.importorskip("mpmath")
    # exp(t) − 1 − t cancels about 2·log10(1/|t|) digits; carry that many more.
    digits = 40 + (0 if t == 0 else 2 * max(0, int(-np.log10(abs(t)))))
    with mpmath.workdps(digits):
        expected = float(mpmath.exp(mpmath.mpf(t)) - 1 - mpmath.mpf(t))
    np.testing.assert_allclose(
        log_ratio_terms(np.array([t]), "k3")[0], expected, rtol=1e-14, atol=1e-300
    )


def test_batch_axes_after_the_sample_axis() -> None:
    x = np.random.default_rng(12).standard_normal((5000, 3))
    log_p = _normal_log_pdf(x, 0, 1)
    log_q = _normal_log_pdf(x, np.array([0.0, 0.5, 1.0]), 1.0)
    result = log_ratio(log_p, log_q, estimator="k1")
    assert result.shape == (3,)
    np.testing.assert_allclose(np.asarray(result), (log_p - log_q).mean(axis=0), rtol=1e-12)


def test_q_zero_at_a_sample_gives_infinity() -> None:
    result = log_ratio([0.0, -1.0], [-np.inf, -1.0])
    assert result.value == np.inf
    assert np.isnan(result.stderr)


@pytest.mark.parametrize(
    ("log_p", "log_q", "estimator", "message"),
    [
        ([0.0, np.nan], [0.0, 0.0], "k3", r"log_p has NaN at index \(1,\)"),
        ([0.0, 0.0], [0.0, np.nan, 0.0], "k3", r"log_q has NaN at index \(1,\)"),
        ([0.0, 0.0], [0.0, 0.0, 0.0], "k3", r"log_p has shape \(2,\) and log_q has shape \(3,\)"),
        ([0.0], [0.0], "k3", "need at least 2 samples for a standard error, got 1"),
        (0.0, 0.0, "k3", "log_p must be a 1-D array of samples"),
        ([0.0, 0.0], [0.0, 0.0], "k4", r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"),
    ],
)
def test_bad_input(log_p: object, log_q: object, estimator: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        log_ratio(log_p, log_q, estimator=estimator)  # type: ignore[arg-type]


def test_terms_reject_unknown_estimator() -> None:
    with pytest.raises(ValueError, match="estimator must be one of"):
        log_ratio_terms(np.zeros(2), "k0")
