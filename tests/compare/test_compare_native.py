"""The compiled logits kernel of `compare` against float64 references and the NumPy/PyTorch path.

The compiled kernel reads float16, bfloat16 and float32 rows as stored; every statistic is
checked against SciPy in float64 on the same (widened) values, and `compare` with the kernel
against `compare` without it (``KLDIV_NATIVE=0``), on odd shapes, non-finite entries, huge
logits, labels and chunk sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kldiv._native import load
from kldiv.cli._arrays import BFloat16Rows
from kldiv.report import InputError, compare
from kldiv.report import _compare as compare_module
from kldiv.report._compiled import BFLOAT16, FLOAT16, FLOAT32, compiled_logits

kernel = load("compare")
pytestmark = pytest.mark.skipif(kernel is None, reason="compiled kernels not built")

# Float32 arithmetic on logits of scale ~3, as for the NumPy/PyTorch fused kernel.
FLOAT32_TOLERANCE = {"rtol": 1e-5, "atol": 3e-6}
CODES = {"float32": FLOAT32, "float16": FLOAT16, "bfloat16": BFLOAT16}
SHAPES = [(1, 1), (1, 2), (3, 17), (37, 1000), (5, 4099), (2, 32000)]


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float64 to bfloat16 bit patterns, rounding to nearest even."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))
    return (rounded >> 16).astype(np.uint16)


def stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` as the kernel reads it: float16 or float32 values, or bfloat16 bits."""
    return to_bfloat16_bits(x) if dtype == "bfloat16" else x.astype(dtype)


