"""Compare a quantized copy's output distributions with the original's, as llama.cpp does.

A small next-character model is trained for a moment on the docstrings of a few standard-library
modules (read from their source, nothing is downloaded). Two copies have their weight matrices
rounded to 8 and to 4 bits (symmetric, one scale per group of 32 inputs). `kldiv.report.compare`
then reports, over held-out positions, the KL from the original's next-character distribution
to each copy's, the top-1 agreement, Δp of the observed character and the perplexities. The
logits are also saved as float16 .npy files, ready for the command line, in a new temporary
folder (its path is printed) or in the folder given with --out:

    kldiv compare OUT/base.npy OUT/int4.npy --labels OUT/labels.npy

Run:  python examples/quantized_logits.py [--steps 300] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import ast
import copy
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import torch

from kldiv.report import compare

MODULES = ["textwrap", "string", "fractions", "statistics", "heapq", "bisect"]


def corpus() -> np.ndarray:
    """Characters (as byte values, folded to 7 bits) of the chosen modules' docstrings."""
    texts = []
    for module in MODULES:
        tree = ast.parse((Path(sysconfig.get_paths()["stdlib"]) / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                texts.append(ast.get_docstring(node) or "")
    data = np.frombuffer("\n".join(texts).encode("ascii", "replace"), dtype=np.uint8)
    return (data & 127).astype(np.int64)


class CharModel(torch.nn.Module):
    def __init__(self, context: int = 8) -> None:
        super().__init__()
        self.context = context
        self.embed = torch.nn.Embedding(128, 32)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(32 * context, 256), torch.nn.GELU(), torch.nn.Linear(256, 128)
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(windows).flatten(1))


def windows(data: torch.Tensor, starts: torch.Tensor, context: int) -> torch.Tensor:
    return torch.stack([data[s : s + context] for s in starts.tolist()])


def quantized(model: torch.nn.Module, bits: int, group: int = 32) -> torch.nn.Module:
    """A copy whose weight matrices are rounded to ``bits`` bits, one scale per group."""
    copy_ = copy.deepcopy(model)
    top = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for parameter in copy_.parameters():
            if parameter.ndim == 2:
                rows, cols = parameter.shape
                grouped = parameter.reshape(rows, cols // group, group)
                scale = grouped.abs().amax(-1, keepdim=True).clamp_min(1e-12) / top
                levels = (grouped / scale).round().clamp(-top - 1, top)
                parameter.copy_((levels * scale).reshape(rows, cols))
    return copy_


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--positions", type=int, default=4000)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the logits (default: a new temporary one)",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = torch.from_numpy(corpus())
    split = int(0.9 * len(data))
    model = CharModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        starts = torch.randint(0, split - model.context - 1, (256,), generator=generator)
        logits = model(windows(data, starts, model.context))
        loss = torch.nn.functional.cross_entropy(logits, data[starts + model.context])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    count = min(args.positions, len(data) - split - model.context - 1)
    starts = torch.arange(split, split + count)
    inputs, labels = windows(data, starts, model.context), data[starts + model.context]
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="kldiv-quantized-"))
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "labels.npy", labels.numpy())
    with torch.no_grad():
        base = model(inputs)
        np.save(args.out / "base.npy", base.numpy().astype(np.float16))
        result = {}
        for bits in (8, 4):
            test = quantized(model, bits)(inputs)
            np.save(args.out / f"int{bits}.npy", test.numpy().astype(np.float16))
            report = compare(base, test, labels=labels)
            summary = report.to_dict()
            print(f"\n== original vs {bits}-bit copy ==\n{report}")
            result[f"int{bits}"] = summary["kld"]["mean"]
    print(f"\nlogits saved in {args.out}/ for `kldiv compare`:")
    print(f"  kldiv compare {args.out / 'base.npy'} {args.out / 'int4.npy'} --labels", end=" ")
    print(args.out / "labels.npy")
    return result


if __name__ == "__main__":
    main()
