"""Opening data samples for ``kldiv estimate``: .csv, .parquet and .npy files as columns."""

from __future__ import annotations

from dataclasses import dataclass
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


def choose_columns(
    x: Any, y: Any, x_path: Path, y_path: Path, requested: str | None
) -> tuple[list[str], list[str]]:
    """The columns to compare, and notes on the columns only one of the files has.

    Without ``requested``, every column the two samples share; a column found in one file
    only is named in a note (it cannot be compared). Named columns must be in both files.
    """
    notes = []
    for frame, path, other in ((x, x_path, y), (y, y_path, x)):
        alone = [c for c in frame.columns if c not in set(other.columns)]
        if alone and requested is None:
            listed = ", ".join(repr(c) for c in alone)
            notes.append(f"only {path} has the column(s) {listed}; not compared")
    if requested is None:
        shared = [c for c in x.columns if c in set(y.columns)]
        if not shared:
            raise BadInput(y_path, f"shares no column with {x_path}")
        return shared, notes
    names = [c.strip() for c in requested.split(",") if c.strip()]
    if not names:
        raise BadInput("--columns", "no column named; give names separated by commas")
    for frame, path in ((x, x_path), (y, y_path)):
        missing = [c for c in names if c not in frame.columns]
        if missing:
            listed = ", ".join(frame.columns)
            raise BadInput(path, f"has no column {missing[0]!r}; its columns are: {listed}")
    return names, notes


def _is_number_column(column: Any) -> bool:
    import pandas as pd

    dtype = column.dtype
    return bool(
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def _as_numbers(column: Any) -> Any:
    """The column as float64 if every present value is a number (or numeric text), else None."""
    import pandas as pd

    if _is_number_column(column):
        return column.astype("float64")
    if pd.api.types.is_bool_dtype(column.dtype):
        return None
    present = column.dropna()
    if len(present) == 0 or not all(isinstance(v, (str, int, float)) for v in present):
        return None
    converted = pd.to_numeric(present.astype(str), errors="coerce")
    if converted.isna().any():
        return None
    return pd.to_numeric(column.astype("string"), errors="coerce").astype("float64")


@dataclass(frozen=True)
class ColumnPair:
    """One column of both samples, read for estimation.

    ``numeric`` says whether the values are numbers in both files (then ``x`` and ``y`` are
    float64, so that 21 in one file and 21.0 in the other are the same value); otherwise they
    are the values as text (object arrays of str). Missing values are left out when
    ``dropna`` was given; ``dropped`` counts them per file, and ``x_kept`` and ``y_kept`` mark
    the rows of each file the values come from.
    """

    name: str
    numeric: bool
    x: np.ndarray
    y: np.ndarray
    distinct: int
    dropped: tuple[int, int]
    x_kept: np.ndarray
    y_kept: np.ndarray


def read_column(
    name: str, x_column: Any, y_column: Any, x_path: Path, y_path: Path, *, dropna: bool
) -> ColumnPair:
    """Read one column of both samples as numbers (if both hold numbers) or as text.

    Missing values (and, among numbers, infinite ones) are an error naming the column and
    the count, unless ``dropna``; the rule is the same for every dtype.
    """
    import pandas as pd

    x_numbers, y_numbers = _as_numbers(x_column), _as_numbers(y_column)
    if (x_numbers is None) != (y_numbers is None) and _is_number_column(
        x_column if x_numbers is not None else y_column
    ):
        number_path, text_path = (x_path, y_path) if x_numbers is not None else (y_path, x_path)
        text_column = y_column if x_numbers is not None else x_column
        present = text_column.dropna()
        unparsed = present[pd.to_numeric(present.astype(str), errors="coerce").isna()]
        example = (unparsed if len(unparsed) else present).iloc[0] if len(present) else None
        raise BadInput(
            text_path,
            f"column {name!r} holds text (e.g. {example!r}) but numbers in {number_path}; "
            "make the two files agree, or leave the column out with --columns",
        )
    numeric = x_numbers is not None and y_numbers is not None
    arrays, dropped, kept = [], [], []
    for column, numbers, path in ((x_column, x_numbers, x_path), (y_column, y_numbers, y_path)):
        if numeric:
            values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(values)
        else:
            values = column.astype("string").to_numpy(dtype=object, na_value=None)
            bad = column.isna().to_numpy()
        if bad.any() and not dropna:
            row = int(np.argmax(bad))
            raise BadInput(
                path,
                f"column {name!r} has {int(bad.sum())} missing or infinite values (first at "
                f"row {row}); pass --dropna to leave them out, or fill them first",
            )
        arrays.append(values[~bad])
        dropped.append(int(bad.sum()))
        kept.append(~bad)
    pooled = np.concatenate(arrays)
    distinct = len(np.unique(pooled)) if numeric else len(set(pooled.tolist()))
    return ColumnPair(
        name, numeric, arrays[0], arrays[1], distinct, (dropped[0], dropped[1]), kept[0], kept[1]
    )
