"""``kl``: KL(P‖Q) between two distributions, exact where a closed form exists, else numerical."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from kldiv._result import KLResult
from kldiv.distributions import _fallbacks, _torch_fallbacks
from kldiv.distributions._mixture import Mixture, upper_bound, variational
from kldiv.distributions._ops import as_array, is_tensor, where
from kldiv.distributions._registry import NoClosedForm, lookup, registered_pairs
from kldiv.distributions._scipy import Reading, align_tables, is_scipy, read_scipy
from kldiv.distributions._torch import is_torch, read_torch
from kldiv.distributions._types import Distribution, Float64Array
from kldiv.distributions._types_multivariate import _Gaussian

__all__ = ["METHODS", "kl", "kl_divergence"]

METHODS = ("auto", "exact", "quadrature", "monte_carlo", "variational", "bound")


def kl(
    p: Any,
    q: Any,
    *,
    method: str = "auto",
    n_samples: int = 100_000,
    seed: int | np.random.Generator | None = None,
) -> KLResult:
    r"""KL(P‖Q) in nats between two distributions, with its standard error and method.

    $$
    \mathrm{KL}(P\,\|\,Q) = \int p(x) \log\frac{p(x)}{q(x)}\,dx
    $$

    ``method="auto"`` returns, in this order of preference: +inf when P puts mass where Q has
    none (supports compared, or a discrete P against a continuous Q); the registered closed
    form ("exact"); for torch pairs kldiv cannot read, torch's own ``kl_divergence``; for
    univariate pairs, quadrature or summation over P's support ("quadrature", with the
    integrator's error bound); otherwise Monte Carlo over ``n_samples`` draws of P
    ("monte_carlo"). Parameters on the edge of their family (Poisson rate 0, probabilities 0
    and 1, zero trials, von Mises concentration 0) give the limit, +inf where P's mass lies
    outside Q's support.

    **torch inputs.** With a ``torch.distributions`` object on either side the value is a
    tensor in the autograd graph, with the batch shape, dtype and device
    ``torch.distributions.kl_divergence`` would give: the closed forms run on the tensors
    themselves, quadrature uses a fixed double-exponential rule on P's support (deterministic,
    differentiable, nodes following P's parameters), and Monte Carlo uses ``rsample`` where P
    has it (the score-function gradient otherwise, k1 estimator). ``result.value`` is that
    tensor (``result.value.sum().backward()``); `kl_divergence` returns it directly.

    Monte Carlo without a ``seed`` draws one, warns (``UserWarning``) with the seed to pass to
    reproduce the value, and records it in ``result.params["seed"]``.

    Args:
        p: P: a frozen ``scipy.stats`` distribution, a ``torch.distributions`` object, one of
            kldiv's types (``Normal``, ``MultivariateNormal``, ...), a `Mixture`, or an
            object of a type registered with `register_kl`. Batched parameters broadcast.
        q: Q, as for ``p``.
        method: "auto", "exact", "quadrature", "monte_carlo", or for mixtures
            "variational" (Hershey–Olsen approximation) or "bound" (their upper bound).
        n_samples: number of draws of P for Monte Carlo.
        seed: seed or ``numpy.random.Generator`` making Monte Carlo reproducible.

    Returns:
        `KLResult`: ``float(result)`` or ``numpy.asarray(result)`` (batch shape) is
        the value in nats; ``result.value`` is a float, a float64 array, or for torch inputs a
        tensor in the graph; ``result.stderr`` is 0 except for Monte Carlo.

    Raises:
        TypeError: if an argument is not a distribution kldiv can read, if method="exact"
            and no closed form is registered (the message lists the registered pairs), or if
            a torch object meets a non-torch one without a closed form between them.
        ValueError: for an unknown method, n_samples < 2, parameters outside their family,
            or scipy objects whose loc/scale make the closed form inapplicable under
            method="exact".

    Examples:
        >>> import scipy.stats
        >>> float(kl(scipy.stats.norm(0, 1), scipy.stats.norm(1, 2)))
        0.4431471805599453
        >>> kl(scipy.stats.expon(), scipy.stats.norm()).method
        'exact'
        >>> result = kl(scipy.stats.t(5), scipy.stats.norm())   # no closed form
        >>> result.method, round(float(result), 6)
        ('quadrature', 0.124769)
        >>> float(kl(scipy.stats.poisson(0), scipy.stats.poisson(1)))   # point mass at 0
        1.0
        >>> import torch
        >>> loc = torch.tensor(1.0, requires_grad=True)
        >>> result = kl(torch.distributions.Normal(loc, 1.0), torch.distributions.Normal(0.0, 1.0))
        >>> result.value
        tensor(0.5000, grad_fn=<ExpandBackward0>)
        >>> result.value.backward()
        >>> loc.grad
        tensor(1.)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if isinstance(p, Mixture) or isinstance(q, Mixture):
        return _kl_mixture(p, q, method=method, n_samples=int(n_samples), seed=seed)
    if method in ("variational", "bound"):
        raise ValueError(f"method={method!r} applies to Mixture arguments only; use 'auto'")
    like = next(
        (
            value
            for x in (p, q)
            if isinstance(x, Distribution)
            for value in x.parameters().values()
            if is_tensor(value)
        ),
        None,
    )
    if like is not None and not (is_torch(p) or is_torch(q)):
        # kldiv types built with tensors: every parameter a tensor, so the formula runs in torch.
        p = p.as_tensors(like) if isinstance(p, Distribution) else p
        q = q.as_tensors(like) if isinstance(q, Distribution) else q
    reading_p, reading_q = _read(p, "p"), _read(q, "q")
    if like is not None and not (is_torch(p) or is_torch(q)):
        reading_p, reading_q = _as_tensors(reading_p, like), _as_tensors(reading_q, like)
    if is_torch(p) or is_torch(q):
        return _kl_torch(
            p, q, reading_p, reading_q, method=method, n_samples=int(n_samples), seed=seed
        )
    batch_shape = np.broadcast_shapes(_batch_shape(p, reading_p), _batch_shape(q, reading_q))
    outside = _outside_support(p, q)
    if method in ("auto", "exact"):
        if outside is not None and np.all(outside):
            return _exact_result(np.full(batch_shape, np.inf))
        value, reason = _closed_form(p, q, reading_p, reading_q)
        if is_tensor(value):
            # kldiv types built with tensor parameters: the tensor, as for torch inputs.
            if outside is not None and np.any(outside):
                value = where(outside, math.inf, value)
            return _torch_exact(value, tuple(batch_shape))
        if value is not None:
            if outside is not None:
                value = np.where(outside, np.inf, value)
            return _exact_result(np.broadcast_to(value, batch_shape))
        if method == "exact":
            error = TypeError if reason.startswith("no closed form") else ValueError
            raise error(f"{reason}. Use method='auto' for a numerical value.")
    univariate = _is_univariate(p, q)
    if method == "quadrature" and not univariate:
        raise ValueError(
            "method='quadrature' needs univariate P and Q with known supports; "
            "use method='monte_carlo'"
        )
    if method == "quadrature" or (method == "auto" and univariate):
        return _fallbacks.quadrature(p, q, batch_shape)
    return _fallbacks.monte_carlo(
        p,
        q,
        batch_shape,
        n_samples=int(n_samples),
        seed=resolve_seed(seed, int(n_samples)),
        k3_applies=_q_inside_p(p, q, reading_p, reading_q),
    )


