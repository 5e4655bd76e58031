"""The usual quality metrics, old beside new: every number against scikit-learn, DeLong's
paired test against an independent O(n_pos n_neg) implementation written from the paper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm
from sklearn import metrics as skm
from typer.testing import CliRunner

from graceful_audit import audit_flips
from graceful_audit.cli import app
from graceful_audit.errors import UsageError
from graceful_audit.quality import (
    ClassCounts,
    Placements,
    class_quality,
    delong,
    precision_recall_f1,
)
from graceful_audit.result import FlipsResult

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
runner = CliRunner()


def close(a, b, tol=1e-12):
    assert a is not None and b is not None, (a, b)
    assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), (a, b)


# -- an independent DeLong, from the paper (Biometrics 44(3) 1988), O(n_pos * n_neg) -------

def psi(x, y):
    """1 when the positive's score x beats the negative's y, 1/2 for a tie, else 0."""
    return (x > y) + 0.5 * (x == y)


def delong_reference(y, s_old, s_new):
    """AUCs, z, p and the variance of AUC_new - AUC_old, by the paper's definitions."""
    y = np.asarray(y, bool)
    out = []
    for s in (np.asarray(s_old, float), np.asarray(s_new, float)):
        k = psi(s[y][:, None], s[~y][None, :])  # m x n kernel
        out.append((k.mean(), k.mean(axis=1), k.mean(axis=0)))  # AUC, V10, V01
    (a0, v10_0, v01_0), (a1, v10_1, v01_1) = out
    s10 = np.cov(np.vstack([v10_0, v10_1]))
    s01 = np.cov(np.vstack([v01_0, v01_1]))
    m, n = y.sum(), (~y).sum()
    contrast = np.array([-1.0, 1.0])
    var = contrast @ s10 @ contrast / m + contrast @ s01 @ contrast / n
    z = (a1 - a0) / math.sqrt(var)
    return a0, a1, z, 2 * norm.sf(abs(z)), var


# -- data ----------------------------------------------------------------------------------

