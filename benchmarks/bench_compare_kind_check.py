"""What checking that log-probabilities normalize costs `kldiv.compare`.

Run:  python benchmarks/bench_compare_kind_check.py [--rows 1000] [--vocab 32000] [--repeats 5]
          [--baseline-src OTHER_CHECKOUT/src]

Makes two (rows × vocab) float16 arrays of log-probabilities in memory and times, each case in
a fresh subprocess (median of ``--repeats`` calls after one warm-up):

* ``logits`` — ``compare(base, test, kind="logits")``: the compiled kernel, no check;
* ``log_probs`` — ``compare(base, test, kind="log_probs")``: the same kernel, plus the check of
  each row's log-sum-exp, which the kernel returns;
* ``logits_numpy`` and ``log_probs_numpy`` — the same with ``KLDIV_NATIVE=0`` (the NumPy
  fallback kernel);
* with ``--baseline-src``, ``log_probs_baseline``: ``kind="log_probs"`` with the package
  imported from that source tree instead (e.g. a checkout before the check was added).

The cases run interleaved, ``--rounds`` times (other processes on a shared machine slow
whichever case runs at the time); each case's figure is the median over the rounds. Prints
each case's median time and its ratio to ``logits`` measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).resolve().parents[1] / "src"


def make_inputs(rows: int, vocab: int, folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((rows, vocab), dtype=np.float32) * 2.5
    test = base + rng.standard_normal((rows, vocab), dtype=np.float32) * 0.15
    paths = folder / "base.npy", folder / "test.npy"
    for path, logits in zip(paths, (base, test), strict=True):
        top = logits.max(-1, keepdims=True)
        log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        np.save(path, log_probs.astype(np.float16))
    return paths


def run_case(kind: str, base: Path, test: Path, repeats: int) -> None:
    """Inside the subprocess: print the median seconds of one compare call."""
    from kldiv.report import compare

    a, b = np.load(base), np.load(test)
    compare(a, b, kind=kind)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compare(a, b, kind=kind)
        times.append(time.perf_counter() - start)
    print(statistics.median(times))


def measure(case: str, paths: tuple[Path, Path], repeats: int, source: Path) -> float:
    kind = "logits" if case.startswith("logits") else "log_probs"
    env = {**os.environ, "PYTHONPATH": str(source)}
    if case.endswith("_numpy"):
        env["KLDIV_NATIVE"] = "0"
    command = [sys.executable, __file__, "--case", kind, "--repeats", str(repeats)]
    command += ["--files", str(paths[0]), str(paths[1])]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--case", choices=["logits", "log_probs"])
    parser.add_argument("--files", nargs=2, type=Path)
    args = parser.parse_args()
    if args.case is not None:
        run_case(args.case, *args.files, args.repeats)
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = make_inputs(args.rows, args.vocab, Path(folder))
        cases = ["logits", "log_probs", "logits_numpy", "log_probs_numpy"]
        sources = dict.fromkeys(cases, SOURCE)
        if args.baseline_src is not None:
            sources["log_probs_baseline"] = args.baseline_src
        rounds: dict[str, list[float]] = {case: [] for case in sources}
        for _ in range(args.rounds):
            for case, source in sources.items():
                name = "log_probs" if case == "log_probs_baseline" else case
                rounds[case].append(measure(name, paths, args.repeats, source))
        results = {case: statistics.median(times) for case, times in rounds.items()}
    print(f"{args.rows} x {args.vocab} float16 log-probabilities per input, {os.cpu_count()} CPUs")
    reference = results["logits"]
    for case, seconds in results.items():
        print(f"{case:<20} {seconds * 1e3:9.1f} ms   {seconds / reference:6.2f}x logits")


if __name__ == "__main__":
    main()
