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

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from .engine import FILL_TEXT, FILL_VALUE, Dialect, Engine
from .errors import InputError, UsageError, examples
from .io import (
    Table,
    is_float_type,
    is_integer_type,
    is_list_type,
    quote,
    resolve_column,
)

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
        return f"CAST({self.sql} AS STRING)" if self.integer else self.sql


def _value_expr(column: str, dtype: str, d: Dialect, booleans: bool = True) -> Expr:
    """A label or prediction column as an expression; NaN and inf become NULL.

    Integral floats lose their fraction (``1.0`` -> ``1``), so they match integer labels.
    Booleans are the classes ``1`` and ``0``, as in Python (``True == 1``): a boolean
    column, and with ``booleans`` the text ``true`` / ``false`` in any case (CSV files
    written by pandas hold ``True``; Parquet string columns may too), so they match 0/1
    labels or predictions in another file. Other text stays as written (``yes`` is not 1).
    """
    c = quote(column)
    if is_integer_type(dtype):
        return Expr(c, True)
    if dtype == "BOOLEAN":  # not CAST(... AS INTEGER): DuckDB pushes it into a CSV scan
        return Expr(f"(CASE WHEN {c} THEN 1 WHEN NOT {c} THEN 0 END)", True)
    if booleans and dtype == "VARCHAR":
        return Expr(f"(CASE lower({c}) WHEN 'true' THEN '1' WHEN 'false' THEN '0' "
                    f"ELSE {c} END)", False)
    if is_float_type(dtype):
        return Expr(
            f"(CASE WHEN NOT {d.is_value(c)} THEN NULL WHEN {c} = round({c}, 0) "
            f"THEN CAST(CAST({c} AS DECIMAL(38, 0)) AS STRING) ELSE CAST({c} AS STRING) END)",
            False,
        )
    return Expr(f"CAST({c} AS STRING)", False)


def _number_expr(table: Table, column: str, d: Dialect) -> Expr:
    """A regression target or prediction as DOUBLE; NaN and inf become NULL."""
    dtype = table.type_of(column)
    if not (is_integer_type(dtype) or is_float_type(dtype)):
        raise InputError(
            f"{table.label}: column {column!r} is {dtype}, not numeric; a regression audit "
            "needs numeric targets and predictions (or use --task classification)."
        )
    c = f"CAST({quote(column)} AS DOUBLE)"
    return Expr(f"(CASE WHEN {d.is_value(c)} THEN {c} END)", False, True)


def value_expr(table: Table, column: str, task: str, d: Dialect) -> Expr:
    """A label or prediction column for ``task``: canonical class or number."""
    if task == "regression":
        return _number_expr(table, column, d)
    return _value_expr(column, table.type_of(column), d)


def decide_task(engine: Engine, sides: Sequence[Side], task: str) -> tuple[str, str]:
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
        non_integral = engine.first(
            f"SELECT bool_or({c} <> round({c}, 0)) FROM {quote(side.table.view)} "
            f"WHERE {engine.dialect.is_finite(c)}")[0]
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


def _argmax(lst: str, d: Dialect) -> str:
    """1-based position of the first maximum; NULL when any score is NULL or NaN.

    (SQL engines order NaN above every number, so a NaN score would otherwise win.)
    """
    return (f"(CASE WHEN {d.any_missing(lst)} THEN NULL "
            f"ELSE {d.array_position(lst, d.array_max(lst))} END)")


