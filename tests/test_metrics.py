"""Flip metrics: hand-worked examples, brute force and scikit-learn cross-checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix

from graceful_audit import metrics as metrics_module
from graceful_audit.metrics import (
    PROPORTION_BY_NAME,
    PROPORTIONS,
    FlipCounts,
    FlipMetrics,
    error_rate_delta,
    rate,
    relative_negative_flip_rate,
)

# --- the hand-worked example ---------------------------------------------------------------
#
#  #   y  o  n   old ok  new ok   kind
#  1   0  0  0   yes     yes      both right
#  2   0  0  1   yes     no       negative flip   (0 -> 1)
#  3   0  1  0   no      yes      positive flip
#  4   1  1  1   yes     yes      both right
#  5   1  1  2   yes     no       negative flip   (1 -> 2)
#  6   1  0  1   no      yes      positive flip
#  7   2  2  2   yes     yes      both right
#  8   2  2  0   yes     no       negative flip   (2 -> 0)
#  9   2  1  0   no      no       both wrong, o != n
# 10   2  0  0   no      no       both wrong, o == n
#
# both_right = 3, negative_flips = 3, positive_flips = 2, both_wrong = 2, disagree = 1
# N = 10; old errors = positive + both wrong = 2 + 2 = 4
#   ER_old = 4/10 = 0.4;  new errors = negative + both wrong = 3 + 2 = 5, ER_new = 0.5
#   error_rate_delta = 0.5 - 0.4 = 0.1 = NFR - PFR = 0.3 - 0.2
#   NFI   = NFR / ER_new = 0.3 / 0.5 = 0.6           (= 3 negative flips / 5 new errors)
#   churn = #(o != n) / N = (3 + 2 + 1) / 10 = 0.6   (rows 2, 3, 5, 6, 8, 9)
#   BTC   = both right / old right = 3 / 6 = 0.5
#   BEC   = both wrong / NEW errors = 2 / 5 = 0.4    (old-error denominator would give 2/4)
#   relative NFR = 0.3 / ((1 - 0.4) * 0.5) = 0.3 / 0.3 = 1.0
Y_TRUE = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
OLD_PRED = [0, 0, 1, 1, 1, 0, 2, 2, 1, 0]
NEW_PRED = [0, 1, 0, 1, 2, 1, 2, 0, 0, 0]
HAND = FlipCounts(both_right=3, negative_flips=3, positive_flips=2, both_wrong=2,
                  both_wrong_disagree=1)


def brute_force(y, o, n) -> FlipCounts:
    d = dict.fromkeys(("both_right", "negative_flips", "positive_flips", "both_wrong",
                       "both_wrong_disagree"), 0)
    for yi, oi, ni in zip(y, o, n, strict=True):
        if oi == yi and ni == yi:
            d["both_right"] += 1
        elif oi == yi:
            d["negative_flips"] += 1
        elif ni == yi:
            d["positive_flips"] += 1
        else:
            d["both_wrong"] += 1
            if oi != ni:
                d["both_wrong_disagree"] += 1
    return FlipCounts(**d)


def test_hand_worked_counts() -> None:
    c = FlipCounts.from_predictions(Y_TRUE, OLD_PRED, NEW_PRED)
    assert c == HAND
    assert c == brute_force(Y_TRUE, OLD_PRED, NEW_PRED)
    assert (c.n, c.old_right, c.old_errors, c.new_errors, c.disagreements) == (10, 6, 4, 5, 6)


def test_hand_worked_metrics() -> None:
    m = FlipMetrics.from_counts(HAND)
    assert m.n == 10
    assert m.negative_flips == 3 and m.positive_flips == 2
    expected = {
        "old_error_rate": 0.4, "new_error_rate": 0.5, "error_rate_delta": 0.1,
        "negative_flip_rate": 0.3, "positive_flip_rate": 0.2, "negative_flip_impact": 0.6,
        "churn_rate": 0.6, "backward_trust_compatibility": 0.5,
        "backward_error_compatibility": 0.4, "relative_negative_flip_rate": 1.0,
    }
    for name, value in expected.items():
        assert getattr(m, name) == pytest.approx(value, abs=1e-12), name


def test_hand_worked_per_class() -> None:
    # class 0 = rows 1-3: 1 both right, 1 negative, 1 positive
    # class 1 = rows 4-6: the same; class 2 = rows 7-10: 1, 1, 0, both wrong 2 (1 disagree)
    y, o, n = map(np.asarray, (Y_TRUE, OLD_PRED, NEW_PRED))
    per = {k: FlipCounts.from_predictions(y[y == k], o[y == k], n[y == k]) for k in (0, 1, 2)}
    assert per[0] == FlipCounts(1, 1, 1, 0, 0)
    assert per[1] == FlipCounts(1, 1, 1, 0, 0)
    assert per[2] == FlipCounts(1, 1, 0, 2, 1)
    assert per[0] + per[1] + per[2] == HAND


def test_bec_uses_new_model_errors_as_denominator() -> None:
    # KDD 2020 paper: BEC = #(both wrong) / #(new wrong). Here old errors (2 + 6 = 8) differ
    # from new errors (4 + 6 = 10): paper -> 6/10 = 0.6, BackwardCompatibilityML -> 6/8.
    c = FlipCounts(both_right=80, negative_flips=4, positive_flips=2, both_wrong=6)
    assert c.old_errors == 8 and c.new_errors == 10
    assert rate("backward_error_compatibility", c) == pytest.approx(0.6, abs=1e-15)
    assert rate("backward_error_compatibility", c) != pytest.approx(6 / 8)
    # ... and the module says so, so nobody "fixes" it.
    doc = metrics_module.__doc__ or ""
    assert "#(o != y and n != y) / #(n != y)" in doc


def test_nfi_is_nfr_over_new_error_rate() -> None:
    c = FlipCounts(both_right=50, negative_flips=7, positive_flips=9, both_wrong=13)
    nfr = rate("negative_flip_rate", c)
    er_new = rate("new_error_rate", c)
    assert rate("negative_flip_impact", c) == pytest.approx(nfr / er_new, abs=1e-15)


def test_error_rate_delta_equals_nfr_minus_pfr() -> None:
    for c in (HAND, FlipCounts(92, 3, 5, 0), FlipCounts(1, 0, 0, 0), FlipCounts(0, 4, 0, 1)):
        delta = error_rate_delta(c)
        assert delta == pytest.approx(
            rate("negative_flip_rate", c) - rate("positive_flip_rate", c), abs=1e-15)
        assert delta == pytest.approx(
            rate("new_error_rate", c) - rate("old_error_rate", c), abs=1e-15)
    # docstring example: (3 - 5) / 100
    assert error_rate_delta(FlipCounts(both_right=92, negative_flips=3, positive_flips=5)) == -0.02


def _assert_no_nan(m: FlipMetrics) -> None:
    for f in dataclasses.fields(m):
        v = getattr(m, f.name)
        assert v is None or not math.isnan(v), f.name


def test_old_model_always_wrong_gives_btc_none() -> None:
    # old never right -> #(o == y) = 0: BTC undefined, relative NFR undefined
    c = FlipCounts.from_predictions([0, 1, 2, 0], [1, 2, 0, 2], [0, 2, 1, 2])
    assert c.old_right == 0
    m = FlipMetrics.from_counts(c)
    assert m.backward_trust_compatibility is None
    assert m.relative_negative_flip_rate is None
    assert m.negative_flip_rate == 0.0
    assert m.old_error_rate == 1.0
    _assert_no_nan(m)


def test_new_model_never_wrong_gives_nfi_and_bec_none() -> None:
    c = FlipCounts.from_predictions([0, 1, 2, 0], [0, 2, 0, 0], [0, 1, 2, 0])
    assert c.new_errors == 0
    m = FlipMetrics.from_counts(c)
    assert m.negative_flip_impact is None
    assert m.backward_error_compatibility is None
    assert m.relative_negative_flip_rate is None
    assert m.new_error_rate == 0.0
    assert m.backward_trust_compatibility == 1.0
    _assert_no_nan(m)


def test_empty_counts_give_none_everywhere() -> None:
    m = FlipMetrics.from_counts(FlipCounts())
    assert m.n == 0 and m.negative_flips == 0 and m.positive_flips == 0
    for f in dataclasses.fields(m):
        if f.name not in ("n", "negative_flips", "positive_flips"):
            assert getattr(m, f.name) is None, f.name
    assert error_rate_delta(FlipCounts()) is None
    assert relative_negative_flip_rate(FlipCounts()) is None


def test_churn_can_be_switched_off() -> None:
    assert FlipMetrics.from_counts(HAND, churn=False).churn_rate is None


def test_proportions_cover_every_rate() -> None:
    names = [p.name for p in PROPORTIONS]
    assert len(set(names)) == len(names)
    fields = {f.name for f in dataclasses.fields(FlipMetrics)}
    assert set(names) <= fields
    assert set(PROPORTION_BY_NAME) == set(names)
    for p in PROPORTIONS:  # value() is numerator / denominator
        assert p.value(HAND) == pytest.approx(p.numerator(HAND) / p.denominator(HAND))


@pytest.mark.parametrize("seed", range(8))
def test_from_predictions_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 400))
    k = int(rng.integers(2, 6))
    y = rng.integers(0, k, size)
    o = np.where(rng.random(size) < 0.6, y, rng.integers(0, k, size))
    n = np.where(rng.random(size) < 0.7, y, rng.integers(0, k, size))
    assert FlipCounts.from_predictions(y, o, n) == brute_force(y, o, n)
    # string classes give the same counts
    names = np.array([f"class {i}" for i in range(k)])
    assert FlipCounts.from_predictions(names[y], list(names[o]), names[n]) == brute_force(y, o, n)


@pytest.mark.parametrize("seed", range(8))
def test_sklearn_cross_checks(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    size = int(rng.integers(20, 500))
    k = int(rng.integers(2, 8))
    y = rng.integers(0, k, size)
    o = np.where(rng.random(size) < 0.7, y, rng.integers(0, k, size))
    n = np.where(rng.random(size) < 0.75, y, rng.integers(0, k, size))
    m = FlipMetrics.from_counts(FlipCounts.from_predictions(y, o, n))

    assert m.old_error_rate == pytest.approx(1 - accuracy_score(y, o), abs=1e-12)
    assert m.new_error_rate == pytest.approx(1 - accuracy_score(y, n), abs=1e-12)
    assert m.error_rate_delta == pytest.approx(accuracy_score(y, o) - accuracy_score(y, n),
                                               abs=1e-12)
    assert m.churn_rate == pytest.approx(1 - accuracy_score(o, n), abs=1e-12)
    # rows: old right? (False, True); columns: new right? (False, True)
    (bw, pf), (nf, br) = confusion_matrix(o == y, n == y, labels=[False, True])
    assert m.n == size
    assert m.negative_flips == nf and m.positive_flips == pf
    assert m.negative_flip_rate == pytest.approx(nf / size, abs=1e-12)
    assert m.positive_flip_rate == pytest.approx(pf / size, abs=1e-12)
    if nf + bw:
        assert m.negative_flip_impact == pytest.approx(nf / (nf + bw), abs=1e-12)
        assert m.backward_error_compatibility == pytest.approx(bw / (nf + bw), abs=1e-12)
    if br + nf:
        assert m.backward_trust_compatibility == pytest.approx(br / (br + nf), abs=1e-12)
        # BTC as sklearn's recall of "new right" among the examples the old model got right
        old_right = o == y
        assert m.backward_trust_compatibility == pytest.approx(
            accuracy_score(y[old_right], n[old_right]), abs=1e-12)
    er_old, er_new = 1 - accuracy_score(y, o), 1 - accuracy_score(y, n)
    if er_new and er_old < 1:
        assert m.relative_negative_flip_rate == pytest.approx(
            (nf / size) / ((1 - er_old) * er_new), rel=1e-12)


def test_from_predictions_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        FlipCounts.from_predictions([0, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ValueError):
        FlipCounts.from_predictions([[0, 1]], [[0, 1]], [[0, 1]])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"both_right": -1}, id="negative-both-right"),
        pytest.param({"negative_flips": -1}, id="negative-nf"),
        pytest.param({"positive_flips": -2}, id="negative-pf"),
        pytest.param({"both_wrong": -1}, id="negative-bw"),
        pytest.param({"both_wrong": 1, "both_wrong_disagree": 2}, id="disagree-above-bw"),
        pytest.param({"both_wrong": 1, "both_wrong_disagree": -1}, id="negative-disagree"),
    ],
)
def test_flip_counts_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FlipCounts(**kwargs)


def test_flip_counts_add() -> None:
    a = FlipCounts(1, 2, 3, 4, 1)
    b = FlipCounts(10, 20, 30, 40, 4)
    assert a + b == FlipCounts(11, 22, 33, 44, 5)
    assert sum([a, b], FlipCounts()) == a + b