def multiclass_frames(seed=3, n=600, k=4, text=False):
    """Probabilities in steps of 1/10 (many ties, rows summing to 1), labels 0..k-1 with the
    new model more often right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    names = [f"c{i}" for i in range(k)] if text else [str(i) for i in range(k)]

    def model(skill):
        units = rng.multinomial(10, np.full(k, 1 / k), n).astype(float)
        units[np.arange(n), y] += rng.binomial(10, skill, n)
        return units / units.sum(axis=1, keepdims=True)

    frames = []
    for skill in (0.3, 0.5):
        p = model(skill)
        f = pd.DataFrame({"id": np.arange(n), "label": np.array(names)[y]})
        for i, c in enumerate(names):
            f[f"prob_{c}"] = p[:, i]
        frames.append(f)
    return frames[0], frames[1], y, names


def binary_frames(seed=5, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s_old = np.clip(np.round(0.5 * y + rng.normal(0.25, 0.3, n), 1), 0, 1)  # many ties
    s_new = np.clip(np.round(0.6 * y + rng.normal(0.2, 0.3, n), 1), 0, 1)
    old = pd.DataFrame({"id": np.arange(n), "label": y, "score": s_old})
    new = pd.DataFrame({"id": np.arange(n), "label": y, "score": s_new})
    return old, new, y, s_old, s_new


# -- classification without scores ---------------------------------------------------------

def test_label_metrics_match_sklearn_with_classes_only_predicted():
    rng = np.random.default_rng(11)
    n = 500
    y = rng.integers(0, 5, n)
    old_p = np.where(rng.random(n) < 0.7, y, rng.integers(0, 6, n))  # predicts class 5 too
    new_p = np.where(rng.random(n) < 0.8, y, rng.integers(0, 4, n))
    new_p[new_p == 4] = 3  # never predicts 4: its precision is 0 / 0
    old = pd.DataFrame({"id": np.arange(n), "label": y, "pred": old_p})
    new = pd.DataFrame({"id": np.arange(n), "pred": new_p})
    d = audit_flips(old, new).to_dict()
    q = d["quality"]
    for side, pred in (("old", old_p), ("new", new_p)):
        close(q[side]["accuracy"], skm.accuracy_score(y, pred))
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="macro",
                                                         zero_division=0)
        close(q[side]["macro_precision"], p)
        close(q[side]["macro_recall"], r)
        close(q[side]["macro_f1"], f)
        labels = sorted(set(y) | set(pred))
        pc, rc, fc, _ = skm.precision_recall_fscore_support(y, pred, labels=labels,
                                                            zero_division=np.nan)
        by_class = {str(c): (a, b, e) for c, a, b, e in zip(labels, pc, rc, fc, strict=True)}
        rows = {r["class"]: r for r in d["per_class"]}
        rows.update({r["class"]: r for r in q["predicted_only_classes"]})
        for cls, (a, b, e) in by_class.items():
            for key, ref in (("precision", a), ("recall", b), ("f1", e)):
                got = rows[cls][f"{side}_{key}"]
                if np.isnan(ref):
                    assert got is None, (side, cls, key)
                else:
                    close(got, ref)
        close(q["delta"]["macro_f1"], q["new"]["macro_f1"] - q["old"]["macro_f1"])
    assert [r["class"] for r in q["predicted_only_classes"]] == ["5"]
    assert next(r for r in d["per_class"] if r["class"] == "4")["new_precision"] is None
    for key in ("log_loss", "brier", "roc_auc"):
        assert q["old"][key] is None and q["reasons"][key] == "no --score-cols given"
    assert d["tests"]["roc_auc_delong"] is None and d["intervals"]["roc_auc_delta"] is None
    # the confusion matrices, also without scores: rows label, columns prediction, over
    # every class that is a label or a prediction of either model, in natural order
    conf = q["confusion"]
    assert conf["classes"] == [str(c) for c in range(6)] and conf["total_classes"] == 6
    assert conf["rows_left_out"] == {"old": 0, "new": 0}
    for side, pred in (("old", old_p), ("new", new_p)):
        assert conf[side] == skm.confusion_matrix(y, pred, labels=list(range(6))).tolist()


def _skl_confusion(q, y, preds):
    """Check ``quality.confusion`` against scikit-learn over its kept classes, and its
    left-out rows by brute force."""
    conf = q["confusion"]
    kept = conf["classes"]
    for side, pred in preds.items():
        assert conf[side] == skm.confusion_matrix(y, pred, labels=kept).tolist(), side
        inside = np.isin(y, kept) & np.isin(pred, kept)
        assert conf["rows_left_out"][side] == int((~inside).sum()), side


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.booleans())
def test_confusion_matches_sklearn_on_random_data(seed, n, text):
    """Classes that are only predicted (never a label), by one model or both; text or
    integer classes; the same matrices as scikit-learn's over every class, in natural
    order (integer text numerically, other text as text, as the per-class table)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"c{i}" for i in range(12)] if text else [str(i) for i in range(12)])
    y = names[rng.integers(0, 4, n)]
    old_p = names[rng.integers(0, 8, n)]
    new_p = np.where(rng.random(n) < 0.5, y, names[rng.integers(2, 12, n)])
    old = pd.DataFrame({"id": np.arange(n), "label": y, "pred": old_p})
    new = pd.DataFrame({"id": np.arange(n), "pred": new_p})
    q = audit_flips(old, new).to_dict()["quality"]
    every = sorted(set(y) | set(old_p) | set(new_p), key=str if text else int)
    assert q["confusion"]["classes"] == every
    assert q["confusion"]["total_classes"] == len(every)
    _skl_confusion(q, y, {"old": old_p, "new": new_p})
    for side in ("old", "new"):
        m = np.array(q["confusion"][side])
        assert m.sum() == n
        close(q[side]["accuracy"], np.trace(m) / n)


