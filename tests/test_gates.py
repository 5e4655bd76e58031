"""Gates: thresholds, boundaries, undefined metrics, worst class / slice, overall verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from graceful_audit.errors import UsageError
from graceful_audit.flips import audit_flips
from graceful_audit.gates import GATES, GateResult, GateSpec, check_threshold, evaluate_gates
from graceful_audit.metrics import FlipCounts
from graceful_audit.result import GroupRow

ABOVE = math.inf  # marker: "just above the threshold" (next float up)


@dataclass
class FakeResult:
    """The interface evaluate_gates needs: metric_value, per_class and slices."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    per_class: tuple[GroupRow, ...] = ()
    slices: dict[str, tuple[GroupRow, ...]] = field(default_factory=dict)

    def metric_value(self, name: str) -> float | None:
        return self.metrics.get(name)


def row(value: str | None, negative_flips: int, n: int) -> GroupRow:
    return GroupRow(value, FlipCounts(both_right=n - negative_flips, negative_flips=negative_flips))


def up(x: float) -> float:
    return float(np.nextafter(x, math.inf))


def down(x: float) -> float:
    return float(np.nextafter(x, -math.inf))


# (gate, metric value, threshold, expected status)
CASES = [
    ("max-nfr", 1 / 100, 0.01, "pass"),  # exactly equal holds
    ("max-nfr", up(0.01), 0.01, "fail"),  # one ulp above breaches
    ("max-nfr", 0.0, 0.0, "pass"),
    ("max-nfr", 1e-300, 0.0, "fail"),
    ("max-nfr", 1.0, 1.0, "pass"),
    ("max-nfr", None, 0.01, "n/a"),
    ("max-nfi", 0.25, 0.25, "pass"),
    ("max-nfi", 0.2500001, 0.25, "fail"),
    ("max-nfi", None, 0.0, "n/a"),  # new model never wrong: NFI undefined
    ("max-error-delta", -0.02, -0.02, "pass"),  # negative threshold: must improve by 2 points
    ("max-error-delta", down(-0.02), -0.02, "pass"),
    ("max-error-delta", up(-0.02), -0.02, "fail"),
    ("max-error-delta", 0.0, -0.02, "fail"),
    ("max-error-delta", -1.0, -1.0, "pass"),
    ("max-error-delta", 0.3, 1.0, "pass"),
    ("min-btc", 9 / 10, 0.9, "pass"),  # exactly equal holds for a min gate too
    ("min-btc", down(0.9), 0.9, "fail"),  # one ulp below breaches
    ("min-btc", up(0.9), 0.9, "pass"),
    ("min-btc", 0.0, 0.0, "pass"),
    ("min-btc", 1.0, 1.0, "pass"),
    ("min-btc", None, 0.99, "n/a"),  # old model always wrong: BTC undefined
    ("max-churn", 0.05, 0.05, "pass"),
    ("max-churn", up(0.05), 0.05, "fail"),
    ("max-churn", None, 0.05, "n/a"),
]


@pytest.mark.parametrize(
    ("gate", "value", "threshold", "status"),
    CASES,
    ids=[f"{g}-{v!r}-vs-{t!r}-{s}" for g, v, t, s in CASES],
)
def test_gate_boundaries(gate: str, value: float | None, threshold: float, status: str) -> None:
    metric = GATES[gate].metric
    (res,) = evaluate_gates(FakeResult({metric: value}), [GateSpec(gate, threshold)])
    assert res.status == status
    assert res.passed is (status != "fail")
    assert res.name == gate and res.metric == metric
    assert res.threshold == threshold and res.value == value
    assert res.direction == GATES[gate].direction
    d = res.to_dict()
    assert d["passed"] is res.passed and d["status"] == status and d["value"] == value
    assert GateResult.from_dict(d) == res


BAD_THRESHOLDS = [
    ("max-nfr", -0.01),
    ("max-nfr", 1.01),
    ("max-nfr", math.nan),
    ("max-nfr", math.inf),
    ("max-nfr", True),
    ("max-nfr", "abc"),
    ("max-nfr", None),
    ("max-nfi", 2),
    ("min-btc", -math.inf),
    ("min-btc", False),
    ("max-churn", "1.5"),
    ("max-class-nfr", -1e-9),
    ("max-slice-nfr", "nan"),
    ("max-error-delta", -1.0000001),
    ("max-error-delta", 1.5),
    ("max-error-delta", math.nan),
]


