"""Comparing two models' output distributions position by position: `compare` and its `Report`."""

from kldiv.report._checks import InputError
from kldiv.report._compare import compare
from kldiv.report._report import PERCENTILES, Report
from kldiv.report._stream import CompareAccumulator

__all__ = [
    "PERCENTILES",
    "CompareAccumulator",
    "InputError",
    "Report",
    "compare",
]