def test_confusion_keeps_the_most_frequent_labels_beyond_the_cap():
    """130 label classes and 5 more only predicted: the 100 most frequent labels are kept
    (ties in natural order), the rest counted as rows left out, per model."""
    from graceful_audit.quality import MAX_CONFUSION_CLASSES

    rng = np.random.default_rng(7)
    k = 130
    y = np.repeat(np.arange(k), np.arange(k) % 7 + 1)  # supports 1..7, many ties
    rng.shuffle(y)
    n = len(y)
    old_p = np.where(rng.random(n) < 0.6, y, rng.integers(0, k + 5, n))
    new_p = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    old = pd.DataFrame({"id": np.arange(n), "label": y, "pred": old_p})
    new = pd.DataFrame({"id": np.arange(n), "pred": new_p})
    q = audit_flips(old, new).to_dict()["quality"]
    support = np.bincount(y, minlength=k)
    by_support = sorted(range(k), key=lambda c: (-support[c], c))[:MAX_CONFUSION_CLASSES]
    assert q["confusion"]["classes"] == [str(c) for c in sorted(by_support)]
    assert q["confusion"]["total_classes"] == len(set(y) | set(old_p) | set(new_p))
    _skl_confusion(q, y.astype(str), {"old": old_p.astype(str), "new": new_p.astype(str)})
    assert min(q["confusion"]["rows_left_out"].values()) > 0


def test_confusion_cap_by_hand():
    from graceful_audit.quality import Confusion

    cells = {"old": {("a", "a"): 3, ("b", "a"): 1, ("c", "z"): 2},
             "new": {("a", "b"): 3, ("b", "b"): 1, ("c", "c"): 2}}
    c = Confusion.of(cells, {"a": 3, "b": 1, "c": 2}, limit=2)
    assert c.classes == ("a", "c") and c.total_classes == 4
    assert c.matrices == {"old": ((3, 0), (0, 0)), "new": ((0, 0), (0, 2))}
    assert c.left_out == {"old": 3, "new": 4}
    assert Confusion.from_dict(c.to_dict()) == c
    every = Confusion.of(cells, {"a": 3, "b": 1, "c": 2})
    assert every.classes == ("a", "b", "c", "z") and every.left_out == {"old": 0, "new": 0}


def test_hand_worked_small_case():
    q = class_quality(ClassCounts({"a": 2, "b": 2}, {"a": 3, "b": 1}, {"a": 2, "b": 1}))
    # a: P 2/3, R 1, F1 0.8; b: P 1, R 1/2, F1 2/3
    assert q == {"accuracy": 0.75, "macro_precision": (2 / 3 + 1) / 2, "macro_recall": 0.75,
                 "macro_f1": (0.8 + 2 / 3) / 2}
    assert precision_recall_f1(0, 0, 3) == (None, 0.0, 0.0)
    assert class_quality(ClassCounts({}, {}, {}))["accuracy"] is None


# -- with scores ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [False, True])
def test_multiclass_scores_match_sklearn(text):
    old, new, y, names = multiclass_frames(text=text)
    r = audit_flips(old, new, score_cols="prob_*")
    q = r.to_dict()["quality"]
    labels = np.array(names)[y]
    for side, f in (("old", old), ("new", new)):
        p = f[[f"prob_{c}" for c in names]].to_numpy()
        close(q[side]["log_loss"], skm.log_loss(labels, p, labels=names))
        close(q[side]["brier"], skm.brier_score_loss(labels, p, labels=names))
        close(q[side]["roc_auc"], skm.roc_auc_score(labels, p, multi_class="ovr",
                                                   average="macro", labels=names))
        close(q[side]["accuracy"], skm.accuracy_score(labels, np.array(names)[p.argmax(1)]))
    assert q["positive_class"] is None and r.to_dict()["tests"]["roc_auc_delong"] is None
    for side, f in (("old", old), ("new", new)):
        pred = np.array(names)[f[[f"prob_{c}" for c in names]].to_numpy().argmax(1)]
        assert q["confusion"]["classes"] == names
        assert q["confusion"][side] == skm.confusion_matrix(labels, pred, labels=names).tolist()
    rel = q["reliability"]["new"]
    assert sum(b["count"] for b in rel) == len(y)
    conf = new[[f"prob_{c}" for c in names]].max(axis=1).to_numpy()
    top = np.minimum((conf * 10).astype(int), 9)  # numpy's bins, the last one closed
    assert [b["count"] for b in rel] == np.bincount(top, minlength=10).tolist()


