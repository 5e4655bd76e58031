"""The command line: exit codes, output channels, the README's sample command, start-up."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from graceful_audit import __version__
from graceful_audit.cli import app

ROOT = Path(__file__).resolve().parents[1]
OLD = str(ROOT / "sample_data" / "digits_old.csv")
NEW = str(ROOT / "sample_data" / "digits_new.parquet")
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_version():
    r = run("--version")
    assert r.exit_code == 0
    assert __version__ in r.stdout


def test_report_without_gates_exits_0():
    r = run("flips", OLD, NEW, "--slice-by", "ink", "--score-cols", "prob_*")
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first.startswith("NO GATES SET: 8 negative flips (1.1% of 719)")
    assert "Slices by 'ink'" in r.stdout
    assert "\x1b[" not in r.stdout  # no colour codes when stdout is not a terminal


def test_breached_gate_exits_1_and_says_so():
    r = run("flips", OLD, NEW, "--max-nfr", "0.01")
    assert r.exit_code == 1
    head = r.stdout.split("\n\n")[0].split("\nInputs:")[0]
    assert " ".join(head.split()) == (  # the verdict, folded at the terminal's width
        "REGRESSION: 8 negative flips (1.1% of 719), gate max-nfr (0.01113 > 0.01) breached"
    )


def test_held_gate_exits_0():
    r = run("flips", OLD, NEW, "--max-nfr", "0.02", "--min-btc", "0.9")
    assert r.exit_code == 0
    assert r.stdout.startswith("PASSED:")


def test_json_to_stdout_is_the_result_document():
    r = run("flips", OLD, NEW, "--format", "json", "--max-nfr", "0.005")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["kind"] == "flips"
    assert doc["metrics"]["negative_flips"] == 8
    assert doc["gates"][0]["name"] == "max-nfr" and doc["passed"] is False


def test_json_to_file_is_byte_identical_across_runs(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        r = run("flips", OLD, NEW, "-f", "json", "-o", str(out), "--slice-by", "ink")
        assert r.exit_code == 0
        assert f"Wrote json report to {out}" in r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--id-col", "idx"], "no column 'idx'"),
        (["--max-nfr", "2"], "outside the valid range"),
        (["--max-nfr", "abc"], "max-nfr"),
        (["--slice-by", "inc"], "Closest match: 'ink'"),
        (["--confidence", "1.5"], "--confidence"),
        (["--memory-limit", "lots"], "not a memory size"),
        (["--max-nfr", "abc"], "'abc'"),  # the value typed is named
    ],
)
def test_wrong_usage_exits_2_without_traceback(args, needle):
    r = run("flips", OLD, NEW, *args)
    assert r.exit_code == 2
    assert needle in r.output
    assert "Traceback" not in r.output


def test_files_sharing_no_ids_exit_2(tmp_path):
    other = tmp_path / "other.csv"
    pd.DataFrame({"id": ["x1", "x2"], "label": [1, 2], "pred": [1, 2]}).to_csv(other, index=False)
    r = run("flips", OLD, str(other))
    assert r.exit_code == 2
    assert "share no ids" in r.stderr
    assert "Traceback" not in r.output


def test_missing_file_exits_2(tmp_path):
    r = run("flips", str(tmp_path / "nope.csv"), NEW)
    assert r.exit_code == 2
    assert "no such file" in r.stderr


def test_readme_sample_command_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    cmd = next(line for line in readme.splitlines() if "gaudit flips sample_data/" in line)
    gaudit_part = cmd[cmd.index(".venv/bin/gaudit") :]
    args = shlex.split(gaudit_part)[1:]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "negative flips" in r.stdout


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = next(line for line in readme.splitlines() if "pytest" in line and "pip" in line)
    assert test_cmd.replace("pip install -e", "pip install -q -e") in ci


@pytest.mark.parametrize("argv", [["--help"], ["flips", "--help"], ["compat", "--help"],
                                  ["render", "--help"]])
def test_help_imports_no_heavy_module(argv):
    code = (
        "import sys\n"
        "from graceful_audit.cli import app\n"
        "try:\n"
        f"    app({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'scipy', 'faiss', 'duckdb', 'numpy',"
        " 'pyarrow', 'matplotlib', 'mlflow', 'pyspark') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert re.search(r"^HEAVY=$", out.stdout, re.M), out.stdout


def test_python_dash_m_runs():
    out = subprocess.run([sys.executable, "-m", "graceful_audit", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.parametrize("args", [
    ["--max-nfr", "0.01", "--max-nfr", "0.5"],          # the looser gate would win
    ["--max-nfr=0.01", "--max-nfr", "0.5"],
    ["-f", "json", "--format=markdown"],                  # short and long spelling
    ["-f", "json", "-fhtml"],                             # a short option with its value
])
def test_an_option_given_twice_with_different_values_is_a_usage_error(args, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("flips", OLD, NEW, "--score-cols", "prob_*", *args)
    assert r.exit_code == 2
    assert "is given twice" in r.stderr and "Traceback" not in r.stderr


def test_repeatable_and_identical_repeated_options_are_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("flips", OLD, NEW, "--score-cols", "prob_*", "--max-nfr", "0.5",
            "--max-nfr=0.50", "--slice-by", "ink", "--quiet", "--quiet", "-f", "json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["slices"]["ink"]
