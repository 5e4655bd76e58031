"""Aligning: resolve columns, join old, new and labels by id, and account for every row.

This step decides *what* is compared, as SQL expressions over the input views:

* the id of each file (joined natively when both are integers, else as text);
* the ground truth, from either prediction file or from a labels file, checked to agree;
* each model's prediction: a prediction column, the argmax of score columns, or a single
  binary score against ``--threshold``; and its confidence (its score of its own answer);
* slice columns, from whichever input holds them.

Labels and predictions are compared by *canonical text* unless every one of them is an
integer column: ``1``, ``1.0`` and ``"1"`` are the same class. It then runs the validation
queries (null and duplicate ids, unmatched ids, null or disagreeing labels, null
predictions) and raises one :class:`InputError` for the first problem found. Nothing is
dropped silently: what ``--allow-unmatched`` leaves out is counted in :class:`Accounting`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError, UsageError, examples
from .io import (
    Table,
    is_float_type,
    is_integer_type,
    is_list_type,
    quote,
    resolve_column,
    sql_string,
)

if TYPE_CHECKING:
    import duckdb

ID_SYNONYMS = ("ids", "example_id", "sample_id", "uid", "key", "index")
LABEL_SYNONYMS = ("y_true", "target", "labels", "ground_truth", "truth", "y", "true_label")
PRED_SYNONYMS = ("prediction", "y_pred", "predicted", "predictions", "pred_label", "yhat")

#: Examples shown in an error message.
EXAMPLES = 5


@dataclass(frozen=True)
class Columns:
    """Which columns to use; ``None`` means "the default name or a known synonym"."""

    id: str | None = None
    label: str | None = None
    pred: str | None = None
    scores: str | None = None
    slices: tuple[str, ...] = ()
    threshold: float = 0.5


@dataclass(frozen=True)
class Expr:
    """A SQL expression and whether it yields integers (else canonical text is needed).

    ``number`` marks a regression value (DOUBLE), compared by tolerance, never as text.
    """

    sql: str
    integer: bool
    number: bool = False

    def canonical(self) -> str:
        return f"CAST({self.sql} AS VARCHAR)" if self.integer else self.sql


def _value_expr(column: str, dtype: str) -> Expr:
    """A label or prediction column as an expression; NaN and inf become NULL."""
    c = quote(column)
    if is_integer_type(dtype):
        return Expr(c, True)
    if dtype == "BOOLEAN":
        return Expr(f"CAST({c} AS INTEGER)", True)
    if is_float_type(dtype):
        return Expr(
            f"(CASE WHEN NOT isfinite({c}) THEN NULL WHEN {c} = trunc({c}) "
            f"THEN CAST(CAST({c} AS HUGEINT) AS VARCHAR) ELSE CAST({c} AS VARCHAR) END)",
            False,
        )
    return Expr(f"CAST({c} AS VARCHAR)", False)


def _number_expr(table: Table, column: str) -> Expr:
    """A regression target or prediction as DOUBLE; NaN and inf become NULL."""
    dtype = table.type_of(column)
    if not (is_integer_type(dtype) or is_float_type(dtype)):
        raise InputError(
            f"{table.label}: column {column!r} is {dtype}, not numeric; a regression audit "
            "needs numeric targets and predictions (or use --task classification)."
        )
    c = f"CAST({quote(column)} AS DOUBLE)"
    return Expr(f"(CASE WHEN isfinite({c}) THEN {c} END)", False, True)


def value_expr(table: Table, column: str, task: str) -> Expr:
    """A label or prediction column for ``task``: canonical class or number."""
    if task == "regression":
        return _number_expr(table, column)
    return _value_expr(column, table.type_of(column))


def decide_task(
    con: duckdb.DuckDBPyConnection, sides: Sequence[Side], task: str
) -> tuple[str, str]:
    """``auto``: regression when a prediction column holds non-integral floats; and why."""
    if task not in ("auto", "classification", "regression"):
        raise UsageError(f"--task: {task!r} is not one of auto, classification, regression.")
    if task != "auto":
        if task == "regression":
            for side in sides:
                if side.pred_col is None:
                    raise UsageError(
                        f"--task regression needs a numeric prediction column in "
                        f"{side.table.label}; --score-cols is for classifiers."
                    )
        return task, "--task " + task
    for side in sides:
        col = side.pred_col
        if col is None or not is_float_type(side.table.type_of(col)):
            continue
        c = quote(col)
        non_integral = _first(con, f"SELECT bool_or({c} <> trunc({c})) FROM "
                                   f"{quote(side.table.view)} WHERE isfinite({c})")[0]
        if non_integral:
            return "regression", (f"{side.table.role} column {col!r} holds non-integral "
                                  "numbers (--task auto)")
    return "classification", "predictions are class labels (--task auto)"


@dataclass(frozen=True)
class Side:
    """One model's predictions, resolved to SQL over its input view."""

    table: Table
    id: str
    label: str | None
    pred: Expr
    confidence: str | None
    source: str  # how the prediction was obtained, for the report
    pred_col: str | None = None

    @property
    def id_integer(self) -> bool:
        return is_integer_type(self.table.type_of(self.id))


