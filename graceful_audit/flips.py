"""``audit_flips``: read -> align -> count -> metrics -> gates, silently, from Python.

>>> import pandas as pd
>>> from graceful_audit import audit_flips
>>> old = pd.DataFrame({"id": [1, 2, 3, 4], "label": [0, 1, 1, 0], "pred": [0, 1, 0, 1]})
>>> new = pd.DataFrame({"id": [4, 3, 2, 1], "pred": [1, 1, 0, 0]})
>>> result = audit_flips(old, new, gates={"max-nfr": 0.1})
>>> result.metrics.negative_flips, result.metrics.positive_flips, result.passed
(1, 1, False)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .align import (
    ID_SYNONYMS,
    Aligner,
    Columns,
    Side,
    check_scores,
    decide_task,
    resolve_side,
)
from .count import (
    CountTables,
    count_flips,
    count_regression,
    finish_regression,
    worst_flips,
)
from .engine import open_engine
from .errors import UsageError
from .gates import (
    GateSpec,
    check_applies,
    check_threshold,
    check_top,
    evaluate_gates,
    where_given,
)
from .io import check_column_names
from .metrics import PROPORTIONS, FlipMetrics
from .outcomes import composite_name, split_id, with_composite_id, with_paths
from .quality import Quality, classification_quality
from .quality_count import add_scores, regression_sums
from .result import FlipsResult, GroupRow, Inputs, group_row
from .stats import mcnemar, wilson_interval
from .whatif import blend_of, check_what_if
from .whatif import what_if as blend_what_if

#: Gates that only a regression audit has: giving one makes ``--task auto`` a regression.
REGRESSION_GATES = ("max-mae-delta", "max-rmse-delta")
#: Gates on metrics that need the models' scores.
SCORE_GATES = ("max-auc-drop",)


def natural_key(value: str | None) -> tuple[int, float, str]:
    """Sort key: numbers numerically, then text; ``None`` last."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _display(source: Any) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else (
        "<DataFrame>" if hasattr(source, "iloc") else "<Arrow table>")


def build_result(
    tables: CountTables,
    inputs: Inputs,
    *,
    confidence: float = 0.95,
    options: Mapping[str, Any] | None = None,
    task: str = "classification",
    task_reason: str = "",
    engine: str = "duckdb",
    scores: Any = None,
    quality: Quality | None = None,
) -> FlipsResult:
    """Turn engine counts into the frozen result (pure: no I/O).

    ``quality`` holds the usual quality metrics when they need the engine (scores,
    regression); else they follow from the confusion counts in ``tables``."""
    if quality is None and task == "classification" and tables.per_class:
        quality = classification_quality(tables.per_class, tables.predicted, natural_key,
                                         tables.confusion)
    c = tables.overall
    per_class = tuple(
        group_row(cls, tables.per_class[cls], confidence)
        for cls in sorted(tables.per_class, key=natural_key)
    )

    def mae_delta(col: str, value: str | None) -> float | None:
        errors = tables.slice_errors.get(col, {}).get(value)
        return errors.mae_delta if errors else None

    slices: dict[str, tuple[GroupRow, ...]] = {
        col: tuple(group_row(v, groups[v], confidence, mae_delta(col, v))
                   for v in sorted(groups, key=natural_key))
        for col, groups in tables.per_slice.items()
    }
    # Most frequent first, then by old and new class in natural order: one integer key per
    # cell (count, old rank, new rank in base r), as a 100-class matrix has 9,900 cells.
    names = sorted({cls for pair in tables.flip_matrix for cls in pair}, key=natural_key)
    rank, r = {cls: i for i, cls in enumerate(names)}, len(names)
    matrix = tuple(
        (o, n, k) for (o, n), k in sorted(
            tables.flip_matrix.items(),
            key=lambda cell: (-cell[1] * r + rank[cell[0][0]]) * r + rank[cell[0][1]],
        )
    )
    intervals = {
        p.name: wilson_interval(p.numerator(c), p.denominator(c), confidence=confidence)
        for p in PROPORTIONS
        if task == "classification" or p.name != "churn_rate"
    }
    if task == "outcome":  # one label (pass): no classes, no matrix of classes
        per_class, matrix = (), ()
    return FlipsResult(
        inputs=inputs,
        counts=c,
        metrics=FlipMetrics.from_counts(c, churn=task == "classification"),
        confidence=confidence,
        intervals=intervals,
        mcnemar=mcnemar(c.negative_flips, c.positive_flips),
        per_class=per_class,
        slices=slices,
        flip_matrix=matrix,
        top_negative_flips=tables.worst,
        options=dict(options or {}),
        task=task,
        task_reason=task_reason,
        regression=tables.regression,
        engine=engine,
        scores=scores,
        quality=quality,
    )


