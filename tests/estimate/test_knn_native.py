"""The compiled k-NN search against the cKDTree path: the same distances bit for bit.

The reference is scipy's cKDTree (``_tree_distances``, the fallback when the compiled kernels
are not built), which the brute-force tests of test_knn.py check in turn.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kldiv._native import load
from kldiv.estimate import knn
from kldiv.estimate._knn import Metric, _native_distances, _tree_distances

native = load("knn")
pytestmark = pytest.mark.skipif(native is None, reason="compiled kernels not built")


def _samples(case: str, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if case == "random":
        return rng.normal(size=(700, d)), rng.normal(0.4, 1.3, size=(500, d))
    if case == "duplicates":
        # Few distinct values: many copies inside x and inside y, and points of x also in y.
        x = np.round(rng.normal(size=(600, d)), 1)
        y = np.concatenate([np.round(rng.normal(0.2, 1.0, size=(300, d)), 1), x[:150]])
        return x, y
    if case == "one_point_repeated":
        # Long runs of one point: leaves that cannot be split.
        x = np.concatenate([np.zeros((200, d)), rng.normal(size=(100, d))])
        y = np.concatenate([np.zeros((90, d)), rng.normal(size=(60, d))])
        return x, y
    if case == "tiny":
        return rng.normal(size=(3, d)), rng.normal(size=(2, d))
    if case == "wide_scales":
        scale = 10.0 ** rng.uniform(-150, 150, size=d)
        return rng.normal(size=(400, d)) * scale, rng.normal(size=(300, d)) * scale
    raise ValueError(case)


CASES = [
    ("random", 1, 1),
    ("random", 2, 3),
    ("random", 5, 1),
    ("random", 5, 7),
    ("random", 8, 2),
    ("random", 13, 1),
    ("random", 20, 4),
    ("duplicates", 1, 2),
    ("duplicates", 2, 1),
    ("duplicates", 3, 5),
    ("one_point_repeated", 2, 1),
    ("one_point_repeated", 6, 3),
    ("tiny", 1, 1),
    ("tiny", 4, 2),
    ("wide_scales", 3, 2),
]


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize(("case", "d", "k"), CASES)
def test_distances_equal_the_cktree_path(
    case: str, d: int, k: int, adaptive: bool, metric: Metric
) -> None:
    x, y = _samples(case, d, seed=d * 100 + k)
    expected = _tree_distances(x, y, k=k, adaptive=adaptive, metric=metric)
    result = _native_distances(native, x, y, k=k, adaptive=adaptive, metric=metric)
    np.testing.assert_array_equal(result[0], expected[0])
    np.testing.assert_array_equal(result[1], expected[1])
    if expected[2] is None:
        assert (expected[0] < 0).any() or (expected[1] < 0).any() or not adaptive
    else:
        assert result[2] is not None
        np.testing.assert_array_equal(result[2], expected[2])
    assert result[3] == expected[3]


@pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("case", ["random", "duplicates"])
def test_value_equals_the_cktree_path(
    case: str, adaptive: bool, metric: Metric, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _samples(case, 3, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled = knn(x, y, k=2, adaptive=adaptive, metric=metric)
        monkeypatch.setenv("KLDIV_NATIVE", "0")
        fallback = knn(x, y, k=2, adaptive=adaptive, metric=metric)
    assert compiled.value == fallback.value
    assert compiled.stderr == fallback.stderr
    assert compiled.params == fallback.params


def test_missing_neighbours_raise_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.array([[0.0], [0.0], [1.0]])  # x_0 and x_1 have one neighbour at positive distance
    y = np.array([[5.0], [6.0]])
    for native_setting in ("1", "0"):
        monkeypatch.setenv("KLDIV_NATIVE", native_setting)
        with (
            pytest.warns(UserWarning, match="2 sample points have exact copies"),
            pytest.raises(ValueError, match="fewer than k=2 distinct neighbours"),
        ):
            knn(x, y, k=2)
    rho, nu, _, _ = _native_distances(native, x, y, k=2, adaptive=False)
    np.testing.assert_array_equal(rho, [-1.0, -1.0, 1.0])
    np.testing.assert_array_equal(nu, [6.0, 6.0, 5.0])


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_threads_do_not_change_the_distances(threads: int) -> None:
    x, y = _samples("duplicates", 2, seed=4)
    reference = _tree_distances(x, y, k=3, adaptive=True)
    rho, nu = np.empty(len(x)), np.empty(len(x))
    copies, within = np.zeros(2, dtype=np.int64), np.empty((4, len(x)))
    native.neighbour_distances(x, y, 2, 3, threads, rho, nu, copies, within)
    np.testing.assert_array_equal(rho, reference[0])
    np.testing.assert_array_equal(nu, reference[1])
    np.testing.assert_array_equal(within, reference[2])
    assert int(copies.sum()) == reference[3]


def test_mismatched_buffers_are_refused() -> None:
    x, y = np.zeros((4, 2)), np.zeros((3, 2))
    copies = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="rho must hold 4 entries of 8 bytes, got 24 bytes"):
        native.neighbour_distances(x, y, 2, 1, 1, np.empty(3), np.empty(4), copies)
    with pytest.raises(ValueError, match="within must hold 16 entries"):
        native.neighbour_distances(x, y, 2, 1, 1, np.empty(4), np.empty(4), copies, np.empty(4))
    with pytest.raises(ValueError, match="dimension and k must be at least 1"):
        native.neighbour_distances(x, y, 2, 0, 1, np.empty(4), np.empty(4), copies)


def test_max_norm_distances_equal_cktree_p_inf_directly() -> None:
    """Against scipy's own cKDTree(p=inf) query, not through kldiv's fallback code."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(900, 4)), rng.normal(0.2, 1.1, size=(800, 4))
    rho, nu, _, copies = _native_distances(native, x, y, k=3, adaptive=False, metric="chebyshev")
    np.testing.assert_array_equal(rho, cKDTree(x).query(x, k=4, p=np.inf)[0][:, 3])
    np.testing.assert_array_equal(nu, cKDTree(y).query(x, k=3, p=np.inf)[0][:, 2])
    assert copies == 0