def kl_divergence(
    p: Any,
    q: Any,
    *,
    method: str = "auto",
    n_samples: int = 100_000,
    seed: int | np.random.Generator | None = None,
) -> Any:
    """Drop-in for ``torch.distributions.kl_divergence``: KL(P‖Q) as a tensor in the graph.

    Returns what ``td.kl_divergence(p, q)`` returns where torch has a closed form (same value
    to rounding, same batch shape, dtype and gradient), and goes on where torch raises
    ``NotImplementedError``: quadrature for univariate pairs, else Monte Carlo with
    ``rsample``. Edge parameters (Poisson rate 0, Binomial probs 0 or 1, Geometric probs 1)
    give their limits where torch's formulas give NaN. Use `kl` for the method,
    the standard error and the quadrature error bound.

    Args:
        p: P, a ``torch.distributions`` object (or, with Q one, a kldiv type or scipy object
            that has a closed form against it).
        q: Q, as for ``p``.
        method: as for `kl`.
        n_samples: draws of P if Monte Carlo is used.
        seed: seed of those draws; without one a warning names the seed that was drawn.

    Returns:
        ``torch.Tensor`` of the broadcast batch shape, in the autograd graph.

    Raises:
        TypeError: if neither argument is a ``torch.distributions`` object.

    Examples:
        >>> import torch
        >>> loc = torch.tensor([0.0, 1.0], requires_grad=True)
        >>> p = torch.distributions.Normal(loc, 1.0)
        >>> value = kl_divergence(p, torch.distributions.Normal(0.0, 1.0))
        >>> value
        tensor([0.0000, 0.5000], grad_fn=<ExpandBackward0>)
        >>> value.sum().backward()
        >>> loc.grad
        tensor([0., 1.])
    """
    if not (is_torch(p) or is_torch(q)):
        raise TypeError(
            f"kl_divergence takes torch.distributions objects, got {_describe(p)} and "
            f"{_describe(q)}; use kldiv.distributions.kl for other distributions"
        )
    return kl(p, q, method=method, n_samples=n_samples, seed=seed).value


