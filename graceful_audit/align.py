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

import dataclasses
import difflib
import fnmatch
from collections.abc import Mapping, Sequence
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

#: A model whose predicted classes share nothing with two or more label classes over at
#: least this many audited rows is refused (its columns do not name the label classes);
#: on fewer rows, or against a single label class, it is a warning.
REFUSE_DISJOINT_ROWS = 10


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


def decide_task(engine: Engine, sides: Sequence[Side], task: str,
                implied: Sequence[str] = ()) -> tuple[str, str]:
    """``auto``: regression when a prediction column holds non-integral floats, or when
    ``implied`` names regression-only options that were given (``--atol``); and why.

    Those options with ``--task classification`` are a usage error: never ignored.
    """
    if task not in ("auto", "classification", "regression"):
        raise UsageError(f"--task: {task!r} is not one of auto, classification, regression.")
    given = ", ".join(implied)
    if task == "classification" and implied:
        raise UsageError(
            f"{given} appl{'y' if len(implied) > 1 else 'ies'} only to a regression audit, "
            "but --task classification was given. Drop "
            f"{'them' if len(implied) > 1 else 'it'}, or audit with --task regression."
        )
    if task == "auto" and implied:
        task, reason = "regression", f"{given} given, with --task auto"
        found = decide_task(engine, sides, "auto")  # non-integral numbers: the better reason
        reason = found[1] if found[0] == "regression" else reason
    else:
        reason = "--task " + task
    if task != "auto":
        if task == "regression":
            for side in sides:
                if side.pred_col is None:
                    raise UsageError(
                        f"a regression audit ({reason}) needs a numeric prediction column in "
                        f"{side.table.label}; --score-cols is for classifiers."
                    )
        return task, reason
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
    scores: tuple[str, ...] = ()  # the score columns read
    score_kind: str = ""  # "list", "binary" or "columns"
    score_classes: tuple[str, ...] = ()  # the class each score column stands for ("columns")

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
    roles = [("the id (--id-col)", id_col), ("the ground truth (--label-col)", label),
             ("the prediction (--pred-col)", pred_col)]
    roles += [(f"a score column (--score-cols {cols.scores!r})", s) for s in scores]
    seen: dict[str, str] = {}
    for role, col in roles:
        if col is not None and col in seen:
            raise UsageError(
                f"{table.label}: column {col!r} would be both {seen[col]} and {role}; one "
                "column cannot play two roles (a prediction read as its own label is always "
                "right). Name different columns."
            )
        if col is not None:
            seen[col] = role
    for s in scores:
        t = table.type_of(s)
        if not (is_list_type(t) or is_integer_type(t) or is_float_type(t)):
            raise InputError(f"{table.label}: score column {s!r} is {t}, not numeric.")

    pred: Expr | None = _value_expr(pred_col, table.type_of(pred_col), d) if pred_col else None
    confidence: str | None = None
    kind = ""
    score_classes: tuple[str, ...] = ()
    source = f"column {pred_col!r}" if pred_col else ""
    if len(scores) == 1 and is_list_type(table.type_of(scores[0])):
        # A list column: class i is the i-th entry (0-based).
        s = quote(scores[0])
        kind = "list"
        if pred is None:
            pred = Expr(f"({_argmax(s, d)} - 1)", True)
            source = f"argmax of list column {scores[0]!r}"  # check_scores adds the classes
            confidence = d.array_max(s)
        elif pred.integer:
            confidence = d.element_at(s, f"{pred.sql} + 1")
            source += f" (confidence from list column {scores[0]!r}: entry i -> class i)"
    elif len(scores) == 1:
        s = quote(scores[0])
        t = float(cols.threshold)
        kind = "binary"
        score_classes = ("0", "1")
        if pred is None:
            pred = Expr(f"(CASE WHEN {s} IS NULL OR NOT {d.is_value(s)} THEN NULL "
                        f"WHEN {s} >= {t!r} THEN 1 ELSE 0 END)", True)
            source = f"{scores[0]!r} >= {t:g} -> class 1, else class 0 (binary)"
        else:
            source += f" (confidence from {scores[0]!r}: the score of class 1)"
        confidence = f"(CASE WHEN {pred.canonical()} = '1' THEN {s} ELSE 1 - {s} END)"
    elif scores:
        names = [_class_name(cols.scores or "", c) for c in scores]
        if len(set(names)) != len(names):
            raise InputError(f"{table.label}: score columns {scores} give duplicate classes.")
        lst = d.array([f"CAST({quote(c)} AS DOUBLE)" for c in scores])
        classes = d.array([d.literal(n) for n in names])
        kind = "columns"
        if pred is None:
            pred = Expr(d.element_at(classes, _argmax(lst, d)), False)
            source = (f"argmax of {len(scores)} score columns {cols.scores!r}: "
                      f"{_mapping(scores, names)}")
            confidence = d.array_max(lst)
        else:
            confidence = d.element_at(lst, d.array_position(classes, pred.canonical()))
            source += (f" (confidence from {len(scores)} score columns {cols.scores!r}: "
                       f"{_mapping(scores, names)})")
        score_classes = tuple(names)
    if confidence is not None:  # an infinite or NaN score ranks nothing
        confidence = f"(CASE WHEN {d.is_finite(confidence)} THEN {confidence} END)"
    if pred is None:
        if not pred_required:
            return Side(table, id_col, label, Expr("NULL", True), None, "", pred_col)
        raise table.missing_column(
            cols.pred or "pred", "--pred-col",
            hint="Give the prediction column with --pred-col, or score columns with --score-cols.",
        )
    return Side(table, id_col, label, pred, confidence, source, pred_col, tuple(scores), kind,
                score_classes)


