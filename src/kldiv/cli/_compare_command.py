"""``kldiv compare``: per-position KL between two models' outputs stored in files."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from kldiv.cli._arrays import dtype_name, open_array
from kldiv.cli._errors import BadInput
from kldiv.report import InputError, Report, compare

# Above this many entries per input the progress bar is worth its screen line.
_PROGRESS_ENTRIES = 1 << 26

EPILOG = """\
Examples:

  kldiv compare base.npy quantized.npy

  kldiv compare base.npy quantized.npy --labels tokens.npy --plot kld.png

  kldiv compare run.pt run_q4.pt --key logits --json > report.json
"""


class Kind(str, Enum):
    logits = "logits"
    log_probs = "log_probs"
    probs = "probs"


def run_compare(
    base_path: Path,
    test_path: Path,
    *,
    kind: str,
    labels_path: Path | None,
    key: str | None,
    labels_key: str | None,
    chunk_rows: int | None,
) -> tuple[Report, str]:
    """Open the files and compare them, turning every input problem into BadInput.

    Returns:
        The report and the dtype of the files.
    """
    paths = {"base": base_path, "test": test_path, "labels": labels_path}
    base = open_array(base_path, key=key, role="outputs")
    test = open_array(test_path, key=key, role="outputs")
    labels = None
    if labels_path is not None:
        labels = open_array(labels_path, key=labels_key, role="labels")
    if tuple(base.shape) != tuple(test.shape):
        raise BadInput(
            test_path,
            f"has shape {tuple(test.shape)} but {base_path} has shape {tuple(base.shape)}; "
            "both must hold the same positions and vocabulary",
        )
    for path, array in ((base_path, base), (test_path, test)):
        if len(array.shape) < 2:
            raise BadInput(
                path, f"has shape {tuple(array.shape)}; expected (positions, vocabulary)"
            )
    entries = math.prod(base.shape)
    try:
        report = compare(
            base,
            test,
            kind=kind,
            labels=labels,
            chunk_rows=chunk_rows,
            progress=sys.stderr.isatty() and entries >= _PROGRESS_ENTRIES,
        )
    except InputError as error:
        source = paths[error.argument]
        raise BadInput(source or error.argument, error.problem) from error
    return report, dtype_name(base)


def compare_command(
    base: Annotated[Path, typer.Argument(help="Outputs of the reference model.")],
    test: Annotated[Path, typer.Argument(help="Outputs of the model compared with it.")],
    kind: Annotated[Kind, typer.Option(help="What the files hold.")] = Kind.logits,
    labels: Annotated[
        Path | None,
        typer.Option(help="Observed next tokens (integers); adds Δp and perplexities."),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Array to read from .npz, .safetensors or .pt files.")
    ] = None,
    labels_key: Annotated[str | None, typer.Option(help="Array to read from LABELS.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Save a histogram and CDF of per-position KL here.")
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            min=1, help="Rows per chunk (default: half a million to 16M entries, by input)."
        ),
    ] = None,
) -> None:
    """Compare two models' output distributions position by position.

    BASE and TEST hold (positions × vocabulary) or (batch × time × vocabulary) arrays: .npy
    (memory-mapped), .npz, .safetensors or .pt, in float16, bfloat16, float32 or float64.
    Prints KL(base‖test) statistics in nats: mean ± standard error, percentiles, top-1
    agreement, reverse KL and JSD, and with --labels the change in probability of the observed
    token (Δp) and both perplexities.
    """
    report, dtype = run_compare(
        base,
        test,
        kind=kind.value,
        labels_path=labels,
        key=key,
        labels_key=labels_key,
        chunk_rows=chunk_rows,
    )
    if plot is not None:
        save_plot(report, plot)
    if json_output:
        summary = json.loads(report.to_json())
        summary["base"], summary["test"] = str(base), str(test)
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_report(report, f"{base} vs {test} ({dtype}, kind {kind.value})")


def save_plot(report: Report, path: Path) -> None:
    if not path.parent.is_dir():
        raise BadInput(path, f"cannot write the plot: folder {path.parent} does not exist")
    try:
        report.plot(path)
    except ValueError as error:
        raise BadInput(path, f"cannot write the plot ({error})") from error


def print_report(report: Any, caption: str) -> None:
    from rich.console import Console

    table = report.__rich__()
    table.caption = caption
    Console().print(table)
