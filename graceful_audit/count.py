"""Counting: the sufficient statistics of a flips audit, computed in the engine.

One aggregation over the joined view returns, with ``GROUPING SETS`` (one scan):

* per true class ``y`` and, for negative flips, the new prediction: counts of
  (old right, new right, old != new) - from which the overall counts, the per-class
  breakdown and the negative-flip matrix follow;
* per value of each slice column: the same (old right, new right, old != new) counts.

A second query returns the worst negative flips. Only these small results leave the
engine; the metric code never sees a row.
"""

from __future__ import annotations

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


def count_flips(engine: Engine, plan: Plan, *, top: int) -> CountTables:
    """Run the aggregation and the worst-flips query for ``plan``."""
    k = len(plan.slices)
    slice_cols = [f"s{i}" for i in range(k)]
    flags = "(o = y) AS ook, (n = y) AS nok, (o <> n) AS dis"
    f_sql = (f"SELECT y, CASE WHEN o = y AND n <> y THEN n END AS nf, {flags}"
             + "".join(f", {s}" for s in slice_cols) + " FROM j")
    sets = ["(y, nf, ook, nok, dis)"] + [f"({s}, ook, nok, dis)" for s in slice_cols]
    groupings = ", ".join(f"grouping({s})" for s in slice_cols)
    sql = (
        f"WITH j AS ({plan.joined_sql}), f AS ({f_sql}) "
        f"SELECT grouping(y) AS gy{', ' + groupings if groupings else ''}, y, nf, "
        f"{', '.join(slice_cols) + ', ' if slice_cols else ''}ook, nok, dis, count(*) "
        f"FROM f GROUP BY GROUPING SETS ({', '.join(sets)})"
    )
    rows = engine.rows(sql)

    per_class: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    matrix: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        gy, gs = row[0], row[1 : 1 + k]
        y, nf = row[1 + k], row[2 + k]
        svals = row[3 + k : 3 + 2 * k]
        ook, nok, dis, c = row[3 + 2 * k :]
        if gy == 0:
            cls = _text(y)
            _add(per_class[cls], ook, nok, dis, c)
            if nf is not None:
                matrix[(cls, _text(nf))] += c
        else:
            i = list(gs).index(0)
            _add(per_slice[i][svals[i]], ook, nok, dis, c)

    classes = {cls: FlipCounts(**d) for cls, d in per_class.items()}
    overall = sum(classes.values(), FlipCounts())
    slices = {
        name: {v: FlipCounts(**d) for v, d in per_slice[i].items()}
        for i, name in enumerate(plan.slices)
    }
    return CountTables(overall, classes, slices, dict(matrix), _worst(engine, plan, top))


def _worst(engine: Engine, plan: Plan, top: int) -> tuple[FlipExample, ...]:
    """Worst negative flips: most confident old prediction first, ties (and no scores) by id."""
    if top <= 0:
        return ()
    slice_cols = "".join(f", s{i}" for i in range(len(plan.slices)))
    rows = engine.rows(
        f"WITH j AS ({plan.joined_sql}) SELECT id, y, o, n, oc, nc{slice_cols} FROM j "
        f"WHERE o = y AND n <> y ORDER BY oc DESC NULLS LAST, {ID_ORDER} LIMIT {int(top)}"
    )
    return tuple(
        FlipExample(
            id=_text(r[0]), label=_text(r[1]), old_pred=_text(r[2]), new_pred=_text(r[3]),
            old_confidence=None if r[4] is None else float(r[4]),
            new_confidence=None if r[5] is None else float(r[5]),
            slices=dict(zip(plan.slices, r[6:], strict=True)),
        )
        for r in rows
    )