def _classes_text(names: Sequence[str], limit: int = 8) -> str:
    """``0..9`` for the classes 0 to K-1, else the names (the first few and the last)."""
    if len(names) > 2 and list(names) == [str(i) for i in range(len(names))]:
        return f"0..{len(names) - 1}"
    shown = [repr(n) for n in names]
    if len(shown) > limit:
        shown = [*shown[: limit - 2], f"... ({len(shown)} in all)", shown[-1]]
    return ", ".join(shown)


def _mapping(columns: Sequence[str], names: Sequence[str]) -> str:
    """Which class each score column stands for, as the reports say it."""
    if len(columns) > 2 and list(names) == [str(i) for i in range(len(names))]:
        return f"{columns[0]}..{columns[-1]} -> classes 0..{len(names) - 1}"
    pairs = [f"{c} -> {n!r}" for c, n in zip(columns, names, strict=True)]
    if len(pairs) > 6:
        pairs = [*pairs[:4], f"... ({len(pairs)} in all)", pairs[-1]]
    return ", ".join(pairs)


def check_scores(engine: Engine, side: Side) -> Side:
    """Validate a side's score columns in the engine; return it with the classes named.

    * a list column must hold as many scores on every row (else the argmax of a short row
      runs over fewer classes): an error naming ids, as for ragged embeddings;
    * one binary score column is compared with ``--threshold`` (and is the confidence):
      it must be a probability in [0, 1], never a logit.
    """
    if not side.scores:
        return side
    d, t, v = engine.dialect, side.table, quote(side.table.view)
    col, idc = side.scores[0], quote(side.id)
    c = quote(col)
    if side.score_kind == "list":
        n = d.array_length(c)
        lengths = engine.rows(f"SELECT {n} AS k, count(*) AS c FROM {v} WHERE {c} IS NOT NULL "
                              "GROUP BY 1 ORDER BY 2 DESC, 1")
        if len(lengths) > 1:
            common = lengths[0][0]
            ids = [r[0] for r in engine.rows(
                f"SELECT {idc} FROM {v} WHERE {n} <> {common} ORDER BY 1 LIMIT {EXAMPLES}")]
            odd = sum(k for _n, k in lengths[1:])
            raise InputError(
                f"{t.label}: ragged score lists in column {col!r}: lengths "
                f"{', '.join(str(k) for k, _c in sorted(lengths)[:5])} (most are {common}; "
                f"{odd} row(s) differ, ids {examples(ids)}). Every row needs one score per "
                "class, in the same order."
            )
        if lengths and side.source.startswith("argmax"):
            k = int(lengths[0][0])
            names = [str(i) for i in range(k)]
            side = dataclasses.replace(
                side, source=f"{side.source}: entries 0..{k - 1} -> classes "
                f"{_classes_text(names)}", score_classes=tuple(names))
    elif side.score_kind == "binary":
        bad = f"{d.is_finite(c)} AND ({c} < 0 OR {c} > 1)"
        count = engine.first(f"SELECT count(*) FROM {v} WHERE {bad}")[0]
        if count:
            rows = engine.rows(f"SELECT {idc}, {c} FROM {v} WHERE {bad} ORDER BY 1 "
                               f"LIMIT {EXAMPLES}")
            shown = ", ".join(f"{i!r} ({s:g})" for i, s in rows)
            raise InputError(
                f"{t.label}: the binary score column {col!r} holds {count} value(s) outside "
                f"[0, 1], e.g. ids {shown}{', ...' if count > EXAMPLES else ''}. One score "
                "column is read as the probability of class 1 (compared with --threshold); "
                "convert logits with a sigmoid, or give the predicted class with --pred-col."
            )
    return side


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
    from .outcomes import repeat_hint

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
            "remove the duplicates or choose another --id-col." + repeat_hint(engine, table, id_col)
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
        carry: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> Plan:
        """Validate the inputs and return the joined data's SQL and the row accounting.

        ``carry`` adds columns to ``j`` and ``jin``: per input alias (``o``, ``n``) pairs of
        ``(SQL over that input's view, column name)``, e.g. the score columns the what-if
        blends (:mod:`graceful_audit.whatif`). Without it the SQL is unchanged.
        """
        d = self.d
        carry = carry or {}
        lab_id = lab_label = None
        if labels is not None:
            lab_id, lab_label = _labels_table_side(labels, cols)
        elif task == "outcome":
            pass  # outcomes: the one label is "pass" (1), each side's prediction its outcome
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
        tables = {"o": old.table, "n": new.table, "l": labels}
        # A slice column in more than one input: its values must agree (checked per row, as
        # the join compares values: 1, 1.0 and "1" agree); the first input's are used.
        shared = {i: [a for a, t in tables.items() if t is not None and t.has(col)]
                  for i, (_src, col) in enumerate(slice_sources)}
        shared = {i: aliases for i, aliases in shared.items() if len(aliases) > 1}

        def slice_parts(table: Table, alias: str) -> list[str]:
            parts = [f"CAST({quote(col)} AS STRING) AS s{i}"
                     for i, (src, col) in enumerate(slice_sources) if src == alias]
            for i, aliases in shared.items():
                if alias in aliases:
                    col = slice_sources[i][1]
                    key = _value_expr(col, table.type_of(col), d).canonical()
                    parts.append(f"{key} AS k{i}")
            return parts

        def side_sql(side: Side, y: Expr | None, alias: str) -> str:
            pred = preds[side.table.role]
            parts = [f"{id_sql(side.table, side.id, integer_ids, d)} AS id",
                     f"{val(y)} AS y", f"{val(pred)} AS p", f"{side.confidence or 'NULL'} AS c"]
            parts += slice_parts(side.table, alias)
            parts += [f"{sql} AS {name}" for sql, name in carry.get(alias, ())]
            return f"SELECT {', '.join(parts)} FROM {quote(side.table.view)}"

        ctes = [f"o AS ({side_sql(old, y_old, 'o')})", f"n AS ({side_sql(new, y_new, 'n')})"]
        has_labels = labels is not None and lab_id is not None and lab_expr is not None
        if has_labels:
            assert labels is not None and lab_id is not None
            parts = [f"{id_sql(labels, lab_id, integer_ids, d)} AS id", f"{val(lab_expr)} AS y"]
            parts += slice_parts(labels, "l")
            ctes.append(f"l AS (SELECT {', '.join(parts)} FROM {quote(labels.view)})")

        y_sql = ("1" if task == "outcome" else "l.y" if has_labels else
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
        columns += [f"{a}.k{i} AS k{i}_{a}" for i, aliases in shared.items() for a in aliases]
        columns += [f"{a}.{name} AS {name}" for a, items in carry.items() for _sql, name in items]
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
        agree = {i: " AND ".join(d.same(f"k{i}_{aliases[0]}", f"k{i}_{a}") for a in aliases[1:])
                 for i, aliases in shared.items()}
        for i, cond in agree.items():
            checks[f"slice_differs_{i}"] = f"a AND NOT ({cond})"
        # A clean row is audited, with a label (agreeing between the files) and both
        # predictions (and slice values agreeing between the files): then it is in OLD and
        # NEW (and LABELS) and fails no other check.
        clean = "a AND o IS NOT NULL AND n IS NOT NULL AND " + (
            "yo = yn" if "disagree" in checks else "y IS NOT NULL") + "".join(
            f" AND {cond}" for cond in agree.values())
        clean_checks = ("o_seen", "n_seen", "matched") + (("l_seen",) if has_labels else ())
        self._context = (old, new, labels, lab_id, has_labels)
        self._shared_slices = {i: (slice_sources[i][1], aliases) for i, aliases in shared.items()}
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
            label_source=("none: each file's outcome says whether the model passed"
                          if task == "outcome" else self._label_source(old, new, labels)),
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

    def _slice_differs(self, plan: Plan, col: str, aliases: list[str], i: int, count: int
                       ) -> None:
        """The error for a slice column whose values differ between the inputs holding it."""
        old, new, labels, _lab_id, _has = self._context
        tables = {"o": old.table, "n": new.table, "l": labels}
        names = {"o": "OLD", "n": "NEW", "l": "LABELS"}
        values = ", ".join(f"k{i}_{a}" for a in aliases)
        rows = self.engine.rows(
            f"{plan.with_sql} SELECT oid, {values} FROM j WHERE {plan.checks[f'slice_differs_{i}']}"
            f" ORDER BY 1 LIMIT {EXAMPLES}")
        shown = ", ".join(
            f"{r[0]!r} (" + ", ".join(f"{names[a]} {v!r}" for a, v in zip(aliases, r[1:],
                                                                         strict=True)) + ")"
            for r in rows)
        files = " and ".join(f"{names[a]} file {tables[a].display}"  # type: ignore[union-attr]
                             for a in aliases)
        raise InputError(
            f"--slice-by {col!r}: {files} {'both' if len(aliases) == 2 else 'all'} have this "
            "column, and its values differ for "
            f"{count} audited id(s): {shown}{', ...' if count > EXAMPLES else ''}. Which file's "
            "values to slice by is ambiguous: drop or rename the column in all files but one, "
            "or make the values agree."
        )

    def check_classes(self, predicted: dict[str, dict[str, int]],
                      label_classes: dict[str, int]) -> list[str]:
        """Compare each model's predicted classes with the label classes (audited rows).

        Refuse a model whose predicted classes share nothing with the labels (score columns
        named ``prob_cat`` against labels 0/1, a 0/1 score against ``neg``/``pos``): both
        models would be wrong on every row and the flip rates mean nothing. Return warnings
        for a model that predicts classes unknown to the labels on most rows, or whose
        predicted classes are mostly unknown (when it predicts at most twice as many
        classes as the labels hold, so that an audit on a few classes of a large model
        does not warn).
        """
        from .flips import natural_key

        old, new, labels, _lab_id, _has = self._context
        labels_text = self._label_files(old, new, labels)
        known = set(label_classes)
        n = sum(label_classes.values())
        warnings: list[str] = []
        warned: set[str] = set()  # one warning per model is loud enough
        for name, side in (("old", old), ("new", new)):
            counts = predicted.get(name) or {}
            if not counts:
                continue
            unknown = sorted((c for c in counts if c not in known), key=natural_key)
            rows = sum(counts[c] for c in unknown)
            if (side.pred_col and side.score_kind == "columns"
                    and not set(counts) & set(side.score_classes)):
                warnings.append(
                    f"{side.table.label}: none of the classes its column {side.pred_col!r} "
                    f"predicts ({_classes_text(sorted(counts, key=natural_key))}) has a score "
                    f"column ({_mapping(side.scores, side.score_classes)}), so the confidence "
                    "of its predictions is unknown and the worst flips are ordered by id. "
                    "Check --score-cols."
                )
            if not unknown:
                continue
            shown_p = ", ".join(repr(c) for c in sorted(counts, key=natural_key)[:EXAMPLES])
            more_p = f" ... ({len(counts)} in all)" if len(counts) > EXAMPLES else ""
            shown_l = ", ".join(repr(c) for c in sorted(known, key=natural_key)[:EXAMPLES])
            more_l = f" ... ({len(known)} in all)" if len(known) > EXAMPLES else ""
            what = (f"{side.table.label} ({side.source}) predicts the classes "
                    f"{shown_p}{more_p}; the labels ({labels_text}) hold {shown_l}{more_l}")
            if len(unknown) == len(counts):
                if len(known) >= 2 and n >= REFUSE_DISJOINT_ROWS:
                    raise InputError(
                        f"{what}: they share no class, so every prediction would count as "
                        "wrong and the flip rates would mean nothing. Make the predictions "
                        "name the label classes (e.g. score columns prob_<label>, or labels "
                        "mapped to the predicted values), or choose the right --pred-col, "
                        "--score-cols or --label-col."
                    )
                warned.add(side.table.role)
                warnings.append(f"{what}: they share no class; every prediction of the "
                                f"{name.upper()} model counts as wrong.")
            elif 2 * rows > n or (2 * len(unknown) > len(counts)
                                  and len(counts) <= 2 * len(known)):
                warned.add(side.table.role)
                shown_u = ", ".join(repr(c) for c in unknown[:EXAMPLES])
                more_u = f" ... ({len(unknown)} in all)" if len(unknown) > EXAMPLES else ""
                warnings.append(
                    f"{what}: {len(unknown)} of its {len(counts)} predicted classes "
                    f"({shown_u}{more_u}) never occur{'s' if len(unknown) == 1 else ''} "
                    f"among the labels, on {rows} of {n} "
                    "audited rows, which count as wrong. Check the prediction columns and "
                    "the labels."
                )
        for side in (old, new):
            # A model that predicts from scores can only name its score columns' classes:
            # a label class outside them (labels 1..10 against list entries 0..9, labels -1/1
            # against one binary score) is never predicted right.
            if side.pred_col or not side.score_classes or side.table.role in warned:
                continue
            missing = sorted((c for c in known if c not in side.score_classes), key=natural_key)
            if missing:
                rows = sum(label_classes[c] for c in missing)
                warnings.append(
                    f"{side.table.label}: its scores ({side.source}) stand for the classes "
                    f"{_classes_text(sorted(side.score_classes, key=natural_key))}, but the "
                    f"labels also hold {_classes_text(missing)} ({rows} of {n} audited rows), "
                    "which it can never predict. Check that the score columns and the labels "
                    "name the classes alike (e.g. labels counted from 0)."
                )
        return warnings

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
        for i, (col, aliases) in self._shared_slices.items():
            if c.get(f"slice_differs_{i}"):
                self._slice_differs(plan, col, aliases, i, c[f"slice_differs_{i}"])
        predicted = "outcome" if plan.task == "outcome" else "prediction"
        if c["null_y"] or c["null_o"] or c["null_n"] or c.get("one_label"):
            self._check_fill_values()
        for key, what, where in (
            ("null_y", "label", self._label_files(old, new, labels)),
            ("null_o", predicted, f"OLD file {old.table.display} ({old.source})"),
            ("null_n", predicted, f"NEW file {new.table.display} ({new.source})"),
        ):
            if c[key]:
                ex = self._examples("oid", checks[key])
                raise InputError(
                    f"{c[key]} audited example(s) have a missing (null, NaN or infinite) {what} "
                    f"in {where}: ids {examples(ex)}. Fill them in or remove those rows."
                )
        return acc
