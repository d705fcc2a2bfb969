"""`kldiv.rel_entr` and `kldiv.generalized_kl` against `scipy.special.rel_entr` / `kl_div`."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special

import kldiv

# SciPy's own grid for rel_entr and kl_div (test_basic.py: values 0, 0.5, 1 with both signs),
# widened with the special values: inf, nan, a subnormal-scale value and large ratios.
VALUES = [0.0, 0.5, 1.0, -0.5, -1.0, 2.0, math.inf, -math.inf, math.nan, 1e-300, 1e300]
GRID = np.array(list(itertools.product(VALUES, VALUES)))
X, Y = GRID[:, 0], GRID[:, 1]


def _check(out: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)


def test_rel_entr_matches_scipy_on_its_grid(backend) -> None:  # type: ignore[no-untyped-def]
    out = backend.to_numpy(kldiv.rel_entr(backend.asarray(X), backend.asarray(Y)))
    _check(out, special.rel_entr(X, Y))


def test_generalized_terms_match_scipy_kl_div_on_its_grid(backend) -> None:  # type: ignore[no-untyped-def]
    out = backend.to_numpy(kldiv.generalized_kl(backend.asarray(X), backend.asarray(Y), axis=None))
    expected = special.kl_div(X, Y)
    # SciPy forms x/y, which overflows (1e300/1e-300) or underflows (1e-300/1e300) to a wrong
    # inf; kldiv takes log x − log y there. Those two pairs are checked against the closed form.
    with np.errstate(all="ignore"):
        ratio_lost = (X > 0) & (Y > 0) & np.isfinite(X) & np.isfinite(Y) & ~np.isfinite(X / Y)
        ratio_lost |= (X > 0) & (Y > 0) & np.isfinite(Y) & (X / Y == 0)
    assert ratio_lost.sum() == 2
    closed = X * (np.log(X) - np.log(Y)) - X + Y
    _check(out, np.where(ratio_lost, closed, expected))
    # And the rest of the grid is exactly SciPy's (to rounding).
    _check(out[~ratio_lost], expected[~ratio_lost])


def test_python_numbers_and_lists() -> None:
    assert kldiv.rel_entr(0.5, 0.25) == special.rel_entr(0.5, 0.25)
    _check(np.asarray(kldiv.rel_entr([0.0, 1.0], 0.5)), special.rel_entr([0.0, 1.0], 0.5))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes_and_broadcasting(backend, dtype: str) -> None:  # type: ignore[no-untyped-def]
    if backend.name == "array_api_strict" and dtype == "float16":
        pytest.skip("array_api_strict has no float16")
    rng = np.random.default_rng(0)
    p, q = rng.uniform(0, 2, size=(3, 4)), rng.uniform(0, 2, size=(4,))
    a, b = (
        backend.asarray(p, dtype=backend.dtype(dtype)),
        backend.asarray(q, dtype=backend.dtype(dtype)),
    )
    out = kldiv.generalized_kl(a, b, axis=None)
    assert out.dtype == a.dtype
    ref = special.kl_div(p.astype(dtype).astype(np.float64), q.astype(dtype).astype(np.float64))
    tol = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-14}[dtype]
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=tol, atol=tol)


def test_sum_over_an_axis_equals_kl_div_for_distributions(backend) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(6), size=5), rng.dirichlet(np.ones(6), size=5)
    a, b = backend.asarray(p), backend.asarray(q)
    np.testing.assert_allclose(
        backend.to_numpy(kldiv.generalized_kl(a, b, axis=-1)),
        special.rel_entr(p, q).sum(-1),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        backend.to_numpy(kldiv.generalized_kl(a, b, axis=0, base=2, keepdims=True)),
        special.kl_div(p, q).sum(0, keepdims=True) / math.log(2),
        rtol=1e-12,
    )


def test_where_leaves_entries_out() -> None:
    p, q = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0])
    where = np.array([True, True, False])
    assert kldiv.generalized_kl(p, q, where=where) == pytest.approx(
        special.kl_div(p[:2], q[:2]).sum()
    )
    with pytest.raises(ValueError, match="pass an axis"):
        kldiv.generalized_kl(p, q, axis=None, where=where)


def test_unnormalized_measures_are_not_checked() -> None:
    # scipy.stats.entropy normalizes; the generalized divergence of measures must not.
    p, q = np.array([2.0, 3.0]), np.array([1.0, 1.0])
    expected = 2 * math.log(2) + 3 * math.log(3) - 5 + 2
    assert kldiv.generalized_kl(p, q) == pytest.approx(expected, rel=1e-15)


def test_bad_inputs() -> None:
    with pytest.raises(
        ValueError, match=r"p with shape \(2,\) and q with shape \(3,\) do not broadcast"
    ):
        kldiv.rel_entr(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match="p has dtype int64"):
        kldiv.rel_entr(np.array([1, 2]), np.ones(2))
