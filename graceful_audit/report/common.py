"""Wording and number formats shared by every human-readable report."""

from __future__ import annotations

from typing import Any, NamedTuple

METRIC_LABELS = {
    "old_error_rate": "old error rate",
    "new_error_rate": "new error rate",
    "error_rate_delta": "error rate delta (new - old)",
    "negative_flip_rate": "negative flip rate (NFR)",
    "positive_flip_rate": "positive flip rate (PFR)",
    "negative_flip_impact": "negative flip impact (NFI)",
    "churn_rate": "churn rate",
    "backward_trust_compatibility": "backward trust compatibility (BTC)",
    "backward_error_compatibility": "backward error compatibility (BEC)",
    "relative_negative_flip_rate": "relative NFR (vs independent errors)",
}


#: What each retrieval case means (query model / gallery model), in every compat report.
CASE_LABELS = {
    "old/old": "old queries, old gallery (today)",
    "new/new": "new queries, backfilled gallery",
    "new/old": "new queries, old gallery (no backfill)",
    "old/new": "old queries, new gallery",
}
#: The case the compatibility criterion is about: new queries against the old index.
KEY_CASE = "new/old"

#: Said where the worst negative flips would be listed, when there are none.
NO_FLIPS = "No negative flips: every example the old model got right, the new one gets right."


class WorstScores(NamedTuple):
    """The two score columns of a worst-flips table, formatted: the models' confidences, or
    (regression) their absolute errors. ``shown`` is False when no example has any."""

    head: tuple[str, str]
    cells: list[tuple[str, str]]  # per example, "" where missing
    order: str  # how the rows are ordered
    shown: bool


def worst_scores(result: Any) -> WorstScores:
    flips = result.top_negative_flips
    if result.task == "regression":
        pairs = [(e.old_error, e.new_error) for e in flips]
        head, fmt = ("old error", "new error"), "{:.4g}"
        order = "largest increase of the error first"
    else:
        pairs = [(e.old_confidence, e.new_confidence) for e in flips]
        head, fmt = ("old conf.", "new conf."), "{:.3f}"
        order = "most confident old prediction first"
    cells = [("" if a is None else fmt.format(a), "" if b is None else fmt.format(b))
             for a, b in pairs]
    return WorstScores(head, cells, order, any(v is not None for p in pairs for v in p))


def by_negative_flips(row: Any) -> tuple[float, float]:
    """Sort key of a class or slice row: most negative flips first, then highest rate.

    ``sorted(rows, key=by_negative_flips)``; ties keep their order (``sorted`` is stable).
    """
    return (-row.counts.negative_flips, -(row.negative_flip_rate or 0))


def pct(x: float | None, digits: int = 2) -> str:
    """``0.0111`` -> ``1.11%``; ``None`` -> ``n/a``."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def pp(x: float | None) -> str:
    """A difference of rates in percentage points, signed."""
    return "n/a" if x is None else f"{100 * x:+.2f} pp"


def num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def signed(x: float | None) -> str:
    """A difference of errors, signed, 4 significant digits."""
    return "n/a" if x is None else f"{x:+.4g}"


def interval(ci: Any) -> str:
    return "" if not ci else f"[{pct(ci[0])}, {pct(ci[1])}]"


def metric_value(name: str, value: float | None) -> str:
    if name == "error_rate_delta":
        return pp(value)
    if name == "relative_negative_flip_rate":
        return num(value, 3)
    return pct(value)


def gate_value(gate: Any) -> str:
    if gate.value is None:
        return "n/a"
    if gate.metric == "compatible":
        return "yes" if gate.value else "no"
    if gate.metric in ("mae_delta", "rmse_delta"):
        return f"{gate.value:+.4g}"
    if gate.metric.endswith(("rate", "compatibility", "impact", "delta", "top1")):
        return f"{gate.value:.4g} ({pct(gate.value)})"
    return f"{gate.value:.4g}"


def gate_where(gate: Any) -> str:
    """What a gate's value refers to, ready to append to :func:`gate_value`.

    A flips gate on the worst class or slice names it (`` at class '3'``); the compat gate
    ``require-compatible`` gives its reason in parentheses.
    """
    if not gate.detail:
        return ""
    return f" ({gate.detail})" if gate.metric == "compatible" else f" at {gate.detail}"


def criterion_label(result: Any) -> str:
    """``top-1`` or ``mAP``: the M of a compat result's criterion and update gain."""
    return "top-1" if result.criterion == "top1" else "mAP"


