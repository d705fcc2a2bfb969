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
from kldiv.report._checks import kind_hint

# Above this many entries per input the progress bar is worth its screen line.
_PROGRESS_ENTRIES = 1 << 26
# The plot's name inside a folder given to --plot.
PLOT_NAME = "kldiv-compare.png"

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
    strict: bool = False,
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
            nonfinite="raise" if strict else "report",
        )
    except InputError as error:
        source = paths[error.argument]
        problem = error.problem + kind_hint(error.suggested_kinds, "--kind {}")
        if strict and "infinite" in error.problem:
            problem = problem.replace('nonfinite="report"', "without --strict the command")
        raise BadInput(source or error.argument, problem) from error
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
        Path | None,
        typer.Option(
            help="Save a histogram and CDF of per-position KL to this .png (or .pdf, .svg) "
            f"file, or as {PLOT_NAME} in this folder."
        ),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            min=1, help="Rows per chunk (default: half a million to 16M entries, by input)."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail (exit 2) at a position whose KL is NaN or infinite instead of counting it.",
        ),
    ] = False,
) -> None:
    """Compare two models' output distributions position by position.

    BASE and TEST hold (positions × vocabulary) or (batch × time × vocabulary) arrays: .npy
    (memory-mapped), .npz, .safetensors or .pt, in float16, bfloat16, float32 or float64.
    Prints KL(base‖test) statistics in nats: mean ± standard error, percentiles, top-1
    agreement, reverse KL and JSD, and with --labels the change in probability of the observed
    token (Δp) and both perplexities. Positions with NaN or +inf entries, and positions with
    an infinite KL, are counted and reported beside the mean over the finite ones.
    """
    report, dtype = run_compare(
        base,
        test,
        kind=kind.value,
        labels_path=labels,
        key=key,
        labels_key=labels_key,
        chunk_rows=chunk_rows,
        strict=strict,
    )
    written = None if plot is None else save_plot(report, plot_path(plot))
    if json_output:
        summary = json.loads(report.to_json())
        summary["base"], summary["test"] = str(base), str(test)
        if written is not None:
            summary["plot"] = str(written)
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_report(report, f"{base} vs {test} ({dtype}, kind {kind.value})")
        if written is not None:
            typer.echo(f"plot of per-position KL written to {written}")


def plot_path(path: Path) -> Path:
    """The file ``--plot PATH`` names: PATH itself, or `PLOT_NAME` inside a folder PATH.

    Raises:
        BadInput: for a path that is neither an existing folder nor a file name with a suffix
            (matplotlib would otherwise add ".png" to it silently).
    """
    if path.is_dir():
        return path / PLOT_NAME
    if not path.suffix:
        raise BadInput(
            path,
            "cannot write the plot: not a folder and no file suffix; give a file such as "
            f"kld.png, or an existing folder to write {PLOT_NAME} into",
        )
    return path


def save_plot(report: Report, path: Path) -> Path:
    """Save ``report``'s plot to the file ``path``; return the path written."""
    if not path.parent.is_dir():
        raise BadInput(path, f"cannot write the plot: folder {path.parent} does not exist")
    try:
        report.plot(path)
    except (ValueError, OSError) as error:
        raise BadInput(path, f"cannot write the plot ({error})") from error
    return path


def print_report(report: Any, caption: str) -> None:
    from rich.console import Console

    table = report.__rich__()
    table.caption = caption
    Console().print(table)
