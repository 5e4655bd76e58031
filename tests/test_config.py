"""Options from pyproject.toml / gaudit.toml: discovery, validation and precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graceful_audit.cli import app
from graceful_audit.config import find_config
from graceful_audit.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
OLD = str(ROOT / "sample_data" / "digits_old.csv")
NEW = str(ROOT / "sample_data" / "digits_new.parquet")  # NFR of this pair: 8 / 719 = 0.0111
runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_pyproject_found_upward_and_keys_normalised(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.gaudit.flips]\nmax_nfr = 0.01\nslice-by = "ink"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = find_config(None, "flips", cwd=sub)
    assert cfg.path == tmp_path / "pyproject.toml"
    assert cfg.values == {"max-nfr": 0.01, "slice-by": ["ink"]}


def test_two_files_of_one_folder_with_the_same_table_are_an_error(tmp_path):
    """Which of two gates would apply is not obvious: never the looser one silently."""
    write(tmp_path / "pyproject.toml", "[tool.gaudit.flips]\nmax-nfr = 0.5\n")
    write(tmp_path / "gaudit.toml",
          "[flips]\nmax-nfr = 0.02\n[compat]\nrequire-compatible = true\n")
    with pytest.raises(UsageError, match="both hold gaudit flips settings"):
        find_config(None, "flips", cwd=tmp_path)
    # compat settings live in one file only: no ambiguity
    assert find_config(None, "compat", cwd=tmp_path).values == {"require-compatible": True}


def test_a_file_for_the_other_command_does_not_hide_a_farther_one(tmp_path):
    """A gaudit.toml with only [compat] next to the data must not hide the flips gates of
    the project's pyproject.toml above it."""
    write(tmp_path / "pyproject.toml", "[tool.gaudit.flips]\nmax-nfr = 0.01\n")
    sub = tmp_path / "models"
    sub.mkdir()
    write(sub / "gaudit.toml", "[compat]\nrequire-compatible = true\n")
    cfg = find_config(None, "flips", cwd=sub)
    assert cfg.values == {"max-nfr": 0.01} and cfg.path == tmp_path / "pyproject.toml"
    assert find_config(None, "compat", cwd=sub).path == sub / "gaudit.toml"


@pytest.mark.parametrize(("name", "text"), [
    ("pyproject.toml", "[tool.gaudi.flips]\nmax-nfr = 0.01\n"),  # a typo in the table
    ("pyproject.toml", "[tool.gaudit.compat]\nrequire-compatible = true\n"),
    ("ci.toml", "[compat]\nrequire-compatible = true\n"),
    ("ci.toml", ""),
])
def test_explicit_config_without_the_commands_table_is_an_error(tmp_path, name, text):
    """``--config FILE`` whose settings would not apply: an error, not an audit without
    the gates the user meant to set."""
    write(tmp_path / name, text)
    with pytest.raises(UsageError, match=r"has no \[(tool\.gaudit\.)?flips\] table"):
        find_config(str(tmp_path / name), "flips")


def test_pyproject_without_tool_gaudit_is_skipped(tmp_path):
    write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n")
    sub = tmp_path / "s"
    sub.mkdir()
    write(sub / "pyproject.toml", "[tool.black]\nline-length = 1\n")
    assert find_config(None, "flips", cwd=sub).path is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[flips]\nmax-nfx = 0.1\n", "unknown key 'max-nfx'"),
        ("[flips]\nmax-nfr = '0.1'\n", "'max-nfr' must be a number"),
        ("[flips]\nmax-nfr = true\n", "'max-nfr' must be a number"),
        ("[flips]\ntop = 2.5\n", "'top' must be an integer"),
        ("[flips]\nslice-by = [1]\n", "must be a list of strings"),
        ("[flops]\nmax-nfr = 0.1\n", "unknown table [flops]"),
        ("[flips\n", "is not valid TOML"),
        ("[flips]\nmax_nfr = 0.5\nmax-nfr = 0.01\n", "'max_nfr' and 'max-nfr'"),
        ("[flips]\nslice-by = 'a'\nslice_by = 'b'\n", "'slice-by' and 'slice_by'"),
        ("[compat]\nmin_update_gain = 0.5\nmin-update-gain = 0.1\n",
         "'min_update_gain' and 'min-update-gain'"),
    ],
)
def test_bad_config_is_a_usage_error_naming_key_and_file(tmp_path, text, needle):
    path = write(tmp_path / "gaudit.toml", text)
    with pytest.raises(UsageError) as info:
        find_config(str(path), "compat" if text.startswith("[compat]") else "flips")
    assert needle in str(info.value) and str(path) in str(info.value)


def test_missing_explicit_config(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        find_config(str(tmp_path / "nope.toml"), "flips")


# Precedence: (file value, flag value) -> expected threshold and exit code.
@pytest.mark.parametrize(
    ("file_value", "flag", "threshold", "exit_code", "source"),
    [
        (0.005, None, 0.005, 1, "file"),
        (0.05, None, 0.05, 0, "file"),
        (0.005, "0.05", 0.05, 0, "command line"),
        (0.05, "0.005", 0.005, 1, "command line"),
        (None, "0.005", 0.005, 1, "command line"),
    ],
    ids=["file-breached", "file-held", "flag-overrides-to-held", "flag-overrides-to-breached",
         "flag-only"],
)
def test_flags_override_the_file(tmp_path, monkeypatch, file_value, flag, threshold, exit_code,
                                 source):
    if file_value is not None:
        write(tmp_path / "pyproject.toml", f"[tool.gaudit.flips]\nmax-nfr = {file_value}\n")
    monkeypatch.chdir(tmp_path)
    args = ["flips", OLD, NEW, "-f", "json"] + (["--max-nfr", flag] if flag else [])
    r = runner.invoke(app, args)
    assert r.exit_code == exit_code, r.output
    gate = json.loads(r.stdout)["gates"][0]
    assert gate["threshold"] == threshold
    assert gate["source"] == ("pyproject.toml" if source == "file" else "command line")


def test_explicit_config_option(tmp_path, monkeypatch):
    cfg = write(tmp_path / "ci.toml", "[flips]\nmax-nfr = 0.005\nslice-by = ['ink']\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["flips", OLD, NEW, "--config", str(cfg), "-f", "json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert list(doc["slices"]) == ["ink"]


def test_compat_config(tmp_path, monkeypatch):
    write(tmp_path / "gaudit.toml", "[compat]\nrequire-compatible = true\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compat", str(ROOT / "sample_data" / "emb_old.parquet"),
                            str(ROOT / "sample_data" / "emb_new_incompatible.parquet")])
    assert r.exit_code == 1
    assert "gaudit.toml" in r.stdout


@pytest.mark.parametrize("file", ["gaudit.toml", "pyproject.toml"])
def test_both_spellings_of_a_key_are_an_error_never_the_looser_gate(tmp_path, monkeypatch,
                                                                     file):
    """``max_nfr = 0.5`` and ``max-nfr = 0.01`` in one table: neither wins silently."""
    table = "[tool.gaudit.flips]" if file == "pyproject.toml" else "[flips]"
    write(tmp_path / file, f"{table}\nmax_nfr = 0.5\nmax-nfr = 0.01\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["flips", OLD, NEW])
    assert r.exit_code == 2, r.output
    assert file in r.stderr and "'max_nfr' and 'max-nfr'" in r.stderr
