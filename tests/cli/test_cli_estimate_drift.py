"""``kldiv estimate`` on the cases a drift user meets: dtypes, cardinality, NaN, small files.

Each case was reported against an earlier version; the references are computed here with
NumPy (histograms over the deciles of X, category counts) or follow from the construction
(identical data give 0; a free-text column gives the same KL for every re-split).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kldiv.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["estimate", *args])
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict, str]:
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out), err


def rows_of(document: dict) -> dict[str, dict]:
    return {row["column"]: row for row in document["columns"]}


def deciles_kl(x: np.ndarray, y: np.ndarray, prior: float = 0.5) -> float:
    inner = np.unique(np.percentile(x, np.arange(10, 100, 10)))
    cx = np.bincount(np.searchsorted(inner, x, side="right"), minlength=inner.size + 1) + prior
    cy = np.bincount(np.searchsorted(inner, y, side="right"), minlength=inner.size + 1) + prior
    p, q = cx / cx.sum(), cy / cy.sum()
    return float(np.sum(p * np.log(p / q)))


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("drift")
    rng = np.random.default_rng(17)
    n = 3000
    a = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),  # 62 distinct values
            "income": np.round(rng.lognormal(10, 0.6, n)),  # whole dollars: ~2,900 values
            "comment": [f"comment number {i} {rng.integers(1e9)}" for i in range(n)],
            "city": rng.choice(["Lyon", "Graz", "Porto"], n),
        }
    )
    b = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": np.round(rng.lognormal(10, 0.6, n)),
            "comment": [f"another comment {i} {rng.integers(1e9)}" for i in range(n)],
            "city": rng.choice(["Lyon", "Graz", "Porto"], n),
        }
    )
    a.to_csv(folder / "A.csv", index=False)
    b.to_csv(folder / "B.csv", index=False)
    a_float = a.copy()
    a_float["age"] = a_float["age"].astype(float)  # written as 21.0
    a_float.to_csv(folder / "A_agefloat.csv", index=False)
    a.to_parquet(folder / "A.parquet", index=False)
    with_nan = a.copy()
    with_nan.loc[5, "age"] = np.nan  # pandas makes the column float
    with_nan.loc[3, "city"] = np.nan
    with_nan.to_csv(folder / "A_nan.csv", index=False)
    a.head(3).to_csv(folder / "three.csv", index=False)
    a.assign(extra=1.0).drop(columns=["comment"]).to_csv(folder / "A_other.csv", index=False)
    text_age = a.copy()
    text_age["age"] = text_age["age"].astype(str)
    text_age.loc[7, "age"] = "unknown"
    text_age.to_csv(folder / "A_textage.csv", index=False)
    return folder


def test_int_and_float_age_are_the_same_data(tables: Path, capsys) -> None:
    for other in ("A_agefloat.csv", "A.parquet"):
        document, _ = run_json(
            capsys, str(tables / "A.csv"), str(tables / other), "--columns", "age"
        )
        (row,) = document["columns"]
        assert row["kl"] == 0.0
        assert row["psi"] == 0.0
        assert row["method"] == "binned (10 bins)"


def test_int_column_made_float_by_a_nan_still_compares_as_numbers(tables: Path, capsys) -> None:
    document, err = run_json(
        capsys, str(tables / "A.csv"), str(tables / "A_nan.csv"), "--columns", "age", "--dropna"
    )
    (row,) = document["columns"]
    a = pd.read_csv(tables / "A.csv")["age"].to_numpy()
    expected = deciles_kl(a, np.delete(a, 5))
    assert row["kl"] == pytest.approx(expected, rel=1e-9)
    assert row["kl"] < 1e-4
    assert (row["n_x"], row["n_y"]) == (3000, 2999)
    assert "left out 0 missing values of" in document["notes"][0]
    assert "and 1 of" in document["notes"][0]
    assert "kldiv: note: column 'age': left out" in err


def test_no_drift_columns_sit_inside_the_null(tables: Path, capsys) -> None:
    document, _ = run_json(capsys, str(tables / "A.csv"), str(tables / "B.csv"))
    rows = rows_of(document)
    a, b = pd.read_csv(tables / "A.csv"), pd.read_csv(tables / "B.csv")
    for name in ("age", "income"):  # 62 and ~2,900 distinct numbers: binned, not counted
        assert rows[name]["method"] == "binned (10 bins)"
        expected = deciles_kl(a[name].to_numpy(float), b[name].to_numpy(float))
        assert rows[name]["kl"] == pytest.approx(expected, rel=1e-9)
        # No drift by construction: the exact permutation p-value is uniform, so p <= 0.005
        # would happen with probability 0.005 (the seeds are fixed; this is that draw).
        assert rows[name]["p_value"] > 0.005
        assert rows[name]["kl"] < 0.01  # was 0.548 (income) and 0.029 (age) counted by value
    comment = rows["comment"]
    assert comment["method"] == "counts (prior 0.5)"
    # Every value occurs once: every re-split gives the same KL, so p = 1.
    assert comment["p_value"] == 1.0
    assert comment["null_mean"] == pytest.approx(comment["kl"], rel=1e-9)
    assert any("free text or an identifier" in note for note in comment["notes"])
    assert rows["city"]["p_value"] > 0.005
    assert rows["city"]["notes"] == []
    # Ranked by the excess over the no-drift mean, the free-text column (excess 0) is not first.
    excess = [row["kl"] - row["null_mean"] for row in document["columns"]]
    assert excess == sorted(excess, reverse=True)
    assert document["columns"][0]["column"] != "comment"


def test_many_categories_get_the_bias_formula(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    # 60 categories, 1000 rows each side: (K-1)/(2N) + (K-1)/(2M) = 0.059 nats without drift.
    for name in ("a", "b"):
        labels = [f"c{v}" for v in rng.integers(0, 60, 1000)]
        pd.DataFrame({"shop": labels}).to_csv(tmp_path / f"{name}.csv", index=False)
    document, _ = run_json(
        capsys, str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--permutations", "20"
    )
    (row,) = document["columns"]
    (note,) = row["notes"]
    assert "60 categories for 1000 and 1000 values" in note
    assert "(K-1)/(2N) + (K-1)/(2M) = 0.059 nats" in note


def test_table_has_psi_null_and_p_columns(tables: Path, capsys) -> None:
    code, out, _ = run(capsys, str(tables / "A.csv"), str(tables / "B.csv"), "--columns", "age")
    assert code == 0
    for word in ("PSI", "null 95%", "p: permutation p-value"):
        assert word in out


def test_columns_in_one_file_only_are_named(tables: Path, capsys) -> None:
    document, err = run_json(capsys, str(tables / "A.csv"), str(tables / "A_other.csv"))
    assert set(rows_of(document)) == {"age", "income", "city"}
    assert any("has the column(s) 'comment'; not compared" in n for n in document["notes"])
    assert any("has the column(s) 'extra'; not compared" in n for n in document["notes"])
    assert err.count("kldiv: note: only ") == 2


def test_negative_knn_estimates_say_why(tables: Path, capsys) -> None:
    document, _ = run_json(
        capsys, str(tables / "A.csv"), str(tables / "B.csv"), "--columns", "income",
        "--method", "knn", "--permutations", "20",
    )  # fmt: skip
    (row,) = document["columns"]
    assert row["method"] == "knn (k=5)"
    negative = [n for n in row["notes"] if n.startswith("negative: the kNN estimator is biased")]
    assert bool(negative) == (row["kl"] < 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["A.csv", "A_nan.csv", "--columns", "city"],
            "A_nan.csv: column 'city' has 1 missing or infinite values (first at row 3); "
            "pass --dropna to leave them out",
        ),
        (
            ["A.csv", "A_nan.csv", "--columns", "age"],
            "A_nan.csv: column 'age' has 1 missing or infinite values (first at row 5)",
        ),
        (
            ["A.csv", "three.csv"],
            "three.csv: column 'age' has 3 values; estimating a divergence needs at least 10",
        ),
        (
            ["A.csv", "B.csv", "--method", "knn", "--k", "5000"],
            "--k: k = 5000 is too large for column 'age' with 3000 values in X and 3000 in Y",
        ),
        (
            ["A.csv", "A_textage.csv", "--columns", "age"],
            "A_textage.csv: column 'age' holds text (e.g. 'unknown') but numbers in A.csv",
        ),
        (["A.csv", "B.csv", "--bins", "1"], "Invalid value for '--bins'"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tables: Path, capsys, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tables)
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kldiv: error: ")
    assert message in lines[0]


def test_nan_in_text_is_dropped_like_nan_in_numbers(tables: Path, capsys) -> None:
    document, _ = run_json(
        capsys, str(tables / "A.csv"), str(tables / "A_nan.csv"), "--columns", "city", "--dropna"
    )
    (row,) = document["columns"]
    a = pd.read_csv(tables / "A.csv")["city"]
    y = a.drop(index=3)
    cats = sorted(set(a))
    cx = np.array([np.sum(a == c) for c in cats]) + 0.5
    cy = np.array([np.sum(y == c) for c in cats]) + 0.5
    p, q = cx / cx.sum(), cy / cy.sum()
    assert row["kl"] == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-9)
    assert row["n_y"] == 2999
    assert row["kl"] < 1e-3  # was 0.154 with NaN as a category
