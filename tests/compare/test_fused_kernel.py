"""The fused logits kernel of `compare` against the core's `kl_div`/`js_div` and SciPy in float64."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

import kldiv
from kldiv.report import InputError, compare
from kldiv.report._fused import fused_applies, fused_logits

N, V = 50, 300
# Float32 arithmetic on logits of scale ~3: the core's own float32 error is of the same size.
FLOAT32_TOLERANCE = {"rtol": 1e-5, "atol": 3e-6}
FLOAT64_TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def logits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=2.5, size=(N, V))
    return base, base + rng.normal(scale=0.3, size=(N, V)), rng.integers(0, V, size=N)


def scipy_reference(
    base: np.ndarray, test: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """Every per-position statistic in float64 with SciPy, rows of -inf included."""
    log_p = log_softmax(base.astype(np.float64), axis=-1)
    log_q = log_softmax(test.astype(np.float64), axis=-1)
    p, q = np.exp(log_p), np.exp(log_q)
    m = 0.5 * (p + q)
    with np.errstate(invalid="ignore"):  # -inf - -inf where p = q = 0; np.where drops them
        divergences = [
            np.where(p > 0, p * (log_p - log_q), 0.0).sum(-1),
            np.where(q > 0, q * (log_q - log_p), 0.0).sum(-1),
        ]
    return {
        # In log space: q may underflow to 0 in float64 where log q is finite.
        "kld": divergences[0],
        "reverse_kld": divergences[1],
        "jsd": 0.5 * (rel_entr(p, m) + rel_entr(q, m)).sum(-1),
        "top1_same": base.argmax(-1) == test.argmax(-1),
        "log_p_label_base": log_p[np.arange(len(labels)), labels],
        "log_p_label_test": log_q[np.arange(len(labels)), labels],
    }


def assert_report_matches(report: object, expected: dict[str, np.ndarray], tolerance: dict) -> None:
    for name, value in expected.items():
        actual = getattr(report, name)
        if value.dtype == np.bool_:
            np.testing.assert_array_equal(actual, value, err_msg=name)
        else:
            np.testing.assert_allclose(actual, value, err_msg=name, **tolerance)


def as_input(x: np.ndarray, library: str, dtype: str):
    """``x`` rounded to ``dtype``, as a NumPy array or a torch tensor."""
    if library == "numpy":
        return x.astype(dtype)
    torch = pytest.importorskip("torch")
    return torch.from_numpy(x).to(getattr(torch, dtype))


def widened(x) -> np.ndarray:
    """The float64 values of an input, as the reference sees them."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    return x.double().numpy()


@pytest.mark.parametrize(
    ("library", "dtype"),
    [
        ("numpy", "float16"),
        ("numpy", "float32"),
        ("numpy", "float64"),
        ("torch", "float16"),
        ("torch", "bfloat16"),
        ("torch", "float32"),
        ("torch", "float64"),
    ],
)
@pytest.mark.parametrize("widen_with_torch", [False, True])
def test_kernel_matches_core_and_scipy(library, dtype, widen_with_torch) -> None:
    torch = pytest.importorskip("torch") if widen_with_torch or library == "torch" else None
    base, test, labels = logits()
    a, b = as_input(base, library, dtype), as_input(test, library, dtype)
    (kld, reverse, jsd, top1, label_p, label_q), exact = fused_logits(
        a, b, labels[:, None], torch=torch
    )
    wide_a, wide_b = widened(a), widened(b)
    expected = scipy_reference(wide_a, wide_b, labels)
    tolerance = FLOAT64_TOLERANCE if dtype == "float64" else FLOAT32_TOLERANCE
    assert not exact.any()
    np.testing.assert_allclose(kld, expected["kld"], **tolerance)
    np.testing.assert_allclose(reverse, expected["reverse_kld"], **tolerance)
    np.testing.assert_allclose(jsd, expected["jsd"], **tolerance)
    np.testing.assert_allclose(label_p, expected["log_p_label_base"], **tolerance)
    np.testing.assert_allclose(label_q, expected["log_p_label_test"], **tolerance)
    np.testing.assert_array_equal(top1, expected["top1_same"])
    # The core's public functions in float64 agree with the same tolerance.
    np.testing.assert_allclose(kld, kldiv.kl_div(wide_a, wide_b, kind="logits"), **tolerance)
    np.testing.assert_allclose(reverse, kldiv.kl_div(wide_b, wide_a, kind="logits"), **tolerance)
    np.testing.assert_allclose(jsd, kldiv.js_div(wide_a, wide_b, kind="logits"), **tolerance)


