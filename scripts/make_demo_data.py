"""Make the example data that ``kldiv demo`` ships in ``src/kldiv/data/``.

Two data sets, both reproducible from this script and a seed:

* A character-level language model and a 4-bit quantized copy of it. A one-layer GRU is trained
  on the docstrings of part of the CPython standard library (parsed with ``ast``, never
  imported), then run over docstrings of other modules it has not seen. At held-out positions
  the script saves the float16 logits of the model and of its quantized copy, and the
  character that came next. The copy quantizes every weight matrix to 4 bits in groups of 32
  with one scale per group (the scheme of llama.cpp's Q4_0), then dequantizes it, which is
  what a quantized kernel computes.
* Two samples of a web-shop session table with numeric and categorical columns. The second
  sample has drifted: sessions are longer and more of them come from mobile devices, while the
  other columns keep their distribution.

Run from the repository root (needs PyTorch, pandas and pyarrow)::

    python scripts/make_demo_data.py

The shipped files were made with CPython 3.11's standard library and PyTorch 2 on a CPU; a
different Python version has different docstrings and gives slightly different logits.
"""

from __future__ import annotations

import argparse
import ast
import json
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

# Printable ASCII, newline, and one token for every other character.
ALPHABET = [chr(c) for c in range(32, 127)] + ["\n"]
UNKNOWN = len(ALPHABET)
VOCAB = len(ALPHABET) + 1

TRAIN_MODULES = [
    "argparse", "collections/__init__", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email/message", "enum", "fractions", "ftplib", "functools", "gettext",
    "http/client", "imaplib", "inspect", "ipaddress", "logging/__init__", "mailbox",
    "optparse", "os", "pathlib", "pickle", "pydoc", "random", "shutil", "smtplib", "ssl",
    "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
    "typing", "unittest/case", "urllib/parse", "urllib/request", "zipfile",
]  # fmt: skip
HELD_OUT_MODULES = ["calendar", "heapq", "bisect", "json/decoder", "json/encoder", "shlex"]


def docstrings(module: str) -> str:
    """All docstrings of one standard-library module, read from its source."""
    path = Path(sysconfig.get_paths()["stdlib"]) / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                found.append(text.strip())
    return "\n\n".join(found) + "\n\n"


def encode(text: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return np.array([index.get(c, UNKNOWN) for c in text], dtype=np.int64)


def train_language_model(train: np.ndarray, *, steps: int, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)

    class CharGRU(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, 64)
            self.gru = torch.nn.GRU(64, 160, batch_first=True)
            self.head = torch.nn.Linear(160, VOCAB)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            hidden, _ = self.gru(self.embed(tokens))
            return self.head(hidden)

    model = CharGRU()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    data = torch.from_numpy(train)
    generator = torch.Generator().manual_seed(seed)
    batch, length = 32, 64
    for step in range(steps):
        starts = torch.randint(0, len(data) - length - 1, (batch,), generator=generator)
        window = torch.stack([data[s : s + length + 1] for s in starts.tolist()])
        logits = model(window[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), window[:, 1:].ravel())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f} nats/char", flush=True)
    return model.eval()


def quantize_4bit(weight: Any, group: int = 32) -> Any:
    """Symmetric 4-bit quantization in groups along the input dimension, dequantized."""
    rows, cols = weight.shape
    grouped = weight.reshape(rows, cols // group, group)
    scale = grouped.abs().amax(dim=-1, keepdim=True) / 7
    scale = scale.clamp_min(1e-12)
    levels = (grouped / scale).round().clamp(-8, 7)
    return (levels * scale).reshape(rows, cols)


def language_model_data(out: Path, *, positions: int, steps: int, seed: int) -> dict[str, object]:
    import copy

    import torch

    train = encode("".join(docstrings(m) for m in TRAIN_MODULES))
    held_out = encode("".join(docstrings(m) for m in HELD_OUT_MODULES))
    model = train_language_model(train, steps=steps, seed=seed)
    quantized = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in quantized.named_parameters():
            if parameter.ndim == 2:
                parameter.copy_(quantize_4bit(parameter))
                print(f"quantized {name} {tuple(parameter.shape)} to 4 bits")
        tokens = torch.from_numpy(held_out[: positions + 1])[None]
        base = model(tokens[:, :-1])[0]
        test = quantized(tokens[:, :-1])[0]
    labels = held_out[1 : positions + 1]
    np.save(out / "lm_base_logits.npy", base.numpy().astype(np.float16))
    np.save(out / "lm_int4_logits.npy", test.numpy().astype(np.float16))
    np.save(out / "lm_labels.npy", labels.astype(np.int32))
    return {
        "train_characters": int(train.size),
        "held_out_positions": positions,
        "vocabulary": VOCAB,
    }


def session_table(rng: np.random.Generator, rows: int, *, drifted: bool) -> Any:
    import pandas as pd

    device_share = [0.68, 0.24, 0.08] if drifted else [0.45, 0.45, 0.10]
    device = rng.choice(["mobile", "desktop", "tablet"], size=rows, p=device_share)
    countries = ["DE", "FR", "GB", "IT", "NL", "PL", "ES", "SE"]
    country = rng.choice(countries, size=rows, p=[0.24, 0.18, 0.16, 0.12, 0.09, 0.08, 0.08, 0.05])
    # Mobile sessions are shorter; the drifted sample is also longer across the board.
    median_minutes = np.where(device == "mobile", 4.0, 7.0) * (1.6 if drifted else 1.0)
    session_minutes = rng.lognormal(np.log(median_minutes), 0.6)
    pages_viewed = 1 + rng.poisson(session_minutes / 1.5)
    basket_value = rng.gamma(2.0, 24.0, size=rows) + 0.35 * pages_viewed
    age = np.clip(np.round(rng.normal(39, 12, size=rows)), 18, 85).astype(np.int64)
    return pd.DataFrame(
        {
            "session_minutes": session_minutes,
            "pages_viewed": pages_viewed,
            "basket_value": basket_value,
            "age": age,
            "device": device,
            "country": country,
        }
    )


def tabular_data(out: Path, *, rows: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    reference = session_table(rng, rows, drifted=False)
    current = session_table(rng, rows, drifted=True)
    reference.to_csv(out / "sessions_reference.csv", index=False, float_format="%.8g")
    current.to_parquet(out / "sessions_current.parquet", index=False)
    # pages_viewed and basket_value follow session_minutes, so they drift a little too.
    return {"rows": rows, "drifted_columns": ["session_minutes", "device"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("src/kldiv/data"))
    parser.add_argument("--positions", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20240607)
    parser.add_argument("--part", choices=["all", "model", "tables"], default="all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {}
    if args.part in ("all", "model"):
        summary["language_model"] = language_model_data(
            args.out, positions=args.positions, steps=args.steps, seed=args.seed
        )
    if args.part in ("all", "tables"):
        summary["sessions"] = tabular_data(args.out, rows=args.rows, seed=args.seed)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
