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
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .align import Plan
from .engine import INTEGER_TEXT
from .metrics import FlipCounts
from .regression import (
    WILCOXON_SMALL,
    ErrorSums,
    RegressionSummary,
    WilcoxonResult,
    paired_t_interval,
    wilcoxon_from_ranks,
    wilcoxon_small,
)

if TYPE_CHECKING:
    from .engine import Engine

_INTEGER_TEXT = re.compile(INTEGER_TEXT)


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
    #: an outcome audit's example (passed, now fails): its graded scores, if any
    old_score: float | None = None
    new_score: float | None = None
    outcome: bool = False
    #: the parts of a composite id (``--id-col task --id-col doc_id``)
    id_parts: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.outcome:
            out: dict[str, Any] = {"id": self.id}
            if self.id_parts is not None:
                out["id_parts"] = list(self.id_parts)
            out.update(old_score=self.old_score, new_score=self.new_score)
            if self.slices:
                out["slices"] = dict(self.slices)
            return out
        d: dict[str, Any] = {
            "id": self.id, "label": self.label, "old_pred": self.old_pred,
            "new_pred": self.new_pred,
        }
        if self.old_error is None:
            d.update(old_confidence=self.old_confidence, new_confidence=self.new_confidence)
        else:
            d.update(old_error=self.old_error, new_error=self.new_error)
        if self.id_parts is not None:
            d["id_parts"] = list(self.id_parts)
        if self.slices:
            d["slices"] = dict(self.slices)
        return d

    @classmethod
    def from_dict(cls, e: dict[str, Any]) -> FlipExample:
        parts = tuple(e["id_parts"]) if e.get("id_parts") is not None else None
        if "label" not in e:  # an outcome audit's example
            return cls(e["id"], "pass", "pass", "fail", slices=e.get("slices", {}),
                       old_score=e.get("old_score"), new_score=e.get("new_score"),
                       outcome=True, id_parts=parts)
        return cls(e["id"], e["label"], e["old_pred"], e["new_pred"], e.get("old_confidence"),
                   e.get("new_confidence"), e.get("slices", {}), e.get("old_error"),
                   e.get("new_error"), id_parts=parts)


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
    #: audited rows per predicted class, of the ``old`` and the ``new`` model (classification)
    predicted: dict[str, dict[str, int]] = field(default_factory=dict)
    #: audited rows per (label, predicted class), of the ``old`` and the ``new`` model
    confusion: dict[str, dict[tuple[str, str], int]] = field(default_factory=dict)


def id_order(engine: Engine, col: str = "id") -> str:
    """SQL ORDER BY terms for the natural id order of :func:`id_key`."""
    text = f"CAST({col} AS STRING)"
    return f"{engine.dialect.integer_text(text)} NULLS LAST, {text}"


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


class Candidate(NamedTuple):
    """A negative flip that may be among the worst: its order key, id, label and new class.

    The old prediction of a negative flip is its label, so without scores a candidate is
    the whole example but for its slice values.
    """

    key: Any
    id: Any
    y: Any
    new: Any


@dataclass(frozen=True)
class FirstPass:
    """What the one pass over the join returned: check counts and the counted groups."""

    checks: dict[str, int]
    tables: CountTables
    candidates: tuple[Candidate, ...] | None = None  # None: the engine has no top-n
    sums: tuple[float, ...] = ()


