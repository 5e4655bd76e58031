#!/usr/bin/env python3
"""Render the sample audit to HTML and screenshot it in headless Chromium, offline.

Usage (from the project root)::

    .venv/bin/python scripts/check_html_in_browser.py [--out DIR] [--browser PATH]

Writes ``DIR/report.html`` and ``DIR/report.png`` (DIR defaults to a new temporary folder)
and prints where they are. Chromium runs with networking disabled and every host name
mapped to nowhere, so the screenshot shows what a reviewer sees offline. It then checks
that the page was really painted: the verdict banner at the top has the verdict's colour
(red for a breached gate) and the page is not blank.

Exit codes: 0 rendered and checked, or Chromium is not installed ("chromium not found,
skipped"); 1 Chromium failed or the screenshot looks wrong. On Debian:
``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The banner colour of a breached verdict (``--fail`` in the report's CSS).
FAIL_RGB = (0xB4, 0x23, 0x18)


def find_browser(explicit: str | None) -> str | None:
    """The Chromium executable: ``--browser``, ``$CHROMIUM``, or the first one on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if name and (path := shutil.which(name)):
            return path
    return None


def render_sample(out: Path) -> Path:
    """Audit the digits sample with one breached and one held gate; write the HTML."""
    sys.path.insert(0, str(ROOT))
    from graceful_audit import audit_flips
    from graceful_audit.report.html import render

    data = ROOT / "sample_data"
    result = audit_flips(str(data / "digits_old.csv"), str(data / "digits_new.parquet"),
                         score_cols="prob_*", slice_by=["ink"],
                         gates={"max-nfr": 0.01, "min-btc": 0.95})
    page = out / "report.html"
    page.write_text(render(result), encoding="utf-8")
    return page


def screenshot(browser: str, page: Path, png: Path, size: str = "1280,2000") -> None:
    """Run headless Chromium on ``page`` (no network) and write the screenshot ``png``."""
    with tempfile.TemporaryDirectory(prefix="gaudit-chromium-") as profile:
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
            f"--screenshot={png}", f"--window-size={size}", page.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 or not png.exists() or png.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"chromium exited with {proc.returncode}, no screenshot:\n{tail}")


def check_png(png: Path) -> list[str]:
    """Problems seen in the screenshot (empty when it looks right)."""
    try:
        from PIL import Image  # pillow comes with matplotlib
    except ImportError:
        return []
    problems = []
    with Image.open(png) as im:
        rgb = im.convert("RGB")
        banner = rgb.getpixel((8, 8))
        if max(abs(a - b) for a, b in zip(banner, FAIL_RGB, strict=True)) > 12:
            problems.append(f"verdict banner is {banner}, expected the red {FAIL_RGB}")
        colours = rgb.resize((320, 500)).getcolors(maxcolors=1_000_000) or []
        if len(colours) < 50:
            problems.append(f"the page looks blank ({len(colours)} colours)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for report.html and report.png")
    parser.add_argument("--browser", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--window-size", default="1280,2000")
    args = parser.parse_args(argv)

    browser = find_browser(args.browser)
    if browser is None:
        print("chromium not found, skipped (apt-get install chromium)")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="gaudit-html-"))
    out.mkdir(parents=True, exist_ok=True)
    page = render_sample(out)
    png = out / "report.png"
    png.unlink(missing_ok=True)
    try:
        screenshot(browser, page, png, args.window_size)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"HTML:       {page} ({page.stat().st_size // 1024} KB)")
    print(f"screenshot: {png}")
    problems = check_png(png)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