def resolve_side(table: Table, cols: Columns, d: Dialect, pred_required: bool = True) -> Side:
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

    pred: Expr | None = _value_expr(pred_col, table.type_of(pred_col), d) if pred_col else None
    confidence: str | None = None
    source = f"column {pred_col!r}" if pred_col else ""
    if len(scores) == 1 and is_list_type(table.type_of(scores[0])):
        # A list column: class i is the i-th entry (0-based).
        s = quote(scores[0])
        if pred is None:
            pred = Expr(f"({_argmax(s, d)} - 1)", True)
            source = f"argmax of list column {scores[0]!r}"
            confidence = d.array_max(s)
        elif pred.integer:
            confidence = d.element_at(s, f"{pred.sql} + 1")
    elif len(scores) == 1:
        s = quote(scores[0])
        t = float(cols.threshold)
        if pred is None:
            pred = Expr(f"(CASE WHEN {s} IS NULL OR NOT {d.is_value(s)} THEN NULL "
                        f"WHEN {s} >= {t!r} THEN 1 ELSE 0 END)", True)
            source = f"{scores[0]!r} >= {t:g} (binary)"
        confidence = f"(CASE WHEN {pred.canonical()} = '1' THEN {s} ELSE 1 - {s} END)"
    elif scores:
        names = [_class_name(cols.scores or "", c) for c in scores]
        if len(set(names)) != len(names):
            raise InputError(f"{table.label}: score columns {scores} give duplicate classes.")
        lst = d.array([f"CAST({quote(c)} AS DOUBLE)" for c in scores])
        classes = d.array([d.literal(n) for n in names])
        if pred is None:
            pred = Expr(d.element_at(classes, _argmax(lst, d)), False)
            source = f"argmax of {len(scores)} score columns {cols.scores!r}"
            confidence = d.array_max(lst)
        else:
            confidence = d.element_at(lst, d.array_position(classes, pred.canonical()))
    if confidence is not None:  # an infinite or NaN score ranks nothing
        confidence = f"(CASE WHEN {d.is_finite(confidence)} THEN {confidence} END)"
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
    """The join of old, new and labels, as SQL, and the checks every row is counted by.

    ``with_sql`` is a ``WITH`` clause defining ``j``: one row per id of any input (and
    per row without an id), with ``oid, nid[, lid], y, yo, yn, o, n, oc, nc, a, s0..sk``
    (``oid``/``nid``/``lid``: the row's id in OLD / NEW / LABELS, NULL where the input
    has no such id; ``a``: it is audited), and ``jin``: the same columns for the audited
    rows only. ``checks`` are named boolean SQL
    conditions over ``j``; the count step groups by them, so one pass over the join gives
    the accounting, the validation and the flip counts.
    """

    with_sql: str
    checks: dict[str, str]
    clean: str
    clean_checks: tuple[str, ...]
    integer_ids: bool
    integer_labels: bool
    slices: tuple[str, ...]
    label_source: str
    old_source: str
    new_source: str
    task: str = "classification"
    old_confidence: bool = False
    slice_sides: tuple[str, ...] = ()  # the input (o, n or l) each slice column comes from

    def checks_sql(self) -> str:
        """One integer per row of ``j`` whose bit ``i`` is the ``i``-th check.

        Almost every row is *clean* (matched, labelled, predicted, labels agreeing): one
        cheap condition sends those to the constant whose bits are ``clean_checks``, the
        checks such a row passes; only the other rows evaluate every check.
        """
        bits = {name: 1 << i for i, name in enumerate(self.checks)}
        each = " + ".join(f"(CASE WHEN {cond} THEN {bits[name]} ELSE 0 END)"
                          for name, cond in self.checks.items())
        clean = sum(bits[name] for name in self.clean_checks)
        return f"CASE WHEN {self.clean} THEN {clean} ELSE ({each}) END"

    def audited(self, mask: int | None) -> bool:
        """Whether rows with this check mask are audited (``a``): matched (and labelled)."""
        names = list(self.checks)
        need = ["matched", "l_seen"] if "l_seen" in self.checks else ["matched"]
        return all((mask or 0) >> names.index(name) & 1 for name in need)

    @property
    def audited_sql(self) -> str:
        """``WITH ...`` selecting ``id, y, o, n, oc, nc, s0..`` of the audited examples."""
        slices = "".join(f", s{i}" for i in range(len(self.slices)))
        return f"{self.with_sql}, aud AS (SELECT oid AS id, y, o, n, oc, nc{slices} FROM jin)"


def _labels_table_side(table: Table, cols: Columns) -> tuple[str, str]:
    id_col = resolve_column(table, cols.id, "id", ID_SYNONYMS)
    if id_col is None:
        raise table.missing_column(cols.id or "id", "--id-col")
    label = resolve_column(table, cols.label, "label", LABEL_SYNONYMS)
    if label is None:
        raise table.missing_column(cols.label or "label", "--label-col")
    return id_col, label