def _pass_sql(plan: Plan, outcome: str, key_sets: Sequence[str], slice_keys: str,
              measures: str) -> str:
    """The one aggregation over ``j``: grouped by the check mask and each of ``key_sets``
    (column lists over ``outcome``'s columns), and by the mask, each slice and
    ``slice_keys``.

    ``outcome`` defines the key columns from ``j``'s ``y, o, n``. It is computed for every
    row, audited or not; rows that are not audited are told apart by their check mask.
    Each row starts with one ``grouping()`` flag per key set (of its first column that is
    not in every set; none for one set) and per slice (0: grouped by it), then the mask, the
    slice values and every key column.
    """
    k = len(plan.slices)
    slice_cols = [f"s{i}" for i in range(k)]
    sets_cols = [[c.strip() for c in keys.split(",")] for keys in key_sets]
    cols = list(dict.fromkeys(c for keys in sets_cols for c in keys))
    # one flag per key set: its first column that is not in every set
    flagged = list(dict.fromkeys(
        next(c for c in keys if not all(c in other for other in sets_cols))
        for keys in sets_cols if len(sets_cols) > 1))
    f_sql = (f"SELECT {plan.checks_sql()} AS checks, {outcome}, oid, oc, nc"
             + "".join(f", {s}" for s in slice_cols) + " FROM j")
    sets = ([f"(checks, {keys})" for keys in key_sets]
            + [f"(checks, {', '.join(filter(None, (s, slice_keys)))})" for s in slice_cols])
    groupings = "".join(f"grouping({c}), " for c in (*flagged, *slice_cols))
    select_keys = ", ".join(["checks", *slice_cols, *cols])
    group_by = f"GROUPING SETS ({', '.join(sets)})" if len(sets) > 1 else sets[0][1:-1]
    return (f"{plan.with_sql}, f AS ({f_sql}) SELECT {groupings}{select_keys}, {measures} "
            f"FROM f GROUP BY {group_by}")


def _checks(plan: Plan, per_mask: dict[int | None, int]) -> dict[str, int]:
    """Row counts per check, from row counts per check mask."""
    return {name: sum(c for mask, c in per_mask.items() if (mask or 0) >> i & 1)
            for i, name in enumerate(plan.checks)}


def _worst_key(engine: Engine, plan: Plan) -> tuple[str, str | None]:
    """A scalar that orders the worst flips (smaller first) wherever it is unique, and the
    column that identifies the row when the key is not the id itself.

    Most confident old prediction first when there are scores; else the id, when ids are
    integers or integer text. Other ids give no key (NULL, which top-n skips): when fewer
    candidates than needed are left, the candidates cannot settle the order.
    """
    if plan.old_confidence:
        return "-oc", "oid"
    if plan.integer_ids:
        return "oid", None
    return engine.dialect.integer_text("oid"), "oid"


def _add_counts(counts: dict[str, int], c: int, ook: int, nok: int, both: int,
                disagree: int) -> None:
    """Add ``c`` rows of which the old model got ``ook`` right, the new one ``nok``, both
    ``both``, and ``disagree`` were wrong for both with different predictions."""
    counts["both_right"] += both
    counts["negative_flips"] += ook - both
    counts["positive_flips"] += nok - both
    counts["both_wrong"] += c - ook - nok + both
    counts["both_wrong_disagree"] += disagree


