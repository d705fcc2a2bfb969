"""The statistics of one chunk of rows for `compare`, eager or compiled by PyTorch.

`chunk_statistics` is plain Array API code around the core's `kl_div` and `js_div`, so it
runs on any library and `torch.compile` can fuse it. Eagerly, the divergences make a few dozen
passes over each chunk; fused, they make a handful, which is what streams gigabytes of logits
at memory speed. The compiled version is used only for large NumPy inputs that the fused logits
kernel (`kldiv.report._fused`) does not take, such as log-probabilities, only when PyTorch is
installed, and falls back to the eager one if compiling fails (e.g. without a C compiler).
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import array_api_compat
import numpy as np

from kldiv._divergences import js_div, kl_div
from kldiv._sides import logsumexp

# Compiling costs seconds; it pays off from about this many entries per input (512 MB float16).
COMPILE_ENTRIES = 1 << 28


def chunk_statistics(a: Any, b: Any, kind: str, index: Any) -> tuple[Any, ...]:
    """KL(a‖b), KL(b‖a), JSD, top-1 agreement and, with labels, their log-probabilities.

    Args:
        a: base rows, shape (rows, V), of any Array API library.
        b: test rows, same shape and library.
        kind: ``"logits"``, ``"log_probs"`` or ``"probs"``.
        index: label token ids, shape (rows, 1), or None.

    Returns:
        Arrays of shape (rows,): the three divergences, a boolean agreement, and with labels
        log p_base(label) and log p_test(label).
    """
    xp = array_api_compat.array_namespace(a, b)
    values = (
        kl_div(a, b, kind=kind),
        kl_div(b, a, kind=kind),
        js_div(a, b, kind=kind),
        xp.argmax(a, axis=-1) == xp.argmax(b, axis=-1),
    )
    if index is None:
        return values
    picked = []
    for side in (a, b):
        label = xp.take_along_axis(side, index, axis=-1)[:, 0]
        if kind == "logits":
            label = label - logsumexp(xp, side, -1)
        elif kind == "probs":
            label = xp.log(label)
        picked.append(label)
    return (*values, *picked)


class CompiledStatistics:
    """`chunk_statistics` compiled with `torch.compile` for NumPy chunks of a fixed size.

    The last, shorter chunk is padded with zero rows (a valid uniform distribution) so that
    one compiled graph serves every chunk. Used as a context manager, it sets PyTorch to one
    thread for its duration (and restores the setting after): the fused kernel then runs
    without a thread barrier per loop, and `compare` runs one chunk per core on its own
    threads instead (the compiled kernels release the GIL).
    """

    def __init__(self, kind: str, rows: int) -> None:
        import torch

        def widened(a: Any, b: Any, index: Any) -> tuple[Any, ...]:
            return chunk_statistics(a.float(), b.float(), kind, index)

        self._torch = torch
        self._rows = rows
        self._compiled = torch.compile(widened, dynamic=False)
        self._threads = torch.get_num_threads()

    def __enter__(self) -> CompiledStatistics:
        self._threads = self._torch.get_num_threads()
        self._torch.set_num_threads(1)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._torch.set_num_threads(self._threads)

    def __call__(self, a: np.ndarray, b: np.ndarray, index: np.ndarray | None) -> tuple[Any, ...]:
        rows = a.shape[0]
        torch = self._torch
        with warnings.catch_warnings():
            # Read-only memory maps make torch warn about writes that never happen; tracing
            # warns about caches in array-api-compat that it handles.
            warnings.simplefilter("ignore")
            base, test = (torch.from_numpy(_padded(x, self._rows)) for x in (a, b))
            labels = None if index is None else torch.from_numpy(_padded(index, self._rows))
            out = self._compiled(base, test, labels)
        return tuple(x[:rows].numpy() for x in out)


def compiled_statistics(kind: str, rows: int, entries: int) -> CompiledStatistics | None:
    """A compiled evaluator for large inputs of logits or log-probabilities, if worthwhile.

    Probabilities are left to the eager path, which validates them (compiled code skips the
    checks, as the core does for traced arrays).
    """
    if kind == "probs" or entries < COMPILE_ENTRIES or importlib.util.find_spec("torch") is None:
        return None
    return CompiledStatistics(kind, rows)


def _padded(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return np.ascontiguousarray(x)
    out = np.zeros((rows, *x.shape[1:]), dtype=x.dtype)
    out[: x.shape[0]] = x
    return out
