"""The shared float32 exp/log and half-precision widening of the compiled kernels, against NumPy.

Every compiled kernel builds on these, so they are checked on their own over the whole float32
range: within 2 ulp of float64 NumPy rounded to float32, exact for IEEE special values.
"""

from __future__ import annotations

import numpy as np
import pytest

from kldiv._native import load

elementwise = load("elementwise")
pytestmark = pytest.mark.skipif(elementwise is None, reason="compiled kernels not built")


def _ulp_error(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    spacing = np.spacing(np.abs(reference).astype(np.float32)).astype(np.float64)
    return np.abs(result.astype(np.float64) - reference) / spacing


@pytest.mark.parametrize("threads", [1, 3])
def test_exp_within_two_ulp_over_the_range(threads: int) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-86, 88.72, 400_000), rng.uniform(-1, 1, 100_000)])
    x = x.astype(np.float32)
    result = np.empty_like(x)
    elementwise.exp_f32(x, result, threads)
    assert _ulp_error(result, np.exp(x.astype(np.float64))).max() <= 2.0


def test_exp_special_values() -> None:
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, -1000.0, 89.0, 88.72], np.float32)
    result = np.empty_like(x)
    elementwise.exp_f32(x, result)
    np.testing.assert_array_equal(result[:7], [0.0, np.inf, np.nan, 1.0, 1.0, 0.0, np.inf])
    assert np.isfinite(result[7])
    # Below e^-86 the result is flushed to 0 (documented): the largest error there is 4.5e-38.
    tiny = np.array([-86.5, -87.0, -100.0], np.float32)
    elementwise.exp_f32(tiny, result[:3])
    assert np.all(result[:3] == 0.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_log_within_two_ulp_over_the_range(threads: int) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([10 ** rng.uniform(-45, 38.5, 400_000), rng.uniform(0.5, 2, 100_000)])
    x = x.astype(np.float32)
    x = x[x > 0]  # 10**-45 rounds to 0 in float32 for a few draws
    result = np.empty_like(x)
    elementwise.log_f32(x, result, threads)
    assert _ulp_error(result, np.log(x.astype(np.float64))).max() <= 2.0


def test_log_special_values() -> None:
    x = np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1.0, 1e-45], np.float32)
    result = np.empty_like(x)
    elementwise.log_f32(x, result)
    np.testing.assert_array_equal(
        result[:7], [-np.inf, -np.inf, np.nan, np.inf, np.nan, np.nan, 0.0]
    )
    assert result[7] == pytest.approx(np.log(np.float64(np.float32(1e-45))), rel=1e-6)


def test_float16_widening_is_exact_for_every_bit_pattern() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    result = np.empty(1 << 16, np.float32)
    elementwise.widen_f16(bits, result, 2)
    reference = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(reference)
    np.testing.assert_array_equal(result.view(np.uint32)[~nan], reference.view(np.uint32)[~nan])
    assert np.isnan(result[nan]).all()


def test_bfloat16_widening_is_exact_for_every_bit_pattern() -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    result = np.empty(1 << 16, np.float32)
    elementwise.widen_bf16(bits, result)
    reference = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(result.view(np.uint32), reference.view(np.uint32))


def test_mismatched_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of entries"):
        elementwise.exp_f32(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_the_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    assert load("elementwise") is None
