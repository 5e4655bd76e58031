"""Markdown report: compact, for a pull-request comment or a GitHub job summary.

Sections, in the order a reviewer reads them. Flips: the verdict (bold), the inputs line,
the headline metrics with their intervals, McNemar's test, the gates, the classes and
slices with the most negative flips, and the worst negative flips. Compat: the verdict, the
inputs line, the four retrieval cases, the update gain and retrieval negative flips, the
gates, and the queries that break.

Every value that comes from the data (ids, labels, class and slice names, paths) goes
through :func:`md_escape`, so an id such as ``a|b``, ``<script>``, ``#123``, ``@user``, a
bidi override or a 5,000-character string can neither break a table, inject markup, link
an issue nor notify anyone. The numbers are formatted by :mod:`.common`, the wording is
shared with the terminal report.

GitHub holds at most 65,536 characters in a comment (1 MiB in a job summary): the whole
report stays within :data:`MAX_CHARS`. When the tables of classes, slice values and worst
flips would not fit, they are cut (``... N more in the JSON``), whatever ``--top`` or the
number of classes; the classes and slice values that breach a gate come before the others.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .common import (
    CASE_LABELS,
    KEY_CASE,
    NO_FLIPS,
    RELEVANCE_COLUMNS,
    breaking_headings,
    ci_safe,
    class_f1,
    count,
    criterion_label,
    footer_facts,
    gain,
    gate_tally,
    gate_value,
    gate_where,
    has_wilcoxon,
    interval,
    is_outcome,
    judged,
    listed,
    mcnemar_sentence,
    metric_rows,
    outcome_text,
    pct,
    qrels_summary,
    quality_notes,
    quality_rows,
    rate_text,
    rows_text,
    shown,
    signed,
    verdict,
    wilcoxon_sentence,
    without_match,
    worst_scores,
)

#: Values longer than this many characters are cut, with an ellipsis.
MAX_CELL = 80
#: Rows of classes and of slice values shown (every row is in the JSON and HTML reports),
#: besides those that breach ``--max-class-nfr`` or ``--max-slice-nfr``.
SHOW = 5
#: The longest report, in UTF-16 code units as GitHub counts: a comment holds 65,536; the
#: rest is left for what a bot or workflow writes around the report.
MAX_CHARS = 60_000
#: Rows a table is built with at most: more could never fit (a row takes 16 characters or
#: more), so 100,000 classes or ``--top 100000`` cost no time.
_MOST_ROWS = MAX_CHARS // 16

# Characters with an inline meaning in GitHub-flavoured Markdown: escapes, code spans,
# emphasis, links/images, table cells, strikethrough and math. ``<``, ``>`` and ``&`` are
# HTML-escaped instead; line-start markers (``#``, ``-``, ``>``) cannot occur because a
# value never starts a line (line breaks in data are written ``\n``).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
# Keep data from turning into links or notifications: ``https://``, ``www.``.
_AUTOLINK = re.compile(r"(?<=[A-Za-z]):(?=//)|(?<=www)\.", re.IGNORECASE)
# References GitHub links to issues and pull requests (``#123``, ``owner/repo#123``,
# ``GH-123``) and mentions (``@user``, ``@org/team``): a zero-width space defuses them.
_REFERENCE = re.compile(r"#(?=\d)|(?<=\bGH)-(?=\d)|@", re.IGNORECASE)


def md_escape(value: Any, limit: int | None = MAX_CELL) -> str:
    """Make ``value`` safe as inline Markdown text, e.g. inside a table cell.

    Line breaks, control characters and bidi overrides are written as escapes (``\\n``,
    ``\\u202e``: :func:`.common.shown`), values longer than ``limit`` characters are cut
    with an ellipsis, Markdown specials (``\\ ` * _ [ ] | ~ $``) are backslash-escaped,
    ``< > &`` become HTML entities, and autolinks (``http://``, ``www.``), issue references
    (``#123``, ``GH-123``) and ``@mentions`` are defused. ``None`` gives an empty string.

    >>> md_escape("a|b <script>")
    'a\\\\|b &lt;script&gt;'
    >>> md_escape("x" * 100, limit=10)
    'xxxxxxxxx…'
    """
    if value is None:
        return ""
    text = shown(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: "\\" + m.group(0), text)
    text = html.escape(text, quote=False)
    # A zero-width space after "@", "#" or "GH-" stops GitHub from notifying a user or
    # linking an issue named in the data.
    return _REFERENCE.sub(lambda m: m.group(0) + "&#8203;", text)


def _group_value(value: str | None) -> str:
    return "*(missing)*" if value is None else md_escape(value)


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> str:
    """A GitHub table; cells must already be escaped. ``align`` is one of ``l``/``r`` a column."""
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell if cell else " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class _Rows(NamedTuple):
    """A section whose table may be cut to fit :data:`MAX_CHARS`: its heading, columns
    and escaped rows, how many rows the data has in all, and what they are called."""

    title: str
    head: list[str]
    align: str
    rows: list[list[str]]
    total: int
    what: str

    def render(self, n: int | None = None) -> str:
        shown_rows = self.rows if n is None else self.rows[:n]
        more = self.total - len(shown_rows)
        text = self.title
        if shown_rows:
            text += "\n\n" + _table(self.head, shown_rows, self.align)
        if more > 0:
            text += f"\n\n... {count(more)} more {self.what} in the JSON (`--format json`)"
        return text


def _size(text: str) -> int:
    """Length as GitHub counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(parts: Sequence[str | _Rows | None], limit: int) -> str:
    """Join the sections; cut the tables of :class:`_Rows` sections, in reading order and
    sharing what the other sections leave, until the report has at most ``limit``
    characters."""
    present = [p for p in parts if p]
    whole = "\n\n".join(p if isinstance(p, str) else p.render() for p in present) + "\n"
    if _size(whole) <= limit:
        return whole
    cuttable = [p for p in present if isinstance(p, _Rows)]
    fixed = sum(_size(p) + 2 for p in present if isinstance(p, str)) + 1
    left = limit - fixed
    out: dict[int, str] = {}
    for k, block in enumerate(cuttable):
        share = left // (len(cuttable) - k) - 2
        lines = _table(block.head, block.rows, block.align).split("\n")
        used = _size(block.render(0)) + 2 + _size(lines[0]) + 1 + _size(lines[1]) + 12
        n = 0
        for line in lines[2:]:
            used += 1 + _size(line)
            if used > share:
                break
            n += 1
        out[id(block)] = block.render(n)
        left -= _size(out[id(block)]) + 2
    return "\n\n".join(p if isinstance(p, str) else out[id(p)] for p in present) + "\n"


def _verdict(result: Any) -> str:
    mark = "❌ " if result.breached else "✅ " if result.gates else ""
    return f"**{mark}{md_escape(verdict(result), limit=None)}**"


def _inputs(result: Any) -> str:
    i = result.inputs
    parts = [f"OLD {md_escape(i.old_path, 120)} ({count(i.old_rows)} rows)",
             f"NEW {md_escape(i.new_path, 120)} ({count(i.new_rows)} rows)"]
    if i.labels_path:
        parts.append(f"LABELS {md_escape(i.labels_path, 120)} ({count(i.labels_rows)} rows, "
                     f"{count(i.unused_labels)} unused)")
    rows = f"{rows_text(result)}: **{count(i.audited)} audited**"
    text = "**Inputs:** " + "; ".join(parts) + "  \n**Rows:** " + rows
    if is_outcome(result):
        return text + f"  \n**Outcomes:** {md_escape(outcome_text(result), 600)}"
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
    status = {"pass": "✅ held", "fail": "❌ **breached**",
              "n/a": "⚠️ n/a (undefined, cannot fail)"}
    rows = []
    for g in result.gates:
        value = md_escape(gate_value(g) + gate_where(g), limit=MAX_CELL + 40)
        rows.append([md_escape(g.name), md_escape(g.condition), value, status[g.status],
                     md_escape(g.source)])
    return (f"#### Gates ({gate_tally(result.gates)})\n\n"
            + _table(["gate", "condition", "value", "result", "from"], rows, "llrll"))


def _groups(result: Any, title: str, head: str, size: str, rows: Sequence[Any],
            gate: str) -> _Rows | None:
    """The classes (or values of one slice column) with the most negative flips, and every
    one that breaches ``gate``."""
    shown_rows, with_flips, bad = listed(rows, result, gate, SHOW, most=_MOST_ROWS)
    if not shown_rows:
        return None
    threshold = next((g.threshold for g in result.gates if g.name == gate), None)
    beyond = f" and the {count(bad)} beyond --{gate}" if bad else ""
    note = (f" ({count(with_flips)} with negative flips; listed: the top {SHOW}{beyond})"
            if with_flips > len(shown_rows) or bad else "")
    mae = any(getattr(r, "mae_delta", None) is not None for r in shown_rows)
    body = []
    for r in shown_rows:
        nfr = rate_text(r.negative_flip_rate, threshold)
        if threshold is not None and (r.negative_flip_rate or 0) > threshold:
            nfr = f"**{nfr}**"
        f1 = class_f1(result, r.value) if gate == "max-class-nfr" else None
        body.append([_group_value(r.value), count(r.n), count(r.counts.negative_flips), nfr,
                     interval(r.negative_flip_rate_interval), count(r.counts.positive_flips),
                     *([signed(r.mae_delta)] if mae else []), *(f1 or ())])
    f1s = gate == "max-class-nfr" and class_f1(result, None) is not None
    cols = ([head, size, "neg. flips", "NFR", "interval", "pos. flips"] + ["MAE delta"] * mae
            + ["old F1", "new F1"] * f1s)
    return _Rows(f"#### {title}{note}", cols, "lrrrrr" + "r" * mae + "rr" * f1s, body,
                 with_flips, "with negative flips")


def _quality(result: Any) -> str | None:
    """The usual quality metrics, old | new | delta, with the notes (DeLong's test)."""
    rows = [[md_escape(label), old, new, delta]
            for _key, label, old, new, delta in quality_rows(result)]
    if not rows:
        return None
    notes = "".join(f"\n\n{md_escape(n, limit=None)}" for n in quality_notes(result))
    return ("#### Quality (same audited rows)\n\n"
            + _table(["metric", "old", "new", "delta"], rows, "lrrr") + notes)


def _worst(result: Any) -> _Rows | None:
    flips = result.top_negative_flips
    if not flips:
        return None
    scores = worst_scores(result)
    first = f", {scores.order}" if scores.shown else ""
    if is_outcome(result):
        rows = [[md_escape(e.id), *(cells if scores.shown else ())]
                for e, cells in zip(flips[:_MOST_ROWS], scores.cells, strict=False)]
        return _Rows(f"#### Passed before, fail now (top {count(len(flips))}{first})",
                     ["id", *(scores.head if scores.shown else ())], "l" + "rr" * scores.shown,
                     rows, len(flips), "negative flips")
    head = ["id", "target" if result.task == "regression" else "label", "old pred", "new pred"]
    head += list(scores.head) if scores.shown else []
    rows = []
    for e, cells in zip(flips[:_MOST_ROWS], scores.cells, strict=False):
        row = [md_escape(e.id), md_escape(e.label), md_escape(e.old_pred), md_escape(e.new_pred)]
        if scores.shown:
            row += list(cells)
        rows.append(row)
    return _Rows(f"#### Worst negative flips (top {count(len(flips))}{first})", head,
                 "llll" + "rr" * scores.shown, rows, len(flips), "negative flips")


def _what_if(result: Any) -> list[str | _Rows | None]:
    """``--what-if``: the sentence, the notes, and the table of points."""
    from . import whatif

    if getattr(result, "what_if", None) is None:
        return []
    lines = [f"**{md_escape(whatif.sentence(result), limit=None)}**"]
    lines += [f"> ⚠️ {md_escape(n, limit=None)}" for n in whatif.notes(result)]
    rows, total = whatif.table(result)
    cells = [[md_escape(c) for c in row] for row in rows]
    rest = f" ({len(rows)} of {total} points)" if len(rows) < total else ""
    table = _Rows(f"#### {md_escape(whatif.title(result), limit=None)}{rest}", list(whatif.HEAD),
                  "rrrrrrrl", cells, len(rows), "points")
    return ["\n\n".join(lines), table]


def _footer(result: Any) -> str:
    where = " · ".join(md_escape(w) for w in footer_facts(result))
    return (f"<sub>graceful-audit {md_escape(result.tool_version)} · {where} · every number "
            "is in `--format json`</sub>")


def _flips_sections(result: Any) -> list[str | _Rows | None]:
    """The sections of a flips report, in reading order (``None``: nothing to show)."""
    sections: list[str | _Rows | None] = [
        "### gaudit flips",
        _verdict(result),
        *(f"> ⚠️ **Warning:** {md_escape(w, limit=None)}" for w in getattr(result, "warnings", ())),
        _inputs(result),
        _metrics(result),
        md_escape(mcnemar_sentence(result), limit=None),
        md_escape(wilcoxon_sentence(result), limit=None) if has_wilcoxon(result) else None,
        _quality(result),
        _gates(result),
        *_what_if(result),
        _groups(result, "Classes with the most negative flips", "class", "support",
                result.per_class, "max-class-nfr"),
    ]
    for col, rows in result.slices.items():
        sections.append(_groups(result, f"Slices by {md_escape(col)}", md_escape(col), "n",
                                rows, "max-slice-nfr"))
    sections += [_worst(result) or NO_FLIPS, _footer(result)]
    return sections


# --------------------------------------------------------------------------- compat


def _compat_inputs(result: Any) -> str:
    i = result.inputs
    mode = ("split column" if i.mode == "split"
            else "leave-one-out: every item queries all the others")
    return (f"**Inputs:** OLD {md_escape(i.old_path, 120)} ({count(i.old_rows)} rows, dim "
            f"{i.old_dim}); NEW {md_escape(i.new_path, 120)} ({count(i.new_rows)} rows, dim "
            f"{i.new_dim})  \n"
            f"**Items:** {count(i.matched)} matched, {count(i.unmatched_old)} only in OLD, "
            f"{count(i.unmatched_new)} only in NEW: **{count(result.queries)} queries** vs "
            f"{count(i.gallery)} gallery items ({mode}); "
            f"{count(result.queries_without_positive)} queries {without_match(result)} "
            "(excluded from the metrics)  \n"
            + (f"**Judgments:** {md_escape(qrels_summary(result), limit=None)}  \n"
               if judged(result) else "")
            + f"**Similarity:** {md_escape(result.metric)}; criterion "
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
        rows.append([shown, label, *(_topk(c, k) for k in (1, 5, 10)), pct(c.map)])
    head = ["case", "query model / gallery model", "top-1", "top-5", "top-10", "mAP"]
    return (f"#### Retrieval ({md_escape(result.metric)}; query model / gallery model)\n\n"
            + _table(head, rows, "llrrrr")
            + f"\n\nTop-k accuracies with their {result.confidence:.0%} Wilson intervals."
            + _relevance(result))


def _relevance(result: Any) -> str:
    """nDCG@10, recall@10, recall@100, MRR@10 and mAP per case (``--qrels`` only)."""
    if not judged(result):
        return ""
    rows = []
    for name, c in result.cases.items():
        values = [c.relevance.get(key) if c.available else None for _, key in RELEVANCE_COLUMNS]
        values.append(c.map if c.available else None)
        shown = f"**{md_escape(name)}**" if name == KEY_CASE else md_escape(name)
        rows.append([shown, *("n/a" if v is None else f"{v:.4f}" for v in values)])
    head = ["case", *(h for h, _ in RELEVANCE_COLUMNS), "mAP"]
    return ("\n\n#### Relevance (judgments; mean over queries with a relevant document)\n\n"
            + _table(head, rows, "lrrrrr"))


def _topk(c: Any, k: int) -> str:
    """``98.61% [96.79%, 99.41%]``: a top-k accuracy and its Wilson interval."""
    ci = c.intervals.get(k)
    return f"{pct(c.topk.get(k))} {interval(ci)}" if ci else pct(c.topk.get(k))


def _compatibility(result: Any) -> str:
    crit = criterion_label(result)
    answer = "yes" if result.compatible else "no"
    flips = result.retrieval_negative_flips
    evaluated = result.queries - result.queries_without_positive
    shown_flips = ("n/a (new/old unavailable)" if flips is None else
                   f"**{count(flips)}** of {count(evaluated)} queries "
                   f"({pct(result.retrieval_negative_flip_rate)})")
    rows = [
        [f"compatible ({crit} new/old &gt; old/old)",
         f"**{answer}**: {md_escape(result.reason(), limit=None)}"],
        [f"update gain ({crit}): (new/old - old/old) / (new/new - old/old)",
         f"**{gain(result.update_gain)}**"],
        [("retrieval negative flips: top-1 relevant in old/old, not in new/old"
          if judged(result) else
          "retrieval negative flips: right at top-1 in old/old, wrong in new/old"),
         shown_flips],
    ]
    if result.criterion_test is not None:
        rows.insert(1, [f"paired test of the criterion ({crit} new/old - old/old)",
                        md_escape(result.significance(), limit=None)])
    note = ("1 means new queries against the old index do as well as after a full backfill, "
            "0 no better than the old model, below 0 worse than the old model")
    return ("#### Update gain and negative flips\n\n" + _table(["metric", "value"], rows, "ll")
            + f"\n\nUpdate gain: {note}.")


def _breaking(result: Any, where: str | None = None, case: str = KEY_CASE) -> str | _Rows:
    """The queries that break; ``where`` names the pair of versions (``case`` its cross
    case, ``V3/V1``) when the result covers more than two."""
    flips = result.retrieval_negative_flips
    rows = result.breaking_queries
    heading = "#### Queries that break" + (f" ({md_escape(where, limit=None)})" if where
                                            else "")
    said_where = f"{md_escape(where, limit=None)}; " if where else ""
    old_case = "old/old" if case == KEY_CASE else f"{case.split('/')[1]}/{case.split('/')[1]}"
    if flips is None:
        reason = result.cases[KEY_CASE].reason or "unavailable"
        return (f"{heading}\n\nCannot be counted: the {case} case is "
                f"unavailable ({md_escape(reason, limit=None)}).")
    if not rows:
        said = (f"{flips} queries break (none listed: `--top 0`)." if flips else
                f"No query breaks: every query right at top-1 in {old_case} is still right in "
                f"{case}.")
        return f"{heading}\n\n{said}"
    body = [[md_escape(b.id), md_escape(b.label),
             count(b.new_old_rank) if b.new_old_rank else "none",
             md_escape(b.new_old_top1_id), md_escape(b.new_old_top1_label)]
            for b in rows[:_MOST_ROWS]]
    head = list(breaking_headings(result, case))
    align = "llrll"
    if judged(result):  # no identity labels
        body = [r[:1] + r[2:] for r in body]
        align = "lrll"
    title = (f"#### Queries that break ({said_where}worst {count(len(rows))} of "
             f"{count(flips)}: deepest first match in {case} first)")
    return _Rows(title, head, align, body, len(rows), "breaking queries")


def _versions_inputs(result: Any) -> str:
    from .common_versions import inputs_lines

    *files, items = inputs_lines(result)
    return ("**Inputs:** " + "  \n".join(md_escape(f, limit=200) for f in files)
            + f"  \n**Items:** {md_escape(items, limit=None)}  \n**Similarity:** "
            f"{md_escape(result.metric)}; criterion {criterion_label(result)}")


def _versions_matrix(result: Any) -> str:
    from .common_versions import MATRICES, matrix_note, matrix_rows

    v = result.versions
    head = ["query \\ gallery", *(f"V{k + 1}" for k in range(v.n))]
    parts = []
    for key, title in MATRICES:
        rows = [[f"**V{q + 1}**", *(f"**{c}**" if q == g else c for g, c in enumerate(row))]
                for q, row in enumerate(matrix_rows(v, key))]
        parts.append(f"#### {title}: query version x gallery version\n\n"
                     + _table(head, rows, "l" + "r" * v.n))
    return "\n\n".join(parts) + f"\n\n{md_escape(matrix_note(), limit=None)}."


def _versions_pairs(result: Any) -> _Rows:
    """Every pair with its verdict; failing pairs first when the table must be cut (many
    versions), each group in pair order."""
    from .common_versions import pair_head, pair_rows

    rows = []
    for r in pair_rows(result):
        said = "✅ yes" if r.compatible else f"❌ **no**: {md_escape(r.reason, limit=None)}"
        p = r.p_value + (" (not significant)" if r.significant is False else "")
        rows.append([f"**{r.pair}**", said, r.cross, r.base, r.delta, r.interval, p, r.gain,
                     f"{r.flips} ({r.flip_rate})"])
    ordered = [rows[k] for k in sorted(range(len(rows)), key=lambda k: "✅" in rows[k][1])]
    if len(ordered) * 200 < MAX_CHARS // 2:  # it fits: keep the pair order
        ordered = rows
    return _Rows("#### Pairs: every later version against every earlier gallery",
                 [md_escape(h) for h in pair_head(result)], "llrrrrrrr", ordered[:_MOST_ROWS],
                 len(rows), "pairs")


def _versions_sections(result: Any) -> list[str | _Rows | None]:
    """The sections of a compat report over three or more versions, in reading order."""
    from .common_versions import criterion_sentence, summary_title

    s = result.versions.summary_pair
    breaking = _breaking(result, where=summary_title(result), case=f"{s.query}/{s.gallery}")
    return [
        "### gaudit compat",
        _verdict(result),
        _versions_inputs(result),
        _versions_matrix(result),
        _versions_pairs(result),
        md_escape(criterion_sentence(result), limit=None),
        _gates(result),
        breaking,
        _footer(result),
    ]


def _compat_sections(result: Any) -> list[str | _Rows | None]:
    """The sections of a compat report, in reading order."""
    if getattr(result, "versions", None) is not None:
        return _versions_sections(result)
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
SECTIONS: dict[str, Callable[[Any], list[str | _Rows | None]]] = {
    "flips": _flips_sections, "compat": _compat_sections,
}


def render(result: Any, limit: int = MAX_CHARS) -> str:
    """Render ``result`` as GitHub-flavoured Markdown (one string, ending with a newline)
    of at most ``limit`` characters (UTF-16 code units, as GitHub counts them)."""
    build = SECTIONS.get(result.kind)
    if build is None:
        raise NotImplementedError(f"no Markdown report for {result.kind!r} results yet")
    return ci_safe(_fit(build(result), limit))
