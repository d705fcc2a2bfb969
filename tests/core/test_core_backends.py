"""Backend behaviour: imports stay light, Dask stays lazy, results keep their library."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kldiv


def test_import_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, kldiv; print(sorted(m for m in ('torch', 'jax', 'dask') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_result_has_the_input_library(backend) -> None:  # type: ignore[no-untyped-def]
    p = backend.asarray(np.array([[0.5, 0.5]]))
    out = kldiv.kl_div(p, p)
    assert type(out).__module__.split(".")[0] == type(p).__module__.split(".")[0]


def test_dask_stays_lazy_until_compute() -> None:
    da = pytest.importorskip("dask.array")
    import dask

    calls = []

    def counting(block):  # type: ignore[no-untyped-def]
        calls.append(1)
        return block

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=8)
    lazy = da.from_array(p, chunks=(2, 6)).map_blocks(counting, meta=np.empty((0, 0)))
    out = kldiv.js_div(lazy, lazy[::-1], kind="probs")
    assert isinstance(out, da.Array)
    assert calls == []
    with dask.config.set(scheduler="synchronous"):
        values = out.compute()
    assert calls
    np.testing.assert_allclose(values, kldiv.js_div(p, p[::-1]), rtol=1e-12)
