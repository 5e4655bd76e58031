"""Terminal report (rich): the verdict first, then the numbers a reviewer reads in ten seconds."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .common import (
    MAX_LISTED,
    ci_safe,
    class_f1,
    count,
    gate_tally,
    gate_threshold,
    gate_value,
    gate_where,
    has_wilcoxon,
    interval,
    is_outcome,
    listed,
    mcnemar_sentence,
    metric_rows,
    outcome_text,
    quality_notes,
    quality_rows,
    rate_text,
    rows_text,
    shown,
    signed,
    verdict,
    wilcoxon_sentence,
    worst_scores,
)
from .whatif import text_renderables as what_if_renderables

#: Rows of classes, slice values and matrix cells shown on screen (all are in the JSON);
#: every class or slice value that breaches a gate is listed too, up to ``MAX_LISTED``.
SHOW = 8


def data(value: Any) -> Text:
    """A cell or title made of data: escaped (:func:`shown`), never read as rich markup
    (``[bold]``) or an emoji code (``:smile:``)."""
    return Text(shown(value))


def _verdict_text(result: Any) -> Text:
    line = verdict(result)
    style = "bold red" if result.breached else "bold green" if result.gates else "bold"
    return Text(line, style=style)


def _inputs(result: Any) -> Text:
    i = result.inputs
    parts = [f"OLD {shown(i.old_path)} ({count(i.old_rows)} rows)",
             f"NEW {shown(i.new_path)} ({count(i.new_rows)} rows)"]
    if i.labels_path:
        parts.append(f"LABELS {shown(i.labels_path)} ({count(i.labels_rows)} rows, "
                     f"{count(i.unused_labels)} unused)")
    line = "Inputs: " + "; ".join(parts)
    line += f"\nRows: {rows_text(result)} -> {count(i.audited)} audited"
    if is_outcome(result):
        return Text(line + f"\nOutcomes: {shown(outcome_text(result))}", style="dim")
    line += f"\nLabels from {shown(i.label_source)}"
    if result.task == "regression":
        reg = result.regression
        line += (f"\nTask: regression ({shown(result.task_reason)}); right when |pred - y| <= "
                 f"{reg.atol:g} + {reg.rtol:g} * |y|")
    if i.old_prediction:
        line += (f"; OLD prediction: {shown(i.old_prediction)}; NEW prediction: "
                 f"{shown(i.new_prediction)}")
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


def _groups(result: Any, title: str, head: str, rows: Any, size: str,
            gate: str) -> Table | None:
    ranked, with_flips, bad = listed(rows, result, gate, SHOW)
    if not ranked:
        return None
    threshold = gate_threshold(result, "worst_class_negative_flip_rate"
                               if gate == "max-class-nfr" else "worst_slice_negative_flip_rate")
    mae = any(r.mae_delta is not None for r in ranked)
    left = with_flips - len(ranked)
    note = f" (listed: the top {SHOW} and the {count(bad)} beyond --{gate})" if bad else ""
    caption = (f"... {count(left)} more with negative flips in the JSON{note}" if left else
               None)
    t = Table(title=Text(title), title_justify="left", show_edge=False, caption=caption,
              caption_justify="left")
    for col, justify in ((head, "left"), (size, "right"), ("neg. flips", "right"),
                         ("NFR", "right"), ("interval", "right"), ("pos. flips", "right")):
        t.add_column(data(col), justify=justify)  # type: ignore[arg-type]
    if mae:
        t.add_column("MAE delta", justify="right")
    f1 = gate == "max-class-nfr" and class_f1(result, None) is not None
    if f1:
        t.add_column("old F1", justify="right")
        t.add_column("new F1", justify="right")
    for r in ranked:
        cells = [Text("(missing)") if r.value is None else data(r.value), count(r.n),
                 count(r.counts.negative_flips), rate_text(r.negative_flip_rate, threshold),
                 interval(r.negative_flip_rate_interval), count(r.counts.positive_flips)]
        t.add_row(*cells, *([signed(r.mae_delta)] if mae else []),
                  *(class_f1(result, r.value) or () if f1 else ()))
    return t


def _quality(result: Any) -> list[Any]:
    rows = quality_rows(result)
    if not rows:
        return []
    t = Table(title="Quality (same audited rows)", title_justify="left", show_edge=False)
    for col in ("metric", "old", "new", "delta"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for _key, label, old, new, delta in rows:
        t.add_row(data(label), old, new, delta)
    return [t, *(Text(shown(n)) for n in quality_notes(result))]


def _matrix(result: Any) -> Table | None:
    if not result.flip_matrix:
        return None
    t = Table(title="Negative-flip matrix (true = old prediction -> new prediction)",
              title_justify="left", show_edge=False)
    t.add_column("old prediction (true)")
    t.add_column("new prediction")
    t.add_column("count", justify="right")
    for o, n, c in result.flip_matrix[:SHOW]:
        t.add_row(data(o), data(n), count(c))
    return t


def _worst(result: Any) -> Table | None:
    rows = result.top_negative_flips
    if not rows:
        return None
    shown_rows = rows[:MAX_LISTED]
    more = len(rows) - len(shown_rows)
    t = Table(title=f"Worst negative flips (top {count(len(rows))})", title_justify="left",
              show_edge=False, caption_justify="left",
              caption=f"... {count(more)} more in the JSON" if more else None)
    t.add_column("id", overflow="fold")
    scores = worst_scores(result)
    if is_outcome(result):  # passed before, fails now: only the id and the scores say more
        t.title = f"Passed before, fail now (top {count(len(rows))})"
        t.caption = scores.order + (f"; {count(more)} more in the JSON" if more else "")
        for name in scores.head if scores.shown else ():
            t.add_column(name, justify="right")
        for e, cells in zip(shown_rows, scores.cells, strict=False):
            t.add_row(data(e.id), *(cells if scores.shown else ()))
        return t
    t.add_column("target" if result.task == "regression" else "label")
    t.add_column("old pred")
    t.add_column("new pred")
    for name in scores.head:
        t.add_column(name, justify="right")
    for e, cells in zip(shown_rows, scores.cells, strict=False):
        t.add_row(data(e.id), data(e.label), data(e.old_pred), data(e.new_pred), *cells)
    return t


def gates_table(result: Any) -> Table | None:
    if not result.gates:
        return None
    t = Table(title=f"Gates ({gate_tally(result.gates)})", title_justify="left",
              show_edge=False)
    for col in ("gate", "condition", "value", "result", "from"):
        t.add_column(col)
    for g in result.gates:
        status = {"pass": Text("held", style="green"),
                  "fail": Text("BREACHED", style="bold red"),
                  "n/a": Text("n/a (undefined, cannot fail)", style="yellow")}[g.status]
        t.add_row(data(g.name), data(g.condition), data(gate_value(g) + gate_where(g)), status,
                  data(g.source))
    return t


def renderables(result: Any) -> list[Any]:
    if result.kind != "flips":
        from .text_compat import renderables as compat_renderables

        return compat_renderables(result)
    parts: list[Any] = [_verdict_text(result)]
    parts += [Text(f"Warning: {shown(w)}", style="bold yellow")
              for w in getattr(result, "warnings", ())]
    parts += [_inputs(result), Text(""), _metrics(result), Text(mcnemar_sentence(result))]
    if has_wilcoxon(result):
        parts.append(Text(wilcoxon_sentence(result)))
    parts.append(Text(""))
    parts += what_if_renderables(result)
    quality = _quality(result)
    if quality:
        parts += [*quality, Text("")]
    parts += [_groups(result, "Classes with the most negative flips", "class",
                      result.per_class, "support", "max-class-nfr")]
    for col, rows in result.slices.items():
        parts.append(_groups(result, f"Slices by {shown(repr(col))}", col, rows, "n",
                             "max-slice-nfr"))
    parts += [_matrix(result), _worst(result), gates_table(result)]
    return [p for p in parts if p is not None]


def print_report(result: Any, console: Console) -> None:
    """Print the terminal report on ``console``, a blank line between sections.

    The report is rendered first and then written through :func:`ci_safe`, so no line of
    it (a folded id included) can be taken for a CI workflow command. Cells fold on a narrow
    terminal instead of ending in an ellipsis, so no value is shown cut short.
    """
    items = renderables(result)
    for item in items:  # a narrow terminal folds a cell; it never cuts a number to "10.…"
        if isinstance(item, Table):
            for column in item.columns:
                column.overflow = "fold"
    with console.capture() as captured:
        console.print(items[0])
        for item in items[1:]:
            console.print(item)
            if isinstance(item, Table):
                console.print()
    console.file.write(ci_safe(captured.get()))
    console.file.flush()


def render_plain(result: Any, width: int = 110) -> str:
    """The terminal report as plain text (no colour codes), e.g. for ``--format text``."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False,
                      highlight=False)
    print_report(result, console)
    return buf.getvalue()


__all__ = ["Group", "print_report", "render_plain", "renderables"]
