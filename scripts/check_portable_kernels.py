"""Run the compiled kernels' tests on the code that older x86-64 CPUs run.

An installed build carries AVX-512, AVX2 and baseline copies of each hot loop and picks one at
run time, so the test run on a machine with AVX-512 exercises only the first. This script
compiles the kernels once per instruction-set level with ``-DKLDIV_PORTABLE`` (no run-time
copies, no F16C) into ``build/portable/<level>/`` next to a copy of the Python package, and runs
the kernel tests against each build. ``make test`` calls it; it does nothing where the compiler
is not GCC on x86-64 Linux, the only place the copies exist.

    python scripts/check_portable_kernels.py [--level x86-64 --level x86-64-v3] [pytest args]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kldiv"
KERNEL_TESTS = [
    "tests/native",
    "tests/compare/test_compare_native.py",
    "tests/estimate/test_knn_native.py",
    "tests/torch_losses/test_torch_native.py",
]
FLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-fno-trapping-math", "-pthread", "-fPIC"]


def build(level: str) -> Path:
    """Copy the package and compile every kernel for ``level``; return the import root."""
    target = ROOT / "build" / "portable" / level
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(PACKAGE, target / "kldiv", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    include = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for source in sorted((PACKAGE / "_native").glob("*.c")):
        output = target / "kldiv" / "_native" / f"{source.stem}{suffix}"
        command = ["gcc", "-shared", *FLAGS, f"-march={level}", "-DKLDIV_PORTABLE"]
        command += [f"-I{include}", str(source), "-o", str(output)]
        subprocess.run(command, check=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", action="append", help="a -march level (repeatable)")
    args, pytest_args = parser.parse_known_args()
    if platform.machine() != "x86_64" or sys.platform != "linux" or not shutil.which("gcc"):
        print("portable kernels: not GCC on x86-64 Linux, nothing to test")
        return 0
    for level in args.level or ["x86-64", "x86-64-v3"]:
        root = build(level)
        env = dict(os.environ, PYTHONPATH=str(root), KLDIV_REQUIRE_NATIVE="1")
        # The check that the kernels really come from this build, then their tests.
        probe = "import kldiv._native.losses as m; print(m.__file__)"
        where = subprocess.run(
            [sys.executable, "-c", probe],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(root)):
            print(f"portable kernels: {level} build not imported ({where})", file=sys.stderr)
            return 1
        print(f"portable kernels: -march={level}", flush=True)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(command + KERNEL_TESTS + pytest_args, env=env, cwd=ROOT)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