def id_sql(table: Table, column: str, native: bool, d: Dialect) -> str:
    """An id column as it is joined: as is when every id column of the join is an integer
    (``native``), else canonical text, where a float id loses an integral fraction (``1.0``
    joins ``1``) and NaN or inf is no id (NULL). Text stays text: ``007`` is not ``7``."""
    if native:
        return quote(column)
    return _value_expr(column, table.type_of(column), d, booleans=False).canonical()


def check_ids(engine: Engine, table: Table, id_col: str) -> None:
    """Raise :class:`InputError` for null or duplicate ids, with examples.

    Ids are compared as the join compares them (:func:`id_sql`): a NaN id is no id, and
    ``1.0`` twice in a float column is a duplicate.
    """
    native = not is_float_type(table.type_of(id_col))
    v, c = quote(table.view), id_sql(table, id_col, native, engine.dialect)
    nulls = engine.first(f"SELECT count(*) FROM {v} WHERE {c} IS NULL")[0]
    if nulls:
        rows = [r[0] for r in engine.rows(
            f"SELECT rn FROM (SELECT row_number() OVER (ORDER BY 1) AS rn, {c} AS k FROM {v}) "
            f"AS t WHERE k IS NULL ORDER BY rn LIMIT {EXAMPLES}")]
        raise InputError(
            f"{table.label}: {nulls} row(s) have no id in column {id_col!r} "
            f"(data rows {examples(rows)}). Every prediction needs an id to be joined on."
        )
    dup_n = engine.first(
        f"SELECT count(*) FROM (SELECT {c} FROM {v} GROUP BY {c} HAVING count(*) > 1) AS t"
    )[0]
    if dup_n:
        dups = engine.rows(
            f"SELECT {c}, count(*) FROM {v} GROUP BY {c} HAVING count(*) > 1 "
            f"ORDER BY {c} LIMIT {EXAMPLES}")
        shown = ", ".join(f"{k!r} ({n} times)" for k, n in dups)
        raise InputError(
            f"{table.label}: {dup_n} id(s) occur more than once in column {id_col!r}: "
            f"{shown}{', ...' if dup_n > EXAMPLES else ''}. Ids must be unique; "
            "remove the duplicates or choose another --id-col."
        )


