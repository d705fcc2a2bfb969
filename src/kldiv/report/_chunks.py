"""Reading an (…, V) input as chunks of rows, with bounded memory for memory-mapped files."""

from __future__ import annotations

import math
import mmap
from typing import Any

import array_api_compat
import numpy as np

from kldiv.report._compiled import BFLOAT16, storage

_WIDE = (np.dtype(np.float32), np.dtype(np.float64))


class Rows:
    """An input of shape (..., V) seen as N = prod(...) rows of V entries.

    A read-only NumPy memory map has the pages of each chunk handed back to the operating
    system once the chunk is done: they stay in the page cache, but the process's resident
    memory stays at one chunk instead of growing to the whole file.
    """

    def __init__(self, array: Any, name: str) -> None:
        shape = tuple(int(s) for s in array.shape)
        if len(shape) < 2:
            raise ValueError(
                f"{name} has shape {shape}; compare needs (positions, vocabulary) or "
                "(batch, time, vocabulary) outputs"
            )
        if shape[-1] == 0 or math.prod(shape[:-1]) == 0:
            raise ValueError(f"{name} has shape {shape} and holds no position to compare")
        self.name = name
        self.shape = shape
        self.n, self.vocab = math.prod(shape[:-1]), shape[-1]
        self._rows = array if len(shape) == 2 else _flatten(array, self.vocab)
        # The command line's bfloat16 memory maps (`BFloat16Rows`) show their raw bits.
        bits = getattr(self._rows, "bfloat16_bits", None)
        self._bfloat16_bits = bits if isinstance(bits, np.ndarray) else None
        self._pages = PageReleaser.of(self._rows if bits is None else bits)
        self.is_numpy = isinstance(self._rows, np.ndarray)

    def read(self, start: int, stop: int, kind: str) -> Any:
        """Rows ``start:stop`` in a dtype the divergences compute in.

        Logits and log-probabilities are widened to float32 here so that the log-softmax runs
        in float32; probabilities keep their dtype so that the row-sum check uses its tolerance.
        """
        chunk = self._rows[start:stop]
        if isinstance(chunk, np.ndarray):
            if chunk.dtype in _WIDE or (kind == "probs" and chunk.dtype == np.float16):
                return np.ascontiguousarray(chunk)
            return chunk.astype(np.float32)
        if array_api_compat.is_torch_array(chunk):
            if chunk.is_floating_point() and chunk.dtype.itemsize < 4 and kind != "probs":
                return chunk.float()
            return chunk
        xp = array_api_compat.array_namespace(chunk)
        if xp.isdtype(chunk.dtype, "real floating") and chunk.dtype not in (
            xp.float32,
            xp.float64,
        ):
            return xp.astype(chunk, xp.float32)
        return chunk

    def raw(self, start: int, stop: int) -> Any:
        """Rows ``start:stop`` as stored."""
        return self._rows[start:stop]

    def stored(self, start: int, stop: int) -> tuple[np.ndarray, int] | None:
        """Rows ``start:stop`` as the compiled kernel reads them: stored bits and dtype code.

        None where the kernel does not take this input (see `_compiled.storage`).
        """
        if self._bfloat16_bits is not None:
            bits = self._bfloat16_bits[start:stop]
            return (bits, BFLOAT16) if bits.flags.c_contiguous else None
        return storage(self._rows[start:stop])

    def release(self, start: int, stop: int) -> None:
        """Drop rows ``start:stop`` of a read-only memory map from resident memory."""
        if self._pages is not None:
            rows = self._rows if self._bfloat16_bits is None else self._bfloat16_bits
            self._pages.release(rows[start:stop])


def _flatten(array: Any, vocab: int) -> Any:
    if not array_api_compat.is_array_api_obj(array):
        return array.reshape(-1, vocab)
    xp = array_api_compat.array_namespace(array)
    return xp.reshape(array, (-1, vocab))


class PageReleaser:
    """Calls madvise(MADV_DONTNEED) on the pages of a read-only NumPy memory map."""

    def __init__(self, mapping: mmap.mmap) -> None:
        self._mapping = mapping
        view = np.frombuffer(mapping, dtype=np.uint8, count=1)
        self._address = int(view.ctypes.data)
        del view

    @classmethod
    def of(cls, array: Any) -> PageReleaser | None:
        mapping = getattr(array, "_mmap", None)
        if (
            not isinstance(array, np.memmap)
            or array.mode != "r"
            or not isinstance(mapping, mmap.mmap)
            or not hasattr(mapping, "madvise")
            or not hasattr(mmap, "MADV_DONTNEED")
        ):
            return None
        return cls(mapping)

    def release(self, chunk: np.ndarray) -> None:
        if not chunk.flags.c_contiguous or chunk.nbytes == 0:
            return
        start = int(chunk.ctypes.data) - self._address
        stop = start + chunk.nbytes
        if start < 0 or stop > len(self._mapping):
            return
        # Whole pages only: a page shared with the next chunk is read back from the cache.
        aligned = start - start % mmap.PAGESIZE
        self._mapping.madvise(mmap.MADV_DONTNEED, aligned, stop - aligned)
