"""Regression-model audits (``--task regression``): every number against an independent computation.

The expected numbers never come from the package: both prediction files are read back with
pandas (CSV numbers parsed with Python's ``float`` so every double is the one in the file),
joined with an explicit ``pandas.merge`` on id, and every metric is recomputed from
``ok = |pred - y| <= atol + rtol * |y|`` and ``e = |pred - y|`` with numpy, scipy
(``ttest_rel(...).confidence_interval()``, ``wilcoxon`` with its defaults) and statsmodels
(Wilson intervals, McNemar's test).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from graceful_audit import audit_flips
from graceful_audit.cli import app
from graceful_audit.errors import InputError, UsageError

ROOT = Path(__file__).resolve().parents[1]
DIABETES_OLD = ROOT / "sample_data" / "diabetes_old.csv"
DIABETES_NEW = ROOT / "sample_data" / "diabetes_new.parquet"

TOL = 1e-9  # metrics, error sums, per-slice deltas
P_TOL = 1e-6  # intervals, p-values, test statistics

TOLERANCES = [
    pytest.param(20.0, None, id="atol"),
    pytest.param(None, 0.15, id="rtol"),
    pytest.param(5.0, 0.1, id="atol+rtol"),
]


def close(value: float, rel: float = TOL, abs_: float = TOL) -> Any:
    return pytest.approx(value, rel=rel, abs=abs_)


# --- the independent reference ------------------------------------------------------------


def read_back(path: Path) -> pd.DataFrame:
    """A prediction file exactly as stored (ids as text, doubles bit for bit)."""
    if path.suffix == ".csv":
        # Python's float() is correctly rounded; pandas' default CSV float parser is not
        # always (and its ``float_precision`` argument is deprecated).
        frame = pd.read_csv(path, dtype=str)
        for col in ("target", "prediction"):
            frame[col] = frame[col].map(float)
        return frame
    return pd.read_parquet(path)


def reference(
    old: pd.DataFrame, new: pd.DataFrame, atol: float | None, rtol: float | None
) -> pd.DataFrame:
    """Join by id and derive y, e_old, e_new, d, ok_old, ok_new per example."""
    m = pd.merge(old, new, on="id", how="inner", suffixes=("_old", "_new"),
                 validate="one_to_one")
    assert len(m) == len(old) == len(new)
    y = m["target_old"].to_numpy(dtype=float)
    np.testing.assert_array_equal(y, m["target_new"].to_numpy(dtype=float))
    e_old = np.abs(m["prediction_old"].to_numpy(dtype=float) - y)
    e_new = np.abs(m["prediction_new"].to_numpy(dtype=float) - y)
    tol = (atol or 0.0) + (rtol or 0.0) * np.abs(y)
    return m.assign(y=y, e_old=e_old, e_new=e_new, d=e_new - e_old,
                    ok_old=e_old <= tol, ok_new=e_new <= tol)


def id_key(value: Any) -> tuple[int, int, str]:
    """Ties by id: integer ids (or integer text) numerically, then the rest as text."""
    try:
        return (0, int(str(value)), "")
    except ValueError:
        return (1, 0, str(value))


def ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def assert_value(got: Any, want: float | None, rel: float = TOL, abs_: float = TOL) -> None:
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert got == close(want, rel, abs_)


def assert_flip_metrics(doc: dict, m: pd.DataFrame, confidence: float) -> None:
    """NFR, PFR, NFI, BTC, BEC, error rates, Wilson intervals and McNemar on ``ok``."""
    oo, nn = m["ok_old"].to_numpy(), m["ok_new"].to_numpy()
    n = len(m)
    both_right = int(np.sum(oo & nn))
    nf = int(np.sum(oo & ~nn))
    pf = int(np.sum(~oo & nn))
    both_wrong = int(np.sum(~oo & ~nn))
    old_right, new_err, old_err = int(oo.sum()), n - int(nn.sum()), n - int(oo.sum())
    met = doc["metrics"]
    assert met["n"] == n
    assert met["negative_flips"] == nf
    assert met["positive_flips"] == pf
    assert doc["counts"] == {"both_right": both_right, "negative_flips": nf,
                             "positive_flips": pf, "both_wrong": both_wrong,
                             "both_wrong_disagree": 0}
    expected = {
        "old_error_rate": old_err / n,
        "new_error_rate": new_err / n,
        "error_rate_delta": (new_err - old_err) / n,
        "negative_flip_rate": nf / n,
        "positive_flip_rate": pf / n,
        "negative_flip_impact": ratio(nf, new_err),
        "backward_trust_compatibility": ratio(both_right, old_right),
        "backward_error_compatibility": ratio(both_wrong, new_err),
        "relative_negative_flip_rate": ratio(nf / n, (old_right / n) * (new_err / n)),
    }
    for name, want in expected.items():
        assert_value(met[name], want)
    assert met["churn_rate"] is None
    assert doc["intervals"].get("churn_rate") is None

    proportions = {
        "old_error_rate": (old_err, n), "new_error_rate": (new_err, n),
        "negative_flip_rate": (nf, n), "positive_flip_rate": (pf, n),
        "negative_flip_impact": (nf, new_err),
        "backward_trust_compatibility": (both_right, old_right),
        "backward_error_compatibility": (both_wrong, new_err),
    }
    assert doc["intervals"]["confidence"] == confidence
    for name, (num, den) in proportions.items():
        got = doc["intervals"][name]
        if den == 0:
            assert got is None
            continue
        lo, hi = proportion_confint(num, den, alpha=1 - confidence, method="wilson")
        assert got == [close(lo), close(hi)], name

    t = doc["tests"]["mcnemar"]
    assert (t["negative_flips"], t["positive_flips"]) == (nf, pf)
    table = [[both_right, nf], [pf, both_wrong]]
    if nf + pf == 0:
        assert t["p_value"] == 1.0
    elif t["method"] == "exact":
        assert nf + pf < 25
        assert t["p_value"] == close(sm_mcnemar(table, exact=True).pvalue)
    else:
        assert t["method"] == "chi2" and nf + pf >= 25
        ref = sm_mcnemar(table, exact=False, correction=True)
        assert t["p_value"] == close(ref.pvalue)
        assert t["statistic"] == close(ref.statistic)


def assert_error_deltas(doc: dict, m: pd.DataFrame, confidence: float) -> None:
    """MAE, RMSE, their deltas, the paired t interval and the Wilcoxon test."""
    e_old, e_new = m["e_old"].to_numpy(), m["e_new"].to_numpy()
    met = doc["metrics"]
    old_mae, new_mae = float(np.mean(e_old)), float(np.mean(e_new))
    old_rmse, new_rmse = (float(np.sqrt(np.mean(e_old**2))), float(np.sqrt(np.mean(e_new**2))))
    assert met["old_mae"] == close(old_mae)
    assert met["new_mae"] == close(new_mae)
    assert met["mae_delta"] == close(new_mae - old_mae)
    assert met["mae_delta"] == close(float(np.mean(e_new - e_old)))
    assert met["old_rmse"] == close(old_rmse)
    assert met["new_rmse"] == close(new_rmse)
    assert met["rmse_delta"] == close(new_rmse - old_rmse)

    ci = doc["intervals"]["mae_delta"]
    if len(m) < 2:
        assert ci is None
    else:
        ref = stats.ttest_rel(e_new, e_old).confidence_interval(confidence_level=confidence)
        assert ci == [close(ref.low, P_TOL, P_TOL), close(ref.high, P_TOL, P_TOL)]

    d = e_new - e_old
    w = doc["tests"]["wilcoxon"]
    assert w["zero_differences"] == int(np.sum(d == 0))
    assert w["n_nonzero"] == int(np.sum(d != 0))
    if np.all(d == 0):
        assert w["p_value"] is None
        return
    ref_w = stats.wilcoxon(d)
    assert w["p_value"] == close(float(ref_w.pvalue), P_TOL, 1e-12)
    assert w["statistic"] == close(float(ref_w.statistic), P_TOL, P_TOL)


def assert_slices(doc: dict, m: pd.DataFrame, col: str) -> None:
    """Per slice value: n and negative flips exactly, mae_delta vs a pandas groupby."""
    source = f"{col}_old" if f"{col}_old" in m else col
    frame = m.assign(nf=m["ok_old"] & ~m["ok_new"], pf=~m["ok_old"] & m["ok_new"])
    expected = {}
    for value, g in frame.groupby(source, dropna=False):
        key = None if pd.isna(value) else str(value)
        expected[key] = (len(g), int(g["nf"].sum()), int(g["pf"].sum()), float(g["d"].mean()))
    rows = doc["slices"][col]
    assert sorted(expected, key=lambda v: (v is None, v or "")) == [r["value"] for r in rows]
    for row in rows:
        n, nf, pf, mae_delta = expected[row["value"]]
        assert (row["n"], row["negative_flips"], row["positive_flips"]) == (n, nf, pf)
        assert row["mae_delta"] == close(mae_delta)


def expected_worst(m: pd.DataFrame, top: int) -> pd.DataFrame:
    flips = m[m["ok_old"] & ~m["ok_new"]]
    order = sorted(flips.index, key=lambda i: (-flips.at[i, "d"], id_key(flips.at[i, "id"])))
    return flips.loc[order].head(top)


def assert_worst(doc: dict, m: pd.DataFrame, top: int, slice_col: str | None = None) -> None:
    """Only old-ok & new-not-ok rows, largest increase of |error| first, ties by id."""
    want = expected_worst(m, top)
    got = doc["top_negative_flips"]
    assert [e["id"] for e in got] == [str(i) for i in want["id"]]
    for e, (_, row) in zip(got, want.iterrows(), strict=True):
        assert e["old_error"] == close(row["e_old"])
        assert e["new_error"] == close(row["e_new"])
        assert e["new_error"] - e["old_error"] == close(row["d"])
        assert float(e["label"]) == row["y"]
        assert float(e["old_pred"]) == row["prediction_old"]
        assert float(e["new_pred"]) == row["prediction_new"]
        if slice_col is not None:
            value = row[f"{slice_col}_old" if f"{slice_col}_old" in row else slice_col]
            assert e["slices"][slice_col] == (None if pd.isna(value) else str(value))
    # everything listed really is a negative flip, and the ordering is non-increasing
    deltas = [e["new_error"] - e["old_error"] for e in got]
    assert deltas == sorted(deltas, reverse=True)


def assert_all(doc: dict, m: pd.DataFrame, *, atol: float | None, rtol: float | None,
               confidence: float = 0.95, slice_col: str | None = None,
               top: int | None = None) -> None:
    assert doc["task"] == "regression"
    assert doc["tolerance"] == {"atol": atol or 0.0, "rtol": rtol or 0.0}
    assert doc["per_class"] == []
    assert doc["flip_matrix"] == []
    assert_flip_metrics(doc, m, confidence)
    assert_error_deltas(doc, m, confidence)
    if slice_col is not None:
        assert_slices(doc, m, slice_col)
    if top is not None:
        assert_worst(doc, m, top, slice_col)


def to_json(result: Any) -> dict:
    """Through the JSON text, as a CI job would read it."""
    return json.loads(json.dumps(result.to_dict()))


# --- the real sample pair: diabetes, old CSV, new shuffled Parquet ---------------------------


@pytest.fixture(scope="module")
def diabetes() -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_back(DIABETES_OLD), read_back(DIABETES_NEW)


@pytest.mark.parametrize(("atol", "rtol"), TOLERANCES)
def test_diabetes_sample_matches_reference(diabetes, atol, rtol) -> None:
    old, new = diabetes
    assert list(new["id"]) != sorted(new["id"])  # really shuffled: the join is by id
    result = audit_flips(DIABETES_OLD, DIABETES_NEW, atol=atol, rtol=rtol,
                         slice_by=["age_group"], top=500)
    doc = to_json(result)
    m = reference(old, new, atol, rtol)
    assert doc["inputs"]["matched"] == len(m) == 442
    assert 0 < doc["metrics"]["negative_flips"] < len(m)
    assert_all(doc, m, atol=atol, rtol=rtol, slice_col="age_group", top=500)
    assert doc["tests"]["wilcoxon"]["method"] == "asymptotic"


def test_diabetes_top_is_a_prefix_and_confidence_is_used(diabetes) -> None:
    old, new = diabetes
    m = reference(old, new, 20.0, None)
    doc = to_json(audit_flips(DIABETES_OLD, DIABETES_NEW, atol=20.0, top=3, confidence=0.9,
                              slice_by=["age_group"]))
    assert_all(doc, m, atol=20.0, rtol=None, confidence=0.9, slice_col="age_group", top=3)
    assert len(doc["top_negative_flips"]) == 3


# --- generated data: ties, zero differences, a slice with a missing value -----------------


def make_world(n: int, seed: int, *, ties: bool = True, zero_share: float = 0.15,
               slices: bool = True) -> pd.DataFrame:
    """One frame with id, target, old and new prediction and a slice column.

    With ``ties``: integer targets and half-integer predictions, so absolute errors (and
    their differences) tie a lot; a share of rows gets the same prediction from both
    models, a few get the mirrored one (same |error|, other side), both giving ``d = 0``.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"cust-{k:05d}" for k in rng.permutation(10 * n)[:n]], dtype=object)
    if ties:
        y = rng.integers(0, 200, n).astype(float)
        o = np.round(y + rng.normal(0, 6, n)) + 0.5
        p = np.round(y + rng.normal(-0.5, 5, n)) + 0.5
    else:
        y = np.round(rng.normal(100, 30, n), 3)
        o = y + rng.normal(0, 6, n)
        p = y + rng.normal(-0.5, 5, n)
    same = rng.random(n) < zero_share
    p[same] = o[same]
    mirror = ~same & (rng.random(n) < zero_share / 3)
    p[mirror] = 2 * y[mirror] - o[mirror]
    frame = pd.DataFrame({"id": ids, "target": y, "prediction_old": o, "prediction_new": p})
    if slices:
        seg = rng.choice(np.array(["web", "app", "store"], dtype=object), n)
        seg[rng.random(n) < 0.06] = None
        seg[0] = None  # at least one missing value
        frame["segment"] = seg
    return frame


