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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .align import Plan
from .metrics import FlipCounts

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class FlipExample:
    """One negative flip: the old model was right, the new one is wrong."""

    id: str
    label: str
    old_pred: str
    new_pred: str
    old_confidence: float | None
    new_confidence: float | None
    slices: dict[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "label": self.label, "old_pred": self.old_pred,
            "new_pred": self.new_pred, "old_confidence": self.old_confidence,
            "new_confidence": self.new_confidence,
        }
        if self.slices:
            d["slices"] = dict(self.slices)
        return d


@dataclass(frozen=True)
class CountTables:
    """What the engine returns: counts per group, the flip matrix, the worst flips."""

    overall: FlipCounts
    per_class: dict[str, FlipCounts]
    per_slice: dict[str, dict[str | None, FlipCounts]]
    flip_matrix: dict[tuple[str, str], int]
    worst: tuple[FlipExample, ...]


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


def count_flips(con: duckdb.DuckDBPyConnection, plan: Plan, *, top: int) -> CountTables:
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
    rows = con.execute(sql).fetchall()

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
    return CountTables(overall, classes, slices, dict(matrix), _worst(con, plan, top))


def _worst(con: duckdb.DuckDBPyConnection, plan: Plan, top: int) -> tuple[FlipExample, ...]:
    """Worst negative flips: most confident old prediction first, ties (and no scores) by id."""
    if top <= 0:
        return ()
    slice_cols = "".join(f", s{i}" for i in range(len(plan.slices)))
    rows = con.execute(
        f"WITH j AS ({plan.joined_sql}) SELECT id, y, o, n, oc, nc{slice_cols} FROM j "
        f"WHERE o = y AND n <> y ORDER BY oc DESC NULLS LAST, id LIMIT {int(top)}"
    ).fetchall()
    return tuple(
        FlipExample(
            id=_text(r[0]), label=_text(r[1]), old_pred=_text(r[2]), new_pred=_text(r[3]),
            old_confidence=None if r[4] is None else float(r[4]),
            new_confidence=None if r[5] is None else float(r[5]),
            slices=dict(zip(plan.slices, r[6:], strict=True)),
        )
        for r in rows
    )
