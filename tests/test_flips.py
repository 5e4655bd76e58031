"""End to end through ``audit_flips``: every number of the JSON result against pandas.

The expected numbers are computed here, independently of the package: the two prediction
files are joined with an explicit ``pandas.merge`` on id, predictions are derived with
pandas (``idxmax`` over the score columns, ``>=`` for a binary score), and every rate,
interval, p-value, breakdown and worst-flip list is recomputed with numpy, pandas and
statsmodels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint

from graceful_audit import audit_flips
from graceful_audit.errors import InputError, UsageError

RATE_TOL = 1e-9
K = 7
CLASSES = np.array([f"cat|{i}" for i in range(K)])
SEGMENTS = np.array(["phone", "tablet", "desktop", "tv"], dtype=object)
REGIONS = np.array(["eu", "us", "apac"], dtype=object)


# --- realistic generated predictions ------------------------------------------------------


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class World:
    """Ground truth and two models' scores for the same ``n`` examples."""

    ids: np.ndarray  # unique integers
    y: np.ndarray  # class index
    p_old: np.ndarray  # (n, k) probabilities
    p_new: np.ndarray
    o: np.ndarray  # old model's predicted class index (argmax, except a few overridden)
    n: np.ndarray
    segment: np.ndarray  # object, with None
    region: np.ndarray
    rng: np.random.Generator

    def id_values(self, kind: str) -> np.ndarray:
        if kind == "int":
            return self.ids
        return np.array([f"img_{i}" for i in self.ids], dtype=object)


def make_world(seed: int = 0, n: int = 3000, k: int = K, *, override: float = 0.05) -> World:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    shared = rng.normal(size=(n, k))
    lo = shared + rng.normal(scale=0.9, size=(n, k))
    ln = shared + rng.normal(scale=0.9, size=(n, k))
    lo[np.arange(n), y] += 1.3
    ln[np.arange(n), y] += 1.7
    p_old, p_new = softmax(lo), softmax(ln)
    # A prediction column is not always the argmax (e.g. a per-class decision threshold):
    # then the confidence must be the score of the *predicted* class, not the max.
    o, nn = p_old.argmax(axis=1), p_new.argmax(axis=1)
    o = np.where(rng.random(n) < override, rng.integers(0, k, n), o)
    nn = np.where(rng.random(n) < override, rng.integers(0, k, n), nn)
    ids = rng.choice(10**7, size=n, replace=False)
    segment = rng.choice(np.append(SEGMENTS, None), size=n, p=[0.4, 0.3, 0.2, 0.07, 0.03])
    region = rng.choice(REGIONS, size=n)
    return World(ids, y, p_old, p_new, o, nn, segment, region, rng)


def model_frame(
    w: World,
    side: str,
    *,
    id_kind: str = "int",
    label: bool = True,
    pred: bool = True,
    scores: bool = True,
    extra: tuple[str, ...] = (),
    shuffle: bool = True,
) -> pd.DataFrame:
    p = w.p_old if side == "old" else w.p_new
    pred_idx = w.o if side == "old" else w.n
    cols: dict[str, object] = {"id": w.id_values(id_kind)}
    if label:
        cols["label"] = CLASSES[w.y]
    if pred:
        cols["pred"] = CLASSES[pred_idx]
    if scores:
        for i, c in enumerate(CLASSES):
            cols[f"prob_{c}"] = p[:, i]
    for name in extra:
        cols[name] = getattr(w, name)
    df = pd.DataFrame(cols)
    if shuffle:
        df = df.iloc[w.rng.permutation(len(df))].reset_index(drop=True)
    return df


# --- the independent computation ----------------------------------------------------------


