"""Wilson intervals, McNemar's test, Newcombe's paired interval and the paired t test
against statsmodels, scipy, published and hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ttest_rel
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint

from graceful_audit.stats import (
    MCNEMAR_EXACT_BELOW,
    PairedT,
    mcnemar,
    paired_difference_interval,
    paired_t,
    wilson_interval,
    z_value,
)

TOL = 1e-12


def _wilson_grid() -> list[tuple[int, int, float]]:
    cases = []
    for n in (1, 2, 3, 7, 10, 25, 107, 1000, 123_457):
        for x in sorted({0, 1, n // 2, n - 1, n}):
            for conf in (0.8, 0.95, 0.99):
                cases.append((x, n, conf))
    return cases


@pytest.mark.parametrize(("x", "n", "conf"), _wilson_grid())
def test_wilson_matches_statsmodels(x: int, n: int, conf: float) -> None:
    lo, hi = wilson_interval(x, n, confidence=conf)
    sm_lo, sm_hi = proportion_confint(x, n, alpha=1 - conf, method="wilson")
    assert lo == pytest.approx(max(0.0, sm_lo), abs=TOL)
    assert hi == pytest.approx(min(1.0, sm_hi), abs=TOL)
    assert lo >= 0.0 and hi <= 1.0
    assert lo - TOL <= x / n <= hi + TOL


def test_wilson_contains_the_estimate_exactly_at_the_edges() -> None:
    # Exact Wilson bounds: x = 0 -> lower bound 0; x = n -> upper bound 1.
    for _x, n, conf in _wilson_grid():
        assert wilson_interval(0, n, confidence=conf)[0] == 0.0, (n, conf)
        assert wilson_interval(n, n, confidence=conf)[1] == 1.0, (n, conf)


def test_wilson_hand_worked() -> None:
    # x = 7, n = 107, z = 1.959964 (95%): p = 7/107 = 0.0654206, z^2/n = 0.0359015
    # centre = (p + z^2/(2n)) / (1 + z^2/n) = (0.0654206 + 0.0179507) / 1.0359015 = 0.0804819
    # half = z / 1.0359015 * sqrt(p(1-p)/n + z^2/(4n^2))
    #      = 1.8920370 * sqrt(0.000571383 + 0.000083914) = 1.8920370 * 0.0255986 = 0.0484336
    # -> [0.0320483, 0.1289155]
    lo, hi = wilson_interval(7, 107)
    assert lo == pytest.approx(0.0320483, abs=1e-7)
    assert hi == pytest.approx(0.1289155, abs=1e-7)


def test_wilson_default_confidence_is_95() -> None:
    assert wilson_interval(3, 40) == wilson_interval(3, 40, confidence=0.95)
    assert z_value(0.95) == pytest.approx(1.959963984540054, abs=1e-12)


def test_wilson_wider_with_higher_confidence() -> None:
    a, b, c = (wilson_interval(5, 50, confidence=k) for k in (0.8, 0.95, 0.99))
    assert c[0] < b[0] < a[0] and a[1] < b[1] < c[1]


def test_wilson_zero_n_is_none() -> None:
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 0, confidence=0.8) is None


@pytest.mark.parametrize(
    ("x", "n", "kwargs"),
    [
        pytest.param(-1, 10, {}, id="negative-successes"),
        pytest.param(11, 10, {}, id="successes-above-n"),
        pytest.param(0, -1, {}, id="negative-n"),
        pytest.param(1, 10, {"confidence": 0.0}, id="confidence-0"),
        pytest.param(1, 10, {"confidence": 1.0}, id="confidence-1"),
        pytest.param(1, 10, {"confidence": 1.5}, id="confidence-1.5"),
        pytest.param(1, 10, {"confidence": -0.2}, id="confidence-negative"),
        pytest.param(1, 10, {"confidence": math.nan}, id="confidence-nan"),
    ],
)
def test_wilson_invalid_inputs_raise(x: int, n: int, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        wilson_interval(x, n, **kwargs)


def _mcnemar_grid() -> list[tuple[int, int]]:
    pairs = [(b, c) for b in range(0, 14) for c in range(0, 14)]
    pairs += [(24, 0), (0, 24), (12, 12), (13, 12), (20, 5), (25, 0), (0, 25), (13, 13),
              (30, 10), (10, 30), (100, 100), (101, 100), (400, 350), (5, 1000)]
    return pairs


@pytest.mark.parametrize(("b", "c"), _mcnemar_grid())
def test_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    # The diagonal cells do not enter McNemar's test; make them arbitrary.
    table = [[17, b], [c, 3]]
    ours = mcnemar(b, c)
    if b + c == 0:
        assert ours.p_value == 1.0 and ours.method == "exact"
        return
    if b + c < MCNEMAR_EXACT_BELOW:
        ref = sm_mcnemar(table, exact=True)
        assert ours.method == "exact"
    else:
        ref = sm_mcnemar(table, exact=False, correction=True)
        assert ours.method == "chi2"
        assert ours.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert ours.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert 0.0 <= ours.p_value <= 1.0
    assert (ours.b, ours.c) == (b, c)


def test_mcnemar_threshold_is_25() -> None:
    assert MCNEMAR_EXACT_BELOW == 25
    assert mcnemar(24, 0).method == "exact"
    assert mcnemar(12, 12).method == "exact"
    assert mcnemar(25, 0).method == "chi2"
    assert mcnemar(13, 12).method == "chi2"


def test_mcnemar_hand_worked_exact() -> None:
    # b = 7 negative flips, c = 2 positive flips, m = 9 discordant pairs.
    # Under H0 b ~ Binomial(9, 1/2); two-sided exact p = 2 * P(B <= min(b, c) = 2)
    #   = 2 * (C(9,0) + C(9,1) + C(9,2)) / 2^9 = 2 * (1 + 9 + 36) / 512 = 92 / 512 = 0.1796875
    r = mcnemar(7, 2)
    assert r.p_value == pytest.approx(0.1796875, abs=1e-15)
    assert r.method == "exact"
    assert mcnemar(2, 7).p_value == pytest.approx(0.1796875, abs=1e-15)  # symmetric


def test_mcnemar_hand_worked_exact_capped_at_one() -> None:
    # b = c = 3: 2 * P(B <= 3 | m = 6) = 2 * (1 + 6 + 15 + 20) / 64 = 84 / 64 > 1 -> 1
    assert mcnemar(3, 3).p_value == 1.0


def test_mcnemar_hand_worked_chi2() -> None:
    # b = 30, c = 10: statistic (|30 - 10| - 1)^2 / 40 = 361 / 40 = 9.025;
    # p = P(chi2_1 > 9.025) = erfc(sqrt(9.025 / 2))
    r = mcnemar(30, 10)
    assert r.method == "chi2"
    assert r.statistic == pytest.approx(9.025, abs=1e-12)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), abs=1e-12)
    assert r.to_dict()["continuity_correction"] is True


def test_mcnemar_no_discordant_pairs() -> None:
    r = mcnemar(0, 0)
    assert r.p_value == 1.0
    assert r.to_dict()["p_value"] == 1.0


@pytest.mark.parametrize(("b", "c"), [(-1, 0), (0, -1), (-3, -3)])
def test_mcnemar_negative_counts_raise(b: int, c: int) -> None:
    with pytest.raises(ValueError):
        mcnemar(b, c)


def test_mcnemar_to_dict_fields() -> None:
    d = mcnemar(7, 2).to_dict()
    assert d["method"] == "exact"
    assert d["negative_flips"] == 7 and d["positive_flips"] == 2
    assert d["continuity_correction"] is False


# --------------------------------------------------------------------------- paired


def _newcombe_by_hand(both: int, first: int, second: int, neither: int,
                      conf: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 written out again, Wilson limits from statsmodels."""
    n = both + first + second + neither
    x1, x2 = both + first, both + second
    p1, p2 = x1 / n, x2 / n
    l1, u1 = proportion_confint(x1, n, alpha=1 - conf, method="wilson")
    l2, u2 = proportion_confint(x2, n, alpha=1 - conf, method="wilson")
    l1, l2, u1, u2 = max(l1, 0), max(l2, 0), min(u1, 1), min(u2, 1)
    margins = x1 * (n - x1) * x2 * (n - x2)
    a = both * neither - first * second
    phi = 0.0 if margins == 0 else (a - n / 2) / math.sqrt(margins) if a > n / 2 else (
        a / math.sqrt(margins) if a < 0 else 0.0)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return max(lo, -1.0), min(hi, 1.0)


