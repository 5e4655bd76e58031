"""Counting the quality metrics in the engine: only sums, rank sums and bins come back.

* accuracy, precision / recall / F1 and both confusion matrices need only the counts of the
  flips' one pass (per label and prediction: :func:`graceful_audit.count.count_flips`);
* with score columns, one aggregation over the audited rows joined with both files' scores
  gives the log-loss and Brier sums; ROC-AUC comes from Mann-Whitney rank sums over the
  distinct scores (running sums over ``GROUP BY score`` counts, partitioned by score range:
  :func:`graceful_audit.count.before_sums`), and for two classes DeLong's
  placements, counted the same way and joined back to the rows, give the moments of his
  paired test; the reliability bins are one ``GROUP BY``;
* regression: one aggregation for R², MAPE and the max error.

The formulas are in :mod:`graceful_audit.quality`; everything here is SQL and bookkeeping.
The SQL is the same text on every engine but for :class:`~graceful_audit.engine.Dialect`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .align import Plan, Side, id_sql
from .count import before_sums
from .io import quote
from .quality import (
    EPS,
    SUM_TOLERANCE,
    Placements,
    Quality,
    RankSums,
    RegressionSums,
    ReliabilityBin,
    ScoreSums,
    delong,
    regression_quality,
    roc_auc,
    score_quality,
)

if TYPE_CHECKING:
    from .engine import Engine

#: Edges of the reliability bins (ten bins of width 0.1 over [0, 1]).
RELIABILITY_EDGES = tuple(i / 10 for i in range(11))


def _double(x: float) -> str:
    """A double literal, exact and the same on every engine."""
    return f"CAST('{x!r}' AS DOUBLE)"


def score_columns(engine: Engine, side: Side) -> list[tuple[str, str]]:
    """``(class, SQL over the side's input view)`` for each of a side's scores.

    One binary score column ``s`` is the probability of class ``1``: ``[1 - s, s]``.
    """
    d, col = engine.dialect, quote(side.scores[0]) if side.scores else ""
    if side.score_kind == "binary":
        return [("0", f"(1 - CAST({col} AS DOUBLE))"), ("1", f"CAST({col} AS DOUBLE)")]
    if side.score_kind == "columns":
        return [(name, f"CAST({quote(c)} AS DOUBLE)")
                for name, c in zip(side.score_classes, side.scores, strict=True)]
    if side.score_kind == "list":
        k = engine.first(f"SELECT max({d.array_length(col)}) FROM {quote(side.table.view)}")[0]
        return [(str(i), f"CAST({d.element_at(col, str(i + 1))} AS DOUBLE)")
                for i in range(int(k or 0))]
    return []


def _base_sql(engine: Engine, plan: Plan, sides: Sequence[tuple[Side, list[tuple[str, str]]]]
              ) -> str:
    """``WITH`` ... ``r``: the audited rows' label (as text), predictions, confidences and
    both models' scores ``o0..``, ``n0..``, joined by id."""
    d = engine.dialect
    ctes, cols, joins = [], [], []
    for (side, scores), m in zip(sides, ("o", "n"), strict=True):
        sid = id_sql(side.table, side.id, plan.integer_ids, d)
        parts = [f"{sid} AS id"] + [f"{expr} AS {m}{i}" for i, (_c, expr) in enumerate(scores)]
        ctes.append(f"q{m} AS (SELECT {', '.join(parts)} FROM {quote(side.table.view)})")
        cols += [f"q{m}.{m}{i} AS {m}{i}" for i in range(len(scores))]
        joins.append(f"JOIN q{m} ON q{m}.id = aud.id")
    return (f"{plan.audited_sql}, {', '.join(ctes)}, r AS (SELECT CAST(aud.y AS STRING) AS y, "
            f"{', '.join(cols)} FROM aud {' '.join(joins)})")


def _valid(engine: Engine, m: str, k: int) -> str:
    return " AND ".join(engine.dialect.is_value(f"{m}{i}") for i in range(k)) or "TRUE"


#: :func:`_exact_sum` splits each value into this many integer parts of ``_BITS`` bits.
_PARTS, _BITS = 3, 30


def _exact_sum(x: str, where: str = "TRUE") -> list[str]:
    """Aggregates whose exact total (:func:`_total`) is the sum of ``x >= 0`` over the rows
    where ``where`` holds, to within 2**-90 per row, in any order: the same on every engine.

    ``x`` is split into integer parts of 30 bits below the binary point (each step, a
    multiplication by a power of two, a ``floor`` and a subtraction, is exact in IEEE
    arithmetic) and the parts are summed as decimals. A double sum (Spark has no compensated
    one) would depend on the order the rows arrive in, and so differ between engines.
    """
    scale = f"CAST('{float(2 ** _BITS)!r}' AS DOUBLE)"
    # The value is masked, not only filtered: an engine may cast every row's parts before
    # the FILTER applies, and a row outside ``where`` may hold anything (a fill value).
    parts, rest = [], f"(CASE WHEN {where} THEN {x} ELSE 0 END)"
    for _ in range(_PARTS):
        rest = f"({rest} * {scale})"
        parts.append(f"floor({rest})")
        rest = f"({rest} - floor({rest}))"
    return [f"coalesce(sum(CAST({p} AS DECIMAL(38, 0))) FILTER (WHERE {where}), 0)"
            for p in parts]


def _total(parts: Sequence[Any]) -> float:
    """The float nearest to the exact total of :func:`_exact_sum`'s aggregates."""
    from fractions import Fraction

    return float(sum(Fraction(int(p), 2 ** (_BITS * (i + 1))) for i, p in enumerate(parts)))


def _row_sql(engine: Engine, m: str, classes: Sequence[str], pos: str | None) -> list[str]:
    """Per row of ``r``, for model ``m``: whether its scores are all numbers (``{m}_ok``),
    whether they sum to 1, whether its label is one of the classes, its log-loss term and
    its Brier term."""
    d, k = engine.dialect, len(classes)
    lits = [d.literal(c) for c in classes]
    p_y = "CASE " + " ".join(f"WHEN y = {lit} THEN {m}{i}" for i, lit in enumerate(lits)) + " END"
    clipped = f"least(greatest({p_y}, {_double(EPS)}), {_double(1 - EPS)})"
    if pos is not None:  # binary: the positive class's squared error
        i = list(classes).index(pos)
        diff = f"({m}{i} - CASE WHEN y = {d.literal(pos)} THEN 1 ELSE 0 END)"
        brier = f"{diff} * {diff}"
    else:
        brier = " + ".join(f"({m}{i} - CASE WHEN y = {lit} THEN 1 ELSE 0 END) * "
                           f"({m}{i} - CASE WHEN y = {lit} THEN 1 ELSE 0 END)"
                           for i, lit in enumerate(lits))
    total = " + ".join(f"{m}{i}" for i in range(k))
    ok = _valid(engine, m, k)
    inside = f"y IN ({', '.join(lits)})"
    # Only probabilities enter the sums: a logit of 1e20 would overflow them and mean nothing.
    prob = " AND ".join(f"{m}{i} >= 0 AND {m}{i} <= 1" for i in range(k))
    use = f"{ok} AND {inside} AND {prob}"
    return [f"coalesce({ok}, FALSE) AS {m}_ok",
            f"abs(({total}) - 1) > {_double(SUM_TOLERANCE)} AS {m}_bad",
            f"{inside} AS {m}_in", f"({prob}) AS {m}_p",
            f"CASE WHEN {use} THEN -ln({clipped}) END AS {m}_ll",
            f"CASE WHEN {use} THEN {brier} END AS {m}_br"]


def _sums_sql(m: str) -> list[str]:
    """Aggregates of one model ``m`` over :func:`_row_sql`'s columns: rows, missing scores,
    rows whose scores do not sum to 1, labels outside the classes, rows with a score outside
    [0, 1], log-loss and Brier sums (:func:`_exact_sum` parts)."""
    return ["count(*)", f"count(*) FILTER (WHERE NOT {m}_ok)",
            f"count(*) FILTER (WHERE {m}_ok AND {m}_bad)", f"count(*) FILTER (WHERE NOT {m}_in)",
            f"count(*) FILTER (WHERE {m}_ok AND NOT {m}_p)",
            *_exact_sum(f"{m}_ll", f"{m}_ll IS NOT NULL"),
            *_exact_sum(f"{m}_br", f"{m}_br IS NOT NULL")]


def _rank_sums_sql(engine: Engine, base: str, m: str, classes: Sequence[str]) -> str:
    """Per class ``i`` (one-vs-rest): positives, negatives and twice the Mann-Whitney ``U``,
    an exact integer: ``sum over positives of 2 * #(negatives below) + #(negatives tied)``,
    from the counts per distinct score and running sums of the negatives
    (:func:`before_sums`, partitioned by class and score range)."""
    d, k = engine.dialect, len(classes)
    values = ", ".join(f"({i})" for i in range(k))
    score = "CASE k.i " + " ".join(f"WHEN {i} THEN {m}{i}" for i in range(k)) + " END"
    label = "CASE k.i " + " ".join(f"WHEN {i} THEN {d.literal(c)}"
                                   for i, c in enumerate(classes)) + " END"
    return (
        f"{base}, x AS (SELECT k.i AS i, {score} AS s, y = {label} AS pos FROM r "
        f"CROSS JOIN (VALUES {values}) AS k(i) WHERE {_valid(engine, m, k)}), "
        "g AS (SELECT i, s, count(*) FILTER (WHERE pos) AS p, count(*) FILTER (WHERE NOT pos) "
        f"AS q FROM x GROUP BY i, s), {before_sums('w', 'g', 's', ['q'], by='i')} "
        "SELECT i, sum(p), sum(q), sum(p * (2 * before_q + q)) FROM w GROUP BY i"
    )


def _delong_sql(engine: Engine, base: str, io: int, inn: int, ko: int, kn: int, pos: str
                ) -> str:
    """Both models' placements, twice over as exact integers, per positive (``2 *
    #(negatives below) + #(negatives tied)``) and per negative (the positives above), joined
    back to the rows: their counts, sums, sample variances and covariance per side. The
    placements come from running sums over the distinct scores (:func:`before_sums`, spread
    over partitions by score range)."""
    lit = engine.dialect.literal(pos)

    def place(m: str) -> str:
        # the positives above a score: all of them but those below it and at it
        return (f"g{m} AS (SELECT s{m} AS s, count(*) FILTER (WHERE pos) AS p, count(*) "
                f"FILTER (WHERE NOT pos) AS q FROM x GROUP BY s{m}), "
                f"{before_sums(f'c{m}', f'g{m}', 's', ['p', 'q'])}, "
                f"p{m} AS (SELECT s, 2 * before_q + q AS v, 2 * (t.np - before_p - p) + p AS w "
                f"FROM c{m} CROSS JOIN t)")

    return (
        f"{base}, x AS (SELECT y = {lit} AS pos, o{io} AS so, n{inn} AS sn FROM r WHERE "
        f"{_valid(engine, 'o', ko)} AND {_valid(engine, 'n', kn)}), "
        f"t AS (SELECT count(*) FILTER (WHERE pos) AS np FROM x), {place('o')}, {place('n')}, "
        "z AS (SELECT x.pos, CASE WHEN x.pos THEN po.v ELSE po.w END AS a, "
        "CASE WHEN x.pos THEN pn.v ELSE pn.w END AS b FROM x JOIN po ON po.s = x.so "
        "JOIN pn ON pn.s = x.sn) "
        "SELECT pos, count(*), sum(a), sum(b), sum(CAST(a * a AS DECIMAL(38, 0))), "
        "sum(CAST(b * b AS DECIMAL(38, 0))), sum(CAST(a * b AS DECIMAL(38, 0))) "
        "FROM z GROUP BY pos"
    )


def _placements(row: tuple | None) -> Placements:
    """Means and sample (co)variances from the exact integer sums of (twice) the
    placements: the same numbers on every engine, whatever order the rows came in."""
    from fractions import Fraction

    if row is None:
        return Placements(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    n, sa, sb, saa, sbb, sab = (int(v) for v in row[1:])

    def cov(sxy: int, sx: int, sy: int) -> float:
        # twice the placements: a quarter of the (co)variance
        return float(Fraction(n * sxy - sx * sy, 4 * n * (n - 1))) if n > 1 else 0.0

    return Placements(n, float(Fraction(sa, 2 * n)), float(Fraction(sb, 2 * n)),
                      cov(saa, sa, sa), cov(sbb, sb, sb), cov(sab, sa, sb))


def _reliability(engine: Engine, plan: Plan) -> dict[str, tuple[ReliabilityBin, ...]]:
    """One ``GROUP BY`` over the audited rows: per model, the rows per bin of its confidence
    (its score of its own prediction; outside [0, 1] in no bin), their summed confidence and
    how many were right. (The confusion matrices come from the flips' one pass.)"""
    from .count import _bin_sql

    edges = RELIABILITY_EDGES

    def binned(c: str) -> str:
        return f"CASE WHEN {c} >= 0 AND {c} <= 1 THEN {_bin_sql(c, edges)} END"

    # Only binned confidences (within [0, 1]) are summed: a fill value would overflow the sum.
    sums = _exact_sum("oc", "bo IS NOT NULL") + _exact_sum("nc", "bn IS NOT NULL")
    rows = engine.rows(
        f"{plan.audited_sql}, b AS (SELECT {binned('oc')} AS bo, {binned('nc')} AS bn, oc, nc, "
        "o = y AS ok, n = y AS nk FROM aud) "
        f"SELECT grouping(bo), bo, bn, count(*), count(*) FILTER (WHERE ok), "
        f"count(*) FILTER (WHERE nk), {', '.join(sums)} FROM b "
        "GROUP BY GROUPING SETS ((bo), (bn))"
    )
    found: dict[str, dict[int, ReliabilityBin]] = {"old": {}, "new": {}}
    for g_bo, bo, bn, count, ok, nk, *parts in rows:
        side, b = ("old", bo) if g_bo == 0 else ("new", bn)
        if b is None:
            continue
        conf = parts[:_PARTS] if side == "old" else parts[_PARTS:]
        found[side][int(b)] = ReliabilityBin(
            edges[int(b)], edges[int(b) + 1], int(count),
            _total(conf) / int(count) if count else None, int(ok if side == "old" else nk))
    return {side: tuple(got.get(i, ReliabilityBin(edges[i], edges[i + 1], 0, None, 0))
                        for i in range(len(edges) - 1)) for side, got in found.items()}


def add_scores(engine: Engine, plan: Plan, old: Side, new: Side, quality: Quality, *,
               order: Callable[[Any], Any], confidence: float) -> Quality:
    """Log-loss, Brier, ROC-AUC (DeLong's paired test for two classes) and the reliability
    bins of both models, counted in the engine, added to ``quality``."""
    sides = [(old, score_columns(engine, old)), (new, score_columns(engine, new))]
    base = _base_sql(engine, plan, sides)
    classes = {m: [c for c, _e in s] for m, (_side, s) in zip(("o", "n"), sides, strict=True)}
    positive = {m: sorted(cs, key=order)[1] if len(cs) == 2 else None
                for m, cs in classes.items()}
    cols = (_row_sql(engine, "o", classes["o"], positive["o"])
            + _row_sql(engine, "n", classes["n"], positive["n"]))
    aggs = _sums_sql("o") + _sums_sql("n")
    row = engine.first(f"{base}, t AS (SELECT {', '.join(cols)} FROM r) "
                       f"SELECT {', '.join(aggs)} FROM t")
    values: dict[str, dict[str, float | None]] = {"old": dict(quality.old),
                                                  "new": dict(quality.new)}
    reasons = {k: v for k, v in quality.reasons.items()
               if k not in ("log_loss", "brier", "roc_auc")}
    missing: dict[str, int] = {}
    width = 5 + 2 * _PARTS
    for j, (side, m) in enumerate((("old", "o"), ("new", "n"))):
        rows, nonfinite, bad_sum, outside, not_prob = row[width * j : width * j + 5]
        parts = row[width * j + 5 : width * (j + 1)]
        missing[side] = int(nonfinite)
        sums = ScoreSums(int(rows), int(bad_sum), int(outside), _total(parts[:_PARTS]),
                         _total(parts[_PARTS:]), int(not_prob))
        got, why = score_quality(sums, positive[m] is not None)
        if nonfinite:
            got = {"log_loss": None, "brier": None}
            why = {k: f"{int(nonfinite):,} audited row(s) have a missing, NaN, infinite or "
                   "fill-value (|v| >= 1e30) score" for k in got}
        values[side].update(got)
        reasons.update({f"{side}_{k}": v for k, v in why.items()})
        values[side]["roc_auc"] = None
        if nonfinite or outside:
            reasons[f"{side}_roc_auc"] = why.get("brier", "")

    result = dataclasses.replace(quality, old=values["old"], new=values["new"],
                                 reliability=_reliability(engine, plan))
    binary = (positive["o"] is not None and positive["o"] == positive["n"]
              and classes["o"] == classes["n"])
    usable = {m: not missing[side] and f"{side}_roc_auc" not in reasons
              for side, m in (("old", "o"), ("new", "n"))}
    delong_result = None
    if binary and all(usable.values()):
        pos = positive["o"]
        assert pos is not None
        i = classes["o"].index(pos)
        by_side = {bool(r[0]): r for r in engine.rows(
            _delong_sql(engine, base, i, i, len(classes["o"]), len(classes["n"]), pos))}
        p, q = _placements(by_side.get(True)), _placements(by_side.get(False))
        for side, auc_mean in (("old", p.mean_old), ("new", p.mean_new)):
            if p.n and q.n:
                values[side]["roc_auc"] = auc_mean / q.n
            else:
                reasons[f"{side}_roc_auc"] = (f"class {pos!r} is "
                                              f"{'never' if not p.n else 'always'} the label")
        if p.n and q.n:
            delong_result = delong(p, q, n_pos=p.n, n_neg=q.n, confidence=confidence)
    else:
        for side, m in (("old", "o"), ("new", "n")):
            if not usable[m]:
                continue
            found = {classes[m][int(r[0])]: RankSums(int(r[1]), int(r[2]), int(r[3]) / 2)
                     for r in engine.rows(_rank_sums_sql(engine, base, m, classes[m]))}
            # in class order, whatever order the engine's groups came in
            wanted = [positive[m]] if positive[m] is not None else classes[m]
            splits = {c: found.get(c, RankSums(0, 0, 0)) for c in wanted}
            auc, why_auc = roc_auc(splits)
            values[side]["roc_auc"] = auc
            if why_auc:
                reasons[f"{side}_roc_auc"] = why_auc
    return dataclasses.replace(result, old=values["old"], new=values["new"], reasons=reasons,
                               delong=delong_result,
                               positive_class=positive["o"] if binary else None)


def regression_sums(engine: Engine, plan: Plan) -> tuple[Quality, int]:
    """R², MAPE and max error of both models in one aggregation over the audited rows."""
    fsum = engine.dialect.exact_sum
    ape = f"abs({{m}} - y) / greatest(abs(y), {_double(EPS)})"
    row = engine.first(
        f"{plan.audited_sql} SELECT count(*), var_pop(y), {fsum('(o - y) * (o - y)')}, "
        f"{fsum('(n - y) * (n - y)')}, count(*) FILTER (WHERE y = 0), "
        f"{fsum(ape.format(m='o'))} FILTER (WHERE y <> 0), "
        f"{fsum(ape.format(m='n'))} FILTER (WHERE y <> 0), max(abs(o - y)), max(abs(n - y)) "
        "FROM aud")
    n, var, sse_o, sse_n, zeros, ape_o, ape_n, max_o, max_n = row
    n, zeros = int(n), int(zeros)
    sst = float(var or 0.0) * n
    out = {}
    for side, sse, ape_sum, mx in (("old", sse_o, ape_o, max_o), ("new", sse_n, ape_n, max_n)):
        out[side] = regression_quality(RegressionSums(
            n, float(sse or 0.0), sst, float(ape_sum or 0.0), n - zeros,
            None if mx is None else float(mx)))
    reasons = {}
    if n and sst == 0:
        reasons["r2"] = "the labels are constant (no variance to explain)"
    if n and zeros == n:
        reasons["mape"] = "every label is 0"
    return Quality("regression", out["old"], out["new"], reasons, mape_excluded=zeros), zeros
