"""Evaluation outcomes (``gaudit flips --outcome-col``), JSON Lines inputs, dotted paths and
composite ids, checked against independent computations: pandas for the counts,
statsmodels for the Wilson intervals and McNemar's test, scipy for the paired t interval
and Wilcoxon's signed-rank test."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from graceful_audit import audit_flips
from graceful_audit.cli import app
from graceful_audit.errors import InputError, UsageError
from graceful_audit.outcomes import split_id
from graceful_audit.rerender import load_result

runner = CliRunner()


def graded_frames(n: int = 300, seed: int = 0, ties: bool = True) -> tuple[pd.DataFrame, ...]:
    """Scores in [0, 1]; rounded to 2 decimals (ties and zero differences) when ``ties``."""
    rng = np.random.default_rng(seed)
    old_s = rng.random(n)
    new_s = np.clip(old_s + rng.normal(-0.02, 0.2, n), 0, 1)
    if ties:
        old_s, new_s = old_s.round(2), new_s.round(2)
    ids = np.arange(n)
    task = rng.choice(["arc_easy", "gsm8k", "hellaswag"], n)
    old = pd.DataFrame({"id": ids, "task": task, "score": old_s})
    new = pd.DataFrame({"id": ids[::-1], "score": new_s[::-1]})  # joined by id, not position
    return old, new


def _pandas_counts(old_pass: pd.Series, new_pass: pd.Series) -> dict[str, int]:
    t = pd.crosstab(old_pass, new_pass).reindex(index=[False, True], columns=[False, True],
                                                fill_value=0)
    return {"both_right": int(t.loc[True, True]), "negative_flips": int(t.loc[True, False]),
            "positive_flips": int(t.loc[False, True]), "both_wrong": int(t.loc[False, False])}


# --------------------------------------------------------------------------- pass/fail


@pytest.mark.parametrize("kind", ["bool", "int01", "float01", "text"])
def test_pass_fail_counts_intervals_and_mcnemar_match_oracles(kind):
    old, new = graded_frames(200, seed=3)
    merged = old.merge(new, on="id", suffixes=("_old", "_new"))
    cast = {"bool": lambda s: s >= 0.5, "int01": lambda s: (s >= 0.5).astype(int),
            "float01": lambda s: (s >= 0.5).astype(float),
            "text": lambda s: (s >= 0.5).map({True: "True", False: "false"})}[kind]
    old = old.assign(ok=cast(old.score))
    new = new.assign(ok=cast(new.score))
    r = audit_flips(old, new, outcome_col="ok", confidence=0.9)
    d = r.to_dict()
    assert d["task"] == "outcome"
    expected = _pandas_counts(merged.score_old >= 0.5, merged.score_new >= 0.5)
    assert {k: d["counts"][k] for k in expected} == expected
    n = len(merged)
    assert d["metrics"]["churn_rate"] is None and "churn_rate" not in d["intervals"]
    assert d["metrics"]["old_error_rate"] == pytest.approx((merged.score_old < 0.5).mean())
    lo, hi = proportion_confint(expected["negative_flips"], n, alpha=0.1, method="wilson")
    assert d["intervals"]["negative_flip_rate"] == pytest.approx([lo, hi], abs=1e-12)
    b, c = expected["negative_flips"], expected["positive_flips"]
    ref = sm_mcnemar([[0, b], [c, 0]], exact=b + c < 25, correction=True)
    assert d["tests"]["mcnemar"]["p_value"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert d["per_class"] == [] and d["flip_matrix"] == []
    assert "scores" not in d and "wilcoxon" not in d["tests"]
    worst = [e["id"] for e in d["top_negative_flips"]]
    flips = merged[(merged.score_old >= 0.5) & (merged.score_new < 0.5)]
    assert worst == [str(i) for i in sorted(flips.id)[:10]]  # no scores: by id
    assert all(e["old_score"] is None for e in d["top_negative_flips"])


def test_slices_by_task_match_pandas():
    old, new = graded_frames(240, seed=5)
    r = audit_flips(old, new, outcome_col="score", pass_threshold=0.5, slice_by=["task"])
    merged = old.merge(new, on="id", suffixes=("_old", "_new"))
    for row in r.to_dict()["slices"]["task"]:
        part = merged[merged.task == row["value"]]
        expected = _pandas_counts(part.score_old >= 0.5, part.score_new >= 0.5)
        assert {k: row["counts"][k] for k in expected} == expected


# --------------------------------------------------------------------------- graded


@pytest.mark.parametrize(("n", "ties"), [(300, True), (300, False), (40, False), (30, True),
                                         (12, True)])
def test_graded_scores_match_scipy(n, ties):
    old, new = graded_frames(n, seed=n, ties=ties)
    r = audit_flips(old, new, outcome_col="score", pass_threshold=0.5, confidence=0.9)
    d = r.to_dict()
    merged = old.merge(new, on="id", suffixes=("_old", "_new"))
    o, nw = merged.score_old.to_numpy(), merged.score_new.to_numpy()
    sc = d["scores"]
    assert sc["old_mean"] == pytest.approx(o.mean(), rel=1e-12)
    assert sc["new_mean"] == pytest.approx(nw.mean(), rel=1e-12)
    assert sc["mean_delta"] == pytest.approx((nw - o).mean(), rel=1e-9, abs=1e-15)
    ci = stats.ttest_rel(nw, o).confidence_interval(confidence_level=0.9)
    assert d["intervals"]["mean_delta"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    assert d["intervals"]["mean_delta_method"] == "paired t"
    ref = stats.wilcoxon(nw - o)  # defaults: zero_method="wilcox", no correction, auto
    w = d["tests"]["wilcoxon"]
    assert w["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert w["statistic"] == pytest.approx(ref.statistic)
    assert w["zero_differences"] == int((nw == o).sum())
    # pass when score >= T: counts as pandas sees them
    expected = _pandas_counts(merged.score_old >= 0.5, merged.score_new >= 0.5)
    assert {k: d["counts"][k] for k in expected} == expected


def test_threshold_is_inclusive():
    old = pd.DataFrame({"id": [1, 2, 3], "s": [0.5, 0.7, 0.1]})
    new = pd.DataFrame({"id": [1, 2, 3], "s": [0.4999, 0.5, 0.5]})
    d = audit_flips(old, new, outcome_col="s", pass_threshold=0.5).to_dict()
    assert d["counts"]["negative_flips"] == 1 and d["counts"]["both_right"] == 1
    assert d["counts"]["positive_flips"] == 1


def test_worst_flips_largest_score_drop_first_ties_by_id():
    old = pd.DataFrame({"id": [5, 4, 3, 2, 1, 9], "s": [0.9, 0.8, 0.9, 0.6, 0.9, 0.2]})
    new = pd.DataFrame({"id": [1, 2, 3, 4, 5, 9], "s": [0.1, 0.0, 0.1, 0.0, 0.1, 0.9]})
    d = audit_flips(old, new, outcome_col="s", pass_threshold=0.5, top=4).to_dict()
    got = [(e["id"], e["old_score"], e["new_score"]) for e in d["top_negative_flips"]]
    # drops: 1: -0.8, 3: -0.8, 5: -0.8, 4: -0.8, 2: -0.6 -> equal drops by id
    frame = old.merge(new, on="id", suffixes=("_o", "_n"))
    frame = frame[(frame.s_o >= 0.5) & (frame.s_n < 0.5)].assign(d=lambda f: f.s_n - f.s_o)
    frame = frame.sort_values(["d", "id"], kind="stable").head(4)
    assert [g[0] for g in got] == [str(i) for i in frame.id]


def test_min_score_delta_gate():
    old, new = graded_frames(100, seed=1)
    r = audit_flips(old, new, outcome_col="score", pass_threshold=0.5,
                    gates={"min-score-delta": -0.5})
    assert r.passed and r.gates[0].metric == "scores.mean_delta"
    r = audit_flips(old, new, outcome_col="score", pass_threshold=0.5,
                    gates={"min-score-delta": 0.5})
    assert not r.passed and r.gates[0].value == pytest.approx(r.scores.mean_delta)


# --------------------------------------------------------------------------- usage


def _pair():
    return (pd.DataFrame({"id": [1, 2, 3], "ok": [True, False, True], "s": [0.2, 0.9, 0.5]}),
            pd.DataFrame({"id": [1, 2, 3], "ok": [False, False, True], "s": [0.3, 0.1, 0.7]}))


@pytest.mark.parametrize(("kwargs", "error", "needle"), [
    ({"outcome_col": "s"}, UsageError, "numbers other than 0 and 1 in 3 row(s), e.g. 0.2"),
    ({"outcome_col": "ok", "pass_threshold": 0.5}, UsageError, "holds booleans"),
    ({"pass_threshold": 0.5}, UsageError, "applies only to --outcome-col"),
    ({"outcome_col": "ok", "label_col": "x"}, UsageError, "--label-col cannot be combined"),
    ({"outcome_col": "ok", "task": "regression"}, UsageError, "--task regression"),
    ({"outcome_col": "ok", "gates": {"min-score-delta": 0.0}}, UsageError,
     "needs graded scores"),
    ({"outcome_col": "ok", "gates": {"max-churn": 0.1}}, UsageError, "an outcome audit"),
    ({"outcome_col": "s", "pass_threshold": math.nan}, UsageError, "finite"),
    ({"outcome_col": "nope"}, InputError, "no column 'nope'"),
    ({"outcome_col": "id"}, UsageError, "both the id"),
    ({"outcome_col": "ok", "id_col": ["id", "id"]}, UsageError, "names a column twice"),
])
def test_outcome_usage_errors(kwargs, error, needle):
    with pytest.raises(error, match=None) as exc:
        audit_flips(*_pair(), **kwargs)
    assert needle in str(exc.value)


def test_null_outcome_is_an_error_with_ids():
    old = pd.DataFrame({"id": [1, 2, 3], "s": [0.2, float("nan"), 0.5]})
    new = pd.DataFrame({"id": [1, 2, 3], "s": [0.3, 0.1, None]})
    with pytest.raises(InputError, match=r"missing \(null, NaN or infinite\) outcome in OLD "
                                         r"file <DataFrame>.*ids 2"):
        audit_flips(old, new, outcome_col="s", pass_threshold=0.5)


def test_text_outcome_other_than_true_false_is_an_error():
    old = pd.DataFrame({"id": [1, 2], "ok": ["yes", "true"]})
    with pytest.raises(InputError, match="text other than true/false/1/0 in 1 row.*'yes'"):
        audit_flips(old, old, outcome_col="ok")


# --------------------------------------------------------------------------- JSON Lines


def _write_jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if compress:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _harness_rows(scores: np.ndarray, n_per_task: int = 20) -> list[dict]:
    rows, k = [], 0
    for task in ("arc_easy", "gsm8k", "hellaswag"):
        for doc_id in range(n_per_task):
            s = float(scores[k])
            rows.append({"task": task, "doc_id": doc_id, "exact_match": int(s >= 0.5),
                         "judge": {"score": s, "model": "j"}})
            k += 1
    return rows


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz"])
def test_jsonl_nested_fields_and_composite_ids(tmp_path, suffix):
    rng = np.random.default_rng(7)
    o_s, n_s = rng.random(60).round(2), rng.random(60).round(2)
    gz = suffix.endswith(".gz")
    old = _write_jsonl(tmp_path / f"old{suffix}", _harness_rows(o_s), gz)
    new = _write_jsonl(tmp_path / f"new{suffix}", _harness_rows(n_s)[::-1], gz)
    r = audit_flips(str(old), str(new), id_col=["task", "doc_id"], outcome_col="judge.score",
                    pass_threshold=0.5, slice_by=["task"], top=100)
    d = r.to_dict()
    assert d["inputs"]["old"]["rows"] == 60 and d["inputs"]["audited"] == 60
    expected = _pandas_counts(pd.Series(o_s >= 0.5), pd.Series(n_s >= 0.5))
    assert {k: d["counts"][k] for k in expected} == expected
    assert d["scores"]["mean_delta"] == pytest.approx((n_s - o_s).mean())
    assert d["options"]["id_cols"] == ["task", "doc_id"]
    first = d["top_negative_flips"][0]
    assert first["id"] == "/".join(first["id_parts"]) and len(first["id_parts"]) == 2
    assert first["id_parts"][0] in ("arc_easy", "gsm8k", "hellaswag")
    assert {row["value"] for row in d["slices"]["task"]} == {"arc_easy", "gsm8k", "hellaswag"}
    # the same audit from CSV gives the same numbers
    frames = [pd.DataFrame(_harness_rows(s)).assign(score=lambda f: f.judge.str["score"])
              .drop(columns="judge") for s in (o_s, n_s)]
    frames[0].to_csv(tmp_path / "old.csv", index=False)
    frames[1].to_csv(tmp_path / "new.csv", index=False)
    c = audit_flips(str(tmp_path / "old.csv"), str(tmp_path / "new.csv"),
                    id_col=["task", "doc_id"], outcome_col="score", pass_threshold=0.5,
                    slice_by=["task"], top=100).to_dict()
    assert c["counts"] == d["counts"] and c["slices"] == d["slices"]
    assert [e["id"] for e in c["top_negative_flips"]] == [e["id"] for e in
                                                          d["top_negative_flips"]]


def test_doc_id_alone_is_a_duplicate_suggesting_the_task_column(tmp_path):
    rows = _harness_rows(np.linspace(0, 1, 60))
    old = _write_jsonl(tmp_path / "old.jsonl", rows)
    with pytest.raises(InputError, match=r"occur more than once in column 'doc_id'.*make the "
                                         r"id composite with --id-col task --id-col doc_id"):
        audit_flips(str(old), str(old), id_col="doc_id", outcome_col="exact_match")


@pytest.mark.parametrize(("content", "line", "why"), [
    ('{"id": 1, "ok": true}\n{"id": 2, "ok": tru}\n', 2, "not valid JSON"),
    ('{"id": 1, "ok": true}\n\n[1, 2]\n', 3, "a JSON list, not an object"),
    ('{"id": 1, "ok": true}\n{"id": 2, "ok": true\n', 2, "not valid JSON"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_jsonl_line_is_named(tmp_path, content, line, why, compress):
    path = tmp_path / ("bad.jsonl.gz" if compress else "bad.jsonl")
    path.write_bytes(gzip.compress(content.encode()) if compress else content.encode())
    good = _write_jsonl(tmp_path / "good.jsonl", [{"id": 1, "ok": True}])
    with pytest.raises(InputError) as exc:
        audit_flips(str(good), str(path), outcome_col="ok")
    assert f"{path}, line {line}: is {why}" in str(exc.value)


def test_dotted_path_errors_and_literal_dotted_key(tmp_path):
    rows = [{"id": 1, "judge": {"score": 0.9}, "a.b": 1}, {"id": 2, "judge": {"score": 0.1},
                                                          "a.b": 0}]
    path = _write_jsonl(tmp_path / "x.jsonl", rows)
    with pytest.raises(InputError, match=r"the object 'judge' has no field 'scor'\. Its "
                                         r"fields: score"):
        audit_flips(str(path), str(path), outcome_col="judge.scor", pass_threshold=0.5)
    with pytest.raises(InputError, match=r"Column 'id' is BIGINT, not an object"):
        audit_flips(str(path), str(path), outcome_col="id.x")
    d = audit_flips(str(path), str(path), outcome_col="a.b").to_dict()  # the literal key
    assert d["counts"]["both_right"] == 1 and d["counts"]["both_wrong"] == 1


# --------------------------------------------------------------------------- composite ids


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab/\\x", max_size=5), min_size=2, max_size=3))
def test_split_id_inverts_the_composite_escape(parts):
    escaped = "/".join(p.replace("\\", "\\\\").replace("/", "\\/") for p in parts)
    assert split_id(escaped) == tuple(parts)


def test_composite_id_parts_with_separators_survive_the_engine():
    old = pd.DataFrame({"t": ["a/b", "a", "c\\"], "i": [1, 2, 3], "ok": [1, 1, 1]})
    new = pd.DataFrame({"t": ["a/b", "a", "c\\"], "i": [1, 2, 3], "ok": [0, 0, 1]})
    d = audit_flips(old, new, id_col=["t", "i"], outcome_col="ok").to_dict()
    parts = [tuple(e["id_parts"]) for e in d["top_negative_flips"]]
    assert sorted(parts) == [("a", "2"), ("a/b", "1")]


def test_composite_ids_in_a_classification_audit_keep_its_json_shape():
    old = pd.DataFrame({"t": ["x", "y", "x"], "i": [1, 1, 2], "label": [0, 1, 1],
                        "pred": [0, 1, 1]})
    new = old.assign(pred=[1, 1, 1])
    d = audit_flips(old, new, id_col=["t", "i"]).to_dict()
    assert d["task"] == "classification"
    assert d["top_negative_flips"] == [{"id": "x/1", "label": "0", "old_pred": "0",
                                        "new_pred": "1", "old_confidence": None,
                                        "new_confidence": None, "id_parts": ["x", "1"]}]


# --------------------------------------------------------------------------- CLI, render


def test_cli_outcome_gate_config_and_render(tmp_path):
    rng = np.random.default_rng(2)
    old = _write_jsonl(tmp_path / "old.jsonl", _harness_rows(rng.random(60)))
    new = _write_jsonl(tmp_path / "new.jsonl", _harness_rows(rng.random(60) * 0.6))
    cfg = tmp_path / "gaudit.toml"
    cfg.write_text('[flips]\nid-col = ["task", "doc_id"]\noutcome-col = "judge.score"\n'
                   'pass-threshold = 0.5\nmin-score-delta = -0.01\nslice-by = ["task"]\n')
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["flips", str(old), str(new), "--config", str(cfg),
                              "-f", "json", "-o", str(out)])
    assert res.exit_code == 1, res.output
    d = json.loads(out.read_text())
    assert d["gates"][0]["name"] == "min-score-delta" and d["gates"][0]["status"] == "fail"
    assert d["gates"][0]["source"].endswith("gaudit.toml")
    again = load_result(str(out))
    assert again.to_dict() == d
    res = runner.invoke(app, ["render", str(out), "-f", "markdown"])
    assert res.exit_code == 1 and "Passed before, fail now" in res.output
    assert "fail rate" in res.output and "error rate" not in res.output


def test_cli_numbers_without_threshold_exit_2(tmp_path):
    path = _write_jsonl(tmp_path / "x.jsonl", [{"id": 1, "s": 0.7}, {"id": 2, "s": 0.2}])
    res = runner.invoke(app, ["flips", str(path), str(path), "--outcome-col", "s"])
    assert res.exit_code == 2
    assert "Give --pass-threshold T" in res.output


def test_dotted_paths_for_ids_and_slices(tmp_path):
    rows = [{"meta": {"task": t, "doc": i}, "judge": {"model": f"j{i % 2}"}, "ok": (i + k) % 2}
            for k, t in enumerate(("a", "b")) for i in range(4)]
    old = _write_jsonl(tmp_path / "old.jsonl", rows)
    new = _write_jsonl(tmp_path / "new.jsonl", [{**r, "ok": 1 - r["ok"]} for r in rows])
    d = audit_flips(str(old), str(new), id_col=["meta.task", "meta.doc"], outcome_col="ok",
                    slice_by=["judge.model"]).to_dict()
    frame = pd.DataFrame(rows)
    assert d["counts"]["negative_flips"] == int(frame.ok.sum())
    assert {r["value"]: r["negative_flips"] for r in d["slices"]["judge.model"]} == {
        m: int(frame.ok[frame.judge.str["model"] == m].sum()) for m in ("j0", "j1")}
    assert sorted(e["id"] for e in d["top_negative_flips"]) == sorted(
        f"{r['meta']['task']}/{r['meta']['doc']}" for r in rows if r["ok"])
