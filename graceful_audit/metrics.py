"""Flip metrics: every formula of ``gaudit flips`` lives here, once.

All metrics are pure functions of :class:`FlipCounts`, the per-group contingency table of
(old right / wrong) x (new right / wrong) plus the number of both-wrong examples on which
the two models disagree. Those counts are the sufficient statistics: the engine that
reads and joins the files (DuckDB by default) only has to return them.

Notation, over the N examples present in both files, ground truth ``y``, old prediction
``o``, new prediction ``n``:

=====================================  ==================================================
``error_rate`` (old / new)             ``#(pred != y) / N``
``error_rate_delta``                   ``ER_new - ER_old`` (equals ``NFR - PFR``)
``negative_flip_rate`` (NFR)           ``#(o == y and n != y) / N``
``positive_flip_rate`` (PFR)           ``#(o != y and n == y) / N``
``negative_flip_impact`` (NFI)         ``NFR / ER_new``
``churn_rate``                         ``#(o != n) / N``
``backward_trust_compatibility``       ``#(o == y and n == y) / #(o == y)``
``backward_error_compatibility``       ``#(o != y and n != y) / #(n != y)``
``relative_negative_flip_rate``        ``NFR / ((1 - ER_old) * ER_new)``
=====================================  ==================================================

A metric whose denominator is zero is ``None`` (``null`` in JSON, ``n/a`` on screen),
never NaN.

Sources: Yan et al., "Positive-Congruent Training: Towards Regression-Free Model Updates",
CVPR 2021 (NFR, NFI); Srivastava, Nushi, Kamar, Shah, Horvitz, "An Empirical Analysis of
Backward Compatibility in Machine Learning Systems", KDD 2020 (BTC, BEC); Cormier et al.,
"Launch and Iterate: Reducing Prediction Churn", NeurIPS 2016 (churn); Zhao et al.,
"ELODI: Ensemble Logit Difference Inhibition for Positive-Congruent Training", 2022
(relative NFR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FlipCounts:
    """Contingency counts of one group of examples (all of them, a class or a slice).

    Attributes
    ----------
    both_right : int
        ``o == y and n == y``.
    negative_flips : int
        ``o == y and n != y``: the old model was right, the new one is wrong.
    positive_flips : int
        ``o != y and n == y``.
    both_wrong : int
        ``o != y and n != y``.
    both_wrong_disagree : int
        Both wrong *and* ``o != n`` (needed for churn). Always ``<= both_wrong``.
    """

    both_right: int = 0
    negative_flips: int = 0
    positive_flips: int = 0
    both_wrong: int = 0
    both_wrong_disagree: int = 0

    def __post_init__(self) -> None:
        for name in ("both_right", "negative_flips", "positive_flips", "both_wrong"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if not 0 <= self.both_wrong_disagree <= self.both_wrong:
            raise ValueError("need 0 <= both_wrong_disagree <= both_wrong")

    @property
    def n(self) -> int:
        return self.both_right + self.negative_flips + self.positive_flips + self.both_wrong

    @property
    def old_right(self) -> int:
        return self.both_right + self.negative_flips

    @property
    def old_errors(self) -> int:
        return self.positive_flips + self.both_wrong

    @property
    def new_errors(self) -> int:
        return self.negative_flips + self.both_wrong

    @property
    def disagreements(self) -> int:
        """``#(o != n)``: every flip, plus both-wrong examples with different answers."""
        return self.negative_flips + self.positive_flips + self.both_wrong_disagree

    def __add__(self, other: FlipCounts) -> FlipCounts:
        return FlipCounts(
            self.both_right + other.both_right,
            self.negative_flips + other.negative_flips,
            self.positive_flips + other.positive_flips,
            self.both_wrong + other.both_wrong,
            self.both_wrong_disagree + other.both_wrong_disagree,
        )

    @classmethod
    def from_predictions(cls, y_true: object, old_pred: object, new_pred: object) -> FlipCounts:
        """Count from three aligned 1-d arrays (labels compared with ``==``).

        >>> FlipCounts.from_predictions([0, 1, 1, 2], [0, 1, 0, 1], [0, 0, 1, 0])
        FlipCounts(both_right=1, negative_flips=1, positive_flips=1, both_wrong=1, \
both_wrong_disagree=1)
        """
        import numpy as np

        y, o, n = (np.asarray(a) for a in (y_true, old_pred, new_pred))
        if not (y.shape == o.shape == n.shape) or y.ndim != 1:
            raise ValueError("y_true, old_pred and new_pred must be 1-d and of equal length")
        old_ok, new_ok = o == y, n == y
        both_wrong = ~old_ok & ~new_ok
        return cls(
            both_right=int(np.sum(old_ok & new_ok)),
            negative_flips=int(np.sum(old_ok & ~new_ok)),
            positive_flips=int(np.sum(~old_ok & new_ok)),
            both_wrong=int(np.sum(both_wrong)),
            both_wrong_disagree=int(np.sum(both_wrong & (o != n))),
        )


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


