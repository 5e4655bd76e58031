"""HTML report: golden file, self-contained page, escaping (tables and SVG plots).

Regenerate the golden file after an intended change (then review its diff)::

    GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report

The golden HTML embeds matplotlib's SVG, so a new matplotlib version may change it too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from graceful_audit.report.html import esc, render


class Page(HTMLParser):
    """Collects the tags, attributes and text of a page as a browser would parse it."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._svg_depth = 0
        self.svg_text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "svg":
            self._svg_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg_depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._svg_depth:
            self.svg_text.append(data)

    def names(self) -> set[str]:
        return {tag for tag, _ in self.tags}

    def plots(self) -> list[dict[str, str | None]]:
        """The plots: inline SVG images (not the verdict's decorative mark)."""
        return [a for tag, a in self.tags if tag == "svg" and a.get("role") == "img"]


def assert_self_contained(text: str, *, urls_in_data: bool = False) -> None:
    """No resource can load: no script/link/img tags, no handler, only in-page references.

    ``urls_in_data``: the data itself holds a URL (shown as text), so skip the "http" check.
    """
    page = Page(text)
    assert not {"script", "link", "iframe", "object", "embed", "img", "base", "form"} & \
        page.names()
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event handler
            if name in ("src", "href", "action", "srcset", "xlink:href"):
                assert (value or "").startswith("#"), (tag, name, value)  # in-page only
    if not urls_in_data:
        assert "http" not in text.lower()
    assert "@import" not in text
    assert re.findall(r"url\((?!#gaudit-fig)", text) == []
    assert "<script" not in text.lower() and "<link" not in text.lower()


def test_golden(golden_result, check_golden):
    check_golden("flips.html", render(golden_result))


def test_deterministic(golden_result):
    assert render(golden_result) == render(golden_result)


def test_self_contained_with_plots(golden_result):
    text = render(golden_result)
    assert text.startswith("<!DOCTYPE html>")
    assert_self_contained(text)
    page = Page(text)
    # error, classes, matrix, slice; the two confusion matrices and the reliability curves
    assert len(page.plots()) == 7
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # the plots' ids do not collide
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', text):
        assert ref in ids


def test_verdict_colours_and_sections(golden_result):
    text = render(golden_result)
    assert '<header class="verdict fail">' in text
    assert ("REGRESSION: 4 negative flips (8.3% of 48), gate max-nfr (0.08333 &gt; 0.05) "
            "breached; other gates: 1 held") in text
    for title in ("Gates", "Headline metrics", "Classes, most negative flips first",
                  "Negative-flip matrix", "Slices by device", "Worst negative flips (top 4)",
                  "Inputs"):
        assert f"<h2>{title}" in text
    held = tuple(replace(g, passed=True, status="pass") for g in golden_result.gates)
    assert '<header class="verdict pass">' in render(replace(golden_result, gates=held))
    assert '<header class="verdict none">' in render(replace(golden_result, gates=()))


def test_hostile_values_only_escaped(hostile_result):
    text = render(hostile_result)
    assert_self_contained(text, urls_in_data=True)
    assert "<b>" not in text
    page = Page(text)
    visible = "".join(page.text)
    assert "<script>alert(1)</script>" in visible  # shown as text, not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    # the class labels reach the SVG tick labels, escaped by matplotlib
    assert any(t.startswith("<script>alert(1)") for t in page.svg_text)
    svg = "".join(re.findall(r"<svg.*?</svg>", text, flags=re.S))
    assert "&lt;script&gt;alert(1)" in svg and "<script" not in svg
    assert "$x$" in visible  # a dollar is text, not mathtext
    # the 5,000-character id is cut in the cell, kept whole (escaped) in the tooltip
    assert "x" * 119 + "…" in text and "x" * 2001 not in text
    assert text.count('title="xxxx') == 1


@pytest.mark.parametrize("fixture", ["golden_result", "hostile_result", "compat_result",
                                     "versions_result", "mismatch_result"])
def test_no_css_a_strict_csp_would_drop_from_the_plots(fixture, request):
    """Jenkins' default CSP (``style-src 'self'``) drops ``style=`` attributes and inline
    ``<style>``: the page has neither but its one stylesheet in the head, and the plots are
    coloured with SVG presentation attributes."""
    text = render(request.getfixturevalue(fixture))
    page = Page(text)
    assert not [(tag, a) for tag, a in page.tags if "style" in a]
    assert text.count("<style") == 1 and text.index("<style") < text.index("</head>")
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 1 + len(page.plots())  # the verdict mark and the plots
    fills = re.findall(r'\sfill="(#[0-9a-f]{6})"', " ".join(svgs))
    assert "#b42318" in fills  # the breached verdict's mark
    for svg in svgs[1:]:
        assert re.search(r'\sfill="#(?!ffffff)[0-9a-f]{6}"', svg)  # coloured marks
        assert re.search(r'\sfont-size="[\d.]+px"', svg)  # text sized without CSS


