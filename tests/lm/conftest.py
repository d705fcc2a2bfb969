"""Tiny causal LMs built from a config, saved with a tokenizer, and a 4-bit copy of each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

VOCAB = 1000
N_WORDS = 600


def corpus(seed: int, words: int) -> str:
    """Random words from a Zipf-like list, so that some tokens are frequent."""
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.3, size=words), N_WORDS) - 1
    return " ".join(f"w{r}" for r in ranks)


def build_tokenizer(add_bos: bool) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"])
    words = [f"w{i}" for i in range(N_WORDS)]
    tokenizer.train_from_iterator([" ".join(words)], trainer=trainer)
    if add_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def quantized_copy(model: object, bits: int = 4, group: int = 32) -> object:
    """Round-to-nearest symmetric quantization of every weight matrix, in groups along rows."""
    import copy

    quantized = copy.deepcopy(model)
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for parameter in quantized.parameters():
            if parameter.ndim != 2:
                continue
            rows, columns = parameter.shape
            blocks = parameter.reshape(-1, group)
            scale = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
            q = torch.clamp(torch.round(blocks / scale), -levels - 1, levels)
            parameter.copy_((q * scale).reshape(rows, columns))
    return quantized


def llama(seed: int) -> object:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return transformers.LlamaForCausalLM(config).eval()


def gpt2(seed: int) -> object:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=128,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model directories: llama (adds BOS), llama_q4, gpt2 (no BOS), gpt2_q4, llama_big_vocab."""
    root = tmp_path_factory.mktemp("models")
    with_bos, without_bos = build_tokenizer(True), build_tokenizer(False)
    folders = {}
    base_llama, base_gpt2 = llama(0), gpt2(1)
    for name, model, tokenizer in (
        ("llama", base_llama, with_bos),
        ("llama_q4", quantized_copy(base_llama), with_bos),
        ("gpt2", base_gpt2, without_bos),
        ("gpt2_q4", quantized_copy(base_gpt2), without_bos),
    ):
        folder = root / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    torch.manual_seed(2)
    config = base_llama.config.to_dict()
    config["vocab_size"] = VOCAB + 24
    bigger = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    bigger.save_pretrained(root / "llama_big_vocab")
    folders["llama_big_vocab"] = root / "llama_big_vocab"
    (root / "not_a_model").mkdir()
    (root / "not_a_model" / "weights.bin").write_bytes(b"\0" * 8)
    folders["not_a_model"] = root / "not_a_model"
    text = root / "corpus.txt"
    text.write_text(corpus(3, 700))
    folders["text"] = text
    short = root / "short.txt"
    short.write_text(corpus(4, 40))
    folders["short"] = short
    return folders
