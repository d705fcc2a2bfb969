"""The result of `kldiv.compare`: per-position divergences and their summary statistics."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure
    from rich.table import Table

PERCENTILES: tuple[str, ...] = ("0.1", "1", "5", "10", "90", "95", "99", "99.9")
# Δp adds the quartiles, as llama-perplexity prints them.
DELTA_P_PERCENTILES: tuple[str, ...] = ("0.1", "1", "5", "10", "25", "75", "90", "95", "99", "99.9")


@dataclass(frozen=True, eq=False)
class Report:
    """Per-position divergences between a base and a test model, with their summary.

    Every divergence is in nats and compares the distributions at one position (one row).
    ``to_dict`` computes the summary: means with standard errors, percentiles with NumPy's
    default (linear) interpolation, and, where labels were given, Δp and perplexities.
    Positions whose divergences are undefined (an input row with NaN or +inf, kept as NaN)
    are counted and left out of every statistic; positions with an infinite KL are counted,
    kept in the mean over all positions (which is then infinite) and left out of the mean
    over finite positions reported beside it.

    Attributes:
        kind: what the inputs held: ``"logits"``, ``"log_probs"`` or ``"probs"``.
        kld: KL(base‖test) per position, shape (N,), float64.
        reverse_kld: KL(test‖base) per position, shape (N,), float64.
        jsd: Jensen–Shannon divergence per position, shape (N,), float64.
        top1_same: whether both sides rank the same token first, shape (N,), bool.
        log_p_label_base: log-probability of the observed token under base, shape (M,),
            float64, at the M positions with a label (negative labels are skipped); None
            without labels.
        log_p_label_test: the same under test.

    Examples:
        >>> import numpy as np
        >>> from kldiv.report import compare
        >>> report = compare(np.log([[0.9, 0.1]]), np.log([[0.8, 0.2]]), kind="log_probs")
        >>> summary = report.to_dict()
        >>> round(summary["kld"]["mean"], 6), round(summary["reverse_kld_mean"], 6)
        (0.03669, 0.044403)
        >>> print(report.table().splitlines()[1])  # one position: no standard error
        mean KLD          0.03669 ± nan
    """

    kind: str
    kld: np.ndarray
    reverse_kld: np.ndarray
    jsd: np.ndarray
    top1_same: np.ndarray
    log_p_label_base: np.ndarray | None = None
    log_p_label_test: np.ndarray | None = None

    @property
    def n(self) -> int:
        """The number of positions compared."""
        return int(self.kld.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain Python numbers, keyed as in ``kldiv compare --json``.

        Returns:
            ``n``; ``n_nan``, the positions whose divergences are undefined (NaN), left out of
            every statistic below; ``n_infinite``, the positions with KL(base‖test) = +inf;
            ``kld`` with ``mean``, ``stderr``, ``median``, ``min``, ``max`` and
            ``percentiles`` keyed "0.1" … "99.9" over the other positions, and
            ``finite_mean`` and ``finite_stderr`` over the finite ones; ``top1_agreement``
            with ``value`` and its binomial ``stderr``; ``reverse_kld_mean``; ``jsd_mean``;
            and with labels
            ``n_labeled``, ``delta_p`` (test minus base probability of the observed token:
            ``mean``, ``stderr``, ``rms`` with ``rms_stderr``, ``median``, ``min``, ``max``,
            ``percentiles``, which add the quartiles "25" and "75") and ``ppl`` (``base`` and
            ``test`` with ``base_stderr`` and ``test_stderr``; their ``ratio`` with
            ``ratio_stderr``; ``ln_ratio``, the mean ln(PPL(test)/PPL(base)), with
            ``ln_ratio_stderr``; ``difference`` PPL(test) − PPL(base) with ``value`` and
            ``stderr``; and ``correlation``, llama-perplexity's Cor(ln PPL(test), ln PPL(base)),
            which is Pearson's correlation of the per-position log-likelihoods).
        """
        defined = ~np.isnan(self.kld)
        kld = self.kld[defined]
        finite = kld[np.isfinite(kld)]
        count = int(kld.shape[0])
        with np.errstate(invalid="ignore"):
            agreement = float(np.mean(self.top1_same[defined])) if count else math.nan
            summary: dict[str, Any] = {
                "n": self.n,
                "n_nan": self.n - count,
                "n_infinite": count - int(finite.shape[0]),
                "kind": self.kind,
                "units": "nats",
                "kld": _distribution(kld),
                "top1_agreement": {
                    "value": agreement,
                    "stderr": math.sqrt(agreement * (1.0 - agreement) / max(count, 1)),
                },
                "reverse_kld_mean": _mean(self.reverse_kld[defined]),
                "jsd_mean": _mean(self.jsd[defined]),
            }
        summary["kld"]["finite_mean"] = _mean(finite)
        summary["kld"]["finite_stderr"] = _stderr(finite)
        if self.log_p_label_base is None or self.log_p_label_test is None:
            return summary
        labeled = ~(np.isnan(self.log_p_label_base) | np.isnan(self.log_p_label_test))
        base, test = self.log_p_label_base[labeled], self.log_p_label_test[labeled]
        summary["n_labeled"] = int(base.shape[0])
        if base.shape[0] == 0:
            return summary
        delta_p = np.exp(test) - np.exp(base)
        summary["delta_p"] = _distribution(delta_p, DELTA_P_PERCENTILES)
        summary["delta_p"]["rms"] = float(np.sqrt(np.mean(delta_p**2)))
        summary["delta_p"]["rms_stderr"] = _rms_stderr(delta_p)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            # ln(PPL_test / PPL_base) is the mean of log p_base − log p_test over labels.
            log_ratio = base - test
            ppl_base = float(np.exp(-np.mean(base)))
            ppl_test = float(np.exp(-np.mean(test)))
            ln_ratio_stderr = _stderr(log_ratio)
            stderr_base, stderr_test = ppl_base * _stderr(base), ppl_test * _stderr(test)
            # Covariance of the two mean log-likelihoods, as llama-perplexity computes it.
            covariance = _covariance(base, test)
            difference_variance = (
                stderr_test**2 + stderr_base**2 - 2 * ppl_test * ppl_base * covariance
            )
            summary["ppl"] = {
                "base": ppl_base,
                "test": ppl_test,
                "ratio": ppl_test / ppl_base,
                "ln_ratio": float(np.mean(log_ratio)),
                "ln_ratio_stderr": ln_ratio_stderr,
                "base_stderr": stderr_base,
                "test_stderr": stderr_test,
                "ratio_stderr": ppl_test / ppl_base * ln_ratio_stderr,
                "difference": {
                    "value": ppl_test - ppl_base,
                    "stderr": math.sqrt(max(difference_variance, 0.0))
                    if math.isfinite(difference_variance)
                    else math.nan,
                },
                "correlation": _correlation(base, test),
            }
        return summary

    def to_json(self, *, indent: int | None = None) -> str:
        """The summary as one JSON object; values that are not finite are written as null."""
        return json.dumps(_finite_or_none(self.to_dict()), indent=indent, allow_nan=False)

    def table(self) -> str:
        """The summary as an aligned plain-text table, one statistic per line."""
        width = max(len(name) for name, _ in self._rows())
        return "\n".join(f"{name:<{width}}  {value}" for name, value in self._rows())

    def __str__(self) -> str:
        return self.table()

    def __rich__(self) -> Table:
        from rich.table import Table

        table = Table(title=f"KL(base ‖ test) over {self.n:,} positions, in nats")
        table.add_column("statistic")
        table.add_column("value", justify="right")
        for name, value in self._rows():
            table.add_row(name, value)
        return table

    def plot(self, path: str | Path | None = None) -> Figure:
        """Histogram and cumulative distribution of the per-position KL on a log axis.

        Args:
            path: where to save the figure (the format follows the suffix); None to only return it.

        Returns:
            The matplotlib figure, with two axes.
        """
        from kldiv.report._plot import plot_kld

        return plot_kld(self.kld, path=path, title=f"KL(base ‖ test), {self.n:,} positions")

    def _rows(self) -> list[tuple[str, str]]:
        summary = self.to_dict()
        kld = summary["kld"]
        rows = [("positions", f"{self.n:,}")]
        if summary["n_nan"]:
            rows += [("NaN positions (left out)", f"{summary['n_nan']:,}")]
        if summary["n_infinite"]:
            rows += [("infinite KLD positions", f"{summary['n_infinite']:,}")]
        rows += [("mean KLD", f"{_fmt(kld['mean'])} ± {_fmt(kld['stderr'])}")]
        if summary["n_infinite"]:
            finite = f"{_fmt(kld['finite_mean'])} ± {_fmt(kld['finite_stderr'])}"
            rows += [("mean KLD, finite positions", finite)]
        rows += [
            ("median KLD", _fmt(kld["median"])),
            ("min KLD", _fmt(kld["min"])),
            ("max KLD", _fmt(kld["max"])),
        ]
        rows += [(f"KLD {q}%", _fmt(v)) for q, v in kld["percentiles"].items()]
        top1 = summary["top1_agreement"]
        rows += [
            ("same top token", f"{100 * top1['value']:.3f} ± {100 * top1['stderr']:.3f} %"),
            ("mean reverse KLD", _fmt(summary["reverse_kld_mean"])),
            ("mean JSD", _fmt(summary["jsd_mean"])),
        ]
        if "delta_p" in summary:
            delta_p, ppl = summary["delta_p"], summary["ppl"]
            rows += [
                ("labeled positions", f"{summary['n_labeled']:,}"),
                ("mean Δp", f"{100 * delta_p['mean']:.4f} ± {100 * delta_p['stderr']:.4f} %"),
                (
                    "RMS Δp",
                    f"{100 * delta_p['rms']:.4f} ± {100 * delta_p['rms_stderr']:.4f} %",
                ),
                ("min Δp", f"{100 * delta_p['min']:.4f} %"),
                ("max Δp", f"{100 * delta_p['max']:.4f} %"),
            ]
            rows += [(f"Δp {q}%", f"{100 * v:.4f} %") for q, v in delta_p["percentiles"].items()]
            rows += [
                ("PPL base", f"{_fmt(ppl['base'])} ± {_fmt(ppl['base_stderr'])}"),
                ("PPL test", f"{_fmt(ppl['test'])} ± {_fmt(ppl['test_stderr'])}"),
                ("PPL test / base", f"{_fmt(ppl['ratio'])} ± {_fmt(ppl['ratio_stderr'])}"),
                (
                    "ln(PPL test / base)",
                    f"{_fmt(ppl['ln_ratio'])} ± {_fmt(ppl['ln_ratio_stderr'])}",
                ),
                (
                    "PPL test − base",
                    f"{_fmt(ppl['difference']['value'])} ± {_fmt(ppl['difference']['stderr'])}",
                ),
                ("Cor(ln PPL test, ln PPL base)", f"{100 * ppl['correlation']:.2f} %"),
            ]
        return rows


