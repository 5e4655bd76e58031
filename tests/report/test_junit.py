"""JUnit XML report: parsed with ElementTree, checked against the common JUnit schema."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest

from graceful_audit import audit_flips
from graceful_audit.report.junit import render, xml_text

# The constraints of Jenkins xunit's junit-10.xsd (the schema Jenkins, GitLab and most
# test-report readers accept) for the elements we write: required and allowed attributes,
# allowed children. Checked by hand so the test needs no XML-schema library.
SCHEMA = {
    "testsuites": ({"name", "time", "tests", "failures", "errors"}, set(), {"testsuite"}),
    "testsuite": (
        {"name", "tests", "failures", "errors", "group", "time", "skipped", "timestamp",
         "hostname", "id", "package", "file", "log", "url"},
        {"name", "tests", "failures", "errors"},
        {"testsuite", "properties", "testcase", "system-out", "system-err"},
    ),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": ({"name", "time", "classname", "group"}, {"name"},
                 {"skipped", "error", "failure", "system-out", "system-err"}),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def validate(el: ET.Element) -> None:
    """Raise AssertionError where ``el`` breaks the junit-10.xsd constraints above."""
    assert el.tag in SCHEMA, el.tag
    allowed, required, children = SCHEMA[el.tag]
    assert set(el.attrib) <= allowed, (el.tag, set(el.attrib) - allowed)
    assert required <= set(el.attrib), (el.tag, required - set(el.attrib))
    if "time" in el.attrib and el.tag in ("testsuite", "testsuites"):
        assert SUREFIRE_TIME.fullmatch(el.attrib["time"])
    for child in el:
        assert child.tag in children, (el.tag, child.tag)
        validate(child)


def parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites"
    validate(root)
    return root


def suite_of(root: ET.Element) -> ET.Element:
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def test_one_breached_one_held(golden_result):
    suite = suite_of(root := parse(render(golden_result)))
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "gate max-nfr",  # no threshold: a CI test history survives a threshold change
        "gate min-btc",
    ]
    assert {c.get("classname") for c in cases} == {"gaudit.flips"}
    failures = suite.findall("testcase/failure")
    assert len(failures) == 1
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "GateBreached"
    assert failure.get("message") == "value 0.08333 > threshold 0.05"
    assert "0.08333 (8.333%)" in failure.text
    assert cases[1].find("failure") is None and cases[1].find("skipped") is None
    assert suite.get("name") == "gaudit flips"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("2", "1", "0", "0")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["negative_flips"] == "4"
    assert float(props["negative_flip_rate"]) == pytest.approx(4 / 48, rel=1e-5)
    assert props["passed"] == "false"


def test_min_gate_breach_says_below(golden_result):
    result = audit_flips(*_frames_for_min_gate(), gates={"min-btc": 0.99})
    failure = suite_of(parse(render(result))).find("testcase/failure")
    assert failure is not None and re.fullmatch(r"value 0\.\d+ < threshold 0\.99",
                                                failure.get("message"))


def _frames_for_min_gate() -> tuple[pd.DataFrame, pd.DataFrame]:
    old = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1], "pred": [0, 1, 0, 1]})
    return old, old.assign(pred=[1, 1, 0, 1])


def test_undefined_gate_is_skipped():
    old = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 1], "pred": [1, 1, 1]})
    result = audit_flips(old, old.assign(pred=[0, 1, 1]), gates={"max-nfi": 0.5,
                                                                  "max-nfr": 0.1})
    assert result.metrics.negative_flip_impact is None  # the new model makes no error
    suite = suite_of(parse(render(result)))
    assert suite.get("skipped") == "1" and suite.get("failures") == "0"
    skipped = suite.findall("testcase/skipped")
    assert len(skipped) == 1 and "n/a" in skipped[0].get("message")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["negative_flip_impact"] == "null"


def test_no_gates_is_one_passing_case(golden_result):
    suite = suite_of(parse(render(replace(golden_result, gates=()))))
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["no gates set"]
    assert cases[0].find("failure") is None
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")


def test_hostile_detail_is_escaped(hostile_result):
    text = render(hostile_result)
    assert "<script" not in text
    suite = suite_of(parse(text))
    assert len(suite.findall("testcase")) == 2
    messages = [f.get("message") for f in suite.iter("failure")]
    assert "value 0.3 at class '<script>alert(1)</script>' > threshold 0.01" in messages


def test_characters_xml_cannot_carry():
    assert xml_text("a\x00b\x1bc\ud800d\tok\n") == "a\ufffdb\ufffdc\ufffdd\tok\n"
    assert xml_text(None) == ""


def test_deterministic(golden_result):
    assert render(golden_result) == render(golden_result)


def test_other_kinds_are_not_implemented():
    with pytest.raises(NotImplementedError, match="ranking"):
        render(SimpleNamespace(kind="ranking"))


# --------------------------------------------------------------------------- compat


def test_compat_one_breached_one_held(compat_result):
    suite = suite_of(root := parse(render(compat_result)))
    assert suite.get("name") == "gaudit compat"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "gate require-compatible",
        "gate max-retrieval-nfr",
    ]
    assert {c.get("classname") for c in cases} == {"gaudit.compat"}
    failures = suite.findall("testcase/failure")
    assert len(failures) == 1
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("type") == "GateBreached"
    assert failure.get("message") == (
        "value 0 (top-1 new/old 70.00% <= old/old 85.00%) < threshold 1")
    assert "compatible is no" in failure.text
    assert cases[1].find("failure") is None and cases[1].find("skipped") is None
    assert "0.3 (30.00%)" in cases[1].find("system-out").text
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("2", "1", "0", "0")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")


def test_compat_properties(compat_result):
    suite = suite_of(parse(render(compat_result)))
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["compatible"] == "false" and props["passed"] == "false"
    assert float(props["update_gain"]) == pytest.approx(-1.0)
    assert props["retrieval_negative_flips"] == "6"
    assert float(props["retrieval_negative_flip_rate"]) == pytest.approx(0.3)
    for case in ("old/old", "new/new", "new/old", "old/new"):
        metrics = compat_result.cases[case]
        assert float(props[f"{case}.top1"]) == pytest.approx(metrics.topk[1], rel=1e-5)
        assert float(props[f"{case}.map"]) == pytest.approx(metrics.map, rel=1e-5)
    assert props["new/old.top1"] == "0.7" and props["old/old.top1"] == "0.85"


def test_compat_dimension_mismatch(mismatch_result):
    text = render(mismatch_result)
    assert "dimension" in text
    suite = suite_of(parse(text))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and "dimension 4 vs 6" in failure.get("message")
    skipped = suite.findall("testcase/skipped")
    assert len(skipped) == 1 and "update_gain" in skipped[0].get("message")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["new/old.top1"] == "null" and props["old/new.map"] == "null"
    assert props["update_gain"] == "null" and props["retrieval_negative_flips"] == "null"
    assert (props["old_dim"], props["new_dim"]) == ("4", "6")


def test_compat_no_gates_is_one_passing_case(compat_result):
    suite = suite_of(parse(render(replace(compat_result, gates=()))))
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["no gates set"]
    assert "--require-compatible" in cases[0].find("system-out").text
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")


def test_compat_hostile_values_escaped(hostile_compat_result):
    text = render(hostile_compat_result)
    assert "<script" not in text and "<Arrow" not in text
    parse(text)


def test_compat_deterministic(compat_result):
    assert render(compat_result) == render(compat_result)
