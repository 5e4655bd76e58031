"""``gaudit flips --what-if`` (issue 17): every point of the blend's curve against a
brute-force numpy oracle, written from the definition alone.

The oracle blends ``(1 - alpha) * s_new + alpha * s_old`` with ``alpha = i / (K - 1)`` in
float64, takes ``numpy.argmax`` (the first maximum) in the NEW file's score-column order
(or ``>= threshold`` for one binary score), maps the index to the class name and counts
flips against the label and the OLD prediction by comparing strings, row by row. It never
uses gaudit's kernels, its SQL or its pruning of stable rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from graceful_audit import audit_flips
from graceful_audit.cli import app
from graceful_audit.engine import DuckDBEngine
from graceful_audit.errors import InputError, UsageError
from graceful_audit.metrics import FlipCounts
from graceful_audit.rerender import load_result
from graceful_audit.whatif import (
    BY_CLASS,
    MAX_STEPS,
    WhatIf,
    _counts_by_class,
    _counts_by_row,
    alphas,
    blend_argmax_counts,
    blend_threshold_counts,
    point,
    recommend,
)

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "sample_data" / "digits_old.csv"
NEW = ROOT / "sample_data" / "digits_new.parquet"
runner = CliRunner()


# --------------------------------------------------------------------------- the oracle


def oracle(y, old_pred, new_scores, old_scores, classes, steps, threshold=None):
    """Per alpha: (alpha, negative flips, positive flips, errors), by the definition."""
    y = [str(v) for v in y]
    o = [str(v) for v in old_pred]
    out = []
    for i in range(steps):
        a = i / (steps - 1)
        s = (1.0 - a) * np.asarray(new_scores, dtype=np.float64) \
            + a * np.asarray(old_scores, dtype=np.float64)
        if threshold is None:
            pred = [classes[j] for j in np.argmax(s, axis=1)]
        else:
            pred = ["1" if v >= threshold else "0" for v in s]
        nf = sum(1 for yy, oo, pp in zip(y, o, pred, strict=True) if oo == yy and pp != yy)
        pf = sum(1 for yy, oo, pp in zip(y, o, pred, strict=True) if oo != yy and pp == yy)
        err = sum(1 for yy, pp in zip(y, pred, strict=True) if pp != yy)
        out.append((a, nf, pf, err))
    return out


def assert_matches(curve: WhatIf, expected, n: int) -> None:
    assert len(curve.points) == len(expected)
    for p, (a, nf, pf, err) in zip(curve.points, expected, strict=True):
        assert p.alpha == a
        assert (p.counts.negative_flips, p.counts.positive_flips, p.counts.new_errors) == (
            nf, pf, err), (a, p.counts)
        assert p.error_rate == err / n
        assert p.negative_flip_rate == nf / n
        assert p.positive_flip_rate == pf / n


def argmax_names(frame: pd.DataFrame, cols: list[str], names: list[str]) -> list[str]:
    return [names[j] for j in np.argmax(frame[cols].to_numpy(dtype=np.float64), axis=1)]


def random_pair(seed: int, n: int = 400, k: int = 4, ties: bool = False,
                old_pred: bool = False, new_pred: bool = False, negative: bool = False):
    """Two prediction frames with per-class scores ``p_<class>`` (NEW shuffled, its score
    columns in another order than OLD's), labels in OLD."""
    rng = np.random.default_rng(seed)
    names = [f"c{j}" for j in range(k)]
    y = rng.integers(0, k, n)

    def scores(acc: float) -> np.ndarray:
        s = rng.random((n, k))
        s[np.arange(n), np.where(rng.random(n) < acc, y, rng.integers(0, k, n))] += 0.6
        if ties:
            s = np.round(s * 2) / 2  # few levels: ties everywhere
        if negative:
            s = np.log(s + 1e-3) * 3  # logits: negative scores are fine for an argmax
        return s

    so, sn = scores(0.7), scores(0.8)
    ids = np.arange(n) * 7 + 3
    old = pd.DataFrame({"id": ids, "label": [names[v] for v in y]})
    new = pd.DataFrame({"id": ids})
    for j, c in enumerate(names):
        old[f"p_{c}"] = so[:, j]
    for j in reversed(range(k)):  # NEW's column order is the reverse of OLD's
        new[f"p_{names[j]}"] = sn[:, j]
    if old_pred:
        old["pred"] = [names[v] for v in rng.integers(0, k, n)]
    if new_pred:
        new["pred"] = [names[v] for v in rng.integers(0, k, n)]
    new = new.sample(frac=1, random_state=seed).reset_index(drop=True)
    return old, new, names


def expected_curve(old, new, names, steps, old_pred_col=False):
    """The oracle on two frames: joined by id, blend order = NEW's columns."""
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    new_order = [c for c in new.columns if c.startswith("p_")]
    order_names = [c[2:] for c in new_order]
    sn = m[[f"{c}_n" for c in new_order]].to_numpy()
    so = m[[f"{c}_o" for c in new_order]].to_numpy()
    old_cols = [c for c in old.columns if c.startswith("p_")]
    if old_pred_col:
        o = m["pred_o"] if "pred_o" in m else m["pred"]
    else:  # OLD's own argmax, in OLD's column order
        o = argmax_names(m.rename(columns={f"{c}_o": c for c in old_cols}), old_cols,
                         [c[2:] for c in old_cols])
    return oracle(m["label"], o, sn, so, order_names, steps), len(m)


# --------------------------------------------------------------------------- random data


@pytest.mark.parametrize(("seed", "ties", "negative", "steps"), [
    (0, False, False, 21), (1, True, False, 21), (2, True, False, 7), (3, False, True, 11),
    (4, True, True, 2),
])
def test_every_point_matches_the_oracle_on_random_data(seed, ties, negative, steps):
    old, new, names = random_pair(seed, ties=ties, negative=negative)
    result = audit_flips(old, new, score_cols="p_*", what_if=True, what_if_steps=steps)
    expected, n = expected_curve(old, new, names, steps)
    assert_matches(result.what_if, expected, n)
    assert result.what_if.classes == tuple(reversed(names))  # NEW's column order


@pytest.mark.parametrize("seed", [5, 6])
def test_prediction_columns_are_the_models_audited(seed):
    """With prediction columns the flips are against the OLD prediction column; alpha = 0
    is the new scores' argmax all the same, and the disagreements are counted."""
    old, new, names = random_pair(seed, old_pred=True, new_pred=True, ties=seed == 6)
    result = audit_flips(old, new, score_cols="p_*", what_if=True)
    expected, n = expected_curve(old, new, names, 21, old_pred_col=True)
    assert_matches(result.what_if, expected, n)
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    new_order = [c for c in new.columns if c.startswith("p_")]
    new_argmax = argmax_names(m.rename(columns={f"{c}_n": c for c in new_order}), new_order,
                              [c[2:] for c in new_order])
    old_argmax = argmax_names(m.rename(columns={f"{c}_o": c for c in new_order}), new_order,
                              [c[2:] for c in new_order])
    assert result.what_if.new_pred_disagreements == sum(
        a != b for a, b in zip(new_argmax, m["pred_n"], strict=True)) > 0
    assert result.what_if.old_pred_disagreements == sum(
        a != b for a, b in zip(old_argmax, m["pred_o"], strict=True)) > 0


def test_sql_kernel_equals_the_streamed_one(monkeypatch):
    """The SQL that Spark runs gives the same curve as numpy over Arrow batches (both on
    DuckDB here; tests/test_engine_spark.py runs it on Spark)."""
    old, new, names = random_pair(8, ties=True, old_pred=True, new_pred=True)
    streamed = audit_flips(old, new, score_cols="p_*", what_if=True).to_dict()
    monkeypatch.setattr(DuckDBEngine, "record_batches", lambda self, sql, rows: None)
    in_sql = audit_flips(old, new, score_cols="p_*", what_if=True).to_dict()
    assert json.dumps(streamed) == json.dumps(in_sql)


def test_batches_add_up(monkeypatch):
    """Many small Arrow batches give the curve of one."""
    import graceful_audit.whatif as whatif

    old, new, names = random_pair(9, n=3000, k=5)
    whole = audit_flips(old, new, score_cols="p_*", what_if=True).to_dict()["what_if"]
    monkeypatch.setattr(whatif, "BATCH_VALUES", 64)  # 1,024 rows a batch (the least)
    batched = audit_flips(old, new, score_cols="p_*", what_if=True).to_dict()["what_if"]
    assert whole == batched


# --------------------------------------------------------------------------- the kernel


# Scores that tie, differ by one unit in the last place, are subnormal or large: where a
# shortcut (rows whose winner wins at every alpha) could go wrong.
SCORES = st.sampled_from([0.0, -0.0, 0.25, 0.5, np.nextafter(0.5, 1.0), np.nextafter(0.5, 0.0),
                          1.0, 0.1, 0.3, -2.0, 5e-324, 1e-300, 1e29, -1e29, 0.7, 0.2])


@st.composite
def score_rows(draw):
    k = draw(st.integers(2, 4))
    n = draw(st.integers(1, 12))
    new = np.array([[draw(SCORES) for _ in range(k)] for _ in range(n)], dtype=np.float64)
    old = np.array([[draw(SCORES) for _ in range(k)] for _ in range(n)], dtype=np.float64)
    if draw(st.booleans()):  # old = new nudged by one ulp: near-stable rows
        old = np.nextafter(new, np.inf)
    y = np.array([draw(st.integers(-1, k - 1)) for _ in range(n)])
    right = np.array([draw(st.booleans()) for _ in range(n)])
    return new, old, y, right, draw(st.integers(2, 12))


def brute(new, old, y, right, steps, threshold=None):
    nf, pf = [], []
    for a in alphas(steps):
        s = (1.0 - a) * new + a * old
        p = (s >= threshold).astype(int) if threshold is not None else np.argmax(s, axis=1)
        ok = p == y
        nf.append(int(np.sum(right & ~ok)))
        pf.append(int(np.sum(~right & ok)))
    return nf, pf


@settings(max_examples=300, deadline=None, database=None)
@given(score_rows())
def test_argmax_kernel_equals_brute_force(case):
    """Both layouts: (classes, rows) for few classes, (rows, classes) for many."""
    new, old, y, right, steps = case
    expected = brute(new, old, y, right, steps)
    for nf, pf, a0, a1 in (
        blend_argmax_counts(new, old, y, right, steps),
        _counts_by_row(new.copy(), old.copy(), y, right, steps),
        _counts_by_class(new.T.copy(), old.T.copy(), y, right, steps),
    ):
        assert (list(nf), list(pf)) == expected
        assert list(a0) == list(np.argmax(new, axis=1))
        assert list(a1) == list(np.argmax(old, axis=1))


@settings(max_examples=150, deadline=None, database=None)
@given(score_rows(), st.sampled_from([0.0, 0.3, 0.5, np.nextafter(0.5, 0.0), 1.0]))
def test_threshold_kernel_equals_brute_force(case, threshold):
    new, old, y, right, steps = case
    new, old, y = np.abs(new[:, 0]) % 1, np.abs(old[:, 0]) % 1, np.clip(y, -1, 1)
    nf, pf, _a0, _a1 = blend_threshold_counts(new, old, y, right, steps, threshold)
    assert (list(nf), list(pf)) == brute(new, old, y, right, steps, threshold)


@pytest.mark.parametrize("k", [4, 40])
def test_kernel_leaves_the_scores_as_they_were(k):
    rng = np.random.default_rng(0)
    new, old = rng.random((50, k)), rng.random((50, k))
    n0, o0 = new.copy(), old.copy()
    y, right = rng.integers(0, k, 50), rng.random(50) < 0.5
    expected = brute(new, old, y, right, 5)
    nf, pf, _a0, _a1 = blend_argmax_counts(new, old, y, right, 5)
    assert (list(nf), list(pf)) == expected
    assert np.array_equal(new, n0) and np.array_equal(old, o0)
    for kernel, a, b in ((_counts_by_row, new.copy(), old.copy()),
                         (_counts_by_class, new.T.copy(), old.T.copy())):
        a0, b0 = a.copy(), b.copy()
        kernel(a, b, y, right, 5)
        assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_many_classes_take_the_row_layout():
    """40 classes: every point against the oracle through the audit."""
    assert BY_CLASS < 40
    old, new, names = random_pair(16, k=40, n=600, ties=True)
    result = audit_flips(old, new, score_cols="p_*", what_if=True, what_if_steps=6)
    expected, n = expected_curve(old, new, names, 6)
    assert_matches(result.what_if, expected, n)


# --------------------------------------------------------------------------- sample data


def test_sample_data_every_point():
    """The bundled digits pair with --score-cols 'prob_*' (prediction columns present)."""
    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True)
    old = pd.read_csv(OLD, dtype={"id": str})
    new = pd.read_parquet(NEW)
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    cols = [f"prob_{j}" for j in range(10)]
    expected = oracle(m["label_o"], m["pred_o"], m[[f"{c}_n" for c in cols]].to_numpy(),
                      m[[f"{c}_o" for c in cols]].to_numpy(), [str(j) for j in range(10)], 21)
    assert_matches(result.what_if, expected, len(m))
    # The sample's predictions are the argmax of its scores: alpha = 0 is the new model as
    # audited, alpha = 1 the old one.
    first, last = result.what_if.points[0], result.what_if.points[-1]
    assert first.counts == dataclass_counts(result.counts)
    assert (last.counts.negative_flips, last.counts.positive_flips) == (0, 0)
    assert last.error_rate == result.metrics.old_error_rate
    assert result.what_if.new_pred_disagreements == result.what_if.old_pred_disagreements == 0