def _score_columns(table: Table, pattern: str) -> list[str]:
    if table.has(pattern) and is_list_type(table.type_of(pattern)):
        return [pattern]
    return [c for c in table.columns if fnmatch.fnmatchcase(c, pattern)]


def _class_name(pattern: str, column: str) -> str:
    """``prob_*`` matched by ``prob_3`` names class ``3``; other patterns use the column."""
    if pattern.count("*") == 1 and not set("?[") & set(pattern):
        head, tail = pattern.split("*")
        return column[len(head) : len(column) - len(tail) if tail else None]
    return column


def _argmax(lst: str) -> str:
    """1-based position of the first maximum; NULL when any score is NULL or NaN.

    (DuckDB orders NaN above every number, so a NaN score would otherwise win.)
    """
    bad = f"len(list_filter({lst}, lambda x: x IS NULL OR isnan(CAST(x AS DOUBLE))))"
    return f"(CASE WHEN {bad} > 0 THEN NULL ELSE list_position({lst}, list_max({lst})) END)"


def resolve_side(table: Table, cols: Columns, pred_required: bool = True) -> Side:
    """Find id, label, prediction and confidence expressions for one prediction file."""
    id_col = resolve_column(table, cols.id, "id", ID_SYNONYMS)
    if id_col is None:
        raise table.missing_column(cols.id or "id", "--id-col")
    label = resolve_column(table, cols.label, "label", LABEL_SYNONYMS)
    pred_col = resolve_column(table, cols.pred, "pred", PRED_SYNONYMS)
    if cols.pred is not None and pred_col is None and cols.scores is None:
        raise table.missing_column(cols.pred, "--pred-col")

    scores = _score_columns(table, cols.scores) if cols.scores else []
    if cols.scores and not scores:
        raise InputError(
            f"{table.label}: no column matches --score-cols {cols.scores!r}. "
            f"Columns present: {', '.join(table.columns)}."
        )
    for s in scores:
        t = table.type_of(s)
        if not (is_list_type(t) or is_integer_type(t) or is_float_type(t)):
            raise InputError(f"{table.label}: score column {s!r} is {t}, not numeric.")

    pred: Expr | None = _value_expr(pred_col, table.type_of(pred_col)) if pred_col else None
    confidence: str | None = None
    source = f"column {pred_col!r}" if pred_col else ""
    if len(scores) == 1 and is_list_type(table.type_of(scores[0])):
        # A list column: class i is the i-th entry (0-based).
        s = quote(scores[0])
        if pred is None:
            pred = Expr(f"({_argmax(s)} - 1)", True)
            source = f"argmax of list column {scores[0]!r}"
            confidence = f"list_max({s})"
        elif pred.integer:
            confidence = f"list_extract({s}, CAST({pred.sql} AS BIGINT) + 1)"
    elif len(scores) == 1:
        s = quote(scores[0])
        t = float(cols.threshold)
        if pred is None:
            pred = Expr(f"(CASE WHEN {s} IS NULL OR isnan({s}) THEN NULL "
                        f"WHEN {s} >= {t!r} THEN 1 ELSE 0 END)", True)
            source = f"{scores[0]!r} >= {t:g} (binary)"
        confidence = f"(CASE WHEN {pred.canonical()} = '1' THEN {s} ELSE 1 - {s} END)"
    elif scores:
        names = [_class_name(cols.scores or "", c) for c in scores]
        if len(set(names)) != len(names):
            raise InputError(f"{table.label}: score columns {scores} give duplicate classes.")
        lst = "[" + ", ".join(f"CAST({quote(c)} AS DOUBLE)" for c in scores) + "]"
        classes = "[" + ", ".join(sql_string(n) for n in names) + "]"
        if pred is None:
            pred = Expr(f"list_extract({classes}, {_argmax(lst)})", False)
            source = f"argmax of {len(scores)} score columns {cols.scores!r}"
            confidence = f"list_max({lst})"
        else:
            confidence = f"list_extract({lst}, list_position({classes}, {pred.canonical()}))"
    if pred is None:
        if not pred_required:
            return Side(table, id_col, label, Expr("NULL", True), None, "", pred_col)
        raise table.missing_column(
            cols.pred or "pred", "--pred-col",
            hint="Give the prediction column with --pred-col, or score columns with --score-cols.",
        )
    return Side(table, id_col, label, pred, confidence, source, pred_col)


