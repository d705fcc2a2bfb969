"""llama.cpp's KL-divergence base file: layout, encoding, decoding, corrupt files, its KLD."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp

from kldiv.lm import (
    LlamaCppFileError,
    LlamaCppLogits,
    LlamaCppLogitsWriter,
    file_size,
    is_llamacpp_file,
    llamacpp_statistics,
    write_llamacpp_logits,
)


def windows_of_logits(seed: int, n_chunk: int, n_ctx: int, vocab: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = n_ctx - 1 - n_ctx // 2
    logits = rng.normal(scale=4.0, size=(n_chunk, rows, vocab)).astype(np.float32)
    # Some rows span more than 16 nats, so the floor max − 16 applies to them.
    logits[:, ::2, : vocab // 3] -= 30.0
    return logits


def parse(path: Path) -> dict[str, object]:
    """An independent reader of the documented layout, with struct."""
    data = path.read_bytes()
    magic = data[:8]
    n_ctx, n_vocab, n_chunk = struct.unpack("<3i", data[8:20])
    tokens = struct.unpack(f"<{n_ctx * n_chunk}i", data[20 : 20 + 4 * n_ctx * n_chunk])
    offset = 20 + 4 * n_ctx * n_chunk
    nv = 2 * ((n_vocab + 1) // 2) + 4
    rows = []
    for _ in range(n_chunk * (n_ctx - 1 - n_ctx // 2)):
        scale, minimum = struct.unpack("<2f", data[offset : offset + 8])
        codes = struct.unpack(f"<{nv - 4}H", data[offset + 8 : offset + 2 * nv])
        rows.append((scale, minimum, codes))
        offset += 2 * nv
    return {
        "magic": magic,
        "dims": (n_ctx, n_vocab, n_chunk),
        "tokens": tokens,
        "rows": rows,
        "end": offset,
    }


@pytest.mark.parametrize(("n_ctx", "vocab", "n_chunk"), [(8, 37, 3), (9, 40, 2), (3, 1, 1)])
def test_size_layout_and_round_trip(tmp_path: Path, n_ctx: int, vocab: int, n_chunk: int) -> None:
    logits = windows_of_logits(0, n_chunk, n_ctx, vocab)
    tokens = np.random.default_rng(1).integers(0, vocab, size=n_ctx * n_chunk)
    path = tmp_path / "base.bin"
    write_llamacpp_logits(path, tokens, logits, n_ctx=n_ctx)
    rows = n_ctx - 1 - n_ctx // 2
    expected_size = 8 + 12 + 4 * n_ctx * n_chunk + 2 * n_chunk * rows * (2 * -(-vocab // 2) + 4)
    assert path.stat().st_size == expected_size == file_size(n_ctx, vocab, n_chunk)
    parsed = parse(path)
    assert parsed["magic"] == b"_logits_"
    assert parsed["dims"] == (n_ctx, vocab, n_chunk)
    assert parsed["tokens"] == tuple(int(t) for t in tokens)
    assert parsed["end"] == expected_size
    base = LlamaCppLogits(path)
    assert (base.n_ctx, base.n_vocab, base.n_chunk) == (n_ctx, vocab, n_chunk)
    np.testing.assert_array_equal(base.tokens, tokens)
    assert is_llamacpp_file(path)
    for chunk in range(n_chunk):
        decoded = base.log_probs(chunk)
        assert decoded.dtype == np.float32
        assert decoded.shape == (rows, vocab)
        for r in range(rows):
            scale, minimum, codes = parsed["rows"][chunk * rows + r]  # type: ignore[index]
            if vocab % 2:
                assert codes[-1] == 0  # the padding code
            wide = np.float64(scale) * np.array(codes[:vocab]) + np.float64(minimum)
            np.testing.assert_allclose(decoded[r], wide, rtol=0, atol=1e-5)


def test_encoding_matches_the_formula_within_a_quantization_step(tmp_path: Path) -> None:
    n_ctx, vocab = 10, 301
    logits = windows_of_logits(2, 2, n_ctx, vocab)
    path = tmp_path / "base.kld"
    write_llamacpp_logits(path, np.zeros(2 * n_ctx, dtype=np.int64), logits, n_ctx=n_ctx)
    base = LlamaCppLogits(path)
    for chunk in range(2):
        scale, minimum, codes = base.encoded(chunk)
        x = logits[chunk].astype(np.float64)
        top = x.max(axis=1)
        low = np.maximum(x.min(axis=1), top - 16)
        truth = log_softmax(x, axis=1)
        np.testing.assert_allclose(scale, (top - low) / 65535, rtol=1e-6)
        np.testing.assert_allclose(minimum, low - logsumexp(x, axis=1), atol=1e-5)
        decoded = base.log_probs(chunk).astype(np.float64)
        above = x > low[:, None]
        step = scale.astype(np.float64)[:, None]
        # Entries above the floor decode to within half a step (plus float32 rounding).
        error = np.abs(decoded - truth)
        assert np.all(
            error[above] <= (0.5 * step + 2e-5 * (1 + np.abs(truth)))[above.nonzero()[0], 0]
        )
        # Entries at or below the floor all get code 0: the floor's log-probability.
        np.testing.assert_array_equal(codes[~above], 0)
        np.testing.assert_allclose(
            decoded[~above], np.broadcast_to(minimum[:, None], x.shape)[~above], atol=1e-6
        )
        assert codes.max() == 65535


def test_a_constant_row_gets_zero_scale(tmp_path: Path) -> None:
    logits = np.zeros((1, 1, 6), dtype=np.float32)
    path = tmp_path / "flat.kld"
    write_llamacpp_logits(path, np.arange(3), logits, n_ctx=3)
    scale, minimum, codes = LlamaCppLogits(path).encoded(0)
    assert scale[0] == 0
    np.testing.assert_allclose(minimum[0], -np.log(6), rtol=1e-6)
    np.testing.assert_array_equal(codes, 0)


def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.kld"
    write_llamacpp_logits(path, np.arange(16) % 7, windows_of_logits(3, 2, 8, 7), n_ctx=8)
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda b: b[:-3],
            "is truncated: 225 bytes where n_ctx 8, n_vocab 7 and n_chunk 2 make 228",
        ),
        (lambda b: b + b"\0\0", "has trailing bytes"),
        (lambda b: b[:12], "is truncated: 12 bytes, shorter than the 20-byte header"),
        (lambda b: b"_logitz_" + b[8:], "does not start with llama.cpp's '_logits_' magic"),
        (lambda b: b[:8] + struct.pack("<i", -8) + b[12:], "corrupt header: n_ctx -8"),
        (
            lambda b: b[:20] + struct.pack("<i", 7) + b[24:],
            "token 7 at position 0 is outside its vocabulary of 7",
        ),
    ],
)
def test_damaged_files_are_refused(tmp_path: Path, damage: object, message: str) -> None:
    data = good_file(tmp_path).read_bytes()
    path = tmp_path / "bad.kld"
    path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises(LlamaCppFileError, match=message.replace("(", r"\(")):
        LlamaCppLogits(path)


def test_a_row_with_a_nan_scale_is_refused(tmp_path: Path) -> None:
    data = bytearray(good_file(tmp_path).read_bytes())
    offset = 20 + 4 * 16
    data[offset : offset + 4] = struct.pack("<f", float("nan"))
    path = tmp_path / "nan.kld"
    path.write_bytes(bytes(data))
    base = LlamaCppLogits(path)
    with pytest.raises(LlamaCppFileError, match="chunk 0 row 0 has scale nan"):
        base.log_probs(0)
    with pytest.raises(IndexError, match="chunk 2 is out of range; the file holds 2"):
        base.log_probs(2)


def test_writer_leaves_nothing_behind_when_windows_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "out.kld"
    writer = LlamaCppLogitsWriter(path, np.zeros(16, dtype=np.int64), n_ctx=8, n_vocab=5)
    writer.write(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="only 1 of 2 windows were written"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="a positive multiple of n_ctx = 8"):
        LlamaCppLogitsWriter(path, np.zeros(10, dtype=np.int64), n_ctx=8, n_vocab=5)


def llamacpp_reference(
    log_p: np.ndarray, logits: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, ...]:
    """llama.cpp's loop, one entry at a time, in float64."""
    kld = np.zeros(log_p.shape[0])
    same = np.zeros(log_p.shape[0], dtype=bool)
    log_q = log_softmax(logits.astype(np.float64), axis=1)
    for r in range(log_p.shape[0]):
        total = 0.0
        for v in range(log_p.shape[1]):
            lp = float(log_p[r, v])
            if lp > -16.0:
                total += np.exp(lp) * (lp - log_q[r, v])
        kld[r] = total
        same[r] = int(np.argmax(log_p[r])) == int(np.argmax(logits[r]))
    rows = np.arange(log_p.shape[0])
    return kld, same, log_p[rows, labels].astype(np.float64), log_q[rows, labels]