def dataclass_counts(c: FlipCounts) -> FlipCounts:
    """``c`` without the churn cell, which the what-if does not count."""
    return FlipCounts(c.both_right, c.negative_flips, c.positive_flips, c.both_wrong)


def test_alpha_0_and_1_reproduce_the_argmax_audits():
    """Without prediction columns each model predicts its scores' argmax: alpha = 0 gives
    the audit's new-model metrics, alpha = 1 the old model's (no flips at all)."""
    old, new, _names = random_pair(11, ties=True)
    result = audit_flips(old, new, score_cols="p_*", what_if=True)
    first, last = result.what_if.points[0], result.what_if.points[-1]
    m = result.metrics
    assert first.alpha == 0.0 and last.alpha == 1.0
    assert (first.error_rate, first.negative_flip_rate, first.positive_flip_rate,
            first.backward_trust_compatibility) == (
        m.new_error_rate, m.negative_flip_rate, m.positive_flip_rate,
        m.backward_trust_compatibility)
    # ties in OLD's scores break in NEW's column order at alpha = 1, OLD's own argmax in
    # OLD's: the difference is counted, and is what alpha = 1 then flips
    assert 0 < last.counts.negative_flips + last.counts.positive_flips <= \
        result.what_if.old_pred_disagreements


def test_alpha_1_is_the_old_model_when_the_class_orders_agree():
    old, new, _names = random_pair(12, ties=True)
    new = new[["id", *[c for c in old.columns if c.startswith("p_")]]]  # OLD's order
    result = audit_flips(old, new, score_cols="p_*", what_if=True)
    last = result.what_if.points[-1]
    assert (last.counts.negative_flips, last.counts.positive_flips) == (0, 0)
    assert last.error_rate == result.metrics.old_error_rate
    assert result.what_if.old_pred_disagreements == 0


