"""kldiv.lm.compare on tiny models: llama-perplexity's windows, every statistic against a
full-logits float64 reference, base files written and read, and bad input."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import log_softmax

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from kldiv.lm import LlamaCppLogits, LMInputError, compare, evaluate  # noqa: E402

CTX = 32


@functools.cache
def loaded(folder: Path) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


def full_logits(folder: Path, inputs: np.ndarray) -> np.ndarray:
    """Every position's logits, in one forward pass over all windows, without logits_to_keep."""
    model = loaded(folder)
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(inputs)).logits.double().numpy()


def reference_windows(
    tokens: np.ndarray, n_ctx: int, bos: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """llama-perplexity's windows written out plainly: inputs (n_chunk, n_ctx), labels."""
    n_chunk = len(tokens) // n_ctx
    inputs = np.array([tokens[k * n_ctx : (k + 1) * n_ctx] for k in range(n_chunk)])
    labels = np.array(
        [[tokens[k * n_ctx + j + 1] for j in range(n_ctx // 2, n_ctx - 1)] for k in range(n_chunk)]
    )
    if bos is not None:
        inputs[:, 0] = bos
    return inputs, labels


def scored(logits: np.ndarray, n_ctx: int) -> np.ndarray:
    return logits[:, n_ctx // 2 : n_ctx - 1].reshape(-1, logits.shape[-1])


def reference_summary(
    log_p: np.ndarray, log_q: np.ndarray, labels: np.ndarray, kld: Any = None
) -> dict[str, Any]:
    """The report's summary from float64 log-probabilities, with NumPy only."""
    n = log_p.shape[0]
    p, q = np.exp(log_p), np.exp(log_q)
    if kld is None:
        kld = np.sum(p * (log_p - log_q), axis=1)
    reverse = np.sum(q * (log_q - log_p), axis=1)
    m = 0.5 * (p + q)
    jsd = 0.5 * np.sum(p * (log_p - np.log(m)), axis=1) + 0.5 * np.sum(
        q * (log_q - np.log(m)), axis=1
    )
    rows = np.arange(n)
    lb, lt = log_p[rows, labels], log_q[rows, labels]
    delta = np.exp(lt) - np.exp(lb)
    se = lambda x: np.std(x, ddof=1) / np.sqrt(len(x))  # noqa: E731
    ppl_b, ppl_t = np.exp(-lb.mean()), np.exp(-lt.mean())
    covariance = np.cov(lb, lt, bias=True)[0, 1] / (n - 1)
    quantiles = [0.1, 1, 5, 10, 25, 75, 90, 95, 99, 99.9]
    return {
        "kld_mean": kld.mean(),
        "kld_stderr": se(kld),
        "kld_median": np.median(kld),
        "kld_max": kld.max(),
        "kld_99": np.percentile(kld, 99),
        "top1": np.mean(np.argmax(log_p, 1) == np.argmax(log_q, 1)),
        "reverse": reverse.mean(),
        "jsd": jsd.mean(),
        "dp_mean": delta.mean(),
        "dp_rms": np.sqrt(np.mean(delta**2)),
        "dp_rms_stderr": 0.5 / np.sqrt(np.mean(delta**2)) * se(delta**2),
        "dp_min": delta.min(),
        "dp_max": delta.max(),
        "dp_percentiles": np.percentile(delta, quantiles),
        "ppl_base": ppl_b,
        "ppl_test": ppl_t,
        "ln_ratio": np.mean(lb - lt),
        "ln_ratio_stderr": se(lb - lt),
        "difference": ppl_t - ppl_b,
        "difference_stderr": np.sqrt(
            (ppl_t * se(lt)) ** 2 + (ppl_b * se(lb)) ** 2 - 2 * ppl_t * ppl_b * covariance
        ),
        "correlation": np.corrcoef(lb, lt)[0, 1],
    }


def summary_of(report: Any) -> dict[str, Any]:
    d = report.to_dict()
    return {
        "kld_mean": d["kld"]["mean"],
        "kld_stderr": d["kld"]["stderr"],
        "kld_median": d["kld"]["median"],
        "kld_max": d["kld"]["max"],
        "kld_99": d["kld"]["percentiles"]["99"],
        "top1": d["top1_agreement"]["value"],
        "reverse": d["reverse_kld_mean"],
        "jsd": d["jsd_mean"],
        "dp_mean": d["delta_p"]["mean"],
        "dp_rms": d["delta_p"]["rms"],
        "dp_rms_stderr": d["delta_p"]["rms_stderr"],
        "dp_min": d["delta_p"]["min"],
        "dp_max": d["delta_p"]["max"],
        "dp_percentiles": np.array(list(d["delta_p"]["percentiles"].values())),
        "ppl_base": d["ppl"]["base"],
        "ppl_test": d["ppl"]["test"],
        "ln_ratio": d["ppl"]["ln_ratio"],
        "ln_ratio_stderr": d["ppl"]["ln_ratio_stderr"],
        "difference": d["ppl"]["difference"]["value"],
        "difference_stderr": d["ppl"]["difference"]["stderr"],
        "correlation": d["ppl"]["correlation"],
    }


def assert_summaries_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        # float32 logits through float32 kernels against float64: about 1e-6 relative.
        np.testing.assert_allclose(got[key], value, rtol=2e-4, atol=2e-6, err_msg=key)


def test_a_model_against_itself(models: dict[str, Path]) -> None:
    evaluation = evaluate(
        models["llama"], models["llama"], text=models["text"].read_text(), n_ctx=CTX, device="cpu"
    )
    report = evaluation.report
    assert report.n == evaluation.windows.n_chunk * (CTX - 1 - CTX // 2)
    assert np.all(report.kld == 0)
    assert report.top1_same.all()
    np.testing.assert_array_equal(report.log_p_label_base, report.log_p_label_test)


@pytest.mark.parametrize(
    ("base", "test", "by"), [("llama", "llama_q4", "text"), ("gpt2", "gpt2_q4", "tokens")]
)
def test_every_statistic_equals_a_full_logits_reference(
    models: dict[str, Path], base: str, test: str, by: str
) -> None:
    text = models["text"].read_text()
    tokenizer = transformers.AutoTokenizer.from_pretrained(models[base])
    if by == "text":
        stream = np.array(tokenizer(text)["input_ids"])
        assert (
            stream[0] == 1
        )  # the tokenizer adds BOS; llama-perplexity then puts it in every window
        evaluation = evaluate(models[base], models[test], text=text, n_ctx=CTX, device="cpu")
        bos = 1
    else:
        stream = np.array(tokenizer(text, add_special_tokens=False)["input_ids"])
        evaluation = evaluate(models[base], models[test], token_ids=stream, n_ctx=CTX, device="cpu")
        bos = None
    assert evaluation.windows.bos == bos
    assert evaluation.windows.n_chunk == len(stream) // CTX
    inputs, labels = reference_windows(stream, CTX, bos)
    np.testing.assert_array_equal(evaluation.labels, labels.reshape(-1))
    log_p = log_softmax(scored(full_logits(models[base], inputs), CTX), axis=1)
    log_q = log_softmax(scored(full_logits(models[test], inputs), CTX), axis=1)
    report = evaluation.report
    np.testing.assert_allclose(
        report.kld, np.sum(np.exp(log_p) * (log_p - log_q), axis=1), rtol=1e-4, atol=1e-6
    )
    assert_summaries_close(summary_of(report), reference_summary(log_p, log_q, labels.reshape(-1)))


def test_batches_and_chunks_do_not_change_the_values(models: dict[str, Path]) -> None:
    text = models["text"].read_text()
    one = evaluate(models["llama"], models["llama_q4"], text=text, n_ctx=CTX, device="cpu")
    three = evaluate(
        models["llama"], models["llama_q4"], text=text, n_ctx=CTX, batch_size=3, device="cpu"
    )
    np.testing.assert_allclose(three.report.kld, one.report.kld, rtol=1e-5, atol=1e-7)
    two = evaluate(
        models["llama"], models["llama_q4"], text=text, n_ctx=CTX, n_chunks=2, device="cpu"
    )
    rows = CTX - 1 - CTX // 2
    assert two.report.n == 2 * rows
    np.testing.assert_allclose(two.report.kld, one.report.kld[: 2 * rows], rtol=1e-5, atol=1e-7)


def test_a_base_file_is_written_and_compared_as_llamacpp_does(
    models: dict[str, Path], tmp_path: Path
) -> None:
    text = models["text"].read_text()
    path = tmp_path / "llama.kld"
    direct = evaluate(
        models["llama"], models["llama_q4"], text=text, n_ctx=CTX, device="cpu", save_base=path
    )
    base = LlamaCppLogits(path)
    windows = direct.windows
    assert (base.n_ctx, base.n_vocab, base.n_chunk) == (CTX, 1000, windows.n_chunk)
    # The file holds the tokens as tokenized: BOS at the start only, not in every window.
    np.testing.assert_array_equal(base.tokens, windows.tokens)
    assert base.tokens[0] == 1
    assert np.any(base.tokens[CTX::CTX] != 1)
    through_file = evaluate(path, models["llama_q4"], device="cpu")
    assert through_file.windows.bos == 1  # from TEST's tokenizer, as llama.cpp takes it
    inputs, labels = reference_windows(np.asarray(base.tokens), CTX, 1)
    log_q = log_softmax(scored(full_logits(models["llama_q4"], inputs), CTX), axis=1)
    log_p = np.concatenate([base.log_probs(k) for k in range(base.n_chunk)]).astype(np.float64)
    kept = log_p > -16
    kld = np.sum(np.where(kept, np.exp(log_p) * (log_p - log_q), 0.0), axis=1)
    np.testing.assert_allclose(through_file.report.kld, kld, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(
        through_file.report.log_p_label_base,
        log_p[np.arange(len(kld)), labels.reshape(-1)],
        rtol=1e-6,
    )
    # The 16-bit file changes the KL by little against the model's own logits.
    np.testing.assert_allclose(through_file.report.kld, direct.report.kld, atol=5e-3)
    # The same file against the model it came from: the quantization error only.
    itself = compare(path, models["llama"], device="cpu")
    assert itself.kld.max() < 1e-3
    assert itself.top1_same.mean() > 0.99


def test_vocabularies_of_different_sizes(models: dict[str, Path]) -> None:
    tokens = np.arange(4 * CTX) % 900
    with pytest.raises(
        LMInputError, match=r"has a vocabulary of 1024 tokens but .* has 1000; .* first 1000 tokens"
    ):
        compare(
            models["llama"], models["llama_big_vocab"], token_ids=tokens, n_ctx=CTX, device="cpu"
        )
    report = compare(
        models["llama"],
        models["llama_big_vocab"],
        token_ids=tokens,
        n_ctx=CTX,
        device="cpu",
        vocab_intersect=True,
    )
    inputs, _ = reference_windows(tokens, CTX, None)
    log_p = log_softmax(scored(full_logits(models["llama"], inputs), CTX), axis=1)
    log_q = log_softmax(
        scored(full_logits(models["llama_big_vocab"], inputs), CTX)[:, :1000], axis=1
    )
    np.testing.assert_allclose(
        report.kld, np.sum(np.exp(log_p) * (log_p - log_q), axis=1), rtol=1e-4, atol=1e-6
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("long_context", r"takes at most 128 positions; a context of 200 is longer"),
        ("token_out_of_vocab", r"token id 1000 at position 5 is outside the vocabulary of 1000"),
        ("short_text", r"holds \d+ tokens; a context of 32 needs at least 64 \(two windows\)"),
        ("not_a_model", r"is a directory but not a Hugging Face model \(it has no config.json\)"),
        ("ctx_of_file", r"is 16 but .* was written with a context of 32"),
        ("other_text_than_file", r"gives other tokens than .* \(first difference at position 0\)"),
        ("save_from_file", r"BASE is a llama.cpp base file already"),
        ("both_inputs", r"give a text or token ids, not both"),
    ],
)
def test_bad_input(models: dict[str, Path], tmp_path: Path, case: str, message: str) -> None:
    tokens = np.arange(4 * CTX) % 900
    path = tmp_path / "base.kld"
    if case in ("ctx_of_file", "other_text_than_file", "save_from_file"):
        compare(
            models["gpt2"],
            models["gpt2"],
            token_ids=tokens,
            n_ctx=CTX,
            device="cpu",
            save_base=path,
        )
    calls = {
        "long_context": lambda: compare(
            models["gpt2"], models["gpt2_q4"], token_ids=np.arange(400) % 900, n_ctx=200
        ),
        "token_out_of_vocab": lambda: compare(
            models["gpt2"],
            models["gpt2_q4"],
            token_ids=np.where(np.arange(128) == 5, 1000, 3),
            n_ctx=CTX,
        ),
        "short_text": lambda: compare(
            models["llama"], models["llama_q4"], text=models["short"].read_text(), n_ctx=CTX
        ),
        "not_a_model": lambda: compare(
            models["not_a_model"], models["llama"], token_ids=tokens, n_ctx=CTX
        ),
        "ctx_of_file": lambda: compare(path, models["gpt2"], n_ctx=16),
        "other_text_than_file": lambda: compare(path, models["gpt2"], token_ids=tokens + 1),
        "save_from_file": lambda: compare(path, models["gpt2"], save_base=tmp_path / "again.kld"),
        "both_inputs": lambda: compare(models["gpt2"], models["gpt2"], text="w1", token_ids=tokens),
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(LMInputError, match=message):
        calls[case]()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