@pytest.mark.parametrize(
    ("gate", "threshold"), BAD_THRESHOLDS, ids=[f"{g}={t!r}" for g, t in BAD_THRESHOLDS]
)
def test_bad_threshold_is_usage_error_naming_the_gate(gate: str, threshold: object) -> None:
    with pytest.raises(UsageError, match=f"--{gate}"):
        check_threshold(gate, threshold)
    with pytest.raises(UsageError, match=f"--{gate}"):
        evaluate_gates(FakeResult(), [GateSpec(gate, threshold)])  # type: ignore[arg-type]


GOOD_THRESHOLDS = [
    ("max-nfr", 0, 0.0),
    ("max-nfr", "0.01", 0.01),
    ("max-nfr", np.float64(0.2), 0.2),
    ("max-error-delta", -0.5, -0.5),
    ("max-error-delta", -1, -1.0),
    ("max-error-delta", 1, 1.0),
    ("min-btc", 1, 1.0),
]


@pytest.mark.parametrize(
    ("gate", "threshold", "parsed"), GOOD_THRESHOLDS,
    ids=[f"{g}={t!r}" for g, t, _ in GOOD_THRESHOLDS],
)
def test_good_threshold_is_parsed(gate: str, threshold: object, parsed: float) -> None:
    assert check_threshold(gate, threshold) == parsed


def test_unknown_gate_check_threshold() -> None:
    with pytest.raises(UsageError, match="max-nrf"):
        check_threshold("max-nrf", 0.1)


def test_unknown_gate_evaluate_gates() -> None:
    with pytest.raises(UsageError, match="max-nrf"):
        evaluate_gates(FakeResult({"negative_flip_rate": 0.0}), [GateSpec("max-nrf", 0.1)])


def _small_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    old = pd.DataFrame({"id": [1, 2, 3, 4], "label": [0, 1, 1, 0], "pred": [0, 1, 0, 1]})
    new = pd.DataFrame({"id": [4, 3, 2, 1], "pred": [1, 1, 0, 0]})
    return old, new


def test_unknown_gate_through_audit_flips() -> None:
    old, new = _small_frames()
    with pytest.raises(UsageError, match="max-nrf"):
        audit_flips(old, new, gates={"max-nrf": 0.1})


def test_bad_threshold_through_audit_flips() -> None:
    old, new = _small_frames()
    with pytest.raises(UsageError, match="--min-btc"):
        audit_flips(old, new, gates={"min-btc": 1.5})


def test_worst_class_is_picked_and_reported() -> None:
    result = FakeResult(per_class=(
        row("a", 1, 100),  # 0.01
        row("b", 3, 10),  # 0.30 <- worst
        row("c", 0, 0),  # undefined: skipped
        row("d", 3, 12),  # 0.25
    ))
    held, breached = evaluate_gates(
        result, [GateSpec("max-class-nfr", 0.3), GateSpec("max-class-nfr", 0.29)])
    assert held.value == pytest.approx(0.3) and held.passed and held.status == "pass"
    assert breached.value == pytest.approx(0.3) and not breached.passed
    assert held.detail == breached.detail
    assert "'b'" in held.detail and "class" in held.detail
    assert held.metric == "worst_class_negative_flip_rate"


def test_worst_slice_is_picked_and_reported() -> None:
    result = FakeResult(slices={
        "device": (row("phone", 1, 10), row("tablet", 2, 50)),
        "region": (row("eu", 4, 20), row(None, 0, 5)),  # eu: 0.2 <- worst
    })
    (g,) = evaluate_gates(result, [GateSpec("max-slice-nfr", 0.1)])
    assert g.value == pytest.approx(0.2) and g.status == "fail"
    assert "region" in g.detail and "'eu'" in g.detail
    assert g.to_dict()["detail"] == g.detail


def test_worst_group_with_no_groups_is_na() -> None:
    res = evaluate_gates(FakeResult(slices={"device": ()}),
                         [GateSpec("max-class-nfr", 0.1), GateSpec("max-slice-nfr", 0.1)])
    assert [g.status for g in res] == ["n/a", "n/a"]
    assert all(g.passed and g.value is None for g in res)


