"""Gradients through the core: finite wherever the value is finite, and correct (gradcheck)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kldiv

torch = pytest.importorskip("torch")

FUNCTIONS = {
    "kl_div": lambda p, q, **kw: kldiv.kl_div(p, q, **kw),
    "cross_entropy": lambda p, q, **kw: kldiv.cross_entropy(p, q, **kw),
    "jeffreys": lambda p, q, **kw: kldiv.jeffreys(p, q, **kw),
    "js_div": lambda p, q, **kw: kldiv.js_div(p, q, beta=0.3, **kw),
    "renyi_div": lambda p, q, **kw: kldiv.renyi_div(p, q, alpha=0.7, **kw),
    "renyi_div_2": lambda p, q, **kw: kldiv.renyi_div(p, q, alpha=2.0, **kw),
}


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradcheck_logits(name: str) -> None:
    a = _logits(3, 5, seed=1).requires_grad_()
    b = _logits(3, 5, seed=2).requires_grad_()
    fn = FUNCTIONS[name]
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, kind="logits"), (a, b))
    assert torch.autograd.gradgradcheck(lambda x, y: fn(x, y, kind="logits"), (a, b))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_gradcheck_probs(name: str) -> None:
    a = torch.softmax(_logits(2, 4, seed=3), -1).requires_grad_()
    b = torch.softmax(_logits(2, 4, seed=4), -1).requires_grad_()
    fn = FUNCTIONS[name]
    # Off the simplex the probabilities are not validated inside gradcheck's perturbations.
    assert torch.autograd.gradcheck(lambda x, y: fn(x, y, normalize=True), (a, b), atol=1e-6)


def test_gradcheck_gaussian_kl() -> None:
    args = [_logits(2, 3, seed=s).requires_grad_() for s in range(4)]
    assert torch.autograd.gradcheck(kldiv.gaussian_kl, tuple(args))
    assert torch.autograd.gradgradcheck(kldiv.gaussian_kl, tuple(args))


def test_entropy_gradcheck() -> None:
    a = _logits(2, 6, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: kldiv.entropy(x, kind="logits"), (a,))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_finite_gradients_at_zero_probabilities(name: str) -> None:
    p = torch.tensor([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.0, 0.5, 0.5], [0.25, 0.75, 0.0]], dtype=torch.float64, requires_grad=True)
    value = FUNCTIONS[name](p, q)
    assert torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(p.grad).all()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_finite_gradients_at_minus_inf_logits(name: str) -> None:
    inf = math.inf
    a = torch.tensor([[1.0, -inf, 0.5], [-inf, 2.0, -inf]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.0, -inf, 1.0], [-inf, 0.0, -inf]], dtype=torch.float64, requires_grad=True)
    value = FUNCTIONS[name](a, b, kind="logits")
    assert torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(a.grad).all()
    assert torch.isfinite(b.grad).all()
    assert a.grad[0, 1] == 0
    assert b.grad[1, 0] == 0


def test_torch_kl_div_nan_gradient_that_kldiv_avoids() -> None:
    """The pitfall kldiv removes: F.kl_div's target gradient is NaN at zero targets."""
    target = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    log_input = torch.log_softmax(torch.zeros(3, dtype=torch.float64), -1)
    torch.nn.functional.kl_div(log_input, target, reduction="sum").backward()
    assert torch.isnan(target.grad).any()
    target.grad = None
    kldiv.kl_div(target, log_input, q_kind="log_probs").backward()
    assert torch.isfinite(target.grad).all()


def test_kl_gradient_matches_analytic_formula() -> None:
    """∂KL(P‖softmax(z))/∂z = softmax(z) − p."""
    p = torch.softmax(_logits(4, 7, seed=6), -1)
    z = _logits(4, 7, seed=7).requires_grad_()
    kldiv.kl_div(p, z, q_kind="logits").sum().backward()
    torch.testing.assert_close(z.grad, torch.softmax(z.detach(), -1) - p, rtol=1e-12, atol=1e-14)


def test_jax_grad_finite_and_jit() -> None:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    p = jnp.asarray([[0.0, 0.25, 0.75]])
    logits = jnp.asarray([[0.3, -jnp.inf, 1.0]])

    def loss(z):  # type: ignore[no-untyped-def]
        return kldiv.kl_div(p, z, q_kind="logits").sum()

    grad = jax.grad(loss)(jnp.asarray([[0.1, 0.2, 0.3]]))
    expected = jax.nn.softmax(jnp.asarray([[0.1, 0.2, 0.3]]), -1) - p
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-12)
    jitted = jax.jit(lambda a, b: kldiv.js_div(a, b, kind="logits"))
    eager = kldiv.js_div(logits, logits * 2, kind="logits")
    np.testing.assert_allclose(
        np.asarray(jitted(logits, logits * 2)), np.asarray(eager), rtol=1e-12
    )
    jit_probs = jax.jit(lambda a, b: kldiv.kl_div(a, b))
    np.testing.assert_allclose(
        np.asarray(jit_probs(p, jnp.full((1, 3), 1 / 3))),
        np.asarray(kldiv.kl_div(p, jnp.full((1, 3), 1 / 3))),
        rtol=1e-12,
    )


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_torch_compile_has_no_graph_break() -> None:
    compiled = torch.compile(
        lambda a, b: kldiv.kl_div(a, b, kind="logits"), fullgraph=True, backend="eager"
    )
    a, b = _logits(2, 5, seed=8), _logits(2, 5, seed=9)
    torch.testing.assert_close(compiled(a, b), kldiv.kl_div(a, b, kind="logits"))
    probs = torch.compile(lambda a, b: kldiv.kl_div(a, b), fullgraph=True, backend="eager")
    pa, pb = torch.softmax(a, -1), torch.softmax(b, -1)
    torch.testing.assert_close(probs(pa, pb), kldiv.kl_div(pa, pb))
