"""Positions whose KL is not finite are counted and reported, or raise on request.

A row with NaN or +inf makes the divergences undefined (NaN): it used to stop the whole run.
A row where test gives probability 0 to a token base can emit makes KL(base‖test) = +inf: the
mean was ``inf ± nan`` with no count and no mean over the finite positions. The reference is
SciPy in float64 on the other rows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kldiv.report import InputError, compare

N, V = 30, 50


@pytest.fixture(params=["compiled", "fallback"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setenv("KLDIV_NATIVE", "0")
    return str(request.param)


def logits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = 2.0 * rng.normal(size=(N, V))
    return base, base + 0.4 * rng.normal(size=(N, V))


def scipy_kl(base: np.ndarray, test: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        p = np.exp(log_softmax(base.astype(np.float64), axis=-1))
        q = np.exp(log_softmax(test.astype(np.float64), axis=-1))
    return rel_entr(p, q).sum(-1)


def converted(x: np.ndarray, library: str, kind: str):
    if kind == "log_probs":
        with np.errstate(invalid="ignore"):
            x = log_softmax(x, axis=-1)
    elif kind == "probs":
        with np.errstate(invalid="ignore"):
            x = np.exp(log_softmax(x, axis=-1))
    x = x.astype(np.float32)
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x)
    return x


def with_undefined_rows(base: np.ndarray, test: np.ndarray, kind: str):
    """NaN in base's row 4 and +inf in test's row 17 (probabilities: NaN in both)."""
    base, test = base.copy(), test.copy()
    base[4, 3] = np.nan
    test[17, 8] = np.nan if kind == "probs" else np.inf
    return base, test


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("kind", ["logits", "log_probs", "probs"])
def test_undefined_rows_are_counted_not_fatal(path, library, kind) -> None:
    """The reported case: one NaN row stopped the run."""
    clean_base, clean_test = logits(1)
    bad_base, bad_test = with_undefined_rows(clean_base, clean_test, kind)
    a, b = converted(bad_base, library, kind), converted(bad_test, library, kind)
    report = compare(a, b, kind=kind, chunk_rows=8)
    assert np.isnan(report.kld[[4, 17]]).all()
    assert np.isnan(report.reverse_kld[[4, 17]]).all()
    keep = np.setdiff1d(np.arange(N), [4, 17])
    expected = scipy_kl(clean_base, clean_test)[keep]
    np.testing.assert_allclose(report.kld[keep], expected, rtol=2e-4, atol=1e-6)
    summary = report.to_dict()
    assert (summary["n"], summary["n_nan"], summary["n_infinite"]) == (N, 2, 0)
    assert summary["kld"]["mean"] == pytest.approx(expected.mean(), rel=2e-4)
    assert summary["kld"]["stderr"] == pytest.approx(
        expected.std(ddof=1) / math.sqrt(N - 2), rel=2e-3
    )
    assert summary["kld"]["median"] == pytest.approx(np.median(expected), rel=2e-4)
    assert summary["kld"]["finite_mean"] == summary["kld"]["mean"]
    assert "NaN positions (left out)  2" in report.table()


@pytest.mark.parametrize("kind", ["logits", "log_probs", "probs"])
def test_undefined_rows_raise_on_request(path, kind) -> None:
    bad_base, bad_test = with_undefined_rows(*logits(2), kind)
    a, b = converted(bad_base, "numpy", kind), converted(bad_test, "numpy", kind)
    with pytest.raises(InputError, match=r"^base: entry nan at index \(4, \d+\); entries must"):
        compare(a, b, kind=kind, chunk_rows=8, nonfinite="raise")


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_infinite_rows_are_counted_with_a_finite_mean_beside(path, library) -> None:
    base, test = logits(3)
    test[[6, 21], 10] = -np.inf  # test gives probability 0 where base does not
    report = compare(converted(base, library, "logits"), converted(test, library, "logits"))
    expected = scipy_kl(base.astype(np.float32), test.astype(np.float32))
    assert np.isinf(expected[[6, 21]]).all()
    finite = np.delete(expected, [6, 21])
    summary = report.to_dict()
    assert (summary["n_nan"], summary["n_infinite"]) == (0, 2)
    assert summary["kld"]["mean"] == math.inf
    assert summary["kld"]["finite_mean"] == pytest.approx(finite.mean(), rel=1e-4)
    assert summary["kld"]["finite_stderr"] == pytest.approx(
        finite.std(ddof=1) / math.sqrt(N - 2), rel=1e-3
    )
    assert summary["kld"]["max"] == math.inf
    # Quantiles interpolated towards an infinite value are infinite, not NaN.
    assert summary["kld"]["percentiles"]["99.9"] == math.inf
    lines = report.table().splitlines()
    assert "infinite KLD positions      2" in lines
    assert any(line.startswith("mean KLD, finite positions") for line in lines)
    written = json.loads(report.to_json())
    assert written["kld"]["mean"] is None
    assert written["kld"]["finite_mean"] == pytest.approx(finite.mean(), rel=1e-4)


def test_infinite_rows_raise_on_request(path) -> None:
    base, test = logits(4)
    test[9, 0] = -np.inf
    with pytest.raises(
        InputError,
        match=r"^test: KL\(base‖test\) is infinite at position \(1, 3\): test gives probability 0",
    ):
        compare(base.reshape(5, 6, V), test.reshape(5, 6, V), nonfinite="raise")


def test_a_report_with_no_defined_position() -> None:
    base = np.full((2, 3), np.nan)
    summary = compare(base, base).to_dict()
    assert (summary["n"], summary["n_nan"]) == (2, 2)
    assert math.isnan(summary["kld"]["mean"])
    assert math.isnan(summary["top1_agreement"]["value"])


def test_unknown_nonfinite() -> None:
    with pytest.raises(ValueError, match="unknown nonfinite 'ignore'; expected one of 'report'"):
        compare(np.zeros((2, 3)), np.zeros((2, 3)), nonfinite="ignore")


def test_labels_at_undefined_rows_are_left_out(path) -> None:
    base, test = logits(5)
    labels = np.arange(N) % V
    base[2, 0] = np.nan
    report = compare(base, test, labels=labels)
    summary = report.to_dict()
    assert summary["n_labeled"] == N - 1
    rows = np.delete(np.arange(N), 2)
    log_p = log_softmax(base[rows], axis=-1)[np.arange(N - 1), labels[rows]]
    log_q = log_softmax(test[rows], axis=-1)[np.arange(N - 1), labels[rows]]
    assert summary["ppl"]["base"] == pytest.approx(math.exp(-log_p.mean()), rel=1e-5)
    assert summary["ppl"]["test"] == pytest.approx(math.exp(-log_q.mean()), rel=1e-5)