def test_ties_break_in_the_new_files_class_order():
    """Every score equal: the blend predicts the first class of NEW's columns ('b')."""
    ids = list(range(6))
    old = pd.DataFrame({"id": ids, "label": ["a", "b", "a", "b", "a", "b"],
                        "p_a": 0.5, "p_b": 0.5})
    new = pd.DataFrame({"id": ids, "p_b": 0.5, "p_a": 0.5})
    result = audit_flips(old, new, score_cols="p_*", what_if=True, what_if_steps=3)
    # OLD predicts 'a' (its first column), the blend 'b' at every alpha
    for p in result.what_if.points:
        assert (p.counts.negative_flips, p.counts.positive_flips) == (3, 3)
    assert result.what_if.classes == ("b", "a")
    assert result.what_if.old_pred_disagreements == 6


def test_disagreeing_new_prediction_is_reported():
    old, new, names = random_pair(13)
    new_order = [c for c in new.columns if c.startswith("p_")]
    argmax = argmax_names(new, new_order, [c[2:] for c in new_order])
    changed = argmax.copy()
    for i in (0, 5, 9, 11, 40, 77, 100):
        changed[i] = names[(names.index(argmax[i]) + 1) % len(names)]
    new = new.assign(pred=changed)
    result = audit_flips(old, new, score_cols="p_*", what_if=True)
    assert result.what_if.new_pred_disagreements == 7
    from graceful_audit.report import Format, render

    for fmt in (Format.TEXT, Format.MARKDOWN, Format.HTML):
        text = " ".join(render(result, fmt).split())
        assert "The NEW prediction differs from the argmax of the new scores on 7 audited " \
               "rows" in text, fmt


