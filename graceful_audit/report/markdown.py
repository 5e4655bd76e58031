"""Markdown report: compact, for a pull-request comment or a GitHub job summary.

Sections, in the order a reviewer reads them. Flips: the verdict (bold), the inputs line,
the headline metrics with their intervals, McNemar's test, the gates, the classes and
slices with the most negative flips, and the worst negative flips. Compat: the verdict, the
inputs line, the four retrieval cases, the update gain and retrieval negative flips, the
gates, and the queries that break.

Every value that comes from the data (ids, labels, class and slice names, paths) goes
through :func:`md_escape`, so an id such as ``a|b``, ``<script>`` or a 5,000-character
string can neither break a table nor inject markup. The numbers are formatted by
:mod:`.common`, the wording is shared with the terminal report.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .common import (
    CASE_LABELS,
    KEY_CASE,
    NO_FLIPS,
    by_negative_flips,
    criterion_label,
    gain,
    gate_value,
    gate_where,
    interval,
    mcnemar_sentence,
    metric_rows,
    pct,
    signed,
    verdict,
    wilcoxon_sentence,
    worst_scores,
)

#: Values longer than this many characters are cut, with an ellipsis.
MAX_CELL = 80
#: Rows of classes and of slice values shown (every row is in the JSON and HTML reports).
SHOW = 5

# Characters with an inline meaning in GitHub-flavoured Markdown: escapes, code spans,
# emphasis, links/images, table cells, strikethrough and math. ``<``, ``>`` and ``&`` are
# HTML-escaped instead; line-start markers (``#``, ``-``, ``>``) cannot occur because a
# value never starts a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
# Every line break Markdown (or a browser) may honour, and the other control characters.
_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x85\u2028\u2029\t]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Keep data from turning into links or notifications: ``https://``, ``www.``, ``@user``.
_AUTOLINK = re.compile(r"(?<=[A-Za-z]):(?=//)|(?<=www)\.", re.IGNORECASE)


def md_escape(value: Any, limit: int | None = MAX_CELL) -> str:
    """Make ``value`` safe as inline Markdown text, e.g. inside a table cell.

    Line breaks become spaces, other control characters are dropped, values longer than
    ``limit`` characters are cut with an ellipsis, Markdown specials (``\\ ` * _ [ ] | ~ $``)
    are backslash-escaped, ``< > &`` become HTML entities, and autolinks (``http://``,
    ``www.``) and ``@mentions`` are defused. ``None`` gives an empty string.

    >>> md_escape("a|b <script>")
    'a\\\\|b &lt;script&gt;'
    >>> md_escape("x" * 100, limit=10)
    'xxxxxxxxx…'
    """
    if value is None:
        return ""
    text = _CONTROL.sub("", _BREAKS.sub(" ", str(value)))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    text = html.escape(text, quote=False)
    # A zero-width space after "@" stops GitHub from notifying a user named in the data.
    return text.replace("@", "@&#8203;")


def _group_value(value: str | None) -> str:
    return "*(missing)*" if value is None else md_escape(value)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    """A GitHub table; cells must already be escaped. ``align`` is one of ``l``/``r`` a column."""
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell if cell else " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ranked(rows: Sequence[Any]) -> list[Any]:
    """Groups with at least one negative flip, most negative flips first."""
    ranked = sorted(rows, key=by_negative_flips)
    return [r for r in ranked if r.counts.negative_flips > 0]


def _verdict(result: Any) -> str:
    mark = "❌ " if result.breached else "✅ " if result.gates else ""
    return f"**{mark}{md_escape(verdict(result), limit=None)}**"


def _inputs(result: Any) -> str:
    i = result.inputs
    parts = [f"OLD {md_escape(i.old_path, 120)} ({i.old_rows} rows)",
             f"NEW {md_escape(i.new_path, 120)} ({i.new_rows} rows)"]
    if i.labels_path:
        parts.append(f"LABELS {md_escape(i.labels_path, 120)} ({i.labels_rows} rows, "
                     f"{i.unused_labels} unused)")
    rows = (f"{i.matched} matched, {i.unmatched_old} only in OLD, {i.unmatched_new} only in "
            f"NEW, {i.missing_label} without label: **{i.audited} audited**")
    text = "**Inputs:** " + "; ".join(parts) + "  \n**Rows:** " + rows
    if getattr(i, "old_prediction", ""):
        text += (f"  \n**Predictions:** OLD {md_escape(i.old_prediction, 300)}; "
                 f"NEW {md_escape(i.new_prediction, 300)}")
    reg = getattr(result, "regression", None)
    if reg is not None:
        reason = f" ({md_escape(result.task_reason, 200)})" if result.task_reason else ""
        text += (f"  \n**Task:** regression{reason}; a prediction is right when "
                 f"\\|pred - y\\| &lt;= {reg.atol:g} + {reg.rtol:g} \\* \\|y\\|")
    return text


def _metrics(result: Any) -> str:
    rows = []
    for name, label, detail, value, ci in metric_rows(result):
        if name == "negative_flip_rate":  # the headline number, in bold
            label, value = f"**{label}**", f"**{value}**"
        rows.append([label + detail, value, ci])
    head = ["metric", "value", f"{result.confidence:.0%} interval"]
    return "#### Headline metrics\n\n" + _table(head, rows, "lrr")


#: What to say when no gate is set, by result kind.
NO_GATES = {
    "flips": ("No gate set: add `--max-nfr X`, `--min-btc X`, ... (or `[tool.gaudit.flips]` "
              "in pyproject.toml) to fail the run on a regression."),
    "compat": ("No gate set: add `--require-compatible`, `--min-update-gain X`, ... (or "
               "`[tool.gaudit.compat]` in pyproject.toml) to fail the run on an incompatible "
               "update."),
}


def _gates(result: Any) -> str:
    if not result.gates:
        return "#### Gates\n\n" + NO_GATES[result.kind]
    status = {"pass": "✅ held", "fail": "❌ **breached**", "n/a": "⚠️ n/a (undefined)"}
    rows = []
    for g in result.gates:
        value = gate_value(g) + md_escape(gate_where(g), limit=MAX_CELL + 4)
        rows.append([md_escape(g.name), md_escape(g.condition), value, status[g.status],
                     md_escape(g.source)])
    return "#### Gates\n\n" + _table(["gate", "condition", "value", "result", "from"], rows,
                                     "llrll")


def _groups(title: str, head: str, size: str, rows: Sequence[Any]) -> str | None:
    ranked = _ranked(rows)
    if not ranked:
        return None
    shown = ranked[:SHOW]
    note = (f" (top {len(shown)} of {len(ranked)} with negative flips)"
            if len(ranked) > len(shown) else "")
    mae = any(getattr(r, "mae_delta", None) is not None for r in shown)
    body = [[_group_value(r.value), str(r.n), str(r.counts.negative_flips),
             pct(r.negative_flip_rate), interval(r.negative_flip_rate_interval),
             str(r.counts.positive_flips), *([signed(r.mae_delta)] if mae else [])]
            for r in shown]
    cols = [head, size, "neg. flips", "NFR", "interval", "pos. flips"] + ["MAE delta"] * mae
    table = _table(cols, body, "lrrrrr" + "r" * mae)
    return f"#### {title}{note}\n\n{table}"


def _worst(result: Any) -> str | None:
    flips = result.top_negative_flips
    if not flips:
        return None
    scores = worst_scores(result)
    head = ["id", "target" if result.task == "regression" else "label", "old pred", "new pred"]
    head += list(scores.head) if scores.shown else []
    rows = []
    for e, cells in zip(flips, scores.cells, strict=True):
        row = [md_escape(e.id), md_escape(e.label), md_escape(e.old_pred), md_escape(e.new_pred)]
        if scores.shown:
            row += list(cells)
        rows.append(row)
    first = f", {scores.order}" if scores.shown else ""
    table = _table(head, rows, "llll" + "rr" * scores.shown)
    return f"#### Worst negative flips (top {len(flips)}{first})\n\n{table}"


def _footer(result: Any) -> str:
    engine = getattr(result, "engine", None)
    where = f"engine {md_escape(engine)}" if engine else f"similarity {md_escape(result.metric)}"
    return (f"<sub>graceful-audit {md_escape(result.tool_version)} · {where} · every number "
            "is in `--format json`</sub>")


def _flips_sections(result: Any) -> list[str | None]:
    """The sections of a flips report, in reading order (``None``: nothing to show)."""
    sections: list[str | None] = [
        "### gaudit flips",
        _verdict(result),
        *(f"> ⚠️ **Warning:** {md_escape(w, limit=None)}" for w in getattr(result, "warnings", ())),
        _inputs(result),
        _metrics(result),
        md_escape(mcnemar_sentence(result), limit=None),
        md_escape(wilcoxon_sentence(result), limit=None)
        if getattr(result, "regression", None) is not None else None,
        _gates(result),
        _groups("Classes with the most negative flips", "class", "support", result.per_class),
    ]
    for col, rows in result.slices.items():
        sections.append(_groups(f"Slices by {md_escape(col)}", md_escape(col), "n", rows))
    sections += [_worst(result) or NO_FLIPS, _footer(result)]
    return sections


# --------------------------------------------------------------------------- compat


def _compat_inputs(result: Any) -> str:
    i = result.inputs
    mode = ("split column" if i.mode == "split"
            else "leave-one-out: every item queries all the others")
    return (f"**Inputs:** OLD {md_escape(i.old_path, 120)} ({i.old_rows} rows, dim "
            f"{i.old_dim}); NEW {md_escape(i.new_path, 120)} ({i.new_rows} rows, dim "
            f"{i.new_dim})  \n"
            f"**Items:** {i.matched} matched, {i.unmatched_old} only in OLD, "
            f"{i.unmatched_new} only in NEW: **{result.queries} queries** vs {i.gallery} "
            f"gallery items ({mode}); {result.queries_without_positive} queries without a "
            "match in the gallery (excluded from the metrics)  \n"
            f"**Similarity:** {md_escape(result.metric)}; criterion "
            f"{criterion_label(result)} (compatible when new/old beats old/old)")


def _cases(result: Any) -> str:
    rows = []
    for name, c in result.cases.items():
        label = md_escape(CASE_LABELS.get(name, ""))
        shown = f"**{md_escape(name)}**" if name == KEY_CASE else md_escape(name)
        if not c.available:
            why = f": {md_escape(c.reason)}" if c.reason else ""
            rows.append([shown, f"{label} · *unavailable{why}*", "n/a", "n/a", "n/a", "n/a"])
            continue
        rows.append([shown, label, *(pct(c.topk.get(k)) for k in (1, 5, 10)), pct(c.map)])
    head = ["case", "query model / gallery model", "top-1", "top-5", "top-10", "mAP"]
    return (f"#### Retrieval ({md_escape(result.metric)}; query model / gallery model)\n\n"
            + _table(head, rows, "llrrrr"))


def _compatibility(result: Any) -> str:
    crit = criterion_label(result)
    answer = "yes" if result.compatible else "no"
    flips = result.retrieval_negative_flips
    evaluated = result.queries - result.queries_without_positive
    shown_flips = ("n/a (new/old unavailable)" if flips is None else
                   f"**{flips}** of {evaluated} queries "
                   f"({pct(result.retrieval_negative_flip_rate)})")
    rows = [
        [f"compatible ({crit} new/old &gt; old/old)",
         f"**{answer}**: {md_escape(result.reason(), limit=None)}"],
        [f"update gain ({crit}): (new/old - old/old) / (new/new - old/old)",
         f"**{gain(result.update_gain)}**"],
        ["retrieval negative flips: right at top-1 in old/old, wrong in new/old",
         shown_flips],
    ]
    note = ("1 means new queries against the old index do as well as after a full backfill, "
            "0 no better than the old model, below 0 worse than the old model")
    return ("#### Update gain and negative flips\n\n" + _table(["metric", "value"], rows, "ll")
            + f"\n\nUpdate gain: {note}.")


def _breaking(result: Any) -> str:
    flips = result.retrieval_negative_flips
    rows = result.breaking_queries
    if flips is None:
        reason = result.cases[KEY_CASE].reason or "unavailable"
        return ("#### Queries that break\n\nCannot be counted: the new/old case is "
                f"unavailable ({md_escape(reason, limit=None)}).")
    if not rows:
        said = (f"{flips} queries break (none listed: `--top 0`)." if flips else
                "No query breaks: every query right at top-1 in old/old is still right in "
                "new/old.")
        return f"#### Queries that break\n\n{said}"
    body = [[md_escape(b.id), md_escape(b.label), str(b.new_old_rank or "none"),
             md_escape(b.new_old_top1_id), md_escape(b.new_old_top1_label)] for b in rows]
    head = ["query id", "label", "new/old rank of first match", "new/old top-1 id",
            "its label"]
    title = (f"#### Queries that break (worst {len(rows)} of {flips}: deepest first match "
             "in new/old first)")
    return f"{title}\n\n{_table(head, body, 'llrll')}"


def _compat_sections(result: Any) -> list[str | None]:
    """The sections of a compat report, in reading order."""
    return [
        "### gaudit compat",
        _verdict(result),
        _compat_inputs(result),
        _cases(result),
        _compatibility(result),
        _gates(result),
        _breaking(result),
        _footer(result),
    ]


#: Section builders by result kind.
SECTIONS: dict[str, Callable[[Any], list[str | None]]] = {
    "flips": _flips_sections, "compat": _compat_sections,
}


def render(result: Any) -> str:
    """Render ``result`` as GitHub-flavoured Markdown (one string, ending with a newline)."""
    build = SECTIONS.get(result.kind)
    if build is None:
        raise NotImplementedError(f"no Markdown report for {result.kind!r} results yet")
    return "\n\n".join(s for s in build(result) if s) + "\n"
