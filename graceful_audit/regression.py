"""Error deltas of a regression-model update: every formula of ``--task regression`` lives here.

A prediction is *right* when it is within tolerance of the target::

    ok = |pred - y| <= atol + rtol * |y|

and every flip metric of :mod:`graceful_audit.metrics` is computed on ``ok`` (churn is
undefined). With absolute errors ``e = |pred - y|`` and ``d = e_new - e_old``:

* ``old_mae = mean(e_old)``, ``new_mae``, ``mae_delta = new_mae - old_mae`` (= ``mean(d)``);
* ``old_rmse = sqrt(mean(e_old^2))``, ``new_rmse``, ``rmse_delta = new_rmse - old_rmse``;
* the paired t interval of ``mean(d)``: ``mean(d) +- t_{n-1, (1+c)/2} * sd(d) / sqrt(n)``
  (Student 1908; what ``scipy.stats.ttest_rel(e_new, e_old).confidence_interval()`` gives);
* Wilcoxon's signed-rank test on ``d`` (Wilcoxon 1945), as ``scipy.stats.wilcoxon(d)``
  with its defaults: zero differences dropped, average ranks for ties, no continuity
  correction; the exact null distribution while ``n <= 50`` with neither zeros nor ties,
  the normal approximation with tie correction otherwise.

All of these reduce to aggregates (counts, sums, sums of squares, and rank sums over the
``GROUP BY |d|`` of the differences), so the engine computes them out of core and only
numbers come back. So do the histograms of the HTML plots (:class:`Histogram`, numpy's
bins): ``d`` over ``[min d, max d]`` and ``(e_old, e_new)`` over ``[0, max e]``, each a
``GROUP BY`` of bin indices. No standard exists for regression flips yet; graceful-audit defines
them here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: At most this many examples, the Wilcoxon test is delegated to scipy on the raw
#: differences (scipy's own exact / permutation choice applies); above, it is asymptotic.
WILCOXON_SMALL = 50

#: Equal-width bins of the histogram of ``d`` and of each axis of the (e_old, e_new) one.
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class ErrorSums:
    """Sufficient statistics of the absolute errors of one group."""

    n: int
    sum_abs_old: float
    sum_abs_new: float
    sum_sq_old: float
    sum_sq_new: float

    @property
    def old_mae(self) -> float | None:
        return self.sum_abs_old / self.n if self.n else None

    @property
    def new_mae(self) -> float | None:
        return self.sum_abs_new / self.n if self.n else None

    @property
    def mae_delta(self) -> float | None:
        return (self.sum_abs_new - self.sum_abs_old) / self.n if self.n else None

    @property
    def old_rmse(self) -> float | None:
        return math.sqrt(self.sum_sq_old / self.n) if self.n else None

    @property
    def new_rmse(self) -> float | None:
        return math.sqrt(self.sum_sq_new / self.n) if self.n else None

    @property
    def rmse_delta(self) -> float | None:
        if not self.n:
            return None
        return math.sqrt(self.sum_sq_new / self.n) - math.sqrt(self.sum_sq_old / self.n)


def paired_t_interval(
    mean_d: float | None, var_d: float | None, n: int, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Student's paired t interval of ``mean(d)``; ``None`` for fewer than two examples.

    ``var_d`` is the sample variance (``n - 1`` denominator). Same numbers as
    ``scipy.stats.ttest_rel(e_new, e_old).confidence_interval(confidence)``.

    >>> lo, hi = paired_t_interval(1.0, 4.0, 16)
    >>> round(lo, 4), round(hi, 4)
    (-0.0657, 2.0657)
    """
    if n < 2 or mean_d is None or var_d is None:
        return None
    from scipy.special import stdtrit  # what scipy.stats.t.ppf calls, without scipy.stats

    half = float(stdtrit(n - 1, 0.5 + confidence / 2.0)) * math.sqrt(max(var_d, 0.0) / n)
    return (mean_d - half, mean_d + half)


@dataclass(frozen=True)
class WilcoxonResult:
    """Wilcoxon signed-rank test on ``d = e_new - e_old``."""

    statistic: float | None
    p_value: float | None
    method: str
    n_nonzero: int
    n_zero: int

    def to_dict(self) -> dict[str, Any]:
        return {"p_value": self.p_value, "method": self.method, "statistic": self.statistic,
                "n_nonzero": self.n_nonzero, "zero_differences": self.n_zero}


def wilcoxon_from_ranks(
    n_nonzero: int, n_zero: int, r_plus: float, r_minus: float, tie_term: float
) -> WilcoxonResult:
    """Asymptotic two-sided signed-rank test from rank sums (no continuity correction).

    ``tie_term`` is ``sum(t^3 - t)`` over groups of tied ``|d|``::

        mn = n (n + 1) / 4,   se = sqrt((n (n + 1) (2n + 1) - tie_term / 2) / 24)
        z  = (r_plus - mn) / se,   p = 2 * (1 - Phi(|z|))
    """
    statistic = min(r_plus, r_minus)
    n = float(n_nonzero)
    var24 = n * (n + 1.0) * (2.0 * n + 1.0) - tie_term / 2.0
    if n_nonzero == 0 or var24 <= 0:
        return WilcoxonResult(statistic if n_nonzero else None, None, "asymptotic",
                              n_nonzero, n_zero)
    from scipy.stats import norm

    z = (r_plus - n * (n + 1.0) * 0.25) / math.sqrt(var24 / 24.0)
    p = float(min(1.0, 2.0 * norm.sf(abs(z))))
    return WilcoxonResult(statistic, p, "asymptotic", n_nonzero, n_zero)


