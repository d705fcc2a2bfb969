"""``kldiv.lm.compare`` on two causal LMs: what the statistics add to the forward passes.

Run:  python benchmarks/bench_lm_compare.py [--layers 4] [--hidden 256] [--vocab 32000]
                                            [--ctx 512] [--windows 16] [--repeats 2]

Builds a Llama-shaped model from a config (random weights, ``initializer_range`` 0.2) and a
round-to-nearest 4-bit copy of it (groups of 32), and a Zipf-distributed token stream of
``windows · ctx`` tokens. Each case runs in a fresh subprocess:

* ``forward`` — the baseline: both models' forward passes over every window, exactly as
  `kldiv.lm.compare` runs them (one window at a time, output layer on the scored half only),
  the logits thrown away;
* ``compare`` — `kldiv.lm.compare` itself: the same forward passes plus every statistic;
* ``split`` — compare's loop written out, with each window's forward passes and its
  statistics (`CompareAccumulator.update`) timed apart: the most robust ratio on a busy
  machine, since both parts run under the same load.

Both cases run one untimed forward pass per model first (one-time initialization).

Prints the median wall time of each, the time the statistics add as a fraction of the forward
passes, and each case's peak resident memory next to the budget "the process after building
both models, plus two windows of float32 logits (2 · ctx · vocab · 4 bytes)".
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np


def build(args: argparse.Namespace) -> tuple[Any, Any, np.ndarray]:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=int(args.hidden * 8 / 3) // 16 * 16,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=max(1, args.hidden // 64),
        max_position_embeddings=max(args.ctx, 512),
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    base = transformers.LlamaForCausalLM(config).eval()
    test = transformers.LlamaForCausalLM(config).eval()
    test.load_state_dict(base.state_dict())
    with torch.no_grad():
        for parameter in test.parameters():
            if parameter.ndim == 2 and parameter.shape[1] % 32 == 0:
                blocks = parameter.reshape(-1, 32)
                scale = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
                blocks.copy_(torch.clamp(torch.round(blocks / scale), -8, 7) * scale)
    rng = np.random.default_rng(1)
    tokens = np.minimum(rng.zipf(1.2, size=args.windows * args.ctx), args.vocab) - 1
    return base, test, tokens


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def child(args: argparse.Namespace) -> None:
    import torch

    from kldiv.lm import compare
    from kldiv.lm._models import CausalLM
    from kldiv.lm._windows import make_windows
    from kldiv.report import CompareAccumulator

    base, test, tokens = build(args)
    after_models = rss_bytes()
    sides = CausalLM(base, None, "base"), CausalLM(test, None, "test")
    windows = make_windows(tokens, n_ctx=args.ctx, n_chunks=None, bos=None, source="tokens")
    # A first pass outside the timing: one-time initialization of the kernels.
    for side in sides:
        side.scored_logits(windows.inputs(0, 1), windows.first)
    forward_seconds = statistics_seconds = 0.0
    start = time.perf_counter()
    if args.case == "forward":
        for k in range(windows.n_chunk):
            for side in sides:
                logits = side.scored_logits(windows.inputs(k, k + 1), windows.first)
                # Wait for the values, as the statistics would.
                float(logits[0, -1, -1])
                del logits
    elif args.case == "split":
        # compare's loop written out, each window's two parts timed apart under the same load.
        accumulator = CompareAccumulator()
        for k in range(windows.n_chunk):
            tick = time.perf_counter()
            rows = [side.scored_logits(windows.inputs(k, k + 1), windows.first) for side in sides]
            float(rows[0][0, -1, -1])
            float(rows[1][0, -1, -1])
            tock = time.perf_counter()
            accumulator.update(rows[0][0], rows[1][0], windows.labels(k, k + 1)[0])
            # As compare does: no window's logits outlive its statistics.
            del rows
            forward_seconds += tock - tick
            statistics_seconds += time.perf_counter() - tock
        assert accumulator.compute().n == windows.n_chunk * windows.rows
    else:
        report = compare(base, test, token_ids=tokens, n_ctx=args.ctx, device="cpu")
        assert report.n == windows.n_chunk * windows.rows
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "after_models": after_models, "peak": peak,
                      "threads": torch.get_num_threads(), "forward": forward_seconds,
                      "statistics": statistics_seconds}))  # fmt: skip


def run_case(case: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", case]
    for name in ("layers", "hidden", "vocab", "ctx", "windows"):
        command += [f"--{name}", str(getattr(args, name))]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["forward", "compare", "split"], dest="case")
    args = parser.parse_args()
    if args.case is not None:
        child(args)
        return
    print(
        f"{args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, ctx {args.ctx}, "
        f"{args.windows} windows; {args.repeats} runs of each case, alternating"
    )
    runs: dict[str, list[dict[str, float]]] = {"forward": [], "compare": [], "split": []}
    for _ in range(args.repeats):
        for case in runs:
            runs[case].append(run_case(case, args))
    times = {
        case: statistics.median(r["seconds"] for r in results) for case, results in runs.items()
    }
    window_logits = 2 * args.ctx * args.vocab * 4
    for case, results in runs.items():
        # The run that grew most past its own models, so that runs are not mixed.
        worst = max(results, key=lambda r: r["peak"] - r["after_models"])
        peak, after = worst["peak"], worst["after_models"]
        print(
            f"{case:8s} {times[case]:8.2f} s   peak RSS {peak / 2**20:7.0f} MiB = after models "
            f"{after / 2**20:5.0f} MiB + {(peak - after) / 2**20:5.0f} MiB "
            f"(budget: + {window_logits / 2**20:.0f} MiB for two windows of logits)"
        )
    forward = sum(r["forward"] for r in runs["split"])
    spent = sum(r["statistics"] for r in runs["split"])
    print(
        f"split: forward passes {forward:.2f} s, statistics {spent:.2f} s: the statistics "
        f"add {100 * spent / forward:.1f} % (timed window by window in the same process)"
    )
    added = times["compare"] / times["forward"] - 1
    threads = runs["forward"][0]["threads"]
    print(
        f"end to end: compare takes {100 * added:+.1f} % over forward alone (separate "
        f"processes, {threads:.0f} torch threads; on a busy machine the split ratio is the one "
        "to trust)"
    )


if __name__ == "__main__":
    main()