def _distribution(values: np.ndarray, percentiles: tuple[str, ...] = PERCENTILES) -> dict[str, Any]:
    if values.shape[0] == 0:
        return {
            "mean": math.nan,
            "stderr": math.nan,
            "median": math.nan,
            "min": math.nan,
            "max": math.nan,
            "percentiles": dict.fromkeys(percentiles, math.nan),
        }
    with np.errstate(invalid="ignore"):
        quantiles = np.percentile(values, [float(q) for q in percentiles])
        # Interpolating towards +inf gives inf - inf = NaN: the quantile is +inf.
        quantiles[np.isnan(quantiles)] = math.inf
        return {
            "mean": float(np.mean(values)),
            "stderr": _stderr(values),
            "median": float(np.median(values)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
            "percentiles": {q: float(v) for q, v in zip(percentiles, quantiles, strict=True)},
        }


def _mean(values: np.ndarray) -> float:
    """The mean, NaN for no values."""
    return float(np.mean(values)) if values.shape[0] else math.nan


def _stderr(values: np.ndarray) -> float:
    """Standard error of the mean, std(ddof=1)/√n; NaN for fewer than two values."""
    if values.shape[0] < 2:
        return math.nan
    with np.errstate(invalid="ignore"):
        return float(np.std(values, ddof=1) / math.sqrt(values.shape[0]))


def _covariance(a: np.ndarray, b: np.ndarray) -> float:
    """Covariance of the means of ``a`` and ``b``: the sample covariance over n, with ddof=1."""
    n = a.shape[0]
    if n < 2:
        return math.nan
    return float(np.mean((a - np.mean(a)) * (b - np.mean(b))) / (n - 1))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    r"""Pearson's correlation of ``a`` and ``b``; NaN for fewer than two values or no spread.

    llama-perplexity's Cor(ln PPL(Q), ln PPL(base)) is the covariance of the two mean
    log-likelihoods over the product of their standard errors, which is this correlation of
    the per-position log-likelihoods.
    """
    if a.shape[0] < 2:
        return math.nan
    da, db = a - np.mean(a), b - np.mean(b)
    denominator = math.sqrt(float(np.sum(da * da)) * float(np.sum(db * db)))
    return float(np.sum(da * db)) / denominator if denominator > 0 else math.nan


def _rms_stderr(values: np.ndarray) -> float:
    r"""Standard error of the RMS, $\frac{1}{2\,\mathrm{RMS}}$ times that of the mean square."""
    rms = math.sqrt(float(np.mean(values**2)))
    if rms == 0:
        return 0.0 if values.shape[0] >= 2 else math.nan
    return 0.5 / rms * _stderr(values**2)


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