def split(frame: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Old and new prediction frames; new shuffled (the join must be by id)."""
    extra = ["segment"] if "segment" in frame else []
    old = frame[["id", "target", "prediction_old", *extra]].rename(
        columns={"prediction_old": "prediction"})
    new = frame[["id", "target", "prediction_new", *extra]].rename(
        columns={"prediction_new": "prediction"})
    return old.reset_index(drop=True), new.sample(frac=1.0, random_state=seed).reset_index(
        drop=True)


@pytest.fixture(scope="module")
def generated_files(tmp_path_factory) -> tuple[Path, Path]:
    """400 examples, string ids; old as CSV, new as shuffled Parquet."""
    old, new = split(make_world(400, seed=11))
    folder = tmp_path_factory.mktemp("regression")
    old_path, new_path = folder / "old.csv", folder / "new.parquet"
    old.to_csv(old_path, index=False)
    new.to_parquet(new_path, index=False)
    return old_path, new_path


GENERATED_TOLERANCES = [
    pytest.param(2.5, None, id="atol-on-the-boundary"),
    pytest.param(None, 0.04, id="rtol"),
    pytest.param(1.0, 0.03, id="atol+rtol"),
]


@pytest.mark.parametrize(("atol", "rtol"), GENERATED_TOLERANCES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_generated_files_match_reference(generated_files, atol, rtol, confidence) -> None:
    old_path, new_path = generated_files
    old, new = read_back(old_path), read_back(new_path)
    assert old["segment"].isna().any()
    m = reference(old, new, atol, rtol)
    d = m["d"].to_numpy()
    assert np.sum(d == 0) > 20  # zero differences
    assert np.unique(np.abs(d[d != 0])).size < np.sum(d != 0) / 4  # many ties in |d|
    doc = to_json(audit_flips(old_path, new_path, atol=atol, rtol=rtol, slice_by=["segment"],
                              top=1000, confidence=confidence))
    assert doc["tests"]["wilcoxon"]["method"] == "asymptotic"
    # ties in the worst list are broken by id
    flips = m[m["ok_old"] & ~m["ok_new"]]
    assert flips["d"].duplicated().any()
    assert_all(doc, m, atol=atol, rtol=rtol, confidence=confidence, slice_col="segment",
               top=1000)
    slice_values = [r["value"] for r in doc["slices"]["segment"]]
    assert None in slice_values


def test_generated_tolerance_boundary_is_inclusive(generated_files) -> None:
    """|pred - y| == atol is right: with half-integer errors, atol=2.5 and atol=2.4999 differ."""
    old_path, new_path = generated_files
    old, new = read_back(old_path), read_back(new_path)
    on = audit_flips(old_path, new_path, atol=2.5, top=0).metrics
    below = audit_flips(old_path, new_path, atol=np.nextafter(2.5, 0), top=0).metrics
    m_on, m_below = reference(old, new, 2.5, None), reference(old, new, np.nextafter(2.5, 0), None)
    assert on.old_error_rate == close(1 - m_on["ok_old"].mean())
    assert below.old_error_rate == close(1 - m_below["ok_old"].mean())
    assert on.old_error_rate < below.old_error_rate


@pytest.mark.parametrize(
    ("n", "ties", "zero_share", "method"),
    [
        pytest.param(10, True, 0.2, "permutation", id="n10-ties-zeros"),
        pytest.param(12, False, 0.0, "exact", id="n12-no-ties"),
        pytest.param(30, False, 0.0, "exact", id="n30-no-ties"),
        pytest.param(14, True, 0.2, "asymptotic", id="n14-ties"),
        pytest.param(40, True, 0.2, "asymptotic", id="n40-ties"),
        pytest.param(50, True, 0.2, "asymptotic", id="n50-ties"),
        pytest.param(50, False, 0.0, "exact", id="n50-no-ties"),
        pytest.param(51, True, 0.2, "asymptotic", id="n51-ties-sql"),
        pytest.param(51, False, 0.0, "asymptotic", id="n51-no-ties-sql"),
        pytest.param(120, True, 0.3, "asymptotic", id="n120-ties-sql"),
    ],
)
def test_wilcoxon_and_t_interval_every_path(n, ties, zero_share, method) -> None:
    frame = make_world(n, seed=n + 1000 * ties, ties=ties, zero_share=zero_share)
    old, new = split(frame)
    m = reference(old, new, 1.5, None)
    d = m["d"].to_numpy()
    nonzero = np.abs(d[d != 0])
    if method != "exact":
        assert np.unique(nonzero).size < nonzero.size or np.any(d == 0) or n > 50
    else:
        assert np.unique(nonzero).size == nonzero.size == n
    doc = to_json(audit_flips(old, new, atol=1.5, slice_by=["segment"], top=n))
    assert doc["tests"]["wilcoxon"]["method"] == method
    assert_all(doc, m, atol=1.5, rtol=None, slice_col="segment", top=n)


def test_worst_flips_ties_by_integer_id_numerically() -> None:
    """Integer ids break ties numerically (2 before 10), whatever the row order."""
    ids = [10, 2, 33, 4, 100, 7]
    y = [0.0] * 6
    o = [0.5, 0.5, 0.5, 0.25, 0.5, 0.1]
    n = [2.5, 2.5, 2.5, 1.25, 3.5, 0.2]  # d: 2, 2, 2, 1, 3, 0.1 (id 7 stays within tol)
    old = pd.DataFrame({"id": ids, "target": y, "prediction": o})
    new = pd.DataFrame({"id": ids, "target": y, "prediction": n}).iloc[[5, 4, 3, 2, 1, 0]]
    doc = to_json(audit_flips(old, new, atol=1.0, top=10))
    assert [e["id"] for e in doc["top_negative_flips"]] == ["100", "2", "10", "33", "4"]
    assert [e["new_error"] - e["old_error"] for e in doc["top_negative_flips"]] == [
        3.0, 2.0, 2.0, 2.0, 1.0]
    m = reference(old, new.reset_index(drop=True), 1.0, None)
    assert_all(doc, m, atol=1.0, rtol=None, top=10)


def test_arrow_tables_give_the_same_numbers(generated_files) -> None:
    old_path, new_path = generated_files
    old, new = read_back(old_path), read_back(new_path)
    from_files = to_json(audit_flips(old_path, new_path, atol=2.5, slice_by=["segment"]))
    from_arrow = to_json(audit_flips(pa.Table.from_pandas(old, preserve_index=False),
                                     pa.Table.from_pandas(new, preserve_index=False),
                                     atol=2.5, slice_by=["segment"]))
    assert_same_numbers(numbers(from_files), numbers(from_arrow))


def test_reversed_dataframe_view_is_accepted() -> None:
    old = pd.DataFrame({"id": ["a", "b", "c"], "target": [0.0, 0.0, 0.0],
                        "prediction": [0.5, 1.5, 2.5]})
    new = old.assign(prediction=[1.5, 0.5, 2.5])
    expected = to_json(audit_flips(old, new.copy(), atol=1.0))
    assert expected["metrics"]["negative_flips"] == 1
    got = to_json(audit_flips(old, new[::-1], atol=1.0))
    assert_same_numbers(numbers(expected), numbers(got))


# --- choosing the task --------------------------------------------------------------------


def small_pair(pred_old: list, pred_new: list, y: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"r{i}" for i in range(len(y))]
    return (pd.DataFrame({"id": ids, "target": y, "prediction": pred_old}),
            pd.DataFrame({"id": ids, "target": y, "prediction": pred_new}))


def test_auto_picks_regression_for_non_integral_floats() -> None:
    old, new = small_pair([1.0, 2.0, 3.5, 4.0], [1.0, 2.5, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    result = audit_flips(old, new, atol=0.25)
    assert result.task == "regression"
    assert "non-integral" in result.task_reason and "'prediction'" in result.task_reason
    assert to_json(result)["task_reason"] == result.task_reason


@pytest.mark.parametrize("dtype", ["int64", "float64"], ids=["integers", "integral-floats"])
def test_auto_picks_classification_for_integer_predictions(dtype) -> None:
    old, new = small_pair([1, 2, 3, 4], [1, 3, 3, 4], [1, 2, 3, 4])
    old["prediction"] = old["prediction"].astype(dtype)
    new["prediction"] = new["prediction"].astype(dtype)
    result = audit_flips(old, new)
    assert result.task == "classification"
    assert "class labels" in result.task_reason
    doc = to_json(result)
    assert doc["task"] == "classification" and "tolerance" not in doc
    assert doc["metrics"]["negative_flips"] == 1
    assert doc["metrics"]["churn_rate"] == 0.25


@pytest.mark.parametrize(("atol", "rtol"), [(1.0, None), (None, 0.1), (0.0, 0.05)])
def test_task_regression_on_integer_predictions(atol, rtol) -> None:
    rng = np.random.default_rng(5)
    n = 80
    y = rng.integers(5, 60, n)
    ids = np.array([f"k{i}" for i in range(n)], dtype=object)
    old = pd.DataFrame({"id": ids, "target": y, "prediction": y + rng.integers(-3, 4, n)})
    new = pd.DataFrame({"id": ids, "target": y,
                        "prediction": y + rng.integers(-3, 4, n)}).sample(frac=1.0,
                                                                          random_state=3)
    assert audit_flips(old, new).task == "classification"
    result = audit_flips(old, new, task="regression", atol=atol, rtol=rtol, top=n)
    assert result.task == "regression" and "--task regression" in result.task_reason
    assert_all(to_json(result), reference(old, new, atol, rtol), atol=atol, rtol=rtol, top=n)


def test_regression_without_tolerance_is_a_usage_error() -> None:
    old, new = small_pair([1.5, 2.5], [1.5, 2.0], [1.0, 2.0])
    with pytest.raises(UsageError, match=r"--atol.*--rtol"):
        audit_flips(old, new)
    with pytest.raises(UsageError, match=r"--atol.*--rtol"):
        audit_flips(old, new, task="regression")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"atol": 1.0}, "--atol given"),
    ({"rtol": 0.1}, "--rtol given"),
    ({"atol": 1.0, "gates": {"max-mae-delta": 0.5}}, "--atol, --max-mae-delta given"),
    ({"atol": 1.0, "gates": {"max_rmse_delta": 0.5}}, "--atol, --max-rmse-delta given"),
])
def test_regression_options_make_whole_numbers_a_regression(kwargs, reason) -> None:
    """Counts and ratings are whole numbers: a tolerance or an error-delta gate says that the
    audit is a regression (issue 13); without one, --task auto audits classes."""
    old, new = small_pair([1, 2, 3, 5], [2, 2, 3, 9], [1, 2, 3, 4])
    assert audit_flips(old, new).task == "classification"
    result = audit_flips(old, new, **kwargs)
    assert result.task == "regression" and reason in result.task_reason
    assert all(g.status != "n/a" for g in result.gates)


@pytest.mark.parametrize("kwargs", [{"atol": 1.0}, {"rtol": 0.5},
                                    {"gates": {"max-mae-delta": 0.5}},
                                    {"gates": {"max-rmse-delta": 0.5}}])
def test_regression_options_with_task_classification_are_usage_errors(kwargs) -> None:
    old, new = small_pair([1, 2, 3, 5], [2, 2, 3, 9], [1, 2, 3, 4])
    with pytest.raises(UsageError, match="only to a regression audit.*--task classification"):
        audit_flips(old, new, task="classification", **kwargs)


@pytest.mark.parametrize("gate", ["max-churn", "max-class-nfr"])
def test_classification_gates_on_regression_are_usage_errors(gate) -> None:
    old, new = small_pair([1.5, 2.5], [1.5, 2.0], [1.0, 2.0])
    with pytest.raises(UsageError, match=f"--{gate}: .* only for a classification audit"):
        audit_flips(old, new, atol=0.1, gates={gate: 0.5})


def test_render_with_a_gate_the_result_lacks_is_a_usage_error(tmp_path) -> None:
    from graceful_audit.gates import GateSpec
    from graceful_audit.rerender import regate

    old, new = small_pair([1, 2, 3, 5], [2, 2, 3, 9], [1, 2, 3, 4])
    classification = audit_flips(old, new)
    with pytest.raises(UsageError, match="mae_delta is defined only for a regression audit"):
        regate(classification, [GateSpec("max-mae-delta", 0.5)])
    regression = audit_flips(old, new, atol=1.0)
    with pytest.raises(UsageError, match="churn_rate is defined only for a classification"):
        regate(regression, [GateSpec("max-churn", 0.5)])


@pytest.mark.parametrize("kwargs", [{"atol": -1.0}, {"rtol": -0.1}, {"atol": math.inf},
                                    {"atol": math.nan}])
def test_bad_tolerance_is_a_usage_error(kwargs) -> None:
    old, new = small_pair([1.5, 2.5], [1.5, 2.0], [1.0, 2.0])
    with pytest.raises(UsageError, match="must be a finite number >= 0"):
        audit_flips(old, new, **kwargs)


def test_non_numeric_target_is_an_input_error() -> None:
    old, new = small_pair([1.5, 2.5], [1.5, 2.0], ["a", "b"])
    with pytest.raises(InputError, match=r"'target'.*not numeric"):
        audit_flips(old, new, atol=1.0)


def test_single_example_has_no_interval() -> None:
    old, new = small_pair([1.5], [2.5], [1.0])
    doc = to_json(audit_flips(old, new, atol=1.0))
    assert doc["intervals"]["mae_delta"] is None
    assert doc["metrics"]["mae_delta"] == 1.0
    assert doc["metrics"]["negative_flips"] == 1


# --- the command line ---------------------------------------------------------------------

runner = CliRunner()


def cli(*args: str) -> Any:
    r = runner.invoke(app, ["flips", *args])
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no gaudit.toml / pyproject.toml is picked up
    return tmp_path


def test_cli_regression_without_tolerance_exits_2(in_tmp) -> None:
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW))
    assert r.exit_code == 2
    assert "--atol" in r.stderr and "--rtol" in r.stderr
    assert r.stdout == ""


def test_cli_json_document(in_tmp, diabetes) -> None:
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW), "--rtol", "0.15", "--slice-by", "age_group",
            "--format", "json", "--top", "7")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert_all(doc, reference(*diabetes, None, 0.15), atol=None, rtol=0.15,
               slice_col="age_group", top=7)


@pytest.mark.parametrize("gate", ["max-mae-delta", "max-rmse-delta"])
@pytest.mark.parametrize(("offset", "code"), [(-0.25, 1), (0.25, 0), (0.0, 0)],
                         ids=["breached", "held", "equal-holds"])
def test_cli_delta_gates(in_tmp, diabetes, gate, offset, code) -> None:
    m = reference(*diabetes, 20.0, None)
    e_old, e_new = m["e_old"].to_numpy(), m["e_new"].to_numpy()
    value = float(np.mean(e_new) - np.mean(e_old) if gate == "max-mae-delta" else
                  np.sqrt(np.mean(e_new**2)) - np.sqrt(np.mean(e_old**2)))
    assert value < -1  # the new model is better: thresholds here are negative
    if offset:
        threshold = value + offset
    else:  # a threshold exactly at the package's own value holds (comparisons are exact)
        metric = gate.removeprefix("max-").replace("-", "_")
        threshold = audit_flips(DIABETES_OLD, DIABETES_NEW, atol=20.0).metric_value(metric)
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW), "--atol", "20", f"--{gate}", repr(threshold),
            "--format", "json")
    assert r.exit_code == code, r.output
    doc = json.loads(r.stdout)
    (g,) = doc["gates"]
    assert g["name"] == gate and g["threshold"] == threshold
    assert g["value"] == close(value)
    assert g["passed"] is (code == 0) and doc["passed"] is (code == 0)


@pytest.mark.parametrize(("threshold", "code"), [("-2", 1), ("-1.5", 0)])
def test_cli_must_improve_mae_by_at_least(in_tmp, threshold, code) -> None:
    """The diabetes update improves MAE by about 1.72: "by at least 2" fails, "1.5" holds."""
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW), "--atol", "20", "--max-mae-delta", threshold)
    assert r.exit_code == code, r.output
    assert ("breached" in r.stdout) is (code == 1)


def test_cli_generated_files_gate_on_rmse_and_nfr(in_tmp, generated_files) -> None:
    old_path, new_path = generated_files
    m = reference(read_back(old_path), read_back(new_path), 2.5, None)
    nfr = float(np.mean(m["ok_old"] & ~m["ok_new"]))
    r = cli(str(old_path), str(new_path), "--atol", "2.5", "--max-nfr", repr(nfr),
            "--max-rmse-delta", "1000", "--format", "json")
    assert r.exit_code == 0, r.output
    r = cli(str(old_path), str(new_path), "--atol", "2.5", "--max-nfr", repr(nfr * 0.99),
            "--max-rmse-delta", "1000")
    assert r.exit_code == 1


@pytest.mark.parametrize("args", [["--atol", "-1"], ["--rtol", "-0.5"], ["--atol", "-1e-9"]])
def test_cli_negative_tolerance_exits_2(in_tmp, args) -> None:
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW), *args)
    assert r.exit_code == 2
    assert args[0] in r.stderr and ">= 0" in r.stderr


@pytest.mark.parametrize("task", [[], ["--task", "regression"]])
def test_cli_non_numeric_target_exits_2(in_tmp, task) -> None:
    pd.DataFrame({"id": ["a", "b", "c"], "target": ["x", "y", "z"],
                  "prediction": [1.5, 2.5, 3.25]}).to_csv(in_tmp / "o.csv", index=False)
    pd.DataFrame({"id": ["c", "b", "a"], "target": ["z", "y", "x"],
                  "prediction": [1.5, 2.0, 3.5]}).to_parquet(in_tmp / "n.parquet")
    r = cli("o.csv", "n.parquet", "--atol", "1", *task)
    assert r.exit_code == 2
    assert "'target'" in r.stderr and "not numeric" in r.stderr and "o.csv" in r.stderr
    assert r.stderr.startswith("gaudit: error:")


def test_cli_task_classification_overrides_auto(in_tmp) -> None:
    r = cli(str(DIABETES_OLD), str(DIABETES_NEW), "--task", "classification", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["task"] == "classification" and "tolerance" not in doc


# --- properties ---------------------------------------------------------------------------

QUARTERS = st.integers(-40, 40).map(lambda k: k / 4)  # coarse values: ties and zeros galore
ROWS = st.lists(st.tuples(QUARTERS, QUARTERS, QUARTERS, st.sampled_from(["a", "b", None])),
                min_size=1, max_size=70)
TOLS = st.sampled_from([(0.0, None), (0.5, None), (None, 0.1), (1.0, 0.05), (2.25, 0.0)])
PROPS = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def frames(rows: list, *, id_as: str = "int") -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = list(range(len(rows)))
    ids = [str(i) for i in ids] if id_as == "str" else ids
    y, o, n, s = (list(c) for c in zip(*rows, strict=True))
    old = pd.DataFrame({"id": ids, "target": y, "prediction": o, "segment": s})
    new = pd.DataFrame({"id": ids, "target": y, "prediction": n})
    return old, new


def numbers(doc: dict) -> dict:
    return {k: doc[k] for k in ("metrics", "counts", "intervals", "tests", "slices",
                                "top_negative_flips", "tolerance")}


def assert_same_numbers(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, z) in enumerate(zip(a, b, strict=True)):
            assert_same_numbers(x, z, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == close(a), path
    else:
        assert a == b, path


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
@PROPS
@given(rows=ROWS, tols=TOLS)
def test_property_matches_reference(rows, tols) -> None:
    """Small and not-so-small n (both Wilcoxon paths), ties and zeros everywhere."""
    atol, rtol = tols
    old, new = frames(rows)
    doc = to_json(audit_flips(old, new, task="regression", atol=atol, rtol=rtol,
                              slice_by=["segment"], top=len(rows)))
    m = reference(old, new, atol, rtol)
    assert_all(doc, m, atol=atol, rtol=rtol, slice_col="segment", top=len(rows))


@PROPS
@given(rows=ROWS, tols=TOLS)
def test_property_swapping_old_and_new(rows, tols) -> None:
    atol, rtol = tols
    old, new = frames(rows)
    new = new.assign(segment=old["segment"])
    old_only = old.drop(columns="segment")
    fwd = audit_flips(old_only, new, task="regression", atol=atol, rtol=rtol, top=0)
    rev = audit_flips(new, old_only, task="regression", atol=atol, rtol=rtol, top=0)
    f, r = to_json(fwd)["metrics"], to_json(rev)["metrics"]
    assert r["mae_delta"] == close(-f["mae_delta"])
    assert r["rmse_delta"] == close(-f["rmse_delta"])
    assert (r["old_mae"], r["new_mae"]) == (close(f["new_mae"]), close(f["old_mae"]))
    assert r["negative_flip_rate"] == f["positive_flip_rate"]
    assert r["positive_flip_rate"] == f["negative_flip_rate"]
    assert (r["negative_flips"], r["positive_flips"]) == (f["positive_flips"],
                                                          f["negative_flips"])
    assert r["error_rate_delta"] == close(-f["error_rate_delta"])
    if fwd.regression.mae_delta_interval is not None:
        lo, hi = fwd.regression.mae_delta_interval
        assert list(rev.regression.mae_delta_interval) == [close(-hi), close(-lo)]
    assert_value(rev.regression.wilcoxon.p_value, fwd.regression.wilcoxon.p_value, P_TOL, 1e-12)


@PROPS
@given(rows=ROWS, rtol=st.sampled_from([None, 0.0, 0.5]))
def test_property_infinite_tolerance_gives_no_flips(rows, rtol) -> None:
    old, new = frames(rows)
    doc = to_json(audit_flips(old, new, task="regression", atol=1e12, rtol=rtol,
                              slice_by=["segment"], top=10))
    met = doc["metrics"]
    assert met["negative_flips"] == met["positive_flips"] == 0
    assert met["old_error_rate"] == met["new_error_rate"] == 0.0
    assert met["negative_flip_rate"] == met["positive_flip_rate"] == 0.0
    assert met["negative_flip_impact"] is None
    assert met["backward_trust_compatibility"] == 1.0
    assert doc["top_negative_flips"] == []
    assert all(row["negative_flips"] == 0 for row in doc["slices"]["segment"])
    m = reference(old, new, 1e12, rtol)
    assert met["mae_delta"] == close(float(m["d"].mean()))


@PROPS
@given(rows=ROWS, tols=TOLS, seed=st.integers(0, 2**16))
def test_property_row_order_and_id_type_change_nothing(rows, tols, seed) -> None:
    atol, rtol = tols
    old, new = frames(rows, id_as="int")
    old_s, new_s = frames(rows, id_as="str")
    old_s = old_s.sample(frac=1.0, random_state=seed)
    new_s = new_s.sample(frac=1.0, random_state=seed + 1)
    kw = {"task": "regression", "atol": atol, "rtol": rtol, "slice_by": ["segment"], "top": 20}
    a = numbers(to_json(audit_flips(old, new, **kw)))
    b = numbers(to_json(audit_flips(old_s, new_s, **kw)))
    assert_same_numbers(a, b)
