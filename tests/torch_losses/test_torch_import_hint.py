"""``import kldiv.torch`` without PyTorch says how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_torch_names_the_extra() -> None:
    # sys.modules["torch"] = None makes `import torch` fail as if it were not installed.
    result = run(
        """
        import sys
        sys.modules["torch"] = None
        try:
            import kldiv.torch
        except ModuleNotFoundError as error:
            print(type(error).__name__, error.name, error, sep="|")
        import kldiv  # the rest of the package still imports
        print(kldiv.compare.__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    kind, name, message = first.split("|")
    assert (kind, name) == ("ModuleNotFoundError", "torch")
    assert message.startswith("kldiv.torch needs PyTorch, which is not installed: ")
    assert "pip install 'kldiv[torch]'" in message
    assert second == "compare"


def test_other_missing_modules_are_not_relabelled() -> None:
    """Only torch itself missing gets the hint: a missing dependency of torch is shown as is."""
    result = run(
        """
        import sys
        import builtins
        real_import = builtins.__import__
        def fake(name, *args, **kwargs):
            if name == "torch":
                raise ModuleNotFoundError("No module named 'sympy'", name="sympy")
            return real_import(name, *args, **kwargs)
        builtins.__import__ = fake
        try:
            import kldiv.torch
        except ModuleNotFoundError as error:
            print(error.name, error, sep="|")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sympy|No module named 'sympy'"
