"""``kldiv compare`` reads every file format and dtype, and reports what NumPy computes directly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax, rel_entr

from kldiv.cli import main

N, V = 64, 20


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def logits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.normal(scale=2.0, size=(N, V)).astype(np.float32)
    return base, base + rng.normal(scale=0.4, size=(N, V)).astype(np.float32), rng.integers(0, V, N)


def expected_mean_kl(base: np.ndarray, test: np.ndarray) -> float:
    p = np.exp(log_softmax(base.astype(np.float64), -1))
    q = np.exp(log_softmax(test.astype(np.float64), -1))
    return float(rel_entr(p, q).sum(-1).mean())


def save(path: Path, array: np.ndarray, dtype: str, key: str | None) -> None:
    """Write ``array`` as ``dtype`` in the format given by the suffix of ``path``."""
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array.astype(dtype))
    elif suffix == ".npz":
        extra = {"other": np.zeros(3)} if key else {}
        np.savez(path, **{key or "arr_0": array.astype(dtype)}, **extra)
    elif suffix == ".safetensors":
        torch = pytest.importorskip("torch")
        from safetensors.torch import save_file

        tensors = {key or "logits": torch.from_numpy(array).to(getattr(torch, dtype))}
        if key:
            tensors["other"] = torch.zeros(3)
        save_file(tensors, str(path))
    else:
        torch = pytest.importorskip("torch")
        tensor = torch.from_numpy(array).to(getattr(torch, dtype))
        torch.save({key: tensor, "step": torch.tensor(3)} if key else tensor, path)


def decoded(array: np.ndarray, dtype: str) -> np.ndarray:
    """The values a file of ``dtype`` holds, as float64."""
    if dtype == "bfloat16":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(array).to(torch.bfloat16).double().numpy()
    return array.astype(dtype).astype(np.float64)


@pytest.mark.parametrize(
    ("suffix", "dtype", "key"),
    [
        (".npy", "float16", None),
        (".npy", "float32", None),
        (".npy", "float64", None),
        (".npz", "float16", None),
        (".npz", "float32", "logits"),
        (".safetensors", "float16", None),
        (".safetensors", "bfloat16", None),
        (".safetensors", "float32", "logits"),
        (".pt", "bfloat16", None),
        (".pt", "float16", "logits"),
    ],
)
def test_every_format_and_dtype(tmp_path, capsys, logits, suffix, dtype, key) -> None:
    base, test, _ = logits
    save(tmp_path / f"base{suffix}", base, dtype, key)
    save(tmp_path / f"test{suffix}", test, dtype, key)
    args = ["compare", str(tmp_path / f"base{suffix}"), str(tmp_path / f"test{suffix}"), "--json"]
    status, out, err = run(capsys, *args, *(["--key", key] if key else []))
    assert (status, err) == (0, "")
    summary = json.loads(out)
    expected = expected_mean_kl(decoded(base, dtype), decoded(test, dtype))
    assert summary["kld"]["mean"] == pytest.approx(expected, rel=1e-4)
    assert summary["n"] == N


def test_bfloat16_safetensors_without_torch_reader(tmp_path, capsys, logits) -> None:
    """bfloat16 .safetensors are widened by bit shifts, the same values torch reads."""
    base, test, _ = logits
    for name, array in (("base", base), ("test", test)):
        save(tmp_path / f"{name}.safetensors", array, "bfloat16", None)
    status, out, _ = run(
        capsys, "compare", str(tmp_path / "base.safetensors"), str(tmp_path / "test.safetensors"),
        "--json", "--chunk-rows", "5",
    )  # fmt: skip
    assert status == 0
    expected = expected_mean_kl(decoded(base, "bfloat16"), decoded(test, "bfloat16"))
    assert json.loads(out)["kld"]["mean"] == pytest.approx(expected, rel=1e-5)


def test_labels_kinds_and_batched_files(tmp_path, capsys, logits) -> None:
    base, test, labels = logits
    log_p, log_q = (
        log_softmax(base.astype(np.float64), -1),
        log_softmax(test.astype(np.float64), -1),
    )
    np.save(tmp_path / "base.npy", np.exp(log_p).reshape(4, 16, V))
    np.save(tmp_path / "test.npy", np.exp(log_q).reshape(4, 16, V))
    np.save(tmp_path / "labels.npy", labels.reshape(4, 16))
    status, out, _ = run(
        capsys, "compare", str(tmp_path / "base.npy"), str(tmp_path / "test.npy"),
        "--kind", "probs", "--labels", str(tmp_path / "labels.npy"), "--json",
    )  # fmt: skip
    assert status == 0
    summary = json.loads(out)
    rows = np.arange(N)
    assert summary["ppl"]["base"] == pytest.approx(math.exp(-log_p[rows, labels].mean()))
    assert summary["ppl"]["test"] == pytest.approx(math.exp(-log_q[rows, labels].mean()))
    delta = np.exp(log_q[rows, labels]) - np.exp(log_p[rows, labels])
    assert summary["delta_p"]["mean"] == pytest.approx(delta.mean(), abs=1e-12)
    assert summary["delta_p"]["rms"] == pytest.approx(math.sqrt(np.mean(delta**2)))


def test_table_and_plot(tmp_path, capsys, logits) -> None:
    base, test, _ = logits
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "test.npy", test)
    plot = tmp_path / "kld.png"
    status, out, err = run(
        capsys,
        "compare",
        str(tmp_path / "base.npy"),
        str(tmp_path / "test.npy"),
        "--plot",
        str(plot),
    )
    assert (status, err) == (0, "")
    assert "mean KLD" in out
    assert f"{expected_mean_kl(base, test):.6g}" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert out.splitlines()[-1] == f"plot of per-position KL written to {plot}"


@pytest.mark.parametrize("json_output", [False, True])
def test_plot_into_a_folder(tmp_path, capsys, logits, json_output) -> None:
    """--plot DIR wrote DIR.png beside it; now DIR/kldiv-compare.png, and says where."""
    base, test, _ = logits
    np.save(tmp_path / "base.npy", base)
    np.save(tmp_path / "test.npy", test)
    folder = tmp_path / "plots"
    folder.mkdir()
    args = ["compare", str(tmp_path / "base.npy"), str(tmp_path / "test.npy")]
    args += ["--plot", str(folder)] + (["--json"] if json_output else [])
    status, out, err = run(capsys, *args)
    assert (status, err) == (0, "")
    written = folder / "kldiv-compare.png"
    assert written.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "plots.png").exists()
    if json_output:
        assert json.loads(out)["plot"] == str(written)
    else:
        assert out.splitlines()[-1] == f"plot of per-position KL written to {written}"


def test_version_and_help(capsys) -> None:
    import kldiv

    assert run(capsys, "--version")[1].strip() == f"kldiv {kldiv.__version__}"
    for command in ("compare", "estimate", "demo"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0
        assert f"kldiv {command}" in out.split("Examples:")[1]
