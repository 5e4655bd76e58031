"""Terminal report (rich): the verdict first, then the numbers a reviewer reads in ten seconds."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .common import (
    by_negative_flips,
    gate_value,
    interval,
    mcnemar_sentence,
    metric_rows,
    pct,
    signed,
    verdict,
    wilcoxon_sentence,
    worst_scores,
)

#: Rows of classes, slice values and matrix cells shown on screen (all are in the JSON).
SHOW = 8


def _verdict_text(result: Any) -> Text:
    line = verdict(result)
    style = "bold red" if result.breached else "bold green" if result.gates else "bold"
    return Text(line, style=style)


def _inputs(result: Any) -> Text:
    i = result.inputs
    parts = [f"OLD {i.old_path} ({i.old_rows} rows)", f"NEW {i.new_path} ({i.new_rows} rows)"]
    if i.labels_path:
        parts.append(f"LABELS {i.labels_path} ({i.labels_rows} rows, {i.unused_labels} unused)")
    line = "Inputs: " + "; ".join(parts)
    line += (f"\nRows: {i.matched} matched, {i.unmatched_old} only in OLD, {i.unmatched_new} only"
             f" in NEW, {i.missing_label} without label -> {i.audited} audited")
    line += f"\nLabels from {i.label_source}"
    if result.task == "regression":
        reg = result.regression
        line += (f"\nTask: regression ({result.task_reason}); right when |pred - y| <= "
                 f"{reg.atol:g} + {reg.rtol:g} * |y|")
    if i.old_prediction:
        line += f"; OLD prediction: {i.old_prediction}; NEW prediction: {i.new_prediction}"
    return Text(line, style="dim")


def _metrics(result: Any) -> Table:
    ci_head = f"{result.confidence:.0%} interval"
    t = Table(title="Headline metrics", title_justify="left", show_edge=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column(ci_head, justify="right")
    for _name, label, detail, value, ci in metric_rows(result):
        t.add_row(label + detail, value, ci)
    return t


def _groups(title: str, head: str, rows: Any, size: str) -> Table | None:
    ranked = sorted(rows, key=by_negative_flips)
    ranked = [r for r in ranked if r.counts.negative_flips > 0][:SHOW]
    if not ranked:
        return None
    mae = any(r.mae_delta is not None for r in ranked)
    t = Table(title=title, title_justify="left", show_edge=False)
    for col, justify in ((head, "left"), (size, "right"), ("neg. flips", "right"),
                         ("NFR", "right"), ("interval", "right"), ("pos. flips", "right")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    if mae:
        t.add_column("MAE delta", justify="right")
    for r in ranked:
        cells = ["(missing)" if r.value is None else str(r.value), str(r.n),
                 str(r.counts.negative_flips), pct(r.negative_flip_rate),
                 interval(r.negative_flip_rate_interval), str(r.counts.positive_flips)]
        t.add_row(*cells, *([signed(r.mae_delta)] if mae else []))
    return t


def _matrix(result: Any) -> Table | None:
    if not result.flip_matrix:
        return None
    t = Table(title="Negative-flip matrix (true = old prediction -> new prediction)",
              title_justify="left", show_edge=False)
    t.add_column("old prediction (true)")
    t.add_column("new prediction")
    t.add_column("count", justify="right")
    for o, n, c in result.flip_matrix[:SHOW]:
        t.add_row(o, n, str(c))
    return t


def _worst(result: Any) -> Table | None:
    rows = result.top_negative_flips
    if not rows:
        return None
    t = Table(title=f"Worst negative flips (top {len(rows)})", title_justify="left",
              show_edge=False)
    t.add_column("id", overflow="fold")
    t.add_column("target" if result.task == "regression" else "label")
    t.add_column("old pred")
    t.add_column("new pred")
    scores = worst_scores(result)
    for name in scores.head:
        t.add_column(name, justify="right")
    for e, cells in zip(rows, scores.cells, strict=True):
        t.add_row(e.id, str(e.label), str(e.old_pred), str(e.new_pred), *cells)
    return t


def gates_table(result: Any) -> Table | None:
    if not result.gates:
        return None
    t = Table(title="Gates", title_justify="left", show_edge=False)
    for col in ("gate", "condition", "value", "result", "from"):
        t.add_column(col)
    for g in result.gates:
        status = {"pass": "[green]held[/]", "fail": "[bold red]BREACHED[/]",
                  "n/a": "[yellow]n/a (undefined)[/]"}[g.status]
        value = gate_value(g) + (f" ({g.detail})" if g.detail else "")
        t.add_row(g.name, g.condition, value, status, g.source)
    return t


def renderables(result: Any) -> list[Any]:
    if result.kind != "flips":
        from .text_compat import renderables as compat_renderables

        return compat_renderables(result)
    parts: list[Any] = [_verdict_text(result)]
    parts += [Text(f"Warning: {w}", style="bold yellow") for w in getattr(result, "warnings", ())]
    parts += [_inputs(result), Text(""), _metrics(result), Text(mcnemar_sentence(result))]
    if result.regression is not None:
        parts.append(Text(wilcoxon_sentence(result)))
    parts.append(Text(""))
    parts += [_groups("Classes with the most negative flips", "class", result.per_class,
                      "support")]
    for col, rows in result.slices.items():
        parts.append(_groups(f"Slices by {col!r}", col, rows, "n"))
    parts += [_matrix(result), _worst(result), gates_table(result)]
    return [p for p in parts if p is not None]


def print_report(result: Any, console: Console) -> None:
    """Print the terminal report on ``console``, a blank line between sections."""
    items = renderables(result)
    console.print(items[0])
    for item in items[1:]:
        console.print(item)
        if isinstance(item, Table):
            console.print()


def render_plain(result: Any, width: int = 110) -> str:
    """The terminal report as plain text (no colour codes), e.g. for ``--format text``."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                      highlight=False)
    print_report(result, console)
    return buf.getvalue()


__all__ = ["Group", "print_report", "render_plain", "renderables"]
