"""Wording and number formats shared by every human-readable report."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from ..gates import threshold_text
from ..quality import NO_SCORES
from ..textsafe import ci_safe, shown

__all__ = ["ci_safe", "shown", "threshold_text"]  # re-exported for the report modules

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


#: Rows a table lists at most in the terminal and HTML reports, even when more classes or
#: slice values breach a gate (every row is in the JSON).
MAX_LISTED = 500

def footer_facts(result: Any) -> list[str]:
    """What a report's footer states besides the version: the engine, and for ``compat``
    the similarity."""
    facts = []
    engine = getattr(result, "engine", None)
    if engine:
        facts.append(f"engine {engine}")
    if getattr(result, "kind", None) == "compat":
        facts.append(f"similarity {result.metric}")
    return facts


def count(n: int | None) -> str:
    """A count with thousands separators: ``12345`` -> ``12,345``; ``None`` -> ``n/a``."""
    return "n/a" if n is None else f"{n:,}"


class WorstScores(NamedTuple):
    """The two score columns of a worst-flips table, formatted: the models' confidences, or
    (regression) their absolute errors. ``shown`` is False when no example has any."""

    head: tuple[str, str]
    cells: list[tuple[str, str]]  # per example, "" where missing
    order: str  # how the rows are ordered
    shown: bool


def worst_scores(result: Any) -> WorstScores:
    flips = result.top_negative_flips
    if result.task == "outcome":
        pairs = [(e.old_score, e.new_score) for e in flips]
        head, fmt = ("old score", "new score"), "{:.4g}"
        order = "largest score drop first" if any(a is not None for a, _b in pairs) else \
            "by id"
    elif result.task == "regression":
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


def signed_against(x: float | None, threshold: float | None) -> str:
    """:func:`signed`, or with the digits that place ``x`` against the ``threshold`` of a
    gate watching it."""
    if x is None or threshold is None:
        return signed(x)
    return gate_value_text(x, threshold, sign=True)


def interval(ci: Any) -> str:
    return "" if not ci else f"[{pct(ci[0])}, {pct(ci[1])}]"


# --------------------------------------------------------------------------- gate values


def _relation(a: float, b: float) -> int:
    return (a > b) - (a < b)


def gate_digits(value: float, threshold: float, least: int = 4) -> int:
    """The fewest significant digits (at least ``least``) with which ``value``, once
    rounded, compares to ``threshold`` as ``value`` itself does.

    A negative flip rate of 0.010004 against a maximum of 0.01 needs 5 (``0.010004``:
    above, breached), 0.0099996 needs 5 too (below, held); a value equal to the threshold
    keeps ``least``.
    """
    if not (math.isfinite(value) and math.isfinite(threshold)):
        return least
    want = _relation(value, threshold)
    for digits in range(least, 18):
        if _relation(float(f"{value:.{digits}g}"), threshold) == want:
            return digits
    return 17


def _percent_of(text: str) -> str:
    """``"0.010004"`` -> ``"1.0004%"``: the same digits, shifted, at least 2 decimals."""
    d = Decimal(text).scaleb(2)
    if d != 0 and abs(d) < Decimal("1e-6"):
        return f"{float(d):.4g}%"
    if d.as_tuple().exponent > -2:  # type: ignore[operator]
        d = d.quantize(Decimal("0.01"))
    return f"{d:f}%"


def gate_value_text(value: float | None, threshold: float | None, *, percent: bool = False,
                    sign: bool = False) -> str:
    """A gated value with the digits that show on which side of ``threshold`` it lies.

    ``percent`` adds the value as a percentage, with the same digits; ``sign`` writes a
    ``+`` before a positive value (differences). Every report prints gate values through
    this function, so the text, Markdown, HTML and JUnit reports, the annotations and the
    verdict line agree.

    >>> gate_value_text(0.010004, 0.01, percent=True)
    '0.010004 (1.0004%)'
    >>> gate_value_text(0.0099996, 0.01, percent=True)
    '0.0099996 (0.99996%)'
    >>> gate_value_text(0.01, 0.01, percent=True)
    '0.01 (1.00%)'
    """
    if value is None:
        return "n/a"
    digits = 4 if threshold is None else gate_digits(value, threshold)
    text = f"{value:{'+' if sign else ''}.{digits}g}"
    if percent and math.isfinite(value) and abs(value) < 1e6:
        shifted = _percent_of(f"{value:.{digits}g}")
        text += f" ({'+' if sign and value > 0 else ''}{shifted})"
    return text


def rate_text(value: float | None, threshold: float | None = None, digits: int = 2) -> str:
    """A rate as a percentage: ``digits`` decimals, or as many as it takes to show on
    which side of ``threshold`` (the gate watching the rate, if any) it lies.

    >>> rate_text(0.010004, None), rate_text(0.010004, 0.01)
    ('1.00%', '1.0004%')
    """
    plain = pct(value, digits)
    if value is None or threshold is None or not math.isfinite(value):
        return plain
    if _relation(float(Decimal(plain[:-1]).scaleb(-2)), threshold) == _relation(value,
                                                                                threshold):
        return plain
    return _percent_of(f"{value:.{gate_digits(value, threshold)}g}")


def metric_value(name: str, value: float | None, threshold: float | None = None) -> str:
    """A headline metric as every report prints it; ``threshold``: of a gate watching it."""
    if name == "error_rate_delta":
        if threshold is None or value is None:
            return pp(value)
        text = rate_text(value, threshold)[:-1]
        return f"{'' if text.startswith('-') else '+'}{text} pp"
    if name == "relative_negative_flip_rate":
        return num(value, 3)
    return rate_text(value, threshold)


#: Metrics shown as a signed difference, and as a percentage, in a gate's value.
_SIGNED = ("mae_delta", "rmse_delta", "error_rate_delta", "cross_drop", "scores.mean_delta")
_PERCENT = ("rate", "compatibility", "impact", "error_rate_delta", "top1", "cross_drop")


def gate_value(gate: Any) -> str:
    """The value a gate saw, with the digits that show whether it breaches."""
    if gate.value is None:
        return "n/a"
    if gate.metric == "compatible":
        return "yes" if gate.value else "no"
    return gate_value_text(gate.value, gate.threshold, percent=gate.metric.endswith(_PERCENT),
                           sign=gate.metric in _SIGNED)


def gate_threshold(result: Any, metric: str) -> float | None:
    """The threshold of the gate watching ``metric``, if one does."""
    return next((g.threshold for g in result.gates if g.metric == metric), None)


def breaching(rows: Sequence[Any], result: Any, gate: str) -> set[int]:
    """Positions in ``rows`` (classes or slice values) whose negative flip rate breaches
    gate ``gate`` (``max-class-nfr`` or ``max-slice-nfr``); empty when it is not set."""
    threshold = next((g.threshold for g in result.gates if g.name == gate), None)
    if threshold is None:
        return set()
    return {k for k, r in enumerate(rows)
            if r.negative_flip_rate is not None and r.negative_flip_rate > threshold}


def listed(rows: Sequence[Any], result: Any, gate: str, show: int,
           most: int | None = MAX_LISTED, flipped: bool = True) -> tuple[list[Any], int, int]:
    """The classes or slice values a table lists: those with negative flips (every row
    when not ``flipped``), the ``show`` with the most first, plus every one that breaches
    ``gate``, in the same order; at most ``most`` rows. Returns the rows, how many there
    were to list, and how many breach the gate."""
    ranked = [r for r in sorted(rows, key=by_negative_flips)
              if r.counts.negative_flips > 0 or not flipped]
    bad = breaching(ranked, result, gate)
    keep = [r for k, r in enumerate(ranked) if k < show or k in bad]
    return (keep if most is None else keep[:most]), len(ranked), len(bad)


def gate_where(gate: Any) -> str:
    """What a gate's value refers to, ready to append to :func:`gate_value`.

    A flips gate on the worst class or slice names it (`` at class '3'``); the compat gate
    ``require-compatible`` gives its reason in parentheses.
    """
    if not gate.detail:
        return ""
    detail = shown(gate.detail)
    return f" ({detail})" if gate.metric == "compatible" else f" at {detail}"


def criterion_label(result: Any) -> str:
    """``top-1``, ``mAP``, ``nDCG@10``, ...: the M of a compat result's criterion and update
    gain."""
    from ..compat import CRITERION_LABELS

    return CRITERION_LABELS.get(result.criterion, str(result.criterion))


#: The relevance metrics of ``compat --qrels`` per case: (heading, attribute key).
RELEVANCE_COLUMNS = (("nDCG@10", "ndcg10"), ("recall@10", "recall10"),
                     ("recall@100", "recall100"), ("MRR@10", "mrr10"))


def judged(result: Any) -> bool:
    """Whether a compat result was judged with relevance judgments (``--qrels``)."""
    return getattr(result.inputs, "qrels", None) is not None


def qrels_summary(result: Any) -> str:
    """One sentence on the judgments of a ``--qrels`` audit (paths not escaped: callers
    escape the whole sentence for their format)."""
    q = result.inputs.qrels
    dropped = ""
    if q.unmatched or q.wrong_side:
        dropped = (f"; dropped (--allow-unmatched): {count(q.unmatched)} naming ids not "
                   f"audited, {count(q.wrong_side)} on the wrong side of the split")
    return (f"{q.path} ({'BEIR' if q.format == 'beir' else 'TREC'}): {count(q.judgments)} "
            f"judgments, {count(q.relevant)} relevant (grade > 0) used{dropped}; unjudged "
            "documents count as not relevant")


def without_match(result: Any) -> str:
    """What the queries excluded from the metrics lack."""
    return ("without a relevant judged document in the gallery" if judged(result) else
            "without a match in the gallery")


def breaking_headings(result: Any, case: str = "new/old") -> tuple[str, ...]:
    """Column headings of the table of queries that break in the cross ``case``."""
    if judged(result):  # no identity labels: the query's label column goes
        return ("query id", f"{case} rank of first relevant", f"{case} top-1 id", "its grade")
    return ("query id", "label", f"{case} rank of first match", f"{case} top-1 id",
            "its label")


def gain(x: float | None) -> str:
    """An update gain, 3 decimals (1.000 = as good as a full backfill)."""
    return "n/a" if x is None else f"{x:.3f}"


def gate_tally(gates: Sequence[Any]) -> str:
    """``2 held, 1 breached, 1 n/a``: the gates by outcome; a gate whose metric is
    undefined (n/a) cannot fail, but it did not hold either."""
    held = sum(g.status == "pass" for g in gates)
    failed = sum(g.status == "fail" for g in gates)
    undefined = len(gates) - held - failed
    parts = [f"{held} held"] if held or not gates else []
    if failed:
        parts.append(f"{failed} breached")
    if undefined:
        parts.append(f"{undefined} n/a (undefined)")
    return ", ".join(parts)


_SIGN = re.compile(r"(?<![\w.])-(?=\.?\d)")


class Style(NamedTuple):
    """How a report spells a minus sign and "changed to": plain ASCII in the terminal,
    Markdown and JUnit reports (numbers copy into a flag), typographic in HTML."""

    minus: str = "-"
    arrow: str = "->"

    def number(self, text: str) -> str:
        """``text`` we wrote (never data) with the minus signs of its numbers in this style
        (``-0.5`` and ``(-4.17 pp``, not ``top-1`` or ``1e-07``)."""
        return text if self.minus == "-" else _SIGN.sub(self.minus, text)


PLAIN = Style()
TYPESET = Style("\u2212", "\u2192")


def _breach(gate: Any, style: Style = PLAIN) -> str:
    """``max-nfr (0.010004 > 0.01)``: a breached gate, with the digits that show it."""
    if gate.metric == "compatible":
        return f"{gate.name} (not compatible)"
    op = ">" if gate.direction == "max" else "<"
    where = f" at {shown(gate.detail)}" if gate.detail else ""
    value = style.number(gate_value_text(gate.value, gate.threshold,
                                         sign=gate.metric in _SIGNED))
    return f"{gate.name} ({value}{where} {op} {style.number(threshold_text(gate.threshold))})"


def verdict(result: Any, style: Style = PLAIN) -> str:
    """The one line a reviewer reads first.

    It counts the gates by outcome: one whose metric is undefined (n/a) does not fail the
    run, but is not called held. A breached gate is named with its value and threshold.
    """
    n_ = style.number
    if result.kind == "flips":
        m = result.metrics
        nfr = rate_text(m.negative_flip_rate, gate_threshold(result, "negative_flip_rate"), 1)
        head = (f"{count(m.negative_flips)} negative flip{'s' if m.negative_flips != 1 else ''}"
                f" ({n_(nfr)} of {count(m.n)})")
        if result.task == "classification":
            tail = (f"error rate {n_(pct(m.old_error_rate))} {style.arrow} "
                    f"{n_(pct(m.new_error_rate))}")
        elif result.task == "outcome":
            tail = (f"pass rate {n_(pct(_pass_rate(m.old_error_rate)))} {style.arrow} "
                    f"{n_(pct(_pass_rate(m.new_error_rate)))}")
            if result.scores is not None:
                sc = result.scores
                tail += (f", mean score {n_(num(sc.old_mean))} {style.arrow} "
                         f"{n_(num(sc.new_mean))}")
        else:
            reg = result.regression
            tail = f"MAE {n_(num(reg.old_mae))} {style.arrow} {n_(num(reg.new_mae))}"
    else:
        head = n_(result.headline())
        tail = ""
    gates = result.gates
    breached = result.breached
    if breached:
        names = ", ".join(_breach(g, style) for g in breached)
        others = [g for g in gates if g.passed]
        rest = f"; other gates: {gate_tally(others)}" if others else ""
        return (f"REGRESSION: {head}, gate{'s' if len(breached) > 1 else ''} {names} "
                f"breached{rest}")
    if gates:
        n = len(gates)
        if all(g.status == "pass" for g in gates):
            return f"PASSED: {head}, {'all ' if n > 1 else ''}{n} gate{'s' if n > 1 else ''} held"
        return f"PASSED: {head}, no gate breached: {gate_tally(gates)}"
    return f"NO GATES SET: {head}; {tail}" if tail else f"NO GATES SET: {head}"


def _pass_rate(error_rate: float | None) -> float | None:
    return None if error_rate is None else 1.0 - error_rate


def is_outcome(result: Any) -> bool:
    """An audit of evaluation outcomes (``--outcome-col``): passes and failures, no labels."""
    return getattr(result, "task", None) == "outcome"


def outcome_text(result: Any) -> str:
    """Where the outcomes come from, one line: ``OLD outcome column 'ok' (...); NEW ...``."""
    i = result.inputs
    return f"OLD {i.old_prediction}; NEW {i.new_prediction}"


def rows_text(result: Any, arrow: str = "->") -> str:
    """The row accounting: ``5 matched, 0 only in OLD, 0 only in NEW, 0 without label``
    (outcome audits have no labels: the last part is left out)."""
    i = result.inputs
    text = (f"{count(i.matched)} matched, {count(i.unmatched_old)} only in OLD, "
            f"{count(i.unmatched_new)} only in NEW")
    if not is_outcome(result):
        text += f", {count(i.missing_label)} without label"
    return text


def mcnemar_sentence(result: Any) -> str:
    """McNemar's test in words; it names a direction only when the difference is
    significant at the audit's level (p below 1 - confidence)."""
    t = result.mcnemar
    method = ("exact binomial" if t.method == "exact"
              else "chi-square with continuity correction")
    alpha = 1 - result.confidence
    level = f"{alpha:.0%}" if round(alpha * 100, 9) == round(alpha * 100) else f"{alpha:.3g}"
    errors = "failures" if is_outcome(result) else "errors"
    if t.b == t.c:
        said = f"no difference in {errors}"
    elif t.p_value < alpha:
        better = "fewer" if t.c > t.b else "more"
        said = (f"the new model fails {better} cases" if is_outcome(result)
                else f"the new model makes {better} errors") + f", significant at the {level} level"
    else:
        said = f"the difference is not significant at the {level} level"
    return (f"McNemar's test ({method}) on {count(t.b)} negative vs {count(t.c)} positive "
            f"flips: p = {t.p_value:.3g} ({said})")


def has_wilcoxon(result: Any) -> bool:
    """Whether the result carries a Wilcoxon test (regression, graded outcomes)."""
    return (getattr(result, "regression", None) is not None
            or getattr(result, "scores", None) is not None)


def wilcoxon_sentence(result: Any) -> str:
    scores = getattr(result, "scores", None)
    w = scores.wilcoxon if scores is not None else result.regression.wilcoxon
    what = "score" if scores is not None else "error"
    p = "n/a" if w.p_value is None else f"{w.p_value:.3g}"
    return (f"Wilcoxon signed-rank test ({w.method}) on the {count(w.n_nonzero)} non-zero "
            f"{what} differences ({count(w.n_zero)} zero): p = {p}")


def metric_rows(result: Any, minus: str = "-") -> list[tuple[str, str, str, str, str]]:
    """The headline-metric table of every format: ``(name, label, detail, value, interval)``.

    ``detail`` follows the label (``": 8 flips"``); churn is left out of regression audits,
    whose error deltas come last. ``minus`` spells the minus sign in "new - old".
    """
    m = result.metrics
    rows = []
    for name, label in METRIC_LABELS.items():
        value = getattr(m, name)
        if name == "churn_rate" and value is None and result.task in ("regression", "outcome"):
            continue
        if is_outcome(result):
            label = label.replace("error rate", "fail rate").replace(
                "independent errors", "independent failures")
        detail = {"negative_flip_rate": f": {count(m.negative_flips)} flips",
                  "positive_flip_rate": f": {count(m.positive_flips)} flips"}.get(name, "")
        rows.append((name, label.replace(" - ", f" {minus} "), detail,
                     metric_value(name, value, gate_threshold(result, name)),
                     interval(result.intervals.get(name))))
    reg = getattr(result, "regression", None)
    if reg is not None:
        r = reg.metrics()
        ci = reg.mae_delta_interval
        rows += [
            ("mae", "old MAE / new MAE", "", f"{num(r['old_mae'])} / {num(r['new_mae'])}", ""),
            ("mae_delta", f"MAE delta (new {minus} old)", "",
             signed_against(r["mae_delta"], gate_threshold(result, "mae_delta")),
             "" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}] (paired t)"),
            ("rmse", "old RMSE / new RMSE", "", f"{num(r['old_rmse'])} / {num(r['new_rmse'])}",
             ""),
            ("rmse_delta", f"RMSE delta (new {minus} old)", "",
             signed_against(r["rmse_delta"], gate_threshold(result, "rmse_delta")), ""),
        ]
    sc = getattr(result, "scores", None)
    if sc is not None:
        ci = sc.mean_delta_interval
        rows += [
            ("score", "old mean score / new mean score", "",
             f"{num(sc.old_mean)} / {num(sc.new_mean)}", ""),
            ("scores.mean_delta", f"mean score delta (new {minus} old)", "",
             signed_against(sc.mean_delta, gate_threshold(result, "scores.mean_delta")),
             "" if ci is None else f"[{signed(ci[0])}, {signed(ci[1])}] (paired t)"),
        ]
    return rows


