"""Uncertainty for the flip metrics: Wilson score intervals and McNemar's test.

Pure functions of counts; nothing here reads data, and nothing needs scipy: the exact
binomial tail is a finite sum of binomial coefficients and the chi-square tail with one
degree of freedom is ``erfc(sqrt(x / 2))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

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