def check_scores_given(specs: Sequence[GateSpec], score_cols: str | None, *,
                       saved: bool = False) -> None:
    """A gate on a score metric (``--max-auc-drop``) without ``--score-cols``: a usage error,
    as it could never be breached. ``saved``: the result was saved without scores."""
    for spec in specs:
        if spec.name in SCORE_GATES and not score_cols:
            what = ("the saved result was audited without --score-cols" if saved
                    else "no --score-cols is given")
            todo = ("Audit again with --score-cols 'prob_*'" if saved else
                    "Give the score columns with --score-cols 'prob_*' (or one list column)")
            raise UsageError(
                f"{where_given(spec)}: ROC-AUC needs the models' scores, and {what}, so the "
                f"gate could never be breached. {todo}, or drop the gate."
            )


def gate_specs(gates: Mapping[str, float] | Sequence[GateSpec] | None) -> list[GateSpec]:
    if not gates:
        return []
    if isinstance(gates, Mapping):
        return [GateSpec(name.replace("_", "-"), value) for name, value in gates.items()]
    return list(gates)


def _regression_options(atol: float | None, rtol: float | None,
                        specs: Sequence[GateSpec]) -> list[str]:
    """The regression-only options given: a tolerance or an error-delta gate."""
    given = [f"--{name}" for name, v in (("atol", atol), ("rtol", rtol)) if v is not None]
    return given + [where_given(s) for s in specs if s.name in REGRESSION_GATES]


def _check_threshold_used(threshold: float, sides: Sequence[Side]) -> None:
    """``--threshold`` given where no prediction comes from one binary score: a usage error,
    never silently ignored."""
    if any(s.score_kind == "binary" and s.pred_col is None for s in sides):
        return
    how = "; ".join(f"{s.table.role} predicts from {s.source}" for s in sides)
    raise UsageError(
        f"--threshold {threshold:g} applies only to a binary model given by one score column "
        f"(--score-cols COL) and no prediction column, and is unused here ({how}). Drop "
        "--threshold, or give the score column instead of the prediction column."
    )


