"""Shared by the benchmark scripts: what a run was measured on, and the pieces every script uses.

Every script prints :func:`describe`'s lines first, so that a figure is never read without the
machine that produced it: the CPU model, the cores this process may use, the load average
(a shared machine slows every case, most of all those that synchronize threads), the
transparent-huge-page settings (``enabled`` and ``defrag`` decide what a first touch of a large
buffer costs), the versions, and whether kldiv's compiled kernels are loaded.

A case runs "without the compiled kernels" in a fresh subprocess whose environment has
``KLDIV_NATIVE=0`` (:func:`native_off`), never by flipping the variable inside a process that
has already used the kernels. Times come with the process's user and system CPU time and its
minor page faults: on a shared machine CPU time stays meaningful when wall time does not, and
the system time of a case is mostly the first touch of its fresh buffers.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

THP = Path("/sys/kernel/mm/transparent_hugepage")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thp_setting(name: str) -> str:
    """The selected value of /sys/kernel/mm/transparent_hugepage/<name>, or 'n/a'."""
    try:
        text = (THP / name).read_text()
    except OSError:
        return "n/a"
    chosen = [word[1:-1] for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else text.strip()


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in ("numpy", "torch", "scipy", "dask", "kldiv"):
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is not None:
            parts.append(f"{name} {version}")
    return ", ".join(parts)


def kernels(names: Sequence[str]) -> str:
    """Which of kldiv's compiled kernels this process loads (``KLDIV_NATIVE=0`` turns them off)."""
    from kldiv import _native

    state = [f"{name} {'loaded' if _native.load(name) else 'NOT loaded'}" for name in names]
    native = os.environ.get("KLDIV_NATIVE", "unset")
    huge = os.environ.get("KLDIV_HUGE_PAGES", "unset")
    return f"{', '.join(state)} (KLDIV_NATIVE={native}, KLDIV_HUGE_PAGES={huge})"


def describe(kernel_names: Sequence[str] = ()) -> list[str]:
    lines = [
        f"machine: {cpu_model()}, {cores()} cores for this process, {platform.system()} "
        f"{platform.release()}",
        f"transparent huge pages: enabled={thp_setting('enabled')}, defrag={thp_setting('defrag')}",
        f"load average: {load_average()}",
        f"versions: {_versions()}",
    ]
    if kernel_names:
        lines.append(f"compiled kernels: {kernels(kernel_names)}")
    return lines


def print_header(kernel_names: Sequence[str] = ()) -> None:
    for line in describe(kernel_names):
        print(line)
    sys.stdout.flush()


def print_footer() -> None:
    print(f"load average at the end: {load_average()}")


@dataclass(frozen=True)
class Timing:
    """One timed call: wall seconds, this process's user and system CPU seconds, minor faults."""

    wall: float
    user: float
    system: float
    faults: int


def timed(function: Callable[[], object]) -> Timing:
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    function()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Timing(
        wall,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        after.ru_minflt - before.ru_minflt,
    )


def median(timings: Sequence[Timing]) -> Timing:
    """The median of each field over repetitions."""
    return Timing(
        statistics.median(t.wall for t in timings),
        statistics.median(t.user for t in timings),
        statistics.median(t.system for t in timings),
        int(statistics.median(t.faults for t in timings)),
    )


def timing_json(timing: Timing) -> str:
    return json.dumps(asdict(timing))


def timing_from_json(text: str) -> Timing:
    return Timing(**json.loads(text))


def native_off() -> dict[str, str]:
    """This process's environment with the compiled kernels turned off."""
    return {**os.environ, "KLDIV_NATIVE": "0"}


def run_child(arguments: Sequence[str], *, env: dict[str, str] | None = None) -> str:
    """Run a Python script with `arguments` in a fresh interpreter; return its last stdout line."""
    command = [sys.executable, *arguments]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def format_timing(timing: Timing, baseline: Timing) -> str:
    """`wall ms (speed-up), user ms, system ms, minor faults` against the baseline's wall time."""
    return (
        f"{timing.wall * 1e3:9.1f} ms ({baseline.wall / timing.wall:5.2f}x)  "
        f"user {timing.user * 1e3:7.0f} ms  sys {timing.system * 1e3:6.0f} ms  "
        f"faults {timing.faults:7d}"
    )