def test_presentation_attributes():
    from graceful_audit.report.html import _presentation_attributes

    svg = ('<svg width="10pt"><defs><style type="text/css">*{stroke-linejoin: round; '
           'stroke-linecap: butt}</style></defs><path style="fill: #d92d20; stroke: #fff; '
           'stroke-width: 0.8"/><text style="font-size: 9px; font-family: \'DejaVu Sans\', '
           'sans-serif; text-anchor: end">a</text></svg>')
    assert _presentation_attributes(svg) == (
        '<svg stroke-linejoin="round" stroke-linecap="butt" width="10pt"><defs></defs>'
        '<path fill="#d92d20" stroke="#fff" stroke-width="0.8"/><text font-size="9px" '
        'font-family="\'DejaVu Sans\', sans-serif" text-anchor="end">a</text></svg>')


def test_layout_for_phones_dark_mode_and_print(golden_result):
    """What the browser test (tests/report/test_browser.py) measures, in the CSS itself."""
    text = render(golden_result)
    css = text[text.index("<style>"):text.index("</style>")]
    # every table scrolls inside its own box; ids wrap, but not narrower than 12 characters
    assert text.count("<table>") == text.count('<div class="scroll"><table>') > 0
    assert ".scroll { overflow-x: auto;" in css
    assert re.search(r"td\.id \{[^}]*overflow-wrap: anywhere; min-width: 12ch;", css)
    # a wide plot scrolls in its figure below 3/4 of its size, instead of shrinking
    assert "figure { margin: 0; min-width: 0; overflow-x: auto; }" in css
    floors = re.findall(r'<svg class="plot min(\d+)"', text)
    assert len(floors) == 7 and all(f"svg.min{w} {{ min-width: {w}px; }}" in css
                                    for w in floors)
    assert "@media screen and (prefers-color-scheme: dark)" in css
    printed = css[css.index("@media print"):]
    assert "break-before" not in css and "page-break" not in css
    assert "section { break-inside" not in printed and ".card, figure, tr" in printed
    assert "body { background: #fff;" in printed


def test_esc():
    assert esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert esc("nul\x00") == "nul\\x00"
    assert esc("rtl\u202e\n") == "rtl\\u202e\\n"
    assert esc(None) == ""
    assert esc("abcdef", limit=4) == "abc…"


def test_sample_report_is_small(sample_result):
    text = render(sample_result)
    assert len(text.encode()) < 300_000
    assert_self_contained(text)