# --------------------------------------------------------------------------- binary


def binary_pair(seed: int, pred: bool = False, n: int = 500):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    po = np.clip(y * 0.5 + rng.random(n) * 0.6, 0, 1).round(2)  # rounded: ties with t
    pn = np.clip(y * 0.6 + rng.random(n) * 0.5, 0, 1).round(2)
    old = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "label": y, "score": po})
    new = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "score": pn})
    if pred:
        old["pred"] = (po >= 0.5).astype(int)
        new["pred"] = (pn >= 0.45).astype(int)
    return old, new.iloc[::-1].reset_index(drop=True)


@pytest.mark.parametrize(("threshold", "pred"), [(None, False), (0.3, False), (0.55, True)])
def test_binary_one_score_column(threshold, pred):
    old, new = binary_pair(20, pred=pred)
    result = audit_flips(old, new, score_cols="score", threshold=threshold, what_if=True)
    t = 0.5 if threshold is None else threshold
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    o = m["pred_o"] if pred else (m["score_o"] >= t).astype(int)
    expected = oracle(m["label"], o, m["score_n"].to_numpy(), m["score_o"].to_numpy(), None,
                      21, threshold=t)
    assert_matches(result.what_if, expected, len(m))
    assert result.what_if.threshold == t
    assert result.to_dict()["what_if"]["prediction"] == "threshold"
    if not pred:
        assert result.what_if.points[0].error_rate == result.metrics.new_error_rate
        assert result.what_if.points[-1].counts.negative_flips == 0
    else:
        assert result.what_if.new_pred_disagreements == int(
            ((m["score_n"] >= t).astype(int) != m["pred_n"]).sum())


