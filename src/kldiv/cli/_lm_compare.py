"""``kldiv compare`` on models and llama.cpp base files: the sides, the options, the outputs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kldiv.cli._arrays import SUFFIXES, check_file, open_array
from kldiv.cli._errors import BadInput
from kldiv.lm._llamacpp import is_llamacpp_file
from kldiv.lm._models import HUB_ID


@dataclass(frozen=True)
class LMOptions:
    """The options of ``kldiv compare`` that apply to models and base files."""

    text: Path | None = None
    tokens: Path | None = None
    ctx: int | None = None
    chunks: int | None = None
    save_base: Path | None = None
    per_token: Path | None = None
    device: str | None = None
    dtype: str = "auto"
    batch_size: int = 1
    vocab_intersect: bool = False

    def given(self) -> list[str]:
        """The options given on the command line, by their flag."""
        flags = {
            "--text": self.text,
            "--tokens": self.tokens,
            "--ctx": self.ctx,
            "--chunks": self.chunks,
            "--save-base": self.save_base,
            "--per-token": self.per_token,
            "--device": self.device,
            "--dtype": None if self.dtype == "auto" else self.dtype,
            "--batch-size": None if self.batch_size == 1 else self.batch_size,
            "--vocab-intersect": self.vocab_intersect or None,
        }
        return [flag for flag, value in flags.items() if value is not None]


def is_lm_side(path: Path) -> bool:
    """Whether a side is a model directory, a hub id or a llama.cpp base file."""
    if path.is_dir():
        return True
    if path.is_file():
        return is_llamacpp_file(path)
    # A hub id ("org/name", or a bare "gpt2"), tried only when no such local path exists; a
    # missing file named like a logits file stays a missing file.
    return (
        not path.exists() and path.suffix.lower() not in SUFFIXES and bool(HUB_ID.match(str(path)))
    )


def check_lm_sides(base: Path, test: Path) -> None:
    """Refuse a logits file against a model or base file: their positions do not line up."""
    for path in (base, test):
        if not is_lm_side(path):
            check_file(path, SUFFIXES)
            raise BadInput(
                path,
                "is a logits file; it can be compared with another logits file only, not with "
                "a model or a llama.cpp base file",
            )


def run_lm_compare(base: Path, test: Path, options: LMOptions) -> Any:
    """Compare two models (or a model and a base file), turning input problems into BadInput.

    Returns:
        The `kldiv.lm.Evaluation`.
    """
    check_lm_sides(base, test)
    for path in (options.save_base, options.per_token):
        if path is not None and not path.parent.is_dir():
            raise BadInput(path, f"cannot be written: folder {path.parent} does not exist")
    if options.per_token is not None and options.per_token.suffix.lower() != ".npz":
        raise BadInput(options.per_token, "--per-token writes a .npz file; name it *.npz")
    text = _read_text(options.text) if options.text is not None else None
    token_ids = _read_tokens(options.tokens) if options.tokens is not None else None
    try:
        from kldiv.lm import LMInputError, evaluate
        from kldiv.report import InputError
    except ImportError as error:  # pragma: no cover - numpy and kldiv itself are present
        raise BadInput(base, f"cannot load kldiv.lm ({error})") from error
    try:
        import torch  # noqa: F401
    except ImportError:
        raise BadInput(base, "comparing models needs PyTorch: pip install 'kldiv[lm]'") from None
    try:
        from transformers.utils import logging as transformers_logging

        # Loading bars would interleave with the command's output.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    except ImportError:
        pass  # kldiv.lm names the missing package when a model is loaded
    names = {"base": base, "test": test}
    with _progress() as progress, _quiet_loaders():
        try:
            return evaluate(
                str(base),
                str(test),
                text=text,
                token_ids=token_ids,
                n_ctx=options.ctx,
                n_chunks=options.chunks,
                batch_size=options.batch_size,
                device=options.device,
                dtype=options.dtype,
                vocab_intersect=options.vocab_intersect,
                save_base=options.save_base,
                progress=progress,
            )
        except LMInputError as error:
            source = options.text if error.source == "text" and options.text else error.source
            source = options.tokens if source == "--tokens" and options.tokens else source
            raise BadInput(source, error.problem) from error
        except InputError as error:
            raise BadInput(names.get(error.argument, error.argument), error.problem) from error


def write_per_token(evaluation: Any, path: Path) -> None:
    """The per-position values as a .npz file, written whole or not at all."""
    report = evaluation.report
    nll_base, nll_test = -report.log_p_label_base, -report.log_p_label_test
    partial = path.with_name(path.name + ".partial.npz")
    try:
        np.savez(
            partial,
            kld=report.kld,
            nll_base=nll_base,
            nll_test=nll_test,
            delta_p=np.exp(-nll_test) - np.exp(-nll_base),
            same_top=report.top1_same,
            token_ids=evaluation.labels,
        )
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise BadInput(path, f"cannot be written ({error.strerror})") from error


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise BadInput(path, "not a regular file" if path.exists() else "no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise BadInput(path, f"is not UTF-8 text ({error.reason} at byte {error.start})") from error


def _read_tokens(path: Path) -> np.ndarray:
    array = np.asarray(open_array(path, key=None, role="labels"))
    if array.ndim != 1:
        raise BadInput(path, f"has shape {array.shape}; token ids are one sequence, shape (n,)")
    return array.astype(np.int64)


@contextmanager
def _quiet_loaders() -> Iterator[None]:
    """Only errors from transformers' and the hub client's loggers while models load.

    Their warnings (download retries, weights left at their initial values) would put lines of
    their own on stderr; a failed load still ends in the command's one-line error, which
    carries the loader's message.
    """
    loggers = [logging.getLogger(name) for name in ("transformers", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def _progress() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over windows on an interactive stderr; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("windows", total=None)
    bar.start()
    try:
        yield lambda done, total: bar.update(task, completed=done, total=total)
    finally:
        bar.stop()