def canon(v: object) -> str:
    """How a class is written in JSON: integral floats as integers, everything as text."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


def derive(
    df: pd.DataFrame, *, pred: str | None = "pred", prefix: str | None = "prob_"
) -> pd.DataFrame:
    """id (as text), prediction and confidence of one model, computed with pandas."""
    out = pd.DataFrame({"id": df["id"].map(canon)})
    score_cols = [c for c in df.columns if prefix and c.startswith(prefix)]
    if pred is not None and pred in df.columns:
        out["p"] = df[pred].map(canon)
    else:
        out["p"] = df[score_cols].idxmax(axis=1).str.slice(len(prefix or ""))
    if score_cols:
        mat = df[score_cols].to_numpy(dtype=float)
        idx = pd.Index([c[len(prefix or ""):] for c in score_cols]).get_indexer(out["p"])
        out["c"] = np.where(idx >= 0, mat[np.arange(len(df)), np.maximum(idx, 0)], np.nan)
    else:
        out["c"] = np.nan
    return out


def expected_join(
    old: pd.DataFrame,
    new: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    *,
    slices: tuple[str, ...] = (),
    **derive_kw: object,
) -> pd.DataFrame:
    """Join by id with pandas: columns id, y, o, n, oc, nc and the slice columns."""
    j = derive(old, **derive_kw).merge(
        derive(new, **derive_kw), on="id", how="inner", suffixes=("_o", "_n"),
        validate="one_to_one",
    )
    j = j.rename(columns={"p_o": "o", "p_n": "n", "c_o": "oc", "c_n": "nc"})
    if labels is not None:
        src = labels
    elif "label" in old.columns:
        src = old
    else:
        src = new
    lab = pd.DataFrame({"id": src["id"].map(canon), "y": src["label"].map(canon)})
    j = j.merge(lab, on="id", how="inner", validate="one_to_one")
    for col in slices:
        holder = next(f for f in (old, new, labels) if f is not None and col in f.columns)
        s = pd.DataFrame({"id": holder["id"].map(canon), col: holder[col]})
        j = j.merge(s, on="id", how="left", validate="one_to_one")
    return j


def ci(x: int, n: int, confidence: float) -> list[float] | None:
    if n == 0:
        return None
    lo, hi = proportion_confint(x, n, alpha=1 - confidence, method="wilson")
    return [max(0.0, lo), min(1.0, hi)]


def approx_list(a: list[float] | None, b: list[float] | None, tol: float = RATE_TOL) -> None:
    if b is None:
        assert a is None
    else:
        assert a is not None and len(a) == 2
        assert a == pytest.approx(b, abs=tol)


def group_counts(g: pd.DataFrame) -> dict[str, int]:
    ook, nok = g["o"] == g["y"], g["n"] == g["y"]
    bw = ~ook & ~nok
    return {
        "both_right": int((ook & nok).sum()),
        "negative_flips": int((ook & ~nok).sum()),
        "positive_flips": int((~ook & nok).sum()),
        "both_wrong": int(bw.sum()),
        "both_wrong_disagree": int((bw & (g["o"] != g["n"])).sum()),
    }


def check_group_row(row: dict, g: pd.DataFrame, size_key: str, confidence: float) -> None:
    c = group_counts(g)
    size = len(g)
    assert row[size_key] == size
    assert row["counts"] == c
    assert row["negative_flips"] == c["negative_flips"]
    assert row["positive_flips"] == c["positive_flips"]
    assert row["negative_flip_rate"] == pytest.approx(c["negative_flips"] / size, abs=RATE_TOL)
    assert row["positive_flip_rate"] == pytest.approx(c["positive_flips"] / size, abs=RATE_TOL)
    assert row["old_error_rate"] == pytest.approx((g["o"] != g["y"]).mean(), abs=RATE_TOL)
    assert row["new_error_rate"] == pytest.approx((g["n"] != g["y"]).mean(), abs=RATE_TOL)
    approx_list(row["negative_flip_rate_interval"], ci(c["negative_flips"], size, confidence))


def check_document(
    d: dict,
    j: pd.DataFrame,
    *,
    slices: tuple[str, ...] = (),
    top: int = 10,
    confidence: float = 0.95,
    numeric_ids: bool = False,
) -> None:
    """Compare every number of the JSON document ``d`` with the joined frame ``j``."""
    assert d["schema_version"] == 1 and d["kind"] == "flips"
    assert d["task"] == "classification"
    size = len(j)
    y, o, n = j["y"], j["o"], j["n"]
    ook, nok = o == y, n == y
    nf, pf = int((ook & ~nok).sum()), int((~ook & nok).sum())
    br, bw = int((ook & nok).sum()), int((~ook & ~nok).sum())
    old_err, new_err = int((~ook).sum()), int((~nok).sum())
    churn = int((o != n).sum())
    assert br + nf + pf + bw == size

    # headline metrics, straight from the DESIGN.md definitions
    m = d["metrics"]
    assert m["n"] == size
    assert m["negative_flips"] == nf and m["positive_flips"] == pf
    proportions = {
        "old_error_rate": (old_err, size),
        "new_error_rate": (new_err, size),
        "negative_flip_rate": (nf, size),
        "positive_flip_rate": (pf, size),
        "negative_flip_impact": (nf, new_err),
        "churn_rate": (churn, size),
        "backward_trust_compatibility": (br, br + nf),
        "backward_error_compatibility": (bw, new_err),
    }
    for name, (num, den) in proportions.items():
        if den == 0:
            assert m[name] is None, name
        else:
            assert m[name] == pytest.approx(num / den, abs=RATE_TOL), name
        approx_list(d["intervals"][name], ci(num, den, confidence))
    assert m["error_rate_delta"] == pytest.approx(new_err / size - old_err / size, abs=RATE_TOL)
    if old_err < size and new_err > 0:
        expected_rel = (nf / size) / ((1 - old_err / size) * (new_err / size))
        assert m["relative_negative_flip_rate"] == pytest.approx(expected_rel, rel=RATE_TOL)
    assert d["intervals"]["confidence"] == confidence
    assert d["counts"] == group_counts(j)

    # McNemar on the discordant pairs b = negative flips, c = positive flips
    t = d["tests"]["mcnemar"]
    assert (t["negative_flips"], t["positive_flips"]) == (nf, pf)
    table = [[br, nf], [pf, bw]]
    if nf + pf == 0:
        assert t["p_value"] == 1.0
    elif nf + pf < 25:
        assert t["method"] == "exact"
        assert t["p_value"] == pytest.approx(sm_mcnemar(table, exact=True).pvalue, abs=RATE_TOL)
    else:
        ref = sm_mcnemar(table, exact=False, correction=True)
        assert t["method"] == "chi2"
        assert t["p_value"] == pytest.approx(ref.pvalue, abs=RATE_TOL)
        assert t["statistic"] == pytest.approx(ref.statistic, abs=RATE_TOL)

    # per true class: exact counts versus a pandas groupby
    groups = dict(tuple(j.groupby("y", sort=True)))
    assert [r["class"] for r in d["per_class"]] == sorted(
        groups, key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0.0, v))
    for r in d["per_class"]:
        check_group_row(r, groups[r["class"]], "support", confidence)
    assert sum(r["support"] for r in d["per_class"]) == size

    # per slice: groupby with the missing values as their own group (listed last)
    assert list(d["slices"]) == list(slices)
    for col in slices:
        rows = d["slices"][col]
        values = j[col].astype(object).where(j[col].notna(), None)
        expected_values = sorted({v for v in values if v is not None})
        if values.isna().any():
            expected_values.append(None)
        assert [r["value"] for r in rows] == expected_values
        for r in rows:
            g = j[values.isna()] if r["value"] is None else j[values == r["value"]]
            check_group_row(r, g, "n", confidence)

    # negative-flip matrix: old prediction -> new prediction, most frequent first
    neg = j[ook & ~nok]
    ct = pd.crosstab(neg["o"], neg["n"])
    expected_matrix = {(a, b): int(ct.loc[a, b]) for a in ct.index for b in ct.columns
                       if ct.loc[a, b] > 0}
    got_matrix = {(e["old_pred"], e["new_pred"]): e["count"] for e in d["flip_matrix"]}
    assert got_matrix == expected_matrix
    counts = [e["count"] for e in d["flip_matrix"]]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == nf

    # worst negative flips: most confident old prediction first, ties by id in natural
    # order (integer ids, or integer-looking text ids, numerically first, then as text)
    ids = neg["id"].astype(str)
    as_int = pd.to_numeric(ids.where(ids.str.fullmatch(r"[+-]?[0-9]{1,18}"), None),
                           errors="coerce")
    worst = neg.assign(_isnum=as_int.isna().to_numpy(), _num=as_int.fillna(0).to_numpy(),
                       _txt=ids.to_numpy(), _conf=neg["oc"].fillna(-np.inf)).sort_values(
        ["_conf", "_isnum", "_num", "_txt"], ascending=[False, True, True, True],
        kind="mergesort").head(top)
    got = d["top_negative_flips"]
    assert [e["id"] for e in got] == list(worst["id"])
    for e, (_, r) in zip(got, worst.iterrows(), strict=True):
        assert (e["label"], e["old_pred"], e["new_pred"]) == (r["y"], r["o"], r["n"])
        assert e["old_pred"] == e["label"] != e["new_pred"]
        for k_json, k_frame in (("old_confidence", "oc"), ("new_confidence", "nc")):
            if np.isnan(r[k_frame]):
                assert e[k_json] is None
            else:
                assert e[k_json] == pytest.approx(r[k_frame], abs=1e-12)
        for col in slices:
            v = r[col]
            assert e["slices"][col] == (None if pd.isna(v) else v)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def strip_paths(d: dict) -> dict:
    d = dict(d)
    d["inputs"] = {k: v for k, v in d["inputs"].items() if k not in ("old", "new", "labels")}
    return d


# --- happy paths --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> World:
    return make_world(seed=2024)


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_csv_old_parquet_new_full_document(tmp_path: Path, world: World, id_kind: str) -> None:
    old = model_frame(world, "old", id_kind=id_kind, extra=("segment",))
    new = model_frame(world, "new", id_kind=id_kind, label=False, extra=("region",))
    old_path, new_path = tmp_path / "old.csv", tmp_path / "new.parquet"
    old.to_csv(old_path, index=False)
    new.to_parquet(new_path, index=False)
    assert not (old["id"].to_numpy() == new["id"].to_numpy()).all()  # really shuffled

    result = audit_flips(old_path, new_path, score_cols="prob_*", slice_by=["segment", "region"],
                         top=25, confidence=0.9)
    d = result.to_dict()
    j = expected_join(old, new, slices=("segment", "region"))
    assert len(j) == 3000
    # CSV ids are read as text, so ties (if any) would be broken by the text of the id
    check_document(d, j, slices=("segment", "region"), top=25, confidence=0.9)
    assert len(d["top_negative_flips"]) == 25
    assert d["metrics"]["negative_flips"] > 25 and d["metrics"]["positive_flips"] > 25

    inp = d["inputs"]
    assert inp["old"]["path"] == str(old_path) and inp["old"]["rows"] == 3000
    assert inp["old"]["prediction"].startswith(
        "column 'pred' (confidence from 7 score columns 'prob_*': prob_cat|0 -> 'cat|0', ")
    assert inp["new"]["path"] == str(new_path) and inp["new"]["rows"] == 3000
    assert (inp["matched"], inp["unmatched_old"], inp["unmatched_new"]) == (3000, 0, 0)
    assert inp["audited"] == 3000 and "labels" not in inp
    assert d["options"]["top"] == 25 and d["options"]["slice_by"] == ["segment", "region"]
    assert result.passed is True and d["gates"] == []


def test_pred_column_confidence_is_score_of_prediction(world: World) -> None:
    old = model_frame(world, "old", shuffle=False)
    new = model_frame(world, "new", label=False)
    d = audit_flips(old, new, score_cols="prob_*", top=10_000).to_dict()
    by_id = {e["id"]: e for e in d["top_negative_flips"]}
    assert len(by_id) == d["metrics"]["negative_flips"]
    pos = {str(i): k for k, i in enumerate(world.ids)}
    differs = 0
    for i, e in by_id.items():
        k = pos[i]
        assert e["old_confidence"] == pytest.approx(world.p_old[k, world.o[k]], abs=1e-12)
        assert e["new_confidence"] == pytest.approx(world.p_new[k, world.n[k]], abs=1e-12)
        differs += world.o[k] != world.p_old[k].argmax()
    assert differs > 0  # some predictions are not the argmax: the case is really exercised


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_worst_flips_without_scores_carry_slices_from_every_input(
    tmp_path: Path, world: World, id_kind: str
) -> None:
    """Without scores the worst flips come from the counting pass; their slice values are
    read from the input each slice column is in (OLD, NEW or LABELS)."""
    old = model_frame(world, "old", id_kind=id_kind, label=False, scores=False,
                      extra=("segment",))
    new = model_frame(world, "new", id_kind=id_kind, label=False, scores=False,
                      extra=("region",))
    labels = pd.DataFrame({"id": world.id_values(id_kind), "label": CLASSES[world.y],
                           "source": np.where(world.y % 2 == 0, "even", "odd")}).sample(
        frac=1.0, random_state=5)
    old.to_parquet(tmp_path / "old.parquet", index=False)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    slices = ("segment", "region", "source")
    # A CSV's ids are text; a DataFrame keeps integer ids, so both id paths are taken.
    lab_arg = labels if id_kind == "int" else tmp_path / "labels.csv"
    d = audit_flips(tmp_path / "old.parquet", new, labels=lab_arg,
                    slice_by=list(slices), top=30).to_dict()
    check_document(d, expected_join(old, new, labels, slices=slices), slices=slices, top=30)
    assert all(set(e["slices"]) == set(slices) for e in d["top_negative_flips"])


@pytest.mark.parametrize("labels_in", ["both", "old", "new", "file"])
def test_score_cols_argmax_and_label_sources(tmp_path: Path, world: World, labels_in: str) -> None:
    old = model_frame(world, "old", id_kind="str", pred=False, label=labels_in in ("both", "old"),
                      extra=("segment",))
    new = model_frame(world, "new", id_kind="str", pred=False, label=labels_in in ("both", "new"))
    old.to_parquet(tmp_path / "old.parquet", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    labels = None
    if labels_in == "file":
        labels = pd.DataFrame({"id": world.id_values("str"), "label": CLASSES[world.y]}).sample(
            frac=1.0, random_state=3)
        labels.to_csv(tmp_path / "labels.csv", index=False)
    result = audit_flips(
        tmp_path / "old.parquet", tmp_path / "new.parquet",
        labels=tmp_path / "labels.csv" if labels is not None else None,
        score_cols="prob_*", slice_by=["segment"],
    )
    d = result.to_dict()
    j = expected_join(old, new, labels, slices=("segment",), pred=None)
    # the prediction is the argmax of prob_<class>, named after the column's suffix
    assert set(j["o"]) == set(CLASSES)
    check_document(d, j, slices=("segment",))
    assert {r["class"] for r in d["per_class"]} == set(CLASSES)
    assert "argmax" in d["inputs"]["old"]["prediction"]
    if labels_in == "file":
        assert d["inputs"]["labels"]["rows"] == 3000 and d["inputs"]["labels"]["unused"] == 0
        assert "labels.csv" in d["inputs"]["label_source"]


def test_binary_single_score_column_with_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    size, thr = 2500, 0.3
    y = rng.integers(0, 2, size)
    s_old = np.clip(0.25 * y + rng.random(size) * 0.75, 0, 1).round(3)
    s_new = np.clip(0.35 * y + rng.random(size) * 0.65, 0, 1).round(3)
    s_old[:40] = thr  # exactly at the threshold -> class 1
    s_new[20:60] = thr
    ids = rng.permutation(size) * 3 + 11
    old = pd.DataFrame({"id": ids, "label": y, "score": s_old})
    new = pd.DataFrame({"id": ids, "score": s_new}).sample(frac=1.0, random_state=1)
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)

    d = audit_flips(tmp_path / "old.csv", tmp_path / "new.parquet", score_cols="score",
                    threshold=thr, top=40).to_dict()

    def side(df: pd.DataFrame) -> pd.DataFrame:
        pred = (df["score"] >= thr).astype(int)
        conf = np.where(pred == 1, df["score"], 1 - df["score"])
        return pd.DataFrame({"id": df["id"].astype(str), "p": pred.astype(str), "c": conf})

    j = side(old).merge(side(new), on="id", suffixes=("_o", "_n"), validate="one_to_one")
    j = j.rename(columns={"p_o": "o", "p_n": "n", "c_o": "oc", "c_n": "nc"})
    j = j.merge(pd.DataFrame({"id": old["id"].astype(str), "y": old["label"].astype(str)}),
                on="id", validate="one_to_one")
    assert (j.loc[j["id"].isin(old["id"][:40].astype(str)), "o"] == "1").all()
    check_document(d, j, top=40)
    assert [r["class"] for r in d["per_class"]] == ["0", "1"]
    assert d["options"]["threshold"] == thr


def test_binary_threshold_accepts_numpy_float() -> None:
    old = pd.DataFrame({"id": [1, 2, 3, 4], "label": [0, 1, 1, 0], "score": [0.1, 0.9, 0.2, 0.8]})
    new = pd.DataFrame({"id": [1, 2, 3, 4], "score": [0.4, 0.1, 0.35, 0.2]})
    expected = audit_flips(old, new, score_cols="score", threshold=0.3).to_dict()
    got = audit_flips(old, new, score_cols="score", threshold=np.float64(0.3)).to_dict()
    assert got["metrics"] == expected["metrics"]


def test_parquet_list_column_of_scores(tmp_path: Path, world: World) -> None:
    def table(side: str, label: bool) -> pa.Table:
        p = world.p_old if side == "old" else world.p_new
        perm = world.rng.permutation(len(world.ids))
        cols = {"id": pa.array(world.ids[perm]),
                "scores": pa.array([list(r) for r in p[perm]], type=pa.list_(pa.float64()))}
        if label:
            cols["label"] = pa.array(world.y[perm])
        return pa.table(cols)

    old_t, new_t = table("old", True), table("new", False)
    pq.write_table(old_t, tmp_path / "old.parquet")
    pq.write_table(new_t, tmp_path / "new.parquet")
    d = audit_flips(tmp_path / "old.parquet", tmp_path / "new.parquet", score_cols="scores",
                    top=15).to_dict()

    def side(t: pa.Table) -> pd.DataFrame:
        mat = np.array(t.column("scores").to_pylist())
        return pd.DataFrame({"id": t.column("id").to_numpy().astype(str),
                             "p": mat.argmax(axis=1).astype(str), "c": mat.max(axis=1)})

    j = side(old_t).merge(side(new_t), on="id", suffixes=("_o", "_n"), validate="one_to_one")
    j = j.rename(columns={"p_o": "o", "p_n": "n", "c_o": "oc", "c_n": "nc"})
    lab = pd.DataFrame({"id": old_t.column("id").to_numpy().astype(str),
                        "y": old_t.column("label").to_numpy().astype(str)})
    j = j.merge(lab, on="id", validate="one_to_one")
    check_document(d, j, top=15, numeric_ids=True)
    assert [r["class"] for r in d["per_class"]] == [str(i) for i in range(K)]


def test_utf8_bom_csv_gives_the_same_result(tmp_path: Path, world: World) -> None:
    old = model_frame(world, "old", extra=("segment",))
    new = model_frame(world, "new", label=False)
    old.to_csv(tmp_path / "plain.csv", index=False)
    old.to_csv(tmp_path / "bom.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    new.to_parquet(tmp_path / "new.parquet", index=False)
    kw = {"score_cols": "prob_*", "slice_by": ["segment"]}
    bom = audit_flips(tmp_path / "bom.csv", tmp_path / "new.parquet", **kw).to_dict()
    plain = audit_flips(tmp_path / "plain.csv", tmp_path / "new.parquet", **kw).to_dict()
    assert strip_paths(bom) == strip_paths(plain)
    check_document(bom, expected_join(old, new, slices=("segment",)), slices=("segment",))


def test_directory_and_glob_of_parquet_parts(tmp_path: Path, world: World) -> None:
    old = model_frame(world, "old", extra=("segment",))
    new = model_frame(world, "new", label=False)
    parts = tmp_path / "new_parts"
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(new)), 4)):
        new.iloc[chunk].to_parquet(parts / f"part-{i:05d}.parquet", index=False)
    (parts / "_SUCCESS").write_text("")  # Spark-style marker files are ignored
    old.to_parquet(tmp_path / "old.parquet", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    kw = {"score_cols": "prob_*", "slice_by": ["segment"]}
    single = audit_flips(tmp_path / "old.parquet", tmp_path / "new.parquet", **kw).to_dict()
    by_dir = audit_flips(tmp_path / "old.parquet", parts, **kw).to_dict()
    by_glob = audit_flips(str(tmp_path / "old.parquet"), str(parts / "part-*.parquet"),
                          **kw).to_dict()
    assert by_dir["inputs"]["new"]["rows"] == by_glob["inputs"]["new"]["rows"] == 3000
    assert strip_paths(by_dir) == strip_paths(single)
    assert strip_paths(by_glob) == strip_paths(single)
    check_document(by_glob, expected_join(old, new, slices=("segment",)), slices=("segment",),
                   numeric_ids=True)


def test_labels_one_vs_text_one_vs_float_one_are_one_class(tmp_path: Path) -> None:
    """Documented decision: 1, "1" and 1.0 across files are the same class ("1")."""
    rng = np.random.default_rng(11)
    size = 600
    y = rng.integers(0, 5, size)
    o = np.where(rng.random(size) < 0.7, y, rng.integers(0, 5, size))
    n = np.where(rng.random(size) < 0.8, y, rng.integers(0, 5, size))
    ids = np.arange(size)
    # OLD (Parquet): integer labels, text predictions "1"
    pd.DataFrame({"id": ids, "label": y, "pred": o.astype(str)}).to_parquet(
        tmp_path / "old.parquet", index=False)
    # NEW (CSV): float labels "1.0", float predictions
    pd.DataFrame({"id": ids, "label": y.astype(float), "pred": n.astype(float)}).sample(
        frac=1.0, random_state=2).to_csv(tmp_path / "new.csv", index=False)
    assert "1.0" in (tmp_path / "new.csv").read_text()
    # LABELS (CSV): text labels
    pd.DataFrame({"id": ids, "label": [f"{v}" for v in y]}).to_csv(
        tmp_path / "labels.csv", index=False)

    both = audit_flips(tmp_path / "old.parquet", tmp_path / "new.csv").to_dict()
    with_file = audit_flips(tmp_path / "old.parquet", tmp_path / "new.csv",
                            labels=tmp_path / "labels.csv").to_dict()
    j = pd.DataFrame({"id": ids.astype(str), "y": y.astype(str), "o": o.astype(str),
                      "n": n.astype(str), "oc": np.nan, "nc": np.nan})
    # a CSV id column is read as text, so ids are joined and ordered as text here
    check_document(both, j)
    check_document(with_file, j)
    assert [r["class"] for r in both["per_class"]] == ["0", "1", "2", "3", "4"]


def test_allow_unmatched_accounting(tmp_path: Path, world: World) -> None:
    old = model_frame(world, "old", extra=("segment",)).iloc[50:]  # 50 ids only in NEW
    new = model_frame(world, "new", label=False).iloc[:-30]  # some ids only in OLD
    old_ids, new_ids = set(old["id"]), set(new["id"])
    only_old, only_new = len(old_ids - new_ids), len(new_ids - old_ids)
    assert only_old > 0 and only_new > 0
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)

    with pytest.raises(InputError) as exc:
        audit_flips(tmp_path / "old.csv", tmp_path / "new.parquet")
    msg = str(exc.value)
    assert f"{only_old} id(s) only in OLD" in msg and f"{only_new} id(s) only in NEW" in msg
    assert "old.csv" in msg and "new.parquet" in msg and "--allow-unmatched" in msg
    first_only_old = sorted(str(i) for i in old_ids - new_ids)[0]
    assert repr(first_only_old) in msg  # CSV ids are text; the smallest is shown

    d = audit_flips(tmp_path / "old.csv", tmp_path / "new.parquet", allow_unmatched=True,
                    slice_by=["segment"], score_cols="prob_*").to_dict()
    matched = len(old_ids & new_ids)
    inp = d["inputs"]
    assert (inp["old"]["rows"], inp["new"]["rows"]) == (len(old), len(new))
    assert (inp["matched"], inp["unmatched_old"], inp["unmatched_new"]) == (
        matched, only_old, only_new)
    assert inp["audited"] == matched == d["metrics"]["n"]
    assert d["options"]["allow_unmatched"] is True
    check_document(d, expected_join(old, new, slices=("segment",)), slices=("segment",))


def test_allow_unmatched_with_labels_file_missing_labels(world: World) -> None:
    old = model_frame(world, "old", label=False)
    new = model_frame(world, "new", label=False)
    labels = pd.DataFrame({"id": world.ids, "label": CLASSES[world.y]})
    extra = pd.DataFrame({"id": [-1, -2], "label": ["cat|0", "cat|1"]})  # unused labels
    labels = pd.concat([labels.iloc[100:], extra], ignore_index=True)  # 100 ids unlabelled
    with pytest.raises(InputError, match="100 matched id"):
        audit_flips(old, new, labels=labels)
    d = audit_flips(old, new, labels=labels, allow_unmatched=True,
                    score_cols="prob_*").to_dict()
    inp = d["inputs"]
    assert inp["matched"] == 3000 and inp["excluded"]["no_label"] == 100
    assert inp["audited"] == 2900 == d["metrics"]["n"]
    assert inp["labels"]["rows"] == 2902 and inp["labels"]["unused"] == 2
    check_document(d, expected_join(old, new, labels), numeric_ids=True)


def test_row_order_and_id_type_invariance(tmp_path: Path, world: World) -> None:
    kw = {"score_cols": "prob_*", "slice_by": ["segment"], "top": 50}
    docs = []
    for seed, id_kind, fmt in [(0, "int", "df"), (1, "int", "df"), (2, "str", "df"),
                               (3, "int", "csv"), (4, "str", "parquet")]:
        w = make_world(seed=2024)
        w.rng = np.random.default_rng(seed)
        old = model_frame(w, "old", id_kind=id_kind, extra=("segment",))
        new = model_frame(w, "new", id_kind=id_kind, label=False)
        if fmt == "df":
            d = audit_flips(old, new, **kw).to_dict()
        elif fmt == "csv":
            old.to_csv(tmp_path / "o.csv", index=False)
            new.to_csv(tmp_path / "n.csv", index=False)
            d = audit_flips(tmp_path / "o.csv", tmp_path / "n.csv", **kw).to_dict()
        else:
            old.to_parquet(tmp_path / "o.parquet", index=False)
            new.to_parquet(tmp_path / "n.parquet", index=False)
            d = audit_flips(tmp_path / "o.parquet", tmp_path / "n.parquet", **kw).to_dict()
        d = strip_paths(d)
        for e in d["top_negative_flips"]:  # string ids carry a prefix; compare the number
            e["id"] = e["id"].removeprefix("img_")
        docs.append(d)
    for d in docs[1:]:
        assert d == docs[0]


def test_mcnemar_exact_end_to_end() -> None:
    # A near-identical update: few discordant pairs, so the exact binomial test is used.
    size = 400
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size)
    o = np.where(rng.random(size) < 0.8, y, (y + 1) % 3)
    n = o.copy()
    flip = rng.choice(size, 12, replace=False)
    n[flip] = np.where(o[flip] == y[flip], (y[flip] + 2) % 3, y[flip])
    old = pd.DataFrame({"id": np.arange(size), "label": y, "pred": o})
    new = pd.DataFrame({"id": np.arange(size)[::-1], "pred": n[::-1]})
    d = audit_flips(old, new, confidence=0.99).to_dict()
    j = pd.DataFrame({"id": np.arange(size).astype(str), "y": y.astype(str),
                      "o": o.astype(str), "n": n.astype(str), "oc": np.nan, "nc": np.nan})
    assert d["tests"]["mcnemar"]["method"] == "exact"
    check_document(d, j, confidence=0.99, numeric_ids=True)


def test_arrow_tables_are_accepted(world: World) -> None:
    old = model_frame(world, "old", extra=("segment",))
    new = model_frame(world, "new", label=False)
    a = audit_flips(pa.Table.from_pandas(old), pa.Table.from_pandas(new), score_cols="prob_*",
                    slice_by=["segment"]).to_dict()
    b = audit_flips(old, new, score_cols="prob_*", slice_by=["segment"]).to_dict()
    assert a["inputs"]["old"]["path"] == "<Arrow table>"
    assert strip_paths(a) == strip_paths(b)
    check_document(a, expected_join(old, new, slices=("segment",)), slices=("segment",),
                   numeric_ids=True)


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_worst_flips_ties_are_broken_by_id(id_kind: str) -> None:
    ids = [10, 2, 33, 4, 1, 7]
    if id_kind == "str":
        ids = [f"x{i}" for i in ids]
    old = pd.DataFrame({"id": ids, "label": ["a"] * 6, "pred": ["a"] * 6,
                        "prob_a": [0.6, 0.9, 0.6, 0.6, 0.7, 0.6],
                        "prob_b": [0.4, 0.1, 0.4, 0.4, 0.3, 0.4]})
    new = pd.DataFrame({"id": ids[::-1], "pred": ["b"] * 6, "prob_a": [0.1] * 6,
                        "prob_b": [0.9] * 6})
    d = audit_flips(old, new, score_cols="prob_*", top=5).to_dict()
    got = [e["id"] for e in d["top_negative_flips"]]
    # confidence 0.9 (id 2), 0.7 (id 1), then the 0.6 ties by id: numerically for integer
    # ids, as text for string ids
    expected = ["2", "1", "4", "7", "10"] if id_kind == "int" else ["x2", "x1", "x10", "x33",
                                                                     "x4"]
    assert got == expected
    no_scores = audit_flips(old.drop(columns=["prob_a", "prob_b"]),
                            new.drop(columns=["prob_a", "prob_b"]), top=3).to_dict()
    ids_sorted = sorted(ids, key=lambda v: (0, v) if id_kind == "int" else (0, str(v)))
    assert [e["id"] for e in no_scores["top_negative_flips"]] == [str(i) for i in ids_sorted[:3]]
    assert all(e["old_confidence"] is None for e in no_scores["top_negative_flips"])
    assert audit_flips(old, new, top=0).to_dict()["top_negative_flips"] == []


@pytest.mark.parametrize("top", [1, 3, 6])
def test_worst_flip_id_order_for_ids_that_only_look_numeric(top: int) -> None:
    """Integer text (up to 18 digits, optional sign) sorts numerically; "1.5", "0x10",
    "1e3", " 7" or a 19-digit id are text. Every path (candidates settled or the fallback
    query) and every engine applies the same rule."""
    ids = ["1.5", "0x10", "1e3", "2", "a", "-3", "+4", " 7", "1_0", "0010", "10",
           "1234567890123456789"]
    old = pd.DataFrame({"id": ids, "label": ["x"] * len(ids), "pred": ["x"] * len(ids)})
    new = pd.DataFrame({"id": ids[::-1], "pred": ["y"] * len(ids)})
    expected = ["-3", "2", "+4", "0010", "10", " 7", "0x10", "1.5", "1234567890123456789",
                "1_0", "1e3", "a"]
    got = [e["id"] for e in audit_flips(old, new, top=top).to_dict()["top_negative_flips"]]
    assert got == expected[:top]


def test_zero_denominators_are_null_in_json() -> None:
    # the new model is never wrong: NFI and BEC are undefined -> null, never NaN
    old = pd.DataFrame({"id": [1, 2, 3], "label": ["a", "b", "a"], "pred": ["a", "a", "b"]})
    new = pd.DataFrame({"id": [1, 2, 3], "pred": ["a", "b", "a"]})
    d = audit_flips(old, new).to_dict()
    assert d["metrics"]["negative_flip_impact"] is None
    assert d["metrics"]["backward_error_compatibility"] is None
    assert d["metrics"]["relative_negative_flip_rate"] is None
    assert d["intervals"]["negative_flip_impact"] is None
    assert d["intervals"]["backward_error_compatibility"] is None
    # b = 0 negative flips, c = 2 positive flips: exact p = 2 * C(2,0) / 2^2 = 0.5
    assert d["tests"]["mcnemar"]["p_value"] == 0.5


# --- bad inputs ---------------------------------------------------------------------------


def _ok_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    old = pd.DataFrame({"id": [101, 102, 103, 104], "label": ["a", "b", "b", "a"],
                        "pred": ["a", "b", "a", "b"]})
    new = pd.DataFrame({"id": [104, 103, 102, 101], "pred": ["b", "b", "a", "a"]})
    return old, new


def _raises(exc_type: type[Exception], *args: object, **kwargs: object) -> str:
    with pytest.raises(exc_type) as info:
        audit_flips(*args, **kwargs)
    return str(info.value)


def test_missing_column_lists_columns_and_closest(tmp_path: Path) -> None:
    old, new = _ok_frames()
    old.rename(columns={"pred": "preds"}).to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    msg = _raises(InputError, tmp_path / "old.csv", tmp_path / "new.parquet")
    assert "old.csv" in msg and "'pred'" in msg
    assert "Columns present: id, label, preds" in msg and "Closest match: 'preds'" in msg
    msg = _raises(InputError, tmp_path / "old.csv", tmp_path / "new.parquet", id_col="ident")
    assert "'ident'" in msg and "id, label, preds" in msg and "Closest match: 'id'" in msg
    msg = _raises(InputError, tmp_path / "old.csv", tmp_path / "new.parquet",
                  score_cols="score_*")
    assert "score_*" in msg and "id, label, preds" in msg


def test_missing_label_everywhere() -> None:
    old, new = _ok_frames()
    msg = _raises(InputError, old.drop(columns="label"), new)
    assert "ground-truth" in msg and "'label'" in msg and "--labels" in msg


def test_duplicate_ids(tmp_path: Path) -> None:
    old, new = _ok_frames()
    dup = pd.concat([old, old.iloc[[1, 1, 3]]], ignore_index=True)
    dup.to_parquet(tmp_path / "old.parquet", index=False)
    msg = _raises(InputError, tmp_path / "old.parquet", new)
    assert "old.parquet" in msg and "'id'" in msg
    assert "102 (3 times)" in msg and "104 (2 times)" in msg and "2 id(s)" in msg


def test_unmatched_ids_stop_by_default() -> None:
    old, new = _ok_frames()
    new = new.assign(id=[104, 103, 102, 999])
    msg = _raises(InputError, old, new)
    assert "1 id(s) only in OLD" in msg and "101" in msg
    assert "1 id(s) only in NEW" in msg and "999" in msg and "3 matched" in msg


def test_files_sharing_no_ids(tmp_path: Path) -> None:
    old, new = _ok_frames()
    old.to_csv(tmp_path / "old.csv", index=False)
    new.assign(id=[f"s{i}" for i in range(4)]).to_parquet(tmp_path / "new.parquet", index=False)
    msg = _raises(InputError, tmp_path / "old.csv", tmp_path / "new.parquet")
    assert "share no ids" in msg and "old.csv" in msg and "new.parquet" in msg
    assert "'101'" in msg and "'s0'" in msg and "--id-col" in msg


def test_label_disagreement_lists_ids() -> None:
    old, new = _ok_frames()
    # NEW ids 104, 103, 102, 101 -> labels a, a, b, b; OLD has 101 a, 102 b, 103 b, 104 a:
    # 101 and 103 disagree
    new = new.assign(label=["a", "a", "b", "b"])
    msg = _raises(InputError, old, new)
    assert "disagrees" in msg and "2 id(s)" in msg
    assert "101 (OLD 'a', NEW 'b')" in msg and "103 (OLD 'b', NEW 'a')" in msg


@pytest.mark.parametrize("kind", ["null-label", "nan-label", "null-pred", "nan-pred"])
def test_missing_values_are_errors_with_ids(kind: str) -> None:
    old, new = _ok_frames()
    if kind == "null-label":
        old["label"] = pd.array(["a", None, "b", "a"], dtype=object)  # id 102
        what, bad_id, where = "label", 102, "OLD file <DataFrame> column 'label'"
    elif kind == "nan-label":
        old = old.assign(label=[0.0, math.nan, 1.0, 0.0], pred=[0, 1, 0, 1])  # id 102
        new = new.assign(pred=[1, 1, 0, 0])
        what, bad_id, where = "label", 102, "OLD file <DataFrame> column 'label'"
    elif kind == "null-pred":
        new["pred"] = pd.array(["b", None, "a", "a"], dtype=object)  # id 103
        what, bad_id, where = "prediction", 103, "NEW file <DataFrame> (column 'pred')"
    else:
        old = old.assign(label=[0, 1, 1, 0], pred=[0.0, 1.0, math.nan, 1.0])  # id 103
        new = new.assign(pred=[1, 1, 0, 0])
        what, bad_id, where = "prediction", 103, "OLD file <DataFrame> (column 'pred')"
    msg = _raises(InputError, old, new)
    assert f"1 audited example(s) have a missing (null, NaN or infinite) {what}" in msg
    assert where in msg
    assert f"ids {bad_id}." in msg


@pytest.mark.parametrize("kind", ["empty", "header-only", "corrupt-parquet", "latin-1",
                                  "missing", "empty-dir", "no-glob-match"])
def test_unreadable_inputs(tmp_path: Path, kind: str) -> None:
    _, new = _ok_frames()
    if kind == "empty":
        path = tmp_path / "old.csv"
        path.write_bytes(b"")
    elif kind == "header-only":
        path = tmp_path / "old.csv"
        path.write_text("id,label,pred\n")
    elif kind == "corrupt-parquet":
        path = tmp_path / "old.parquet"
        path.write_bytes(np.random.default_rng(0).bytes(2048))
    elif kind == "latin-1":
        path = tmp_path / "old.csv"
        path.write_bytes("id,label,pred\n101,caf\xe9,a\n102,b,b\n103,b,a\n104,a,b\n"
                         .encode("latin-1"))
    elif kind == "missing":
        path = tmp_path / "nope.csv"
    elif kind == "empty-dir":
        path = tmp_path / "empty_dir"
        path.mkdir()
    else:
        path = tmp_path / "nothing-*.parquet"
    msg = _raises(InputError, path, new)
    assert str(path) in msg
    expected = {
        "empty": "empty", "header-only": "no rows", "corrupt-parquet": "Parquet",
        "latin-1": "UTF-8", "missing": "no such file", "empty-dir": "no .parquet",
        "no-glob-match": "no file matches",
    }[kind]
    assert expected in msg
    assert "Traceback" not in msg


def test_non_utf8_deep_in_a_large_csv(tmp_path: Path) -> None:
    size = 20_000
    body = "id,label,pred\n" + "".join(f"{i},a,a\n" for i in range(size))
    (tmp_path / "old.csv").write_bytes(body.encode() + f"{size},caf\xe9,a\n".encode("latin-1"))
    new = pd.DataFrame({"id": np.arange(size + 1), "pred": ["a"] * (size + 1)})
    msg = _raises(InputError, tmp_path / "old.csv", new)
    assert "old.csv" in msg and "UTF-8" in msg


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 1.5}, {"threshold": -0.1}, {"confidence": 1.0}, {"confidence": 0.0},
     {"top": -1}, {"gates": {"max-nfr": 2.0}}],
    ids=["threshold-high", "threshold-low", "confidence-1", "confidence-0", "top-negative",
         "gate-out-of-range"],
)
def test_bad_options_are_usage_errors(kwargs: dict) -> None:
    old, new = _ok_frames()
    msg = _raises(UsageError, old, new, **kwargs)
    option = next(iter(kwargs))
    assert f"--{option}" in msg or "--max-nfr" in msg


def test_unknown_slice_column_is_usage_error() -> None:
    old, new = _ok_frames()
    msg = _raises(UsageError, old.assign(segment="x"), new, slice_by=["segmnet"])
    assert "'segmnet'" in msg and "Closest match: 'segment'" in msg


def test_input_of_wrong_type() -> None:
    _, new = _ok_frames()
    with pytest.raises(InputError, match="OLD"):
        audit_flips([1, 2, 3], new)


def test_errors_are_gaudit_errors_with_exit_code_2() -> None:
    from graceful_audit.errors import GauditError

    assert issubclass(InputError, GauditError) and issubclass(UsageError, GauditError)
    assert InputError.exit_code == UsageError.exit_code == 2


# --- regressions of bugs found by these tests ----------------------------------------------


def test_nan_score_never_wins_the_argmax(tmp_path: Path) -> None:
    # id 1: label "0", scores (NaN, 0.3). Predicting "0" from a NaN score is wrong.
    cols = {"id": [1, 2, 3], "label": ["0", "1", "1"], "prob_1": [0.3, 0.8, 0.4]}
    with_nan = pa.table({**cols, "prob_0": pa.array([math.nan, 0.2, 0.6])})
    with_null = pa.table({**cols, "prob_0": pa.array([None, 0.2, 0.6], type=pa.float64())})
    pq.write_table(with_nan, tmp_path / "nan.parquet")
    pq.write_table(with_null, tmp_path / "null.parquet")
    new = pd.DataFrame({"id": [1, 2, 3], "prob_0": [0.9, 0.1, 0.1], "prob_1": [0.1, 0.9, 0.9]})
    try:
        d = audit_flips(tmp_path / "nan.parquet", new, score_cols="prob_*").to_dict()
    except InputError as exc:  # refusing the NaN score is fine too
        assert "nan.parquet" in str(exc)
        return
    ref = audit_flips(tmp_path / "null.parquet", new, score_cols="prob_*").to_dict()
    assert d["counts"] == ref["counts"]


def test_worst_flip_ties_do_not_depend_on_the_file_format(tmp_path: Path) -> None:
    old = pd.DataFrame({"id": [9, 10, 100, 2], "label": [1, 1, 1, 1], "pred": [1, 1, 1, 1]})
    new = pd.DataFrame({"id": [9, 10, 100, 2], "pred": [0, 0, 0, 0]})
    old.to_csv(tmp_path / "old.csv", index=False)
    old.to_parquet(tmp_path / "old.parquet", index=False)
    from_csv = audit_flips(tmp_path / "old.csv", new, top=2).to_dict()
    from_parquet = audit_flips(tmp_path / "old.parquet", new, top=2).to_dict()
    assert [e["id"] for e in from_parquet["top_negative_flips"]] == ["2", "9"]
    assert from_csv["top_negative_flips"] == from_parquet["top_negative_flips"]


def _off_by_one(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = list(range(n))
    y = [i % 10 for i in ids]
    old = pd.DataFrame({"id": ids, "label": y, "pred": [(v + 1) % 10 for v in y]})
    new = old.assign(pred=[(v + 1) % 10 if i % 3 else v for i, v in enumerate(y)])
    return old, new


def test_a_model_right_on_no_row_is_warned_about() -> None:
    """Predictions counted from 1 against labels from 0 share classes, so nothing refuses
    them, yet an old model that is never right has no negative flips: --max-nfr holds
    whatever the new model does. The result must say so."""
    old, new = _off_by_one(200)
    result = audit_flips(old, new, gates={"max-nfr": 0.0})
    assert result.passed and result.metrics.negative_flips == 0
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("the OLD model (column 'pred') is right on none of "
                                         "the 200 audited rows")
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_no_never_right_warning_on_tiny_audits_or_models_right_once() -> None:
    old, new = _off_by_one(9)
    assert audit_flips(old, new).warnings == ()
    old, new = _off_by_one(200)
    old.loc[0, "pred"] = old.loc[0, "label"]
    assert audit_flips(old, new).warnings == ()


def test_a_regression_model_never_within_tolerance_is_warned_about() -> None:
    ids = list(range(50))
    old = pd.DataFrame({"id": ids, "label": [float(i) for i in ids],
                        "pred": [i + 5.5 for i in ids]})
    new = old.assign(pred=[i + 0.25 for i in ids])
    result = audit_flips(old, new, atol=1.0)
    assert [w.split(" (")[0] for w in result.warnings] == ["the OLD model"]
    assert "check --atol and --rtol" in result.warnings[0]
