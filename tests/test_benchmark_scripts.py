"""The CPU benchmark scripts run at tiny sizes and print every case and the machine they ran on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER = ("machine: ", "transparent huge pages: enabled=", "load average: ")
ROW = re.compile(r"^\s*(?P<case>.+?):\s+(?P<ms>[\d.]+) ms \(\s*(?P<ratio>[\d.]+)x\)\s+user")


def _run(script: str, *arguments: str) -> str:
    command = [sys.executable, str(BENCHMARKS / script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    for start in HEADER:
        assert any(line.startswith(start) for line in result.stdout.splitlines()), result.stdout
    return result.stdout


@pytest.mark.parametrize("script", ["bench_torch_losses.py", "bench_fused_linear.py"])
def test_loss_benchmarks_print_compiled_fallback_and_baseline(script: str) -> None:
    pytest.importorskip("torch")
    output = _run(script, "--smoke")
    rows = {m["case"]: m for m in map(ROW.match, output.splitlines()) if m}
    assert set(rows) == {"torch", "kldiv", "kldiv KLDIV_NATIVE=0"}, output
    assert float(rows["torch"]["ratio"]) == 1.0
    assert all(float(m["ms"]) > 0 for m in rows.values())
    assert "extra peak" in output


def test_knn_benchmark_prints_the_fallback_from_a_fresh_process() -> None:
    pytest.importorskip("universal_divergence")
    output = _run("bench_knn.py", "--smoke")
    values = dict(
        re.findall(r"^\s*(kldiv|kldiv_no_native): median\s+\S+ s, value (\S+)", output, re.M)
    )
    assert set(values) == {"kldiv", "kldiv_no_native"}, output
    # Both paths count the same nearest neighbours: one value to rounding.
    assert float(values["kldiv"]) == pytest.approx(float(values["kldiv_no_native"]), rel=1e-9)
    assert "KLDIV_NATIVE=0 in a fresh subprocess" in output