class Aligner:
    """Plans the join of old, new and labels, then validates it from the counted checks.

    :meth:`plan` only writes SQL; the count step runs it once; :meth:`account` turns the
    check counts into the row accounting or the first error, with examples.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.d = engine.dialect

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
        """Validate the inputs and return the joined data's SQL and the row accounting."""
        d = self.d
        lab_id = lab_label = None
        if labels is not None:
            lab_id, lab_label = _labels_table_side(labels, cols)
        elif old.label is None and new.label is None:
            wanted = cols.label or "label"
            missing = old.table.missing_column(wanted, "--label-col", hint=(
                f"NEW file {new.table.display} has none either (known names: label, "
                f"{', '.join(LABEL_SYNONYMS)}). Name the ground-truth column with "
                "--label-col, or give a labels file with --labels FILE."))
            raise InputError(f"no ground-truth column: {missing}")

        # Ids: native join when every id column is an integer, else join as text.
        id_types = [old.id_integer, new.id_integer]
        if labels is not None and lab_id is not None:
            id_types.append(is_integer_type(labels.type_of(lab_id)))
        integer_ids = all(id_types)


        # Labels and predictions: native when all are integers, else canonical text.
        y_old = value_expr(old.table, old.label, task, d) if old.label else None
        y_new = value_expr(new.table, new.label, task, d) if new.label else None
        lab_expr = None
        if labels is not None and lab_label is not None:
            lab_expr = value_expr(labels, lab_label, task, d)
        preds = {}
        for side in (old, new):
            preds[side.table.role] = (
                value_expr(side.table, side.pred_col, task, d)
                if task == "regression" and side.pred_col else side.pred
            )
        values = [e for e in (y_old, y_new, lab_expr, *preds.values()) if e is not None]
        integer_labels = all(e.integer for e in values)

        def val(e: Expr | None) -> str:
            if e is None:
                return "NULL"
            return e.sql if integer_labels or e.number else e.canonical()

        slice_sources = self._slice_sources(cols.slices, old.table, new.table, labels)

        def side_sql(side: Side, y: Expr | None, alias: str) -> str:
            pred = preds[side.table.role]
            parts = [f"{id_sql(side.table, side.id, integer_ids, d)} AS id",
                     f"{val(y)} AS y", f"{val(pred)} AS p", f"{side.confidence or 'NULL'} AS c"]
            parts += [f"CAST({quote(col)} AS STRING) AS s{i}"
                      for i, (src, col) in enumerate(slice_sources) if src == alias]
            return f"SELECT {', '.join(parts)} FROM {quote(side.table.view)}"

        ctes = [f"o AS ({side_sql(old, y_old, 'o')})", f"n AS ({side_sql(new, y_new, 'n')})"]
        has_labels = labels is not None and lab_id is not None and lab_expr is not None
        if has_labels:
            assert labels is not None and lab_id is not None
            parts = [f"{id_sql(labels, lab_id, integer_ids, d)} AS id", f"{val(lab_expr)} AS y"]
            parts += [f"CAST({quote(col)} AS STRING) AS s{i}"
                      for i, (src, col) in enumerate(slice_sources) if src == "l"]
            ctes.append(f"l AS (SELECT {', '.join(parts)} FROM {quote(labels.view)})")

        y_sql = ("l.y" if has_labels else
                 "coalesce(o.y, n.y)" if old.label and new.label else
                 "o.y" if old.label else "n.y")
        # A row with ids from OLD and NEW is matched (ids are equal, so neither is NULL).
        matched = "o.id IS NOT NULL AND n.id IS NOT NULL"
        audited = matched + (" AND l.id IS NOT NULL" if has_labels else "")
        columns = [
            "o.id AS oid", "n.id AS nid", f"{y_sql} AS y", "o.y AS yo", "n.y AS yn",
            "o.p AS o", "n.p AS n", "o.c AS oc", "n.c AS nc", f"({audited}) AS a",
        ]
        if has_labels:
            columns += ["l.id AS lid"]
        columns += [f"{src}.s{i} AS s{i}" for i, (src, _c) in enumerate(slice_sources)]
        join = "o FULL OUTER JOIN n ON o.id = n.id"
        inner = "o JOIN n ON o.id = n.id"
        if has_labels:
            join += " FULL OUTER JOIN l ON l.id = coalesce(o.id, n.id)"
            inner += " JOIN l ON l.id = o.id"
        ctes.append(f"j AS (SELECT {', '.join(columns)} FROM {join})")
        # The audited rows alone: an inner join, through which filters reach the scans.
        ctes.append(f"jin AS (SELECT {', '.join(columns)} FROM {inner})")

        # A row without an id joins nothing: every id of its row in j is NULL.
        checks = {
            "o_seen": "oid IS NOT NULL", "n_seen": "nid IS NOT NULL",
            "no_id": "oid IS NULL AND nid IS NULL" + (" AND lid IS NULL" if has_labels else ""),
            "matched": "oid IS NOT NULL AND nid IS NOT NULL",
            "un_old": "oid IS NOT NULL AND nid IS NULL",
            "un_new": "nid IS NOT NULL AND oid IS NULL",
            "null_y": "a AND y IS NULL", "null_o": "a AND o IS NULL", "null_n": "a AND n IS NULL",
        }
        if has_labels:
            checks.update({
                "l_seen": "lid IS NOT NULL",
                "missing_label": "oid IS NOT NULL AND nid IS NOT NULL AND lid IS NULL",
                "unused": "lid IS NOT NULL AND (oid IS NULL OR nid IS NULL)",
            })
        elif old.label and new.label:
            checks["disagree"] = "a AND coalesce(yo <> yn, FALSE)"
            # A label missing in one file only is taken from the other; one that is a fill
            # value must still be named (see _check_fill_values).
            checks["one_label"] = "a AND (yo IS NULL) <> (yn IS NULL)"
        # A clean row is audited, with a label (agreeing between the files) and both
        # predictions: then it is in OLD and NEW (and LABELS) and fails no other check.
        clean = "a AND o IS NOT NULL AND n IS NOT NULL AND " + (
            "yo = yn" if "disagree" in checks else "y IS NOT NULL")
        clean_checks = ("o_seen", "n_seen", "matched") + (("l_seen",) if has_labels else ())
        self._context = (old, new, labels, lab_id, has_labels)
        self._cols = cols
        return Plan(
            with_sql="WITH " + ", ".join(ctes),
            checks=checks,
            clean=clean,
            clean_checks=clean_checks,
            integer_ids=integer_ids,
            integer_labels=integer_labels,
            slices=tuple(c for _s, c in slice_sources),
            slice_sides=tuple(side for side, _c in slice_sources),
            label_source=self._label_source(old, new, labels),
            old_source=old.source,
            new_source=new.source,
            task=task,
            old_confidence=old.confidence is not None,
        )

    @staticmethod
    def _label_source(old: Side, new: Side, labels: Table | None) -> str:
        if labels is not None:
            return f"labels file {labels.display}"
        if old.label and new.label:
            return f"both files (OLD {old.label!r}, NEW {new.label!r}; checked to agree)"
        return f"OLD column {old.label!r}" if old.label else f"NEW column {new.label!r}"

    @staticmethod
    def _label_files(old: Side, new: Side, labels: Table | None) -> str:
        """Where the labels are, naming the files (for messages)."""
        if labels is not None:
            return f"LABELS file {labels.display}"
        sides = [s for s in (old, new) if s.label]
        return " and ".join(f"{s.table.label} column {s.label!r}" for s in sides)

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
                close = difflib.get_close_matches(col, present, n=1, cutoff=0.5)
                raise UsageError(
                    f"--slice-by {col!r}: no such column in OLD, NEW"
                    f"{' or LABELS' if labels else ''}. Columns present: {', '.join(present)}."
                    + (f" Closest match: {close[0]!r}." if close else "")
                )
        return found

    def _check_fill_values(self) -> None:
        """Raise for a label, prediction or score that is a fill value (see
        :data:`~graceful_audit.engine.FILL_VALUE`): the audit treats it as missing, and the
        message says what it is. Runs only when some value is missing, so costs nothing on
        clean data."""
        old, new, labels, lab_id, _has = self._context
        found = [(old.table, old.id, old.label, "label"), (new.table, new.id, new.label, "label")]
        if labels is not None and lab_id is not None:
            found.append((labels, lab_id, _labels_table_side(labels, self._cols)[1], "label"))
        for side in (old, new):
            found.append((side.table, side.id, side.pred_col, "prediction"))
            if self._cols.scores:
                found += [(side.table, side.id, col, "score")
                          for col in _score_columns(side.table, self._cols.scores)]
        for table, id_col, col, what in found:
            if col is None or not is_float_type(table.type_of(col)):
                continue
            c, v = quote(col), quote(table.view)
            where = f"abs({c}) >= {FILL_VALUE!r} AND {self.d.is_finite(c)}"
            n = self.engine.first(f"SELECT count(*) FROM {v} WHERE {where}")[0]
            if not n:
                continue
            rows = self.engine.rows(f"SELECT {quote(id_col)}, {c} FROM {v} WHERE {where} "
                                    f"ORDER BY 1 LIMIT {EXAMPLES}")
            shown = ", ".join(f"{i!r} ({x:.8g})" for i, x in rows)
            raise InputError(
                f"{table.label}: column {col!r} holds a fill value for a missing number in "
                f"{n} row(s): ids {shown}{', ...' if n > EXAMPLES else ''}. A {what} of "
                f"magnitude {FILL_TEXT} or more (such as float32's -3.4e38) is not data; "
                "write the real values, or remove those rows."
            )

    def _examples(self, column: str, where: str) -> list:
        return [r[0] for r in self.engine.rows(
            f"{self._with_sql} SELECT {column} FROM j WHERE {where} ORDER BY 1 LIMIT {EXAMPLES}")]

    def account(self, plan: Plan, counts: dict[str, int], allow_unmatched: bool) -> Accounting:
        """Where every row went, from the counted checks; the first problem is raised."""
        old, new, labels, lab_id, has_labels = self._context
        self._with_sql = plan.with_sql
        checks = plan.checks
        c = {k: int(counts.get(k, 0)) for k in checks}

        tables = [(old.table, old.id, "o"), (new.table, new.id, "n")]
        if has_labels and labels is not None and lab_id is not None:
            tables.append((labels, lab_id, "l"))
        # A duplicate id among matched rows repeats the rows it joins with, so some input's
        # row count differs from what the join saw; rows without an id are counted directly
        # (no_id). Either way check_ids finds and names them. Duplicates among unmatched ids
        # join nothing, so inputs with unmatched rows that the audit tolerates get the
        # explicit check.
        if c["no_id"] or any(c[f"{a}_seen"] != t.rows for t, _i, a in tables):
            for table, id_col, _alias in tables:
                check_ids(self.engine, table, id_col)
        tolerated = {"o": allow_unmatched and c["un_old"], "n": allow_unmatched and c["un_new"],
                     "l": c.get("unused", 0)}
        for table, id_col, alias in tables:
            if tolerated[alias]:
                check_ids(self.engine, table, id_col)

        matched, un_old, un_new = c["matched"], c["un_old"], c["un_new"]
        acc = Accounting(old.table.rows, new.table.rows, labels.rows if labels else None,
                         matched, un_old, un_new, c.get("missing_label", 0), c.get("unused", 0))
        if matched == 0:
            ex_o = self._examples("oid", "oid IS NOT NULL")
            ex_n = self._examples("nid", "nid IS NOT NULL")
            raise InputError(
                f"OLD file {old.table.display} and NEW file {new.table.display} share no ids "
                f"(column {old.id!r}: {examples(ex_o)}; column {new.id!r}: {examples(ex_n)}). "
                "Check --id-col and that both files describe the same examples."
            )
        if (un_old or un_new) and not allow_unmatched:
            parts = []
            if un_old:
                ex = self._examples("oid", checks["un_old"])
                parts.append(f"{un_old} id(s) only in OLD file {old.table.display} "
                             f"(e.g. {examples(ex)})")
            if un_new:
                ex = self._examples("nid", checks["un_new"])
                parts.append(f"{un_new} id(s) only in NEW file {new.table.display} "
                             f"(e.g. {examples(ex)})")
            raise InputError(
                f"unmatched ids: {'; '.join(parts)}; {matched} matched. Pass "
                "--allow-unmatched to audit only the ids present in both (the counts stay in "
                "the report)."
            )
        if labels is not None and acc.missing_label and not allow_unmatched:
            ex = self._examples("oid", checks["missing_label"])
            raise InputError(
                f"LABELS file {labels.display}: {acc.missing_label} matched id(s) have no "
                f"label (e.g. {examples(ex)}). Add them, or pass --allow-unmatched to leave "
                "them out (they are counted in the report)."
            )
        if acc.audited == 0:
            raise InputError(
                f"no example is left to audit: {matched} ids matched between OLD and NEW, "
                f"none of them has a label in LABELS file {labels.display if labels else ''}."
            )
        if c.get("disagree"):
            rows = self.engine.rows(
                f"{plan.with_sql} SELECT oid, yo, yn FROM j WHERE {checks['disagree']} "
                f"ORDER BY 1 LIMIT {EXAMPLES}")
            shown = ", ".join(f"{i!r} (OLD {a!r}, NEW {b!r})" for i, a, b in rows)
            raise InputError(
                f"the ground truth disagrees between OLD file {old.table.display} "
                f"(column {old.label!r}) and NEW file {new.table.display} (column "
                f"{new.label!r}) for {c['disagree']} id(s): {shown}. Both files must carry the "
                "same labels; fix one, or give the true labels with --labels FILE."
            )
        if c["null_y"] or c["null_o"] or c["null_n"] or c.get("one_label"):
            self._check_fill_values()
        for key, what, where in (
            ("null_y", "label", self._label_files(old, new, labels)),
            ("null_o", "prediction", f"OLD file {old.table.display} ({old.source})"),
            ("null_n", "prediction", f"NEW file {new.table.display} ({new.source})"),
        ):
            if c[key]:
                ex = self._examples("oid", checks[key])
                raise InputError(
                    f"{c[key]} audited example(s) have a missing (null, NaN or infinite) {what} "
                    f"in {where}: ids {examples(ex)}. Fill them in or remove those rows."
                )
        return acc
