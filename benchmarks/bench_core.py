"""kldiv.kl_div against SciPy and a hand-written NumPy baseline on (2000, 32000) float64 inputs.

Run:  python benchmarks/bench_core.py [--rows 2000] [--vocab 32000] [--repeats 7]

Prints the median time of each method, its ratio to kldiv, and the largest relative
difference of its result from kldiv's. Peak memory of each case is measured in a fresh
subprocess (this script re-run with --case) as the peak resident set size during the call
minus the resident size before it (Linux: the peak is reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import special, stats

import kldiv
from _machine import print_footer, print_header


def numpy_log_space(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """The baseline a NumPy user writes: log-softmax both sides, then Σ p (log p − log q)."""
    log_p = logits_p - special.logsumexp(logits_p, axis=-1, keepdims=True)
    log_q = logits_q - special.logsumexp(logits_q, axis=-1, keepdims=True)
    return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


def inputs(rows: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    logits_p = rng.normal(scale=2.0, size=(rows, vocab))
    logits_q = logits_p + rng.normal(scale=0.5, size=(rows, vocab))
    return {
        "logits_p": logits_p,
        "logits_q": logits_q,
        "p": special.softmax(logits_p, axis=-1),
        "q": special.softmax(logits_q, axis=-1),
        "log_p": special.log_softmax(logits_p, axis=-1),
        "log_q": special.log_softmax(logits_q, axis=-1),
    }


CASES: dict[str, tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray]]] = {
    "kldiv.kl_div probs": ("probs", lambda d: kldiv.kl_div(d["p"], d["q"])),
    "scipy.stats.entropy": ("probs", lambda d: stats.entropy(d["p"], d["q"], axis=-1)),
    "scipy.special.rel_entr.sum": ("probs", lambda d: special.rel_entr(d["p"], d["q"]).sum(-1)),
    "kldiv.kl_div log_probs": (
        "logits",
        lambda d: kldiv.kl_div(d["log_p"], d["log_q"], kind="log_probs"),
    ),
    "kldiv.kl_div logits": (
        "logits",
        lambda d: kldiv.kl_div(d["logits_p"], d["logits_q"], kind="logits"),
    ),
    "numpy log-space baseline": (
        "logits",
        lambda d: numpy_log_space(d["logits_p"], d["logits_q"]),
    ),
}


def peak_mib(case: str, rows: int, vocab: int) -> float:
    """Resident-set peak of one case in a fresh process, minus the peak after making the inputs."""
    code = subprocess.run(
        [sys.executable, __file__, "--case", case, "--rows", str(rows), "--vocab", str(vocab)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = (float(x) for x in code.stdout.split())
    return (after - before) / 1024


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field))
    return int(line.split()[1])


def run_case(case: str, rows: int, vocab: int) -> None:
    data = inputs(rows, vocab)
    # Reset the kernel's peak-RSS mark so that making the inputs does not count.
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _rss_kib("VmRSS:")
    CASES[case][1](data)
    print(before, _rss_kib("VmHWM:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.rows, args.vocab)
        return
    data = inputs(args.rows, args.vocab)
    size_mib = data["p"].nbytes / 2**20
    print_header([])
    print("compiled kernels: none on this path (kldiv.kl_div on NumPy is NumPy code)")
    print(f"inputs: two ({args.rows}, {args.vocab}) float64 arrays, {size_mib:.0f} MiB each")
    results, times = {}, {}
    for name, (_, function) in CASES.items():
        function(data)  # warm-up
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            results[name] = function(data)
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
    print(
        f"{'method':30} {'median s':>9} {'vs kldiv':>9} {'max rel diff':>13} {'extra peak MiB':>15}"
    )
    for name, (kind, _) in CASES.items():
        ours = f"kldiv.kl_div {kind}"
        difference = np.max(np.abs(results[name] - results[ours]) / np.abs(results[ours]))
        peak = peak_mib(name, args.rows, args.vocab)
        print(
            f"{name:30} {times[name]:9.3f} {times[name] / times[ours]:8.1f}x "
            f"{difference:13.1e} {peak:15.0f}"
        )

    print_footer()


if __name__ == "__main__":
    main()
