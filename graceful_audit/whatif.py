"""What-if: the mitigation without retraining, ``gaudit flips --what-if``.

A reviewer who sees negative flips asks what can be done before the release. The cheapest
remedy needs no retraining: blend the two models' scores,

    ``s(alpha) = (1 - alpha) * s_new + alpha * s_old``,   ``alpha = i / (K - 1), i = 0..K-1``

and predict the argmax of ``s(alpha)`` (the first maximum in the blend's class order on
ties), or, for a binary model given by one score column, class 1 when
``s(alpha) >= threshold``. For every alpha the audit counts the flips of that blended
prediction against the ground truth and the OLD model's prediction (as audited): error
rate, negative flips, negative and positive flip rate, backward trust compatibility
(their formulas are :mod:`graceful_audit.metrics`'; each point is a :class:`FlipCounts`).
``alpha = 0`` is the new scores' argmax, ``alpha = 1`` the old scores'.

Positive-congruent training (Yan et al., "Positive-Congruent Training: Towards
Regression-Free Model Updates", CVPR 2021) reports that ensembles of the two models cut
negative flips; blending their scores is the deployable form of that observation.

Arithmetic, the same on every engine: ``alpha`` is the double ``i / (K - 1)`` and ``1 -
alpha`` the double ``1.0 - alpha`` (computed once, in Python, and written into SQL as
``CAST('<repr>' AS DOUBLE)``, which parses to the same double); each blended score is
``fl(fl((1 - alpha) * s_new) + fl(alpha * s_old))`` in IEEE double precision: two rounded
products, one rounded sum, the scores cast to DOUBLE first. numpy (DuckDB's rows, streamed
in Arrow batches) and Spark SQL (the JVM's doubles) compute exactly these operations, so
their blended scores are equal bit for bit and ties resolve alike.

Where it runs: with DuckDB, one query joins the audited rows with both models' scores
and streams them in Arrow record batches of :data:`BATCH_VALUES` scores through numpy,
all K alphas per batch (memory stays bounded by the batch). A row whose argmax is the same
class in both models, ahead of every other class by more than ``2**-40`` times the row's
largest score magnitude in both, predicts that class at every alpha (a blend of two
vectors with the same clear winner keeps it, and that margin is far above the rounding
error of the blend): such rows are counted once, the others blended K times. With Spark
the same blend runs as SQL in the cluster (the rows cross-joined with the K weights,
grouped by alpha): only K rows of counts come back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any

from .align import EXAMPLES
from .errors import InputError, UsageError, examples
from .io import quote
from .metrics import FlipCounts, rate

if TYPE_CHECKING:
    import numpy as np

    from .align import Aligner, Columns, Side
    from .engine import Engine
    from .io import Table

#: ``--what-if-steps`` when not given: alpha = 0, 0.05, ..., 1.
DEFAULT_STEPS = 21
#: The most steps (alpha in steps of 0.001): more would only cost time.
MAX_STEPS = 1001
#: Scores per Arrow batch (rows = this / classes), so memory stays bounded.
BATCH_VALUES = 1 << 19
#: Relative margin above which a row's winning class wins at every alpha (see the module).
MARGIN = 2.0**-40
#: Below this largest score magnitude a row is always blended (products may be subnormal).
TINY = 2.0**-900


def check_what_if(what_if: bool, steps: Any, score_cols: str | None) -> int | None:
    """The number of alphas K to blend at, or None without ``--what-if``.

    ``--what-if-steps`` without ``--what-if`` would be silently ignored, and K must be an
    integer from 2 to :data:`MAX_STEPS`: each is a :class:`UsageError`.
    """
    if not what_if:
        if steps is not None:
            raise UsageError(f"--what-if-steps {steps!r} is given without --what-if, so it would "
                             "be ignored; add --what-if, or drop the steps.")
        return None
    if steps is None:
        steps = DEFAULT_STEPS
    if isinstance(steps, bool) or not isinstance(steps, Integral) or not 2 <= steps <= MAX_STEPS:
        raise UsageError(f"--what-if-steps: {steps!r} must be an integer from 2 to {MAX_STEPS} "
                         "(the alphas 0, 1/(K-1), ..., 1; 21 gives steps of 0.05).")
    if not score_cols:
        raise UsageError(
            "--what-if blends the two models' per-class scores, (1 - alpha) * new + alpha * "
            "old, but no --score-cols was given: name the score columns present in both "
            "files, e.g. --score-cols 'prob_*' (or one list column)."
        )
    return int(steps)


def alphas(steps: int) -> tuple[float, ...]:
    """``i / (K - 1)`` for ``i = 0 .. K-1`` as doubles: exactly 0.0 first and 1.0 last.

    >>> alphas(5)
    (0.0, 0.25, 0.5, 0.75, 1.0)
    """
    return tuple(i / (steps - 1) for i in range(steps))


def weights(steps: int) -> tuple[tuple[float, float], ...]:
    """``(alpha, 1.0 - alpha)`` per step: the weights of the old and of the new scores."""
    return tuple((a, 1.0 - a) for a in alphas(steps))


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class WhatIfPoint:
    """One alpha: the flips of the blended prediction against the ground truth and the OLD
    model's prediction, as a :class:`FlipCounts` (``new`` = the blend)."""

    alpha: float
    counts: FlipCounts

    @property
    def error_rate(self) -> float | None:
        return rate("new_error_rate", self.counts)

    @property
    def negative_flip_rate(self) -> float | None:
        return rate("negative_flip_rate", self.counts)

    @property
    def positive_flip_rate(self) -> float | None:
        return rate("positive_flip_rate", self.counts)

    @property
    def backward_trust_compatibility(self) -> float | None:
        return rate("backward_trust_compatibility", self.counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "error_rate": self.error_rate,
            "negative_flips": self.counts.negative_flips,
            "negative_flip_rate": self.negative_flip_rate,
            "positive_flips": self.counts.positive_flips,
            "positive_flip_rate": self.positive_flip_rate,
            "backward_trust_compatibility": self.backward_trust_compatibility,
        }


