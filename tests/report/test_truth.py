"""Reports tell the truth at every width: digits that show a breach, n/a gates counted
apart, data escaped for terminals and CI logs, GitHub's size limits, honest McNemar wording,
one number style."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from graceful_audit import audit_flips
from graceful_audit.cli import app, github
from graceful_audit.gates import GateResult
from graceful_audit.report import Format, render
from graceful_audit.report import markdown as md
from graceful_audit.report.common import (
    TYPESET,
    count,
    gate_digits,
    gate_tally,
    gate_value,
    gate_value_text,
    mcnemar_sentence,
    rate_text,
    threshold_text,
    verdict,
)
from graceful_audit.textsafe import ci_safe, message, shown

HUMAN = (Format.TEXT, Format.MARKDOWN, Format.HTML, Format.JUNIT)


def frames(n: int, flips: int, classes: int = 2, ids: Any = None) -> tuple[pd.DataFrame, ...]:
    """``n`` examples, the old model right on all, the new one wrong on the first ``flips``."""
    ids = list(ids) if ids is not None else [f"r{i}" for i in range(n)]
    label = [f"c{i % classes}" for i in range(n)]
    new = [f"c{(i + 1) % classes}" if i < flips else label[i] for i in range(n)]
    base = pd.DataFrame({"id": ids, "label": label})
    return base.assign(pred=label), base.assign(pred=new)


# --------------------------------------------------------------------------- gate values


@pytest.mark.parametrize(("value", "threshold", "kw", "text"), [
    (0.010004, 0.01, {"percent": True}, "0.010004 (1.0004%)"),  # breached: must not read 0.01
    (0.0099996, 0.01, {"percent": True}, "0.0099996 (0.99996%)"),  # held, not "equal"
    (0.01, 0.01, {"percent": True}, "0.01 (1.00%)"),  # equal holds and reads equal
    (0.08333333, 0.05, {"percent": True}, "0.08333 (8.333%)"),  # far: 4 digits
    (-0.0099996, -0.01, {"percent": True, "sign": True}, "-0.0099996 (-0.99996%)"),
    (0.0001, 0.0, {"sign": True}, "+0.0001"),
    (1e-9, 0.0, {"percent": True}, "1e-09 (1e-07%)"),  # tiny, never "0.00%"
    (0.500001, 0.5, {}, "0.500001"),
    (1.0000001, 1.0, {}, "1.0000001"),
    (0.3, None, {"percent": True}, "0.3 (30.00%)"),
    (None, 0.01, {}, "n/a"),
])
def test_gate_value_text(value, threshold, kw, text):
    assert gate_value_text(value, threshold, **kw) == text


@pytest.mark.parametrize(("value", "threshold"), [
    (0.010004, 0.01), (0.0099996, 0.01), (0.01 + 1e-15, 0.01), (0.01 - 1e-15, 0.01),
    (-0.0100001, -0.01), (1e-300, 0.0), (2 / 3, 0.6666667), (123456.78, 123456.7),
])
def test_shown_value_compares_to_the_threshold_as_the_value_does(value, threshold):
    shown_value = float(f"{value:.{gate_digits(value, threshold)}g}")
    assert (shown_value > threshold) == (value > threshold)
    assert (shown_value < threshold) == (value < threshold)


def test_threshold_text_is_never_rounded():
    assert threshold_text(0.01) == "0.01"
    assert threshold_text(0.01000004) == "0.01000004"  # "{:g}" printed 0.01
    assert threshold_text(-0.5) == "-0.5"
    assert threshold_text(1e-6) == "1e-06"


def test_rate_text_adds_digits_only_against_a_threshold():
    assert rate_text(0.010004) == "1.00%"
    assert rate_text(0.010004, 0.01) == "1.0004%"
    assert rate_text(0.02, 0.01) == "2.00%"
    assert rate_text(0.0099996, 0.01, 1) == "0.99996%"


@pytest.fixture(scope="module")
def just_breached() -> Any:
    """NFR 25/2499 = 0.010004 against --max-nfr 0.01; max-nfi is n/a (no... it is defined)."""
    return audit_flips(*frames(2499, 25), gates={"max-nfr": 0.01})


@pytest.fixture(scope="module")
def just_held() -> Any:
    """NFR 250/25001 = 0.0099996 against --max-nfr 0.01."""
    return audit_flips(*frames(25001, 250), gates={"max-nfr": 0.01})


@pytest.mark.parametrize("fmt", HUMAN)
def test_a_breach_is_printed_with_the_digits_that_show_it(just_breached, fmt):
    assert not just_breached.passed
    text = render(just_breached, fmt)
    assert "0.010004 (1.0004%)" in text
    assert "(1.0%" not in text and "0.01 (1.00%)" not in text
    line = verdict(just_breached)
    assert line == ("REGRESSION: 25 negative flips (1.0004% of 2,499), gate max-nfr "
                    "(0.010004 > 0.01) breached")
    if fmt is Format.JUNIT:
        failure = ET.fromstring(text.split("\n", 1)[1]).find(".//failure")
        assert failure is not None
        assert failure.get("message") == "value 0.010004 > threshold 0.01"


@pytest.mark.parametrize("fmt", HUMAN)
def test_a_held_value_just_below_is_not_printed_as_equal(just_held, fmt):
    assert just_held.passed
    text = render(just_held, fmt)
    assert "0.0099996 (0.99996%)" in text
    assert verdict(just_held) == ("PASSED: 250 negative flips (0.99996% of 25,001), 1 gate "
                                  "held")


def test_the_github_annotation_shows_the_breach(just_breached, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    github(just_breached)
    err = capsys.readouterr().err
    assert ("::error title=gaudit gate max-nfr breached::negative_flip_rate <= 0.01: value "
            "0.010004 (1.0004%25)") in err


def test_negative_threshold_and_compat_gates():
    g = GateResult("max-error-delta", "error_rate_delta", -0.01, -0.0099996, False, "fail",
                   direction="max")
    assert gate_value(g) == "-0.0099996 (-0.99996%)"
    g = GateResult("min-update-gain", "update_gain", 0.5, 0.4999999, False, "fail",
                   direction="min")
    assert gate_value(g) == "0.4999999"
    g = GateResult("min-cross-top1", "cross_top1", 0.85, 0.84999, False, "fail",
                   direction="min")
    assert gate_value(g) == "0.84999 (84.999%)"


def test_compat_reason_never_reads_equal_percentages():
    from graceful_audit.compat import _distinct_decimals, _pct

    digits = _distinct_decimals(0.850001, 0.85)
    assert _pct(0.850001, digits) != _pct(0.85, digits)
    assert _distinct_decimals(0.7, 0.85) == 2


# --------------------------------------------------------------------------- n/a gates


def _with_gates(result: Any, *statuses: str) -> Any:
    gates = []
    for k, status in enumerate(statuses):
        value = None if status == "n/a" else 0.5
        gates.append(GateResult(f"gate-{k}", "negative_flip_impact", 0.6, value,
                                status != "fail", status))
    return dataclasses.replace(result, gates=tuple(gates))


def test_an_undefined_gate_is_not_called_held(golden_result):
    one_na = _with_gates(golden_result, "pass", "n/a")
    assert one_na.passed  # an n/a gate does not fail the run (exit code 0) ...
    line = verdict(one_na)
    assert "all 2 gates held" not in line  # ... but it did not hold either
    assert line.endswith("no gate breached: 1 held, 1 n/a (undefined)")
    assert verdict(_with_gates(golden_result, "n/a")).endswith(
        "no gate breached: 1 n/a (undefined)")
    assert verdict(_with_gates(golden_result, "pass", "pass")).endswith("all 2 gates held")
    assert gate_tally(one_na.gates) == "1 held, 1 n/a (undefined)"


def test_every_format_counts_n_a_apart(golden_result):
    result = _with_gates(golden_result, "pass", "n/a", "fail")
    assert "other gates: 1 held, 1 n/a (undefined)" in verdict(result)
    assert "#### Gates (1 held, 1 breached, 1 n/a (undefined))" in render(result,
                                                                         Format.MARKDOWN)
    assert "1 held, 1 breached, 1 n/a (undefined)" in render(result, Format.TEXT)
    html = render(result, Format.HTML)
    assert '<span class="note">1 held, 1 breached, 1 n/a (undefined)</span>' in html
    held_na = _with_gates(golden_result, "pass", "n/a")
    assert "all held" not in render(held_na, Format.HTML)
    suite = ET.fromstring(render(result, Format.JUNIT).split("\n", 1)[1]).find("testsuite")
    assert suite is not None and suite.get("skipped") == "1" and suite.get("failures") == "1"
    skipped = suite.find("testcase/skipped")
    assert skipped is not None and "undefined" in skipped.get("message", "")


# --------------------------------------------------------------------------- McNemar


def _mcnemar(result: Any, b: int, c: int, p: float, confidence: float = 0.95) -> str:
    test = dataclasses.replace(result.mcnemar, b=b, c=c, p_value=p)
    return mcnemar_sentence(dataclasses.replace(result, mcnemar=test, confidence=confidence))


def test_mcnemar_names_a_direction_only_when_significant(golden_result):
    assert "not significant at the 5% level" in _mcnemar(golden_result, 4, 6, 0.754)
    assert "fewer" not in _mcnemar(golden_result, 4, 6, 0.754)
    assert "the new model makes more errors, significant at the 5% level" in \
        _mcnemar(golden_result, 40, 6, 0.0001)
    assert "the new model makes fewer errors" in _mcnemar(golden_result, 6, 40, 0.0001)
    assert "not significant at the 1% level" in _mcnemar(golden_result, 40, 20, 0.02, 0.99)
    assert "no difference in errors" in _mcnemar(golden_result, 5, 5, 1.0)
    assert "on 1,234 negative" in _mcnemar(golden_result, 1234, 5, 1e-9)


# --------------------------------------------------------------------------- data escaped

NASTY = (
    "esc\x1b[31mred\x1b]0;title\x07",
    "cr\roverwrite",
    "line\n::add-mask::secret",
    "::stop-commands::token",
    "##[add-mask]legacy",
    "rtl\u202eevil\u2066x\u200f\u061c",
    "nul\x00byte",
    "[bold]markup[/bold] :smile:",
    "#123 @octocat GH-9",
)


@pytest.fixture(scope="module")
def nasty_result() -> Any:
    n = 40
    ids = [*NASTY, *(f"ok-{i}" for i in range(n - len(NASTY)))]
    old, new = frames(n, len(NASTY), ids=ids)
    labels = ["::add-mask::cls", "lab\x1b[2Jel"]
    for df in (old, new):
        df["label"] = [labels[i % 2] for i in range(n)]
        df["seg\nment"] = [NASTY[i % len(NASTY)] for i in range(n)]
    old["pred"] = old["label"]
    new["pred"] = [labels[(i + 1) % 2] if i < len(NASTY) else new["label"][i]
                   for i in range(n)]
    return audit_flips(old, new, slice_by=["seg\nment"], top=len(NASTY),
                       gates={"max-nfr": 0.05, "max-class-nfr": 0.01})


def _no_workflow_command(text: str) -> None:
    for line in text.splitlines():
        assert not line.lstrip().startswith("::"), line
        assert "##[" not in line, line


@pytest.mark.parametrize("fmt", [*HUMAN, Format.JSON])
def test_no_output_line_is_a_workflow_command(nasty_result, fmt):
    _no_workflow_command(render(nasty_result, fmt))


@pytest.mark.parametrize("fmt", HUMAN)
def test_control_and_bidi_characters_are_shown_escaped(nasty_result, fmt):
    text = render(nasty_result, fmt)
    bad = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
    assert not bad.search(text), bad.search(text)
    if fmt is not Format.JUNIT:  # JUnit names no id
        assert "\\x1b" in text and "\\u202e" in text


def test_text_report_prints_markup_in_data_literally(nasty_result):
    text = render(nasty_result, Format.TEXT)
    assert "[bold]markup[/bold]" in text and ":smile:" in text and "😄" not in text
    assert "Slices by 'seg\\nment'" in text


def test_markdown_defuses_references_and_mentions(nasty_result):
    text = render(nasty_result, Format.MARKDOWN)
    assert "#123" not in text and "#&#8203;123" in text
    assert "@octocat" not in text and "GH-9" not in text


def test_junit_with_xml_illegal_characters_parses(nasty_result):
    ET.fromstring(render(nasty_result, Format.JUNIT).split("\n", 1)[1])


def test_shown_and_ci_safe():
    assert shown("a\nb\tc\x1b\u202e\ud800") == "a\\nb\\tc\\x1b\\u202e\\ud800"
    assert shown(None) == ""
    assert ci_safe(" ::add-mask::x\n  ::y\n\x1b[1m::z\nok ::w") == (
        "\\::add-mask::x\n \\::y\n\x1b[1m\\::z\nok ::w")
    assert ci_safe("a ##[add-mask]b") == "a #\\#[add-mask]b"
    assert message("one\ntwo \x1b[2J\n::x") == "one\ntwo \\x1b[2J\n\\::x"


def test_stderr_messages_escape_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = str(tmp_path / "no\n::add-mask::secret\x1b[2J.csv")
    r = CliRunner().invoke(app, ["flips", bad, bad])
    assert r.exit_code == 2
    assert "\x1b" not in r.stderr and "\\x1b[2J" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # the path's line break is escaped
    _no_workflow_command(r.stderr)


def test_wrote_lines_escape_the_path(tmp_path, monkeypatch, just_breached):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.json"
    path.write_text(render(just_breached, Format.JSON))
    out = str(tmp_path / "a\n::add-mask::b.md")
    r = CliRunner().invoke(app, ["render", str(path), "-f", "markdown", "-o", out])
    assert r.exit_code == 1
    assert "Wrote markdown report to " in r.stderr and "a\\n::add-mask::b.md" in r.stderr
    _no_workflow_command(r.stderr)


def test_cli_text_report_is_ci_safe(tmp_path, monkeypatch, nasty_result):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.json"
    path.write_text(render(nasty_result, Format.JSON))
    r = CliRunner().invoke(app, ["render", str(path)])
    assert r.exit_code == 1
    _no_workflow_command(r.stdout)
    assert "\x1b" not in r.stdout


# --------------------------------------------------------------------------- sizes


@pytest.fixture(scope="module")
def huge_result() -> Any:
    """3,000 classes, each with one negative flip of 2 examples (NFR 50%), --top 5000."""
    n = 6000
    ids = [f"id-{i:06d}-" + "x" * 40 for i in range(n)]
    label = [f"class-{i // 2:05d}" for i in range(n)]
    new = [f"class-{(i // 2 + 1) % 3000:05d}" if i % 2 == 0 else label[i] for i in range(n)]
    base = pd.DataFrame({"id": ids, "label": label})
    return audit_flips(base.assign(pred=label), base.assign(pred=new), top=5000,
                       gates={"max-class-nfr": 0.4})


def test_markdown_stays_under_githubs_comment_limit(huge_result):
    text = render(huge_result, Format.MARKDOWN)
    assert len(text.encode("utf-16-le")) // 2 <= md.MAX_CHARS < 65536
    assert "more negative flips in the JSON" in text
    assert "more with negative flips in the JSON" in text
    assert md.render(huge_result, limit=10**9).count("\n") > 6000  # unbounded when asked


def test_markdown_lists_every_breaching_class_that_fits(golden_result):
    gates = (GateResult("max-class-nfr", "worst_class_negative_flip_rate", 0.1, 0.19, False,
                        "fail", detail="class 'dog'"),)
    result = dataclasses.replace(golden_result, gates=gates)
    text = render(result, Format.MARKDOWN)
    assert "beyond --max-class-nfr" in text and "**18.75%**" in text


def test_breaching_classes_beyond_the_top_are_listed():
    # 12 classes with 1 negative flip in 10 (10%) and 1 class with 1 in 4 (25%): the rank
    # is by flips, then rate; with --max-class-nfr 0.09 all 13 breach and all are listed.
    n_per, rows = 10, []
    for k in range(12):
        rows += [(f"a{k}-{j}", f"k{k:02d}", j == 0) for j in range(n_per)]
    old_rows = [(i, c, c) for i, c, _ in rows]
    new_rows = [(i, c, "zz" if flip else c) for i, c, flip in rows]
    old = pd.DataFrame(old_rows, columns=["id", "label", "pred"])
    new = pd.DataFrame(new_rows, columns=["id", "label", "pred"])
    result = audit_flips(old, new, gates={"max-class-nfr": 0.09})
    text = render(result, Format.TEXT)
    assert all(f"k{k:02d}" in text for k in range(12))
    mdtext = render(result, Format.MARKDOWN)
    assert all(f"k{k:02d}" in mdtext for k in range(12))
    relaxed = audit_flips(old, new, gates={"max-class-nfr": 0.5})
    mdtext = render(relaxed, Format.MARKDOWN)
    assert sum(f"\n| k{k:02d} |" in mdtext for k in range(12)) == md.SHOW


def test_html_stays_bounded(huge_result):
    text = render(huge_result, Format.HTML)
    assert len(text) < 3_000_000
    assert "every one in the JSON" in text


# --------------------------------------------------------------------------- number style


def test_thousands_separators(just_held):
    assert count(25001) == "25,001" and count(None) == "n/a"
    for fmt in (Format.TEXT, Format.MARKDOWN, Format.HTML):
        assert "25,001" in render(just_held, fmt)
    assert '"n": 25001' in render(just_held, Format.JSON)  # never in the JSON


def test_one_minus_sign_per_report(golden_result):
    html = render(golden_result, Format.HTML)
    body = html.split("</style>", 1)[1]
    numbers = re.findall(r'<td class="num">([^<]*)</td>', body)
    assert any("\u2212" in n for n in numbers)
    assert not any(re.search(r"(?<![\w.])-\d", n) for n in numbers)
    assert "−4.17 pp" in body and "(new − old)" in body
    text = render(golden_result, Format.TEXT) + render(golden_result, Format.MARKDOWN)
    assert "\u2212" not in text and "\u2192" not in text
    assert TYPESET.number("top-1 -0.5 (-4.17 pp) 1e-07") == "top-1 −0.5 (−4.17 pp) 1e-07"


def test_text_report_stays_bounded(huge_result):
    text = render(huge_result, Format.TEXT)
    assert "Worst negative flips (top 3,000)" in text
    assert "... 2,500 more in the JSON" in text
    assert text.count("id-") == 500  # MAX_LISTED worst flips, ids shown once each


def test_an_n_a_gate_is_a_notice_saying_n_a(golden_result, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    github(_with_gates(golden_result, "n/a"))
    err = capsys.readouterr().err
    assert err.startswith("::notice title=gaudit gate gate-0 n/a::")
    assert "value n/a" in err


def test_narrow_terminal_folds_numbers_instead_of_cutting_them(golden_result) -> None:
    """``COLUMNS=20``: every cell folds onto more lines; none ends in an ellipsis."""
    from graceful_audit.report.text import render_plain

    narrow = render_plain(golden_result, width=20)
    assert "…" not in narrow
    wide = render_plain(golden_result)
    assert "…" not in wide


def test_warnings_are_shown_escaped_in_every_format(golden_result) -> None:
    """A warning quotes data (file names, class names): never raw control characters."""
    import dataclasses

    from graceful_audit.report import Format, render

    hostile = "NEW file n\x1b[31m\n::add-mask::x\u202e.csv predicts odd classes"
    result = dataclasses.replace(golden_result, warnings=(hostile,))
    for fmt in Format:
        text = render(result, fmt)
        assert "\x1b" not in text and "\u202e" not in text, fmt
        assert not any(line.lstrip().startswith("::add-mask") for line in text.splitlines())
    assert "n\\x1b[31m\\n::add-mask::x\\u202e.csv" in render(result, Format.TEXT)
