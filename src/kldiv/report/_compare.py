"""`compare`: per-position divergences between two models' outputs, streamed in row chunks."""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from kldiv._array import KINDS, check_kind
from kldiv._sides import logsumexp
from kldiv.report._checks import (
    InputError,
    check_labels,
    check_normalized,
    normalization_tolerance,
    raise_first_problem,
    to_numpy,
    undefined_rows,
)
from kldiv.report._chunks import Rows
from kldiv.report._compiled import BFLOAT16, compiled_kernel, compiled_logits
from kldiv.report._fused import fused_applies, fused_logits, torch_for_widening
from kldiv.report._report import Report
from kldiv.report._statistics import CompiledStatistics, chunk_statistics, compiled_statistics

Progress = Callable[[int, int], None]

# A chunk of about this many float32 elements per input keeps the temporaries of the
# divergences near the CPU caches while amortizing the per-call overhead.
_CHUNK_ELEMENTS = 1 << 20
# The fused kernel keeps two float32 copies of both sides; half a million entries per input
# keeps them near a core's cache, measured fastest against a quarter and twice as many.
_FUSED_CHUNK_ELEMENTS = 1 << 19
# The compiled kernel splits each chunk's rows across the cores itself; 16M entries per input
# (32 MB of float16) amortize starting its threads and the serial work between chunks, and
# bound the resident pages (about 125 MB in all for two float16 inputs).
_COMPILED_CHUNK_ELEMENTS = 1 << 24
_MAX_WORKERS = 8
NONFINITE = ("report", "raise")


