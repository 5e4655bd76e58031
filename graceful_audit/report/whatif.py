"""The what-if section of the human-readable reports (``gaudit flips --what-if``).

One sentence says what blending the old model's scores buys (``blending 15% of the old
scores removes all negative flips for +0.34 pp error``), notes say when a model's
prediction column is not its scores' argmax, and a table lists the points (at most
:data:`SHOW` of them: both ends, the recommended one and evenly spaced others; every point
is in the JSON). The HTML report adds the curve of the negative flip rate against the
error rate, alphas labelled and the recommendation marked. Every format renders these
same pieces; nothing here computes a metric.
"""

from __future__ import annotations

from typing import Any

from .common import count, pct, pp, rate_text, threshold_text

#: Points listed in a table (every point is in the JSON).
SHOW = 21
#: Columns of the table of points.
HEAD = ("alpha", "error rate", "vs alpha 0", "neg. flips", "NFR", "PFR", "BTC", "")


def share(alpha: float) -> str:
    """The weight of the old scores as a share: ``0.15`` -> ``15%``."""
    return f"{100 * alpha:.4g}%"


def alpha_text(alpha: float) -> str:
    return f"{alpha:.4g}"


def _cost(value: float | None) -> str:
    """What an error-rate change costs, in words."""
    if value is None:
        return ""
    if value > 0:
        return f" for {pp(value)} error"
    if value < 0:
        return f", and lowers the error rate by {pp(-value)[1:]}"
    return " at no cost in error rate"


def _blend(alpha: float) -> str:
    return f"blending {share(alpha)} of the old scores (alpha = {alpha_text(alpha)})"


def sentence(result: Any) -> str | None:
    """The one line: the recommended blend and its cost, or why there is none."""
    curve = getattr(result, "what_if", None)
    if curve is None or not curve.points:
        return None
    points = sorted(curve.points, key=lambda p: p.alpha)
    base = points[0]
    rec = curve.recommended
    gate = next((g for g in result.gates if g.name == "max-nfr"), None)
    if rec is not None:
        limit = f"--max-nfr {threshold_text(rec.max_nfr)}"
        nfr = rate_text(rec.negative_flip_rate, rec.max_nfr)
        if rec.alpha == 0:
            return (f"What-if: the new scores alone (alpha = 0) already meet {limit} "
                    f"(negative flip rate {nfr}); no blending needed.")
        if rec.negative_flips == 0:
            return (f"What-if: {_blend(rec.alpha)} removes all negative flips"
                    f"{_cost(rec.error_rate_cost)} (the smallest alpha meeting {limit}).")
        return (f"What-if: {_blend(rec.alpha)} brings the negative flip rate to {nfr} "
                f"({count(rec.negative_flips)} flip{'s' if rec.negative_flips != 1 else ''}), "
                f"meeting {limit}{_cost(rec.error_rate_cost)}.")
    if gate is not None:
        best = min(points, key=lambda p: (p.negative_flip_rate or 0.0, p.alpha))
        return (f"What-if: no blend of the scores meets --max-nfr "
                f"{threshold_text(gate.threshold)}; the lowest negative flip rate is "
                f"{pct(best.negative_flip_rate)} at alpha = {alpha_text(best.alpha)} "
                f"({share(best.alpha)} of the old scores).")
    zero = next((p for p in points if p.counts.negative_flips == 0), None)
    if zero is not None and zero.alpha > 0:
        cost = (zero.counts.new_errors - base.counts.new_errors) / zero.counts.n
        return (f"What-if: {_blend(zero.alpha)} would remove all negative flips"
                f"{_cost(cost)}; set --max-nfr for a recommendation.")
    return (f"What-if: the negative flip rate goes from {pct(base.negative_flip_rate)} at "
            f"alpha = 0 (the new scores) to {pct(points[-1].negative_flip_rate)} at alpha = 1 "
            "(the old scores); set --max-nfr for a recommendation.")


def notes(result: Any) -> list[str]:
    """When a model's prediction (as audited) is not its scores' argmax (or threshold)."""
    curve = getattr(result, "what_if", None)
    if curve is None:
        return []
    rule = ("argmax" if curve.threshold is None
            else f"score >= {threshold_text(curve.threshold)}")
    out = []
    if curve.new_pred_disagreements:
        out.append(f"The NEW prediction differs from the {rule} of the new scores on "
                   f"{count(curve.new_pred_disagreements)} audited rows: alpha = 0 is the "
                   "scores' prediction, not the new model as audited above.")
    if curve.old_pred_disagreements:
        out.append(f"The OLD prediction differs from the {rule} of the old scores on "
                   f"{count(curve.old_pred_disagreements)} audited rows (ties broken in the "
                   "NEW file's class order): alpha = 1 is not the old model as audited, so "
                   "its negative flips need not be 0.")
    return out


def title(result: Any) -> str:
    curve = result.what_if
    how = ("argmax" if curve.threshold is None
           else f"class 1 when >= {threshold_text(curve.threshold)}")
    return f"What-if: blend (1 - alpha) * new + alpha * old scores ({how}, {curve.steps} steps)"


