"""Benchmark kldiv.estimate.knn against the universal-divergence package on the same data.

Prints, in one run: the median wall time of each case, the speed-up of kldiv over the
baseline, the relative difference of the two values, and each case's peak resident memory,
measured in a fresh subprocess (``--case NAME``) so that the cases do not share a heap.
``kldiv_no_native`` (the cKDTree path) is timed in a fresh subprocess with ``KLDIV_NATIVE=0``.
The machine (CPU, THP settings, load, versions) is printed first.

    python benchmarks/bench_knn.py                      # n = m = 100_000, d = 5, k = 1
    python benchmarks/bench_knn.py --n 20000 --repeats 5
    python benchmarks/bench_knn.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np

from _machine import native_off, print_footer, print_header, run_child

CASES = ("data_only", "kldiv", "kldiv_adaptive", "kldiv_no_native", "universal_divergence")


def make_data(n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2009)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, d)) + 0.5 / np.sqrt(d)  # KL(P‖Q) = 0.125
    return x, y


def runner(case: str, x: np.ndarray, y: np.ndarray, k: int) -> Callable[[], float]:
    if case == "data_only":
        return lambda: 0.0
    if case in ("kldiv", "kldiv_adaptive"):
        from kldiv.estimate import knn

        return lambda: float(knn(x, y, k=k, adaptive=case == "kldiv_adaptive"))
    if case == "kldiv_no_native":
        # Run in a fresh subprocess whose environment has KLDIV_NATIVE=0 (the cKDTree path).
        if os.environ.get("KLDIV_NATIVE") != "0":
            raise RuntimeError("kldiv_no_native runs only with KLDIV_NATIVE=0 set")
        from kldiv.estimate import knn

        return lambda: float(knn(x, y, k=k))
    if case == "universal_divergence":
        from universal_divergence import estimate

        return lambda: float(estimate(x, y, k=k))
    raise ValueError(f"unknown case {case!r}; choose from {CASES}")


def timed(function: Callable[[], float], repeats: int) -> tuple[float, float]:
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    /proc's VmHWM starts afresh at exec, whereas ru_maxrss would carry over the peak of the
    forked parent; elsewhere fall back to ru_maxrss.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_arguments(case: str, args: argparse.Namespace) -> list[str]:
    sizes = ["--n", str(args.n), "--d", str(args.d), "--k", str(args.k)]
    return [__file__, "--case", case, *sizes, "--repeats", str(args.repeats)]


def child_env(case: str) -> dict[str, str] | None:
    return native_off() if case == "kldiv_no_native" else None


def peak_memory_mib(case: str, args: argparse.Namespace) -> float:
    """Peak RSS of one run of ``case`` in a fresh interpreter, as the child reports it."""
    output = run_child(child_arguments(case, args), env=child_env(case))
    return float(output) / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="samples of P and of Q")
    parser.add_argument("--d", type=int, default=5, help="dimension")
    parser.add_argument("--k", type=int, default=1, help="neighbour order")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed kldiv runs per measurement (median)"
    )
    parser.add_argument("--baseline-repeats", type=int, default=3, help="paired baseline runs")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="n = 2000, one repetition")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.repeats, args.baseline_repeats = 2000, 1, 1
    x, y = make_data(args.n, args.d)
    if args.case:
        if args.timing:
            seconds, value = timed(runner(args.case, x, y, args.k), args.repeats)
            print(json.dumps({"seconds": seconds, "value": value}))
        else:
            runner(args.case, x, y, args.k)()
            print(peak_rss_kib())
        return
    print_header(["knn"])
    print(f"n = m = {args.n}, d = {args.d}, k = {args.k}; true KL = 0.125 nats")
    ours, baseline = runner("kldiv", x, y, args.k), runner("universal_divergence", x, y, args.k)
    # Each baseline run is paired with kldiv runs just before it, so that both see the same
    # machine load; the speed-up is the median of the paired ratios.
    ours_times, baseline_times, ratios = [], [], []
    for _ in range(args.baseline_repeats):
        ours_time, ours_value = timed(ours, args.repeats)
        baseline_time, baseline_value = timed(baseline, 1)
        ours_times.append(ours_time)
        baseline_times.append(baseline_time)
        ratios.append(baseline_time / ours_time)
    adaptive_time, adaptive_value = timed(runner("kldiv_adaptive", x, y, args.k), args.repeats)
    # In a fresh subprocess with KLDIV_NATIVE=0.
    fallback = json.loads(
        run_child([*child_arguments("kldiv_no_native", args), "--timing"], env=native_off())
    )
    fallback_time, fallback_value = fallback["seconds"], fallback["value"]
    print(f"{'kldiv':>22}: median {statistics.median(ours_times):8.3f} s, value {ours_value:.12f}")
    print(f"{'kldiv_adaptive':>22}: median {adaptive_time:8.3f} s, value {adaptive_value:.12f}")
    print(
        f"{'kldiv_no_native':>22}: median {fallback_time:8.3f} s, value {fallback_value:.12f} "
        "(KLDIV_NATIVE=0 in a fresh subprocess: the cKDTree path)"
    )
    print(
        f"{'universal_divergence':>22}: median {statistics.median(baseline_times):8.3f} s, value {baseline_value:.12f}"
    )
    print(
        f"speed-up kldiv vs universal-divergence: median {statistics.median(ratios):.1f}x "
        f"(paired runs: {', '.join(f'{r:.1f}' for r in ratios)})"
    )
    print(
        f"relative difference of values: {abs(ours_value - baseline_value) / abs(baseline_value):.2e}"
    )
    base = peak_memory_mib("data_only", args)
    print(f"{'data_only':>22}: peak RSS {base:8.1f} MiB (interpreter, imports and the data)")
    for case in CASES[1:]:
        peak = peak_memory_mib(case, args)
        print(f"{case:>22}: peak RSS {peak:8.1f} MiB, {peak - base:+8.1f} MiB over data_only")
    print_footer()


if __name__ == "__main__":
    main()