# --------------------------------------------------------------------------- quality


#: The quality metrics' labels in every format, and whether higher is better.
QUALITY_LABELS = {
    "accuracy": ("accuracy", True), "macro_precision": ("macro precision", True),
    "macro_recall": ("macro recall", True), "macro_f1": ("macro F1", True),
    "log_loss": ("log-loss", False), "brier": ("Brier score", False),
    "roc_auc": ("ROC-AUC (macro one-vs-rest)", True), "r2": ("R²", True),
    "mape": ("MAPE (rows with y = 0 excluded)", False), "max_error": ("max error", False),
}


def quality_rows(result: Any) -> list[tuple[str, str, str, str, str]]:
    """The old | new | delta table of every format: ``(key, label, old, new, delta)``.

    Metrics with no value for either model (no scores given) are left out; the reasons
    for the others' ``n/a`` are in :func:`quality_notes`."""
    q = getattr(result, "quality", None)
    if q is None:
        return []
    rows = []
    delta = q.delta
    for key in q.keys:
        old, new = q.old.get(key), q.new.get(key)
        if old is None and new is None:
            continue
        label = QUALITY_LABELS[key][0]
        if key == "roc_auc" and q.positive_class is not None:
            label = f"ROC-AUC (positive class {shown(repr(q.positive_class))})"
        rows.append((key, label, num(old), num(new), signed(delta.get(key))))
    return rows


