"""Each example runs end to end (smoke test with small sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_distillation(tmp_path: Path) -> None:
    out = run("distillation.py", "--steps", "3", cwd=tmp_path)
    assert "labels only" in out
    assert "distilled" in out


def test_vae(tmp_path: Path) -> None:
    out = run("vae.py", "--steps", "3", cwd=tmp_path)
    # gaussian_kl agrees with torch.distributions' closed form to float32 rounding.
    difference = float(out.strip().splitlines()[-1].rsplit(" ", 1)[-1])
    assert difference < 1e-5


def test_quantized_logits(tmp_path: Path) -> None:
    out = run(
        "quantized_logits.py", "--steps", "3", "--positions", "200", "--out", "q", cwd=tmp_path
    )
    assert "original vs 4-bit copy" in out
    assert "mean KLD" in out
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "base.npy",
        "int4.npy",
        "int8.npy",
        "labels.npy",
    ]


def test_grpo_kl_penalty(tmp_path: Path) -> None:
    out = run("grpo_kl_penalty.py", "--steps", "30", "--beta", "0.5", cwd=tmp_path)
    lines = out.strip().splitlines()
    logged = [line.split() for line in lines if line.startswith("step")]
    assert len(logged) == 4  # steps 0, 10, 20 and the last
    for fields in logged:
        estimate, exact = float(fields[7]), float(fields[11])
        assert 0.0 <= estimate < 10.0
        assert 0.0 <= exact < 10.0
    first, last = (float(word.rstrip(",")) for word in lines[-1].split()[3::3])
    assert last > first  # the policy learns the reward against the penalty


def test_quantized_logits_leaves_the_working_folder_alone(tmp_path: Path) -> None:
    """Without --out the logits go to a new temporary folder, whose path is printed."""
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    out = run("quantized_logits.py", "--steps", "2", "--positions", "50", cwd=work, env=env)
    assert list(work.iterdir()) == []
    # PyTorch may keep caches in the temporary folder too.
    (folder,) = (p for p in temporary.iterdir() if p.name.startswith("kldiv-quantized-"))
    assert f"logits saved in {folder}/" in out
    assert f"kldiv compare {folder / 'base.npy'} {folder / 'int4.npy'}" in out
    assert sorted(p.name for p in folder.iterdir()) == [
        "base.npy",
        "int4.npy",
        "int8.npy",
        "labels.npy",
    ]
