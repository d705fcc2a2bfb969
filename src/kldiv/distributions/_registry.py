"""The registry of closed-form KL divergences, with most-specific-match dispatch."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = ["ClosedForm", "NoClosedForm", "lookup", "register_kl", "registered_pairs"]


class NoClosedForm(ValueError):
    """Raised by a registered closed form for parameters it does not cover.

    ``kl`` then falls back to numerical methods under ``method="auto"`` and re-raises the
    message under ``method="exact"``.
    """


ClosedForm = Callable[[Any, Any], NDArray[np.float64]]
F = TypeVar("F", bound=ClosedForm)

_REGISTRY: dict[tuple[type, type], ClosedForm] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[F], F]:
    """Register a closed form of KL(P‖Q) for P of ``type_p`` and Q of ``type_q``.

    The decorated function takes ``(p, q)`` and returns the KL in nats as a float64 array of
    the broadcast batch shape. At call time the registered pair whose types are nearest in
    the method resolution orders of ``type(p)`` and ``type(q)`` wins, so a pair registered for
    subclasses overrides one registered for their bases. SciPy and PyTorch objects are read
    into kldiv's types (``kldiv.distributions.Normal``, ...) before dispatch; register on those.

    Args:
        type_p: class of the first argument P.
        type_q: class of the second argument Q.

    Returns:
        A decorator that records the function and returns it unchanged.

    Examples:
        >>> import numpy as np
        >>> from kldiv.distributions import kl
        >>> class Point:
        ...     pass
        >>> @register_kl(Point, Point)
        ... def _kl_point_point(p, q):
        ...     return np.zeros(())
        >>> float(kl(Point(), Point()))
        0.0
    """
    if not (isinstance(type_p, type) and isinstance(type_q, type)):
        raise TypeError(f"register_kl takes two classes, got {type_p!r} and {type_q!r}")

    def decorator(function: F) -> F:
        _REGISTRY[(type_p, type_q)] = function
        return function

    return decorator


def registered_pairs(
    type_p: type | None = None, type_q: type | None = None
) -> list[tuple[type, type]]:
    """List registered (P, Q) class pairs, optionally only those involving ``type_p``/``type_q``.

    A pair is listed when its P class is ``type_p`` or one of its bases (likewise for Q).
    """

    def involves(pair: tuple[type, type]) -> bool:
        if type_p is None and type_q is None:
            return True
        hits_p = type_p is not None and issubclass(type_p, pair[0])
        hits_q = type_q is not None and issubclass(type_q, pair[1])
        return hits_p or hits_q

    pairs = [pair for pair in _REGISTRY if involves(pair)]
    return sorted(pairs, key=lambda pair: (pair[0].__name__, pair[1].__name__))


def lookup(type_p: type, type_q: type) -> ClosedForm | None:
    """Return the most specific closed form for the pair, or ``None`` if none applies."""
    matches = [
        (type_p.__mro__.index(sup_p), type_q.__mro__.index(sup_q), (sup_p, sup_q))
        for sup_p, sup_q in _REGISTRY
        if issubclass(type_p, sup_p) and issubclass(type_q, sup_q)
    ]
    if not matches:
        return None
    best = min(matches, key=lambda match: (match[0] + match[1], match[0]))
    rivals = [m for m in matches if m is not best and (m[0] < best[0] or m[1] < best[1])]
    if rivals:
        warnings.warn(
            f"KL({type_p.__name__}‖{type_q.__name__}) matches the registered pairs "
            f"{best[2]} and {rivals[0][2]} equally; using {best[2]}. Register the exact pair "
            "to choose.",
            UserWarning,
            stacklevel=3,
        )
    return _REGISTRY[best[2]]
