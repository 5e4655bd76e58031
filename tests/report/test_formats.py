"""Every output format renders a result: no member of ``Format`` is half-wired."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from graceful_audit.report import Format, render


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders(fmt, golden_result):
    text = render(golden_result, fmt)
    assert isinstance(text, str) and text.strip()
    if fmt is Format.JSON:
        assert json.loads(text)["metrics"]["negative_flips"] == 4
    elif fmt is Format.JUNIT:
        assert ET.fromstring(text.encode()).tag == "testsuites"
    elif fmt is Format.HTML:
        assert text.startswith("<!DOCTYPE html>")
    else:
        assert "4 negative flips" in text


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_hostile_ids(fmt, hostile_result):
    text = render(hostile_result, fmt)
    if fmt in (Format.MARKDOWN, Format.HTML, Format.JUNIT):
        assert "<script" not in text.lower()


@pytest.fixture(scope="module")
def regression_result():
    import pandas as pd

    from graceful_audit import audit_flips

    y = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    old = pd.DataFrame({"id": list("abcdef"), "label": y,
                        "pred": [10.5, 21.0, 35.0, 40.2, 58.0, 60.1]})
    new = old.assign(pred=[13.5, 20.2, 30.5, 47.0, 50.5, 60.3])
    return audit_flips(old, new, atol=2.0, gates={"max-nfr": 0.1, "max-mae-delta": 0.0})


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_regression(fmt, regression_result):
    assert regression_result.task == "regression"
    text = render(regression_result, fmt)
    assert text.strip()
    if fmt in (Format.MARKDOWN, Format.HTML):
        assert "MAE delta" in text and "old error" in text and "Wilcoxon" in text
    if fmt is Format.JUNIT:
        props = {p.get("name") for p in ET.fromstring(text.encode()).iter("property")}
        assert {"mae_delta", "rmse_delta", "wilcoxon_p_value"} <= props


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_compat(fmt, compat_result):
    text = render(compat_result, fmt)
    assert isinstance(text, str) and text.strip()
    if fmt is Format.JSON:
        doc = json.loads(text)
        assert doc["kind"] == "compat" and doc["retrieval_negative_flips"] == 6
    elif fmt is Format.JUNIT:
        root = ET.fromstring(text.encode())
        assert root.find("testsuite").get("name") == "gaudit compat"
    elif fmt is Format.HTML:
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    if fmt is not Format.JSON:
        flat = " ".join(text.split())  # the terminal report wraps its lines
        assert "NOT backward compatible" in flat
        assert "but the margin is not significant at the 5% level" in flat
        assert "6 of 20 queries break" in flat


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_compat_hostile_ids(fmt, hostile_compat_result):
    text = render(hostile_compat_result, fmt)
    if fmt in (Format.MARKDOWN, Format.HTML, Format.JUNIT):
        assert "<script" not in text.lower()


@pytest.mark.parametrize("fmt", list(Format))
def test_every_format_renders_dimension_mismatch(fmt, mismatch_result):
    text = render(mismatch_result, fmt)
    assert "dimension" in text
    if fmt is not Format.JSON:
        assert "dimension 4 vs 6: not backward compatible" in text
