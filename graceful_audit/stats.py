"""Uncertainty for the flip and retrieval metrics: Wilson score intervals, McNemar's test,
Newcombe's interval for a difference of paired proportions and the paired t test.

Pure functions of counts (and, for the paired t test, of per-subject differences); nothing
here reads data. Only the t distribution needs scipy: the exact binomial tail is a finite
sum of binomial coefficients and the chi-square tail with one degree of freedom is
``erfc(sqrt(x / 2))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

#: ``b + c`` below this uses the exact binomial test; at or above it, the chi-square test
#: with Edwards' continuity correction (the rule of thumb statsmodels documents).
MCNEMAR_EXACT_BELOW = 25


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile for ``confidence`` (1.959963... for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(
    successes: int, n: int, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion ``successes / n``.

    With ``p = x / n`` and ``z`` the two-sided normal quantile::

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    Wilson, E. B. (1927). "Probable inference, the law of succession, and statistical
    inference". JASA 22(158). Same numbers as
    ``statsmodels.stats.proportion.proportion_confint(x, n, method="wilson")``.

    Returns ``None`` when ``n == 0`` (the rate itself is undefined).

    >>> lo, hi = wilson_interval(7, 107)
    >>> round(lo, 4), round(hi, 4)
    (0.032, 0.1289)
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    z = z_value(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    # At the edges the bound is exactly the estimate; rounding must not move it inward.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on the discordant pairs of a paired comparison.

    ``b`` counts examples the old model got right and the new one wrong (negative flips),
    ``c`` the reverse (positive flips). ``method`` is ``"exact"`` (two-sided exact binomial
    test of ``b`` against Binomial(b + c, 1/2)) or ``"chi2"`` (chi-square with one degree of
    freedom and continuity correction, statistic ``(|b - c| - 1)^2 / (b + c)``).
    """

    b: int
    c: int
    statistic: float | None
    p_value: float
    method: str

    def to_dict(self) -> dict[str, object]:
        return {
            "p_value": self.p_value,
            "method": self.method,
            "statistic": self.statistic,
            "negative_flips": self.b,
            "positive_flips": self.c,
            "continuity_correction": self.method == "chi2",
        }


