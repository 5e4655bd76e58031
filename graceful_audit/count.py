"""Counting: the sufficient statistics of an audit, computed in the engine in one pass.

One aggregation over the join of old, new and labels returns, with ``GROUPING SETS``:

* per combination of the plan's checks (in OLD, in NEW, matched, null id, null label...)
  the row count - the accounting and the validation of :class:`~graceful_audit.align.Aligner`;
* per true class ``y`` and, for negative flips, the new prediction: counts of
  (old right, new right, old != new) - from which the overall counts, the per-class
  breakdown and the negative-flip matrix follow (for regression: sums of errors);
* per value of each slice column: the same counts;
* where the engine has a top-n aggregate, the best candidates for the worst negative flips.

Only these small results leave the engine; the metric code never sees a row. When the
candidates cannot settle the worst flips exactly (ties in the key), one more query does.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .align import Plan
from .metrics import FlipCounts
from .regression import (
    WILCOXON_SMALL,
    ErrorSums,
    RegressionSummary,
    paired_t_interval,
    wilcoxon_from_ranks,
    wilcoxon_small,
)

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class FlipExample:
    """One negative flip: the old model was right, the new one is wrong.

    Classes are text; a regression example carries numbers and its absolute errors.
    """

    id: str
    label: str | float
    old_pred: str | float
    new_pred: str | float
    old_confidence: float | None = None
    new_confidence: float | None = None
    slices: dict[str, str | None] = field(default_factory=dict)
    old_error: float | None = None
    new_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "label": self.label, "old_pred": self.old_pred,
            "new_pred": self.new_pred,
        }
        if self.old_error is None:
            d.update(old_confidence=self.old_confidence, new_confidence=self.new_confidence)
        else:
            d.update(old_error=self.old_error, new_error=self.new_error)
        if self.slices:
            d["slices"] = dict(self.slices)
        return d

    @classmethod
    def from_dict(cls, e: dict[str, Any]) -> FlipExample:
        return cls(e["id"], e["label"], e["old_pred"], e["new_pred"], e.get("old_confidence"),
                   e.get("new_confidence"), e.get("slices", {}), e.get("old_error"),
                   e.get("new_error"))


@dataclass(frozen=True)
class CountTables:
    """What the engine returns: counts per group, the flip matrix, the worst flips."""

    overall: FlipCounts
    per_class: dict[str, FlipCounts]
    per_slice: dict[str, dict[str | None, FlipCounts]]
    flip_matrix: dict[tuple[str, str], int]
    worst: tuple[FlipExample, ...]
    regression: RegressionSummary | None = None
    slice_errors: dict[str, dict[str | None, ErrorSums]] = field(default_factory=dict)


#: Ties are broken by id in natural order, the same for every file format: ids that are
#: integers (or integer text, as CSV ids are read) numerically, then the rest as text.
ID_ORDER = "TRY_CAST(id AS BIGINT) NULLS LAST, CAST(id AS STRING)"


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _add(counts: dict[str, int], ook: bool, nok: bool, dis: bool, c: int) -> None:
    if ook and nok:
        counts["both_right"] += c
    elif ook:
        counts["negative_flips"] += c
    elif nok:
        counts["positive_flips"] += c
    else:
        counts["both_wrong"] += c
        if dis:
            counts["both_wrong_disagree"] += c


@dataclass(frozen=True)
class FirstPass:
    """What the one pass over the join returned: check counts and the counted groups."""

    checks: dict[str, int]
    tables: CountTables
    candidates: tuple[tuple[Any, Any], ...] | None = None  # worst-flip (key, id) candidates
    sums: tuple[float, ...] = ()


def _pass_sql(plan: Plan, measures: str, extra: str = "", flip_cols: bool = True) -> str:
    """The one aggregation: grouped by every check, class and flip outcome, and per slice."""
    k = len(plan.slices)
    slice_cols = [f"s{i}" for i in range(k)]
    # Every check is a bit of one integer: grouping by it is cheaper than by many booleans.
    mask = " + ".join(f"(CASE WHEN {cond} THEN {1 << i} ELSE 0 END)"
                      for i, cond in enumerate(plan.checks.values()))
    flag_sql = f"({mask}) AS checks"
    outcome = (
        "CASE WHEN a THEN y END AS y, CASE WHEN a AND o = y AND n <> y THEN n END AS nf, "
        "CASE WHEN a THEN o = y END AS ook, CASE WHEN a THEN n = y END AS nok, "
        "CASE WHEN a THEN o <> n END AS dis"
    ) if flip_cols else extra
    f_sql = (f"SELECT {flag_sql}, a, {outcome}, oid, o, n, oc, nc"
             + "".join(f", {s}" for s in slice_cols) + " FROM j")
    keys = "y, nf, ook, nok, dis" if flip_cols else "ook, nok"
    sets = [f"(checks, a, {keys})"] + [f"(a, {s}, ook, nok{', dis' if flip_cols else ''})"
                                       for s in slice_cols]
    groupings = "".join(f"grouping({s}), " for s in slice_cols)
    select_keys = f"checks, a, {'y, nf, ' if flip_cols else ''}" + "".join(
        f"{s}, " for s in slice_cols) + ("ook, nok, dis" if flip_cols else "ook, nok")
    group_by = f"GROUPING SETS ({', '.join(sets)})" if slice_cols else sets[0][1:-1]
    return (f"{plan.with_sql}, f AS ({f_sql}) SELECT {groupings}{select_keys}, {measures} "
            f"FROM f GROUP BY {group_by}")


def _add_checks(checks: dict[str, int], names: list[str], mask: int | None, c: int) -> None:
    """Count ``c`` rows for every check whose bit is set in ``mask``."""
    for i, name in enumerate(names):
        if (mask or 0) >> i & 1:
            checks[name] += c


def _worst_key(plan: Plan) -> str:
    """A scalar that orders the worst flips (smaller first) wherever it is unique.

    Most confident old prediction first when there are scores; else the id, when ids are
    integers. Other ids give no key: the candidates then cannot settle the order.
    """
    if plan.old_confidence:
        return "-oc"
    return "CAST(oid AS DOUBLE)" if plan.integer_ids else "TRY_CAST(oid AS DOUBLE)"


def count_flips(engine: Engine, plan: Plan, *, top: int) -> FirstPass:
    """The one pass of a classification audit."""
    k = len(plan.slices)
    measures = "count(*)"
    top_n = engine.dialect.top_n("oid", _worst_key(plan), top + 1, "nf IS NOT NULL") \
        if top > 0 else None
    if top_n:
        measures += ", " + ", ".join(top_n)
    rows = engine.rows(_pass_sql(plan, measures))

    checks: dict[str, int] = defaultdict(int)
    per_class: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    matrix: dict[tuple[str, str], int] = defaultdict(int)
    candidates: list[tuple[Any, Any]] = []  # (key, id)
    names = list(plan.checks)
    for row in rows:
        gs, rest = row[:k], row[k:]
        mask, a, y, nf = rest[0], rest[1], rest[2], rest[3]
        svals = rest[4 : 4 + k]
        ook, nok, dis, c = rest[4 + k : 8 + k]
        if all(g == 1 for g in gs):  # the main grouping set
            _add_checks(checks, names, mask, c)
            if not a:
                continue
            cls = _text(y)
            _add(per_class[cls], ook, nok, dis, c)
            if nf is not None:
                matrix[(cls, _text(nf))] += c
                if top_n:
                    candidates.extend(zip(rest[9 + k] or [], rest[8 + k] or [], strict=True))
        elif a:
            i = list(gs).index(0)
            _add(per_slice[i][svals[i]], ook, nok, dis, c)

    classes = {cls: FlipCounts(**d) for cls, d in per_class.items()}
    tables = CountTables(
        overall=sum(classes.values(), FlipCounts()),
        per_class=classes,
        per_slice={name: {v: FlipCounts(**d) for v, d in per_slice[i].items()}
                   for i, name in enumerate(plan.slices)},
        flip_matrix=dict(matrix),
        worst=(),
    )
    return FirstPass(dict(checks), tables, tuple(candidates) if top_n else None)


def _settled(candidates: tuple[tuple[Any, Any], ...], total: int, top: int) -> list | None:
    """The ids of the worst ``top`` flips from per-group candidates, or None if open.

    Each group contributed its ``top + 1`` smallest keys, so the overall ``top + 1``
    smallest are among the candidates; the first ``top`` are settled unless the key ties
    across the cut. Ties inside the first ``top`` are ordered by id, as the query would.
    """
    # Rows without a key (text ids, no scores) are not candidates: then nothing is settled.
    if len(candidates) < min(total, top + 1) or any(k is None for k, _ in candidates):
        return None
    best = heapq.nsmallest(top + 1, candidates, key=lambda c: c[0])
    if total > top and not best[top - 1][0] < best[top][0]:
        return None
    return [i for _k, i in sorted(best[:top], key=lambda c: (c[0], _id_key(c[1])))]


def _id_key(value: object) -> tuple[int, int, str]:
    """The natural id order of :data:`ID_ORDER`: integer ids numerically, then text."""
    text = _text(value)
    try:
        return (0, int(text), text)
    except ValueError:
        return (1, 0, text)


def worst_flips(engine: Engine, plan: Plan, first: FirstPass, *, top: int
                ) -> tuple[FlipExample, ...]:
    """Worst negative flips: most confident old prediction first, ties (and no scores) by id."""
    total = first.tables.overall.negative_flips
    if top <= 0 or total == 0:
        return ()
    slice_cols = "".join(f", s{i}" for i in range(len(plan.slices)))
    ids = _settled(first.candidates, total, top) if first.candidates is not None else None
    if ids is None:
        found = engine.rows(
            f"{plan.audited_sql} SELECT id, y, o, n, oc, nc{slice_cols} FROM aud "
            f"WHERE o = y AND n <> y ORDER BY oc DESC NULLS LAST, {ID_ORDER} LIMIT {int(top)}"
        )
    else:  # fetch the settled rows by id: the filter reaches the scans, no full join
        listed = ", ".join(repr(i) if isinstance(i, int) else engine.dialect.literal(str(i))
                           for i in ids)
        by_id = {r[0]: r for r in engine.rows(
            f"{plan.audited_sql} SELECT id, y, o, n, oc, nc{slice_cols} FROM aud "
            f"WHERE id IN ({listed})")}
        found = [by_id[i] for i in ids]
    rows = [dict(zip(["id", "y", "o", "n", "oc", "nc"]
                     + [f"s{i}" for i in range(len(plan.slices))], r, strict=True))
            for r in found]
    return tuple(
        FlipExample(
            id=_text(r["id"]), label=_text(r["y"]), old_pred=_text(r["o"]),
            new_pred=_text(r["n"]),
            old_confidence=None if r["oc"] is None else float(r["oc"]),
            new_confidence=None if r["nc"] is None else float(r["nc"]),
            slices={name: r[f"s{i}"] for i, name in enumerate(plan.slices)},
        )
        for r in rows
    )


def count_regression(engine: Engine, plan: Plan, *, atol: float, rtol: float) -> FirstPass:
    """The one pass of a regression audit: tolerance flips and error sums per group."""
    k = len(plan.slices)
    tol = f"({float(atol)!r} + {float(rtol)!r} * abs(y))"
    outcome = (f"CASE WHEN a THEN abs(o - y) END AS eo, CASE WHEN a THEN abs(n - y) END AS en, "
               f"CASE WHEN a THEN abs(o - y) <= {tol} END AS ook, "
               f"CASE WHEN a THEN abs(n - y) <= {tol} END AS nok")
    fsum = engine.dialect.exact_sum
    measures = f"count(*), {fsum('eo')}, {fsum('en')}, {fsum('eo * eo')}, {fsum('en * en')}"
    rows = engine.rows(_pass_sql(plan, measures, outcome, flip_cols=False))

    checks: dict[str, int] = defaultdict(int)
    overall: dict[str, int] = defaultdict(int)
    overall_sums = [0, 0.0, 0.0, 0.0, 0.0]
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    slice_sums: list[dict[str | None, list[float]]] = [
        defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0]) for _ in range(k)
    ]
    names = list(plan.checks)
    for row in rows:
        gs, rest = row[:k], row[k:]
        mask, a, svals = rest[0], rest[1], rest[2 : 2 + k]
        ook, nok = rest[2 + k], rest[3 + k]
        agg = rest[4 + k :]
        if all(g == 1 for g in gs):
            _add_checks(checks, names, mask, agg[0])
            if not a:
                continue
            _add(overall, ook, nok, False, agg[0])
            target = overall_sums
        elif a:
            i = list(gs).index(0)
            _add(per_slice[i][svals[i]], ook, nok, False, agg[0])
            target = slice_sums[i][svals[i]]
        else:
            continue
        for j, v in enumerate(agg):
            target[j] += v or 0
    tables = CountTables(
        overall=FlipCounts(**overall), per_class={},
        per_slice={name: {v: FlipCounts(**d) for v, d in per_slice[i].items()}
                   for i, name in enumerate(plan.slices)},
        flip_matrix={}, worst=(),
        slice_errors={name: {v: ErrorSums(int(x[0]), *map(float, x[1:]))
                             for v, x in slice_sums[i].items()}
                      for i, name in enumerate(plan.slices)},
    )
    return FirstPass(dict(checks), tables, None, tuple(overall_sums))


def _bin_sql(x: str, edges: tuple[float, ...]) -> str:
    """SQL for the bin of ``x`` among ``edges``: how many inner edges are ``<= x``.

    numpy's bins (``[e_i, e_i+1)``, the last one closed) for ``edges[0] <= x <= edges[-1]``.
    Only comparisons with the edges themselves (exact doubles, parsed from their repr), no
    arithmetic: the same bins on every engine and in numpy.
    """
    terms = [f"CASE WHEN {x} >= CAST('{e!r}' AS DOUBLE) THEN 1 ELSE 0 END" for e in edges[1:-1]]
    return "(" + (" + ".join(terms) or "0") + ")"


def _regression_histograms(
    engine: Engine, d_sql: str, n_total: int, d_min: float | None, d_max: float | None,
    e_max: float | None,
) -> tuple[Any, Any]:
    """The histogram of ``d`` and the 2-d histogram of ``(eo, en)``: GROUP BY bin indices."""
    from .regression import Histogram, histogram_edges

    d_edges = histogram_edges(d_min, d_max)
    e_edges = histogram_edges(0.0 if e_max is not None else None, e_max)
    d_hist = e_hist = None
    if d_edges is not None:
        counts = [0] * (len(d_edges) - 1)
        if n_total:
            for b, c in engine.rows(f"{d_sql} SELECT b, count(*) FROM (SELECT "
                                    f"{_bin_sql('d', d_edges)} AS b FROM f) h GROUP BY b"):
                counts[int(b)] = int(c)
        d_hist = Histogram(d_edges, tuple(counts))
    if e_edges is not None:
        grid = [[0] * (len(e_edges) - 1) for _ in range(len(e_edges) - 1)]
        if n_total:
            for bo, bn, c in engine.rows(
                f"{d_sql} SELECT bo, bn, count(*) FROM (SELECT {_bin_sql('eo', e_edges)} AS bo, "
                f"{_bin_sql('en', e_edges)} AS bn FROM f) h GROUP BY bo, bn"
            ):
                grid[int(bo)][int(bn)] = int(c)
        e_hist = Histogram(e_edges, tuple(tuple(r) for r in grid))
    return d_hist, e_hist


def finish_regression(
    engine: Engine, plan: Plan, first: FirstPass, *, atol: float, rtol: float, top: int,
    confidence: float,
) -> CountTables:
    """After validation: the paired t interval, Wilcoxon's rank sums and the worst flips."""
    tol = f"({float(atol)!r} + {float(rtol)!r} * abs(y))"
    d_sql = (f"{plan.audited_sql}, f AS (SELECT id, y, o, n, abs(o - y) AS eo, "
             f"abs(n - y) AS en, abs(n - y) - abs(o - y) AS d, abs(o - y) <= {tol} AS ook, "
             f"abs(n - y) <= {tol} AS nok"
             + "".join(f", s{i}" for i in range(len(plan.slices))) + " FROM aud)")
    n_total, mean_d, var_d, d_min, d_max, eo_max, en_max = engine.first(
        f"{d_sql} SELECT count(*), avg(d), var_samp(d), min(d), max(d), max(eo), max(en) FROM f")
    e_max = None if eo_max is None or en_max is None else max(eo_max, en_max)
    d_hist, e_hist = _regression_histograms(engine, d_sql, int(n_total), d_min, d_max, e_max)
    if n_total <= WILCOXON_SMALL:
        diffs = [r[0] for r in engine.rows(f"{d_sql} SELECT d FROM f ORDER BY id")]
        wilcoxon = wilcoxon_small(diffs)
    else:
        nz, r_plus, r_minus, tie_term = engine.first(
            f"{d_sql}, ad AS (SELECT abs(d) AS ad, count(*) AS c, "
            "count(*) FILTER (WHERE d > 0) AS pos FROM f WHERE d <> 0 GROUP BY abs(d)), "
            "r AS (SELECT c, pos, sum(c) OVER (ORDER BY ad ROWS BETWEEN UNBOUNDED PRECEDING "
            "AND CURRENT ROW) - c AS before FROM ad) "
            "SELECT coalesce(sum(c), 0), coalesce(sum(pos * (before + (c + 1) / 2.0)), 0), "
            "coalesce(sum((c - pos) * (before + (c + 1) / 2.0)), 0), "
            "coalesce(sum(CAST(c AS DOUBLE) * c * c - c), 0) FROM r"
        )
        wilcoxon = wilcoxon_from_ranks(int(nz), int(n_total - nz), float(r_plus),
                                       float(r_minus), float(tie_term))
    sums = first.sums
    errors = ErrorSums(int(sums[0]), *map(float, sums[1:]))
    summary = RegressionSummary(
        float(atol), float(rtol), errors, mean_d, var_d,
        paired_t_interval(mean_d, var_d, int(n_total), confidence=confidence), wilcoxon,
        d_histogram=d_hist, error_histogram=e_hist,
    )
    slice_cols_sql = "".join(f", s{i}" for i in range(len(plan.slices)))
    worst_rows = engine.rows(
        f"{d_sql} SELECT id, y, o, n, eo, en{slice_cols_sql} FROM f WHERE ook AND NOT nok "
        f"ORDER BY d DESC, {ID_ORDER} LIMIT {int(top)}"
    ) if top > 0 else []
    worst = tuple(
        FlipExample(_text(r[0]), r[1], r[2], r[3],
                    slices=dict(zip(plan.slices, r[6:], strict=True)),
                    old_error=r[4], new_error=r[5])
        for r in worst_rows
    )
    return dataclasses.replace(first.tables, worst=worst, regression=summary)
