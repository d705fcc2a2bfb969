"""Dask arrays of ``(rows, vocab)`` distributions on disk, for divergences larger than memory.

The functional core already runs on ``dask.array``: ``kldiv.kl_div(p, q)`` on Dask arrays returns
a lazy Dask array, one task chain per block, and nothing is read or computed until
``.compute()``. What this module adds is the other half of the recipe: opening arrays stored on
disk so that every block holds whole rows (the divergence of a row then never crosses blocks)
and so that a task graph sent to the workers of a ``dask.distributed`` cluster carries file
names, never data.

Recipe, on the local distributed scheduler::

    from dask.distributed import Client, LocalCluster
    import kldiv
    from kldiv.dask import open_rows

    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster):
        teacher = open_rows("teacher_logits.npy")  # or a zarr directory
        student = open_rows("student_logits.npy")
        kl = kldiv.kl_div(teacher, student, kind="logits")  # lazy, shape (rows,)
        values = kl.compute()

Peak memory is then about (workers × threads) blocks in flight, each ``rows_per_chunk × vocab``
in the file's dtype plus a few float32 temporaries of the same shape, whatever the file size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

__all__ = ["open_rows"]

# Elements per block: 2**22 float32 temporaries are 16 MiB each, large enough that the
# scheduler's per-task overhead is small next to the work, small enough for many in flight.
_BLOCK_ELEMENTS = 1 << 22


class NpyRows:
    """A 2-D ``.npy`` file read by slices, each slice memory-mapping the file afresh.

    It pickles as its path and header fields, so a Dask graph holding it stays small; a
    ``numpy.memmap`` would pickle its whole contents.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
            offset = file.tell()
        if len(shape) != 2:
            raise ValueError(
                f"{path} holds an array of shape {shape}; open_rows needs a 2-D (rows, vocab) "
                "array (reshape to (-1, vocab) before saving)"
            )
        if fortran_order:
            raise ValueError(
                f"{path} is stored in Fortran (column-major) order, so a row is not contiguous; "
                "save it with numpy.save(path, numpy.ascontiguousarray(array))"
            )
        expected = offset + int(shape[0]) * int(shape[1]) * np.dtype(dtype).itemsize
        size = os.path.getsize(path)
        if size < expected:
            raise ValueError(
                f"{path} is truncated: its header promises {shape[0]} x {shape[1]} entries of "
                f"{np.dtype(dtype)} ({expected} bytes with the header) but the file holds "
                f"{size} bytes; write it again"
            )
        self.path = path
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.offset = offset
        self.ndim = 2

    def __getitem__(self, index: Any) -> np.ndarray[Any, Any]:
        mapped = np.memmap(self.path, self.dtype, mode="r", offset=self.offset, shape=self.shape)
        # Copy out so that the mapping closes with this task instead of pinning file pages.
        return np.array(mapped[index])

    def __reduce__(self) -> tuple[type[NpyRows], tuple[str]]:
        return (NpyRows, (self.path,))

    def __dask_tokenize__(self) -> tuple[str, float, int]:
        status = os.stat(self.path)
        return (self.path, status.st_mtime, status.st_size)


def open_rows(path: str | os.PathLike[str], *, rows_per_chunk: int | None = None) -> da.Array:
    """Open a ``(rows, vocab)`` array on disk as a Dask array whose blocks hold whole rows.

    Args:
        path: a ``.npy`` file (each block memory-maps only while it is read) or a zarr array
            directory (``.zarr``); C-ordered, any floating dtype.
        rows_per_chunk: rows per block; by default about 4 Mi elements per block
            (131 rows of a 32000-entry vocabulary).

    Returns:
        A lazy ``(rows, vocab)`` Dask array with a single block along the vocabulary, in the
        stored dtype; reading happens on the workers when a result is computed.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for another suffix, an array that is not 2-D, a Fortran-ordered or
            truncated ``.npy`` (checked here, not when a block is read), or
            ``rows_per_chunk`` < 1.

    Examples:
        >>> import os, tempfile, numpy as np, kldiv
        >>> from kldiv.dask import open_rows
        >>> path = os.path.join(tempfile.mkdtemp(), "logits.npy")
        >>> np.save(path, np.log(np.array([[0.5, 0.5], [0.9, 0.1]], dtype=np.float32)))
        >>> logits = open_rows(path, rows_per_chunk=1)
        >>> logits.chunks
        ((1, 1), (2,))
        >>> kldiv.entropy(logits, kind="logits").compute()
        array([0.6931472 , 0.32508302], dtype=float32)
    """
    location = Path(path)
    if not location.exists():
        raise FileNotFoundError(f"{location} does not exist; pass the path of a .npy file or zarr")
    if rows_per_chunk is not None and (
        isinstance(rows_per_chunk, bool)
        or not isinstance(rows_per_chunk, int)
        or rows_per_chunk < 1
    ):
        raise ValueError(f"rows_per_chunk must be a positive int, got {rows_per_chunk!r}")
    if location.suffix == ".npy":
        source: Any = NpyRows(str(location))
        shape = source.shape
    elif location.suffix == ".zarr" or location.is_dir():
        import zarr

        source = zarr.open_array(str(location), mode="r")
        shape = tuple(source.shape)
        if len(shape) != 2:
            raise ValueError(
                f"{location} holds an array of shape {shape}; open_rows needs a 2-D "
                "(rows, vocab) array"
            )
    else:
        raise ValueError(
            f"{location} is neither a .npy file nor a zarr directory; save the array with "
            "numpy.save or zarr first"
        )
    rows = rows_per_chunk or max(1, _BLOCK_ELEMENTS // max(shape[1], 1))
    array: da.Array = da.from_array(  # type: ignore[no-untyped-call]
        source,
        chunks=(rows, shape[1]),
        name=f"open-rows-{tokenize(source, rows)}",
        fancy=False,
        meta=np.empty((0, 0), dtype=source.dtype),
    )
    return array
