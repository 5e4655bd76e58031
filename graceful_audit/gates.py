"""Gates: release thresholds, evaluated as a pure function of a result object.

A gate has a readable name (the long flag, ``max-nfr``), the metric it watches, a
direction (``max``: the value must not exceed the threshold; ``min``: it must not fall
below) and the range a threshold may take. :func:`evaluate_gates` turns the requested
:class:`GateSpec` list into :class:`GateResult` rows; nothing here reads data or prints.

A gate whose metric is undefined for this audit (``None``, e.g. the negative flip impact
when the new model makes no error) is reported with status ``"n/a"`` and does not fail:
the quantity it guards cannot be breached. Comparisons are exact, so a negative flip rate
of exactly 0.01 holds ``--max-nfr 0.01``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

Value = tuple[float | None, str | None]  # the value and what it refers to ("class '3'")


def threshold_text(x: float) -> str:
    """The shortest text that reads back as ``x``: ``0.01``, ``0.0100004`` (``:g`` would
    print ``0.01000004`` as ``0.01``)."""
    for digits in range(1, 18):
        text = f"{x:.{digits}g}"
        if float(text) == x:
            return text
    return repr(x)


@dataclass(frozen=True)
class GateDef:
    """What a gate watches and which thresholds make sense for it."""

    name: str
    metric: str
    direction: str  # "max" or "min"
    low: float
    high: float
    value: Callable[[Any], Value]
    kind: str = "flips"
    help: str = ""
    tasks: tuple[str, ...] = ("classification", "regression", "outcome")  # audits it fits

    def label(self, threshold: float) -> str:
        op = "<=" if self.direction == "max" else ">="
        return f"{self.metric} {op} {threshold_text(threshold)}"


@dataclass(frozen=True)
class GateSpec:
    """A requested gate: its name, threshold and where it came from."""

    name: str
    threshold: float
    source: str = "command line"


@dataclass(frozen=True)
class GateResult:
    """One evaluated gate."""

    name: str
    metric: str
    threshold: float
    value: float | None
    passed: bool
    status: str  # "pass", "fail" or "n/a"
    source: str = "command line"
    detail: str | None = None
    direction: str = "max"

    @property
    def condition(self) -> str:
        """``negative_flip_rate <= 0.01``, the threshold as written (never rounded)."""
        op = "<=" if self.direction == "max" else ">="
        return f"{self.metric} {op} {threshold_text(self.threshold)}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "metric": self.metric, "threshold": self.threshold,
            "value": self.value, "passed": self.passed, "status": self.status,
            "direction": self.direction, "source": self.source,
        }
        if self.detail is not None:
            d["detail"] = self.detail
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        return cls(d["name"], d["metric"], d["threshold"], d.get("value"), d["passed"],
                   d.get("status", "pass" if d["passed"] else "fail"),
                   d.get("source", "command line"), d.get("detail"), d.get("direction", "max"))


class Gated:
    """What every result with gates answers: did they all hold, which were breached."""

    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when every gate held (or no gate was set)."""
        return all(g.passed for g in self.gates)

    @property
    def breached(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)


def _metric(name: str) -> Callable[[Any], Value]:
    return lambda result: (result.metric_value(name), None)


def _drop(key: str) -> Callable[[Any], Value]:
    """``old - new`` of a quality metric where higher is better (``quality.delta`` negated)."""
    def value(result: Any) -> Value:
        quality = getattr(result, "quality", None)
        return (None, None) if quality is None else (quality.drop(key), None)

    return value


def _worst_group(kind: str) -> Callable[[Any], Value]:
    def value(result: Any) -> Value:
        rows = result.per_class if kind == "class" else [
            (col, row) for col, rows in result.slices.items() for row in rows
        ]
        best: tuple[float, str] | None = None
        for item in rows:
            col, row = (None, item) if kind == "class" else item
            nfr = row.negative_flip_rate
            if nfr is not None and (best is None or nfr > best[0]):
                where = f"class {row.value!r}" if col is None else f"{col}={row.value!r}"
                best = (nfr, where)
        return (None, None) if best is None else best

    return value


GATES: dict[str, GateDef] = {
    g.name: g
    for g in (
        GateDef("max-nfr", "negative_flip_rate", "max", 0, 1, _metric("negative_flip_rate"),
                help="Fail when the negative flip rate exceeds X (0..1)."),
        GateDef("max-nfi", "negative_flip_impact", "max", 0, 1, _metric("negative_flip_impact"),
                help="Fail when the negative flip impact (NFR / new error rate) exceeds X."),
        GateDef("max-error-delta", "error_rate_delta", "max", -1, 1,
                _metric("error_rate_delta"),
                help="Fail when new error rate - old error rate exceeds X (-1..1)."),
        GateDef("min-btc", "backward_trust_compatibility", "min", 0, 1,
                _metric("backward_trust_compatibility"),
                help="Fail when backward trust compatibility falls below X (0..1)."),
        GateDef("max-churn", "churn_rate", "max", 0, 1, _metric("churn_rate"),
                tasks=("classification",),
                help="Fail when the share of changed predictions exceeds X (0..1)."),
        GateDef("max-class-nfr", "worst_class_negative_flip_rate", "max", 0, 1,
                _worst_group("class"),
                tasks=("classification",),
                help="Fail when any true class's negative flip rate exceeds X (0..1)."),
        GateDef("max-slice-nfr", "worst_slice_negative_flip_rate", "max", 0, 1,
                _worst_group("slice"),
                help="Fail when any slice value's negative flip rate exceeds X (0..1)."),
        GateDef("max-mae-delta", "mae_delta", "max", -math.inf, math.inf, _metric("mae_delta"),
                tasks=("regression",),
                help="Regression: fail when new MAE - old MAE exceeds X (may be negative)."),
        GateDef("max-rmse-delta", "rmse_delta", "max", -math.inf, math.inf,
                _metric("rmse_delta"),
                tasks=("regression",),
                help="Regression: fail when new RMSE - old RMSE exceeds X (may be negative)."),
        GateDef("min-score-delta", "scores.mean_delta", "min", -math.inf, math.inf,
                _metric("scores.mean_delta"), tasks=("outcome",),
                help="Graded outcomes: fail when mean(new score - old score) falls below X "
                     "(may be negative)."),
        GateDef("max-auc-drop", "roc_auc_drop", "max", -1, 1, _drop("roc_auc"),
                tasks=("classification",),
                help="Fail when old ROC-AUC - new ROC-AUC exceeds X (needs --score-cols)."),
        GateDef("max-f1-drop", "macro_f1_drop", "max", -1, 1, _drop("macro_f1"),
                tasks=("classification",),
                help="Fail when old macro F1 - new macro F1 exceeds X (-1..1)."),
    )
}