def audit_flips(
    old: Any,
    new: Any,
    *,
    labels: Any = None,
    id_col: str | Sequence[str] | None = None,
    label_col: str | None = None,
    pred_col: str | None = None,
    score_cols: str | None = None,
    threshold: float | None = None,
    slice_by: Sequence[str] = (),
    top: int = 10,
    confidence: float = 0.95,
    allow_unmatched: bool = False,
    gates: Mapping[str, float] | Sequence[GateSpec] | None = None,
    memory_limit: str | None = None,
    task: str = "auto",
    atol: float | None = None,
    rtol: float | None = None,
    engine: str = "duckdb",
    spark_remote: str | None = None,
    spark_conf: Mapping[str, str] | None = None,
    verbose: bool = False,
    outcome_col: str | None = None,
    pass_threshold: float | None = None,
    what_if: bool = False,
    what_if_steps: int | None = None,
) -> FlipsResult:
    """Audit a model update: negative flips, error deltas, breakdowns and gates.

    Parameters
    ----------
    old, new : path, pandas.DataFrame or pyarrow.Table
        Predictions of the old and the new model. Paths may be CSV, Parquet, a directory
        or a glob of Parquet files. Rows are joined by id, never by position.
    labels : path, DataFrame or Table, optional
        Ground truth in a third input (id and label columns).
    id_col, label_col, pred_col : str, optional
        Column names; by default ``id``, ``label``, ``pred`` or a common synonym. A name
        with dots that is no column is a path into nested JSON objects (``judge.score``).
        ``id_col`` may be a list of columns: a composite id (``["task", "doc_id"]``).
    score_cols : str, optional
        Glob of per-class score columns (``prob_*``: class ``3`` is ``prob_3``) or one list
        column. The prediction is their argmax when no prediction column is given; one
        score column is a binary model's positive score, compared with ``threshold``.
    slice_by : sequence of str
        Columns to break the flips down by.
    top : int
        How many of the worst negative flips to return.
    confidence : float
        Level of the Wilson intervals.
    allow_unmatched : bool
        Audit the ids present in both files instead of stopping on unmatched ids.
    gates : mapping or sequence of GateSpec
        Thresholds such as ``{"max-nfr": 0.01}``.
    task : {"auto", "classification", "regression"}
        ``auto`` picks regression when a prediction column holds non-integral floats.
    atol, rtol : float, optional
        Regression: a prediction is right when ``|pred - y| <= atol + rtol * |y|``; at
        least one is required.
    outcome_col : str, optional
        Audit evaluation outcomes: each input needs only ids and this column, a boolean,
        0/1, or a score with ``pass_threshold`` (pass when ``score >= pass_threshold``).
        No labels or predictions; ``task`` is ``"outcome"`` (see
        :mod:`graceful_audit.outcomes`).
    engine : {"duckdb", "spark"}
        Where reading, joining and counting run. ``spark`` uses Spark Connect:
        ``spark_remote`` (``sc://host:15002``, else ``SPARK_REMOTE``, else a local session)
        and ``spark_conf`` settings.
    what_if : bool
        Also blend the two models' scores, ``(1 - alpha) * new + alpha * old``, and count
        the flips of the blend for ``what_if_steps`` alphas from 0 to 1 (default 21; needs
        ``score_cols`` naming scores of the same classes in both inputs); see
        :mod:`graceful_audit.whatif`. The gates still judge the new model as given.

    Returns
    -------
    FlipsResult
        Frozen; ``.passed`` tells whether every gate held, ``.to_dict()`` is the JSON.
    """
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence: {confidence!r} must be strictly between 0 and 1.")
    id_parts = [id_col] if isinstance(id_col, str) else list(id_col or ())
    check_column_names({"--id-col": id_parts, "--outcome-col": outcome_col})
    if len(set(id_parts)) != len(id_parts):
        raise UsageError(f"--id-col: {id_parts} names a column twice; give each id column once.")
    if outcome_col is not None or pass_threshold is not None:
        return audit_outcomes(
            old, new, labels=labels, id_parts=id_parts, label_col=label_col, pred_col=pred_col,
            score_cols=score_cols, threshold=threshold, outcome_col=outcome_col,
            pass_threshold=pass_threshold, slice_by=slice_by, top=top, confidence=confidence,
            allow_unmatched=allow_unmatched, gates=gates, memory_limit=memory_limit, task=task,
            atol=atol, rtol=rtol, engine=engine, spark_remote=spark_remote,
            spark_conf=spark_conf, verbose=verbose, what_if=what_if, what_if_steps=what_if_steps)
    id_col = id_parts[0] if len(id_parts) == 1 else None
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold: {threshold!r} must be between 0 and 1.")
    cut = 0.5 if threshold is None else threshold
    check_top(top)
    steps = check_what_if(what_if, what_if_steps, score_cols)
    for name, tol in (("--atol", atol), ("--rtol", rtol)):
        if tol is not None and not (math.isfinite(tol) and tol >= 0):
            raise UsageError(f"{name}: {tol!r} must be a finite number >= 0.")
    check_column_names({"--label-col": label_col, "--pred-col": pred_col,
                        "--score-cols": score_cols, "--slice-by": slice_by})
    specs = gate_specs(gates)
    for spec in specs:
        check_threshold(spec.name, spec.threshold, source=spec.source)
    check_applies(specs, None, sliced=bool(slice_by))
    if len(id_parts) > 1:
        id_col = composite_name(id_parts)
    check_scores_given(specs, score_cols)
    cols = Columns(id_col, label_col, pred_col, score_cols, tuple(slice_by), cut)
    id_names = id_parts or ["id", *ID_SYNONYMS]
    paths = _paths(id_parts, slice_by, {"--label-col": label_col, "--pred-col": pred_col})

    with open_engine(engine, memory_limit=memory_limit, spark_remote=spark_remote,
                     spark_conf=spark_conf, verbose=verbose) as eng:
        old_t = _prepare(eng, eng.open(old, "OLD", text_columns=id_names), id_parts, paths)
        new_t = _prepare(eng, eng.open(new, "NEW", text_columns=id_names), id_parts, paths)
        lab_t = (_prepare(eng, eng.open(labels, "LABELS", text_columns=id_names), id_parts,
                          paths) if labels is not None else None)
        old_side = resolve_side(old_t, cols, eng.dialect)
        new_side = resolve_side(new_t, cols, eng.dialect)
        if threshold is not None and not (
                steps and old_side.score_kind == new_side.score_kind == "binary"):
            _check_threshold_used(threshold, (old_side, new_side))
        with eng.errors(f"while joining {old_t.display} and {new_t.display}"):
            old_side, new_side = check_scores(eng, old_side), check_scores(eng, new_side)
            chosen, reason = decide_task(eng, (old_side, new_side), task,
                                         _regression_options(atol, rtol, specs))
            check_applies(specs, chosen)
            blend = blend_of(eng, old_side, new_side, cols, chosen, reason) if steps else None
            if chosen == "regression" and atol is None and rtol is None:
                raise UsageError(
                    f"a regression audit ({reason}) needs a tolerance: give --atol and/or "
                    "--rtol (a prediction is right when |pred - y| <= atol + rtol * |y|)."
                )
            aligner = Aligner(eng)
            plan = aligner.plan(old_side, new_side, lab_t, cols, task=chosen)
            warnings: list[str] = []
            quality: Quality | None = None
            if chosen == "regression":
                tol = {"atol": atol or 0.0, "rtol": rtol or 0.0}
                first = count_regression(eng, plan, **tol)
                acc = aligner.account(plan, first.checks, allow_unmatched)
                tables = finish_regression(eng, plan, first, top=top, confidence=confidence,
                                           **tol)
                quality = regression_sums(eng, plan)[0]
            else:
                first = count_flips(eng, plan, top=top)
                acc = aligner.account(plan, first.checks, allow_unmatched)
                warnings = aligner.check_classes(
                    first.tables.predicted,
                    {cls: c.n for cls, c in first.tables.per_class.items()})
                tables = dataclasses.replace(
                    first.tables, worst=worst_flips(eng, plan, first, top=top))
                quality = classification_quality(tables.per_class, tables.predicted,
                                                 natural_key, tables.confusion)
                if old_side.scores and new_side.scores:
                    quality = add_scores(eng, plan, old_side, new_side, quality,
                                         order=natural_key, confidence=confidence)
            curve = (blend_what_if(eng, aligner, blend, lab_t, cols, steps)
                     if blend is not None and steps is not None else None)
        engine_name = eng.name
    if len(id_parts) > 1:
        tables = dataclasses.replace(tables, worst=_with_id_parts(tables.worst))

    inputs = Inputs(
        **dataclasses.asdict(acc),
        old_path=_display(old), new_path=_display(new),
        labels_path=_display(labels) if labels is not None else None,
        label_source=plan.label_source, old_prediction=plan.old_source,
        new_prediction=plan.new_source,
    )
    options = {"top": top, "threshold": cut, "allow_unmatched": allow_unmatched,
               "slice_by": list(slice_by)}
    if len(id_parts) > 1:
        options["id_cols"] = list(id_parts)
    result = build_result(tables, inputs, confidence=confidence, options=options, task=chosen,
                          task_reason=reason, engine=engine_name, quality=quality)
    warnings += never_right(result)
    result = dataclasses.replace(result, warnings=tuple(warnings), what_if=curve)
    return result.with_gates(evaluate_gates(result, specs))


