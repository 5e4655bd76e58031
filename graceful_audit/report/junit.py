"""JUnit XML: every gate is a test case, so any CI system's test tab shows the gates.

One ``<testsuites>`` root holds one ``<testsuite name="gaudit flips">`` (or
``"gaudit compat"``) per audit, with a ``<properties>`` block of the key metrics and one
``<testcase classname="gaudit.flips">`` (``gaudit.compat``) per gate: a breached gate
carries a ``<failure type="GateBreached">`` with the value and the threshold, a gate whose
metric is undefined (status ``n/a``) a ``<skipped>``. Without any gate there is one passing
test case, ``no gates set``. The document is valid against the common JUnit schemas
(Jenkins xunit ``junit-10.xsd``, Ant's ``JUnit.xsd`` attributes):
``testsuite`` has ``name``, ``tests``, ``failures``, ``errors``, ``skipped`` and ``time``;
``testcase`` has ``name``, ``classname`` and ``time``.

The XML is built with :mod:`xml.etree.ElementTree`, which escapes text and attributes;
characters XML 1.0 cannot carry at all (most control characters) are replaced first.
No timestamp or host name is written, so the same result gives the same bytes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from .common import (
    ci_safe,
    gate_value,
    gate_value_text,
    gate_where,
    mcnemar_sentence,
    shown,
    threshold_text,
    verdict,
)

# Characters outside the XML 1.0 ``Char`` production, and lone surrogates.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: Metrics written as ``<property>`` elements, in this order.
PROPERTY_METRICS = (
    "n", "negative_flips", "positive_flips", "negative_flip_rate", "positive_flip_rate",
    "old_error_rate", "new_error_rate", "error_rate_delta", "negative_flip_impact",
    "churn_rate", "backward_trust_compatibility", "backward_error_compatibility",
    "relative_negative_flip_rate",
)


def xml_text(value: Any) -> str:
    """``str(value)`` with the characters XML 1.0 forbids replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", "" if value is None else str(value))


