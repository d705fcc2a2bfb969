"""``kldiv estimate`` against direct computations of the plug-in and kNN estimators."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from kldiv.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--json"])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    return json.loads(captured.out)


def plug_in_kl(x: np.ndarray, y: np.ndarray, prior: float) -> float:
    categories = sorted(set(x) | set(y))
    cx = np.array([np.sum(x == c) for c in categories], dtype=float) + prior
    cy = np.array([np.sum(y == c) for c in categories], dtype=float) + prior
    p, q = cx / cx.sum(), cy / cy.sum()
    return float(np.sum(p * np.log(p / q)))


def knn_kl(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Wang, Kulkarni and Verdú (2009), eq. 5, for samples without ties."""
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    n, d = x.shape
    rho = cKDTree(x).query(x, k=k + 1)[0][:, k]
    nu = cKDTree(y).query(x, k=k)[0]
    nu = nu[:, k - 1] if nu.ndim == 2 else nu
    return float(d * np.mean(np.log(nu / rho)) + math.log(len(y) / (n - 1)))


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(17)
    n = 600
    x = pd.DataFrame(
        {
            "height": rng.normal(170, 10, n),
            "weight": rng.normal(70, 12, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
            "visits": np.minimum(rng.poisson(3, n), 8),
        }
    )
    y = pd.DataFrame(
        {
            "height": rng.normal(182, 10, n),
            "weight": rng.normal(70, 12, n),
            "colour": rng.choice(["red", "green", "blue", "violet"], n, p=[0.2, 0.3, 0.4, 0.1]),
            "visits": np.minimum(rng.poisson(3, n), 8),
            "only_in_y": rng.normal(size=n),
        }
    )
    folder = tmp_path_factory.mktemp("samples")
    x.to_csv(folder / "x.csv", index=False, float_format="%.10g")
    y.to_parquet(folder / "y.parquet", index=False)
    np.save(folder / "x.npy", x[["height", "weight"]].to_numpy())
    np.save(folder / "y.npy", y[["height", "weight"]].to_numpy())
    return folder, x, y


def binned_kl(x: np.ndarray, y: np.ndarray, bins: int, prior: float) -> tuple[float, float]:
    """KL and PSI over the deciles of x, from np.histogram with the outer edges at ±inf."""
    inner = np.unique(np.percentile(x, 100 * np.arange(1, bins) / bins))
    x_bins = np.searchsorted(inner, x, side="right")
    y_bins = np.searchsorted(inner, y, side="right")
    cx = np.histogram(x_bins, bins=np.arange(inner.size + 2))[0] + prior
    cy = np.histogram(y_bins, bins=np.arange(inner.size + 2))[0] + prior
    p, q = cx / cx.sum(), cy / cy.sum()
    return float(np.sum(p * np.log(p / q))), float(np.sum((p - q) * np.log(p / q)))


def test_each_column_matches_its_estimator(samples, capsys) -> None:
    folder, x, y = samples
    out = run_json(capsys, "estimate", str(folder / "x.csv"), str(folder / "y.parquet"))
    rows = {r["column"]: r for r in out["columns"]}
    assert set(rows) == {"height", "weight", "colour", "visits"}
    for name in ("colour", "visits"):  # Poisson(3) visits: at most 10 distinct values here
        assert len(set(x[name]) | set(y[name])) <= 10
        expected = plug_in_kl(x[name].to_numpy(), y[name].to_numpy(), 0.5)
        assert rows[name]["kl"] == pytest.approx(expected, rel=1e-9)
        assert rows[name]["method"] == "counts (prior 0.5)"
    for name in ("height", "weight"):
        kl, psi = binned_kl(x[name].to_numpy(), y[name].to_numpy(), 10, 0.5)
        assert rows[name]["kl"] == pytest.approx(kl, rel=1e-9)
        assert rows[name]["psi"] == pytest.approx(psi, rel=1e-9)
        assert rows[name]["method"] == "binned (10 bins)"
    excess = [r["kl"] - r["null_mean"] for r in out["columns"]]
    assert excess == sorted(excess, reverse=True)
    assert out["columns"][0]["column"] == "height"  # shifted by one sd: binned KL ≈ 0.5
    assert rows["height"]["p_value"] == pytest.approx(1 / 201)
    assert out["units"] == "nats"
    assert out["notes"] == [
        f"only {folder / 'y.parquet'} has the column(s) 'only_in_y'; not compared"
    ]


def test_knn_method_matches_the_formula(samples, capsys) -> None:
    folder, x, y = samples
    out = run_json(
        capsys, "estimate", str(folder / "x.csv"), str(folder / "y.parquet"),
        "--method", "knn", "--permutations", "0",
    )  # fmt: skip
    rows = {r["column"]: r for r in out["columns"]}
    for name in ("height", "weight"):
        assert rows[name]["kl"] == pytest.approx(knn_kl(x[name].to_numpy(), y[name].to_numpy(), 5))
        assert rows[name]["method"] == "knn (k=5)"
        assert rows[name]["p_value"] is None


def test_joint_columns_are_one_vector(samples, capsys) -> None:
    folder, x, y = samples
    out = run_json(
        capsys, "estimate", str(folder / "x.npy"), str(folder / "y.npy"), "--joint", "--k", "3"
    )
    (row,) = out["columns"]
    assert row["column"] == "joint(0, 1)"
    assert row["method"] == "knn (k=3)"
    xs, ys = x[["height", "weight"]].to_numpy(), y[["height", "weight"]].to_numpy()
    scale = np.concatenate([xs, ys]).std(axis=0)
    assert row["kl"] == pytest.approx(knn_kl(xs / scale, ys / scale, 3))


def test_columns_and_method_options(samples, capsys) -> None:
    folder, x, y = samples
    out = run_json(
        capsys, "estimate", str(folder / "x.csv"), str(folder / "y.parquet"),
        "--columns", "visits,colour", "--method", "counts", "--prior", "1",
    )  # fmt: skip
    assert {r["column"] for r in out["columns"]} == {"visits", "colour"}
    expected = plug_in_kl(x["colour"].to_numpy(), y["colour"].to_numpy(), 1.0)
    assert next(r for r in out["columns"] if r["column"] == "colour")["kl"] == pytest.approx(
        expected
    )


def test_table_lists_columns(samples, capsys) -> None:
    folder, _, _ = samples
    with pytest.raises(SystemExit) as exited:
        main(["estimate", str(folder / "x.csv"), str(folder / "y.parquet")])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert out.index("colour") < out.index("weight")


def test_joint_with_dropna_keeps_complete_rows(tmp_path, capsys) -> None:
    rng = np.random.default_rng(40)
    x = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    y = pd.DataFrame({"a": rng.normal(0.5, 1, 70), "b": rng.normal(size=70)})
    x.loc[3, "a"] = np.nan
    x.loc[9, "b"] = np.nan
    y.loc[0, "b"] = np.nan
    x.to_csv(tmp_path / "x.csv", index=False)
    y.to_csv(tmp_path / "y.csv", index=False)
    out = run_json(
        capsys, "estimate", str(tmp_path / "x.csv"), str(tmp_path / "y.csv"),
        "--joint", "--dropna", "--permutations", "0", "--metric", "chebyshev",
    )  # fmt: skip
    (row,) = out["columns"]
    assert (row["column"], row["method"]) == ("joint(a, b)", "knn (k=5, max-norm)")
    xs, ys = x.dropna().to_numpy(), y.dropna().to_numpy()
    assert (row["n_x"], row["n_y"]) == (78, 69)
    scale = np.concatenate([xs, ys]).std(axis=0)
    xs, ys = xs / scale, ys / scale
    rho = cKDTree(xs).query(xs, k=6, p=np.inf)[0][:, 5]
    nu = cKDTree(ys).query(xs, k=5, p=np.inf)[0][:, 4]
    expected = 2 * np.mean(np.log(nu / rho)) + math.log(69 / 77)
    assert row["kl"] == pytest.approx(expected, rel=1e-9)
    assert any("left out 2 rows of" in note and "and 1 of" in note for note in out["notes"])
