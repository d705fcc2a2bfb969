"""`kldiv.report.compare` against a direct float64 NumPy/SciPy computation on the same arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kldiv.report import PERCENTILES, Report, compare

N, V = 257, 40


def reference(base_logits: np.ndarray, test_logits: np.ndarray, labels: np.ndarray | None):
    """Every statistic of the report, computed independently in float64."""
    log_p = log_softmax(base_logits.astype(np.float64), axis=-1)
    log_q = log_softmax(test_logits.astype(np.float64), axis=-1)
    p, q = np.exp(log_p), np.exp(log_q)
    m = 0.5 * (p + q)
    kld = rel_entr(p, q).sum(-1)
    agree = np.mean(base_logits.argmax(-1) == test_logits.argmax(-1))
    quantiles = np.percentile(kld, [0.1, 1, 5, 10, 90, 95, 99, 99.9])
    out = {
        "n": len(kld),
        "kld": {
            "mean": kld.mean(),
            "stderr": kld.std(ddof=1) / math.sqrt(len(kld)),
            "median": np.median(kld),
            "min": kld.min(),
            "max": kld.max(),
            "percentiles": dict(zip(PERCENTILES, quantiles, strict=True)),
        },
        "top1_agreement": {"value": agree, "stderr": math.sqrt(agree * (1 - agree) / len(kld))},
        "reverse_kld_mean": rel_entr(q, p).sum(-1).mean(),
        "jsd_mean": (0.5 * rel_entr(p, m) + 0.5 * rel_entr(q, m)).sum(-1).mean(),
    }
    if labels is not None:
        keep = labels >= 0
        rows, tokens = np.nonzero(keep)[0], labels[keep]
        lp, lq = log_p[rows, tokens], log_q[rows, tokens]
        delta = np.exp(lq) - np.exp(lp)
        out["n_labeled"] = int(keep.sum())
        out["delta_p"] = {
            "mean": delta.mean(),
            "stderr": delta.std(ddof=1) / math.sqrt(len(delta)),
            "rms": math.sqrt(np.mean(delta**2)),
            "median": np.median(delta),
            "min": delta.min(),
            "max": delta.max(),
            "percentiles": dict(
                zip(
                    PERCENTILES,
                    np.percentile(delta, [0.1, 1, 5, 10, 90, 95, 99, 99.9]),
                    strict=True,
                )
            ),
        }
        ppl_p, ppl_q = math.exp(-lp.mean()), math.exp(-lq.mean())
        out["ppl"] = {
            "base": ppl_p,
            "test": ppl_q,
            "ratio": ppl_q / ppl_p,
            "ln_ratio": (lp - lq).mean(),
            "ln_ratio_stderr": (lp - lq).std(ddof=1) / math.sqrt(len(lp)),
        }
    return out


def assert_matches(actual: dict, expected: dict, *, rtol: float, atol: float) -> None:
    for key, value in expected.items():
        assert key in actual, key
        if isinstance(value, dict):
            assert_matches(actual[key], value, rtol=rtol, atol=atol)
        else:
            np.testing.assert_allclose(actual[key], value, rtol=rtol, atol=atol, err_msg=key)


@pytest.fixture
def logits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.normal(scale=3.0, size=(N, V))
    test = base + rng.normal(scale=0.3, size=(N, V))
    labels = rng.integers(0, V, size=N)
    labels[::10] = -100  # skipped positions, as in Hugging Face's ignore index
    return base, test, labels


@pytest.mark.parametrize(
    ("dtype", "rtol", "atol"),
    [(np.float64, 1e-10, 1e-13), (np.float32, 1e-4, 1e-6), (np.float16, 1e-3, 1e-5)],
)
def test_every_statistic_matches_numpy(logits, dtype, rtol, atol) -> None:
    base, test, labels = (a.astype(dtype) if a.dtype.kind == "f" else a for a in logits)
    report = compare(base, test, labels=labels)
    actual = json.loads(report.to_json())
    assert_matches(actual, reference(base, test, labels), rtol=rtol, atol=atol)
    assert actual["kind"] == "logits"
    assert actual["units"] == "nats"


@pytest.mark.parametrize("kind", ["probs", "log_probs"])
def test_kinds_agree_with_logits(logits, kind) -> None:
    base, test, labels = logits
    convert = (
        (lambda x: np.exp(log_softmax(x, -1)))
        if kind == "probs"
        else (lambda x: log_softmax(x, -1))
    )
    report = compare(convert(base), convert(test), kind=kind, labels=labels)
    assert_matches(report.to_dict(), reference(base, test, labels), rtol=1e-9, atol=1e-12)


def test_batched_inputs_are_flattened_to_positions(logits) -> None:
    base, test, labels = logits
    flat = compare(base[:256], test[:256], labels=labels[:256])
    batched = compare(
        base[:256].reshape(4, 64, V),
        test[:256].reshape(4, 64, V),
        labels=labels[:256].reshape(4, 64),
    )
    np.testing.assert_array_equal(batched.kld, flat.kld)
    np.testing.assert_array_equal(batched.log_p_label_test, flat.log_p_label_test)


def test_minus_infinity_logits_are_zero_probability() -> None:
    base = np.array([[0.0, 0.0, -np.inf], [0.0, 0.0, 0.0]])
    test = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -np.inf]])
    report = compare(base, test)
    np.testing.assert_allclose(report.kld[0], math.log(1.5))  # KL([½,½,0] ‖ [⅓,⅓,⅓])
    assert report.kld[1] == math.inf
    assert json.loads(report.to_json())["kld"]["max"] is None


def test_report_renders_table_and_plot(logits, tmp_path) -> None:
    base, test, labels = logits
    report = compare(base, test, labels=labels)
    text = report.table()
    assert "mean KLD" in text
    assert "PPL test / base" in text
    assert str(report) == text
    figure = report.plot(tmp_path / "kld.png")
    assert len(figure.axes) == 2
    assert (tmp_path / "kld.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_labels_has_no_label_keys(logits) -> None:
    base, test, _ = logits
    summary = compare(base, test).to_dict()
    assert "delta_p" not in summary
    assert "ppl" not in summary
    assert isinstance(compare(base, test), Report)


def test_label_with_zero_probability_gives_infinite_perplexity() -> None:
    base = np.array([[0.5, 0.5], [1.0, 0.0]])
    test = np.array([[0.5, 0.5], [0.5, 0.5]])
    report = compare(base, test, kind="probs", labels=np.array([0, 1]))
    # p_base(label 1) = 0 at the second position: infinite perplexity, null in JSON.
    assert report.to_dict()["ppl"]["base"] == math.inf
    assert report.to_dict()["ppl"]["test"] == pytest.approx(2.0)
    assert json.loads(report.to_json())["ppl"]["base"] is None