def test_binary_scores_and_delong_match_references():
    old, new, y, s_old, s_new = binary_frames()
    r = audit_flips(old, new, score_cols="score")
    d = r.to_dict()
    q = d["quality"]
    a0, a1, z, p, var = delong_reference(y == 1, s_old, s_new)
    close(q["old"]["roc_auc"], skm.roc_auc_score(y, s_old))
    close(q["old"]["roc_auc"], a0)
    close(q["new"]["roc_auc"], a1)
    close(d["tests"]["roc_auc_delong"]["z"], z, 1e-9)
    close(d["tests"]["roc_auc_delong"]["p_value"], p, 1e-9)
    lo, hi = d["intervals"]["roc_auc_delta"]
    half = norm.ppf(0.975) * math.sqrt(var)
    close(lo, a1 - a0 - half, 1e-9)
    close(hi, a1 - a0 + half, 1e-9)
    for side, s in (("old", s_old), ("new", s_new)):
        close(q[side]["log_loss"], skm.log_loss(y, s))
        close(q[side]["brier"], skm.brier_score_loss(y, s))
    assert q["positive_class"] == "1"


def test_binary_text_labels_positive_is_second_in_natural_order():
    old, new, y, s_old, s_new = binary_frames(seed=9)
    cls = np.array(["ham", "spam"])
    frames = []
    for f, s in ((old, s_old), (new, s_new)):
        frames.append(pd.DataFrame({"id": f["id"], "label": cls[y], "prob_ham": 1 - s,
                                    "prob_spam": s}))
    d = audit_flips(*frames, score_cols="prob_*").to_dict()
    q = d["quality"]
    assert q["positive_class"] == "spam"
    close(q["old"]["roc_auc"], skm.roc_auc_score(cls[y], s_old))
    close(q["new"]["brier"], skm.brier_score_loss(cls[y], s_new, pos_label="spam"))
    a0, a1, z, p, _ = delong_reference(y == 1, s_old, s_new)
    close(d["tests"]["roc_auc_delong"]["z"], z, 1e-9)


def test_scores_not_summing_to_one_give_no_log_loss_with_the_reason():
    old, new, y, names = multiclass_frames(seed=4)
    new.loc[3, "prob_0"] += 0.01
    q = audit_flips(old, new, score_cols="prob_*").to_dict()["quality"]
    assert q["old"]["log_loss"] is not None and q["new"]["log_loss"] is None
    assert "1 row(s) do not sum to 1 within 1e-06" in q["reasons"]["new_log_loss"]
    assert q["delta"]["log_loss"] is None and q["new"]["brier"] is not None


def test_missing_fill_value_and_logit_scores_are_reasons_not_crashes():
    """Predictions from a column, scores beside them with a null, a NaN, a float32 fill value
    (-3.4e38) and, in the other model, logits: the audit runs; log-loss and Brier are null
    with the reason (counting every bad row), and the sums never see those values."""
    old, new, y, names = multiclass_frames(seed=6, n=60)
    for f in (old, new):
        f["pred"] = np.array(names)[f[[f"prob_{c}" for c in names]].to_numpy().argmax(1)]
    old.loc[1, "prob_0"] = None
    old.loc[2, "prob_1"] = np.nan
    old.loc[3, "prob_2"] = -3.4e38
    cols = [f"prob_{c}" for c in names]
    new[cols] = new[cols] * 1e20  # logits of any size: not probabilities
    r = audit_flips(old, new, score_cols="prob_*", pred_col="pred").to_dict()
    q = r["quality"]
    assert q["old"]["log_loss"] is None and q["old"]["brier"] is None
    assert q["reasons"]["old_brier"].startswith("3 audited row(s) have a missing, NaN")
    assert q["new"]["log_loss"] is None and q["new"]["brier"] is None
    assert q["reasons"]["new_brier"].startswith("60 audited row(s) have a score outside [0, 1]")
    labels = np.array(names)[y]
    # scikit-learn refuses multiclass AUC on non-probabilities; one-vs-rest by hand:
    ovr = [skm.roc_auc_score(labels == c, new[f"prob_{c}"]) for c in names]
    close(q["new"]["roc_auc"], float(np.mean(ovr)))