def test_slice_gate_without_slice_columns_is_a_usage_error() -> None:
    """``--max-slice-nfr`` on an audit without ``--slice-by`` could never be breached."""
    for source, named in (("command line", "--max-slice-nfr"),
                          ("gaudit.toml", "gaudit.toml: max-slice-nfr")):
        with pytest.raises(UsageError, match=f"^{named}: no --slice-by column is audited"):
            evaluate_gates(FakeResult(), [GateSpec("max-slice-nfr", 0.1, source)])


def test_gate_order_and_source_are_kept() -> None:
    specs = [GateSpec("min-btc", 0.5, source="pyproject.toml"), GateSpec("max-nfr", 0.1)]
    res = evaluate_gates(FakeResult({"backward_trust_compatibility": 0.4,
                                     "negative_flip_rate": 0.0}), specs)
    assert [g.name for g in res] == ["min-btc", "max-nfr"]
    assert [g.source for g in res] == ["pyproject.toml", "command line"]
    assert [g.passed for g in res] == [False, True]


def test_result_passed_is_all_gates() -> None:
    old, new = _small_frames()  # 1 negative flip, 1 positive flip out of 4
    result = audit_flips(old, new)
    assert result.gates == () and result.passed is True
    assert result.to_dict()["passed"] is True and result.to_dict()["gates"] == []

    nfr = result.metrics.negative_flip_rate
    held = audit_flips(old, new, gates={"max-nfr": nfr, "max_churn": 1.0})  # "_" accepted
    assert [g.name for g in held.gates] == ["max-nfr", "max-churn"]
    assert held.passed is True and held.breached == ()
    one_bad = audit_flips(old, new, gates=[GateSpec("max-nfr", nfr), GateSpec("max-nfr", 0.0)])
    assert [g.passed for g in one_bad.gates] == [True, False]
    assert one_bad.passed is False and one_bad.to_dict()["passed"] is False
    assert [g.threshold for g in one_bad.breached] == [0.0]

    fake = [GateResult("max-nfr", "negative_flip_rate", 0.1, v, p, s)
            for v, p, s in ((0.0, True, "pass"), (None, True, "n/a"), (0.5, False, "fail"))]
    assert result.with_gates(tuple(fake[:2])).passed is True
    assert result.with_gates(tuple(fake)).passed is False


def test_worst_class_and_slice_gates_end_to_end() -> None:
    rng = np.random.default_rng(3)
    size = 800
    y = rng.integers(0, 6, size)
    o = np.where(rng.random(size) < 0.8, y, rng.integers(0, 6, size))
    # class 4 regresses badly; the "tv" slice too
    seg = rng.choice(["phone", "tablet", "tv"], size)
    p_wrong = np.where((y == 4) | (seg == "tv"), 0.35, 0.08)
    n = np.where(rng.random(size) < p_wrong, (y + 1) % 6, y)
    old = pd.DataFrame({"id": np.arange(size), "label": y, "pred": o, "seg": seg})
    new = pd.DataFrame({"id": np.arange(size)[::-1], "pred": n[::-1]})
    nf = pd.Series((o == y) & (n != y))
    by_class = nf.groupby(y).mean()
    by_seg = nf.groupby(seg).mean()
    worst_class, worst_seg = by_class.idxmax(), by_seg.idxmax()
    assert worst_class == 4 and worst_seg == "tv"

    result = audit_flips(old, new, slice_by=["seg"], gates={
        "max-class-nfr": float(by_class.max()),  # exactly the worst value: holds
        "max-slice-nfr": float(by_seg.max()) - 1e-6,  # just below: breached
    })
    cls_gate, seg_gate = result.gates
    assert cls_gate.value == pytest.approx(by_class.max(), abs=1e-12)
    assert cls_gate.passed and cls_gate.status == "pass"
    assert "'4'" in cls_gate.detail
    assert seg_gate.value == pytest.approx(by_seg.max(), abs=1e-12)
    assert not seg_gate.passed and "seg='tv'" in seg_gate.detail
    assert result.passed is False
    d = result.to_dict()
    assert [g["passed"] for g in d["gates"]] == [True, False] and d["passed"] is False
