"""HTML report: one self-contained file for a pre-release review.

The page carries everything inline: the CSS in a ``<style>`` element and the plots as
inline SVG made with matplotlib. There is no script, no external stylesheet, font or
image, so it opens offline and is safe to e-mail or keep as a CI artifact. Every value
from the data is escaped with :func:`html.escape` (see :func:`esc`); matplotlib escapes
the text it writes into the SVG, and mathtext is switched off so a ``$`` in a label is
only a dollar sign.

Flips pages plot the old vs new error, the negative flip rate per class and slice, and the
negative-flip matrix (regression pages: old vs new absolute error per example as a 2-d
histogram with the diagonal, and the distribution of ``d = e_new - e_old``); compat pages
plot the four query/gallery cases' top-k accuracy curves (new/old highlighted) and their
mAP, grouped by gallery. A case that could not be
computed (old and new dimensions differ) is left out of the plots, with a note.

The SVG is deterministic (fixed ``svg.hashsalt``, no date or creator metadata), so the
same result renders to the same bytes with the same matplotlib version. matplotlib is
imported lazily, through its object-oriented API (``Figure``, no pyplot and no global
backend switch, so rendering from a notebook leaves its plotting setup alone); without
matplotlib the report is still written, with a note instead of the plots.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

from .common import (
    CASE_LABELS,
    KEY_CASE,
    MAX_LISTED,
    NO_FLIPS,
    RELEVANCE_COLUMNS,
    TYPESET,
    breaking_headings,
    by_negative_flips,
    class_f1,
    count,
    criterion_label,
    footer_facts,
    gain,
    gate_tally,
    gate_threshold,
    gate_value,
    gate_where,
    has_wilcoxon,
    interval,
    is_outcome,
    judged,
    listed,
    mcnemar_sentence,
    metric_rows,
    metric_value,
    num,
    outcome_text,
    pct,
    qrels_summary,
    rate_text,
    rows_text,
    shown,
    signed,
    signed_against,
    verdict,
    wilcoxon_sentence,
    without_match,
    worst_scores,
)

#: Longest value shown in a table cell; the full value is in the cell's tooltip.
MAX_CELL = 120
#: Rows of a class or slice table (every row is in the JSON result).
MAX_ROWS = 50
#: Classes in the per-class bar chart, labels of the flip-matrix heatmap.
MAX_BARS = 40
MAX_MATRIX = 20

COLORS = {"old": "#98a2b3", "new": "#2e6bd9", "nfr": "#d92d20", "pfr": "#17a34a",
          "muted": "#667085", "line": "#d0d5dd"}
#: Colour, line style, width and marker of each retrieval case; new/old is the one to watch.
CASE_STYLE = {
    "old/old": ("#667085", "-", 1.6, "o"),
    "new/new": ("#2e6bd9", "-", 1.6, "s"),
    "new/old": ("#e04f16", "-", 2.8, "D"),
    "old/new": ("#9e77ed", "--", 1.4, "^"),
}
#: Legend entries of the top-k plot (the table above it says what each case means).
CASE_LEGEND = {"old/old": "old/old (today)", "new/new": "new/new (backfilled)",
               "new/old": "new/old (no backfill)", "old/new": "old/new"}

#: The page's stylesheet. Colours are CSS variables: a light theme, a dark one for screens
#: that prefer it, and the light one again on paper. Wide tables and plots scroll inside
#: their own box, so the page itself never scrolls sideways (a phone is 390 px wide). A strict
#: Content-Security-Policy (Jenkins' default has ``style-src 'self'``) drops this inline
#: stylesheet: the page is then plain semantic HTML, and the plots keep their colours because
#: they are drawn with SVG presentation attributes, not CSS (see :meth:`_Plotter.svg`).
CSS = """
:root { --fail: #b42318; --pass: #067647; --none: #344054; --ink: #101828;
  --muted: #667085; --line: #e4e7ec; --bg: #f5f6f8; --card: #fff; --stripe: #fafbfc;
  --fail-row: #fef3f2; --key-row: #fff6ed; --banner-ink: #fff;
  --pill-fail-bg: #fee4e2; --pill-fail: #b42318; --pill-pass-bg: #dcfae6; --pill-pass: #067647;
  --pill-na-bg: #fef0c7; --pill-na: #93370d; color-scheme: light; }
@media screen and (prefers-color-scheme: dark) {
  :root { --fail: #b42318; --pass: #067647; --none: #475467; --ink: #e6e9ef;
    --muted: #9da4b0; --line: #2f3642; --bg: #0f1217; --card: #171b22; --stripe: #1c212a;
    --fail-row: #3b1512; --key-row: #3a2612; --pill-fail-bg: #55160c; --pill-fail: #fda29b;
    --pill-pass-bg: #053321; --pill-pass: #75e0a7; --pill-na-bg: #4e1d09;
    --pill-na: #fec84b; color-scheme: dark; }
  .card.bad { box-shadow: inset 0 4px 0 #f04438; }
  .card.good { box-shadow: inset 0 4px 0 #17b26a; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 28px; }
header.verdict { color: var(--banner-ink); padding: 22px 0 20px; }
header.fail { background: var(--fail); }
header.pass { background: var(--pass); }
header.none { background: var(--none); }
header h1 { margin: 0; font-size: 13px; font-weight: 600; letter-spacing: .08em;
  text-transform: uppercase; opacity: .85; }
header .line { margin: 4px 0 0; font-size: 23px; font-weight: 700; line-height: 1.3;
  overflow-wrap: break-word; }
header .sub { margin: 6px 0 0; font-size: 14px; opacity: .9; overflow-wrap: anywhere; }
header svg.mark { width: 22px; height: 22px; vertical-align: -4px; margin-right: 6px; }
main.wrap { padding-top: 20px; padding-bottom: 40px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(165px, 100%), 1fr));
  gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 12px 14px; min-width: 0; }
.card.bad { box-shadow: inset 0 4px 0 var(--fail); }
.card.good { box-shadow: inset 0 4px 0 var(--pass); }
.card .k { font-size: 12px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .05em; }
.card .v { font-size: 21px; font-weight: 700; font-variant-numeric: tabular-nums;
  line-height: 1.3; margin: 2px 0; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.card .s { font-size: 13px; color: var(--muted); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 20px; margin-top: 16px; min-width: 0; }
h2 { font-size: 17px; margin: 0 0 10px; }
h2 .note, .note { font-weight: 400; font-size: 13px; color: var(--muted); }
.warn { border-left: 4px solid #b7791f; padding: 6px 10px; background: rgba(183, 121, 31, .12); }
p { margin: 8px 0; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td:not(.num) { min-width: 6.5em; }
th { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
  font-weight: 600; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--stripe); }
tr.fail td { background: var(--fail-row); }
tr.key td { background: var(--key-row); font-weight: 600; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
  overflow-wrap: anywhere; min-width: 12ch; max-width: 30em; }
td.val { overflow-wrap: anywhere; max-width: 22em; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px;
  font-weight: 700; white-space: nowrap; }
.pill.fail { background: var(--pill-fail-bg); color: var(--pill-fail); }
.pill.pass { background: var(--pill-pass-bg); color: var(--pill-pass); }
.pill.na { background: var(--pill-na-bg); color: var(--pill-na); }
dl.inputs { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 16px;
  margin: 0; }
dl.inputs dt { color: var(--muted); }
dl.inputs dd { margin: 0; overflow-wrap: anywhere; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(440px, 100%), 1fr));
  gap: 20px; margin-top: 16px; }
figure { margin: 0; min-width: 0; overflow-x: auto; }
figcaption { font-size: 13px; color: var(--muted); margin-bottom: 4px; }
figure svg { display: block; width: 100%; max-width: max-content; height: auto;
  border-radius: 6px; }
.split { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 20px;
  align-items: start; }
footer { color: var(--muted); font-size: 12px; margin-top: 20px; }
@media (max-width: 800px) { .split { grid-template-columns: minmax(0, 1fr); } }
@media (max-width: 600px) {
  .wrap { padding: 0 12px; }
  header.verdict { padding: 16px 0 14px; }
  header .line { font-size: 19px; }
  section { padding: 12px; }
  .cards { grid-template-columns: repeat(auto-fit, minmax(min(140px, 100%), 1fr)); gap: 8px; }
  .card { padding: 10px 12px; }
  .card .v { font-size: 19px; }
  th, td { padding: 5px 8px; }
}
@media print {
  body { background: #fff; font-size: 12px; }
  .wrap { max-width: none; padding: 0; }
  header.verdict { background: none; color: var(--ink); border-left: 8px solid var(--none);
    padding: 4px 0 4px 14px; margin-bottom: 8px; }
  header.fail { border-left-color: var(--fail); }
  header.pass { border-left-color: var(--pass); }
  header.fail .line { color: var(--fail); }
  header.pass .line { color: var(--pass); }
  section { border: 0; border-top: 1px solid var(--line); border-radius: 0; padding: 10px 0; }
  h2 { break-after: avoid; }
  .card, figure, tr, dl.inputs > * { break-inside: avoid; }
  .scroll, figure { overflow: visible; }
  th, td, th.num, td.num { white-space: normal; overflow-wrap: anywhere; }
  .card.bad, .card.good { box-shadow: none; border-top: 4px solid var(--fail); }
  .card.good { border-top-color: var(--pass); }
}
"""


def _clean(value: Any) -> str:
    """``str(value)`` with control characters, line breaks, bidi overrides and lone
    surrogates written as escapes (``\\n``, ``\\u202e``; see :func:`.common.shown`)."""
    return shown(value)


def esc(value: Any, limit: int | None = None) -> str:
    """HTML-escape ``value`` (quotes too), cut to ``limit`` characters; ``None`` -> ``""``.

    >>> esc('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    """
    if value is None:
        return ""
    text = _clean(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def _cell(value: Any, cls: str = "val") -> str:
    """A table cell for a data value: escaped, cut, the whole value in the tooltip."""
    if value is None:
        return f'<td class="{cls}"><span class="note">(missing)</span></td>'
    text = _clean(value)
    title = f' title="{esc(text, 2000)}"' if len(text) > MAX_CELL else ""
    return f'<td class="{cls}"{title}>{esc(text, MAX_CELL)}</td>'


def _num(text: str) -> str:
    """A table cell for a number we formatted (never data), minus signs typeset."""
    return f'<td class="num">{esc(TYPESET.number(text))}</td>'


def _table(head: Sequence[tuple[str, bool]], rows: Sequence[str]) -> str:
    """``head``: (title, numeric) pairs; ``rows``: ready ``<tr>`` strings."""
    ths = "".join(f'<th class="num">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>"
                  for h, n in head)
    # The wrapper scrolls a table wider than its card, so the page never scrolls sideways.
    return (f'<div class="scroll"><table><thead><tr>{ths}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _ranked(rows: Sequence[Any]) -> list[Any]:
    """Groups by most negative flips, then by highest negative flip rate."""
    return sorted(rows, key=by_negative_flips)


# --------------------------------------------------------------------------- plots


def _plot_label(value: Any, limit: int = 18) -> str:
    text = "(missing)" if value is None else " ".join(_clean(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: The smallest width of a plot on the page is a multiple of this (in CSS px).
_MIN_PLOT = 10
_STYLE_ATTR = re.compile(r'\sstyle="([^"]*)"')
#: matplotlib's one stylesheet rule in every SVG, as presentation attributes of the root.
_SVG_STYLESHEET = re.compile(r'<style type="text/css">\*\{([^}<]*)\}</style>')


def _declarations(css: str) -> str:
    """``fill: #fff; stroke-width: 0.8`` as attributes: `` fill="#fff" stroke-width="0.8"``.

    Every property matplotlib writes (fill, stroke, font-size, text-anchor, ...) is also an
    SVG presentation attribute; the values are already escaped for a double-quoted attribute.
    """
    pairs = (decl.partition(":") for decl in css.split(";"))
    return "".join(f' {name.strip()}="{value.strip()}"' for name, _, value in pairs
                   if name.strip())


def _presentation_attributes(svg: str) -> str:
    """matplotlib's SVG with its CSS turned into SVG presentation attributes.

    A strict Content-Security-Policy without ``'unsafe-inline'`` in ``style-src`` (Jenkins'
    default) drops every ``style="..."`` attribute and ``<style>`` element: the plots would
    be black shapes on black. Presentation attributes are not CSS, so they survive it.
    """
    svg = _STYLE_ATTR.sub(lambda m: _declarations(m.group(1)), svg)
    rule = _SVG_STYLESHEET.search(svg)
    if rule:  # ``*{...}`` sets inherited stroke properties: the root passes them down
        svg = _SVG_STYLESHEET.sub("", svg)
        svg = svg.replace("<svg ", f"<svg{_declarations(rule.group(1))} ", 1)
    return svg


class _Plotter:
    """Makes matplotlib figures and turns them into inline, deterministic SVG."""

    RC = {
        "svg.hashsalt": "gaudit",
        "svg.fonttype": "none",
        "text.parse_math": False,
        "text.usetex": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "axes.edgecolor": "#98a2b3",
        "axes.labelcolor": "#344054",
        "xtick.color": "#475467",
        "ytick.color": "#475467",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": 72,
    }

    def __init__(self) -> None:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.ticker import PercentFormatter

        self.mpl = matplotlib
        self.Figure = Figure
        self.percent = PercentFormatter
        self.count = 0

    def figure(self, width: float, height: float) -> Any:
        return self.Figure(figsize=(width, height), layout="constrained")

    def svg(self, fig: Any, label: str) -> str:
        """The figure as inline SVG: no XML prologue, no namespaces, ids made unique."""
        self.count += 1
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                  "Format": None, "Type": None})
        svg = buf.getvalue()
        svg = svg[svg.index("<svg"):]
        # Inline SVG in HTML needs no namespace declarations; SVG 2 takes plain ``href``.
        svg = re.sub(r'\s+xmlns(?::xlink)?="[^"]*"', "", svg, count=2)
        svg = svg.replace("xlink:href=", "href=")
        prefix = f"gaudit-fig{self.count}-"
        svg = re.sub(r'(\bid="|href="#|url\(#)', lambda m: m.group(1) + prefix, svg)
        svg = _presentation_attributes(svg)
        width = float(re.search(r'<svg [^>]*?\swidth="([\d.]+)pt"', svg).group(1)) * 4 / 3
        # Shrunk to a phone's width, a wide plot's text would be too small to read: below
        # 3/4 of its size (8-point text at 8 px) its figure scrolls instead (see ``CSS``).
        floor = _MIN_PLOT * round(0.75 * width / _MIN_PLOT)
        return svg.replace("<svg ", f'<svg class="plot min{floor}" role="img" '
                                    f'aria-label="{esc(label)}" ', 1).strip()

    def render(self, make: Callable[[], str | None]) -> str | None:
        with self.mpl.rc_context(self.RC):
            return make()


def _capped_locator(top: float) -> Any:
    """matplotlib's default tick locator, without the ticks above ``top``."""
    from matplotlib.ticker import AutoLocator

    class Capped(AutoLocator):
        def tick_values(self, vmin: float, vmax: float) -> Any:
            ticks = super().tick_values(vmin, vmax)
            return ticks[ticks <= top + 1e-9]

    return Capped()


def _error_plot(p: _Plotter, result: Any) -> str | None:
    m = result.metrics
    rows = [("old error rate", "old_error_rate", COLORS["old"]),
            ("− positive flips (fixed)", "positive_flip_rate", COLORS["pfr"]),
            ("+ negative flips (new errors)", "negative_flip_rate", COLORS["nfr"]),
            ("= new error rate", "new_error_rate", COLORS["new"])]
    if is_outcome(result):
        rows = [(name.replace("error rate", "fail rate").replace("new errors", "new failures"),
                 key, color) for name, key, color in rows]
    rows = [r for r in rows if getattr(m, r[1]) is not None]
    if not rows:
        return None
    fig = p.figure(4.6, 2.4)
    ax = fig.add_subplot()
    values = [getattr(m, key) for _, key, _ in rows]
    lo, hi = [], []
    for (_, key, _), v in zip(rows, values, strict=True):
        ci = result.intervals.get(key)
        lo.append(v - ci[0] if ci else 0.0)
        hi.append(ci[1] - v if ci else 0.0)
    y = list(range(len(rows)))
    ax.barh(y, values, xerr=[lo, hi], color=[c for *_, c in rows], height=0.62,
            error_kw={"ecolor": "#344054", "capsize": 3, "elinewidth": 1})
    ax.set_yticks(y, [name for name, *_ in rows])
    ax.invert_yaxis()
    top = max(v + h for v, h in zip(values, hi, strict=True)) or 1.0
    ax.set_xlim(0, top * 1.25)
    # No tick past 100%: no rate gets there, and a label at the right edge would be cut off.
    ax.xaxis.set_major_locator(_capped_locator(1.0))
    for yi, v, h in zip(y, values, hi, strict=True):
        ax.text(v + h + top * 0.02, yi, pct(v), va="center", fontsize=8, color="#344054")
    ax.xaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
    ax.set_xlabel(f"share of the {m.n} audited examples")
    what = "fail rate" if is_outcome(result) else "error rate"
    return p.svg(fig, f"old vs new {what} with intervals")


def _bars(p: _Plotter, rows: Sequence[Any], *, horizontal: bool, reference: float | None,
          gate: tuple[str, float] | None, label: str, axis: str) -> str:
    """Negative flip rate of each group with its Wilson interval as error bars."""
    names = [_plot_label(r.value) for r in rows]
    values = [r.negative_flip_rate or 0.0 for r in rows]
    lo = [v - r.negative_flip_rate_interval[0] if r.negative_flip_rate_interval else 0.0
          for v, r in zip(values, rows, strict=True)]
    hi = [r.negative_flip_rate_interval[1] - v if r.negative_flip_rate_interval else 0.0
          for v, r in zip(values, rows, strict=True)]
    colors = [COLORS["nfr"] if r.counts.negative_flips else COLORS["line"] for r in rows]
    pos = list(range(len(rows)))
    err = {"ecolor": "#344054", "capsize": 2.5, "elinewidth": 0.9}
    if horizontal:
        fig = p.figure(5.6, 0.9 + 0.32 * len(rows))
        ax = fig.add_subplot()
        ax.barh(pos, values, xerr=[lo, hi], color=colors, height=0.6, error_kw=err)
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
        ax.xaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
        ax.set_xlabel(axis)
        line = ax.axvline
    else:
        width = max(7.5, min(11.5, 2 + 0.45 * len(rows)))
        fig = p.figure(width, 3.0)
        ax = fig.add_subplot()
        ax.bar(pos, values, yerr=[lo, hi], color=colors, width=0.66, error_kw=err)
        # Rotate the labels only when they would not fit side by side (~9 characters an inch).
        long = max((len(n) for n in names), default=0) * len(rows) > 0.8 * 9 * width
        ax.set_xticks(pos, names, rotation=45 if long else 0, ha="right" if long else "center",
                      rotation_mode="anchor")
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.yaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
        ax.set_ylabel(axis)
        line = ax.axhline
    if reference is not None:
        line(reference, color=COLORS["muted"], linestyle="--", linewidth=1,
             label=f"overall NFR {pct(reference)}")
    if gate is not None:
        line(gate[1], color=COLORS["nfr"], linestyle=":", linewidth=1.2,
             label=f"gate {gate[0]} {gate[1]:g}")
    if reference is not None or gate is not None:
        ax.legend(loc="best", fontsize=8, frameon=False)
    return p.svg(fig, label)


def _gate(result: Any, name: str) -> tuple[str, float] | None:
    return next(((g.name, g.threshold) for g in result.gates if g.name == name), None)


def _class_plot(p: _Plotter, result: Any) -> tuple[str, str] | None:
    rows = list(result.per_class)
    if not rows:
        return None
    note = ""
    if len(rows) > MAX_BARS:
        keep = {id(r) for r in _ranked(rows)[:MAX_BARS]}
        rows = [r for r in rows if id(r) in keep]
        note = f" ({MAX_BARS} of {len(result.per_class)} classes, most negative flips)"
    svg = _bars(p, rows, horizontal=False, reference=result.metrics.negative_flip_rate,
                gate=_gate(result, "max-class-nfr"), label="negative flip rate per class",
                axis="negative flip rate")
    return svg, note


def _slice_plot(p: _Plotter, result: Any, rows: Sequence[Any]) -> str | None:
    if not rows:
        return None
    rows = _ranked(rows)[:MAX_BARS // 2]
    return _bars(p, rows, horizontal=True, reference=result.metrics.negative_flip_rate,
                 gate=_gate(result, "max-slice-nfr"), label="negative flip rate per slice",
                 axis="negative flip rate")


def _matrix_plot(p: _Plotter, result: Any) -> tuple[str, str] | None:
    cells = result.flip_matrix
    if not cells:
        return None
    import numpy as np

    order = {r.value: i for i, r in enumerate(result.per_class)}
    involvement: dict[str, int] = {}
    for o, n, c in cells:
        involvement[o] = involvement.get(o, 0) + c
        involvement[n] = involvement.get(n, 0) + c
    labels = sorted(involvement, key=lambda v: (-involvement[v], order.get(v, len(order)), v))
    note = ""
    if len(labels) > MAX_MATRIX:
        note = f" ({MAX_MATRIX} of {len(labels)} labels, most flips)"
        labels = labels[:MAX_MATRIX]
    labels.sort(key=lambda v: (order.get(v, len(order)), v))
    rows = [v for v in labels if any(o == v for o, _, _ in cells)]
    cols = [v for v in labels if any(n == v for _, n, _ in cells)]
    grid = np.zeros((len(rows), len(cols)))
    ri, ci = {v: i for i, v in enumerate(rows)}, {v: i for i, v in enumerate(cols)}
    for o, n, c in cells:
        if o in ri and n in ci:
            grid[ri[o], ci[n]] += c
    side = 0.42
    fig = p.figure(max(3.6, 1.6 + side * len(cols)), max(2.6, 1.3 + side * len(rows)))
    ax = fig.add_subplot()
    peak = grid.max() or 1.0
    # Vector cells (pcolormesh), not a raster image: crisp, small, nothing base64-encoded.
    ax.pcolormesh(np.ma.masked_equal(grid, 0), cmap="Reds", vmin=0, vmax=peak * 1.3)
    long = max((len(_plot_label(v)) for v in cols), default=0) > 4  # wider than a cell
    ax.set_xticks(np.arange(len(cols)) + 0.5, [_plot_label(v) for v in cols],
                  rotation=45 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(np.arange(len(rows)) + 0.5, [_plot_label(v) for v in rows])
    ax.set_xticks(np.arange(len(cols) + 1), minor=True)
    ax.set_yticks(np.arange(len(rows) + 1), minor=True)
    ax.grid(which="minor", color="#eaecf0", linewidth=1)
    ax.tick_params(which="both", length=0)
    ax.set_axisbelow(False)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    for side_name in ("top", "right", "left", "bottom"):
        ax.spines[side_name].set_visible(False)
    ax.set_xlabel("new prediction")
    ax.set_ylabel("old prediction")
    if len(rows) * len(cols) <= 400:
        for (i, j), c in np.ndenumerate(grid):
            if c:
                ax.text(j + 0.5, i + 0.5, f"{int(c)}", ha="center", va="center", fontsize=8,
                        color="#fff" if c > 0.55 * peak else "#101828")
    return p.svg(fig, "negative-flip matrix heatmap"), note


def _error_scatter_plot(p: _Plotter, reg: Any) -> str | None:
    """Old vs new absolute error per example: the 2-d histogram as a heatmap, y = x drawn."""
    h = reg.error_histogram
    if h is None or not any(any(row) for row in h.counts):
        return None
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.ticker import MaxNLocator

    edges = np.asarray(h.edges)
    grid = np.asarray(h.counts, dtype=float).T  # rows: new error (y axis), cols: old error
    fig = p.figure(4.8, 4.1)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    peak = grid.max()
    # Blues without its near-white end, so a cell of one example still shows; 32 shades
    # keep the colour bar vector (matplotlib rasterizes one of 50 or more to a PNG).
    cmap = ListedColormap(p.mpl.colormaps["Blues"](np.linspace(0.22, 1.0, 32)))
    # Vector cells (pcolormesh), not a raster image; empty cells stay white.
    mesh = ax.pcolormesh(edges, edges, np.ma.masked_equal(grid, 0), cmap=cmap,
                         vmin=0.5 if peak <= 1 else 1, vmax=max(peak, 1.5),
                         edgecolors="none")
    lo, hi = edges[0], edges[-1]
    ax.plot([lo, hi], [lo, hi], color="#344054", linewidth=1, linestyle="--",
            label="y = x (no change)")
    if reg.rtol == 0 and lo < reg.atol < hi:
        ax.axvline(reg.atol, color=COLORS["muted"], linestyle=":", linewidth=1)
        ax.axhline(reg.atol, color=COLORS["muted"], linestyle=":", linewidth=1,
                   label=f"tolerance {reg.atol:g}")
    # Away from the corners, where the tolerance lines run.
    ax.text(0.3, 0.9, "new worse", transform=ax.transAxes, ha="center", va="center",
            fontsize=8, color=COLORS["nfr"])
    ax.text(0.8, 0.25, "new better", transform=ax.transAxes, ha="center", va="center",
            fontsize=8, color=COLORS["pfr"])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("old absolute error |old − y|")
    ax.set_ylabel("new absolute error |new − y|")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8,
              frameon=False)
    bar = fig.colorbar(mesh, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("examples per cell")
    bar.outline.set_visible(False)
    bar.solids.set_rasterized(False)  # no embedded image: vector only
    bar.solids.set_edgecolor("face")  # no seams between the shades
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return p.svg(fig, "old vs new absolute error per example, 2-d histogram")


def _d_plot(p: _Plotter, reg: Any) -> str | None:
    """The distribution of d = e_new - e_old as bars, with lines at 0 and at the mean."""
    h = reg.d_histogram
    if h is None or not any(h.counts):
        return None
    edges = list(h.edges)
    lefts, widths = edges[:-1], [b - a for a, b in zip(edges, edges[1:], strict=False)]
    # Bins wholly above 0 got worse, wholly below got better; one holding 0 is neutral.
    colors = [COLORS["nfr"] if a >= 0 and b > 0 else COLORS["pfr"] if b <= 0 and a < 0
              else COLORS["old"] for a, b in zip(edges, edges[1:], strict=False)]
    fig = p.figure(4.8, 4.1)
    ax = fig.add_subplot()
    ax.bar(lefts, h.counts, width=widths, align="edge", color=colors, edgecolor="#fff",
           linewidth=0.5)
    ax.axvline(0, color="#101828", linewidth=1.1, label="0 (no change)")
    if reg.mean_d is not None:
        ax.axvline(reg.mean_d, color=COLORS["new"], linestyle="--", linewidth=1.4,
                   label=f"mean {signed(reg.mean_d)} (MAE delta)")
    ax.set_xlim(min(edges[0], 0.0), max(edges[-1], 0.0))
    ax.set_xlabel("d = new error − old error")
    ax.set_ylabel("examples")
    ax.grid(axis="y", color="#eaecf0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8,
              frameon=False)
    return p.svg(fig, "distribution of d = e_new - e_old")


# --------------------------------------------------------------------------- sections


def _mark(colour: str, shape: str) -> str:
    return ('<svg class="mark" width="22" height="22" viewBox="0 0 22 22" aria-hidden="true">'
            f'<circle cx="11" cy="11" r="10" fill="{colour}" stroke="#fff" stroke-width="1.5"/>'
            f'<path d="{shape}" fill="none" stroke="#fff" stroke-width="2.4" '
            'stroke-linecap="round" stroke-linejoin="round"/></svg>')


#: The verdict's coloured mark, drawn with SVG presentation attributes: the colour of the
#: verdict survives a CSP that drops the stylesheet (and with it the banner's background).
VERDICT_MARKS = {"fail": _mark("#b42318", "M7 7l8 8M15 7l-8 8"),
                 "pass": _mark("#067647", "M6.5 11.5l3 3 6-7"),
                 "none": _mark("#475467", "M7 11h8")}


def _header(result: Any) -> str:
    state = "fail" if result.breached else "pass" if result.gates else "none"
    i = result.inputs
    if result.kind == "compat":
        what = (f"{count(result.queries)} queries vs {count(i.gallery)} gallery items · "
                f"{esc(result.metric)} similarity")
    else:
        what = f"{count(i.audited)} examples audited · {esc(result.task)}"
    sub = f"{esc(i.old_path, MAX_CELL)} → {esc(i.new_path, MAX_CELL)} · {what}"
    if getattr(result, "versions", None) is not None:
        sub = (" → ".join(esc(v.path, MAX_CELL // 2) for v in result.versions.inputs)
               + f" · {result.versions.n} versions · {what}")
    return (f'<header class="verdict {state}"><div class="wrap">'
            f"<h1>gaudit {esc(result.kind)} · model update audit</h1>"
            f'<p class="line">{VERDICT_MARKS[state]}{esc(verdict(result, TYPESET))}</p>'
            f'<p class="sub">{sub}</p></div></header>')


def _card(key: str, value: str, sub: str = "", cls: str = "") -> str:
    klass = f"card {cls}".strip()
    return (f'<div class="{klass}"><div class="k">{esc(key)}</div>'
            f'<div class="v">{esc(TYPESET.number(value))}</div>'
            f'<div class="s">{esc(TYPESET.number(sub))}</div></div>')


def _gate_state(result: Any, metric: str) -> str:
    """A card's mark: ``good``/``bad`` when a gate watches ``metric``, else none."""
    g = next((g for g in result.gates if g.metric == metric), None)
    return "" if g is None or g.status == "n/a" else "good" if g.passed else "bad"


def _gates_card(result: Any) -> str:
    if not result.gates:
        return _card("gates", "none set", "the run cannot fail")
    n_bad = len(result.breached)
    total = f"of {len(result.gates)} gate{'s' if len(result.gates) > 1 else ''}"
    if all(g.status == "pass" for g in result.gates):
        return _card("gates", "all held", total, "good")
    return _card("gates", gate_tally(result.gates), total, "bad" if n_bad else "")


def _cards(result: Any) -> str:
    m = result.metrics

    def state(metric: str) -> str:
        return _gate_state(result, metric)

    iv = result.intervals
    def value(name: str) -> str:
        return metric_value(name, getattr(m, name), gate_threshold(result, name))

    err = "fail rate" if is_outcome(result) else "error rate"
    cards = [
        _card("negative flips", count(m.negative_flips),
              f"NFR {value('negative_flip_rate')} {interval(iv.get('negative_flip_rate'))}",
              state("negative_flip_rate")),
        _card(f"new {err}", pct(m.new_error_rate),
              f"old {pct(m.old_error_rate)} · {value('error_rate_delta')}",
              state("error_rate_delta")),
        _card("positive flips", count(m.positive_flips),
              f"PFR {pct(m.positive_flip_rate)} {interval(iv.get('positive_flip_rate'))}"),
        _card("BTC", value("backward_trust_compatibility"),
              interval(iv.get("backward_trust_compatibility")),
              state("backward_trust_compatibility")),
    ]
    reg = getattr(result, "regression", None)
    if reg is not None:
        r = reg.metrics()
        cards.append(_card("MAE delta",
                           signed_against(r["mae_delta"], gate_threshold(result, "mae_delta")),
                           f"MAE {num(r['old_mae'])} → {num(r['new_mae'])}", state("mae_delta")))
    elif is_outcome(result):
        sc = result.scores
        if sc is not None:
            cards.append(_card("mean score delta",
                               TYPESET.number(signed_against(
                                   sc.mean_delta, gate_threshold(result, "scores.mean_delta"))),
                               f"mean score {num(sc.old_mean)} → {num(sc.new_mean)}",
                               state("scores.mean_delta")))
    else:
        cards.append(_card("churn", value("churn_rate"), "predictions that changed",
                           state("churn_rate")))
    cards.append(_gates_card(result))
    return f'<div class="cards">{"".join(cards)}</div>'


def _section(title: str, body: str, note: str = "") -> str:
    extra = f' <span class="note">{esc(note)}</span>' if note else ""
    return f"<section><h2>{esc(title)}{extra}</h2>{body}</section>"


def _inputs(result: Any) -> str:
    i = result.inputs
    items = [("old", f"{esc(i.old_path)} ({count(i.old_rows)} rows)"),
             ("new", f"{esc(i.new_path)} ({count(i.new_rows)} rows)")]
    if i.labels_path:
        items.append(("labels", f"{esc(i.labels_path)} ({count(i.labels_rows)} rows, "
                                f"{count(i.unused_labels)} unused)"))
    items.append(("rows", f"{esc(rows_text(result))} → "
                          f"<strong>{count(i.audited)} audited</strong>"))
    if is_outcome(result):
        items.append(("outcomes", esc(outcome_text(result))))
    elif i.label_source:
        items.append(("labels from", esc(i.label_source)))
    reg = getattr(result, "regression", None)
    if reg is not None:
        reason = f" ({esc(result.task_reason)})" if result.task_reason else ""
        items.append(("task", f"regression{reason}; a prediction is right when "
                              f"|pred − y| ≤ {reg.atol:g} + {reg.rtol:g} · |y|"))
    if i.old_prediction and not is_outcome(result):
        items.append(("predictions", f"OLD {esc(i.old_prediction)}; NEW {esc(i.new_prediction)}"))
    items.append(("engine", esc(result.engine)))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return _section("Inputs", f'<dl class="inputs">{body}</dl>')


#: What to say when no gate is set, by result kind (HTML, not escaped again).
NO_GATES = {
    "flips": ("No gate set: add <code>--max-nfr X</code>, <code>--min-btc X</code>, … (or "
              "<code>[tool.gaudit.flips]</code> in pyproject.toml) to fail the run on a "
              "regression."),
    "compat": ("No gate set: add <code>--require-compatible</code>, "
               "<code>--min-update-gain X</code>, … (or <code>[tool.gaudit.compat]</code> in "
               "pyproject.toml) to fail the run on an incompatible update."),
}


def _gates(result: Any) -> str:
    if not result.gates:
        return _section("Gates", f"<p>{NO_GATES[result.kind]}</p>")
    pills = {"pass": '<span class="pill pass">held</span>',
             "fail": '<span class="pill fail">BREACHED</span>',
             "n/a": '<span class="pill na">n/a (undefined, cannot fail)</span>'}
    rows = []
    for g in result.gates:
        value = esc(TYPESET.number(gate_value(g))) + esc(gate_where(g))
        klass = ' class="fail"' if g.status == "fail" else ""
        rows.append(f"<tr{klass}><td>{esc(g.name)}</td>"
                    f"<td>{esc(TYPESET.number(g.condition))}</td>"
                    f'<td class="num">{value}</td><td>{pills[g.status]}</td>'
                    f"<td>{esc(g.source)}</td></tr>")
    head = [("gate", False), ("condition", False), ("value", True), ("result", False),
            ("from", False)]
    return _section("Gates", _table(head, rows), gate_tally(result.gates))


def _metrics(result: Any, plot: str | None) -> str:
    rows = [f"<tr><td>{esc(label + detail)}</td>{_num(value)}{_num(ci)}</tr>"
            for _name, label, detail, value, ci in metric_rows(result, minus=TYPESET.minus)]
    table = _table([("metric", False), ("value", True),
                    (f"{result.confidence:.0%} interval", True)], rows)
    table += f"<p>{esc(mcnemar_sentence(result))}.</p>"
    if has_wilcoxon(result):
        table += f"<p>{esc(wilcoxon_sentence(result))}.</p>"
    if plot:
        caption = ("Old vs new error rate: the new error rate is the old one, minus the fixed "
                   "examples, plus the new mistakes")
        if is_outcome(result):
            caption = ("Old vs new fail rate: the new fail rate is the old one, minus the cases "
                       "that pass now, plus the new failures")
        figure = (f"<figure><figcaption>{caption} "
                  f"({result.confidence:.0%} Wilson intervals).</figcaption>{plot}</figure>")
        table = f'<div class="split"><div>{table}</div>{figure}</div>'
    return _section("Headline metrics", table)


def _error_deltas(result: Any, plots: dict[str, Any]) -> str | None:
    """Regression: old vs new absolute error per example and the distribution of ``d``."""
    reg = getattr(result, "regression", None)
    if result.task != "regression" or reg is None:
        return None
    figures = []
    if plots.get("error_scatter"):
        bins = len(reg.error_histogram.edges) - 1
        figures.append(
            "<figure><figcaption>Old vs new absolute error per example (examples per cell of "
            f"a {bins}×{bins} grid). Above the dashed diagonal the new model is further from "
            "the target, below it closer.</figcaption>"
            f"{plots['error_scatter']}</figure>")
    if plots.get("d_hist"):
        figures.append(
            "<figure><figcaption>Distribution of d = new error − old error: right of 0 "
            "(red) an example got worse, left of 0 (green) better; the dashed line is the "
            f"mean, the MAE delta.</figcaption>{plots['d_hist']}</figure>")
    if not figures:
        return None
    return _section("Error per example", f'<div class="plots">{"".join(figures)}</div>',
                    "absolute errors |pred − y| of the old and the new model")


def _group_rows(rows: Sequence[Any], mae: bool, threshold: float | None,
                f1: Any = None) -> list[str]:
    """Table rows of classes or slice values; ``f1(value)`` gives a class's old and new F1."""
    return [f"<tr>{_cell(r.value)}{_num(count(r.n))}{_num(count(r.counts.negative_flips))}"
            f"{_num(rate_text(r.negative_flip_rate, threshold))}"
            f"{_num(interval(r.negative_flip_rate_interval))}"
            f"{_num(count(r.counts.positive_flips))}"
            f"{_num(signed(r.mae_delta)) if mae else ''}"
            f"{''.join(_num(x) for x in f1(r.value)) if f1 else ''}</tr>" for r in rows]


def _group_table(result: Any, head: str, size: str, rows: Sequence[Any],
                 gate: str) -> tuple[str, str]:
    """The rows with negative flips: the ``MAX_ROWS`` with most, and every one that
    breaches ``gate``, at most ``MAX_LISTED``."""
    shown_rows, with_flips, bad = listed(rows, result, gate, MAX_ROWS, flipped=False)
    threshold = next((g.threshold for g in result.gates if g.name == gate), None)
    beyond = f" and the {count(bad)} beyond --{gate}" if bad else ""
    note = (f"{count(len(shown_rows))} of {count(with_flips)} shown (the top {MAX_ROWS}"
            f"{beyond}, at most {count(MAX_LISTED)}), every row in the JSON"
            if with_flips > len(shown_rows) else "")
    mae = any(getattr(r, "mae_delta", None) is not None for r in shown_rows)
    f1 = gate == "max-class-nfr" and class_f1(result, None) is not None
    cols = ([(head, False), (size, True), ("neg. flips", True), ("NFR", True),
             ("interval", True), ("pos. flips", True)] + [("MAE delta", True)] * mae
            + [("old F1", True), ("new F1", True)] * f1)
    rows = _group_rows(shown_rows, mae, threshold,
                       (lambda v: class_f1(result, v) or ()) if f1 else None)
    return _table(cols, rows), note


def _classes(result: Any, plot: tuple[str, str] | None) -> str | None:
    if not result.per_class:
        return None
    table, note = _group_table(result, "class", "support", result.per_class, "max-class-nfr")
    body = ""
    if plot:
        body += (f"<figure><figcaption>Negative flip rate per true class, with "
                 f"{result.confidence:.0%} Wilson intervals{esc(plot[1])}</figcaption>"
                 f"{plot[0]}</figure>")
    return _section("Classes, most negative flips first", body + table, note)


def _slices(result: Any, plots: dict[str, str | None]) -> list[str]:
    out = []
    for col, rows in result.slices.items():
        table, note = _group_table(result, _clean(col), "n", rows, "max-slice-nfr")
        plot = plots.get(col)
        body = f'<div class="split"><div>{table}</div><figure>{plot}</figure></div>' if plot \
            else table
        out.append(_section(f"Slices by {_clean(col)}", body, note))
    return out


def _matrix(result: Any, plot: tuple[str, str] | None) -> str | None:
    cells = result.flip_matrix
    if not cells:
        return None
    rows = [f"<tr>{_cell(o)}{_cell(n)}{_num(count(c))}</tr>" for o, n, c in cells[:12]]
    table = _table([("old prediction (true)", False), ("new prediction", False),
                    ("count", True)], rows)
    note = f"top 12 of {len(cells)} cells" if len(cells) > 12 else ""
    if plot:
        figure = (f"<figure><figcaption>Where the new mistakes went: old prediction (the "
                  f"true label) → new prediction{esc(plot[1])}</figcaption>{plot[0]}</figure>")
        body = f'<div class="split">{figure}<div>{table}</div></div>'
    else:
        body = table
    return _section("Negative-flip matrix", body, note)


def _worst(result: Any) -> str | None:
    flips = result.top_negative_flips
    if not flips:
        return None
    scores = worst_scores(result)
    slice_cols = list(dict.fromkeys(k for e in flips for k in e.slices))
    outcome = is_outcome(result)
    head = [("id", False)] + ([] if outcome else [
        ("target" if result.task == "regression" else "label", False),
        ("old pred", False), ("new pred", False)])
    head += [(x, True) for x in scores.head] if scores.shown else []
    head += [(_clean(c), False) for c in slice_cols]
    rows = []
    for e, cells in zip(flips[:MAX_LISTED], scores.cells, strict=False):
        row = _cell(e.id, 'id') + ("" if outcome else
                                   f"{_cell(e.label)}{_cell(e.old_pred)}{_cell(e.new_pred)}")
        if scores.shown:
            row += "".join(_num(c) for c in cells)
        row += "".join(_cell(e.slices.get(c)) for c in slice_cols)
        rows.append(f"<tr>{row}</tr>")
    note = scores.order if scores.shown else ""
    if len(flips) > MAX_LISTED:
        note = f"{note}; first {count(MAX_LISTED)} shown, every one in the JSON".lstrip("; ")
    title = "Passed before, fail now" if outcome else "Worst negative flips"
    return _section(f"{title} (top {count(len(flips))})", _table(head, rows), note)


def _what_if_plot(p: _Plotter, result: Any) -> str | None:
    from .whatif import plot

    return plot(p, result)


def _what_if(result: Any, plot: str | None) -> str | None:
    """``--what-if``: the sentence, the notes, the curve and the table of points."""
    if getattr(result, "what_if", None) is None:
        return None
    from . import whatif

    rows, total = whatif.table(result)
    body = f"<p><strong>{esc(whatif.sentence(result))}</strong></p>"
    body += "".join(f'<p class="warn" role="note">{esc(n)}</p>' for n in whatif.notes(result))
    head = [(h, i < len(whatif.HEAD) - 1) for i, h in enumerate(whatif.HEAD)]
    cells = ["<tr>" + "".join(_num(c) for c in r[:-1]) + f"<td>{esc(r[-1])}</td></tr>"
             for r in rows]
    table = _table(head, cells)
    if plot:
        figure = ("<figure><figcaption>Negative flip rate against error rate as the old "
                  "model's scores are blended in (α = their weight); the star is the smallest "
                  f"α meeting --max-nfr.</figcaption>{plot}</figure>")
        table = f'<div class="split">{figure}<div>{table}</div></div>'
    note = f"{len(rows)} of {total} points shown, every one in the JSON" if len(rows) < total \
        else ""
    return _section(TYPESET.number(whatif.title(result)), body + table, note)


def _flips_plots(result: Any) -> dict[str, Any]:
    """Every plot of a flips report, or a note when matplotlib is missing."""
    try:
        plotter = _Plotter()
    except ImportError:
        return {"missing": "Plots need matplotlib (pip install matplotlib)."}
    return plotter.render(lambda: {
        "error": _error_plot(plotter, result),
        "classes": _class_plot(plotter, result),
        "matrix": _matrix_plot(plotter, result),
        "slices": {col: _slice_plot(plotter, result, rows)
                   for col, rows in result.slices.items()},
        "what_if": _what_if_plot(plotter, result),
        **_regression_plots(plotter, result),
        "quality": _quality_plots(plotter, result),
    })


def _regression_plots(p: _Plotter, result: Any) -> dict[str, str | None]:
    reg = getattr(result, "regression", None)
    if result.task != "regression" or reg is None:
        return {}
    return {"error_scatter": _error_scatter_plot(p, reg), "d_hist": _d_plot(p, reg)}


def _quality(result: Any, plots: dict[str, Any]) -> str | None:
    from .html_quality import quality_section  # it builds on this module's helpers

    return quality_section(result, plots)


def _quality_plots(p: _Plotter, result: Any) -> dict[str, Any]:
    from .html_quality import quality_plots

    return quality_plots(p, result)


def _flips_sections(result: Any) -> list[str | None]:
    """The page body of a flips report, in reading order (``None``: nothing to show)."""
    plots = _flips_plots(result)
    sections: list[str | None] = [
        _cards(result),
        _gates(result),
        _metrics(result, plots.get("error")),
        _what_if(result, plots.get("what_if")),
        _error_deltas(result, plots),
        _quality(result, plots.get("quality", {})),
        _classes(result, plots.get("classes")),
        _matrix(result, plots.get("matrix")),
        *_slices(result, plots.get("slices", {})),
        _worst(result) or _section("Worst negative flips", f"<p>{esc(NO_FLIPS)}</p>"),
        _inputs(result),
    ]
    if "missing" in plots:
        sections.insert(1, f'<p class="note">{esc(plots["missing"])}</p>')
    for w in reversed(getattr(result, "warnings", ())):
        sections.insert(1, f'<p class="warn" role="alert"><strong>Warning:</strong> {esc(w)}</p>')
    return sections


# --------------------------------------------------------------------------- compat


def _left_out(result: Any) -> str:
    """The note under the compat plots naming the cases that could not be computed."""
    gone = [f"{name} ({c.reason or 'unavailable'})" for name, c in result.cases.items()
            if not c.available]
    return f" Left out (unavailable): {'; '.join(gone)}." if gone else ""


def _topk_plot(p: _Plotter, result: Any) -> str | None:
    """Top-k identification accuracy at k = 1, 5, 10: one line per available case."""
    cases = [(n, c) for n, c in result.cases.items()
             if c.available and any(c.topk.get(k) is not None for k in (1, 5, 10))]
    if not cases:
        return None
    fig = p.figure(4.8, 3.1)
    ax = fig.add_subplot()
    values = []
    # The case that matters is drawn last, on top of any line it coincides with.
    for name, c in sorted(cases, key=lambda nc: nc[0] == KEY_CASE):
        ks = [k for k in (1, 5, 10) if c.topk.get(k) is not None]
        ys = [c.topk[k] for k in ks]
        values += ys
        color, style, width, marker = CASE_STYLE.get(name, (COLORS["muted"], "-", 1.4, "o"))
        ax.plot(ks, ys, color=color, linestyle=style, linewidth=width, marker=marker,
                markersize=6 if name == KEY_CASE else 4.5, zorder=3 if name == KEY_CASE else 2,
                label=CASE_LEGEND.get(name, name))
    # Accuracies near 100% would be one flat line on a 0-100% axis: zoom to the smallest
    # "nice" range down from 100% that holds every value (the table gives the numbers).
    need = 1.25 * (1.0 - min(values))
    span, step = next(((r, t) for r, t in ((0.02, 0.005), (0.05, 0.01), (0.1, 0.02),
                                           (0.2, 0.05), (0.5, 0.1)) if r >= need), (1.0, 0.2))
    ax.set_ylim(1.0 - span, 1.0 + 0.04 * span)
    ax.set_yticks([1.0 - span + i * step for i in range(round(span / step) + 1)])
    ax.yaxis.set_major_formatter(p.percent(xmax=1, decimals=1 if step < 0.01 else 0))
    ax.set_xticks([1, 5, 10])
    ax.set_xlim(0.4, 10.6)
    ax.set_xlabel("k")
    ax.set_ylabel("top-k identification accuracy")
    ax.grid(axis="y", color="#eaecf0", linewidth=0.8)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    legend = list(CASE_LEGEND.values())
    order = sorted(range(len(labels)),
                   key=lambda i: legend.index(labels[i]) if labels[i] in legend else 99)
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    return p.svg(fig, "top-k accuracy of the four query/gallery cases")


def _map_plot(p: _Plotter, result: Any) -> str | None:
    """mAP of each case, grouped by gallery model: the old index, then the backfilled one."""
    groups = (("old gallery (not backfilled)", ("old/old", "new/old")),
              ("new gallery (backfilled)", ("old/new", "new/new")))
    fig = p.figure(4.8, 3.1)
    ax = fig.add_subplot()
    pos, names, any_bar = [], [], False
    for g, (_, members) in enumerate(groups):
        for j, name in enumerate(members):
            x = g * 2.6 + j
            pos.append(x)
            names.append(name)
            c = result.cases.get(name)
            color = CASE_STYLE.get(name, (COLORS["muted"],))[0]
            if c is None or not c.available or c.map is None:
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8,
                        color=COLORS["muted"])
                continue
            any_bar = True
            ax.bar(x, c.map, width=0.8, color=color,
                   edgecolor="#101828" if name == KEY_CASE else color,
                   linewidth=1.2 if name == KEY_CASE else 0)
            ax.text(x, c.map + 0.015, pct(c.map, 1), ha="center", va="bottom", fontsize=8,
                    color="#344054")
    if not any_bar:
        return None
    ax.set_xticks(pos, names)
    for g, (title, _) in enumerate(groups):
        ax.text(g * 2.6 + 0.5, -0.16, title, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=8.5, color="#344054")
    ax.set_xlim(-0.7, 2.6 + 1.7)
    ax.set_ylim(0, 1.1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.yaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
    ax.set_ylabel("mean average precision")
    ax.grid(axis="y", color="#eaecf0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(axis="x", length=0)
    return p.svg(fig, "mAP of the four query/gallery cases, grouped by gallery")


def _compat_plots(result: Any) -> dict[str, Any]:
    try:
        plotter = _Plotter()
    except ImportError:
        return {"missing": "Plots need matplotlib (pip install matplotlib)."}
    return plotter.render(lambda: {"topk": _topk_plot(plotter, result),
                                   "map": _map_plot(plotter, result)})


def _compat_cards(result: Any) -> str:
    cross, base, own = (result.cases.get(n) for n in (KEY_CASE, "old/old", "new/new"))
    evaluated = result.queries - result.queries_without_positive
    flips = result.retrieval_negative_flips

    def top1(c: Any) -> str:
        return "n/a" if c is None or not c.available else pct(c.topk.get(1))

    cards = [
        _card("compatible", "yes" if result.compatible else "no", result.reason(),
              _gate_state(result, "compatible")),
        _card("new/old top-1", top1(cross), f"old/old {top1(base)} · new/new {top1(own)}",
              _gate_state(result, "cross_top1")),
        _card(f"update gain ({criterion_label(result)})", gain(result.update_gain),
              "1 = as good as a full backfill", _gate_state(result, "update_gain")),
        _card("queries that break", count(flips),
              "new/old unavailable" if flips is None else
              f"{pct(result.retrieval_negative_flip_rate)} of {count(evaluated)} queries",
              _gate_state(result, "retrieval_negative_flip_rate")),
        _gates_card(result),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _topk_cell(c: Any, k: int) -> str:
    """A top-k accuracy with its Wilson interval below it."""
    ci = c.intervals.get(k)
    below = f'<br><span class="note">{esc(interval(ci))}</span>' if ci else ""
    return f'<td class="num">{esc(pct(c.topk.get(k)))}{below}</td>'


def _cases(result: Any, plots: dict[str, Any]) -> str:
    rows = []
    for name, c in result.cases.items():
        label = esc(CASE_LABELS.get(name, ""))
        klass = ' class="key"' if name == KEY_CASE else ""
        if not c.available:
            why = f": {esc(c.reason)}" if c.reason else ""
            rows.append(f"<tr{klass}><td>{esc(name)}</td><td>{label}<br>"
                        f'<span class="note">unavailable{why}</span></td>'
                        + _num("n/a") * 4 + "</tr>")
            continue
        cells = "".join(_topk_cell(c, k) for k in (1, 5, 10)) + _num(pct(c.map))
        rows.append(f"<tr{klass}><td>{esc(name)}</td><td>{label}</td>{cells}</tr>")
    table = _table([("case", False), ("query model / gallery model", False), ("top-1", True),
                    ("top-5", True), ("top-10", True), ("mAP", True)], rows)
    table += (f'<p class="note">Under each top-k accuracy: its {result.confidence:.0%} Wilson '
              "interval.</p>")
    if judged(result):
        rel = []
        for name, c in result.cases.items():
            klass = ' class="key"' if name == KEY_CASE else ""
            values = [c.relevance.get(key) if c.available else None
                      for _, key in RELEVANCE_COLUMNS]
            values.append(c.map if c.available else None)
            rel.append(f"<tr{klass}><td>{esc(name)}</td>"
                       + "".join(_num("n/a" if v is None else f"{v:.4f}") for v in values)
                       + "</tr>")
        table += ("<h3>Relevance (judgments; mean over queries with a relevant document)</h3>"
                  + _table([("case", False), *((h, True) for h, _ in RELEVANCE_COLUMNS),
                            ("mAP", True)], rel))
    figures = []
    if plots.get("topk"):
        figures.append("<figure><figcaption>Top-k identification accuracy of each case; "
                       "new/old (new queries against the old index) is the one that must not "
                       f"fall below old/old.</figcaption>{plots['topk']}</figure>")
    if plots.get("map"):
        figures.append("<figure><figcaption>Mean average precision of each case, grouped by "
                       f"the gallery it searches.</figcaption>{plots['map']}</figure>")
    body = table
    note = _left_out(result)
    if figures:
        body += f'<div class="plots">{"".join(figures)}</div>'
    if note and figures:
        body += f'<p class="note">{esc(note.strip())}</p>'
    return _section("Retrieval: the four cases", body,
                    f"{result.metric} similarity · query model / gallery model")


def _compatibility(result: Any) -> str:
    crit = criterion_label(result)
    flips = result.retrieval_negative_flips
    evaluated = result.queries - result.queries_without_positive
    rows = [
        (f"compatible ({crit} new/old > old/old)",
         f"{'yes' if result.compatible else 'no'}: {result.reason()}"),
        (f"update gain ({crit}): (new/old − old/old) / (new/new − old/old)",
         gain(result.update_gain)),
        ("retrieval negative flips: top-1 relevant in old/old, not in new/old"
         if judged(result) else
         "retrieval negative flips: right at top-1 in old/old, wrong in new/old",
         "n/a (new/old unavailable)" if flips is None else
         f"{count(flips)} of {count(evaluated)} queries "
         f"({pct(result.retrieval_negative_flip_rate)})"),
    ]
    if result.criterion_test is not None:
        rows.insert(1, (f"paired test of the criterion ({crit} new/old − old/old)",
                        result.significance()))
    body = _table([("metric", False), ("value", False)],
                  [f"<tr><td>{esc(a)}</td><td>{esc(TYPESET.number(b))}</td></tr>"
                   for a, b in rows])
    body += ("<p class=\"note\">Update gain: 1 means new queries against the old index do as "
             "well as after a full backfill, 0 no better than the old model, below 0 worse "
             "than the old model (Shen et al., CVPR 2020).</p>")
    return _section("Update gain and negative flips", body)


def _breaking(result: Any, where: str | None = None, case: str = KEY_CASE) -> str:
    """The queries that break; ``where`` names the pair of versions (``case`` its cross
    case, ``V3/V1``) when the result covers more than two."""
    flips = result.retrieval_negative_flips
    rows = result.breaking_queries
    title = "Queries that break"
    old_case = "old/old" if case == KEY_CASE else f"{case.split('/')[1]}/{case.split('/')[1]}"
    if flips is None:
        reason = result.cases[KEY_CASE].reason or "unavailable"
        return _section(title, f"<p>Cannot be counted: the {esc(case)} case is unavailable "
                               f"({esc(reason)}).</p>", where or "")
    if not rows:
        said = (f"{flips} queries break (none listed: <code>--top 0</code>)." if flips else
                f"No query breaks: every query right at top-1 in {esc(old_case)} is still "
                f"right in {esc(case)}.")
        return _section(title, f"<p>{said}</p>", where or "")
    labels = not judged(result)  # no identity labels with --qrels
    body = [f"<tr>{_cell(b.id, 'id')}{_cell(b.label) if labels else ''}"
            f"{_num(count(b.new_old_rank) if b.new_old_rank else 'none')}"
            f"{_cell(b.new_old_top1_id, 'id')}{_cell(b.new_old_top1_label)}</tr>"
            for b in rows[:MAX_LISTED]]
    head = [(h, "rank" in h) for h in breaking_headings(result, case)]
    note = (f"right at top-1 in {old_case}, wrong in {case}; deepest first match first"
            if where is None else f"{where}; deepest first match first")
    return _section(f"{title} (worst {count(len(rows))} of {count(flips)})", _table(head, body),
                    note)


def _compat_inputs(result: Any) -> str:
    i = result.inputs
    mode = ("split column: query / gallery" if i.mode == "split"
            else "leave-one-out: every item queries all the others")
    items = [
        ("old", f"{esc(i.old_path)} ({count(i.old_rows)} rows, dim {i.old_dim})"),
        ("new", f"{esc(i.new_path)} ({count(i.new_rows)} rows, dim {i.new_dim})"),
        ("items", f"{count(i.matched)} matched, {count(i.unmatched_old)} only in OLD, "
                  f"{count(i.unmatched_new)} only in NEW"),
        ("queries", f"<strong>{count(result.queries)} queries</strong> vs {count(i.gallery)} "
                    f"gallery items ({esc(mode)}); {count(result.queries_without_positive)} "
                    f"{without_match(result)} (excluded from the metrics)"),
        ("similarity", f"{esc(result.metric)}; criterion {esc(criterion_label(result))}"),
    ]
    if judged(result):
        items.insert(4, ("judgments", esc(qrels_summary(result))))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return _section("Inputs", f'<dl class="inputs">{body}</dl>')


# --------------------------------------------------------------------------- versions


def _heatmap(p: _Plotter, result: Any, key: str, title: str) -> str | None:
    """The n x n matrix as a heatmap: query version rows, gallery version columns, each
    cell labelled; the cells of failing pairs outlined in red."""
    import numpy as np

    v = result.versions
    m = v.top1 if key == "top1" else v.map
    grid = np.array([[np.nan if x is None else x for x in row] for row in m], dtype=float)
    if np.isnan(grid).all():
        return None
    n = v.n
    side = 0.62
    fig = p.figure(max(3.4, 1.5 + side * n), max(2.8, 1.2 + side * n))
    ax = fig.add_subplot()
    # Vector cells (pcolormesh), not a raster image; a case that could not be computed
    # (dimensions differ) stays blank and reads "n/a".
    ax.pcolormesh(np.ma.masked_invalid(grid), cmap="Blues", vmin=0, vmax=1.15,
                  edgecolors="#ffffff", linewidth=1.5)
    names = [f"V{k + 1}" for k in range(n)]
    ax.set_xticks(np.arange(n) + 0.5, names)
    ax.set_yticks(np.arange(n) + 0.5, names)
    ax.tick_params(which="both", length=0)
    ax.set_xlim(0, n)
    ax.set_ylim(n, 0)
    for name in ("top", "right", "left", "bottom"):
        ax.spines[name].set_visible(False)
    ax.set_xlabel("gallery version")
    ax.set_ylabel("query version")
    from matplotlib.patches import Rectangle

    failing = {(pr.query_index, pr.gallery_index) for pr in v.failing}
    for (q, g), x in np.ndenumerate(grid):
        text = "n/a" if np.isnan(x) else pct(float(x), 1)
        dark = not np.isnan(x) and x > 0.6
        ax.text(g + 0.5, q + 0.5, text, ha="center", va="center", fontsize=8,
                color="#ffffff" if dark else "#101828")
        if (q, g) in failing:
            ax.add_patch(Rectangle((g + 0.05, q + 0.05), 0.9, 0.9, fill=False,
                                   edgecolor=COLORS["nfr"], linewidth=2.2))
    return p.svg(fig, f"{title} heatmap, query version x gallery version")


def _versions_plots(result: Any) -> dict[str, Any]:
    from .common_versions import MATRICES

    try:
        plotter = _Plotter()
    except ImportError:
        return {"missing": "Plots need matplotlib (pip install matplotlib)."}
    return plotter.render(lambda: {key: _heatmap(plotter, result, key, title)
                                   for key, title in MATRICES})


def _versions_cards(result: Any) -> str:
    v = result.versions
    held = len(v.pairs) - len(v.failing)
    s = v.summary_pair
    worst = min(v.pairs, key=lambda pr: (pr.audit.criterion_delta is not None,
                                         pr.audit.criterion_delta or 0.0))
    cards = [
        _card("compatible", "yes" if result.compatible else "no",
              f"{held} of {len(v.pairs)} pairs hold", _gate_state(result, "compatible")),
        _card("worst pair", f"{worst.query}/{worst.gallery}", worst.reason()),
        _card(f"update gain {s.query}/{s.gallery}", gain(result.update_gain),
              "newest queries, oldest gallery", _gate_state(result, "update_gain")),
        _card(f"queries that break {s.query}/{s.gallery}",
              count(result.retrieval_negative_flips),
              f"{pct(result.retrieval_negative_flip_rate)} of "
              f"{count(result.queries - result.queries_without_positive)} queries",
              _gate_state(result, "retrieval_negative_flip_rate")),
        _gates_card(result),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _versions_matrix(result: Any, plots: dict[str, Any]) -> str:
    from .common_versions import MATRICES, matrix_note, matrix_rows

    v = result.versions
    failing = {(pr.query_index, pr.gallery_index) for pr in v.failing}
    parts = []
    for key, title in MATRICES:
        rows = []
        for q, row in enumerate(matrix_rows(v, key)):
            cells = "".join(
                f'<td class="num"><strong>{esc(c)}</strong></td>' if q == g else
                f'<td class="num">{esc(c)}{" ✗" if (q, g) in failing else ""}</td>'
                for g, c in enumerate(row))
            rows.append(f"<tr><td>V{q + 1} queries</td>{cells}</tr>")
        head = [(f"{title}: query \\ gallery", False),
                *((f"V{k + 1}", True) for k in range(v.n))]
        figure = ""
        if plots.get(key):
            figure = (f"<figure><figcaption>{esc(title)}: rows are query versions, columns "
                      "gallery versions; outlined in red: a pair that fails the criterion."
                      f"</figcaption>{plots[key]}</figure>")
        parts.append(f'<div class="split"><div>{_table(head, rows)}</div>'
                     f"<div>{figure}</div></div>")
    body = "".join(parts) + f'<p class="note">{esc(matrix_note())}; ✗: the pair fails.</p>'
    return _section(f"Versions: {v.n} x {v.n} matrix", body,
                    f"{result.metric} similarity · {v.n * v.n} searches")


def _versions_pairs(result: Any) -> str:
    from .common_versions import criterion_sentence, pair_rows

    rows = []
    for r in pair_rows(result):
        pill = ('<span class="pill pass">yes</span>' if r.compatible else
                '<span class="pill fail">no</span>')
        # The reason adds to the numbers only when there are none: dimensions differ.
        why = (f'<br><span class="note">{esc(r.reason)}</span>' if r.reason.startswith("dim")
               else "")
        p = esc(r.p_value) + ('<br><span class="note">not significant</span>'
                              if r.significant is False else "")
        ci = f'<br><span class="note">{esc(TYPESET.number(r.interval))}</span>' if r.interval \
            else ""
        klass = "" if r.compatible else ' class="fail"'
        rows.append(f"<tr{klass}><td>{esc(r.pair)}</td><td>{pill}{why}</td>"
                    f"{_num(r.cross)}{_num(r.base)}"
                    f'<td class="num">{esc(TYPESET.number(r.delta))}{ci}</td>'
                    f'<td class="num">{p}</td>{_num(r.gain)}'
                    f"{_num(r.flips)}</tr>")
    head = [("pair", False), ("compatible", False), ("Vj/Vi", True), ("Vi/Vi", True),
            ("difference", True), ("p", True), ("gain", True), ("breaks", True)]
    body = _table(head, rows) + (
        f'<p class="note">{esc(criterion_label(result))} of version j\'s queries on version '
        f"i's gallery (Vj/Vi) and of version i on its own (Vi/Vi); under each difference its "
        f"{result.confidence:.0%} interval; p: the paired test of the criterion; breaks: "
        "queries right at top-1 in Vi/Vi, wrong in Vj/Vi. "
        f"{esc(criterion_sentence(result))}</p>")
    return _section("Pairs: every later version against every earlier gallery", body)


def _versions_inputs(result: Any) -> str:
    from .common_versions import inputs_lines

    *files, items = inputs_lines(result)
    entries = [(f"V{k + 1}", esc(line.split(" ", 1)[1])) for k, line in enumerate(files)]
    entries += [("items", esc(items)),
                ("similarity", f"{esc(result.metric)}; criterion "
                               f"{esc(criterion_label(result))}")]
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in entries)
    return _section("Inputs", f'<dl class="inputs">{body}</dl>')


def _versions_sections(result: Any) -> list[str | None]:
    """The page body of a compat report over three or more versions."""
    from .common_versions import summary_title

    plots = _versions_plots(result)
    s = result.versions.summary_pair
    sections: list[str | None] = [
        _versions_cards(result),
        _gates(result),
        _versions_matrix(result, plots),
        _versions_pairs(result),
        _breaking(result, summary_title(result), f"{s.query}/{s.gallery}"),
        _versions_inputs(result),
    ]
    if "missing" in plots:
        sections.insert(1, f'<p class="note">{esc(plots["missing"])}</p>')
    return sections


def _compat_sections(result: Any) -> list[str | None]:
    """The page body of a compat report, in reading order."""
    if getattr(result, "versions", None) is not None:
        return _versions_sections(result)
    plots = _compat_plots(result)
    sections: list[str | None] = [
        _compat_cards(result),
        _gates(result),
        _cases(result, plots),
        _compatibility(result),
        _breaking(result),
        _compat_inputs(result),
    ]
    if "missing" in plots:
        sections.insert(1, f'<p class="note">{esc(plots["missing"])}</p>')
    return sections


#: Page bodies by result kind.
SECTIONS: dict[str, Callable[[Any], list[str | None]]] = {
    "flips": _flips_sections, "compat": _compat_sections,
}


def _plot_css(body: str) -> str:
    """The smallest width of each plot on the page (see :meth:`_Plotter.svg`)."""
    floors = sorted({int(w) for w in re.findall(r'<svg class="plot min(\d+)"', body)})
    rules = " ".join(f"svg.min{w} {{ min-width: {w}px; }}" for w in floors)
    return f"\n@media screen {{ {rules} }}" if rules else ""


def render(result: Any) -> str:
    """Render ``result`` as one self-contained HTML page."""
    build = SECTIONS.get(result.kind)
    if build is None:
        raise NotImplementedError(f"no HTML report for {result.kind!r} results yet")
    body = "\n".join(s for s in build(result) if s)
    where = " · ".join(esc(w) for w in footer_facts(result))
    footer = (f"<footer>graceful-audit {esc(result.tool_version)} · {where}"
              " · the JSON result (<code>--format json</code>) holds "
              "every number · this file loads nothing from the network</footer>")
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="graceful-audit {esc(result.tool_version)}">\n'
        f"<title>gaudit {esc(result.kind)}: {esc(verdict(result, TYPESET), 200)}</title>\n"
        f"<style>{CSS}{_plot_css(body)}\n</style>\n</head>\n<body>\n{_header(result)}\n"
        f'<main class="wrap">\n{body}\n{footer}\n</main>\n</body>\n</html>\n'
    )
    # Data never starts a line (line breaks in it are escaped), but "##[" anywhere in a
    # line of a CI log is a legacy GitHub Actions workflow command: "&#91;" reads the same.
    return page.replace("##[", "##&#91;")
