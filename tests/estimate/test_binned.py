"""Binned KL and PSI against histograms computed with NumPy, and the permutation test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from kldiv.estimate import binned, categorical, counts, knn, permutation_test
from kldiv.estimate._binned import quantile_edges


def _reference_histograms(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Counts over the deciles of x by pandas-free bookkeeping: edges from np.percentile."""
    inner = np.unique(np.percentile(x, 100 * np.arange(1, bins) / bins))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    # np.histogram's bins are half-open [a, b) like searchsorted(side="right"), except the last.
    c_x = np.array([np.sum((x >= a) & (x < b)) for a, b in itertools.pairwise(edges)])
    c_y = np.array([np.sum((y >= a) & (y < b)) for a, b in itertools.pairwise(edges)])
    return c_x, c_y


@pytest.mark.parametrize("prior", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("bins", [2, 5, 10])
def test_binned_matches_histograms(bins: int, prior: float) -> None:
    rng = np.random.default_rng(bins)
    x, y = rng.normal(size=700), rng.normal(0.4, 1.3, size=600)
    c_x, c_y = _reference_histograms(x, y, bins)
    result = binned(x, y, bins=bins, prior=prior)
    p, q = c_x + prior, c_y + prior
    np.testing.assert_allclose(result.value, scipy.stats.entropy(p, q), rtol=1e-12)
    p, q = p / p.sum(), q / q.sum()
    np.testing.assert_allclose(result.params["psi"], np.sum((p - q) * np.log(p / q)), rtol=1e-12)
    assert (result.method, result.n, result.m, result.params["bins"]) == ("binned", 700, 600, bins)


def test_ties_merge_bins_and_values_beyond_the_reference_go_to_the_end_bins() -> None:
    x = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], dtype=np.int64)
    # Linear quantiles at 0.2, 0.4, 0.6, 0.8 (positions 1.8, 3.6, 5.4, 7.2): 0, 0, 0.4, 2.2.
    np.testing.assert_allclose(quantile_edges(x, 5), [0.0, 0.4, 2.2], rtol=1e-12)
    result = binned(x, np.array([-5.0, 100.0, 0.0, 3.0]), bins=5, prior=0)
    # bins: (-inf, 0), [0, 0.4), [0.4, 2.2), [2.2, inf): x counts 0, 6, 2, 2; y counts 1, 1, 0, 2
    p = np.array([0, 6, 2, 2]) / 10
    q = np.array([1, 1, 0, 2]) / 4
    assert result.params["bins"] == 4
    assert result.value == math.inf  # x has mass in a bin that y leaves empty
    smoothed = binned(x, np.array([-5.0, 100.0, 0.0, 3.0]), bins=5, prior=1)
    np.testing.assert_allclose(
        smoothed.value, scipy.stats.entropy(p * 10 + 1, q * 4 + 1), rtol=1e-12
    )


def test_int_and_float_copies_of_one_column_give_zero() -> None:
    ages = np.random.default_rng(1).integers(18, 80, size=500)
    assert binned(ages, ages.astype(np.float64)).value == 0.0
    assert categorical(ages, ages.astype(np.float64)).value == 0.0


def test_binned_estimates_the_kl_of_the_binned_normals() -> None:
    # Population value over the deciles of N(0, 1): P and Q = N(0.5, 1) mass in each decile.
    inner = scipy.stats.norm.ppf(np.arange(1, 10) / 10)
    cuts = np.concatenate([[-np.inf], inner, [np.inf]])
    p = np.diff(scipy.stats.norm.cdf(cuts))
    q = np.diff(scipy.stats.norm.cdf(cuts, loc=0.5))
    truth = float(np.sum(p * np.log(p / q)))  # 0.1172
    rng = np.random.default_rng(44)
    values = [binned(rng.normal(size=4000), rng.normal(0.5, 1, 4000)).value for _ in range(40)]
    # Bias (K-1)/(2N) + O(1/N) ≈ 0.002 from the plug-in, plus the quantile error of the edges;
    # sd of one estimate ≈ 0.009, of the mean of 40 ≈ 0.0015. Tolerance 0.008 is > 4 se
    # beyond the bias: false-failure rate below 1e-4.
    assert abs(np.mean(values) - truth) < 0.008