#: Audits at least this large get a warning when a model is right on none of their rows.
NEVER_RIGHT_ROWS = 10


def never_right(result: FlipsResult) -> list[str]:
    """Warnings for a model that is right on no audited row: its flips cannot be counted
    (an old model that is never right has no negative flips), so every flip gate holds
    whatever the new model does. Usually the predictions and the labels name the classes
    differently (counted from 1 against 0), or a regression tolerance is far too tight."""
    c, n = result.counts, result.metrics.n
    if n < NEVER_RIGHT_ROWS:
        return []
    out = []
    for side, right, source in (
        ("OLD", c.old_right, result.inputs.old_prediction),
        ("NEW", c.n - c.new_errors, result.inputs.new_prediction),
    ):
        if right:
            continue
        if result.task == "outcome":
            out.append(f"the {side} model ({source}) passes none of the {n:,} audited "
                       "cases, so none can flip to a failure and the flip gates mean little: "
                       "check --outcome-col and --pass-threshold.")
            continue
        if result.task == "regression":
            why = "check --atol and --rtol (a prediction is right when |pred - y| <= atol + "
            why += "rtol * |y|)"
        else:
            why = ("check that its predictions and the labels name the classes alike "
                   "(counted from 0 or from 1, the same spelling)")
        out.append(f"the {side} model ({source}) is right on none of the {n:,} audited rows, "
                   f"so its flips cannot be counted and the flip gates mean little: {why}.")
    return out


