"""Every family at the edges of its parameter space, against the mathematical limit.

Rates 0, probabilities 0 and 1, zero trials and one-hot tables are point masses; each case is
run on kldiv's types, on frozen scipy.stats objects and on torch.distributions (where the
library accepts the parameters), and compared with the limit written out by hand. Continuous
families at zero width have no density in any of the three libraries and are refused with a
message that says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats as st

import kldiv.distributions as kd
from kldiv.distributions import kl

torch = pytest.importorskip("torch")
td = torch.distributions


def _t(value: Any) -> Any:
    return torch.tensor(value, dtype=torch.float64)


@dataclass(frozen=True)
class Edge:
    name: str
    expected: float
    kldiv: Callable[[], tuple[Any, Any]] | None
    scipy: Callable[[], tuple[Any, Any]] | None
    torch: Callable[[], tuple[Any, Any]] | None


INF = math.inf
EDGES = [
    Edge(
        "poisson0_poisson1",
        1.0,
        lambda: (kd.Poisson(0.0), kd.Poisson(1.0)),
        lambda: (st.poisson(0.0), st.poisson(1.0)),
        lambda: (td.Poisson(_t(0.0)), td.Poisson(_t(1.0))),
    ),
    Edge(
        "poisson0_poisson2.5",
        2.5,
        lambda: (kd.Poisson(0.0), kd.Poisson(2.5)),
        lambda: (st.poisson(0.0), st.poisson(2.5)),
        lambda: (td.Poisson(_t(0.0)), td.Poisson(_t(2.5))),
    ),
    Edge(
        "poisson0_poisson0",
        0.0,
        lambda: (kd.Poisson(0.0), kd.Poisson(0.0)),
        lambda: (st.poisson(0.0), st.poisson(0.0)),
        lambda: (td.Poisson(_t(0.0)), td.Poisson(_t(0.0))),
    ),
    Edge(
        "poisson1.5_poisson0",
        INF,
        lambda: (kd.Poisson(1.5), kd.Poisson(0.0)),
        lambda: (st.poisson(1.5), st.poisson(0.0)),
        lambda: (td.Poisson(_t(1.5)), td.Poisson(_t(0.0))),
    ),
    Edge(
        "bernoulli0_bernoulli0.3",
        -math.log(0.7),
        lambda: (kd.Bernoulli(0.0), kd.Bernoulli(0.3)),
        lambda: (st.bernoulli(0.0), st.bernoulli(0.3)),
        lambda: (td.Bernoulli(_t(0.0)), td.Bernoulli(_t(0.3))),
    ),
    Edge(
        "bernoulli1_bernoulli0.3",
        -math.log(0.3),
        lambda: (kd.Bernoulli(1.0), kd.Bernoulli(0.3)),
        lambda: (st.bernoulli(1.0), st.bernoulli(0.3)),
        lambda: (td.Bernoulli(_t(1.0)), td.Bernoulli(_t(0.3))),
    ),
    Edge(
        "bernoulli0.3_bernoulli0",
        INF,
        lambda: (kd.Bernoulli(0.3), kd.Bernoulli(0.0)),
        lambda: (st.bernoulli(0.3), st.bernoulli(0.0)),
        lambda: (td.Bernoulli(_t(0.3)), td.Bernoulli(_t(0.0))),
    ),
    Edge(
        "bernoulli0.3_bernoulli1",
        INF,
        lambda: (kd.Bernoulli(0.3), kd.Bernoulli(1.0)),
        lambda: (st.bernoulli(0.3), st.bernoulli(1.0)),
        lambda: (td.Bernoulli(_t(0.3)), td.Bernoulli(_t(1.0))),
    ),
    Edge(
        "bernoulli1_bernoulli1",
        0.0,
        lambda: (kd.Bernoulli(1.0), kd.Bernoulli(1.0)),
        lambda: (st.bernoulli(1.0), st.bernoulli(1.0)),
        lambda: (td.Bernoulli(_t(1.0)), td.Bernoulli(_t(1.0))),
    ),
    Edge(
        "binomial10,0_binomial10,0.3",
        -10 * math.log(0.7),
        lambda: (kd.Binomial(10, 0.0), kd.Binomial(10, 0.3)),
        lambda: (st.binom(10, 0.0), st.binom(10, 0.3)),
        lambda: (td.Binomial(10, _t(0.0)), td.Binomial(10, _t(0.3))),
    ),
    Edge(
        "binomial10,1_binomial10,0.3",
        -10 * math.log(0.3),
        lambda: (kd.Binomial(10, 1.0), kd.Binomial(10, 0.3)),
        lambda: (st.binom(10, 1.0), st.binom(10, 0.3)),
        lambda: (td.Binomial(10, _t(1.0)), td.Binomial(10, _t(0.3))),
    ),
    Edge(
        "binomial10,0.4_binomial10,1",
        INF,
        lambda: (kd.Binomial(10, 0.4), kd.Binomial(10, 1.0)),
        lambda: (st.binom(10, 0.4), st.binom(10, 1.0)),
        lambda: (td.Binomial(10, _t(0.4)), td.Binomial(10, _t(1.0))),
    ),
    Edge(
        # P has more trials than Q but all its mass at 0, which Q covers: −log q(0).
        "binomial10,0_binomial5,0.3",
        -5 * math.log(0.7),
        lambda: (kd.Binomial(10, 0.0), kd.Binomial(5, 0.3)),
        lambda: (st.binom(10, 0.0), st.binom(5, 0.3)),
        lambda: (td.Binomial(10, _t(0.0)), td.Binomial(5, _t(0.3))),
    ),
    Edge(
        "binomial10,1_binomial5,0.3",
        INF,
        lambda: (kd.Binomial(10, 1.0), kd.Binomial(5, 0.3)),
        lambda: (st.binom(10, 1.0), st.binom(5, 0.3)),
        lambda: (td.Binomial(10, _t(1.0)), td.Binomial(5, _t(0.3))),
    ),
    Edge(
        "binomial0_binomial0",
        0.0,
        lambda: (kd.Binomial(0, 0.5), kd.Binomial(0, 0.3)),
        lambda: (st.binom(0, 0.5), st.binom(0, 0.3)),
        lambda: (td.Binomial(0, _t(0.5)), td.Binomial(0, _t(0.3))),
    ),
    Edge(
        # Zero trials (fewer than Q's): the point mass at 0, summed over P's support.
        "binomial0_binomial5,0.3",
        -5 * math.log(0.7),
        lambda: (kd.Binomial(0, 0.5), kd.Binomial(5, 0.3)),
        lambda: (st.binom(0, 0.5), st.binom(5, 0.3)),
        lambda: (td.Binomial(0, _t(0.5)), td.Binomial(5, _t(0.3))),
    ),
    Edge(
        "geometric1_geometric0.3",
        -math.log(0.3),
        lambda: (kd.Geometric(1.0), kd.Geometric(0.3)),
        lambda: (st.geom(1.0), st.geom(0.3)),
        lambda: (td.Geometric(_t(1.0)), td.Geometric(_t(0.3))),
    ),
    Edge(
        "geometric1_geometric1",
        0.0,
        lambda: (kd.Geometric(1.0), kd.Geometric(1.0)),
        lambda: (st.geom(1.0), st.geom(1.0)),
        lambda: (td.Geometric(_t(1.0)), td.Geometric(_t(1.0))),
    ),
    Edge(
        "geometric0.3_geometric1",
        INF,
        lambda: (kd.Geometric(0.3), kd.Geometric(1.0)),
        lambda: (st.geom(0.3), st.geom(1.0)),
        lambda: (td.Geometric(_t(0.3)), td.Geometric(_t(1.0))),
    ),
    Edge(
        "categorical_onehot",
        -math.log(0.2),
        lambda: (kd.Categorical([1.0, 0.0, 0.0]), kd.Categorical([0.2, 0.3, 0.5])),
        None,
        lambda: (td.Categorical(_t([1.0, 0.0, 0.0])), td.Categorical(_t([0.2, 0.3, 0.5]))),
    ),
    Edge(
        "categorical_zero_in_p",
        0.4 * math.log(0.4 / 0.4) + 0.6 * math.log(0.6 / 0.5),
        lambda: (kd.Categorical([0.0, 0.4, 0.6]), kd.Categorical([0.1, 0.4, 0.5])),
        None,
        lambda: (td.Categorical(_t([0.0, 0.4, 0.6])), td.Categorical(_t([0.1, 0.4, 0.5]))),
    ),
    Edge(
        "categorical_zero_in_q",
        INF,
        lambda: (kd.Categorical([0.5, 0.5, 0.0]), kd.Categorical([0.0, 0.5, 0.5])),
        None,
        lambda: (td.Categorical(_t([0.5, 0.5, 0.0])), td.Categorical(_t([0.0, 0.5, 0.5]))),
    ),
    Edge(
        "multinomial_zero_trials",
        0.0,
        lambda: (kd.Multinomial(0, [1.0, 0.0]), kd.Multinomial(0, [0.5, 0.5])),
        lambda: (st.multinomial(0, [1.0, 0.0]), st.multinomial(0, [0.5, 0.5])),
        lambda: (td.Multinomial(0, _t([1.0, 0.0])), td.Multinomial(0, _t([0.5, 0.5]))),
    ),
    Edge(
        "multinomial_onehot",
        3 * math.log(2.0),
        lambda: (kd.Multinomial(3, [1.0, 0.0]), kd.Multinomial(3, [0.5, 0.5])),
        lambda: (st.multinomial(3, [1.0, 0.0]), st.multinomial(3, [0.5, 0.5])),
        lambda: (td.Multinomial(3, _t([1.0, 0.0])), td.Multinomial(3, _t([0.5, 0.5]))),
    ),
    Edge(
        # Concentration 0 is the uniform law on the circle: KL = log I₀(κ_q).
        "vonmises0_vonmises2",
        math.log(scipy.special.i0(2.0)),
        lambda: (kd.VonMises(0.0, 0.0), kd.VonMises(1.0, 2.0)),
        lambda: (st.vonmises(0.0), st.vonmises(2.0, loc=1.0)),
        None,  # torch requires concentration > 0
    ),
    Edge(
        "vonmises0_vonmises0",
        0.0,
        lambda: (kd.VonMises(0.3, 0.0), kd.VonMises(1.0, 0.0)),
        lambda: (st.vonmises(0.0, loc=0.3), st.vonmises(0.0, loc=1.0)),
        None,
    ),
    Edge(
        "bernoulli0_poisson0",
        0.0,
        lambda: (kd.Bernoulli(0.0), kd.Poisson(0.0)),
        lambda: (st.bernoulli(0.0), st.poisson(0.0)),
        lambda: (td.Bernoulli(_t(0.0)), td.Poisson(_t(0.0))),
    ),
    Edge(
        "bernoulli0_poisson2",
        2.0,
        lambda: (kd.Bernoulli(0.0), kd.Poisson(2.0)),
        lambda: (st.bernoulli(0.0), st.poisson(2.0)),
        lambda: (td.Bernoulli(_t(0.0)), td.Poisson(_t(2.0))),
    ),
    Edge(
        "bernoulli1_poisson0",
        INF,
        lambda: (kd.Bernoulli(1.0), kd.Poisson(0.0)),
        lambda: (st.bernoulli(1.0), st.poisson(0.0)),
        lambda: (td.Bernoulli(_t(1.0)), td.Poisson(_t(0.0))),
    ),
    Edge(
        # No closed form across families: summed over P's single point.
        "poisson0_binomial4,0.5",
        4 * math.log(2.0),
        lambda: (kd.Poisson(0.0), kd.Binomial(4, 0.5)),
        lambda: (st.poisson(0.0), st.binom(4, 0.5)),
        lambda: (td.Poisson(_t(0.0)), td.Binomial(4, _t(0.5))),
    ),
    Edge(
        "poisson0_geometric0.5",
        math.log(2.0),
        lambda: (kd.Poisson(0.0), kd.Geometric(0.5)),
        lambda: (st.poisson(0.0), st.geom(0.5, loc=-1)),
        lambda: (td.Poisson(_t(0.0)), td.Geometric(_t(0.5))),
    ),
    Edge(
        "poisson2_bernoulli0.5",
        INF,
        lambda: (kd.Poisson(2.0), kd.Bernoulli(0.5)),
        lambda: (st.poisson(2.0), st.bernoulli(0.5)),
        lambda: (td.Poisson(_t(2.0)), td.Bernoulli(_t(0.5))),
    ),
]

CASES = [
    pytest.param(edge, source, id=f"{edge.name}-{source}")
    for edge in EDGES
    for source in ("kldiv", "scipy", "torch")
    if getattr(edge, source) is not None
]


@pytest.mark.parametrize(("edge", "source"), CASES)
def test_edge_matches_the_limit(edge: Edge, source: str) -> None:
    build = getattr(edge, source)
    p, q = build()
    result = kl(p, q)
    value = float(result)
    if math.isinf(edge.expected):
        assert value == INF, result
    else:
        # Closed forms and sums over P's support: rounding only.
        assert value == pytest.approx(edge.expected, rel=1e-12, abs=1e-15), result
    if source == "torch":
        assert isinstance(result.value, torch.Tensor)
        assert result.value.dtype == torch.float64


def _grad(value: Any, leaf: Any) -> float:
    (gradient,) = torch.autograd.grad(value, [leaf])
    return float(gradient)


GRADIENTS = [
    # (name, P and Q from the leaf, the leaf's value, d KL / d leaf written out)
    ("poisson0_rate_q", lambda x: (td.Poisson(_t(0.0)), td.Poisson(x)), 2.5, lambda x: 1.0),
    (
        "bernoulli0_probs_q",
        lambda x: (td.Bernoulli(_t(0.0)), td.Bernoulli(x)),
        0.3,
        lambda x: 1 / (1 - x),
    ),
    (
        "bernoulli1_probs_q",
        lambda x: (td.Bernoulli(_t(1.0)), td.Bernoulli(x)),
        0.3,
        lambda x: -1 / x,
    ),
    (
        "binomial0_probs_q",
        lambda x: (td.Binomial(10, _t(0.0)), td.Binomial(10, x)),
        0.3,
        lambda x: 10 / (1 - x),
    ),
    (
        "binomial0_more_trials_probs_q",
        lambda x: (td.Binomial(10, _t(0.0)), td.Binomial(5, x)),
        0.3,
        lambda x: 5 / (1 - x),
    ),
    (
        "geometric1_probs_q",
        lambda x: (td.Geometric(_t(1.0)), td.Geometric(x)),
        0.3,
        lambda x: -1 / x,
    ),
    (
        "poisson0_geometric_probs_q",
        lambda x: (td.Poisson(_t(0.0)), td.Geometric(x)),
        0.5,
        lambda x: -1 / x,
    ),
]


@pytest.mark.parametrize(
    ("build", "at", "derivative"), [g[1:] for g in GRADIENTS], ids=[g[0] for g in GRADIENTS]
)
def test_gradient_at_the_edge_is_the_limit_derivative(
    build: Callable[[Any], tuple[Any, Any]], at: float, derivative: Callable[[float], float]
) -> None:
    leaf = torch.tensor(at, dtype=torch.float64, requires_grad=True)
    p, q = build(leaf)
    assert _grad(kl(p, q).value, leaf) == pytest.approx(derivative(at), rel=1e-10)


def test_categorical_onehot_gradient_through_torch_normalization() -> None:
    # KL(δ₀‖Categorical(q / Σq)) = −log(q₀/Σq): d/dq₀ = −1/q₀ + 1/Σq, d/dq_j = 1/Σq.
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    value = kl(td.Categorical(_t([1.0, 0.0, 0.0])), td.Categorical(q)).value
    (gradient,) = torch.autograd.grad(value, [q])
    torch.testing.assert_close(gradient, _t([-1 / 0.2 + 1.0, 1.0, 1.0]), rtol=1e-12, atol=0)


def test_batched_edges_broadcast_with_interior_entries() -> None:
    rates = _t([0.0, 0.5, 2.0])
    result = kl(td.Poisson(rates[:, None]), td.Poisson(_t([1.0, 3.0])))
    rate_p, rate_q = np.array([0.0, 0.5, 2.0])[:, None], np.array([1.0, 3.0])
    expected = scipy.special.xlogy(rate_p, rate_p / rate_q) - rate_p + rate_q
    assert result.value.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-14)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: kd.Normal(0.0, 0.0),
            r"scale has the entry 0\.0; it must be > 0 \(a zero width is a point mass",
        ),
        (lambda: kd.Laplace(1.0, 0.0), r"scale has the entry 0\.0; it must be > 0 \(a zero width"),
        (lambda: kd.Uniform(1.0, 1.0), r"Uniform needs low < high in every entry \(a zero width"),
        (lambda: kd.Poisson(-0.5), r"rate has the entry -0\.5; it must be >= 0"),
        (lambda: kd.VonMises(0.0, -1.0), r"concentration has the entry -1\.0; it must be >= 0"),
        (
            lambda: kd.Geometric(0.0),
            r"Geometric probs has the entry 0\.0; it must be > 0 \(with probs 0",
        ),
        (
            lambda: kd.Bernoulli(1.5),
            r"probs has the entry 1\.5; probabilities must lie in \[0, 1\]",
        ),
        (lambda: kd.Binomial(2.5, 0.5), r"Binomial total_count must hold non-negative integers"),
        (lambda: kd.Poisson(_t(float("nan"))), r"parameter rate contains NaN"),
    ],
    ids=[
        "normal",
        "laplace",
        "uniform",
        "poisson",
        "vonmises",
        "geometric",
        "bernoulli",
        "binomial",
        "nan_tensor",
    ],
)
def test_outside_the_family_is_refused_with_the_reason(
    build: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build()