def resolve_seed(seed: int | np.random.Generator | None, n_samples: int) -> Any:
    """The seed Monte Carlo runs with; for ``None`` a fresh one, named in a warning."""
    if seed is not None:
        return seed
    drawn = int(np.random.SeedSequence().entropy % 2**32)  # type: ignore[operator]
    warnings.warn(
        f"kl fell back to Monte Carlo ({n_samples} draws) without a seed, so the value changes "
        f"from call to call; pass seed={drawn} to reproduce this one (result.params['seed'])",
        UserWarning,
        stacklevel=3,
    )
    return drawn


def _kl_torch(
    p: Any,
    q: Any,
    reading_p: Reading | None,
    reading_q: Reading | None,
    *,
    method: str,
    n_samples: int,
    seed: int | np.random.Generator | None,
) -> KLResult:
    """KL with a torch distribution on either side: a tensor in the autograd graph."""
    import torch

    like = _torch_fallbacks.floating(p if is_torch(p) else q)
    readings = [_as_tensors(r, like) for r in (reading_p, reading_q)]
    sides = [
        x if r is None or not is_torch(x) else r.natural
        for x, r in zip((p, q), readings, strict=True)
    ]
    batch_shape = tuple(
        np.broadcast_shapes(
            _batch_shape(sides[0], readings[0]), _batch_shape(sides[1], readings[1])
        )
    )
    if method in ("auto", "exact"):
        if is_torch(p) and is_torch(q):
            outside = _torch_fallbacks.outside_support(p, q)
        else:
            detached = [x.detached() if isinstance(x, Distribution) else x for x in sides]
            outside = _outside_support(*detached)
        if outside is not None and np.all(outside):
            infinite = torch.full(batch_shape, math.inf, dtype=like.dtype, device=like.device)
            return _torch_exact(infinite, batch_shape)
        value: Any
        value, reason = _closed_form(sides[0], sides[1], readings[0], readings[1])
        if value is None and is_torch(p) and is_torch(q):
            value = _torch_closed_form(p, q)
            if (
                value is not None
                and method == "auto"
                and p.support.is_discrete
                and _torch_fallbacks.is_univariate(p, q)
                and not bool(torch.isfinite(value).all())
            ):
                # torch registers +inf for discrete pairs whose supports differ
                # (Poisson‖Binomial) without looking at where P has mass (Poisson(0) is the
                # point mass at 0): the sum over P's support decides instead.
                value = None
        if value is not None:
            value = as_array(value, like)
            if outside is not None and np.any(outside):
                value = torch.where(torch.as_tensor(outside, device=like.device), math.inf, value)
            return _torch_exact(value, batch_shape)
        if method == "exact":
            error = TypeError if reason.startswith("no closed form") else ValueError
            raise error(f"{reason}. Use method='auto' for a numerical value.")
    if not (is_torch(p) and is_torch(q)):
        raise TypeError(
            f"KL({_describe(p)}‖{_describe(q)}) has no closed form, and the numerical methods "
            "need both sides as torch.distributions objects (to stay in the autograd graph); "
            "pass Q as a torch.distributions object too, or both as scipy.stats objects"
        )
    univariate = _torch_fallbacks.is_univariate(p, q)
    if method == "quadrature" and not univariate:
        raise ValueError(
            f"method='quadrature' needs univariate P and Q with supports torch names; got "
            f"event shapes {tuple(p.event_shape)} and {tuple(q.event_shape)} and supports "
            f"{p.support} and {q.support}; use method='monte_carlo'"
        )
    if method == "quadrature" or (method == "auto" and univariate):
        return _torch_fallbacks.quadrature(p, q)
    chosen = resolve_seed(seed, n_samples)
    if isinstance(chosen, np.random.Generator):
        chosen = int(chosen.integers(2**32))
    return _torch_fallbacks.monte_carlo(p, q, n_samples=n_samples, seed=int(chosen))


