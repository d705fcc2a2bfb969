"""The CUDA benchmark runs only where a GPU is lent; its code is kept working on the CPU here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_torch_cuda.py"
LINE = re.compile(
    r"^\s*(?P<family>\w+) BT=\s*(?P<rows>\d+)\s+(?P<case>\w+):\s+(?P<ms>[\d.]+) ms .*"
    r"loss (?P<loss>\S+) \(rel\. diff\. from torch (?P<diff>\S+)\)$"
)


def test_cuda_benchmark_runs_on_cpu_and_agrees_with_torch() -> None:
    pytest.importorskip("torch")
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--vocab", "1000"]
    command += ["--hidden", "64", "--rows", "48", "--repeats", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [LINE.match(line) for line in result.stdout.splitlines() if " BT=" in line]
    assert all(lines), result.stdout
    cases = {(m["family"], m["case"]) for m in lines if m}
    assert cases == {(f, c) for f in ("kl", "fused_jsd") for c in ("torch", "kldiv")}
    for match in lines:
        assert match is not None
        # bfloat16 inputs; torch's own loss is rounded to bfloat16 (8 bits of mantissa).
        assert float(match["diff"]) < 1e-2, match.string


def test_cuda_benchmark_skips_without_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "no CUDA device: skipped"
