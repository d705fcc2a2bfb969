"""JS(P, P) is exactly 0 and JS(P, Q) is never negative, so that √JS (the Jensen–Shannon
distance) is never NaN for identical inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kldiv

# The first rows of Fisher's iris measurements (sepal length, sepal width, petal length,
# petal width), the rows on which js_div(row, row) came out as -8.5e-17, and 145 more rows
# of the same scale drawn with a fixed seed.
IRIS_HEAD = np.array(
    [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2], [4.6, 3.1, 1.5, 0.2],
     [5.0, 3.6, 1.4, 0.2]]
)  # fmt: skip


def _rows() -> np.ndarray:
    rng = np.random.default_rng(150)
    more = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(145, 4)).round(1)
    rows = np.concatenate([IRIS_HEAD, more])
    return rows / rows.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("beta", [0.5, 0.3, 0.9])
@pytest.mark.parametrize("kind", ["probs", "log_probs", "logits"])
def test_identical_rows_give_exactly_zero(backend, kind: str, beta: float) -> None:  # type: ignore[no-untyped-def]
    rows = _rows() if kind == "probs" else np.log(_rows())
    x = backend.asarray(rows)
    out = backend.to_numpy(kldiv.js_div(x, x, kind=kind, beta=beta))
    np.testing.assert_array_equal(out, 0.0)
    assert not np.isnan(np.sqrt(out)).any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identical_rows_in_each_dtype(backend, dtype: str) -> None:  # type: ignore[no-untyped-def]
    x = backend.asarray(_rows(), dtype=backend.dtype(dtype))
    np.testing.assert_array_equal(backend.to_numpy(kldiv.js_div(x, x)), 0.0)


def test_scipy_jensenshannon_distance_agrees() -> None:
    from scipy.spatial import distance

    rows = _rows()
    other = rows[::-1]
    expected = np.array([distance.jensenshannon(a, b) for a, b in zip(rows, other, strict=True)])
    np.testing.assert_allclose(np.sqrt(kldiv.js_div(rows, other)), expected, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(2, 8), elements=st.floats(1e-6, 1.0)),
    hnp.arrays(np.float64, st.integers(2, 8), elements=st.floats(1e-6, 1.0)),
    st.floats(0.01, 0.99),
)
def test_never_negative_and_zero_on_the_diagonal(a: np.ndarray, b: np.ndarray, beta: float) -> None:
    p = a / a.sum()
    assert kldiv.js_div(p, p, beta=beta) == 0.0
    n = min(len(a), len(b))
    p, q = a[:n] / a[:n].sum(), b[:n] / b[:n].sum()
    value = kldiv.js_div(p, q, beta=beta)
    assert value >= 0.0
    # Against the definition in float64 (mixture formed directly): accurate well beyond 1e-12.
    m = beta * p + (1 - beta) * q
    reference = beta * np.sum(p * np.log(p / m)) + (1 - beta) * np.sum(q * np.log(q / m))
    assert math.isclose(value, max(reference, 0.0), rel_tol=1e-9, abs_tol=1e-15)