def widened(x: np.ndarray, dtype: str) -> np.ndarray:
    """The float64 values of stored rows."""
    if dtype == "bfloat16":
        return (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return x.astype(np.float64)


def logits(rows: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=2.5, size=(rows, vocab))
    return base, base + rng.normal(scale=0.3, size=(rows, vocab)), rng.integers(0, vocab, rows)


def reference(base: np.ndarray, test: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-position statistic in float64 with SciPy."""
    log_p, log_q = log_softmax(base, axis=-1), log_softmax(test, axis=-1)
    p, q = np.exp(log_p), np.exp(log_q)
    with np.errstate(invalid="ignore"):  # -inf - -inf where p = q = 0; np.where drops them
        kld = np.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)
        reverse = np.where(q > 0, q * (log_q - log_p), 0.0).sum(-1)
    m = 0.5 * (p + q)
    rows = np.arange(len(labels))
    return {
        "kld": kld,
        "reverse_kld": reverse,
        "jsd": 0.5 * (rel_entr(p, m) + rel_entr(q, m)).sum(-1),
        "top1_same": base.argmax(-1) == test.argmax(-1),
        "log_p_label_base": log_p[rows, labels],
        "log_p_label_test": log_q[rows, labels],
    }


def run_kernel(a: np.ndarray, b: np.ndarray, dtype: str, labels: np.ndarray | None):
    assert kernel is not None
    index = None if labels is None else labels[:, None]
    return compiled_logits(kernel, (a, CODES[dtype]), (b, CODES[dtype]), index)


def assert_matches(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name, value in expected.items():
        if value.dtype == np.bool_:
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(actual[name], value, err_msg=name, **FLOAT32_TOLERANCE)


def report_values(report) -> dict[str, np.ndarray]:
    names = ("kld", "reverse_kld", "jsd", "top1_same", "log_p_label_base", "log_p_label_test")
    return {name: getattr(report, name) for name in names}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_kernel_matches_float64_reference(shape, dtype) -> None:
    base, test, labels = logits(*shape)
    a, b = stored(base, dtype), stored(test, dtype)
    (kld, reverse, jsd, agree, label_p, label_q), exact = run_kernel(a, b, dtype, labels)
    expected = reference(widened(a, dtype), widened(b, dtype), labels)
    assert not exact.any()
    actual = {
        "kld": kld,
        "reverse_kld": reverse,
        "jsd": jsd,
        "top1_same": agree,
        "log_p_label_base": label_p,
        "log_p_label_test": label_q,
    }
    assert_matches(actual, expected)


def test_kernel_without_labels_returns_four_values() -> None:
    base, test, _ = logits(4, 50)
    values, exact = run_kernel(base.astype(np.float32), test.astype(np.float32), "float32", None)
    assert len(values) == 4
    assert values[3].dtype == np.bool_
    assert exact.dtype == np.bool_


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_non_finite_rows_are_flagged_and_no_others(dtype) -> None:
    base, test, _ = logits(12, 300, seed=1)
    base[2, 0] = -np.inf
    test[5, 299] = -np.inf
    base[7, 40] = np.nan
    test[9, 3] = np.inf
    base[11, :] = -np.inf
    _, exact = run_kernel(stored(base, dtype), stored(test, dtype), dtype, None)
    np.testing.assert_array_equal(np.flatnonzero(exact), [2, 5, 7, 9, 11])


def test_ties_agree_on_the_first_maximum() -> None:
    vocab = 70  # maxima in the vectorized blocks and in the tail
    base, test = np.zeros((4, vocab), np.float32), np.zeros((4, vocab), np.float32)
    test[1, 0] = -1.0  # test's first maximum moves to index 1
    base[2, [20, 50]] = 3.0
    test[2, [50, 20]] = 3.0  # the same two maxima: agree
    base[3, 66] = test[3, 69] = 5.0  # maxima in the tail, apart
    (_, _, _, agree), _ = run_kernel(base, test, "float32", None)
    np.testing.assert_array_equal(agree, base.argmax(-1) == test.argmax(-1))
    np.testing.assert_array_equal(agree, [True, False, True, False])


@pytest.mark.parametrize("scale", [1e4, -1e4])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_huge_logits_underflow_to_zero_probability(scale, dtype) -> None:
    """Logits 1e4 apart: p + q underflows to 0 for most entries; their terms are 0."""
    base, test, labels = logits(30, 301, seed=3)
    base[::2, ::3] += scale
    test[::3, ::2] += scale
    a, b = stored(base, dtype), stored(test, dtype)
    (kld, reverse, jsd, agree, label_p, label_q), exact = run_kernel(a, b, dtype, labels)
    expected = reference(widened(a, dtype), widened(b, dtype), labels)
    assert not exact.any()
    actual = {"kld": kld, "reverse_kld": reverse, "jsd": jsd, "top1_same": agree}
    actual |= {"log_p_label_base": label_p, "log_p_label_test": label_q}
    assert_matches(actual, expected)


@pytest.mark.parametrize("noise", [1e-1, 1e-2, 1e-3])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_near_identical_distributions_keep_their_small_jsd(noise, dtype) -> None:
    """JSD well below float32's resolution of log 2 stays accurate relative to itself.

    The terms of JSD are of size log 2 and cancel to the small result; the kernel sums h's
    series in d = log p - log q instead where |d| < 1/2, so its error is relative.
    """
    rng = np.random.default_rng(9)
    base = rng.normal(scale=2.5, size=(20, 5000))
    test = base + rng.normal(scale=noise, size=base.shape)
    a, b = stored(base, dtype), stored(test, dtype)
    (kld, reverse, jsd, _), _ = run_kernel(a, b, dtype, None)
    expected = reference(widened(a, dtype), widened(b, dtype), np.zeros(20, dtype=np.int64))
    np.testing.assert_allclose(jsd, expected["jsd"], rtol=1e-5, atol=1e-14)
    # KL sums p d directly: its error is absolute, a few times 1e-8.
    np.testing.assert_allclose(kld, expected["kld"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(reverse, expected["reverse_kld"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 64])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_compare_matches_the_numpy_path(chunk_rows, dtype, monkeypatch) -> None:
    base, test, labels = logits(53, 777, seed=4)
    labels[::5] = -1  # skipped positions
    a, b = base.astype(dtype), test.astype(dtype)
    native = compare(a, b, labels=labels, chunk_rows=chunk_rows)
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    fallback = compare(a, b, labels=labels, chunk_rows=chunk_rows)
    expected = report_values(fallback)
    assert_matches(report_values(native), expected)
    kept = labels >= 0
    float64 = reference(a.astype(np.float64), b.astype(np.float64), np.maximum(labels, 0))
    float64["log_p_label_base"] = float64["log_p_label_base"][kept]
    float64["log_p_label_test"] = float64["log_p_label_test"][kept]
    assert_matches(report_values(native), float64)


@pytest.mark.parametrize("chunk_rows", [1, 7, 60])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_minus_infinity_rows_are_recomputed_exactly(chunk_rows, dtype) -> None:
    base, test, labels = logits(60, 300, seed=5)
    base[3, :10] = -np.inf  # p = 0 there: finite divergences
    test[3, 5:20] = -np.inf  # q = 0 < p at 10..19: KL(base‖test) = inf
    base[10, 7] = test[10, 7] = -np.inf  # both zero
    test[20, :] = -np.inf
    test[20, labels[20]] = 0.0  # test is one-hot on the label
    a, b = base.astype(dtype), test.astype(dtype)
    report = compare(a, b, labels=labels, chunk_rows=chunk_rows)
    expected = reference(a.astype(np.float64), b.astype(np.float64), labels)
    assert np.isinf(expected["kld"][3])
    assert np.isinf(report.kld[3])
    assert_matches(report_values(report), expected)
    assert report.log_p_label_test[20] == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_entries_are_reported_as_without_the_kernel(bad, monkeypatch) -> None:
    base, test, _ = logits(40, 90, seed=6)
    test[23, 11] = bad
    test[30, :] = np.nan  # a later problem: the first one is reported
    a, b = base.astype(np.float16), test.astype(np.float16)
    with pytest.raises(InputError) as native:
        compare(a, b, chunk_rows=16, nonfinite="raise")
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    with pytest.raises(InputError) as fallback:
        compare(a, b, chunk_rows=16, nonfinite="raise")
    assert str(native.value) == str(fallback.value)
    assert str(native.value).startswith(f"test: entry {bad} at index (23, 11)")


def test_bfloat16_memory_maps_are_read_as_bits(tmp_path) -> None:
    base, test, labels = logits(45, 513, seed=7)
    files = []
    for name, x in (("base", base), ("test", test)):
        path = tmp_path / f"{name}.npy"
        np.save(path, to_bfloat16_bits(x).reshape(5, 9, 513))
        files.append(BFloat16Rows(np.load(path, mmap_mode="r")))
    report = compare(*files, labels=labels.reshape(5, 9), chunk_rows=4)
    a, b = (widened(to_bfloat16_bits(x), "bfloat16") for x in (base, test))
    assert_matches(report_values(report), reference(a, b, labels))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_torch_tensors_take_the_kernel(dtype, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    base, test, labels = logits(21, 130, seed=8)
    a = torch.from_numpy(base).to(getattr(torch, dtype))
    b = torch.from_numpy(test).to(getattr(torch, dtype))
    calls = []
    original = compare_module.compiled_logits
    monkeypatch.setattr(
        compare_module,
        "compiled_logits",
        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs),
    )
    report = compare(a, b, labels=labels, chunk_rows=8)
    assert len(calls) == 3
    expected = reference(a.double().numpy(), b.double().numpy(), labels)
    assert_matches(report_values(report), expected)


@pytest.mark.parametrize(
    ("a", "b", "taken"),
    [
        (np.zeros((2, 3), np.float16), np.zeros((2, 3), np.float16), True),
        (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), True),
        (np.zeros((2, 3), np.float64), np.zeros((2, 3), np.float64), False),
        (np.zeros((2, 3), np.float16), np.zeros((2, 3), np.float32), False),
        (np.zeros((3, 2), np.float32).T, np.zeros((3, 2), np.float32).T, False),
    ],
)
def test_kernel_takes_float16_bfloat16_and_float32_rows_only(a, b, taken, monkeypatch) -> None:
    calls = []
    original = compare_module.compiled_logits
    monkeypatch.setattr(
        compare_module,
        "compiled_logits",
        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs),
    )
    compare(a, b)
    assert bool(calls) is taken


def test_turned_off_it_is_not_called(monkeypatch) -> None:
    monkeypatch.setenv("KLDIV_NATIVE", "0")
    monkeypatch.setattr(compare_module, "compiled_logits", None)  # would fail if called
    report = compare(np.zeros((2, 3), np.float16), np.ones((2, 3), np.float16))
    np.testing.assert_array_equal(report.kld, [0.0, 0.0])


def test_kernel_rejects_mismatched_buffers() -> None:
    assert kernel is not None
    a = np.zeros((2, 3), np.float32)
    out = [np.empty(2) for _ in range(3)] + [np.empty(2, np.uint8)]
    out += [np.empty(2) for _ in range(2)] + [np.empty(2, np.uint8), np.empty((2, 2))]
    with pytest.raises(ValueError, match="same whole number of rows of 3 entries"):
        kernel.logits(a, np.zeros((3, 3), np.float32), 3, FLOAT32, None, 1, *out)
    with pytest.raises(ValueError, match="kld must hold 2 entries of 8 bytes"):
        kernel.logits(a, a, 3, FLOAT32, None, 1, np.empty(3), *out[1:])
    with pytest.raises(ValueError, match="labels must hold 2 entries"):
        kernel.logits(a, a, 3, FLOAT32, np.zeros(3, np.int64), 1, *out)
    with pytest.raises(ValueError, match="dtype must be 0, 1 or 2"):
        kernel.logits(a, a, 3, 7, None, 1, *out)
    with pytest.raises(ValueError, match="log_totals must hold 2 entries of 16 bytes"):
        kernel.logits(a, a, 3, FLOAT32, None, 1, *out[:-1], np.empty(2))


@pytest.mark.parametrize(("rows", "vocab"), [(1, 10), (9, 7), (300, 5), (13, 70_000)])
def test_any_thread_count_gives_bitwise_the_same_rows(rows, vocab) -> None:
    """Threads claim rows in batches; each row is computed whole by one of them."""
    assert kernel is not None
    base, test, labels = logits(rows, vocab, seed=10)
    a, b = base.astype(np.float16), test.astype(np.float16)
    results = []
    for threads in (1, 2, 5):
        out = [np.empty(rows) for _ in range(3)] + [np.empty(rows, np.uint8)]
        out += [np.empty(rows) for _ in range(2)] + [np.empty(rows, np.uint8)]
        out += [np.empty((rows, 2))]
        kernel.logits(a, b, vocab, FLOAT16, labels, threads, *out)
        results.append(out)
    for other in results[1:]:
        for single, several in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(single, several)
    expected = reference(a.astype(np.float64), b.astype(np.float64), labels)
    np.testing.assert_allclose(results[0][0], expected["kld"], **FLOAT32_TOLERANCE)
