"""The error `kldiv.lm` raises for input the user can fix."""

from __future__ import annotations


class LMInputError(ValueError):
    """A problem with a model, a base file, a text or an option that the user can fix.

    Attributes:
        source: the model, file or option the problem is in.
        problem: what is wrong and what to do about it.
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
