"""Vocabulary-parallel KL and JSD on 1, 2 and 4 spawned gloo processes against full-vocabulary references.

One spawn per world size runs every case (see ``_vocab_parallel_worker.py``); each case is then one
test here. The ``xdist_group`` marks keep a world size's cases on one pytest worker so that it
spawns once.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

WORKER = Path(__file__).with_name("_vocab_parallel_worker.py")


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("_kldiv_vocab_parallel_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_WORKER = _load_worker()
CASE_NAMES = sorted([*_WORKER.CASES, *_WORKER.SCENARIOS])
_VERDICTS: dict[int, dict[str, str | None]] = {}


def _verdicts(world_size: int, directory: Path) -> dict[str, str | None]:
    if world_size not in _VERDICTS:
        results = directory / f"vocab-parallel-{world_size}.json"
        completed = subprocess.run(
            [sys.executable, str(WORKER), str(world_size), str(results)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        _VERDICTS[world_size] = json.loads(results.read_text())
    return _VERDICTS[world_size]


@pytest.mark.parametrize(
    "world_size",
    [
        pytest.param(size, marks=pytest.mark.xdist_group(f"vocab-parallel-{size}"))
        for size in (1, 2, 4)
    ],
)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_matches_full_vocabulary(
    world_size: int, case: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    verdicts = _verdicts(world_size, tmp_path_factory.mktemp("spawn"))
    assert case in verdicts, f"the spawned processes did not report case {case}"
    message = verdicts[case]
    assert message is None, message
