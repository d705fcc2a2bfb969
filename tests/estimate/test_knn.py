"""kNN estimator: accuracy on Gaussians, agreement with a brute-force reference, duplicates, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import digamma

from kldiv.estimate import knn


def _brute_force(
    x: np.ndarray, y: np.ndarray, k: int, adaptive: bool, metric: str = "euclidean"
) -> float:
    """Wang–Kulkarni–Verdú from all pairwise distances, skipping zero distances (kldiv's rule)."""
    n, d = x.shape
    m = y.shape[0]
    to_x, to_y = cdist(x, x, metric=metric), cdist(x, y, metric=metric)
    terms = []
    for i in range(n):
        rho_all = np.sort(to_x[i][to_x[i] > 0])
        nu_all = np.sort(to_y[i][to_y[i] > 0])
        rho, nu = rho_all[k - 1], nu_all[k - 1]
        if not adaptive:
            terms.append(d * math.log(nu / rho))
            continue
        radius = max(rho, nu)
        l_i = int(np.sum(rho_all <= radius))
        k_i = int(np.sum(nu_all <= radius))
        terms.append(d * math.log(nu_all[k_i - 1] / rho_all[l_i - 1]) + digamma(l_i) - digamma(k_i))
    return float(np.mean(terms) + math.log(m / (n - 1)))


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize(("k", "d"), [(1, 1), (1, 3), (3, 2), (4, 5)])
def test_matches_brute_force(k: int, d: int, adaptive: bool, metric: str) -> None:
    rng = np.random.default_rng(k * 10 + d)
    x = rng.normal(size=(300, d))
    y = rng.normal(0.5, 1.3, size=(250, d))
    result = knn(x, y, k=k, adaptive=adaptive, metric=metric)  # type: ignore[arg-type]
    np.testing.assert_allclose(float(result), _brute_force(x, y, k, adaptive, metric), rtol=1e-12)
    assert result.params["metric"] == metric


def _npeet_kldiv(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """NPEET's ``kldiv`` (Ver Steeg), written out: max-norm k-NN distances, result in bits.

    ``const = log(m) - log(n - 1)``; ``(const + d * (mean(log nu) - mean(log rho))) / log 2``,
    with rho the k-th neighbour distance in x (self excluded) and nu that in y, under p = inf.
    Distances from pairwise differences with NumPy, so no KD-tree is involved.
    """
    n, d = x.shape
    to_x = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    to_y = np.abs(x[:, None, :] - y[None, :, :]).max(axis=2)
    rho = np.sort(to_x, axis=1)[:, k]  # column 0 is the point itself
    nu = np.sort(to_y, axis=1)[:, k - 1]
    const = math.log(len(y)) - math.log(n - 1)
    return float((const + d * (np.mean(np.log(nu)) - np.mean(np.log(rho)))) / math.log(2))


@pytest.mark.parametrize(("k", "d"), [(3, 1), (3, 4), (1, 2)])
def test_max_norm_matches_npeet_formula(k: int, d: int) -> None:
    rng = np.random.default_rng(100 + d)
    x, y = rng.normal(size=(400, d)), rng.normal(0.3, 1.2, size=(350, d))
    result = knn(x, y, k=k, metric="chebyshev", base=2)
    np.testing.assert_allclose(float(result), _npeet_kldiv(x, y, k), rtol=1e-12)
    euclidean = knn(x, y, k=k, base=2)
    if d > 1:  # in one dimension every norm is |u|
        assert float(euclidean) != float(result)
    else:
        assert float(euclidean) == float(result)


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
def test_both_norms_estimate_the_gaussian_kl(metric: str) -> None:
    # KL(N(0, I_3) ‖ N(mu, diag(s^2))) in closed form: the volume of the unit ball cancels
    # in the estimator, so the max-norm estimates the same number as the Euclidean norm.
    rng = np.random.default_rng(31)
    d, n = 3, 20_000
    mu, s = np.array([0.5, 0.0, -0.3]), np.array([1.0, 1.5, 0.8])
    truth = float(np.sum(np.log(s) + (1 + mu**2) / (2 * s**2) - 0.5))
    x = rng.normal(size=(n, d))
    y = mu + s * rng.normal(size=(n, d))
    value = float(knn(x, y, k=5, metric=metric))  # type: ignore[arg-type]
    # Over 10 other seeds both norms had bias -0.023 (Euclidean) and -0.025 (max-norm) with
    # sd <= 0.014 here; 0.08 is >= 4 sd beyond the bias: false-failure rate below 1e-4.
    assert abs(value - truth) < 0.08


@pytest.mark.parametrize("k", [1, 3])
def test_matches_universal_divergence(k: int) -> None:
    universal_divergence = pytest.importorskip("universal_divergence")
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 3)), rng.normal(0.3, 1.0, size=(500, 3))
    expected = universal_divergence.estimate(x, y, k=k)
    np.testing.assert_allclose(float(knn(x, y, k=k)), expected, rtol=1e-9)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_gaussians_within_005_nats(d: int) -> None:
    rng = np.random.default_rng(2009 + d)
    n = 20_000
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d))
    y[:, 0] += 0.5  # KL(N(0, I) ‖ N(0.5 e1, I)) = 0.125
    result = knn(x, y, k=5)
    # Over 8 seeds the k = 5 estimate had bias ≤ 0.011 and sd ≤ 0.010 (d = 5 worst), so
    # 0.05 is ≥ 3.9 sd from the mean: false-failure rate below 1e-4.
    assert abs(float(result) - 0.125) < 0.05
    assert (result.n, result.m, result.params["k"]) == (n, n, 5)


