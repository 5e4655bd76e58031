"""Property tests (hypothesis): identities between the flip metrics, and invariances of
the whole audit under row order and id type."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from graceful_audit.flips import audit_flips
from graceful_audit.metrics import PROPORTIONS, FlipCounts, FlipMetrics, rate

FAST = settings(max_examples=60, deadline=None, database=None)
E2E = settings(max_examples=15, deadline=None, database=None)


@st.composite
def flip_counts(draw: st.DrawFn, max_value: int = 10_000) -> FlipCounts:
    both_wrong = draw(st.integers(0, max_value))
    return FlipCounts(
        both_right=draw(st.integers(0, max_value)),
        negative_flips=draw(st.integers(0, max_value)),
        positive_flips=draw(st.integers(0, max_value)),
        both_wrong=both_wrong,
        both_wrong_disagree=draw(st.integers(0, both_wrong)),
    )


@st.composite
def label_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = draw(st.integers(1, 80))
    k = draw(st.integers(1, 5))
    arr = st.lists(st.integers(0, k - 1), min_size=size, max_size=size)
    return tuple(np.array(draw(arr)) for _ in range(3))  # type: ignore[return-value]


def swap(c: FlipCounts) -> FlipCounts:
    """The same examples with the old and new model exchanged."""
    return FlipCounts(c.both_right, c.positive_flips, c.negative_flips, c.both_wrong,
                      c.both_wrong_disagree)


@FAST
@given(flip_counts())
def test_rates_are_proportions_or_none(c: FlipCounts) -> None:
    m = FlipMetrics.from_counts(c)
    for p in PROPORTIONS:
        v = getattr(m, p.name)
        if p.denominator(c) == 0:
            assert v is None, p.name
        else:
            assert isinstance(v, float) and 0.0 <= v <= 1.0, p.name
    if m.relative_negative_flip_rate is not None:
        assert m.relative_negative_flip_rate >= 0.0
    if m.error_rate_delta is not None:
        assert -1.0 <= m.error_rate_delta <= 1.0


@FAST
@given(flip_counts())
def test_error_rate_delta_is_nfr_minus_pfr(c: FlipCounts) -> None:
    m = FlipMetrics.from_counts(c)
    if c.n == 0:
        assert m.error_rate_delta is None
        return
    assert abs(m.error_rate_delta - (m.negative_flip_rate - m.positive_flip_rate)) <= 1e-12
    assert abs(m.error_rate_delta - (m.new_error_rate - m.old_error_rate)) <= 1e-12


@FAST
@given(flip_counts())
def test_swapping_models_swaps_nfr_and_pfr(c: FlipCounts) -> None:
    a, b = FlipMetrics.from_counts(c), FlipMetrics.from_counts(swap(c))
    assert (a.negative_flips, a.positive_flips) == (b.positive_flips, b.negative_flips)
    assert a.negative_flip_rate == b.positive_flip_rate
    assert a.positive_flip_rate == b.negative_flip_rate
    assert (a.old_error_rate, a.new_error_rate) == (b.new_error_rate, b.old_error_rate)
    assert a.churn_rate == b.churn_rate
    if c.n:
        assert abs(a.error_rate_delta + b.error_rate_delta) <= 1e-12
    # NFI + BEC == 1: both divide by the new model's errors (negative flips + both wrong)
    if a.backward_error_compatibility is not None:
        assert abs(a.negative_flip_impact + a.backward_error_compatibility - 1) <= 1e-12
    else:
        assert a.negative_flip_impact is None


@FAST
@given(flip_counts())
def test_churn_covers_every_flip(c: FlipCounts) -> None:
    m = FlipMetrics.from_counts(c)
    if c.n == 0:
        assert m.churn_rate is None
        return
    assert m.churn_rate >= m.negative_flip_rate + m.positive_flip_rate - 1e-12
    assert m.churn_rate <= m.negative_flip_rate + m.positive_flip_rate + (
        c.both_wrong / c.n) + 1e-12


@FAST
@given(flip_counts())
def test_btc_and_nfr_complement(c: FlipCounts) -> None:
    # BTC = both_right / old_right and NFR / (1 - ER_old) = negative_flips / old_right
    m = FlipMetrics.from_counts(c)
    if c.old_right == 0:
        assert m.backward_trust_compatibility is None
        return
    assert abs(m.backward_trust_compatibility
               + m.negative_flip_rate / (1 - m.old_error_rate) - 1) <= 1e-9


@FAST
@given(label_arrays())
def test_counts_from_arrays(arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, o, n = arrays
    c = FlipCounts.from_predictions(y, o, n)
    assert c.n == len(y)
    assert c.negative_flips == int(np.sum((o == y) & (n != y)))
    assert c.positive_flips == int(np.sum((o != y) & (n == y)))
    assert c.disagreements == int(np.sum(o != n))
    assert c.old_errors == int(np.sum(o != y)) and c.new_errors == int(np.sum(n != y))
    # per-class counts add up to the overall counts
    per_class = [FlipCounts.from_predictions(y[y == k], o[y == k], n[y == k])
                 for k in np.unique(y)]
    assert sum(per_class, FlipCounts()) == c
    # swapping old and new predictions swaps the flips
    assert FlipCounts.from_predictions(y, n, o) == swap(c)
    # permuting examples changes nothing
    perm = np.random.default_rng(len(y)).permutation(len(y))
    assert FlipCounts.from_predictions(y[perm], o[perm], n[perm]) == c


@FAST
@given(label_arrays())
def test_rate_helper_matches_arrays(arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    y, o, n = arrays
    c = FlipCounts.from_predictions(y, o, n)
    assert abs(rate("negative_flip_rate", c) - np.mean((o == y) & (n != y))) <= 1e-12
    assert abs(rate("churn_rate", c) - np.mean(o != n)) <= 1e-12
    assert abs(rate("old_error_rate", c) - np.mean(o != y)) <= 1e-12


# --- end to end ---------------------------------------------------------------------------


@st.composite
def prediction_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    size = draw(st.integers(1, 40))
    k = draw(st.integers(2, 4))
    # four-digit ids: their text order is their numeric order, so ties in the worst-flip
    # list are broken the same way whatever the id type
    ids = draw(st.lists(st.integers(1000, 9999), min_size=size, max_size=size, unique=True))
    classes = st.integers(0, k - 1)

    def col(strategy: st.SearchStrategy) -> list:
        return draw(st.lists(strategy, min_size=size, max_size=size))

    y = col(classes)
    scores = st.sampled_from([0.1, 0.25, 0.5, 0.9])  # coarse: ties in confidence happen
    old = pd.DataFrame({"id": ids, "label": y, "pred": col(classes),
                        "seg": col(st.sampled_from(["a", "b", None]))})
    new = pd.DataFrame({"id": ids, "pred": col(classes)})
    for frame in (old, new):
        for i in range(k):
            frame[f"prob_{i}"] = col(scores)
    return old, new


def audit(old: pd.DataFrame, new: pd.DataFrame) -> dict:
    return audit_flips(old, new, score_cols="prob_*", slice_by=["seg"], top=100).to_dict()


@E2E
@given(prediction_frames(), st.integers(0, 2**32 - 1))
def test_row_order_and_id_type_change_no_number(
    frames: tuple[pd.DataFrame, pd.DataFrame], seed: int
) -> None:
    old, new = frames
    base = audit(old, new)
    rng = np.random.default_rng(seed)
    shuffled = audit(old.iloc[rng.permutation(len(old))], new.iloc[rng.permutation(len(new))])
    as_text = audit(old.assign(id=old["id"].astype(str)), new.assign(id=new["id"].astype(str)))
    for other in (shuffled, as_text):
        assert other["inputs"]["old"]["path"] == other["inputs"]["new"]["path"] == "<DataFrame>"
        assert other == base

    m = base["metrics"]
    assert abs(m["error_rate_delta"] - (m["negative_flip_rate"] - m["positive_flip_rate"])) \
        <= 1e-12
    total = base["counts"]
    for groups in ([r["counts"] for r in base["per_class"]],
                   [r["counts"] for r in base["slices"]["seg"]]):
        for key, value in total.items():
            assert sum(g[key] for g in groups) == value
    assert len(base["top_negative_flips"]) == m["negative_flips"]


@E2E
@given(prediction_frames())
def test_swapping_files_swaps_flips_end_to_end(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    old, new = frames
    a = audit(old, new)["metrics"]
    swapped_old = new.assign(label=old["label"].to_numpy())
    swapped_new = old.drop(columns=["label"])
    b = audit_flips(swapped_old, swapped_new).to_dict()["metrics"]
    assert (a["negative_flips"], a["positive_flips"]) == (b["positive_flips"], b["negative_flips"])
    assert a["negative_flip_rate"] == b["positive_flip_rate"]
    assert abs(a["error_rate_delta"] + b["error_rate_delta"]) <= 1e-12
    assert a["churn_rate"] == b["churn_rate"]


def test_flip_metrics_fields_are_json_document_metrics() -> None:
    # the property tests above compare to_dict() wholesale; make sure it holds every metric
    old = pd.DataFrame({"id": [1, 2], "label": [0, 1], "pred": [0, 0]})
    new = pd.DataFrame({"id": [2, 1], "pred": [1, 1]})
    d = audit_flips(old, new).to_dict()
    assert set(d["metrics"]) == {f.name for f in dataclasses.fields(FlipMetrics)}
