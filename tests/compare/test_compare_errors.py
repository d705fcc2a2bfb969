"""Every error of `kldiv.report.compare` names the input, the place and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from kldiv.report import InputError, compare


def probs(rows: int = 4, vocab: int = 3) -> np.ndarray:
    return np.full((rows, vocab), 1.0 / vocab)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match=r"base has shape \(4, 3\) and test has shape \(4, 5\)"):
        compare(probs(), probs(4, 5), kind="probs")


@pytest.mark.parametrize(
    ("shape", "message"),
    [((3,), r"needs \(positions, vocabulary\)"), ((0, 3), "holds no position")],
)
def test_inputs_need_positions(shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        compare(np.zeros(shape), np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("side", ["base", "test"])
def test_non_finite_entry_is_located(bad, side) -> None:
    base, test = np.zeros((6, 4)), np.zeros((6, 4))
    (base if side == "base" else test)[5, 2] = bad
    with pytest.raises(
        InputError, match=rf"^{side}: entry {bad} at index \(5, 2\); entries must be finite"
    ):
        compare(base, test, chunk_rows=2, nonfinite="raise")


def test_index_is_reported_in_the_input_shape() -> None:
    base, test = np.zeros((2, 3, 4)), np.zeros((2, 3, 4))
    test[1, 0, 3] = np.nan
    with pytest.raises(InputError, match=r"index \(1, 0, 3\)") as caught:
        compare(base, test, nonfinite="raise")
    assert caught.value.argument == "test"


def test_negative_probability() -> None:
    test = probs()
    test[2] = [1.2, -0.2, 0.0]
    with pytest.raises(
        InputError, match=r"^test: entry -0.2 at index \(2, 1\); probabilities must be >= 0"
    ):
        compare(probs(), test, kind="probs")


def test_unnormalized_probabilities() -> None:
    base = probs()
    base[3] = [0.5, 0.5, 0.5]
    with pytest.raises(InputError, match=r"^base: row at index \(3,\) sums to 1.5, not 1"):
        compare(base, probs(), kind="probs")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0, 1, 3, 0]), "token id 3 at position 2 is outside the vocabulary of 3"),
        (np.array([0.0, 1.0, 2.0, 0.0]), "labels must be integer token ids"),
        (np.array([0, 1]), r"shape \(2,\) does not match the 4 positions"),
    ],
)
def test_bad_labels(labels, message) -> None:
    with pytest.raises(InputError, match=message) as caught:
        compare(probs(), probs(), kind="probs", labels=labels)
    assert caught.value.argument == "labels"


@pytest.mark.parametrize("chunk_rows", [0, -3, 2.5, True])
def test_bad_chunk_rows(chunk_rows) -> None:
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer or None"):
        compare(probs(), probs(), kind="probs", chunk_rows=chunk_rows)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind 'softmax'"):
        compare(probs(), probs(), kind="softmax")


def test_short_labels_name_the_one_expected_shape() -> None:
    """The message said "expected (4,) or (4,)" for inputs of shape (N, V)."""
    with pytest.raises(InputError) as caught:
        compare(probs(), probs(), kind="probs", labels=np.zeros(3, dtype=np.int64))
    assert str(caught.value) == (
        "labels: shape (3,) does not match the 4 positions of the inputs (expected (4,))"
    )
    with pytest.raises(InputError, match=r"\(expected \(2, 2\) or \(4,\)\)$"):
        compare(
            probs().reshape(2, 2, 3),
            probs().reshape(2, 2, 3),
            kind="probs",
            labels=np.zeros(3, dtype=np.int64),
        )


@pytest.mark.parametrize("torch_side", ["base", "test"])
def test_numpy_and_torch_mixed_name_both_types(torch_side) -> None:
    """array-api-compat's "Multiple namespaces" TypeError is replaced by one naming both."""
    torch = pytest.importorskip("torch")
    numpy_side, tensor = probs(), torch.from_numpy(probs())
    pair = (tensor, numpy_side) if torch_side == "base" else (numpy_side, tensor)
    names = ["torch.Tensor", "numpy.ndarray"]
    if torch_side == "test":
        names.reverse()
    with pytest.raises(TypeError) as caught:
        compare(*pair, kind="probs")
    assert str(caught.value) == (
        f"base is a {names[0]} and test is a {names[1]}; compare needs both from the same "
        "array library: convert one, e.g. torch.from_numpy(array) or tensor.numpy(force=True)"
    )
