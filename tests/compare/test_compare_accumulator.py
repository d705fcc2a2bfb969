"""CompareAccumulator: batches, merges and ranks give the report of one compare call; the
report's llama-perplexity statistics against NumPy/SciPy."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

from kldiv.report import CompareAccumulator, compare


def data(seed: int, n: int = 60, vocab: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=2.0, size=(n, vocab))
    test = base + rng.normal(scale=0.4, size=(n, vocab))
    return base, test, rng.integers(0, vocab, size=n)


def assert_same_report(got: object, want: object) -> None:
    for name in ("kld", "reverse_kld", "jsd", "log_p_label_base", "log_p_label_test"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(got.top1_same, want.top1_same)  # type: ignore[attr-defined]


def test_batches_give_the_report_of_one_call() -> None:
    base, test, labels = data(0)
    accumulator = CompareAccumulator()
    for start in range(0, 60, 17):
        accumulator.update(
            base[start : start + 17], test[start : start + 17], labels[start : start + 17]
        )
    assert accumulator.n == 60
    assert_same_report(accumulator.compute(), compare(base, test, labels=labels))


def test_merge_appends_in_order_and_leaves_the_other_unchanged() -> None:
    base, test, labels = data(1)
    first, second = CompareAccumulator(), CompareAccumulator()
    first.update(base[:25], test[:25], labels[:25])
    second.update(base[25:], test[25:], labels[25:])
    assert first.merge(second) is first
    assert second.n == 35
    assert_same_report(first.compute(), compare(base, test, labels=labels))


def test_a_skipped_label_drops_only_its_label() -> None:
    base, test, labels = data(2, n=10)
    labels[3] = -1
    accumulator = CompareAccumulator()
    accumulator.update(base[None], test[None], labels[None])
    report = accumulator.compute()
    assert report.n == 10
    assert report.log_p_label_base.shape == (9,)  # type: ignore[union-attr]


def test_bad_use_is_refused() -> None:
    base, test, labels = data(3, n=4)
    accumulator = CompareAccumulator()
    with pytest.raises(ValueError, match="call update\\(\\) with at least one batch"):
        accumulator.compute()
    accumulator.update(base, test, labels)
    with pytest.raises(ValueError, match="earlier batches came with labels; give labels in every"):
        accumulator.update(base, test)
    assert accumulator.n == 4
    with pytest.raises(ValueError, match="of kind 'probs' into one of kind 'logits'"):
        accumulator.merge(CompareAccumulator(kind="probs"))
    with pytest.raises(TypeError, match="can only merge a CompareAccumulator, got dict"):
        accumulator.merge({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown kind 'logit'"):
        CompareAccumulator(kind="logit")
    with pytest.raises(RuntimeError, match=r"needs torch\.distributed"):
        accumulator.compute(gather=True)
    accumulator.reset()
    assert accumulator.n == 0


def test_gather_over_one_rank(tmp_path: object) -> None:
    dist = pytest.importorskip("torch.distributed")
    base, test, labels = data(4)
    accumulator = CompareAccumulator()
    accumulator.update(base, test, labels)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert_same_report(accumulator.compute(gather=True), compare(base, test, labels=labels))
    finally:
        dist.destroy_process_group()


def test_gather_over_two_ranks(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed")
    worker = Path(__file__).with_name("_accumulator_worker.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(worker),
                str(rank),
                "2",
                str(tmp_path / "store"),
                str(tmp_path / f"{rank}.npz"),
            ],
            env=env,
        )
        for rank in range(2)
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 11))
    test = base + 0.3 * rng.normal(size=(50, 11))
    labels = rng.integers(0, 11, size=50)
    want = compare(base, test, labels=labels)
    for rank in range(2):
        got = np.load(tmp_path / f"{rank}.npz")
        # Every rank holds all 50 positions, rank 0's first.
        np.testing.assert_allclose(got["kld"], want.kld, rtol=1e-12)
        np.testing.assert_array_equal(got["top1"], want.top1_same)
        np.testing.assert_allclose(got["label_base"], want.log_p_label_base, rtol=1e-12)


def test_the_llamacpp_statistics_of_the_report() -> None:
    base, test, labels = data(5, n=200)
    summary = compare(base, test, labels=labels).to_dict()
    lb = log_softmax(base, axis=1)[np.arange(200), labels]
    lt = log_softmax(test, axis=1)[np.arange(200), labels]
    n = 200
    # llama-perplexity's sums, written as it writes them.
    nll, nll_base = -lt, -lb
    mean, mean_base = nll.mean(), nll_base.mean()
    unc = math.sqrt((np.mean(nll**2) - mean**2) / (n - 1))
    unc_base = math.sqrt((np.mean(nll_base**2) - mean_base**2) / (n - 1))
    cov = (np.mean(nll * nll_base) - mean * mean_base) / (n - 1)
    ppl, ppl_base = math.exp(mean), math.exp(mean_base)
    ppl_unc, ppl_base_unc = ppl * unc, ppl_base * unc_base
    ratio_unc = math.sqrt(unc**2 + unc_base**2 - 2 * cov)
    ppl_summary = summary["ppl"]
    assert ppl_summary["correlation"] == pytest.approx(cov / (unc * unc_base), rel=1e-9)
    assert ppl_summary["ln_ratio"] == pytest.approx(mean - mean_base, rel=1e-9)
    assert ppl_summary["ln_ratio_stderr"] == pytest.approx(ratio_unc, rel=1e-9)
    assert ppl_summary["ratio_stderr"] == pytest.approx(ppl / ppl_base * ratio_unc, rel=1e-9)
    assert ppl_summary["base_stderr"] == pytest.approx(ppl_base_unc, rel=1e-9)
    assert ppl_summary["test_stderr"] == pytest.approx(ppl_unc, rel=1e-9)
    assert ppl_summary["difference"]["value"] == pytest.approx(ppl - ppl_base, rel=1e-9)
    difference_unc = math.sqrt(ppl_unc**2 + ppl_base_unc**2 - 2 * ppl * ppl_base * cov)
    assert ppl_summary["difference"]["stderr"] == pytest.approx(difference_unc, rel=1e-9)
    delta = np.exp(lt) - np.exp(lb)
    mse, mse_unc = (
        np.mean(delta**2),
        math.sqrt((np.mean(delta**4) - np.mean(delta**2) ** 2) / (n - 1)),
    )
    assert summary["delta_p"]["rms_stderr"] == pytest.approx(
        0.5 / math.sqrt(mse) * mse_unc, rel=1e-9
    )
    percentiles = summary["delta_p"]["percentiles"]
    assert list(percentiles) == ["0.1", "1", "5", "10", "25", "75", "90", "95", "99", "99.9"]
    sorted_delta = np.sort(delta)
    for key in ("25", "75"):
        # llama-perplexity's interpolation: between sorted values at fraction · (n − 1).
        position = float(key) / 100 * (n - 1)
        low = int(position)
        want = (1 - (position - low)) * sorted_delta[low] + (position - low) * sorted_delta[low + 1]
        assert percentiles[key] == pytest.approx(want, rel=1e-9)
    # Every key the report had before is still there.
    for key in ("base", "test", "ratio", "ln_ratio", "ln_ratio_stderr"):
        assert key in ppl_summary