def compare(
    base: Any,
    test: Any,
    /,
    *,
    kind: str = "logits",
    labels: Any = None,
    chunk_rows: int | None = None,
    progress: bool | Progress = False,
    nonfinite: str = "report",
) -> Report:
    r"""Per-position KL(base‖test), reverse KL, JSD and top-1 agreement of two models' outputs.

    $$
    \mathrm{KL}_i = \sum_v p_i(v) \left(\log p_i(v) - \log q_i(v)\right)
    $$

    for each position $i$, with $p_i$ from ``base`` and $q_i$ from ``test``,
    as in llama.cpp's ``--kl-divergence`` mode. Rows are read ``chunk_rows`` at a time, so a
    memory-mapped input larger than RAM streams through bounded memory. Logits in NumPy arrays
    or CPU tensors go through one fused kernel per chunk that computes every statistic (rows
    it cannot finish, such as rows with -inf, are recomputed by the core): float16, bfloat16
    and float32 rows through compiled code that reads them as stored and splits each chunk's
    rows across the cores, others (or all, where the compiled kernels are not built) through
    NumPy in a dozen passes; other inputs use `kldiv.kl_div` and `kldiv.js_div` on each chunk.
    NumPy chunks run on one thread per core. For NumPy log-probabilities of more than 2**28 entries per input, and
    PyTorch installed, the per-chunk computation is fused by `torch.compile`; without a
    working compiler it falls back to the same computation uncompiled.

    Args:
        base: the reference model's outputs, shape (N, V) or (B, T, V) (flattened to B·T
            positions); a NumPy array or memory map, a torch tensor, or any Array API array;
            float16, bfloat16, float32 or float64.
        test: the compared model's outputs, the same shape as ``base``.
        kind: what both inputs hold: ``"logits"``, ``"log_probs"`` or ``"probs"``. Entries
            are finite, except -inf for zero probability in logits and log-probabilities
            (see ``nonfinite`` for NaN and +inf). Every row of log-probabilities must sum to 1
            after ``exp``, and every row of probabilities, within √eps of the input's dtype
            (3.1e-2 for float16, 8.8e-2 for bfloat16): logits passed as log-probabilities
            fail with a message suggesting ``kind="logits"``. The check is free where the
            fused kernels compute the row's log-sum-exp anyway (NumPy arrays and CPU
            tensors); elsewhere it costs one log-sum-exp per row.
        labels: the observed next tokens, integers of shape (N,) or (B, T); a negative label
            skips its position. With labels the report adds Δp and perplexities.
        chunk_rows: rows per chunk; by default about 16 million elements per input for the
            compiled logits kernel, half a million for other logits in NumPy or on the CPU, a
            million otherwise. Any value gives the same result.
        progress: True for a progress bar on stderr (needs rich), or a callable receiving
            ``(rows_done, rows_total)`` after each chunk.
        nonfinite: what to do with positions whose KL(base‖test) is not finite:
            ``"report"`` (the default) computes every other position and counts them, NaN
            where an input row holds NaN or +inf (the divergences are undefined) and +inf
            where test gives probability 0 to a token base does not; ``"raise"`` raises
            InputError at the first of them instead.

    Returns:
        A `Report` with per-position values (float64, nats) and their summary.

    Raises:
        InputError: (a ValueError) naming ``base``, ``test`` or ``labels`` and the first
            problem: a negative probability, a row not summing to 1, a label out of range,
            or with ``nonfinite="raise"`` a NaN or +inf entry or an infinite KL.
        ValueError: on shapes that differ or hold no position, or an unknown ``kind`` or
            ``nonfinite``.
        TypeError: if base and test come from different array libraries.

    References:
        llama.cpp, ``tools/perplexity`` (``--kl-divergence``): the statistics reported here.

    Examples:
        >>> import numpy as np
        >>> from kldiv.report import compare
        >>> base = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
        >>> test = np.log(np.array([[0.5, 0.5], [0.8, 0.2]]))
        >>> report = compare(base, test, kind="log_probs")
        >>> report.kld.round(4)
        array([0.    , 0.0367])
        >>> report.to_dict()["top1_agreement"]["value"]
        1.0
    """
    check_kind(kind, allowed=KINDS)
    check_kind(nonfinite, name="nonfinite", allowed=NONFINITE)
    strict = nonfinite == "raise"
    rows_base, rows_test = Rows(base, "base"), Rows(test, "test")
    if rows_base.shape != rows_test.shape:
        raise ValueError(
            f"base has shape {rows_base.shape} and test has shape {rows_test.shape}; "
            "compare needs outputs for the same positions over the same vocabulary"
        )
    n, vocab = rows_base.n, rows_base.vocab
    _check_same_library(rows_base.raw(0, 1), rows_test.raw(0, 1))
    label_rows = check_labels(labels, rows_base.shape[:-1], n, vocab)
    # Log-probabilities take the logits kernel: their log-softmax is themselves, and the
    # kernel's log-sum-exp of each row tells whether they are log-probabilities at all.
    fused_kind = "logits" if kind == "log_probs" else kind
    fused = fused_applies(rows_base.raw(0, 1), rows_test.raw(0, 1), fused_kind)
    checked = _Normalization(rows_base, rows_test) if kind == "log_probs" else None
    kernel = _compiled_for(rows_base, rows_test) if fused else None
    elements = _FUSED_CHUNK_ELEMENTS if fused else _CHUNK_ELEMENTS
    if kernel is not None:
        elements = _COMPILED_CHUNK_ELEMENTS
    step = _chunk_rows(chunk_rows, vocab, elements)
    kld, reverse, jsd = (np.empty(n) for _ in range(3))
    top1 = np.empty(n, dtype=bool)
    label_base, label_test = np.full(n, np.nan), np.full(n, np.nan)
    batch_shape = rows_base.shape[:-1]

    torch = torch_for_widening(n * vocab) if fused and kernel is None else None
    compiled = None
    if rows_base.is_numpy and rows_test.is_numpy and not fused:
        compiled = compiled_statistics(kind, step, n * vocab)

    def evaluate(start: int) -> int:
        nonlocal compiled
        stop = min(start + step, n)
        chunk_labels = None if label_rows is None else label_rows[start:stop]
        where = _Where(start, batch_shape, kind, strict, checked)
        out = None
        if fused:
            out = _fused_chunk(
                rows_base, rows_test, start, stop, chunk_labels, where, torch, kernel
            )
        elif compiled is not None:
            a, b = rows_base.raw(start, stop), rows_test.raw(start, stop)
            try:
                out = _chunk(a, b, chunk_labels, where, compiled)
            except InputError:
                raise
            except Exception:
                # No compiler or an unsupported platform: the eager path gives the same values.
                compiled = None
        if out is None:
            a, b = rows_base.read(start, stop, kind), rows_test.read(start, stop, kind)
            out = _chunk(a, b, chunk_labels, where)
        kld[start:stop], reverse[start:stop], jsd[start:stop], top1[start:stop] = out[:4]
        if chunk_labels is not None:
            label_base[start:stop], label_test[start:stop] = out[4], out[5]
        rows_base.release(start, stop)
        rows_test.release(start, stop)
        return stop

    report_progress, close = _progress(progress, n)
    try:
        # The compiled kernel runs one chunk on every core itself.
        workers = 1 if kernel is not None else _workers(rows_base, rows_test, fused=fused)
        with compiled if compiled is not None else _one_torch_thread(torch):
            for stop in _in_order(evaluate, range(0, n, step), workers):
                report_progress(stop, n)
    finally:
        close()
    if strict:
        _raise_first_infinite(kld, batch_shape)
    if label_rows is None:
        return Report(kind, kld, reverse, jsd, top1)
    labeled = label_rows >= 0
    return Report(kind, kld, reverse, jsd, top1, label_base[labeled], label_test[labeled])


