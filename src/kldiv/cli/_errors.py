"""The one exception the command line turns into exit code 2 and a one-line message."""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """A problem with a file or a value given on the command line, which the user can fix.

    Args:
        source: the file (or option) the problem is in.
        problem: what is wrong and, where it helps, what to do about it.
    """

    def __init__(self, source: str | Path, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = str(source)
        self.problem = problem