def test_sample_digits_match_sklearn():
    d = audit_flips(SAMPLE / "digits_old.csv", SAMPLE / "digits_new.parquet",
                    score_cols="prob_*").to_dict()
    q = d["quality"]
    o = pd.read_csv(SAMPLE / "digits_old.csv")
    n = pd.read_parquet(SAMPLE / "digits_new.parquet")
    m = o.merge(n, on="id", suffixes=("_o", "_n"))
    cols = [f"prob_{i}" for i in range(10)]
    for side, sfx in (("old", "_o"), ("new", "_n")):
        p = m[[c + sfx for c in cols]].to_numpy()
        y, pred = m["label_o"].to_numpy(), m["pred" + sfx].to_numpy()
        close(q[side]["accuracy"], skm.accuracy_score(y, pred))
        close(q[side]["macro_f1"], skm.f1_score(y, pred, average="macro"))
        close(q[side]["brier"], skm.brier_score_loss(y, p, labels=list(range(10))))
        close(q[side]["roc_auc"], skm.roc_auc_score(y, p, multi_class="ovr"))
        # rounded to 6 decimals, each row still sums to 1 (make_samples.round_summing_to_one)
        assert np.abs(p.sum(axis=1) - 1).max() < 1e-12
        close(q[side]["log_loss"], skm.log_loss(y, p, labels=list(range(10))))
    assert "reasons" not in q


# -- regression ----------------------------------------------------------------------------

def test_regression_matches_sklearn_with_zero_labels_excluded_from_mape():
    rng = np.random.default_rng(2)
    n = 300
    y = np.round(rng.normal(10, 5, n), 1)
    y[:7] = 0.0
    o = y + rng.normal(0, 1, n)
    w = y + rng.normal(0, 0.8, n)
    old = pd.DataFrame({"id": np.arange(n), "label": y, "pred": o})
    new = pd.DataFrame({"id": np.arange(n), "pred": w})
    d = audit_flips(old, new, task="regression", atol=0.5).to_dict()
    q = d["quality"]
    nz = y != 0
    for side, p in (("old", o), ("new", w)):
        close(q[side]["r2"], skm.r2_score(y, p), 1e-10)
        close(q[side]["mape"], skm.mean_absolute_percentage_error(y[nz], p[nz]))
        close(q[side]["max_error"], skm.max_error(y, p))
    assert q["mape_excluded_zero_labels"] == int((~nz).sum()) == 7
    assert set(q["old"]) == {"r2", "mape", "max_error"}


def test_sample_diabetes_regression():
    old = pd.read_csv(SAMPLE / "diabetes_old.csv")
    new = pd.read_parquet(SAMPLE / "diabetes_new.parquet")
    q = audit_flips(SAMPLE / "diabetes_old.csv", SAMPLE / "diabetes_new.parquet",
                    atol=10).to_dict()["quality"]
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    ycol = "target_o" if "target_o" in m else "target"
    y = m[ycol].to_numpy()
    for side, sfx in (("old", "_o"), ("new", "_n")):
        p = m["prediction" + sfx].to_numpy()
        close(q[side]["r2"], skm.r2_score(y, p), 1e-10)
        close(q[side]["max_error"], skm.max_error(y, p))


def test_constant_labels_give_no_r2():
    old = pd.DataFrame({"id": range(4), "label": [2.5] * 4, "pred": [2.0, 2.5, 3.1, 2.2]})
    new = pd.DataFrame({"id": range(4), "pred": [2.4, 2.6, 2.5, 2.5]})
    q = audit_flips(old, new, task="regression", atol=0.1).to_dict()["quality"]
    assert q["old"]["r2"] is None and q["reasons"]["r2"].startswith("the labels are constant")