def count_flips(engine: Engine, plan: Plan, *, top: int) -> FirstPass:
    """The one pass of a classification audit.

    Two key sets, (label, old prediction) and (label, new prediction), and one per slice,
    each group with its rows, how many each model got right, how many both got right and
    how many both got wrong with different predictions. The first set gives the per-class
    flip counts and the old model's confusion counts; the second the new model's confusion
    counts and the negative-flip matrix (a (label, new prediction) group's rows the old
    model got right and the new one did not), where the worst-flip candidates are taken.
    Two hash tables of one entry per confusion cell, whose keys are plain columns (keyed by
    the right/wrong flags as well, the pass took 10-20% more CPU): no measurable cost over
    counting the flips' keys and each model's predicted classes apart.
    """
    k = len(plan.slices)
    outcome = "y, o, n, o = y AS ook, n = y AS nok, o <> n AS dis"
    measures = ("count(*), count(*) FILTER (WHERE ook), count(*) FILTER (WHERE nok), "
                "count(*) FILTER (WHERE ook AND nok), "
                "count(*) FILTER (WHERE dis AND NOT ook AND NOT nok)")
    key, arg = _worst_key(engine, plan)
    top_n = engine.dialect.top_n(key, top + 1, "ook AND NOT nok", arg) if top > 0 else None
    if top_n:
        measures += ", " + ", ".join(top_n)
    rows = engine.rows(_pass_sql(plan, outcome, ("y, o", "y, n"), "", measures))

    per_mask: dict[int | None, int] = defaultdict(int)
    per_class: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    predicted: dict[str, dict[str, int]] = {"old": defaultdict(int), "new": defaultdict(int)}
    confusion: dict[str, dict[tuple[str, str], int]] = {"old": {}, "new": {}}
    matrix: dict[tuple[str, str], int] = defaultdict(int)
    groups: list[tuple[list, list, Any, Any]] = []  # per flip group: keys, ids, y, new
    audited = {mask: plan.audited(mask) for mask in {row[k + 2] for row in rows}}
    for row in rows:
        mask = row[k + 2]
        y, o, n, c, ook, nok, both, disagree, *best = row[2 * k + 3 :]
        if row[0] == 0:  # (label, old prediction)
            per_mask[mask] += c
            if not audited[mask]:
                continue
            cls = _text(y)
            _add_counts(per_class[cls], c, ook, nok, both, disagree)
            if o is not None:
                pred = _text(o)
                predicted["old"][pred] += c
                cells = confusion["old"]
                cells[(cls, pred)] = cells.get((cls, pred), 0) + c
        elif row[1] == 0:  # (label, new prediction)
            if n is None or not audited[mask]:
                continue
            cls = _text(y)
            pred = _text(n)
            predicted["new"][pred] += c
            cells = confusion["new"]
            cells[(cls, pred)] = cells.get((cls, pred), 0) + c
            if ook > both:  # old right, new wrong: negative flips
                matrix[(cls, pred)] += ook - both
                if top_n and best[-1]:  # [ids,] keys: the group's smallest keys (and ids)
                    groups.append((best[-1], best[0], y, n))
        elif audited[mask]:
            i = row[2 : k + 2].index(0)
            _add_counts(per_slice[i][row[k + 3 + i]], c, ook, nok, both, disagree)

    classes = {cls: FlipCounts(**d) for cls, d in per_class.items()}
    tables = CountTables(
        overall=sum(classes.values(), FlipCounts()),
        per_class=classes,
        per_slice={name: {v: FlipCounts(**d) for v, d in per_slice[i].items()}
                   for i, name in enumerate(plan.slices)},
        flip_matrix=dict(matrix),
        worst=(),
        predicted={side: dict(counts) for side, counts in predicted.items()},
        confusion={side: dict(cells) for side, cells in confusion.items()},
    )
    return FirstPass(_checks(plan, per_mask), tables,
                     _smallest(groups, top + 1) if top_n else None)


def _smallest(groups: list[tuple[list, list, Any, Any]], n: int) -> tuple[Candidate, ...]:
    """The ``n`` candidates with the smallest keys over every group's candidates, in key
    order.

    A group whose smallest key exceeds the ``n``-th smallest so far cannot contribute.
    """
    best: list[Candidate] = []
    for keys, ids, y, new in groups:
        if len(best) >= n and min(keys) > best[-1].key:
            continue
        best.extend(Candidate(kv, i, y, new) for kv, i in zip(keys, ids, strict=True))
        best.sort(key=lambda c: c.key)
        del best[n:]
    return tuple(best)


def _settled(candidates: tuple[Candidate, ...], total: int, top: int) -> list[Candidate] | None:
    """The worst ``top`` flips from per-group candidates, or None if still open.

    ``candidates`` are the ``top + 1`` smallest keys of all groups' (:func:`_smallest`),
    each group having contributed its ``top + 1`` smallest; the first ``top`` are settled
    unless the key ties across the cut. Ties inside the first ``top`` are ordered by id, as
    the query would.
    """
    # Rows without a key (ids that are not integer text, no scores) are not candidates:
    # with fewer candidates than flips to list, nothing is settled.
    if len(candidates) < min(total, top + 1):
        return None
    if total > top and not candidates[top - 1].key < candidates[top].key:
        return None
    return sorted(candidates[:top], key=lambda c: (c.key, id_key(c.id)))


