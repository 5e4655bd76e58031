"""The HTML reports in a real browser: headless Chromium renders them offline to PNGs.

Skipped when Chromium is not installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_html_in_browser.py"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_chromium(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("report.png", "compat.png"):  # gaudit flips, gaudit compat
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(png) in proc.stdout


def test_script_skips_without_chromium(tmp_path):
    env = {"PATH": str(tmp_path)}  # no browser on this PATH
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "chromium not found, skipped" in proc.stdout