#: The most rows ``--top`` may ask for: far beyond any report, well inside SQL's integers.
MAX_TOP = 1_000_000_000


def check_top(top: int) -> int:
    """``--top`` is a count of rows to list: 0 to :data:`MAX_TOP`; :class:`UsageError`
    otherwise."""
    if not 0 <= top <= MAX_TOP:
        raise UsageError(f"--top: {top!r} must be between 0 and {MAX_TOP:,}.")
    return top


def check_threshold(
    name: str, value: object, gates: dict[str, GateDef] = GATES, source: str = "command line"
) -> float:
    """Parse and range-check a threshold; raise :class:`UsageError` naming the gate.

    ``source`` is where the threshold came from: a flag, or a key in a config file.
    """
    where = f"--{name}" if source == "command line" else f"{source}: {name}"
    gate = gates.get(name)
    if gate is None:
        raise UsageError(f"{source}: unknown gate {name!r}; known gates: {', '.join(gates)}.")
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected a number, got {value!r}.")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expected a number, got {value!r}.") from None
    if not math.isfinite(x) or not gate.low <= x <= gate.high:
        raise UsageError(
            f"{where}: {value!r} is outside the valid range {gate.low:g} to {gate.high:g}."
        )
    return x


def where_given(spec: GateSpec) -> str:
    """The flag or config key a gate came from, for messages: ``--max-nfr`` or
    ``gaudit.toml: max-nfr``."""
    return f"--{spec.name}" if spec.source == "command line" else f"{spec.source}: {spec.name}"


def check_applies(specs: list[GateSpec] | tuple[GateSpec, ...], task: str | None,
                  gates: dict[str, GateDef] = GATES, *, sliced: bool = True) -> None:
    """Raise :class:`UsageError` for a gate whose metric the audit does not have: a ``task``
    audit (``--max-mae-delta`` on a classification audit), or ``--max-slice-nfr`` when no
    ``--slice-by`` column is audited (``sliced`` False). It would be "n/a" and hold silently."""
    for spec in specs:
        if spec.name == "max-slice-nfr" and not sliced:
            raise UsageError(
                f"{where_given(spec)}: no --slice-by column is audited, so the gate could "
                "never be breached. Give the slice column with --slice-by COL, or drop the gate."
            )
    if task is None:
        return
    for spec in specs:
        gate = gates.get(spec.name)
        if gate is not None and task not in gate.tasks:
            if gate.tasks == ("outcome",):
                raise UsageError(
                    f"{where_given(spec)}: {gate.metric} is defined only for an outcome audit "
                    "of graded scores (--outcome-col COL --pass-threshold T), and this is a "
                    f"{task} audit, so the gate could never be breached. Drop the gate."
                )
            if task == "outcome":
                raise UsageError(
                    f"{where_given(spec)}: {gate.metric} is defined only for a "
                    f"{' or '.join(gate.tasks)} audit, and this is an outcome audit "
                    "(--outcome-col: no predictions, one pass/fail per case), so the gate "
                    "could never be breached. Drop the gate."
                )
            raise UsageError(
                f"{where_given(spec)}: {gate.metric} is defined only for a "
                f"{' or '.join(gate.tasks)} audit, and this is a {task} audit, so the gate "
                "could never be breached. Drop the gate, or audit with --task "
                f"{gate.tasks[0]}."
            )


def evaluate_gates(
    result: Any, specs: list[GateSpec] | tuple[GateSpec, ...], gates: dict[str, GateDef] = GATES
) -> tuple[GateResult, ...]:
    """Evaluate ``specs`` against ``result`` (anything with ``metric_value`` and groups)."""
    check_applies(specs, getattr(result, "task", None), gates,
                  sliced=bool(getattr(result, "slices", True)))
    out = []
    for spec in specs:
        threshold = check_threshold(spec.name, spec.threshold, gates, spec.source)
        gate = gates[spec.name]
        value, detail = gate.value(result)
        if value is None:
            passed, status = True, "n/a"
        else:
            passed = value <= threshold if gate.direction == "max" else value >= threshold
            status = "pass" if passed else "fail"
        out.append(GateResult(spec.name, gate.metric, threshold, value, passed, status,
                              spec.source, detail, gate.direction))
    return tuple(out)