def test_binary_two_score_columns():
    old, new = binary_pair(21)
    old = old.assign(p_0=1 - old["score"], p_1=old["score"]).drop(columns="score")
    new = new.assign(p_0=1 - new["score"], p_1=new["score"]).drop(columns="score")
    result = audit_flips(old, new, score_cols="p_*", what_if=True, what_if_steps=11)
    m = old.merge(new, on="id", suffixes=("_o", "_n"))
    o = argmax_names(m.rename(columns={"p_0_o": "p_0", "p_1_o": "p_1"}), ["p_0", "p_1"],
                     ["0", "1"])
    expected = oracle(m["label"], o, m[["p_0_n", "p_1_n"]].to_numpy(),
                      m[["p_0_o", "p_1_o"]].to_numpy(), ["0", "1"], 11)
    assert_matches(result.what_if, expected, len(m))
    assert result.what_if.threshold is None


def test_list_score_columns():
    rng = np.random.default_rng(30)
    n, k = 300, 3
    y = rng.integers(0, k, n)
    so, sn = rng.random((n, k)).round(1), rng.random((n, k)).round(1)
    old = pd.DataFrame({"id": range(n), "label": y, "s": list(so)})
    new = pd.DataFrame({"id": range(n), "s": list(sn)})
    result = audit_flips(old, new, score_cols="s", what_if=True, what_if_steps=5)
    o = [str(v) for v in np.argmax(so, axis=1)]
    expected = oracle(y, o, sn, so, ["0", "1", "2"], 5)
    assert_matches(result.what_if, expected, n)


# --------------------------------------------------------------------------- recommendation


def test_recommend_hand_worked():
    pts = [point(0.0, 100, 90, 5, 3), point(0.5, 100, 90, 1, 2), point(1.0, 100, 90, 0, 0)]
    rec = recommend(pts, 0.01)
    # errors: alpha 0: 10 - 3 + 5 = 12; alpha 0.5: 10 - 2 + 1 = 9
    assert (rec.alpha, rec.negative_flips, rec.negative_flip_rate) == (0.5, 1, 0.01)
    assert rec.error_rate == 0.09 and rec.error_rate_cost == -0.03
    assert recommend(pts, 0.05).alpha == 0.0  # the new scores already meet it
    assert recommend(pts, 0.0).alpha == 1.0
    assert recommend(pts[:2], 0.0) is None
    assert recommend(pts, None) is None


