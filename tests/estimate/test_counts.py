"""Plug-in KL from counts and from label samples, against scipy.stats.entropy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.stats

from kldiv.estimate import categorical, counts


@pytest.mark.parametrize(
    ("prior", "pseudo"),
    [(0.0, 0.0), ("laplace", 1.0), ("jeffreys", 0.5), ("perks", 0.25), (2.5, 2.5)],
)
def test_counts_match_scipy_entropy(prior: float | str, pseudo: float) -> None:
    c_p, c_q = np.array([10, 3, 7, 1]), np.array([4, 8, 5, 2])
    expected = scipy.stats.entropy(c_p + pseudo, c_q + pseudo)
    result = counts(c_p, c_q, prior=prior)
    np.testing.assert_allclose(result.value, expected, rtol=1e-13)
    assert result.method == "counts"
    assert (result.n, result.m) == (21, 19)
    assert result.params["pseudo_count"] == pseudo


def test_empty_category_in_q_is_infinite_until_smoothed() -> None:
    result = counts([5, 5, 1], [6, 4, 0], prior=0)
    assert result.value == math.inf
    assert math.isnan(result.stderr)
    smoothed = counts([5, 5, 1], [6, 4, 0], prior="jeffreys")
    np.testing.assert_allclose(
        smoothed.value, scipy.stats.entropy([5.5, 5.5, 1.5], [6.5, 4.5, 0.5]), rtol=1e-13
    )


def test_delta_method_stderr_matches_simulation() -> None:
    rng = np.random.default_rng(11)
    p, q = np.array([0.4, 0.3, 0.2, 0.1]), np.array([0.25, 0.25, 0.25, 0.25])
    n = 2000
    estimates = [
        counts(rng.multinomial(n, p), rng.multinomial(n, q), prior=0).value for _ in range(400)
    ]
    stderr = counts(np.round(p * n), np.round(q * n), prior=0).stderr
    # The sd of 400 replicates has relative se 1/√798 ≈ 3.5 %; 20 % is 5.7 of those:
    # false-failure rate ~1e-8 (plus the delta method's O(1/n) error, ~1 % here).
    assert abs(np.std(estimates, ddof=1) / stderr - 1) < 0.2


def test_categorical_builds_counts_over_the_union_of_labels() -> None:
    x = ["cat", "dog", "dog", "bird", "cat", "cat"]
    y = ["dog", "cat", "fish", "dog", "cat", "bird", "fish"]
    result = categorical(x, y, prior="laplace")
    labels = ["cat", "dog", "bird", "fish"]
    c_p = [x.count(label) for label in labels]
    c_q = [y.count(label) for label in labels]
    np.testing.assert_allclose(
        result.value, scipy.stats.entropy(np.add(c_p, 1), np.add(c_q, 1)), rtol=1e-13
    )
    assert result.method == "categorical"
    assert result.params["labels"] == labels
    assert json.loads(json.dumps(result.to_dict()))["params"]["labels"] == labels


def test_categorical_accepts_arrays_and_tuples() -> None:
    x = np.array([1, 2, 2, 3])
    y = np.array([2, 3, 3, 1])
    expected = scipy.stats.entropy([1, 2, 1], [1, 1, 2])
    np.testing.assert_allclose(categorical(x, y, prior=0).value, expected, rtol=1e-13)
    pairs = categorical([(0, 1), (1, 1)], [(1, 1), (0, 1)])
    assert pairs.value == 0.0


@pytest.mark.parametrize(
    ("c_p", "c_q", "prior", "error", "message"),
    [
        (
            [1, -2],
            [1, 1],
            0.0,
            ValueError,
            "c_p has the entry -2.0 at index 1; counts must be non-negative integers",
        ),
        ([1, 2], [1.5, 1], 0.0, ValueError, "c_q has the entry 1.5 at index 0"),
        ([1, np.nan], [1, 1], 0.0, ValueError, "c_p has the entry nan at index 1"),
        ([1, 2, 3], [1, 2], 0.0, ValueError, "c_p has 3 categories and c_q has 2"),
        ([0, 0], [1, 2], 0.0, ValueError, r"c_p has no observations \(all counts are 0\)"),
        ([[1, 2]], [[1, 2]], 0.0, ValueError, "c_p must be a 1-D vector of counts"),
        (
            [1, 2],
            [1, 2],
            "dirichlet",
            ValueError,
            "prior must be 'laplace', 'jeffreys', 'perks' or a number",
        ),
        ([1, 2], [1, 2], -1.0, ValueError, "prior must be a finite number >= 0, got -1.0"),
        (["a", "b"], [1, 2], 0.0, TypeError, "c_p must hold numbers"),
    ],
)
def test_counts_bad_input(
    c_p: object, c_q: object, prior: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        counts(c_p, c_q, prior=prior)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "y", "error", "message"),
    [
        ([], ["a"], ValueError, "x has no samples"),
        ([1.0, float("nan")], [1.0], ValueError, r"x has a missing label \(nan\) at index 1"),
        (np.array([1.0, np.nan]), [1.0], ValueError, r"x has a missing label \(nan\) at index 1"),
        (np.array([1.0, 2.0]), np.array([np.nan, 1.0]), ValueError, "y has a missing label"),
        (["a", None], ["a"], ValueError, r"x has a missing label \(None\) at index 1"),
        (["a"], np.array(["b", None], dtype=object), ValueError, "y has a missing label"),
        (np.zeros((2, 2)), [1.0], ValueError, r"x must be 1-D \(one label per sample\)"),
        (["a"], [["unhashable"]], TypeError, "y has the unhashable label"),
    ],
)
def test_categorical_bad_input(x: object, y: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        categorical(x, y)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.uint8])
def test_array_and_list_labels_give_the_same_counts(dtype: type) -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(0, 7, 300).astype(dtype)
    y = rng.integers(2, 9, 250).astype(dtype)
    from_arrays = categorical(x, y)
    from_lists = categorical(x.tolist(), y.tolist())
    assert from_arrays.params["labels"] == from_lists.params["labels"]  # first seen first
    assert from_arrays.value == from_lists.value
    labels = from_lists.params["labels"]
    c_p = [int(np.sum(x == v)) for v in labels]
    c_q = [int(np.sum(y == v)) for v in labels]
    expected = scipy.stats.entropy(np.add(c_p, 0.5), np.add(c_q, 0.5))
    np.testing.assert_allclose(from_arrays.value, expected, rtol=1e-13)
    assert from_arrays.params["psi"] == pytest.approx(
        expected + scipy.stats.entropy(np.add(c_q, 0.5), np.add(c_p, 0.5)), rel=1e-12
    )


def test_ints_and_floats_of_equal_value_are_one_category() -> None:
    assert categorical(np.array([21, 22, 22]), np.array([21.0, 22.0, 22.0])).value == 0.0
    assert categorical([21, 22, 22], [21.0, 22.0, 22.0]).value == 0.0