# --------------------------------------------------------------------------- outcomes


def _paths(id_parts: Sequence[str], slice_by: Sequence[str],
           others: Mapping[str, str | None]) -> dict[str, str]:
    """Column names that may be dotted paths into nested objects, with their flags."""
    paths = {p: "--id-col" for p in id_parts}
    paths.update({s: "--slice-by" for s in slice_by})
    paths.update({name: flag for flag, name in others.items() if name})
    return paths


def _prepare(eng: Any, table: Any, id_parts: Sequence[str], paths: Mapping[str, str]) -> Any:
    """An opened input with its nested fields and its composite id as columns."""
    table = with_paths(eng, table, dict(paths))
    if len(id_parts) > 1:
        table = with_composite_id(eng, table, id_parts)
    return table


def _with_id_parts(examples: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(dataclasses.replace(e, id_parts=split_id(e.id)) for e in examples)


def audit_outcomes(
    old: Any, new: Any, *, labels: Any, id_parts: Sequence[str], label_col: str | None,
    pred_col: str | None, score_cols: str | None, threshold: float | None,
    outcome_col: str | None, pass_threshold: float | None, slice_by: Sequence[str], top: int,
    confidence: float, allow_unmatched: bool,
    gates: Mapping[str, float] | Sequence[GateSpec] | None, memory_limit: str | None,
    task: str, atol: float | None, rtol: float | None, engine: str, spark_remote: str | None,
    spark_conf: Mapping[str, str] | None, verbose: bool, what_if: bool = False,
    what_if_steps: int | None = None,
) -> FlipsResult:
    """:func:`audit_flips` of evaluation outcomes (``--outcome-col``): see
    :mod:`graceful_audit.outcomes`."""
    from .count import count_flips
    from .outcomes import (
        TASK,
        check_pass_threshold,
        resolve_outcome_side,
        score_summary,
        worst_outcome_flips,
    )

    if outcome_col is None:
        raise UsageError("--pass-threshold applies only to --outcome-col (a numeric score "
                         "column); give the outcome column, or drop --pass-threshold.")
    check_pass_threshold(pass_threshold)
    unused = [flag for flag, v in (
        ("--labels", labels), ("--label-col", label_col), ("--pred-col", pred_col),
        ("--score-cols", score_cols), ("--threshold", threshold), ("--atol", atol),
        ("--rtol", rtol), ("--what-if", what_if or None),
        ("--what-if-steps", what_if_steps)) if v is not None]
    if task not in ("auto", TASK):
        unused.append(f"--task {task}")
    if unused:
        raise UsageError(
            f"{', '.join(unused)} cannot be combined with --outcome-col: an outcome audit "
            "reads only ids and each file's outcome (pass/fail or a score with "
            f"--pass-threshold). Drop {'them' if len(unused) > 1 else 'it'}, or audit "
            "predictions without --outcome-col."
        )
    check_top(top)
    check_column_names({"--slice-by": slice_by})
    specs = gate_specs(gates)
    for spec in specs:
        check_threshold(spec.name, spec.threshold, source=spec.source)
    check_applies(specs, TASK, sliced=bool(slice_by))
    for spec in specs:
        if spec.name == "min-score-delta" and pass_threshold is None:
            raise UsageError(
                f"{where_given(spec)}: the score delta needs graded scores: give "
                "--pass-threshold T with a numeric --outcome-col, or drop the gate (pass/fail "
                "outcomes are gated by --max-nfr and --max-error-delta)."
            )
    id_col = id_parts[0] if len(id_parts) == 1 else (
        composite_name(id_parts) if id_parts else None)
    id_names = list(id_parts) or ["id", *ID_SYNONYMS]
    paths = _paths(id_parts, slice_by, {"--outcome-col": outcome_col})
    cols = Columns(id_col, None, None, None, tuple(slice_by), 0.5)
    reason = f"--outcome-col {outcome_col}"
    with open_engine(engine, memory_limit=memory_limit, spark_remote=spark_remote,
                     spark_conf=spark_conf, verbose=verbose) as eng:
        old_t = _prepare(eng, eng.open(old, "OLD", text_columns=id_names), id_parts, paths)
        new_t = _prepare(eng, eng.open(new, "NEW", text_columns=id_names), id_parts, paths)
        with eng.errors(f"while joining {old_t.display} and {new_t.display}"):
            old_side = resolve_outcome_side(eng, old_t, id_col, outcome_col, pass_threshold)
            new_side = resolve_outcome_side(eng, new_t, id_col, outcome_col, pass_threshold)
            aligner = Aligner(eng)
            plan = aligner.plan(old_side, new_side, None, cols, task=TASK)
            first = count_flips(eng, plan, top=0)
            acc = aligner.account(plan, first.checks, allow_unmatched)
            graded = pass_threshold is not None
            worst = worst_outcome_flips(eng, plan, top=top, graded=graded)
            scores = (score_summary(eng, plan, confidence=confidence, threshold=pass_threshold)
                      if pass_threshold is not None else None)
        engine_name = eng.name
    if len(id_parts) > 1:
        worst = _with_id_parts(worst)
    tables = dataclasses.replace(first.tables, worst=worst, predicted={}, confusion={})
    inputs = Inputs(
        **dataclasses.asdict(acc), old_path=_display(old), new_path=_display(new),
        label_source=plan.label_source, old_prediction=plan.old_source,
        new_prediction=plan.new_source,
    )
    options: dict[str, Any] = {"top": top, "allow_unmatched": allow_unmatched,
                               "slice_by": list(slice_by), "outcome_col": outcome_col,
                               "pass_threshold": pass_threshold}
    if len(id_parts) > 1:
        options["id_cols"] = list(id_parts)
    result = build_result(tables, inputs, confidence=confidence, options=options, task=TASK,
                          task_reason=reason, engine=engine_name, scores=scores)
    result = dataclasses.replace(result, warnings=tuple(never_right(result)))
    return result.with_gates(evaluate_gates(result, specs))