def test_newcombe_paired_interval_published_example() -> None:
    # Cavo et al. (2012) in Fagerland, Lydersen & Laake, Statistical Analysis of Contingency
    # Tables (2017), ch. 8: estimate -0.0621, Newcombe square-and-add -0.1186 to -0.0046.
    lo, hi = paired_difference_interval(59, 6, 16, 80)
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)


@pytest.mark.parametrize("conf", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("cells", [(59, 6, 16, 80), (355, 1, 2, 2), (0, 0, 0, 5), (3, 0, 0, 0),
                                   (1, 1, 7, 12), (10, 0, 9, 1), (0, 4, 0, 0), (2, 5, 3, 40),
                                   (30, 0, 0, 30), (0, 20, 20, 0)])
def test_newcombe_paired_interval_matches_an_independent_computation(cells, conf) -> None:
    lo, hi = paired_difference_interval(*cells, confidence=conf)
    want = _newcombe_by_hand(*cells, conf)
    assert lo == pytest.approx(want[0], abs=1e-12) and hi == pytest.approx(want[1], abs=1e-12)
    n = sum(cells)
    assert lo - 1e-12 <= (cells[1] - cells[2]) / n <= hi + 1e-12


def test_newcombe_paired_interval_edges() -> None:
    assert paired_difference_interval(0, 0, 0, 0) is None
    with pytest.raises(ValueError):
        paired_difference_interval(1, -1, 0, 0)
    # Swapping the two measurements mirrors the interval.
    lo, hi = paired_difference_interval(12, 3, 8, 7)
    lo2, hi2 = paired_difference_interval(12, 8, 3, 7)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("conf", [0.9, 0.95])
def test_paired_t_matches_scipy(seed: int, conf: float) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    x, y = rng.uniform(size=n), rng.uniform(size=n) * rng.uniform()
    r = paired_t(x - y, confidence=conf)
    want = ttest_rel(x, y)
    ci = want.confidence_interval(conf)
    assert r.p_value == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
    assert r.statistic == pytest.approx(want.statistic, rel=1e-9)
    assert r.interval == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    assert r.n == n and r.mean == pytest.approx(float(np.mean(x - y)))


def test_paired_t_degenerate_inputs() -> None:
    assert paired_t([]) == PairedT(0, None, None, None, None)
    one = paired_t([0.25])
    assert one.p_value is None and one.interval is None and one.mean == 0.25
    # All differences equal: scipy gives NaN; no difference at all is p = 1, a constant
    # non-zero difference p = 0, and the interval is the point.
    assert paired_t([0.0, 0.0, 0.0]) == PairedT(3, 0.0, None, 1.0, (0.0, 0.0))
    assert paired_t([0.5, 0.5]) == PairedT(2, 0.5, None, 0.0, (0.5, 0.5))
