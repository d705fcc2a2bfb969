r"""llama.cpp's KL-divergence base files, read and written as ``llama-perplexity`` does.

``llama-perplexity --kl-divergence-base FILE`` stores, little-endian:
``char[8] "_logits_"``, ``int32 n_ctx``, ``int32 n_vocab``, ``int32 n_chunk``,
``int32 tokens[n_ctx·n_chunk]``, then for each chunk $R = n_{ctx} - 1 - \lfloor n_{ctx}/2 \rfloor$
rows of $n_v = 2\lceil n_{vocab}/2 \rceil + 4$ ``uint16``: a float32 ``scale`` and a float32
``min_log_prob`` (two ``uint16`` each), then one code per token, padded to $n_v$. A row of
logits $l$ with maximum $M$ is encoded with $m = \max(\min_v l_v, M - 16)$ as

$$
\mathrm{scale} = \frac{M - m}{65535}, \qquad
\mathrm{min\_log\_prob} = m - M - \log \sum_v e^{l_v - M}, \qquad
c_v = \begin{cases} \mathrm{round}\left((l_v - m)/\mathrm{scale}\right) & l_v > m \\ 0 & \text{else} \end{cases}
$$

and decoded as $\log p_v = \mathrm{scale} \cdot c_v + \mathrm{min\_log\_prob}$, all in float32
with ties rounded to even, as llama.cpp does. The tokens are those of the text, with the BOS
the tokenizer added at its start; the BOS that replaces each window's first token is applied
at evaluation only.

References:
    llama.cpp, ``tools/perplexity/perplexity.cpp``: ``perplexity`` (writing), ``log_softmax``
    and ``kl_divergence`` (reading).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"_logits_"
HEADER_BYTES = len(MAGIC) + 3 * 4
# Logits more than this far below a row's maximum share its lowest code.
LOG_PROB_RANGE = 16.0
_CODES = 65535
# Rows encoded at a time: bounds the float32 temporaries for large vocabularies.
_ENCODE_ROWS = 16


def scored_rows(n_ctx: int) -> int:
    """Positions scored per window of ``n_ctx`` tokens: n_ctx/2 … n_ctx − 2, one row each."""
    return n_ctx - 1 - n_ctx // 2


def row_width(n_vocab: int) -> int:
    """``uint16`` per stored row: scale and minimum (4), the codes padded to an even count."""
    return 2 * ((n_vocab + 1) // 2) + 4


def file_size(n_ctx: int, n_vocab: int, n_chunk: int) -> int:
    """The size in bytes of a base file with these dimensions."""
    return (
        HEADER_BYTES + 4 * n_ctx * n_chunk + 2 * n_chunk * scored_rows(n_ctx) * row_width(n_vocab)
    )


def is_llamacpp_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file that starts with llama.cpp's ``_logits_`` magic."""
    try:
        with open(path, "rb") as file:
            return file.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class LlamaCppFileError(ValueError):
    """A llama.cpp base file that is truncated, corrupt, or not one at all."""