def test_recommendation_follows_the_max_nfr_gate():
    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                         gates={"max-nfr": 0.005})
    rec = result.what_if.recommended
    first_ok = next(p for p in result.what_if.points if p.negative_flip_rate <= 0.005)
    assert rec.alpha == first_ok.alpha == 0.35
    assert rec.error_rate_cost == (first_ok.counts.new_errors
                                   - result.what_if.points[0].counts.new_errors) / 719
    assert not result.passed  # the gates still judge the new model as given
    assert audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                       gates={"min-btc": 0.5}).what_if.recommended is None


def test_saved_result_renders_and_regates(tmp_path):
    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                         what_if_steps=11, gates={"max-nfr": 0.005})
    path = tmp_path / "r.json"
    from graceful_audit.report import Format, render

    path.write_text(render(result, Format.JSON))
    again = load_result(str(path))
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())
    r = runner.invoke(app, ["render", str(path), "--max-nfr", "0.002", "-f", "json"])
    assert r.exit_code == 1, r.output
    rec = json.loads(r.stdout)["what_if"]["recommended"]
    assert rec["max_nfr"] == 0.002 and rec["alpha"] == 0.6
    r = runner.invoke(app, ["render", str(path), "--min-btc", "0.5", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["what_if"]["recommended"] is None
    for fmt in ("text", "markdown", "html", "junit"):
        assert runner.invoke(app, ["render", str(path), "-f", fmt]).exit_code == 1


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda w: w.update(steps=12), "what_if.points holds 11 points but what_if.steps is 12"),
    (lambda w: w["points"][3].update(alpha=0.31), "what_if.points[3].alpha must be 0.3"),
    (lambda w: w["points"][2].update(negative_flips=-1), "what_if.points[2].negative_flips"),
    (lambda w: w["points"][2].update(negative_flips=10**6), "inconsistent"),
    (lambda w: w.update(method="mix"), "what_if.method must be one of 'blend'"),
    (lambda w: w.update(points="x"), "what_if.points must be a list"),
    (lambda w: w.update(recommended={"alpha": 2}), "what_if.recommended.alpha"),
    (lambda w: w["points"][0].update(error_rate=float("nan")), "what_if.points[0].error_rate"),
    (lambda w: w.update(steps=1, points=w["points"][:1]), "what_if.steps must be from 2 to"),
])
def test_render_refuses_an_edited_what_if(tmp_path, edit, needle):
    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                         what_if_steps=11, gates={"max-nfr": 0.005})
    doc = result.to_dict()
    edit(doc["what_if"])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="r.json") as info:
        load_result(str(path))
    assert needle in str(info.value)


# --------------------------------------------------------------------------- usage


def test_steps_validation():
    with pytest.raises(UsageError, match="given without --what-if"):
        audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if_steps=5)
    for bad in (1, 0, -3, MAX_STEPS + 1, 2.5, True, "5"):
        with pytest.raises(UsageError, match="must be an integer from 2 to 1001"):
            audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                        what_if_steps=bad)
    with pytest.raises(UsageError, match="no --score-cols was given"):
        audit_flips(str(OLD), str(NEW), what_if=True)
    curve = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                        what_if_steps=MAX_STEPS).what_if
    assert len(curve.points) == MAX_STEPS and curve.points[1].alpha == 0.001


def test_without_what_if_the_json_has_no_what_if():
    doc = audit_flips(str(OLD), str(NEW), score_cols="prob_*").to_dict()
    assert "what_if" not in doc


def test_what_if_never_changes_the_audit():
    plain = audit_flips(str(OLD), str(NEW), score_cols="prob_*", gates={"max-nfr": 0.01})
    mixed = audit_flips(str(OLD), str(NEW), score_cols="prob_*", gates={"max-nfr": 0.01},
                        what_if=True).to_dict()
    assert mixed.pop("what_if")
    assert json.dumps(mixed) == json.dumps(plain.to_dict())


