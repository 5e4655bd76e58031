"""Outcome audits (``--outcome-col``) in every report format: golden files, wording
(passes and failures, not labels and errors), escaping of hostile composite ids."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
import pytest

from graceful_audit import audit_flips
from graceful_audit.report import Format, render

from .conftest import HOSTILE_IDS

TASKS = ("arc_easy", "gsm8k", "hellaswag")


def outcome_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """36 cases of three tasks; graded scores, some negative and positive flips at 0.5."""
    old_rows, new_rows = [], []
    for i in range(36):
        task, doc = TASKS[i % 3], i // 3
        old = round(0.30 + (i * 7 % 13) / 20, 2)
        new = old
        if i in (1, 4, 9, 20, 33):
            new = round(old - 0.45, 2) if old >= 0.5 else 0.05  # passed, fails now
        if i in (2, 15, 27):
            new = 0.95
        old_rows.append({"task": task, "doc_id": doc, "score": old})
        new_rows.append({"task": task, "doc_id": doc, "score": new})
    return pd.DataFrame(old_rows), pd.DataFrame(new_rows[::-1])


@pytest.fixture(scope="module")
def outcome_result() -> Any:
    old, new = outcome_frames()
    return audit_flips(old, new, id_col=["task", "doc_id"], outcome_col="score",
                       pass_threshold=0.5, slice_by=["task"],
                       gates={"max-nfr": 0.1, "min-score-delta": -0.01})


@pytest.fixture(scope="module")
def hostile_outcome_result() -> Any:
    tasks = [h[:40] for h in HOSTILE_IDS]
    old = pd.DataFrame({"task": tasks * 2, "doc_id": [0] * len(tasks) + [1] * len(tasks),
                        "ok": [True] * (2 * len(tasks))})
    new = old.assign(ok=[False] * len(tasks) + [True] * len(tasks))
    return audit_flips(old, new, id_col=["task", "doc_id"], outcome_col="ok",
                       slice_by=["task"], top=20, gates={"max-nfr": 0.05})


@pytest.mark.parametrize(("fmt", "name"), [(Format.JSON, "outcome.json"),
                                           (Format.MARKDOWN, "outcome.md"),
                                           (Format.HTML, "outcome.html")])
def test_golden(fmt, name, outcome_result, check_golden):
    check_golden(name, render(outcome_result, fmt))


def test_json_fields(outcome_result):
    d = json.loads(render(outcome_result, Format.JSON))
    old, new = outcome_frames()
    m = old.merge(new, on=["task", "doc_id"], suffixes=("_o", "_n"))
    assert d["task"] == "outcome"
    assert d["counts"]["negative_flips"] == int(((m.score_o >= .5) & (m.score_n < .5)).sum())
    assert d["counts"]["positive_flips"] == int(((m.score_o < .5) & (m.score_n >= .5)).sum())
    assert set(d["scores"]) == {"n", "old_mean", "new_mean", "mean_delta", "var_delta",
                                "pass_threshold"}
    assert d["intervals"]["mean_delta_method"] == "paired t"
    # 36 differences, most of them zero: scipy's "auto" takes the normal approximation
    assert d["tests"]["wilcoxon"]["method"] == "asymptotic"
    first = d["top_negative_flips"][0]
    assert set(first) == {"id", "id_parts", "old_score", "new_score", "slices"}
    assert first["id"] == "/".join(first["id_parts"])
    drops = [e["new_score"] - e["old_score"] for e in d["top_negative_flips"]]
    assert drops == sorted(drops)


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_speaks_of_passes_and_failures(fmt, outcome_result):
    text = render(outcome_result, fmt)
    if fmt is Format.JSON:
        return
    if fmt is Format.JUNIT:
        root = ET.fromstring(text.encode())
        props = {p.get("name"): p.get("value") for p in root.iter("property")}
        assert props["task"] == "outcome" and "score_mean_delta" in props
        return
    assert "fail rate" in text
    assert "error rate" not in text and "without label" not in text
    assert "Labels from" not in text and "old pred" not in text
    assert "arc_easy/" in text or "arc\\_easy/" in text


@pytest.mark.parametrize("fmt", [Format.MARKDOWN, Format.HTML, Format.JUNIT])
def test_hostile_composite_ids_are_escaped(fmt, hostile_outcome_result):
    text = render(hostile_outcome_result, fmt)
    assert "<script>alert(1)</script>" not in text
    if fmt is Format.MARKDOWN:
        assert "[link](javascript:" not in text and "\\[link\\](javascript:" in text


def test_render_round_trip(outcome_result, tmp_path):
    from graceful_audit.rerender import load_result

    path = tmp_path / "r.json"
    path.write_text(render(outcome_result, Format.JSON))
    again = load_result(str(path))
    for fmt in Format:
        assert render(again, fmt) == render(outcome_result, fmt)