class _Where:
    """What a chunk's computation needs besides its rows: where it is and what to check.

    Attributes:
        start: the chunk's first row; ``batch_shape`` the inputs' batch shape (to locate
            problems in the inputs' own indices).
        kind: what the inputs hold.
        strict: raise at a NaN or +inf entry instead of reporting its row as NaN.
        normalization: the tolerances of the check that log-probabilities sum to 1, or None.
    """

    def __init__(
        self,
        start: int,
        batch_shape: tuple[int, ...],
        kind: str,
        strict: bool,
        normalization: _Normalization | None,
    ) -> None:
        self.start, self.batch_shape = start, batch_shape
        self.kind, self.strict, self.normalization = kind, strict, normalization

    def check(self, log_totals: np.ndarray) -> None:
        """Raise InputError for the first row whose log-sum-exp (rows, 2) is off 0."""
        if self.normalization is not None:
            normalization = self.normalization
            check_normalized(
                log_totals,
                normalization.tolerances,
                normalization.dtypes,
                self.start,
                self.batch_shape,
            )


class _Normalization:
    """The tolerances on Σ exp(log p) for both inputs, from their stored dtypes."""

    def __init__(self, rows_base: Rows, rows_test: Rows) -> None:
        dtypes = tuple(_dtype_name(rows) for rows in (rows_base, rows_test))
        self.dtypes: tuple[str, str] = (dtypes[0], dtypes[1])
        self.tolerances = (
            normalization_tolerance(self.dtypes[0]),
            normalization_tolerance(self.dtypes[1]),
        )


def _dtype_name(rows: Rows) -> str:
    stored = rows.stored(0, 1)
    if stored is not None and stored[1] == BFLOAT16:
        return "bfloat16"
    return str(rows.raw(0, 1).dtype).removeprefix("torch.")


def _check_same_library(a: Any, b: Any) -> None:
    """Raise TypeError, naming both types, where base and test come from different libraries."""
    try:
        array_api_compat.array_namespace(a, b)
    except TypeError:
        raise TypeError(
            f"base is a {_type_name(a)} and test is a {_type_name(b)}; compare needs both "
            "from the same array library: convert one, e.g. torch.from_numpy(array) or "
            "tensor.numpy(force=True)"
        ) from None


def _type_name(x: Any) -> str:
    kind = type(x)
    return f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"


