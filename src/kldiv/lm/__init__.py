"""Comparing causal language models on a corpus, and llama.cpp's KL-divergence base files.

`compare` runs two models (Hugging Face `transformers` causal LMs, or one of them replaced by a
llama.cpp base file) over a token stream, scored as ``llama-perplexity`` scores it, and returns
the `kldiv.Report` of `kldiv.compare`. `LlamaCppLogits` reads the base files that
``llama-perplexity --kl-divergence-base`` writes; `LlamaCppLogitsWriter` and
`write_llamacpp_logits` write them. Needs PyTorch and `transformers` for the models
(``pip install "kldiv[lm]"``); the base files need only NumPy.
"""

from kldiv.lm._compare import Evaluation, compare, evaluate
from kldiv.lm._errors import LMInputError
from kldiv.lm._llamacpp import (
    LlamaCppFileError,
    LlamaCppLogits,
    LlamaCppLogitsWriter,
    file_size,
    is_llamacpp_file,
    llamacpp_statistics,
    write_llamacpp_logits,
)
from kldiv.lm._windows import Windows, make_windows

__all__ = [
    "Evaluation",
    "LMInputError",
    "LlamaCppFileError",
    "LlamaCppLogits",
    "LlamaCppLogitsWriter",
    "Windows",
    "compare",
    "evaluate",
    "file_size",
    "is_llamacpp_file",
    "llamacpp_statistics",
    "make_windows",
    "write_llamacpp_logits",
]
