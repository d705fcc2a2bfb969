"""Causal language models from Hugging Face `transformers`, run one batch of windows at a time."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from kldiv.lm._errors import LMInputError

DTYPES = ("auto", "float32", "float16", "bfloat16")
# "org/name" or "name" as the hub spells repositories; a local path is tried first.
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


class CausalLM:
    """A causal LM (and its tokenizer, if any) that returns the logits of scored positions.

    Args:
        model: a `transformers` causal LM, already loaded.
        tokenizer: its tokenizer, or None.
        name: how errors name it (its path or hub id).
    """

    def __init__(self, model: Any, tokenizer: Any, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        config = model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = getattr(text_config, "vocab_size", None)
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if output is not None and hasattr(output, "weight"):
            vocab = int(output.weight.shape[0])
        if vocab is None:
            raise LMInputError(name, "has no vocabulary size in its config")
        self.vocab = int(vocab)
        self.max_positions: int | None = None
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(text_config, key, None)
            if isinstance(value, int) and value > 0:
                self.max_positions = value
                break
        parameters = inspect.signature(model.forward).parameters
        self._keep = "logits_to_keep" in parameters

    @property
    def device(self) -> Any:
        """The device the model's inputs go to."""
        return self.model.device

    def bos_added(self) -> int | None:
        """The BOS id if the tokenizer puts one in front of a text, else None."""
        tokenizer = self.tokenizer
        bos = getattr(tokenizer, "bos_token_id", None)
        if tokenizer is None or bos is None:
            return None
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
        return int(bos) if len(ids) > 0 and ids[0] == bos else None

    def tokenize(self, text: str) -> list[int]:
        """The ids of ``text`` with the BOS the tokenizer adds, but no EOS (as llama.cpp)."""
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.bos_added()
        return ids if bos is None else [bos, *ids]

    def scored_logits(self, inputs: Any, first: int) -> Any:
        """Logits at positions ``first … n_ctx − 2`` of each window, shape (B, R, V).

        Only the positions from ``first`` on go through the output layer where the model
        takes ``logits_to_keep``.
        """
        import torch

        n_ctx = inputs.shape[1]
        ids = torch.as_tensor(inputs, device=self.device)
        with torch.inference_mode():
            if self._keep:
                out = self.model(input_ids=ids, use_cache=False, logits_to_keep=n_ctx - first)
                return out.logits[:, :-1]
            out = self.model(input_ids=ids, use_cache=False)
            return out.logits[:, first:-1]


def load(source: Any, *, device: str | None, dtype: str, tokenizer: Any = None) -> CausalLM:
    """A `CausalLM` from a loaded model, a local directory with ``config.json`` or a hub id.

    Raises:
        LMInputError: when `transformers` is missing, the directory is not a model, or
            loading fails.
    """
    if dtype not in DTYPES:
        raise LMInputError("--dtype", f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if not isinstance(source, (str, Path)):
        if not hasattr(source, "config") or not callable(source):
            raise TypeError(
                f"a model side must be a transformers causal LM, a model directory or a hub "
                f"id, got {type(source).__name__}"
            )
        return CausalLM(source, tokenizer, type(source).__name__)
    name = str(source)
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LMInputError(
                name, "is a directory but not a Hugging Face model (it has no config.json)"
            )
    elif path.exists():
        raise LMInputError(name, "is neither a model directory nor a llama.cpp base file")
    elif not HUB_ID.match(name):
        raise LMInputError(name, "no such file or directory")
    try:
        import transformers
    except ImportError:
        raise LMInputError(
            name, "loading a model needs transformers: pip install 'kldiv[lm]'"
        ) from None
    torch_dtype = _torch_dtype(dtype)
    model: Any
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)  # type: ignore[no-untyped-call]
    except Exception as error:  # transformers raises many types for unreadable models
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not path.exists():  # a hub id, or a mistyped path that looked like one
            raise LMInputError(
                name,
                f"is no local file or directory, and loading it from the hub failed ({message})",
            ) from error
        raise LMInputError(name, f"cannot be loaded as a causal LM ({message})") from error
    if tokenizer is None:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        except Exception:  # a model saved without its tokenizer: --tokens still works
            tokenizer = None
    model.eval()
    if not getattr(model, "is_quantized", False) and getattr(model, "hf_device_map", None) is None:
        target = resolve_device(device)
        try:
            model.to(target)
        except Exception as error:  # torch raises several types for unusable devices
            raise LMInputError("--device", f"cannot use device {target!r} ({error})") from error
    return CausalLM(model, tokenizer, name)


def resolve_device(device: str | None) -> str:
    """``device``, or "cuda" where available and "cpu" otherwise for None or "auto"."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_dtype(dtype: str) -> Any:
    if dtype == "auto":
        return "auto"
    import torch

    return getattr(torch, dtype)
