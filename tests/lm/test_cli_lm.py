"""``kldiv compare`` with models and llama.cpp base files: outputs, and bad input (exit 2, one
line on stderr, nothing written)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from kldiv.cli import main
from kldiv.lm import LlamaCppLogits, file_size

CTX = 32


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def test_models_json_per_token_and_base_file(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    per_token, base_file = tmp_path / "tokens.npz", tmp_path / "base.kld"
    args = ["compare", models["llama"], models["llama_q4"], "--text", models["text"], "--ctx", CTX]
    args += ["--json", "--per-token", per_token, "--save-base", base_file, "--device", "cpu"]
    status, out, err = run(args, capsys)
    assert status == 0, err
    summary = json.loads(out)
    windows = summary["windows"]
    rows = CTX - 1 - CTX // 2
    assert summary["ctx"] == CTX
    assert summary["n"] == summary["n_labeled"] == windows * rows
    assert base_file.stat().st_size == file_size(CTX, 1000, windows)
    values = np.load(per_token)
    assert sorted(values.files) == [
        "delta_p",
        "kld",
        "nll_base",
        "nll_test",
        "same_top",
        "token_ids",
    ]
    assert values["kld"].mean() == pytest.approx(summary["kld"]["mean"], rel=1e-12)
    assert values["same_top"].mean() == pytest.approx(summary["top1_agreement"]["value"])
    np.testing.assert_allclose(
        values["delta_p"], np.exp(-values["nll_test"]) - np.exp(-values["nll_base"])
    )
    assert np.exp(values["nll_base"].mean()) == pytest.approx(summary["ppl"]["base"], rel=1e-12)
    tokens = np.asarray(LlamaCppLogits(base_file).tokens).reshape(windows, CTX)
    np.testing.assert_array_equal(values["token_ids"], tokens[:, CTX // 2 + 1 :].reshape(-1))
    status, out, err = run(["compare", base_file, models["llama_q4"], "--device", "cpu"], capsys)
    assert status == 0, err
    assert "mean KLD" in out
    assert "Cor(ln PPL test, ln PPL base)" in out


@pytest.fixture(scope="module")
def bad_inputs(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    np.save(folder / "big.npy", np.where(np.arange(128) == 7, 5000, 3))
    np.save(folder / "square.npy", np.zeros((8, 16), dtype=np.int64))
    np.save(folder / "tokens.npy", np.arange(128) % 900)
    np.save(folder / "logits.npy", np.zeros((4, 1000), dtype=np.float32))
    return folder


CASES = [
    (
        ["{gpt2}", "{gpt2_q4}", "--tokens", "{bad}/tokens.npy", "--ctx", "200"],
        "takes at most 128 positions; a context of 200 is longer",
    ),
    (
        ["{gpt2}", "{gpt2_q4}", "--tokens", "{bad}/big.npy", "--ctx", "32"],
        "big.npy: token id 5000 at position 7 is outside the vocabulary of 1000",
    ),
    (
        ["{gpt2}", "{gpt2_q4}", "--tokens", "{bad}/square.npy"],
        "square.npy: has shape (8, 16); token ids are one sequence",
    ),
    (
        ["{llama}", "{llama_big_vocab}", "--tokens", "{bad}/tokens.npy", "--ctx", "32"],
        "has a vocabulary of 1024 tokens but",
    ),
    (["{llama}", "{llama_q4}", "--text", "{short}", "--ctx", "32"], "short.txt: holds"),
    (
        ["{not_a_model}", "{llama}", "--tokens", "{bad}/tokens.npy"],
        "is a directory but not a Hugging Face model",
    ),
    (
        ["{bad}/logits.npy", "{llama}", "--tokens", "{bad}/tokens.npy"],
        "logits.npy: is a logits file; it can be compared with another logits file only",
    ),
    (
        ["{bad}/logits.npy", "{bad}/logits.npy", "--ctx", "32"],
        "--ctx: applies when BASE or TEST is a model directory",
    ),
    (
        ["{llama}", "{llama_q4}", "--labels", "{bad}/tokens.npy"],
        "--labels: applies to logits files",
    ),
    (
        ["{llama}", "{llama_q4}", "--tokens", "{bad}/tokens.npy", "--per-token", "{bad}/out.csv"],
        "out.csv: --per-token writes a .npz file",
    ),
    (
        [
            "{llama}",
            "{llama_q4}",
            "--tokens",
            "{bad}/tokens.npy",
            "--save-base",
            "{bad}/nowhere/b.kld",
        ],
        "cannot be written: folder",
    ),
    (
        ["{llama}", "{llama_q4}", "--ctx", "32"],
        "--text: give a text or token ids to score the models on",
    ),
    (["{bad}/truncated.kld", "{llama}"], "truncated.kld: is truncated:"),
    (
        ["{bad}/magic_only.kld", "{llama}"],
        "magic_only.kld: is truncated: 8 bytes, shorter than the 20-byte header",
    ),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_bad_input(
    models: dict[str, Path],
    bad_inputs: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (bad_inputs / "truncated.kld").write_bytes(
        b"_logits_" + np.array([32, 1000, 2], dtype="<i4").tobytes() + b"\0" * 100
    )
    (bad_inputs / "magic_only.kld").write_bytes(b"_logits_")
    names = {key: str(value) for key, value in models.items()}
    filled = [a.format(bad=bad_inputs, **names) for a in args]
    before = digest(bad_inputs)
    status, out, err = run(["compare", *filled, "--device", "cpu"], capsys)
    assert status == 2, (out, err)
    assert err.count("\n") == 1
    assert err.startswith("kldiv: error: ")
    assert message in err
    assert "Traceback" not in err
    assert out == ""
    assert digest(bad_inputs) == before


def test_transformers_missing(
    models: dict[str, Path],
    bad_inputs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [m for m in sys.modules if m == "transformers" or m.startswith("transformers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "transformers", None)
    status, _, err = run(
        ["compare", models["llama"], models["llama_q4"], "--tokens", bad_inputs / "tokens.npy"],
        capsys,
    )
    assert status == 2
    assert "loading a model needs transformers: pip install 'kldiv[lm]'" in err


@pytest.mark.parametrize("hub_id", ["no-such-model", "no-such-org/no-such-model"])
def test_hub_id_that_fails_to_load(
    models: dict[str, Path],
    bad_inputs: Path,
    hub_id: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A side that is no local path is a hub id, bare ("gpt2") or "org/name". When loading it
    fails, as it does offline after the hub client has logged its retries, the command still
    ends with one line: the retries' warnings stay off stderr."""
    import logging

    import transformers

    def unreachable(name: str, **kwargs: object) -> None:
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        logging.getLogger("transformers.modeling_utils").warning("a loader's warning")
        raise OSError("We couldn't connect to the hub to load the files.\nSecond line.")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", unreachable)
    monkeypatch.chdir(bad_inputs)
    args = ["compare", hub_id, models["llama"], "--tokens", bad_inputs / "tokens.npy"]
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert exit_info.value.code == 2
    assert out == ""
    assert err == (
        f"kldiv: error: {hub_id}: is no local file or directory, and loading it from the hub "
        "failed (We couldn't connect to the hub to load the files.)\n"
    )
