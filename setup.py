"""Build the optional compiled kernels; everything else about the package is in pyproject.toml.

Every ``src/kldiv/_native/*.c`` is one extension module ``kldiv._native.<name>``. A kernel that
fails to compile (no C compiler, say) leaves the package installed without it; the Python code
then takes its NumPy or PyTorch path.
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

NATIVE = Path("src/kldiv/_native")

if sys.platform == "win32":
    COMPILE_ARGS = ["/O2"]
    LINK_ARGS: list[str] = []
else:
    # No errno or floating-point traps to preserve lets the compiler vectorize; no -ffast-math,
    # which would break inf and NaN.
    COMPILE_ARGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-pthread"]
    LINK_ARGS = ["-pthread"]

setup(
    ext_modules=[
        Extension(
            f"kldiv._native.{source.stem}",
            sources=[source.as_posix()],
            depends=[(NATIVE / "common.h").as_posix()],
            extra_compile_args=COMPILE_ARGS,
            extra_link_args=LINK_ARGS,
            optional=True,
        )
        for source in sorted(NATIVE.glob("*.c"))
    ]
)
