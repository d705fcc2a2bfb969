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
from kldiv.cli._lm_compare import LMOptions, is_lm_side, run_lm_compare, write_per_token
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

  kldiv compare ./model ./model-int4 --text wiki.test.raw --ctx 512 --save-base base.kld

  kldiv compare base.kld ./model-int4 --json
"""


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


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
    text: Annotated[
        Path | None,
        typer.Option(
            help="Models: the text to score (BASE's tokenizer, TEST's if BASE is a file)."
        ),
    ] = None,
    tokens: Annotated[
        Path | None, typer.Option(help="Models: token ids to score instead (.npy, shape (n,)).")
    ] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Models: tokens per window (default 512, a file's own).")
    ] = None,
    chunks: Annotated[
        int | None, typer.Option(min=1, help="Models: the most windows to score (default all).")
    ] = None,
    save_base: Annotated[
        Path | None,
        typer.Option(help="Models: write BASE's log-probabilities as a llama.cpp base file."),
    ] = None,
    per_token: Annotated[
        Path | None,
        typer.Option(help="Models: write per-position KLD, NLLs, Δp, same top and tokens (.npz)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Models: where to run them (default cuda if available).")
    ] = None,
    dtype: Annotated[
        DType, typer.Option(help="Models: the dtype to load them in (auto: the checkpoint's).")
    ] = DType.auto,
    batch_size: Annotated[int, typer.Option(min=1, help="Models: windows per forward pass.")] = 1,
    vocab_intersect: Annotated[
        bool,
        typer.Option(help="Models: compare the first min(V) tokens when the vocabularies differ."),
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
    options = LMOptions(
        text=text,
        tokens=tokens,
        ctx=ctx,
        chunks=chunks,
        save_base=save_base,
        per_token=per_token,
        device=device,
        dtype=dtype.value,
        batch_size=batch_size,
        vocab_intersect=vocab_intersect,
    )
    if is_lm_side(base) or is_lm_side(test):
        _lm_command(
            base,
            test,
            options,
            kind=kind,
            labels=labels,
            key=key,
            labels_key=labels_key,
            chunk_rows=chunk_rows,
            json_output=json_output,
            plot=plot,
            strict=strict,
        )
        return
    if options.given():
        raise BadInput(
            options.given()[0],
            "applies when BASE or TEST is a model directory, a hub id or a llama.cpp base file",
        )
    report, dtype_of_files = run_compare(
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
        print_report(report, f"{base} vs {test} ({dtype_of_files}, kind {kind.value})")
        if written is not None:
            typer.echo(f"plot of per-position KL written to {written}")


def _lm_command(
    base: Path,
    test: Path,
    options: LMOptions,
    *,
    kind: Kind,
    labels: Path | None,
    key: str | None,
    labels_key: str | None,
    chunk_rows: int | None,
    json_output: bool,
    plot: Path | None,
    strict: bool,
) -> None:
    """``kldiv compare`` when a side is a model or a llama.cpp base file."""
    file_only = {
        "--strict": True if strict else None,
        "--kind": None if kind == Kind.logits else kind,
        "--labels": labels,
        "--key": key,
        "--labels-key": labels_key,
        "--chunk-rows": chunk_rows,
    }
    for flag, value in file_only.items():
        if value is not None:
            raise BadInput(flag, "applies to logits files, not to models or llama.cpp base files")
    plot_file = None if plot is None else plot_path(plot)
    if plot_file is not None and not plot_file.parent.is_dir():
        raise BadInput(
            plot_file, f"cannot write the plot: folder {plot_file.parent} does not exist"
        )
    evaluation = run_lm_compare(base, test, options)
    report = evaluation.report
    if options.per_token is not None:
        write_per_token(evaluation, options.per_token)
    written = None if plot_file is None else save_plot(report, plot_file)
    windows = evaluation.windows
    if json_output:
        summary = json.loads(report.to_json())
        summary["base"], summary["test"] = str(base), str(test)
        summary["ctx"], summary["windows"] = windows.n_ctx, windows.n_chunk
        if written is not None:
            summary["plot"] = str(written)
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print_report(
            report, f"{base} vs {test} ({windows.n_chunk} windows of {windows.n_ctx} tokens)"
        )
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
