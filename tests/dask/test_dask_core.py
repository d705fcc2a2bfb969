"""The functional core on dask.array: lazy, block-parallel, and equal to SciPy/NumPy references."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats

import kldiv

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

ROWS, VOCAB = 23, 41


def _renyi(p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    return np.log(np.sum(p**alpha * q ** (1 - alpha), axis=-1)) / (alpha - 1)


# name → (kldiv call on (p, q, **options), float64 reference on probabilities)
FUNCTIONS: dict[str, tuple[Callable[..., Any], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "kl_div": (kldiv.kl_div, lambda p, q: scipy.special.rel_entr(p, q).sum(-1)),
    "entropy": (
        lambda p, q, **options: kldiv.entropy(p, **options),
        lambda p, q: scipy.stats.entropy(p, axis=-1),
    ),
    "cross_entropy": (kldiv.cross_entropy, lambda p, q: -(p * np.log(q)).sum(-1)),
    "js_div": (
        kldiv.js_div,
        lambda p, q: scipy.spatial.distance.jensenshannon(p, q, axis=-1) ** 2,
    ),
    "jeffreys": (
        kldiv.jeffreys,
        lambda p, q: (scipy.special.rel_entr(p, q) + scipy.special.rel_entr(q, p)).sum(-1),
    ),
    "renyi_div": (
        lambda p, q, **options: kldiv.renyi_div(p, q, alpha=0.7, **options),
        lambda p, q: _renyi(p, q, 0.7),
    ),
}


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12)
    logits_p = rng.normal(scale=2.0, size=(ROWS, VOCAB))
    logits_q = rng.normal(scale=2.0, size=(ROWS, VOCAB))
    return {
        "logits_p": logits_p,
        "logits_q": logits_q,
        "p": scipy.special.softmax(logits_p, axis=-1),
        "q": scipy.special.softmax(logits_q, axis=-1),
    }


def _inputs(kind: str, data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if kind == "logits":
        return data["logits_p"], data["logits_q"]
    if kind == "log_probs":
        return np.log(data["p"]), np.log(data["q"])
    return data["p"], data["q"]


class CountingScheduler:
    """A synchronous Dask scheduler that records every graph it is asked to compute."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, graph: Any, keys: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return dask.get(graph, keys, **kwargs)


@pytest.fixture
def scheduler() -> Iterator[CountingScheduler]:
    counting = CountingScheduler()
    with dask.config.set(scheduler=counting):
        yield counting


# Blocks of whole rows, and blocks that also split the vocabulary (a cross-block reduction).
CHUNKS = {"rows": (5, VOCAB), "rows-and-vocab": (7, 16)}


@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("kind", ["probs", "log_probs", "logits"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_lazy_and_equal_to_reference(
    name: str, kind: str, chunks: str, scheduler: CountingScheduler
) -> None:
    function, reference = FUNCTIONS[name]
    data = _data()
    p, q = _inputs(kind, data)
    lazy_p = da.from_array(p, chunks=CHUNKS[chunks])
    lazy_q = da.from_array(q, chunks=CHUNKS[chunks])

    result = function(lazy_p, lazy_q, kind=kind)

    assert isinstance(result, da.Array)
    assert scheduler.calls == 0, "the call computed something before .compute()"
    # One result block per block of rows: rows are computed independently, in parallel.
    assert result.chunks == (lazy_p.chunks[0],)
    values = result.compute()
    assert scheduler.calls == 1
    assert isinstance(values, np.ndarray)
    np.testing.assert_allclose(values, reference(data["p"], data["q"]), rtol=1e-12, atol=1e-14)
    eager = function(p, q, kind=kind)
    np.testing.assert_allclose(values, eager, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_dtype_follows_numpy(dtype: str, scheduler: CountingScheduler) -> None:
    data = _data()
    p, q = (x.astype(dtype) for x in _inputs("logits", data))
    result = kldiv.kl_div(
        da.from_array(p, chunks=(5, VOCAB)), da.from_array(q, chunks=(5, VOCAB)), kind="logits"
    )
    assert scheduler.calls == 0
    assert result.dtype == np.dtype(dtype)
    values = result.compute()
    expected = scipy.special.rel_entr(
        scipy.special.softmax(p.astype(np.float64), axis=-1),
        scipy.special.softmax(q.astype(np.float64), axis=-1),
    ).sum(-1)
    # Computed in float32 and rounded once to the result dtype.
    np.testing.assert_allclose(values, expected, rtol=2 * np.finfo(dtype).eps, atol=1e-6)


def test_options_on_axis_zero_with_mask_and_base(scheduler: CountingScheduler) -> None:
    data = _data()
    p, q = data["p"].T, data["q"].T
    where = np.ones_like(p, dtype=bool)
    where[:3] = False  # the first three outcomes of every distribution leave the support
    result = kldiv.kl_div(
        da.from_array(p, chunks=(16, 5)),
        da.from_array(q, chunks=(16, 5)),
        axis=0,
        where=da.from_array(where, chunks=(16, 5)),
        normalize=True,
        base=2,
        keepdims=True,
    )
    assert scheduler.calls == 0
    assert result.shape == (1, ROWS)
    kept_p = p[3:] / p[3:].sum(0)
    kept_q = q[3:] / q[3:].sum(0)
    expected = scipy.special.rel_entr(kept_p, kept_q).sum(0, keepdims=True) / np.log(2)
    np.testing.assert_allclose(result.compute(), expected, rtol=1e-12)