def _raise_first_infinite(kld: np.ndarray, batch_shape: tuple[int, ...]) -> None:
    infinite = np.isinf(kld)
    if infinite.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(infinite)), batch_shape))
        raise InputError(
            "test",
            f"KL(base‖test) is infinite at position {index}: test gives probability 0 to a "
            'token that base does not; nonfinite="report" counts such positions instead',
        )


def _compiled_for(rows_base: Rows, rows_test: Rows) -> ModuleType | None:
    """The compiled logits kernel if it is built and reads both inputs as stored, else None."""
    kernel = compiled_kernel()
    if kernel is None:
        return None
    a, b = rows_base.stored(0, 1), rows_test.stored(0, 1)
    if a is None or b is None or a[1] != b[1]:
        return None
    return kernel


def _workers(*inputs: Rows, fused: bool) -> int:
    """Threads to run chunks on: one per core where a chunk's work is NumPy's.

    Other libraries parallelize inside each operation.
    """
    if not fused and not all(rows.is_numpy for rows in inputs):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(_MAX_WORKERS, cores or 1)


def _in_order(evaluate: Callable[[int], int], starts: range, workers: int) -> Iterator[int]:
    """Run ``evaluate`` on every start, ``workers`` at a time, yielding results in order.

    NumPy's ufuncs and compiled PyTorch kernels release the GIL, so chunks on threads use
    every core. The first chunk runs alone (it compiles, if anything does); then at most
    ``workers + 1`` chunks are in flight, which bounds the memory. The first failing chunk
    (in row order) raises.
    """
    if len(starts) == 0:
        return
    yield evaluate(starts[0])
    if workers < 2:
        for start in starts[1:]:
            yield evaluate(start)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[int]] = deque()
        try:
            for start in starts[1:]:
                pending.append(pool.submit(evaluate, start))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def _one_torch_thread(torch: Any) -> Iterator[None]:
    """PyTorch on one thread while it widens chunks: `compare` runs one chunk per core."""
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fused_chunk(
    rows_base: Rows,
    rows_test: Rows,
    start: int,
    stop: int,
    labels: np.ndarray | None,
    where: _Where,
    torch: Any,
    kernel: ModuleType | None,
) -> tuple[np.ndarray, ...]:
    """The fused kernel on one chunk; rows it cannot finish go through the core's divergences.

    The compiled ``kernel`` where given, else the NumPy/PyTorch one.
    """
    index = None if labels is None else np.maximum(labels, 0)[:, None]
    a = None if kernel is None else rows_base.stored(start, stop)
    b = None if kernel is None else rows_test.stored(start, stop)
    log_totals = np.empty((stop - start, 2))
    if kernel is not None and a is not None and b is not None:
        values, exact = compiled_logits(kernel, a, b, index, log_totals=log_totals)
    else:
        raw_a, raw_b = rows_base.raw(start, stop), rows_test.raw(start, stop)
        values, exact = fused_logits(raw_a, raw_b, index, torch=torch, log_totals=log_totals)
    if not exact.any():
        where.check(log_totals)
        return values
    log_totals[exact] = np.nan  # checked when they are recomputed
    wide_a, wide_b = (
        rows_base.read(start, stop, where.kind),
        rows_test.read(start, stop, where.kind),
    )
    rows = np.flatnonzero(exact)
    try:
        redone = _chunk(
            _take(wide_a, rows),
            _take(wide_b, rows),
            None if labels is None else labels[rows],
            where,
        )
    except InputError:
        # Locate the problem in the whole chunk, with its row numbers.
        _chunk(wide_a, wide_b, labels, where)
        raise
    where.check(log_totals)
    for value, fixed in zip(values, redone, strict=True):
        value[rows] = fixed
    return values


def _take(rows: Any, index: np.ndarray) -> Any:
    if isinstance(rows, np.ndarray):
        return rows[index]
    xp = array_api_compat.array_namespace(rows)
    return xp.take(rows, xp.asarray(index, device=array_api_compat.device(rows)), axis=0)


