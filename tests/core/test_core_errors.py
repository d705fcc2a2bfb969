"""Bad input to the core: each error is raised with a message that names the problem."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import kldiv

P = np.array([[0.2, 0.8], [0.5, 0.5]])
Q = np.array([[0.5, 0.5], [0.9, 0.1]])


@pytest.mark.parametrize("large", [False, True], ids=["small", "fast-path"])
def test_negative_probability(large: bool) -> None:
    p = np.tile(P, (400, 1)) if large else P.copy()
    p[1, 0], p[1, 1] = -0.2, 1.2
    with pytest.raises(ValueError, match=re.escape("p has a negative entry -0.2 at index (1, 0)")):
        kldiv.kl_div(p, np.tile(Q, (400, 1)) if large else Q)


@pytest.mark.parametrize("large", [False, True], ids=["small", "fast-path"])
def test_row_not_summing_to_one(large: bool) -> None:
    q = np.tile(Q, (400, 1)) if large else Q.copy()
    q[1] = [0.5, 0.4]
    with pytest.raises(
        ValueError, match=r"q sums to 0\.9 along axis -1 at index \(1,\), not 1.*normalize=True"
    ):
        kldiv.kl_div(np.tile(P, (400, 1)) if large else P, q)


def test_tolerance_depends_on_dtype() -> None:
    p = np.array([0.5, 0.5 + 1e-5])
    q = np.array([0.5, 0.5])
    kldiv.kl_div(p.astype(np.float32), q.astype(np.float32))  # within √eps(float32)
    with pytest.raises(ValueError, match=r"tolerance 1\.0e-06 for float64"):
        kldiv.kl_div(p, q)


def test_masked_rows_are_not_validated() -> None:
    p = np.array([[0.3, 0.3], [0.5, 0.5]])
    where = np.array([[False, False], [True, True]])
    np.testing.assert_allclose(kldiv.kl_div(p, p, where=where), [0.0, 0.0])


def test_shapes_that_do_not_broadcast() -> None:
    with pytest.raises(
        ValueError, match=r"p with shape \(2, 2\) and q with shape \(3,\) do not broadcast"
    ):
        kldiv.kl_div(P, np.full(3, 1 / 3))


@pytest.mark.parametrize("option", ["kind", "p_kind", "q_kind"])
def test_unknown_kind(option: str) -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown kind of [pq] 'prob'; expected one of 'probs', 'log_probs', 'logits'",
    ):
        kldiv.kl_div(P, Q, **{option: "prob"})


def test_integer_input() -> None:
    with pytest.raises(
        TypeError, match="p has dtype int64; kldiv needs real floating-point arrays"
    ):
        kldiv.kl_div(np.array([1, 0]), Q[0])


def test_arrays_from_two_libraries() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(
        TypeError,
        match=r"inputs come from different array libraries \(p is numpy.ndarray, q is torch.Tensor\)",
    ):
        kldiv.kl_div(P, torch.as_tensor(Q))


@pytest.mark.parametrize("beta", [-0.1, 1.5, math.nan])
def test_beta_outside_unit_interval(beta: float) -> None:
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        kldiv.js_div(P, Q, beta=beta)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.nan])
def test_alpha_not_positive(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha must be > 0"):
        kldiv.renyi_div(P, Q, alpha=alpha)


def test_alpha_not_a_number() -> None:
    with pytest.raises(TypeError, match="alpha must be a positive number"):
        kldiv.renyi_div(P, Q, alpha="2")  # type: ignore[arg-type]


@pytest.mark.parametrize("base", [1, 0, -2.0, math.inf])
def test_invalid_base(base: float) -> None:
    with pytest.raises(ValueError, match="base must be positive, finite and not 1"):
        kldiv.kl_div(P, Q, base=base)


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range(axis: int) -> None:
    with pytest.raises(
        ValueError, match=f"axis {axis} is out of range for inputs with 2 dimensions"
    ):
        kldiv.kl_div(P, Q, axis=axis)


def test_zero_dimensional_inputs() -> None:
    with pytest.raises(ValueError, match="0-dimensional"):
        kldiv.entropy(np.float64(1.0))


def test_where_must_be_boolean() -> None:
    with pytest.raises(TypeError, match="where must be a boolean array, got dtype int64"):
        kldiv.kl_div(P, Q, where=np.array([1, 0]))


def test_gaussian_kl_non_floating() -> None:
    with pytest.raises(TypeError, match="mean_p has dtype int64"):
        kldiv.gaussian_kl(np.array([1, 2]), np.zeros(2))


def test_gaussian_kl_shapes() -> None:
    with pytest.raises(ValueError, match="do not broadcast"):
        kldiv.gaussian_kl(np.zeros(3), np.zeros(2))


def test_validation_does_not_force_dask_to_compute() -> None:
    da = pytest.importorskip("dask.array")
    bad = da.from_array(np.array([[0.5, 0.6]]), chunks=1)
    out = kldiv.kl_div(bad, bad)  # lazy: checked only when computed (it is not checked then)
    assert type(out).__module__.startswith("dask")
