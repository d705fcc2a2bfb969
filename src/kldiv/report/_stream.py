"""`CompareAccumulator`: `compare` fed batch by batch, in the style of a torchmetrics metric."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kldiv._array import KINDS, check_kind
from kldiv.report._compare import compare
from kldiv.report._report import Report

# The per-position arrays of a `Report`, in the order they are kept and gathered.
_FIELDS = ("kld", "reverse_kld", "jsd", "top1_same", "log_p_label_base", "log_p_label_test")


class CompareAccumulator:
    r"""Per-position divergences of two models, accumulated over batches into one `Report`.

    Each `update` runs the statistics of `kldiv.compare` on one batch of outputs (the same
    kernels, the same checks) and keeps only their per-position values, about 40 bytes per
    position: no logits outlive the call. `compute` returns the `Report` of everything seen,
    exactly as one `compare` call over the concatenated batches would:

    $$
    \mathrm{KL}_i = \sum_v p_i(v) \left(\log p_i(v) - \log q_i(v)\right)
    $$

    for each position $i$, with $p_i$ from ``base`` and $q_i$ from ``test``.
    Accumulators filled on different data (threads, processes, data-parallel ranks) combine
    with `merge`, or with ``compute(gather=True)`` across the ranks of `torch.distributed`.

    Args:
        kind: what every batch holds: ``"logits"``, ``"log_probs"`` or ``"probs"``.

    Examples:
        >>> import numpy as np
        >>> from kldiv.report import CompareAccumulator
        >>> accumulator = CompareAccumulator(kind="log_probs")
        >>> accumulator.update(np.log([[0.5, 0.5]]), np.log([[0.5, 0.5]]))
        >>> accumulator.update(np.log([[0.9, 0.1]]), np.log([[0.8, 0.2]]))
        >>> accumulator.n
        2
        >>> accumulator.compute().kld.round(4)
        array([0.    , 0.0367])
    """

    def __init__(self, *, kind: str = "logits") -> None:
        check_kind(kind, allowed=KINDS)
        self.kind = kind
        self._parts: list[tuple[np.ndarray | None, ...]] = []
        self._labeled: bool | None = None

    @property
    def n(self) -> int:
        """The number of positions accumulated so far."""
        return sum(int(part[0].shape[0]) for part in self._parts if part[0] is not None)

    def update(self, base: Any, test: Any, labels: Any = None) -> None:
        """Add one batch of positions.

        Args:
            base: the reference model's outputs, shape (N, V) or (B, T, V), as for
                `kldiv.compare`: NumPy, PyTorch (any device) or any Array API array.
            test: the compared model's outputs, the same shape.
            labels: the observed next tokens, integers of shape (N,) or (B, T); a negative
                label skips its position. Give labels in every update or in none.

        Raises:
            InputError: (a ValueError) for invalid entries, as `kldiv.compare`.
            ValueError: on shapes that differ, or labels in some updates and not in others.
        """
        self._check_labeled(labels is not None)
        self._add(compare(base, test, kind=self.kind, labels=labels))

    def merge(self, other: CompareAccumulator) -> CompareAccumulator:
        """Append the positions of ``other`` after this one's (``other`` is unchanged).

        Returns:
            This accumulator.
        """
        if not isinstance(other, CompareAccumulator):
            raise TypeError(f"can only merge a CompareAccumulator, got {type(other).__name__}")
        if other.kind != self.kind:
            raise ValueError(
                f"cannot merge an accumulator of kind {other.kind!r} into one of kind "
                f"{self.kind!r}; both must hold the same kind of outputs"
            )
        if other._labeled is not None:
            self._check_labeled(other._labeled)
            self._labeled = other._labeled
        self._parts.extend(other._parts)
        return self

    def reset(self) -> None:
        """Forget every position accumulated."""
        self._parts.clear()
        self._labeled = None

    def compute(self, *, gather: bool = False, group: Any = None) -> Report:
        """The `Report` of every position accumulated, in the order they were added.

        Args:
            gather: True to collect the positions of every rank of `torch.distributed`
                (rank 0's first), so that each rank returns the report of all of them. Every
                rank must call it. With the NCCL backend, set each rank's CUDA device first.
            group: the process group to gather over; None for the default group.

        Returns:
            A `Report` with per-position values (float64, nats).

        Raises:
            ValueError: when no position was accumulated (on any rank, with ``gather``).
            RuntimeError: with ``gather`` when `torch.distributed` is not initialized.
        """
        parts = list(self._parts)
        if gather:
            parts = _gathered(parts, group)
        if not parts or all(part[0] is None or part[0].shape[0] == 0 for part in parts):
            raise ValueError(
                "no position to report: call update() with at least one batch before compute()"
            )
        columns: list[np.ndarray | None] = []
        for index, _ in enumerate(_FIELDS):
            values = [part[index] for part in parts]
            if all(v is None for v in values):
                columns.append(None)
            elif any(v is None for v in values):
                raise ValueError(
                    "some ranks accumulated labels and others did not; give labels on every "
                    "rank or on none"
                )
            else:
                columns.append(np.concatenate(values))  # type: ignore[arg-type]
        kld, reverse, jsd, top1, label_base, label_test = columns
        return Report(self.kind, kld, reverse, jsd, top1, label_base, label_test)  # type: ignore[arg-type]

    def _check_labeled(self, labeled: bool) -> None:
        if self._labeled is not None and labeled != self._labeled:
            had = "with" if self._labeled else "without"
            raise ValueError(
                f"earlier batches came {had} labels; give labels in every update or in none"
            )

    def _add(self, report: Report) -> None:
        """Keep the per-position values of one batch's report."""
        if report.kind != self.kind:
            raise ValueError(f"report of kind {report.kind!r} added to kind {self.kind!r}")
        self._check_labeled(report.log_p_label_base is not None)
        self._labeled = report.log_p_label_base is not None
        self._parts.append(tuple(getattr(report, name) for name in _FIELDS))


def replaced(report: Report, **values: np.ndarray) -> Report:
    """``report`` with some per-position arrays replaced (same number of positions)."""
    return dataclasses.replace(report, **values)  # type: ignore[arg-type]


def _gathered(parts: list[tuple[np.ndarray | None, ...]], group: Any) -> list[Any]:
    """The parts of every rank, rank 0's first, by `torch.distributed.all_gather_object`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "compute(gather=True) needs torch.distributed: call "
            "torch.distributed.init_process_group first, or use gather=False"
        )
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, parts, group=group)
    return [part for rank_parts in gathered for part in rank_parts]