def wilcoxon_small(d: Any) -> WilcoxonResult:
    """``scipy.stats.wilcoxon(d)`` itself, for at most :data:`WILCOXON_SMALL` differences."""
    import numpy as np
    from scipy.stats import wilcoxon

    d = np.asarray(d, dtype=float)
    nonzero = d[d != 0]
    n_zero = int(d.size - nonzero.size)
    if nonzero.size == 0:
        return WilcoxonResult(None, None, "none (all differences are zero)", 0, n_zero)
    ties = np.unique(np.abs(nonzero)).size < nonzero.size
    if d.size > WILCOXON_SMALL:
        method = "asymptotic"
    elif not (ties or n_zero):
        method = "exact"
    elif d.size <= 13:
        method = "permutation"
    else:
        method = "asymptotic"
    res = wilcoxon(d)
    p = float(res.pvalue)
    return WilcoxonResult(float(res.statistic), None if math.isnan(p) else p, method,
                          int(nonzero.size), n_zero)


@dataclass(frozen=True)
class Histogram:
    """Counts over equal-width bins, the numbers ``numpy.histogram`` / ``histogram2d`` give.

    ``edges``: the ``bins + 1`` bin edges (shared by both axes of a 2-d histogram); bin ``i``
    is ``[edges[i], edges[i + 1])``, the last one closed. ``counts``: one count per bin, or
    for a 2-d histogram one row per bin of the first variable (``e_old``) holding a count per
    bin of the second (``e_new``), as ``numpy.histogram2d(e_old, e_new)`` orders them.
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...] | tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges),
                "counts": [list(c) if isinstance(c, tuple) else c for c in self.counts]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Histogram | None:
        if not d:
            return None
        return cls(tuple(float(e) for e in d["edges"]),
                   tuple(tuple(int(x) for x in c) if isinstance(c, list) else int(c)
                         for c in d["counts"]))


def histogram_edges(lo: float | None, hi: float | None,
                    bins: int = HISTOGRAM_BINS) -> tuple[float, ...] | None:
    """numpy's bin edges over ``[lo, hi]``: ``numpy.linspace(lo, hi, bins + 1)``.

    As in numpy, an empty range (``lo == hi``) is widened by 0.5 on both sides and no data
    (``None``) gives ``[0, 1]``. ``None`` when the width overflows a double.
    """
    import numpy as np

    if lo is None or hi is None:
        lo, hi = 0.0, 1.0
    lo, hi = float(lo), float(hi)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    if not math.isfinite(hi - lo):
        return None
    return tuple(float(e) for e in np.linspace(lo, hi, bins + 1))


@dataclass(frozen=True)
class RegressionSummary:
    """The error deltas of a regression audit and their uncertainty."""

    atol: float
    rtol: float
    errors: ErrorSums
    mean_d: float | None
    var_d: float | None
    mae_delta_interval: tuple[float, float] | None
    wilcoxon: WilcoxonResult
    #: Histogram of ``d = e_new - e_old`` over ``[min d, max d]`` (the HTML plot).
    d_histogram: Histogram | None = None
    #: 2-d histogram of ``(e_old, e_new)`` over ``[0, max(e_old, e_new)]`` on both axes.
    error_histogram: Histogram | None = None

    @property
    def old_mae(self) -> float | None:
        return self.errors.old_mae

    @property
    def new_mae(self) -> float | None:
        return self.errors.new_mae

    def metrics(self) -> dict[str, float | None]:
        e = self.errors
        return {"old_mae": e.old_mae, "new_mae": e.new_mae, "mae_delta": e.mae_delta,
                "old_rmse": e.old_rmse, "new_rmse": e.new_rmse, "rmse_delta": e.rmse_delta}

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "errors": {"n": self.errors.n, "sum_abs_old": self.errors.sum_abs_old,
                       "sum_abs_new": self.errors.sum_abs_new,
                       "sum_sq_old": self.errors.sum_sq_old,
                       "sum_sq_new": self.errors.sum_sq_new,
                       "mean_d": self.mean_d, "var_d": self.var_d},
            "mae_delta_interval": list(self.mae_delta_interval)
            if self.mae_delta_interval else None,
            "wilcoxon": self.wilcoxon.to_dict(),
            "d_histogram": self.d_histogram.to_dict() if self.d_histogram else None,
            "error_histogram": self.error_histogram.to_dict() if self.error_histogram
            else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionSummary:
        e, w = d["errors"], d["wilcoxon"]
        ci = d.get("mae_delta_interval")
        return cls(
            d["tolerance"]["atol"], d["tolerance"]["rtol"],
            ErrorSums(e["n"], e["sum_abs_old"], e["sum_abs_new"], e["sum_sq_old"],
                      e["sum_sq_new"]),
            e.get("mean_d"), e.get("var_d"), tuple(ci) if ci else None,
            WilcoxonResult(w.get("statistic"), w.get("p_value"), w["method"],
                           w.get("n_nonzero", 0), w.get("zero_differences", 0)),
            Histogram.from_dict(d.get("d_histogram")),
            Histogram.from_dict(d.get("error_histogram")),
        )
