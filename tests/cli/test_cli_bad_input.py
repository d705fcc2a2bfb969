"""Bad input: exit code 2, one line on stderr naming the file and the problem, no traceback."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def kldiv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kldiv.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if p.is_file()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(5)
    good = rng.normal(size=(8, 5)).astype(np.float32)
    np.save(folder / "good.npy", good)
    np.save(folder / "wide.npy", rng.normal(size=(8, 6)).astype(np.float32))
    with_nan = good.copy()
    with_nan[6, 1] = np.nan
    np.save(folder / "nan.npy", with_nan)
    with_inf = good.copy()
    with_inf[2, 4] = np.inf
    np.save(folder / "inf.npy", with_inf)
    probs = np.full((8, 5), 0.2, dtype=np.float32)
    np.save(folder / "probs.npy", probs)
    negative = probs.copy()
    negative[3] = [0.5, -0.1, 0.2, 0.2, 0.2]
    np.save(folder / "negative.npy", negative)
    np.save(folder / "ints.npy", np.ones((8, 5), dtype=np.int64))
    np.save(folder / "labels_big.npy", np.full(8, 9))
    np.save(folder / "labels_short.npy", np.zeros(7, dtype=np.int64))
    minus_inf = good.copy()
    minus_inf[5, 0] = -np.inf
    np.save(folder / "minus_inf.npy", minus_inf)
    np.savez(folder / "two.npz", a=good, b=good)
    (folder / "empty.npy").write_bytes(b"")
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY this is not a header")
    (folder / "truncated.npy").write_bytes((folder / "good.npy").read_bytes()[:-40])
    (folder / "corrupt.safetensors").write_bytes(b"\xff" * 64)
    (folder / "corrupt.npz").write_bytes(b"PK not a zip")
    (folder / "good.txt").write_text("0.1 0.2")
    (folder / "ref.csv").write_text("a,b\n1.0,x\n2.0,y\n3.5,x\n")
    (folder / "cur.csv").write_text("a,b\n1.5,x\n,y\n3.0,y\n")
    (folder / "blank.csv").write_text("")
    return folder


CASES = [
    (["compare", "good.npy", "missing.npy"], "missing.npy: no such file"),
    (["compare", "good.npy", "empty.npy"], "empty.npy: the file is empty"),
    (["compare", "good.npy", "corrupt.npy"], "corrupt.npy: not a readable .npy file"),
    (["compare", "good.npy", "truncated.npy"], "truncated.npy: not a readable .npy file"),
    (["compare", "good.npy", "corrupt.safetensors"], "corrupt.safetensors: not a readable"),
    (["compare", "good.npy", "corrupt.npz"], "corrupt.npz: not a readable .npz file"),
    (["compare", "good.npy", "good.txt"], "good.txt: unsupported file type '.txt'"),
    (
        ["compare", "good.npy", "wide.npy"],
        "wide.npy: has shape (8, 6) but good.npy has shape (8, 5)",
    ),
    (
        ["compare", "good.npy", "nan.npy", "--strict"],
        "nan.npy: entry nan at index (6, 1); entries must be finite",
    ),
    (["compare", "inf.npy", "good.npy", "--strict"], "inf.npy: entry inf at index (2, 4)"),
    (
        ["compare", "good.npy", "minus_inf.npy", "--strict"],
        "minus_inf.npy: KL(base‖test) is infinite at position (5,): test gives probability 0 "
        "to a token that base does not; without --strict the command counts such positions",
    ),
    (
        ["compare", "good.npy", "good.npy", "--kind", "log_probs"],
        "good.npy: row at index (0,) is not log-probabilities: its exponentials sum to ",
    ),
    (
        ["compare", "good.npy", "good.npy", "--kind", "log_probs"],
        "(tolerance 3.5e-04 for float32); if they are logits, use --kind logits",
    ),
    (
        ["compare", "good.npy", "good.npy", "--kind", "probs"],
        "probabilities must be >= 0; if they are logits or log-probabilities, use --kind logits "
        "or --kind log_probs",
    ),
    (
        ["compare", "good.npy", "good.npy", "--labels", "labels_short.npy"],
        "labels_short.npy: shape (7,) does not match the 8 positions of the inputs (expected (8,))",
    ),
    (
        ["compare", "good.npy", "good.npy", "--plot", "kld"],
        "kld: cannot write the plot: not a folder and no file suffix; give a file such as kld.png,"
        " or an existing folder to write kldiv-compare.png into",
    ),
    (
        ["compare", "probs.npy", "negative.npy", "--kind", "probs"],
        "negative.npy: entry -0.1 at index (3, 1); probabilities must be >= 0",
    ),
    (["compare", "good.npy", "ints.npy"], "ints.npy: dtype int64 is not supported"),
    (
        ["compare", "two.npz", "two.npz"],
        "two.npz: holds several arrays (a, b); choose one with --key",
    ),
    (["compare", "two.npz", "two.npz", "--key", "c"], "two.npz: has no array named 'c'"),
    (
        ["compare", "good.npy", "good.npy", "--labels", "labels_big.npy"],
        "labels_big.npy: token id 9 at position 0 is outside the vocabulary of 5",
    ),
    (["compare", "good.npy", "good.npy", "--plot", "no/such/dir/k.png"], "folder no/such/dir"),
    (["compare", "good.npy", "good.npy", "--kind", "softmax"], "Invalid value for '--kind'"),
    (["estimate", "ref.csv", "cur.csv", "--columns", "a,zz"], "ref.csv: has no column 'zz'"),
    (["estimate", "ref.csv", "cur.csv"], "cur.csv: column 'a' has 1 missing or infinite values"),
    (["estimate", "ref.csv", "blank.csv"], "blank.csv: the file is empty"),
    (["estimate", "ref.csv", "good.txt"], "good.txt: unsupported file type '.txt'"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_exits_2_with_one_line(files, args, message) -> None:
    before = digest(files)
    result = kldiv(*args, cwd=files)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kldiv: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert digest(files) == before


def test_debug_shows_the_traceback(files) -> None:
    result = kldiv("compare", "good.npy", "nan.npy", "--strict", "--debug", cwd=files)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("kldiv: error: nan.npy: entry nan")


def test_undefined_and_infinite_positions_are_counted_without_strict(files) -> None:
    result = kldiv("compare", "nan.npy", "minus_inf.npy", "--json", cwd=files)
    assert (result.returncode, result.stderr) == (0, "")
    summary = json.loads(result.stdout)
    assert (summary["n"], summary["n_nan"], summary["n_infinite"]) == (8, 1, 1)
    assert summary["kld"]["mean"] is None  # +inf, written as null
    assert summary["kld"]["finite_mean"] == 0.0  # the other six rows are the same in both


def test_help_is_wrapped_once_at_80_columns() -> None:
    """Paragraphs fill the width: no line ends where the next line's first word would fit."""
    for command in ([], ["compare"], ["estimate"], ["demo"]):
        result = subprocess.run(
            [sys.executable, "-m", "kldiv.cli", *command, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        lines = [line.rstrip() for line in result.stdout.splitlines()]
        assert max(len(line) for line in lines) <= 80
        prose = [line for line in lines if not line.lstrip().startswith(("│", "╭", "╰"))]
        for line, following in itertools.pairwise(prose):
            if line.strip() and following.strip():
                first_word = following.split()[0]
                assert len(line) + 1 + len(first_word) > 79, (command, line, following)