def id_key(value: object) -> tuple[int, int, str]:
    """Ties are broken by id in this natural order, the same for every file format and
    engine: ids that are integers, or integer text of at most 18 digits with an optional
    sign (as CSV ids are read), numerically; then the rest as text (byte order)."""
    text = _text(value)
    if _INTEGER_TEXT.fullmatch(text):
        return (0, int(text), text)
    return (1, 0, text)


def _listed(engine: Engine, ids: list[Any]) -> str:
    return ", ".join(repr(i) if isinstance(i, int) else engine.dialect.literal(str(i))
                     for i in ids)


def _slice_values(engine: Engine, plan: Plan, ids: list[Any]) -> dict[Any, dict[str, Any]]:
    """The slice values of the examples ``ids``, read from the input each column is in.

    Only those inputs are scanned, and only for these ids (the filter reaches the scan).
    """
    found: dict[Any, dict[int, Any]] = defaultdict(dict)
    for side in sorted(set(plan.slice_sides)):
        cols = [i for i, s in enumerate(plan.slice_sides) if s == side]
        for row in engine.rows(f"{plan.with_sql} SELECT id, {', '.join(f's{i}' for i in cols)} "
                               f"FROM {side} WHERE id IN ({_listed(engine, ids)})"):
            found[row[0]].update(zip(cols, row[1:], strict=True))
    return {i: {name: v[c] for c, name in enumerate(plan.slices)} for i, v in found.items()}


def worst_flips(engine: Engine, plan: Plan, first: FirstPass, *, top: int
                ) -> tuple[FlipExample, ...]:
    """Worst negative flips: most confident old prediction first, ties (and no scores) by id."""
    total = first.tables.overall.negative_flips
    if top <= 0 or total == 0:
        return ()
    best = _settled(first.candidates, total, top) if first.candidates is not None else None
    if best is not None and not plan.old_confidence:
        # The candidates are the examples (old prediction = label), but for their slices.
        slices = _slice_values(engine, plan, [c.id for c in best])
        return tuple(FlipExample(_text(c.id), _text(c.y), _text(c.y), _text(c.new),
                                 slices=slices.get(c.id, {}))
                     for c in best)
    slice_cols = "".join(f", s{i}" for i in range(len(plan.slices)))
    if best is None:
        found = engine.rows(
            f"{plan.audited_sql} SELECT id, y, o, n, oc, nc{slice_cols} FROM aud "
            f"WHERE o = y AND n <> y ORDER BY oc DESC NULLS LAST, {id_order(engine)} "
            f"LIMIT {int(top)}"
        )
    else:  # fetch the settled rows by id: the filter reaches the scans, no full join
        ids = [c.id for c in best]
        by_id = {r[0]: r for r in engine.rows(
            f"{plan.audited_sql} SELECT id, y, o, n, oc, nc{slice_cols} FROM aud "
            f"WHERE id IN ({_listed(engine, ids)})")}
        found = [by_id[i] for i in ids]
    return tuple(
        FlipExample(
            id=_text(r[0]), label=_text(r[1]), old_pred=_text(r[2]), new_pred=_text(r[3]),
            old_confidence=None if r[4] is None else float(r[4]),
            new_confidence=None if r[5] is None else float(r[5]),
            slices=dict(zip(plan.slices, r[6:], strict=True)),
        )
        for r in found
    )


