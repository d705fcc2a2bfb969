"""The ``kldiv`` command line: ``kldiv compare``, ``kldiv estimate`` and ``kldiv demo``."""

from kldiv.cli._app import app, main

__all__ = [
    "app",
    "main",
]