# -- DeLong: properties of the pure function -----------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4), st.integers(0, 4)),
                min_size=4, max_size=40))
def test_delong_matches_reference_and_is_antisymmetric(rows):
    y = np.array([r[0] for r in rows])
    if y.sum() < 2 or (~y).sum() < 2:
        return
    a = np.array([r[1] for r in rows], float)
    b = np.array([r[2] for r in rows], float)
    old, new = pd.DataFrame({"id": range(len(y)), "label": y.astype(int), "s": a / 4}), \
        pd.DataFrame({"id": range(len(y)), "s": b / 4})
    d = audit_flips(old, new, score_cols="s").to_dict()
    a0, a1, _z, _p, var = delong_reference(y, a, b)
    close(d["quality"]["old"]["roc_auc"], a0)
    close(d["quality"]["new"]["roc_auc"], a1)
    test = d["tests"]["roc_auc_delong"]
    if var > 1e-12:
        close(test["z"], (a1 - a0) / math.sqrt(var), 1e-7)
    back = audit_flips(new.assign(label=y.astype(int)), old.drop(columns="label"),
                       score_cols="s").to_dict()["tests"]["roc_auc_delong"]
    if test["z"] is not None:
        close(back["z"], -test["z"], 1e-9)


def test_delong_needs_two_of_each_side():
    p = Placements(1, 1.0, 1.0, 0.0, 0.0, 0.0)
    assert delong(p, p, n_pos=1, n_neg=5) is None


# -- gates, config, CLI, render ------------------------------------------------------------

def test_gates_auc_and_f1_drop(tmp_path):
    old, new, *_ = binary_frames()
    # swap: the "new" model is the weaker one, so AUC and F1 drop
    r = audit_flips(new, old, score_cols="score", gates={"max-auc-drop": 0.0,
                                                         "max-f1-drop": 0.5})
    gates = {g.name: g for g in r.gates}
    assert gates["max-auc-drop"].status == "fail"
    close(gates["max-auc-drop"].value, -r.quality.delta["roc_auc"])
    assert gates["max-f1-drop"].status == "pass"
    assert not r.passed


def test_auc_gate_without_scores_is_a_usage_error():
    old, new, *_ = binary_frames()
    with pytest.raises(UsageError, match="--max-auc-drop: ROC-AUC needs the models' scores"):
        audit_flips(old.assign(pred=(old.score > 0.5).astype(int)).drop(columns="score"),
                    new.assign(pred=(new.score > 0.5).astype(int)).drop(columns="score"),
                    gates={"max-auc-drop": 0.01})


