"""`kldiv.lm.compare`: two causal LMs, or one and a llama.cpp base file, over a token stream."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kldiv.lm._errors import LMInputError
from kldiv.lm._llamacpp import (
    LlamaCppFileError,
    LlamaCppLogits,
    LlamaCppLogitsWriter,
    is_llamacpp_file,
    llamacpp_statistics,
)
from kldiv.lm._models import CausalLM, load
from kldiv.lm._windows import Windows, check_context, make_windows
from kldiv.report import CompareAccumulator, Report
from kldiv.report._checks import to_numpy
from kldiv.report._stream import replaced

DEFAULT_CONTEXT = 512
Side = CausalLM | LlamaCppLogits


@dataclass(frozen=True)
class Evaluation:
    """A comparison's report with the token predicted at each scored position.

    Attributes:
        report: the `Report`, one position per scored token, window after window.
        labels: the token ids predicted at those positions, int64 of shape (N,).
        windows: the windows that were evaluated.
    """

    report: Report
    labels: np.ndarray
    windows: Windows


def compare(
    base: Any,
    test: Any,
    *,
    text: str | None = None,
    token_ids: Any = None,
    tokenizer: Any = None,
    n_ctx: int | None = None,
    n_chunks: int | None = None,
    batch_size: int = 1,
    device: str | None = None,
    dtype: str = "auto",
    vocab_intersect: bool = False,
    save_base: str | os.PathLike[str] | None = None,
) -> Report:
    r"""KL(base‖test) and the other statistics of `kldiv.compare`, from the models themselves.

    The token stream is scored as ``llama-perplexity`` scores it, so the figures agree with
    its ``--kl-divergence`` mode: it is cut into $\lfloor n_{tokens} / n_{ctx} \rfloor$
    windows (at most ``n_chunks``; at least $2 n_{ctx}$ tokens are needed); when the
    tokenizer adds a BOS token, each window's first token is replaced by it (not with
    ``token_ids``); positions $n_{ctx}/2 \ldots n_{ctx} - 2$ of each window are scored, each
    predicting the next token. The models run ``batch_size`` windows at a time and only the
    logits of the scored positions are computed; the statistics of each window go through the
    kernels of `kldiv.compare` (via `CompareAccumulator`) before the next window runs.

    With a llama.cpp base file as ``base``, KL(base‖test) is computed as llama.cpp computes it,

    $$
    \mathrm{KL}_i = \sum_{v:\ \log p_i(v) > -16} p_i(v) \left(\log p_i(v) - \log q_i(v)\right),
    $$

    over the decoded 16-bit log-probabilities $\log p_i$ without renormalizing them, and so are
    the top-1 agreement and the base's log-probability of each label; the reverse KL and the
    JSD use the decoded log-probabilities renormalized. The window size and the tokens are the
    file's; with ``text`` or ``token_ids`` they must match the file's tokens.

    Args:
        base: the reference: a `transformers` causal LM, a local model directory (with
            ``config.json``), a hub id, a `LlamaCppLogits` or the path of a llama.cpp base file.
        test: the compared model, any of the same.
        text: the text to score, tokenized with BASE's tokenizer (TEST's when BASE is a file).
        token_ids: the token ids to score instead, integers of shape (n_tokens,).
        tokenizer: the tokenizer for ``text`` when the models are passed as objects.
        n_ctx: tokens per window (default 512; a base file's own by default).
        n_chunks: the most windows to score (default: all).
        batch_size: windows per forward pass; the logits of this many windows per model are
            in memory at a time.
        device: where models loaded here run (default: "cuda" if available, else "cpu").
        dtype: the dtype models are loaded in: "auto" (the checkpoint's), "float32",
            "float16" or "bfloat16".
        vocab_intersect: compare only the first min(V_base, V_test) tokens when the two
            vocabularies differ in size (an error otherwise).
        save_base: write the base model's scored log-probabilities here as a llama.cpp base file
            (the file appears only when the comparison finishes).

    Returns:
        A `Report` (kind "logits") with labels: KL, Δp, perplexities over the scored positions.

    Raises:
        LMInputError: (a ValueError) naming the model, file or option: a corrupt or truncated
            base file, vocabularies of different sizes, a context longer than a model takes,
            tokens outside the vocabulary, fewer than two windows of tokens, a directory that is
            not a model, or `transformers` not installed.

    References:
        llama.cpp, ``tools/perplexity/perplexity.cpp`` (``perplexity``, ``kl_divergence``).

    Examples:
        >>> import numpy as np, transformers
        >>> from kldiv.lm import compare
        >>> config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)
        >>> model = transformers.GPT2LMHeadModel(config).eval()
        >>> tokens = np.random.default_rng(0).integers(0, 50, size=64)
        >>> report = compare(model, model, token_ids=tokens, n_ctx=16)
        >>> report.n, float(report.kld.max()), bool(report.top1_same.all())
        (28, 0.0, True)
    """
    return evaluate(
        base,
        test,
        text=text,
        token_ids=token_ids,
        tokenizer=tokenizer,
        n_ctx=n_ctx,
        n_chunks=n_chunks,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        vocab_intersect=vocab_intersect,
        save_base=save_base,
    ).report


def evaluate(
    base: Any,
    test: Any,
    *,
    text: str | None = None,
    token_ids: Any = None,
    tokenizer: Any = None,
    n_ctx: int | None = None,
    n_chunks: int | None = None,
    batch_size: int = 1,
    device: str | None = None,
    dtype: str = "auto",
    vocab_intersect: bool = False,
    save_base: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """`compare` with the scored tokens and windows as well (see `compare` for the arguments).

    Args:
        progress: called with ``(windows_done, windows_total)`` after each batch of windows.
    """
    if text is not None and token_ids is not None:
        raise LMInputError("--text", "give a text or token ids, not both")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LMInputError("--batch-size", f"must be a positive integer, got {batch_size!r}")
    if n_ctx is not None:
        check_context(n_ctx)
    if save_base is not None and Path(save_base).is_dir():
        raise LMInputError(str(save_base), "is a directory; --save-base needs a file name")
    if save_base is not None and not Path(save_base).parent.is_dir():
        folder = Path(save_base).parent
        raise LMInputError(str(save_base), f"cannot be written: folder {folder} does not exist")
    sides = (
        _side(base, device=device, dtype=dtype, tokenizer=tokenizer),
        _side(test, device=device, dtype=dtype, tokenizer=tokenizer),
    )
    if save_base is not None and not isinstance(sides[0], CausalLM):
        raise LMInputError(
            "--save-base", "BASE is a llama.cpp base file already; --save-base writes a model's"
        )
    _check_context(sides, n_ctx)
    windows = _windows(sides, text=text, token_ids=token_ids, n_ctx=n_ctx, n_chunks=n_chunks)
    vocab = _vocabulary(sides, vocab_intersect)
    _check_tokens(sides, windows, vocab, source="--tokens" if token_ids is not None else "text")
    writer = None
    if save_base is not None:
        writer = LlamaCppLogitsWriter(save_base, windows.tokens, n_ctx=windows.n_ctx, n_vocab=vocab)
    accumulator = CompareAccumulator(kind="logits")
    try:
        for start in range(0, windows.n_chunk, batch_size):
            stop = min(start + batch_size, windows.n_chunk)
            _score(sides, windows, start, stop, vocab, accumulator, writer)
            if progress is not None:
                progress(stop, windows.n_chunk)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    labels = windows.labels(0, windows.n_chunk).reshape(-1)
    return Evaluation(accumulator.compute(), labels, windows)


def _side(source: Any, *, device: str | None, dtype: str, tokenizer: Any) -> Side:
    if isinstance(source, (LlamaCppLogits, CausalLM)):
        return source
    if isinstance(source, (str, Path)) and Path(source).is_file() and is_llamacpp_file(source):
        try:
            return LlamaCppLogits(source)
        except LlamaCppFileError as error:
            raise LMInputError(str(source), str(error)) from error
    return load(source, device=device, dtype=dtype, tokenizer=tokenizer)


def _name(side: Side) -> str:
    return str(side.path) if isinstance(side, LlamaCppLogits) else side.name


def _windows(
    sides: tuple[Side, Side],
    *,
    text: str | None,
    token_ids: Any,
    n_ctx: int | None,
    n_chunks: int | None,
) -> Windows:
    files = [side for side in sides if isinstance(side, LlamaCppLogits)]
    models = [side for side in sides if isinstance(side, CausalLM)]
    given = None
    if token_ids is not None:
        given = _token_array(token_ids)
    elif text is not None:
        reader = models[0] if models else None
        if reader is None or reader.tokenizer is None:
            name = "both sides are base files" if reader is None else f"{reader.name} has none"
            raise LMInputError("--text", f"needs a tokenizer ({name}); give token ids instead")
        given = np.asarray(reader.tokenize(text), dtype=np.int64)
    if not files:
        if given is None:
            raise LMInputError("--text", "give a text or token ids to score the models on")
        bos = None if token_ids is not None else models[0].bos_added()
        source = "--tokens" if token_ids is not None else "text"
        context = DEFAULT_CONTEXT if n_ctx is None else n_ctx
        return make_windows(given, n_ctx=context, n_chunks=n_chunks, bos=bos, source=source)
    reference = files[0]
    stored = np.asarray(reference.tokens, dtype=np.int64)
    for other in files[1:]:
        same = (other.n_ctx, other.n_chunk) == (reference.n_ctx, reference.n_chunk)
        if not same or not np.array_equal(other.tokens, reference.tokens):
            raise LMInputError(
                str(other.path),
                f"holds other windows than {reference.path} (n_ctx {other.n_ctx} vs "
                f"{reference.n_ctx}, n_chunk {other.n_chunk} vs {reference.n_chunk}, or other "
                "tokens); both base files must come from the same text and context",
            )
    if n_ctx is not None and n_ctx != reference.n_ctx:
        raise LMInputError(
            "--ctx",
            f"is {n_ctx} but {reference.path} was written with a context of {reference.n_ctx}; "
            "leave --ctx out to use the file's",
        )
    if given is not None:
        length = min(given.shape[0], stored.shape[0])
        differ = np.flatnonzero(given[:length] != stored[:length])
        if given.shape[0] < stored.shape[0] or differ.size:
            where = int(differ[0]) if differ.size else length
            raise LMInputError(
                "--tokens" if token_ids is not None else "--text",
                f"gives other tokens than {reference.path} holds (first difference at "
                f"position {where}); leave it out to score the file's tokens",
            )
    bos = None
    if token_ids is None and models:
        bos = models[0].bos_added()
    windows = Windows(stored, reference.n_ctx, bos)
    return windows if n_chunks is None else _limited(windows, n_chunks)


def _limited(windows: Windows, n_chunks: int) -> Windows:
    if isinstance(n_chunks, bool) or n_chunks < 1:
        raise LMInputError("--chunks", f"must be a positive number of windows, got {n_chunks}")
    keep = min(n_chunks, windows.n_chunk) * windows.n_ctx
    return Windows(windows.tokens[:keep], windows.n_ctx, windows.bos)


def _token_array(token_ids: Any) -> np.ndarray:
    array = to_numpy(token_ids)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise LMInputError(
            "--tokens",
            f"holds {array.dtype} of shape {array.shape}; token ids are integers of shape (n,)",
        )
    return array.astype(np.int64)


def _vocabulary(sides: tuple[Side, Side], intersect: bool) -> int:
    sizes = [side.n_vocab if isinstance(side, LlamaCppLogits) else side.vocab for side in sides]
    if sizes[0] != sizes[1] and not intersect:
        raise LMInputError(
            _name(sides[1]),
            f"has a vocabulary of {sizes[1]} tokens but {_name(sides[0])} has {sizes[0]}; "
            "compare models of the same vocabulary, or only the first "
            f"{min(sizes)} tokens with --vocab-intersect",
        )
    return min(sizes)


def _check_tokens(sides: tuple[Side, Side], windows: Windows, vocab: int, source: str) -> None:
    ids = windows.tokens
    bad = (ids < 0) | (ids >= vocab)
    if bad.any():
        i = int(np.argmax(bad))
        raise LMInputError(
            source,
            f"token id {int(ids[i])} at position {i} is outside the vocabulary of {vocab}",
        )
    if windows.bos is not None and not 0 <= windows.bos < vocab:
        raise LMInputError(source, f"the BOS id {windows.bos} is outside the vocabulary of {vocab}")


def _check_context(sides: tuple[Side, Side], n_ctx: int | None) -> None:
    files = [side.n_ctx for side in sides if isinstance(side, LlamaCppLogits)]
    context = files[0] if files else DEFAULT_CONTEXT if n_ctx is None else n_ctx
    for side in sides:
        limit = side.max_positions if isinstance(side, CausalLM) else None
        if limit is not None and context > limit:
            raise LMInputError(
                _name(side),
                f"takes at most {limit} positions; a context of {context} is longer: "
                "use a smaller --ctx",
            )


def _rows(side: Side, windows: Windows, start: int, stop: int, vocab: int) -> Any:
    """The scored rows of windows ``start:stop``, shape (B, R, vocab)."""
    if isinstance(side, LlamaCppLogits):
        return np.stack([side.log_probs(k)[:, :vocab] for k in range(start, stop)])
    logits = side.scored_logits(windows.inputs(start, stop), windows.first)
    return logits[..., :vocab] if logits.shape[-1] != vocab else logits


def _same_library(a: Any, b: Any) -> tuple[Any, Any]:
    """Both as NumPy, or both as torch tensors on ``a``'s device (or ``b``'s)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a, b
    import torch

    device = a.device if isinstance(a, torch.Tensor) else b.device
    return torch.as_tensor(a, device=device), torch.as_tensor(b, device=device)