class LlamaCppLogits:
    """A llama.cpp KL-divergence base file, memory-mapped read-only.

    Args:
        path: the file written by ``llama-perplexity --kl-divergence-base`` (or `save_base`).

    Attributes:
        path: the file.
        n_ctx: tokens per window.
        n_vocab: vocabulary size.
        n_chunk: number of windows stored.
        tokens: the token ids, int32 of shape (n_ctx · n_chunk,), as tokenized (the BOS that
            replaces each window's first token at evaluation is not stored).

    Raises:
        LlamaCppFileError: (a ValueError) for a file without the magic, with impossible
            dimensions, of the wrong size (truncated or with trailing bytes), with tokens
            outside the vocabulary, or rows whose scale or minimum is not finite.

    Examples:
        >>> import numpy as np, tempfile, os
        >>> from kldiv.lm import LlamaCppLogits, write_llamacpp_logits
        >>> path = os.path.join(tempfile.mkdtemp(), "base.kld")
        >>> logits = np.log(np.array([[[0.7, 0.2, 0.1]]], dtype=np.float32))
        >>> write_llamacpp_logits(path, np.array([0, 1, 2]), logits, n_ctx=3)
        >>> base = LlamaCppLogits(path)
        >>> base.n_ctx, base.n_vocab, base.n_chunk
        (3, 3, 1)
        >>> np.exp(base.log_probs(0)).round(3)
        array([[0.7, 0.2, 0.1]], dtype=float32)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        size = self.path.stat().st_size
        with self.path.open("rb") as file:
            head = file.read(HEADER_BYTES)
        if head[: len(MAGIC)] != MAGIC:
            raise LlamaCppFileError("does not start with llama.cpp's '_logits_' magic")
        if len(head) < HEADER_BYTES:
            raise LlamaCppFileError(
                f"is truncated: {size} bytes, shorter than the {HEADER_BYTES}-byte header"
            )
        n_ctx, n_vocab, n_chunk = (int(v) for v in np.frombuffer(head[8:], dtype="<i4"))
        if n_ctx < 3 or n_vocab < 1 or n_chunk < 1:
            raise LlamaCppFileError(
                f"has a corrupt header: n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk} "
                "(needs n_ctx >= 3 and positive sizes)"
            )
        expected = file_size(n_ctx, n_vocab, n_chunk)
        if size != expected:
            state = "is truncated" if size < expected else "has trailing bytes"
            raise LlamaCppFileError(
                f"{state}: {size} bytes where n_ctx {n_ctx}, n_vocab {n_vocab} and n_chunk "
                f"{n_chunk} make {expected}"
            )
        self.n_ctx, self.n_vocab, self.n_chunk = n_ctx, n_vocab, n_chunk
        self.tokens = np.memmap(
            self.path, dtype="<i4", mode="r", offset=HEADER_BYTES, shape=(n_ctx * n_chunk,)
        )
        bad = (self.tokens < 0) | (self.tokens >= n_vocab)
        if bad.any():
            i = int(np.argmax(bad))
            raise LlamaCppFileError(
                f"is corrupt: token {int(self.tokens[i])} at position {i} is outside its "
                f"vocabulary of {n_vocab}"
            )
        self._rows = np.memmap(
            self.path,
            dtype="<u2",
            mode="r",
            offset=HEADER_BYTES + 4 * n_ctx * n_chunk,
            shape=(n_chunk, scored_rows(n_ctx), row_width(n_vocab)),
        )

    @property
    def rows_per_chunk(self) -> int:
        """Rows stored per window: positions n_ctx/2 … n_ctx − 2."""
        return scored_rows(self.n_ctx)

    def encoded(self, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One window's ``scale`` and ``min_log_prob`` (float32, (R,)) and codes (uint16, (R, V))."""
        self._check_chunk(chunk)
        rows = np.asarray(self._rows[chunk])
        header = np.ascontiguousarray(rows[:, :4]).view("<f4")
        scale, minimum = header[:, 0].astype(np.float32), header[:, 1].astype(np.float32)
        bad = ~(np.isfinite(scale) & np.isfinite(minimum) & (scale >= 0))
        if bad.any():
            row = int(np.argmax(bad))
            raise LlamaCppFileError(
                f"is corrupt: chunk {chunk} row {row} has scale {scale[row]} and minimum "
                f"log-probability {minimum[row]}"
            )
        return scale, minimum, rows[:, 4 : 4 + self.n_vocab]

    def log_probs(self, chunk: int) -> np.ndarray:
        """The decoded log-probabilities of one window, float32 of shape (R, n_vocab).

        Row ``r`` is position ``n_ctx/2 + r`` of window ``chunk``: $\\log p_v$ = scale · code +
        min_log_prob, not renormalized (as llama.cpp reads them).
        """
        scale, minimum, codes = self.encoded(chunk)
        return decode(scale, minimum, codes)

    def _check_chunk(self, chunk: int) -> None:
        if not 0 <= chunk < self.n_chunk:
            raise IndexError(f"chunk {chunk} is out of range; the file holds {self.n_chunk}")


