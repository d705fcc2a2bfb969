"""``kldiv estimate``: KL between two data samples, column by column (the data-drift view)."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from kldiv.cli._tables import (
    category_labels,
    choose_columns,
    is_categorical,
    numeric_values,
    open_table,
)

EPILOG = """\
Examples:

  kldiv estimate reference.csv current.parquet

  kldiv estimate reference.csv current.csv --columns age,income --joint

  kldiv estimate before.npy after.npy --method knn --json
"""


class Method(str, Enum):
    auto = "auto"
    knn = "knn"
    counts = "counts"


@dataclass(frozen=True)
class ColumnEstimate:
    """KL(X‖Y) of one column (or of several numeric columns taken jointly)."""

    column: str
    method: str
    kl: float
    stderr: float
    n_x: int
    n_y: int
    notes: tuple[str, ...] = ()


def run_estimate(
    x_path: Path,
    y_path: Path,
    *,
    columns: str | None,
    joint: bool,
    method: str,
    k: int,
    prior: float,
) -> list[ColumnEstimate]:
    """Estimate KL(X‖Y) for every chosen column, largest first."""
    from kldiv import estimate

    x, y = open_table(x_path), open_table(y_path)
    names = choose_columns(x, y, x_path, y_path, columns)
    by_counts = [c for c in names if method == "counts" or is_categorical(x[c])]
    numeric = [c for c in names if c not in by_counts]
    groups = [numeric] if joint and numeric else [[c] for c in numeric]
    # Every column is read and checked before the first estimate, so bad input fails fast.
    categories = {c: (category_labels(x[c]), category_labels(y[c])) for c in by_counts}
    samples = {c: (numeric_values(x[c], x_path), numeric_values(y[c], y_path)) for c in numeric}
    results = []
    for name, (x_labels, y_labels) in categories.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = estimate.categorical(x_labels, y_labels, prior=prior)
        method_name = f"counts (prior {prior:g})"
        results.append(_row(name, method_name, value, (len(x_labels), len(y_labels)), caught))
    for group in groups:
        x_values = np.column_stack([samples[c][0] for c in group])
        y_values = np.column_stack([samples[c][1] for c in group])
        # KL is invariant under one affine map applied to both samples; scaling the columns
        # alike keeps one column's units from dominating the joint nearest-neighbour distances.
        scale = np.concatenate([x_values, y_values]).std(axis=0)
        scale[scale == 0] = 1.0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = estimate.knn(x_values / scale, y_values / scale, k=k)
        label = group[0] if len(group) == 1 else "joint(" + ", ".join(group) + ")"
        results.append(_row(label, f"knn (k={k})", value, (len(x_values), len(y_values)), caught))
    return sorted(results, key=lambda r: -r.kl if np.isfinite(r.kl) else -np.inf)


def _row(
    column: str,
    method: str,
    value: Any,
    sizes: tuple[int, int],
    caught: list[warnings.WarningMessage],
) -> ColumnEstimate:
    notes = tuple(str(w.message) for w in caught)
    return ColumnEstimate(column, method, float(value.value), float(value.stderr), *sizes, notes)


def estimate_command(
    x: Annotated[Path, typer.Argument(help="The reference sample: .csv, .parquet or .npy.")],
    y: Annotated[Path, typer.Argument(help="The sample compared with it.")],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all shared).")
    ] = None,
    joint: Annotated[
        bool, typer.Option("--joint", help="Treat the numeric columns as one vector.")
    ] = False,
    method: Annotated[
        Method,
        typer.Option(help="auto: counts for text, categories and integers, kNN for floats."),
    ] = Method.auto,
    k: Annotated[
        int, typer.Option(min=1, help="Neighbours for the kNN estimator (larger: less variance).")
    ] = 5,
    prior: Annotated[
        float, typer.Option(min=0.0, help="Pseudo-count added to every category.")
    ] = 0.5,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Estimate KL(X‖Y) between two data samples for each shared column.

    Categorical columns are compared by their category counts (with a pseudo-count PRIOR per
    category, so that a category missing from Y does not give infinity); numeric columns by
    the k-nearest-neighbour estimator. The table lists the columns by divergence, largest
    first, with standard errors: the columns that drifted most come first. All values in nats.
    """
    rows = run_estimate(x, y, columns=columns, joint=joint, method=method.value, k=k, prior=prior)
    if json_output:
        document = {"x": str(x), "y": str(y), "units": "nats", "columns": [asdict(r) for r in rows]}
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        print_estimates(rows, f"KL({x} ‖ {y}) per column, in nats")


def print_estimates(rows: list[ColumnEstimate], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name, justify in (("column", "left"), ("method", "left"), ("KL", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("± stderr", justify="right")
    table.add_column("rows X / Y", justify="right")
    for row in rows:
        table.add_row(
            row.column, row.method, f"{row.kl:.4g}", f"{row.stderr:.2g}", f"{row.n_x} / {row.n_y}"
        )
    console = Console()
    console.print(table)
    for row in rows:
        for note in row.notes:
            console.print(f"note: {row.column}: {note}", highlight=False)
