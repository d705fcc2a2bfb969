"""Per-row KL of two (rows × vocab) float16 logit arrays on disk: throughput and bounded peak memory.

Cases, each run in a fresh subprocess so that its peak memory is its own:

- ``numpy-loop`` (baseline): one process memory-maps row blocks of the ``.npy`` files in a
  Python loop and calls ``kldiv.kl_div`` on the NumPy blocks.
- ``dask-distributed``: ``kldiv.kl_div`` on ``kldiv.dask.open_rows`` arrays, computed on a local
  ``dask.distributed`` cluster of 2 worker processes × 1 thread.
- ``dask-threads``: the same graph on Dask's threaded scheduler (2 threads, one process).

Peak memory is the largest sum of resident set sizes over the case process and all its
descendants, sampled every 20 ms, and the kernel's ``ru_maxrss`` of the largest of them
(reported by the case process for itself and its reaped children).
Throughput counts the bytes of both input files once. The files are created if missing and
deleted at the end unless ``--keep`` is given.

Usage::

    python benchmarks/bench_dask.py                      # 200_000 × 32_000, about 25.6 GB
    python benchmarks/bench_dask.py --rows 20000 --repeat 1   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from _machine import print_footer, print_header

CASES = ("numpy-loop", "dask-distributed", "dask-threads")
BASELINE = "numpy-loop"
BLOCK_ROWS = 131  # kldiv.dask's default for a 32_000-entry vocabulary


def _fill(path: str, rows: int, vocab: int, seed: int) -> None:
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, vocab))
    rng = np.random.default_rng(seed)
    step = max(1, (1 << 24) // vocab)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        block = rng.standard_normal((stop - start, vocab), dtype=np.float32)
        array[start:stop] = (3.0 * block).astype(np.float16)
    array.flush()
    del array


def make_files(directory: Path, rows: int, vocab: int) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / f"teacher-{rows}x{vocab}.npy", directory / f"student-{rows}x{vocab}.npy")
    missing = [(str(p), seed) for seed, p in enumerate(paths) if not p.exists()]
    if missing:
        print(f"writing {len(missing)} file(s) of {rows * vocab * 2 / 1e9:.1f} GB ...", flush=True)
        workers = [
            multiprocessing.Process(target=_fill, args=(path, rows, vocab, seed))
            for path, seed in missing
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
            if worker.exitcode != 0:
                raise RuntimeError("writing the input files failed")
    return paths


def run_case(name: str, teacher: Path, student: Path) -> float:
    """Compute the per-row KL; return a checksum so that nothing is optimized away."""
    import kldiv
    from kldiv.dask import NpyRows, open_rows

    if name == "numpy-loop":
        # The same per-block memory map as open_rows: np.load(mmap_mode="r") would keep every
        # page read so far mapped, and resident, until the loop ends.
        p, q = NpyRows(str(teacher)), NpyRows(str(student))
        total = 0.0
        for start in range(0, p.shape[0], BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            rows = kldiv.kl_div(p[block, :], q[block, :], kind="logits")
            total += float(rows.sum(dtype=np.float64))
        return total

    kl = kldiv.kl_div(open_rows(teacher), open_rows(student), kind="logits")
    if name == "dask-threads":
        values = kl.compute(scheduler="threads", num_workers=2)
    else:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            values = kl.compute()
    return float(values.sum(dtype=np.float64))


def _tree_rss(process: Any) -> int:
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def measure(name: str, teacher: Path, student: Path) -> dict[str, float]:
    """Run one case in a fresh subprocess and return its time, peak memory and checksum."""
    import psutil

    command = [sys.executable, __file__, "--case", name, str(teacher), str(student)]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    handle = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, _tree_rss(handle))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"case {name} failed with exit code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result.update(seconds=seconds, peak_tree_mib=peak / 2**20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/_out/dask"))
    parser.add_argument("--keep", action="store_true", help="keep the input files")
    parser.add_argument("--case", nargs=3, metavar=("NAME", "TEACHER", "STUDENT"))
    args = parser.parse_args()
    if args.case:
        name, teacher, student = args.case
        start = time.perf_counter()
        checksum = run_case(name, Path(teacher), Path(student))
        # ru_maxrss of the children covers the worker processes, reaped when the cluster closed.
        largest = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        print(
            json.dumps(
                {
                    "checksum": checksum,
                    "inner_seconds": time.perf_counter() - start,
                    "largest_process_mib": largest / 1024,
                }
            )
        )
        return

    teacher, student = make_files(args.data_dir, args.rows, args.vocab)
    gigabytes = (teacher.stat().st_size + student.stat().st_size) / 1e9
    print_header(["compare"])
    print(f"inputs: 2 × ({args.rows} × {args.vocab}) float16 = {gigabytes:.1f} GB on disk")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    try:
        for _ in range(args.repeat):
            for name in CASES:  # interleaved, so that page-cache state is shared alike
                runs[name].append(measure(name, teacher, student))
                last = runs[name][-1]
                print(
                    f"  {name:17s} {last['seconds']:7.1f} s  {gigabytes / last['seconds']:5.2f} GB/s"
                    f"  peak {last['peak_tree_mib']:6.0f} MiB (largest process "
                    f"{last['largest_process_mib']:6.0f} MiB)",
                    flush=True,
                )
    finally:
        if not args.keep:
            for path in (teacher, student):
                path.unlink(missing_ok=True)
            shutil.rmtree(args.data_dir, ignore_errors=True)
    checksums = {name: runs[name][0]["checksum"] for name in CASES}
    reference = checksums[BASELINE]
    for name, value in checksums.items():
        if not np.isclose(value, reference, rtol=1e-4):
            raise RuntimeError(f"{name} disagrees with {BASELINE}: {value} against {reference}")
    base = statistics.median(run["seconds"] for run in runs[BASELINE])
    print(f"\nmedians of {args.repeat} run(s); speed-up against {BASELINE}")
    print(f"{'case':17s} {'seconds':>8s} {'GB/s':>6s} {'speed-up':>9s} {'peak MiB':>9s}")
    for name in CASES:
        seconds = statistics.median(run["seconds"] for run in runs[name])
        peak = statistics.median(run["peak_tree_mib"] for run in runs[name])
        print(
            f"{name:17s} {seconds:8.1f} {gigabytes / seconds:6.2f} {base / seconds:8.2f}x "
            f"{peak:9.0f}"
        )

    print_footer()


if __name__ == "__main__":
    main()
