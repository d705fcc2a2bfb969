"""``kldiv compare`` on two large float16 .npy files: throughput and peak memory.

Run:  python benchmarks/bench_compare.py [--rows 50000] [--vocab 32000] [--repeats 3]

Writes two (rows × vocab) float16 logit files under benchmarks/_out/ (3.2 GB each at the
default size; ``--delete`` removes them afterwards), then times, each in a fresh subprocess:

* ``read`` — a floor: stream both files in the same chunks and widen them to float32 with
  NumPy;
* ``read_torch`` — the same with PyTorch widening the chunks (what ``kldiv`` does without its
  compiled kernels);
* ``scipy`` — the loop a SciPy user writes: per chunk, log-softmax and the three divergences
  with ``scipy.special`` (on the first ``--baseline-rows`` rows, scaled to the whole file);
* ``kldiv`` — ``kldiv compare BASE TEST --json``, start-up included;
* ``kldiv_numpy`` — the same with the compiled kernels turned off (``KLDIV_NATIVE=0``): the
  NumPy/PyTorch kernel of an installation without a C compiler.

Prints each case's median throughput (GB/s per input file), its ratio to ``kldiv`` and its
peak resident memory (the case's own maximum RSS, measured by the subprocess itself).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _machine import print_footer, print_header

OUT = Path(__file__).parent / "_out"
CHUNK = 32


def make_inputs(rows: int, vocab: int) -> tuple[Path, Path]:
    """Two logit files: a base and a perturbed copy, as a quantized model would give."""
    OUT.mkdir(exist_ok=True)
    base, test = OUT / f"base_{rows}x{vocab}.npy", OUT / f"test_{rows}x{vocab}.npy"
    if base.exists() and test.exists():
        return base, test
    rng = np.random.default_rng(0)
    a = np.lib.format.open_memmap(base, mode="w+", dtype=np.float16, shape=(rows, vocab))
    b = np.lib.format.open_memmap(test, mode="w+", dtype=np.float16, shape=(rows, vocab))
    block = 500
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        logits = rng.standard_normal((stop - start, vocab), dtype=np.float32) * 2.5
        a[start:stop] = logits
        logits += rng.standard_normal((stop - start, vocab), dtype=np.float32) * 0.15
        b[start:stop] = logits
    a.flush()
    b.flush()
    del a, b
    return base, test


def case_read(base: Path, test: Path, rows: int) -> None:
    a, b = np.load(base, mmap_mode="r"), np.load(test, mmap_mode="r")
    total = 0.0
    for start in range(0, rows, CHUNK):
        total += float(a[start : start + CHUNK].astype(np.float32)[:, 0].sum())
        total += float(b[start : start + CHUNK].astype(np.float32)[:, 0].sum())


def case_read_torch(base: Path, test: Path, rows: int) -> None:
    import warnings

    import torch

    warnings.simplefilter("ignore")  # read-only memory maps: torch warns about writes
    torch.set_num_threads(1)  # like read: one thread
    a, b = np.load(base, mmap_mode="r"), np.load(test, mmap_mode="r")
    total = 0.0
    for start in range(0, rows, CHUNK):
        for x in (a, b):
            wide = torch.from_numpy(np.asarray(x[start : start + CHUNK])).float()
            total += float(wide[:, 0].sum())


def case_scipy(base: Path, test: Path, rows: int) -> None:
    from scipy.special import log_softmax, rel_entr

    a, b = np.load(base, mmap_mode="r"), np.load(test, mmap_mode="r")
    kl = []
    for start in range(0, rows, CHUNK):
        log_p = log_softmax(a[start : start + CHUNK].astype(np.float32), axis=-1)
        log_q = log_softmax(b[start : start + CHUNK].astype(np.float32), axis=-1)
        p, q = np.exp(log_p), np.exp(log_q)
        m = 0.5 * (p + q)
        kl.append(np.sum(p * (log_p - log_q), axis=-1))
        kl.append(np.sum(q * (log_q - log_p), axis=-1))
        kl.append(0.5 * (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)))
        kl.append(a[start : start + CHUNK].argmax(-1) == b[start : start + CHUNK].argmax(-1))


def case_kldiv(base: Path, test: Path, rows: int) -> None:
    from kldiv.cli import main

    try:
        main(["compare", str(base), str(test), "--json"])
    except SystemExit as exited:
        if exited.code:
            raise


def case_kldiv_numpy(base: Path, test: Path, rows: int) -> None:
    import os

    os.environ["KLDIV_NATIVE"] = "0"
    case_kldiv(base, test, rows)


CASES = {
    "read": case_read,
    "read_torch": case_read_torch,
    "scipy": case_scipy,
    "kldiv": case_kldiv,
    "kldiv_numpy": case_kldiv_numpy,
}


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    Linux's ru_maxrss survives exec, so a fresh interpreter would report its parent's peak;
    VmHWM in /proc is reset by exec and is used where it exists.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(name: str, base: Path, test: Path, rows: int) -> dict[str, float]:
    """Run one case in a fresh interpreter; it reports its own wall time and peak RSS."""
    command = [sys.executable, __file__, "--case", name, "--files", str(base), str(test)]
    command += ["--case-rows", str(rows)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--delete", action="store_true", help="delete the input files at the end")
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--files", nargs=2, type=Path)
    parser.add_argument("--case-rows", type=int)
    args = parser.parse_args()
    if args.case:
        start, cpu_start = time.perf_counter(), time.process_time()
        if args.case.startswith("kldiv"):
            sys.stdout = sys.stderr  # keep the report off the line this process answers on
        CASES[args.case](*args.files, args.case_rows)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        sys.stdout = sys.__stdout__
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_bytes": peak_rss()}))
        return

    base, test = make_inputs(args.rows, args.vocab)
    file_bytes = base.stat().st_size
    print_header(["compare"])
    print(f"inputs: 2 × ({args.rows:,} × {args.vocab:,}) float16, {file_bytes / 1e9:.2f} GB each")
    plan = {
        "read": args.rows,
        "read_torch": args.rows,
        "scipy": min(args.baseline_rows, args.rows),
        "kldiv": args.rows,
        "kldiv_numpy": args.rows,
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in plan}
    for _ in range(args.repeats):
        for name, rows in plan.items():
            results[name].append(run_case(name, base, test, rows))
    rates, cpu_rates = {}, {}
    for name, runs in results.items():
        read = file_bytes * plan[name] / args.rows / 1e9
        rates[name] = read / statistics.median(r["seconds"] for r in runs)
        # Per CPU-second, times 2 cores: an estimate for the same machine without other load.
        cpu_rates[name] = 2 * read / statistics.median(r["cpu_seconds"] for r in runs)
    header = f"{'case':12s} {'rows':>8s} {'GB/s per file':>14s} {'vs kldiv':>9s}"
    print(f"{header} {'CPU-time GB/s':>14s} {'peak RSS':>10s}")
    for name, runs in results.items():
        peak = max(r["peak_bytes"] for r in runs) / 2**20
        print(
            f"{name:12s} {plan[name]:8,d} {rates[name]:14.3f} {rates[name] / rates['kldiv']:8.2f}x "
            f"{cpu_rates[name]:14.3f} {peak:8.0f} MiB"
        )
    if args.delete:
        base.unlink()
        test.unlink()

    print_footer()


if __name__ == "__main__":
    main()
