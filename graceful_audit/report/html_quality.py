"""The HTML report's quality section: the old | new | delta table, both models' confusion
matrices side by side and, with scores, their reliability curves.

Kept apart from :mod:`graceful_audit.report.html` (page scaffolding, the flips tables and
plots), whose helpers it uses; plots are SVG with presentation attributes, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .common import count, quality_notes, quality_rows
from .html import COLORS, MAX_MATRIX, _num, _plot_label, _Plotter, _section, _table, esc


def _confusion_plot(p: _Plotter, matrix: Sequence[Sequence[int]], keep: list[int],
                    labels: list[str], title: str) -> str:
    import numpy as np

    grid = np.asarray(matrix, dtype=float)[np.ix_(keep, keep)]
    size = 0.36
    fig = p.figure(max(3.4, 1.5 + size * len(labels)), max(3.0, 1.3 + size * len(labels)))
    ax = fig.add_subplot()
    peak = grid.max() or 1.0
    ax.pcolormesh(np.ma.masked_equal(grid, 0), cmap="Blues", vmin=0, vmax=peak * 1.15)
    names = [_plot_label(v, 10) for v in labels]
    long = max((len(n) for n in names), default=0) > 3
    ax.set_xticks(np.arange(len(labels)) + 0.5, names, rotation=45 if long else 0,
                  ha="right" if long else "center", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(labels)) + 0.5, names)
    ax.tick_params(which="both", length=0)
    ax.set_xlim(0, len(labels))
    ax.set_ylim(len(labels), 0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(title)
    if len(labels) <= 15:
        for (i, j), c in np.ndenumerate(grid):
            if c:
                ax.text(j + 0.5, i + 0.5, f"{int(c)}", ha="center", va="center", fontsize=8,
                        color="#fff" if c > 0.55 * peak else "#101828")
    return p.svg(fig, f"{title}: confusion matrix")


def _reliability_plot(p: _Plotter, reliability: dict[str, Any]) -> str | None:
    fig = p.figure(4.6, 3.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#98a2b3", linewidth=1,
            label="perfectly calibrated")
    drawn = False
    for side in ("old", "new"):
        bins = [b for b in reliability.get(side, ()) if b.count]
        if not bins:
            continue
        drawn = True
        ax.plot([b.mean_confidence for b in bins], [b.right / b.count for b in bins],
                marker="o", markersize=4, color=COLORS[side], label=f"{side} model")
    if not drawn:
        return None
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean confidence (score of the predicted class)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    return p.svg(fig, "reliability curves of the old and the new model")


def _labels(confusion: Any) -> tuple[list[int], list[str], str]:
    """The classes drawn (their indices among the matrices' classes, and the classes):
    every one, or the ``MAX_MATRIX`` most frequent labels, in the matrices' order."""
    classes = list(confusion.classes)
    weight = [sum(sum(m[i]) for m in confusion.matrices.values()) for i in range(len(classes))]
    keep = list(range(len(classes)))
    note = ""
    if len(classes) > MAX_MATRIX:
        keep = sorted(sorted(keep, key=lambda i: -weight[i])[:MAX_MATRIX])
    if len(keep) < confusion.total_classes:
        note = (f" ({len(keep)} of {count(confusion.total_classes)} classes, the most frequent "
                "labels)")
    return keep, [classes[i] for i in keep], note


def quality_plots(p: _Plotter, result: Any) -> dict[str, Any]:
    """The quality section's plots, drawn by the page's plotter (its ids stay unique)."""
    q = getattr(result, "quality", None)
    if q is None:
        return {}
    out: dict[str, Any] = {}
    if q.task == "classification" and q.confusion is not None and q.confusion.classes:
        keep, labels, note = _labels(q.confusion)
        out["note"] = note
        for side in ("old", "new"):
            out[side] = _confusion_plot(p, q.confusion.matrices[side], keep, labels,
                                        f"{side} model")
    if q.reliability:
        out["reliability"] = _reliability_plot(p, q.reliability)
    return out


def quality_section(result: Any, plots: dict[str, Any]) -> str | None:
    """The section, or None when the result has no quality metrics."""
    rows = quality_rows(result)
    if not rows:
        return None
    trs = [f"<tr><td>{esc(label)}</td>{_num(old)}{_num(new)}{_num(delta)}</tr>"
           for _key, label, old, new, delta in rows]
    body = _table([("metric", False), ("old", True), ("new", True), ("delta", True)], trs)
    body += "".join(f"<p>{esc(n)}</p>" for n in quality_notes(result))
    figures = [f'<figure class="confusion"><figcaption>{side.upper()} model: audited rows '
               f"per label (row) and prediction (column){esc(plots.get('note', ''))}"
               f"</figcaption>{plots[side]}</figure>"
               for side in ("old", "new") if plots.get(side)]
    if plots.get("reliability"):
        figures.append("<figure><figcaption>Reliability: accuracy against mean confidence "
                       "per bin of width 0.1 (on the dashed diagonal a model's scores are "
                       f"calibrated)</figcaption>{plots['reliability']}</figure>")
    if figures:
        body += f'<div class="plots">{"".join(figures)}</div>'
    return _section("Quality, old beside new", body, "the same audited rows")