@dataclass(frozen=True)
class Proportion:
    """A rate that is a binomial proportion: its value and its Wilson interval share it."""

    name: str
    numerator: Callable[[FlipCounts], int]
    denominator: Callable[[FlipCounts], int]

    def value(self, c: FlipCounts) -> float | None:
        return _ratio(self.numerator(c), self.denominator(c))


#: Every rate that is a proportion, in report order. ``negative_flip_impact`` is
#: ``NFR / ER_new = negative_flips / new_errors``. BEC follows the KDD 2020 paper
#: (denominator: the *new* model's errors); BackwardCompatibilityML's code divides by the
#: old model's errors instead. We use the paper's definition on purpose.
PROPORTIONS: tuple[Proportion, ...] = (
    Proportion("old_error_rate", lambda c: c.old_errors, lambda c: c.n),
    Proportion("new_error_rate", lambda c: c.new_errors, lambda c: c.n),
    Proportion("negative_flip_rate", lambda c: c.negative_flips, lambda c: c.n),
    Proportion("positive_flip_rate", lambda c: c.positive_flips, lambda c: c.n),
    Proportion("negative_flip_impact", lambda c: c.negative_flips, lambda c: c.new_errors),
    Proportion("churn_rate", lambda c: c.disagreements, lambda c: c.n),
    Proportion("backward_trust_compatibility", lambda c: c.both_right, lambda c: c.old_right),
    Proportion("backward_error_compatibility", lambda c: c.both_wrong, lambda c: c.new_errors),
)
PROPORTION_BY_NAME = {p.name: p for p in PROPORTIONS}


def rate(name: str, counts: FlipCounts) -> float | None:
    """Value of the proportion ``name`` (see :data:`PROPORTIONS`), ``None`` if undefined."""
    return PROPORTION_BY_NAME[name].value(counts)


def error_rate_delta(counts: FlipCounts) -> float | None:
    """``ER_new - ER_old``, which equals ``NFR - PFR``: positive means the update is worse.

    >>> error_rate_delta(FlipCounts(both_right=92, negative_flips=3, positive_flips=5))
    -0.02
    """
    return _ratio(counts.negative_flips - counts.positive_flips, counts.n)


def relative_negative_flip_rate(counts: FlipCounts) -> float | None:
    """``NFR / ((1 - ER_old) * ER_new)``: negative flips relative to independent errors.

    Two models that err independently would flip ``(1 - ER_old) * ER_new`` of the examples
    negatively; below 1 the update is more congruent than chance (ELODI, Zhao et al. 2022).
    ``None`` when the old model is never right or the new one never wrong.
    """
    n = counts.n
    if n == 0:
        return None
    expected = (counts.old_right / n) * (counts.new_errors / n)
    return _ratio(counts.negative_flips / n, expected)


@dataclass(frozen=True)
class FlipMetrics:
    """The headline numbers of a flips audit, in the order of the JSON document."""

    n: int
    old_error_rate: float | None
    new_error_rate: float | None
    error_rate_delta: float | None
    negative_flips: int
    positive_flips: int
    negative_flip_rate: float | None
    positive_flip_rate: float | None
    negative_flip_impact: float | None
    churn_rate: float | None
    backward_trust_compatibility: float | None
    backward_error_compatibility: float | None
    relative_negative_flip_rate: float | None

    @classmethod
    def from_counts(cls, c: FlipCounts, *, churn: bool = True) -> FlipMetrics:
        """All metrics of ``c``; ``churn=False`` reports churn as ``None`` (regression)."""
        return cls(
            n=c.n,
            old_error_rate=rate("old_error_rate", c),
            new_error_rate=rate("new_error_rate", c),
            error_rate_delta=error_rate_delta(c),
            negative_flips=c.negative_flips,
            positive_flips=c.positive_flips,
            negative_flip_rate=rate("negative_flip_rate", c),
            positive_flip_rate=rate("positive_flip_rate", c),
            negative_flip_impact=rate("negative_flip_impact", c),
            churn_rate=rate("churn_rate", c) if churn else None,
            backward_trust_compatibility=rate("backward_trust_compatibility", c),
            backward_error_compatibility=rate("backward_error_compatibility", c),
            relative_negative_flip_rate=relative_negative_flip_rate(c),
        )