def point(alpha: float, n: int, old_right: int, negative_flips: int,
          positive_flips: int) -> WhatIfPoint:
    """A point from the four counts the blend needs (``ValueError`` if they contradict)."""
    return WhatIfPoint(alpha, FlipCounts(
        both_right=old_right - negative_flips, negative_flips=negative_flips,
        positive_flips=positive_flips, both_wrong=n - old_right - positive_flips))


def error_cost(p: WhatIfPoint, base: WhatIfPoint) -> float | None:
    """``ER(alpha) - ER(0)``, from the counts: ``(errors(alpha) - errors(0)) / N``."""
    n = p.counts.n
    return None if n == 0 else (p.counts.new_errors - base.counts.new_errors) / n


@dataclass(frozen=True)
class Recommendation:
    """The smallest alpha whose negative flip rate meets ``--max-nfr`` (``<=``, as the
    gate compares), and what it costs in error rate against alpha = 0."""

    alpha: float
    max_nfr: float
    negative_flips: int
    negative_flip_rate: float | None
    error_rate: float | None
    error_rate_cost: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recommend(points: Sequence[WhatIfPoint], max_nfr: float | None) -> Recommendation | None:
    """The smallest alpha whose NFR is at most ``max_nfr``; None when no gate is set or no
    alpha meets it.

    >>> pts = [point(0.0, 100, 90, 5, 3), point(0.5, 100, 90, 1, 2), point(1.0, 100, 90, 0, 0)]
    >>> r = recommend(pts, 0.01)
    >>> r.alpha, r.negative_flips, r.error_rate_cost
    (0.5, 1, -0.03)
    >>> recommend(pts, None) is None
    True
    """
    if max_nfr is None or not points:
        return None
    ordered = sorted(points, key=lambda p: p.alpha)
    base = ordered[0]
    for p in ordered:
        nfr = p.negative_flip_rate
        if nfr is not None and nfr <= max_nfr:
            return Recommendation(p.alpha, max_nfr, p.counts.negative_flips, nfr, p.error_rate,
                                  error_cost(p, base))
    return None


