"""The ``kldiv`` command: its commands, global options and error handling."""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Annotated, NoReturn

import typer

import kldiv
from kldiv.cli import _compare_command, _demo_command, _estimate_command
from kldiv.cli._errors import BadInput

EXIT_BAD_INPUT = 2

app = typer.Typer(
    name="kldiv",
    help="Kullback–Leibler divergence done right: compare models, estimate drift, run a demo.",
    epilog="Start with: kldiv demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _help(function: Callable[..., object]) -> str:
    """The function's docstring with each paragraph on one line.

    The help formatter keeps single line breaks: a docstring wrapped at the source's width
    would be wrapped again at the terminal's, leaving short broken lines.
    """
    text = inspect.cleandoc(function.__doc__ or "")
    return "\n\n".join(" ".join(part.split()) for part in text.split("\n\n"))


for _name, _module in (
    ("compare", _compare_command),
    ("estimate", _estimate_command),
    ("demo", _demo_command),
):
    _function = getattr(_module, f"{_name}_command")
    app.command(_name, help=_help(_function), epilog=_module.EPILOG)(_function)

_debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kldiv {kldiv.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Kullback–Leibler divergence done right: compare models, estimate drift, run a demo."""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``kldiv`` command line and exit with its status.

    Bad input (a file that is missing, unreadable, of the wrong kind or shape, or holding NaN)
    exits with status 2 and one line on stderr naming the file and the problem; ``--debug``
    shows the traceback instead.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.
    """
    global _debug
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is honoured anywhere on the line, also after the command's own options.
    _debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        status = command.main(args=args, prog_name="kldiv", standalone_mode=False)
    except BadInput as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): nothing left to say.
        sys.stderr.close()
        sys.exit(1)
    except Exception as error:
        # Typer raises click's exception classes (vendored in recent versions): recognise them
        # by their interface rather than by import.
        exit_code = getattr(error, "exit_code", None)
        format_message = getattr(error, "format_message", None)
        if isinstance(exit_code, int) and callable(format_message):
            if not format_message():
                # `kldiv` alone: the help was printed, there is no error to add.
                sys.exit(exit_code)
            context = getattr(error, "ctx", None)
            command_path = getattr(context, "command_path", None) or "kldiv"
            hint = f" (see {command_path} --help)" if exit_code == EXIT_BAD_INPUT else ""
            _fail(f"{format_message()}{hint}", exit_code)
        if type(error).__name__ == "Abort":
            _fail("interrupted", 130)
        _fail(f"internal error: {type(error).__name__}: {error}; rerun with --debug", 1)
    sys.exit(status if isinstance(status, int) else 0)


def _fail(message: str, status: int) -> NoReturn:
    if _debug:
        traceback.print_exc()
    message = " ".join(message.split())
    sys.stderr.write(f"kldiv: error: {message}\n")
    sys.exit(status)
