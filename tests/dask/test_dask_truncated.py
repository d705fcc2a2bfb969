"""`open_rows` checks a ``.npy`` file's size when it opens it, and names the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")

from kldiv.dask import open_rows


@pytest.mark.parametrize("missing", [1, 4, 4 * 7 * 3])
def test_truncated_npy_is_rejected_at_open(tmp_path: Path, missing: int) -> None:
    path = tmp_path / "teacher.npy"
    np.save(path, np.zeros((7, 3), np.float32))
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(size - missing)
    header = size - 7 * 3 * 4
    with pytest.raises(ValueError, match="is truncated") as caught:
        open_rows(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is truncated: its header promises 7 x 3 entries of float32")
    assert f"({header + 84} bytes with the header) but the file holds {size - missing} bytes" in (
        message
    )


def test_complete_npy_with_trailing_bytes_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "teacher.npy"
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(path, values)
    with path.open("ab") as file:
        file.write(b"\0" * 5)
    np.testing.assert_array_equal(open_rows(path).compute(), values)