def test_without_matplotlib(golden_result, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    text = render(golden_result)
    assert Page(text).plots() == [] and "Plots need matplotlib" in text
    assert "<h2>Negative-flip matrix" in text


def test_other_kinds_are_not_implemented():
    with pytest.raises(NotImplementedError, match="ranking"):
        render(SimpleNamespace(kind="ranking"))


# --------------------------------------------------------------------------- compat


def test_compat_golden(compat_result, check_golden):
    check_golden("compat.html", render(compat_result))


def test_versions_golden(versions_result, check_golden):
    check_golden("versions.html", render(versions_result))


def test_versions_heatmaps_and_sections(versions_result):
    text = render(versions_result)
    assert_self_contained(text)
    page = Page(text)
    assert [a.get("aria-label") for a in page.plots()] == [
        "Top-1 accuracy heatmap, query version x gallery version",
        "mAP heatmap, query version x gallery version",
    ]
    svg_text = " ".join(page.svg_text)
    for cell in ("85.0%", "95.0%", "70.0%", "75.0%", "V1", "V2", "V3"):
        assert cell in svg_text
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    titles = ["Gates", "Versions: 3 x 3 matrix", "Pairs: every later version",
              "Queries that break (worst 6 of 6)", "Inputs"]
    positions = [text.index(f"<h2>{t}") for t in titles]
    assert positions == sorted(positions)
    assert '<tr class="fail"><td>V3/V1</td>' in text and "<tr><td>V2/V1</td>" in text
    assert "V3 queries on V1 gallery: right at top-1 in V1/V1, wrong in V3/V1" in text
    assert "&lt;Arrow table&gt; → &lt;Arrow table&gt; → &lt;Arrow table&gt; · 3 versions" \
        in text


def test_compat_deterministic(compat_result):
    assert render(compat_result) == render(compat_result)


def test_compat_self_contained_with_plots(compat_result):
    text = render(compat_result)
    assert text.startswith("<!DOCTYPE html>")
    assert_self_contained(text)
    page = Page(text)
    assert [a.get("aria-label") for a in page.plots()] == [
        "top-k accuracy of the four query/gallery cases",
        "mAP of the four query/gallery cases, grouped by gallery",
    ]
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', text):
        assert ref in ids
    svg_text = " ".join(page.svg_text)
    for name in ("old/old", "new/new", "new/old", "old/new"):
        assert name in svg_text  # every case is in the plots
    assert "Left out" not in text


def test_compat_sections(compat_result):
    text = render(compat_result)
    assert '<header class="verdict fail">' in text
    assert "REGRESSION: NOT backward compatible (top-1 new/old 70.00% &lt;= old/old 85.00%)" \
        in text
    titles = ["Gates", "Retrieval: the four cases", "Update gain and negative flips",
              "Queries that break (worst 6 of 6)", "Inputs"]
    positions = [text.index(f"<h2>{t}") for t in titles]
    assert positions == sorted(positions)
    assert '<tr class="key"><td>new/old</td>' in text
    assert '<span class="pill fail">BREACHED</span>' in text
    assert '<span class="pill pass">held</span>' in text
    assert "20 queries vs 20 gallery items · cosine similarity" in text
    visible = "".join(Page(text).text)
    assert "compatibleno" in visible.replace(" ", "")  # the first card
    held = tuple(replace(g, passed=True, status="pass") for g in compat_result.gates)
    assert '<header class="verdict pass">' in render(replace(compat_result, gates=held))
    none = render(replace(compat_result, gates=()))
    assert '<header class="verdict none">' in none and "--require-compatible" in none


def test_compat_hostile_values_only_escaped(hostile_compat_result):
    text = render(hostile_compat_result)
    assert_self_contained(text, urls_in_data=True)
    assert "<Arrow" not in text and "&lt;Arrow table&gt;" in text
    visible = "".join(Page(text).text)
    assert "<script>alert(1)</script>" in visible
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "x" * 119 + "…" in text and "x" * 2001 not in text
    # every hostile id is a query that breaks, each in its own row
    rows = re.findall(r'<tr><td class="id"', text)
    assert len(rows) == len(hostile_compat_result.breaking_queries) == 7


def test_compat_dimension_mismatch(mismatch_result):
    text = render(mismatch_result)
    assert_self_contained(text)
    assert "dimension 4 vs 6: not backward compatible" in text
    assert "unavailable: dimension 6 vs 4: cannot compare" in text
    page = Page(text)
    assert len(page.plots()) == 2  # old/old and new/new still plotted
    assert "Left out (unavailable): new/old (dimension 6 vs 4: cannot compare); old/new " \
           "(dimension 4 vs 6: cannot compare)." in text
    assert "Cannot be counted: the new/old case is unavailable" in text
    assert '<span class="pill na">n/a (undefined, cannot fail)</span>' in text


def test_compat_without_matplotlib(compat_result, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    text = render(compat_result)
    assert Page(text).plots() == [] and "Plots need matplotlib" in text
    assert "<h2>Retrieval: the four cases" in text


def test_compat_sample_report_is_small():
    from pathlib import Path

    from graceful_audit import audit_compat

    data = Path(__file__).resolve().parents[2] / "sample_data"
    result = audit_compat(str(data / "emb_old.parquet"),
                          str(data / "emb_new_incompatible.parquet"))
    text = render(result)
    assert len(text.encode()) < 200_000
    assert_self_contained(text)


def test_error_plot_has_no_tick_above_100_percent():
    """Error rates near 100%: the axis runs past 100% for the value labels, but no tick label
    sits there (it was "120%", cut off at the plot's right edge)."""
    from graceful_audit.report.html import _error_plot, _Plotter

    metrics = SimpleNamespace(old_error_rate=0.9434, positive_flip_rate=0.0588,
                              negative_flip_rate=0.0475, new_error_rate=0.9321, n=442)
    result = SimpleNamespace(metrics=metrics,
                             intervals={"old_error_rate": (0.9178, 0.9614)})
    plotter = _Plotter()
    svg = plotter.render(lambda: _error_plot(plotter, result))
    ticks = [int(t) for t in re.findall(r">(\d+)%</text>", svg)]
    assert ticks and max(ticks) == 100


def test_versions_hostile_values_only_escaped(tmp_path):
    """Three versions of hostile ids and labels, one saved under a hostile file name."""
    import pyarrow.parquet as pq

    from graceful_audit import audit_compat

    from .conftest import hostile_compat_tables

    old, new = hostile_compat_tables()
    path = tmp_path / "<img src=x onerror=alert(1)>.parquet"
    pq.write_table(new, path)
    result = audit_compat(old, new, str(path), top=20)
    text = render(result)
    assert_self_contained(text, urls_in_data=True)
    assert "<img src" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert len(re.findall(r'<tr><td class="id"', text)) == len(result.breaking_queries) == 7
