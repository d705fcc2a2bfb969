"""Eager validation on every path: negative probabilities, log-probabilities that do not
normalize, concrete JAX arrays against tracers, and the axis named as the caller wrote it."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import kldiv

EAGER = ("numpy", "array_api_strict", "torch", "jax")

# Every public function that takes probabilities, as (name, call(p, q, **options)).
CALLS: dict[str, Callable[..., Any]] = {
    "kl_div": lambda p, q, **o: kldiv.kl_div(p, q, **o),
    "cross_entropy": lambda p, q, **o: kldiv.cross_entropy(p, q, **o),
    "jeffreys": lambda p, q, **o: kldiv.jeffreys(p, q, **o),
    "js_div": lambda p, q, **o: kldiv.js_div(p, q, **o),
    "renyi_div(alpha=1)": lambda p, q, **o: kldiv.renyi_div(p, q, alpha=1.0, **o),
    "renyi_div(alpha=2)": lambda p, q, **o: kldiv.renyi_div(p, q, alpha=2.0, **o),
    "entropy": lambda p, q, **o: kldiv.entropy(p, **o),
}
NEGATIVE = re.escape("has a negative entry -0.5 at index (0,); probabilities must be >= 0")


@pytest.fixture(params=EAGER)
def eager(request: pytest.FixtureRequest, make_backend):  # type: ignore[no-untyped-def]
    return make_backend(request.param)


@pytest.mark.parametrize("name", list(CALLS))
def test_the_issue_case_raises_on_every_eager_backend(eager, name: str) -> None:  # type: ignore[no-untyped-def]
    p, q = eager.asarray(np.array([-0.5, 1.5])), eager.asarray(np.array([-1.0, 2.0]))
    with pytest.raises(ValueError, match="p " + NEGATIVE):
        CALLS[name](p, q)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("side", ["p", "q"])
@pytest.mark.parametrize("rows", [1, 600], ids=["one-row", "many-blocks"])
def test_numpy_fast_path_finds_a_negative_entry(dtype: str, side: str, rows: int) -> None:
    # A sum of 1 and a finite (wrong) result: the case the fast path used to let through.
    rng = np.random.default_rng(0)
    good = rng.dirichlet(np.ones(5), size=rows).astype(dtype)
    bad = good.copy()
    bad[rows // 2, :2] = [-0.5, 0.5 + float(good[rows // 2, 0] + good[rows // 2, 1])]
    p, q = (bad, good) if side == "p" else (good, bad)
    for kwargs in ({}, {"normalize": True}, {"keepdims": True, "base": 2.0}):
        # normalize=True divides by a float16 sum that is not exactly 1 (-0.50002, -0.49994).
        message = rf"{side} has a negative entry -0\.(5|49)\d* at index \({rows // 2}, 0\)"
        with pytest.raises(ValueError, match=message):
            kldiv.kl_div(p, q, **kwargs)


@pytest.mark.parametrize("other_kind", ["log_probs", "logits"])
def test_fast_path_checks_the_probability_side_of_mixed_kinds(other_kind: str) -> None:
    p = np.array([[-0.5, 1.5], [0.5, 0.5]])
    logits = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    with pytest.raises(ValueError, match=re.escape("p has a negative entry -0.5 at index (0, 0)")):
        kldiv.kl_div(p, logits, p_kind="probs", q_kind=other_kind)


def test_a_nan_row_does_not_hide_a_negative_entry_in_another_row() -> None:
    p = np.array([[math.nan, 1.0], [-0.5, 1.5]])
    q = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=re.escape("p has a negative entry -0.5 at index (1, 0)")):
        kldiv.kl_div(p, q)


def test_nan_rows_still_give_nan_on_the_fast_path() -> None:
    p = np.array([[math.nan, 1.0], [0.25, 0.75]])
    q = np.full((2, 2), 0.5)
    out = kldiv.kl_div(p, q)
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1], 0.25 * math.log(0.5) + 0.75 * math.log(1.5), rtol=1e-15)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: kldiv.kl_div(a, b),
        lambda a, b: kldiv.entropy(a),
        lambda a, b: kldiv.js_div(a, b),
    ],
    ids=["kl_div", "entropy", "js_div"],
)
def test_concrete_jax_arrays_are_validated_tracers_are_not(call) -> None:  # type: ignore[no-untyped-def]
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    p, q = jnp.array([0.45, 0.45]), jnp.array([0.5, 0.5])
    with pytest.raises(ValueError, match=r"p sums to 0\.9.*normalize=True"):
        call(p, q)
    # Under jit the values are unknown: no check, and no ConcretizationTypeError either.
    traced = jax.jit(call)(p, q)
    assert traced.shape == ()
    good = jnp.array([0.25, 0.75])
    np.testing.assert_allclose(
        np.asarray(jax.grad(lambda a: call(a, q))(good)),
        np.asarray(jax.jacfwd(lambda a: call(a, q))(good)),
        rtol=1e-6,
    )


def test_jax_issue_case_entropy() -> None:
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(ValueError, match=r"p sums to 3 along axis -1"):
        kldiv.entropy(jnp.array([0.0, 1.0, 2.0]))


def test_lazy_dask_is_not_computed_to_validate() -> None:
    da = pytest.importorskip("dask.array")
    p = da.from_array(np.array([[-0.5, 1.5]]), chunks=1)
    assert isinstance(kldiv.kl_div(p, p), da.Array)  # built without computing anything


@pytest.mark.parametrize("axis", [0, -2])
def test_errors_name_the_axis_as_given(eager, axis: int) -> None:  # type: ignore[no-untyped-def]
    p = eager.asarray(np.array([[0.5, 0.5], [0.4, 0.5]]))
    with pytest.raises(ValueError, match=rf"p sums to 0\.9 along axis {axis} at index \(0,\)"):
        kldiv.kl_div(p, p, axis=axis)


def _logits() -> np.ndarray:
    return np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])


@pytest.mark.parametrize("name", ["kl_div", "cross_entropy", "js_div", "jeffreys", "entropy"])
def test_logits_passed_as_log_probs_suggest_kind_logits(eager, name: str) -> None:  # type: ignore[no-untyped-def]
    logits = eager.asarray(_logits())
    with pytest.raises(
        ValueError,
        match=r"p holds log-probabilities whose exponentials sum to 30\.19\d* along axis -1 at "
        r"index \(0,\), not 1 .*pass kind='logits'",
    ):
        CALLS[name](logits, logits, kind="log_probs")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [2, 600], ids=["small", "many-blocks"])
def test_fast_path_checks_log_probs_of_either_side(dtype: str, rows: int) -> None:
    log_probs = np.log(np.random.default_rng(1).dirichlet(np.ones(3), size=rows)).astype(dtype)
    raw = log_probs.copy()
    # Every entry negative, so no "log-probability above 0" shortcut could catch it:
    # exp(-3) + exp(-2) + exp(-1) = 0.553.
    raw[rows - 1] = _logits()[0] - 4.0
    index = rf"\({rows - 1},\)"
    with pytest.raises(ValueError, match=rf"q holds log-probabilities .* 0\.55\d* .*{index}"):
        kldiv.kl_div(log_probs, raw, kind="log_probs")
    with pytest.raises(ValueError, match=rf"p holds log-probabilities .*{index}.*p_kind='logits'"):
        kldiv.kl_div(raw, np.exp(log_probs), p_kind="log_probs", q_kind="probs")


def test_normalized_log_probs_with_zeros_and_nan_rows_pass(eager) -> None:  # type: ignore[no-untyped-def]
    log_p = np.log(np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]))
    log_p[2, 0] = math.nan
    out = eager.to_numpy(kldiv.kl_div(eager.asarray(log_p), eager.asarray(log_p), kind="log_probs"))
    np.testing.assert_array_equal(out[:2], 0.0)
    assert math.isnan(out[2])


def test_masked_entries_do_not_count_in_the_log_probs_check() -> None:
    log_p = np.log(np.array([0.5, 0.5, 0.9]))
    where = np.array([True, True, False])
    assert kldiv.entropy(log_p, kind="log_probs", where=where) == pytest.approx(math.log(2))