def shown_points(curve: Any, most: int = SHOW) -> list[Any]:
    """The points a table lists: all of them, or ``most`` evenly spaced ones (both ends
    included) plus the recommended one."""
    points = sorted(curve.points, key=lambda p: p.alpha)
    if len(points) <= most:
        return points
    keep = {round(i * (len(points) - 1) / (most - 1)) for i in range(most)}
    rec = curve.recommended
    return [p for i, p in enumerate(points)
            if i in keep or (rec is not None and p.alpha == rec.alpha)]


def table(result: Any, most: int = SHOW) -> tuple[list[list[str]], int]:
    """The table's cells (formatted numbers, no data), and how many points there are."""
    curve = result.what_if
    points = sorted(curve.points, key=lambda p: p.alpha)
    base = points[0]
    rec = curve.recommended
    threshold = rec.max_nfr if rec is not None else next(
        (g.threshold for g in result.gates if g.name == "max-nfr"), None)
    rows = []
    for p in shown_points(curve, most):
        mark = ("recommended" if rec is not None and p.alpha == rec.alpha
                else "new scores" if p.alpha == 0 else "old scores" if p.alpha == 1 else "")
        cost = (p.counts.new_errors - base.counts.new_errors) / p.counts.n if p.counts.n else None
        rows.append([alpha_text(p.alpha), pct(p.error_rate), pp(cost),
                     count(p.counts.negative_flips), rate_text(p.negative_flip_rate, threshold),
                     pct(p.positive_flip_rate), pct(p.backward_trust_compatibility), mark])
    return rows, len(points)


def text_renderables(result: Any) -> list[Any]:
    """The section for the terminal (rich)."""
    if getattr(result, "what_if", None) is None:
        return []
    from rich.table import Table
    from rich.text import Text

    rows, total = table(result, most=11)
    caption = f"{len(rows)} of {total} points; every point in the JSON" if len(rows) < total \
        else None
    t = Table(title=title(result), title_justify="left", show_edge=False, caption=caption,
              caption_justify="left")
    keep = [i for i, col in enumerate(HEAD) if col != "vs alpha 0"]  # 80 columns wide
    for i in keep:
        t.add_column(HEAD[i], justify="left" if i == len(HEAD) - 1 else "right")
    for r in rows:
        t.add_row(*(r[i] for i in keep))
    parts: list[Any] = [Text(sentence(result) or "", style="bold")]
    parts += [Text(n, style="yellow") for n in notes(result)]
    return [*parts, t]


def plot(p: Any, result: Any) -> str | None:
    """The negative flip rate against the error rate over alpha (HTML): alphas labelled,
    the recommended point marked, the ``max-nfr`` gate drawn."""
    curve = getattr(result, "what_if", None)
    if curve is None or not curve.points:
        return None
    from .html import COLORS

    points = [q for q in sorted(curve.points, key=lambda q: q.alpha)
              if q.error_rate is not None and q.negative_flip_rate is not None]
    if not points:
        return None
    x = [q.error_rate for q in points]
    y = [q.negative_flip_rate for q in points]
    fig = p.figure(5.6, 3.8)
    ax = fig.add_subplot()
    ax.plot(x, y, color=COLORS["new"], linewidth=1.4, marker="o", markersize=3.2, zorder=2,
            label="blend (1 − α)·new + α·old")
    every = max(1, round((len(points) - 1) / 5))
    for i, q in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            ax.annotate(f"α = {alpha_text(q.alpha)}", (q.error_rate, q.negative_flip_rate),
                        textcoords="offset points", xytext=(5, 4), fontsize=8,
                        color=COLORS["muted"])
    rec = curve.recommended
    gate = next((g for g in result.gates if g.name == "max-nfr"), None)
    if gate is not None:
        ax.axhline(gate.threshold, color=COLORS["nfr"], linestyle=":", linewidth=1.2,
                   label=f"gate max-nfr {threshold_text(gate.threshold)}")
    if rec is not None and rec.error_rate is not None and rec.negative_flip_rate is not None:
        ax.plot([rec.error_rate], [rec.negative_flip_rate], marker="*", markersize=14,
                color=COLORS["pfr"], linestyle="none", zorder=3,
                label=f"recommended α = {alpha_text(rec.alpha)}")
    m = result.metrics
    if curve.new_pred_disagreements and m.new_error_rate is not None:
        ax.plot([m.new_error_rate], [m.negative_flip_rate], marker="D", markersize=6,
                color=COLORS["nfr"], linestyle="none", zorder=3,
                label="new model as audited")
    ax.xaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
    ax.yaxis.set_major_formatter(p.percent(xmax=1, decimals=None))
    ax.set_xlabel("error rate")
    ax.set_ylabel("negative flip rate")
    ax.margins(x=0.12, y=0.12)
    ax.grid(color="#eaecf0", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return p.svg(fig, "negative flip rate against error rate of the blended scores, per alpha")
