"""The mathematical laws of the divergences, checked with hypothesis on NumPy float64."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kldiv

SIZE = st.integers(min_value=1, max_value=12)


@st.composite
def distributions(draw: st.DrawFn, size: int | None = None, zeros: bool = True) -> np.ndarray:
    n = draw(SIZE) if size is None else size
    weights = draw(arrays(np.float64, n, elements=st.floats(0.0 if zeros else 1e-3, 1.0)))
    assume(weights.sum() > 1e-3)
    return weights / weights.sum()


@st.composite
def pairs(
    draw: st.DrawFn, zeros: bool = True, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    n = draw(SIZE) if size is None else size
    p = draw(distributions(n, zeros=zeros))
    q = draw(distributions(n, zeros=False))
    return p, q


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_kl_nonnegative_and_zero_only_at_equality(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pq
    value = float(kldiv.kl_div(p, q))
    assert value >= -1e-15
    assert float(kldiv.kl_div(p, p)) == 0.0
    if not np.allclose(p, q, atol=1e-6):
        assert value > 0


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_cross_entropy_is_entropy_plus_kl(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pq
    lhs = float(kldiv.cross_entropy(p, q))
    rhs = float(kldiv.entropy(p)) + float(kldiv.kl_div(p, q))
    assert math.isclose(lhs, rhs, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(pairs(), st.randoms(use_true_random=False))
def test_permutation_invariance(pq: tuple[np.ndarray, np.ndarray], random) -> None:  # type: ignore[no-untyped-def]
    p, q = pq
    order = list(range(p.size))
    random.shuffle(order)
    for function in (kldiv.kl_div, kldiv.js_div, kldiv.jeffreys):
        assert math.isclose(
            float(function(p[order], q[order])), float(function(p, q)), rel_tol=1e-12, abs_tol=1e-14
        )


@settings(max_examples=100, deadline=None)
@given(pairs(), pairs())
def test_additive_over_independent_products(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> None:
    (p1, q1), (p2, q2) = a, b
    joint = float(kldiv.kl_div(np.outer(p1, p2).ravel(), np.outer(q1, q2).ravel()))
    assert math.isclose(
        joint,
        float(kldiv.kl_div(p1, q1)) + float(kldiv.kl_div(p2, q2)),
        rel_tol=1e-10,
        abs_tol=1e-12,
    )


@st.composite
def two_pairs(
    draw: st.DrawFn,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    n = draw(SIZE)
    return draw(pairs(size=n)), draw(pairs(size=n))


@settings(max_examples=100, deadline=None)
@given(two_pairs(), st.floats(0.0, 1.0))
def test_joint_convexity(
    ab: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]], t: float
) -> None:
    (p1, q1), (p2, q2) = ab
    mixed = float(kldiv.kl_div(t * p1 + (1 - t) * p2, t * q1 + (1 - t) * q2, normalize=True))
    bound = t * float(kldiv.kl_div(p1, q1)) + (1 - t) * float(kldiv.kl_div(p2, q2))
    assert mixed <= bound + 1e-10


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_jsd_symmetric_and_bounded(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pq
    forward, backward = float(kldiv.js_div(p, q)), float(kldiv.js_div(q, p))
    assert math.isclose(forward, backward, rel_tol=1e-12, abs_tol=1e-15)
    assert -1e-15 <= forward <= math.log(2) + 1e-15


@settings(max_examples=100, deadline=None)
@given(pairs(zeros=False), st.lists(st.floats(0.05, 20.0), min_size=2, max_size=5))
def test_renyi_nondecreasing_in_alpha(
    pq: tuple[np.ndarray, np.ndarray], alphas: list[float]
) -> None:
    p, q = pq
    values = [float(kldiv.renyi_div(p, q, alpha=a)) for a in sorted(alphas)]
    values.append(float(kldiv.renyi_div(p, q, alpha=math.inf)))
    assert all(x <= y + 1e-9 * max(1.0, abs(y)) for x, y in itertools.pairwise(values))


@settings(max_examples=100, deadline=None)
@given(pairs(zeros=False))
def test_renyi_tends_to_kl(pq: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pq
    kl = float(kldiv.kl_div(p, q))
    for alpha in (1 - 1e-6, 1 + 1e-6):
        assert math.isclose(
            float(kldiv.renyi_div(p, q, alpha=alpha)), kl, rel_tol=1e-4, abs_tol=1e-6
        )
    # D_α − KL is O(α − 1), so next to 1 the two agree to the last digits (no cancellation).
    for alpha in (1 - 2**-53, 1 - 1e-12, 1 + 1e-12):
        assert math.isclose(
            float(kldiv.renyi_div(p, q, alpha=alpha)), kl, rel_tol=1e-8, abs_tol=1e-14
        )


def test_renyi_next_to_one_found_by_hypothesis() -> None:
    p, q = np.array([0.5, 0.5]), np.array([2 / 3, 1 / 3])
    below = float(kldiv.renyi_div(p, q, alpha=0.9999999999999999))
    assert float(kldiv.renyi_div(p, q, alpha=0.5)) <= below
    assert math.isclose(below, float(kldiv.kl_div(p, q)), rel_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(pairs(), st.floats(1.01, 100.0))
def test_base_change_is_a_constant_factor(pq: tuple[np.ndarray, np.ndarray], base: float) -> None:
    p, q = pq
    for function in (kldiv.kl_div, kldiv.js_div, kldiv.cross_entropy):
        assert math.isclose(
            float(function(p, q, base=base)),
            float(function(p, q)) / math.log(base),
            rel_tol=1e-12,
            abs_tol=1e-15,
        )