def _chunk(
    a: Any,
    b: Any,
    labels: np.ndarray | None,
    where: _Where,
    compiled: CompiledStatistics | None = None,
) -> tuple[np.ndarray, ...]:
    """Divergences, top-1 agreement and label log-probabilities for one chunk, as NumPy.

    ``where`` locates the chunk and says what to check; ``compiled``, if given, computes the
    statistics from the raw NumPy rows. Rows with NaN or +inf entries come out NaN (or raise
    InputError where ``where.strict``).
    """
    kind, located = where.kind, (where.start, where.batch_shape)
    # Skipped positions (negative labels) read token 0 and are dropped by the caller.
    index = None if labels is None else np.maximum(labels, 0)[:, None]
    if where.normalization is not None:
        # Before the divergences: the core checks log-probabilities too, with its own message;
        # rows holding NaN or +inf have a NaN total and are left to the checks below.
        xp = array_api_compat.array_namespace(a, b)
        with np.errstate(all="ignore"):
            totals = [to_numpy(logsumexp(xp, side, -1)) for side in (a, b)]
        where.check(np.stack(totals, axis=-1))
    try:
        # Invalid entries are located and reported below, after the fact, instead of warned about.
        with np.errstate(all="ignore"):
            if compiled is not None:
                values = compiled(a, b, index)
            else:
                device = array_api_compat.device(a)
                xp = array_api_compat.array_namespace(a, b)
                on_device = None if index is None else xp.asarray(index, device=device)
                values = chunk_statistics(a, b, kind, on_device)
    except ValueError as error:
        if not where.strict and undefined_rows(a, b).any():
            return _without_undefined(a, b, labels, where, compiled)
        raise_first_problem(a, b, kind, *located)
        raise error
    out = [to_numpy(v) for v in values]
    out = [v if v.dtype == np.bool_ else v.astype(np.float64, copy=False) for v in out]
    if not all(np.isfinite(v).all() for v in out[:3]):
        if not where.strict and undefined_rows(a, b).any():
            return _without_undefined(a, b, labels, where, compiled)
        raise_first_problem(a, b, kind, *located)
    return tuple(out)


def _without_undefined(
    a: Any,
    b: Any,
    labels: np.ndarray | None,
    where: _Where,
    compiled: CompiledStatistics | None,
) -> tuple[np.ndarray, ...]:
    """`_chunk` with the rows holding NaN or +inf as NaN (agreement False), the others exact.

    Those rows are replaced by a uniform distribution for the computation, so that the other
    rows' problems are still located at their own row numbers.
    """
    undefined = undefined_rows(a, b)
    xp = array_api_compat.array_namespace(a, b)
    vocab = int(a.shape[-1])
    fill = {"logits": 0.0, "log_probs": -math.log(vocab), "probs": 1.0 / vocab}[where.kind]
    device = array_api_compat.device(a)
    mask = xp.asarray(undefined[:, None], device=device)
    a, b = (
        xp.where(mask, xp.asarray(fill, dtype=side.dtype, device=device), side) for side in (a, b)
    )
    out = list(_chunk(a, b, labels, where, compiled))
    for i, value in enumerate(out):
        value = value.copy()
        value[undefined] = False if value.dtype == np.bool_ else np.nan
        out[i] = value
    return tuple(out)


def _chunk_rows(chunk_rows: int | None, vocab: int, elements: int) -> int:
    if chunk_rows is None:
        return max(1, elements // vocab)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
    return chunk_rows


def _progress(progress: bool | Progress, total: int) -> tuple[Progress, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return lambda done, total: None, lambda: None
    from rich.console import Console
    from rich.progress import Progress as Bar

    bar = Bar(console=Console(stderr=True), transient=True)
    task = bar.add_task("comparing", total=total)
    bar.start()
    return lambda done, _: bar.update(task, completed=done), bar.stop