def test_cli_gates_config_and_render_roundtrip(tmp_path):
    old, new, *_ = binary_frames()
    po, pn = tmp_path / "old.csv", tmp_path / "new.csv"
    new.to_csv(po, index=False)  # swapped: AUC drops
    old.to_csv(pn, index=False)
    cfg = tmp_path / "gaudit.toml"
    cfg.write_text("[flips]\nmax-auc-drop = 0.0\nmax-f1-drop = 1.0\n")
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["flips", str(po), str(pn), "--score-cols", "score", "--config",
                              str(cfg), "--format", "json", "--output", str(out)])
    assert res.exit_code == 1, res.output
    doc = json.loads(out.read_text())
    assert [g["name"] for g in doc["gates"]] == ["max-auc-drop", "max-f1-drop"]
    assert doc["gates"][0]["source"].endswith("gaudit.toml")
    again = runner.invoke(app, ["render", str(out), "--format", "json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout) == doc
    assert FlipsResult.from_dict(doc).to_dict() == doc
    bad = runner.invoke(app, ["flips", str(po), str(pn), "--max-auc-drop", "2"])
    assert bad.exit_code == 2 and "outside the valid range" in bad.output
    # regated on render: the saved quality numbers decide
    held = runner.invoke(app, ["render", str(out), "--format", "json", "--max-f1-drop", "1"])
    assert held.exit_code == 0, held.output


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_reports_show_quality(fmt, tmp_path):
    old, new, *_ = multiclass_frames()
    out = tmp_path / f"r.{fmt}"
    old.to_csv(tmp_path / "o.csv", index=False)
    new.to_csv(tmp_path / "n.csv", index=False)
    res = runner.invoke(app, ["flips", str(tmp_path / "o.csv"), str(tmp_path / "n.csv"),
                              "--score-cols", "prob_*", "--format", fmt, "--output", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    for word in ("macro F1", "ROC-AUC", "log-loss", "Brier"):
        assert word in text, word
    if fmt == "html":
        assert text.count('class="confusion"') == 2
        assert "Reliability" in text


def _saved(tmp_path, result):
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(result.to_dict()))
    return path


@pytest.mark.parametrize("case", ["multiclass", "binary", "regression"])
def test_render_reads_quality_back_unchanged(case, tmp_path):
    if case == "regression":
        r = audit_flips(SAMPLE / "diabetes_old.csv", SAMPLE / "diabetes_new.parquet", atol=10)
    elif case == "binary":
        old, new, *_ = binary_frames()
        r = audit_flips(old, new, score_cols="score")
    else:
        old, new, *_ = multiclass_frames(text=True)
        r = audit_flips(old, new, score_cols="prob_*")
    doc = r.to_dict()
    assert FlipsResult.from_dict(json.loads(json.dumps(doc))).to_dict() == doc
    path = _saved(tmp_path, r)
    for fmt in ("json", "html", "markdown", "text"):
        res = runner.invoke(app, ["render", str(path), "--format", fmt])
        assert res.exit_code == 0, res.output
        if fmt == "json":
            assert json.loads(res.stdout) == doc


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda q: q["old"].update(accuracy="high"), "quality.old.accuracy must be a number"),
    (lambda q: q["new"].update(roc_auc=1.5), "quality.new.roc_auc must be a number from 0"),
    (lambda q: q["delta"].update(extra=1), "quality.delta.extra"),
    (lambda q: q["confusion"]["old"][0].__setitem__(0, -1), "must be a whole number >= 0"),
    (lambda q: q["confusion"]["new"].pop(), "quality.confusion.new must be a 4 x 4 matrix"),
    (lambda q: q["confusion"]["old"][1].append(0), "quality.confusion.old must be a 4 x 4"),
    (lambda q: q["confusion"].update(total_classes=3), "total_classes is 3 but"),
    (lambda q: q["confusion"]["classes"].__setitem__(1, "0"), "holds a class twice"),
    (lambda q: q["confusion"].pop("rows_left_out"), "rows_left_out is missing"),
    (lambda q: q["reliability"]["new"][0].update(low="x"), "low must be a finite number"),
    (lambda q: q.pop("new"), "quality.new is missing"),
])
def test_render_refuses_a_damaged_quality_block(edit, needle, tmp_path):
    old, new, *_ = multiclass_frames()
    doc = audit_flips(old, new, score_cols="prob_*").to_dict()
    edit(doc["quality"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    res = runner.invoke(app, ["render", str(path)])
    assert res.exit_code == 2 and needle in res.output, res.output


def test_a_class_never_the_label_gives_no_auc_with_the_reason():
    old, new, y, names = multiclass_frames(seed=8)
    keep = y != 2  # class 2 has a score column but never is the label
    q = audit_flips(old[keep], new[keep], score_cols="prob_*").to_dict()["quality"]
    assert q["old"]["roc_auc"] is None
    assert q["reasons"]["old_roc_auc"] == "class '2' is never the label, so its ROC curve is " \
        "undefined"
    with pytest.raises(ValueError, match="Number of classes"):  # scikit-learn refuses it
        skm.roc_auc_score(y[keep], old[keep][[f"prob_{c}" for c in names]].to_numpy(),
                          multi_class="ovr")
    assert q["old"]["brier"] is not None