def _fmt(value: Any) -> str:
    """A property value: ``null`` for an undefined metric, floats to 6 significant digits."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return xml_text(value)


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = xml_text(text)
    return el


def _gate_case(suite: ET.Element, classname: str, gate: Any) -> None:
    case = _el(suite, "testcase", classname=classname, name=f"gate {gate.name}", time="0")
    where = gate_where(gate)
    threshold = threshold_text(gate.threshold)
    if gate.status == "fail":
        broken = ">" if gate.direction == "max" else "<"
        bound = "maximum" if gate.direction == "max" else "minimum"
        value = (f"{gate.value:g}" if gate.metric == "compatible" else
                 gate_value_text(gate.value, gate.threshold,
                                 sign=gate.metric in ("mae_delta", "rmse_delta",
                                                      "error_rate_delta")))
        message = f"value {value}{where} {broken} threshold {threshold}"
        body = (f"Gate {gate.name} breached: {gate.metric} is {gate_value(gate)}{where}, "
                f"beyond the {bound} {threshold} (gate from {shown(gate.source)}).")
        _el(case, "failure", body, message=message, type="GateBreached")
    elif gate.status == "n/a":
        _el(case, "skipped", message=f"{gate.metric} is undefined for this audit (n/a), so "
                                     f"gate {gate.name} ({gate.condition}) cannot be breached")
    else:
        _el(case, "system-out", f"held: {gate.metric} is {gate_value(gate)}{where} "
                                f"({gate.condition}; gate from {shown(gate.source)})")


def _suite(root: ET.Element, result: Any) -> ET.Element:
    """An empty ``<testsuite name="gaudit KIND">`` with its counts."""
    gates = result.gates
    failures = sum(g.status == "fail" for g in gates)
    skipped = sum(g.status == "n/a" for g in gates)
    return _el(root, "testsuite", name=f"gaudit {result.kind}", tests=max(len(gates), 1),
               failures=failures, errors=0, skipped=skipped, time="0")


def _gate_cases(suite: ET.Element, result: Any, hint: str) -> None:
    """One test case per gate, or one passing ``no gates set`` case saying ``hint``."""
    classname = f"gaudit.{result.kind}"
    if result.gates:
        for gate in result.gates:
            _gate_case(suite, classname, gate)
    else:
        case = _el(suite, "testcase", classname=classname, name="no gates set", time="0")
        _el(case, "system-out", f"No gate was set, so nothing can fail: {hint}")


def _flips_suite(root: ET.Element, result: Any) -> ET.Element:
    """The ``<testsuite>`` of a flips audit."""
    suite = _suite(root, result)
    props = _el(suite, "properties")
    i = result.inputs
    for name, value in (("old", shown(i.old_path)), ("new", shown(i.new_path)),
                        ("matched", i.matched),
                        ("audited", i.audited), ("task", result.task),
                        ("engine", result.engine), ("confidence", result.confidence),
                        ("old_prediction", i.old_prediction),
                        ("new_prediction", i.new_prediction)):
        _el(props, "property", name=name, value=_fmt(value))
    for name in PROPERTY_METRICS:
        _el(props, "property", name=name, value=_fmt(getattr(result.metrics, name)))
    reg = getattr(result, "regression", None)
    if reg is not None:
        for name, value in reg.metrics().items():
            _el(props, "property", name=name, value=_fmt(value))
        _el(props, "property", name="wilcoxon_p_value", value=_fmt(reg.wilcoxon.p_value))
    sc = getattr(result, "scores", None)
    if sc is not None:
        for name in ("old_mean", "new_mean", "mean_delta"):
            _el(props, "property", name=f"score_{name}", value=_fmt(getattr(sc, name)))
        _el(props, "property", name="wilcoxon_p_value", value=_fmt(sc.wilcoxon.p_value))
    _el(props, "property", name="mcnemar_p_value", value=_fmt(result.mcnemar.p_value))
    _el(props, "property", name="passed", value=_fmt(result.passed))
    _el(props, "property", name="tool_version", value=_fmt(result.tool_version))
    _gate_cases(suite, result, "add --max-nfr X, --min-btc X, ... to gate the release.")
    warnings = getattr(result, "warnings", ())
    for w in warnings:
        _el(props, "property", name="warning", value=_fmt(shown(w)))
    out = "".join(f"Warning: {shown(w)}\n" for w in warnings)
    _el(suite, "system-out", f"{verdict(result)}\n{out}{mcnemar_sentence(result)}")
    return suite


def _compat_suite(root: ET.Element, result: Any) -> ET.Element:
    """The ``<testsuite>`` of a compat audit.

    Properties: the inputs, ``compatible``, ``update_gain``, the retrieval negative flips,
    the paired test of the criterion (``criterion_delta``, ``criterion_significant``,
    ``criterion_p_value``, ``criterion_test``), and per case ``CASE.top1``, ``CASE.top5``,
    ``CASE.top10`` and ``CASE.map`` (with ``--qrels`` also ``CASE.ndcg10``,
    ``CASE.recall10``, ``CASE.recall100``, ``CASE.mrr10``; ``null`` for a case that could
    not be computed, e.g. ``new/old.top1`` when dimensions differ).
    """
    suite = _suite(root, result)
    props = _el(suite, "properties")
    i = result.inputs
    test = result.criterion_test
    for name, value in (
        ("old", shown(i.old_path)), ("new", shown(i.new_path)), ("matched", i.matched),
        ("old_dim", i.old_dim), ("new_dim", i.new_dim), ("mode", i.mode),
        ("queries", result.queries), ("gallery", i.gallery),
        ("queries_without_positive", result.queries_without_positive),
        ("metric", result.metric), ("criterion", result.criterion),
        ("compatible", result.compatible), ("update_gain", result.update_gain),
        ("retrieval_negative_flips", result.retrieval_negative_flips),
        ("retrieval_negative_flip_rate", result.retrieval_negative_flip_rate),
        ("confidence", result.confidence), ("criterion_delta", result.criterion_delta),
        ("criterion_significant", result.criterion_significant),
        ("criterion_p_value", None if test is None else test.p_value),
        ("criterion_test", None if test is None else test.method),
    ):
        _el(props, "property", name=name, value=_fmt(value))
    for case_name, case in result.cases.items():
        for k in (1, 5, 10):
            value = case.topk.get(k) if case.available else None
            _el(props, "property", name=f"{case_name}.top{k}", value=_fmt(value))
        _el(props, "property", name=f"{case_name}.map",
            value=_fmt(case.map if case.available else None))
        for key in case.relevance:  # --qrels: ndcg10, recall10, recall100, mrr10
            _el(props, "property", name=f"{case_name}.{key}",
                value=_fmt(case.relevance[key] if case.available else None))
    versions = getattr(result, "versions", None)
    if versions is not None:
        _versions_properties(props, result)
    _el(props, "property", name="passed", value=_fmt(result.passed))
    _el(props, "property", name="tool_version", value=_fmt(result.tool_version))
    _gate_cases(suite, result, "add --require-compatible, --min-update-gain X, ... to gate "
                               "the release.")
    if versions is not None:
        lines = [f"{p.label}: {'compatible' if p.compatible else 'NOT compatible'} "
                 f"({p.reason()})" for p in versions.pairs]
        _el(suite, "system-out", "\n".join([verdict(result), *lines]))
        return suite
    test_sentence = result.significance()
    _el(suite, "system-out", verdict(result) + (f"\n{test_sentence}" if test_sentence else ""))
    return suite


def _versions_properties(props: ET.Element, result: Any) -> None:
    """Three or more versions: ``versions``, ``V1`` .. ``Vn`` (paths), ``summary_pair`` (the
    pair the two-version properties describe: ``old`` = V1, ``new`` = Vn), every matrix
    cell (``V3/V1.top1``, ``V3/V1.map``) and per pair ``V3/V1.compatible``,
    ``.update_gain``, ``.criterion_delta``, ``.criterion_p_value`` and
    ``.retrieval_negative_flips``."""
    v = result.versions
    s = v.summary_pair
    _el(props, "property", name="versions", value=_fmt(v.n))
    for k, x in enumerate(v.inputs):
        _el(props, "property", name=f"V{k + 1}", value=_fmt(shown(x.path)))
    _el(props, "property", name="summary_pair", value=f"{s.query}/{s.gallery}")
    for key, matrix in (("top1", v.top1), ("map", v.map)):
        for q, row in enumerate(matrix):
            for g, value in enumerate(row):
                _el(props, "property", name=f"V{q + 1}/V{g + 1}.{key}", value=_fmt(value))
    for p in v.pairs:
        a, name = p.audit, f"{p.query}/{p.gallery}"
        t = a.criterion_test
        for key, value in (("compatible", a.compatible), ("update_gain", a.update_gain),
                           ("criterion_delta", a.criterion_delta),
                           ("criterion_p_value", None if t is None else t.p_value),
                           ("retrieval_negative_flips", a.retrieval_negative_flips)):
            _el(props, "property", name=f"{name}.{key}", value=_fmt(value))


#: Test-suite builders by result kind.
SUITES: dict[str, Callable[[ET.Element, Any], ET.Element]] = {
    "flips": _flips_suite, "compat": _compat_suite,
}


def render(result: Any) -> str:
    """Render ``result`` as a JUnit XML document (UTF-8 declaration, indented)."""
    build = SUITES.get(result.kind)
    if build is None:
        raise NotImplementedError(f"no JUnit report for {result.kind!r} results yet")
    root = ET.Element("testsuites", {"name": "gaudit"})
    suite = build(root, result)
    for key in ("tests", "failures", "errors"):
        root.set(key, suite.get(key, "0"))
    root.set("time", "0")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ci_safe('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n")
