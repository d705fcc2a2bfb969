"""Opening data samples for ``kldiv estimate``: .csv, .parquet and .npy files as columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kldiv.cli._arrays import check_file
from kldiv.cli._errors import BadInput

SUFFIXES = (".csv", ".parquet", ".npy")


def open_table(path: Path) -> Any:
    """Read a sample as a pandas DataFrame; .npy columns are named "0", "1", … or by field."""
    import pandas as pd

    check_file(path, SUFFIXES)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _npy_frame(path)
    except BadInput:
        raise
    except pd.errors.EmptyDataError as error:
        raise BadInput(path, "the file holds no data") from error
    except Exception as error:  # the readers raise many types for corrupt files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInput(path, f"not a readable {suffix} file ({message})") from error
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise BadInput(path, "the file holds no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _npy_frame(path: Path) -> Any:
    import pandas as pd

    array = np.load(path, allow_pickle=False)
    if array.dtype.names:
        return pd.DataFrame({name: array[name] for name in array.dtype.names})
    if array.ndim == 1:
        return pd.DataFrame({"0": array})
    if array.ndim == 2:
        return pd.DataFrame({str(i): array[:, i] for i in range(array.shape[1])})
    raise BadInput(path, f"has shape {array.shape}; a sample is (rows,) or (rows, columns)")


def choose_columns(x: Any, y: Any, x_path: Path, y_path: Path, requested: str | None) -> list[str]:
    """The columns to compare: those requested, or every column the two samples share."""
    if requested is None:
        shared = [c for c in x.columns if c in set(y.columns)]
        if not shared:
            raise BadInput(y_path, f"shares no column with {x_path}")
        return shared
    names = [c.strip() for c in requested.split(",") if c.strip()]
    if not names:
        raise BadInput("--columns", "no column named; give names separated by commas")
    for frame, path in ((x, x_path), (y, y_path)):
        missing = [c for c in names if c not in frame.columns]
        if missing:
            listed = ", ".join(frame.columns)
            raise BadInput(path, f"has no column {missing[0]!r}; its columns are: {listed}")
    return names


def is_categorical(column: Any) -> bool:
    """Text, category and boolean columns are categorical, and so are integers (counts)."""
    import pandas as pd

    dtype = column.dtype
    return not pd.api.types.is_float_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)


def numeric_values(column: Any, path: Path) -> np.ndarray:
    """A numeric column as float64, refusing missing and infinite values."""
    values: np.ndarray = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise BadInput(
            path,
            f"column {column.name!r} has {int(bad.sum())} missing or infinite values (first at "
            f"row {row}); drop or fill them first",
        )
    return values


def category_labels(column: Any) -> np.ndarray:
    """A categorical column as strings; a missing value is its own category."""
    labels: np.ndarray = column.astype("string").fillna("<missing>").to_numpy(dtype=object)
    return labels