def decode(scale: np.ndarray, minimum: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Log-probabilities from codes, in float32 as llama.cpp computes them."""
    out = codes.astype(np.float32)
    out *= scale[:, None]
    out += minimum[:, None]
    return out


def encode(logits: np.ndarray) -> np.ndarray:
    """Rows of logits as llama.cpp stores them: uint16 of shape (rows, `row_width`).

    Args:
        logits: float32 (or wider) logits of shape (rows, V).

    Returns:
        Each row's scale and min_log_prob (as float32 bit patterns in 2 × 2 uint16), then V
        codes, then a zero code where V is odd.
    """
    logits = np.asarray(logits)
    rows, vocab = logits.shape
    out = np.zeros((rows, row_width(vocab)), dtype="<u2")
    for start in range(0, rows, _ENCODE_ROWS):
        stop = min(start + _ENCODE_ROWS, rows)
        _encode_block(np.asarray(logits[start:stop], dtype=np.float32), out[start:stop])
    return out


@np.errstate(all="ignore")
def _encode_block(x: np.ndarray, out: np.ndarray) -> None:
    vocab = x.shape[1]
    top = x.max(axis=1)
    low = np.maximum(x.min(axis=1), top - np.float32(LOG_PROB_RANGE))
    # llama.cpp sums the float32 exponentials in double and keeps the float32 log.
    sum_exp = np.exp(x - top[:, None]).sum(axis=1, dtype=np.float64)
    log_sum_exp = np.log(sum_exp).astype(np.float32)
    min_log_prob = (low - top) - log_sum_exp
    scale = (top - low) / np.float32(_CODES)
    header = np.stack([scale, min_log_prob], axis=1).astype("<f4")
    out[:, :4] = header.view("<u2")
    with_range = scale != 0
    inverse = np.float32(1) / np.where(with_range, scale, np.float32(1))
    codes = np.rint(inverse[:, None] * (x - low[:, None]))
    codes = np.where((x > low[:, None]) & with_range[:, None], codes, 0)
    out[:, 4 : 4 + vocab] = np.clip(codes, 0, _CODES).astype(np.uint16)


class LlamaCppLogitsWriter:
    """Writes a base file window by window; the file appears only once every window is in.

    The data go to ``PATH.partial`` first and are renamed to ``PATH`` by `close`; on an error
    (or `abort`) the partial file is removed, so a failed run leaves nothing behind.

    Args:
        path: the file to write.
        tokens: the token ids of all windows, shape (n_ctx · n_chunk,), as tokenized.
        n_ctx: tokens per window.
        n_vocab: vocabulary size.
    """

    def __init__(
        self, path: str | os.PathLike[str], tokens: Any, *, n_ctx: int, n_vocab: int
    ) -> None:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if n_ctx < 3 or tokens.shape[0] == 0 or tokens.shape[0] % n_ctx:
            raise ValueError(
                f"tokens has {tokens.shape[0]} ids; a base file holds a positive multiple of "
                f"n_ctx = {n_ctx} (>= 3)"
            )
        self.path = Path(path)
        self.n_ctx, self.n_vocab = n_ctx, n_vocab
        self.n_chunk = tokens.shape[0] // n_ctx
        self._written = 0
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._file = self._partial.open("wb")
        header = np.array([n_ctx, n_vocab, self.n_chunk], dtype="<i4")
        self._file.write(MAGIC + header.tobytes() + tokens.astype("<i4").tobytes())

    def write(self, logits: np.ndarray) -> None:
        """Append one window: the logits of its positions n_ctx/2 … n_ctx − 2, shape (R, V)."""
        expected = (scored_rows(self.n_ctx), self.n_vocab)
        if tuple(logits.shape) != expected:
            raise ValueError(f"a window has shape {expected}, got {tuple(logits.shape)}")
        if self._written == self.n_chunk:
            raise ValueError(f"all {self.n_chunk} windows were written already")
        self._file.write(encode(logits).tobytes())
        self._written += 1

    def close(self) -> None:
        """Finish the file: rename it into place once every window was written."""
        if self._written != self.n_chunk:
            self.abort()
            raise ValueError(f"only {self._written} of {self.n_chunk} windows were written")
        self._file.close()
        os.replace(self._partial, self.path)

    def abort(self) -> None:
        """Remove the partial file."""
        self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> LlamaCppLogitsWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def write_llamacpp_logits(
    path: str | os.PathLike[str], tokens: Any, logits: Any, *, n_ctx: int
) -> None:
    """Write a base file from the logits of every window's scored positions.

    Args:
        path: the file to write.
        tokens: token ids, shape (n_ctx · n_chunk,).
        logits: shape (n_chunk, R, V) with R = n_ctx − 1 − n_ctx // 2: the logits at
            positions n_ctx/2 … n_ctx − 2 of each window.
        n_ctx: tokens per window.
    """
    logits = np.asarray(logits)
    with LlamaCppLogitsWriter(path, tokens, n_ctx=n_ctx, n_vocab=logits.shape[-1]) as writer:
        for window in logits:
            writer.write(window)


def llamacpp_statistics(log_p_base: Any, logits_test: Any, labels: Any) -> tuple[Any, ...]:
    r"""KL(base‖test), top-1 agreement and label log-probabilities as llama.cpp computes them.

    With a base file, llama.cpp sums only the entries whose decoded log-probability is above
    −16 and does not renormalize the decoded distribution:

    $$
    \mathrm{KL}_i = \sum_{v:\ \log p_i(v) > -16} p_i(v) \left(\log p_i(v) - \log q_i(v)\right)
    $$

    Args:
        log_p_base: decoded base log-probabilities, float32 of shape (R, V) (NumPy or torch).
        logits_test: the test model's logits, shape (R, V), the same library.
        labels: the observed next tokens, integers of shape (R,), the same library.

    Returns:
        KL (float64, (R,)), whether both sides' first maximum is the same token (bool),
        the decoded base log-probability of the label and the test one (float64, (R,)).
    """
    import array_api_compat

    xp = array_api_compat.array_namespace(log_p_base, logits_test)
    test = xp.astype(logits_test, xp.float32)
    top = xp.max(test, axis=1, keepdims=True)
    log_sum_exp = xp.log(xp.sum(xp.astype(xp.exp(test - top), xp.float64), axis=1))
    log_q = test - (top + xp.astype(log_sum_exp, xp.float32)[:, None])
    kept = log_p_base > -LOG_PROB_RANGE
    terms = xp.where(kept, xp.exp(log_p_base) * (log_p_base - log_q), xp.zeros_like(log_q))
    kld = xp.sum(xp.astype(terms, xp.float64), axis=1)
    same_top = xp.argmax(log_p_base, axis=1) == xp.argmax(test, axis=1)
    index = xp.reshape(xp.astype(labels, xp.int64), (-1, 1))
    label_base = xp.take_along_axis(log_p_base, index, axis=1)[:, 0]
    label_test = xp.take_along_axis(log_q, index, axis=1)[:, 0]
    return kld, same_top, xp.astype(label_base, xp.float64), xp.astype(label_test, xp.float64)
