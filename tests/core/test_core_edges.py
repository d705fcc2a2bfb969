"""Edge cases of the core: zeros, disjoint supports, -inf logits, extremes, shapes, NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import kldiv

INF = math.inf


def values(backend, out):  # type: ignore[no-untyped-def]
    return backend.to_numpy(out)


def test_zero_p_contributes_nothing_and_zero_q_gives_inf(backend) -> None:  # type: ignore[no-untyped-def]
    p = backend.asarray(np.array([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0]]))
    q = backend.asarray(np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))
    np.testing.assert_array_equal(values(backend, kldiv.kl_div(p, q)), [0.0, INF])
    np.testing.assert_array_equal(values(backend, kldiv.cross_entropy(p, q))[1], INF)


def test_disjoint_supports(backend) -> None:  # type: ignore[no-untyped-def]
    p = backend.asarray(np.array([1.0, 0.0, 0.0, 0.0]))
    q = backend.asarray(np.array([0.0, 0.5, 0.25, 0.25]))
    assert values(backend, kldiv.kl_div(p, q)) == INF
    assert values(backend, kldiv.jeffreys(p, q)) == INF
    np.testing.assert_allclose(values(backend, kldiv.js_div(p, q)), math.log(2), rtol=1e-15)
    assert values(backend, kldiv.renyi_div(p, q, alpha=0.5)) == INF
    assert values(backend, kldiv.renyi_div(p, q, alpha=2.0)) == INF


def test_one_hot_rows(backend) -> None:  # type: ignore[no-untyped-def]
    eye = np.eye(4)
    q = np.full((4, 4), 0.25)
    out = kldiv.kl_div(backend.asarray(eye), backend.asarray(q))
    np.testing.assert_allclose(values(backend, out), np.full(4, math.log(4)), rtol=1e-15)
    np.testing.assert_array_equal(values(backend, kldiv.entropy(backend.asarray(eye))), 0.0)


def test_minus_inf_logits_are_zero_probability(backend) -> None:  # type: ignore[no-untyped-def]
    logits_p = np.array([[2.0, -INF, 0.5, -INF], [-INF, -INF, -INF, 3.0]])
    logits_q = np.array([[1.0, 0.0, -INF, 2.0], [0.0, 1.0, 2.0, 3.0]])
    out = values(
        backend, kldiv.kl_div(backend.asarray(logits_p), backend.asarray(logits_q), kind="logits")
    )
    with np.errstate(divide="ignore"):
        p, q = special.softmax(logits_p, -1), special.softmax(logits_q, -1)
    np.testing.assert_array_equal(out[0], INF)  # p has mass where q has none
    np.testing.assert_allclose(out[1], special.rel_entr(p[1], q[1]).sum(), rtol=1e-14)
    back = values(
        backend,
        kldiv.kl_div(backend.asarray(logits_q[1:]), backend.asarray(logits_p[1:]), kind="logits"),
    )
    assert back[0] == INF


def test_minus_inf_log_probs_on_both_sides(backend) -> None:  # type: ignore[no-untyped-def]
    log_p = np.log(
        np.array([0.5, 0.5, 0.0]), where=np.array([True, True, False]), out=np.full(3, -INF)
    )
    out = kldiv.kl_div(backend.asarray(log_p), backend.asarray(log_p), kind="log_probs")
    assert values(backend, out) == 0.0
    js = kldiv.js_div(backend.asarray(log_p), backend.asarray(log_p), kind="log_probs")
    assert values(backend, js) == 0.0


def test_empty_row_of_minus_inf_logits_is_zero_not_nan(backend) -> None:  # type: ignore[no-untyped-def]
    logits = backend.asarray(np.full((2, 3), -INF))
    np.testing.assert_array_equal(values(backend, kldiv.kl_div(logits, logits, kind="logits")), 0.0)


@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_extreme_logits(backend, scale: float) -> None:  # type: ignore[no-untyped-def]
    logits_p = np.array([[1.0, 0.0, -1.0], [0.5, 0.25, 0.0]]) * scale
    logits_q = np.array([[0.0, 1.0, 0.5], [0.0, 0.25, 0.5]]) * scale
    out = values(
        backend, kldiv.kl_div(backend.asarray(logits_p), backend.asarray(logits_q), kind="logits")
    )
    log_p, log_q = special.log_softmax(logits_p, -1), special.log_softmax(logits_q, -1)
    expected = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_size_one_axis(backend) -> None:  # type: ignore[no-untyped-def]
    ones = backend.asarray(np.ones((3, 1)))
    np.testing.assert_array_equal(values(backend, kldiv.kl_div(ones, ones)), np.zeros(3))
    logits = backend.asarray(np.array([[5.0], [-2.0]]))
    np.testing.assert_array_equal(
        values(backend, kldiv.kl_div(logits, logits * 3, kind="logits")), 0.0
    )


def test_one_dimensional_input_gives_zero_dimensional_output(backend) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.kl_div(backend.asarray(np.array([0.2, 0.8])), backend.asarray(np.array([0.5, 0.5])))
    assert tuple(out.shape) == ()


def test_n_dimensional_batch(backend) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(5), size=(2, 3, 2)), rng.dirichlet(np.ones(5), size=(2, 3, 2))
    out = kldiv.kl_div(backend.asarray(p), backend.asarray(q))
    assert tuple(out.shape) == (2, 3, 2)
    np.testing.assert_allclose(values(backend, out), special.rel_entr(p, q).sum(-1), rtol=1e-12)


@pytest.mark.parametrize("side", ["p", "q"])
@pytest.mark.parametrize("function", ["kl_div", "cross_entropy", "js_div", "jeffreys", "renyi_div"])
def test_nan_in_gives_nan_out(backend, side: str, function: str) -> None:  # type: ignore[no-untyped-def]
    p = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    q = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    (p if side == "p" else q)[:, 0] = np.nan
    options = {"alpha": 2.0} if function == "renyi_div" else {}
    with np.errstate(invalid="ignore"):  # NumPy's own warning about NaN operands
        out = values(
            backend, getattr(kldiv, function)(backend.asarray(p), backend.asarray(q), **options)
        )
    assert np.all(np.isnan(out))


def test_nan_logit_gives_nan(backend) -> None:  # type: ignore[no-untyped-def]
    logits_p = np.array([0.0, 1.0, 2.0])
    logits_q = np.array([np.nan, 1.0, 2.0])
    with np.errstate(invalid="ignore"):
        out = values(
            backend,
            kldiv.kl_div(backend.asarray(logits_p), backend.asarray(logits_q), kind="logits"),
        )
    assert np.isnan(out)


def test_near_identical_distributions_keep_relative_precision() -> None:
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(1000))
    q = p * (1 + 1e-7 * rng.standard_normal(1000))
    q /= q.sum()
    # The reference: Σ p·log(p/q) of the exact float64 values in 40-digit arithmetic.
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(40):
        expected = float(
            sum(
                mpmath.mpf(a) * mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))
                for a, b in zip(p, q, strict=False)
            )
        )
    np.testing.assert_allclose(kldiv.kl_div(p, q), expected, rtol=1e-9)
    np.testing.assert_allclose(kldiv.kl_div(p[None], q[None]), [expected], rtol=1e-9)
    np.testing.assert_allclose(
        kldiv.kl_div(p[None], q[None], kind="probs", where=np.ones(1000, bool)),
        [expected],
        rtol=1e-9,
    )


def test_tiny_q_does_not_overflow_to_inf() -> None:
    p = np.array([1.0 - 1e-300, 1e-300])
    q = np.array([1e-310, 1.0])
    # log(p0/q0) with p0/q0 overflowing float64; the answer is finite: ≈ log(1e310).
    out = kldiv.kl_div(p, q)
    np.testing.assert_allclose(out, 310 * math.log(10), rtol=1e-12)
    big = kldiv.kl_div(np.tile(p, (600, 1)), np.tile(q, (600, 1)))
    np.testing.assert_allclose(big, 310 * math.log(10), rtol=1e-12)


def test_inputs_are_not_modified(backend) -> None:  # type: ignore[no-untyped-def]
    p = np.random.default_rng(3).uniform(size=(3, 4))
    q = np.random.default_rng(4).uniform(size=(3, 4))
    p_copy, q_copy = p.copy(), q.copy()
    kldiv.kl_div(backend.asarray(p), backend.asarray(q), normalize=True)
    np.testing.assert_array_equal(p, p_copy)
    np.testing.assert_array_equal(q, q_copy)


def test_large_numpy_input_matches_reference_and_scipy() -> None:
    rng = np.random.default_rng(5)
    p, q = rng.dirichlet(np.ones(3000), size=200), rng.dirichlet(np.ones(3000), size=200)
    p[7, :10] = 0.0
    q[9, 5] = 0.0
    p[9, 5] = 0.5
    p /= p.sum(-1, keepdims=True)
    q /= q.sum(-1, keepdims=True)
    np.testing.assert_allclose(kldiv.kl_div(p, q), special.rel_entr(p, q).sum(-1), rtol=1e-12)
    f32 = kldiv.kl_div(p.astype(np.float32), q.astype(np.float32))
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, special.rel_entr(p, q).sum(-1), rtol=2e-4)


def test_lists_are_read_as_numpy() -> None:
    out = kldiv.kl_div([0.5, 0.5], [0.25, 0.75])
    assert isinstance(out, (np.ndarray, np.floating))
    np.testing.assert_allclose(out, special.rel_entr([0.5, 0.5], [0.25, 0.75]).sum())


def test_base_is_a_constant_factor(backend) -> None:  # type: ignore[no-untyped-def]
    p, q = backend.asarray(np.array([0.1, 0.9])), backend.asarray(np.array([0.6, 0.4]))
    nats = values(backend, kldiv.kl_div(p, q))
    np.testing.assert_allclose(values(backend, kldiv.kl_div(p, q, base=2)), nats / math.log(2))
    np.testing.assert_allclose(values(backend, kldiv.kl_div(p, q, base=0.5)), nats / math.log(0.5))


@pytest.mark.parametrize("p_kind", ["probs", "log_probs", "logits"])
@pytest.mark.parametrize("q_kind", ["probs", "log_probs", "logits"])
def test_blocked_numpy_path_matches_array_api_path(p_kind: str, q_kind: str) -> None:
    """Large NumPy inputs take a cache-blocked threaded path; it must agree with the generic one."""
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=2.0, size=(2, 300, 1001))
    logits[0, 3, :500] = -INF  # masked vocabulary on p's side
    logits[:, 5, 7] = -INF  # zero probability on both sides
    logits[1, 8, :] = -INF  # q puts no mass anywhere p has some
    logits[1, 8, 0] = 0.0
    as_kind = {
        "logits": lambda x: x,
        "log_probs": lambda x: special.log_softmax(x, -1),
        "probs": lambda x: special.softmax(x, -1),
    }
    p, q = as_kind[p_kind](logits[0]), as_kind[q_kind](logits[1])
    generic = kldiv._divergences._kl_div(p, q, p_kind=p_kind, q_kind=q_kind)
    fast = kldiv.kl_div(p, q, p_kind=p_kind, q_kind=q_kind)
    np.testing.assert_allclose(fast, generic, rtol=1e-12)
    assert fast[8] == INF
    log_p, log_q = special.log_softmax(logits[0], -1), special.log_softmax(logits[1], -1)
    finite = np.isfinite(log_p)
    with np.errstate(invalid="ignore"):
        reference = np.where(finite, np.exp(log_p) * (log_p - log_q), 0.0).sum(-1)
    np.testing.assert_allclose(fast, reference, rtol=1e-11)


@pytest.mark.parametrize("kind", ["probs", "log_probs", "logits"])
def test_blocked_numpy_path_widens_float16(kind: str) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(2, 400, 700)).astype(np.float16)
    as_kind = {
        "logits": lambda x: x,
        "log_probs": lambda x: special.log_softmax(x.astype(np.float32), -1).astype(np.float16),
        "probs": lambda x: special.softmax(x.astype(np.float32), -1).astype(np.float16),
    }
    p, q = as_kind[kind](logits[0]), as_kind[kind](logits[1])
    out = kldiv.kl_div(p, q, kind=kind)
    assert out.dtype == np.float16
    generic = kldiv._divergences._kl_div(p, q, p_kind=kind, q_kind=kind)
    np.testing.assert_allclose(out.astype(np.float64), generic.astype(np.float64), rtol=1e-3)