def count_regression(engine: Engine, plan: Plan, *, atol: float, rtol: float) -> FirstPass:
    """The one pass of a regression audit: tolerance flips and error sums per group."""
    k = len(plan.slices)
    tol = f"({float(atol)!r} + {float(rtol)!r} * abs(y))"
    outcome = (f"abs(o - y) AS eo, abs(n - y) AS en, abs(o - y) <= {tol} AS ook, "
               f"abs(n - y) <= {tol} AS nok")
    fsum = engine.dialect.exact_sum
    measures = f"count(*), {fsum('eo')}, {fsum('en')}, {fsum('eo * eo')}, {fsum('en * en')}"
    rows = engine.rows(_pass_sql(plan, outcome, ("ook, nok",), "ook, nok", measures))

    per_mask: dict[int | None, int] = defaultdict(int)
    overall: dict[str, int] = defaultdict(int)
    overall_sums = [0, 0.0, 0.0, 0.0, 0.0]
    per_slice: list[dict[str | None, dict[str, int]]] = [
        defaultdict(lambda: defaultdict(int)) for _ in range(k)
    ]
    slice_sums: list[dict[str | None, list[float]]] = [
        defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0]) for _ in range(k)
    ]
    audited = {mask: plan.audited(mask) for mask in {row[k] for row in rows}}
    for row in rows:
        gs, mask, svals = row[:k], row[k], row[k + 1 : 2 * k + 1]
        ook, nok, *agg = row[2 * k + 1 :]
        if 0 not in gs:
            per_mask[mask] += agg[0]
            if not audited[mask]:
                continue
            _add(overall, ook, nok, False, agg[0])
            target = overall_sums
        elif audited[mask]:
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
    return FirstPass(_checks(plan, per_mask), tables, None, tuple(overall_sums))


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


#: Key ranges of :func:`before_sums` (the partitions of its running sums).
PREFIX_BUCKETS = 256


def before_sums(name: str, src: str, key: str, measures: Sequence[str],
                by: str | None = None) -> str:
    """``WITH`` entries ending in ``name``: the rows of ``src`` (one per distinct ``key``,
    within each ``by`` value if given) with, for each measure column ``m``, ``before_m``: the
    sum of ``m`` over the rows (of the same ``by``) whose key is smaller.

    A running sum is a window ``ORDER BY key``; without ``PARTITION BY``, Spark moves every
    row into one partition (and a score column has about as many distinct values as rows).
    Here the keys are cut into :data:`PREFIX_BUCKETS` ranges of equal width between their
    minimum and maximum; the sums of the smaller ranges (a join of at most 256 x 256 range
    totals) plus a running sum partitioned by range give the same exact integers, and the
    work is spread over the ranges. The range of a key is monotone in it (IEEE arithmetic
    rounds monotonically: a larger key never falls in a smaller range), which is all the
    sums need, so the result does not depend on how an engine rounds.
    """
    b = PREFIX_BUCKETS
    by_ = f"{by}, " if by else ""
    ranges = (f"{name}_r AS (SELECT {by_}min({key}) AS lo, max({key}) AS hi FROM {src}"
              + (f" GROUP BY {by})" if by else ")"))
    join_r = f"JOIN {name}_r r ON r.{by} = s.{by}" if by else f"CROSS JOIN {name}_r r"
    bucket = (f"CASE WHEN r.hi > r.lo THEN least(CAST(floor((s.{key} - r.lo) / (r.hi - r.lo) "
              f"* {b}) AS BIGINT), {b - 1}) ELSE 0 END")
    totals = ", ".join(f"sum({m}) AS t_{m}" for m in measures)
    offsets = ", ".join(f"coalesce(sum(b.t_{m}), 0) AS o_{m}" for m in measures)
    same = f"a.{by} = b.{by} AND " if by else ""
    a_by = f"a.{by}, " if by else ""
    part = f"PARTITION BY {f'b.{by}, ' if by else ''}b.bk ORDER BY b.{key}"
    before = ", ".join(
        f"o.o_{m} + sum(b.{m}) OVER ({part} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT "
        f"ROW) - b.{m} AS before_{m}" for m in measures)
    on_o = "o.bk = b.bk" + (f" AND o.{by} = b.{by}" if by else "")
    return ", ".join([
        ranges,
        f"{name}_b AS (SELECT s.*, {bucket} AS bk FROM {src} s {join_r})",
        f"{name}_t AS (SELECT {by_}bk, {totals} FROM {name}_b GROUP BY {by_}bk)",
        f"{name}_o AS (SELECT {a_by}a.bk, {offsets} FROM {name}_t a LEFT JOIN {name}_t b "
        f"ON {same}b.bk < a.bk GROUP BY {a_by}a.bk)",
        f"{name} AS (SELECT b.*, {before} FROM {name}_b b JOIN {name}_o o ON {on_o})",
    ])