def quality_notes(result: Any) -> list[str]:
    """Sentences under the quality table: DeLong's test, MAPE's excluded rows, and why a
    metric is n/a."""
    q = getattr(result, "quality", None)
    if q is None:
        return []
    notes = []
    if q.delong is not None:
        t = q.delong
        lo, hi = t.interval
        test = ("z n/a (no variance)" if t.z is None else
                f"z = {t.z:.3f}, p = {t.p_value:.3g}")
        notes.append(f"ROC-AUC delta {t.delta:+.4f}, {t.confidence:.0%} interval "
                     f"[{lo:+.4f}, {hi:+.4f}] (DeLong's paired test: {test}).")
    if q.mape_excluded:
        notes.append(f"MAPE leaves out {count(q.mape_excluded)} row(s) whose label is 0.")
    shown_keys = {k for k, *_ in quality_rows(result)}
    for key, why in sorted(q.reasons.items(), key=lambda kv: (kv[0].startswith("new_"), kv[0])):
        side, _, metric = key.partition("_") if key.startswith(("old_", "new_")) else (
            "", "", key)
        if metric not in shown_keys and why == NO_SCORES:
            continue  # a metric left out of the table altogether
        who = f"{side.upper()} " if side else ""
        notes.append(f"{who}{QUALITY_LABELS[metric][0]} n/a: {shown(why)}.")
    return notes


def class_f1(result: Any, value: Any) -> tuple[str, str] | None:
    """Old and new F1 of a class (per-class tables), or None without quality rows."""
    q = getattr(result, "quality", None)
    if q is None or not q.per_class:
        return None
    row = q.class_row(value)
    return ("n/a", "n/a") if row is None else (num(row.old[2]), num(row.new[2]))
