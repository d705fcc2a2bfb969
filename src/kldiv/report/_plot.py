"""Plots of per-position divergences: a histogram and a cumulative distribution on a log axis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure


def plot_kld(kld: np.ndarray, *, path: str | Path | None = None, title: str = "") -> Figure:
    """Draw the histogram and the CDF of per-position KL on a logarithmic axis.

    Positions with KL = 0 (identical distributions) cannot sit on a log axis; they are counted
    in the legend instead, as are infinite values.

    Args:
        kld: per-position divergences in nats, shape (N,).
        path: where to save the figure, or None.
        title: the figure's title.

    Returns:
        The figure (headless: it is never shown).
    """
    from matplotlib.figure import Figure

    finite = kld[np.isfinite(kld)]
    positive = np.sort(finite[finite > 0])
    figure = Figure(figsize=(10, 4), layout="constrained")
    histogram, cdf = figure.subplots(1, 2)
    note = f"{kld.size - positive.size:,} positions with KL = 0 or not finite not shown"
    if positive.size:
        low, high = positive[0], positive[-1]
        edges = np.geomspace(low, high if high > low else low * 10, 60)
        histogram.hist(positive, bins=edges, color="tab:blue")
        cdf.plot(positive, np.arange(1, positive.size + 1) / kld.size, color="tab:blue")
        mean = float(np.mean(finite))
        if mean > 0:
            for axes in (histogram, cdf):
                axes.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3g}")
    for axes in (histogram, cdf):
        axes.set_xscale("log")
        axes.set_xlabel("KL(base ‖ test) per position [nats]")
        axes.grid(alpha=0.3, which="both")
    histogram.set_ylabel("positions")
    cdf.set_ylabel("fraction of positions ≤ x")
    cdf.set_ylim(0, 1)
    if positive.size:
        histogram.legend(title=note if kld.size != positive.size else None, loc="upper left")
    else:
        histogram.set_title(note)
    figure.suptitle(title)
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure
