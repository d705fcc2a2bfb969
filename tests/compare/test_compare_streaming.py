"""Streaming: any chunk size, memory maps and torch tensors give the same per-position values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

import kldiv.report._compare as compare_module
from kldiv.report import compare

N, V = 101, 33


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    base = rng.normal(scale=2.0, size=(N, V))
    return base, base + rng.normal(scale=0.5, size=(N, V)), rng.integers(0, V, size=N)


@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 64, N, N + 50])
def test_any_chunk_size_gives_the_same_result(arrays, chunk_rows) -> None:
    base, test, labels = arrays
    whole = compare(base, test, labels=labels, chunk_rows=N)
    chunked = compare(base, test, labels=labels, chunk_rows=chunk_rows)
    for name in ("kld", "reverse_kld", "jsd", "top1_same", "log_p_label_base", "log_p_label_test"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-12)


def test_memory_mapped_input_matches_in_memory(arrays, tmp_path) -> None:
    base, test, _ = arrays
    np.save(tmp_path / "base.npy", base.astype(np.float16))
    np.save(tmp_path / "test.npy", test.astype(np.float16))
    mapped = compare(
        np.load(tmp_path / "base.npy", mmap_mode="r"),
        np.load(tmp_path / "test.npy", mmap_mode="r"),
        chunk_rows=3,
    )
    in_memory = compare(base.astype(np.float16), test.astype(np.float16))
    np.testing.assert_allclose(mapped.kld, in_memory.kld, rtol=1e-6)
    p = np.exp(log_softmax(base.astype(np.float16).astype(np.float64), -1))
    q = np.exp(log_softmax(test.astype(np.float16).astype(np.float64), -1))
    np.testing.assert_allclose(mapped.kld, rel_entr(p, q).sum(-1), rtol=1e-4, atol=1e-6)


def test_progress_callback_sees_every_chunk(arrays) -> None:
    base, test, _ = arrays
    seen: list[tuple[int, int]] = []
    compare(base, test, chunk_rows=40, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(40, N), (80, N), (N, N)]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_tensors_match_numpy(arrays, dtype) -> None:
    torch = pytest.importorskip("torch")
    base, test, labels = arrays
    tb = torch.from_numpy(base).to(getattr(torch, dtype))
    tt = torch.from_numpy(test).to(getattr(torch, dtype))
    report = compare(tb, tt, labels=torch.from_numpy(labels), chunk_rows=16)
    p = np.exp(log_softmax(tb.double().numpy(), -1))
    q = np.exp(log_softmax(tt.double().numpy(), -1))
    np.testing.assert_allclose(report.kld, rel_entr(p, q).sum(-1), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        report.log_p_label_base, np.log(p[np.arange(N), labels]), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["log_probs"])
def test_compiled_path_matches_eager(arrays, monkeypatch, kind) -> None:
    """Large inputs go through torch.compile; small ones are forced there to test it."""
    pytest.importorskip("torch")
    from kldiv.report import _statistics

    # Float rows in NumPy take the fused kernel: the compiled path serves the others.
    monkeypatch.setattr(compare_module, "fused_applies", lambda *args: False)

    base, test, labels = arrays
    if kind == "log_probs":
        base, test = log_softmax(base, -1), log_softmax(test, -1)
    base, test = base.astype(np.float16), test.astype(np.float16)
    eager = compare(base, test, kind=kind, labels=labels, chunk_rows=40)
    calls = []
    original = _statistics.CompiledStatistics.__call__

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(_statistics, "COMPILE_ENTRIES", 0)
    monkeypatch.setattr(_statistics.CompiledStatistics, "__call__", counted)
    compiled = compare(base, test, kind=kind, labels=labels, chunk_rows=40)
    assert len(calls) == 3  # every chunk, the last one padded
    for name in ("kld", "reverse_kld", "jsd", "log_p_label_base", "log_p_label_test"):
        np.testing.assert_allclose(
            getattr(compiled, name), getattr(eager, name), rtol=1e-5, atol=1e-7
        )
    np.testing.assert_array_equal(compiled.top1_same, eager.top1_same)


def test_compile_failure_falls_back_to_eager(arrays, monkeypatch) -> None:
    pytest.importorskip("torch")
    from kldiv.report import _statistics

    # Float rows in NumPy take the fused kernel: the compiled path serves the others.
    monkeypatch.setattr(compare_module, "fused_applies", lambda *args: False)

    def broken(self, *args):
        raise RuntimeError("no C compiler")

    base, test = (log_softmax(x, -1) for x in arrays[:2])
    eager = compare(base, test, kind="log_probs")
    monkeypatch.setattr(_statistics, "COMPILE_ENTRIES", 0)
    monkeypatch.setattr(_statistics.CompiledStatistics, "__call__", broken)
    np.testing.assert_array_equal(
        compare(base, test, kind="log_probs", chunk_rows=10).kld, eager.kld
    )


def test_compiled_path_still_reports_bad_entries(arrays, monkeypatch) -> None:
    pytest.importorskip("torch")
    from kldiv.report import InputError, _statistics

    monkeypatch.setattr(compare_module, "fused_applies", lambda *args: False)

    base, test = (log_softmax(x, -1) for x in arrays[:2])
    test[77, 5] = np.nan
    monkeypatch.setattr(_statistics, "COMPILE_ENTRIES", 0)
    with pytest.raises(InputError, match=r"^test: entry nan at index \(77, 5\)"):
        compare(base, test, kind="log_probs", chunk_rows=40, nonfinite="raise")
