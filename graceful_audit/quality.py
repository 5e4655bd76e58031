"""The usual quality metrics of both models, old beside new, on the same audited rows.

Every formula lives here, as scikit-learn defines it (so anyone can recompute it), and is
a pure function of small counts and sums that the engine returns
(:mod:`graceful_audit.quality_count`): counts per class and model, sums of log-losses and
squared errors, Mann-Whitney rank sums and DeLong's placement moments. A quantity whose
denominator is zero is ``None`` (``null`` in JSON, ``n/a`` on screen), never ``NaN``.

>>> counts = ClassCounts(support={"a": 2, "b": 2}, predicted={"a": 3, "b": 1},
...                      right={"a": 2, "b": 1})
>>> q = class_quality(counts)
>>> q["accuracy"], q["macro_precision"], q["macro_recall"]
(0.75, 0.8333333333333333, 0.75)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The keys of ``quality.old`` / ``quality.new`` / ``quality.delta`` (DESIGN.md), in order.
CLASSIFICATION_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss",
                       "brier", "roc_auc")
REGRESSION_KEYS = ("r2", "mape", "max_error")
#: Scores of a row must sum to 1 within this for the log-loss to be defined.
SUM_TOLERANCE = 1e-6
#: float64's machine epsilon: scikit-learn clips probabilities to [eps, 1 - eps] for the
#: log-loss and divides by ``max(|y|, eps)`` for MAPE.
EPS = 2.220446049250313e-16
#: The reason of the score metrics' ``None`` when no scores are given.
NO_SCORES = "no --score-cols given"


def _div(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


@dataclass(frozen=True)
class ClassCounts:
    """One model's confusion counts, collapsed per class: how often each class is the label
    (``support``), is predicted (``predicted``), and is predicted right (``right``)."""

    support: Mapping[str, int]
    predicted: Mapping[str, int]
    right: Mapping[str, int]

    @property
    def classes(self) -> list[str]:
        """Every class that is a label or a prediction (scikit-learn's ``unique_labels``)."""
        return sorted(set(self.support) | {c for c, k in self.predicted.items() if k})


def precision_recall_f1(tp: int, predicted: int, support: int
                        ) -> tuple[float | None, float | None, float | None]:
    """One class's precision ``tp / predicted``, recall ``tp / support`` and F1
    ``2 tp / (predicted + support)`` (scikit-learn >= 1.3's formula, equal to the harmonic
    mean of precision and recall where both are defined); ``None`` where a denominator is 0.

    >>> precision_recall_f1(2, 3, 2)
    (0.6666666666666666, 1.0, 0.8)
    """
    return _div(tp, predicted), _div(tp, support), _div(2 * tp, predicted + support)


def class_quality(c: ClassCounts) -> dict[str, float | None]:
    """Accuracy and macro precision / recall / F1 from one model's confusion counts.

    ``accuracy = #right / N``. The macro averages are unweighted means over every class
    that is a label or a prediction, a per-class value with a zero denominator counting as
    0, exactly ``sklearn.metrics.precision_recall_fscore_support(y, pred, average="macro")``
    with its default ``zero_division`` (the per-class values themselves are ``None``).
    """
    n = sum(c.support.values())
    classes = c.classes
    rows = [precision_recall_f1(c.right.get(k, 0), c.predicted.get(k, 0), c.support.get(k, 0))
            for k in classes]

    def macro(i: int) -> float | None:
        return _div(math.fsum(r[i] or 0.0 for r in rows), len(rows))

    return {"accuracy": _div(sum(c.right.values()), n), "macro_precision": macro(0),
            "macro_recall": macro(1), "macro_f1": macro(2)}


@dataclass(frozen=True)
class RankSums:
    """A one-vs-rest split's Mann-Whitney statistic: positives, negatives and ``u``, the
    number of (positive, negative) pairs the score orders right, ties counting one half."""

    positives: int
    negatives: int
    u: float


def roc_auc(splits: Mapping[str, RankSums]) -> tuple[float | None, str | None]:
    """ROC-AUC from rank sums: ``AUC = U / (n_pos n_neg)`` with
    ``U = sum of positive mid-ranks - n_pos (n_pos + 1) / 2`` (Mann & Whitney 1947; Hanley
    & McNeil, Radiology 143(1) 1982), equal to ``sklearn.metrics.roc_auc_score``. With more
    than one split (one per class), the unweighted mean: scikit-learn's
    ``multi_class="ovr", average="macro"``. ``None`` with the reason when a split has no
    positive or no negative (scikit-learn raises there)."""
    aucs = []
    for cls, s in splits.items():
        if s.positives == 0 or s.negatives == 0:
            what = "never" if s.positives == 0 else "always"
            return None, f"class {cls!r} is {what} the label, so its ROC curve is undefined"
        aucs.append(s.u / (s.positives * s.negatives))
    return (math.fsum(aucs) / len(aucs), None) if aucs else (None, "no scores")


@dataclass(frozen=True)
class Placements:
    """DeLong's structural components of both models over the positives (``v10``) or the
    negatives (``v01``), as counts: ``mean_*`` the means of each model's placements and
    ``var_*`` / ``cov`` their sample (co)variances (``n - 1`` in the denominator)."""

    n: int
    mean_old: float
    mean_new: float
    var_old: float
    var_new: float
    cov: float


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's paired test of ``AUC_new - AUC_old``: ``z``, its two-sided ``p_value`` and
    the normal interval of the difference at ``confidence``."""

    delta: float
    z: float | None
    p_value: float | None
    interval: tuple[float, float]
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"z": self.z, "p_value": self.p_value, "method": "delong"}


def delong(pos: Placements, neg: Placements, *, n_pos: int, n_neg: int,
           confidence: float = 0.95) -> DeLongResult | None:
    """DeLong's test for two correlated ROC curves (DeLong, DeLong & Clarke-Pearson,
    "Comparing the areas under two or more correlated receiver operating characteristic
    curves: a nonparametric approach", Biometrics 44(3):837-845, 1988).

    For each positive ``i``, its placement ``V10(i)`` among the negatives is the share of
    negatives it outscores, ties counting one half; for each negative ``j``, ``V01(j)`` the
    share of positives that outscore it. ``AUC = mean V10 = mean V01``; with ``S10`` and
    ``S01`` the sample covariance matrices of the two models' placements,
    ``Var(AUC_new - AUC_old) = (S10_oo + S10_nn - 2 S10_on) / n_pos
    + (S01_oo + S01_nn - 2 S01_on) / n_neg``, ``z = delta / sqrt(Var)``, two-sided normal
    p-value and interval ``delta +- z_(1+c)/2 sqrt(Var)``.

    ``pos`` / ``neg`` hold the placements as counts (not yet divided by ``n_neg`` /
    ``n_pos``), as the engine sums them. ``None`` when a side has fewer than two rows (no
    covariance); ``z`` and ``p_value`` are ``None`` when the variance is 0.
    """
    from scipy.stats import norm

    if n_pos < 2 or n_neg < 2:
        return None
    auc_old, auc_new = pos.mean_old / n_neg, pos.mean_new / n_neg
    delta = auc_new - auc_old
    s10 = (pos.var_old + pos.var_new - 2 * pos.cov) / (n_neg * n_neg)
    s01 = (neg.var_old + neg.var_new - 2 * neg.cov) / (n_pos * n_pos)
    var = max(s10 / n_pos + s01 / n_neg, 0.0)
    q = float(norm.ppf(0.5 + confidence / 2))
    half = q * math.sqrt(var)
    if var == 0 or not math.isfinite(var):
        return DeLongResult(delta, None, None, (delta - half, delta + half), confidence)
    z = delta / math.sqrt(var)
    return DeLongResult(delta, z, float(2 * norm.sf(abs(z))), (delta - half, delta + half),
                        confidence)


@dataclass(frozen=True)
class ScoreSums:
    """One model's score sums over the audited rows: ``rows``; ``bad_sum`` rows whose
    scores do not sum to 1 within :data:`SUM_TOLERANCE`; ``outside`` rows whose label is
    none of the score columns' classes; ``log_loss_sum`` of ``-ln clip(p_y)``;
    ``brier_sum`` of the rows' squared differences."""

    rows: int
    bad_sum: int
    outside: int
    log_loss_sum: float
    brier_sum: float
    #: rows with a score outside [0, 1] (logits, margins): not probabilities
    not_probability: int = 0


def score_quality(s: ScoreSums, binary: bool) -> tuple[dict[str, float | None],
                                                        dict[str, str]]:
    """Log-loss and Brier score from one model's sums, with the reason for each ``None``.

    * log-loss ``-1/N sum_i ln clip(p_i,y_i, eps, 1 - eps)`` (``sklearn.metrics.log_loss``);
      only when every row's scores sum to 1 within 1e-6 (else the scores are not
      probabilities and the number would mislead).
    * Brier ``1/N sum_i sum_k (p_ik - [y_i = k])^2`` (multiclass, as
      ``sklearn.metrics.brier_score_loss`` in scikit-learn >= 1.7); binary: the positive
      class's ``1/N sum_i (p_i - [y_i = pos])^2``.
    """
    reasons: dict[str, str] = {}
    out: dict[str, float | None] = {"log_loss": None, "brier": None}
    if s.rows == 0:
        return out, {"log_loss": "no audited rows", "brier": "no audited rows"}
    if s.outside:
        why = (f"{s.outside:,} audited row(s) have a label that is none of the score columns' "
               "classes")
        return out, {"log_loss": why, "brier": why}
    if s.not_probability:
        why = (f"{s.not_probability:,} audited row(s) have a score outside [0, 1], so the "
               "scores are not probabilities")
        return out, {"log_loss": why, "brier": why}
    out["brier"] = s.brier_sum / s.rows
    if s.bad_sum and not binary:
        reasons["log_loss"] = (f"the scores of {s.bad_sum:,} row(s) do not sum to 1 within "
                               f"{SUM_TOLERANCE:g}, so they are not probabilities")
    else:
        out["log_loss"] = s.log_loss_sum / s.rows
    return out, reasons


@dataclass(frozen=True)
class RegressionSums:
    """One model's sums for R², MAPE and max error: ``n`` rows, ``sse`` the sum of squared
    errors, ``sst`` the total sum of squares of ``y`` about its mean, ``ape_sum`` of
    ``|e| / max(|y|, eps)`` over the ``ape_rows`` rows with ``y != 0``, ``max_error``."""

    n: int
    sse: float
    sst: float
    ape_sum: float
    ape_rows: int
    max_error: float | None


def regression_quality(s: RegressionSums) -> dict[str, float | None]:
    """``r2 = 1 - SSE / SST`` (``sklearn.metrics.r2_score``; ``None`` when ``y`` is
    constant, where scikit-learn returns 1 or 0 by convention); ``mape`` the mean of
    ``|y - pred| / |y|`` over the rows with ``y != 0`` (``mean_absolute_percentage_error``
    on those rows; the others are excluded and counted), ``max_error`` the largest absolute
    error (``sklearn.metrics.max_error``)."""
    return {"r2": None if s.sst == 0 else 1 - s.sse / s.sst,
            "mape": _div(s.ape_sum, s.ape_rows), "max_error": s.max_error}


@dataclass(frozen=True)
class ClassRow:
    """Precision, recall and F1 of one class for both models (``None``: zero denominator)."""

    cls: str
    support: int
    old: tuple[float | None, float | None, float | None]
    new: tuple[float | None, float | None, float | None]

    def to_dict(self) -> dict[str, float | None]:
        keys = ("precision", "recall", "f1")
        return {**{f"old_{k}": v for k, v in zip(keys, self.old, strict=True)},
                **{f"new_{k}": v for k, v in zip(keys, self.new, strict=True)}}


@dataclass(frozen=True)
class ReliabilityBin:
    """Rows whose top-class confidence falls in ``[low, high)`` (the last bin closed): how
    many, their mean confidence, and how many the model got right."""

    low: float
    high: float
    count: int
    mean_confidence: float | None
    right: int

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "count": self.count,
                "mean_confidence": self.mean_confidence,
                "accuracy": _div(self.right, self.count)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReliabilityBin:
        count = int(d["count"])
        return cls(float(d["low"]), float(d["high"]), count, d.get("mean_confidence"),
                   round((d.get("accuracy") or 0.0) * count))


#: At most this many classes in the confusion matrices (the most frequent labels).
MAX_CONFUSION_CLASSES = 100


@dataclass(frozen=True)
class Confusion:
    """Both models' confusion matrices over ``classes`` (natural order): ``matrices[side][i]
    [j]`` audited rows with label ``classes[i]`` that the model predicted as ``classes[j]``.

    With more than :data:`MAX_CONFUSION_CLASSES` classes (labels or predictions of either
    model; ``total_classes``), only the most frequent labels are kept (ties in natural
    order), so JSON and HTML stay bounded with 50,000 classes; ``left_out[side]`` counts the
    audited rows whose label or prediction is not among them (0 when every class is kept).
    """

    classes: tuple[str, ...]
    matrices: dict[str, tuple[tuple[int, ...], ...]]
    total_classes: int
    left_out: dict[str, int]

    @classmethod
    def of(cls, cells: Mapping[str, Mapping[tuple[str, str], int]],
           support: Mapping[str, int], order: Any = None,
           limit: int = MAX_CONFUSION_CLASSES) -> Confusion:
        """From each model's counts per (label, prediction); ``support`` the rows per
        label, ``order`` the sort key of the classes."""
        every = set(support)
        for side_cells in cells.values():
            for y, p in side_cells:
                every.update((y, p))
        ranked = sorted(every, key=order)
        if len(ranked) > limit:
            # a stable sort: equal support stays in natural order
            keep = set(sorted(ranked, key=lambda c: -support.get(c, 0))[:limit])
            ranked = [c for c in ranked if c in keep]
        index = {c: i for i, c in enumerate(ranked)}
        matrices, left_out = {}, {}
        for side in ("old", "new"):
            grid = [[0] * len(ranked) for _ in ranked]
            out = 0
            for (y, p), c in cells.get(side, {}).items():
                i, j = index.get(y), index.get(p)
                if i is None or j is None:
                    out += c
                else:
                    grid[i][j] += c
            matrices[side] = tuple(tuple(row) for row in grid)
            left_out[side] = out
        return cls(tuple(ranked), matrices, len(every), left_out)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "total_classes": self.total_classes,
                "rows_left_out": dict(self.left_out),
                **{side: [list(row) for row in m] for side, m in self.matrices.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Confusion:
        return cls(tuple(d["classes"]),
                   {side: tuple(tuple(int(c) for c in row) for row in d[side])
                    for side in ("old", "new")},
                   int(d["total_classes"]), {k: int(v) for k, v in d["rows_left_out"].items()})


def _delta(old: float | None, new: float | None) -> float | None:
    return None if old is None or new is None else new - old


@dataclass(frozen=True)
class Quality:
    """The usual quality metrics of both models: ``old`` / ``new`` keyed as in DESIGN.md,
    ``reasons`` for a ``None`` that is not a plain zero denominator, per class rows,
    the confusion matrices (:class:`Confusion`), the reliability bins, DeLong's
    test for binary ROC-AUC, and MAPE's excluded rows (regression)."""

    task: str
    old: dict[str, float | None]
    new: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    per_class: tuple[ClassRow, ...] = ()
    confusion: Confusion | None = None
    reliability: dict[str, tuple[ReliabilityBin, ...]] = field(default_factory=dict)
    delong: DeLongResult | None = None
    positive_class: str | None = None
    mape_excluded: int | None = None

    @property
    def scored(self) -> bool:
        """Whether the models' scores were given (the score metrics were computed)."""
        return self.task == "classification" and self.reasons.get("roc_auc") != NO_SCORES

    @property
    def keys(self) -> tuple[str, ...]:
        return REGRESSION_KEYS if self.task == "regression" else CLASSIFICATION_KEYS

    @property
    def delta(self) -> dict[str, float | None]:
        return {k: _delta(self.old.get(k), self.new.get(k)) for k in self.keys}

    def drop(self, key: str) -> float | None:
        """``old - new`` of a metric where higher is better (what the ``--max-*-drop`` gates
        watch)."""
        d = self.delta.get(key)
        return None if d is None else -d

    @functools.cached_property
    def _by_class(self) -> dict[str, ClassRow]:
        return {r.cls: r for r in self.per_class}

    def class_row(self, cls: str | None) -> ClassRow | None:
        """A class's row (a dict lookup: an audit may have 50,000 classes)."""
        return None if cls is None else self._by_class.get(cls)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "old": {k: self.old.get(k) for k in self.keys},
            "new": {k: self.new.get(k) for k in self.keys},
            "delta": self.delta,
        }
        if self.reasons:
            d["reasons"] = dict(sorted(self.reasons.items()))
        if self.task == "regression":
            d["mape_excluded_zero_labels"] = self.mape_excluded
            return d
        d["positive_class"] = self.positive_class
        d["predicted_only_classes"] = [r.to_dict() | {"class": r.cls} for r in self.per_class
                                       if r.support == 0]
        if self.confusion is not None:
            d["confusion"] = self.confusion.to_dict()
        if self.reliability:
            d["reliability"] = {side: [b.to_dict() for b in bins]
                                for side, bins in self.reliability.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], task: str, per_class: list[dict[str, Any]]
                  ) -> Quality:
        """Read back :meth:`to_dict` (with the top-level ``per_class`` rows)."""
        keys = ("precision", "recall", "f1")
        from .flips import natural_key

        rows = [ClassRow(str(r["class"]), int(r.get("support", 0)),
                         tuple(r.get(f"old_{k}") for k in keys),  # type: ignore[arg-type]
                         tuple(r.get(f"new_{k}") for k in keys))  # type: ignore[arg-type]
                for r in [*per_class, *d.get("predicted_only_classes", [])]
                if "old_f1" in r]
        rows.sort(key=lambda r: natural_key(r.cls))
        return cls(
            task=task, old=dict(d["old"]), new=dict(d["new"]),
            reasons=dict(d.get("reasons", {})), per_class=tuple(rows),
            confusion=Confusion.from_dict(d["confusion"]) if "confusion" in d else None,
            reliability={side: tuple(ReliabilityBin.from_dict(b) for b in bins)
                         for side, bins in d.get("reliability", {}).items()},
            positive_class=d.get("positive_class"),
            mape_excluded=d.get("mape_excluded_zero_labels"),
        )


