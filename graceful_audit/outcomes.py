"""Evaluation outcomes (``gaudit flips --outcome-col``): per-example pass/fail audits.

An evaluation suite (lm-evaluation-harness ``--log_samples``, a test suite of prompts, a
grader) already decides per example whether the model passed. With ``--outcome-col COL``
each input needs only ids and that column, and the audit is the classification audit on
pass/fail: ``right = pass``, error rate = fail rate, every flip metric, interval, McNemar
test, slice and gate as in :mod:`graceful_audit.metrics` (churn is undefined: there are no
predictions). In the engine's join this is a classification with one constant label ``1``
and the predictions ``pass_old``, ``pass_new`` (1 or 0).

A graded outcome (a number compared with ``--pass-threshold T``: pass when ``score >= T``)
also gives the paired score delta. With ``d = score_new - score_old`` per audited example:

* ``old_mean = mean(score_old)``, ``new_mean``, ``mean_delta = mean(d)``;
* the paired t interval of ``mean(d)`` (Student 1908), the numbers of
  ``scipy.stats.ttest_rel(new, old).confidence_interval(confidence_level=c)``;
* Wilcoxon's signed-rank test on ``d`` (Wilcoxon 1945) as ``scipy.stats.wilcoxon(d)`` with
  its defaults (``zero_method="wilcox"``: zero differences dropped, average ranks for ties,
  no continuity correction, ``method="auto"``); see :mod:`graceful_audit.regression`.

All come from aggregates the engine computes (sums, ``var_samp``, rank sums over
``GROUP BY |d|``): memory is bounded by the number of distinct ``|d|`` values inside the
engine (which spills), never by rows in Python; at most
:data:`~graceful_audit.regression.WILCOXON_SMALL` differences are fetched, for scipy's exact
test.

This module also holds the reading helpers the feature brought: nested fields by dotted
path (``judge.score``) and composite ids (``--id-col task --id-col doc_id``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .align import EXAMPLES, Expr, Side
from .errors import InputError, UsageError, examples
from .io import Table, is_float_type, is_integer_type, quote
from .regression import (
    WilcoxonResult,
    paired_t_interval,
)

if TYPE_CHECKING:
    from .align import Plan
    from .count import FlipExample
    from .engine import Dialect, Engine

TASK = "outcome"

#: What separates the parts of a composite id in reports (``arc_easy/17``); a part that
#: holds it or a backslash has it escaped with a backslash (``a\/b``).
ID_SEPARATOR = "/"

#: Columns that usually tell apart the tasks or datasets whose ids repeat.
TASK_COLUMNS = ("task", "task_name", "benchmark", "dataset", "subset", "suite", "split")


# --------------------------------------------------------------------------- nested fields


def _leaf_names(engine: Engine, table: Table, struct_sql: str) -> list[str]:
    """The field names of a struct expression (for messages)."""
    try:
        return [r[0] for r in engine.describe(f"SELECT {struct_sql}.* FROM {quote(table.view)}")]
    except Exception:  # not a struct: no fields to offer
        return []


def path_sql(engine: Engine, table: Table, name: str, flag: str) -> str | None:
    """SQL for the nested field ``name`` (``judge.score``) of ``table``, or None when
    ``name`` is a column itself or no column starts a path to it.

    A column whose name holds the dot literally wins: ``{"judge.score": 1}`` is read as the
    column ``judge.score``. Otherwise the longest leading part that is a struct column is
    followed field by field; a missing field is an :class:`InputError` listing the fields
    that are there.
    """
    if table.has(name) or "." not in name:
        return None
    parts = name.split(".")
    for k in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:k])
        if not table.has(head):
            continue
        if not table.type_of(head).upper().startswith(("STRUCT", "MAP")):
            raise table.missing_column(name, flag, hint=(
                f"Column {head!r} is {table.type_of(head)}, not an object, so it has no "
                f"field {'.'.join(parts[k:])!r}."))
        sql = quote(head)
        for i, field_name in enumerate(parts[k:]):
            fields = _leaf_names(engine, table, sql)
            if field_name not in fields:
                where = ".".join(parts[: k + i])
                raise InputError(
                    f"{table.label}: {flag} {name!r}: the object {where!r} has no field "
                    f"{field_name!r}. Its fields: {', '.join(fields) or '(none)'}."
                )
            sql = engine.dialect.field(sql, field_name)
        return sql
    return None


def with_paths(engine: Engine, table: Table, names: dict[str, str]) -> Table:
    """``table`` with every nested field among ``names`` (name -> the flag that gave it)
    added as a column named by its path; unchanged when there is none."""
    extra = {}
    for name, flag in names.items():
        sql = path_sql(engine, table, name, flag)
        if sql is not None:
            extra[name] = sql
    return engine.derive(table, extra) if extra else table


# --------------------------------------------------------------------------- composite ids


def composite_name(parts: Sequence[str]) -> str:
    """The name a composite id goes by in messages: ``(task, doc_id)``."""
    return "(" + ", ".join(parts) + ")"


def with_composite_id(engine: Engine, table: Table, parts: Sequence[str]) -> Table:
    """``table`` with the column :func:`composite_name` holding the id made of ``parts``:
    each part as canonical text (as a single id joins: ``1.0`` is ``1``), backslash and
    :data:`ID_SEPARATOR` escaped, joined by the separator; NULL when any part is."""
    from .align import id_sql

    for p in parts:
        if not table.has(p):
            raise table.missing_column(p, "--id-col")
    pieces = []
    for p in parts:
        text = id_sql(table, p, False, engine.dialect)
        pieces.append(f"replace(replace({text}, {engine.dialect.literal(chr(92))}, "
                      f"{engine.dialect.literal(chr(92) * 2)}), "
                      f"{engine.dialect.literal(ID_SEPARATOR)}, "
                      f"{engine.dialect.literal(chr(92) + ID_SEPARATOR)})")
    sep = f" || {engine.dialect.literal(ID_SEPARATOR)} || "
    return engine.derive(table, {composite_name(parts): "(" + sep.join(pieces) + ")"})


def split_id(text: str) -> tuple[str, ...]:
    """The parts of a composite id written by :func:`with_composite_id`.

    >>> split_id("arc_easy/17"), split_id(r"a\\/b/c\\\\")
    (('arc_easy', '17'), ('a/b', 'c\\\\'))
    """
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == ID_SEPARATOR:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return tuple(parts)


def repeat_hint(engine: Engine, table: Table, id_col: str) -> str:
    """For a duplicate id: the task-like column that makes it unique, as advice."""
    lowered = {c.lower(): c for c in table.columns}
    v, c = quote(table.view), quote(id_col)
    for name in TASK_COLUMNS:
        col = lowered.get(name)
        if col is None or col == id_col:
            continue
        t = quote(col)
        dup = engine.first(f"SELECT count(*) FROM (SELECT {t}, {c} FROM {v} GROUP BY {t}, {c} "
                           "HAVING count(*) > 1) AS t")[0]
        if not dup:
            return (f" The ids repeat across the values of column {col!r} (ids of several "
                    f"tasks in one file): make the id composite with --id-col {col} "
                    f"--id-col {id_col}.")
    return ""


# --------------------------------------------------------------------------- outcomes


def _values(engine: Engine, table: Table, col: str, where: str) -> tuple[int, str]:
    v, c = quote(table.view), quote(col)
    n = engine.first(f"SELECT count(*) FROM {v} WHERE {where}")[0]
    rows = engine.rows(f"SELECT DISTINCT {c} FROM {v} WHERE {where} ORDER BY 1 "
                       f"LIMIT {EXAMPLES}")
    return int(n), examples([r[0] for r in rows])


def resolve_outcome_side(engine: Engine, table: Table, id_col: str | None, outcome: str,
                         threshold: float | None) -> Side:
    """One model's outcomes as a :class:`Side`: the prediction is ``pass`` (1 or 0), the
    confidence column carries the graded score (DOUBLE) when there is a threshold.

    Booleans (or the text ``true``/``false``) and the numbers 0 and 1 are outcomes as
    they are; other numbers need ``threshold``; NaN, inf and null are missing outcomes.
    """
    from .align import ID_SYNONYMS
    from .io import resolve_column

    d: Dialect = engine.dialect
    idc = resolve_column(table, id_col, "id", ID_SYNONYMS)
    if idc is None:
        raise table.missing_column(id_col or "id", "--id-col")
    if not table.has(outcome):
        raise table.missing_column(outcome, "--outcome-col")
    if outcome == idc:
        raise UsageError(f"{table.label}: column {outcome!r} would be both the id (--id-col) "
                         "and the outcome (--outcome-col). Name different columns.")
    dtype = table.type_of(outcome)
    c = quote(outcome)
    score: str | None = None
    numeric = is_integer_type(dtype) or is_float_type(dtype)
    if dtype == "BOOLEAN" or dtype == "VARCHAR":
        if threshold is not None:
            raise UsageError(
                f"--pass-threshold {threshold:g}: {table.label} column {outcome!r} holds "
                f"{'booleans' if dtype == 'BOOLEAN' else 'text'}, not scores, so the threshold "
                "would be unused. Drop --pass-threshold, or name the numeric score column."
            )
        if dtype == "BOOLEAN":
            pass_sql = f"(CASE WHEN {c} THEN 1 WHEN NOT {c} THEN 0 END)"
        else:
            t = f"lower(trim({c}))"
            bad_where = f"{c} IS NOT NULL AND {t} NOT IN ('true', 'false', '1', '0', '')"
            n, shown = _values(engine, table, outcome, bad_where)
            if n:
                raise InputError(
                    f"{table.label}: outcome column {outcome!r} holds text other than "
                    f"true/false/1/0 in {n} row(s), e.g. {shown}. An outcome is a boolean, 0/1, "
                    "or a numeric score with --pass-threshold T."
                )
            pass_sql = (f"(CASE WHEN {t} IN ('true', '1') THEN 1 "
                        f"WHEN {t} IN ('false', '0') THEN 0 END)")
        source = f"outcome column {outcome!r} (pass when true or 1)"
    elif numeric:
        x = f"CAST({c} AS DOUBLE)"
        value = f"(CASE WHEN {d.is_value(x)} THEN {x} END)"
        if threshold is None:
            bad_where = f"{d.is_value(x)} AND {x} <> 0 AND {x} <> 1"
            n, shown = _values(engine, table, outcome, bad_where)
            if n:
                raise UsageError(
                    f"{table.label}: outcome column {outcome!r} holds numbers other than 0 and "
                    f"1 in {n} row(s), e.g. {shown}: a graded score. Give --pass-threshold T "
                    "(pass when score >= T), or a 0/1 or boolean column."
                )
            pass_sql = f"(CASE WHEN {value} = 1 THEN 1 WHEN {value} = 0 THEN 0 END)"
            source = f"outcome column {outcome!r} (pass when 1)"
        else:
            pass_sql = (f"(CASE WHEN {value} IS NULL THEN NULL WHEN {value} >= "
                        f"{float(threshold)!r} THEN 1 ELSE 0 END)")
            score = value
            source = f"outcome column {outcome!r} (pass when score >= {threshold:g})"
    else:
        raise InputError(
            f"{table.label}: outcome column {outcome!r} is {dtype}; an outcome is a boolean, "
            "0/1, or a numeric score with --pass-threshold T."
        )
    return Side(table, idc, None, Expr(pass_sql, True), score, source, outcome)


def check_pass_threshold(threshold: float | None) -> None:
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--pass-threshold: {threshold!r} must be a finite number.")


@dataclass(frozen=True)
class ScoreSummary:
    """The paired score delta of a graded outcome audit (see the module docstring)."""

    n: int
    old_mean: float | None
    new_mean: float | None
    mean_delta: float | None
    var_delta: float | None
    mean_delta_interval: tuple[float, float] | None
    wilcoxon: WilcoxonResult
    pass_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "old_mean": self.old_mean, "new_mean": self.new_mean,
                "mean_delta": self.mean_delta, "var_delta": self.var_delta,
                "pass_threshold": self.pass_threshold}

    @classmethod
    def from_dict(cls, d: dict[str, Any], interval: Any, wilcoxon: dict[str, Any]
                  ) -> ScoreSummary:
        w = wilcoxon
        return cls(d["n"], d.get("old_mean"), d.get("new_mean"), d.get("mean_delta"),
                   d.get("var_delta"), tuple(interval) if interval else None,
                   WilcoxonResult(w.get("statistic"), w.get("p_value"), w["method"],
                                  w.get("n_nonzero", 0), w.get("zero_differences", 0)),
                   d.get("pass_threshold", 0.0))


def score_summary(engine: Engine, plan: Plan, *, confidence: float,
                  threshold: float) -> ScoreSummary:
    """The paired score delta over the audited rows (``oc``/``nc`` carry the scores)."""
    from .count import wilcoxon_in_engine

    d_sql = f"{plan.audited_sql}, f AS (SELECT id, oc, nc, nc - oc AS d FROM aud)"
    s = engine.dialect.exact_sum
    n, so, sn, sd, var_d = engine.first(
        f"{d_sql} SELECT count(*), {s('oc')}, {s('nc')}, {s('d')}, var_samp(d) FROM f")
    n = int(n)
    mean = (lambda x: float(x) / n if n and x is not None else None)  # noqa: E731
    mean_d = mean(sd)
    var_d = None if var_d is None else float(var_d)
    return ScoreSummary(
        n, mean(so), mean(sn), mean_d, var_d,
        paired_t_interval(mean_d, var_d, n, confidence=confidence),
        wilcoxon_in_engine(engine, d_sql, n), float(threshold),
    )


def worst_outcome_flips(engine: Engine, plan: Plan, *, top: int, graded: bool
                        ) -> tuple[FlipExample, ...]:
    """Negative flips (passed, now fails): the largest score drop first, ties by id (by id
    alone for pass/fail outcomes)."""
    from .count import FlipExample, id_order

    if top <= 0:
        return ()
    slice_cols = "".join(f", s{i}" for i in range(len(plan.slices)))
    order = ("(nc - oc) ASC NULLS LAST, " if graded else "") + id_order(engine)
    rows = engine.rows(
        f"{plan.audited_sql} SELECT id, oc, nc{slice_cols} FROM aud WHERE o = 1 AND n = 0 "
        f"ORDER BY {order} LIMIT {int(top)}")
    return tuple(
        FlipExample(str(r[0]), "pass", "pass", "fail",
                    slices=dict(zip(plan.slices, r[3:], strict=True)),
                    old_score=None if r[1] is None else float(r[1]),
                    new_score=None if r[2] is None else float(r[2]), outcome=True)
        for r in rows
    )
