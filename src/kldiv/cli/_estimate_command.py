"""``kldiv estimate``: KL between two data samples, column by column (the data-drift view)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from kldiv.cli._drift import ColumnEstimate, estimate_report

EPILOG = """\
Examples:

  kldiv estimate reference.csv current.parquet

  kldiv estimate reference.csv current.csv --columns age,income --joint

  kldiv estimate before.npy after.npy --method knn --json

  kldiv estimate reference.parquet current.parquet --dropna --bins 20
"""


class Metric(str, Enum):
    euclidean = "euclidean"
    chebyshev = "chebyshev"


class Method(str, Enum):
    auto = "auto"
    binned = "binned"
    knn = "knn"
    counts = "counts"


def run_estimate(
    x_path: Path,
    y_path: Path,
    *,
    columns: str | None,
    joint: bool,
    method: str,
    k: int,
    prior: float,
    bins: int = 10,
    permutations: int = 200,
    seed: int = 0,
    dropna: bool = False,
) -> list[ColumnEstimate]:
    """Estimate KL(X‖Y) for every chosen column, largest first (see `estimate_report`)."""
    return estimate_report(
        x_path, y_path, columns=columns, joint=joint, method=method, k=k, prior=prior,
        bins=bins, permutations=permutations, seed=seed, dropna=dropna,
    ).columns  # fmt: skip


def estimate_command(
    x: Annotated[Path, typer.Argument(help="The reference sample: .csv, .parquet or .npy.")],
    y: Annotated[Path, typer.Argument(help="The sample compared with it.")],
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all shared).")
    ] = None,
    joint: Annotated[
        bool, typer.Option("--joint", help="Treat the numeric columns as one vector (kNN).")
    ] = False,
    method: Annotated[
        Method,
        typer.Option(
            help="For numeric columns with more than BINS values: auto/binned: quantile bins "
            "of X; knn: nearest neighbours; counts: every value its own category."
        ),
    ] = Method.auto,
    bins: Annotated[
        int,
        typer.Option(
            min=2,
            help="Quantile bins; numeric columns with at most BINS values are "
            "counted value by value.",
        ),
    ] = 10,
    k: Annotated[
        int, typer.Option(min=1, help="Neighbours for the kNN estimator (larger: less variance).")
    ] = 5,
    metric: Annotated[
        Metric, typer.Option(help="Norm of the kNN distances (chebyshev: the max-norm).")
    ] = Metric.euclidean,
    prior: Annotated[
        float, typer.Option(min=0.0, help="Pseudo-count added to every category and bin.")
    ] = 0.5,
    permutations: Annotated[
        int,
        typer.Option(min=0, help="Re-splits of the pooled data for the no-drift null (0: none)."),
    ] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    dropna: Annotated[
        bool, typer.Option("--dropna", help="Leave out missing values (else they are an error).")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Estimate KL(X‖Y) between two data samples for each shared column.

    Values are compared as values: a column of numbers in both files is numeric whatever its
    dtype. Numeric columns with more than BINS distinct values are compared over BINS quantile
    bins of X (KL and PSI), or by kNN with --method knn or --joint; other columns category by
    category, with a pseudo-count PRIOR. Each estimate comes with a permutation p-value and
    the 95th percentile of the estimates on re-splits of the pooled data: what the estimator
    gives without drift. Largest excess of KL over that mean first; values in nats.
    """
    report = estimate_report(
        x, y, columns=columns, joint=joint, method=method.value, k=k, prior=prior, bins=bins,
        permutations=permutations, seed=seed, dropna=dropna, metric=metric.value,
    )  # fmt: skip
    if json_output:
        for note in report.notes:
            typer.echo(f"kldiv: note: {note}", err=True)
        document = {
            "x": str(x),
            "y": str(y),
            "units": "nats",
            "columns": [asdict(r) for r in report.columns],
            "notes": report.notes,
            "permutations": permutations,
            "seed": seed,
        }
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        print_estimates(report.columns, f"KL({x} ‖ {y}) per column, in nats", report.notes)


def print_estimates(rows: list[ColumnEstimate], title: str, notes: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    def fixed(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    table = Table(title=title)
    # Names and numbers are never cut; on a narrow terminal the method column wraps instead.
    widest = max((len(row.column) for row in rows), default=6)
    table.add_column("column", no_wrap=True, min_width=min(widest, 40))
    table.add_column("method", min_width=9)
    sizes = {(row.n_x, row.n_y) for row in rows}
    headers = ["KL", "± se", "PSI", "null 95%", "p"] + (["rows X/Y"] if len(sizes) > 1 else [])
    for name in headers:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        cells = [
            row.column, row.method, f"{row.kl:.3g}", f"{row.stderr:.2g}", fixed(row.psi, ".3g"),
            fixed(row.null_q95, ".3g"), fixed(row.p_value, ".2g"), f"{row.n_x}/{row.n_y}",
        ]  # fmt: skip
        table.add_row(*cells[: len(headers) + 2])
    console = Console()
    console.print(table)
    if len(sizes) == 1:
        ((n_x, n_y),) = sizes
        console.print(f"rows: {n_x} in X, {n_y} in Y", highlight=False)
    if any(row.p_value is not None for row in rows):
        console.print(
            "p: permutation p-value (share of re-splits of the pooled rows with a KL at least "
            "as large); null 95%: the 95th percentile of those KLs, what no drift gives",
            highlight=False,
        )
    for note in notes or []:
        console.print(f"note: {note}", highlight=False)
    for row in rows:
        for note in row.notes:
            console.print(f"note: {row.column}: {note}", highlight=False)
