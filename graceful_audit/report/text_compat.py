"""Terminal report of ``gaudit compat``: the verdict, the four cases, the queries that break."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from .common import CASE_LABELS, pct, verdict


def _cases(result: Any) -> Table:
    t = Table(title=f"Retrieval ({result.metric}; query model / gallery model)",
              title_justify="left", show_edge=False)
    for col, justify in (("case", "left"), ("", "left"), ("top-1", "right"),
                         ("top-5", "right"), ("top-10", "right"), ("mAP", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, c in result.cases.items():
        if not c.available:
            t.add_row(name, CASE_LABELS.get(name, ""), "n/a", "n/a", "n/a", "n/a")
            continue
        t.add_row(name, CASE_LABELS.get(name, ""), *(pct(c.topk.get(k)) for k in (1, 5, 10)),
                  pct(c.map))
    return t


def _breaking(result: Any) -> Table | None:
    rows = result.breaking_queries
    if not rows:
        return None
    t = Table(title=f"Queries that break (right at top-1 in old/old, wrong in new/old; "
              f"worst {len(rows)} of {result.retrieval_negative_flips})",
              title_justify="left", show_edge=False)
    for col in ("query id", "label", "new/old rank of first match", "new/old top-1 id",
                "its label"):
        t.add_column(col, overflow="fold")
    for b in rows:
        t.add_row(b.id, b.label, str(b.new_old_rank or "none"), b.new_old_top1_id,
                  b.new_old_top1_label)
    return t


def renderables(result: Any) -> list[Any]:
    from .text import gates_table

    i = result.inputs
    style = "bold red" if result.breached else "bold green" if result.gates else "bold"
    summary = (
        f"Inputs: OLD {i.old_path} ({i.old_rows} rows, dim {i.old_dim}); NEW {i.new_path} "
        f"({i.new_rows} rows, dim {i.new_dim})\n"
        f"Items: {i.matched} matched, {i.unmatched_old} only in OLD, {i.unmatched_new} only in "
        f"NEW; {result.queries} queries vs {i.gallery} gallery items"
        f" ({'split column' if i.mode == 'split' else 'leave-one-out'}); "
        f"{result.queries_without_positive} queries without a match in the gallery "
        "(excluded from the metrics)"
    )
    gain = "n/a" if result.update_gain is None else f"{result.update_gain:.3f}"
    crit = "top-1" if result.criterion == "top1" else "mAP"
    nfr = result.retrieval_negative_flip_rate
    flips = result.retrieval_negative_flips
    lines = (f"Update gain ({crit}): {gain}   Retrieval negative flips: "
             f"{'n/a' if flips is None else flips} ({pct(nfr)} of evaluated queries)")
    parts: list[Any] = [Text(verdict(result), style=style), Text(summary, style="dim"),
                        Text(""), _cases(result), Text(lines), Text(""), _breaking(result),
                        gates_table(result)]
    return [p for p in parts if p is not None]