@dataclass(frozen=True)
class Accounting:
    """Where every input row went. ``audited`` rows are the ones the metrics describe."""

    old_rows: int
    new_rows: int
    labels_rows: int | None
    matched: int
    unmatched_old: int
    unmatched_new: int
    missing_label: int = 0
    unused_labels: int = 0

    @property
    def audited(self) -> int:
        return self.matched - self.missing_label


@dataclass(frozen=True)
class Plan:
    """The joined, validated view: SQL for ``id, y, o, n, oc, nc, s0..sk`` per example."""

    joined_sql: str
    integer_ids: bool
    integer_labels: bool
    slices: tuple[str, ...]
    accounting: Accounting
    label_source: str
    old_source: str
    new_source: str
    task: str = "classification"


def _labels_table_side(table: Table, cols: Columns) -> tuple[str, str]:
    id_col = resolve_column(table, cols.id, "id", ID_SYNONYMS)
    if id_col is None:
        raise table.missing_column(cols.id or "id", "--id-col")
    label = resolve_column(table, cols.label, "label", LABEL_SYNONYMS)
    if label is None:
        raise table.missing_column(cols.label or "label", "--label-col")
    return id_col, label


def _first(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return con.execute(sql).fetchall()[0]


def check_ids(con: duckdb.DuckDBPyConnection, table: Table, id_col: str) -> None:
    """Raise :class:`InputError` for null or duplicate ids, with examples."""
    v, c = quote(table.view), quote(id_col)
    nulls = _first(con, f"SELECT count(*) FROM {v} WHERE {c} IS NULL")[0]
    if nulls:
        rows = [r[0] for r in con.execute(
            f"SELECT rn FROM (SELECT row_number() OVER () AS rn, {c} AS k FROM {v}) "
            f"WHERE k IS NULL ORDER BY rn LIMIT {EXAMPLES}").fetchall()]
        raise InputError(
            f"{table.label}: {nulls} row(s) have no id in column {id_col!r} "
            f"(data rows {examples(rows)}). Every prediction needs an id to be joined on."
        )
    dup_n, = _first(
        con,
        f"SELECT count(*) FROM (SELECT {c} FROM {v} GROUP BY {c} HAVING count(*) > 1)"
    )
    if dup_n:
        dups = con.execute(
            f"SELECT {c}, count(*) FROM {v} GROUP BY {c} HAVING count(*) > 1 "
            f"ORDER BY {c} LIMIT {EXAMPLES}").fetchall()
        shown = ", ".join(f"{k!r} ({n} times)" for k, n in dups)
        raise InputError(
            f"{table.label}: {dup_n} id(s) occur more than once in column {id_col!r}: "
            f"{shown}{', ...' if dup_n > EXAMPLES else ''}. Ids must be unique; "
            "remove the duplicates or choose another --id-col."
        )


class Aligner:
    """Builds and validates the joined view for a flips audit."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def _one(self, sql: str) -> tuple:
        return _first(self.con, sql)

    def plan(
        self,
        old: Side,
        new: Side,
        labels: Table | None,
        cols: Columns,
        *,
        allow_unmatched: bool = False,
        task: str = "classification",
    ) -> Plan:
        """Validate the inputs and return the joined view's SQL and the row accounting."""
        lab_id = lab_label = None
        if labels is not None:
            lab_id, lab_label = _labels_table_side(labels, cols)
        elif old.label is None and new.label is None:
            wanted = cols.label or "label"
            raise InputError(
                f"no ground-truth column {wanted!r} in OLD file {old.table.display} or NEW file "
                f"{new.table.display} (known names: label, {', '.join(LABEL_SYNONYMS)}). "
                "Name it with --label-col, or give a labels file with --labels FILE."
            )
        for side in (old, new):
            check_ids(self.con, side.table, side.id)
        if labels is not None and lab_id is not None:
            check_ids(self.con, labels, lab_id)

        # Ids: native join when every id column is an integer, else join as text.
        id_types = [old.id_integer, new.id_integer]
        if labels is not None and lab_id is not None:
            id_types.append(is_integer_type(labels.type_of(lab_id)))
        integer_ids = all(id_types)

        def id_expr(col: str) -> str:
            return quote(col) if integer_ids else f"CAST({quote(col)} AS VARCHAR)"

        # Labels and predictions: native when all are integers, else canonical text.
        y_old = value_expr(old.table, old.label, task) if old.label else None
        y_new = value_expr(new.table, new.label, task) if new.label else None
        lab_expr = None
        if labels is not None and lab_label is not None:
            lab_expr = value_expr(labels, lab_label, task)
        preds = {}
        for side in (old, new):
            preds[side.table.role] = (
                value_expr(side.table, side.pred_col, task)
                if task == "regression" and side.pred_col else side.pred
            )
        values = [e for e in (y_old, y_new, lab_expr, *preds.values()) if e is not None]
        integer_labels = all(e.integer for e in values)

        def val(e: Expr) -> str:
            return e.sql if integer_labels or e.number else e.canonical()

        slice_sources = self._slice_sources(cols.slices, old.table, new.table, labels)
        ys_old = val(y_old) if y_old else "NULL"
        ys_new = val(y_new) if y_new else "NULL"

        def side_sql(side: Side, y: str, alias: str) -> str:
            pred = preds[side.table.role]
            parts = [f"{id_expr(side.id)} AS id", f"{y} AS y", f"{val(pred)} AS p",
                     f"{side.confidence or 'NULL'} AS c"]
            parts += [f"CAST({quote(col)} AS VARCHAR) AS s{i}"
                      for i, (src, col) in enumerate(slice_sources) if src == alias]
            return f"SELECT {', '.join(parts)} FROM {quote(side.table.view)}"

        ctes = [f"o AS ({side_sql(old, ys_old, 'o')})", f"n AS ({side_sql(new, ys_new, 'n')})"]
        if labels is not None and lab_id is not None and lab_expr is not None:
            parts = [f"{id_expr(lab_id)} AS id", f"{val(lab_expr)} AS y"]
            parts += [f"CAST({quote(col)} AS VARCHAR) AS s{i}"
                      for i, (src, col) in enumerate(slice_sources) if src == "l"]
            ctes.append(f"l AS (SELECT {', '.join(parts)} FROM {quote(labels.view)})")
        with_sql = "WITH " + ", ".join(ctes)

        label_source = self._label_source(old, new, labels)
        y_sql = ("l.y" if labels is not None else
                 "coalesce(o.y, n.y)" if old.label and new.label else
                 "o.y" if old.label else "n.y")
        slice_cols = ", ".join(f"{src}.s{i} AS s{i}" for i, (src, _c) in enumerate(slice_sources))
        select = (f"o.id AS id, {y_sql} AS y, o.p AS o, n.p AS n, o.c AS oc, n.c AS nc"
                  + (", " + slice_cols if slice_cols else ""))
        lab_join = " JOIN l ON l.id = o.id" if labels is not None else ""
        joined = f"{with_sql} SELECT {select} FROM o JOIN n ON o.id = n.id{lab_join}"

        acc = self._account(with_sql, old, new, labels, allow_unmatched)
        self._check_values(with_sql, lab_join, y_sql, old, new, labels)
        return Plan(
            joined_sql=joined,
            integer_ids=integer_ids,
            integer_labels=integer_labels,
            slices=tuple(c for _s, c in slice_sources),
            accounting=acc,
            label_source=label_source,
            old_source=old.source,
            new_source=new.source,
            task=task,
        )

    @staticmethod
    def _label_source(old: Side, new: Side, labels: Table | None) -> str:
        if labels is not None:
            return f"labels file {labels.display}"
        if old.label and new.label:
            return f"both files (OLD {old.label!r}, NEW {new.label!r}; checked to agree)"
        return f"OLD column {old.label!r}" if old.label else f"NEW column {new.label!r}"

    @staticmethod
    def _slice_sources(
        slices: Sequence[str], old: Table, new: Table, labels: Table | None
    ) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for col in slices:
            for alias, t in (("o", old), ("n", new), ("l", labels)):
                if t is not None and t.has(col):
                    found.append((alias, col))
                    break
            else:
                present = sorted(set(old.columns) | set(new.columns)
                                 | (set(labels.columns) if labels else set()))
                import difflib

                close = difflib.get_close_matches(col, present, n=1, cutoff=0.5)
                raise UsageError(
                    f"--slice-by {col!r}: no such column in OLD, NEW"
                    f"{' or LABELS' if labels else ''}. Columns present: {', '.join(present)}."
                    + (f" Closest match: {close[0]!r}." if close else "")
                )
        return found

    def _examples(self, sql: str) -> list:
        return [r[0] for r in self.con.execute(sql + f" ORDER BY 1 LIMIT {EXAMPLES}").fetchall()]

    def _account(
        self, with_sql: str, old: Side, new: Side, labels: Table | None, allow_unmatched: bool
    ) -> Accounting:
        matched, un_old, un_new = self._one(
            f"{with_sql} SELECT count(*) FILTER (WHERE o.id IS NOT NULL AND n.id IS NOT NULL), "
            "count(*) FILTER (WHERE n.id IS NULL), count(*) FILTER (WHERE o.id IS NULL) "
            "FROM o FULL OUTER JOIN n ON o.id = n.id"
        )
        missing_label = unused = 0
        if labels is not None:
            missing_label, unused = self._one(
                f"{with_sql}, m AS (SELECT o.id FROM o JOIN n ON o.id = n.id) "
                "SELECT count(*) FILTER (WHERE l.id IS NULL), count(*) FILTER (WHERE m.id IS NULL) "
                "FROM m FULL OUTER JOIN l ON m.id = l.id"
            )
        acc = Accounting(old.table.rows, new.table.rows, labels.rows if labels else None,
                         matched, un_old, un_new, missing_label, unused)
        if matched == 0:
            ex_o = self._examples(f"{with_sql} SELECT id FROM o")
            ex_n = self._examples(f"{with_sql} SELECT id FROM n")
            raise InputError(
                f"OLD file {old.table.display} and NEW file {new.table.display} share no ids "
                f"(column {old.id!r}: {examples(ex_o)}; column {new.id!r}: {examples(ex_n)}). "
                "Check --id-col and that both files describe the same examples."
            )
        if (un_old or un_new) and not allow_unmatched:
            parts = []
            if un_old:
                ex = self._examples(f"{with_sql} SELECT o.id FROM o ANTI JOIN n ON o.id = n.id")
                parts.append(f"{un_old} id(s) only in OLD file {old.table.display} "
                             f"(e.g. {examples(ex)})")
            if un_new:
                ex = self._examples(f"{with_sql} SELECT n.id FROM n ANTI JOIN o ON o.id = n.id")
                parts.append(f"{un_new} id(s) only in NEW file {new.table.display} "
                             f"(e.g. {examples(ex)})")
            raise InputError(
                f"unmatched ids: {'; '.join(parts)}; {matched} matched. Pass "
                "--allow-unmatched to audit only the ids present in both (the counts stay in "
                "the report)."
            )
        if labels is not None and missing_label and not allow_unmatched:
            ex = self._examples(
                f"{with_sql} SELECT o.id FROM o JOIN n ON o.id = n.id ANTI JOIN l ON l.id = o.id"
            )
            raise InputError(
                f"LABELS file {labels.display}: {missing_label} matched id(s) have no label "
                f"(e.g. {examples(ex)}). Add them, or pass --allow-unmatched to leave them "
                "out (they are counted in the report)."
            )
        if acc.audited == 0:
            raise InputError(
                f"no example is left to audit: {matched} ids matched between OLD and NEW, "
                f"none of them has a label in LABELS file {labels.display if labels else ''}."
            )
        return acc

    def _check_values(
        self, with_sql: str, lab_join: str, y_sql: str, old: Side, new: Side, labels: Table | None
    ) -> None:
        base = f"{with_sql} SELECT o.id FROM o JOIN n ON o.id = n.id{lab_join}"
        if old.label and new.label and labels is None:
            cond = "o.y IS NOT NULL AND n.y IS NOT NULL AND o.y <> n.y"
            bad, = self._one(
                f"{with_sql} SELECT count(*) FROM o JOIN n ON o.id = n.id WHERE {cond}"
            )
            if bad:
                rows = self.con.execute(
                    f"{with_sql} SELECT o.id, o.y, n.y FROM o JOIN n ON o.id = n.id WHERE {cond} "
                    f"ORDER BY 1 LIMIT {EXAMPLES}").fetchall()
                shown = ", ".join(f"{i!r} (OLD {a!r}, NEW {b!r})" for i, a, b in rows)
                raise InputError(
                    f"the ground truth disagrees between OLD file {old.table.display} "
                    f"(column {old.label!r}) and NEW file {new.table.display} (column "
                    f"{new.label!r}) for {bad} id(s): {shown}. Both files must carry the same "
                    "labels; fix one, or give the true labels with --labels FILE."
                )
        checks = [
            (y_sql, "label", self._label_source(old, new, labels)),
            ("o.p", "prediction", f"OLD file {old.table.display} ({old.source})"),
            ("n.p", "prediction", f"NEW file {new.table.display} ({new.source})"),
        ]
        for expr, what, where in checks:
            bad, = self._one(f"{with_sql} SELECT count(*) FROM o JOIN n ON o.id = n.id{lab_join} "
                             f"WHERE {expr} IS NULL")
            if bad:
                ex = self._examples(f"{base} WHERE {expr} IS NULL")
                raise InputError(
                    f"{bad} audited example(s) have a missing (null, NaN or infinite) {what} "
                    f"in {where}: ids {examples(ex)}. Fill them in or remove those rows."
                )