def _score(
    sides: tuple[Side, Side],
    windows: Windows,
    start: int,
    stop: int,
    vocab: int,
    accumulator: CompareAccumulator,
    writer: LlamaCppLogitsWriter | None,
) -> None:
    base_rows = _rows(sides[0], windows, start, stop, vocab)
    test_rows = _rows(sides[1], windows, start, stop, vocab)
    labels = windows.labels(start, stop)
    for k in range(stop - start):
        base, test = _same_library(base_rows[k], test_rows[k])
        if writer is not None:
            writer.write(_float32_numpy(base))
        if not isinstance(sides[0], LlamaCppLogits):
            accumulator.update(base, test, labels[k])
            continue
        # The reverse KL and the JSD from compare's kernels; the rest as llama.cpp has it.
        report = _compare_window(base, test, labels[k])
        index = labels[k] if isinstance(base, np.ndarray) else _tensor(labels[k], base)
        kld, same_top, label_base, label_test = llamacpp_statistics(base, test, index)
        accumulator._add(
            replaced(
                report,
                kld=to_numpy(kld),
                top1_same=to_numpy(same_top),
                log_p_label_base=to_numpy(label_base),
                log_p_label_test=to_numpy(label_test),
            )
        )


def _compare_window(base: Any, test: Any, labels: np.ndarray) -> Report:
    from kldiv.report import compare as compare_rows

    return compare_rows(base, test, labels=labels)


def _tensor(values: np.ndarray, like: Any) -> Any:
    import torch

    return torch.as_tensor(values, device=like.device)


def _float32_numpy(rows: Any) -> np.ndarray:
    if isinstance(rows, np.ndarray):
        return rows.astype(np.float32, copy=False)
    return rows.detach().float().cpu().numpy()  # type: ignore[no-any-return]