@dataclass(frozen=True)
class WhatIf:
    """The blend's curve: one :class:`WhatIfPoint` per alpha, ascending.

    ``classes``: the blend's class order (the NEW file's score columns), which decides
    ties; ``threshold``: for a binary model given by one score column, ``s(alpha) >=
    threshold`` predicts class 1 (None for an argmax). ``new_pred_disagreements``: audited
    rows whose NEW prediction (as audited) differs from the new scores' argmax (alpha = 0);
    ``old_pred_disagreements``: rows whose OLD prediction differs from the old scores'
    argmax (alpha = 1) in that class order. ``recommended``: see :func:`recommend`.
    """

    steps: int
    classes: tuple[str, ...]
    points: tuple[WhatIfPoint, ...]
    new_pred_disagreements: int = 0
    old_pred_disagreements: int = 0
    threshold: float | None = None
    recommended: Recommendation | None = None

    method = "blend"

    def recommend(self, max_nfr: float | None) -> WhatIf:
        """This curve with the recommendation for ``max_nfr`` (None: no gate)."""
        return dataclasses.replace(self, recommended=recommend(self.points, max_nfr))

    def at(self, alpha: float) -> WhatIfPoint | None:
        return next((p for p in self.points if p.alpha == alpha), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "formula": "(1 - alpha) * new_scores + alpha * old_scores",
            "prediction": "argmax" if self.threshold is None else "threshold",
            "threshold": self.threshold,
            "steps": self.steps,
            "classes": list(self.classes),
            "new_pred_disagreements": self.new_pred_disagreements,
            "old_pred_disagreements": self.old_pred_disagreements,
            "points": [p.to_dict() for p in self.points],
            "recommended": None if self.recommended is None else self.recommended.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], counts: FlipCounts) -> WhatIf:
        """Read a saved curve back; the points' counts are rebuilt on the audited rows'
        ``counts`` (``ValueError`` when they contradict them)."""
        points = tuple(point(float(p["alpha"]), counts.n, counts.old_right,
                             p["negative_flips"], p["positive_flips"]) for p in d["points"])
        rec = d.get("recommended")
        curve = cls(int(d["steps"]), tuple(str(c) for c in d.get("classes", ())), points,
                    d.get("new_pred_disagreements", 0), d.get("old_pred_disagreements", 0),
                    d.get("threshold"))
        return curve.recommend(rec["max_nfr"]) if rec else curve


# --------------------------------------------------------------------------- kernels


@dataclass
class Tally:
    """Counts of one pass: rows, rows the old model gets right, and per alpha the
    negative and positive flips of the blend; predictions that differ from the blend at
    alpha 0 (NEW) and alpha 1 (OLD)."""

    steps: int
    n: int = 0
    old_right: int = 0
    negative_flips: list[int] = dataclasses.field(default_factory=list)
    positive_flips: list[int] = dataclasses.field(default_factory=list)
    new_disagree: int = 0
    old_disagree: int = 0

    def __post_init__(self) -> None:
        self.negative_flips = self.negative_flips or [0] * self.steps
        self.positive_flips = self.positive_flips or [0] * self.steps

    def points(self) -> tuple[WhatIfPoint, ...]:
        return tuple(point(a, self.n, self.old_right, nf, pf) for a, nf, pf in zip(
            alphas(self.steps), self.negative_flips, self.positive_flips, strict=True))


