"""The large-input recipe: per-row KL of (rows × vocab) arrays on disk with the distributed scheduler."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.special

import kldiv

pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
zarr = pytest.importorskip("zarr")
from kldiv.dask import NpyRows, open_rows  # noqa: E402

ROWS, VOCAB = 301, 97  # 301 rows: the last block is shorter than the others

pytestmark = pytest.mark.xdist_group("dask-local-cluster")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # Worker processes, as on a real cluster: the graph must pickle without its data.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as connected,
    ):
        yield connected


@pytest.fixture(scope="module")
def logits() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "teacher": rng.normal(scale=3.0, size=(ROWS, VOCAB)).astype(np.float16),
        "student": rng.normal(scale=3.0, size=(ROWS, VOCAB)).astype(np.float16),
    }


def _reference(logits: dict[str, np.ndarray]) -> np.ndarray:
    p = scipy.special.softmax(logits["teacher"].astype(np.float64), axis=-1)
    q = scipy.special.softmax(logits["student"].astype(np.float64), axis=-1)
    return scipy.special.rel_entr(p, q).sum(-1)


def _save(kind: str, directory: Path, name: str, array: np.ndarray) -> Path:
    if kind == "npy":
        path = directory / f"{name}.npy"
        np.save(path, array)
        return path
    path = directory / f"{name}.zarr"
    # Stored blocks split the vocabulary; open_rows still hands out whole rows.
    stored = zarr.open_array(
        str(path), mode="w", shape=array.shape, chunks=(40, 30), dtype=array.dtype
    )
    stored[:] = array
    return path


@pytest.mark.parametrize("storage", ["npy", "zarr"])
def test_per_row_kl_from_files_on_local_cluster(
    storage: str, client: Any, logits: dict[str, np.ndarray], tmp_path: Path
) -> None:
    teacher = open_rows(_save(storage, tmp_path, "teacher", logits["teacher"]), rows_per_chunk=64)
    student = open_rows(_save(storage, tmp_path, "student", logits["student"]), rows_per_chunk=64)
    assert teacher.chunks == ((64, 64, 64, 64, 45), (VOCAB,))
    assert teacher.dtype == np.float16

    kl = kldiv.kl_div(teacher, student, kind="logits")
    values = client.compute(kl).result()

    assert values.dtype == np.float16
    # float32 computation rounded once to float16.
    np.testing.assert_allclose(values, _reference(logits), rtol=np.finfo(np.float16).eps, atol=1e-3)


def test_graph_carries_file_names_not_data(logits: dict[str, np.ndarray], tmp_path: Path) -> None:
    big = np.zeros((4096, 512), dtype=np.float32)  # 8 MiB of data
    path = tmp_path / "big.npy"
    np.save(path, big)
    lazy = kldiv.entropy(open_rows(path, rows_per_chunk=512), kind="logits")
    size = len(pickle.dumps(dict(lazy.__dask_graph__())))
    assert size < 64 * 1024, f"the graph pickles to {size} bytes"
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), np.full(4096, np.log(512)))


def test_npy_rows_reads_the_requested_slice(tmp_path: Path) -> None:
    array = np.arange(60, dtype=np.float32).reshape(6, 10)
    np.save(tmp_path / "a.npy", array)
    rows = pickle.loads(pickle.dumps(NpyRows(str(tmp_path / "a.npy"))))
    assert rows.shape == (6, 10)
    np.testing.assert_array_equal(rows[2:5, :], array[2:5])


def test_default_chunking_keeps_whole_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((10, 32000), dtype=np.float16))
    array = open_rows(tmp_path / "a.npy")
    assert array.chunks == ((10,), (32000,))


@pytest.mark.parametrize(
    ("setup", "options", "error", "match"),
    [
        ("missing", {}, FileNotFoundError, "does not exist"),
        ("csv", {}, ValueError, "neither a .npy file nor a zarr directory"),
        ("one-dimensional", {}, ValueError, r"shape \(5,\); open_rows needs a 2-D"),
        ("fortran", {}, ValueError, "Fortran"),
        ("zarr-3d", {}, ValueError, r"shape \(2, 3, 4\); open_rows needs a 2-D"),
        ("ok", {"rows_per_chunk": 0}, ValueError, "rows_per_chunk must be a positive int"),
        ("ok", {"rows_per_chunk": True}, ValueError, "rows_per_chunk must be a positive int"),
    ],
)
def test_open_rows_rejects_bad_input(
    setup: str, options: dict[str, Any], error: type, match: str, tmp_path: Path
) -> None:
    path = tmp_path / "a.npy"
    if setup == "csv":
        path = tmp_path / "a.csv"
        path.write_text("1,2\n")
    elif setup == "one-dimensional":
        np.save(path, np.zeros(5))
    elif setup == "fortran":
        np.save(path, np.asfortranarray(np.zeros((3, 4))))
    elif setup == "zarr-3d":
        path = tmp_path / "a.zarr"
        zarr.open_array(str(path), mode="w", shape=(2, 3, 4), dtype="f4")
    elif setup == "ok":
        np.save(path, np.zeros((3, 4)))
    with pytest.raises(error, match=match):
        open_rows(path, **options)