def mcnemar(b: int, c: int) -> McNemarResult:
    """McNemar's test for "did the update change the error rate?".

    Exact binomial while ``b + c < 25``; chi-square with continuity correction otherwise.
    McNemar, Q. (1947). "Note on the sampling error of the difference between correlated
    proportions or percentages". Psychometrika 12(2). Same numbers as
    ``statsmodels.stats.contingency_tables.mcnemar(table, exact=..., correction=True)``.

    ``b + c == 0`` (the models never disagree on correctness) gives ``p_value = 1``.

    >>> mcnemar(7, 2).p_value  # doctest: +ELLIPSIS
    0.1796...
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    m = b + c
    if m == 0:
        return McNemarResult(b, c, None, 1.0, "exact")
    if m < MCNEMAR_EXACT_BELOW:
        tail = sum(math.comb(m, k) for k in range(min(b, c) + 1))  # exact integers
        p = min(1.0, 2.0 * tail / 2**m)
        return McNemarResult(b, c, float(min(b, c)), p, "exact")
    stat = (abs(b - c) - 1.0) ** 2 / m
    return McNemarResult(b, c, stat, math.erfc(math.sqrt(stat / 2.0)), "chi2")


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Interval for ``p1 - p2``, two proportions measured on the same ``n`` subjects.

    ``p1 = (both + first_only) / n`` and ``p2 = (both + second_only) / n`` (the paired 2x2
    table ``[[both, first_only], [second_only, neither]]``), so ``p1 - p2 = (first_only -
    second_only) / n``. Newcombe's hybrid score ("square-and-add") interval, method 10 of
    Newcombe (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17(22): with the Wilson
    intervals ``[l1, u1]`` of ``p1`` and ``[l2, u2]`` of ``p2`` (:func:`wilson_interval`)
    and ``D = p1 - p2``::

        lower = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        upper = D + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)

    where ``phi`` is the continuity-corrected correlation of the table: with ``A = both *
    neither - first_only * second_only`` and ``P`` the product of the four margins,
    ``(A - n/2) / sqrt(P)`` when ``A > n/2``, ``0`` when ``0 <= A <= n/2``, ``A / sqrt(P)``
    when ``A < 0``, and ``0`` when a margin is empty (as in Fagerland, Lydersen and Laake,
    *Statistical Analysis of Contingency Tables*, 2017, and Altman et al., *Statistics with
    Confidence*, 2000). Coverage stays near nominal for small discordant counts, where the
    Wald interval collapses. ``None`` when ``n == 0``.

    Cavo et al. (2012), Fagerland et al.'s example (their R package contingencytables
    gives -0.1186 to -0.0046):

    >>> lo, hi = paired_difference_interval(59, 6, 16, 80)
    >>> round(lo, 4), round(hi, 4)
    (-0.1186, -0.0046)
    """
    cells = (both, first_only, second_only, neither)
    if any(x < 0 for x in cells):
        raise ValueError(f"counts must be non-negative, got {cells}")
    n = sum(cells)
    if n == 0:
        return None
    x1, x2 = both + first_only, both + second_only
    l1, u1 = wilson_interval(x1, n, confidence=confidence)  # type: ignore[misc]
    l2, u2 = wilson_interval(x2, n, confidence=confidence)  # type: ignore[misc]
    p1, p2 = x1 / n, x2 / n
    margins = x1 * (n - x1) * x2 * (n - x2)
    a = both * neither - first_only * second_only
    if margins == 0 or 0 <= a <= n / 2:
        phi = 0.0
    else:
        phi = (a - n / 2 if a > n / 2 else a) / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                            + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                             + (p2 - l2) ** 2))
    return (max(-1.0, low), min(1.0, high))


@dataclass(frozen=True)
class PairedT:
    """Student's paired t test of ``mean(d)`` and its interval, ``d`` per subject.

    ``p_value`` and ``interval`` are ``None`` for fewer than two differences. When every
    difference is equal (``sd(d) == 0``) the interval is ``[mean, mean]`` and ``p_value`` is
    1 when the mean is zero, 0 otherwise (scipy returns NaN for the former).
    """

    n: int
    mean: float | None
    statistic: float | None
    p_value: float | None
    interval: tuple[float, float] | None


def paired_t(d: Any, *, confidence: float = 0.95) -> PairedT:
    """Paired t test and interval of the mean of the differences ``d`` (a 1-d array).

    Same numbers as ``r = scipy.stats.ttest_rel(x, y)`` with ``d = x - y``:
    ``r.pvalue`` and ``r.confidence_interval(confidence)``; the interval is
    :func:`graceful_audit.regression.paired_t_interval` (one formula for both audits).

    >>> r = paired_t([0.1, 0.3, -0.1, 0.5])
    >>> round(r.p_value, 4), [round(x, 4) for x in r.interval]
    (0.2191, [-0.2109, 0.6109])
    """
    import numpy as np

    from .regression import paired_t_interval

    x = np.asarray(d, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return PairedT(0, None, None, None, None)
    mean = float(x.mean())
    if n < 2:
        return PairedT(n, mean, None, None, None)
    var = float(x.var(ddof=1))
    interval = paired_t_interval(mean, var, n, confidence=confidence)
    if var <= 0.0:
        return PairedT(n, mean, None, 1.0 if mean == 0.0 else 0.0, (mean, mean))
    from scipy.special import stdtr  # what scipy.stats.t.sf calls; scipy.stats loads slowly

    stat = mean / math.sqrt(var / n)
    return PairedT(n, mean, stat, float(min(1.0, 2.0 * stdtr(n - 1, -abs(stat)))), interval)