def test_adaptive_variant_is_less_biased_at_n_200() -> None:
    rng = np.random.default_rng(17)
    truth = 2.0  # KL(N(0, 1) ‖ N(2, 1))
    fixed, adaptive = [], []
    for _ in range(400):
        x = rng.normal(size=200)
        y = rng.normal(2.0, 1.0, size=200)
        fixed.append(float(knn(x, y, k=1)))
        adaptive.append(float(knn(x, y, k=1, adaptive=True)))
    bias_fixed = np.mean(fixed) - truth
    bias_adaptive = np.mean(adaptive) - truth
    paired = np.asarray(adaptive) - np.asarray(fixed)
    paired_se = paired.std(ddof=1) / math.sqrt(len(paired))
    # The fixed-k estimator underestimates here (bias ≈ −0.16, se 0.017); the adaptive one
    # moves up by ≈ 0.039 with paired se ≈ 0.004. Requiring 5 paired se: false-failure
    # rate 5.7e-7 (one-sided 2.9e-7).
    assert bias_fixed < 0
    assert np.mean(paired) > 5 * paired_se
    assert abs(bias_adaptive) < abs(bias_fixed)


def test_duplicate_points_follow_the_documented_rule() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(300, 2)), 1)  # many exact copies within x and across x and y
    y = np.round(rng.normal(0.2, 1.0, size=(300, 2)), 1)
    for adaptive in (False, True):
        with pytest.warns(UserWarning, match="exact copies; neighbours at distance 0 are skipped"):
            result = knn(x, y, k=2, adaptive=adaptive)
        assert math.isfinite(float(result))
        np.testing.assert_allclose(float(result), _brute_force(x, y, 2, adaptive), rtol=1e-12)
        assert result.params["duplicates"] > 0


def test_one_dimensional_input_and_base() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=500), rng.normal(1.0, 1.0, size=400)
    nats = knn(x, y)
    assert float(nats) == float(knn(x[:, None], y[:, None]))
    bits = knn(x, y, base=2)
    assert bits.units == "bits"
    np.testing.assert_allclose(float(bits), float(nats) / math.log(2), rtol=1e-14)


def test_no_warning_without_ties() -> None:
    rng = np.random.default_rng(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn(rng.normal(size=(100, 2)), rng.normal(size=(100, 2)))


@pytest.mark.parametrize(
    ("x", "y", "options", "message"),
    [
        (np.zeros((10, 2)), np.zeros((10, 3)), {}, "x has dimension 2 and y has dimension 3"),
        (np.zeros((1, 2)), np.zeros((10, 2)), {}, "x needs at least 2 samples, got 1"),
        (
            np.array([[0.0, np.nan], [1.0, 2.0]]),
            np.zeros((10, 2)),
            {},
            "x has a NaN or infinite entry in row 0",
        ),
        (
            np.arange(5.0),
            np.array([0.0, np.inf, 1.0]),
            {},
            "y has a NaN or infinite entry in row 1",
        ),
        (np.zeros((2, 2, 2)), np.zeros((3, 2)), {}, r"x must be 1-D \(n,\) or 2-D \(n, d\)"),
        (np.arange(5.0), np.arange(5.0), {"k": 0}, "k must be an integer with 1 <= k < n = 5"),
        (np.arange(5.0), np.arange(5.0), {"k": 5}, "k must be an integer with 1 <= k < n = 5"),
        (np.arange(5.0), np.arange(5.0), {"k": 1.5}, "k must be an integer"),
        (np.arange(5.0), np.arange(5.0), {"k": 1, "base": 1.0}, "base must be > 0 and != 1"),
        (
            np.arange(5.0),
            np.arange(5.0),
            {"k": 1, "metric": "manhattan"},
            "metric must be 'euclidean' or 'chebyshev', got 'manhattan'",
        ),
        (
            np.zeros(5),
            np.arange(5.0),
            {"k": 1},
            "fewer than k=1 distinct neighbours at positive distance",
        ),
    ],
)
def test_bad_input(x: np.ndarray, y: np.ndarray, options: dict[str, object], message: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match=message):
            knn(x, y, **options)  # type: ignore[arg-type]
