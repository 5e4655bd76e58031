"""Several outputs in one run, re-rendering a saved result, CI platform integration."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graceful_audit.cli import app

ROOT = Path(__file__).resolve().parents[1]
OLD = str(ROOT / "sample_data" / "digits_old.csv")
NEW = str(ROOT / "sample_data" / "digits_new.parquet")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_ci_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.chdir(tmp_path)  # no config file is picked up from the repository


def test_several_reports_in_one_run(tmp_path):
    r = runner.invoke(app, ["flips", OLD, NEW, "--max-nfr", "0.01", "--min-btc", "0.9",
                            "--report", f"json:{tmp_path}/r.json",
                            "--report", f"junit:{tmp_path}/out/gates.xml",
                            "--report", f"markdown:{tmp_path}/r.md"])
    assert r.exit_code == 1
    assert r.stdout.startswith("REGRESSION")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["passed"] is False
    suite = ET.parse(tmp_path / "out" / "gates.xml").getroot().find("testsuite")
    assert len(suite.findall("testcase")) == 2
    assert len(suite.findall("testcase/failure")) == 1
    assert "negative" in (tmp_path / "r.md").read_text().lower()


def test_bad_report_spec_fails_before_the_audit():
    r = runner.invoke(app, ["flips", OLD, NEW, "--report", "pdf:x.pdf"])
    assert r.exit_code == 2 and "FORMAT:PATH" in r.stderr


def test_render_round_trip_and_regate(tmp_path):
    saved = tmp_path / "r.json"
    r = runner.invoke(app, ["flips", OLD, NEW, "--max-nfr", "0.005", "--slice-by", "ink",
                            "-f", "json", "-o", str(saved)])
    assert r.exit_code == 1
    again = runner.invoke(app, ["render", str(saved), "-f", "json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout) == json.loads(saved.read_text())
    held = runner.invoke(app, ["render", str(saved), "--max-nfr", "0.05"])
    assert held.exit_code == 0 and held.stdout.startswith("PASSED")
    wrong = runner.invoke(app, ["render", str(saved), "--require-compatible"])
    assert wrong.exit_code == 2


def test_render_compat_result(tmp_path):
    saved = tmp_path / "c.json"
    r = runner.invoke(app, ["compat", str(ROOT / "sample_data" / "emb_old.parquet"),
                            str(ROOT / "sample_data" / "emb_new_incompatible.parquet"),
                            "-f", "json", "-o", str(saved)])
    assert r.exit_code == 0
    again = runner.invoke(app, ["render", str(saved), "-f", "json"])
    assert json.loads(again.stdout) == json.loads(saved.read_text())
    gated = runner.invoke(app, ["render", str(saved), "--require-compatible"])
    assert gated.exit_code == 1


@pytest.mark.parametrize("content", ["", "{", "[1, 2]", '{"schema_version": 1, "kind": "x"}'])
def test_render_rejects_non_results(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = runner.invoke(app, ["render", str(bad)])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_output_file_is_written_atomically_and_readable(tmp_path):
    out = tmp_path / "deep" / "r.json"
    r = runner.invoke(app, ["flips", OLD, NEW, "-f", "json", "-o", str(out)])
    assert r.exit_code == 0
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".gaudit-")]


def test_failed_run_leaves_no_report(tmp_path):
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["flips", OLD, str(tmp_path / "missing.parquet"), "-f", "json",
                            "-o", str(out)])
    assert r.exit_code == 2 and not out.exists()


def test_github_step_summary_and_annotations(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    r = runner.invoke(app, ["flips", OLD, NEW, "--max-nfr", "0.01", "--min-btc", "0.9"])
    assert r.exit_code == 1
    text = summary.read_text()
    assert text.startswith("previous step\n") and "max-nfr" in text and "|" in text
    assert "::error title=gaudit gate max-nfr breached::" in r.stderr
    assert "::notice title=gaudit gate min-btc held::" in r.stderr
    assert "::" not in r.stdout
    assert os.environ["GITHUB_ACTIONS"] == "true"
