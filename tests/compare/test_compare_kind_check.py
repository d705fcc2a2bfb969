"""A wrong ``kind`` is caught: log-probabilities and probabilities must normalize per row.

Logits passed as ``kind="log_probs"`` used to give a report with a mean KL of hundreds of nats
and a negative median. Every path of `compare` (the compiled kernel, its NumPy fallback with
``KLDIV_NATIVE=0``, the rows it recomputes, and the core's divergences for other libraries)
must reject them, name the row, and suggest ``kind="logits"``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kldiv.report import InputError, compare

N, V = 40, 70


@pytest.fixture(params=["compiled", "fallback"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setenv("KLDIV_NATIVE", "0")
    return str(request.param)


def logits(seed: int = 0, rows: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = 4.0 * rng.normal(size=(rows, V))
    return base, base + 0.5 * rng.normal(size=(rows, V))


def as_library(x: np.ndarray, library: str, dtype: str):
    if library == "numpy":
        return x.astype(dtype)
    torch = pytest.importorskip("torch")
    return torch.from_numpy(x).to(getattr(torch, dtype))


CASES = [
    ("numpy", "float16"),
    ("numpy", "float32"),
    ("numpy", "float64"),
    ("torch", "float16"),
    ("torch", "bfloat16"),
    ("torch", "float32"),
    ("torch", "float64"),
]


@pytest.mark.parametrize(("library", "dtype"), CASES)
def test_logits_given_as_log_probs_are_rejected(path, library, dtype) -> None:
    """The reported case: logit dumps with ``--kind log_probs``."""
    base, test = logits()
    a, b = as_library(base, library, dtype), as_library(test, library, dtype)
    with pytest.raises(
        InputError, match=r"^base: row at index \(0,\) is not log-probabilities"
    ) as caught:
        compare(a, b, kind="log_probs", chunk_rows=16)
    message = str(caught.value)
    assert message.endswith('; if they are logits, use kind="logits"')
    assert "its exponentials sum to" in message
    assert caught.value.suggested_kinds == ("logits",)
    # The same arrays as logits are fine.
    compare(a, b, kind="logits", chunk_rows=16)


@pytest.mark.parametrize(("library", "dtype"), CASES)
def test_the_first_unnormalized_row_is_located(path, library, dtype) -> None:
    """One bad row in a later chunk, on the test side, in the inputs' own (B, T) index."""
    base, test = (log_softmax(x, axis=-1) for x in logits(1))
    test[29] += 0.5  # exponentials sum to e^0.5 = 1.65
    test[35] += 2.0  # a later one: not reported
    a = as_library(base.reshape(4, 10, V), library, dtype)
    b = as_library(test.reshape(4, 10, V), library, dtype)
    with pytest.raises(InputError, match=r"^test: row at index \(2, 9\) is not log-prob") as caught:
        compare(a, b, kind="log_probs", chunk_rows=8)
    total = float(str(caught.value).split("sum to ")[1].split(" ")[0])
    assert total == pytest.approx(np.exp(0.5), rel=2e-2)


@pytest.mark.parametrize(("library", "dtype"), CASES)
def test_rounded_log_probs_pass_and_match_scipy(path, library, dtype) -> None:
    """No false alarm for log-probabilities rounded to the dtype they are stored in."""
    base, test = (log_softmax(x, axis=-1) for x in logits(2))
    a, b = as_library(base, library, dtype), as_library(test, library, dtype)
    report = compare(a, b, kind="log_probs", chunk_rows=16)
    stored = [np.asarray(x.float() if library == "torch" else x, dtype=np.float64) for x in (a, b)]
    # The stored rows sum to 1 within rounding; compare's KL is that of the normalized rows.
    p, q = (np.exp(log_softmax(x, axis=-1)) for x in stored)
    np.testing.assert_allclose(report.kld, rel_entr(p, q).sum(-1), rtol=1e-4, atol=1e-6)


def test_minus_infinity_rows_are_checked_where_they_are_recomputed(path) -> None:
    """Rows with -inf take the core's divergences: they are checked there."""
    with np.errstate(divide="ignore"):
        base, test = (log_softmax(x, axis=-1) for x in logits(3))
        test[5, :3] = -np.inf  # zero probability: KL(base‖test) = inf, no error
        test[5] = np.log(np.exp(test[5]) / np.exp(test[5]).sum())
        base[12] += 1.0  # unnormalized, with a -inf entry
        base[12, 0] = -np.inf
    with pytest.raises(InputError, match=r"^base: row at index \(12,\) is not log-prob"):
        compare(base.astype(np.float32), test.astype(np.float32), kind="log_probs", chunk_rows=8)
    base[12] = log_softmax(base[12])
    report = compare(base.astype(np.float32), test.astype(np.float32), kind="log_probs")
    assert np.isinf(report.kld[5])
    assert np.isfinite(np.delete(report.kld, 5)).all()


def test_other_libraries_are_checked_by_the_core_path() -> None:
    """JAX arrays take the core's divergences; the check costs one log-sum-exp per row there."""
    jnp = pytest.importorskip("jax.numpy")
    base, test = logits(4)
    with pytest.raises(InputError, match=r'^base: row at index \(0,\).*use kind="logits"$'):
        compare(jnp.asarray(base), jnp.asarray(test), kind="log_probs")
    good = [jnp.asarray(log_softmax(x, axis=-1)) for x in (base, test)]
    report = compare(*good, kind="log_probs")
    p, q = (np.exp(log_softmax(x, axis=-1)) for x in (base, test))
    np.testing.assert_allclose(report.kld, rel_entr(p, q).sum(-1), rtol=1e-4, atol=1e-6)


def test_logits_given_as_probs_suggest_logits_or_log_probs() -> None:
    base, test = logits(5)
    with pytest.raises(InputError, match=r"^base: entry .* probabilities must be >= 0") as caught:
        compare(base, test, kind="probs")
    assert str(caught.value).endswith(
        '; if they are logits or log-probabilities, use kind="logits" or kind="log_probs"'
    )


def test_log_probs_within_the_float16_tolerance_pass() -> None:
    """Tolerance: |Σ exp − 1| ≤ √eps of the stored dtype, 3.1e-2 for float16."""
    base, test = (log_softmax(x, axis=-1) for x in logits(6, rows=2))
    test[0] += np.log1p(0.02)  # sums to 1.02: inside float16's tolerance
    compare(base.astype(np.float16), test.astype(np.float16), kind="log_probs")
    with pytest.raises(InputError, match=r"tolerance 3\.5e-04 for float32"):
        compare(base.astype(np.float32), test.astype(np.float32), kind="log_probs")
