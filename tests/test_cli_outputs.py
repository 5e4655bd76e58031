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


# --------------------------------------------------------------------------- issue 13


def test_symlink_to_a_regular_file_keeps_the_link_and_replaces_its_target(tmp_path):
    target = tmp_path / "store" / "latest.json"
    target.parent.mkdir()
    target.write_text("old report\n")
    link = tmp_path / "r.json"
    link.symlink_to(target)
    r = runner.invoke(app, ["flips", OLD, NEW, "-f", "json", "-o", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["kind"] == "flips"
    assert not [p for p in tmp_path.rglob(".gaudit-*")]


def test_devices_and_fifos_are_written_through_never_renamed_over(tmp_path):
    """/dev/null stays a device; a FIFO gets the report through its reader; a symlink to
    /dev/null is not replaced by a regular file."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    quiet = tmp_path / "quiet.md"
    quiet.symlink_to(os.devnull)
    r = runner.invoke(app, ["flips", OLD, NEW, "-f", "json", "-o", os.devnull,
                            "--report", f"junit:{fifo}", "--report", f"markdown:{quiet}"])
    reader.join(timeout=30)
    assert r.exit_code == 0, r.output
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
    assert got and got[0].startswith("<?xml")
    assert fifo.is_fifo() and quiet.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gaudit-")]


def test_output_check_comes_before_any_work(tmp_path, monkeypatch):
    """A destination error is found before the inputs are even opened."""
    import graceful_audit.flips as flips_module

    def never(*args, **kwargs):
        raise AssertionError("the audit ran")

    monkeypatch.setattr(flips_module, "audit_flips", never)
    r = runner.invoke(app, ["flips", OLD, NEW, "--report", f"json:{OLD}"])
    assert r.exit_code == 2 and "the OLD input" in r.stderr
    assert Path(OLD).read_text().startswith("id,")


def test_render_refuses_to_overwrite_its_input(tmp_path):
    saved = tmp_path / "r.json"
    runner.invoke(app, ["flips", OLD, NEW, "-f", "json", "-o", str(saved)])
    before = saved.read_bytes()
    r = runner.invoke(app, ["render", str(saved), "-f", "html", "-o", str(saved)])
    assert r.exit_code == 2 and "the RESULT_JSON input" in r.stderr
    assert saved.read_bytes() == before


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import graceful_audit.report as report

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(report.os, "replace", boom)
    r = runner.invoke(app, ["flips", OLD, NEW, "-f", "json", "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 130 and r.stderr.strip() == "gaudit: interrupted"
    assert list(tmp_path.iterdir()) == []


def _edit(doc: dict, path: str, value: object) -> dict:
    """``doc`` with the field at the dotted ``path`` (``per_class.0.counts``) set, or
    deleted when ``value`` is ``...``."""
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node: object = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    if value is ...:
        del node[last]  # type: ignore[attr-defined]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return doc


HAND_EDITS = [
    ("metrics.negative_flip_rate", "high", "metrics.negative_flip_rate must be a finite number"),
    ("metrics.negative_flip_rate", float("nan"), "metrics.negative_flip_rate"),
    ("metrics.n", None, "metrics.n must be a whole number"),
    ("metrics.n", 0, "metrics.n is 0 but the counts add up to"),
    ("tests.mcnemar.p_value", -1, "tests.mcnemar.p_value must be a number from 0 to 1"),
    ("intervals.confidence", 2, "intervals.confidence must be a number strictly between"),
    ("counts.both_right", 0, "but the counts add up to"),
    ("counts", ..., "counts is missing"),
    ("counts.both_right", -3, "counts.both_right must be a whole number >= 0"),
    ("counts.extra", 1, "counts.extra is not a field gaudit writes"),
    ("per_class", {"0": 1}, "per_class must be a list"),
    ("per_class.0", 7, "per_class[0] must be an object"),
    ("inputs", [], "inputs must be an object"),
    ("tests.mcnemar.p_value", "0.3", "tests.mcnemar.p_value must be a number from 0 to 1"),
    ("intervals.negative_flip_rate", "ab", "intervals.negative_flip_rate must be a list"),
    ("gates", [{"name": "max-nfr"}], "gates[0].metric is missing"),
    ("gates.0.threshold", float("inf"), "gates[0].threshold must be a finite number"),
    ("top_negative_flips.0.old_confidence", "x", "top_negative_flips[0].old_confidence"),
    ("top_negative_flips.0.id", 5, "top_negative_flips[0].id must be a string"),
    ("flip_matrix.0.old_pred", 1, "flip_matrix[0].old_pred must be a string"),
    ("task", "ranking", "task must be one of 'classification', 'outcome', 'regression'"),
    ("task", "regression", "task is 'regression' but the regression field is missing"),
    ("task", "outcome", "task is 'outcome' but top_negative_flips hold labels"),
    ("top_negative_flips.0.label", [1], "top_negative_flips[0].label must be"),
    ("gates.0.status", "weird", "gates[0].status must be one of"),
    ("gates.0.name", "max-zzz", "gates[0].name 'max-zzz' is not a gate of a flips result"),
    ("gates.0.value", None, "gates[0].value must be a number when the gate's status is"),
    ("schema_version", 7, "written by a newer gaudit (schema_version 7); upgrade gaudit"),
    ("schema_version", "1", "not a gaudit result"),
    ("kind", "ranking", "unknown result kind 'ranking'"),
]


@pytest.mark.parametrize("path,value,needle", HAND_EDITS,
                         ids=[f"{p}={v!r}" for p, v, _ in HAND_EDITS])
def test_render_names_the_file_and_field_of_a_hand_edited_result(tmp_path, path, value, needle):
    saved = tmp_path / "r.json"
    r = runner.invoke(app, ["flips", OLD, NEW, "--max-nfr", "0.05", "-f", "json",
                            "-o", str(saved)])
    assert r.exit_code == 0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(_edit(json.loads(saved.read_text()), path, value)))
    for extra in ([], ["--max-nfr", "0.01"], ["-f", "json"]):
        r = runner.invoke(app, ["render", str(edited), *extra])
        assert r.exit_code == 2, (extra, r.output)
        assert r.stderr.startswith(f"gaudit: error: {edited}: ") and needle in r.stderr
        assert r.stderr.count("\n") == 1


@pytest.mark.parametrize("text", ["[1, 2]", '"x"', "[" * 100_000, '{"schema_version": 1',
                                  '{"schema_version": 1, "kind": "compat"}'])
def test_render_rejects_what_is_not_a_result(tmp_path, text):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    r = runner.invoke(app, ["render", str(bad)])
    assert r.exit_code == 2 and r.stderr.startswith(f"gaudit: error: {bad}")


def test_render_names_the_field_of_a_hand_edited_compat_result(tmp_path):
    saved = tmp_path / "c.json"
    runner.invoke(app, ["compat", str(ROOT / "sample_data" / "emb_old.parquet"),
                        str(ROOT / "sample_data" / "emb_new_incompatible.parquet"),
                        "-f", "json", "-o", str(saved)])
    doc = json.loads(saved.read_text())
    doc["cases"]["new/old"]["top1"] = "high"
    saved.write_text(json.dumps(doc))
    r = runner.invoke(app, ["render", str(saved), "--require-compatible"])
    assert r.exit_code == 2 and "cases.new/old.top1 must be a finite number" in r.stderr


def test_input_error_on_github_actions_is_also_an_annotation(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    name = "50%\n::add-mask::x.csv"
    r = runner.invoke(app, ["flips", OLD, name])
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gaudit: error: 50%\\n::add-mask::x.csv")
    assert lines[1].startswith("::error title=gaudit::50%25\\n::add-mask::x.csv")
    assert not any(line.startswith("::add-mask") for line in lines)


def test_no_annotation_outside_github_actions(tmp_path):
    r = runner.invoke(app, ["flips", OLD, "missing.csv"])
    assert r.exit_code == 2 and "::error" not in r.stderr


def test_config_file_is_named_for_a_config_value_on_github_actions(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (tmp_path / "gaudit.toml").write_text("[flips]\nmax-nfr = 3.0\n")
    r = runner.invoke(app, ["flips", OLD, NEW])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "gaudit: error: gaudit.toml: max-nfr: 3.0 is outside the valid range 0 to 1.",
        "::error title=gaudit::gaudit.toml: max-nfr: 3.0 is outside the valid range 0 to 1.",
    ]


def test_debug_keeps_exit_2_and_shows_the_traceback(tmp_path):
    r = runner.invoke(app, ["flips", OLD, "missing.csv", "--debug"])
    assert r.exit_code == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("gaudit: error: missing.csv")


def test_a_bug_exits_3_with_or_without_debug(monkeypatch):
    import graceful_audit.flips as flips_module

    def bug(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(flips_module, "audit_flips", bug)
    plain = runner.invoke(app, ["flips", OLD, NEW])
    assert plain.exit_code == 3 and "internal error: ZeroDivisionError" in plain.stderr
    debug = runner.invoke(app, ["flips", OLD, NEW, "--debug"])
    assert debug.exit_code == 3 and "Traceback" in debug.stderr


def test_keyboard_interrupt_surfacing_as_an_engine_error_is_still_an_interruption(monkeypatch):
    """DuckDB turns Ctrl-C into its own error, which the readers report as a bad file."""
    import graceful_audit.flips as flips_module
    from graceful_audit import interrupt
    from graceful_audit.errors import InputError

    def interrupted(*args, **kwargs):
        raise InputError("old.csv: cannot be read as CSV (Query interrupted).")

    monkeypatch.setattr(flips_module, "audit_flips", interrupted)
    monkeypatch.setattr(interrupt, "_received", 2)
    monkeypatch.setattr(interrupt, "_announced", False)
    r = runner.invoke(app, ["flips", OLD, NEW])
    assert r.exit_code == 130 and r.stderr == "gaudit: interrupted\n"
    monkeypatch.setattr(interrupt, "_received", 15)
    monkeypatch.setattr(interrupt, "_announced", False)
    r = runner.invoke(app, ["flips", OLD, NEW])
    assert r.exit_code == 143 and r.stderr == "gaudit: terminated\n"


def _copy_inputs(tmp_path: Path) -> tuple[str, str]:
    import shutil

    old, new = tmp_path / "old.csv", tmp_path / "new.parquet"
    shutil.copy(OLD, old)
    shutil.copy(NEW, new)
    return str(old), str(new)


@pytest.mark.parametrize("where", ["old", "new", "output", "report"])
def test_job_summary_never_written_onto_an_input_or_a_report(tmp_path, monkeypatch, where):
    """``$GITHUB_STEP_SUMMARY`` naming an input or a report of the run: left alone with a
    warning; the gates still decide the exit code and every file keeps its bytes."""
    old, new = _copy_inputs(tmp_path)
    out, extra = tmp_path / "r.json", tmp_path / "r.xml"
    target = {"old": old, "new": new, "output": str(out), "report": str(extra)}[where]
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", target)
    before = {p: Path(p).read_bytes() for p in (old, new)}
    r = runner.invoke(app, ["flips", old, new, "--score-cols", "prob_*", "--max-nfr", "0.01",
                            "-f", "json", "-o", str(out), "--report", f"junit:{extra}"])
    assert r.exit_code == 1, r.stderr
    assert "GITHUB_STEP_SUMMARY" in r.stderr and "not written" in r.stderr
    assert {p: Path(p).read_bytes() for p in (old, new)} == before
    json.loads(out.read_text())  # one strict JSON document, no Markdown appended
    ET.parse(extra)


def test_job_summary_next_to_the_reports_is_written(tmp_path, monkeypatch):
    old, new = _copy_inputs(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = runner.invoke(app, ["flips", old, new, "--score-cols", "prob_*", "-f", "json",
                            "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 0 and "not written" not in r.stderr
    assert "negative flip" in summary.read_text().lower()


def test_report_onto_the_file_redirected_into_standard_input_is_refused(tmp_path):
    """``gaudit flips - new.csv -o old.csv < old.csv`` must not replace the input it reads."""
    import shutil
    import subprocess
    import sys

    old = tmp_path / "old.csv"
    shutil.copy(OLD, old)
    before = old.read_bytes()
    with old.open("rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "graceful_audit", "flips", "-", NEW,
                               "--score-cols", "prob_*", "-f", "json", "-o", str(old)],
                              stdin=stdin, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "the OLD input" in proc.stderr and "would destroy it" in proc.stderr
    assert old.read_bytes() == before
