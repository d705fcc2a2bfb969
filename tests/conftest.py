"""Shared fixtures: the Array API backends every core function is tested on."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "dask")


@dataclass(frozen=True)
class Backend:
    """One array library: how to build its arrays from NumPy and read them back."""

    name: str
    asarray: Callable[..., Any]
    to_numpy: Callable[[Any], np.ndarray]
    module: Any

    def dtype(self, name: str) -> Any:
        if self.name == "torch":
            return getattr(self.module, name)
        if self.name == "jax":
            return getattr(self.module.numpy, name)
        if self.name == "array_api_strict":
            return getattr(self.module, name)
        return np.dtype(name)


def _make(name: str) -> Backend:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed")
    module = importlib.import_module(name)
    if name == "numpy":
        return Backend(name, lambda a, dtype=None: np.asarray(a, dtype=dtype), np.asarray, module)
    if name == "array_api_strict":

        def strict(a: Any, dtype: Any = None) -> Any:
            a = np.asarray(a)
            return module.asarray(a, dtype=dtype or getattr(module, str(a.dtype)))

        return Backend(name, strict, lambda a: np.asarray(a), module)
    if name == "torch":

        def tensor(a: Any, dtype: Any = None) -> Any:
            return module.as_tensor(np.asarray(a), dtype=dtype)

        return Backend(name, tensor, lambda a: a.detach().to(module.float64).numpy(), module)
    if name == "jax":
        module.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return Backend(
            name,
            lambda a, dtype=None: jnp.asarray(np.asarray(a), dtype=dtype),
            lambda a: np.asarray(a, dtype=np.float64),
            module,
        )
    import dask.array as da

    return Backend(
        name,
        lambda a, dtype=None: da.from_array(np.asarray(a, dtype=dtype), chunks=2),
        lambda a: np.asarray(a.compute()),
        module,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Every Array API backend; a backend is skipped only when it is not installed."""
    return _make(request.param)


@pytest.fixture
def make_backend() -> Callable[[str], Backend]:
    return _make


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Tests that draw with torch's global generator draw the same numbers on every run."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)