@pytest.mark.parametrize("chunk_rows", [1, 7, 16, N + 3])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_minus_infinity_rows_are_recomputed_exactly(chunk_rows, dtype) -> None:
    """0 · log 0 = 0 where one side or both have -inf; +inf KL where only test has it."""
    base, test, labels = logits(1)
    base[3, :10] = -np.inf  # p = 0 there: finite divergences
    test[3, 5:20] = -np.inf  # q = 0 < p at 10..19: KL(base‖test) = inf
    base[10, 7] = test[10, 7] = -np.inf  # both zero
    test[20, :] = -np.inf
    test[20, labels[20]] = 0.0  # test is one-hot on the label
    a, b = base.astype(dtype), test.astype(dtype)
    report = compare(a, b, labels=labels, chunk_rows=chunk_rows)
    tolerance = FLOAT64_TOLERANCE if dtype == "float64" else FLOAT32_TOLERANCE
    expected = scipy_reference(a, b, labels)
    assert np.isinf(expected["kld"][3])
    assert_report_matches(report, expected, tolerance)
    assert report.log_p_label_test[20] == 0.0


def test_rows_with_minus_infinity_are_flagged_and_others_are_not() -> None:
    base, test, _ = logits(2)
    base[4, 0] = -np.inf
    test[9, 1] = -np.inf
    _, exact = fused_logits(base.astype(np.float32), test.astype(np.float32), None)
    np.testing.assert_array_equal(np.flatnonzero(exact), [4, 9])


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_huge_logits_underflow_to_zero_probability(scale) -> None:
    """Logits ±1e4 apart: most probabilities underflow, as they do in float64."""
    base, test, labels = logits(3)
    base[::2, ::3] += scale
    test[::3, ::2] += scale
    report = compare(base.astype(np.float32), test.astype(np.float32), labels=labels)
    expected = scipy_reference(base.astype(np.float32), test.astype(np.float32), labels)
    labels_expected = {
        name: expected.pop(name) for name in ("log_p_label_base", "log_p_label_test")
    }
    assert_report_matches(report, expected, FLOAT32_TOLERANCE)
    # Rows that underflow are redone by the core in float32, whose log-softmax of logits
    # near 1e4 resolves log-probabilities to float32's spacing there, about 1e-3.
    assert_report_matches(report, labels_expected, {"rtol": 1e-5, "atol": 2e-3})


def test_ties_agree_on_the_first_maximum() -> None:
    base = np.zeros((3, 5))
    test = np.zeros((3, 5))
    test[1, 0] = -1.0  # test's first maximum moves to index 1
    test[2, 4] = 1.0
    values, _ = fused_logits(base, test, None)
    np.testing.assert_array_equal(values[3], base.argmax(-1) == test.argmax(-1))


@pytest.mark.parametrize("chunk_rows", [7, 50])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_entries_are_reported_by_position(chunk_rows, bad) -> None:
    base, test, _ = logits(4)
    test[23, 11] = bad
    test[30, :] = np.nan  # a later problem: the first one is reported
    with pytest.raises(InputError, match=rf"^test: entry {bad} at index \(23, 11\); entries must"):
        compare(
            base.astype(np.float16),
            test.astype(np.float16),
            chunk_rows=chunk_rows,
            nonfinite="raise",
        )


@pytest.mark.parametrize(
    ("a", "b", "kind", "expected"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "logits", True),
        (np.zeros((2, 3)), np.zeros((2, 3)), "log_probs", False),
        (np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32), "logits", True),
        (np.zeros((2, 3)), np.zeros((2, 3), dtype=np.int64), "logits", False),
    ],
)
def test_fused_kernel_takes_float_logits_only(a, b, kind, expected) -> None:
    assert fused_applies(a, b, kind) is expected


def test_without_torch_numpy_widens(monkeypatch) -> None:
    """The path of an installation without PyTorch: NumPy converts float16 itself."""
    from kldiv.report import _compare

    monkeypatch.setattr(_compare, "torch_for_widening", lambda entries: None)
    base, test, labels = logits(5)
    a, b = base.astype(np.float16), test.astype(np.float16)
    report = compare(a, b, labels=labels, chunk_rows=9)
    assert_report_matches(report, scipy_reference(a, b, labels), FLOAT32_TOLERANCE)


def test_tensors_that_require_grad_are_read_without_autograd() -> None:
    torch = pytest.importorskip("torch")
    base, test, labels = logits(6)
    a = torch.from_numpy(base).float().requires_grad_()
    b = torch.from_numpy(test).float()
    report = compare(a, b, labels=labels, chunk_rows=16)
    expected = scipy_reference(base.astype(np.float32), test.astype(np.float32), labels)
    assert_report_matches(report, expected, FLOAT32_TOLERANCE)
