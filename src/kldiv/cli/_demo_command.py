"""``kldiv demo``: compare and estimate on the example data shipped with the package."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from kldiv.cli._compare_command import print_report, run_compare, save_plot
from kldiv.cli._estimate_command import print_estimates, run_estimate

EPILOG = """\
Examples:

  kldiv demo

  kldiv demo --out /tmp/kldiv-demo --json
"""

DATA_FILES = (
    "lm_base_logits.npy",
    "lm_int4_logits.npy",
    "lm_labels.npy",
    "sessions_reference.csv",
    "sessions_current.parquet",
)


def demo_command(
    out: Annotated[Path, typer.Option(help="Folder for the plot (created if missing).")] = Path(
        "kldiv-demo-out"
    ),
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with both reports.")
    ] = False,
) -> None:
    """Run compare and estimate on small example data that ships with kldiv.

    The language-model part compares the logits of a small character-level model with those
    of its 4-bit quantized copy on 3,000 held-out positions; the tabular part estimates, column
    by column, how far a web-shop session sample has drifted from a reference sample. See
    the data's README (kldiv/data/README.md) for how both were made.
    """
    with ExitStack() as stack:
        files = {
            name: stack.enter_context(resources.as_file(resources.files("kldiv") / "data" / name))
            for name in DATA_FILES
        }
        report, dtype = run_compare(
            files["lm_base_logits.npy"],
            files["lm_int4_logits.npy"],
            kind="logits",
            labels_path=files["lm_labels.npy"],
            key=None,
            labels_key=None,
            chunk_rows=None,
        )
        estimates = run_estimate(
            files["sessions_reference.csv"],
            files["sessions_current.parquet"],
            columns=None,
            joint=False,
            method="auto",
            k=5,
            prior=0.5,
        )
    out.mkdir(parents=True, exist_ok=True)
    plot = out / "compare_kld.png"
    save_plot(report, plot)
    if json_output:
        document = {
            "compare": json.loads(report.to_json()),
            "estimate": [asdict(row) for row in estimates],
            "plot": str(plot),
        }
        sys.stdout.write(json.dumps(document) + "\n")
        return
    print_report(report, f"char-level model vs its 4-bit copy ({dtype} logits)")
    print_estimates(estimates, "KL(reference ‖ current) per column of the session data, nats")
    typer.echo(f"plot of per-position KL written to {plot}")
