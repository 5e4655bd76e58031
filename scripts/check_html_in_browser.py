#!/usr/bin/env python3
"""Render the sample audits to HTML and screenshot them in headless Chromium, offline.

Usage (from the project root)::

    .venv/bin/python scripts/check_html_in_browser.py [--out DIR] [--browser PATH]
                                                      [--only flips|compat]

Writes ``DIR/report.html`` and ``DIR/report.png`` (``gaudit flips`` on the digits sample)
and ``DIR/compat.html`` and ``DIR/compat.png`` (``gaudit compat`` on the embedding sample,
an incompatible update); DIR defaults to a new temporary folder. ``--only`` renders one of
the two. It prints where the files are. Chromium runs with networking disabled and every
host name mapped to nowhere, so the screenshot shows what a reviewer sees offline. It then
checks that each page was really painted: the verdict banner at the top has the verdict's
colour (red for a breached gate) and the page is not blank.

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


def render_compat_sample(out: Path) -> Path:
    """Audit the incompatible embedding update (two breached gates); write the HTML."""
    sys.path.insert(0, str(ROOT))
    from graceful_audit import audit_compat
    from graceful_audit.report.html import render

    data = ROOT / "sample_data"
    result = audit_compat(str(data / "emb_old.parquet"),
                          str(data / "emb_new_incompatible.parquet"),
                          gates={"require-compatible": 1, "max-retrieval-nfr": 0.05})
    page = out / "compat.html"
    page.write_text(render(result), encoding="utf-8")
    return page


#: What can be rendered: name -> (page builder, screenshot file name).
SAMPLES = {"flips": (render_sample, "report.png"), "compat": (render_compat_sample, "compat.png")}


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
    parser.add_argument("--only", choices=sorted(SAMPLES), help="render one report only")
    args = parser.parse_args(argv)

    browser = find_browser(args.browser)
    if browser is None:
        print("chromium not found, skipped (apt-get install chromium)")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="gaudit-html-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in [args.only] if args.only else list(SAMPLES):
        build, png_name = SAMPLES[name]
        page = build(out)
        png = out / png_name
        png.unlink(missing_ok=True)
        try:
            screenshot(browser, page, png, args.window_size)
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            print(f"FAILED ({name}): {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"HTML:       {page} ({page.stat().st_size // 1024} KB)")
        print(f"screenshot: {png}")
        for problem in check_png(png):
            print(f"FAILED ({name}): {problem}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