def classification_quality(
    per_class: Mapping[str, Any], predicted: Mapping[str, Mapping[str, int]], order: Any = None,
    confusion: Mapping[str, Mapping[tuple[str, str], int]] | None = None,
) -> Quality:
    """The label-only part of a classification :class:`Quality` (no scores), from the counts
    the flips pass already has: per true class its flip counts (``per_class``, with
    ``n``, ``old_right`` and ``new_errors``) and per model the rows per predicted class
    (``predicted``); the confusion matrices from each model's counts per (label,
    prediction) (``confusion``, when given)."""
    support = {k: c.n for k, c in per_class.items()}
    sides = {
        "old": ClassCounts(support, dict(predicted.get("old", {})),
                           {k: c.old_right for k, c in per_class.items()}),
        "new": ClassCounts(support, dict(predicted.get("new", {})),
                           {k: c.n - c.new_errors for k, c in per_class.items()}),
    }
    classes = sorted(set(sides["old"].classes) | set(sides["new"].classes), key=order)
    rows = tuple(
        ClassRow(k, support.get(k, 0),
                 *(precision_recall_f1(s.right.get(k, 0), s.predicted.get(k, 0),
                                       s.support.get(k, 0)) for s in sides.values()))
        for k in classes
    )
    base = {k: None for k in CLASSIFICATION_KEYS}
    reasons = {k: NO_SCORES for k in ("log_loss", "brier", "roc_auc")}
    return Quality("classification", base | class_quality(sides["old"]),
                   base | class_quality(sides["new"]), reasons, rows,
                   None if confusion is None else Confusion.of(confusion, support, order))
