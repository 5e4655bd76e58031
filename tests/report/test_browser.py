"""The HTML reports in a real browser: headless Chromium, offline, at 1280 and 390 px.

Reports: flips, compat (two versions) and compat over three versions (the matrix heatmaps),
in every view; hostile values and the regression report in the views where they can break.

Each report is opened in every view of ``scripts/check_html_in_browser.py`` (light and dark
colour scheme, print, and served by a 127.0.0.1 server with Jenkins' default
Content-Security-Policy, which drops the inline stylesheet) and checked there: no page
wider than the window, no table cell laid out a character or two per line, every plot
present, coloured on screen and with readable text, a readable verdict, a light page and no
page per section on paper.

Without Chromium these tests are skipped, except on CI (``CI=true``), where they fail:
``.ci/run`` installs Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graceful_audit import audit_flips
from graceful_audit.report.html import render

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_html_in_browser.py"
_spec = importlib.util.spec_from_file_location("check_html_in_browser", SCRIPT)
assert _spec is not None and _spec.loader is not None
chk = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = chk  # dataclasses look their module up
_spec.loader.exec_module(chk)

VIEWS = {v.name: v for v in chk.VIEWS}
#: Hostile data (a 5,000-character id, markup, newlines) and the regression report's plots,
#: in the views where they can break.
HOSTILE_VIEWS = ("390", "390-dark", "1280-jenkins-csp")


def require_chromium() -> str:
    """The Chromium executable; skip without one, but fail on CI (``.ci/run`` installs it)."""
    executable = chk.find_browser()
    if executable is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("chromium is not installed; on CI it must be (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return executable


@pytest.fixture(scope="module")
def chromium():
    """``(browser, base URL, pages)``: one Chromium and one 127.0.0.1 server for the module."""
    with chk.Browser(require_chromium()) as browser, chk.serve() as (base, pages):
        yield browser, base, pages


def _regression() -> str:
    data = chk.ROOT / "sample_data"
    return render(audit_flips(str(data / "diabetes_old.csv"), str(data / "diabetes_new.parquet"),
                              atol=10, gates={"max-mae-delta": 0.0}))


def _what_if() -> str:
    data = chk.ROOT / "sample_data"
    return render(audit_flips(str(data / "digits_old.csv"), str(data / "digits_new.parquet"),
                              score_cols="prob_*", what_if=True, gates={"max-nfr": 0.005}))


@pytest.fixture(scope="module")
def reports(sample_result, hostile_result, hostile_compat_result):
    return {"flips": lambda: render(sample_result),
            "compat": chk.render_compat_sample,
            "versions": chk.render_versions_sample,
            "flips-hostile": lambda: render(hostile_result),
            "compat-hostile": lambda: render(hostile_compat_result),
            "regression": _regression,
            "what-if": _what_if}


_pages: dict[str, str] = {}


def _page(reports, name: str) -> str:
    if name not in _pages:
        _pages[name] = reports[name]()
    return _pages[name]


CASES = [(r, v) for r in ("flips", "compat", "versions") for v in VIEWS] + \
    [(r, v) for r in ("flips-hostile", "compat-hostile", "regression", "what-if")
     for v in HOSTILE_VIEWS]


@pytest.mark.parametrize(("report", "view"), CASES, ids=[f"{r}-{v}" for r, v in CASES])
def test_report_in_chromium(chromium, reports, report, view):
    browser, base, pages = chromium
    text = _page(reports, report)
    assert chk.plots_in(text) >= 2
    assert chk.check(browser, base, pages, report, text, VIEWS[view]) == []


def _problems(chromium, name: str, text: str, view: str, plots: int) -> list[str]:
    browser, base, pages = chromium
    pages[f"/{name}.html"] = (text, VIEWS[view].csp)
    return chk.problems(chk.look(browser, f"{base}/{name}.html", VIEWS[view], full=False),
                        plots)


def test_checks_see_a_broken_page(chromium):
    """The checks are not vacuous: a page that is too wide, squeezes an id one character
    per line and draws its plot with CSS (which the CSP drops) fails each of them."""
    svg = ('<svg role="img" aria-label="css plot" width="300" height="150" '
           'viewBox="0 0 300 150"><rect width="300" height="150" style="fill: #d92d20"/>'
           '<text x="10" y="20" font-size="3">tiny</text></svg>')
    page = ("<!DOCTYPE html><html><head><style>body { margin: 0 } td { width: 1px; "
            "overflow-wrap: anywhere }</style></head><body><header><p class=\"line\">"
            "REGRESSION</p></header><table><tr><td>img-0087-long</td><td>x</td></tr></table>"
            f'<div style="width: 900px">wide</div><figure>{svg}</figure></body></html>')
    phone = _problems(chromium, "broken-390", page, "390", plots=1)
    assert any("the page is 900 px wide in a 390 px window" in p for p in phone)
    assert any("'img-0087-long' is laid out on" in p for p in phone)
    assert any("has text of" in p for p in phone)
    assert any("verdict mark is not coloured" in p for p in phone)
    jenkins = _problems(chromium, "broken-csp", page, "1280-jenkins-csp", plots=1)
    assert any("plot 'css plot' has no coloured mark" in p for p in jenkins)
    assert any("plot 'css plot' looks blank or grey" in p for p in jenkins)
    assert not any("the inline stylesheet applied" in p for p in jenkins)  # the CSP held


def test_script_skips_without_chromium(tmp_path):
    env = {"PATH": str(tmp_path)}  # no browser on this PATH
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "chromium not found, skipped" in proc.stdout


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception),
                                             ("1", pytest.fail.Exception),
                                             ("", pytest.skip.Exception),
                                             ("false", pytest.skip.Exception)])
def test_without_chromium_ci_fails_and_elsewhere_skips(monkeypatch, ci, outcome):
    monkeypatch.setattr(chk, "find_browser", lambda explicit=None: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        require_chromium()


def test_ci_installs_chromium_and_runs_the_readme_test_command():
    root = SCRIPT.parents[1]
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in ci
    assert "command -v chromium" in ci and "apt-get install -y -qq chromium" in ci
    readme = (root / "README.md").read_text(encoding="utf-8")
    command = ".venv/bin/pytest -q"
    assert ci.rstrip().endswith(command) and f"&& {command}\n" in readme
