"""kldiv's compiled kernels, and the one place that decides whether they are used.

Each ``*.c`` file here builds into the extension module ``kldiv._native.<name>`` when the
package is installed. The build is optional: without a C compiler the package installs without
them and every caller falls back to its NumPy or PyTorch path, which computes the same values.

Two environment variables steer the choice, read at every call:

- ``KLDIV_NATIVE=0`` turns the compiled kernels off (to compare both paths, or to rule them out);
- ``KLDIV_REQUIRE_NATIVE=1`` makes a missing kernel an error instead of a silent fallback, so a
  test run cannot pass without exercising them.

A third, ``KLDIV_HUGE_PAGES=1``, lets the loss kernel ask for transparent huge pages for its
fresh gradient. It is off by default: where the kernel's THP ``defrag`` setting is ``madvise``
(a common default) the request can stall on memory compaction; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

__all__ = ["load", "thread_count"]


@functools.cache
def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"kldiv._native.{name}")
    except ImportError:
        return None


def load(name: str) -> ModuleType | None:
    """Return the compiled module ``kldiv._native.<name>``, or None where it is unavailable or off.

    Raises:
        ImportError: if ``KLDIV_REQUIRE_NATIVE=1`` and the module was not built.
    """
    if os.environ.get("KLDIV_NATIVE", "1") == "0":
        return None
    module = _import(name)
    if module is None and os.environ.get("KLDIV_REQUIRE_NATIVE") == "1":
        raise ImportError(
            f"kldiv._native.{name} was not built, and KLDIV_REQUIRE_NATIVE=1 asks for it; "
            "reinstall kldiv with a C compiler available (pip install --force-reinstall kldiv)"
        )
    return module


def thread_count() -> int:
    """Return the number of CPU cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