def blend_argmax_counts(new: np.ndarray, old: np.ndarray, y: np.ndarray, old_right: np.ndarray,
                        steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per alpha, the negative and positive flips of ``argmax((1 - alpha) * new + alpha *
    old)``; and the predictions at alpha 0 and 1 (the argmax of ``new`` and of ``old``).

    ``new``, ``old``: (rows, classes) float64 scores, finite, in the blend's class order;
    ``y``: per row the label's class index (-1: a class without a score, never predicted);
    ``old_right``: the OLD prediction is right. The argmax is the first maximum (as
    :func:`numpy.argmax`).
    """
    import numpy as np

    if new.shape[1] <= BY_CLASS:
        return _counts_by_class(np.ascontiguousarray(new.T), np.ascontiguousarray(old.T), y,
                                old_right, steps)
    return _counts_by_row(new.copy(), old.copy(), y, old_right, steps)


#: Up to this many classes the kernel holds (classes, rows) arrays and takes the argmax a
#: class at a time (numpy's argmax along a short last axis is slow); beyond, (rows, classes).
BY_CLASS = 32


def _first_max_by_class(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of the (classes, rows) array ``s``: the index of its first maximum (a
    later class wins only when strictly greater, as in :func:`numpy.argmax`), and it."""
    import numpy as np

    best = s[0].copy()
    idx = np.zeros(s.shape[1], np.intp)
    for c in range(1, s.shape[0]):
        np.putmask(idx, s[c] > best, c)
        np.maximum(best, s[c], out=best)
    return idx, best


def _stable(an: np.ndarray, ao: np.ndarray, gap_n: np.ndarray, gap_o: np.ndarray,
            scale: np.ndarray) -> np.ndarray:
    """Rows whose argmax ``an`` is the same class in both models and ahead of every other
    class by more than :data:`MARGIN` times the row's largest score magnitude in both: the
    blend predicts that class at every alpha (module docstring)."""
    margin = scale * MARGIN
    return (an == ao) & (gap_n > margin) & (gap_o > margin) & (scale >= TINY)


def _counts_by_class(new: np.ndarray, old: np.ndarray, y: np.ndarray, old_right: np.ndarray,
                     steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_argmax_counts` on (classes, rows) arrays (modified, then restored)."""
    import numpy as np

    nf = np.zeros(steps, np.int64)
    pf = np.zeros(steps, np.int64)
    cols = np.arange(new.shape[1])
    an, top_n = _first_max_by_class(new)
    ao, top_oo = _first_max_by_class(old)
    top_o = old[an, cols]
    scale = np.maximum(np.maximum(top_n, -new.min(0)), np.maximum(top_oo, -old.min(0)))
    new[an, cols] = -np.inf  # the runner-up: the maximum without the winner
    old[an, cols] = -np.inf
    gap_n, gap_o = top_n - new.max(0), top_o - old.max(0)
    new[an, cols] = top_n
    old[an, cols] = top_o
    stable = _stable(an, ao, gap_n, gap_o, scale)
    right = stable & (an == y)
    nf += np.count_nonzero(stable & old_right & ~right)
    pf += np.count_nonzero(~old_right & right)
    idx = np.flatnonzero(~stable)
    if idx.size:
        nu, ou, yu, ru = new[:, idx], old[:, idx], y[idx], old_right[idx]
        blend, part = np.empty_like(nu), np.empty_like(nu)
        for k, (a, b) in enumerate(weights(steps)):
            np.multiply(nu, b, out=blend)
            np.multiply(ou, a, out=part)
            np.add(blend, part, out=blend)
            ok = _first_max_by_class(blend)[0] == yu
            nf[k] += np.count_nonzero(ru & ~ok)
            pf[k] += np.count_nonzero(~ru & ok)
    return nf, pf, an, ao


def _counts_by_row(new: np.ndarray, old: np.ndarray, y: np.ndarray, old_right: np.ndarray,
                   steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_argmax_counts` on (rows, classes) arrays (modified, then restored)."""
    import numpy as np

    nf = np.zeros(steps, np.int64)
    pf = np.zeros(steps, np.int64)
    rows = np.arange(len(y))
    an, ao = new.argmax(1), old.argmax(1)
    top_n, top_o = new[rows, an], old[rows, an]
    scale = np.maximum(np.maximum(top_n, -new.min(1)), np.maximum(old[rows, ao], -old.min(1)))
    new[rows, an] = -np.inf
    old[rows, an] = -np.inf
    gap_n, gap_o = top_n - new.max(1), top_o - old.max(1)
    new[rows, an] = top_n
    old[rows, an] = top_o
    stable = _stable(an, ao, gap_n, gap_o, scale)
    right = stable & (an == y)
    nf += np.count_nonzero(stable & old_right & ~right)
    pf += np.count_nonzero(~old_right & right)
    idx = np.flatnonzero(~stable)
    if idx.size:
        nu, ou, yu, ru = new[idx], old[idx], y[idx], old_right[idx]
        blend, part = np.empty_like(nu), np.empty_like(nu)
        for k, (a, b) in enumerate(weights(steps)):
            np.multiply(nu, b, out=blend)
            np.multiply(ou, a, out=part)
            np.add(blend, part, out=blend)
            ok = blend.argmax(1) == yu
            nf[k] += np.count_nonzero(ru & ~ok)
            pf[k] += np.count_nonzero(~ru & ok)
    return nf, pf, an, ao


def blend_threshold_counts(new: np.ndarray, old: np.ndarray, y: np.ndarray,
                           old_right: np.ndarray, steps: int, threshold: float
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`blend_argmax_counts` for a binary model given by one score (of class 1):
    the blend predicts class 1 (index 1) when ``(1 - alpha) * new + alpha * old >=
    threshold``, else class 0."""
    import numpy as np

    nf = np.zeros(steps, np.int64)
    pf = np.zeros(steps, np.int64)
    blend, part = np.empty_like(new), np.empty_like(new)
    is1, is0 = y == 1, y == 0
    for k, (a, b) in enumerate(weights(steps)):
        np.multiply(new, b, out=blend)
        np.multiply(old, a, out=part)
        np.add(blend, part, out=blend)
        ok = np.where(blend >= threshold, is1, is0)
        nf[k] = np.count_nonzero(old_right & ~ok)
        pf[k] = np.count_nonzero(~old_right & ok)
    return nf, pf, (new >= threshold).astype(np.int64), (old >= threshold).astype(np.int64)


# --------------------------------------------------------------------------- the engine side


@dataclass(frozen=True)
class Blend:
    """What to blend: the classes in the blend's order and, per class, the SQL of its
    score in the OLD and in the NEW input (over each input's view)."""

    classes: tuple[str, ...]
    old: tuple[str, ...]
    new: tuple[str, ...]
    threshold: float | None  # one binary score column: s >= threshold predicts class 1
    old_side: Any
    new_side: Any
    pattern: str

    @property
    def width(self) -> int:
        return len(self.old)


def _describe(side: Side, k: int | None = None) -> str:
    """How a side's scores look, for a message."""
    if side.score_kind == "binary":
        return f"one score column {side.scores[0]!r} (a binary model's score of class 1)"
    if side.score_kind == "list":
        return f"a list column {side.scores[0]!r} of {k} scores per row"
    from .align import _classes_text

    return (f"{len(side.scores)} score columns for the classes "
            f"{_classes_text(side.score_classes)}")


def _list_length(engine: Engine, side: Side) -> int | None:
    c = quote(side.scores[0])
    rows = engine.rows(f"SELECT {engine.dialect.array_length(c)} FROM {quote(side.table.view)} "
                       f"WHERE {c} IS NOT NULL LIMIT 1")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def blend_of(engine: Engine, old: Side, new: Side, cols: Columns, task: str,
             reason: str) -> Blend:
    """Check that both models give scores of the same classes and say how to blend them;
    :class:`UsageError` naming what is missing otherwise."""
    from .align import _classes_text

    if task != "classification":
        raise UsageError(f"--what-if blends the scores of two classifiers; this audit is a "
                         f"{task} ({reason}). Drop --what-if (or, for classifiers, give "
                         "--task classification).")
    d = engine.dialect
    pattern = cols.scores or ""
    kinds = {old.score_kind, new.score_kind}
    k_old = _list_length(engine, old) if old.score_kind == "list" else None
    k_new = _list_length(engine, new) if new.score_kind == "list" else None
    if len(kinds) > 1 or (kinds == {"list"} and k_old != k_new):
        raise UsageError(
            f"--what-if blends scores of the same classes, but --score-cols {pattern!r} gives "
            f"{old.table.label} {_describe(old, k_old)} and {new.table.label} "
            f"{_describe(new, k_new)}. Give both files the same score columns."
        )
    kind = new.score_kind

    def double(sql: str) -> str:
        return f"CAST({sql} AS DOUBLE)"

    if kind == "binary":
        return Blend(("0", "1"), (double(quote(old.scores[0])),),
                     (double(quote(new.scores[0])),), cols.threshold, old, new, pattern)
    if kind == "list":
        if not k_new:
            raise InputError(f"{new.table.label}: list column {new.scores[0]!r} holds no "
                             "scores; the what-if needs one score per class on every row.")
        names = tuple(str(i) for i in range(k_new))
        return Blend(
            names,
            tuple(double(d.element_at(quote(old.scores[0]), str(i + 1))) for i in range(k_new)),
            tuple(double(d.element_at(quote(new.scores[0]), str(i + 1))) for i in range(k_new)),
            None, old, new, pattern)
    only_old = [c for c in old.score_classes if c not in set(new.score_classes)]
    only_new = [c for c in new.score_classes if c not in set(old.score_classes)]
    if only_old or only_new:
        parts = []
        if only_old:
            parts.append(f"only {old.table.label} has scores for {_classes_text(only_old)}")
        if only_new:
            parts.append(f"only {new.table.label} has scores for {_classes_text(only_new)}")
        raise UsageError(
            f"--what-if blends scores of the same classes, but with --score-cols {pattern!r} "
            f"{'; '.join(parts)}. Give both files a score column for every class (the "
            "same names), or choose --score-cols to match them."
        )
    column_of = dict(zip(old.score_classes, old.scores, strict=True))
    return Blend(new.score_classes,
                 tuple(double(quote(column_of[c])) for c in new.score_classes),
                 tuple(double(quote(c)) for c in new.scores), None, old, new, pattern)


def _row_sql(engine: Engine, with_sql: str, blend: Blend) -> str:
    """``WITH ..., wr AS (...)``: per audited row its id, the label's class index ``yi``
    (-1: no score for it), whether the OLD model is right, the class indexes of both
    predictions, whether a score is missing, and the scores ``wo0..``, ``wn0..``."""
    d = engine.dialect
    classes = d.array([d.literal(c) for c in blend.classes])

    def index(x: str) -> str:
        found = d.array_position(classes, f"CAST({x} AS STRING)")
        return f"CAST(coalesce({found} - 1, -1) AS INTEGER)"

    def missing(prefix: str) -> str:
        return "(" + " OR ".join(f"{prefix}{i} IS NULL OR NOT {d.is_value(f'{prefix}{i}')}"
                                 for i in range(blend.width)) + ")"

    scores = ", ".join([f"wo{i}" for i in range(blend.width)]
                       + [f"wn{i}" for i in range(blend.width)])
    # Integers, not booleans: Arrow hands numbers to numpy without a copy (or pandas).
    return (f"{with_sql}, wr AS (SELECT oid AS wid, {index('y')} AS yi, "
            f"CAST((o = y) AS INTEGER) AS ook, {index('o')} AS oi, {index('n')} AS ni, "
            f"CAST({missing('wo')} AS INTEGER) AS bad_o, "
            f"CAST({missing('wn')} AS INTEGER) AS bad_n, {scores} FROM jin)")


def _raise_missing(engine: Engine, row_sql: str, blend: Blend) -> None:
    """The error for audited rows with a missing score, if there are any."""
    bad_o, bad_n = engine.first(
        f"{row_sql} SELECT sum(bad_o), sum(bad_n) FROM wr")
    for flag, count, side in (("bad_o", bad_o, blend.old_side), ("bad_n", bad_n, blend.new_side)):
        if not count:
            continue
        ids = [r[0] for r in engine.rows(f"{row_sql} SELECT wid FROM wr WHERE {flag} = 1 "
                                         f"ORDER BY 1 LIMIT {EXAMPLES}")]
        raise InputError(
            f"--what-if: {count} audited row(s) have a missing score (null, NaN, infinite, or "
            f"a fill value of magnitude 1e30 or more) in {side.table.label} (--score-cols "
            f"{blend.pattern!r}): ids {examples(ids)}. Blending needs every class's score on "
            "every row: fill them in, or remove those rows."
        )


def _stream(engine: Engine, row_sql: str, blend: Blend, steps: int) -> Tally | None:
    """DuckDB: the rows in Arrow batches through numpy, all alphas per batch."""

    k = blend.width
    names = ["yi", "ook", "oi", "ni", "bad_o", "bad_n"]
    names += [f"wo{i}" for i in range(k)] + [f"wn{i}" for i in range(k)]
    batch_rows = max(1024, BATCH_VALUES // k)
    reader = engine.record_batches(f"{row_sql} SELECT {', '.join(names)} FROM wr", batch_rows)
    if reader is None:
        return None
    try:
        tally = _tally_batches(reader, blend, steps)
    finally:
        reader.close()  # before any other query: DuckDB runs one result at a time
    if tally is None:
        _raise_missing(engine, row_sql, blend)
    return tally


_NUMPY_TYPES = {"int32": "int32", "double": "float64"}


def _numbers(array: Any) -> np.ndarray:
    """An Arrow array of int32 or double without nulls as a numpy view of its buffer (no
    copy; ``Array.to_numpy`` would import pandas, a second of start-up)."""
    import numpy as np

    dtype = np.dtype(_NUMPY_TYPES[str(array.type)])
    if array.null_count:  # never: rows with a missing score are refused first
        raise AssertionError("unexpected null in the what-if rows")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                         offset=array.offset * dtype.itemsize)


def _tally_batches(reader: Any, blend: Blend, steps: int) -> Tally | None:
    """The counts over every batch; None as soon as a batch holds a missing score."""
    import numpy as np

    k = blend.width
    tally = Tally(steps)
    nf = np.zeros(steps, np.int64)
    pf = np.zeros(steps, np.int64)
    for batch in reader:
        rows = batch.num_rows
        if not rows:
            continue

        def column(i: int, batch: Any = batch) -> np.ndarray:
            return _numbers(batch.column(i))

        if column(4).any() or column(5).any():
            return None
        y, old_right, oi, ni = column(0), column(1).astype(bool), column(2), column(3)
        by_class = k <= BY_CLASS
        old = np.empty((k, rows) if by_class else (rows, k))
        new = np.empty_like(old)
        for i in range(k):
            if by_class:
                old[i], new[i] = column(6 + i), column(6 + k + i)
            else:
                old[:, i], new[:, i] = column(6 + i), column(6 + k + i)
        if blend.threshold is not None:
            b_nf, b_pf, a_new, a_old = blend_threshold_counts(
                new[0], old[0], y, old_right, steps, blend.threshold)
        elif by_class:
            b_nf, b_pf, a_new, a_old = _counts_by_class(new, old, y, old_right, steps)
        else:
            b_nf, b_pf, a_new, a_old = _counts_by_row(new, old, y, old_right, steps)
        nf += b_nf
        pf += b_pf
        tally.n += rows
        tally.old_right += int(np.count_nonzero(old_right))
        tally.new_disagree += int(np.count_nonzero(a_new != ni))
        tally.old_disagree += int(np.count_nonzero(a_old != oi))
    tally.negative_flips = [int(x) for x in nf]
    tally.positive_flips = [int(x) for x in pf]
    return tally


def _double(x: float) -> str:
    """A double as SQL that parses to exactly that double on every engine."""
    return f"CAST('{x!r}' AS DOUBLE)"


def blend_sql(engine: Engine, row_sql: str, blend: Blend, steps: int) -> str:
    """The blend as one aggregation in SQL (Spark): every row crossed with the K weights,
    the blended scores ``wbeta * new + walpha * old``, the first maximum (or the threshold),
    the flips counted per alpha."""
    k = blend.width
    w = ", ".join(f"({i}, {_double(a)}, {_double(b)})" for i, (a, b) in enumerate(weights(steps)))
    keep = "wk, yi, ook, oi, ni"
    blended = ", ".join(f"wbeta * wn{i} + walpha * wo{i} AS b{i}" for i in range(k))
    if blend.threshold is None:
        b = ", ".join(f"b{i}" for i in range(k))
        first = " ".join(f"WHEN b{i} = mx THEN {i}" for i in range(k))
        pred = (f"wm AS (SELECT {keep}, {b}, greatest({b}) AS mx FROM wb), "
                f"wp AS (SELECT {keep}, CASE {first} END AS p FROM wm)")
    else:
        pred = (f"wp AS (SELECT {keep}, CASE WHEN b0 >= {_double(blend.threshold)} THEN 1 "
                "ELSE 0 END AS p FROM wb)")
    return (f"{row_sql}, ww AS (SELECT * FROM (VALUES {w}) AS t(wk, walpha, wbeta)), "
            f"wb AS (SELECT {keep}, {blended} FROM wr CROSS JOIN ww), {pred} "
            "SELECT wk, count(*), sum(ook), "
            "sum(CASE WHEN ook = 1 AND p <> yi THEN 1 ELSE 0 END), "
            "sum(CASE WHEN ook = 0 AND p = yi THEN 1 ELSE 0 END), "
            "sum(CASE WHEN p <> ni THEN 1 ELSE 0 END), sum(CASE WHEN p <> oi THEN 1 ELSE 0 END) "
            "FROM wp GROUP BY wk ORDER BY wk")


def _in_sql(engine: Engine, row_sql: str, blend: Blend, steps: int) -> Tally:
    _raise_missing(engine, row_sql, blend)
    tally = Tally(steps)
    rows = engine.rows(blend_sql(engine, row_sql, blend, steps))
    for wk, n, old_right, nf, pf, new_off, old_off in rows:
        tally.n, tally.old_right = int(n), int(old_right)
        tally.negative_flips[int(wk)] = int(nf)
        tally.positive_flips[int(wk)] = int(pf)
        if wk == 0:
            tally.new_disagree = int(new_off)
        if wk == steps - 1:
            tally.old_disagree = int(old_off)
    return tally


def what_if(engine: Engine, aligner: Aligner, blend: Blend, labels: Table | None,
            cols: Columns, steps: int, *, method: str = "auto") -> WhatIf:
    """The blend's curve over the audited rows (the join the audit counted, with both
    models' scores carried along): streamed through numpy where the engine streams
    (``method="auto"`` or ``"numpy"``), else (or with ``"sql"``) in SQL."""
    carry = {"o": [(sql, f"wo{i}") for i, sql in enumerate(blend.old)],
             "n": [(sql, f"wn{i}") for i, sql in enumerate(blend.new)]}
    plan = aligner.plan(blend.old_side, blend.new_side, labels, cols, carry=carry)
    row_sql = _row_sql(engine, plan.with_sql, blend)
    tally = None if method == "sql" else _stream(engine, row_sql, blend, steps)
    if tally is None:
        tally = _in_sql(engine, row_sql, blend, steps)
    return WhatIf(steps, blend.classes, tally.points(), tally.new_disagree, tally.old_disagree,
                  blend.threshold)
