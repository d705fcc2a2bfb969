"""Cutting a token stream into llama-perplexity's windows and scored positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kldiv.lm._errors import LMInputError
from kldiv.lm._llamacpp import scored_rows


@dataclass(frozen=True)
class Windows:
    """Non-overlapping windows of ``n_ctx`` tokens, scored as ``llama-perplexity`` does.

    Window ``k`` holds tokens ``k·n_ctx … (k+1)·n_ctx − 1``; its positions ``n_ctx/2 …
    n_ctx − 2`` are scored, each predicting the next token. With ``bos`` set, the first
    token of every window is replaced by it before the model reads the window (the labels,
    which never include a window's first token, are unchanged).

    Attributes:
        tokens: the ids of all windows, int64 of shape (n_chunk · n_ctx,).
        n_ctx: tokens per window.
        bos: the id that replaces each window's first token, or None.
    """

    tokens: np.ndarray
    n_ctx: int
    bos: int | None

    @property
    def n_chunk(self) -> int:
        """The number of windows."""
        return int(self.tokens.shape[0]) // self.n_ctx

    @property
    def first(self) -> int:
        """The first scored position of a window."""
        return self.n_ctx // 2

    @property
    def rows(self) -> int:
        """Scored positions per window."""
        return scored_rows(self.n_ctx)

    def inputs(self, start: int, stop: int) -> np.ndarray:
        """The model inputs of windows ``start:stop``, int64 of shape (stop − start, n_ctx)."""
        ids: np.ndarray = self.tokens[start * self.n_ctx : stop * self.n_ctx]
        ids = ids.reshape(-1, self.n_ctx).copy()
        if self.bos is not None:
            ids[:, 0] = self.bos
        return ids

    def labels(self, start: int, stop: int) -> np.ndarray:
        """The tokens predicted at the scored positions, int64 of shape (stop − start, R)."""
        ids = self.tokens[start * self.n_ctx : stop * self.n_ctx].reshape(-1, self.n_ctx)
        labels: np.ndarray = ids[:, self.first + 1 :].copy()
        return labels


def make_windows(
    tokens: np.ndarray, *, n_ctx: int, n_chunks: int | None, bos: int | None, source: str
) -> Windows:
    """Windows of a token stream: ⌊n_tokens / n_ctx⌋ of them, at most ``n_chunks``.

    Raises:
        LMInputError: for a context under 3 tokens, fewer than 2·n_ctx tokens (as
            llama-perplexity), or ``n_chunks`` below 1.
    """
    check_context(n_ctx)
    if n_chunks is not None and (isinstance(n_chunks, bool) or n_chunks < 1):
        raise LMInputError("--chunks", f"must be a positive number of windows, got {n_chunks}")
    n_tokens = int(tokens.shape[0])
    if n_tokens < 2 * n_ctx:
        raise LMInputError(
            source,
            f"holds {n_tokens} tokens; a context of {n_ctx} needs at least {2 * n_ctx} (two "
            "windows): give a longer text or a smaller --ctx",
        )
    n_chunk = n_tokens // n_ctx
    if n_chunks is not None:
        n_chunk = min(n_chunk, n_chunks)
    return Windows(np.asarray(tokens[: n_chunk * n_ctx], dtype=np.int64), n_ctx, bos)


def check_context(n_ctx: int) -> None:
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 3:
        raise LMInputError(
            "--ctx", f"must be an integer of at least 3 (one scored position), got {n_ctx!r}"
        )
