#!/usr/bin/env python3
"""Check the HTML reports in headless Chromium, offline: layout, themes, print, strict CSP.

Usage (from the project root)::

    .venv/bin/python scripts/check_html_in_browser.py [--out DIR] [--browser PATH]
                                                      [--only flips|compat]

Renders ``gaudit flips`` on the digits sample and ``gaudit compat`` on the incompatible
embedding sample, opens each page in headless Chromium in every ``VIEWS`` entry (1280 and
390 px wide, light and dark colour scheme, print, and served with Jenkins' default
Content-Security-Policy, which drops the inline stylesheet), measures the page and writes a
screenshot of each view to ``DIR/<report>-<view>.png`` (DIR defaults to a new temporary
folder). It then prints what looks wrong: a page wider than the window, a table cell laid
out a character or two per line, a missing, blank, colourless or unreadably small plot, an
unreadable verdict, a dark page on paper, a page per section when printed.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: no
port); the pages are served by a small HTTP server on 127.0.0.1 (so a view can send a CSP
header); every other host name resolves to nowhere and networking is otherwise disabled.
``tests/report/test_browser.py`` runs the same checks on the samples and on hostile data.

Exit codes: 0 checked, or Chromium is not installed ("chromium not found, skipped"); 1
Chromium failed or a check failed. On Debian: ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.server
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Jenkins' default Content-Security-Policy for archived artifacts and published HTML.
JENKINS_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'self';"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


@dataclass(frozen=True)
class View:
    """One way to look at a page: window width, colour scheme, media, CSP header."""

    name: str
    width: int
    dark: bool = False
    print: bool = False
    csp: str | None = None


VIEWS = (
    View("1280", 1280),
    View("390", 390),
    View("390-dark", 390, dark=True),
    View("1280-dark", 1280, dark=True),
    View("print-dark", 800, dark=True, print=True),
    View("1280-jenkins-csp", 1280, csp=JENKINS_CSP),
    View("390-jenkins-csp", 390, csp=JENKINS_CSP),
)


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium executable: ``--browser``, ``$CHROMIUM``, or the first one on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if name and (path := shutil.which(name)):
            return path
    return None


# --------------------------------------------------------------------------- the pages


def render_sample() -> str:
    """``gaudit flips`` on the digits sample, one breached and one held gate, as HTML."""
    sys.path.insert(0, str(ROOT))
    from graceful_audit import audit_flips
    from graceful_audit.report.html import render

    data = ROOT / "sample_data"
    return render(audit_flips(str(data / "digits_old.csv"), str(data / "digits_new.parquet"),
                              score_cols="prob_*", slice_by=["ink"],
                              gates={"max-nfr": 0.01, "min-btc": 0.95}))


def render_compat_sample() -> str:
    """``gaudit compat`` on the incompatible embedding update (two breached gates)."""
    sys.path.insert(0, str(ROOT))
    from graceful_audit import audit_compat
    from graceful_audit.report.html import render

    data = ROOT / "sample_data"
    return render(audit_compat(str(data / "emb_old.parquet"),
                               str(data / "emb_new_incompatible.parquet"),
                               gates={"require-compatible": 1, "max-retrieval-nfr": 0.05}))


def render_versions_sample() -> str:
    """``gaudit compat`` on three versions (old, compatible, incompatible): the matrix
    heatmaps, two failing pairs and a breached gate naming the worst pair."""
    sys.path.insert(0, str(ROOT))
    from graceful_audit import audit_compat
    from graceful_audit.report.html import render

    data = ROOT / "sample_data"
    return render(audit_compat(str(data / "emb_old.parquet"),
                               str(data / "emb_new_compatible.parquet"),
                               str(data / "emb_new_incompatible.parquet"),
                               gates={"require-compatible": 1, "min-cross-top1": 0.5}))


#: What can be rendered: name -> page builder.
SAMPLES = {"flips": render_sample, "compat": render_compat_sample,
           "versions": render_versions_sample}


class _Handler(http.server.BaseHTTPRequestHandler):
    pages: dict[str, tuple[str, str | None]] = {}

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        page = self.pages.get(self.path)
        if page is None:
            self.send_error(404)
            return
        body = page[0].encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if page[1]:
            self.send_header("Content-Security-Policy", page[1])
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve() -> Iterator[tuple[str, dict[str, tuple[str, str | None]]]]:
    """An HTTP server on 127.0.0.1 only: ``(base URL, pages)``; pages[path] = (html, CSP)."""
    pages: dict[str, tuple[str, str | None]] = {}
    handler = type("Handler", (_Handler,), {"pages": pages})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- the browser


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (no port is opened).

    Messages are JSON, each ended by a NUL byte; Chromium reads commands on its fd 3 and
    writes replies and events on its fd 4.
    """

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="gaudit-chromium-")
        to_child, self._out = os.pipe()
        self._in, from_child = os.pipe()
        # The child's fd 3 and 4 must be these pipes: a tiny trampoline moves them there.
        move = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
                "os.execv(sys.argv[3], sys.argv[3:])")
        cmd = [sys.executable, "-c", move, str(to_child), str(from_child), executable,
               *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
               "about:blank"]
        self.proc = subprocess.Popen(cmd, pass_fds=(to_child, from_child),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.page("Page.enable")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.call("Browser.close")
        for fd in (self._out, self._in):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr \
                    else ""
                raise RuntimeError(f"Chromium exited: {err.strip()[-800:]}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command, wait for its answer (events that arrive meanwhile are kept)."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data):]
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.call(method, self.session, **params)

    def wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def open(self, url: str, view: View) -> None:
        """Load ``url`` as ``view`` sees it, and wait until it is loaded."""
        self.page("Emulation.setDeviceMetricsOverride", width=view.width, height=900,
                  deviceScaleFactor=1, mobile=False)
        scheme = "dark" if view.dark else "light"
        self.page("Emulation.setEmulatedMedia", media="print" if view.print else "screen",
                  features=[{"name": "prefers-color-scheme", "value": scheme}])
        self.events.clear()
        self.page("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        reply = self.page("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"script failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """A PNG of the whole page (or of ``clip``, in page coordinates)."""
        if clip is None:
            size = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            clip = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], 16000)}
        shot = self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={**clip, "scale": 1})
        return base64.b64decode(shot["data"])

    def pdf_pages(self) -> int:
        """The number of pages the loaded page prints on (A4, default margins)."""
        pdf = base64.b64decode(self.page("Page.printToPDF", paperWidth=8.27,
                                         paperHeight=11.69)["data"])
        return len(re.findall(rb"/Type\s*/Page\b", pdf))


# --------------------------------------------------------------------------- the checks

#: Measures the loaded page; returns plain data (runs in the page through DevTools, so it
#: also runs where the page's own CSP or sandbox forbids scripts).
MEASURE = r"""(() => {
  const de = document.documentElement, body = document.body;
  const colour = (el, prop) => getComputedStyle(el)[prop];
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const bg = getComputedStyle(el).backgroundColor;
      if (bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent') return bg;
    }
    return 'rgb(255, 255, 255)';
  };
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const rows = [];
    for (const r of range.getClientRects()) {
      if (r.width > 0 && !rows.some((y) => Math.abs(y - r.bottom) < 3)) rows.push(r.bottom);
    }
    return rows.length;
  };
  const squeezed = [];
  for (const el of document.querySelectorAll('td, th, dd, dt, h1, h2, p, .card div')) {
    const text = el.textContent.replace(/\s+/g, ' ').trim();
    const n = lines(el);
    if (text.length >= 6 && n >= 3 && text.length / n < 4) {
      squeezed.push({tag: el.tagName, text: text.slice(0, 40), lines: n});
    }
  }
  const plots = [...document.querySelectorAll('svg[role=img]')].map((svg) => {
    const r = svg.getBoundingClientRect();
    const scale = r.width / svg.viewBox.baseVal.width;
    const sizes = [...svg.querySelectorAll('text')].map((t) =>
      parseFloat(getComputedStyle(t).fontSize) * scale);
    const colours = new Set();
    for (const el of svg.querySelectorAll('path, rect, use, text, circle, polygon')) {
      for (const prop of ['fill', 'stroke']) {
        const m = colour(el, prop).match(/^rgb\((\d+), (\d+), (\d+)\)$/);
        if (m && Math.max(+m[1], +m[2], +m[3]) - Math.min(+m[1], +m[2], +m[3]) > 60) {
          colours.add(m[0]);
        }
      }
    }
    return {label: svg.getAttribute('aria-label'), x: r.left + scrollX, y: r.top + scrollY,
            width: r.width, height: r.height, minText: Math.min(...sizes),
            colours: colours.size};
  });
  const verdict = document.querySelector('header .line');
  const mark = document.querySelector('header svg.mark circle');
  const sections = [...document.querySelectorAll('section, main > div, header')];
  return {
    scrollWidth: de.scrollWidth, innerWidth: innerWidth,
    styled: colour(body, 'marginTop') === '0px',
    page: {fg: colour(body, 'color'), bg: background(body)},
    verdict: verdict && {text: verdict.textContent, fg: colour(verdict, 'color'),
                         bg: background(verdict)},
    mark: mark && colour(mark, 'fill'),
    pills: [...document.querySelectorAll('.pill')].map((p) =>
      ({text: p.textContent, fg: colour(p, 'color'), bg: background(p)})),
    breaks: sections.map((s) => [getComputedStyle(s).breakBefore,
                                 getComputedStyle(s).breakAfter,
                                 getComputedStyle(s).breakInside].join(' '))
      .filter((b) => /page|avoid/.test(b)),
    sections: document.querySelectorAll('section').length,
    squeezed, plots,
  };
})()"""


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"[\d.]+", css)[:3])


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two ``rgb(...)`` colours (1 to 21)."""
    def lum(c: tuple[float, ...]) -> float:
        lin = [(v / 255 / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4)
               for v in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    a, b = sorted((lum(_rgb(fg)), lum(_rgb(bg))), reverse=True)
    return (a + 0.05) / (b + 0.05)


def colourful_share(png: bytes) -> float:
    """Share of the pixels of a PNG that are clearly coloured (not white, grey or black)."""
    import numpy as np
    from PIL import Image  # pillow comes with matplotlib

    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float((spread > 60).mean()) if spread.size else 0.0


@dataclass
class Look:
    """What one view of one page showed: the measurements, screenshots, PDF pages."""

    view: View
    measured: dict[str, Any]
    screenshot: bytes
    plot_shots: list[bytes]
    pdf_pages: int | None = None


def look(browser: Browser, url: str, view: View, *, full: bool = True) -> Look:
    """Open ``url`` as ``view`` sees it; measure it, screenshot each plot (and the page)."""
    browser.open(url, view)
    measured = browser.evaluate(MEASURE)
    shots = [browser.screenshot({"x": p["x"], "y": p["y"], "width": max(p["width"], 1),
                                 "height": max(p["height"], 1)}) for p in measured["plots"]]
    pages = browser.pdf_pages() if view.print else None
    return Look(view, measured, browser.screenshot() if full else b"", shots, pages)


def problems(seen: Look, plots_expected: int) -> list[str]:
    """What is wrong with what ``seen`` shows (empty when it looks right)."""
    m, view, out = seen.measured, seen.view, []
    if view.csp and m["styled"]:
        out.append("the inline stylesheet applied although the CSP forbids it")
    if not view.csp and not m["styled"]:
        out.append("the page's stylesheet did not apply")
    if not view.csp and m["scrollWidth"] > m["innerWidth"]:
        out.append(f"the page is {m['scrollWidth']} px wide in a {m['innerWidth']} px window")
    for cell in m["squeezed"]:
        out.append(f"{cell['tag']} {cell['text']!r} is laid out on {cell['lines']} lines")
    if len(m["plots"]) != plots_expected:
        out.append(f"{len(m['plots'])} plots on the page, expected {plots_expected}")
    for p, png in zip(m["plots"], seen.plot_shots, strict=False):
        name = p["label"]
        if p["width"] < 150 or p["height"] < 80:
            out.append(f"plot {name!r} is {p['width']:.0f}x{p['height']:.0f} px")
        if p["colours"] < 1:
            out.append(f"plot {name!r} has no coloured mark (fill/stroke)")
        if colourful_share(png) < 0.003:
            out.append(f"plot {name!r} looks blank or grey on screen")
        if not view.print and p["minText"] < 7.5:
            out.append(f"plot {name!r} has text of {p['minText']:.1f} px")
    verdict = m["verdict"]
    mark = _rgb(m["mark"] or "rgb(0, 0, 0)")
    if max(mark) - min(mark) < 60:
        out.append(f"the verdict mark is not coloured: {m['mark']}")
    if verdict is None or not verdict["text"].strip():
        out.append("no verdict line")
    elif view.csp is None and contrast(verdict["fg"], verdict["bg"]) < 4.5:
        out.append(f"verdict {verdict['fg']} on {verdict['bg']}: contrast "
                   f"{contrast(verdict['fg'], verdict['bg']):.1f} < 4.5")
    for pill in m["pills"] if view.csp is None else []:
        if contrast(pill["fg"], pill["bg"]) < 4.5:
            out.append(f"pill {pill['text']!r} {pill['fg']} on {pill['bg']}: low contrast")
    page_fg, page_bg = m["page"]["fg"], m["page"]["bg"]
    if contrast(page_fg, page_bg) < 7:
        out.append(f"page text {page_fg} on {page_bg}: low contrast")
    dark_page = sum(_rgb(page_bg)) < 3 * 128
    if view.dark and not view.print and not dark_page and view.csp is None:
        out.append(f"dark mode, but the page background is {page_bg}")
    if view.print:
        if dark_page:
            out.append(f"printed on a dark background {page_bg}")
        if m["breaks"]:
            out.append(f"forced page breaks or unbreakable sections: {m['breaks']}")
        if seen.pdf_pages is not None and seen.pdf_pages >= m["sections"]:
            out.append(f"{seen.pdf_pages} printed pages for {m['sections']} sections")
    return out


def plots_in(text: str) -> int:
    """How many plots a report holds (its inline SVG images)."""
    return text.count('<svg class="plot')


def check(browser: Browser, base: str, pages: dict[str, tuple[str, str | None]], name: str,
          text: str, view: View, out: Path | None = None) -> list[str]:
    """The problems of one view of one page; its screenshot into ``out``."""
    path = f"/{name}-{view.name}.html"
    pages[path] = (text, view.csp)
    seen = look(browser, base + path, view, full=out is not None)
    if out is not None:
        (out / f"{name}-{view.name}.png").write_bytes(seen.screenshot)
    return problems(seen, plots_in(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the pages and screenshots")
    parser.add_argument("--browser", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--only", choices=sorted(SAMPLES), help="check one report only")
    args = parser.parse_args(argv)

    executable = find_browser(args.browser)
    if executable is None:
        print("chromium not found, skipped (apt-get install chromium)")
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="gaudit-html-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        with Browser(executable) as browser, serve() as (base, pages):
            for name in [args.only] if args.only else list(SAMPLES):
                text = SAMPLES[name]()
                (out / f"{name}.html").write_text(text, encoding="utf-8")
                print(f"HTML:        {out / f'{name}.html'} ({len(text.encode()) // 1024} KB)")
                for view in VIEWS:
                    found = check(browser, base, pages, name, text, view, out)
                    print(f"screenshot:  {out / f'{name}-{view.name}.png'}")
                    for problem in found:
                        print(f"FAILED ({name}, {view.name}): {problem}", file=sys.stderr)
                        failed = True
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
