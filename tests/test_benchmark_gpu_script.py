"""The GPU benchmark's code, kept working on the CPU: tiny shapes, Triton in its interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_gpu_benchmark_smoke_run_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    # 8 x 1000 logits: 3 divergences x 2 ignore fractions x 2 temperatures x 4 providers,
    # then the fused-linear JSD with 3 providers; each file written as its case finished.
    assert len(results) == 3 * 2 * 2 * 4 + 3, result.stdout
    providers = {r["case"].split("-V1000-")[1].split("-", 2)[-1] for r in results}
    assert providers >= {"kldiv-triton", "kldiv-triton-inplace", "kldiv-torch", "torch"}
    for entry in results:
        # Every provider passed the correctness gate against the float32 torch reference.
        assert entry.get("gate") == "passed", entry
        assert entry["ms"] > 0
        assert (tmp_path / f"{entry['case']}.json").is_file()


def test_gpu_benchmark_skips_without_a_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    command = [sys.executable, str(SCRIPT), "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == "no CUDA device: skipped"