def _as_tensors(reading: Reading | None, like: Any) -> Reading | None:
    if reading is None or reading.table_values is not None:
        return reading
    return dataclasses.replace(reading, natural=reading.natural.as_tensors(like))


def _torch_exact(value: Any, batch_shape: tuple[int, ...]) -> KLResult:
    import torch

    value = torch.broadcast_to(value, batch_shape)
    return KLResult(value=value, stderr=torch.zeros_like(value.detach()), method="exact")


def _exact_result(value: Float64Array) -> KLResult:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return KLResult(value=float(array), stderr=0.0, method="exact")
    return KLResult(value=array.copy(), stderr=np.zeros(array.shape), method="exact")


def _read(obj: Any, name: str) -> Reading | None:
    if isinstance(obj, Distribution):
        return Reading(obj, np.zeros(()), np.ones(()))
    if is_scipy(obj):
        return read_scipy(obj)
    if is_torch(obj):
        natural = read_torch(obj)
        return None if natural is None else Reading(natural, np.zeros(()), np.ones(()))
    if _registered(type(obj)) or hasattr(obj, "logpdf") or hasattr(obj, "logpmf"):
        return None
    raise TypeError(
        f"{name} is a {type(obj).__name__}; kl takes frozen scipy.stats distributions "
        "(e.g. scipy.stats.norm(0, 1)), torch.distributions objects, kldiv.distributions "
        "types, Mixture, or types registered with register_kl"
    )


def _registered(cls: type) -> bool:
    return any(issubclass(cls, pair[0]) or issubclass(cls, pair[1]) for pair in registered_pairs())


def _batch_shape(obj: Any, reading: Reading | None) -> tuple[int, ...]:
    if reading is not None:
        return tuple(
            np.broadcast_shapes(
                reading.natural.batch_shape, reading.shift.shape, reading.stretch.shape
            )
        )
    if is_torch(obj):
        return tuple(obj.batch_shape)
    if hasattr(obj, "args") and hasattr(obj, "kwds"):
        return tuple(np.broadcast_shapes(*(np.shape(a) for a in (*obj.args, *obj.kwds.values()))))
    return ()


def _is_univariate(p: Any, q: Any) -> bool:
    return all(_fallbacks.support(_as_density(x)) is not None and not is_torch(x) for x in (p, q))


def _as_density(obj: Any) -> Any:
    if isinstance(obj, Distribution):
        # Only univariate types have an interval support worth comparing.
        return obj.detached().to_scipy() if obj.event_ndim == 0 else None
    return obj


def _describe(obj: Any) -> str:
    dist = getattr(obj, "dist", None)
    if is_scipy(obj) and dist is not None and hasattr(dist, "name"):
        return f"scipy.stats.{dist.name}"
    return type(obj).__name__


def _outside_support(p: Any, q: Any) -> Float64Array | None:
    """Where P has mass outside Q's support (KL = +inf), for univariate pairs; else None."""
    if is_torch(p) or is_torch(q):
        return None
    bounds_p, bounds_q = _fallbacks.support(_as_density(p)), _fallbacks.support(_as_density(q))
    if bounds_p is None or bounds_q is None:
        return None
    if _fallbacks.is_discrete(p) != _fallbacks.is_discrete(q):
        # Atoms of a discrete P have probability zero under a continuous Q, and vice versa.
        return np.ones(np.broadcast_shapes(bounds_p[0].shape, bounds_q[0].shape), dtype=bool)
    if _fallbacks.is_discrete(p):
        # A discrete law's support interval can be wider than where it has mass (Poisson(0),
        # Binomial(n, 0)): the closed forms and the sum over P's points decide instead.
        return None
    return np.asarray((bounds_p[0] < bounds_q[0]) | (bounds_p[1] > bounds_q[1]))


def _q_inside_p(p: Any, q: Any, reading_p: Reading | None, reading_q: Reading | None) -> bool:
    """Whether E_P[q/p] = 1, which k3 needs: Q's support inside P's."""
    gaussians = [r is not None and isinstance(r.natural, _Gaussian) for r in (reading_p, reading_q)]
    if all(gaussians):
        return True
    if is_torch(p) or is_torch(q):
        return False
    bounds_p, bounds_q = _fallbacks.support(_as_density(p)), _fallbacks.support(_as_density(q))
    if bounds_p is None or bounds_q is None:
        return False
    return bool(np.all((bounds_q[0] >= bounds_p[0]) & (bounds_q[1] <= bounds_p[1])))


