"""Column-by-column drift estimates between two tables: the computation behind ``kldiv estimate``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kldiv._result import KLResult
from kldiv.cli._errors import BadInput
from kldiv.cli._tables import ColumnPair, choose_columns, open_table, read_column

MIN_VALUES = 10  # per file and column: below this no estimate says anything
NOISY_BIAS = 0.01  # nats of expected plug-in bias without drift above which a note says so


@dataclass(frozen=True)
class ColumnEstimate:
    """KL(X‖Y) of one column (or of several numeric columns taken jointly)."""

    column: str
    method: str
    kl: float
    stderr: float
    n_x: int
    n_y: int
    notes: tuple[str, ...] = ()
    psi: float | None = None
    p_value: float | None = None
    null_mean: float | None = None
    null_q95: float | None = None


@dataclass(frozen=True)
class EstimateReport:
    """The estimates, largest first, and notes on the input (columns left out, rows dropped)."""

    columns: list[ColumnEstimate]
    notes: list[str] = field(default_factory=list)


def estimate_report(
    x_path: Path,
    y_path: Path,
    *,
    columns: str | None,
    joint: bool,
    method: str,
    k: int,
    prior: float,
    bins: int,
    permutations: int,
    seed: int,
    dropna: bool,
    metric: str = "euclidean",
) -> EstimateReport:
    """Estimate KL(X‖Y) for every chosen column, with a permutation null for each.

    A column whose values are numbers in both files is compared as numbers (int 21 and float
    21.0 are one value): with at most ``bins`` distinct values, value by value; with more,
    over ``bins`` quantile bins of X (``method`` "auto" or "binned") or by kNN ("knn", and
    every ``joint`` group). Other columns are compared category by category.
    """
    import pandas as pd

    from kldiv import estimate

    x, y = open_table(x_path), open_table(y_path)
    names, notes = choose_columns(x, y, x_path, y_path, columns)
    # Every column is read and checked before the first estimate, so bad input fails fast.
    pairs = [read_column(c, x[c], y[c], x_path, y_path, dropna=dropna) for c in names]
    for pair in pairs:
        if any(pair.dropped):
            notes.append(
                f"column {pair.name!r}: left out {pair.dropped[0]} missing values of {x_path} "
                f"and {pair.dropped[1]} of {y_path} (--dropna)"
            )
        for values, path in ((pair.x, x_path), (pair.y, y_path)):
            if values.size < MIN_VALUES:
                raise BadInput(
                    path,
                    f"column {pair.name!r} has {values.size} values; estimating a divergence "
                    f"needs at least {MIN_VALUES} in each file",
                )
    continuous = [p for p in pairs if p.numeric and p.distinct > bins and method != "counts"]
    by_counts = [p for p in pairs if not (p.numeric and p.distinct > bins) or method == "counts"]
    groups: list[list[ColumnPair]] = []
    if joint and continuous:
        groups = [continuous]
    elif method == "knn":
        groups = [[p] for p in continuous]
    by_bins = [] if groups else continuous
    # The kNN samples are assembled (and checked) before the first estimate, too.
    samples = [_joint_sample(group, k, notes, x_path, y_path) for group in groups]
    rng = np.random.default_rng(seed)
    results = []
    for pair in by_counts:
        x_labels, y_labels = pair.x, pair.y
        if not pair.numeric:
            # Integer codes of the texts count alike and much faster in the permutations.
            codes = pd.factorize(np.concatenate([pair.x, pair.y]))[0].astype(np.int64)
            x_labels, y_labels = codes[: pair.x.size], codes[pair.x.size :]
        counted = _estimate(
            estimate.categorical, pair.name, x_labels, y_labels, permutations, rng, prior=prior
        )
        row_notes = _bias_note(counted[0].params["categories"], pair.x.size, pair.y.size)
        results.append(_row(pair.name, f"counts (prior {prior:g})", counted, row_notes))
    for pair in by_bins:
        binned = _estimate(
            estimate.binned, pair.name, pair.x, pair.y, permutations, rng, bins=bins, prior=prior
        )
        results.append(_row(pair.name, f"binned ({binned[0].params['bins']} bins)", binned))
    for label, x_values, y_values in samples:
        # KL is invariant under one affine map applied to both samples; scaling the columns
        # alike keeps one column's units from dominating the joint nearest-neighbour distances.
        scale = np.concatenate([x_values, y_values]).std(axis=0)
        scale[scale == 0] = 1.0
        nearest = _estimate(
            estimate.knn, label, x_values / scale, y_values / scale, permutations, rng, k=k,
            metric=metric,
        )  # fmt: skip
        row_notes = []
        if nearest[0].value < 0:
            row_notes.append(
                "negative: the kNN estimator is biased on finite samples and can fall below 0 "
                "when the true KL is near 0; read it as no detectable drift"
            )
        norm = "" if metric == "euclidean" else ", max-norm"
        results.append(_row(label, f"knn (k={k}{norm})", nearest, row_notes))
    return EstimateReport(sorted(results, key=_drift_first), notes)


def _drift_first(row: ColumnEstimate) -> float:
    """Sort key: the largest excess of the KL over its no-drift mean (or the KL) first.

    Ranking by the excess keeps a column whose KL is all bias (free text, many categories)
    from leading the table.
    """
    if not np.isfinite(row.kl):
        return -np.inf
    return -(row.kl - (row.null_mean if row.null_mean is not None else 0.0))


def _joint_sample(
    group: list[ColumnPair], k: int, notes: list[str], x_path: Path, y_path: Path
) -> tuple[str, np.ndarray, np.ndarray]:
    """The label and the (rows, columns) samples of X and Y of a kNN group, checked.

    Jointly, a row counts only where every column of the group has a value.
    """
    x_rows = np.logical_and.reduce([p.x_kept for p in group])
    y_rows = np.logical_and.reduce([p.y_kept for p in group])
    x_values = np.column_stack([p.x[x_rows[p.x_kept]] for p in group])
    y_values = np.column_stack([p.y[y_rows[p.y_kept]] for p in group])
    if len(group) > 1 and not (x_rows.all() and y_rows.all()):
        notes.append(
            f"joint columns: left out {int((~x_rows).sum())} rows of {x_path} and "
            f"{int((~y_rows).sum())} of {y_path} with a missing value in one of them"
        )
    _check_rows(group, x_values.shape[0], y_values.shape[0], x_path, y_path)
    _check_k(k, group[0].name, x_values.shape[0], y_values.shape[0])
    label = group[0].name if len(group) == 1 else "joint(" + ", ".join(p.name for p in group) + ")"
    return label, x_values, y_values


def _check_rows(group: list[ColumnPair], n: int, m: int, x_path: Path, y_path: Path) -> None:
    for size, path in ((n, x_path), (m, y_path)):
        if size < MIN_VALUES:
            names = ", ".join(repr(p.name) for p in group)
            raise BadInput(
                path,
                f"has {size} rows with values in every joint column ({names}); estimating a "
                f"divergence needs at least {MIN_VALUES} in each file",
            )


def _check_k(k: int, name: str, n: int, m: int) -> None:
    if not k < n or k > m:
        raise BadInput(
            "--k",
            f"k = {k} is too large for column {name!r} with {n} values in X and {m} "
            f"in Y; the kNN estimator needs k < {n} and k <= {m}",
        )


def _estimate(
    estimator: Callable[..., KLResult],
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    permutations: int,
    rng: np.random.Generator,
    **options: Any,
) -> tuple[KLResult, list[str]]:
    """Run one estimator (with its permutation null) and collect its warnings as notes."""
    from kldiv.estimate import permutation_test

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if permutations:
                result = permutation_test(
                    estimator, x, y, n_permutations=permutations, seed=rng, **options
                )
            else:
                result = estimator(x, y, **options)
        except ValueError as error:
            raise BadInput(f"column {name!r}", str(error)) from error
    return result, [str(w.message) for w in caught]


def _bias_note(categories: int, n: int, m: int) -> list[str]:
    if categories > min(n, m) / 2:
        # The first-order bias formula needs many counts per category; here it does not hold.
        return [
            f"{categories} categories for {n} and {m} values: most values occur once (free "
            "text or an identifier?), so the KL reflects the number of categories, not drift; "
            "read it against the permutation null"
        ]
    bias = (categories - 1) / (2 * n) + (categories - 1) / (2 * m)
    if bias < NOISY_BIAS:
        return []
    return [
        f"{categories} categories for {n} and {m} values: without drift the unsmoothed "
        f"estimate averages about (K-1)/(2N) + (K-1)/(2M) = {bias:.3g} nats; compare the KL "
        "with the permutation null, not with 0"
    ]


def _row(
    column: str,
    method: str,
    estimated: tuple[KLResult, list[str]],
    extra_notes: list[str] | None = None,
) -> ColumnEstimate:
    result, notes = estimated
    params = result.params

    def number(key: str) -> float | None:
        return float(params[key]) if key in params else None

    return ColumnEstimate(
        column,
        method,
        float(result.value),
        float(result.stderr),
        int(result.n or 0),
        int(result.m or 0),
        tuple(notes + (extra_notes or [])),
        psi=number("psi"),
        p_value=number("p_value"),
        null_mean=number("null_mean"),
        null_q95=number("null_q95"),
    )
