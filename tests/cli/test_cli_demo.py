"""``kldiv demo`` and the end-to-end command line in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np

DEMO_WITHOUT_TORCH = """
import sys
from kldiv.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exited:
    assert exited.code == 0, exited.code
assert "torch" not in sys.modules, "the demo imported torch"
"""


def test_demo_runs_without_torch_and_writes_a_plot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", DEMO_WITHOUT_TORCH, "demo", "--out", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["compare"]["n"] == 3000
    assert 0 < document["compare"]["kld"]["mean"] < 1
    assert document["compare"]["ppl"]["ratio"] > 1  # quantization costs perplexity
    drift = [row["column"] for row in document["estimate"]]
    assert set(drift[:2]) == {"session_minutes", "device"}  # the two drifted columns lead
    assert (tmp_path / "compare_kld.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_prints_both_tables(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kldiv.cli", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "mean KLD" in result.stdout
    assert "session_minutes" in result.stdout


def test_shipped_data_is_small_and_as_documented() -> None:
    data = resources.files("kldiv") / "data"
    total = sum(entry.stat().st_size for entry in Path(str(data)).iterdir())
    assert total < 2_000_000
    with resources.as_file(data / "lm_base_logits.npy") as path:
        base = np.load(path)
    with resources.as_file(data / "lm_labels.npy") as path:
        labels = np.load(path)
    assert (base.shape, base.dtype) == ((3000, 97), np.float16)
    assert (labels.shape, labels.dtype) == ((3000,), np.int32)
    assert labels.min() >= 0
    assert labels.max() < 97


def test_compare_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(size=(2, 30, 11)).astype(np.float16)
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "test.npy", (base + 0.1 * rng.normal(size=base.shape)).astype(np.float16))
    result = subprocess.run(
        [sys.executable, "-m", "kldiv.cli", "compare", "base.npy", "test.npy", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.count("\n") == 1
    summary = json.loads(result.stdout)
    for key in ("n", "kld", "top1_agreement", "reverse_kld_mean", "jsd_mean"):
        assert key in summary
    assert summary["n"] == 60
