"""Bootstrap standard errors against analytic ones."""

from __future__ import annotations

import numpy as np
import pytest

from kldiv.estimate import bootstrap, categorical, knn, log_ratio


def test_bootstrap_agrees_with_delta_method_for_categorical() -> None:
    rng = np.random.default_rng(21)
    x = rng.choice(4, size=3000, p=[0.4, 0.3, 0.2, 0.1])
    y = rng.choice(4, size=3000, p=[0.25, 0.25, 0.25, 0.25])
    analytic = categorical(x, y)
    booted = bootstrap(categorical, x, y, n_boot=400, seed=1)
    assert booted.value == analytic.value
    assert booted.params["stderr_method"] == "bootstrap"
    # The bootstrap sd over 400 replicates has relative se ≈ 3.5 %; 20 % is 5.7 of those
    # (false-failure rate ~1e-8), leaving room for the delta method's O(1/n) error.
    assert abs(booted.stderr / analytic.stderr - 1) < 0.2


def test_paired_bootstrap_of_log_ratio_agrees_with_analytic() -> None:
    x = np.random.default_rng(22).standard_normal(5000)
    log_p, log_q = -0.5 * x**2, -0.5 * (x - 0.4) ** 2
    analytic = log_ratio(log_p, log_q, estimator="k1")
    booted = bootstrap(log_ratio, log_p, log_q, n_boot=400, seed=2, paired=True, estimator="k1")
    # Same tolerance and false-failure rate (~1e-8) as above.
    assert abs(booted.stderr / analytic.stderr - 1) < 0.2


def test_bootstrap_is_reproducible_and_passes_options() -> None:
    rng = np.random.default_rng(23)
    x, y = rng.normal(size=(300, 2)), rng.normal(0.5, 1.0, size=(300, 2))
    with pytest.warns(UserWarning, match="exact copies"):
        first = bootstrap(knn, x, y, n_boot=5, seed=3, k=3)
    with pytest.warns(UserWarning, match="exact copies"):
        second = bootstrap(knn, x, y, n_boot=5, seed=3, k=3)
    assert first.stderr == second.stderr
    assert first.params["k"] == 3
    assert first.value == float(knn(x, y, k=3))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_boot": 1}, "n_boot must be an integer >= 2, got 1"),
        ({"paired": True}, r"paired resampling needs samples of one length, got \[3, 2\]"),
    ],
)
def test_bad_input(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap(categorical, [1, 2, 3], [1, 2], **options)  # type: ignore[arg-type]


def test_needs_samples() -> None:
    with pytest.raises(ValueError, match="needs the estimator's samples"):
        bootstrap(categorical)
