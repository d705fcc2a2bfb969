"""Snippets in the guides run as written, as a script a user would save."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group("dask-local-cluster")


def _python_blocks(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_local_cluster_recipe_runs_as_a_script(tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    (block,) = [b for b in _python_blocks("distributed.md") if "LocalCluster(" in b]
    rng = np.random.default_rng(0)
    teacher = rng.normal(scale=2.0, size=(64, 50)).astype(np.float32)
    student = rng.normal(scale=2.0, size=(64, 50)).astype(np.float32)
    np.save(tmp_path / "teacher_logits.npy", teacher)
    np.save(tmp_path / "student_logits.npy", student)
    script = tmp_path / "recipe.py"
    script.write_text(block, encoding="utf-8")
    # Worker processes are spawned, so an unguarded script would start clusters recursively.
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    p = scipy.special.softmax(teacher.astype(np.float64), axis=-1)
    q = scipy.special.softmax(student.astype(np.float64), axis=-1)
    expected = scipy.special.rel_entr(p, q).sum(-1).mean()
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-5)