def _closed_form(
    p: Any, q: Any, reading_p: Reading | None, reading_q: Reading | None
) -> tuple[Float64Array | None, str]:
    """The registered closed form's value, or None and the reason there is none."""
    if (
        reading_p is not None
        and reading_q is not None
        and reading_p.table_values is not None
        and reading_q.table_values is not None
    ):
        table_p, table_q = align_tables(reading_p, reading_q)
        function = lookup(type(table_p), type(table_q))
        if function is not None:
            return function(table_p, table_q), ""
    natural_p = p if reading_p is None else reading_p.natural
    natural_q = q if reading_q is None else reading_q.natural
    function = lookup(type(natural_p), type(natural_q))
    if function is None:
        name_p, name_q = _describe(natural_p), _describe(natural_q)
        pairs = registered_pairs(type(natural_p), type(natural_q))
        listed = ", ".join(f"({a.__name__}, {b.__name__})" for a, b in pairs) or "none"
        return None, (
            f"no closed form is registered for KL({name_p}‖{name_q}); pairs registered for "
            f"these types: {listed}"
        )
    for reading, name in ((reading_p, "P"), (reading_q, "Q")):
        if reading is not None and reading.table_values is not None:
            return (
                None,
                f"{name} is a table rv_discrete(values=...); the other side must be one too",
            )
    if reading_p is not None and reading_q is not None:
        same_shift = bool(np.all(reading_p.shift == reading_q.shift))
        same_stretch = bool(np.all(reading_p.stretch == reading_q.stretch))
        if not (same_shift and same_stretch):
            return None, (
                f"the closed form for KL({type(natural_p).__name__}‖{type(natural_q).__name__}) "
                f"is for the standard forms, but P is shifted by loc={reading_p.shift.tolist()} "
                f"(scale {reading_p.stretch.tolist()}) and Q by loc={reading_q.shift.tolist()} "
                f"(scale {reading_q.stretch.tolist()}); KL is invariant only under a shift and "
                "scale common to both"
            )
    try:
        return function(natural_p, natural_q), ""
    except NoClosedForm as error:
        return None, str(error)


def _torch_closed_form(p: Any, q: Any) -> Any:
    """torch's registered closed form for two torch objects kldiv does not read itself."""
    import torch.distributions as td

    try:
        return td.kl_divergence(p, q)
    except NotImplementedError:
        # torch's answer for a pair it has no closed form registered for: fall back.
        return None


def _component_kl(components_p: tuple[Any, ...], components_q: tuple[Any, ...]) -> Float64Array:
    """Matrix of exact D(f_a‖g_b); a TypeError names the first pair without a closed form."""
    matrix = np.empty((len(components_p), len(components_q)))
    for a, f in enumerate(components_p):
        for b, g in enumerate(components_q):
            matrix[a, b] = float(kl(f, g, method="exact"))
    return matrix


def _kl_mixture(p: Any, q: Any, *, method: str, n_samples: int, seed: Any) -> KLResult:
    if method in ("variational", "bound"):
        if not (isinstance(p, Mixture) and isinstance(q, Mixture)):
            p = p if isinstance(p, Mixture) else Mixture([1.0], [p])
            q = q if isinstance(q, Mixture) else Mixture([1.0], [q])
        kl_pq = _component_kl(p.components, q.components)
        if method == "bound":
            value = upper_bound(p.weights, q.weights, kl_pq)
        else:
            value = variational(
                p.weights, q.weights, _component_kl(p.components, p.components), kl_pq
            )
        return KLResult(value=value, stderr=0.0, method=method)
    if method == "exact":
        raise TypeError(
            "KL between mixtures has no closed form; use method='monte_carlo', 'quadrature' "
            "(univariate), 'variational' or 'bound'"
        )
    if method == "quadrature" or (method == "auto" and _is_univariate(p, q)):
        outside = _outside_support(p, q)
        if outside is not None and np.all(outside):
            return _exact_result(np.full((), np.inf))
        return _fallbacks.quadrature(p, q, ())
    return _fallbacks.monte_carlo(
        p,
        q,
        (),
        n_samples=n_samples,
        seed=resolve_seed(seed, n_samples),
        k3_applies=_q_inside_p(p, q, None, None),
    )