@pytest.mark.parametrize(
    ("x", "y", "options", "error", "message"),
    [
        (np.array([1.0, np.nan]), np.ones(3), {}, ValueError, "x has the entry nan at index 1"),
        (np.ones(3), np.array([np.inf]), {}, ValueError, "y has the entry inf at index 0"),
        (np.ones(3), np.ones(3), {"bins": 1}, ValueError, "bins must be an integer >= 2, got 1"),
        (np.array(["a"]), np.ones(3), {}, TypeError, "x must hold numbers, got dtype <U1"),
        (np.ones((3, 2)), np.ones(3), {}, ValueError, "must be 1-D"),
        (np.ones(3), np.array([]), {}, ValueError, "y has no samples"),
    ],
)
def test_binned_bad_input(
    x: np.ndarray, y: np.ndarray, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        binned(x, y, **options)  # type: ignore[arg-type]


def test_plug_in_bias_of_two_samples_is_k_minus_1_over_2n_plus_2m() -> None:
    """The first-order bias of KL(p̂‖q̂) when both sides are estimated, P = Q, prior 0."""
    rng = np.random.default_rng(2024)
    p = np.array([0.2, 0.15, 0.15, 0.1, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04])  # K = 10
    n, m, reps = 2000, 1000, 1500
    draws_p, draws_q = rng.multinomial(n, p, size=reps), rng.multinomial(m, p, size=reps)
    values = np.array([counts(a, b, prior=0).value for a, b in zip(draws_p, draws_q, strict=True)])
    k = p.size
    expected = (k - 1) / (2 * n) + (k - 1) / (2 * m)  # 0.00675
    # 2·KL·nm/(n+m) is close to chi-square with K-1 = 9 d.o.f.: sd of one value ≈ 0.0032, of
    # the mean of 1500 ≈ 8.2e-5. The O(1/n²) terms are below 3e-4 here (Σ 1/p_j / m² ≈ 1.5e-4);
    # 8e-4 allows them plus 6 se: false-failure rate below 1e-8. The rejected formulas are
    # far outside: (K-1)/(2n) = 0.00225 and (K-1)/n = 0.0045.
    assert abs(values.mean() - expected) < 8e-4
    assert values.min() >= 0


def test_permutation_p_value_is_uniform_without_drift() -> None:
    rng = np.random.default_rng(7)
    p_values = []
    for seed in range(100):
        x, y = rng.normal(size=200), rng.normal(size=150)
        result = permutation_test(binned, x, y, n_permutations=19, seed=seed, bins=5)
        p_values.append(result.params["p_value"])
    p_values = np.array(p_values)
    # For an exact test with B = 19, P(p <= 0.25) = 5/20; over 100 tests the count is
    # Binomial(100, 0.25): mean 25, sd 4.3. [7, 45] is >= 4.2 sd away on either side:
    # false-failure rate below 1e-4. The mean p-value is 0.525 (uniform on 1/20..1), with
    # sd 0.029 over 100 tests; 0.13 is 4.5 of those.
    assert 7 <= np.sum(p_values <= 0.25) <= 45
    assert abs(p_values.mean() - 0.525) < 0.13


def test_permutation_test_detects_a_shift_and_reports_the_null() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=400), rng.normal(1.0, 1.0, size=400)  # KL 0.5
    result = permutation_test(knn, x, y, n_permutations=99, seed=1, k=5)
    assert result.value == knn(x, y, k=5).value
    # Without drift the estimate's sd is about 0.04 at n = 400: no re-split comes near 0.5.
    assert result.params["p_value"] == 0.01  # (1 + 0) / (99 + 1)
    assert abs(result.params["null_mean"]) < 0.05  # kNN is nearly unbiased at 0
    assert result.params["null_q95"] < result.value
    again = permutation_test(knn, x, y, n_permutations=99, seed=1, k=5)
    assert again.params == result.params


def test_permutation_test_of_labels_and_bad_input() -> None:
    x, y = list("aaabbb" * 20), list("ababab" * 20)
    result = permutation_test(categorical, x, y, n_permutations=20, seed=0)
    assert result.value == categorical(x, y).value
    assert 0 < result.params["p_value"] <= 1
    with pytest.raises(ValueError, match="n_permutations must be an integer >= 1, got 0"):
        permutation_test(categorical, x, y, n_permutations=0)
