"""Opening model outputs for ``kldiv compare``: .npy, .npz, .safetensors and .pt files.

Every file is opened read-only. ``.npy`` and ``.safetensors`` are memory-mapped, so an input
larger than RAM streams through `kldiv.compare`; ``.npz`` members are read whole (they may be
compressed) and ``.pt`` files are memory-mapped by PyTorch.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kldiv.cli._errors import BadInput
from kldiv.report._chunks import PageReleaser

SUFFIXES = (".npy", ".npz", ".safetensors", ".pt", ".pth")
_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
_SAFETENSORS_DTYPES = {
    "F16": np.float16, "F32": np.float32, "F64": np.float64,
    "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
    "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}  # fmt: skip


class BFloat16Rows:
    """A memory-mapped bfloat16 array read without PyTorch: slicing gives float32 rows.

    bfloat16 is the upper half of a float32, so widening is a 16-bit shift of the raw bits.
    """

    dtype = "bfloat16"

    def __init__(self, bits: np.ndarray) -> None:
        self._bits = bits
        self._pages = PageReleaser.of(bits)
        self.shape = tuple(bits.shape)

    @property
    def bfloat16_bits(self) -> np.ndarray:
        """The raw 16-bit patterns, for `kldiv.compare`'s compiled kernel to widen itself."""
        return self._bits

    def reshape(self, *shape: int) -> BFloat16Rows:
        return BFloat16Rows(self._bits.reshape(*shape))

    def __getitem__(self, key: slice) -> np.ndarray:
        bits = self._bits[key]
        widened = (bits.astype(np.uint32) << 16).view(np.float32)
        if self._pages is not None:
            self._pages.release(bits)
        return widened


def open_array(path: Path, *, key: str | None, role: str) -> Any:
    """Open a float array (``role`` "outputs") or an integer one (``role`` "labels")."""
    check_file(path, SUFFIXES)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _npy(path)
    elif suffix == ".npz":
        array = _npz(path, key)
    elif suffix == ".safetensors":
        array = _safetensors(path, key)
    else:
        array = _torch(path, key)
    dtype = dtype_name(array)
    if role == "labels":
        if "int" not in dtype:
            raise BadInput(path, f"labels have dtype {dtype}; they must be integer token ids")
    elif dtype not in _FLOAT_NAMES:
        raise BadInput(
            path, f"dtype {dtype} is not supported; use float16, bfloat16, float32 or float64"
        )
    if math.prod(array.shape) == 0:
        raise BadInput(path, f"the array has shape {tuple(array.shape)} and holds no value")
    return array


def check_file(path: Path, suffixes: tuple[str, ...]) -> None:
    """Raise BadInput unless ``path`` is a non-empty regular file with a known suffix."""
    if not path.exists():
        raise BadInput(path, "no such file")
    if not path.is_file():
        raise BadInput(path, "not a regular file")
    if path.suffix.lower() not in suffixes:
        known = ", ".join(suffixes)
        raise BadInput(path, f"unsupported file type {path.suffix or '(none)'!r}; use {known}")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise BadInput(path, f"cannot be read ({error.strerror})") from error
    if size == 0:
        raise BadInput(path, "the file is empty")


def dtype_name(array: Any) -> str:
    if isinstance(array, BFloat16Rows):
        return "bfloat16"
    return str(array.dtype).removeprefix("torch.")


def _npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise BadInput(path, f"not a readable .npy file ({error})") from error
    if not isinstance(array, np.ndarray):
        raise BadInput(path, "not a readable .npy file")
    return array


def _npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            name = _pick(path, key, list(archive.files))
            return archive[name]  # type: ignore[no-any-return]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadInput(path, f"not a readable .npz file ({error})") from error


def _pick(path: Path, key: str | None, names: list[str]) -> str:
    if key is None:
        if len(names) == 1:
            return names[0]
        listed = ", ".join(names) if names else "none"
        raise BadInput(path, f"holds several arrays ({listed}); choose one with --key")
    if key not in names:
        listed = ", ".join(names) if names else "none"
        raise BadInput(path, f"has no array named {key!r}; it holds: {listed}")
    return key


def _safetensors(path: Path, key: str | None) -> Any:
    """Memory-map one tensor of a .safetensors file (8-byte header size, JSON header, data)."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(8)
        header_size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < header_size <= size - 8:
            raise BadInput(path, "not a readable .safetensors file (bad header size)")
        try:
            header = json.loads(file.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadInput(path, f"not a readable .safetensors file ({error})") from error
    if not isinstance(header, dict):
        raise BadInput(path, "not a readable .safetensors file (header is not a JSON object)")
    header.pop("__metadata__", None)
    name = _pick(path, key, sorted(header))
    try:
        entry = header[name]
        begin, end = (int(v) for v in entry["data_offsets"])
        shape = tuple(int(s) for s in entry["shape"])
        stored = str(entry["dtype"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadInput(path, f"not a readable .safetensors file (entry {name!r})") from error
    if stored != "BF16" and stored not in _SAFETENSORS_DTYPES:
        raise BadInput(path, f"tensor {name!r} has dtype {stored}, which is not supported")
    dtype = np.dtype(np.uint16 if stored == "BF16" else _SAFETENSORS_DTYPES[stored])
    offset = 8 + header_size + begin
    if end - begin != math.prod(shape) * dtype.itemsize or offset + end - begin > size:
        raise BadInput(path, f"tensor {name!r} is truncated or its header is corrupt")
    if math.prod(shape) == 0:
        return np.empty(shape, dtype=dtype)
    array = np.memmap(path, dtype=dtype.newbyteorder("<"), mode="r", offset=offset, shape=shape)
    return BFloat16Rows(array) if stored == "BF16" else array


def _torch(path: Path, key: str | None) -> Any:
    try:
        import torch
    except ImportError:
        raise BadInput(
            path, "reading .pt files needs PyTorch (pip install torch); or save as .safetensors"
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for corrupt files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInput(path, f"not a readable .pt file ({message})") from error
    if isinstance(loaded, dict):
        names = [k for k, v in loaded.items() if isinstance(k, str) and torch.is_tensor(v)]
        loaded = loaded[_pick(path, key, names)]
    if not torch.is_tensor(loaded):
        raise BadInput(path, f"holds a {type(loaded).__name__}, not a tensor or a dict of tensors")
    return loaded