def test_config_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gaudit.toml").write_text("[flips]\nwhat-if = true\nwhat-if-steps = 5\n"
                                          "score-cols = 'prob_*'\n")
    r = runner.invoke(app, ["flips", str(OLD), str(NEW), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["what_if"]["points"]) == 5
    r = runner.invoke(app, ["flips", str(OLD), str(NEW), "-f", "json", "--what-if-steps", "3"])
    assert len(json.loads(r.stdout)["what_if"]["points"]) == 3  # the flag wins
    (tmp_path / "gaudit.toml").write_text("[flips]\nwhat-if-steps = 5\n")
    r = runner.invoke(app, ["flips", str(OLD), str(NEW), "--score-cols", "prob_*"])
    assert r.exit_code == 2
    assert r.stderr.startswith("gaudit: error: gaudit.toml: what-if-steps 5 is given without "
                               "--what-if"), r.stderr


def test_reports_show_the_line_the_table_and_the_curve():
    from graceful_audit.report import Format, render

    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                         gates={"max-nfr": 0.005})
    line = ("What-if: blending 35% of the old scores (alpha = 0.35) brings the negative flip "
            "rate to 0.42% (3 flips), meeting --max-nfr 0.005 for +0.42 pp error.")
    text = render(result, Format.TEXT)
    assert line in " ".join(text.split())
    assert "recommended" in text and "12 of 21 points" in text
    md = render(result, Format.MARKDOWN)
    assert f"**{line}**" in md
    assert "| 0.35 | 3.62% | +0.42 pp | 3 | 0.42% | 5.84% | 99.54% | recommended |" in md
    html = render(result, Format.HTML)
    assert 'aria-label="negative flip rate against error rate of the blended scores' in html
    assert "recommended α = 0.35" in html and "gate max-nfr 0.005" in html
    junit = render(result, Format.JUNIT)
    assert "What-if" not in junit  # the what-if informs; the gates are the test cases


@pytest.mark.parametrize(("gates", "sentence"), [
    ({}, "What-if: blending 95% of the old scores (alpha = 0.95) would remove all negative "
         "flips for +5.70 pp error; set --max-nfr for a recommendation."),
    ({"max-nfr": 0.02}, "What-if: the new scores alone (alpha = 0) already meet --max-nfr "
                        "0.02 (negative flip rate 1.11%); no blending needed."),
    ({"max-nfr": 0.0}, "What-if: blending 95% of the old scores (alpha = 0.95) removes all "
                       "negative flips for +5.70 pp error (the smallest alpha meeting "
                       "--max-nfr 0)."),
])
def test_sentence_variants(gates, sentence):
    from graceful_audit.report.whatif import sentence as say

    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True, gates=gates)
    assert say(result) == sentence


def test_no_blend_meets_the_gate():
    from graceful_audit.report.whatif import sentence as say

    old, new, _names = random_pair(14, old_pred=True)  # OLD predicts at random
    result = audit_flips(old, new, score_cols="p_*", what_if=True, gates={"max-nfr": 0.0})
    assert result.what_if.recommended is None
    best = min(p.negative_flip_rate for p in result.what_if.points)
    assert best > 0
    assert say(result).startswith("What-if: no blend of the scores meets --max-nfr 0; the "
                                  "lowest negative flip rate is ")


def test_rates_are_finite_and_json_strict():
    result = audit_flips(str(OLD), str(NEW), score_cols="prob_*", what_if=True,
                         gates={"max-nfr": 0.005})
    text = json.dumps(result.to_dict(), allow_nan=False)
    for p in json.loads(text)["what_if"]["points"]:
        assert all(v is None or math.isfinite(v) for v in p.values())


@pytest.mark.parametrize("kernel", ["numpy", "sql"])
def test_missing_score_is_named_by_either_kernel(kernel, monkeypatch):
    import graceful_audit.whatif as whatif

    if kernel == "sql":
        monkeypatch.setattr(DuckDBEngine, "record_batches", lambda self, sql, rows: None)
    monkeypatch.setattr(whatif, "BATCH_VALUES", 64)  # batches of 1,024 rows
    old, new, _names = random_pair(15, n=3000, old_pred=True, new_pred=True)
    new = new.sort_values("id").reset_index(drop=True)
    new.loc[[2500, 2900], "p_c1"] = [np.nan, np.inf]  # likely in a later Arrow batch
    with pytest.raises(InputError) as info:
        audit_flips(old, new, score_cols="p_*", what_if=True)
    ids = new.loc[[2500, 2900], "id"].tolist()
    assert str(info.value).startswith(
        "--what-if: 2 audited row(s) have a missing score (null, NaN, infinite, or a fill "
        f"value of magnitude 1e30 or more) in NEW file <DataFrame> (--score-cols 'p_*'): ids "
        f"{ids[0]!r}, {ids[1]!r}.")