def gain(x: float | None) -> str:
    """An update gain, 3 decimals (1.000 = as good as a full backfill)."""
    return "n/a" if x is None else f"{x:.3f}"


def verdict(result: Any) -> str:
    """The one line a reviewer reads first."""
    if result.kind == "flips":
        m = result.metrics
        head = (f"{m.negative_flips} negative flip{'s' if m.negative_flips != 1 else ''} "
                f"({pct(m.negative_flip_rate, 1)} of {m.n})")
        if result.task == "classification":
            tail = f"error rate {pct(m.old_error_rate)} -> {pct(m.new_error_rate)}"
        else:
            tail = f"MAE {num(result.regression.old_mae)} -> {num(result.regression.new_mae)}"
    else:
        head = result.headline()
        tail = ""
    breached = result.breached
    if breached:
        names = ", ".join(f"{g.name} {g.threshold:g}" for g in breached)
        return f"REGRESSION: {head}, gate{'s' if len(breached) > 1 else ''} {names} breached"
    if result.gates:
        n = len(result.gates)
        return f"PASSED: {head}, {'all ' if n > 1 else ''}{n} gate{'s' if n > 1 else ''} held"
    return f"NO GATES SET: {head}; {tail}" if tail else f"NO GATES SET: {head}"


def mcnemar_sentence(result: Any) -> str:
    t = result.mcnemar
    method = ("exact binomial" if t.method == "exact"
              else "chi-square with continuity correction")
    if t.b == t.c:
        direction = "no difference in errors"
    else:
        direction = "new model makes fewer errors" if t.c > t.b else "new model makes more errors"
    return (f"McNemar's test ({method}) on {t.b} negative vs {t.c} positive flips: "
            f"p = {t.p_value:.3g} ({direction})")


def wilcoxon_sentence(result: Any) -> str:
    w = result.regression.wilcoxon
    p = "n/a" if w.p_value is None else f"{w.p_value:.3g}"
    return (f"Wilcoxon signed-rank test ({w.method}) on the {w.n_nonzero} non-zero error "
            f"differences ({w.n_zero} zero): p = {p}")


def metric_rows(result: Any, minus: str = "-") -> list[tuple[str, str, str, str, str]]:
    """The headline-metric table of every format: ``(name, label, detail, value, interval)``.

    ``detail`` follows the label (``": 8 flips"``); churn is left out of regression audits,
    whose error deltas come last. ``minus`` spells the minus sign in "new - old".
    """
    m = result.metrics
    rows = []
    for name, label in METRIC_LABELS.items():
        value = getattr(m, name)
        if name == "churn_rate" and value is None and result.task == "regression":
            continue
        detail = {"negative_flip_rate": f": {m.negative_flips} flips",
                  "positive_flip_rate": f": {m.positive_flips} flips"}.get(name, "")
        rows.append((name, label, detail, metric_value(name, value),
                     interval(result.intervals.get(name))))
    reg = getattr(result, "regression", None)
    if reg is not None:
        r = reg.metrics()
        ci = reg.mae_delta_interval
        rows += [
            ("mae", "old MAE / new MAE", "", f"{num(r['old_mae'])} / {num(r['new_mae'])}", ""),
            ("mae_delta", f"MAE delta (new {minus} old)", "", signed(r["mae_delta"]),
             "" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}] (paired t)"),
            ("rmse", "old RMSE / new RMSE", "", f"{num(r['old_rmse'])} / {num(r['new_rmse'])}",
             ""),
            ("rmse_delta", f"RMSE delta (new {minus} old)", "", signed(r["rmse_delta"]), ""),
        ]
    return rows