def wilcoxon_in_engine(engine: Engine, d_sql: str, n_total: int) -> WilcoxonResult:
    """``scipy.stats.wilcoxon(d)`` over the column ``d`` of ``f`` (defined by ``d_sql``):
    scipy itself on the fetched differences for at most ``WILCOXON_SMALL`` rows, else the
    asymptotic test from rank sums computed in the engine (``GROUP BY |d|`` and running
    sums, :func:`before_sums`: memory per distinct ``|d|``, inside the engine; the ranks do
    not depend on the rows' order)."""
    if n_total <= WILCOXON_SMALL:
        return wilcoxon_small([r[0] for r in engine.rows(f"{d_sql} SELECT d FROM f")])
    nz, r_plus, r_minus, tie_term = engine.first(
        f"{d_sql}, ad AS (SELECT abs(d) AS ad, count(*) AS c, "
        "count(*) FILTER (WHERE d > 0) AS pos FROM f WHERE d <> 0 GROUP BY abs(d)), "
        f"{before_sums('r', 'ad', 'ad', ['c'])} "
        "SELECT coalesce(sum(c), 0), coalesce(sum(pos * (before_c + (c + 1) / 2.0)), 0), "
        "coalesce(sum((c - pos) * (before_c + (c + 1) / 2.0)), 0), "
        "coalesce(sum(CAST(c AS DOUBLE) * c * c - c), 0) FROM r"
    )
    return wilcoxon_from_ranks(int(nz), int(n_total - nz), float(r_plus), float(r_minus),
                               float(tie_term))


def finish_regression(
    engine: Engine, plan: Plan, first: FirstPass, *, atol: float, rtol: float, top: int,
    confidence: float,
) -> CountTables:
    """After validation: the paired t interval, Wilcoxon's rank sums and the worst flips.

    Every value is finite here: a label or prediction of magnitude 1e30 or more was refused
    as a fill value by the validation, so no error sum or square can overflow a double."""
    tol = f"({float(atol)!r} + {float(rtol)!r} * abs(y))"
    d_sql = (f"{plan.audited_sql}, f AS (SELECT id, y, o, n, abs(o - y) AS eo, "
             f"abs(n - y) AS en, abs(n - y) - abs(o - y) AS d, abs(o - y) <= {tol} AS ook, "
             f"abs(n - y) <= {tol} AS nok"
             + "".join(f", s{i}" for i in range(len(plan.slices))) + " FROM aud)")
    n_total, mean_d, var_d, d_min, d_max, eo_max, en_max = engine.first(
        f"{d_sql} SELECT count(*), avg(d), var_samp(d), min(d), max(d), max(eo), max(en) FROM f")
    e_max = None if eo_max is None or en_max is None else max(eo_max, en_max)
    d_hist, e_hist = _regression_histograms(engine, d_sql, int(n_total), d_min, d_max, e_max)
    wilcoxon = wilcoxon_in_engine(engine, d_sql, int(n_total))
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
        f"ORDER BY d DESC, {id_order(engine)} LIMIT {int(top)}"
    ) if top > 0 else []
    worst = tuple(
        FlipExample(_text(r[0]), r[1], r[2], r[3],
                    slices=dict(zip(plan.slices, r[6:], strict=True)),
                    old_error=r[4], new_error=r[5])
        for r in worst_rows
    )
    return dataclasses.replace(first.tables, worst=worst, regression=summary)
