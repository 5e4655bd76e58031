"""Terminal report of ``gaudit compat``: the verdict, the four cases, the queries that break."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from .common import (
    CASE_LABELS,
    MAX_LISTED,
    RELEVANCE_COLUMNS,
    breaking_headings,
    count,
    criterion_label,
    judged,
    pct,
    qrels_summary,
    shown,
    verdict,
    without_match,
)


def _topk(c: Any, k: int) -> Text:
    """A top-k accuracy, its Wilson interval on a second, dim line (``96.8-99.4%``: one
    decimal keeps four columns within 80 characters)."""
    cell = Text(pct(c.topk.get(k)))
    ci = c.intervals.get(k)
    if ci:
        cell.append(f"\n{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%", style="dim")
    return cell


def _cases(result: Any) -> Table:
    t = Table(title=Text(f"Retrieval ({shown(result.metric)}; query model / gallery model; "
                         f"{result.confidence:.0%} Wilson intervals)"),
              title_justify="left", show_edge=False)
    for col, justify in (("case", "left"), ("", "left"), ("top-1", "right"),
                         ("top-5", "right"), ("top-10", "right"), ("mAP", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, c in result.cases.items():
        if not c.available:
            t.add_row(name, CASE_LABELS.get(name, ""), "n/a", "n/a", "n/a", "n/a")
            continue
        t.add_row(name, CASE_LABELS.get(name, ""), *(_topk(c, k) for k in (1, 5, 10)),
                  pct(c.map))
    return t


def _relevance(result: Any) -> Table | None:
    """nDCG@10, recall@10, recall@100, MRR@10 and mAP per case (``--qrels`` only)."""
    if not judged(result):
        return None
    t = Table(title=Text("Relevance (judgments; mean over queries with a relevant document)"),
              title_justify="left", show_edge=False)
    t.add_column("case")
    for head, _ in (*RELEVANCE_COLUMNS, ("mAP", "map")):
        t.add_column(head, justify="right")
    for name, c in result.cases.items():
        values = [c.relevance.get(key) if c.available else None for _, key in RELEVANCE_COLUMNS]
        t.add_row(name, *(f"{v:.4f}" if v is not None else "n/a"
                          for v in (*values, c.map if c.available else None)))
    return t


def _breaking(result: Any, where: str = "right at top-1 in old/old, wrong in new/old",
              case: str = "new/old") -> Table | None:
    rows = result.breaking_queries
    if not rows:
        return None
    more = len(rows) - MAX_LISTED
    if judged(result):
        where = where.replace("right at top-1", "top-1 relevant").replace("wrong in", "not in")
    t = Table(title=Text(f"Queries that break ({where}; "
                         f"worst {count(len(rows))} of {count(result.retrieval_negative_flips)})"),
              title_justify="left", show_edge=False, caption_justify="left",
              caption=f"... {count(more)} more in the JSON" if more > 0 else None)
    for col in breaking_headings(result, case):
        t.add_column(col, overflow="fold")
    for b in rows[:MAX_LISTED]:
        cells = [Text(shown(b.id)), Text(shown(b.label)), count(b.new_old_rank or 0)
                 if b.new_old_rank else "none", Text(shown(b.new_old_top1_id)),
                 Text(shown(b.new_old_top1_label))]
        if judged(result):
            del cells[1]
        t.add_row(*cells)
    return t


def _matrix(result: Any, key: str, title: str) -> Table:
    from .common_versions import matrix_rows

    v = result.versions
    t = Table(title=Text(f"{title} (rows: query version, columns: gallery version)"),
              title_justify="left", show_edge=False)
    t.add_column("query \\ gallery")
    for k in range(v.n):
        t.add_column(f"V{k + 1}", justify="right")
    for k, row in enumerate(matrix_rows(v, key)):
        t.add_row(f"V{k + 1}", *row)
    return t


def _pairs(result: Any) -> Table:
    from .common import criterion_label
    from .common_versions import pair_rows

    crit = criterion_label(result)
    t = Table(title=Text(f"Pairs: version j's queries on earlier version i's gallery ({crit}; "
                         f"{result.confidence:.0%} interval of the difference below it)"),
              title_justify="left", show_edge=False)
    for col, justify in (("pair", "left"), ("holds", "left"), ("Vj/Vi", "right"),
                         ("Vi/Vi", "right"), ("difference", "right"), ("p", "right"),
                         ("gain", "right"), ("breaks", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in pair_rows(result):
        delta = Text(r.delta)
        if r.interval:
            delta.append(f"\n{r.interval}", style="dim")
        said = Text("yes" if r.compatible else "NO", style="green" if r.compatible
                    else "bold red")
        p = Text(r.p_value)
        if r.significant is False:
            p.append("\nnot sig.", style="dim")
        t.add_row(r.pair, said, r.cross, r.base, delta, p, r.gain, r.flips)
    return t


def _versions(result: Any) -> list[Any]:
    from .common_versions import MATRICES, criterion_sentence, inputs_lines, summary_title
    from .text import gates_table

    style = "bold red" if result.breached else "bold green" if result.gates else "bold"
    summary = "Inputs: " + "\n".join(inputs_lines(result))
    s = result.versions.summary_pair
    breaking = _breaking(result, summary_title(result), f"{s.query}/{s.gallery}")
    parts: list[Any] = [Text(verdict(result), style=style), Text(summary, style="dim"),
                        Text(""), *(_matrix(result, k, t) for k, t in MATRICES),
                        Text(""), _pairs(result), Text(criterion_sentence(result)), Text(""),
                        breaking, gates_table(result)]
    return [p for p in parts if p is not None]


def renderables(result: Any) -> list[Any]:
    from .text import gates_table

    if getattr(result, "versions", None) is not None:
        return _versions(result)
    i = result.inputs
    style = "bold red" if result.breached else "bold green" if result.gates else "bold"
    summary = (
        f"Inputs: OLD {shown(i.old_path)} ({count(i.old_rows)} rows, dim {i.old_dim}); NEW "
        f"{shown(i.new_path)} ({count(i.new_rows)} rows, dim {i.new_dim})\n"
        f"Items: {count(i.matched)} matched, {count(i.unmatched_old)} only in OLD, "
        f"{count(i.unmatched_new)} only in NEW; {count(result.queries)} queries vs "
        f"{count(i.gallery)} gallery items"
        f" ({'split column' if i.mode == 'split' else 'leave-one-out'}); "
        f"{count(result.queries_without_positive)} queries {without_match(result)} "
        "(excluded from the metrics)"
    )
    if judged(result):
        summary += f"\nJudgments: {shown(qrels_summary(result))}"
    gain = "n/a" if result.update_gain is None else f"{result.update_gain:.3f}"
    crit = criterion_label(result)
    nfr = result.retrieval_negative_flip_rate
    flips = result.retrieval_negative_flips
    lines = (f"Update gain ({crit}): {gain}   Retrieval negative flips: "
             f"{count(flips)} ({pct(nfr)} of evaluated queries)")
    test = result.significance()
    said = Text(f"Paired test of the criterion: {test}") if test else None
    parts: list[Any] = [Text(verdict(result), style=style), Text(summary, style="dim"),
                        Text(""), _cases(result), _relevance(result), Text(lines), said,
                        Text(""),
                        _breaking(result), gates_table(result)]
    return [p for p in parts if p is not None]
