"""One rank of a gloo group: accumulates its half of the data and gathers the report."""

from __future__ import annotations

import sys

import numpy as np
import torch.distributed as dist

from kldiv.report import CompareAccumulator


def main(rank: int, world_size: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 11))
    test = base + 0.3 * rng.normal(size=(50, 11))
    labels = rng.integers(0, 11, size=50)
    # Rank r takes an uneven share: rows 0–19 on rank 0, 20–49 on rank 1.
    rows = slice(0, 20) if rank == 0 else slice(20, 50)
    accumulator = CompareAccumulator()
    accumulator.update(base[rows], test[rows], labels[rows])
    report = accumulator.compute(gather=True)
    np.savez(out, kld=report.kld, top1=report.top1_same, label_base=report.log_p_label_base)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
