"""Every core function on every backend against NumPy/SciPy float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial import distance

import kldiv

RNG = np.random.default_rng(20261124)


def _dirichlet(shape: tuple[int, ...], zeros: bool = False) -> np.ndarray:
    p = RNG.dirichlet(np.full(shape[-1], 0.7), size=shape[:-1] or None)
    if zeros:
        p[..., 0] = 0.0
        p /= p.sum(-1, keepdims=True)
    return p


P = _dirichlet((4, 7), zeros=True)
Q = _dirichlet((4, 7))
LOGITS_P = RNG.normal(scale=3.0, size=(4, 7))
LOGITS_Q = RNG.normal(scale=3.0, size=(4, 7))


def ref_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return special.rel_entr(p, q).sum(-1)


def ref_renyi(p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        terms = np.where(p > 0, p**alpha * q ** (1 - alpha), 0.0)
    return np.log(terms.sum(-1)) / (alpha - 1)


def ref_js(p: np.ndarray, q: np.ndarray, beta: float) -> np.ndarray:
    m = beta * p + (1 - beta) * q
    # A zero weight drops its term (0 · KL = 0 even where that KL is infinite).
    terms = [w * ref_kl(x, m) for w, x in ((beta, p), (1 - beta, q)) if w > 0]
    return sum(terms)


def check(backend, result, expected, rtol=1e-12):  # type: ignore[no-untyped-def]
    got = backend.to_numpy(result)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-300)


def test_kl_probs(backend) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.kl_div(backend.asarray(P), backend.asarray(Q))
    check(backend, out, ref_kl(P, Q))
    np.testing.assert_allclose(ref_kl(P, Q), stats.entropy(P, Q, axis=-1), rtol=1e-12)


def test_kl_logits_against_scipy_log_softmax(backend) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.kl_div(backend.asarray(LOGITS_P), backend.asarray(LOGITS_Q), kind="logits")
    p, q = special.softmax(LOGITS_P, -1), special.softmax(LOGITS_Q, -1)
    check(backend, out, ref_kl(p, q))


@pytest.mark.parametrize(("p_kind", "q_kind"), [("probs", "logits"), ("log_probs", "probs")])
def test_kl_mixed_kinds(backend, p_kind: str, q_kind: str) -> None:  # type: ignore[no-untyped-def]
    inputs = {
        "probs": (P, Q),
        "logits": (LOGITS_P, LOGITS_Q),
        "log_probs": (special.log_softmax(LOGITS_P, -1), special.log_softmax(LOGITS_Q, -1)),
    }
    probs_of = {
        "probs": (P, Q),
        "logits": (special.softmax(LOGITS_P, -1), special.softmax(LOGITS_Q, -1)),
        "log_probs": (special.softmax(LOGITS_P, -1), special.softmax(LOGITS_Q, -1)),
    }
    p, q = inputs[p_kind][0], inputs[q_kind][1]
    out = kldiv.kl_div(backend.asarray(p), backend.asarray(q), p_kind=p_kind, q_kind=q_kind)
    check(backend, out, ref_kl(probs_of[p_kind][0], probs_of[q_kind][1]))


def test_entropy(backend) -> None:  # type: ignore[no-untyped-def]
    check(backend, kldiv.entropy(backend.asarray(P)), stats.entropy(P, axis=-1))
    check(backend, kldiv.entropy(backend.asarray(P), base=2), stats.entropy(P, axis=-1, base=2))


def test_cross_entropy(backend) -> None:  # type: ignore[no-untyped-def]
    expected = -special.xlogy(P, Q).sum(-1)
    check(backend, kldiv.cross_entropy(backend.asarray(P), backend.asarray(Q)), expected)


def test_jeffreys(backend) -> None:  # type: ignore[no-untyped-def]
    q = _dirichlet((4, 7))
    p = _dirichlet((4, 7))
    check(
        backend, kldiv.jeffreys(backend.asarray(p), backend.asarray(q)), ref_kl(p, q) + ref_kl(q, p)
    )


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_js_div(backend, beta: float) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.js_div(backend.asarray(P), backend.asarray(Q), beta=beta)
    check(backend, out, ref_js(P, Q, beta), rtol=1e-11)


def test_js_matches_scipy_jensenshannon(backend) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.js_div(backend.asarray(P), backend.asarray(Q), base=2)
    check(backend, out, distance.jensenshannon(P, Q, axis=-1, base=2) ** 2, rtol=1e-10)


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8, 1.3, 2.0, 7.5])
def test_renyi(backend, alpha: float) -> None:  # type: ignore[no-untyped-def]
    out = kldiv.renyi_div(backend.asarray(P), backend.asarray(Q), alpha=alpha)
    check(backend, out, ref_renyi(P, Q, alpha))


def test_renyi_limits(backend) -> None:  # type: ignore[no-untyped-def]
    p, q = backend.asarray(P), backend.asarray(Q)
    check(backend, kldiv.renyi_div(p, q, alpha=1), ref_kl(P, Q))
    with np.errstate(divide="ignore"):
        expected = np.max(np.where(P > 0, np.log(P / Q), -np.inf), axis=-1)
    check(backend, kldiv.renyi_div(p, q, alpha=math.inf), expected)


def test_gaussian_kl(backend) -> None:  # type: ignore[no-untyped-def]
    m_p, lv_p, m_q, lv_q = RNG.normal(size=(4, 4, 5))
    var_p, var_q = np.exp(lv_p), np.exp(lv_q)
    expected = 0.5 * (np.log(var_q / var_p) + (var_p + (m_p - m_q) ** 2) / var_q - 1).sum(-1)
    args = [backend.asarray(a) for a in (m_p, lv_p, m_q, lv_q)]
    check(backend, kldiv.gaussian_kl(*args), expected)
    prior = 0.5 * (var_p + m_p**2 - 1 - lv_p).sum(-1)
    check(backend, kldiv.gaussian_kl(args[0], args[1]), prior)


def test_gaussian_kl_matches_torch_distributions() -> None:
    torch = pytest.importorskip("torch")
    m_p, lv_p, m_q, lv_q = (torch.as_tensor(a) for a in RNG.normal(size=(4, 3, 6)))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m_p, (0.5 * lv_p).exp()),
        torch.distributions.Normal(m_q, (0.5 * lv_q).exp()),
    ).sum(-1)
    got = kldiv.gaussian_kl(m_p, lv_p, m_q, lv_q)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_any_axis_and_keepdims(backend, axis: int) -> None:  # type: ignore[no-untyped-def]
    p = np.moveaxis(_dirichlet((3, 2, 5)), -1, axis)
    q = np.moveaxis(_dirichlet((3, 2, 5)), -1, axis)
    expected = special.rel_entr(p, q).sum(axis, keepdims=True)
    out = kldiv.kl_div(backend.asarray(p), backend.asarray(q), axis=axis, keepdims=True)
    assert tuple(out.shape) == expected.shape
    check(backend, out, expected)


def test_broadcasting_over_batches(backend) -> None:  # type: ignore[no-untyped-def]
    p = _dirichlet((7,))
    q = _dirichlet((3, 4, 7))
    out = kldiv.kl_div(backend.asarray(p), backend.asarray(q))
    assert tuple(out.shape) == (3, 4)
    check(backend, out, ref_kl(np.broadcast_to(p, q.shape), q))


@pytest.mark.parametrize("function", ["kl_div", "js_div", "jeffreys", "cross_entropy"])
def test_where_excludes_entries(backend, function: str) -> None:  # type: ignore[no-untyped-def]
    p, q = _dirichlet((4, 6)), _dirichlet((4, 6))
    keep = np.array([True, True, False, True, False, True])
    inner_p = p[:, keep] / p[:, keep].sum(-1, keepdims=True)
    inner_q = q[:, keep] / q[:, keep].sum(-1, keepdims=True)
    fn = getattr(kldiv, function)
    out = fn(backend.asarray(p), backend.asarray(q), where=backend.asarray(keep), normalize=True)
    expected = fn(inner_p, inner_q)
    check(backend, out, expected)


def test_where_masks_logits_like_minus_inf(backend) -> None:  # type: ignore[no-untyped-def]
    keep = np.array([True, False, True, True, True, False, True])
    masked_p = np.where(keep, LOGITS_P, -np.inf)
    masked_q = np.where(keep, LOGITS_Q, -np.inf)
    out = kldiv.kl_div(
        backend.asarray(LOGITS_P), backend.asarray(LOGITS_Q), kind="logits",
        where=backend.asarray(keep),
    )  # fmt: skip
    expected = ref_kl(special.softmax(masked_p, -1), special.softmax(masked_q, -1))
    check(backend, out, expected)


def test_normalize_matches_scipy_entropy(backend) -> None:  # type: ignore[no-untyped-def]
    p, q = RNG.uniform(size=(3, 9)), RNG.uniform(size=(3, 9))
    out = kldiv.kl_div(backend.asarray(p), backend.asarray(q), normalize=True)
    check(backend, out, stats.entropy(p, q, axis=-1))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_low_precision_dtypes(backend, dtype: str) -> None:  # type: ignore[no-untyped-def]
    if dtype == "bfloat16" and backend.name not in ("torch", "jax"):
        pytest.skip(f"{backend.name} has no bfloat16")
    if dtype == "float16" and backend.name == "array_api_strict":
        pytest.skip("array_api_strict has no float16")
    logits_p = backend.asarray(LOGITS_P, dtype=backend.dtype(dtype))
    logits_q = backend.asarray(LOGITS_Q, dtype=backend.dtype(dtype))
    out = kldiv.kl_div(logits_p, logits_q, kind="logits")
    assert out.dtype == logits_p.dtype
    # Rounding the logits to the dtype dominates: float32 1e-6, float16 2e-3, bfloat16 2e-2 relative.
    rtol = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 5e-2}[dtype]
    rounded_p = backend.to_numpy(logits_p).astype(np.float64)
    rounded_q = backend.to_numpy(logits_q).astype(np.float64)
    expected = ref_kl(special.softmax(rounded_p, -1), special.softmax(rounded_q, -1))
    check(backend, out, expected, rtol=rtol)
