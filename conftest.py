"""Collection rules for the doctests under src/kldiv (pytest's --doctest-modules)."""

from __future__ import annotations

from importlib.util import find_spec

# The Triton kernels' module imports triton, which installs on Linux only; the package itself
# imports it only when a CUDA tensor or KLDIV_TRITON=1 asks for it.
collect_ignore = [] if find_spec("triton") else ["src/kldiv/torch/_triton_kernels.py"]