def count_regression(
    engine: Engine, plan: Plan, *, atol: float, rtol: float, top: int, confidence: float,
) -> CountTables:
    """Tolerance flips and error sums, overall and per slice; the Wilcoxon rank sums."""
    k = len(plan.slices)
    slice_cols = [f"s{i}" for i in range(k)]
    tol = f"({float(atol)!r} + {float(rtol)!r} * abs(y))"
    f_sql = (f"SELECT id, y, o, n, abs(o - y) AS eo, abs(n - y) AS en, "
             f"abs(n - y) - abs(o - y) AS d, abs(o - y) <= {tol} AS ook, "
             f"abs(n - y) <= {tol} AS nok" + "".join(f", {s}" for s in slice_cols) + " FROM j")
    with_sql = f"WITH j AS ({plan.joined_sql}), f AS ({f_sql})"
    fsum = engine.dialect.exact_sum
    sums = f"count(*), {fsum('eo')}, {fsum('en')}, {fsum('eo * eo')}, {fsum('en * en')}"
    sets = ["(ook, nok)"] + [f"({s}, ook, nok)" for s in slice_cols]
    groupings = "".join(f"grouping({s}), " for s in slice_cols)
    rows = engine.rows(
        f"{with_sql} SELECT {groupings}{''.join(f'{s}, ' for s in slice_cols)}ook, nok, {sums} "
        f"FROM f GROUP BY GROUPING SETS ({', '.join(sets)})"
    )
    overall: dict[str, int] = defaultdict(int)
    overall_sums = [0, 0.0, 0.0, 0.0, 0.0]
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    slice_sums: list[dict[str | None, list[float]]] = [
        defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0]) for _ in range(k)
    ]
    for row in rows:
        gs, svals = row[:k], row[k : 2 * k]
        ook, nok = row[2 * k], row[2 * k + 1]
        agg = row[2 * k + 2 :]
        if all(g == 1 for g in gs):
            _add(overall, ook, nok, False, agg[0])
            target = overall_sums
        else:
            i = list(gs).index(0)
            _add(per_slice[i][svals[i]], ook, nok, False, agg[0])
            target = slice_sums[i][svals[i]]
        for j, v in enumerate(agg):
            target[j] += v or 0

    n_total, mean_d, var_d = engine.first(
        f"{with_sql} SELECT count(*), avg(d), var_samp(d) FROM f")
    if n_total <= WILCOXON_SMALL:
        diffs = [r[0] for r in engine.rows(f"{with_sql} SELECT d FROM f ORDER BY id")]
        wilcoxon = wilcoxon_small(diffs)
    else:
        nz, r_plus, r_minus, tie_term = engine.first(
            f"{with_sql}, a AS (SELECT abs(d) AS ad, count(*) AS c, "
            "count(*) FILTER (WHERE d > 0) AS pos FROM f WHERE d <> 0 GROUP BY ad), "
            "r AS (SELECT c, pos, sum(c) OVER (ORDER BY ad ROWS BETWEEN UNBOUNDED PRECEDING "
            "AND CURRENT ROW) - c AS before FROM a) "
            "SELECT coalesce(sum(c), 0), coalesce(sum(pos * (before + (c + 1) / 2.0)), 0), "
            "coalesce(sum((c - pos) * (before + (c + 1) / 2.0)), 0), "
            "coalesce(sum(CAST(c AS DOUBLE) * c * c - c), 0) FROM r"
        )
        wilcoxon = wilcoxon_from_ranks(int(nz), int(n_total - nz), float(r_plus),
                                       float(r_minus), float(tie_term))
    errors = ErrorSums(int(overall_sums[0]), *map(float, overall_sums[1:]))
    summary = RegressionSummary(
        float(atol), float(rtol), errors, mean_d, var_d,
        paired_t_interval(mean_d, var_d, int(n_total), confidence=confidence), wilcoxon,
    )
    slice_cols_sql = "".join(f", {s}" for s in slice_cols)
    worst_rows = engine.rows(
        f"{with_sql} SELECT id, y, o, n, eo, en{slice_cols_sql} FROM f WHERE ook AND NOT nok "
        f"ORDER BY d DESC, {ID_ORDER} LIMIT {int(max(top, 0))}"
    ) if top > 0 else []
    worst = tuple(
        FlipExample(_text(r[0]), r[1], r[2], r[3], slices=dict(zip(plan.slices, r[6:],
                                                                    strict=True)),
                    old_error=r[4], new_error=r[5])
        for r in worst_rows
    )
    return CountTables(
        overall=FlipCounts(**overall),
        per_class={},
        per_slice={name: {v: FlipCounts(**d) for v, d in per_slice[i].items()}
                   for i, name in enumerate(plan.slices)},
        flip_matrix={},
        worst=worst,
        regression=summary,
        slice_errors={name: {v: ErrorSums(int(x[0]), *map(float, x[1:]))
                             for v, x in slice_sums[i].items()}
                      for i, name in enumerate(plan.slices)},
    )