def test_kld_against_a_base_file_is_llamacpps(tmp_path: Path) -> None:
    n_ctx, vocab = 12, 50
    base_logits = windows_of_logits(5, 1, n_ctx, vocab)
    # Wide rows: many entries decode just above or below −16 while their code is above 0.
    base_logits[0, 1] = np.linspace(-25, 0, vocab, dtype=np.float32)
    path = tmp_path / "base.kld"
    write_llamacpp_logits(path, np.zeros(n_ctx, dtype=np.int64), base_logits, n_ctx=n_ctx)
    log_p = LlamaCppLogits(path).log_probs(0)
    rng = np.random.default_rng(6)
    test_logits = (base_logits[0] + rng.normal(scale=0.5, size=base_logits[0].shape)).astype(
        np.float32
    )
    labels = rng.integers(0, vocab, size=log_p.shape[0])
    kld, same, label_base, label_test = llamacpp_statistics(log_p, test_logits, labels)
    want = llamacpp_reference(log_p, test_logits, labels)
    np.testing.assert_allclose(kld, want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(same, want[1])
    np.testing.assert_allclose(label_base, want[2], rtol=1e-6)
    np.testing.assert_allclose(label_test, want[3], rtol=1e-5, atol=1e-5)
    # The sum is over decoded log-probabilities above −16, which is not the same as code > 0.
    codes = LlamaCppLogits(path).encoded(0)[2]
    assert np.any((codes[1] > 0) & (log_p[1] <= -16))
